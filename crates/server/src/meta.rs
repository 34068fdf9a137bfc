//! What a node keeps about itself beside its data: its id, the history its log belongs to, the
//! highest epoch it has seen, and whether it led that history when it last ran. One small text
//! file, `node.meta`, replaced atomically.
//!
//! ```text
//! node_id = 3f9c2a7e1b04d6e8
//! history = 9a41c07d22e35b10
//! epoch = 4
//! role = leader
//! ```
//!
//! A history has one leader: only the node that started it writes in it, so its epochs never
//! repeat within it, which is what lets an upstream tell a follower's log is a prefix of its
//! own by the epoch of one entry (see `plan_fetch`). A node that starts leading and did not
//! lead its history before (a promoted replica) starts a new history; a file without a `role`
//! line counts as a replica's.

use std::io::Write;
use std::path::{Path, PathBuf};

const FILE: &str = "node.meta";

/// The node's identity and replication facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeMeta {
    /// Node id on peer links.
    pub node_id: String,
    /// The id of the history the log belongs to; 0 until the node leads or is bootstrapped.
    pub history: u64,
    /// The highest epoch seen (fencing).
    pub epoch: u64,
    /// Whether this node leads `history` (it started it).
    pub leads: bool,
}

/// Reads the file, or makes a fresh identity when there is none.
///
/// # Errors
/// The file is unreadable or malformed (named in the message).
pub fn load(dir: &Path) -> Result<NodeMeta, String> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(NodeMeta {
                node_id: random_hex().map_err(|e| format!("cannot draw a node id: {e}"))?,
                history: 0,
                epoch: 0,
                leads: false,
            })
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let bad = |line: &str| format!("{}: bad line `{line}`", path.display());
    let mut meta = NodeMeta {
        node_id: String::new(),
        history: 0,
        epoch: 0,
        leads: false,
    };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (key, value) = line.split_once('=').ok_or_else(|| bad(line))?;
        let value = value.trim();
        match key.trim() {
            "node_id" => meta.node_id = value.to_string(),
            "history" => meta.history = u64::from_str_radix(value, 16).map_err(|_| bad(line))?,
            "epoch" => meta.epoch = value.parse().map_err(|_| bad(line))?,
            "role" => {
                meta.leads = match value {
                    "leader" => true,
                    "replica" => false,
                    _ => return Err(bad(line)),
                }
            }
            _ => return Err(bad(line)),
        }
    }
    if meta.node_id.is_empty() {
        return Err(format!("{}: no node_id", path.display()));
    }
    Ok(meta)
}

/// Writes the file: to a temporary name, fsynced, renamed over the old one, directory fsynced.
///
/// # Errors
/// Any I/O failure.
pub fn store(dir: &Path, meta: &NodeMeta) -> Result<(), String> {
    let path = dir.join(FILE);
    let tmp: PathBuf = dir.join(format!("{FILE}.tmp"));
    let text = format!(
        "node_id = {}\nhistory = {:016x}\nepoch = {}\nrole = {}\n",
        meta.node_id,
        meta.history,
        meta.epoch,
        if meta.leads { "leader" } else { "replica" }
    );
    let io = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
    f.write_all(text.as_bytes()).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("fsync", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("rename", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("fsync the directory of", e))
}

/// A random 64-bit id, never 0.
///
/// # Errors
/// The OS has no randomness to give.
pub fn random_u64() -> Result<u64, getrandom::Error> {
    loop {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b)?;
        let v = u64::from_le_bytes(b);
        if v != 0 {
            return Ok(v);
        }
    }
}

fn random_hex() -> Result<String, getrandom::Error> {
    Ok(format!("{:016x}", random_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = load(dir.path()).unwrap();
        assert_eq!(fresh.node_id.len(), 16);
        assert_eq!((fresh.history, fresh.epoch), (0, 0));
        let meta = NodeMeta {
            node_id: "node1".into(),
            history: 0xdead_beef,
            epoch: 7,
            leads: true,
        };
        store(dir.path(), &meta).unwrap();
        assert_eq!(load(dir.path()).unwrap(), meta);
        let replica = NodeMeta {
            leads: false,
            ..meta
        };
        store(dir.path(), &replica).unwrap();
        assert_eq!(load(dir.path()).unwrap(), replica);
        std::fs::write(
            dir.path().join(FILE),
            "node_id = a\nhistory = 10\nepoch = 2\n",
        )
        .unwrap();
        assert!(!load(dir.path()).unwrap().leads, "no role: a replica's");
        std::fs::write(dir.path().join(FILE), "node_id = a\nrole = boss\n").unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(err.contains("bad line `role = boss`"), "{err}");
        std::fs::write(dir.path().join(FILE), "node_id = a\nepoch = x\n").unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(err.contains("bad line `epoch = x`"), "{err}");
    }
}
