//! The Raft safety invariants, checked incrementally after every simulation step.
//!
//! The checker keeps a shadow of every node's log as the node handed it out (entries from
//! `Ready`, snapshots installed) and global indexes of what was ever appended, committed
//! and applied, so that each check costs O(new entries) rather than O(log):
//!
//! - **Election safety**: at most one leader per term.
//! - **Log matching**: any two entries with the same index and term carry the same data
//!   and follow an entry of the same term (by induction: the logs agree up to there).
//! - **Leader completeness**: an entry committed in term T is in the log of every leader
//!   of a term after T, at its election and whenever a commit is learned later.
//! - **State machine safety**: no two nodes commit or apply different entries at one index.
//! - **Commit monotonicity**: a node's commit index never goes back while it runs, and
//!   nothing is applied past it.
//!
//! The last invariant of the simulator, *nothing is acknowledged to a client before it is
//! durable on a quorum*, needs the disks and lives in the cluster driver.

use crate::fxhash::FxHashMap;
use crate::trace::fnv1a;
use raft_core::{Entry, EntryKind, NodeId};
use std::fmt;

/// A broken invariant: the reason a seed fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Two nodes were leader in one term.
    TwoLeaders {
        /// The term.
        term: u64,
        /// The first leader seen.
        first: NodeId,
        /// The second.
        second: NodeId,
    },
    /// Two entries with one (index, term) differ, or follow different terms.
    LogMismatch {
        /// The node whose entry disagreed with an earlier one.
        node: NodeId,
        /// Index of the entry.
        index: u64,
        /// Term of the entry.
        term: u64,
    },
    /// A leader lacks a committed entry.
    LeaderIncomplete {
        /// The leader.
        node: NodeId,
        /// Its term.
        term: u64,
        /// The committed index it lacks (or holds with another term or data).
        index: u64,
    },
    /// Two nodes committed different entries at one index.
    CommitMismatch {
        /// The node that disagreed.
        node: NodeId,
        /// The index.
        index: u64,
    },
    /// Two nodes applied different entries at one index, or one applied an entry that
    /// differs from the committed one.
    ApplyMismatch {
        /// The node that disagreed.
        node: NodeId,
        /// The index.
        index: u64,
    },
    /// A node's commit index went back while it was running.
    CommitRegressed {
        /// The node.
        node: NodeId,
        /// Its previous commit index.
        from: u64,
        /// The new, lower one.
        to: u64,
    },
    /// A node applied an entry past its commit index.
    AppliedUncommitted {
        /// The node.
        node: NodeId,
        /// The index applied.
        index: u64,
        /// Its commit index.
        commit: u64,
    },
    /// A client was told an entry was done before it was durable on a quorum.
    AckedNotDurable {
        /// The index of the entry.
        index: u64,
        /// Nodes that had it durably.
        durable_on: Vec<NodeId>,
    },
    /// The client history is not linearizable.
    NotLinearizable {
        /// The key.
        key: u64,
        /// A description of the operation the search could not get past.
        op: String,
    },
    /// A node's configuration in force is not the latest one in its log.
    WrongConfiguration {
        /// The node.
        node: NodeId,
        /// What it uses and what its log says.
        detail: String,
    },
    /// After faults stopped, no leader was elected or no write committed in time.
    NoLiveness(String),
    /// A node panicked (a protocol invariant raft-core checks itself).
    Panic(String),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::TwoLeaders {
                term,
                first,
                second,
            } => write!(
                f,
                "election safety: n{first} and n{second} both leader in term {term}"
            ),
            Violation::LogMismatch { node, index, term } => write!(
                f,
                "log matching: n{node} has an entry at {index} (term {term}) that differs from another node's"
            ),
            Violation::LeaderIncomplete { node, term, index } => write!(
                f,
                "leader completeness: leader n{node} of term {term} lacks committed entry {index}"
            ),
            Violation::CommitMismatch { node, index } => write!(
                f,
                "state machine safety: n{node} committed a different entry at {index}"
            ),
            Violation::ApplyMismatch { node, index } => write!(
                f,
                "state machine safety: n{node} applied a different entry at {index}"
            ),
            Violation::CommitRegressed { node, from, to } => {
                write!(f, "commit index of n{node} went back from {from} to {to}")
            }
            Violation::AppliedUncommitted {
                node,
                index,
                commit,
            } => write!(
                f,
                "n{node} applied {index} beyond its commit index {commit}"
            ),
            Violation::AckedNotDurable { index, durable_on } => write!(
                f,
                "entry {index} acknowledged to a client while durable only on {durable_on:?}"
            ),
            Violation::NotLinearizable { key, op } => {
                write!(
                    f,
                    "history of key {key} is not linearizable (stuck at {op})"
                )
            }
            Violation::WrongConfiguration { node, detail } => {
                write!(f, "configuration of n{node}: {detail}")
            }
            Violation::NoLiveness(why) => write!(f, "liveness: {why}"),
            Violation::Panic(msg) => write!(f, "node panicked: {msg}"),
        }
    }
}

