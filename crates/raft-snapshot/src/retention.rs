//! Retention of what the object store holds: which restore points to keep, and deleting
//! everything no kept restore point needs: snapshots (never a parent of a kept delta) and
//! archived WAL segments (never one a point-in-time restore after a kept snapshot reads).

use crate::error::Result;
use crate::info::{SnapshotId, SnapshotInfo, SnapshotKind};
use crate::object_store::{ObjectStore, blob_file, blob_meta};
use crate::pitr::Catalog;
use crate::wal_archive::{ArchivedSegment, list_wal_archive};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Which restore points the object store keeps. Every uploaded snapshot is a restore point
/// (its chain restores the state at its index), and so is every moment after it that the
/// archived WAL reaches (a point-in-time restore: the newest snapshot at or before the
/// target, then the archived entries up to it). A restore point is kept when any rule keeps
/// it; with no rule set everything is kept, and the newest snapshot is always kept.
/// Keeping a snapshot keeps its whole chain (its base and every delta before it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Keep every moment of this long before now restorable: every snapshot created within
    /// it, and the newest one created at or before its start (a restore to a moment early
    /// in the window starts from that one).
    #[serde(with = "humantime_serde")]
    pub keep_for: Option<Duration>,
    /// Keep the restore points of the chains of the newest this many base (full) snapshot
    /// indexes (every member uploads its own copy of a base: copies at one index count
    /// once).
    pub keep_bases: Option<usize>,
}

impl RetentionPolicy {
    /// True when the policy would delete something at some point.
    pub fn is_active(&self) -> bool {
        self.keep_for.is_some() || self.keep_bases.is_some()
    }
}

/// Why [`plan_retention`] deletes an archived WAL segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentDeletion {
    /// Every entry in it is below the WAL floor: a restore after any kept snapshot starts
    /// from a later segment of that member.
    BelowFloor,
    /// A partial (tail) object whose segment the member archived whole since, or that an
    /// archived closed segment of that member follows: nothing reads it.
    SupersededPartial,
}

/// What [`plan_retention`] decided; a dry run prints it, [`apply_retention`] carries it out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Snapshots that stay: the kept restore points and every ancestor they need, oldest
    /// first.
    pub keep: Vec<SnapshotInfo>,
    /// Snapshots to delete (metadata first, then the file), oldest first.
    pub delete: Vec<SnapshotInfo>,
    /// Files without metadata (uploads cut short) older than every kept base: deleted too.
    pub delete_incomplete: Vec<SnapshotId>,
    /// Files without metadata that may still be uploading: left alone.
    pub incomplete: Vec<SnapshotId>,
    /// The lowest log index a kept restore point starts from: the index of the oldest
    /// snapshot kept. Each member's archived segments before the one that wrote this entry
    /// are deleted.
    /// `None`: no segment is deleted for its range (no policy; no snapshot; or `keep_for`
    /// reaches back before every snapshot, where a restore replays the archive from index
    /// 1).
    pub wal_floor: Option<u64>,
    /// Archived WAL segments to delete (metadata first, then the data), by member, oldest
    /// first, each with the reason.
    pub delete_segments: Vec<(ArchivedSegment, SegmentDeletion)>,
    /// Archived WAL segments that stay.
    pub keep_segments: usize,
}

/// What [`apply_retention`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionDeleted {
    /// Snapshots.
    pub snapshots: usize,
    /// Archived WAL segments (closed and partial objects).
    pub segments: usize,
}

fn oldest_first(v: &mut [SnapshotInfo]) {
    v.sort_by_key(|s| (s.index, s.created_ms, s.id));
}

/// Decides what `policy` keeps of the snapshots and archived WAL segments in `obj` at
/// `now_ms` (unix milliseconds). Reads only; nothing is deleted.
pub fn plan_retention(
    obj: &dyn ObjectStore,
    policy: &RetentionPolicy,
    now_ms: u64,
) -> Result<RetentionPlan> {
    // Snapshots first: a snapshot uploaded between the two listings only adds restore
    // points above the floor, so the segments planned for deletion stay unneeded.
    let catalog = Catalog::read(obj)?;
    let wal = list_wal_archive(obj)?;
    Ok(plan(&catalog, &wal, policy, now_ms))
}

