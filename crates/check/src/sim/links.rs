//! The peer protocol between simulated nodes, as the real links run it: the follower connects
//! and sends `Fetch` (and at once an `Ack`, as the real ack loop's first tick does); the
//! upstream answers with a snapshot or streams its log, in batches, with heartbeats; the
//! follower checks every batch, logs and applies it, and acknowledges progress. Either end
//! closes a link that stays silent too long; a refused batch closes it too, and the follower
//! reconnects from its own last position.

use super::event::{Event, FetchMsg, PeerMsg, SnapshotMsg};
use super::world::{Conn, ConnId, Follow, Serve, World, BATCH_ENTRIES_MAX};
use replikv_core::replication::{check_epoch, plan_cut, FetchPlan, LogSink};
use replikv_core::Lsn;

impl World {
    /// Queues a reconnection of `node` to its upstream in 100–300 ms, unless one is queued.
    pub(super) fn arm_reconnect(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let inc = n.inc;
        let Some(live) = n.live.as_mut() else {
            return;
        };
        if live.reconnect_armed || live.upstream.is_none() {
            return;
        }
        live.reconnect_armed = true;
        let at = self.now_ms + self.rng_net.between(100, 300);
        self.schedule(at, Event::Reconnect { node, inc });
    }

    pub(super) fn on_reconnect(&mut self, node: usize, inc: u64) {
        if !self.is_live(node, inc) {
            return;
        }
        let now = self.now_ms;
        let n = &mut self.nodes[node];
        let history = n.meta.history;
        let Some(live) = n.live.as_mut() else {
            return;
        };
        live.reconnect_armed = false;
        let Some(upstream) = live.upstream else {
            return;
        };
        if live.follow.is_some() {
            return;
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        live.follow = Some(Follow {
            conn,
            last_heard_ms: now,
            heard: false,
            sent: None,
        });
        let from = live.machine.last();
        let epoch = live.machine.epoch();
        // As the server, only under the control plane: a follower may then be an old leader
        // whose diverged tail is cut back rather than replaced by a snapshot.
        let lineage = self
            .cfg
            .is_auto()
            .then(|| (live.machine.epochs().clone(), n.disk.base.lsn));
        let upstream_inc = self.nodes[upstream].inc;
        self.conns.insert(
            conn,
            Conn {
                follower: node,
                upstream,
                follower_inc: inc,
                upstream_inc,
                open: true,
                last_at_ms: [0, 0],
            },
        );
        self.send(
            conn,
            true,
            PeerMsg::Fetch(FetchMsg {
                from,
                epoch,
                history,
                lineage,
            }),
        );
    }

    pub(super) fn on_deliver(&mut self, conn: ConnId, to_upstream: bool, msg: PeerMsg) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        let (node, inc, other) = if to_upstream {
            (c.upstream, c.upstream_inc, c.follower)
        } else {
            (c.follower, c.follower_inc, c.upstream)
        };
        if !self.is_live(node, inc) {
            // Nobody listens there any more: the sender's end is reset.
            if let Some(c) = self.conns.get_mut(&conn) {
                c.open = false;
            }
            let at = self.now_ms + self.delay();
            let other_inc = if to_upstream {
                c_inc(&self.conns, conn, false)
            } else {
                c_inc(&self.conns, conn, true)
            };
            self.schedule(
                at,
                Event::ConnClosed {
                    conn,
                    node: other,
                    inc: other_inc,
                },
            );
            return;
        }
        if to_upstream {
            self.on_upstream_msg(conn, node, other, msg);
        } else {
            self.on_follower_msg(conn, node, msg);
        }
    }

