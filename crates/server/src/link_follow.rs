//! The follower side of replication: connect to the upstream's client port, authenticate,
//! ask for the entries after this node's last position, and apply what comes (a snapshot,
//! then entries), acknowledging progress. Reconnects with backoff while an upstream is set;
//! since every request starts from the node's own last position, a reconnect neither
//! duplicates nor skips an entry. With fault injection on, a link to a blocked upstream is
//! closed right after the handshake (where the upstream's id is learnt) or as soon as the
//! block is set, and its frames pass through [`crate::faults`].

use crate::config::Upstream;
use crate::node::{Install, NodeMsg};
use crate::now_ms;
use crate::peer_link::{self, LinkError, LinkReader, LinkWriter};
use crate::repl_state::Positions;
use crate::shared::Shared;
use bytes::BytesMut;
use replikv_core::{LogPosition, Lsn, Store};
use replikv_proto::{DownstreamReplica, PeerMessage, PEER_MAGIC};
use replikv_storage::{SnapshotMeta, SnapshotWriter};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Most epoch pairs a `Lineage` carries (one per change of leader; a longer table is not
/// sent, and the upstream falls back to a snapshot).
const LINEAGE_PAIRS_MAX: usize = 4_000;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Follows whatever upstream is set, until shutdown.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut upstream_rx = shared.repl.upstream.subscribe();
    let mut backoff = BACKOFF_MIN;
    loop {
        let upstream = upstream_rx.borrow_and_update().clone();
        let Some(up) = upstream else {
            tokio::select! {
                changed = upstream_rx.changed() => if changed.is_err() { return },
                _ = shutdown.wait_for(|s| *s) => return,
            }
            continue;
        };
        let started = tokio::time::Instant::now();
        let (result, moved) = tokio::select! {
            r = session(&shared, &up) => (r, false),
            _ = upstream_rx.changed() => (Err(LinkError::Protocol("the upstream setting changed".into())), true),
            _ = shutdown.wait_for(|s| *s) => return,
        };
        link_state(&shared, false, None, false).await;
        match result {
            Ok(()) => {}
            Err(e) => warn!(upstream = %up, reason = %e, "replication link down; reconnecting"),
        }
        // A new upstream (a failover) is dialled at once: the backoff was earned by the old
        // one, and the new leader's writes wait for this replica.
        if moved {
            backoff = BACKOFF_MIN;
            continue;
        }
        // A link that lasted resets the backoff; one that failed at once doubles it.
        if started.elapsed() > BACKOFF_MAX * 2 {
            backoff = BACKOFF_MIN;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            // Nor does a new upstream wait out the old one's backoff.
            changed = upstream_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                backoff = BACKOFF_MIN;
                continue;
            }
            _ = shutdown.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn link_state(shared: &Shared, up: bool, upstream_id: Option<String>, syncing: bool) {
    shared
        .node
        .send(NodeMsg::UpstreamLink {
            up,
            upstream_id,
            syncing,
        })
        .await;
}

async fn session(shared: &Arc<Shared>, up: &Upstream) -> Result<(), LinkError> {
    let addr = (up.host.as_str(), up.port);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| LinkError::Timeout("connecting to the upstream"))??;
    let secret = shared.config.cluster_secret.clone();
    if secret.is_none() && !stream.peer_addr().is_ok_and(|a| a.ip().is_loopback()) {
        warn!(upstream = %up, "no cluster secret is set: the link is authenticated with an empty secret");
    }
    let (mut reader, mut writer) = peer_link::split(stream, BytesMut::new());
    let upstream_id = peer_link::handshake_client(
        &mut reader,
        &mut writer,
        &shared.config.cluster_name,
        &shared.repl.node_id,
        secret.as_deref().unwrap_or_default().as_bytes(),
    )
    .await?
    .node_id;
    let faults = &shared.repl.faults;
    faults.check(&upstream_id)?;
    reader.inject_faults(faults.for_link(&upstream_id));
    let positions = shared.repl.positions();
    let history = shared.repl.status().history;
    let from = positions.applied;
    // Where this log's epochs start, so that an upstream whose log parted from it can say
    // where to cut instead of sending a snapshot (unless a cut failed: then a snapshot).
    if shared.config.control_plane()
        && !shared
            .repl
            .full_resync_next
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        let epochs = shared
            .repl
            .epochs
            .lock()
            .map(|t| t.starts().to_vec())
            .unwrap_or_default();
        if epochs.len() <= LINEAGE_PAIRS_MAX {
            writer
                .send(&PeerMessage::Lineage {
                    epochs,
                    truncatable_from: Lsn(crate::stats::Stats::get(
                        &shared.stats.last_snapshot_lsn,
                    )),
                })
                .await?;
        }
    }
    writer
        .send(&PeerMessage::Fetch {
            from,
            epoch: positions.epoch,
            history,
            listen_port: shared.config.port,
        })
        .await?;
    info!(upstream = %up, upstream_id = %upstream_id, from = %from, "replication link up");
    link_state(shared, true, Some(upstream_id.clone()), false).await;
    // Nothing is acknowledged before the upstream's stream opens (its first `Entries` or
    // heartbeat): until then this node's log may be one a snapshot is about to replace.
    let (acks_tx, acks_rx) = watch::channel(false);
    let ack_task = ack_loop(shared, &mut writer, &upstream_id, acks_rx);
    let recv_task = receive_loop(shared, &mut reader, &upstream_id, acks_tx);
    tokio::select! {
        r = ack_task => r,
        r = recv_task => r,
        e = faults.until_blocked(&upstream_id) => Err(e),
    }
}

