//! The cluster map: what the control plane's consensus group agrees on. Every node applies the
//! same committed [`MapCommand`]s in the same order to its copy, so every copy goes through the
//! same versions; a command that breaks a rule is refused the same way everywhere and changes
//! nothing.

use crate::position::Epoch;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most members a map holds.
pub const MEMBERS_MAX: usize = 64;
/// Longest node id or address, bytes.
pub const NAME_BYTES_MAX: usize = 256;

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Where clients reach it (`host:port`).
    pub addr: String,
    /// Whether it votes in the control plane (otherwise it only learns the map).
    pub voter: bool,
    /// The node it replicates from; `None`: the leader (or it is the leader).
    pub upstream: Option<String>,
}

/// The cluster map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    /// Grows by one with every command applied.
    pub version: u64,
    /// Every node, by id.
    pub members: BTreeMap<String, Member>,
    /// The node that takes writes, if one was elected.
    pub leader: Option<String>,
    /// The epoch the leader writes in. Only an election changes it, always upwards: epochs
    /// come from here, so no two leaders ever share one.
    pub epoch: Epoch,
    /// The replicas in sync with the leader (the leader itself not included). A lossless mode
    /// promotes only from this set; the leader shrinks it here before it acknowledges writes
    /// without a replica, and grows it here once a replica has caught up.
    pub in_sync: BTreeSet<String>,
    /// Whether a replica outside the in-sync set may be promoted when no member of it can be
    /// (Kafka's unclean leader election): availability over acknowledged writes.
    pub unclean_failover: bool,
}

/// A change to the map, proposed through the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapCommand {
    /// A new node.
    AddMember {
        /// Its node id.
        id: String,
        /// Where clients reach it.
        addr: String,
        /// Whether it votes.
        voter: bool,
    },
    /// A node leaves for good. The leader cannot: hand leadership over first.
    RemoveMember {
        /// Its node id.
        id: String,
    },
    /// A node starts or stops voting.
    SetVoter {
        /// Its node id.
        id: String,
        /// Whether it votes.
        voter: bool,
    },
    /// A replica replicates from `upstream` (another replica: a tree), or from the leader.
    SetUpstream {
        /// The replica.
        id: String,
        /// Its upstream; `None`: the leader.
        upstream: Option<String>,
    },
    /// `id` leads from now on, writing in `epoch`, which must be past the map's.
    Elect {
        /// The new leader.
        id: String,
        /// Its epoch.
        epoch: Epoch,
    },
    /// The leader of `epoch` sets its in-sync set. Refused from any other epoch, so a deposed
    /// leader cannot change the set its successor is judged by.
    SetInSync {
        /// The proposing leader's epoch.
        epoch: Epoch,
        /// The replicas in sync.
        replicas: BTreeSet<String>,
    },
    /// Allow or forbid unclean failover.
    SetUncleanFailover(bool),
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The node is not a member.
    #[error("no member `{0}`")]
    NoMember(String),
    /// The node is already a member (with another address).
    #[error("`{0}` is already a member at {1}")]
    Exists(String, String),
    /// Another member has that address.
    #[error("address {addr} is already `{id}`'s")]
    AddrTaken {
        /// The address.
        addr: String,
        /// Its member.
        id: String,
    },
    /// The map is full.
    #[error("the cluster has {MEMBERS_MAX} members already")]
    Full,
    /// An id or address is empty or too long.
    #[error("bad name `{0}`: 1 to {NAME_BYTES_MAX} bytes")]
    BadName(String),
    /// The leader cannot be removed.
    #[error("`{0}` leads; hand leadership over before removing it")]
    RemoveLeader(String),
    /// An election must move the epoch forward.
    #[error("epoch {got} is not past the map's {current}")]
    EpochNotNewer {
        /// The epoch proposed.
        got: Epoch,
        /// The map's.
        current: Epoch,
    },
    /// An in-sync set from a leader that is no longer current.
    #[error("in-sync set from epoch {got}; the map is at epoch {current}")]
    StaleEpoch {
        /// The proposer's epoch.
        got: Epoch,
        /// The map's.
        current: Epoch,
    },
    /// The leader is never in its own in-sync set, nor its own replica.
    #[error("`{0}` leads")]
    IsLeader(String),
    /// An upstream chain would loop.
    #[error("`{id}` replicating from `{upstream}` would make a loop")]
    Loop {
        /// The replica.
        id: String,
        /// The upstream asked for.
        upstream: String,
    },
}

fn check_name(name: &str) -> Result<(), MapError> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        Err(MapError::BadName(name.chars().take(64).collect()))
    } else {
        Ok(())
    }
}

impl ClusterMap {
    /// Applies `cmd`; on error nothing changes (and the version stays).
    ///
    /// # Errors
    /// The rule `cmd` breaks.
    pub fn apply(&mut self, cmd: &MapCommand) -> Result<(), MapError> {
        match cmd {
            MapCommand::AddMember { id, addr, voter } => self.add(id, addr, *voter)?,
            MapCommand::RemoveMember { id } => self.remove(id)?,
            MapCommand::SetVoter { id, voter } => self.member_mut(id)?.voter = *voter,
            MapCommand::SetUpstream { id, upstream } => self.set_upstream(id, upstream.as_ref())?,
            MapCommand::Elect { id, epoch } => self.elect(id, *epoch)?,
            MapCommand::SetInSync { epoch, replicas } => self.set_in_sync(*epoch, replicas)?,
            MapCommand::SetUncleanFailover(on) => self.unclean_failover = *on,
        }
        self.version += 1;
        Ok(())
    }

