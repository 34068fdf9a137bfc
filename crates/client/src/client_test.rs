//! The client's decisions after an attempt (retry, indeterminate, answer), and its behaviour
//! against scripted fake nodes on loopback: majority discovery, retries across a failover,
//! no second attempt of an operation that may have executed, replica reads with tokens.

use super::*;
use replikv_core::replication::machine::{NOREPLICAS, NO_LEASE, READONLY};
use replikv_proto::{Limits, Protocol, RequestDecoder};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use Idempotency::{Idempotent, NonIdempotent};

/// Which way an attempt's outcome went.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Done,
    Retry,
    Indeterminate,
    Server,
    Protocol,
}

fn decision(next: &Next) -> Decision {
    match next {
        Next::Done(_) => Decision::Done,
        Next::Retry(_) => Decision::Retry,
        Next::Fail(Error::Indeterminate { .. }) => Decision::Indeterminate,
        Next::Fail(Error::Server(_)) => Decision::Server,
        Next::Fail(Error::Protocol(_)) => Decision::Protocol,
        Next::Fail(other) => panic!("unexpected failure {other:?}"),
    }
}

/// Error replies: answers fail at once; symptoms given before execution are retried for any
/// operation; symptoms that may follow execution are retried only for idempotent ones and are
/// indeterminate for the others.
#[test]
fn replies_decide_retry_indeterminate_or_answer() {
    let applied_no_replicas = "NOREPLICAS the write at 2:9 was applied and made durable on the leader, but not on enough replicas within 10000 ms; it may not survive a failover";
    let applied_no_lease = "TRYAGAIN the write at 2:9 was applied here, but this leader's lease ran out before it was acknowledged; it may or may not survive a failover";
    let cases: &[(&str, Idempotency, Decision)] = &[
        (READONLY, NonIdempotent, Decision::Retry),
        (READONLY, Idempotent, Decision::Retry),
        (NO_LEASE, NonIdempotent, Decision::Retry),
        (NOREPLICAS, NonIdempotent, Decision::Retry),
        (applied_no_replicas, NonIdempotent, Decision::Indeterminate),
        (applied_no_replicas, Idempotent, Decision::Retry),
        (applied_no_lease, NonIdempotent, Decision::Indeterminate),
        (applied_no_lease, Idempotent, Decision::Retry),
        (
            "ERR this node became a replica; the write was not acknowledged and may be lost",
            NonIdempotent,
            Decision::Indeterminate,
        ),
        (
            "ERR value is not an integer or out of range",
            NonIdempotent,
            Decision::Server,
        ),
        (
            "WRONGTYPE Operation against a key",
            Idempotent,
            Decision::Server,
        ),
    ];
    for (text, idempotency, want) in cases {
        let next = after_reply(Frame::Error((*text).to_string()), "n:1", *idempotency);
        assert_eq!(decision(&next), *want, "{text} as {idempotency:?}");
    }
    let ok = after_reply(Frame::Simple("OK".into()), "n:1", NonIdempotent);
    assert_eq!(decision(&ok), Decision::Done);
}

/// Transport failures: nothing sent is retried for any operation; sent-then-broken is
/// retried only for idempotent ones.
#[test]
fn transport_failures_decide_retry_or_indeterminate() {
    let refused = || {
        AttemptError::NotSent(Failure::Connect {
            addr: "n:1".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        })
    };
    let timed_out = || {
        AttemptError::MaybeSent(Failure::Timeout {
            addr: "n:1".into(),
            after: Duration::from_secs(1),
        })
    };
    let garbage = || {
        AttemptError::Malformed(Failure::Protocol {
            addr: "n:1".into(),
            detail: "unknown reply type".into(),
        })
    };
    let cases: Vec<(AttemptError, Idempotency, Decision)> = vec![
        (refused(), NonIdempotent, Decision::Retry),
        (refused(), Idempotent, Decision::Retry),
        (timed_out(), NonIdempotent, Decision::Indeterminate),
        (timed_out(), Idempotent, Decision::Retry),
        (garbage(), NonIdempotent, Decision::Indeterminate),
        (garbage(), Idempotent, Decision::Protocol),
        (
            AttemptError::Refused("WRONGPASS".into()),
            NonIdempotent,
            Decision::Server,
        ),
    ];
    for (error, idempotency, want) in cases {
        let shown = format!("{error:?}");
        assert_eq!(
            decision(&after_error(error, idempotency)),
            want,
            "{shown} as {idempotency:?}"
        );
    }
}

