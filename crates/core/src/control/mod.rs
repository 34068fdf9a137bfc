//! The control plane's decisions, as deterministic functions: the cluster map every node
//! agrees on through the consensus group, the group's members, and the choice of the replica
//! to promote when the leader is lost. Nothing here does I/O.
//!
//! - [`map`]: [`ClusterMap`] (members, voters, the leader and its epoch, the in-sync set, each
//!   replica's upstream, unclean failover) and the [`MapCommand`]s that change it.
//! - [`group`]: [`Group`], a member of the consensus group (Raft, tikv's raft-rs) that carries
//!   the map's commands; sans-IO and replayable from a seed.
//! - [`controller`]: [`Controller`], failure detection, the data leader's lease and elections.
//! - [`election`]: [`choose_leader`], the rule that keeps every write the cluster's mode
//!   acknowledged.

pub mod controller;
pub mod election;
pub mod group;
pub mod map;

#[cfg(test)]
mod controller_test;
#[cfg(test)]
mod election_test;
#[cfg(test)]
mod group_persist_test;
#[cfg(test)]
mod group_test;
#[cfg(test)]
mod map_test;

pub use controller::{
    raft_id_of, Action, ControlMsg, Controller, ControllerConfig, Local, MemberOp,
};
pub use election::{choose_leader, choose_leader_sized, Choice, ElectionError, Report};
pub use group::{Drained, Group, GroupConfig, GroupError, GroupEvent, Membership, Outgoing};
pub use map::{ClusterMap, MapCommand, MapError, Member};
