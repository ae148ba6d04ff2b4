//! The configurations the log holds: the one in force at a base index and the one set by
//! each configuration change entry after it, so the latest in the log is always known and
//! a truncated suffix takes its changes with it.

use crate::confchange;
use crate::entry::{Entry, EntryKind, NodeId};
use crate::membership::Membership;
use std::collections::BTreeSet;

/// Configuration changes by log index.
///
/// A configuration takes effect on a node as soon as its entry is in the node's log
/// (committed or not), so the configuration in force is [`latest`](Self::latest). The
/// history reaches back to `base_index`, which never passes the commit index: only
/// entries above the commit index can be overwritten, and when they are, their changes
/// are dropped here too and the configuration falls back to the one before.
///
/// Invariants: `base_index <= later[0].0 < later[1].0 < ...`; each membership in `later`
/// is the previous one (or `base`) with the entry's change applied. A change that does not
/// decode or that [`confchange::apply`] refuses is skipped, the same way on every node.
#[derive(Clone, Debug)]
pub(crate) struct ConfigHistory {
    base_index: u64,
    base: Membership,
    later: Vec<(u64, Membership)>,
    /// Incremented whenever `latest()` may have changed.
    version: u64,
}

impl ConfigHistory {
    /// The configuration `membership` in force at `index`, with nothing after it.
    pub(crate) fn new(index: u64, membership: Membership) -> Self {
        Self {
            base_index: index,
            base: membership,
            later: Vec::new(),
            version: 0,
        }
    }

    /// The configuration in force: the latest one in the log, committed or not.
    pub(crate) fn latest(&self) -> &Membership {
        self.later.last().map_or(&self.base, |(_, m)| m)
    }

    /// The index of the entry that set [`latest`](Self::latest) (the base index when no
    /// change follows it).
    pub(crate) fn latest_index(&self) -> u64 {
        self.later.last().map_or(self.base_index, |(i, _)| *i)
    }

    /// The configuration in force at `index` (the base one for indexes before the base).
    pub(crate) fn at(&self, index: u64) -> &Membership {
        self.later
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or(&self.base, |(_, m)| m)
    }

    /// Changes whenever the configuration in force may have changed.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Every node of every configuration from the base on (the peers a leader keeps
    /// replicating to: a node a pending change removes must still learn that it did).
    pub(crate) fn members(&self) -> BTreeSet<NodeId> {
        let mut all = self.base.members();
        for (_, m) in &self.later {
            all.extend(m.members());
        }
        all
    }

    /// True when `id` votes in a configuration that is not known to be superseded by a
    /// committed one: the latest, or the one in force at `committed` while a later change
    /// is not known committed.
    pub(crate) fn may_vote(&self, id: NodeId, committed: u64) -> bool {
        self.latest().is_voter(id)
            || (self.latest_index() > committed && self.at(committed).is_voter(id))
    }

