//! [`Client`]: finds the leader by majority vote, sends writes there and reads by policy, and
//! retries across a failover only what may run twice.

use crate::config::{
    ClientConfig, ReadPolicy, BACKOFF_MAX, BACKOFF_MIN, NODES_MAX, REPLICAS_MAX,
    REPLICAS_REFRESH_INTERVAL, REPLICA_DOWN_PAUSE,
};
use crate::connection::{encode_request, Connection, OpenError, ReadError};
use crate::discovery::{ask_all, ask_replicas, normalize};
use crate::error::{Error, Failure};
use crate::idempotency::{is_read, Idempotency};
use crate::leader_vote::LeaderVote;
use crate::reply_class::ReplyClass;
use bytes::{Bytes, BytesMut};
use replikv_core::replication::parse_token;
use replikv_core::LogPosition;
use replikv_proto::Frame;
use std::io;
use tokio::time::{sleep, timeout_at, Instant};
use tracing::debug;

/// `REPLIKV TOKEN`, pipelined after a write: the position the write's reply reflected.
const TOKEN_REQUEST: &[u8] = b"*2\r\n$7\r\nREPLIKV\r\n$5\r\nTOKEN\r\n";

/// A client of one replikv cluster.
///
/// It asks the nodes who leads (`SENTINEL get-master-addr-by-name`) and takes the address a
/// majority of the answering nodes name, sends every write there, and sends reads to the
/// leader or round-robin to its replicas ([`ReadPolicy`]). When an attempt fails with a
/// failover symptom (connection refused or broken, timeout, `READONLY`, `TRYAGAIN`,
/// `NOREPLICAS`) it looks for the leader again, pausing between attempts (25 ms doubling to
/// 400 ms), for at most [`ClientConfig::failover_timeout`], and retries:
///
/// - an [`Idempotency::Idempotent`] operation, whatever happened to the earlier attempt;
/// - an [`Idempotency::NonIdempotent`] one only when the earlier attempt certainly did not
///   execute: the connection could not be opened, or the reply says so
///   ([`ReplyClass::NotExecuted`]). When its request may have executed (it was sent and the
///   connection broke or timed out, or the reply is [`ReplyClass::MaybeExecuted`]) it fails
///   with [`Error::Indeterminate`] at once.
///
/// One operation takes at most about `failover_timeout + op_timeout`. The client holds one
/// connection per node and runs one operation at a time (`&mut self`); use one client per
/// task for concurrency. An operation whose future is dropped leaves its connection unused
/// afterwards (its reply would answer the next request), so cancelling is safe.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    /// Nodes asked who leads: the seeds, then the nodes learned; at most [`NODES_MAX`].
    nodes: Vec<String>,
    /// The leader found by the last discovery; `None` after a failover symptom until the
    /// next discovery.
    leader: Option<Node>,
    /// The leader's replicas as it last listed them; at most [`REPLICAS_MAX`].
    replicas: Vec<Replica>,
    /// Index into `replicas` of the next read under [`ReadPolicy::AnyReplica`].
    next_replica: usize,
    /// When the leader last listed its replicas (or was asked to).
    replicas_refreshed_at: Option<Instant>,
    /// The highest position a write of this client was reflected at (its consistency token).
    token: Option<LogPosition>,
    stats: ClientStats,
}

/// Counters of what a [`Client`] did, since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Discoveries that found a leader.
    pub discoveries: u64,
    /// Attempts that failed with a failover symptom and were followed by another.
    pub retries: u64,
    /// Operations that failed with [`Error::Indeterminate`].
    pub indeterminate: u64,
    /// Reads a replica answered.
    pub replica_reads: u64,
    /// Reads a replica refused or failed, sent to the leader instead.
    pub replica_fallbacks: u64,
}

#[derive(Debug)]
struct Node {
    addr: String,
    conn: Option<Connection>,
}

#[derive(Debug)]
struct Replica {
    addr: String,
    conn: Option<Connection>,
    /// The token `REPLIKV AFTER` set on `conn` (a session setting of that connection).
    after: Option<LogPosition>,
    /// Left out of the read rotation until then, after a failure.
    down_until: Option<Instant>,
}

