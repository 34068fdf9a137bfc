//! An upstream's view of the followers that replicate from it.
//!
//! The leader uses it for commit rules and the in-sync set; a replica that feeds others
//! (cascading) uses it for their lag only, since cascaded replicas are asynchronous.

use super::ack::AckMode;
use crate::position::Lsn;
use std::collections::{BTreeMap, VecDeque};

/// Most points kept on the append timeline (one per millisecond at most); older ones are
/// dropped, which can only make a very old lag read lower than it was.
const TIMELINE_POINTS_MAX: usize = 1 << 20;

/// One follower's progress as its upstream knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaProgress {
    /// The follower's node id.
    pub id: String,
    /// Its client address (`ip:port`), for `INFO replication`.
    pub addr: String,
    /// Last LSN it reported durable.
    pub durable: Lsn,
    /// Last LSN it reported applied.
    pub applied: Lsn,
    /// Whether its link is up.
    pub connected: bool,
    /// Whether it counts for `sync` and for starting writes.
    pub in_sync: bool,
    /// When it was last heard from.
    pub last_contact_ms: u64,
    /// When its link came up (or went down, when not connected).
    pub since_ms: u64,
    /// Its current link has not acknowledged yet, or it has no link yet since this node was
    /// elected with it in the map's in-sync set: it counts as holding nothing, and keeps its
    /// place in or out of the in-sync set until it acknowledges (or goes silent).
    pub awaiting_ack: bool,
}

impl ReplicaProgress {
    /// A follower first heard of at `now_ms`: no link, holding nothing, out of sync.
    fn unknown(id: &str, now_ms: u64) -> ReplicaProgress {
        ReplicaProgress {
            id: id.to_string(),
            addr: String::new(),
            durable: Lsn::ZERO,
            applied: Lsn::ZERO,
            connected: false,
            in_sync: false,
            last_contact_ms: now_ms,
            since_ms: now_ms,
            awaiting_ack: false,
        }
    }
}

/// A change of the in-sync set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IsrChange {
    /// The replica caught up to within the lag bound.
    Joined {
        /// Its id.
        id: String,
    },
    /// The replica fell behind, or went silent, past the lag bound.
    Left {
        /// Its id.
        id: String,
        /// How far behind it was, in milliseconds.
        lag_ms: u64,
    },
}

/// The followers of one upstream, and the commit LSN each acknowledgement mode allows.
#[derive(Clone, Debug)]
pub struct Replicas {
    replicas: BTreeMap<String, ReplicaProgress>,
    /// `(lsn, ms)`: by time `ms` the log held `lsn`. Increasing in both.
    timeline: VecDeque<(Lsn, u64)>,
    last: Lsn,
    lag_max_ms: u64,
    /// Cluster size for `quorum`, leader included; 0 = the leader plus the known replicas.
    cluster_size: u32,
    /// The highest LSN committed under `sync`: a replica rejoins the in-sync set only once it
    /// has it, so the set never holds a replica that lacks a write acknowledged under `sync`.
    sync_floor: Lsn,
    /// The control plane's in-sync set, when there is one.
    pinned: Option<std::collections::BTreeSet<String>>,
    /// Replicas that count for no commit rule and no in-sync set: leaving the cluster.
    excluded: std::collections::BTreeSet<String>,
    /// The control plane's members, when there is one: only they count.
    members: Option<std::collections::BTreeSet<String>>,
}

impl Replicas {
    /// An empty set whose log ends at `last`. A replica whose oldest missing entry is older
    /// than `lag_max_ms`, or that has been silent that long, is out of sync.
    #[must_use]
    pub fn new(last: Lsn, lag_max_ms: u64, cluster_size: u32) -> Replicas {
        Replicas {
            replicas: BTreeMap::new(),
            timeline: VecDeque::new(),
            last,
            lag_max_ms,
            cluster_size,
            sync_floor: Lsn::ZERO,
            pinned: None,
            excluded: std::collections::BTreeSet::new(),
            members: None,
        }
    }

    /// No followers, a log ending at `last`, and the control plane's pins (in-sync set,
    /// members) and exclusions kept: after the log was replaced by a snapshot.
    #[must_use]
    pub fn emptied(&self, last: Lsn) -> Replicas {
        Replicas {
            pinned: self.pinned.clone(),
            members: self.members.clone(),
            excluded: self.excluded.clone(),
            ..Replicas::new(last, self.lag_max_ms, self.cluster_size)
        }
    }