    fn on_upstream_msg(&mut self, conn: ConnId, node: usize, follower: usize, msg: PeerMsg) {
        let now = self.now_ms;
        match msg {
            PeerMsg::Fetch(fetch) => self.on_fetch(conn, node, follower, fetch),
            PeerMsg::Ack {
                epoch,
                durable,
                applied,
            } => {
                let name = self.nodes[follower].name.clone();
                let Some(live) = self.nodes[node].live.as_mut() else {
                    return;
                };
                let Some(s) = live.serves.get_mut(&conn) else {
                    return;
                };
                s.last_heard_ms = now;
                if let Err(e) = check_epoch(live.machine.epoch(), epoch) {
                    let reason = format!("the follower has seen a newer epoch: {e}");
                    self.send(conn, false, PeerMsg::Refuse { reason });
                    self.close_conn(conn, node, "refused an ack");
                    return;
                }
                live.machine
                    .follower_ack(&name, conn, durable, applied, now);
                self.settle(node);
            }
            PeerMsg::Refuse { reason } => self.close_conn(conn, node, &reason),
            other => {
                let why = format!("unexpected {other:?} from a follower");
                self.close_conn(conn, node, &why);
            }
        }
    }

    fn on_fetch(&mut self, conn: ConnId, node: usize, follower: usize, fetch: FetchMsg) {
        let FetchMsg {
            from,
            epoch,
            history,
            lineage,
        } = fetch;
        let now = self.now_ms;
        let name = self.nodes[follower].name.clone();
        let n = &mut self.nodes[node];
        let Some(live) = n.live.as_mut() else {
            return;
        };
        // A follower that has seen a newer epoch must not follow us: we are deposed.
        if let Err(e) = check_epoch(live.machine.epoch(), epoch) {
            let reason = format!("this node is at epoch {}: {e}", live.machine.epoch());
            self.send(conn, false, PeerMsg::Refuse { reason });
            self.close_conn(conn, node, "refused a fetch");
            return;
        }
        let last = live.machine.last();
        let plan = (self.cfg.fetch_rule)(
            from,
            history,
            n.meta.history,
            last,
            n.disk.epoch_at(from.lsn),
        );
        // As the server's link: where the follower's log parted from ours, it cuts back to the
        // last entry both share if it can and we still hold that entry.
        let cut = match (plan, lineage) {
            (FetchPlan::Snapshot { .. }, Some((theirs, truncatable_from))) => plan_cut(
                from,
                history,
                n.meta.history,
                &theirs,
                truncatable_from,
                live.machine.epochs(),
                last.lsn,
            )
            .filter(|to| n.disk.epoch_at(to.lsn) == Some(to.epoch)),
            _ => None,
        };
        let prev = match plan {
            FetchPlan::Stream { .. } => from,
            FetchPlan::Snapshot { reason } if cut.is_some() => {
                let to = cut.unwrap_or(from);
                self.note(|| format!("n{node} has n{follower} cut its log back to {to}: {reason}"));
                self.send(conn, false, PeerMsg::Truncate { to });
                to
            }
            FetchPlan::Snapshot { reason } => {
                let snap = SnapshotMsg {
                    store: live.machine.store().clone(),
                    pos: last,
                    history: n.meta.history,
                    epochs: n.disk.epochs(),
                };
                self.note(|| format!("n{node} sends n{follower} a snapshot at {last}: {reason}"));
                self.send(conn, false, PeerMsg::Snapshot(Box::new(snap)));
                last
            }
        };
        let Some(live) = self.nodes[node].live.as_mut() else {
            return;
        };
        live.serves.insert(
            conn,
            Serve {
                follower,
                next: prev.lsn.next(),
                last_heard_ms: now,
            },
        );
        live.machine.follower_up(&name, &name, conn, now);
        // As the real upstream does, an empty batch opens the stream: the follower
        // acknowledges nothing before it.
        let epoch = live.machine.epoch();
        self.send(
            conn,
            false,
            PeerMsg::Entries {
                epoch,
                prev,
                records: Vec::new(),
            },
        );
        self.settle(node);
    }

