//! The upstream side of a replication link: a follower connected to this node's client port
//! and spoke the peer protocol. After the handshake it sends `Fetch`; this side answers with a
//! snapshot when it must, then streams the log (from the in-memory feed, or from the log files
//! when the follower is further behind), with heartbeats, and passes the follower's acks to
//! the node. With fault injection on, a link with a blocked follower is closed right after the
//! handshake or as soon as the block is set, and its frames pass through [`crate::faults`].

use crate::feed::FeedState;
use crate::node::NodeMsg;
use crate::now_ms;
use crate::peer_link::{self, LinkError, LinkReader, LinkWriter};
use crate::shared::Shared;
use bytes::{Bytes, BytesMut};
use replikv_core::replication::{check_epoch, plan_cut, plan_fetch, EpochTable, FetchPlan};
use replikv_core::{Epoch, LogPosition, Lsn, Store};
use replikv_proto::{PeerMessage, PeerRecord};
use replikv_storage::{LogCursor, LogRecord, WalError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

/// Payload bytes per `Entries` frame, at most (one larger record goes alone).
const ENTRIES_BATCH_BYTES: usize = 1 << 20;
/// Entries per snapshot chunk sent to a follower.
const SNAPSHOT_CHUNK_ENTRIES: usize = 4096;
/// Bytes queued for the socket past which the link stops reading the log until it drains.
const SEND_QUEUE_BYTES_MAX: usize = 4 << 20;
/// The next follower link's number: the node tells a follower's links apart by it, so the end
/// of an old link, or an ack it carried, never touches a newer one.
static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

/// Serves one follower until the link fails or the node stops. `buffered` holds the bytes
/// already read from the socket (the start of the first frame).
pub async fn serve(
    stream: TcpStream,
    buffered: BytesMut,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = stream.peer_addr().ok();
    let secret = shared.config.cluster_secret.clone();
    if secret.is_none() && !peer.is_some_and(|a| a.ip().is_loopback()) {
        warn!(peer = ?peer, "refused a peer link from a non-loopback address: no cluster secret is set");
        let (_, mut w) = peer_link::split(stream, buffered);
        w.refuse("this node has no cluster secret and accepts loopback peers only")
            .await;
        return;
    }
    let (mut reader, mut writer) = peer_link::split(stream, buffered);
    let id = match peer_link::handshake_server(
        &mut reader,
        &mut writer,
        &shared.config.cluster_name,
        &shared.repl.node_id,
        secret.as_deref().unwrap_or_default().as_bytes(),
    )
    .await
    {
        Ok(identity) => identity.node_id,
        Err(e) => {
            warn!(peer = ?peer, reason = %e, "refused a peer link");
            return;
        }
    };
    if let Err(e) = shared.repl.faults.check(&id) {
        warn!(follower = %id, reason = %e, "closed a peer link after the handshake");
        return;
    }
    reader.inject_faults(shared.repl.faults.for_link(&id));
    // The first frame tells a follower (`Fetch`) from a control link (`Control`).
    let first = match reader
        .recv_within(peer_link::HANDSHAKE_TIMEOUT, "waiting for Fetch")
        .await
    {
        Ok(m) => m,
        Err(e) => {
            warn!(peer = %id, reason = %e, "peer link closed before its first message");
            return;
        }
    };
    // A follower may first say where its log's epochs start.
    let (first, lineage) = match first {
        PeerMessage::Lineage {
            epochs,
            truncatable_from,
        } => {
            let next = match reader
                .recv_within(peer_link::HANDSHAKE_TIMEOUT, "waiting for Fetch")
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    warn!(peer = %id, reason = %e, "peer link closed after its Lineage");
                    return;
                }
            };
            let table = EpochTable::from_starts(&epochs).ok();
            (next, table.map(|t| (t, truncatable_from)))
        }
        other => (other, None),
    };
    if matches!(first, PeerMessage::Control { .. }) {
        let result = tokio::select! {
            r = crate::control::serve_inbound(&shared, &id, &mut reader, &mut writer) => r,
            _ = shutdown.wait_for(|s| *s) => Ok(()),
        };
        if let Err(e) = result {
            debug!(peer = %id, reason = %e, "control link closed");
        }
        return;
    }
    let result = tokio::select! {
        r = follow_session(&shared, &id, peer, first, lineage, &mut reader, &mut writer) => r,
        _ = shutdown.wait_for(|s| *s) => Ok(()),
    };
    match result {
        Ok(()) | Err(LinkError::Closed) => info!(follower = %id, "replication link closed"),
        Err(e) => warn!(follower = %id, reason = %e, "replication link closed"),
    }
}

