//! Read-your-writes: a client's reads reflect its own acknowledged writes.

use super::verdict::{describe_op, Examples, Verdict};
use super::versions::{Version, Versions};
use crate::history::{Call, History, OpId, Outcome};
use std::collections::{BTreeMap, HashMap};

/// Finds reads that miss the reading client's own earlier write of the same key.
///
/// For each client and key, the reference is the client's last acknowledged write of the key
/// before the read (`Write`, `Swap`, a `WriteIfAbsent` that wrote, `Delete`, or, on a counter
/// whose increments are all positive, the value its last `Incr` returned). A read violates
/// read-your-writes when everything it may have seen is provably older than that write (see
/// the module docs on version order: tokens when both sides carry one, else real time). A read
/// of a value no write stored names no version and is left to the linearizability checker.
/// `violations` counts the reads.
#[must_use]
pub fn read_your_writes(h: &History) -> Verdict {
    let versions = Versions::new(h);
    let mut examples = Examples::default();
    let (mut checked, mut violations) = (0_u64, 0_u64);
    for ids in by_client(h).values() {
        let mut last_write: HashMap<&str, (OpId, Version)> = HashMap::new();
        for &id in ids {
            let op = &h.ops[id];
            if let Some(written) = versions.written(id) {
                last_write.insert(&op.key, (id, written));
                continue;
            }
            if !matches!((&op.call, &op.outcome), (Call::Read, Outcome::Ok { .. })) {
                continue;
            }
            let Some(&(w, written)) = last_write.get(op.key.as_str()) else {
                continue;
            };
            if h.ops[w].end_us > op.start_us {
                continue;
            }
            checked += 1;
            if versions.all_older(&versions.read(id), written) {
                violations += 1;
                examples.push(
                    || {
                        format!(
                            "{}: {} (op {id}) misses the same client's earlier acknowledged {} \
                             (op {w})",
                            op.key,
                            describe_op(op),
                            describe_op(&h.ops[w])
                        )
                    },
                    vec![w, id],
                );
            }
        }
    }
    let summary = format!(
        "{violations} of {checked} reads that followed the client's own write of the key missed it"
    );
    Verdict::from_violations("read_your_writes", violations, summary, examples.into_vec())
}

/// Each client's operations in the order it invoked them.
pub(crate) fn by_client(h: &History) -> BTreeMap<u32, Vec<OpId>> {
    let mut clients: BTreeMap<u32, Vec<OpId>> = BTreeMap::new();
    for (id, op) in h.ops.iter().enumerate() {
        clients.entry(op.client).or_default().push(id);
    }
    for ids in clients.values_mut() {
        ids.sort_by_key(|&id| (h.ops[id].start_us, id));
    }
    clients
}
