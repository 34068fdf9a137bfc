//! The replikv node: a Redis-protocol server over the replikv core and storage, with an admin
//! HTTP API and the `replikv` command line.
//!
//! - [`config`]: settings from defaults, a TOML file, `REPLIKV_*` variables and flags.
//! - [`node`]: the task that owns the key-value state and drives the write-ahead log.
//! - [`log_writer`]: group commit (`fsync = always`) or inline writes (`fsync = interval`).
//! - [`conn`]: client connections (RESP2/RESP3, pipelining, connection commands).
//! - [`admin`]: `/health`, `/status`, `/metrics`.
//! - [`info`](mod@info): `INFO` and `CONFIG GET` text.
//! - [`shared`], [`stats`]: what connections share, and the published counters.
//! - [`socket`]: client sockets driven with one read and one write per request.
//! - [`peer_link`], [`link_serve`], [`link_follow`], [`feed`], [`repl_state`], [`meta`]:
//!   replication links (both sides), the in-memory log tail they ship from, the replication
//!   state shared with connections, and the node's identity file.
//! - [`sentinel`]: Redis Sentinel's discovery commands, so Sentinel-aware clients find the
//!   leader.
//! - [`faults`]: fault injection in the peer layer (tests only, `--fault-injection`).
#![deny(missing_docs)]

pub mod admin;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod control;
pub mod failover_cmd;
pub mod faults;
pub mod feed;
pub mod forward;
pub mod info;
pub mod link_follow;
pub mod link_serve;
pub mod log_writer;
pub mod meta;
pub mod node;
pub mod peer_link;
pub mod repl_state;
pub mod replikv_cmd;
pub mod sentinel;
pub mod shared;
pub mod socket;
pub mod stats;

use crate::config::{Config, ConfigError};
use crate::faults::Faults;
use crate::feed::{Feed, FeedState};
use crate::node::{Fatal, Node};
use crate::repl_state::{Positions, ReplShared, ReplStatus, FEED_BYTES_MAX};
use crate::shared::Shared;
use crate::stats::Stats;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

/// The injected clock skew of this process, ms: what [`now_ms`] adds to the system clock.
/// Non-zero only while a node with fault injection on has a `clock_skew_ms` fault in force
/// ([`faults::Faults::set`], which refuses unless fault injection is on, sets it; healing
/// clears it). Process-wide: every node of one process shares it.
static CLOCK_SKEW_MS: AtomicI64 = AtomicI64::new(0);

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it), shifted by the
/// injected clock skew (tests only, see [`clock_skew_ms`]).
pub fn now_ms() -> u64 {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    real.saturating_add_signed(CLOCK_SKEW_MS.load(Ordering::Relaxed))
}

/// Milliseconds on a monotonic clock (from the first call in this process): what every wait,
/// timeout and replica lag is measured with, so that a step of the wall clock changes none.
pub fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// The clock skew [`now_ms`] applies, ms (0 unless fault injection set one).
pub fn clock_skew_ms() -> i64 {
    CLOCK_SKEW_MS.load(Ordering::Relaxed)
}

/// Sets the clock skew [`now_ms`] applies; only [`faults::Faults`] calls this, after checking
/// that fault injection is on and the skew within [`faults::CLOCK_SKEW_MS_MAX`].
pub(crate) fn set_clock_skew_ms(skew_ms: i64) {
    CLOCK_SKEW_MS.store(skew_ms, Ordering::Relaxed);
}