/// One operation, encoded once and sent as is on every attempt.
struct Request {
    payload: Bytes,
    read: bool,
    idempotency: Idempotency,
}

/// Why an attempt got no reply.
#[derive(Debug)]
enum AttemptError {
    /// Nothing of the request was sent: the connection could not be opened.
    NotSent(Failure),
    /// The request was sent, or partly: it may have executed.
    MaybeSent(Failure),
    /// The node answered with bytes that are not RESP.
    Malformed(Failure),
    /// The node refused the password.
    Refused(String),
}

/// The replies an exchange got, in order, and what stopped it early, if anything.
struct Exchange {
    replies: Vec<Frame>,
    error: Option<AttemptError>,
}

/// What the retry loop does after an attempt.
enum Next {
    Done(Frame),
    Fail(Error),
    Retry(Failure),
}

impl Client {
    /// Finds the leader through `config.seeds`, within `config.failover_timeout`.
    ///
    /// # Errors
    /// [`Error::Usage`] without seeds or with a zero `op_timeout`; [`Error::NoLeader`] when no
    /// leader is named in time.
    pub async fn connect(config: ClientConfig) -> Result<Client, Error> {
        let mut nodes: Vec<String> = Vec::new();
        for seed in &config.seeds {
            let seed = normalize(seed);
            if !nodes.contains(&seed) && nodes.len() < NODES_MAX {
                nodes.push(seed);
            }
        }
        if nodes.is_empty() {
            return Err(Error::Usage("no seed nodes given".to_string()));
        }
        if config.op_timeout.is_zero() {
            return Err(Error::Usage(
                "op_timeout must be more than zero".to_string(),
            ));
        }
        let started = Instant::now();
        let mut client = Client {
            config,
            nodes,
            leader: None,
            replicas: Vec::new(),
            next_replica: 0,
            replicas_refreshed_at: None,
            token: None,
            stats: ClientStats::default(),
        };
        if !client
            .discover(started + client.config.failover_timeout)
            .await
        {
            return Err(Error::NoLeader {
                waited: started.elapsed(),
                last: None,
            });
        }
        Ok(client)
    }

