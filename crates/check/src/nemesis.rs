//! The nemesis: faults injected into the local cluster while the workload runs, each bounded
//! in time, and every one undone by the end.
//!
//! | fault | how | undone by |
//! |---|---|---|
//! | `kill` | SIGKILL to the node's process (`kill -9`) | starting it again with the same arguments |
//! | `pause` | SIGSTOP | SIGCONT |
//! | `partition` | with network namespaces (`--net namespaces`): the node's port on the switch's bridge goes down, which cuts clients off too; otherwise the nodes' fault-injection hook (`POST /faults` on the admin port of every node): the chosen node blocks every peer and every peer blocks it, clients still reach it | the bridge port up again; or the hook setting removed |
//! | `delay` | the hook: frames the chosen node receives from any peer (`*`), and frames every other node receives from it, are held [`DELAY_MS`] | the setting removed |
//! | `loss` | the hook: the same links, both ways, drop with probability [`LOSS_PERCENT`] per frame | the setting removed |
//! | `clock` | the hook: the chosen node's wall clock runs ahead or behind by [`SKEW_MS`] (either sign) | the setting removed |
//!
//! A scheduler draws everything from the seed: the gap before the next fault, which fault
//! (dealt in shuffled rounds holding every chosen kind once; a fault that cannot start yet
//! keeps its turn), which node, how long it lasts and how strong it is. Two faults never
//! target the same node at once, at most [`NemesisConfig::concurrent_max`] are active
//! together, and a partition waits until no other fault is active (it concerns every node).
//! Delay and loss set something on every node, so they wait while a node is killed or paused
//! (a restarted node would come back without the setting, a paused one cannot take it), and a
//! kill or pause waits while a delay or loss is in force. Hook settings of faults active
//! together are merged per node (delays add up, losses combine) and every node's setting is
//! rewritten whenever a fault starts or ends. No fault lasts past [`NemesisConfig::end_at`],
//! and none starts too late to last its shortest length. Each fault and its end are recorded
//! as [`FaultEvent`]s: `kill` / `restart`, `pause` / `resume`, `partition` / `heal`, `delay` /
//! `undelay`, `loss` / `unloss`, `skew` / `unskew`, naming the node by its client address (for
//! a partition, the node cut off from all others); its strength goes to
//! [`NemesisLog::params`].
//!
//! With automatic failover ([`NemesisConfig::cluster_name`] set), a kill, pause or partition
//! first asks the nodes who leads (as the clients do, [`crate::endpoints::discover_round`])
//! and hits that node with probability [`LEADER_TARGET_PERCENT`] when it is free, any free node
//! otherwise; its start event says whether its node led ([`FaultEvent::leader`]), which is
//! what the failover time is measured from. A killed leader comes back as a replica on its
//! own.

use crate::history::FaultEvent;
use crate::launcher::LocalCluster;
use crate::rng::Rng;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};

/// Most faults one run injects (a bound on the scheduler; runs end by time first).
pub const FAULTS_MAX: usize = 10_000;
/// Bound on one request to a node's fault-injection hook.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries of one request to the fault-injection hook (a restarted node may still be starting).
pub const HOOK_TRIES_MAX: usize = 5;
/// A node is left alone this long after a fault on it ends, so that a restarted node has
/// started (and a resumed one caught up) before it is hit again.
pub const COOLDOWN: Duration = Duration::from_secs(1);
/// Longest response read from the hook.
const HOOK_RESPONSE_BYTES_MAX: u64 = 64 * 1024;
/// Range of a `delay` fault's added latency per direction, ms.
pub const DELAY_MS: (u64, u64) = (50, 500);
/// Range of a `loss` fault's probability that a frame drops its link, percent.
pub const LOSS_PERCENT: (u64, u64) = (5, 30);
/// Range of a `clock` fault's skew, ms, drawn with either sign.
pub const SKEW_MS: (u64, u64) = (100, 5000);
/// With automatic failover, the chance (percent) that a kill, pause or partition hits the
/// node that leads rather than any free node.
pub const LEADER_TARGET_PERCENT: u64 = 70;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// kill -9, then a restart.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Cut one node off from its peers, then heal.
    Partition,
    /// Extra latency on one node's replication links, both ways.
    Delay,
    /// Random loss on one node's replication links, both ways.
    Loss,
    /// One node's wall clock skewed.
    Clock,
}

