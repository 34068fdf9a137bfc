//! What every connection of a node shares: its configuration, counters, the node handle and the
//! client registry behind `CLIENT LIST`.

use crate::config::Config;
use crate::conn::Conn;
use crate::node::NodeHandle;
use crate::repl_state::ReplShared;
use crate::stats::Stats;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One registered client, as `CLIENT LIST` shows it.
#[derive(Debug, Clone)]
struct ClientEntry {
    addr: String,
    name: String,
    since: Instant,
}

/// State shared by a node's connections and admin API.
#[derive(Debug)]
pub struct Shared {
    /// The resolved configuration.
    pub config: Config,
    /// Published counters.
    pub stats: Arc<Stats>,
    /// The node task.
    pub node: NodeHandle,
    /// Replication state.
    pub repl: Arc<ReplShared>,
    /// Random id of this run (`run_id` in `INFO`, the replication id later).
    pub run_id: String,
    /// When the node started.
    pub started: Instant,
    next_client_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, ClientEntry>>,
}

impl Shared {
    /// New shared state.
    pub fn new(
        config: Config,
        stats: Arc<Stats>,
        node: NodeHandle,
        repl: Arc<ReplShared>,
    ) -> Shared {
        Shared {
            config,
            stats,
            node,
            repl,
            run_id: random_hex_id(),
            started: Instant::now(),
            next_client_id: AtomicU64::new(1),
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    /// A fresh client id.
    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a client to the registry.
    pub fn register(&self, conn: &Conn) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(
                conn.id,
                ClientEntry {
                    addr: conn.addr.clone(),
                    name: String::new(),
                    since: Instant::now(),
                },
            );
        }
    }

    /// Records a client's new name.
    pub fn rename(&self, conn: &Conn) {
        if let Ok(mut clients) = self.clients.lock() {
            if let Some(c) = clients.get_mut(&conn.id) {
                c.name = conn
                    .name
                    .as_ref()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_default();
            }
        }
    }

    /// Removes a client from the registry.
    pub fn unregister(&self, id: u64) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(&id);
        }
        self.stats.connected_clients.fetch_sub(1, Ordering::Relaxed);
    }

    /// `CLIENT LIST` text.
    pub fn client_list(&self) -> String {
        let mut out = String::new();
        if let Ok(clients) = self.clients.lock() {
            for (id, c) in clients.iter() {
                let _ = writeln!(out, "{}", line(*id, c));
            }
        }
        out
    }

    /// `CLIENT INFO` text for one client.
    pub fn client_line(&self, id: u64) -> String {
        self.clients
            .lock()
            .ok()
            .and_then(|clients| clients.get(&id).map(|c| format!("{}\n", line(id, c))))
            .unwrap_or_default()
    }
}

fn line(id: u64, c: &ClientEntry) -> String {
    format!(
        "id={id} addr={} name={} age={} db=0",
        c.addr,
        c.name,
        c.since.elapsed().as_secs()
    )
}

/// A 40-hex-digit random id, as Redis's `run_id`. Seeded from the clock and process id through
/// the standard library's randomly keyed hasher; it needs to be unique, not secret.
fn random_hex_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(40);
    let mut i = 0u64;
    while out.len() < 40 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u32(std::process::id());
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        let _ = write!(out, "{:016x}", h.finish());
        i += 1;
    }
    out.truncate(40);
    out
}
