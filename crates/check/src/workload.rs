//! The workload: many concurrent clients running reads, writes, increments and
//! compare-and-set style operations over a small key space, each recorded as an [`Op`].
//!
//! - Keys are registers (`r<i>`) or counters (`c<i>`, every fourth key), behind a prefix unique
//!   to the run so that data left by an earlier run is never read as this run's.
//! - Registers get `GET`, `SET k v`, `SET k v GET` (swap), `SET k v NX` (write if absent) and
//!   `DEL`; counters get `GET` and `INCRBY`. Every value written is `<client>-<sequence>`,
//!   never written twice, so every read names the write it saw.
//! - Writes go to the leader; reads go where `--reads` says.
//! - With automatic failover the leader is the one [`Endpoints`] last found. An operation on
//!   it that fails or ends indeterminate for any reason but a mistake in the command
//!   ([`leader_may_have_moved`]) is recorded as usual, and then the client asks who leads
//!   ([`Endpoints::rediscover`]) before its next operation. The operation itself is never
//!   retried: a write whose outcome is unknown stays one indeterminate operation.
//! - Each operation is followed, in the same pipeline, by `REPLIKV TOKEN`, whose reply is the
//!   position the operation's reply reflected ([`Op::token`]).
//! - Each operation is bounded by the operation timeout. A connection that cannot be opened
//!   means the operation was certainly not sent: [`Outcome::Fail`]. A timeout or a connection
//!   lost after sending is [`Outcome::Indeterminate`], and the client then continues under a new
//!   client id on a new connection (the old operation may still take effect at any time, so it
//!   never ends as far as the history knows; a new id keeps each client's operations
//!   sequential).

use crate::endpoints::Endpoints;
use crate::history::{Call, Op, Outcome, Value};
use crate::resp::{Reply, RespConn, RespError};
use crate::rng::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};

/// Most clients a workload runs.
pub const CLIENTS_MAX: u32 = 1000;
/// Most keys a workload uses.
pub const KEYS_MAX: u32 = 1000;
/// Most operations one client runs in a run (a bound on the loop; runs end by time first).
pub const OPS_PER_CLIENT_MAX: u64 = 10_000_000;
/// First wait after a connection could not be opened; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Longest wait after connections could not be opened.
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Largest `INCRBY` amount.
pub const INCR_BY_MAX: u64 = 5;
/// Every how many keys one is a counter (the others are registers).
pub const COUNTER_EVERY: u32 = 4;

/// Where reads go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadTarget {
    /// Every read to the leader (linearizable reads).
    Leader,
    /// Every read to a replica chosen at random (the leader when there is none).
    Replicas,
    /// Every read to any node chosen at random.
    Any,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Concurrent clients, 1 to [`CLIENTS_MAX`].
    pub clients: u32,
    /// Keys, 1 to [`KEYS_MAX`].
    pub keys: u32,
    /// Where reads go.
    pub reads: ReadTarget,
    /// Most operations per second started by all clients together; `None` for no limit.
    pub rate_max: Option<f64>,
    /// Bound on one operation, connection included.
    pub op_timeout: Duration,
    /// Acknowledgement mode every connection asks for with `REPLIKV ACK`.
    pub ack: String,
    /// Seed of every client's choices.
    pub seed: u64,
    /// Prefix of every key of this run.
    pub key_prefix: String,
}

/// The name of key `index` under `prefix`.
#[must_use]
pub fn key_name(prefix: &str, index: u32) -> String {
    if is_counter(index) {
        format!("{prefix}c{index}")
    } else {
        format!("{prefix}r{index}")
    }
}

/// Whether key `index` is a counter.
#[must_use]
pub fn is_counter(index: u32) -> bool {
    index % COUNTER_EVERY == COUNTER_EVERY - 1
}

/// Every key name of a run with `keys` keys.
#[must_use]
pub fn key_names(prefix: &str, keys: u32) -> Vec<String> {
    (0..keys).map(|i| key_name(prefix, i)).collect()
}

