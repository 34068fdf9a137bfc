//! The nodes the clients talk to, and which of them they take for the leader.
//!
//! With a fixed leader (`--failover none`) the leader never changes. With automatic failover
//! (`--failover auto`) it is found by asking every node `SENTINEL get-master-addr-by-name
//! <cluster>` at once ([`discover_round`]) and taking the address more than half of all the
//! nodes name ([`majority`]): a deposed leader cut off from the others may still name itself
//! for a while, and a node restarted from a stale map may name a former leader, but each is
//! one voice against the others, and one voice alone (the others down or paused) is no
//! majority. A client whose operation on the
//! leader fails in a way that says the leader may have moved asks again
//! ([`Endpoints::rediscover`]); one discovery runs at a time, and clients that failed before it
//! finished take its answer rather than asking again. Every change of leader the clients see
//! is kept ([`Endpoints::leader_changes`]), so that the checkers know which reads went to the
//! leader of the moment.

use crate::resp::{Reply, RespConn};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::{sleep, timeout, Instant};

/// Bound on one node's answer to `SENTINEL get-master-addr-by-name`, connection included.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Most rounds of one client's discovery (a round asks every node once).
pub const DISCOVERY_ROUNDS_MAX: u32 = 10;
/// Bound on one client's discovery, all rounds together.
pub const DISCOVERY_TIME_MAX: Duration = Duration::from_secs(3);
/// First wait between two rounds without a majority; it doubles up to
/// [`DISCOVERY_BACKOFF_MAX`].
pub const DISCOVERY_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest wait between two rounds.
pub const DISCOVERY_BACKOFF_MAX: Duration = Duration::from_millis(400);
/// How long a client whose operation failed on the leader keeps looking for another leader
/// while the nodes still name the one that failed (it is being replaced, or it comes back):
/// past the default lease, margin and election (about 0.6 s), the old one is taken again.
pub const MOVE_PATIENCE: Duration = Duration::from_millis(1_500);
/// Wait between rounds while the nodes still name the leader that failed.
pub const MOVE_POLL: Duration = Duration::from_millis(50);

/// Most leader changes kept (a bound on the record; a run sees a few dozen).
pub const LEADER_CHANGES_MAX: usize = 100_000;

/// A change of the leader the clients followed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LeaderChange {
    /// When a client's discovery found it, µs since the run started (0 for the first leader).
    pub at_us: u64,
    /// The new leader's client address.
    pub node: String,
}

/// The leader the clients took at `at_us`, from `changes` in time order.
#[must_use]
pub fn leader_at(changes: &[LeaderChange], at_us: u64) -> Option<&str> {
    let after = changes.partition_point(|c| c.at_us <= at_us);
    after
        .checked_sub(1)
        .and_then(|i| changes.get(i))
        .map(|c| c.node.as_str())
}

/// The nodes, and the leader as the clients know it.
#[derive(Debug)]
pub struct Endpoints {
    /// Every node's client address.
    nodes: Vec<String>,
    /// The cluster name to ask about when following the leader; `None` for a fixed leader.
    cluster_name: Option<String>,
    state: Mutex<State>,
    /// Held while a discovery runs, so that one runs at a time.
    discovery: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct State {
    leader: String,
    /// When the last discovery finished.
    looked_up: Option<Instant>,
    /// Every leader, from when it was found; at most [`LEADER_CHANGES_MAX`].
    changes: Vec<(Instant, String)>,
}

impl Endpoints {
    /// A fixed leader and its replicas.
    #[must_use]
    pub fn fixed(leader: String, replicas: Vec<String>) -> Endpoints {
        let nodes = std::iter::once(leader.clone()).chain(replicas).collect();
        Endpoints::new(nodes, leader, None)
    }

    /// `nodes` under automatic failover, `leader` leading now; the nodes' cluster is
    /// `cluster_name`.
    #[must_use]
    pub fn following(nodes: Vec<String>, leader: String, cluster_name: String) -> Endpoints {
        Endpoints::new(nodes, leader, Some(cluster_name))
    }