    /// Entries are written from `ents[0].index` on (anything from there was overwritten):
    /// forget the changes they replace, then record theirs.
    #[inline]
    pub(crate) fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        self.truncate_from(first.index);
        for e in ents {
            if e.kind == EntryKind::ConfChange {
                self.push(e);
            }
        }
    }

    /// One entry at the end of the log (the leader's proposal path).
    #[inline]
    pub(crate) fn append_one(&mut self, e: &Entry) {
        if e.kind == EntryKind::ConfChange {
            self.push(e);
        }
    }

    #[cold]
    #[inline(never)]
    fn push(&mut self, e: &Entry) {
        let Ok(cc) = confchange::decode(&e.data) else {
            return;
        };
        let Ok(next) = confchange::apply(self.latest(), &cc) else {
            return;
        };
        assert!(
            e.index > self.latest_index(),
            "configuration change at {} recorded after one at {}",
            e.index,
            self.latest_index()
        );
        self.later.push((e.index, next));
        self.version += 1;
    }

    /// Forgets the changes at `index` and after (the log was cut there).
    #[inline]
    fn truncate_from(&mut self, index: u64) {
        assert!(
            index > self.base_index,
            "the log is overwritten from {index}, at or before the configuration base {}",
            self.base_index
        );
        // Most appends extend the log past every change it holds: nothing to forget.
        if self.later.last().is_some_and(|(i, _)| *i >= index) {
            let keep = self.later.partition_point(|(i, _)| *i < index);
            self.later.truncate(keep);
            self.version += 1;
        }
    }

    /// The log was replaced by a snapshot at `index` whose configuration is `membership`.
    pub(crate) fn restore(&mut self, index: u64, membership: Membership) {
        self.base_index = index;
        self.base = membership;
        self.later.clear();
        self.version += 1;
    }

    /// Folds the changes at or before `index` (which must be committed) into the base;
    /// returns the configuration of the last one folded, if any.
    #[inline]
    pub(crate) fn advance_base(&mut self, index: u64) -> Option<Membership> {
        if index > self.base_index {
            self.base_index = index;
        }
        // The common case (called at every applied index): no change is folded.
        if self.later.first().is_none_or(|(i, _)| *i > index) {
            return None;
        }
        self.fold_into_base(index)
    }

    /// The rare part of [`advance_base`](Self::advance_base): changes at or before `index`
    /// exist.
    #[inline(never)]
    fn fold_into_base(&mut self, index: u64) -> Option<Membership> {
        let n = self.later.partition_point(|(i, _)| *i <= index);
        let (_, m) = self.later.drain(..n).next_back().expect("n > 0");
        self.base = m.clone();
        Some(m)
    }

    /// The base: the configuration in force at the applied index (or at a restored
    /// snapshot's), which is what a snapshot taken there records.
    pub(crate) fn base(&self) -> &Membership {
        &self.base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{ConfChange, ConfChangeOp, ConfChangeTransition};

    fn cc_entry(index: u64, ops: Vec<ConfChangeOp>) -> Entry {
        Entry {
            index,
            term: 1,
            kind: EntryKind::ConfChange,
            data: confchange::encode(&ConfChange {
                transition: ConfChangeTransition::Auto,
                ops,
            }),
        }
    }

    fn normal(index: u64) -> Entry {
        Entry {
            index,
            term: 1,
            ..Entry::default()
        }
    }

    #[test]
    fn latest_in_the_log_governs_and_truncation_falls_back() {
        let mut h = ConfigHistory::new(0, Membership::with_voters([1, 2, 3]));
        h.append(&[
            normal(1),
            cc_entry(2, vec![ConfChangeOp::AddVoter(4)]),
            normal(3),
        ]);
        assert_eq!(h.latest().voters, [1, 2, 3, 4].into());
        assert_eq!(h.latest_index(), 2);
        assert_eq!(h.at(1).voters, [1, 2, 3].into());
        assert_eq!(h.at(3).voters, [1, 2, 3, 4].into());
        // A refused change (removing the last voters) is skipped.
        h.append_one(&Entry {
            index: 4,
            term: 1,
            kind: EntryKind::ConfChange,
            data: confchange::encode(&ConfChange::default()),
        });
        assert_eq!(h.latest_index(), 2);
        let v = h.version();
        // Overwriting from index 2 drops the change.
        h.append(&[normal(2)]);
        assert_ne!(h.version(), v);
        assert_eq!(h.latest().voters, [1, 2, 3].into());
        assert!(h.members().contains(&3) && !h.members().contains(&4));
    }

    #[test]
    fn advance_base_reports_the_last_folded_change() {
        let mut h = ConfigHistory::new(0, Membership::with_voters([1]));
        h.append(&[
            cc_entry(1, vec![ConfChangeOp::AddVoter(2)]),
            cc_entry(2, vec![ConfChangeOp::AddLearner(3)]),
        ]);
        assert_eq!(h.advance_base(0), None);
        assert_eq!(h.advance_base(1).unwrap().voters, [1, 2].into());
        assert_eq!(h.base().voters, [1, 2].into());
        assert_eq!(h.advance_base(5).unwrap().learners, [3].into());
        assert_eq!(h.latest_index(), 5);
        h.restore(9, Membership::with_voters([7]));
        assert_eq!(h.latest().voters, [7].into());
    }

    #[test]
    fn a_voter_of_the_committed_configuration_may_vote_while_a_change_is_pending() {
        let mut h = ConfigHistory::new(0, Membership::with_voters([1, 2]));
        h.append(&[cc_entry(1, vec![ConfChangeOp::AddLearner(1)])]);
        assert!(!h.latest().is_voter(1));
        assert!(h.may_vote(1, 0), "the removal is not known committed");
        assert!(!h.may_vote(1, 1));
        assert!(h.may_vote(2, 1));
    }
}