    /// The leader's address (`host:port`) as the nodes name it, if one is known now.
    #[must_use]
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_ref().map(|n| n.addr.as_str())
    }

    /// The leader's replicas as it last listed them.
    #[must_use]
    pub fn replicas(&self) -> Vec<&str> {
        self.replicas.iter().map(|r| r.addr.as_str()).collect()
    }

    /// The nodes asked who leads: the seeds and the nodes learned.
    #[must_use]
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The consistency token of this client's writes: the highest position a write's reply
    /// reflected. Kept only under [`ReadPolicy::AnyReplica`] with
    /// [`ClientConfig::read_your_writes`].
    #[must_use]
    pub fn token(&self) -> Option<LogPosition> {
        self.token
    }

    /// What the client did so far.
    #[must_use]
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Asks the nodes who leads and the leader for its replicas now, rather than at the next
    /// failover symptom (or, for the replicas, [`REPLICAS_REFRESH_INTERVAL`]).
    ///
    /// # Errors
    /// [`Error::NoLeader`] when no leader is named within the failover timeout; the client
    /// then looks again at its next operation.
    pub async fn refresh(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        self.leader = None;
        if self.discover(started + self.config.failover_timeout).await {
            Ok(())
        } else {
            Err(Error::NoLeader {
                waited: started.elapsed(),
                last: None,
            })
        }
    }

    /// The settings in force.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Changes where reads go from now on.
    pub fn set_read_policy(&mut self, policy: ReadPolicy) {
        self.config.read_policy = policy;
    }

    /// Runs the command `args` (name first) and returns its reply. Reads (the commands the
    /// server's table marks as not writing) go where [`ReadPolicy`] says; everything else to
    /// the leader. `idempotency` decides the retries (see [`Client`]);
    /// [`Idempotency::of`] gives the table's answer for known commands.
    ///
    /// # Errors
    /// [`Error::Server`] for an error reply that is not a failover symptom;
    /// [`Error::Indeterminate`] when a non-idempotent command may have executed;
    /// [`Error::NoLeader`] when no leader took it within the failover timeout;
    /// [`Error::Protocol`] for a malformed reply to an idempotent command;
    /// [`Error::Usage`] for an empty `args`.
    pub async fn call<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        idempotency: Idempotency,
    ) -> Result<Frame, Error> {
        let Some(name) = args.first() else {
            return Err(Error::Usage("empty command".to_string()));
        };
        let mut payload = BytesMut::new();
        encode_request(&mut payload, args);
        let request = Request {
            payload: payload.freeze(),
            read: is_read(name.as_ref()),
            idempotency,
        };
        self.execute(&request).await
    }

    /// Runs `args` with the idempotency the table gives it.
    async fn call_known<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, Error> {
        self.call(args, Idempotency::of(args)).await
    }

    /// `GET key`: the value, `None` when the key does not exist. Retried across a failover.
    ///
    /// # Errors
    /// As [`Client::call`]; [`Error::Protocol`] for a reply that is not a string or nil.
    pub async fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        let reply = self.call_known(&[b"GET".as_slice(), key.as_ref()]).await?;
        optional_bulk(reply, "GET")
    }

    /// `SET key value`. Retried across a failover.
    ///
    /// # Errors
    /// As [`Client::call`]; [`Error::Protocol`] for a reply other than `OK`.
    pub async fn set(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        let reply = self
            .call_known(&[b"SET".as_slice(), key.as_ref(), value.as_ref()])
            .await?;
        match reply {
            Frame::Simple(s) if s == "OK" => Ok(()),
            other => Err(unexpected("SET", &other)),
        }
    }

    /// `DEL key...`: how many of the keys existed. Retried across a failover, so after one the
    /// count is the last attempt's (keys an earlier attempt deleted are not counted).
    ///
    /// # Errors
    /// As [`Client::call`]; [`Error::Usage`] without keys.
    pub async fn del<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> Result<i64, Error> {
        let reply = self.call_known(&with_keys(b"DEL", keys)?).await?;
        integer(reply, "DEL")
    }

    /// `EXISTS key...`: how many of the keys exist (a key named twice counts twice). Retried.
    ///
    /// # Errors
    /// As [`Client::call`]; [`Error::Usage`] without keys.
    pub async fn exists<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> Result<i64, Error> {
        let reply = self.call_known(&with_keys(b"EXISTS", keys)?).await?;
        integer(reply, "EXISTS")
    }

    /// `MGET key...`: each key's value or `None`, in order. Retried.
    ///
    /// # Errors
    /// As [`Client::call`]; [`Error::Usage`] without keys.
    pub async fn mget<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> Result<Vec<Option<Bytes>>, Error> {
        let reply = self.call_known(&with_keys(b"MGET", keys)?).await?;
        match reply {
            Frame::Array(items) if items.len() == keys.len() => items
                .into_iter()
                .map(|item| optional_bulk(item, "MGET"))
                .collect(),
            other => Err(unexpected("MGET", &other)),
        }
    }

    /// `INCR key`: the new value. Not retried once it may have executed.
    ///
    /// # Errors
    /// As [`Client::call`], notably [`Error::Indeterminate`].
    pub async fn incr(&mut self, key: impl AsRef<[u8]>) -> Result<i64, Error> {
        let reply = self.call_known(&[b"INCR".as_slice(), key.as_ref()]).await?;
        integer(reply, "INCR")
    }

    /// `INCRBY key by`: the new value. Not retried once it may have executed.
    ///
    /// # Errors
    /// As [`Client::call`], notably [`Error::Indeterminate`].
    pub async fn incr_by(&mut self, key: impl AsRef<[u8]>, by: i64) -> Result<i64, Error> {
        let by = by.to_string();
        let reply = self
            .call_known(&[b"INCRBY".as_slice(), key.as_ref(), by.as_bytes()])
            .await?;
        integer(reply, "INCRBY")
    }

    /// `APPEND key value`: the new length. Not retried once it may have executed.
    ///
    /// # Errors
    /// As [`Client::call`], notably [`Error::Indeterminate`].
    pub async fn append(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<i64, Error> {
        let reply = self
            .call_known(&[b"APPEND".as_slice(), key.as_ref(), value.as_ref()])
            .await?;
        integer(reply, "APPEND")
    }

    /// The retry loop: replica first for a read under [`ReadPolicy::AnyReplica`], then the
    /// leader; across failover symptoms, rediscovery and another attempt while the rules and
    /// the failover timeout allow.
    async fn execute(&mut self, request: &Request) -> Result<Frame, Error> {
        let started = Instant::now();
        let deadline = started + self.config.failover_timeout;
        let mut pause = BACKOFF_MIN;
        let mut last: Option<Failure> = None;
        loop {
            if request.read && self.config.read_policy == ReadPolicy::AnyReplica {
                let due = self
                    .replicas_refreshed_at
                    .is_none_or(|t| t.elapsed() >= REPLICAS_REFRESH_INTERVAL);
                if due && self.leader.is_some() {
                    self.refresh_replicas().await;
                }
                if let Some(frame) = self.read_on_replica(request).await? {
                    self.stats.replica_reads += 1;
                    return Ok(frame);
                }
                if !self.replicas.is_empty() {
                    self.stats.replica_fallbacks += 1;
                }
            }
            if self.leader.is_none() && !self.discover(deadline).await {
                return Err(Error::NoLeader {
                    waited: started.elapsed(),
                    last,
                });
            }
            match self.attempt_on_leader(request).await {
                Next::Done(frame) => return Ok(frame),
                Next::Fail(e) => {
                    if matches!(e, Error::Indeterminate { .. }) {
                        self.stats.indeterminate += 1;
                    }
                    return Err(e);
                }
                Next::Retry(failure) => {
                    debug!(%failure, "attempt failed; looking for the leader again");
                    self.stats.retries += 1;
                    self.leader = None;
                    last = Some(failure);
                }
            }
            if Instant::now() + pause > deadline {
                return Err(Error::NoLeader {
                    waited: started.elapsed(),
                    last,
                });
            }
            sleep(pause).await;
            pause = (pause * 2).min(BACKOFF_MAX);
        }
    }

    /// One attempt on the leader, with the write's token fetched in the same round trip when
    /// replicas are to wait for it.
    async fn attempt_on_leader(&mut self, request: &Request) -> Next {
        let with_token = !request.read
            && self.config.read_your_writes
            && self.config.read_policy == ReadPolicy::AnyReplica;
        let Some(leader) = self.leader.as_mut() else {
            return Next::Retry(Failure::Connect {
                addr: String::new(),
                source: io::Error::new(io::ErrorKind::NotFound, "no leader known"),
            });
        };
        let deadline = Instant::now() + self.config.op_timeout;
        let conn = match ready(&mut leader.conn, &leader.addr, &self.config, deadline).await {
            Ok((conn, _)) => conn,
            Err(e) => return after_error(e, request.idempotency),
        };
        let mut payload = BytesMut::from(&request.payload[..]);
        if with_token {
            payload.extend_from_slice(TOKEN_REQUEST);
        }
        let count = if with_token { 2 } else { 1 };
        let exchange = roundtrip(conn, &leader.addr, &payload, count, deadline, &self.config).await;
        if exchange.error.is_some() {
            leader.conn = None;
        }
        let addr = leader.addr.clone();
        let Some(reply) = exchange.replies.first() else {
            // An exchange without a reply has an error; were it not so, the request was sent.
            let error = exchange
                .error
                .unwrap_or_else(|| AttemptError::MaybeSent(no_reply(&addr)));
            return after_error(error, request.idempotency);
        };
        if with_token && !matches!(reply, Frame::Error(_)) {
            if let Some(Frame::Bulk(token)) = exchange.replies.get(1) {
                // A node too old for tokens answers with an error; the client then keeps none.
                if let Ok(pos) = parse_token(token) {
                    self.token = Some(self.token.map_or(pos, |t| t.max(pos)));
                }
            }
        }
        after_reply(reply.clone(), &addr, request.idempotency)
    }

    /// A read on the next replica in the rotation. `Ok(None)` when there is none to ask or it
    /// refused or failed: the caller then reads on the leader (a read has no effect, so trying
    /// it elsewhere is always allowed).
    async fn read_on_replica(&mut self, request: &Request) -> Result<Option<Frame>, Error> {
        let now = Instant::now();
        let count = self.replicas.len();
        let Some(index) = (0..count)
            .map(|i| (self.next_replica + i) % count)
            .find(|&i| self.replicas[i].down_until.is_none_or(|t| t <= now))
        else {
            return Ok(None);
        };
        self.next_replica = (index + 1) % count;
        let config = &self.config;
        let replica = &mut self.replicas[index];
        let deadline = now + config.op_timeout;
        let conn = match ready(&mut replica.conn, &replica.addr, config, deadline).await {
            Ok((conn, fresh)) => {
                if fresh {
                    replica.after = None;
                }
                conn
            }
            Err(AttemptError::Refused(text)) => return Err(Error::Server(text)),
            Err(e) => {
                debug!(replica = %replica.addr, error = ?e, "replica unavailable; reading on the leader");
                replica.down_until = Some(now + REPLICA_DOWN_PAUSE);
                return Ok(None);
            }
        };
        let after = self
            .token
            .filter(|t| config.read_your_writes && replica.after.is_none_or(|a| a < *t));
        let mut payload = BytesMut::new();
        if let Some(token) = after {
            let token = token.to_string();
            encode_request(
                &mut payload,
                &[b"REPLIKV".as_slice(), b"AFTER", token.as_bytes()],
            );
        }
        payload.extend_from_slice(&request.payload);
        let count = if after.is_some() { 2 } else { 1 };
        let exchange = roundtrip(conn, &replica.addr, &payload, count, deadline, config).await;
        if let Some(e) = exchange.error {
            debug!(replica = %replica.addr, error = ?e, "replica read failed; reading on the leader");
            replica.conn = None;
            replica.down_until = Some(now + REPLICA_DOWN_PAUSE);
            return Ok(None);
        }
        let mut replies = exchange.replies.into_iter();
        if after.is_some() {
            match replies.next() {
                Some(Frame::Simple(ok)) if ok == "OK" => replica.after = after,
                // A node that cannot wait for the token cannot promise read-your-writes.
                _ => return Ok(None),
            }
        }
        match replies.next() {
            Some(Frame::Error(text)) if ReplyClass::of(&text) == ReplyClass::Answer => {
                Err(Error::Server(text))
            }
            Some(Frame::Error(text)) => {
                debug!(replica = %replica.addr, reply = %text, "replica refused the read; reading on the leader");
                Ok(None)
            }
            Some(frame) => Ok(Some(frame)),
            None => Ok(None),
        }
    }

    /// Asks every known node who leads until a majority of those answering name one (or,
    /// after [`ClientConfig::discovery_fallback_after`], one is named more than any other), or
    /// until `deadline`. Learns the named nodes and the leader's replicas on the way. Returns
    /// whether a leader was found.
    async fn discover(&mut self, deadline: Instant) -> bool {
        let began = Instant::now();
        let fallback_after = self.config.discovery_fallback_after();
        let mut pause = BACKOFF_MIN;
        loop {
            let answers = ask_all(&self.nodes, &self.config).await;
            for named in answers.iter().filter_map(|a| a.leader.as_deref()) {
                self.learn_node(named);
            }
            let vote = LeaderVote::tally(&answers);
            let chosen = vote
                .choice(began.elapsed() >= fallback_after)
                .map(str::to_string);
            if let Some(addr) = chosen {
                debug!(leader = %addr, answered = vote.answered, majority = vote.majority.is_some(), "leader found");
                let keep = self.leader.take().filter(|n| n.addr == addr);
                self.leader = Some(keep.unwrap_or(Node { addr, conn: None }));
                self.stats.discoveries += 1;
                self.refresh_replicas().await;
                return true;
            }
            debug!(
                answered = vote.answered,
                "no leader named by a majority yet"
            );
            if Instant::now() + pause > deadline {
                return false;
            }
            sleep(pause).await;
            pause = (pause * 2).min(BACKOFF_MAX);
        }
    }

    /// Asks the leader for its replicas; keeps the replicas it still lists (and their
    /// connections), adds the new ones, and learns them as nodes. Best effort: when the leader
    /// cannot say, the list stays as it was, less the leader itself.
    async fn refresh_replicas(&mut self) {
        let Some(leader) = self.leader.as_mut() else {
            return;
        };
        let leader_addr = leader.addr.clone();
        self.replicas_refreshed_at = Some(Instant::now());
        let deadline = Instant::now() + self.config.node_answer_timeout();
        let listed = match ready(&mut leader.conn, &leader.addr, &self.config, deadline).await {
            Ok((conn, _)) => {
                let asked = timeout_at(deadline, ask_replicas(conn, &self.config.cluster_name));
                match asked.await {
                    Ok(Some(list)) => Some(list),
                    // Unanswered: the connection may owe a reply; the leader attempt that follows
                    // opens a new one.
                    Ok(None) | Err(_) => {
                        leader.conn = None;
                        None
                    }
                }
            }
            Err(_) => None,
        };
        self.replicas.retain(|r| r.addr != leader_addr);
        if self.next_replica >= self.replicas.len() {
            self.next_replica = 0;
        }
        let Some(listed) = listed else {
            self.check_invariants();
            return;
        };
        for addr in &listed {
            self.learn_node(addr);
        }
        self.replicas.retain(|r| listed.contains(&r.addr));
        for addr in listed {
            let known = self.replicas.iter().any(|r| r.addr == addr);
            if !known && addr != leader_addr && self.replicas.len() < REPLICAS_MAX {
                self.replicas.push(Replica {
                    addr,
                    conn: None,
                    after: None,
                    down_until: None,
                });
            }
        }
        if self.next_replica >= self.replicas.len() {
            self.next_replica = 0;
        }
        self.check_invariants();
    }

    /// The bounds and relations the client's state keeps between operations.
    fn check_invariants(&self) {
        assert!(
            self.nodes.len() <= NODES_MAX,
            "{} nodes known, more than {NODES_MAX}",
            self.nodes.len()
        );
        assert!(
            self.replicas.len() <= REPLICAS_MAX,
            "{} replicas kept, more than {REPLICAS_MAX}",
            self.replicas.len()
        );
        assert!(
            self.next_replica < self.replicas.len().max(1),
            "next replica {} of {}",
            self.next_replica,
            self.replicas.len()
        );
        if let Some(leader) = &self.leader {
            assert!(
                !self.replicas.iter().any(|r| r.addr == leader.addr),
                "the leader {} is among the replicas",
                leader.addr
            );
        }
    }

    /// Adds `addr` to the nodes asked who leads, within [`NODES_MAX`].
    fn learn_node(&mut self, addr: &str) {
        let addr = normalize(addr);
        if !self.nodes.contains(&addr) && self.nodes.len() < NODES_MAX {
            self.nodes.push(addr);
        }
    }
}

