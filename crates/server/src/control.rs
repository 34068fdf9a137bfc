//! The control plane on a node: its consensus member ([`Group`]), its [`Controller`], the
//! links that carry their messages, and the durable Raft state.
//!
//! One task owns the group and the controller. It ticks them every `control_tick_ms`, steps
//! the messages control links deliver, writes the Raft state to `control.state` (atomically,
//! fsynced) before any message that depends on it goes out, and carries out the controller's
//! actions: messages to other nodes, proposals, read-index rounds, leases for the node task,
//! and events. Every map the group applies goes to the node task ([`NodeMsg::Map`]), which
//! follows it: leads when named, follows the leader (or its upstream in the map) otherwise.
//!
//! Control links are peer links (same handshake, same port) whose first frame after the
//! handshake is [`PeerMessage::Control`]. Each node dials every other voter for what it sends,
//! and reads what the others send on the links they dialled; a link that fails is dialled
//! again, and what was queued for it meanwhile is dropped (Raft resends what matters).

use crate::config::Upstream;
use crate::mono_ms;
use crate::node::{Fatal, NodeMsg};
use crate::peer_link::{self, LinkError, LinkReader, LinkWriter};
use crate::shared::Shared;
use bytes::{BufMut, Bytes, BytesMut};
use replikv_core::control::{
    raft_id_of, Action, ClusterMap, ControlMsg, Controller, ControllerConfig, Group, GroupConfig,
    GroupEvent, Local, MapCommand,
};
use replikv_proto::PeerMessage;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

/// The file the Raft state is kept in, in the data directory.
pub const STATE_FILE: &str = "control.state";
const STATE_MAGIC: &[u8; 4] = b"RKVC";
/// Messages queued for one peer; more are dropped (Raft resends).
const PEER_QUEUE: usize = 1024;
/// Messages queued from all control links for the control task.
const INBOX: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_millis(1000);
/// How long a proposed election may take to be applied before it is proposed again.
const PROPOSE_WAIT_MS: u64 = 2_000;

/// Starts the control plane of a node whose configuration turns it on.
///
/// # Errors
/// The Raft state file exists but cannot be read or is corrupt: starting without it could
/// make this voter vote twice in a term.
pub fn spawn(shared: &Arc<Shared>, shutdown: watch::Receiver<bool>) -> Result<(), Fatal> {
    let config = &shared.config;
    let ids: Vec<String> = config
        .control_peers
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    let me = shared.repl.node_id.clone();
    // A node not among the founders joins: an operator adds it (`REPLIKV MEMBER ADD`).
    let founder = ids.contains(&me);
    let raft_id = raft_id_of(&ids, &me);
    let group_config = GroupConfig {
        id: raft_id,
        voters: (1..=ids.len() as u64).collect(),
        election_tick: config.election_ticks as usize,
        heartbeat_tick: 2,
        // Election timeouts differ between voters by their draws; the seed need not be secret.
        seed: crate::meta::random_u64().unwrap_or(raft_id),
    };
    let state_path = config.data_dir.join(STATE_FILE);
    let group = match read_state(&state_path)? {
        Some(bytes) => Group::restore(&group_config, &bytes)
            .map_err(|e| Fatal::Recovery(format!("{}: {e}", state_path.display())))?,
        None if founder => Group::new(&group_config).map_err(|e| Fatal::Recovery(e.to_string()))?,
        None => {
            info!(node = %me, "not a founding voter: waiting to be added (REPLIKV MEMBER ADD on any member)");
            Group::joining(&group_config).map_err(|e| Fatal::Recovery(e.to_string()))?
        }
    };
    let controller = Controller::new(
        &me,
        ControllerConfig {
            lease_ms: config.lease_ms,
            margin_ms: config.lease_margin_ms,
            renew_ms: (config.lease_ms / 4).max(1),
            report_wait_ms: config.lease_ms.max(3 * config.control_tick_ms),
            propose_wait_ms: PROPOSE_WAIT_MS,
            mode: config.ack,
            cluster_size: config.cluster_size,
            founders: config
                .control_peers
                .iter()
                .map(|(id, addr)| (id.clone(), addr.to_string()))
                .collect(),
        },
    );
    let (tx, rx) = mpsc::channel(INBOX);
    // Set once per process: `spawn` runs once.
    let _ = shared.repl.control_in.set(tx);
    let mut task = ControlTask {
        shared: Arc::clone(shared),
        group,
        controller,
        ids,
        me,
        peers: BTreeMap::new(),
        state_path,
        published: None,
        local_queue: Vec::new(),
        unclean_asked_ms: None,
        shutdown: shutdown.clone(),
    };
    for (id, addr) in &config.control_peers {
        task.connect(id, addr.clone());
    }
    tokio::spawn(task.run(rx, shutdown));
    Ok(())
}

