//! Fault injection in the peer layer, for tests only: cut, delay or randomly drop this node's
//! replication links to chosen peers, where network namespaces (and `tc netem`) are not
//! available to the verification harness.
//!
//! It is off unless the node runs with `--fault-injection` *and* `REPLIKV_I_AM_TESTING=1` in
//! its environment (see [`crate::config`]); the admin API then serves `GET`, `POST` and
//! `DELETE /faults`. Peers are named by the node id they give in the link handshake, or `*`
//! for every peer; an entry for a peer's own id wins over the `*` entry.
//!
//! - **block**: links to and from the peer are closed at once (both when this node serves the
//!   peer as a follower and when it follows the peer as its upstream), and new ones are closed
//!   right after the handshake, the first point at which the peer's id is known.
//! - **delay_ms**: every frame received from the peer is held that long before the link
//!   handles it, in order. Only what this node receives is delayed: to delay both directions
//!   between two nodes, set the delay on both.
//! - **loss**: with this probability per received frame, the whole link is dropped. Single
//!   frames are never dropped: the stream checks its continuity and would close the link on a
//!   gap anyway, so a lost frame and a dropped link look the same to the protocol; modelling
//!   loss as a link drop reaches the same recovery path (reconnect and fetch from the own last
//!   position) without the detour. Heartbeats and acks are frames too, so an idle link is
//!   dropped as well, about once per `1/loss` heartbeats.
//! - **clock_skew_ms**: this node's wall clock (`crate::now_ms`) runs this many milliseconds
//!   ahead (negative: behind) of the system clock, at most [`CLOCK_SKEW_MS_MAX`] either way.
//!   It moves what the node derives from wall time: key expiry and TTLs, the staleness
//!   estimate behind `REPLIKV STALENESS` (a replica compares its clock with the leader's
//!   timestamps), and the leader time it ships to replicas. Waits, timeouts and replica lag
//!   are measured on a monotonic clock (`crate::mono_ms`) and do not move. The offset is
//!   process-wide, set with the spec and cleared when it is
//!   healed; it is never non-zero on a node without fault injection. `TIME` and the start
//!   time in `INFO` read the system clock and are not skewed.
//!
//! Client connections, `--replica-writes forward` connections and the admin port are never
//! affected.

use crate::peer_link::LinkError;
use replikv_proto::PeerMessage;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The peer name that stands for every peer.
pub const ALL_PEERS: &str = "*";
/// Longest delay that may be set, ms.
pub const DELAY_MS_MAX: u64 = 60_000;
/// Largest clock skew that may be set either way, ms (one hour).
pub const CLOCK_SKEW_MS_MAX: i64 = 3_600_000;
/// Most peers named in one fault setting (each list counted alone).
pub const FAULT_PEERS_MAX: usize = 1024;
/// Longest peer name (the node id limit).
const PEER_NAME_BYTES_MAX: usize = 256;
/// Frames a delayed link holds at most; past this it stops reading the socket until the
/// oldest is released, so that TCP's flow control still bounds memory.
pub const HELD_FRAMES_MAX: usize = 1024;

/// The faults in force, as `GET /faults` shows them and `POST /faults` sets them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Peers whose links are closed and refused.
    #[serde(default)]
    pub block: BTreeSet<String>,
    /// Milliseconds every frame received from a peer is held (at most [`DELAY_MS_MAX`]).
    #[serde(default)]
    pub delay_ms: BTreeMap<String, u64>,
    /// Probability, from 0 to 1, that a frame received from a peer drops the whole link.
    #[serde(default)]
    pub loss: BTreeMap<String, f64>,
    /// Milliseconds this node's wall clock is shifted by, from -[`CLOCK_SKEW_MS_MAX`] to
    /// [`CLOCK_SKEW_MS_MAX`]; 0 for none.
    #[serde(default)]
    pub clock_skew_ms: i64,
}