/// Runs the workload until `until` or until `stop` turns true, whichever is first; returns
/// every operation of every client, sorted by start time. `clock` is the run's time origin.
pub async fn run(
    cfg: Arc<WorkloadConfig>,
    endpoints: Arc<Endpoints>,
    clock: Instant,
    until: Instant,
    stop: watch::Receiver<bool>,
) -> Vec<Op> {
    let next_client = Arc::new(AtomicU32::new(cfg.clients));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..cfg.clients {
        let worker = Worker {
            cfg: Arc::clone(&cfg),
            endpoints: Arc::clone(&endpoints),
            clock,
            client: index,
            next_client: Arc::clone(&next_client),
            seq: 0,
            rng: Rng::stream(cfg.seed, u64::from(index) + 1),
            conns: HashMap::new(),
            backoff: Duration::ZERO,
            ops: Vec::new(),
        };
        tasks.spawn(worker.run(until, stop.clone()));
    }
    let mut ops = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(mut client_ops) => ops.append(&mut client_ops),
            // A worker that panicked is a bug in this module; its operations are lost, which
            // the report shows as fewer operations, and the panic is printed by the runtime.
            Err(e) => crate::run::say(&format!("a client task failed: {e}")),
        }
    }
    sort_ops(&mut ops);
    ops
}

/// Sorts operations into invocation order (start time, then client).
pub fn sort_ops(ops: &mut [Op]) {
    ops.sort_by_key(|a| (a.start_us, a.client));
}

/// One client loop: its connections (one per node, opened on first use) and its record.
struct Worker {
    cfg: Arc<WorkloadConfig>,
    endpoints: Arc<Endpoints>,
    clock: Instant,
    client: u32,
    next_client: Arc<AtomicU32>,
    seq: u64,
    rng: Rng,
    conns: HashMap<String, RespConn>,
    backoff: Duration,
    ops: Vec<Op>,
}

impl Worker {
    async fn run(mut self, until: Instant, mut stop: watch::Receiver<bool>) -> Vec<Op> {
        let period = self
            .cfg
            .rate_max
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(f64::from(self.cfg.clients) / r));
        // Spread the clients' first operations over one period.
        let mut next_start = Instant::now()
            + period.map_or(Duration::ZERO, |p| {
                p.mul_f64(self.rng.below(1000) as f64 / 1000.0)
            });
        for _ in 0..OPS_PER_CLIENT_MAX {
            if !self.backoff.is_zero() {
                let wake = (Instant::now() + self.backoff).min(until);
                tokio::select! {
                    () = sleep_until(wake) => {}
                    _ = stop.changed() => {}
                }
            }
            if period.is_some() {
                tokio::select! {
                    () = sleep_until(next_start.min(until)) => {}
                    _ = stop.changed() => {}
                }
            }
            if Instant::now() >= until || *stop.borrow() {
                break;
            }
            if let Some(p) = period {
                next_start = (next_start + p).max(Instant::now());
            }
            self.step(until).await;
        }
        self.ops
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Chooses, runs and records one operation; with automatic failover, looks for the leader
    /// again (bounded by `until`) when an operation on it failed in a way that says it may
    /// have moved.
    async fn step(&mut self, until: Instant) {
        let index = u32::try_from(self.rng.below(u64::from(self.cfg.keys))).unwrap_or(0);
        let key = key_name(&self.cfg.key_prefix, index);
        let call = self.choose_call(index);
        let leader = self.endpoints.leader();
        let node = if call.is_write() {
            leader.clone()
        } else {
            self.choose_reader(&leader)
        };
        let start_us = self.now_us();
        let deadline = Instant::now() + self.cfg.op_timeout;
        let (outcome, token) = self.execute(&node, &key, &call, deadline).await;
        let end_us = self.now_us();
        let indeterminate = matches!(outcome, Outcome::Indeterminate { .. });
        let look_again =
            node == leader && self.endpoints.follows() && leader_may_have_moved(&outcome);
        self.ops.push(Op {
            client: self.client,
            node: node.clone(),
            key,
            call,
            start_us,
            end_us,
            outcome,
            token,
        });
        if indeterminate {
            // The reply may still arrive on this connection; nothing more is sent on it, and
            // this client continues as a new one (module docs).
            self.conns.remove(&node);
            self.client = self.next_client.fetch_add(1, Ordering::Relaxed);
        }
        if look_again && self.endpoints.rediscover(Instant::now(), until).await {
            // The new leader has not refused this client yet.
            self.backoff = Duration::ZERO;
        }
    }

