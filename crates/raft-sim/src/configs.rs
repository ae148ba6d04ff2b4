//! The simulator's own model of each node's configuration, kept from what the node hands
//! out (entries, snapshots) and what is on its disk, to check raft-core against: the
//! configuration in force on a node is the latest one in its log, committed or not.

use raft_core::{Entry, EntryKind, Membership, confchange};

/// The configurations of one node's log: the one at its snapshot and the one set by each
/// configuration change entry after it.
///
/// Invariant: indexes in `later` strictly increase and are past `base_index`.
#[derive(Clone, Debug, Default)]
pub struct ConfigModel {
    base_index: u64,
    base: Membership,
    later: Vec<(u64, Membership)>,
}

impl ConfigModel {
    /// The configuration `m` at `index` (a snapshot's), nothing logged after it.
    pub fn new(index: u64, m: Membership) -> Self {
        Self {
            base_index: index,
            base: m,
            later: Vec::new(),
        }
    }

    /// The model of a log that starts after a snapshot at `index` with configuration `m`
    /// and holds `entries`.
    pub fn from_log(index: u64, m: Membership, entries: &[Entry]) -> Self {
        let mut c = Self::new(index, m);
        c.append(entries);
        c
    }

    /// The configuration in force: the latest one in the log.
    pub fn latest(&self) -> &Membership {
        self.later.last().map_or(&self.base, |(_, m)| m)
    }

    /// `entries` were written from `entries[0].index` on (replacing anything from there).
    /// A change that does not decode, or that cannot apply to the configuration before
    /// it, changes nothing (raft-core's rule, which every node follows alike).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let keep = self.later.partition_point(|(i, _)| *i < first.index);
        self.later.truncate(keep);
        for e in entries {
            if e.index <= self.base_index || e.kind != EntryKind::ConfChange {
                continue;
            }
            let Ok(cc) = confchange::decode(&e.data) else {
                continue;
            };
            if let Ok(next) = confchange::apply(self.latest(), &cc) {
                self.later.push((e.index, next));
            }
        }
    }

    /// The log was replaced by a snapshot at `index` with configuration `m`.
    pub fn restore(&mut self, index: u64, m: Membership) {
        self.base_index = index;
        self.base = m;
        self.later.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{ConfChange, ConfChangeOp, ConfChangeTransition};

    fn conf(index: u64, op: ConfChangeOp) -> Entry {
        Entry {
            index,
            term: 1,
            kind: EntryKind::ConfChange,
            data: confchange::encode(&ConfChange {
                transition: ConfChangeTransition::Auto,
                ops: vec![op],
            }),
        }
    }

    #[test]
    fn the_latest_change_in_the_log_is_in_force_until_overwritten() {
        let mut c = ConfigModel::new(0, Membership::with_voters([1, 2, 3]));
        c.append(&[conf(1, ConfChangeOp::AddVoter(4))]);
        assert_eq!(c.latest().voters, [1, 2, 3, 4].into());
        c.append(&[Entry {
            index: 1,
            term: 2,
            ..Entry::default()
        }]);
        assert_eq!(c.latest().voters, [1, 2, 3].into());
        c.restore(5, Membership::with_voters([9]));
        assert_eq!(c.latest().voters, [9].into());
    }
}