    fn new(nodes: Vec<String>, leader: String, cluster_name: Option<String>) -> Endpoints {
        Endpoints {
            nodes,
            cluster_name,
            state: Mutex::new(State {
                leader: leader.clone(),
                looked_up: None,
                changes: vec![(Instant::now(), leader)],
            }),
            discovery: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is replaced field by field with values computed beforehand, so a panic
        // elsewhere while holding the lock cannot leave it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the leader may change (automatic failover).
    #[must_use]
    pub fn follows(&self) -> bool {
        self.cluster_name.is_some()
    }

    /// The leader as last found.
    #[must_use]
    pub fn leader(&self) -> String {
        self.state().leader.clone()
    }

    /// Every node but the leader.
    #[must_use]
    pub fn replicas(&self) -> Vec<String> {
        let leader = self.leader();
        self.nodes
            .iter()
            .filter(|n| **n != leader)
            .cloned()
            .collect()
    }

    /// Every node, the leader first.
    #[must_use]
    pub fn all(&self) -> Vec<String> {
        let leader = self.leader();
        std::iter::once(leader.clone())
            .chain(self.nodes.iter().filter(|n| **n != leader).cloned())
            .collect()
    }

    /// Every leader the clients followed, from when they found it, in µs since `clock`.
    #[must_use]
    pub fn leader_changes(&self, clock: Instant) -> Vec<LeaderChange> {
        self.state()
            .changes
            .iter()
            .map(|(at, node)| LeaderChange {
                at_us: u64::try_from(at.saturating_duration_since(clock).as_micros())
                    .unwrap_or(u64::MAX),
                node: node.clone(),
            })
            .collect()
    }

    /// After an operation on the leader failed at `failed_at` in a way that says the leader
    /// may have moved: finds the leader again, unless a discovery finished since then (its
    /// answer stands). Bounded by [`DISCOVERY_TIME_MAX`] and `until`. Returns whether the
    /// leader changed; with a fixed leader, does nothing.
    pub async fn rediscover(&self, failed_at: Instant, until: Instant) -> bool {
        let Some(name) = &self.cluster_name else {
            return false;
        };
        let _one_at_a_time = self.discovery.lock().await;
        let before = {
            let state = self.state();
            if state.looked_up.is_some_and(|at| at >= failed_at) {
                return false;
            }
            state.leader.clone()
        };
        let deadline = until.min(Instant::now() + DISCOVERY_TIME_MAX);
        // While the nodes still name the leader that just failed, look again a little later:
        // it is likely being replaced, and going back to it costs another timeout.
        let patience = until.min(Instant::now() + MOVE_PATIENCE);
        let mut found = discover(&self.nodes, name, deadline, DISCOVERY_ROUNDS_MAX).await;
        while found.as_deref() == Some(before.as_str()) && Instant::now() + MOVE_POLL < patience {
            sleep(MOVE_POLL).await;
            if let Some(again) = discover_round(&self.nodes, name).await {
                found = Some(again);
            }
        }
        self.settle(found, &before)
    }

    /// Finds the leader again now, whatever earlier discoveries found (after the run, before
    /// waiting for the replicas); bounded by `deadline`. Returns whether the leader changed;
    /// with a fixed leader, does nothing.
    pub async fn refresh(&self, deadline: Instant) -> bool {
        let Some(name) = &self.cluster_name else {
            return false;
        };
        let _one_at_a_time = self.discovery.lock().await;
        let before = self.leader();
        let found = discover(&self.nodes, name, deadline, u32::MAX).await;
        self.settle(found, &before)
    }

    /// Records a discovery's answer; whether the leader changed from `before`.
    fn settle(&self, found: Option<String>, before: &str) -> bool {
        let now = Instant::now();
        let mut state = self.state();
        state.looked_up = Some(now);
        let Some(leader) = found else {
            return false;
        };
        if leader == before {
            return false;
        }
        if state.changes.len() < LEADER_CHANGES_MAX {
            state.changes.push((now, leader.clone()));
        }
        state.leader = leader;
        true
    }
}

/// The address more than half of the cluster's `nodes` name, given one answer per node that
/// answered (`None`: it knows no leader); `None` when no address has that majority.
#[must_use]
pub fn majority(answers: &[Option<String>], nodes: usize) -> Option<&str> {
    let named: Vec<&str> = answers.iter().flatten().map(String::as_str).collect();
    let of = nodes.max(answers.len());
    named
        .iter()
        .copied()
        .find(|candidate| named.iter().filter(|n| *n == candidate).count() * 2 > of)
}

/// What a `SENTINEL get-master-addr-by-name` reply says: `Some(Some(host:port))`, `Some(None)`
/// when the node knows no leader (nil), `None` when the reply is not an answer (an error, or
/// not the `[host, port]` pair).
#[must_use]
pub fn named_leader(reply: &Reply) -> Option<Option<String>> {
    match reply {
        Reply::Array(None) | Reply::Bulk(None) => Some(None),
        Reply::Array(Some(items)) => {
            let [host, port] = items.as_slice() else {
                return None;
            };
            let host = host.text()?;
            let port: u16 = port.text()?.parse().ok()?;
            let addr = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, port).to_string(),
                Err(_) => format!("{host}:{port}"),
            };
            Some(Some(addr))
        }
        _ => None,
    }
}

/// `addr` as `nodes` spell it, when it names one of them (`127.0.0.1:7300` and
/// `localhost:7300` do not match; equal socket addresses in other spellings do).
#[must_use]
pub fn canonical(nodes: &[String], addr: &str) -> String {
    let parsed = addr.parse::<SocketAddr>().ok();
    nodes
        .iter()
        .find(|n| *n == addr || parsed.is_some_and(|a| n.parse::<SocketAddr>().ok() == Some(a)))
        .cloned()
        .unwrap_or_else(|| addr.to_string())
}

/// Asks `node` which node leads `cluster_name`, within [`PROBE_TIMEOUT`]; `None` when it does
/// not answer.
pub async fn ask(node: &str, cluster_name: &str) -> Option<Option<String>> {
    let work = async {
        let mut conn = RespConn::connect(node, PROBE_TIMEOUT).await.ok()?;
        let reply = conn
            .call(&[
                b"SENTINEL",
                b"get-master-addr-by-name",
                cluster_name.as_bytes(),
            ])
            .await
            .ok()?;
        named_leader(&reply)
    };
    timeout(PROBE_TIMEOUT, work).await.ok().flatten()
}

/// Asks every node at once; the address a majority of all nodes name, spelled as
/// `nodes` spell it. Once more than half of all nodes name one address no later answer can
/// change the outcome, so the round ends there rather than wait for a paused node's probe to
/// time out.
pub async fn discover_round(nodes: &[String], cluster_name: &str) -> Option<String> {
    let mut asks = tokio::task::JoinSet::new();
    for node in nodes {
        let (node, name) = (node.clone(), cluster_name.to_string());
        asks.spawn(async move { ask(&node, &name).await });
    }
    let mut answers = Vec::with_capacity(nodes.len());
    while let Some(done) = asks.join_next().await {
        // A probe task that panicked counts as a node that did not answer.
        let Ok(Some(answer)) = done else {
            continue;
        };
        let answer = answer.map(|addr| canonical(nodes, &addr));
        let settled = answer.as_ref().filter(|named| {
            let votes = answers.iter().flatten().filter(|a| a == named).count() + 1;
            votes * 2 > nodes.len()
        });
        if let Some(leader) = settled {
            // Dropping `asks` aborts the probes still running.
            return Some(leader.clone());
        }
        answers.push(answer);
    }
    majority(&answers, nodes.len()).map(str::to_string)
}

/// Rounds of [`discover_round`] until one finds a majority, at most `rounds_max` of them and
/// none starting after `deadline`, waiting [`DISCOVERY_BACKOFF_MIN`] doubling to
/// [`DISCOVERY_BACKOFF_MAX`] between them.
pub async fn discover(
    nodes: &[String],
    cluster_name: &str,
    deadline: Instant,
    rounds_max: u32,
) -> Option<String> {
    let mut backoff = DISCOVERY_BACKOFF_MIN;
    for _ in 0..rounds_max {
        if let Some(leader) = discover_round(nodes, cluster_name).await {
            return Some(leader);
        }
        if Instant::now() + backoff >= deadline {
            return None;
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(DISCOVERY_BACKOFF_MAX);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(addrs: &[Option<&str>]) -> Vec<Option<String>> {
        addrs.iter().map(|a| a.map(str::to_string)).collect()
    }

    #[test]
    fn a_cut_off_leader_naming_itself_is_outvoted() {
        let (a, b) = (Some("10.0.0.1:7300"), Some("10.0.0.2:7301"));
        assert_eq!(majority(&named(&[a, b, b]), 3), b);
        assert_eq!(majority(&named(&[b, b, a, None, b]), 5), b);
        eprintln!("phase: no address named by more than half of the nodes is no leader");
        assert_eq!(majority(&named(&[a, b]), 3), None);
        assert_eq!(majority(&named(&[a, b, None]), 3), None);
        assert_eq!(
            majority(&named(&[a, None, None]), 3),
            None,
            "nodes that know no leader count"
        );
        assert_eq!(majority(&named(&[None, None]), 3), None);
        assert_eq!(majority(&[], 3), None);
        assert_eq!(
            majority(&named(&[a]), 3),
            None,
            "one node of three (a stale map, the others down) is no majority"
        );
        assert_eq!(majority(&named(&[a, a]), 3), a);
        assert_eq!(majority(&named(&[a]), 1), a, "a single-node cluster");
    }

    #[test]
    fn sentinel_replies_name_a_leader_or_none() {
        let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
        assert_eq!(
            named_leader(&Reply::Array(Some(vec![bulk("127.0.0.1"), bulk("7301")]))),
            Some(Some("127.0.0.1:7301".to_string()))
        );
        assert_eq!(
            named_leader(&Reply::Array(Some(vec![bulk("::1"), bulk("7301")]))),
            Some(Some("[::1]:7301".to_string()))
        );
        assert_eq!(named_leader(&Reply::Bulk(None)), Some(None));
        assert_eq!(named_leader(&Reply::Array(None)), Some(None));
        for junk in [
            Reply::Error("ERR unknown subcommand".into()),
            Reply::Array(Some(vec![bulk("127.0.0.1")])),
            Reply::Array(Some(vec![bulk("127.0.0.1"), bulk("port")])),
            Reply::Array(Some(vec![bulk("127.0.0.1"), bulk("70000")])),
            Reply::Integer(1),
        ] {
            assert_eq!(named_leader(&junk), None, "{junk:?}");
        }
    }

    #[test]
    fn named_addresses_are_spelled_as_the_nodes_are() {
        let nodes = vec!["127.0.0.1:7300".to_string(), "127.0.0.1:7301".to_string()];
        assert_eq!(canonical(&nodes, "127.0.0.1:7301"), "127.0.0.1:7301");
        assert_eq!(canonical(&nodes, "127.000.0.1:7301"), "127.000.0.1:7301");
        assert_eq!(canonical(&nodes, "10.0.0.9:7300"), "10.0.0.9:7300");
        let v6 = vec!["[::1]:7300".to_string()];
        assert_eq!(canonical(&v6, "[0:0::1]:7300"), "[::1]:7300");
    }

    #[test]
    fn the_leader_of_a_moment_is_the_last_one_found_by_then() {
        let change = |at_us, node: &str| LeaderChange {
            at_us,
            node: node.into(),
        };
        let changes = [change(0, "a"), change(1_000, "b"), change(5_000, "a")];
        assert_eq!(leader_at(&changes, 0), Some("a"));
        assert_eq!(leader_at(&changes, 999), Some("a"));
        assert_eq!(leader_at(&changes, 1_000), Some("b"));
        assert_eq!(leader_at(&changes, 9_000), Some("a"));
        assert_eq!(leader_at(&[], 9_000), None);
    }

    /// A fake node on loopback that answers every request on every connection with `reply`
    /// (raw RESP), or never answers when it is `None` (a paused node); its address.
    async fn fake_node(reply: Option<&'static [u8]>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while s.read(&mut buf).await.is_ok_and(|n| n > 0) {
                        if let Some(reply) = reply {
                            s.write_all(reply).await.unwrap();
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_round_ends_once_a_majority_of_all_nodes_agrees() {
        let b_reply: &'static [u8] = b"*2\r\n$9\r\n127.0.0.9\r\n$4\r\n7301\r\n";
        let nodes = vec![
            fake_node(None).await,
            fake_node(Some(b_reply)).await,
            fake_node(Some(b_reply)).await,
        ];
        let started = Instant::now();
        let leader = discover_round(&nodes, "replikv").await;
        assert_eq!(leader.as_deref(), Some("127.0.0.9:7301"));
        assert!(
            started.elapsed() < PROBE_TIMEOUT,
            "the silent node was not waited for: {:?}",
            started.elapsed()
        );

        eprintln!("phase: nodes that know no leader and a silent one: no leader");
        let nodes = vec![
            fake_node(None).await,
            fake_node(Some(b"*-1\r\n")).await,
            fake_node(Some(b_reply)).await,
        ];
        assert_eq!(discover_round(&nodes, "replikv").await, None);
    }

    #[tokio::test]
    async fn a_fixed_leader_is_never_looked_up() {
        let e = Endpoints::fixed("a:1".into(), vec!["b:2".into(), "c:3".into()]);
        assert!(!e.follows());
        assert!(!e.rediscover(Instant::now(), Instant::now()).await);
        assert_eq!(e.all(), ["a:1", "b:2", "c:3"]);
        assert_eq!(e.replicas(), ["b:2", "c:3"]);
        let clock = Instant::now();
        assert_eq!(
            e.leader_changes(clock),
            [LeaderChange {
                at_us: 0,
                node: "a:1".into()
            }]
        );
    }

    #[test]
    fn a_new_leader_is_recorded_once_and_leads_the_node_list() {
        let e = Endpoints::following(
            vec!["a:1".into(), "b:2".into(), "c:3".into()],
            "a:1".into(),
            "replikv".into(),
        );
        assert!(!e.settle(None, "a:1"), "no answer keeps the leader");
        assert!(!e.settle(Some("a:1".into()), "a:1"));
        assert!(e.settle(Some("b:2".into()), "a:1"));
        assert_eq!(e.leader(), "b:2");
        assert_eq!(e.all(), ["b:2", "a:1", "c:3"]);
        assert_eq!(e.replicas(), ["a:1", "c:3"]);
        let nodes: Vec<String> = e
            .leader_changes(Instant::now())
            .into_iter()
            .map(|c| c.node)
            .collect();
        assert_eq!(nodes, ["a:1", "b:2"]);
    }
}