/// `slot`'s connection when it can take a request, else a new one (opened by `deadline`);
/// and whether it is new (per-connection settings such as `REPLIKV AFTER` are then unset).
async fn ready<'a>(
    slot: &'a mut Option<Connection>,
    addr: &str,
    config: &ClientConfig,
    deadline: Instant,
) -> Result<(&'a mut Connection, bool), AttemptError> {
    if !slot.as_mut().is_some_and(Connection::is_reusable) {
        *slot = None;
        let opened = timeout_at(
            deadline,
            Connection::open(addr, config.password.as_deref(), config.reply_bytes_max),
        )
        .await;
        let conn = match opened {
            Ok(Ok(conn)) => conn,
            Ok(Err(OpenError::Io(source))) => {
                return Err(AttemptError::NotSent(Failure::Connect {
                    addr: addr.to_string(),
                    source,
                }))
            }
            Ok(Err(OpenError::Refused(text))) => return Err(AttemptError::Refused(text)),
            Err(_) => {
                return Err(AttemptError::NotSent(Failure::Connect {
                    addr: addr.to_string(),
                    source: io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
                }))
            }
        };
        return Ok((slot.insert(conn), true));
    }
    match slot.as_mut() {
        Some(conn) => Ok((conn, false)),
        None => Err(AttemptError::NotSent(no_reply(addr))),
    }
}