impl FaultKind {
    /// Every kind, in the order `--nemesis` lists them.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Delay,
        FaultKind::Loss,
        FaultKind::Clock,
    ];

    /// Its name in `--nemesis`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Delay => "delay",
            FaultKind::Loss => "loss",
            FaultKind::Clock => "clock",
        }
    }

    /// The event names of the fault's start and end.
    #[must_use]
    pub fn event_names(self) -> (&'static str, &'static str) {
        match self {
            FaultKind::Kill => ("kill", "restart"),
            FaultKind::Pause => ("pause", "resume"),
            FaultKind::Partition => ("partition", "heal"),
            FaultKind::Delay => ("delay", "undelay"),
            FaultKind::Loss => ("loss", "unloss"),
            FaultKind::Clock => ("skew", "unskew"),
        }
    }

    /// Whether the fault goes through the nodes' fault-injection hook when partitions are
    /// made with network namespaces (`namespaces`) or not.
    #[must_use]
    pub fn uses_hook(self, namespaces: bool) -> bool {
        match self {
            FaultKind::Kill | FaultKind::Pause => false,
            FaultKind::Partition => !namespaces,
            FaultKind::Delay | FaultKind::Loss | FaultKind::Clock => true,
        }
    }
}

/// Parses `kill,pause,partition,delay,loss,clock` (any subset, any order) or `none`.
///
/// # Errors
/// An unknown name, or `none` with others.
pub fn parse_kinds(text: &str) -> Result<Vec<FaultKind>, String> {
    let mut kinds = Vec::new();
    let names: Vec<&str> = text.split(',').map(str::trim).collect();
    for name in &names {
        let kind = match *name {
            "none" if names.len() == 1 => continue,
            "none" => return Err("`none` cannot be combined with faults".to_string()),
            "kill" => FaultKind::Kill,
            "pause" => FaultKind::Pause,
            other => match FaultKind::ALL.iter().find(|k| k.name() == other) {
                Some(kind) => *kind,
                None => {
                    return Err(format!(
                        "unknown fault `{other}`: expected kill, pause, partition, delay, loss, \
                         clock or none"
                    ))
                }
            },
        };
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

/// When and how often to inject faults.
#[derive(Clone, Debug)]
pub struct NemesisConfig {
    /// The faults to choose from; empty for none.
    pub kinds: Vec<FaultKind>,
    /// Seed of every choice.
    pub seed: u64,
    /// No fault starts before this, from the run's start.
    pub start_at: Duration,
    /// Every fault has ended by this, from the run's start.
    pub end_at: Duration,
    /// Shortest and longest gap between two fault starts.
    pub gap: (Duration, Duration),
    /// Shortest and longest fault.
    pub length: (Duration, Duration),
    /// Most faults active at once.
    pub concurrent_max: usize,
    /// With automatic failover, the nodes' cluster name (`--cluster-name`), to ask who leads;
    /// `None` with a fixed leader, when every node is as likely a target.
    pub cluster_name: Option<String>,
}

/// What the nemesis did.
#[derive(Clone, Debug, Default)]
pub struct NemesisLog {
    /// Faults and their ends, in time order.
    pub events: Vec<FaultEvent>,
    /// Faults that could not be injected or undone, with why.
    pub problems: Vec<String>,
    /// Nodes that exited without being killed, noticed during the run.
    pub crashes: Vec<String>,
    /// The strength of each fault that has one (delay, loss, skew), by its start.
    pub params: Vec<FaultParam>,
}

/// How strong one fault was.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FaultParam {
    /// When it started, µs since the run started (as its [`FaultEvent`]).
    pub at_us: u64,
    /// Its start event's name.
    pub kind: String,
    /// The node's client address.
    pub node: String,
    /// `250 ms`, `12%`, `-1800 ms`.
    pub value: String,
}

/// The strength of a fault, drawn from the seed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Strength {
    /// Kill, pause, partition.
    Plain,
    /// Added latency per direction, ms.
    DelayMs(u64),
    /// Probability that a frame drops its link.
    Loss(f64),
    /// Clock skew, ms.
    SkewMs(i64),
}