    fn choose_call(&mut self, key_index: u32) -> Call {
        if is_counter(key_index) {
            return if self.rng.below(2) == 0 {
                Call::Read
            } else {
                Call::Incr {
                    by: i64::try_from(self.rng.between(1, INCR_BY_MAX)).unwrap_or(1),
                }
            };
        }
        let roll = self.rng.below(100);
        if roll < 40 {
            return Call::Read;
        }
        if roll >= 90 {
            return Call::Delete;
        }
        self.seq += 1;
        let value = format!("{}-{}", self.client, self.seq);
        match roll {
            40..=64 => Call::Write { value },
            65..=79 => Call::Swap { value },
            _ => Call::WriteIfAbsent { value },
        }
    }

    /// Where a read goes, `leader` leading.
    fn choose_reader(&mut self, leader: &str) -> String {
        let e = &self.endpoints;
        match self.cfg.reads {
            ReadTarget::Leader => leader.to_string(),
            ReadTarget::Replicas => {
                let replicas: Vec<String> = e.all().into_iter().filter(|n| n != leader).collect();
                if replicas.is_empty() {
                    leader.to_string()
                } else {
                    replicas[self.rng.index(replicas.len())].clone()
                }
            }
            ReadTarget::Any => {
                let all = e.all();
                all[self.rng.index(all.len())].clone()
            }
        }
    }