/// Why a fault setting was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    /// A peer name is empty, too long or not printable.
    #[error("`{0}` is not a node id (1 to 256 printable characters without spaces) or `*`")]
    PeerName(String),
    /// Too many peers in one list.
    #[error("`{list}` names {count} peers; at most {FAULT_PEERS_MAX} are allowed")]
    TooManyPeers {
        /// The list.
        list: &'static str,
        /// How many it named.
        count: usize,
    },
    /// A delay is too long.
    #[error("delay_ms for `{peer}` is {ms}; at most {DELAY_MS_MAX} is allowed")]
    Delay {
        /// The peer.
        peer: String,
        /// The delay asked for.
        ms: u64,
    },
    /// A loss probability is outside 0..=1.
    #[error("loss for `{peer}` is {p}; it must be a probability from 0 to 1")]
    Loss {
        /// The peer.
        peer: String,
        /// The probability asked for, as text (it may be NaN).
        p: String,
    },
    /// A clock skew is too large.
    #[error("clock_skew_ms is {0}; at most {CLOCK_SKEW_MS_MAX} either way is allowed")]
    ClockSkew(i64),
}

impl FaultSpec {
    /// Checks every name and bound.
    ///
    /// # Errors
    /// The first name or value out of bounds.
    pub fn validate(&self) -> Result<(), FaultSpecError> {
        let lists = [
            ("block", self.block.len()),
            ("delay_ms", self.delay_ms.len()),
            ("loss", self.loss.len()),
        ];
        for (list, count) in lists {
            if count > FAULT_PEERS_MAX {
                return Err(FaultSpecError::TooManyPeers { list, count });
            }
        }
        let names = self
            .block
            .iter()
            .chain(self.delay_ms.keys())
            .chain(self.loss.keys());
        for name in names {
            let ok = !name.is_empty()
                && name.len() <= PEER_NAME_BYTES_MAX
                && name.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(FaultSpecError::PeerName(name.clone()));
            }
        }
        for (peer, &ms) in &self.delay_ms {
            if ms > DELAY_MS_MAX {
                return Err(FaultSpecError::Delay {
                    peer: peer.clone(),
                    ms,
                });
            }
        }
        for (peer, &p) in &self.loss {
            if !(0.0..=1.0).contains(&p) {
                return Err(FaultSpecError::Loss {
                    peer: peer.clone(),
                    p: p.to_string(),
                });
            }
        }
        if !(-CLOCK_SKEW_MS_MAX..=CLOCK_SKEW_MS_MAX).contains(&self.clock_skew_ms) {
            return Err(FaultSpecError::ClockSkew(self.clock_skew_ms));
        }
        Ok(())
    }

    /// Whether links with `peer` are blocked.
    pub fn blocks(&self, peer: &str) -> bool {
        self.block.contains(peer) || self.block.contains(ALL_PEERS)
    }

    /// The delay on frames from `peer`.
    pub fn delay_for(&self, peer: &str) -> Duration {
        let ms = self
            .delay_ms
            .get(peer)
            .or_else(|| self.delay_ms.get(ALL_PEERS));
        Duration::from_millis(ms.copied().unwrap_or(0))
    }

    /// The probability that a frame from `peer` drops its link.
    pub fn loss_for(&self, peer: &str) -> f64 {
        let p = self.loss.get(peer).or_else(|| self.loss.get(ALL_PEERS));
        p.copied().unwrap_or(0.0)
    }

    /// Whether nothing is in force.
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
            && self.delay_ms.is_empty()
            && self.loss.is_empty()
            && self.clock_skew_ms == 0
    }
}

/// A node's fault state, shared by its links and its admin API.
#[derive(Debug)]
pub struct Faults {
    enabled: bool,
    spec: watch::Sender<FaultSpec>,
    /// xorshift64 state, never 0.
    rng: AtomicU64,
}