async fn follow_session(
    shared: &Arc<Shared>,
    id: &str,
    peer: Option<SocketAddr>,
    first: PeerMessage,
    lineage: Option<(EpochTable, Lsn)>,
    reader: &mut LinkReader,
    writer: &mut LinkWriter,
) -> Result<(), LinkError> {
    let faults = &shared.repl.faults;
    let (prev, addr, generation) = tokio::select! {
        r = start_session(shared, id, peer, first, lineage, writer) => r?,
        e = faults.until_blocked(id) => return Err(e),
    };
    let link = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
    shared
        .node
        .send(NodeMsg::FollowerUp {
            id: id.to_string(),
            addr,
            link,
        })
        .await;
    // A block set meanwhile ends the stream at once; the follower is then marked down.
    let result = tokio::select! {
        r = stream(shared, id, link, reader, writer, prev, generation) => r,
        e = faults.until_blocked(id) => Err(e),
    };
    shared
        .node
        .send(NodeMsg::FollowerDown {
            id: id.to_string(),
            link,
        })
        .await;
    result
}

/// Reads the follower's `Fetch`, then sends a snapshot when it needs one; returns the position
/// the stream continues from, the follower's client address, and the generation of this
/// node's log the plan was made on (a log replaced since then must not be streamed from).
async fn start_session(
    shared: &Arc<Shared>,
    id: &str,
    peer: Option<SocketAddr>,
    first: PeerMessage,
    lineage: Option<(EpochTable, Lsn)>,
    writer: &mut LinkWriter,
) -> Result<(LogPosition, String, u64), LinkError> {
    let (from, epoch, history, listen_port) = match first {
        PeerMessage::Fetch {
            from,
            epoch,
            history,
            listen_port,
        } => (from, epoch, history, listen_port),
        other => {
            let why = format!("expected Fetch, got {}", other.kind());
            writer.refuse(&why).await;
            return Err(LinkError::Protocol(why));
        }
    };
    let state = shared.repl.feed.state();
    // A follower that has seen a newer epoch than ours must not follow us: we are deposed.
    if let Err(e) = check_epoch(state.epoch, epoch) {
        let why = format!(
            "this node is at epoch {}, the follower has seen {epoch}: {e}",
            state.epoch
        );
        writer.refuse(&why).await;
        return Err(LinkError::Protocol(why));
    }
    let addr = match peer {
        Some(a) => SocketAddr::new(a.ip(), listen_port).to_string(),
        None => format!("?:{listen_port}"),
    };
    let history_ours = shared.repl.status().history;
    let epoch_at_from = epoch_at(shared, from.lsn, state).await;
    let plan = plan_fetch(from, history, history_ours, state.last, epoch_at_from);
    let (prev, generation) = match plan {
        FetchPlan::Stream { .. } => {
            info!(follower = %id, from = %from, "streaming the log (partial resync)");
            (from, state.generation)
        }
        FetchPlan::Snapshot { reason } => {
            match cut_point(shared, from, history, history_ours, lineage, state).await {
                Some(to) => {
                    info!(follower = %id, from = %from, to = %to, reason,
                        "the follower cuts its log back to the last entry both logs share");
                    writer.send(&PeerMessage::Truncate { to }).await?;
                    (to, state.generation)
                }
                None => {
                    info!(follower = %id, from = %from, reason, "sending a snapshot (full resync)");
                    send_snapshot(shared, writer).await?
                }
            }
        }
    };
    Ok((prev, addr, generation))
}