pub(crate) fn plan(
    catalog: &Catalog,
    wal: &[ArchivedSegment],
    policy: &RetentionPolicy,
    now_ms: u64,
) -> RetentionPlan {
    let all = &catalog.complete;
    let by_id: HashMap<SnapshotId, &SnapshotInfo> = all.iter().map(|s| (s.id, s)).collect();
    let base_of = |s: &SnapshotInfo| -> Option<SnapshotId> {
        let mut cur = s;
        for _ in 0..=all.len() {
            match cur.parent {
                None => return Some(cur.id),
                Some(p) => cur = by_id.get(&p)?,
            }
        }
        None
    };
    let since = policy
        .keep_for
        .map(|d| now_ms.saturating_sub(d.as_millis() as u64));
    // The snapshot a restore to the window's first moment starts from.
    let anchor = since.and_then(|t| {
        all.iter()
            .filter(|s| s.created_ms <= t)
            .max_by_key(|s| (s.index, s.created_ms))
    });
    let mut points: Vec<&SnapshotInfo> = if policy.is_active() {
        // Every member uploads its own snapshots: bases at one index hold the same state
        // and count once.
        let mut base_indexes: Vec<u64> = all
            .iter()
            .filter(|s| s.kind == SnapshotKind::Full)
            .map(|s| s.index)
            .collect();
        base_indexes.sort_unstable_by(|a, b| b.cmp(a));
        base_indexes.dedup();
        base_indexes.truncate(policy.keep_bases.unwrap_or(0));
        let kept_bases: HashSet<SnapshotId> = all
            .iter()
            .filter(|s| s.kind == SnapshotKind::Full && base_indexes.contains(&s.index))
            .map(|s| s.id)
            .collect();
        all.iter()
            .filter(|s| {
                since.is_some_and(|t| s.created_ms >= t)
                    || base_of(s).is_some_and(|b| kept_bases.contains(&b))
            })
            .chain(anchor)
            .collect()
    } else {
        all.iter().collect()
    };
    // The newest restore point always stays (a policy never empties the store).
    if let Some(newest) = all.iter().max_by_key(|s| (s.index, s.created_ms)) {
        points.push(newest);
    }
    let mut keep_ids: HashSet<SnapshotId> = HashSet::new();
    for p in points {
        let mut cur = Some(p.id);
        while let Some(id) = cur {
            if !keep_ids.insert(id) {
                break;
            }
            cur = by_id.get(&id).and_then(|s| s.parent);
        }
    }
    let (mut keep, mut delete): (Vec<SnapshotInfo>, Vec<SnapshotInfo>) =
        all.iter().cloned().partition(|s| keep_ids.contains(&s.id));
    oldest_first(&mut keep);
    oldest_first(&mut delete);
    let floor = keep
        .iter()
        .filter(|s| s.kind == SnapshotKind::Full)
        .map(|s| s.index)
        .min();
    let (delete_incomplete, incomplete) = catalog
        .incomplete
        .iter()
        .partition(|id| policy.is_active() && floor.is_some_and(|f| id.index() < f));
    // The WAL floor: every kept snapshot is a restore point, and so is every moment after
    // it, so the archive is needed from the oldest one up. A window that starts before
    // every snapshot needs the archive from the start of the log.
    let window_before_every_snapshot = since.is_some() && anchor.is_none();
    let wal_floor = (policy.is_active() && !window_before_every_snapshot)
        .then(|| keep.iter().map(|s| s.index).min())
        .flatten();
    let (delete_segments, keep_segments) = if policy.is_active() {
        plan_segments(wal, wal_floor)
    } else {
        (Vec::new(), wal.len())
    };
    RetentionPlan {
        keep,
        delete,
        delete_incomplete,
        incomplete,
        wal_floor,
        delete_segments,
        keep_segments,
    }
}