/// Sends `payload` (`count` requests) on `conn` and reads their replies, all by `deadline`.
/// Every error after the first byte may have gone out is [`AttemptError::MaybeSent`] (or
/// [`AttemptError::Malformed`]).
async fn roundtrip(
    conn: &mut Connection,
    addr: &str,
    payload: &[u8],
    count: usize,
    deadline: Instant,
    config: &ClientConfig,
) -> Exchange {
    let mut replies = Vec::with_capacity(count);
    let done = timeout_at(deadline, async {
        conn.send(payload, count)
            .await
            .map_err(|source| io_failure(addr, source))?;
        while replies.len() < count {
            match conn.read_reply().await {
                Ok(frame) => replies.push(frame),
                Err(ReadError::Io(source)) => return Err(io_failure(addr, source)),
                Err(ReadError::Protocol(detail)) => {
                    return Err(AttemptError::Malformed(Failure::Protocol {
                        addr: addr.to_string(),
                        detail,
                    }))
                }
            }
        }
        Ok(())
    })
    .await;
    let error = match done {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(AttemptError::MaybeSent(Failure::Timeout {
            addr: addr.to_string(),
            after: config.op_timeout,
        })),
    };
    Exchange { replies, error }
}

fn io_failure(addr: &str, source: io::Error) -> AttemptError {
    AttemptError::MaybeSent(Failure::Io {
        addr: addr.to_string(),
        source,
    })
}