impl Strength {
    fn draw(kind: FaultKind, rng: &mut Rng) -> Strength {
        match kind {
            FaultKind::Kill | FaultKind::Pause | FaultKind::Partition => Strength::Plain,
            FaultKind::Delay => Strength::DelayMs(rng.between(DELAY_MS.0, DELAY_MS.1)),
            FaultKind::Loss => {
                Strength::Loss(rng.between(LOSS_PERCENT.0, LOSS_PERCENT.1) as f64 / 100.0)
            }
            FaultKind::Clock => {
                let magnitude = i64::try_from(rng.between(SKEW_MS.0, SKEW_MS.1)).unwrap_or(0);
                Strength::SkewMs(if rng.index(2) == 0 {
                    magnitude
                } else {
                    -magnitude
                })
            }
        }
    }

    fn text(self) -> Option<String> {
        match self {
            Strength::Plain => None,
            Strength::DelayMs(ms) => Some(format!("{ms} ms")),
            Strength::Loss(p) => Some(format!("{:.0}%", p * 100.0)),
            Strength::SkewMs(ms) => Some(format!("{ms:+} ms")),
        }
    }
}

/// The fault-injection setting of one node, merged from every hook fault in force; the JSON
/// body of `POST /faults`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct HookSpec {
    block: std::collections::BTreeSet<String>,
    delay_ms: std::collections::BTreeMap<String, u64>,
    loss: std::collections::BTreeMap<String, f64>,
    clock_skew_ms: i64,
}

impl HookSpec {
    /// Whether nothing is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
            && self.delay_ms.is_empty()
            && self.loss.is_empty()
            && self.clock_skew_ms == 0
    }
}

/// The hook setting of node `node` (of the nodes named `names`) for the faults `active` in
/// force. A peer's own entry wins over the `*` entry on the node, so a wildcard is folded
/// into every own entry: delays add up, losses combine as independent draws.
fn hook_spec(active: &[(FaultKind, usize, Strength)], names: &[String], node: usize) -> HookSpec {
    let mut spec = HookSpec::default();
    let (mut delay_all, mut pass_all) = (0u64, 1.0f64);
    for &(kind, target, strength) in active {
        let mine = target == node;
        match (kind, strength) {
            (FaultKind::Partition, _) if mine => spec.block.extend(
                names
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != node)
                    .map(|(_, n)| n.clone()),
            ),
            (FaultKind::Partition, _) => {
                spec.block.insert(names[target].clone());
            }
            (FaultKind::Delay, Strength::DelayMs(ms)) if mine => delay_all += ms,
            (FaultKind::Delay, Strength::DelayMs(ms)) => {
                *spec.delay_ms.entry(names[target].clone()).or_insert(0) += ms;
            }
            (FaultKind::Loss, Strength::Loss(p)) if mine => pass_all *= 1.0 - p,
            (FaultKind::Loss, Strength::Loss(p)) => {
                let pass = spec.loss.entry(names[target].clone()).or_insert(0.0);
                *pass = 1.0 - (1.0 - *pass) * (1.0 - p);
            }
            (FaultKind::Clock, Strength::SkewMs(ms)) if mine => spec.clock_skew_ms += ms,
            _ => {}
        }
    }
    if delay_all > 0 {
        spec.delay_ms.values_mut().for_each(|ms| *ms += delay_all);
        spec.delay_ms.insert("*".to_string(), delay_all);
    }
    if pass_all < 1.0 {
        spec.loss
            .values_mut()
            .for_each(|p| *p = 1.0 - (1.0 - *p) * pass_all);
        spec.loss.insert("*".to_string(), 1.0 - pass_all);
    }
    spec
}

