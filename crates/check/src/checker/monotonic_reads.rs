//! Monotonic reads: a client's successive reads never go back to an older state.

use super::read_your_writes::by_client;
use super::verdict::{describe_op, Examples, Verdict};
use super::versions::{Version, Versions};
use crate::history::{Call, History, OpId, Outcome};
use replikv_core::LogPosition;
use std::collections::HashMap;

/// Finds reads that go back in time relative to the same client's earlier reads.
///
/// - Per client and key: a read violates monotonic reads when everything it may have seen is
///   provably older than everything some earlier read of the key by the same client may have
///   seen (see the module docs on version order).
/// - Per client across keys, when reads carry tokens: a read whose token is lower than the
///   highest token of the client's earlier reads reflects an older state of the log.
///
/// `violations` counts the reads that break either rule (once each).
#[must_use]
pub fn monotonic_reads(h: &History) -> Verdict {
    let versions = Versions::new(h);
    let mut examples = Examples::default();
    let (mut checked, mut violations) = (0_u64, 0_u64);
    for ids in by_client(h).values() {
        let mut seen: HashMap<&str, Seen> = HashMap::new();
        let mut highest: Option<(LogPosition, OpId)> = None;
        for &id in ids {
            let op = &h.ops[id];
            if !matches!((&op.call, &op.outcome), (Call::Read, Outcome::Ok { .. })) {
                continue;
            }
            let observed = versions.read(id);
            let token = versions.token(id);
            let key_seen = seen.entry(&op.key).or_default();
            if !key_seen.frontier.is_empty() || highest.is_some() {
                checked += 1;
            }
            let went_back = key_seen.frontier.iter().rev().find(|(_, earlier)| {
                earlier
                    .iter()
                    .all(|&newer| versions.all_older(&observed, newer))
            });
            if let Some(&(earlier, _)) = went_back {
                violations += 1;
                examples.push(
                    || {
                        format!(
                            "{}: {} (op {id}) after the same client's {} (op {earlier}), which \
                             saw a newer state",
                            op.key,
                            describe_op(op),
                            describe_op(&h.ops[earlier])
                        )
                    },
                    vec![earlier, id],
                );
            } else if let (Some(t), Some((top, earlier))) = (token, highest) {
                if t < top {
                    violations += 1;
                    examples.push(
                        || {
                            format!(
                                "client {} read {} at {t} (op {id}) after reading {} at {top} \
                                 (op {earlier})",
                                op.client, op.key, h.ops[earlier].key
                            )
                        },
                        vec![earlier, id],
                    );
                }
            }
            if let Some(t) = token {
                if highest.is_none_or(|(top, _)| t > top) {
                    highest = Some((t, id));
                }
            }
            key_seen.add(&versions, id, observed);
        }
    }
    let summary =
        format!("{violations} of {checked} reads went back to an older state than an earlier read");
    Verdict::from_violations("monotonic_reads", violations, summary, examples.into_vec())
}

/// What one client's reads of one key saw: the states no other seen state is provably newer
/// than, each with the first read that saw it. An older state need not be kept: a read older
/// than it is older than the state that replaced it in the frontier too.
#[derive(Debug, Default)]
struct Seen {
    frontier: Vec<(OpId, Vec<Version>)>,
}

impl Seen {
    fn add(&mut self, versions: &Versions<'_>, id: OpId, observed: Vec<Version>) {
        if observed.is_empty() || self.frontier.iter().any(|(_, seen)| *seen == observed) {
            return;
        }
        self.frontier.retain(|(_, seen)| {
            !observed
                .iter()
                .all(|&newer| versions.all_older(seen, newer))
        });
        self.frontier.push((id, observed));
    }
}
