//! The simulated clients: each runs one operation at a time against the node it takes for
//! the leader, `SET key value` with a value never written before, or `GET key`, with a short
//! think time between them, and records every operation in the history.
//!
//! Under operator failover the clients use the operator's leader. Under automatic failover
//! each client keeps its own guess, and after any operation that did not succeed asks a node
//! picked at random which leader its map names (a stale map gives a stale answer, so clients
//! do reach deposed leaders). A node that does not lead refuses the operation, reads
//! included: the clients read from the leader only, as a client following the map does.

use super::event::Event;
use super::world::World;
use crate::history::{Call, Op, Outcome};
use bytes::Bytes;

/// Longest think time between two operations of a client, ms.
const THINK_MS_MAX: u64 = 5;

impl World {
    pub(super) fn on_client_next(&mut self, client: usize) {
        if self.now_ms >= self.clients_until_ms {
            return;
        }
        let keys = self.cfg.keys;
        let auto = self.cfg.is_auto();
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        let node = if auto { c.target } else { self.leader };
        if c.outstanding.is_some() {
            return;
        }
        let key = format!("k{}", c.rng.index(keys));
        let write = c.rng.below(2) == 0;
        c.issued += 1;
        let call = if write {
            Call::Write {
                value: format!("c{client}-{}", c.issued),
            }
        } else {
            Call::Read
        };
        let op = self.history.ops.len() as u64;
        self.history.ops.push(Op {
            client: u32::try_from(client).unwrap_or(u32::MAX),
            node: self.nodes[node].name.clone(),
            key: key.clone(),
            call,
            start_us: self.now_ms * 1000,
            end_us: self.now_ms * 1000,
            outcome: Outcome::Indeterminate {
                error: "never answered".into(),
            },
            token: None,
        });
        if let Some(c) = self.clients.get_mut(client) {
            c.outstanding = Some((op, node));
        }
        if self.nodes[node].live.is_none() {
            // Connection refused: nothing was sent. A short pause keeps the client from
            // spinning while the node is down.
            let at = self.now_ms + 1 + self.delay();
            self.schedule(
                at,
                Event::Reply {
                    client,
                    op,
                    outcome: Outcome::Fail {
                        error: "connection refused".into(),
                    },
                    token: None,
                },
            );
            return;
        }
        let inc = self.nodes[node].inc;
        let at = self.now_ms + self.delay();
        self.schedule(
            at,
            Event::Request {
                client,
                op,
                node,
                inc,
            },
        );
        let timeout = self.now_ms + self.cfg.client_timeout_ms;
        self.schedule(timeout, Event::ClientTimeout { client, op });
    }

    pub(super) fn on_request(&mut self, client: usize, op: u64, node: usize, inc: u64) {
        if !self.is_live(node, inc) {
            // Sent to a process that is gone: the client learns from its timeout (or from the
            // crash, which resets its connection).
            return;
        }
        let Some(o) = usize::try_from(op)
            .ok()
            .and_then(|i| self.history.ops.get(i))
        else {
            return;
        };
        let key = Bytes::from(o.key.clone().into_bytes());
        let args = match &o.call {
            Call::Write { value } => vec![
                Bytes::from_static(b"SET"),
                key,
                Bytes::from(value.clone().into_bytes()),
            ],
            _ => vec![Bytes::from_static(b"GET"), key],
        };
        let now = self.now_ms;
        let mode = self.cfg.mode;
        let auto = self.cfg.is_auto();
        let n = &mut self.nodes[node];
        let Some(live) = n.live.as_mut() else {
            return;
        };
        if auto && !live.machine.is_leader() {
            let at = now + self.delay();
            self.schedule(
                at,
                Event::Reply {
                    client,
                    op,
                    outcome: Outcome::Fail {
                        error: "READONLY this node does not lead".into(),
                    },
                    token: None,
                },
            );
            return;
        }
        live.machine.batch(vec![args], mode, now, op, &mut n.disk);
        self.settle(node);
    }

    /// Ends `client`'s operation `op` (if it is still waiting) and queues its next one.
    pub(super) fn complete(
        &mut self,
        client: usize,
        op: u64,
        outcome: Outcome,
        token: Option<String>,
    ) {
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        if c.outstanding.map(|(o, _)| o) != Some(op) {
            return;
        }
        c.outstanding = None;
        let think = c.rng.below(THINK_MS_MAX + 1);
        if self.cfg.is_auto() && !matches!(outcome, Outcome::Ok { .. }) {
            self.client_refresh(client);
        }
        if let Some(o) = usize::try_from(op)
            .ok()
            .and_then(|i| self.history.ops.get_mut(i))
        {
            o.end_us = self.now_ms * 1000;
            o.outcome = outcome;
            o.token = token;
        }
        let at = self.now_ms + think;
        self.schedule(at, Event::ClientNext { client });
    }

    /// Asks a node picked at random which node leads, by its map (automatic failover).
    fn client_refresh(&mut self, client: usize) {
        let nodes = self.nodes.len();
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        let asked = c.rng.index(nodes);
        let named = self
            .map_of(asked)
            .and_then(|m| m.leader.as_deref())
            .and_then(super::control::index_of)
            .filter(|i| *i < nodes);
        if let Some(c) = self.clients.get_mut(client) {
            c.target = named.unwrap_or(asked);
        }
    }
}
