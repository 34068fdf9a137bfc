//! Choosing the leader from the nodes' answers to `SENTINEL get-master-addr-by-name`:
//! [`LeaderVote`].
//!
//! Each node names the leader its copy of the cluster map names (or none). A deposed leader
//! cut off by a partition may still name itself for a while, so one node's word is not
//! enough: the client takes the address a majority of the answering nodes name. Without a
//! majority (nodes down, maps in flux) it may, after a short wait, settle for the address
//! named more often than any other; a tie names nobody.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One node's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeAnswer {
    /// The node that answered, by the address its connection reached: two seeds that are
    /// the same node (a name and an IP) count once.
    pub node: SocketAddr,
    /// The leader it named (`host:port`), `None` when it named none (a nil reply).
    pub leader: Option<String>,
}

/// The tally of one round of answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaderVote {
    /// Distinct nodes that answered, nil answers included.
    pub answered: usize,
    /// The address more than half of them named.
    pub majority: Option<String>,
    /// The address named more often than every other, if one is.
    pub most_named: Option<String>,
}

impl LeaderVote {
    /// Counts `answers`; a node that answered twice counts once (its first answer).
    pub fn tally(answers: &[NodeAnswer]) -> LeaderVote {
        let mut seen: BTreeMap<SocketAddr, Option<&str>> = BTreeMap::new();
        for a in answers {
            seen.entry(a.node).or_insert(a.leader.as_deref());
        }
        let answered = seen.len();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for leader in seen.values().flatten() {
            *counts.entry(leader).or_default() += 1;
        }
        let top = counts.values().copied().max().unwrap_or(0);
        let mut tops = counts.iter().filter(|(_, &n)| n == top);
        let most_named = match (tops.next(), tops.next()) {
            (Some((addr, _)), None) => Some((*addr).to_string()),
            _ => None,
        };
        let majority = most_named.clone().filter(|_| top * 2 > answered);
        let vote = LeaderVote {
            answered,
            majority,
            most_named,
        };
        vote.check_invariants();
        vote
    }

    /// The leader to use: the majority's, else (when `may_fall_back`) the most-named one.
    pub fn choice(&self, may_fall_back: bool) -> Option<&str> {
        self.majority
            .as_deref()
            .or(self.most_named.as_deref().filter(|_| may_fall_back))
    }

    fn check_invariants(&self) {
        assert!(
            self.majority.is_none() || self.majority == self.most_named,
            "a majority ({:?}) is the most-named address ({:?})",
            self.majority,
            self.most_named
        );
        assert!(
            self.answered > 0 || self.most_named.is_none(),
            "nobody answered, yet {:?} was named",
            self.most_named
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(named: &[Option<&str>]) -> Vec<NodeAnswer> {
        named
            .iter()
            .enumerate()
            .map(|(i, leader)| NodeAnswer {
                node: SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
                leader: leader.map(str::to_string),
            })
            .collect()
    }

    /// A deposed leader cut off by a partition still names itself; the two nodes that elected
    /// its successor outvote it.
    #[test]
    fn majority_outvotes_a_deposed_leader_naming_itself() {
        let vote = LeaderVote::tally(&answers(&[Some("a:1"), Some("b:1"), Some("b:1")]));
        assert_eq!(vote.majority.as_deref(), Some("b:1"));
        assert_eq!(vote.choice(false), Some("b:1"));
    }

    #[test]
    fn unanimous_answers_are_a_majority() {
        let vote = LeaderVote::tally(&answers(&[Some("a:1"), Some("a:1"), Some("a:1")]));
        assert_eq!(vote.choice(false), Some("a:1"));
    }

    /// Nil answers count as answers: one node naming a leader while two name none is no
    /// majority, only a fallback.
    #[test]
    fn nil_answers_count_against_a_majority() {
        let vote = LeaderVote::tally(&answers(&[Some("a:1"), None, None]));
        assert_eq!(vote.answered, 3);
        assert_eq!(vote.majority, None);
        assert_eq!(vote.most_named.as_deref(), Some("a:1"));
        assert_eq!(vote.choice(false), None, "no majority before the wait");
        assert_eq!(vote.choice(true), Some("a:1"), "the most named after it");
    }

    /// Half is not a majority, and a tie names nobody even after the wait.
    #[test]
    fn a_tie_names_nobody() {
        let vote = LeaderVote::tally(&answers(&[Some("a:1"), Some("b:1")]));
        assert_eq!(vote.majority, None);
        assert_eq!(vote.most_named, None);
        assert_eq!(vote.choice(true), None);
    }

    #[test]
    fn the_only_answer_is_a_majority_of_those_that_answered() {
        let vote = LeaderVote::tally(&answers(&[Some("a:1")]));
        assert_eq!(vote.choice(false), Some("a:1"));
    }

    #[test]
    fn no_answers_and_only_nil_answers_name_nobody() {
        assert_eq!(LeaderVote::tally(&[]), LeaderVote::default());
        let vote = LeaderVote::tally(&answers(&[None, None, None]));
        assert_eq!(vote.answered, 3);
        assert_eq!(vote.choice(true), None);
    }

    /// The same node reached through two seeds answers once.
    #[test]
    fn a_node_reached_twice_counts_once() {
        let mut list = answers(&[Some("a:1"), Some("b:1"), None]);
        let twice = NodeAnswer {
            node: list[0].node,
            leader: Some("a:1".to_string()),
        };
        list.push(twice);
        let vote = LeaderVote::tally(&list);
        assert_eq!(vote.answered, 3);
        assert_eq!(vote.majority, None);
        assert_eq!(vote.most_named, None, "a:1 and b:1 tie once deduplicated");
    }

    #[test]
    fn five_nodes_need_three() {
        let two = LeaderVote::tally(&answers(&[
            Some("a:1"),
            Some("a:1"),
            Some("b:1"),
            None,
            None,
        ]));
        assert_eq!(two.majority, None);
        assert_eq!(two.most_named.as_deref(), Some("a:1"));
        let three = LeaderVote::tally(&answers(&[
            Some("a:1"),
            Some("a:1"),
            Some("a:1"),
            Some("b:1"),
            None,
        ]));
        assert_eq!(three.majority.as_deref(), Some("a:1"));
    }
}
