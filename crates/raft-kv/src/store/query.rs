//! Reads with etcd's semantics over a [`View`]: `Range` (limit, count, filters, sorting) and
//! the evaluation of txn `Compare`s.

use super::view::View;
use crate::error::{Error, Result};
use crate::layout::KeyRange;
use crate::pb::etcdserverpb::{
    Compare, RangeRequest, RangeResponse, ResponseHeader, compare, range_request,
};
use crate::pb::mvccpb::KeyValue;
use crate::record::Record;
use std::cmp::Ordering;

/// The revision a read of `requested` is served at, as etcd decides it: `<= 0` is the
/// current revision; above the current one is [`Error::FutureRevision`]; below the compact
/// revision is [`Error::Compacted`] (the compact revision itself is still readable).
pub(crate) fn read_revision(requested: i64, current: i64, compact: i64) -> Result<i64> {
    if requested <= 0 {
        Ok(current)
    } else if requested > current {
        Err(Error::FutureRevision)
    } else if requested < compact {
        Err(Error::Compacted)
    } else {
        Ok(requested)
    }
}

/// Serves a `Range` over a view whose revision is `rev` (the header's), reading at `at`
/// (already checked with [`read_revision`]; `at == rev` reads the current state).
/// Refuses it with [`Error::RangeTooLarge`] as soon as the key and value bytes it gathers
/// exceed `max_bytes`, before gathering more.
pub(crate) fn range(
    view: &View<'_>,
    req: &RangeRequest,
    rev: i64,
    at: i64,
    max_bytes: usize,
) -> Result<RangeResponse> {
    use range_request::{SortOrder, SortTarget};
    let keys = KeyRange::new(&req.key, &req.range_end);
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    // As etcd: sorting by anything but the key defaults to ascending; ascending by key is
    // the scan order already.
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    } else if target == SortTarget::Key && order == SortOrder::Ascend {
        order = SortOrder::None;
    }
    // Without sorting or filters only `limit + 1` records are decoded; the count is always
    // the number of keys in the range.
    let fetch = if order != SortOrder::None || filtered || req.limit <= 0 {
        usize::MAX
    } else {
        usize::try_from(req.limit)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    };
    let mut count: i64 = 0;
    let mut kvs: Vec<(Vec<u8>, Record)> = Vec::new();
    let mut bytes = 0usize;
    let at = (at < rev).then_some(at);
    view.scan(&keys, at, |k, found| {
        count += 1;
        if !req.count_only && kvs.len() < fetch {
            let record = found.record()?;
            bytes = bytes.saturating_add(k.len() + record.value.len());
            if bytes > max_bytes {
                return Err(Error::RangeTooLarge { limit: max_bytes });
            }
            kvs.push((k.to_vec(), record));
        }
        Ok(true)
    })?;
    if filtered {
        kvs.retain(|(_, r)| {
            !(req.min_mod_revision != 0 && r.mod_revision < req.min_mod_revision
                || req.max_mod_revision != 0 && r.mod_revision > req.max_mod_revision
                || req.min_create_revision != 0 && r.create_revision < req.min_create_revision
                || req.max_create_revision != 0 && r.create_revision > req.max_create_revision)
        });
    }
    if order != SortOrder::None {
        let cmp = |a: &(Vec<u8>, Record), b: &(Vec<u8>, Record)| -> Ordering {
            match target {
                SortTarget::Key => a.0.cmp(&b.0),
                SortTarget::Version => a.1.version.cmp(&b.1.version),
                SortTarget::Create => a.1.create_revision.cmp(&b.1.create_revision),
                SortTarget::Mod => a.1.mod_revision.cmp(&b.1.mod_revision),
                SortTarget::Value => a.1.value.cmp(&b.1.value),
            }
        };
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| cmp(b, a));
        } else {
            kvs.sort_by(cmp);
        }
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() as u64 > req.limit as u64 {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    let kvs = kvs
        .into_iter()
        .map(|(k, r)| {
            let mut kv = r.to_key_value(&k);
            if req.keys_only {
                kv.value = Default::default();
            }
            kv
        })
        .collect();
    Ok(RangeResponse {
        header: Some(header(rev)),
        kvs,
        more,
        count,
    })
}

/// A response header carrying only the revision (the service fills in the rest).
pub(crate) fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..Default::default()
    }
}

/// Evaluates one txn compare the way etcd does: every key in the range must satisfy it; a
/// range with no key compares a zero `KeyValue` (version, create and mod revision 0) except
/// for a `VALUE` target, which then always fails.
pub(crate) fn compare(view: &View<'_>, c: &Compare) -> Result<bool> {
    let keys = KeyRange::new(&c.key, &c.range_end);
    let value_target = c.target == compare::CompareTarget::Value as i32;
    let mut any = false;
    let mut ok = true;
    view.scan(&keys, None, |k, found| {
        any = true;
        if !compare_kv(c, &found.record()?.to_key_value(k)) {
            ok = false;
            return Ok(false);
        }
        Ok(true)
    })?;
    if !any {
        return Ok(!value_target && compare_kv(c, &KeyValue::default()));
    }
    Ok(ok)
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let v: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_ref().cmp(v)
        }
        Ok(CompareTarget::Version) => kv.version.cmp(match &c.target_union {
            Some(TargetUnion::Version(v)) => v,
            _ => &0,
        }),
        Ok(CompareTarget::Create) => kv.create_revision.cmp(match &c.target_union {
            Some(TargetUnion::CreateRevision(v)) => v,
            _ => &0,
        }),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(match &c.target_union {
            Some(TargetUnion::ModRevision(v)) => v,
            _ => &0,
        }),
        Ok(CompareTarget::Lease) => kv.lease.cmp(match &c.target_union {
            Some(TargetUnion::Lease(v)) => v,
            _ => &0,
        }),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_revisions() {
        assert_eq!(read_revision(0, 5, 2).unwrap(), 5);
        assert_eq!(read_revision(-1, 5, 2).unwrap(), 5);
        assert_eq!(read_revision(5, 5, 2).unwrap(), 5);
        assert_eq!(read_revision(2, 5, 2).unwrap(), 2);
        assert!(matches!(read_revision(6, 5, 2), Err(Error::FutureRevision)));
        assert!(matches!(read_revision(1, 5, 2), Err(Error::Compacted)));
    }
}