/// Where a follower whose log parted from ours cuts back to ([`plan_cut`]), if we still hold
/// the entry there (or end there).
async fn cut_point(
    shared: &Arc<Shared>,
    from: LogPosition,
    history: u64,
    history_ours: u64,
    lineage: Option<(EpochTable, Lsn)>,
    state: FeedState,
) -> Option<LogPosition> {
    let (theirs, truncatable_from) = lineage?;
    let ours = shared.repl.epochs.lock().ok()?.clone();
    let to = plan_cut(
        from,
        history,
        history_ours,
        &theirs,
        truncatable_from,
        &ours,
        state.last.lsn,
    )?;
    (epoch_at(shared, to.lsn, state).await == Some(to.epoch)).then_some(to)
}

/// The epoch of our record at `lsn`: from the feed, the log files, or the snapshot position.
async fn epoch_at(shared: &Arc<Shared>, lsn: Lsn, state: FeedState) -> Option<Epoch> {
    if lsn == Lsn::ZERO {
        return None;
    }
    if lsn == state.last.lsn {
        return Some(state.last.epoch);
    }
    if let Some(e) = shared.repl.feed.epoch_at(lsn) {
        return Some(e);
    }
    if lsn > state.written {
        return None;
    }
    let dir = shared.repl.wal_dir.clone();
    let upto = state.written;
    tokio::task::spawn_blocking(move || {
        let mut cursor = LogCursor::open(&dir, lsn).ok()?;
        let batch = cursor.next_batch(upto, 1).ok()?;
        batch
            .first()
            .filter(|r| r.pos.lsn == lsn)
            .map(|r| r.pos.epoch)
    })
    .await
    .ok()
    .flatten()
}

/// Sends a snapshot of the node's state; returns the position it covers and the generation of
/// the log it was taken from.
async fn send_snapshot(
    shared: &Arc<Shared>,
    writer: &mut LinkWriter,
) -> Result<(LogPosition, u64), LinkError> {
    let (done, rx) = oneshot::channel();
    if !shared
        .node
        .send(NodeMsg::SnapshotForFollower { done })
        .await
    {
        return Err(LinkError::Closed);
    }
    let (store, pos, history, generation) = rx.await.map_err(|_| LinkError::Closed)?;
    let chunks = tokio::task::spawn_blocking(move || -> Vec<Vec<u8>> {
        let chunks: Vec<Vec<u8>> = Store::snapshot_chunks(&store, SNAPSHOT_CHUNK_ENTRIES).collect();
        drop(store);
        chunks
    })
    .await
    .map_err(|e| LinkError::Protocol(format!("snapshot task failed: {e}")))?;
    let total_bytes: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    writer
        .send(&PeerMessage::SnapshotBegin {
            pos,
            total_bytes,
            history,
        })
        .await?;
    let count = chunks.len() as u64;
    for (index, data) in chunks.into_iter().enumerate() {
        writer.queue(&PeerMessage::SnapshotChunk {
            index: index as u64,
            data: Bytes::from(data),
        })?;
        writer.flush().await?;
    }
    writer
        .send(&PeerMessage::SnapshotEnd { chunks: count })
        .await?;
    info!(at = %pos, bytes = total_bytes, chunks = count, "snapshot sent");
    Ok((pos, generation))
}