/// What a fake node does with a request.
enum Action {
    Reply(Frame),
    /// Close the connection without replying.
    Close,
    /// Never reply (the request is lost, or the node hangs).
    Ignore,
}

type Handler = dyn Fn(&[String]) -> Action + Send + Sync;

/// A scripted node on loopback: answers each request with its handler and logs it.
struct FakeNode {
    addr: String,
    log: Arc<Mutex<Vec<Vec<String>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FakeNode {
    async fn start(handler: impl Fn(&[String]) -> Action + Send + Sync + 'static) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = tokio::spawn({
            let log = Arc::clone(&log);
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve(socket, Arc::clone(&handler), Arc::clone(&log)));
                }
            }
        });
        FakeNode { addr, log, accept }
    }

    /// Requests received named `name` (any case).
    fn count(&self, name: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r[0].eq_ignore_ascii_case(name))
            .count()
    }

    fn requests(&self) -> Vec<Vec<String>> {
        self.log.lock().unwrap().clone()
    }
}

async fn serve(mut socket: TcpStream, handler: Arc<Handler>, log: Arc<Mutex<Vec<Vec<String>>>>) {
    let mut decoder = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    loop {
        while let Ok(Some(args)) = decoder.decode(&mut buf) {
            let args: Vec<String> = args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            log.lock().unwrap().push(args.clone());
            match handler(&args) {
                Action::Reply(frame) => {
                    let mut out = BytesMut::new();
                    frame.encode(Protocol::Resp2, &mut out);
                    if socket.write_all(&out).await.is_err() {
                        return;
                    }
                }
                Action::Close => return,
                Action::Ignore => {}
            }
        }
        match socket.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn ok() -> Action {
    Action::Reply(Frame::Simple("OK".into()))
}

fn error(text: &str) -> Action {
    Action::Reply(Frame::Error(text.to_string()))
}

/// The `SENTINEL get-master-addr-by-name` answer naming `leader`.
fn names(leader: &str) -> Action {
    let (host, port) = leader.rsplit_once(':').unwrap();
    Action::Reply(Frame::Array(vec![bulk(host), bulk(port)]))
}

fn is_sentinel_leader(args: &[String]) -> bool {
    args.len() == 3
        && args[0].eq_ignore_ascii_case("sentinel")
        && args[1].eq_ignore_ascii_case("get-master-addr-by-name")
}

fn is_sentinel_replicas(args: &[String]) -> bool {
    args.len() == 3 && args[0].eq_ignore_ascii_case("sentinel") && args[1] == "replicas"
}

fn config(seeds: &[&FakeNode]) -> ClientConfig {
    ClientConfig {
        op_timeout: Duration::from_millis(500),
        failover_timeout: Duration::from_secs(3),
        ..ClientConfig::new(seeds.iter().map(|n| n.addr.clone()))
    }
}

/// A loopback address nothing listens on: connecting is refused.
async fn dead_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Bounds a test's client work in time.
async fn bounded<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .expect("the test finished within 20 s")
}

/// An address, filled in once the node holding it has its port.
type Cell = Arc<Mutex<String>>;

fn get(cell: &Cell) -> String {
    cell.lock().unwrap().clone()
}

fn put(cell: &Cell, value: &str) {
    *cell.lock().unwrap() = value.to_string();
}

/// A node that names the leader in `leader` and takes writes only while it is that leader
/// (`READONLY` otherwise), as a replikv node under the control plane does.
fn following(me: &Cell, leader: &Cell) -> impl Fn(&[String]) -> Action + Send + Sync + 'static {
    let (me, leader) = (Arc::clone(me), Arc::clone(leader));
    move |args| {
        let current = get(&leader);
        if is_sentinel_leader(args) {
            return names(&current);
        }
        if is_sentinel_replicas(args) {
            return Action::Reply(Frame::Array(vec![]));
        }
        if get(&me) != current && !is_read(args[0].as_bytes()) {
            return error(READONLY);
        }
        match args[0].to_ascii_lowercase().as_str() {
            "incr" => Action::Reply(Frame::Integer(1)),
            "get" => Action::Reply(bulk("v")),
            _ => ok(),
        }
    }
}