    /// Runs `call` on `node` by `deadline`; its outcome and, when it succeeded, its token.
    async fn execute(
        &mut self,
        node: &str,
        key: &str,
        call: &Call,
        deadline: Instant,
    ) -> (Outcome, Option<String>) {
        if let Err(error) = self.connect(node, deadline).await {
            self.backoff = (self.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
            return (Outcome::Fail { error }, None);
        }
        self.backoff = Duration::ZERO;
        let Some(conn) = self.conns.get_mut(node) else {
            return (
                Outcome::Fail {
                    error: "no connection".to_string(),
                },
                None,
            );
        };
        let args = command(key, call);
        let arg_refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let sent = timeout_at(deadline, conn.send(&[&arg_refs, &[b"REPLIKV", b"TOKEN"]])).await;
        let reply = match sent {
            Ok(Ok(())) => timeout_at(deadline, conn.read_reply()).await,
            Ok(Err(e)) => Ok(Err(RespError::Io(e))),
            Err(elapsed) => Err(elapsed),
        };
        let outcome = match reply {
            Ok(Ok(reply)) => outcome_of(call, reply),
            Ok(Err(e)) => {
                self.conns.remove(node);
                Outcome::Indeterminate {
                    error: format!("connection lost: {e}"),
                }
            }
            Err(_) => {
                return (
                    Outcome::Indeterminate {
                        error: format!("no reply within {} ms", self.cfg.op_timeout.as_millis()),
                    },
                    None,
                )
            }
        };
        let Some(conn) = self.conns.get_mut(node) else {
            return (outcome, None);
        };
        let token = match timeout_at(deadline, conn.read_reply()).await {
            Ok(Ok(Reply::Bulk(Some(t)))) => Some(String::from_utf8_lossy(&t).into_owned()),
            Ok(Ok(_)) => None,
            Ok(Err(_)) | Err(_) => {
                // The pipeline is out of step: never reuse this connection.
                self.conns.remove(node);
                None
            }
        };
        let token = if matches!(outcome, Outcome::Ok { .. }) {
            token
        } else {
            None
        };
        (outcome, token)
    }

    /// Makes sure there is an open connection to `node`: opens one (and sets it to the run's
    /// acknowledgement mode) when there is none or the one there was closed by the node. An
    /// error means nothing of the operation was sent.
    async fn connect(&mut self, node: &str, deadline: Instant) -> Result<(), String> {
        if let Some(conn) = self.conns.get_mut(node) {
            if conn.is_closed().await {
                self.conns.remove(node);
            }
        }
        if !self.conns.contains_key(node) {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut conn = RespConn::connect(node, left)
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            let ack = self.cfg.ack.as_bytes();
            match timeout_at(deadline, conn.call(&[b"REPLIKV", b"ACK", ack])).await {
                Ok(Ok(Reply::Simple(s))) if s == "OK" => {}
                Ok(Ok(other)) => return Err(format!("REPLIKV ACK refused: {other:?}")),
                Ok(Err(e)) => return Err(format!("connection lost while opening: {e}")),
                Err(_) => return Err("no reply to REPLIKV ACK while opening".to_string()),
            }
            self.conns.insert(node.to_string(), conn);
        }
        Ok(())
    }
}

/// The command that runs `call` on `key`.
fn command(key: &str, call: &Call) -> Vec<Vec<u8>> {
    let k = key.as_bytes().to_vec();
    match call {
        Call::Read => vec![b"GET".to_vec(), k],
        Call::Write { value } => vec![b"SET".to_vec(), k, value.as_bytes().to_vec()],
        Call::WriteIfAbsent { value } => {
            vec![
                b"SET".to_vec(),
                k,
                value.as_bytes().to_vec(),
                b"NX".to_vec(),
            ]
        }
        Call::Swap { value } => {
            vec![
                b"SET".to_vec(),
                k,
                value.as_bytes().to_vec(),
                b"GET".to_vec(),
            ]
        }
        Call::Incr { by } => vec![b"INCRBY".to_vec(), k, by.to_string().into_bytes()],
        Call::Delete => vec![b"DEL".to_vec(), k],
    }
}

/// Error replies that say the operation certainly did nothing. Only one `TRYAGAIN` is here: a
/// leader whose lease ran out while it held a write fails it with `TRYAGAIN the write at ...
/// was applied here`, and that write may survive the failover.
const FAIL_PREFIXES: [&str; 12] = [
    "NOREPLICAS Not enough good replicas",
    "READONLY",
    "TRYAGAIN this node holds no leader lease",
    "STALE",
    "STANDBY",
    "WRONGTYPE",
    "NOAUTH",
    "LOADING",
    "ERR value is not an integer",
    "ERR syntax error",
    "ERR unknown command",
    "ERR wrong number of arguments",
];

/// The outcome an error reply means for `call`: a refusal the server names as certain is a
/// failure; any other error on a write may hide an applied write (`-NOREPLICAS the write at ...
/// was applied`, a shutdown mid-batch), so it is indeterminate. A read changes nothing, so any
/// error on it is a failure.
#[must_use]
pub fn outcome_of_error(call: &Call, text: &str) -> Outcome {
    let certain = FAIL_PREFIXES.iter().any(|p| text.starts_with(p));
    if certain || !call.is_write() {
        Outcome::Fail {
            error: text.to_string(),
        }
    } else {
        Outcome::Indeterminate {
            error: text.to_string(),
        }
    }
}

/// Error replies that say the command itself was wrong, not where the leader is.
const COMMAND_ERROR_PREFIXES: [&str; 6] = [
    "WRONGTYPE",
    "NOAUTH",
    "ERR value is not an integer",
    "ERR syntax error",
    "ERR unknown command",
    "ERR wrong number of arguments",
];

/// Whether an operation sent to the leader that ended with `outcome` is a reason to ask who
/// leads: any failure or indeterminate end (a refused or lost connection, a timeout,
/// `-READONLY`, `-TRYAGAIN`, `-NOREPLICAS` and the like) but an error about the command.
#[must_use]
pub fn leader_may_have_moved(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Ok { .. } => false,
        Outcome::Fail { error } | Outcome::Indeterminate { error } => {
            !COMMAND_ERROR_PREFIXES.iter().any(|p| error.starts_with(p))
        }
    }
}

/// The outcome of `call` given its reply.
#[must_use]
pub fn outcome_of(call: &Call, reply: Reply) -> Outcome {
    let ok = |value: Value| Outcome::Ok { value };
    let unexpected = |reply: &Reply| {
        outcome_of_error(
            &Call::Write {
                value: String::new(),
            },
            &format!("unexpected reply {reply:?}"),
        )
    };
    match (call, reply) {
        (_, Reply::Error(text)) => outcome_of_error(call, &text),
        (Call::Read | Call::Swap { .. }, Reply::Bulk(value)) => {
            ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
        }
        (Call::Write { .. } | Call::WriteIfAbsent { .. }, Reply::Simple(s)) if s == "OK" => {
            ok(matches!(call, Call::WriteIfAbsent { .. }).then(|| "1".to_string()))
        }
        (Call::WriteIfAbsent { .. }, Reply::Bulk(None)) => ok(None),
        (Call::Incr { .. }, Reply::Integer(n)) => ok(Some(n.to_string())),
        (Call::Delete, Reply::Integer(_)) => ok(None),
        (_, other) => unexpected(&other),
    }
}