/// Sends `Ack`s once the stream has opened (`streaming` turns true): at once when this node's
/// durable or applied position moves, and with a `Downstream` report every heartbeat interval.
async fn ack_loop(
    shared: &Arc<Shared>,
    writer: &mut LinkWriter,
    upstream_id: &str,
    mut streaming: watch::Receiver<bool>,
) -> Result<(), LinkError> {
    let mut positions = shared.repl.positions.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(shared.config.heartbeat_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent: Option<(Lsn, Lsn)> = None;
    loop {
        let report = tokio::select! {
            changed = positions.changed() => {
                if changed.is_err() { return Ok(()); }
                false
            }
            changed = streaming.changed() => {
                if changed.is_err() { return Ok(()); }
                false
            }
            _ = tick.tick() => {
                shared.repl.faults.check(upstream_id)?;
                true
            }
        };
        if !*streaming.borrow_and_update() {
            continue;
        }
        let p: Positions = *positions.borrow_and_update();
        let now = (p.durable, p.applied.lsn);
        if report || sent != Some(now) {
            writer.queue(&PeerMessage::Ack {
                epoch: p.epoch,
                durable: p.durable,
                applied: p.applied.lsn,
            })?;
            sent = Some(now);
        }
        if report {
            let status = shared.repl.status();
            if !status.replicas.is_empty() {
                let me = shared.repl.node_id.clone();
                let replicas = status
                    .replicas
                    .iter()
                    .map(|r| DownstreamReplica {
                        node_id: r.id.clone(),
                        addr: r.addr.clone(),
                        durable: r.durable,
                        applied: r.applied,
                        lag_ms: r.lag_ms,
                        via: r.via.clone().unwrap_or_else(|| me.clone()),
                    })
                    .take(256)
                    .collect();
                writer.queue(&PeerMessage::Downstream { replicas })?;
            }
        }
        writer.flush().await?;
    }
}

/// A snapshot being received.
struct Incoming {
    pos: LogPosition,
    history: u64,
    total_bytes: u64,
    received_bytes: u64,
    next_index: u64,
    store: Option<Store>,
    writer: Option<SnapshotWriter>,
}

async fn receive_loop(
    shared: &Arc<Shared>,
    reader: &mut LinkReader,
    upstream_id: &str,
    streaming: watch::Sender<bool>,
) -> Result<(), LinkError> {
    let mut incoming: Option<Incoming> = None;
    let silence_max = Duration::from_millis(
        (shared.config.heartbeat_ms * 50).max(shared.config.replica_lag_max_ms.saturating_mul(2)),
    );
    loop {
        let msg = reader
            .recv_within(silence_max, "waiting for the upstream")
            .await?;
        match msg {
            PeerMessage::Entries {
                epoch,
                prev,
                commit: _,
                records,
            } => {
                if incoming.is_some() {
                    return Err(LinkError::Protocol(
                        "Entries inside a snapshot transfer".into(),
                    ));
                }
                replicate(shared, epoch, prev, records, None).await?;
                streaming.send_replace(true);
            }
            PeerMessage::Heartbeat {
                epoch,
                commit: _,
                leader_time_ms,
            } => {
                let prev = shared.repl.positions().applied;
                replicate(shared, epoch, prev, Vec::new(), Some(leader_time_ms)).await?;
                streaming.send_replace(true);
            }
            PeerMessage::SnapshotBegin {
                pos,
                total_bytes,
                history,
            } => {
                if incoming.is_some() {
                    return Err(LinkError::Protocol("a second SnapshotBegin".into()));
                }
                info!(upstream = %upstream_id, at = %pos, bytes = total_bytes, "receiving a snapshot");
                link_state(shared, true, None, true).await;
                let dir = shared.config.data_dir.join("snapshots");
                let writer = tokio::task::spawn_blocking(move || {
                    SnapshotWriter::create(
                        &dir,
                        SnapshotMeta {
                            pos,
                            created_unix_ms: now_ms(),
                        },
                    )
                })
                .await
                .map_err(|e| LinkError::Protocol(format!("snapshot task failed: {e}")))?
                .map_err(|e| LinkError::Protocol(format!("cannot write the snapshot: {e}")))?;
                incoming = Some(Incoming {
                    pos,
                    history,
                    total_bytes,
                    received_bytes: 0,
                    next_index: 0,
                    store: Some(Store::new()),
                    writer: Some(writer),
                });
            }
            PeerMessage::SnapshotChunk { index, data } => {
                let Some(inc) = incoming.as_mut() else {
                    return Err(LinkError::Protocol(
                        "SnapshotChunk outside a transfer".into(),
                    ));
                };
                if index != inc.next_index {
                    return Err(LinkError::Protocol(format!(
                        "snapshot chunk {index} arrived, {} expected",
                        inc.next_index
                    )));
                }
                inc.received_bytes += data.len() as u64;
                if inc.received_bytes > inc.total_bytes {
                    return Err(LinkError::Protocol("snapshot larger than announced".into()));
                }
                inc.next_index += 1;
                let (Some(mut store), Some(mut writer)) = (inc.store.take(), inc.writer.take())
                else {
                    return Err(LinkError::Protocol("snapshot state lost".into()));
                };
                let (store, writer) = tokio::task::spawn_blocking(move || {
                    store
                        .load_snapshot_chunk(&data)
                        .map_err(|e| format!("bad snapshot chunk: {e}"))?;
                    writer
                        .write_chunk(&data)
                        .map_err(|e| format!("cannot write the snapshot: {e}"))?;
                    Ok::<_, String>((store, writer))
                })
                .await
                .map_err(|e| LinkError::Protocol(format!("snapshot task failed: {e}")))?
                .map_err(LinkError::Protocol)?;
                inc.store = Some(store);
                inc.writer = Some(writer);
            }
            PeerMessage::SnapshotEnd { chunks } => {
                let Some(inc) = incoming.take() else {
                    return Err(LinkError::Protocol("SnapshotEnd outside a transfer".into()));
                };
                if chunks != inc.next_index || inc.received_bytes != inc.total_bytes {
                    return Err(LinkError::Protocol(format!(
                        "snapshot ended after {} chunks and {} bytes; {chunks} chunks and {} bytes were announced",
                        inc.next_index, inc.received_bytes, inc.total_bytes
                    )));
                }
                let (Some(store), Some(writer)) = (inc.store, inc.writer) else {
                    return Err(LinkError::Protocol("snapshot state lost".into()));
                };
                let (done, rx) = oneshot::channel();
                let install = Install {
                    store,
                    pos: inc.pos,
                    history: inc.history,
                    writer,
                    done,
                };
                if !shared
                    .node
                    .send(NodeMsg::InstallSnapshot(Box::new(install)))
                    .await
                {
                    return Err(LinkError::Closed);
                }
                rx.await.map_err(|_| LinkError::Closed)?.map_err(|e| {
                    LinkError::Protocol(format!("cannot install the snapshot: {e}"))
                })?;
                link_state(shared, true, None, false).await;
            }
            PeerMessage::Truncate { to } => {
                if incoming.is_some() {
                    return Err(LinkError::Protocol(
                        "Truncate inside a snapshot transfer".into(),
                    ));
                }
                let (done, rx) = oneshot::channel();
                if !shared.node.send(NodeMsg::Truncate { to, done }).await {
                    return Err(LinkError::Closed);
                }
                if let Err(e) = rx.await.map_err(|_| LinkError::Closed)? {
                    // The next link asks for a snapshot instead.
                    shared
                        .repl
                        .full_resync_next
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Err(LinkError::Protocol(format!(
                        "cannot cut the log back to {to}: {e}"
                    )));
                }
            }
            PeerMessage::Refuse { reason } => return Err(LinkError::Refused(reason)),
            other => {
                return Err(LinkError::Protocol(format!(
                    "unexpected {} from the upstream",
                    other.kind()
                )))
            }
        }
    }
}

async fn replicate(
    shared: &Arc<Shared>,
    epoch: replikv_core::Epoch,
    prev: LogPosition,
    records: Vec<replikv_proto::PeerRecord>,
    leader_time_ms: Option<u64>,
) -> Result<(), LinkError> {
    let (done, rx) = oneshot::channel();
    let sent = shared
        .node
        .send(NodeMsg::Replicate {
            epoch,
            prev,
            records,
            leader_time_ms,
            done,
        })
        .await;
    if !sent {
        return Err(LinkError::Closed);
    }
    match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => {
            warn!(%reason, "refused entries from the upstream");
            Err(LinkError::Protocol(format!("refused entries: {reason}")))
        }
        Err(_) => Err(LinkError::Closed),
    }
}

/// Whether `bytes` (the first bytes a client sent) start a peer frame rather than a RESP
/// request: `Some(true)` yes, `Some(false)` no, `None` too few bytes to tell.
pub fn is_peer_frame(bytes: &[u8]) -> Option<bool> {
    let n = bytes.len().min(PEER_MAGIC.len());
    if bytes[..n] != PEER_MAGIC[..n] {
        Some(false)
    } else if n < PEER_MAGIC.len() {
        None
    } else {
        Some(true)
    }
}