/// Streams the entries after `prev`, with heartbeats, while passing acks to the node.
async fn stream(
    shared: &Arc<Shared>,
    id: &str,
    link: u64,
    reader: &mut LinkReader,
    writer: &mut LinkWriter,
    mut prev: LogPosition,
    generation: u64,
) -> Result<(), LinkError> {
    let mut next = prev.lsn.next();
    let mut feed = shared.repl.feed.subscribe();
    let mut cursor: Option<LogCursor> = None;
    let mut heartbeat = tokio::time::interval(Duration::from_millis(shared.config.heartbeat_ms));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence_max = Duration::from_millis(
        (shared.config.heartbeat_ms * 50).max(shared.config.replica_lag_max_ms.saturating_mul(2)),
    );
    let mut last_heard = tokio::time::Instant::now();
    // An empty batch opens the stream: the follower acknowledges nothing before it, so no ack
    // can report a log that a snapshot on this link is about to replace.
    {
        let state = *feed.borrow();
        writer.queue(&PeerMessage::Entries {
            epoch: state.epoch,
            prev,
            commit: state.commit,
            records: Vec::new(),
        })?;
    }
    loop {
        // Ship everything there is, then wait for more, an ack or the heartbeat.
        let state = *feed.borrow_and_update();
        if state.generation != generation {
            return Err(LinkError::Protocol(
                "this node's log was replaced from a snapshot; the follower must start over".into(),
            ));
        }
        while next <= state.last.lsn && writer.queued_bytes() < SEND_QUEUE_BYTES_MAX {
            let records = read_records(shared, &mut cursor, next, state).await?;
            let Some(last) = records.last().map(|r| r.pos) else {
                break;
            };
            let records: Vec<PeerRecord> = records
                .into_iter()
                .map(|r| PeerRecord {
                    pos: r.pos,
                    payload: r.payload,
                })
                .collect();
            writer.queue(&PeerMessage::Entries {
                epoch: state.epoch,
                prev,
                commit: state.commit,
                records,
            })?;
            prev = last;
            next = last.lsn.next();
        }
        writer.flush().await?;
        tokio::select! {
            changed = feed.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = heartbeat.tick() => {
                shared.repl.faults.check(id)?;
                if last_heard.elapsed() > silence_max {
                    return Err(LinkError::Timeout("waiting for the follower's acks"));
                }
                let positions = shared.repl.positions();
                let state = *feed.borrow();
                // The leader's time up to which we are current: now on the leader, what our
                // own upstream told us on a replica. Only sent once everything is shipped, so
                // the follower is current as of it once it has applied what came before.
                if next > state.last.lsn {
                    if let Some(t) = positions.current_as_of_ms {
                        writer.queue(&PeerMessage::Heartbeat {
                            epoch: state.epoch,
                            commit: state.commit,
                            leader_time_ms: if positions.leader { now_ms() } else { t },
                        })?;
                    }
                }
            }
            msg = reader.recv() => {
                last_heard = tokio::time::Instant::now();
                match msg? {
                    PeerMessage::Ack { epoch, durable, applied } => {
                        if let Err(e) = check_epoch(shared.repl.feed.state().epoch, epoch) {
                            let why = format!("the follower has seen a newer epoch: {e}");
                            writer.refuse(&why).await;
                            return Err(LinkError::Protocol(why));
                        }
                        shared.node.send(NodeMsg::FollowerAck {
                            id: id.to_string(),
                            link,
                            durable,
                            applied,
                        }).await;
                    }
                    PeerMessage::Downstream { replicas } => {
                        shared.node.send(NodeMsg::Downstream {
                            via: id.to_string(),
                            replicas,
                        }).await;
                    }
                    PeerMessage::Refuse { reason } => return Err(LinkError::Refused(reason)),
                    other => {
                        let why = format!("unexpected {} from a follower", other.kind());
                        writer.refuse(&why).await;
                        return Err(LinkError::Protocol(why));
                    }
                }
            }
        }
    }
}

/// The records from `next` on: from the feed when it holds `next`, else from the log files.
async fn read_records(
    shared: &Arc<Shared>,
    cursor: &mut Option<LogCursor>,
    next: Lsn,
    state: FeedState,
) -> Result<Vec<LogRecord>, LinkError> {
    if let Some(records) = shared.repl.feed.read(next, ENTRIES_BATCH_BYTES) {
        *cursor = None;
        return Ok(records);
    }
    if next > state.written {
        // Not in the feed and not written yet: cannot happen unless the feed is tiny; wait.
        return Ok(Vec::new());
    }
    let dir = shared.repl.wal_dir.clone();
    let upto = state.written;
    let taken = cursor.take();
    let (records, back) = tokio::task::spawn_blocking(move || {
        let mut c = match taken {
            Some(c) => c,
            None => LogCursor::open(&dir, next)?,
        };
        let records = c.next_batch(upto, ENTRIES_BATCH_BYTES as u64)?;
        Ok::<_, WalError>((records, c))
    })
    .await
    .map_err(|e| LinkError::Protocol(format!("log reader failed: {e}")))?
    .map_err(|e| {
        debug!(error = %e, "cannot read the log for a follower");
        LinkError::Protocol(format!("cannot read the log from {next}: {e}"))
    })?;
    if records.first().is_some_and(|r| r.pos.lsn != next) {
        return Err(LinkError::Protocol(format!(
            "the log does not continue at {next}"
        )));
    }
    *cursor = Some(back);
    Ok(records)
}
