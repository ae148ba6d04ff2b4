//! Point-in-time restore from an object store: the newest snapshot chain at or below the
//! target index, then the archived WAL entries after it up to the target.
//!
//! The algorithm: (1) the target index `N` is given (`--index`), the highest committed
//! index any member archived (`--latest`), or the last committed index whose entry was
//! written at or before a time (`--time`, from the WAL's time records of the member whose
//! archive reaches furthest); (2) the snapshot `S` with the highest index at or below `N`;
//! (3) a member whose archived segments, replayed in order from the last one started at or
//! before `S.index + 1`, hold every entry of `S.index + 1 ..= N` with a commit index of at
//! least `N` (committed entries are the same on every member, so any member's archive will
//! do); (4) the chain restored into the store and those entries applied through the state
//! machine, as the runtime would have.

use crate::node::NodeError;
use raft_core::{EntryKind, Membership, confchange};
use raft_kv::KvStore;
use raft_kv::address_book::AddressBook;
use raft_kv::machine::KvMachine;
use raft_log::archive::ArchiveReplay;
use raft_runtime::{Committed, Payload, StateMachine};
use raft_snapshot::{ArchivedSegment, ObjectStore, RestorePoint};
use std::collections::BTreeMap;

/// How far an archive restore goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveTarget {
    /// Exactly this log index.
    Index(u64),
    /// The last committed entry written at or before this time (unix milliseconds).
    Time(u64),
    /// The highest committed index in the archive.
    Latest,
}

fn fail(msg: impl Into<String>) -> NodeError {
    NodeError::Io {
        what: msg.into(),
        source: std::io::Error::other("restore refused"),
    }
}

/// Each member's archived segments: closed ones by sequence number, and the partial tail
/// when it is newer than every closed one.
fn by_node(all: Vec<ArchivedSegment>) -> BTreeMap<u64, Vec<ArchivedSegment>> {
    let mut out: BTreeMap<u64, Vec<ArchivedSegment>> = BTreeMap::new();
    for s in all {
        out.entry(s.node).or_default().push(s);
    }
    for segs in out.values_mut() {
        let last_closed = segs.iter().filter(|s| !s.partial).map(|s| s.seq).max();
        segs.retain(|s| !s.partial || last_closed.is_none_or(|c| s.seq > c));
        segs.sort_by_key(|s| s.seq);
    }
    out
}

/// Replays `segs` from position `from` while they are consecutive, until `done` says so.
fn replay(
    obj: &dyn ObjectStore,
    segs: &[ArchivedSegment],
    from: usize,
    done: impl Fn(&ArchiveReplay) -> bool,
) -> Result<ArchiveReplay, NodeError> {
    let mut r = ArchiveReplay::new();
    for s in &segs[from..] {
        if r.last_seq().is_some_and(|l| s.seq != l + 1) {
            break; // a gap: nothing after it continues this replay
        }
        let data = raft_snapshot::download_segment(obj, s)?;
        r.push(&data)?;
        if done(&r) {
            break;
        }
    }
    Ok(r)
}

/// The archive's highest commit index per member, highest first.
fn members_by_reach(nodes: &BTreeMap<u64, Vec<ArchivedSegment>>) -> Vec<u64> {
    let mut v: Vec<(u64, u64)> = nodes
        .iter()
        .map(|(n, segs)| (segs.iter().map(|s| s.meta.commit).max().unwrap_or(0), *n))
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v.into_iter().map(|(_, n)| n).collect()
}

/// The target index `target` names.
fn target_index(
    obj: &dyn ObjectStore,
    nodes: &BTreeMap<u64, Vec<ArchivedSegment>>,
    target: ArchiveTarget,
) -> Result<u64, NodeError> {
    let best = members_by_reach(nodes);
    match target {
        ArchiveTarget::Index(n) => Ok(n),
        ArchiveTarget::Latest => Ok(best
            .first()
            .and_then(|n| nodes[n].iter().map(|s| s.meta.commit).max())
            .unwrap_or(0)),
        ArchiveTarget::Time(t) => {
            let node = best
                .first()
                .ok_or_else(|| fail("the object store holds no WAL archive"))?;
            let segs = &nodes[node];
            // The last segment whose first time is at or before `t`, the one before it
            // (history it may rewrite) and the one after (commits that came later).
            let k = segs
                .iter()
                .rposition(|s| s.meta.times.is_none_or(|(lo, _)| lo <= t))
                .ok_or_else(|| fail(format!("the WAL archive starts after {t} ms")))?;
            let from = k.saturating_sub(1);
            let r = replay(obj, segs, from, |r| r.last_seq() >= Some(segs[k].seq + 1))?;
            let lo = r.range().map_or(0, |(lo, _)| lo);
            r.last_index_at(lo, t).ok_or_else(|| {
                fail(format!(
                    "no committed entry of the archive was written by {t} ms"
                ))
            })
        }
    }
}