/// Starts a node whose handler is built from its own address cell.
async fn node<H>(build: impl FnOnce(&Cell) -> H) -> (FakeNode, Cell)
where
    H: Fn(&[String]) -> Action + Send + Sync + 'static,
{
    let me: Cell = Arc::default();
    let node = FakeNode::start(build(&me)).await;
    put(&me, &node.addr);
    (node, me)
}

/// A deposed leader behind a partition still names itself and refuses writes for want of a
/// lease; the two nodes that elected its successor outvote it, and writes go to the successor.
#[tokio::test]
async fn a_deposed_leader_naming_itself_is_outvoted() {
    let leader: Cell = Arc::default();
    let (deposed, _) = node(|me| {
        let me = Arc::clone(me);
        move |args: &[String]| {
            if is_sentinel_leader(args) {
                return names(&get(&me));
            }
            error(NO_LEASE)
        }
    })
    .await;
    let (successor, successor_addr) = node(|me| following(me, &leader)).await;
    let (voter, _) = node(|me| following(me, &leader)).await;
    put(&leader, &get(&successor_addr));

    let mut client = bounded(Client::connect(config(&[&deposed, &voter, &successor])))
        .await
        .unwrap();
    assert_eq!(client.leader(), Some(successor.addr.as_str()));
    bounded(client.set("k", "v")).await.unwrap();
    assert_eq!(successor.count("set"), 1);
    assert_eq!(deposed.count("set"), 0);
}

/// The leader steps down as an `INCR` arrives and refuses it with `READONLY` (never run):
/// even a non-idempotent operation is retried, on the new leader, and runs there once.
#[tokio::test]
async fn a_write_refused_with_readonly_is_retried_on_the_new_leader() {
    let leader: Cell = Arc::default();
    let next: Cell = Arc::default();
    let (old, old_addr) = node(|me| {
        let follow = following(me, &leader);
        let (leader, next) = (Arc::clone(&leader), Arc::clone(&next));
        move |args: &[String]| {
            if args[0].eq_ignore_ascii_case("incr") && get(&leader) != get(&next) {
                // The failover happens now: this node is a replica from here on.
                put(&leader, &get(&next));
            }
            follow(args)
        }
    })
    .await;
    let (new, new_addr) = node(|me| following(me, &leader)).await;
    put(&leader, &get(&old_addr));
    put(&next, &get(&new_addr));

    let mut client = bounded(Client::connect(config(&[&old, &new])))
        .await
        .unwrap();
    assert_eq!(client.leader(), Some(old.addr.as_str()));
    assert_eq!(bounded(client.incr("n")).await.unwrap(), 1);
    assert_eq!(old.count("incr"), 1, "refused with READONLY there");
    assert_eq!(new.count("incr"), 1, "retried once on the new leader");
    assert_eq!(client.leader(), Some(new.addr.as_str()));
}