/// The archived segments no restore at or after the floor reads, per member: partial
/// objects that a closed segment of the member supersedes, and every segment before the
/// last one started at or before `floor`, the one that wrote entry `floor`. A restore after
/// a snapshot at index `s >= floor` replays from the last segment started at or before
/// `s + 1`, that one or a later one, and every entry before it is below `floor`. The
/// segment that wrote entry `floor` stays even when the next one starts at `floor + 1`: its
/// time record is what a restore to a time just after the oldest kept snapshot (before the
/// next write) resolves to. Returns those and how many stay.
fn plan_segments(
    wal: &[ArchivedSegment],
    floor: Option<u64>,
) -> (Vec<(ArchivedSegment, SegmentDeletion)>, usize) {
    let mut members: BTreeMap<u64, Vec<&ArchivedSegment>> = BTreeMap::new();
    for s in wal {
        members.entry(s.node).or_default().push(s);
    }
    let mut out = Vec::new();
    let mut kept = 0;
    for segs in members.values_mut() {
        segs.sort_by_key(|s| (s.seq, s.partial));
        let last_closed = segs.iter().filter(|s| !s.partial).map(|s| s.seq).max();
        // What a restore reads: closed segments and a partial newer than all of them.
        let (live, superseded): (Vec<&ArchivedSegment>, Vec<&ArchivedSegment>) = segs
            .iter()
            .partition(|s| !s.partial || last_closed.is_none_or(|c| s.seq > c));
        let start = floor
            .and_then(|f| live.iter().rposition(|s| s.meta.first_index <= f))
            .unwrap_or(0);
        let mut deleted: Vec<(ArchivedSegment, SegmentDeletion)> = live[..start]
            .iter()
            .map(|s| ((*s).clone(), SegmentDeletion::BelowFloor))
            .chain(
                superseded
                    .iter()
                    .map(|s| ((*s).clone(), SegmentDeletion::SupersededPartial)),
            )
            .collect();
        deleted.sort_by_key(|(s, _)| (s.seq, s.partial));
        kept += live.len() - start;
        out.extend(deleted);
    }
    (out, kept)
}