/// What [`plan`] found: the chain to restore and the entries to apply after it.
pub struct ArchivePlan {
    /// The snapshot chain's tip; `None`: no snapshot at or below the target, the archive
    /// is replayed from the start of the log (index 1).
    pub snapshot: Option<raft_snapshot::SnapshotId>,
    /// The chain tip's index.
    pub snapshot_index: u64,
    /// The member whose archive gives the entries.
    pub node: u64,
    /// Entries `snapshot_index + 1 ..= target`.
    pub entries: Vec<raft_core::Entry>,
    /// The index restored to.
    pub target: u64,
}

/// Decides what a restore to `target` reads (downloading and checking the segments).
pub fn plan(obj: &dyn ObjectStore, target: ArchiveTarget) -> Result<ArchivePlan, NodeError> {
    let nodes = by_node(raft_snapshot::list_wal_archive(obj)?);
    let n = target_index(obj, &nodes, target)?;
    // The newest chain at or below `n`; none (a young cluster): the log from its start.
    let (tip_id, tip_index) =
        match raft_snapshot::find_in_object_store(obj, RestorePoint::AtOrBelowIndex(n)) {
            Ok(chain) => (Some(chain.tip().id), chain.tip().index),
            Err(raft_snapshot::Error::Invalid(_)) => (None, 0),
            Err(e) => return Err(e.into()),
        };
    let tip_name = tip_id.map_or_else(|| "none".to_string(), |id| id.to_string());
    if tip_index == n {
        return Ok(ArchivePlan {
            snapshot: tip_id,
            snapshot_index: tip_index,
            node: 0,
            entries: Vec::new(),
            target: n,
        });
    }
    let mut why = Vec::new();
    for node in members_by_reach(&nodes) {
        let segs = &nodes[&node];
        let Some(start) = segs
            .iter()
            .rposition(|s| s.meta.first_index <= tip_index + 1)
        else {
            why.push(format!(
                "member {node}'s archive starts after index {}",
                tip_index + 1
            ));
            continue;
        };
        let r = replay(obj, segs, start, |r| {
            r.commit() >= n && r.range().is_some_and(|(_, hi)| hi >= n)
        })?;
        match r.committed(tip_index + 1, n) {
            Ok(entries) => {
                return Ok(ArchivePlan {
                    snapshot: tip_id,
                    snapshot_index: tip_index,
                    node,
                    entries,
                    target: n,
                });
            }
            Err(e) => why.push(format!("member {node}: {e}")),
        }
    }
    Err(fail(format!(
        "no archive covers indexes {}..={n} after snapshot {tip_name} ({})",
        tip_index + 1,
        if why.is_empty() {
            "no WAL archive".to_string()
        } else {
            why.join("; ")
        }
    )))
}

/// Applies `entries` to `kv` as the runtime would (configuration changes tracked from
/// `membership`, the chain tip's).
pub fn apply_entries(
    kv: &KvStore,
    mut membership: Membership,
    entries: &[raft_core::Entry],
) -> Result<(), NodeError> {
    let mut machine = KvMachine::new(kv.clone(), AddressBook::new(BTreeMap::new()), None);
    for chunk in entries.chunks(1024) {
        let batch: Vec<Committed> = chunk
            .iter()
            .map(|e| {
                let payload = match e.kind {
                    EntryKind::ConfChange => match confchange::decode(&e.data) {
                        Ok(change) => {
                            let next = confchange::apply(&membership, &change).ok();
                            if let Some(m) = &next {
                                membership = m.clone();
                            }
                            Payload::ConfChange {
                                change,
                                membership: next,
                            }
                        }
                        Err(_) => Payload::Empty,
                    },
                    EntryKind::Normal if e.data.is_empty() => Payload::Empty,
                    EntryKind::Normal => {
                        Payload::Command(raft_runtime::envelope::unwrap(&e.data).1)
                    }
                };
                Committed {
                    index: e.index,
                    term: e.term,
                    payload,
                }
            })
            .collect();
        machine
            .apply(&batch)
            .map_err(|e| fail(format!("applying archived entries: {e}")))?;
    }
    Ok(())
}