/// The kinds of fault, dealt in rounds: each round holds every kind once, shuffled, so that
/// every kind gets its share of a run whatever the draws.
struct Bag {
    kinds: Vec<FaultKind>,
    round: Vec<FaultKind>,
}

impl Bag {
    fn new(kinds: &[FaultKind]) -> Bag {
        Bag {
            kinds: kinds.to_vec(),
            round: Vec::new(),
        }
    }

    /// The next kind (`kinds` must not be empty).
    fn next(&mut self, rng: &mut Rng) -> FaultKind {
        if self.round.is_empty() {
            self.round.clone_from(&self.kinds);
            // Fisher–Yates.
            for i in (1..self.round.len()).rev() {
                let j = rng.index(i + 1);
                self.round.swap(i, j);
            }
        }
        self.round.pop().unwrap_or(FaultKind::Pause)
    }
}

/// Whether a fault could be started.
enum Started {
    /// It is in effect.
    Yes,
    /// Not now: the nodes it needs are busy or resting.
    Blocked,
    /// Injecting it failed (recorded as a problem).
    Failed,
}

/// A fault in effect.
struct Active {
    kind: FaultKind,
    node: usize,
    strength: Strength,
    until: Instant,
}

/// Runs the nemesis until [`NemesisConfig::end_at`] or until `stop` turns true, then undoes
/// every fault still in effect.
pub async fn run(
    cfg: &NemesisConfig,
    cluster: &mut LocalCluster,
    clock: Instant,
    mut stop: watch::Receiver<bool>,
) -> NemesisLog {
    let cluster_len = cluster.specs().len();
    let mut nemesis = Nemesis {
        cluster,
        cluster_name: cfg.cluster_name.clone(),
        clock,
        log: NemesisLog::default(),
        active: Vec::new(),
        ended: vec![None; cluster_len],
    };
    let mut rng = Rng::stream(cfg.seed, 0);
    let end = clock + cfg.end_at;
    let mut next_start = clock + cfg.start_at;
    let mut started = 0usize;
    let mut pending: Option<FaultKind> = None;
    let mut bag = Bag::new(&cfg.kinds);
    // Each turn starts a fault or ends one, so this bounds the loop.
    for _ in 0..FAULTS_MAX * 2 + 2 {
        if cfg.kinds.is_empty() {
            break;
        }
        let next_end = nemesis.active.iter().map(|a| a.until).min();
        // A fault starts only if it can last its shortest length before the end.
        let may_start = next_start + cfg.length.0 <= end && started < FAULTS_MAX;
        let wake = match (next_end, may_start) {
            (Some(e), true) => e.min(next_start),
            (Some(e), false) => e,
            (None, true) => next_start,
            (None, false) => break,
        };
        tokio::select! {
            () = sleep_until(wake) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        let now = Instant::now();
        // A node that exited on its own is a finding, not a fault of ours; it is not chosen
        // for faults any more and is started again after the run.
        let crashed = nemesis.cluster.reap_exited();
        nemesis.log.crashes.extend(crashed);
        nemesis.end_due(now).await;
        if may_start && now >= next_start {
            let gap = draw(&mut rng, cfg.gap);
            next_start = now + gap;
            if nemesis.active.len() < cfg.concurrent_max {
                // A fault that cannot start yet (its node is busy or resting, or a partition
                // waits for the others to end) keeps its turn, so that every kind gets its
                // share.
                let kind = match pending.take() {
                    Some(kind) => kind,
                    None => bag.next(&mut rng),
                };
                let length = draw(&mut rng, cfg.length);
                let until = (now + length).min(end);
                match nemesis.start_one(&mut rng, kind, until).await {
                    Started::Yes => started += 1,
                    Started::Blocked => pending = Some(kind),
                    Started::Failed => {}
                }
            }
        }
    }
    nemesis
        .end_due(Instant::now() + Duration::from_secs(86_400))
        .await;
    nemesis.log
}

/// A duration drawn uniformly in `range` (in milliseconds).
fn draw(rng: &mut Rng, range: (Duration, Duration)) -> Duration {
    let lo = u64::try_from(range.0.as_millis()).unwrap_or(u64::MAX);
    let hi = u64::try_from(range.1.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.between(lo, hi))
}

struct Nemesis<'a> {
    cluster: &'a mut LocalCluster,
    /// [`NemesisConfig::cluster_name`].
    cluster_name: Option<String>,
    clock: Instant,
    log: NemesisLog,
    active: Vec<Active>,
    /// Per node, when its last fault ended.
    ended: Vec<Option<Instant>>,
}