    /// The voters' ids.
    pub fn voters(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|(_, m)| m.voter)
            .map(|(id, _)| id.as_str())
    }

    /// The members other than the leader.
    pub fn replicas(&self) -> impl Iterator<Item = &str> {
        self.members
            .keys()
            .map(String::as_str)
            .filter(|id| self.leader.as_deref() != Some(*id))
    }

    /// The node `id` replicates from: its upstream, or the leader; `None` for the leader or
    /// when there is none.
    #[must_use]
    pub fn upstream_of(&self, id: &str) -> Option<&str> {
        if self.leader.as_deref() == Some(id) {
            return None;
        }
        let m = self.members.get(id)?;
        m.upstream.as_deref().or(self.leader.as_deref())
    }

    fn member_mut(&mut self, id: &str) -> Result<&mut Member, MapError> {
        self.members
            .get_mut(id)
            .ok_or_else(|| MapError::NoMember(id.to_string()))
    }

    fn add(&mut self, id: &str, addr: &str, voter: bool) -> Result<(), MapError> {
        check_name(id)?;
        check_name(addr)?;
        if let Some(m) = self.members.get(id) {
            return Err(MapError::Exists(id.to_string(), m.addr.clone()));
        }
        if let Some((other, _)) = self.members.iter().find(|(_, m)| m.addr == addr) {
            return Err(MapError::AddrTaken {
                addr: addr.to_string(),
                id: other.clone(),
            });
        }
        if self.members.len() >= MEMBERS_MAX {
            return Err(MapError::Full);
        }
        self.members.insert(
            id.to_string(),
            Member {
                addr: addr.to_string(),
                voter,
                upstream: None,
            },
        );
        Ok(())
    }

    fn remove(&mut self, id: &str) -> Result<(), MapError> {
        if !self.members.contains_key(id) {
            return Err(MapError::NoMember(id.to_string()));
        }
        if self.leader.as_deref() == Some(id) {
            return Err(MapError::RemoveLeader(id.to_string()));
        }
        self.members.remove(id);
        self.in_sync.remove(id);
        // Its replicas replicate from the leader now.
        for m in self.members.values_mut() {
            if m.upstream.as_deref() == Some(id) {
                m.upstream = None;
            }
        }
        Ok(())
    }

    fn set_upstream(&mut self, id: &str, upstream: Option<&String>) -> Result<(), MapError> {
        if !self.members.contains_key(id) {
            return Err(MapError::NoMember(id.to_string()));
        }
        if self.leader.as_deref() == Some(id) {
            return Err(MapError::IsLeader(id.to_string()));
        }
        if let Some(up) = upstream {
            if !self.members.contains_key(up) {
                return Err(MapError::NoMember(up.clone()));
            }
            // Walk up from the new upstream: reaching `id` would close a loop.
            let mut at = Some(up.as_str());
            let mut steps = 0;
            while let Some(node) = at {
                if node == id || steps > self.members.len() {
                    return Err(MapError::Loop {
                        id: id.to_string(),
                        upstream: up.clone(),
                    });
                }
                at = self.members.get(node).and_then(|m| m.upstream.as_deref());
                steps += 1;
            }
        }
        self.member_mut(id)?.upstream = upstream.cloned();
        Ok(())
    }

    fn elect(&mut self, id: &str, epoch: Epoch) -> Result<(), MapError> {
        if !self.members.contains_key(id) {
            return Err(MapError::NoMember(id.to_string()));
        }
        if epoch <= self.epoch {
            return Err(MapError::EpochNotNewer {
                got: epoch,
                current: self.epoch,
            });
        }
        let old = self.leader.replace(id.to_string());
        self.epoch = epoch;
        // The other in-sync replicas hold every write acknowledged under `sync`, as the new
        // leader does: they stay in the set (the old leader was never in it). The new leader
        // and the replicas that followed the old one replicate from the leader.
        self.in_sync.remove(id);
        for m in self.members.values_mut() {
            if m.upstream.as_deref() == Some(id) || m.upstream == old {
                m.upstream = None;
            }
        }
        Ok(())
    }

    fn set_in_sync(&mut self, epoch: Epoch, replicas: &BTreeSet<String>) -> Result<(), MapError> {
        if epoch != self.epoch {
            return Err(MapError::StaleEpoch {
                got: epoch,
                current: self.epoch,
            });
        }
        for r in replicas {
            if !self.members.contains_key(r) {
                return Err(MapError::NoMember(r.clone()));
            }
            if self.leader.as_ref() == Some(r) {
                return Err(MapError::IsLeader(r.clone()));
            }
        }
        self.in_sync.clone_from(replicas);
        Ok(())
    }
}