/// A fingerprint of an entry's content (kind and data).
pub fn entry_hash(e: &Entry) -> u64 {
    let kind = match e.kind {
        EntryKind::Normal => 1u8,
        EntryKind::ConfChange => 2u8,
    };
    fnv1a(fnv1a(0xCBF2_9CE4_8422_2325, &[kind]), &e.data)
}

/// A node's log as the checker sees it: (term, content hash) per index after a snapshot.
#[derive(Clone, Debug, Default)]
pub struct ShadowLog {
    /// Index of the snapshot the log starts after.
    pub snap_index: u64,
    /// Term of that snapshot.
    pub snap_term: u64,
    /// (term, hash) of entries `snap_index + 1 ..`.
    pub ents: Vec<(u64, u64)>,
}

impl ShadowLog {
    /// The last index.
    pub fn last(&self) -> u64 {
        self.snap_index + self.ents.len() as u64
    }

    /// (term, hash) at `index`; `None` when compacted or past the end.
    pub fn get(&self, index: u64) -> Option<(u64, u64)> {
        if index <= self.snap_index {
            return None;
        }
        self.ents
            .get((index - self.snap_index - 1) as usize)
            .copied()
    }

    /// The term at `index`, including the snapshot's.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.snap_index {
            Some(self.snap_term)
        } else {
            self.get(index).map(|x| x.0)
        }
    }

    fn append(&mut self, first_index: u64, items: &[(u64, u64)]) {
        let skip = self.snap_index.saturating_sub(first_index - 1) as usize;
        if skip >= items.len() {
            return;
        }
        let first_index = first_index + skip as u64;
        let keep = (first_index - self.snap_index - 1) as usize;
        self.ents.truncate(keep.min(self.ents.len()));
        self.ents.extend_from_slice(&items[skip..]);
    }

    fn install_snapshot(&mut self, index: u64, term: u64) {
        if self.term(index) == Some(term) && index <= self.last() {
            let drop = (index - self.snap_index) as usize;
            self.ents.drain(..drop.min(self.ents.len()));
        } else {
            self.ents.clear();
        }
        self.snap_index = index;
        self.snap_term = term;
    }
}