/// Reads `keys` from `node` in one pipeline within `bound`; `None` when it cannot.
pub async fn read_all(
    node: &str,
    keys: &[String],
    bound: Duration,
) -> Option<Vec<(String, Value)>> {
    let work = async {
        let mut conn = RespConn::connect(node, bound).await.ok()?;
        let commands: Vec<[&[u8]; 2]> = keys.iter().map(|k| [&b"GET"[..], k.as_bytes()]).collect();
        let refs: Vec<&[&[u8]]> = commands.iter().map(|c| &c[..]).collect();
        conn.send(&refs).await.ok()?;
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            match conn.read_reply().await.ok()? {
                Reply::Bulk(v) => {
                    values.push((
                        key.clone(),
                        v.map(|v| String::from_utf8_lossy(&v).into_owned()),
                    ));
                }
                _ => return None,
            }
        }
        Some(values)
    };
    timeout(bound, work).await.ok().flatten()
}

/// A node's applied position (epoch, LSN) and whether it leads, from `REPLIKV POSITION`.
pub async fn position(node: &str, bound: Duration) -> Option<((u64, u64), bool)> {
    let work = async {
        let mut conn = RespConn::connect(node, bound).await.ok()?;
        let reply = conn.call(&[b"REPLIKV", b"POSITION"]).await.ok()?;
        let Reply::Array(Some(items)) = reply else {
            return None;
        };
        let applied = items.first()?.text()?;
        let (epoch, lsn) = applied.split_once(':')?;
        let leader = items.get(2)?.text()? == "leader";
        Some(((epoch.parse().ok()?, lsn.parse().ok()?), leader))
    };
    timeout(bound, work).await.ok().flatten()
}

