//! Property test: random sequences of append / overwrite / truncate-suffix / compact-prefix /
//! install-snapshot / hard-state / reopen against a plain in-memory model of the log.

use bytes::Bytes;
use proptest::prelude::*;
use raft_core::{Entry, HardState, Membership, SnapshotMeta};
use raft_log::fs::{CrashMode, MemFs};
use raft_log::{Settings, Wal};
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` entries of `len` bytes after the last one.
    Append { n: u64, len: usize },
    /// A new leader (next term) overwrites from `back` entries before the end.
    Overwrite { back: u64, n: u64 },
    /// Truncate the last `back` entries.
    Truncate { back: u64 },
    /// Compact a fraction (in 1/8) of the log.
    Compact { eighths: u64 },
    /// Replace the log with a snapshot `ahead` entries past its end.
    Install { ahead: u64 },
    /// Persist a hard state.
    HardState { commit_back: u64 },
    /// Persist the membership in force.
    Membership { voters: u64 },
    /// Close and reopen (after a clean shutdown or a crash losing nothing acknowledged).
    Reopen { crash: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..12u64, 0..300usize).prop_map(|(n, len)| Op::Append { n, len }),
        2 => (0..10u64, 1..6u64).prop_map(|(back, n)| Op::Overwrite { back, n }),
        1 => (0..8u64).prop_map(|back| Op::Truncate { back }),
        2 => (0..8u64).prop_map(|eighths| Op::Compact { eighths }),
        1 => (0..5u64).prop_map(|ahead| Op::Install { ahead }),
        1 => (0..5u64).prop_map(|commit_back| Op::HardState { commit_back }),
        1 => (1..6u64).prop_map(|voters| Op::Membership { voters }),
        2 => any::<bool>().prop_map(|crash| Op::Reopen { crash }),
    ]
}

/// The model: a snapshot mark, entries after it, a hard state.
struct Model {
    snap: SnapshotMeta,
    entries: Vec<Entry>,
    hs: HardState,
    membership: Membership,
    term: u64,
    salt: u8,
}

impl Model {
    fn last(&self) -> u64 {
        self.snap.index + self.entries.len() as u64
    }
    fn term_at(&self, i: u64) -> u64 {
        if i == self.snap.index {
            self.snap.term
        } else {
            self.entries[(i - self.snap.index - 1) as usize].term
        }
    }
    fn make(&mut self, index: u64, len: usize) -> Entry {
        self.salt = self.salt.wrapping_add(1);
        Entry {
            index,
            term: self.term,
            data: Bytes::from(vec![self.salt; len]),
            ..Entry::default()
        }
    }
}

fn settings() -> Settings {
    Settings {
        segment_size: 4096,
        cache_bytes: 1500,
        ..Settings::default()
    }
}

fn check(wal: &Wal, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(wal.first_index(), m.snap.index + 1);
    prop_assert_eq!(wal.last_index(), m.last());
    prop_assert_eq!(wal.snapshot(), m.snap.clone());
    prop_assert_eq!(wal.hard_state(), m.hs);
    prop_assert_eq!(wal.membership(), m.membership.clone());
    prop_assert_eq!(wal.term(m.snap.index).unwrap(), m.snap.term);
    let got = wal.entries(m.snap.index + 1, m.last() + 1, None).unwrap();
    prop_assert_eq!(&got, &m.entries);
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut fs = MemFs::new();
    let mut wal = Wal::open_with(Arc::new(fs.clone()), "/wal", settings()).unwrap();
    let boot = Membership::with_voters([1, 2, 3]);
    wal.bootstrap(boot.clone()).unwrap().wait().unwrap();
    let mut m = Model {
        snap: SnapshotMeta {
            membership: boot.clone(),
            ..SnapshotMeta::default()
        },
        entries: Vec::new(),
        hs: HardState::default(),
        membership: boot,
        term: 1,
        salt: 0,
    };
    for op in ops {
        match op {
            Op::Append { n, len } => {
                let start = m.last() + 1;
                let new: Vec<Entry> = (start..start + n).map(|i| m.make(i, len)).collect();
                m.entries.extend(new.iter().cloned());
                wal.append(new).unwrap().wait().unwrap();
            }
            Op::Overwrite { back, n } => {
                let from = m.last().saturating_sub(back).max(m.snap.index + 1);
                m.term += 1;
                m.entries.truncate((from - m.snap.index - 1) as usize);
                let new: Vec<Entry> = (from..from + n).map(|i| m.make(i, 50)).collect();
                m.entries.extend(new.iter().cloned());
                wal.append(new).unwrap().wait().unwrap();
            }
            Op::Truncate { back } => {
                let from = (m.last() + 1).saturating_sub(back).max(m.snap.index + 1);
                m.entries.truncate((from - m.snap.index - 1) as usize);
                wal.truncate_suffix(from).unwrap().wait().unwrap();
            }
            Op::Compact { eighths } => {
                let upto = m.snap.index + m.entries.len() as u64 * eighths / 8;
                if upto > m.snap.index {
                    let meta = SnapshotMeta {
                        index: upto,
                        term: m.term_at(upto),
                        membership: Membership::with_voters([1, upto]),
                    };
                    m.entries.drain(..(upto - m.snap.index) as usize);
                    m.snap = meta.clone();
                    wal.compact_prefix(meta).unwrap().wait().unwrap();
                }
            }
            Op::Install { ahead } => {
                m.term += 1;
                let meta = SnapshotMeta {
                    index: m.last() + ahead,
                    term: m.term,
                    membership: Membership::with_voters([2]),
                };
                m.entries.clear();
                m.snap = meta.clone();
                m.membership = meta.membership.clone();
                wal.install_snapshot(meta).unwrap().wait().unwrap();
            }
            Op::HardState { commit_back } => {
                m.hs = HardState {
                    term: m.term,
                    vote: Some(m.term % 3 + 1),
                    commit: m.last().saturating_sub(commit_back),
                };
                wal.save_hard_state(m.hs).unwrap().wait().unwrap();
            }
            Op::Membership { voters } => {
                m.membership = Membership::with_voters(1..=voters);
                wal.set_membership(m.membership.clone())
                    .unwrap()
                    .wait()
                    .unwrap();
            }
            Op::Reopen { crash } => {
                if crash {
                    let img = fs.crash_image(CrashMode::GarbageTail, m.last());
                    drop(wal);
                    fs = img;
                } else {
                    drop(wal);
                }
                wal = Wal::open_with(Arc::new(fs.clone()), "/wal", settings()).unwrap();
            }
        }
        check(&wal, &m)?;
    }
    drop(wal);
    let wal = Wal::open_with(Arc::new(fs), "/wal", settings()).unwrap();
    check(&wal, &m)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