/// Why a node could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Recovery or the log failed.
    #[error(transparent)]
    Fatal(#[from] Fatal),
    /// The configuration may not be run.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Runs a node until `shutdown` turns true (or the node fails), then flushes and fsyncs.
///
/// # Errors
/// A port that cannot be bound, a recovery failure, a log failure while running, or fault
/// injection without the test setting in the environment.
pub async fn serve(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), ServeError> {
    // Checked again here for configurations built in code rather than by `Config::resolve`.
    config::check_fault_injection(
        config.fault_injection,
        std::env::var(config::TESTING_ENV).ok().as_deref(),
    )?;
    let stats = Arc::new(Stats::default());
    Stats::set(
        &stats.start_unix_ms,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    );
    // As in Redis, LASTSAVE reports the start time until the first snapshot.
    Stats::set(
        &stats.last_save_unix,
        Stats::get(&stats.start_unix_ms) / 1000,
    );
    let client_addr = format!("{}:{}", config.bind, config.port);
    let listener = TcpListener::bind(&client_addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: client_addr.clone(),
            source,
        })?;
    let admin_listener = if config.admin_port == 0 {
        None
    } else {
        let addr = format!("{}:{}", config.bind, config.admin_port);
        Some(
            TcpListener::bind(&addr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: addr.clone(),
                    source,
                })?,
        )
    };

    let meta = node::open_meta(&config)?;
    if config.cluster_secret.is_none() {
        warn!("no cluster secret is set: peer links are accepted from loopback addresses only");
    }
    if config.fault_injection {
        warn!(
            "!!! FAULT INJECTION IS ON: this node is for tests only. POST /faults on the admin \
             port cuts, delays or drops its replication links. Never run it in production !!!"
        );
    }
    let repl = Arc::new(ReplShared {
        node_id: meta.node_id.clone(),
        wal_dir: config.data_dir.join("wal"),
        feed: Feed::new(FEED_BYTES_MAX, FeedState::default()),
        positions: watch::Sender::new(Positions::default()),
        upstream: watch::Sender::new(config.replicaof.clone()),
        status: std::sync::Mutex::new(ReplStatus::default()),
        faults: Arc::new(Faults::new(config.fault_injection)),
        events: std::sync::Mutex::default(),
        map: watch::Sender::new(None),
        epochs: std::sync::Mutex::default(),
        full_resync_next: std::sync::atomic::AtomicBool::new(false),
        control_in: std::sync::OnceLock::new(),
    });
    let node = Node::open(&config, Arc::clone(&stats), meta, Arc::clone(&repl))?;
    let wal = node.wal();
    let (node_handle, node_task) = node.spawn(shutdown.clone());
    let shared = Arc::new(Shared::new(config, Arc::clone(&stats), node_handle, repl));
    tokio::spawn(link_follow::run(Arc::clone(&shared), shutdown.clone()));
    if shared.config.control_plane() {
        control::spawn(&shared, shutdown.clone())?;
    }

    if let Some(admin) = admin_listener {
        let router = admin::router(Arc::clone(&shared));
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(admin, router)
                .with_graceful_shutdown(async move {
                    // Either a shutdown or the sender going away stops the admin server.
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                warn!(error = %e, "admin HTTP server stopped");
            }
        });
    }
    info!(client = %client_addr, admin_port = shared.config.admin_port,
        data_dir = %shared.config.data_dir.display(), fsync = ?shared.config.fsync, "replikv ready");

    let mut stop = shutdown.clone();
    let mut node_task = node_task;
    let node_result = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, say: back off rather than spin.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                Stats::add(&stats.total_connections_received, 1);
                let open = stats.connected_clients.fetch_add(1, Ordering::Relaxed);
                if open >= shared.config.maxclients as u64 {
                    stats.connected_clients.fetch_sub(1, Ordering::Relaxed);
                    Stats::add(&stats.rejected_connections, 1);
                    tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        let mut stream = stream;
                        // The client is refused either way; the message is a courtesy.
                        let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
                    });
                    continue;
                }
                tokio::spawn(route(stream, Arc::clone(&shared), shutdown.clone()));
            }
            _ = stop.wait_for(|s| *s) => {
                break (&mut node_task).await;
            }
            result = &mut node_task => break result,
        }
    };
    let node_result = match node_result {
        Ok(r) => r,
        Err(join) => Err(Fatal::Wal(format!("node task ended abnormally: {join}"))),
    };
    let closed = Node::close_wal(wal);
    match (&node_result, &closed) {
        (Ok(()), Ok(())) => info!("stopped cleanly; log flushed and fsynced"),
        (Err(e), _) | (Ok(()), Err(e)) => error!(error = %e, "stopped on a failure"),
    }
    node_result?;
    closed?;
    Ok(())
}

/// Waits of 10 ms for the rest of a peer frame's magic.
const PEER_MAGIC_WAIT_TRIES: u32 = 100;

/// Sends a connection on the client port to the client loop, or to the replication link when
/// its first bytes are a peer frame's magic.
async fn route(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let mut first = [0u8; 4];
    // A few bytes of what may be a frame: wait for the rest of the magic, a bounded while;
    // a connection that never completes it goes to the client loop, which closes it.
    let mut tries = 0;
    let peer = loop {
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => break Some(false),
            Ok(n) => match link_follow::is_peer_frame(&first[..n]) {
                Some(is_peer) => break Some(is_peer),
                None if tries >= PEER_MAGIC_WAIT_TRIES => break Some(false),
                None => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
        }
    };
    if peer == Some(true) {
        shared
            .stats
            .connected_clients
            .fetch_sub(1, Ordering::Relaxed);
        link_serve::serve(stream, bytes::BytesMut::new(), shared, shutdown).await;
    } else {
        conn::serve(stream, shared, shutdown).await;
    }
}