/// `NOREPLICAS the write at ... was applied`: an `INCR` is not sent again and its outcome is
/// unknown; a `SET` is retried.
#[tokio::test]
async fn a_write_that_may_have_applied_is_retried_only_when_idempotent() {
    const APPLIED: &str = "NOREPLICAS the write at 1:5 was applied and made durable on the leader, but not on enough replicas within 100 ms; it may not survive a failover";
    let sets = Arc::new(AtomicUsize::new(0));
    let (leader, _) = node(|me| {
        let me = Arc::clone(me);
        let sets = Arc::clone(&sets);
        move |args: &[String]| {
            if is_sentinel_leader(args) {
                return names(&get(&me));
            }
            match args[0].to_ascii_lowercase().as_str() {
                "incr" => error(APPLIED),
                "set" if sets.fetch_add(1, Ordering::SeqCst) == 0 => error(APPLIED),
                _ => ok(),
            }
        }
    })
    .await;
    let mut client = bounded(Client::connect(config(&[&leader]))).await.unwrap();
    let incr = bounded(client.incr("n")).await;
    assert!(
        matches!(&incr, Err(Error::Indeterminate { cause: Failure::Reply { text, .. } }) if text == APPLIED),
        "{incr:?}"
    );
    assert_eq!(leader.count("incr"), 1, "never sent twice");
    bounded(client.set("k", "v")).await.unwrap();
    assert_eq!(leader.count("set"), 2, "retried");
}