    fn on_follower_msg(&mut self, conn: ConnId, node: usize, msg: PeerMsg) {
        let now = self.now_ms;
        let n = &mut self.nodes[node];
        let Some(live) = n.live.as_mut() else {
            return;
        };
        let Some(follow) = live.follow.as_mut().filter(|f| f.conn == conn) else {
            return;
        };
        follow.last_heard_ms = now;
        // The stream opens with the first `Entries` or heartbeat; a snapshot comes before.
        if matches!(msg, PeerMsg::Entries { .. } | PeerMsg::Heartbeat { .. }) {
            follow.heard = true;
        }
        match msg {
            PeerMsg::Entries {
                epoch,
                prev,
                records,
            } => {
                let positions = records.iter().map(|(p, _)| *p);
                if let Err(why) = live.machine.check_entries(epoch, prev, positions) {
                    self.close_conn(conn, node, &format!("refused entries: {why}"));
                    return;
                }
                n.meta.epoch = n.meta.epoch.max(epoch.0);
                for (pos, cmd) in &records {
                    n.disk.append(*pos, cmd);
                }
                live.machine
                    .apply_entries(epoch, records.iter().map(|(p, c)| (*p, c)), None);
                self.settle(node);
            }
            PeerMsg::Heartbeat {
                epoch,
                leader_time_ms,
            } => {
                let last = live.machine.last();
                if let Err(why) = live.machine.check_entries(epoch, last, []) {
                    self.close_conn(conn, node, &format!("refused a heartbeat: {why}"));
                    return;
                }
                n.meta.epoch = n.meta.epoch.max(epoch.0);
                live.machine
                    .apply_entries(epoch, std::iter::empty(), Some(leader_time_ms));
            }
            PeerMsg::Snapshot(snap) => {
                if live.machine.is_leader() {
                    self.close_conn(conn, node, "this node leads; it takes no snapshot");
                    return;
                }
                let SnapshotMsg {
                    store,
                    pos,
                    history,
                    epochs,
                } = *snap;
                // Entries of the replaced log the snapshot's log does not hold: a diverged
                // tail (an old leader's, say) that the resync discards.
                let epoch_in = |lsn: Lsn| {
                    epochs
                        .iter()
                        .rev()
                        .find(|(_, first)| *first <= lsn)
                        .map(|(e, _)| *e)
                };
                let discarded = n
                    .disk
                    .entries
                    .iter()
                    .filter(|(p, _)| p.lsn > pos.lsn || epoch_in(p.lsn) != Some(p.epoch))
                    .count() as u64;
                if discarded > 0 && self.cfg.is_auto() {
                    self.report.auto.divergent_resyncs += 1;
                    self.report.auto.divergent_entries += discarded;
                }
                n.disk.reset(store.clone(), pos, epochs);
                n.matched_len = 0;
                n.meta.history = history;
                n.meta.epoch = n.meta.epoch.max(pos.epoch.0);
                live.machine.install_snapshot(store, pos);
                self.settle(node);
            }
            PeerMsg::Truncate { to } => {
                if live.machine.is_leader() {
                    self.close_conn(conn, node, "this node leads; it cuts nothing");
                    return;
                }
                let last = live.machine.last();
                if to.lsn < n.disk.base.lsn || n.disk.position_at(to.lsn) != Some(to) {
                    let why = format!("cannot cut back to {to}: this log does not hold it");
                    self.close_conn(conn, node, &why);
                    return;
                }
                let (discarded, store) = n.disk.truncate_after(to.lsn);
                n.matched_len = n.matched_len.min(n.disk.entries.len());
                live.machine.truncate_to(store, to);
                live.machine.set_epochs(n.disk.epoch_table());
                if discarded > 0 && self.cfg.is_auto() {
                    self.report.auto.divergent_truncations += 1;
                    self.report.auto.divergent_entries += discarded as u64;
                }
                self.note(|| format!("n{node} cut its log back from {last} to {to}: {discarded} entries discarded"));
                self.settle(node);
            }
            PeerMsg::Refuse { reason } => self.close_conn(conn, node, &reason),
            other => {
                let why = format!("unexpected {other:?} from the upstream");
                self.close_conn(conn, node, &why);
            }
        }
    }

