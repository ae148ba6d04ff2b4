//! Retention of uploaded snapshots: which restore points to keep in the object store, and
//! deleting everything no kept restore point needs (never a parent of a kept delta).

use crate::error::Result;
use crate::info::{SnapshotId, SnapshotInfo, SnapshotKind};
use crate::object_store::{ObjectStore, blob_file, blob_meta};
use crate::pitr::Catalog;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Which restore points the object store keeps. Every uploaded snapshot is a restore point
/// (its chain restores the state at its index). A restore point is kept when any rule keeps
/// it; with no rule set everything is kept, and the newest restore point is always kept.
/// Keeping a restore point keeps its whole chain (its base and every delta before it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Keep every restore point created within this long before now.
    #[serde(with = "humantime_serde")]
    pub keep_for: Option<Duration>,
    /// Keep the restore points of the newest this many base (full) snapshots' chains.
    pub keep_bases: Option<usize>,
}

impl RetentionPolicy {
    /// True when the policy would delete something at some point.
    pub fn is_active(&self) -> bool {
        self.keep_for.is_some() || self.keep_bases.is_some()
    }
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
}

fn oldest_first(v: &mut [SnapshotInfo]) {
    v.sort_by_key(|s| (s.index, s.created_ms, s.id));
}

/// Decides what `policy` keeps of the snapshots in `obj` at `now_ms` (unix milliseconds).
/// Reads only; nothing is deleted.
pub fn plan_retention(
    obj: &dyn ObjectStore,
    policy: &RetentionPolicy,
    now_ms: u64,
) -> Result<RetentionPlan> {
    let catalog = Catalog::read(obj)?;
    Ok(plan(&catalog, policy, now_ms))
}

pub(crate) fn plan(catalog: &Catalog, policy: &RetentionPolicy, now_ms: u64) -> RetentionPlan {
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
    let mut points: Vec<&SnapshotInfo> = if policy.is_active() {
        let mut bases: Vec<&SnapshotInfo> = all
            .iter()
            .filter(|s| s.kind == SnapshotKind::Full)
            .collect();
        bases.sort_by_key(|s| std::cmp::Reverse((s.index, s.created_ms)));
        let kept_bases: HashSet<SnapshotId> = bases
            .iter()
            .take(policy.keep_bases.unwrap_or(0))
            .map(|s| s.id)
            .collect();
        let since = policy
            .keep_for
            .map(|d| now_ms.saturating_sub(d.as_millis() as u64));
        all.iter()
            .filter(|s| {
                since.is_some_and(|t| s.created_ms >= t)
                    || base_of(s).is_some_and(|b| kept_bases.contains(&b))
            })
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
    RetentionPlan {
        keep,
        delete,
        delete_incomplete,
        incomplete,
    }
}

/// Deletes what `plan` says: each snapshot's metadata (so it stops being a restore point at
/// once), then its file; then the old incomplete files. Returns how many snapshots were
/// deleted. Safe to repeat after a failure (deleting an absent blob is not an error).
pub fn apply_retention(obj: &dyn ObjectStore, plan: &RetentionPlan) -> Result<usize> {
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
    Ok(plan.delete.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::MembershipRecord;

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

    #[test]
    fn age_keeps_the_parents_of_kept_deltas() {
        // Four days back from day 10 reaches day 6: only base 4 (day 8) and delta 5 stay.
        let p = RetentionPolicy {
            keep_for: Some(Duration::from_millis(4 * DAY)),
            keep_bases: None,
        };
        let decided = plan(&catalog(), &p, 10 * DAY);
        assert_eq!(ids(&decided.keep), vec![4, 5]);
        assert_eq!(ids(&decided.delete), vec![1, 2, 3]);
        // Six days back: delta 3 (day 5) is a restore point, so 2 and base 1 stay with it.
        let p = RetentionPolicy {
            keep_for: Some(Duration::from_millis(6 * DAY)),
            keep_bases: None,
        };
        let decided = plan(&catalog(), &p, 10 * DAY);
        assert_eq!(ids(&decided.keep), vec![1, 2, 3, 4, 5]);
        assert!(decided.delete.is_empty());
    }

    #[test]
    fn base_count_and_the_newest_point_and_incomplete_files() {
        let p = RetentionPolicy {
            keep_for: None,
            keep_bases: Some(1),
        };
        let decided = plan(&catalog(), &p, 10 * DAY);
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
        assert_eq!(ids(&plan(&catalog(), &p, 100 * DAY).keep), vec![4, 5]);
        // No rule: everything stays, incomplete files too.
        let decided = plan(&catalog(), &RetentionPolicy::default(), 100 * DAY);
        assert_eq!(decided.keep.len(), 5);
        assert!(decided.delete.is_empty() && decided.delete_incomplete.is_empty());
    }
}