impl Faults {
    /// Fault state with nothing in force; `enabled` is the node's `fault_injection` setting.
    /// A disabled instance never cuts, delays or drops anything and refuses to be set.
    pub fn new(enabled: bool) -> Faults {
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            // Without OS randomness the clock is a good enough seed for test faults.
            seed = crate::now_ms().to_le_bytes();
        }
        Faults::with_seed(enabled, u64::from_le_bytes(seed))
    }

    /// [`Faults::new`] with a chosen RNG seed (unit tests).
    pub fn with_seed(enabled: bool, seed: u64) -> Faults {
        Faults {
            enabled,
            spec: watch::Sender::new(FaultSpec::default()),
            rng: AtomicU64::new(seed | 1),
        }
    }

    /// Whether fault injection is on for this node.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The faults in force.
    pub fn spec(&self) -> FaultSpec {
        self.spec.borrow().clone()
    }

    /// Replaces the faults in force; links to newly blocked peers close at once, and the
    /// process's clock skew becomes the spec's.
    ///
    /// # Errors
    /// The setting is out of bounds (nothing changes).
    ///
    /// # Panics
    /// When fault injection is off: the admin API routes no setter then.
    pub fn set(&self, spec: FaultSpec) -> Result<(), FaultSpecError> {
        assert!(
            self.enabled,
            "fault injection is off; nothing may set faults"
        );
        spec.validate()?;
        crate::set_clock_skew_ms(spec.clock_skew_ms);
        self.spec.send_replace(spec);
        Ok(())
    }

    /// Removes every fault, the clock skew too.
    pub fn heal(&self) {
        if self.enabled {
            crate::set_clock_skew_ms(0);
        }
        self.spec.send_replace(FaultSpec::default());
    }

    /// Whether links with `peer` are blocked now.
    pub fn blocks(&self, peer: &str) -> bool {
        self.enabled && self.spec.borrow().blocks(peer)
    }

    /// Fails when links with `peer` are blocked.
    ///
    /// # Errors
    /// [`LinkError::Injected`] naming the peer.
    pub fn check(&self, peer: &str) -> Result<(), LinkError> {
        if self.blocks(peer) {
            return Err(blocked(peer));
        }
        Ok(())
    }

    /// Returns, with the error that closes the link, once links with `peer` are blocked
    /// (never when fault injection is off).
    pub async fn until_blocked(&self, peer: &str) -> LinkError {
        if self.enabled {
            let mut rx = self.spec.subscribe();
            if rx.wait_for(|s| s.blocks(peer)).await.is_ok() {
                return blocked(peer);
            }
        }
        // Off, or the state is gone with the node: nothing will ever block this link.
        std::future::pending::<LinkError>().await
    }

    /// The per-link fault state for a link with `peer`, once its handshake has named it;
    /// `None` when fault injection is off.
    pub fn for_link(self: &Arc<Faults>, peer: &str) -> Option<LinkFaults> {
        self.enabled.then(|| LinkFaults {
            faults: Arc::clone(self),
            peer: peer.to_string(),
            held: VecDeque::new(),
            release_last: None,
        })
    }

    /// A uniform draw from `[0, 1)` (xorshift64; shared by all links, so runs are not
    /// repeatable, only statistically alike).
    fn draw(&self) -> f64 {
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let prev = self
            .rng
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(step(x)))
            .unwrap_or_else(|x| x);
        let x = step(prev);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn blocked(peer: &str) -> LinkError {
    LinkError::Injected(format!("peer `{peer}` is blocked"))
}

/// Fault state of one link: the peer it is with and the frames held back by a delay.
#[derive(Debug)]
pub struct LinkFaults {
    faults: Arc<Faults>,
    peer: String,
    /// Received frames and when each may be handled, oldest first; at most
    /// [`HELD_FRAMES_MAX`].
    held: VecDeque<(Instant, PeerMessage)>,
    /// When the newest held frame is released: a later frame is never released before it,
    /// even if the delay was lowered in between.
    release_last: Option<Instant>,
}

impl LinkFaults {
    /// The peer's node id.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Takes a frame that arrived at `now`: drops the link when the peer is blocked or the
    /// loss draw says so, else holds the frame until its release time.
    ///
    /// # Errors
    /// [`LinkError::Injected`]: the link must close.
    ///
    /// # Panics
    /// When more than [`HELD_FRAMES_MAX`] frames would be held (the reader must wait first).
    pub fn on_arrival(&mut self, msg: PeerMessage, now: Instant) -> Result<(), LinkError> {
        assert!(
            self.held.len() < HELD_FRAMES_MAX,
            "held frames {} at the bound {HELD_FRAMES_MAX}",
            self.held.len()
        );
        let (delay, loss) = {
            let spec = self.faults.spec.borrow();
            if spec.blocks(&self.peer) {
                return Err(blocked(&self.peer));
            }
            (spec.delay_for(&self.peer), spec.loss_for(&self.peer))
        };
        if loss > 0.0 && self.faults.draw() < loss {
            return Err(LinkError::Injected(format!(
                "link with `{}` dropped (loss {loss})",
                self.peer
            )));
        }
        let at = (now + delay).max(self.release_last.unwrap_or(now));
        self.release_last = Some(at);
        self.held.push_back((at, msg));
        Ok(())
    }