/// The connection breaks after the request went out: an `INCR` is indeterminate; a `GET` is
/// retried on a new connection.
#[tokio::test]
async fn a_connection_lost_after_sending_is_indeterminate_unless_idempotent() {
    let gets = Arc::new(AtomicUsize::new(0));
    let (leader, _) = node(|me| {
        let me = Arc::clone(me);
        let gets = Arc::clone(&gets);
        move |args: &[String]| {
            if is_sentinel_leader(args) {
                return names(&get(&me));
            }
            match args[0].to_ascii_lowercase().as_str() {
                "incr" => Action::Close,
                "get" if gets.fetch_add(1, Ordering::SeqCst) == 0 => Action::Close,
                "get" => Action::Reply(bulk("v")),
                _ => ok(),
            }
        }
    })
    .await;
    let mut client = bounded(Client::connect(config(&[&leader]))).await.unwrap();
    let incr = bounded(client.incr("n")).await;
    assert!(
        matches!(
            &incr,
            Err(Error::Indeterminate {
                cause: Failure::Io { .. }
            })
        ),
        "{incr:?}"
    );
    assert_eq!(leader.count("incr"), 1);
    assert_eq!(
        bounded(client.get("k")).await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(leader.count("get"), 2);
}

/// No reply within the operation timeout: an `INCR` is indeterminate (it may be running); a
/// `GET` is retried.
#[tokio::test]
async fn a_timeout_is_indeterminate_unless_idempotent() {
    let gets = Arc::new(AtomicUsize::new(0));
    let (leader, _) = node(|me| {
        let me = Arc::clone(me);
        let gets = Arc::clone(&gets);
        move |args: &[String]| {
            if is_sentinel_leader(args) {
                return names(&get(&me));
            }
            match args[0].to_ascii_lowercase().as_str() {
                "incr" => Action::Ignore,
                "get" if gets.fetch_add(1, Ordering::SeqCst) == 0 => Action::Ignore,
                "get" => Action::Reply(bulk("v")),
                _ => ok(),
            }
        }
    })
    .await;
    let mut client = bounded(Client::connect(config(&[&leader]))).await.unwrap();
    let incr = bounded(client.incr("n")).await;
    assert!(
        matches!(
            &incr,
            Err(Error::Indeterminate {
                cause: Failure::Timeout { .. }
            })
        ),
        "{incr:?}"
    );
    assert_eq!(leader.count("incr"), 1);
    assert_eq!(
        bounded(client.get("k")).await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(leader.count("get"), 2);
}

/// The nodes name a leader that is down (refused connection: nothing sent), then the new one:
/// an `INCR` is retried and runs once.
#[tokio::test]
async fn a_refused_connection_is_retried_even_for_a_non_idempotent_write() {
    let dead = dead_addr().await;
    let asked = Arc::new(AtomicUsize::new(0));
    let (leader, _) = node(|me| {
        let me = Arc::clone(me);
        let asked = Arc::clone(&asked);
        move |args: &[String]| {
            if is_sentinel_leader(args) {
                // The first two questions see the map before the election.
                return if asked.fetch_add(1, Ordering::SeqCst) < 2 {
                    names(&dead)
                } else {
                    names(&get(&me))
                };
            }
            match args[0].to_ascii_lowercase().as_str() {
                "incr" => Action::Reply(Frame::Integer(1)),
                _ => Action::Reply(Frame::Array(vec![])),
            }
        }
    })
    .await;
    let mut client = bounded(Client::connect(config(&[&leader]))).await.unwrap();
    assert_ne!(client.leader(), Some(leader.addr.as_str()));
    assert_eq!(bounded(client.incr("n")).await.unwrap(), 1);
    assert_eq!(leader.count("incr"), 1);
    assert_eq!(client.leader(), Some(leader.addr.as_str()));
}

/// Nobody names a leader: connecting gives up after the failover timeout.
#[tokio::test]
async fn no_leader_named_within_the_failover_timeout() {
    let (lonely, _) = node(|_| |_: &[String]| Action::Reply(Frame::Null)).await;
    let config = ClientConfig {
        failover_timeout: Duration::from_millis(300),
        ..config(&[&lonely])
    };
    let started = Instant::now();
    let connected = bounded(Client::connect(config)).await;
    assert!(
        matches!(connected, Err(Error::NoLeader { .. })),
        "{connected:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Under `AnyReplica` a write's token comes back with it, and a replica is told to wait for
/// it before the read; a replica that refuses the read sends it to the leader.
#[tokio::test]
async fn replica_reads_carry_the_write_token_and_fall_back_to_the_leader() {
    let replica_addr: Cell = Arc::default();
    let (leader, _) = node(|me| {
        let me = Arc::clone(me);
        let replica_addr = Arc::clone(&replica_addr);
        move |args: &[String]| {
            if is_sentinel_leader(args) {
                return names(&get(&me));
            }
            if is_sentinel_replicas(args) {
                let addr = get(&replica_addr);
                let (ip, port) = addr.rsplit_once(':').unwrap();
                return Action::Reply(Frame::Array(vec![Frame::Array(vec![
                    bulk("ip"),
                    bulk(ip),
                    bulk("port"),
                    bulk(port),
                    bulk("flags"),
                    bulk("slave"),
                ])]));
            }
            match args[0].to_ascii_lowercase().as_str() {
                "replikv" => Action::Reply(bulk("3:17")),
                "get" => Action::Reply(bulk("from-leader")),
                _ => ok(),
            }
        }
    })
    .await;
    let stale = Arc::new(AtomicBool::new(false));
    let (replica, _) = node(|_| {
        let stale = Arc::clone(&stale);
        move |args: &[String]| match args[0].to_ascii_lowercase().as_str() {
            "replikv" => ok(),
            "get" if stale.load(Ordering::SeqCst) => {
                error("STALE this replica lags its leader by 900 ms, more than the 500 ms allowed")
            }
            "get" => Action::Reply(bulk("from-replica")),
            _ => error("ERR unexpected"),
        }
    })
    .await;
    put(&replica_addr, &replica.addr);
    let config = ClientConfig {
        read_policy: ReadPolicy::AnyReplica,
        ..config(&[&leader])
    };
    let mut client = bounded(Client::connect(config)).await.unwrap();
    assert_eq!(client.replicas(), vec![replica.addr.as_str()]);

    bounded(client.set("k", "v")).await.unwrap();
    assert_eq!(
        client.token().map(|t| t.to_string()).as_deref(),
        Some("3:17")
    );
    let read = bounded(client.get("k")).await.unwrap();
    assert_eq!(read.as_deref(), Some(&b"from-replica"[..]));
    let read = bounded(client.get("k")).await.unwrap();
    assert_eq!(read.as_deref(), Some(&b"from-replica"[..]));
    let sent: Vec<Vec<String>> = replica.requests();
    assert_eq!(
        sent,
        vec![
            vec!["REPLIKV".to_string(), "AFTER".into(), "3:17".into()],
            vec!["GET".to_string(), "k".into()],
            vec!["GET".to_string(), "k".into()],
        ],
        "the token is set once per connection, before the first read after the write"
    );

    stale.store(true, Ordering::SeqCst);
    let read = bounded(client.get("k")).await.unwrap();
    assert_eq!(read.as_deref(), Some(&b"from-leader"[..]));
}