    /// The last LSN of the upstream's log.
    #[must_use]
    pub fn last(&self) -> Lsn {
        self.last
    }

    /// Records that the upstream's log reached `lsn` at `now_ms`.
    pub fn on_append(&mut self, lsn: Lsn, now_ms: u64) {
        if lsn <= self.last {
            return;
        }
        self.last = lsn;
        match self.timeline.back_mut() {
            // One point per millisecond, holding the last LSN appended by then: an entry was
            // appended at the time of the first point at or past its LSN, so the first point
            // past a replica's position dates its oldest missing entry.
            Some((point_lsn, ms)) if *ms >= now_ms => *point_lsn = lsn,
            _ => self.timeline.push_back((lsn, now_ms)),
        }
        if self.timeline.len() > TIMELINE_POINTS_MAX {
            self.timeline.pop_front();
        }
    }

    /// Forgets the log's history and sets its end: after a reset of the log from a snapshot.
    pub fn reset_log(&mut self, last: Lsn) {
        self.last = last;
        self.timeline.clear();
    }

    /// A follower's link came up. A replica starts out of sync and joins once it is within the
    /// lag bound.
    pub fn connect(&mut self, id: &str, addr: &str, now_ms: u64) {
        let r = self
            .replicas
            .entry(id.to_string())
            .or_insert_with(|| ReplicaProgress::unknown(id, now_ms));
        r.addr = addr.to_string();
        r.connected = true;
        r.last_contact_ms = now_ms;
        r.since_ms = now_ms;
    }

    /// A follower's link went down. It stays known (its durable LSN still counts for
    /// `semi-sync` and `quorum`: that data is on its disk) and leaves the in-sync set at the
    /// next [`Replicas::evaluate`].
    pub fn disconnect(&mut self, id: &str, now_ms: u64) {
        if let Some(r) = self.replicas.get_mut(id) {
            r.connected = false;
            r.since_ms = now_ms;
            r.awaiting_ack = false;
        }
    }

    /// This node was just elected leader; `in_sync` is the set the cluster map held, every
    /// member of which holds each write acknowledged under `sync` so far, and `last` is the end
    /// of this node's log, all of which its predecessor may have acknowledged.
    ///
    /// The map's members start in sync, holding nothing until they acknowledge on a link of
    /// their own, and leave only as any replica does, once silent or lagging past the bound
    /// (as a new Kafka partition leader starts from the controller's in-sync set): a new leader
    /// does not empty the map's set before its replicas have had time to reconnect. Every
    /// other replica joins only once it holds `last`.
    pub fn on_elected(
        &mut self,
        in_sync: &std::collections::BTreeSet<String>,
        last: Lsn,
        now_ms: u64,
    ) {
        self.sync_floor = self.sync_floor.max(last);
        for id in in_sync {
            let r = self
                .replicas
                .entry(id.clone())
                .or_insert_with(|| ReplicaProgress::unknown(id, now_ms));
            r.durable = Lsn::ZERO;
            r.applied = Lsn::ZERO;
            r.in_sync = true;
            r.awaiting_ack = true;
            r.last_contact_ms = now_ms;
        }
    }

    /// A follower reported its durable and applied LSNs. Reports never move a position back
    /// (a stale ack may arrive after a newer one), unless the follower was reset from a
    /// snapshot, which only happens on a new link ([`Replicas::reset_replica`]).
    pub fn on_ack(&mut self, id: &str, durable: Lsn, applied: Lsn, now_ms: u64) {
        if let Some(r) = self.replicas.get_mut(id) {
            r.durable = r.durable.max(durable);
            r.applied = r.applied.max(applied);
            r.last_contact_ms = now_ms;
            r.awaiting_ack = false;
        }
    }

    /// A follower's new link came up: it counts as holding nothing until it acknowledges on
    /// it (where the link starts is not yet on its disk, and what it reported before may
    /// belong to a log the link replaces), and keeps its in-sync place meanwhile.
    pub fn start_link(&mut self, id: &str, addr: &str, now_ms: u64) {
        self.connect(id, addr, now_ms);
        if let Some(r) = self.replicas.get_mut(id) {
            r.durable = Lsn::ZERO;
            r.applied = Lsn::ZERO;
            r.awaiting_ack = true;
        }
    }