/// Deletes what `plan` says: each snapshot's metadata (so it stops being a restore point at
/// once), then its file; then the old incomplete files; then the archived WAL segments,
/// oldest first (metadata, then data: what stays is always a run a restore can read).
/// Safe to repeat after a failure (deleting an absent blob is not an error).
pub fn apply_retention(obj: &dyn ObjectStore, plan: &RetentionPlan) -> Result<RetentionDeleted> {
    // Newest first: a delta never outlives the removal of its parent's metadata.
    for s in plan.delete.iter().rev() {
        obj.delete(&blob_meta(s.id))?;
        obj.delete(&blob_file(s.id))?;
        metrics::counter!(raft_metrics::snapshot::RETENTION_DELETED).increment(1);
        tracing::info!(id = %s.id, index = s.index, "snapshot deleted by the retention policy");
    }
    for id in &plan.delete_incomplete {
        obj.delete(&blob_file(*id))?;
    }
    for (seg, why) in &plan.delete_segments {
        obj.delete(&seg.meta_name())?;
        obj.delete(&seg.data_name())?;
        tracing::info!(
            member = seg.node,
            seq = seg.seq,
            first_index = seg.meta.first_index,
            entries = ?seg.meta.entries,
            partial = seg.partial,
            reason = ?why,
            wal_floor = ?plan.wal_floor,
            "archived WAL segment deleted by the retention policy"
        );
    }
    Ok(RetentionDeleted {
        snapshots: plan.delete.len(),
        segments: plan.delete_segments.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::MembershipRecord;
    use crate::wal_archive::SegmentMeta;

    const DAY: u64 = 86_400_000;

    fn info(id: u128, parent: Option<u128>, index: u64, created_ms: u64) -> SnapshotInfo {
        SnapshotInfo {
            id: SnapshotId(id),
            parent: parent.map(SnapshotId),
            kind: if parent.is_some() {
                SnapshotKind::Delta
            } else {
                SnapshotKind::Full
            },
            index,
            term: 1,
            membership: MembershipRecord::default(),
            created_ms,
            size: 1,
            checksum: 0,
            puts: 0,
            deletes: 0,
        }
    }

    fn ids(v: &[SnapshotInfo]) -> Vec<u128> {
        v.iter().map(|s| s.id.0).collect()
    }

    fn days(d: f64) -> Option<Duration> {
        Some(Duration::from_millis((d * DAY as f64) as u64))
    }

    /// An archived segment of member `node` started at `first` holding `lo..=hi`.
    fn seg(node: u64, seq: u64, first: u64, lo: u64, hi: u64, partial: bool) -> ArchivedSegment {
        ArchivedSegment {
            node,
            seq,
            meta: SegmentMeta {
                first_index: first,
                entries: Some((lo, hi)),
                commit: hi,
                times: None,
            },
            bytes: 1,
            crc32c: 0,
            partial,
            uploaded_ms: 0,
        }
    }

    /// `(node, seq, partial)` of the segments to delete.
    fn doomed(p: &RetentionPlan) -> Vec<(u64, u64, bool)> {
        p.delete_segments
            .iter()
            .map(|(s, _)| (s.node, s.seq, s.partial))
            .collect()
    }

    /// Two chains: base 1 (day 0) with deltas 2 (day 1), 3 (day 5); base 4 (day 8) with
    /// delta 5 (day 9).
    fn catalog() -> Catalog {
        Catalog {
            complete: vec![
                info(1, None, 10, 0),
                info(2, Some(1), 20, DAY),
                info(3, Some(2), 30, 5 * DAY),
                info(4, None, 40, 8 * DAY),
                info(5, Some(4), 50, 9 * DAY),
            ],
            incomplete: vec![SnapshotId::new(5, 1), SnapshotId::new(60, 1)],
        }
    }

    /// Member 1: segments of 15 entries (0: 1..=15, 1: 16..=30, 2: 31..=45, 3: 46..=60),
    /// a stale partial of 1 and the tail 4 as a partial. Member 2: 10: 1..=20, 11:
    /// 21..=40, 12: 41..=60.
    fn wal() -> Vec<ArchivedSegment> {
        vec![
            seg(1, 0, 1, 1, 15, false),
            seg(1, 1, 16, 16, 30, false),
            seg(1, 1, 16, 16, 22, true),
            seg(1, 2, 31, 31, 45, false),
            seg(1, 3, 46, 46, 60, false),
            seg(1, 4, 61, 61, 63, true),
            seg(2, 10, 1, 1, 20, false),
            seg(2, 11, 21, 21, 40, false),
            seg(2, 12, 41, 41, 60, false),
        ]
    }

    #[test]
    fn age_keeps_the_snapshot_the_window_starts_from_and_the_parents_of_kept_deltas() {
        // 1.5 days back from day 10 reaches day 8.5: base 4 (day 8) is where a restore to
        // the window's first moment starts, delta 5 is in the window; chain 1 goes.
        let p = RetentionPolicy {
            keep_for: days(1.5),
            keep_bases: None,
        };
        let decided = plan(&catalog(), &[], &p, 10 * DAY);
        assert_eq!(ids(&decided.keep), vec![4, 5]);
        assert_eq!(ids(&decided.delete), vec![1, 2, 3]);
        assert_eq!(decided.wal_floor, Some(40));
        // Two days back reaches day 8 exactly: base 4 is in the window, nothing older needed.
        let p = RetentionPolicy {
            keep_for: days(2.0),
            keep_bases: None,
        };
        assert_eq!(ids(&plan(&catalog(), &[], &p, 10 * DAY).keep), vec![4, 5]);
        // Four days back reaches day 6, between delta 3 (day 5) and base 4: a restore to
        // day 6 starts from delta 3, so it stays, and with it 2 and base 1.
        let p = RetentionPolicy {
            keep_for: days(4.0),
            keep_bases: None,
        };
        let decided = plan(&catalog(), &[], &p, 10 * DAY);
        assert_eq!(ids(&decided.keep), vec![1, 2, 3, 4, 5]);
        assert!(decided.delete.is_empty());
        assert_eq!(decided.wal_floor, Some(10));
    }

    #[test]
    fn base_count_and_the_newest_point_and_incomplete_files() {
        let p = RetentionPolicy {
            keep_for: None,
            keep_bases: Some(1),
        };
        let decided = plan(&catalog(), &[], &p, 10 * DAY);
        assert_eq!(ids(&decided.keep), vec![4, 5]);
        assert_eq!(ids(&decided.delete), vec![1, 2, 3]);
        // The file at index 5 is older than every kept base; the one at 60 may be uploading.
        assert_eq!(decided.delete_incomplete, vec![SnapshotId::new(5, 1)]);
        assert_eq!(decided.incomplete, vec![SnapshotId::new(60, 1)]);
        // A window that keeps nothing still keeps the newest restore point and its chain.
        let p = RetentionPolicy {
            keep_for: Some(Duration::from_millis(1)),
            keep_bases: Some(0),
        };
        assert_eq!(ids(&plan(&catalog(), &[], &p, 100 * DAY).keep), vec![4, 5]);
        // No rule: everything stays, incomplete files too.
        let decided = plan(&catalog(), &[], &RetentionPolicy::default(), 100 * DAY);
        assert_eq!(decided.keep.len(), 5);
        assert!(decided.delete.is_empty() && decided.delete_incomplete.is_empty());
    }

    #[test]
    fn segments_below_the_oldest_kept_snapshot_go_straddling_and_above_stay() {
        // The newest base kept: the oldest kept snapshot is base 4 at index 40.
        let p = RetentionPolicy {
            keep_for: None,
            keep_bases: Some(1),
        };
        let decided = plan(&catalog(), &wal(), &p, 10 * DAY);
        assert_eq!(decided.wal_floor, Some(40));
        // Member 1: 0 and 1 lie below 40 and go, so does the partial object of 1 (segment 1
        // is there whole); 2 straddles 40 (a restore from 40 reads it), 3 and the tail are
        // above. Member 2: 10 goes; 11 ends at 40 exactly (12 starts at 41) and stays: it
        // holds the time entry 40 was written, where a restore to a time just after the
        // kept snapshot, before any later write, resolves.
        assert_eq!(
            doomed(&decided),
            vec![(1, 0, false), (1, 1, false), (1, 1, true), (2, 10, false)]
        );
        let why: Vec<SegmentDeletion> = decided.delete_segments.iter().map(|d| d.1).collect();
        assert_eq!(why[2], SegmentDeletion::SupersededPartial);
        assert!(
            why.iter()
                .enumerate()
                .all(|(k, w)| k == 2 || *w == SegmentDeletion::BelowFloor)
        );
        assert_eq!(decided.keep_segments, 5);
    }

    #[test]
    fn a_window_starting_between_snapshots_keeps_the_segments_after_the_one_before() {
        // Base snapshots only: 30 (day 4), 45 (day 6).
        let fulls = Catalog {
            complete: vec![
                info(1, None, 15, 2 * DAY),
                info(2, None, 30, 4 * DAY),
                info(3, None, 45, 6 * DAY),
            ],
            incomplete: vec![],
        };
        // Five days back from day 10 is day 5, between 30 (day 4) and 45 (day 6): a restore
        // to day 5 starts from 30, so it stays and the archive from 31 on is needed.
        let p = RetentionPolicy {
            keep_for: days(5.0),
            keep_bases: None,
        };
        let decided = plan(&fulls, &wal(), &p, 10 * DAY);
        assert_eq!(ids(&decided.keep), vec![2, 3]);
        assert_eq!(decided.wal_floor, Some(30));
        // Member 1: 0 (1..=15) goes; 1 (16..=30) wrote entry 30 and stays (a restore to day
        // 5 resolves to its time record), 2 onwards too; member 2's 11 holds 21..=40 and
        // stays.
        assert_eq!(
            doomed(&decided),
            vec![(1, 0, false), (1, 1, true), (2, 10, false)]
        );
        // A day later the window starts at day 6, exactly at 45: 30 goes and so do member
        // 1's segments 0 and 1; 2 (31..=45) wrote entry 45 and stays.
        let decided = plan(&fulls, &wal(), &p, 11 * DAY);
        assert_eq!(ids(&decided.keep), vec![3]);
        assert_eq!(decided.wal_floor, Some(45));
        assert_eq!(
            doomed(&decided),
            vec![
                (1, 0, false),
                (1, 1, false),
                (1, 1, true),
                (2, 10, false),
                (2, 11, false)
            ]
        );
        // A window reaching back before every snapshot: a restore there replays the archive
        // from index 1, so no segment goes for its range (only the superseded partial).
        let p = RetentionPolicy {
            keep_for: days(9.0),
            keep_bases: None,
        };
        let decided = plan(&fulls, &wal(), &p, 10 * DAY);
        assert_eq!(decided.keep.len(), 3);
        assert_eq!(decided.wal_floor, None);
        assert_eq!(doomed(&decided), vec![(1, 1, true)]);
    }

    #[test]
    fn bases_uploaded_by_several_members_count_once_per_index() {
        // Members 1 and 2 each uploaded a base at 10 and at 40, member 2 a delta at 50.
        let c = Catalog {
            complete: vec![
                info(1, None, 10, 0),
                info(2, None, 10, 1),
                info(3, None, 40, DAY),
                info(4, None, 40, DAY + 1),
                info(5, Some(4), 50, 2 * DAY),
            ],
            incomplete: vec![],
        };
        let p = |n| RetentionPolicy {
            keep_for: None,
            keep_bases: Some(n),
        };
        let decided = plan(&c, &[], &p(1), 3 * DAY);
        assert_eq!(ids(&decided.keep), vec![3, 4, 5]);
        assert_eq!(decided.wal_floor, Some(40));
        let decided = plan(&c, &[], &p(2), 3 * DAY);
        assert_eq!(ids(&decided.keep), vec![1, 2, 3, 4, 5]);
        assert_eq!(decided.wal_floor, Some(10));
    }

    #[test]
    fn nothing_goes_without_a_policy_or_without_snapshots() {
        let decided = plan(&catalog(), &wal(), &RetentionPolicy::default(), 100 * DAY);
        assert!(decided.delete.is_empty() && decided.delete_segments.is_empty());
        assert_eq!(decided.wal_floor, None);
        assert_eq!(decided.keep_segments, wal().len());
        // A young cluster with no snapshot yet: a restore replays the archive from index 1.
        let p = RetentionPolicy {
            keep_for: None,
            keep_bases: Some(1),
        };
        let decided = plan(&Catalog::default(), &wal(), &p, 100 * DAY);
        assert_eq!(decided.wal_floor, None);
        assert_eq!(doomed(&decided), vec![(1, 1, true)]);
    }

    #[test]
    fn a_tail_partial_can_be_the_segment_a_restore_starts_from() {
        // Member 3 archived 20 (1..=30) whole and its tail 21 (31..=52) as a partial: with
        // the floor at 40 the partial is where a restore from 40 starts, so 20 goes and the
        // partial stays.
        let wal = vec![seg(3, 20, 1, 1, 30, false), seg(3, 21, 31, 31, 52, true)];
        let p = RetentionPolicy {
            keep_for: None,
            keep_bases: Some(1),
        };
        let decided = plan(&catalog(), &wal, &p, 10 * DAY);
        assert_eq!(doomed(&decided), vec![(3, 20, false)]);
        assert_eq!(decided.keep_segments, 1);
    }
}