/// Waits until every replica has applied the leader's position, polling every 100 ms, at most
/// `bound` in all. Returns the replicas that did not catch up, with their last known position.
/// With automatic failover, the leader is looked for again whenever the one known does not
/// answer as the leader.
pub async fn wait_caught_up(endpoints: &Endpoints, bound: Duration) -> Vec<String> {
    let deadline = Instant::now() + bound;
    let probe = Duration::from_secs(1);
    let mut behind = Vec::new();
    loop {
        behind.clear();
        let leader = endpoints.leader();
        let target = match position(&leader, probe).await {
            Some((target, true)) => Some(target),
            Some((target, false)) if !endpoints.follows() => Some(target),
            Some((_, false)) => {
                behind.push(format!("{leader} (leader) no longer leads"));
                None
            }
            None => {
                behind.push(format!("{leader} (leader) did not answer REPLIKV POSITION"));
                None
            }
        };
        let Some(target) = target else {
            if Instant::now() >= deadline {
                return behind;
            }
            endpoints.refresh(deadline).await;
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        for replica in &endpoints.replicas() {
            match position(replica, probe).await {
                Some((at, _)) if at >= target => {}
                Some((at, _)) => behind.push(format!(
                    "{replica} at {}:{}, leader at {}:{}",
                    at.0, at.1, target.0, target.1
                )),
                None => behind.push(format!("{replica} did not answer REPLIKV POSITION")),
            }
        }
        if behind.is_empty() || Instant::now() >= deadline {
            return behind;
        }
        sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write() -> Call {
        Call::Write {
            value: "1-1".into(),
        }
    }

    #[test]
    fn keys_are_registers_with_every_fourth_a_counter() {
        let names = key_names("t:", 8);
        assert_eq!(
            names,
            ["t:r0", "t:r1", "t:r2", "t:c3", "t:r4", "t:r5", "t:r6", "t:c7"]
        );
    }

    #[test]
    fn replies_become_outcomes_with_the_values_the_history_documents() {
        let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
        assert_eq!(
            outcome_of(&Call::Read, bulk("3-4")),
            Outcome::Ok {
                value: Some("3-4".into())
            }
        );
        assert_eq!(
            outcome_of(&Call::Read, Reply::Bulk(None)),
            Outcome::Ok { value: None }
        );
        assert_eq!(
            outcome_of(&write(), Reply::Simple("OK".into())),
            Outcome::Ok { value: None }
        );
        let nx = Call::WriteIfAbsent {
            value: "1-2".into(),
        };
        assert_eq!(
            outcome_of(&nx, Reply::Simple("OK".into())),
            Outcome::Ok {
                value: Some("1".into())
            }
        );
        assert_eq!(
            outcome_of(&nx, Reply::Bulk(None)),
            Outcome::Ok { value: None }
        );
        let swap = Call::Swap {
            value: "1-3".into(),
        };
        assert_eq!(
            outcome_of(&swap, bulk("2-9")),
            Outcome::Ok {
                value: Some("2-9".into())
            }
        );
        assert_eq!(
            outcome_of(&Call::Incr { by: 2 }, Reply::Integer(7)),
            Outcome::Ok {
                value: Some("7".into())
            }
        );
        assert_eq!(
            outcome_of(&Call::Delete, Reply::Integer(0)),
            Outcome::Ok { value: None }
        );
    }

    #[test]
    fn errors_are_failures_only_when_certainly_not_applied() {
        let fail = |o: Outcome| matches!(o, Outcome::Fail { .. });
        assert!(fail(outcome_of_error(
            &write(),
            "NOREPLICAS Not enough good replicas to write."
        )));
        assert!(fail(outcome_of_error(
            &write(),
            "READONLY You can't write against a read only replica."
        )));
        assert!(!fail(outcome_of_error(
            &write(),
            "NOREPLICAS the write at 1:5 was applied and made durable on the leader, but not ..."
        )));
        assert!(!fail(outcome_of_error(
            &write(),
            "ERR server is shutting down"
        )));
        assert!(fail(outcome_of_error(
            &Call::Read,
            "ERR server is shutting down"
        )));
        assert!(fail(outcome_of_error(
            &Call::Read,
            "TRYAGAIN this replica has applied up to"
        )));
        // An unexpected reply to a write may hide an applied write.
        assert!(!fail(outcome_of(&write(), Reply::Integer(1))));
    }

    #[test]
    fn a_write_held_past_the_leaders_lease_may_have_happened() {
        let fail = |o: Outcome| matches!(o, Outcome::Fail { .. });
        // Refused before anything was applied: certain.
        assert!(fail(outcome_of_error(
            &write(),
            replikv_core::replication::machine::NO_LEASE
        )));
        assert!(fail(outcome_of_error(
            &write(),
            replikv_core::replication::NOREPLICAS
        )));
        // Applied on the old leader, which may or may not have shipped it: unknown.
        assert!(!fail(outcome_of_error(
            &write(),
            "TRYAGAIN the write at 2:5075 was applied here, but this leader's lease ran out \
             before it was acknowledged; it may or may not survive a failover"
        )));
        assert!(!fail(outcome_of_error(&write(), "TRYAGAIN something new")));
    }

    #[test]
    fn failures_on_the_leader_send_clients_looking_unless_the_command_was_wrong() {
        let fail = |e: &str| Outcome::Fail { error: e.into() };
        let unknown = |e: &str| Outcome::Indeterminate { error: e.into() };
        for moved in [
            fail("READONLY You can't write against a read only replica."),
            fail("TRYAGAIN no lease"),
            fail("NOREPLICAS Not enough good replicas to write."),
            unknown("NOREPLICAS the write at 4:9 was applied ..."),
            fail("cannot connect: Connection refused (os error 111)"),
            unknown("connection lost: early eof"),
            unknown("no reply within 2000 ms"),
            fail("ERR server is shutting down"),
        ] {
            assert!(leader_may_have_moved(&moved), "{moved:?}");
        }
        for wrong in [
            Outcome::Ok { value: None },
            fail("WRONGTYPE Operation against a key holding the wrong kind of value"),
            fail("ERR value is not an integer or out of range"),
        ] {
            assert!(!leader_may_have_moved(&wrong), "{wrong:?}");
        }
    }
}