    /// The oldest held frame, if its release time has come by `now`.
    ///
    /// # Errors
    /// [`LinkError::Injected`] when the peer has been blocked meanwhile.
    pub fn pop_due(&mut self, now: Instant) -> Result<Option<PeerMessage>, LinkError> {
        self.faults.check(&self.peer)?;
        match self.held.front() {
            Some((at, _)) if *at <= now => Ok(self.held.pop_front().map(|(_, m)| m)),
            _ => Ok(None),
        }
    }

    /// When the oldest held frame is released.
    pub fn next_release(&self) -> Option<Instant> {
        self.held.front().map(|(at, _)| *at)
    }

    /// Whether no more frames may be held.
    pub fn is_full(&self) -> bool {
        self.held.len() >= HELD_FRAMES_MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replikv_core::Lsn;

    fn faults(spec: FaultSpec) -> Arc<Faults> {
        let f = Arc::new(Faults::with_seed(true, 42));
        f.set(spec).unwrap();
        f
    }

    fn ack(n: u64) -> PeerMessage {
        PeerMessage::Ack {
            epoch: replikv_core::Epoch(1),
            durable: Lsn(n),
            applied: Lsn(n),
        }
    }

    fn lsn_of(m: &PeerMessage) -> u64 {
        match m {
            PeerMessage::Ack { durable, .. } => durable.0,
            other => panic!("not an ack: {}", other.kind()),
        }
    }

    #[test]
    fn a_peers_own_entry_wins_over_the_wildcard() {
        let spec: FaultSpec = serde_json::from_str(
            r#"{"block":["a"],"delay_ms":{"*":10,"b":20},"loss":{"*":0.5,"b":0}}"#,
        )
        .unwrap();
        assert!(spec.blocks("a"));
        assert!(!spec.blocks("b"));
        assert_eq!(spec.delay_for("b"), Duration::from_millis(20));
        assert_eq!(spec.delay_for("c"), Duration::from_millis(10));
        assert!(spec.loss_for("b") == 0.0);
        assert!(spec.loss_for("c") == 0.5);
        let all = FaultSpec {
            block: [ALL_PEERS.to_string()].into(),
            ..FaultSpec::default()
        };
        assert!(all.blocks("anyone"));
    }

    #[test]
    fn out_of_bounds_settings_are_refused_and_change_nothing() {
        let f = faults(FaultSpec {
            block: ["a".to_string()].into(),
            ..FaultSpec::default()
        });
        let before = f.spec();
        let bad: &[(&str, FaultSpec)] = &[
            (
                "loss",
                FaultSpec {
                    loss: [("a".to_string(), 1.5)].into(),
                    ..FaultSpec::default()
                },
            ),
            (
                "loss",
                FaultSpec {
                    loss: [("a".to_string(), f64::NAN)].into(),
                    ..FaultSpec::default()
                },
            ),
            (
                "delay_ms",
                FaultSpec {
                    delay_ms: [("a".to_string(), DELAY_MS_MAX + 1)].into(),
                    ..FaultSpec::default()
                },
            ),
            (
                "not a node id",
                FaultSpec {
                    block: ["has space".to_string()].into(),
                    ..FaultSpec::default()
                },
            ),
            (
                "not a node id",
                FaultSpec {
                    block: [String::new()].into(),
                    ..FaultSpec::default()
                },
            ),
            (
                "clock_skew_ms",
                FaultSpec {
                    clock_skew_ms: CLOCK_SKEW_MS_MAX + 1,
                    ..FaultSpec::default()
                },
            ),
            (
                "clock_skew_ms",
                FaultSpec {
                    clock_skew_ms: i64::MIN,
                    ..FaultSpec::default()
                },
            ),
        ];
        for (needle, spec) in bad {
            let err = f.set(spec.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
            assert_eq!(f.spec(), before);
        }
    }

    #[test]
    fn clock_skew_is_bounded_both_ways_and_counts_as_a_fault() {
        // Validation only: setting a skew would shift the clock of every test in this process.
        for ms in [-CLOCK_SKEW_MS_MAX, -1, 1, CLOCK_SKEW_MS_MAX] {
            let spec = FaultSpec {
                clock_skew_ms: ms,
                ..FaultSpec::default()
            };
            assert_eq!(spec.validate(), Ok(()), "{ms}");
            assert!(!spec.is_empty(), "{ms}");
        }
        for ms in [CLOCK_SKEW_MS_MAX + 1, -CLOCK_SKEW_MS_MAX - 1, i64::MAX] {
            let spec = FaultSpec {
                clock_skew_ms: ms,
                ..FaultSpec::default()
            };
            assert_eq!(spec.validate(), Err(FaultSpecError::ClockSkew(ms)));
        }
        let spec: FaultSpec = serde_json::from_str(r#"{"clock_skew_ms": -2500}"#).unwrap();
        assert_eq!(spec.clock_skew_ms, -2500);
        assert!(serde_json::from_str::<FaultSpec>(r#"{"clock_skew_ms": 1.5}"#).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<FaultSpec>(r#"{"blok":["a"]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `blok`"), "{err}");
    }

    #[test]
    fn a_disabled_state_blocks_nothing_and_gives_no_link_state() {
        let f = Arc::new(Faults::with_seed(false, 1));
        assert!(!f.blocks("a"));
        assert!(f.check("a").is_ok());
        assert!(f.for_link("a").is_none());
    }

    #[test]
    fn delayed_frames_are_released_in_order_after_the_delay() {
        let f = faults(FaultSpec {
            delay_ms: [("a".to_string(), 100)].into(),
            ..FaultSpec::default()
        });
        let mut link = f.for_link("a").unwrap();
        let t0 = Instant::now();
        link.on_arrival(ack(1), t0).unwrap();
        // The delay is lowered: the next frame still waits for the one before it.
        f.set(FaultSpec::default()).unwrap();
        link.on_arrival(ack(2), t0 + Duration::from_millis(10))
            .unwrap();
        assert!(link
            .pop_due(t0 + Duration::from_millis(99))
            .unwrap()
            .is_none());
        assert_eq!(link.next_release(), Some(t0 + Duration::from_millis(100)));
        let at = t0 + Duration::from_millis(100);
        assert_eq!(lsn_of(&link.pop_due(at).unwrap().unwrap()), 1);
        assert_eq!(lsn_of(&link.pop_due(at).unwrap().unwrap()), 2);
        assert!(link.pop_due(at).unwrap().is_none());
    }

    #[test]
    fn blocking_fails_held_and_new_frames() {
        let f = faults(FaultSpec::default());
        let mut link = f.for_link("a").unwrap();
        let t0 = Instant::now();
        link.on_arrival(ack(1), t0).unwrap();
        f.set(FaultSpec {
            block: ["a".to_string()].into(),
            ..FaultSpec::default()
        })
        .unwrap();
        assert!(matches!(link.pop_due(t0), Err(LinkError::Injected(_))));
        assert!(matches!(
            link.on_arrival(ack(2), t0),
            Err(LinkError::Injected(_))
        ));
        f.heal();
        assert!(f.spec().is_empty());
        assert_eq!(lsn_of(&link.pop_due(t0).unwrap().unwrap()), 1);
    }

    #[test]
    fn loss_drops_links_at_about_the_given_rate() {
        let f = faults(FaultSpec {
            loss: [("a".to_string(), 0.25), ("never".to_string(), 0.0)].into(),
            ..FaultSpec::default()
        });
        let t0 = Instant::now();
        let trials = 4000;
        let mut dropped = 0;
        for _ in 0..trials {
            let mut link = f.for_link("a").unwrap();
            if link.on_arrival(ack(1), t0).is_err() {
                dropped += 1;
            }
            let mut never = f.for_link("never").unwrap();
            assert!(never.on_arrival(ack(1), t0).is_ok());
        }
        // 25% of 4000 is 1000, with a standard deviation near 27.
        assert!((850..1150).contains(&dropped), "dropped {dropped}");
        f.set(FaultSpec {
            loss: [("a".to_string(), 1.0)].into(),
            ..FaultSpec::default()
        })
        .unwrap();
        let mut link = f.for_link("a").unwrap();
        assert!(link.on_arrival(ack(1), t0).is_err());
    }

    #[test]
    fn draws_stay_in_the_unit_interval() {
        let f = Faults::with_seed(true, 0);
        for _ in 0..10_000 {
            let x = f.draw();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }
}