/// The incremental safety checker of one run.
#[derive(Debug, Default)]
pub struct SafetyChecker {
    leaders: FxHashMap<u64, NodeId>,
    /// Nodes currently leader, with their term.
    current_leaders: FxHashMap<NodeId, u64>,
    /// (index, term) -> (content hash, term of the previous entry, if known).
    appended: FxHashMap<(u64, u64), (u64, Option<u64>)>,
    /// committed[i - 1] = (term, hash) of the entry committed at index i.
    committed: Vec<(u64, u64)>,
    /// commit_terms[i - 1] = the term in which entry i was first reported committed (the
    /// reporting node's term: the committing leader's, or that of a follower it told).
    commit_terms: Vec<u64>,
    /// Indexes up to here are known committed, though not all recorded (a snapshot).
    committed_floor: u64,
    applied: FxHashMap<u64, (u64, u64)>,
    /// Per node: (commit index, index applied last).
    nodes: FxHashMap<NodeId, (u64, u64)>,
    shadows: FxHashMap<NodeId, ShadowLog>,
    /// Indexes whose commitment a follower reported before any leader did (their recorded
    /// commit term is then the follower's, an upper bound).
    pub commits_first_seen_on_followers: u64,
}

type Check = Result<(), Violation>;

impl SafetyChecker {
    /// A checker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shadow log of `node`.
    pub fn shadow(&self, node: NodeId) -> Option<&ShadowLog> {
        self.shadows.get(&node)
    }

    /// The highest index known committed anywhere.
    pub fn max_committed(&self) -> u64 {
        (self.committed.len() as u64).max(self.committed_floor)
    }

    /// The committed entry at `index`, if recorded.
    pub fn committed_at(&self, index: u64) -> Option<(u64, u64)> {
        index
            .checked_sub(1)
            .and_then(|i| self.committed.get(i as usize).copied())
    }

    /// A node (re)starts with this durable log and commit index: its shadow is replaced,
    /// its commit index may be lower than before the crash (it was not yet durable).
    pub fn on_restart(&mut self, node: NodeId, log: ShadowLog, commit: u64) {
        self.shadows.insert(node, log);
        self.nodes.insert(node, (commit, 0));
        self.current_leaders.remove(&node);
    }

    /// A node stops being leader (or crashed).
    pub fn on_step_down(&mut self, node: NodeId) {
        self.current_leaders.remove(&node);
    }

    /// `node` handed out entries to persist (appending to, or overwriting, its log).
    pub fn on_append(&mut self, node: NodeId, entries: &[Entry]) -> Check {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let items: Vec<(u64, u64)> = entries.iter().map(|e| (e.term, entry_hash(e))).collect();
        let shadow = self.shadows.entry(node).or_default();
        let mut prev = shadow.term(first.index - 1);
        shadow.append(first.index, &items);
        for (e, &(term, hash)) in entries.iter().zip(&items) {
            match self.appended.get(&(e.index, term)) {
                None => {
                    self.appended.insert((e.index, term), (hash, prev));
                }
                Some(&(h, p)) => {
                    let prev_differs = matches!((p, prev), (Some(a), Some(b)) if a != b);
                    if h != hash || prev_differs {
                        return Err(Violation::LogMismatch {
                            node,
                            index: e.index,
                            term,
                        });
                    }
                }
            }
            prev = Some(term);
        }
        // A leader never overwrites its own log, so completeness still holds; followers
        // are checked when they commit.
        Ok(())
    }

    /// `node` installed a snapshot at (`index`, `term`); everything up to it is committed.
    pub fn on_snapshot(&mut self, node: NodeId, index: u64, term: u64) -> Check {
        self.shadows
            .entry(node)
            .or_default()
            .install_snapshot(index, term);
        if self.committed_at(index).is_some_and(|(t, _)| t != term) {
            return Err(Violation::CommitMismatch { node, index });
        }
        self.committed_floor = self.committed_floor.max(index);
        let st = self.nodes.entry(node).or_default();
        st.0 = st.0.max(index);
        st.1 = st.1.max(index);
        Ok(())
    }