struct ControlTask {
    shared: Arc<Shared>,
    group: Group,
    controller: Controller,
    /// Node ids by Raft id - 1.
    ids: Vec<String>,
    me: String,
    peers: BTreeMap<String, mpsc::Sender<ControlMsg>>,
    state_path: PathBuf,
    /// The map version last given to the node.
    published: Option<u64>,
    /// Messages this node sent itself, handled before the next input.
    local_queue: Vec<ControlMsg>,
    /// When the unclean-failover setting was last proposed.
    unclean_asked_ms: Option<u64>,
    shutdown: watch::Receiver<bool>,
}

impl ControlTask {
    /// Starts sending to member `id` at `addr` (nothing for this node or a known peer).
    fn connect(&mut self, id: &str, addr: Upstream) {
        if id == self.me || self.peers.contains_key(id) {
            return;
        }
        let (ptx, prx) = mpsc::channel(PEER_QUEUE);
        self.peers.insert(id.to_string(), ptx);
        tokio::spawn(dial(
            Arc::clone(&self.shared),
            id.to_string(),
            addr,
            prx,
            self.shutdown.clone(),
        ));
    }

    /// The node id of group member `raft_id`: a founder, or a member of the map.
    fn node_of(&self, raft_id: u64) -> Option<String> {
        if let Some(id) = self.ids.get(raft_id.saturating_sub(1) as usize) {
            return Some(id.clone());
        }
        self.group
            .map()
            .members
            .keys()
            .find(|id| raft_id_of(&self.ids, id) == raft_id)
            .cloned()
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<(String, ControlMsg)>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let tick_ms = self.shared.config.control_tick_ms;
        let mut tick = tokio::time::interval(Duration::from_millis(tick_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A restored member has a map already: the node follows it at once.
        self.publish_map().await;
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = tick.tick() => {
                    self.group.tick();
                    let actions = self.controller.on_tick(self.group.map(), self.local(), mono_ms());
                    self.carry_out(actions).await;
                    self.settings();
                }
                received = rx.recv() => {
                    let Some((from, msg)) = received else { break };
                    self.receive(&from, msg).await;
                }
            }
            if let Err(e) = self.flush().await {
                // The Raft state could not be made durable: sending on would break Raft's
                // promises. The control plane stops; the node goes on without it (and, as a
                // leader, loses its lease).
                tracing::error!(error = %e, "control plane stopped");
                self.shared
                    .repl
                    .record("control_stopped", self.shared.repl.positions().epoch, e);
                break;
            }
        }
    }

    fn local(&self) -> Local {
        let p = self.shared.repl.positions();
        let in_sync = if p.leader {
            self.shared
                .repl
                .status()
                .replicas
                .into_iter()
                .filter(|r| r.via.is_none() && r.in_sync)
                .map(|r| r.id)
                .collect()
        } else {
            std::collections::BTreeSet::new()
        };
        Local {
            durable: p.durable_pos,
            epoch: p.epoch,
            in_sync,
            leads: p.leader,
        }
    }