    /// Sets a follower's positions outright: it was bootstrapped from a snapshot at `lsn`, or
    /// its new link starts from `lsn`.
    pub fn reset_replica(&mut self, id: &str, lsn: Lsn) {
        if let Some(r) = self.replicas.get_mut(id) {
            r.durable = lsn;
            r.applied = lsn;
        }
    }

    /// Forgets a follower (it will not come back).
    pub fn remove(&mut self, id: &str) -> bool {
        self.replicas.remove(id).is_some()
    }

    /// Every known follower, by id.
    pub fn iter(&self) -> impl Iterator<Item = &ReplicaProgress> {
        self.replicas.values()
    }

    /// One follower.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<&ReplicaProgress> {
        self.replicas.get(id)
    }

    /// Entries the follower lacks.
    #[must_use]
    pub fn lag_entries(&self, r: &ReplicaProgress) -> u64 {
        self.last.0.saturating_sub(r.durable.0)
    }

    /// Age of the oldest entry the follower lacks; 0 when it has everything.
    #[must_use]
    pub fn lag_ms(&self, r: &ReplicaProgress, now_ms: u64) -> u64 {
        if r.durable >= self.last {
            return 0;
        }
        // The first point past the replica's position is the earliest the log is known to
        // have held an entry the replica lacks. Without one (the points were dropped, or the
        // log was reset), the lag is at least as old as the oldest point.
        let i = self.timeline.partition_point(|(lsn, _)| *lsn <= r.durable);
        let since = match self.timeline.get(i) {
            Some((_, ms)) => *ms,
            None => self.timeline.front().map_or(now_ms, |(_, ms)| *ms),
        };
        now_ms.saturating_sub(since)
    }

    /// Re-evaluates the in-sync set at `now_ms` and drops timeline points no follower needs;
    /// returns the changes.
    pub fn evaluate(&mut self, now_ms: u64) -> Vec<IsrChange> {
        let mut changes = Vec::new();
        let verdicts: Vec<(String, bool, u64)> = self
            .replicas
            .values()
            .map(|r| {
                let lag = self.lag_ms(r, now_ms);
                let silent = now_ms.saturating_sub(r.last_contact_ms) > self.lag_max_ms;
                let within = r.connected && !silent && lag <= self.lag_max_ms;
                // Staying needs only the lag bound; joining also needs every write already
                // acknowledged under `sync`. A new link that has not acknowledged yet (or a
                // replica of the map's set a new leader awaits) keeps its place: its lag is
                // unknown, not large.
                let ok = if r.awaiting_ack && !silent {
                    r.in_sync
                } else {
                    within && (r.in_sync || r.durable >= self.sync_floor)
                };
                (r.id.clone(), ok, lag)
            })
            .collect();
        for (id, ok, lag_ms) in verdicts {
            let Some(r) = self.replicas.get_mut(&id) else {
                continue;
            };
            if r.in_sync == ok {
                continue;
            }
            r.in_sync = ok;
            changes.push(if ok {
                IsrChange::Joined { id }
            } else {
                IsrChange::Left { id, lag_ms }
            });
        }
        self.prune_timeline();
        changes
    }

    fn prune_timeline(&mut self) {
        let oldest_needed = self
            .replicas
            .values()
            .filter(|r| r.connected)
            .map(|r| r.durable)
            .min()
            .unwrap_or(self.last);
        // Keep the first point past the oldest position still needed.
        while self.timeline.len() > 1 && self.timeline[0].0 <= oldest_needed {
            self.timeline.pop_front();
        }
    }

    /// Records what `sync` has committed, given the upstream's own durable LSN; call it
    /// whenever replies may have been released. Replicas that lack it cannot join the
    /// in-sync set.
    pub fn note_sync_commit(&mut self, own_durable: Lsn) {
        let c = self.commit_lsn(AckMode::Sync, own_durable);
        self.sync_floor = self.sync_floor.max(c);
    }

    /// The highest LSN committed under `sync` so far.
    #[must_use]
    pub fn sync_floor(&self) -> Lsn {
        self.sync_floor
    }

    /// Followers in the in-sync set (excluded ones aside).
    #[must_use]
    pub fn in_sync_count(&self) -> u32 {
        self.counted().filter(|r| r.in_sync).count() as u32
    }

    /// Pins the in-sync set the control plane's map holds (`None`: no control plane). From then
    /// on `sync` waits for every replica of the map's set *and* every replica this node counts
    /// in sync: a replica dropped here still counts until the map drops it, and one that joined
    /// here counts at once, before the map lists it (Kafka's rule for a pending change), so
    /// whatever the map's set is while a change is pending, each of its members holds every
    /// write acknowledged under `sync`.
    pub fn pin_in_sync(&mut self, set: Option<std::collections::BTreeSet<String>>) {
        self.pinned = set;
    }

    /// The control plane's in-sync set, when one is pinned.
    #[must_use]
    pub fn pinned(&self) -> Option<&std::collections::BTreeSet<String>> {
        self.pinned.as_ref()
    }

    /// Excludes replica `id` from every commit rule and from the in-sync set's counts (a
    /// member being removed: what is acknowledged from now on does not rely on it), or
    /// counts it again.
    pub fn exclude(&mut self, id: &str, excluded: bool) {
        if excluded {
            self.excluded.insert(id.to_string());
        } else {
            self.excluded.remove(id);
        }
    }

    /// Pins the control plane's members (`None`: no control plane): a follower that is not
    /// one (removed, say, but still connected) counts for nothing.
    pub fn pin_members(&mut self, members: Option<std::collections::BTreeSet<String>>) {
        self.members = members;
    }

    /// Whether replica `id` counts for commit rules and the in-sync set.
    #[must_use]
    pub fn counts(&self, id: &str) -> bool {
        !self.excluded.contains(id) && self.members.as_ref().is_none_or(|m| m.contains(id))
    }

    /// The followers that count for commit rules.
    fn counted(&self) -> impl Iterator<Item = &ReplicaProgress> {
        self.replicas.values().filter(|r| self.counts(&r.id))
    }

    /// The replicas `sync` waits for: see [`Replicas::pin_in_sync`].
    fn sync_set(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .counted()
            .filter(|r| r.in_sync)
            .map(|r| r.id.as_str())
            .collect();
        if let Some(pinned) = &self.pinned {
            ids.extend(
                pinned
                    .iter()
                    .map(String::as_str)
                    .filter(|id| self.counts(id)),
            );
            ids.sort_unstable();
            ids.dedup();
        }
        ids
    }

    /// The cluster size `quorum` counts against: the configured one, or the leader plus every
    /// known follower.
    #[must_use]
    pub fn cluster_size(&self) -> u32 {
        if self.cluster_size > 0 {
            self.cluster_size
        } else {
            1 + self.replicas.len() as u32
        }
    }

    /// Whether a write in `mode` may start: enough followers are in sync.
    #[must_use]
    pub fn can_start(&self, mode: AckMode) -> bool {
        let in_sync = match mode {
            AckMode::Sync => self.sync_set().len() as u32,
            _ => self.in_sync_count(),
        };
        in_sync >= mode.replicas_needed(self.cluster_size())
    }

    /// Followers whose durable LSN is at least `lsn` (`WAIT`).
    #[must_use]
    pub fn durable_count(&self, lsn: Lsn) -> u32 {
        self.replicas.values().filter(|r| r.durable >= lsn).count() as u32
    }

    /// The highest LSN that `mode` considers committed, given the upstream's own durable LSN.
    ///
    /// - `async`: the upstream's durable LSN.
    /// - `semi-sync:K`: the K-th highest durable LSN among all known followers (a follower that
    ///   went out of sync still has on disk what it reported).
    /// - `sync`: the lowest durable LSN among in-sync followers; nothing without one.
    /// - `quorum`: the `cluster_size / 2`-th highest durable LSN among followers.
    ///
    /// Always capped by the upstream's own durable LSN.
    #[must_use]
    pub fn commit_lsn(&self, mode: AckMode, own_durable: Lsn) -> Lsn {
        let kth = |k: u32| -> Lsn {
            if k == 0 {
                return own_durable;
            }
            let mut durable: Vec<Lsn> = self.counted().map(|r| r.durable).collect();
            durable.sort_unstable_by(|a, b| b.cmp(a));
            durable.get(k as usize - 1).copied().unwrap_or(Lsn::ZERO)
        };
        let replicas = match mode {
            AckMode::Async => own_durable,
            AckMode::SemiSync(k) => kth(k),
            AckMode::Quorum => kth(self.cluster_size() / 2),
            AckMode::Sync => self
                .sync_set()
                .iter()
                .map(|id| self.replicas.get(*id).map_or(Lsn::ZERO, |r| r.durable))
                .min()
                .unwrap_or(Lsn::ZERO),
        };
        replicas.min(own_durable)
    }
}