fn no_reply(addr: &str) -> Failure {
    Failure::Io {
        addr: addr.to_string(),
        source: io::Error::new(io::ErrorKind::UnexpectedEof, "no reply"),
    }
}

/// What to do after an attempt that got no reply.
fn after_error(error: AttemptError, idempotency: Idempotency) -> Next {
    let idempotent = idempotency == Idempotency::Idempotent;
    match error {
        AttemptError::NotSent(failure) => Next::Retry(failure),
        AttemptError::Refused(text) => Next::Fail(Error::Server(text)),
        AttemptError::MaybeSent(failure) if idempotent => Next::Retry(failure),
        // Garbage from a node is not a failover symptom: trying again would not help.
        AttemptError::Malformed(failure) if idempotent => {
            Next::Fail(Error::Protocol(failure.to_string()))
        }
        AttemptError::MaybeSent(cause) | AttemptError::Malformed(cause) => {
            Next::Fail(Error::Indeterminate { cause })
        }
    }
}

/// What to do with the leader's reply.
fn after_reply(reply: Frame, addr: &str, idempotency: Idempotency) -> Next {
    let Frame::Error(text) = reply else {
        return Next::Done(reply);
    };
    let failure = || Failure::Reply {
        addr: addr.to_string(),
        text: text.clone(),
    };
    match ReplyClass::of(&text) {
        ReplyClass::Answer => Next::Fail(Error::Server(text)),
        ReplyClass::NotExecuted => Next::Retry(failure()),
        ReplyClass::MaybeExecuted if idempotency == Idempotency::Idempotent => {
            Next::Retry(failure())
        }
        ReplyClass::MaybeExecuted => Next::Fail(Error::Indeterminate { cause: failure() }),
    }
}

/// `name` followed by `keys`, for the multi-key commands.
fn with_keys<'a, K: AsRef<[u8]>>(name: &'a [u8], keys: &'a [K]) -> Result<Vec<&'a [u8]>, Error> {
    if keys.is_empty() {
        return Err(Error::Usage(format!(
            "{} needs at least one key",
            String::from_utf8_lossy(name)
        )));
    }
    let mut args = Vec::with_capacity(keys.len() + 1);
    args.push(name);
    args.extend(keys.iter().map(AsRef::as_ref));
    Ok(args)
}

fn optional_bulk(reply: Frame, command: &str) -> Result<Option<Bytes>, Error> {
    match reply {
        Frame::Bulk(value) => Ok(Some(value)),
        Frame::Null => Ok(None),
        other => Err(unexpected(command, &other)),
    }
}

fn integer(reply: Frame, command: &str) -> Result<i64, Error> {
    match reply {
        Frame::Integer(n) => Ok(n),
        other => Err(unexpected(command, &other)),
    }
}

fn unexpected(command: &str, reply: &Frame) -> Error {
    Error::Protocol(format!("unexpected reply to {command}: {reply:?}"))
}

#[cfg(test)]
#[path = "client_test.rs"]
mod tests;