    async fn receive(&mut self, from: &str, msg: ControlMsg) {
        match msg {
            ControlMsg::Raft(bytes) => {
                if let Err(e) = self.group.step(&bytes) {
                    debug!(peer = %from, error = %e, "dropped a control message");
                }
            }
            other => {
                let actions = self.controller.on_message(
                    from,
                    other,
                    self.group.map(),
                    self.local(),
                    mono_ms(),
                );
                self.carry_out(actions).await;
            }
        }
    }

    /// The operator's settings the map carries: proposed by the controller when they differ.
    fn settings(&mut self) {
        let wanted = self.shared.config.unclean_failover;
        let map = self.group.map();
        if !self.group.is_controller() || map.members.is_empty() || map.unclean_failover == wanted {
            return;
        }
        let now = mono_ms();
        if self
            .unclean_asked_ms
            .is_some_and(|t| now < t + PROPOSE_WAIT_MS)
        {
            return;
        }
        self.unclean_asked_ms = Some(now);
        let _ = self.group.propose(&MapCommand::SetUncleanFailover(wanted));
    }

    async fn carry_out(&mut self, actions: Vec<Action>) {
        let mut actions = actions;
        while !actions.is_empty() {
            for action in std::mem::take(&mut actions) {
                match action {
                    Action::Send { to, msg } if to == self.me => self.local_queue.push(msg),
                    Action::Send { to, msg } => self.send(&to, msg),
                    Action::Propose(cmd) => {
                        if let Err(e) = self.group.propose(&cmd) {
                            debug!(error = %e, ?cmd, "proposal dropped");
                        }
                    }
                    Action::Membership { raft_id, change } => {
                        if let Err(e) = self.group.propose_membership(raft_id, change) {
                            info!(error = %e, raft_id, ?change, "membership change not proposed");
                        }
                    }
                    Action::ReadIndex(ctx) => {
                        if let Err(e) = self.group.read_index(ctx) {
                            debug!(error = %e, "read-index round not started");
                        }
                    }
                    Action::Lease { epoch, until_ms } => {
                        self.shared
                            .node
                            .send(NodeMsg::Lease { epoch, until_ms })
                            .await;
                    }
                    Action::Event { kind, detail } => {
                        info!(kind, "{detail}");
                        self.shared
                            .repl
                            .record(kind, self.group.map().epoch, detail);
                    }
                }
            }
            let me = self.me.clone();
            for msg in std::mem::take(&mut self.local_queue) {
                let more =
                    self.controller
                        .on_message(&me, msg, self.group.map(), self.local(), mono_ms());
                actions.extend(more);
            }
        }
    }

    fn send(&self, to: &str, msg: ControlMsg) {
        if let Some(peer) = self.peers.get(to) {
            // A full queue means the peer is unreachable or slow: Raft resends.
            let _ = peer.try_send(msg);
        }
    }

    /// Persists what Raft needs durable, then sends, then handles what the group reported,
    /// until nothing is left.
    async fn flush(&mut self) -> Result<(), String> {
        loop {
            let drained = self.group.drain();
            if let Some(bytes) = &drained.persist {
                write_state(&self.state_path, bytes)?;
            }
            let quiet = drained.outgoing.is_empty() && drained.events.is_empty();
            for out in drained.outgoing {
                let Some(id) = self.node_of(out.to) else {
                    continue;
                };
                self.send(&id, ControlMsg::Raft(out.bytes));
            }
            let mut actions = Vec::new();
            for event in drained.events {
                match event {
                    GroupEvent::BecameController { term } => {
                        info!(term, "this node is the controller");
                        self.controller.became_controller(mono_ms());
                        self.shared.repl.record(
                            "controller",
                            self.group.map().epoch,
                            format!("became the controller in Raft term {term}"),
                        );
                    }
                    GroupEvent::LostController { term } => {
                        info!(term, "this node is no longer the controller");
                        self.controller.lost_controller();
                    }
                    GroupEvent::Applied { cmd, result, .. } => {
                        if let Err(e) = result {
                            debug!(?cmd, error = %e, "the map refused a command");
                        }
                    }
                    GroupEvent::SnapshotInstalled { index, version } => {
                        info!(
                            index,
                            version, "installed the controller's snapshot of the map"
                        );
                    }
                    GroupEvent::ReadConfirmed { ctx } => {
                        actions.extend(self.controller.on_read_confirmed(
                            &ctx,
                            self.group.map(),
                            mono_ms(),
                        ));
                    }
                }
            }
            let controller = self.group.controller().and_then(|id| self.node_of(id));
            self.controller.set_controller(controller);
            self.publish_map().await;
            self.carry_out(actions).await;
            if quiet && self.local_queue.is_empty() {
                return Ok(());
            }
        }
    }