    /// `node`, in term `node_term`, reports commit index `commit` (from its hard state);
    /// `leader` when it leads that term (then `node_term` is the real commit term of the
    /// indexes it is the first to report).
    pub fn on_commit(&mut self, node: NodeId, commit: u64, node_term: u64, leader: bool) -> Check {
        let st = self.nodes.entry(node).or_default();
        let old = st.0;
        if commit < old {
            return Err(Violation::CommitRegressed {
                node,
                from: old,
                to: commit,
            });
        }
        st.0 = commit;
        let shadow = self.shadows.entry(node).or_default();
        let mut newly = Vec::new();
        for i in (old + 1)..=commit {
            let Some((term, hash)) = shadow.get(i) else {
                continue;
            };
            match self.committed.get(i as usize - 1).copied() {
                Some(c) if c != (term, hash) => {
                    return Err(Violation::CommitMismatch { node, index: i });
                }
                Some(_) => {}
                None => {
                    if i == self.committed.len() as u64 + 1 {
                        self.committed.push((term, hash));
                        self.commit_terms.push(node_term);
                        newly.push((i, node_term));
                        if !leader {
                            self.commits_first_seen_on_followers += 1;
                        }
                    }
                }
            }
        }
        // Leader completeness for entries whose commitment was learned now: every leader
        // of a later term than the one they were committed in must hold them.
        for (i, term) in newly {
            for (&leader, &lterm) in &self.current_leaders {
                if lterm > term {
                    let has = self.shadows.get(&leader).and_then(|s| {
                        if i <= s.snap_index {
                            Some(self.committed_at(i).unwrap_or_default())
                        } else {
                            s.get(i)
                        }
                    });
                    if has != self.committed_at(i) {
                        return Err(Violation::LeaderIncomplete {
                            node: leader,
                            term: lterm,
                            index: i,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// `node` is leader in `term` (reported after each of its steps while it is).
    pub fn on_leader(&mut self, node: NodeId, term: u64) -> Check {
        if self.current_leaders.get(&node) == Some(&term) {
            return Ok(());
        }
        match self.leaders.get(&term) {
            Some(&other) if other != node => {
                return Err(Violation::TwoLeaders {
                    term,
                    first: other,
                    second: node,
                });
            }
            _ => {
                self.leaders.insert(term, node);
            }
        }
        self.current_leaders.insert(node, term);
        let shadow = self.shadows.entry(node).or_default();
        for (k, &(cterm, chash)) in self.committed.iter().enumerate() {
            let i = k as u64 + 1;
            if i <= shadow.snap_index || self.commit_terms[k] >= term {
                continue;
            }
            if shadow.get(i) != Some((cterm, chash)) {
                return Err(Violation::LeaderIncomplete {
                    node,
                    term,
                    index: i,
                });
            }
        }
        Ok(())
    }

    /// `node` applied the entry at `index`.
    pub fn on_apply(&mut self, node: NodeId, e: &Entry) -> Check {
        let hash = entry_hash(e);
        let st = self.nodes.entry(node).or_default();
        if e.index > st.0 {
            return Err(Violation::AppliedUncommitted {
                node,
                index: e.index,
                commit: st.0,
            });
        }
        st.1 = e.index;
        if self
            .committed_at(e.index)
            .is_some_and(|c| c != (e.term, hash))
        {
            return Err(Violation::ApplyMismatch {
                node,
                index: e.index,
            });
        }
        match self.applied.get(&e.index) {
            Some(&a) if a != (e.term, hash) => Err(Violation::ApplyMismatch {
                node,
                index: e.index,
            }),
            Some(_) => Ok(()),
            None => {
                self.applied.insert(e.index, (e.term, hash));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ent(index: u64, term: u64, data: &'static [u8]) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn two_leaders_in_one_term() {
        let mut c = SafetyChecker::new();
        c.on_leader(1, 5).unwrap();
        c.on_leader(1, 5).unwrap();
        c.on_leader(2, 6).unwrap();
        assert!(matches!(
            c.on_leader(3, 6),
            Err(Violation::TwoLeaders { term: 6, .. })
        ));
    }

    #[test]
    fn log_matching() {
        let mut c = SafetyChecker::new();
        c.on_append(1, &[ent(1, 1, b"a"), ent(2, 1, b"b")]).unwrap();
        c.on_append(2, &[ent(1, 1, b"a"), ent(2, 1, b"b")]).unwrap();
        // Overwriting an uncommitted suffix with a later term is fine.
        c.on_append(2, &[ent(2, 2, b"x")]).unwrap();
        assert_eq!(
            c.shadow(2).unwrap().get(2),
            Some((2, entry_hash(&ent(2, 2, b"x"))))
        );
        // The same (index, term) with other data is not.
        assert!(matches!(
            c.on_append(3, &[ent(1, 1, b"a"), ent(2, 1, b"c")]),
            Err(Violation::LogMismatch { index: 2, .. })
        ));
        // Nor the same (index, term) after a different previous term.
        let mut c = SafetyChecker::new();
        c.on_append(1, &[ent(1, 1, b"a"), ent(2, 3, b"b")]).unwrap();
        assert!(c.on_append(2, &[ent(1, 2, b"z"), ent(2, 3, b"b")]).is_err());
    }

    #[test]
    fn commit_and_apply_safety() {
        let mut c = SafetyChecker::new();
        c.on_append(1, &[ent(1, 1, b"a"), ent(2, 1, b"b")]).unwrap();
        c.on_append(2, &[ent(1, 1, b"a"), ent(2, 2, b"c")]).unwrap();
        c.on_commit(1, 2, 1, true).unwrap();
        assert_eq!(c.max_committed(), 2);
        assert!(matches!(
            c.on_commit(2, 2, 1, true),
            Err(Violation::CommitMismatch { node: 2, index: 2 })
        ));
        assert!(matches!(
            c.on_commit(1, 1, 1, true),
            Err(Violation::CommitRegressed { from: 2, to: 1, .. })
        ));
        c.on_apply(1, &ent(1, 1, b"a")).unwrap();
        assert!(matches!(
            c.on_apply(3, &ent(1, 1, b"a")),
            Err(Violation::AppliedUncommitted { .. })
        ));
        c.on_restart(2, ShadowLog::default(), 0);
        c.on_append(2, &[ent(1, 1, b"a"), ent(2, 2, b"c")]).unwrap();
        c.on_commit(2, 1, 1, true).unwrap();
        assert!(c.on_apply(2, &ent(2, 2, b"c")).is_err());
    }

    #[test]
    fn leader_completeness() {
        let mut c = SafetyChecker::new();
        c.on_append(1, &[ent(1, 1, b"a"), ent(2, 1, b"b")]).unwrap();
        c.on_commit(1, 2, 1, true).unwrap();
        // A node elected in term 2 with only entry 1 lacks committed entry 2.
        c.on_append(3, &[ent(1, 1, b"a")]).unwrap();
        assert!(matches!(
            c.on_leader(3, 2),
            Err(Violation::LeaderIncomplete { index: 2, .. })
        ));
        // A complete one is fine; a commit learned later is checked against it too.
        let mut c = SafetyChecker::new();
        c.on_append(1, &[ent(1, 1, b"a"), ent(2, 1, b"b")]).unwrap();
        c.on_append(2, &[ent(1, 1, b"a")]).unwrap();
        c.on_leader(2, 2).unwrap();
        assert!(matches!(
            c.on_commit(1, 2, 1, true),
            Err(Violation::LeaderIncomplete {
                node: 2,
                index: 2,
                ..
            })
        ));
    }

    #[test]
    fn snapshots_cover_the_prefix() {
        let mut c = SafetyChecker::new();
        c.on_snapshot(2, 10, 3).unwrap();
        assert_eq!(c.max_committed(), 10);
        c.on_append(2, &[ent(11, 3, b"k")]).unwrap();
        c.on_commit(2, 11, 1, true).unwrap();
        c.on_leader(2, 4).unwrap();
        assert_eq!(c.shadow(2).unwrap().last(), 11);
    }
}
