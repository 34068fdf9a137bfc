//! The nemesis: faults injected into the local cluster while the workload runs, each bounded
//! in time, and every one undone by the end.
//!
//! | fault | how | undone by |
//! |---|---|---|
//! | `kill` | SIGKILL to the node's process (`kill -9`) | starting it again with the same arguments |
//! | `pause` | SIGSTOP | SIGCONT |
//! | `partition` | the node's fault-injection hook (`POST /faults` on the admin port of every node): the chosen node blocks every peer and every peer blocks it | `DELETE /faults` on every node |
//!
//! A scheduler draws everything from the seed: the gap before the next fault, which fault
//! (dealt in shuffled rounds holding every chosen kind once; a fault that cannot start yet
//! keeps its turn), which node, and how long it lasts. Two faults never concern the same node
//! at once, at most [`NemesisConfig::concurrent_max`] are active together, and a partition
//! waits until no other fault is active (it concerns every node). No fault lasts past
//! [`NemesisConfig::end_at`], and none starts too late to last its shortest length. Each fault
//! and its end are recorded as [`FaultEvent`]s: `kill` / `restart`, `pause` / `resume`,
//! `partition` / `heal`, naming the node by its client address (for a partition, the node cut
//! off from all others).

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
}

impl FaultKind {
    /// The event names of the fault's start and end.
    #[must_use]
    pub fn event_names(self) -> (&'static str, &'static str) {
        match self {
            FaultKind::Kill => ("kill", "restart"),
            FaultKind::Pause => ("pause", "resume"),
            FaultKind::Partition => ("partition", "heal"),
        }
    }
}

/// Parses `kill,pause,partition` (any subset, any order) or `none`.
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
            "partition" => FaultKind::Partition,
            other => {
                return Err(format!(
                    "unknown fault `{other}`: expected kill, pause, partition or none"
                ))
            }
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

    fn record(&mut self, at_us: u64, kind: &str, node: usize) {
        let addr = self.cluster.specs()[node].addr();
        self.log.events.push(FaultEvent {
            at_us,
            kind: kind.to_string(),
            nodes: vec![addr],
        });
    }

    /// Starts a fault of `kind` on a node no active fault concerns.
    async fn start_one(&mut self, rng: &mut Rng, kind: FaultKind, until: Instant) -> Started {
        let n = self.cluster.specs().len();
        let now = Instant::now();
        let rested = |i: usize| self.ended[i].is_none_or(|at| now >= at + COOLDOWN);
        let free: Vec<usize> = (0..n)
            .filter(|&i| self.active.iter().all(|a| a.node != i) && self.cluster.is_up(i))
            .filter(|&i| rested(i))
            .collect();
        // A partition concerns every node: it waits until nothing else is in effect and every
        // node has rested.
        let blocked =
            kind == FaultKind::Partition && (!self.active.is_empty() || n < 2 || free.len() < n);
        let partitioned = self.active.iter().any(|a| a.kind == FaultKind::Partition);
        if free.is_empty() || blocked || partitioned {
            return Started::Blocked;
        }
        let node = free[rng.index(free.len())];
        let at_us = self.now_us();
        let name = self.cluster.specs()[node].name.clone();
        let done = match kind {
            FaultKind::Kill => self.cluster.kill(node).await.map_err(|e| e.to_string()),
            FaultKind::Pause => self.cluster.pause(node).map_err(|e| e.to_string()),
            FaultKind::Partition => self.isolate(node).await,
        };
        match done {
            Ok(()) => {
                self.record(at_us, kind.event_names().0, node);
                self.active.push(Active { kind, node, until });
                Started::Yes
            }
            Err(e) => {
                let (start, _) = kind.event_names();
                self.log.problems.push(format!("{start} {name}: {e}"));
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
                FaultKind::Partition => self.heal().await,
            };
            let (_, end) = a.kind.event_names();
            let at_us = self.now_us();
            self.record(at_us, end, a.node);
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

    /// Cuts node `node` off from every other node, on both sides of each link. When any node
    /// refuses, every node is healed again and the error returned.
    async fn isolate(&mut self, node: usize) -> Result<(), String> {
        let specs = self.cluster.specs().to_vec();
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        for (j, spec) in specs.iter().enumerate() {
            let block: Vec<&String> = if j == node {
                names.iter().filter(|n| **n != names[node]).collect()
            } else {
                vec![&names[node]]
            };
            let body = serde_json::json!({ "block": block }).to_string();
            if let Err(e) = hook(&spec.admin_addr(), "POST", Some(&body)).await {
                let healed = self.heal().await;
                return Err(format!(
                    "{}'s fault hook refused: {e}{}",
                    spec.name,
                    healed
                        .err()
                        .map(|h| format!("; healing: {h}"))
                        .unwrap_or_default()
                ));
            }
        }
        Ok(())
    }

    /// Removes every injected network fault from every node.
    async fn heal(&mut self) -> Result<(), String> {
        heal_all(self.cluster).await
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