    /// Gives the node a map it has not seen.
    async fn publish_map(&mut self) {
        let map = self.group.map();
        if map.members.is_empty() || self.published == Some(map.version) {
            return;
        }
        self.published = Some(map.version);
        let map = Arc::new(map.clone());
        // Members added since: send to them too; removed ones: stop.
        for (id, m) in &map.members {
            if let Ok(addr) = m.addr.parse() {
                self.connect(id, addr);
            }
        }
        let founders = self.ids.clone();
        self.peers
            .retain(|id, _| map.members.contains_key(id) || founders.contains(id));
        self.shared.repl.map.send_replace(Some(Arc::clone(&map)));
        self.shared.node.send(NodeMsg::Map(map)).await;
    }
}

/// The node's client address, from the map, as an upstream.
#[must_use]
pub fn member_addr(map: &ClusterMap, id: &str) -> Option<Upstream> {
    map.members.get(id)?.addr.parse().ok()
}

/// Dials `peer` and sends it what is queued, reconnecting with a growing pause after failures.
async fn dial(
    shared: Arc<Shared>,
    peer: String,
    addr: Upstream,
    mut queue: mpsc::Receiver<ControlMsg>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pause = RECONNECT_MIN;
    loop {
        let result = tokio::select! {
            r = session(&shared, &peer, &addr, &mut queue) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match result {
            Ok(()) => return,
            Err(e) => debug!(peer = %peer, error = %e, "control link down"),
        }
        // What was queued while the link was down is stale.
        while queue.try_recv().is_ok() {}
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        pause = (pause * 2).min(RECONNECT_MAX);
        if shared.repl.faults.blocks(&peer) {
            pause = RECONNECT_MIN;
        }
    }
}

async fn session(
    shared: &Arc<Shared>,
    peer: &str,
    addr: &Upstream,
    queue: &mut mpsc::Receiver<ControlMsg>,
) -> Result<(), LinkError> {
    let faults = &shared.repl.faults;
    faults.check(peer)?;
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((addr.host.as_str(), addr.port)),
    )
    .await
    .map_err(|_| LinkError::Timeout("connecting a control link"))??;
    let (mut reader, mut writer) = peer_link::split(stream, BytesMut::new());
    let secret = shared.config.cluster_secret.clone().unwrap_or_default();
    let identity = peer_link::handshake_client(
        &mut reader,
        &mut writer,
        &shared.config.cluster_name,
        &shared.repl.node_id,
        secret.as_bytes(),
    )
    .await?;
    if identity.node_id != peer {
        return Err(LinkError::Protocol(format!(
            "{addr} is node {}, not {peer}",
            identity.node_id
        )));
    }
    faults.check(peer)?;
    // The link opens with an empty control frame, which the other side ignores.
    writer
        .send(&PeerMessage::Control { body: Bytes::new() })
        .await?;
    loop {
        tokio::select! {
            msg = queue.recv() => {
                let Some(msg) = msg else { return Ok(()) };
                faults.check(peer)?;
                writer.send(&PeerMessage::Control { body: encode(&msg) }).await?;
            }
            e = faults.until_blocked(peer) => return Err(e),
            // The other side sends nothing on this link; anything (or the close) ends it.
            r = reader.recv() => {
                return Err(match r {
                    Ok(other) => LinkError::Protocol(format!("unexpected {} on a control link", other.kind())),
                    Err(e) => e,
                });
            }
        }
    }
}