    /// Sends every follower of `node` the entries it has not been sent, in batches.
    pub(super) fn ship(&mut self, node: usize) {
        let n = &self.nodes[node];
        let Some(live) = n.live.as_ref() else {
            return;
        };
        let last = n.disk.last().lsn;
        let epoch = live.machine.epoch();
        let mut out: Vec<(ConnId, PeerMsg)> = Vec::new();
        let mut broken: Vec<ConnId> = Vec::new();
        let mut advanced: Vec<(ConnId, Lsn)> = Vec::new();
        for (conn, s) in &live.serves {
            let mut next = s.next;
            while next <= last {
                let Some(prev) = n.disk.position_at(Lsn(next.0 - 1)) else {
                    broken.push(*conn);
                    break;
                };
                let mut records = Vec::new();
                while next <= last && records.len() < BATCH_ENTRIES_MAX {
                    match n.disk.entry(next) {
                        Some(e) => records.push(e.clone()),
                        None => break,
                    }
                    next = next.next();
                }
                if records.is_empty() {
                    broken.push(*conn);
                    break;
                }
                out.push((
                    *conn,
                    PeerMsg::Entries {
                        epoch,
                        prev,
                        records,
                    },
                ));
            }
            advanced.push((*conn, next));
        }
        if let Some(live) = self.nodes[node].live.as_mut() {
            for (conn, next) in advanced {
                if let Some(s) = live.serves.get_mut(&conn) {
                    s.next = next;
                }
            }
        }
        for (conn, msg) in out {
            self.send(conn, false, msg);
        }
        for conn in broken {
            self.close_conn(
                conn,
                node,
                "the log does not continue where the follower is",
            );
        }
    }

    /// Every heartbeat interval: silence timeouts on both ends, heartbeats to followers that
    /// have everything, and an ack to the upstream.
    pub(super) fn heartbeat(&mut self, node: usize) {
        let now = self.now_ms;
        let silence = self.cfg.silence_timeout_ms;
        let n = &self.nodes[node];
        let Some(live) = n.live.as_ref() else {
            return;
        };
        let last = n.disk.last().lsn;
        let time = if live.machine.is_leader() {
            Some(now)
        } else {
            live.machine.current_as_of_ms()
        };
        let epoch = live.machine.epoch();
        let mut silent: Vec<ConnId> = Vec::new();
        let mut beats: Vec<ConnId> = Vec::new();
        for (conn, s) in &live.serves {
            if now.saturating_sub(s.last_heard_ms) > silence {
                silent.push(*conn);
            } else if s.next > last && time.is_some() {
                beats.push(*conn);
            }
        }
        let follow_silent = live
            .follow
            .as_ref()
            .filter(|f| now.saturating_sub(f.last_heard_ms) > silence)
            .map(|f| f.conn);
        for conn in silent {
            self.close_conn(conn, node, "the follower went silent");
        }
        if let Some(t) = time {
            for conn in beats {
                self.send(
                    conn,
                    false,
                    PeerMsg::Heartbeat {
                        epoch,
                        leader_time_ms: t,
                    },
                );
            }
        }
        if let Some(conn) = follow_silent {
            self.close_conn(conn, node, "the upstream went silent");
        }
        self.follower_report(node, true);
    }

    /// Sends the upstream an `Ack` when the durable or applied position moved (or `always`).
    pub(super) fn follower_report(&mut self, node: usize, always: bool) {
        let Some(live) = self.nodes[node].live.as_mut() else {
            return;
        };
        let m = &live.machine;
        let now = (m.durable(), m.applied());
        let epoch = m.epoch();
        let Some(f) = live.follow.as_mut() else {
            return;
        };
        if !f.heard {
            return;
        }
        if !always && f.sent == Some(now) {
            return;
        }
        f.sent = Some(now);
        let conn = f.conn;
        self.send(
            conn,
            true,
            PeerMsg::Ack {
                epoch,
                durable: now.0,
                applied: now.1,
            },
        );
    }
}

/// The incarnation of one end of `conn`.
fn c_inc(conns: &std::collections::BTreeMap<ConnId, Conn>, conn: ConnId, upstream: bool) -> u64 {
    conns.get(&conn).map_or(0, |c| {
        if upstream {
            c.upstream_inc
        } else {
            c.follower_inc
        }
    })
}