impl Nemesis<'_> {
    fn now_us(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn record(&mut self, at_us: u64, kind: &str, node: usize, leader: bool) {
        let addr = self.cluster.specs()[node].addr();
        self.log.events.push(FaultEvent {
            at_us,
            kind: kind.to_string(),
            nodes: vec![addr],
            leader,
        });
    }

    /// With automatic failover, before a fault that can take a leader away: the node that
    /// leads now, by the majority of the nodes' answers; `None` otherwise, or when there is
    /// no majority.
    async fn leader(&self, kind: FaultKind) -> Option<usize> {
        let name = self.cluster_name.as_deref()?;
        if !matches!(
            kind,
            FaultKind::Kill | FaultKind::Pause | FaultKind::Partition
        ) {
            return None;
        }
        let addrs: Vec<String> = self.cluster.specs().iter().map(|s| s.addr()).collect();
        let leader = crate::endpoints::discover_round(&addrs, name).await?;
        addrs.iter().position(|a| *a == leader)
    }

    /// Whether a fault of `kind` may start on a node now, given the faults in force.
    fn allowed(&self, kind: FaultKind, n: usize, free: &[usize]) -> bool {
        let any = |k: FaultKind| self.active.iter().any(|a| a.kind == k);
        if any(FaultKind::Partition) || free.is_empty() {
            return false;
        }
        match kind {
            // It concerns every node: it waits until nothing else is in effect and every
            // node has rested.
            FaultKind::Partition => self.active.is_empty() && n >= 2 && free.len() == n,
            // They set something on every node, which must be up and running to take it.
            FaultKind::Delay | FaultKind::Loss => {
                n >= 2
                    && !any(FaultKind::Kill)
                    && !any(FaultKind::Pause)
                    && (0..n).all(|i| self.cluster.is_up(i))
            }
            // A restarted node would come back without the delay or loss setting on it, and a
            // paused one could not have it removed.
            FaultKind::Kill | FaultKind::Pause => !any(FaultKind::Delay) && !any(FaultKind::Loss),
            FaultKind::Clock => true,
        }
    }

    /// Starts a fault of `kind` on a node no active fault targets.
    async fn start_one(&mut self, rng: &mut Rng, kind: FaultKind, until: Instant) -> Started {
        let n = self.cluster.specs().len();
        let now = Instant::now();
        let rested = |i: usize| self.ended[i].is_none_or(|at| now >= at + COOLDOWN);
        let free: Vec<usize> = (0..n)
            .filter(|&i| self.active.iter().all(|a| a.node != i) && self.cluster.is_up(i))
            .filter(|&i| rested(i))
            .collect();
        if !self.allowed(kind, n, &free) {
            return Started::Blocked;
        }
        let leader = match self.leader(kind).await {
            Some(l) if free.contains(&l) => Some(l),
            _ => None,
        };
        let node = match leader {
            Some(l) if rng.below(100) < LEADER_TARGET_PERCENT => l,
            _ => free[rng.index(free.len())],
        };
        let led = leader == Some(node);
        let strength = Strength::draw(kind, rng);
        let at_us = self.now_us();
        let name = self.cluster.specs()[node].name.clone();
        self.active.push(Active {
            kind,
            node,
            strength,
            until,
        });
        let done = match kind {
            FaultKind::Kill => self.cluster.kill(node).await.map_err(|e| e.to_string()),
            FaultKind::Pause => self.cluster.pause(node).map_err(|e| e.to_string()),
            FaultKind::Partition if self.cluster.uses_namespaces() => {
                self.cluster.cut(node).map_err(|e| e.to_string())
            }
            _ => self.apply_hook(kind, node).await,
        };
        let (start, _) = kind.event_names();
        match done {
            Ok(()) => {
                self.record(at_us, start, node, led);
                if let Some(value) = strength.text() {
                    let node = self.cluster.specs()[node].addr();
                    self.log.params.push(FaultParam {
                        at_us,
                        kind: start.to_string(),
                        node,
                        value,
                    });
                }
                Started::Yes
            }
            Err(e) => {
                self.active.pop();
                let mut why = format!("{start} {name}: {e}");
                if kind.uses_hook(self.cluster.uses_namespaces()) {
                    // Whatever part of it was set is taken back.
                    if let Err(undo) = self.apply_hook(kind, node).await {
                        why.push_str(&format!("; taking it back: {undo}"));
                    }
                }
                self.log.problems.push(why);
                Started::Failed
            }
        }
    }

    /// Ends every fault due by `now`, oldest first.
    async fn end_due(&mut self, now: Instant) {
        let mut due: Vec<Active> = Vec::new();
        let mut still = Vec::new();
        for a in self.active.drain(..) {
            if a.until <= now {
                due.push(a);
            } else {
                still.push(a);
            }
        }
        self.active = still;
        due.sort_by_key(|a| a.until);
        for a in due {
            let name = self.cluster.specs()[a.node].name.clone();
            let undone = match a.kind {
                FaultKind::Kill => self.cluster.restart(a.node).map_err(|e| e.to_string()),
                FaultKind::Pause => self.cluster.resume(a.node).map_err(|e| e.to_string()),
                FaultKind::Partition if self.cluster.uses_namespaces() => {
                    self.cluster.rejoin(a.node).map_err(|e| e.to_string())
                }
                _ => self.apply_hook(a.kind, a.node).await,
            };
            let (_, end) = a.kind.event_names();
            let at_us = self.now_us();
            self.record(at_us, end, a.node, false);
            self.ended[a.node] = Some(Instant::now());
            if a.kind == FaultKind::Partition {
                self.ended
                    .iter_mut()
                    .for_each(|e| *e = Some(Instant::now()));
            }
            if let Err(e) = undone {
                self.log.problems.push(format!("{end} {name}: {e}"));
            }
        }
    }

    /// Writes the merged hook setting of every node a fault of `kind` on `node` concerns,
    /// after that fault was added to or removed from the active ones: `POST /faults`, or
    /// `DELETE /faults` when nothing is left.
    async fn apply_hook(&mut self, kind: FaultKind, node: usize) -> Result<(), String> {
        let specs = self.cluster.specs().to_vec();
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let namespaces = self.cluster.uses_namespaces();
        let active: Vec<(FaultKind, usize, Strength)> = self
            .active
            .iter()
            .filter(|a| a.kind.uses_hook(namespaces))
            .map(|a| (a.kind, a.node, a.strength))
            .collect();
        let concerned: Vec<usize> = if kind == FaultKind::Clock {
            vec![node]
        } else {
            (0..specs.len()).collect()
        };
        let mut errors = Vec::new();
        for j in concerned {
            let spec = hook_spec(&active, &names, j);
            let done = if spec.is_empty() {
                hook(&specs[j].admin_addr(), "DELETE", None).await
            } else {
                let body = serde_json::to_string(&spec).unwrap_or_default();
                hook(&specs[j].admin_addr(), "POST", Some(&body)).await
            };
            if let Err(e) = done {
                errors.push(format!("{}'s fault hook refused: {e}", names[j]));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// `DELETE /faults` on every node; the nodes that refused, with why.
///
/// # Errors
/// Some node did not accept the request (after [`HOOK_TRIES_MAX`] tries).
pub async fn heal_all(cluster: &LocalCluster) -> Result<(), String> {
    let mut errors = Vec::new();
    for spec in cluster.specs() {
        if let Err(e) = hook(&spec.admin_addr(), "DELETE", None).await {
            errors.push(format!("{}: {e}", spec.name));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// One request to a node's fault-injection hook (`/faults` on its admin port), tried up to
/// [`HOOK_TRIES_MAX`] times 200 ms apart.
async fn hook(admin: &str, method: &str, body: Option<&str>) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..HOOK_TRIES_MAX {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match timeout(HOOK_TIMEOUT, http(admin, method, "/faults", body)).await {
            Ok(Ok(status)) if (200..300).contains(&status) => return Ok(()),
            // A definite refusal (the hook is off, the body is wrong) will not change.
            Ok(Ok(status)) => return Err(format!("{method} /faults answered HTTP {status}")),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no answer within {} s", HOOK_TIMEOUT.as_secs()),
        }
    }
    Err(last)
}

/// A minimal HTTP/1.1 request on a fresh connection; the response's status code.
async fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(addr).await?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream
        .take(HOOK_RESPONSE_BYTES_MAX)
        .read_to_end(&mut response)
        .await?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {:.80}", text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lists_parse_and_refuse_unknown_names() {
        assert_eq!(
            parse_kinds("kill,pause,partition").unwrap(),
            [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition]
        );
        assert_eq!(
            parse_kinds("pause, kill,pause").unwrap(),
            [FaultKind::Pause, FaultKind::Kill]
        );
        assert!(parse_kinds("none").unwrap().is_empty());
        assert!(parse_kinds("none,kill").is_err());
        assert!(parse_kinds("flood").unwrap_err().contains("flood"));
        assert_eq!(
            parse_kinds("clock,delay,loss,kill").unwrap(),
            [
                FaultKind::Clock,
                FaultKind::Delay,
                FaultKind::Loss,
                FaultKind::Kill
            ]
        );
        assert_eq!(
            parse_kinds("kill,pause,partition,delay,loss,clock").unwrap(),
            FaultKind::ALL
        );
        assert!(parse_kinds("skew").unwrap_err().contains("clock"));
        let names: Vec<_> = FaultKind::ALL.iter().map(|k| k.event_names()).collect();
        assert_eq!(
            names[3..],
            [("delay", "undelay"), ("loss", "unloss"), ("skew", "unskew")]
        );
    }

    #[test]
    fn strengths_stay_in_their_ranges_and_skews_take_both_signs() {
        let mut rng = Rng::new(9);
        let (mut ahead, mut behind) = (0, 0);
        for _ in 0..1000 {
            match Strength::draw(FaultKind::Delay, &mut rng) {
                Strength::DelayMs(ms) => assert!((50..=500).contains(&ms), "{ms}"),
                other => panic!("{other:?}"),
            }
            match Strength::draw(FaultKind::Loss, &mut rng) {
                Strength::Loss(p) => assert!((0.05..=0.3).contains(&p), "{p}"),
                other => panic!("{other:?}"),
            }
            match Strength::draw(FaultKind::Clock, &mut rng) {
                Strength::SkewMs(ms) if ms > 0 => {
                    assert!((100..=5000).contains(&ms), "{ms}");
                    ahead += 1;
                }
                Strength::SkewMs(ms) => {
                    assert!((-5000..=-100).contains(&ms), "{ms}");
                    behind += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(
            ahead > 400 && behind > 400,
            "{ahead} ahead, {behind} behind"
        );
        assert_eq!(Strength::draw(FaultKind::Kill, &mut rng), Strength::Plain);
        assert_eq!(Strength::SkewMs(-1800).text().unwrap(), "-1800 ms");
        assert_eq!(Strength::Loss(0.12).text().unwrap(), "12%");
    }

    #[test]
    fn hook_settings_of_faults_in_force_merge_per_node() {
        let names: Vec<String> = (0..3).map(|i| format!("node{i}")).collect();
        let json = |active: &[(FaultKind, usize, Strength)], node| {
            serde_json::to_value(hook_spec(active, &names, node)).unwrap()
        };
        // A delay on node1: node1 delays everyone, the others delay node1.
        let delay = (FaultKind::Delay, 1, Strength::DelayMs(200));
        assert_eq!(json(&[delay], 1)["delay_ms"], serde_json::json!({"*": 200}));
        assert_eq!(
            json(&[delay], 0)["delay_ms"],
            serde_json::json!({"node1": 200})
        );
        // With a second delay on node2, the link between them carries both.
        let delay2 = (FaultKind::Delay, 2, Strength::DelayMs(50));
        assert_eq!(
            json(&[delay, delay2], 1)["delay_ms"],
            serde_json::json!({"*": 200, "node2": 250})
        );
        assert_eq!(
            json(&[delay, delay2], 0)["delay_ms"],
            serde_json::json!({"node1": 200, "node2": 50})
        );
        // Losses combine as independent draws.
        let loss = (FaultKind::Loss, 0, Strength::Loss(0.5));
        let loss2 = (FaultKind::Loss, 1, Strength::Loss(0.5));
        let both = hook_spec(&[loss, loss2], &names, 0);
        assert!((both.loss["*"] - 0.5).abs() < 1e-9);
        assert!((both.loss["node1"] - 0.75).abs() < 1e-9);
        // A skew concerns its node only; a partition blocks both ways.
        let skew = (FaultKind::Clock, 2, Strength::SkewMs(-700));
        assert_eq!(json(&[skew], 2)["clock_skew_ms"], serde_json::json!(-700));
        assert!(hook_spec(&[skew], &names, 0).is_empty());
        let cut = (FaultKind::Partition, 0, Strength::Plain);
        assert_eq!(
            json(&[cut], 0)["block"],
            serde_json::json!(["node1", "node2"])
        );
        assert_eq!(json(&[cut], 2)["block"], serde_json::json!(["node0"]));
        assert!(hook_spec(&[], &names, 0).is_empty());
        // What the nemesis posts is what the node's hook takes.
        let body = serde_json::to_string(&hook_spec(&[delay, loss, skew], &names, 2)).unwrap();
        assert_eq!(
            body,
            r#"{"block":[],"delay_ms":{"node1":200},"loss":{"node0":0.5},"clock_skew_ms":-700}"#
        );
    }

    #[test]
    fn every_round_of_the_bag_deals_each_kind_once() {
        let kinds = [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition];
        let mut bag = Bag::new(&kinds);
        let mut rng = Rng::new(5);
        for _ in 0..10 {
            let mut round: Vec<FaultKind> = (0..3).map(|_| bag.next(&mut rng)).collect();
            round.sort_by_key(|k| *k as u8);
            assert_eq!(round, kinds);
        }
    }

    #[tokio::test]
    async fn http_reads_the_status_code() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"DELETE /faults HTTP/1.1\r\n"));
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
        });
        assert_eq!(http(&addr, "DELETE", "/faults", None).await.unwrap(), 204);
    }
}