fn encode(msg: &ControlMsg) -> Bytes {
    // Serializing into a vector cannot fail for these types.
    postcard::to_allocvec(msg)
        .map(Bytes::from)
        .unwrap_or_default()
}

/// Serves a control link another node dialled: `first` was its first frame after the
/// handshake. Delivers what it receives to the control task.
pub async fn serve_inbound(
    shared: &Arc<Shared>,
    peer: &str,
    reader: &mut LinkReader,
    writer: &mut LinkWriter,
) -> Result<(), LinkError> {
    let Some(inbox) = shared.repl.control_in.get().cloned() else {
        let why = "this node runs no control plane";
        writer.refuse(why).await;
        return Err(LinkError::Protocol(why.into()));
    };
    let member = shared
        .repl
        .map
        .borrow()
        .as_ref()
        .is_some_and(|m| m.members.contains_key(peer));
    if !member && !shared.config.control_peers.iter().any(|(id, _)| id == peer) {
        let why = format!("{peer} is not a voter of this control plane");
        writer.refuse(&why).await;
        return Err(LinkError::Protocol(why));
    }
    let faults = &shared.repl.faults;
    loop {
        let msg = tokio::select! {
            m = reader.recv() => m?,
            e = faults.until_blocked(peer) => return Err(e),
        };
        let PeerMessage::Control { body } = msg else {
            let why = format!("unexpected {} on a control link", msg.kind());
            writer.refuse(&why).await;
            return Err(LinkError::Protocol(why));
        };
        if body.is_empty() {
            continue;
        }
        let msg: ControlMsg = postcard::from_bytes(&body)
            .map_err(|e| LinkError::Protocol(format!("undecodable control message: {e}")))?;
        // A full inbox means the control task is behind: drop, as a network would.
        let _ = inbox.try_send((peer.to_string(), msg));
    }
}

/// Reads the Raft state file; `None` when there is none yet.
fn read_state(path: &Path) -> Result<Option<Vec<u8>>, Fatal> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Fatal::Recovery(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let corrupt = |why: &str| {
        Fatal::Recovery(format!(
            "{} is corrupt ({why}); it holds this voter's Raft state, without which it could \
             vote twice in a term: restore it, or remove the node from the cluster and add it \
             back with an empty data directory",
            path.display()
        ))
    };
    if bytes.len() < 8 || &bytes[..4] != STATE_MAGIC {
        return Err(corrupt("bad header"));
    }
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if crc32c::crc32c(&bytes[8..]) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(Some(bytes[8..].to_vec()))
}

/// Writes the Raft state: to a temporary file, fsynced, renamed over the old one, and the
/// directory fsynced, so a crash leaves the old state or the new one.
fn write_state(path: &Path, state: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let mut buf = BytesMut::with_capacity(state.len() + 8);
    buf.put_slice(STATE_MAGIC);
    buf.put_u32_le(crc32c::crc32c(state));
    buf.put_slice(state);
    let tmp = path.with_extension("tmp");
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", tmp.display());
    let mut f = std::fs::File::create(&tmp).map_err(|e| fail("create", e))?;
    f.write_all(&buf).map_err(|e| fail("write", e))?;
    f.sync_all().map_err(|e| fail("fsync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| fail("rename", e))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        assert!(read_state(&path).unwrap().is_none());
        write_state(&path, b"raft state").unwrap();
        assert_eq!(read_state(&path).unwrap().unwrap(), b"raft state");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_state(&path).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        std::fs::write(&path, b"xx").unwrap();
        assert!(read_state(&path).is_err());
    }
}
