//! Property test: random puts, deletes and txns (applied in random batches) against a
//! `BTreeMap` model of etcd's semantics; then a snapshot round trip of the result.
//! A second model keeps the state after every revision: ranges at old revisions, filters
//! and compaction are checked against it.

use crate::common::*;
use proptest::prelude::*;
use raft_kv::pb::etcdserverpb::compare::{CompareResult as R, TargetUnion as T};
use raft_kv::{ApplyEntry, CaptureKind, Command, EntryPayload, KvStore, Op, Outcome};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Act {
    Put(u8, u8),
    Del(u8),
    DelRange(u8, u8),
    /// If version(key) == v then put(key2, val) else delete(key2).
    Cas(u8, i64, u8, u8),
}

#[derive(Clone, Debug, PartialEq)]
struct M {
    value: String,
    create: i64,
    modr: i64,
    version: i64,
}

#[derive(Default)]
struct Model {
    kv: BTreeMap<String, M>,
    rev: i64,
}

fn key(k: u8) -> String {
    format!("k{}", k % 6)
}

impl Model {
    fn put(&mut self, k: &str, v: &str, rev: i64) {
        let e = self.kv.entry(k.to_string()).or_insert(M {
            value: String::new(),
            create: rev,
            modr: rev,
            version: 0,
        });
        e.value = v.to_string();
        e.modr = rev;
        e.version += 1;
    }

    fn del(&mut self, lo: &str, hi: Option<&str>) -> bool {
        let doomed: Vec<String> = self
            .kv
            .keys()
            .filter(|k| k.as_str() >= lo && hi.map_or(k.as_str() == lo, |h| k.as_str() < h))
            .cloned()
            .collect();
        for k in &doomed {
            self.kv.remove(k);
        }
        !doomed.is_empty()
    }

    fn act(&mut self, a: &Act) {
        let rev = self.rev + 1;
        let wrote = match a {
            Act::Put(k, v) => {
                self.put(&key(*k), &v.to_string(), rev);
                true
            }
            Act::Del(k) => self.del(&key(*k), None),
            Act::DelRange(a, b) => self.del(&key(*a), Some(&key(*b))),
            Act::Cas(k, ver, k2, v) => {
                let cur = self.kv.get(&key(*k)).map_or(0, |m| m.version);
                if cur == *ver {
                    self.put(&key(*k2), &v.to_string(), rev);
                    true
                } else {
                    self.del(&key(*k2), None)
                }
            }
        };
        if wrote {
            self.rev = rev;
        }
    }
}

fn op(a: &Act) -> Op {
    match a {
        Act::Put(k, v) => put_op(&key(*k), &v.to_string()),
        Act::Del(k) => Op::DeleteRange(del_req(&key(*k), "", false)),
        Act::DelRange(a, b) => Op::DeleteRange(del_req(&key(*a), &key(*b), false)),
        Act::Cas(k, ver, k2, v) => Op::Txn(txn(
            vec![cmp(&key(*k), R::Equal, T::Version(*ver))],
            vec![rput(&key(*k2), &v.to_string())],
            vec![rdel(&key(*k2), "")],
        )),
    }
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Act::Put(k, v)),
        2 => any::<u8>().prop_map(Act::Del),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Act::DelRange(a, b)),
        2 => (any::<u8>(), 0i64..3, any::<u8>(), any::<u8>())
            .prop_map(|(k, ver, k2, v)| Act::Cas(k, ver, k2, v)),
    ]
}

fn state(store: &KvStore) -> BTreeMap<String, M> {
    store
        .range(&range_req("\0", "\0"))
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| {
            (
                s(&kv.key),
                M {
                    value: s(&kv.value),
                    create: kv.create_revision,
                    modr: kv.mod_revision,
                    version: kv.version,
                },
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(acts in prop::collection::vec(act(), 1..60), cuts in prop::collection::vec(1usize..8, 1..20)) {
        let store = KvStore::open_temporary().unwrap();
        let mut model = Model {
            rev: raft_kv::INITIAL_REVISION,
            ..Model::default()
        };
        let cmds: Vec<Command> = acts.iter().map(|a| Command::new(0, op(a))).collect();
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        while at < cmds.len() {
            let end = (at + cut.next().unwrap()).min(cmds.len());
            let entries: Vec<ApplyEntry<'_>> = (at..end)
                .map(|i| ApplyEntry { index: i as u64 + 1, term: 1, payload: EntryPayload::Command(&cmds[i]) })
                .collect();
            store.apply_batch(&entries).unwrap();
            for a in &acts[at..end] {
                model.act(a);
            }
            prop_assert_eq!(store.revision(), model.rev);
            prop_assert_eq!(state(&store), model.kv.clone());
            at = end;
        }
        prop_assert_eq!(store.applied_index(), cmds.len() as u64);
        // A full snapshot of the result restores to the same state.
        let recs: Vec<_> = store.capture(CaptureKind::Full).unwrap().records.collect();
        let copy = KvStore::open_temporary().unwrap();
        copy.restore_full(cmds.len() as u64, 1, recs).unwrap();
        prop_assert_eq!(state(&copy), model.kv.clone());
        prop_assert_eq!(copy.revision(), model.rev);
    }
}

#[derive(Clone, Debug)]
enum Step {
    Act(Act),
    /// Take a capture (full or delta); `durable` reports it durable, else it is dropped as a
    /// failed snapshot.
    Capture {
        full: bool,
        durable: bool,
    },
    /// Compact to a revision between the compact revision and the current one.
    Compact(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => act().prop_map(Step::Act),
        1 => (any::<bool>(), prop::bool::weighted(0.8))
            .prop_map(|(full, durable)| Step::Capture { full, durable }),
        1 => any::<u8>().prop_map(Step::Compact),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Restoring the chain of durable snapshots (base, then deltas) always gives the state at
    /// the chain's last index, its whole readable history included, whatever the workload,
    /// the compactions between the snapshots and whichever captures failed.
    #[test]
    fn snapshot_chain_restores_the_state_at_its_index(steps in prop::collection::vec(step(), 1..80)) {
        let store = KvStore::open_temporary().unwrap();
        let mut index = 0u64;
        // (index, records, is_full) of the durable snapshots since the last durable base.
        let mut chain: Vec<(u64, Vec<raft_kv::SnapshotRecord>, bool)> = Vec::new();
        for st in &steps {
            match st {
                Step::Act(a) => {
                    index += 1;
                    store.apply(index, 1, &Command::new(0, op(a))).unwrap();
                }
                Step::Compact(p) => {
                    let (c, rev) = (store.compact_revision(), store.revision());
                    if rev > c {
                        index += 1;
                        let target = c + 1 + i64::from(*p) % (rev - c);
                        let cmd = Command::new(0, Op::Compact(raft_kv::pb::etcdserverpb::CompactionRequest {
                            revision: target,
                            physical: false,
                        }));
                        store.apply(index, 1, &cmd).unwrap();
                        prop_assert_eq!(store.compact_revision(), target);
                    }
                }
                Step::Capture { full, durable } => {
                    let expected = state(&store);
                    let kind = if *full { CaptureKind::Full } else { CaptureKind::Delta };
                    let cap = store.capture(kind).unwrap();
                    prop_assert_eq!(cap.info.index, index);
                    if !durable {
                        continue; // dropped: the snapshot failed
                    }
                    let recs: Vec<_> = cap.records.map(|r| r.unwrap()).collect();
                    store.capture_durable(index).unwrap();
                    if *full {
                        chain.clear();
                    }
                    chain.push((index, recs, *full));
                    let copy = KvStore::open_temporary().unwrap();
                    for (i, recs, is_full) in &chain {
                        let recs = recs.iter().cloned().map(Ok);
                        if *is_full {
                            copy.restore_full(*i, 1, recs).unwrap();
                        } else {
                            copy.apply_delta(*i, 1, recs).unwrap();
                        }
                    }
                    prop_assert_eq!(state(&copy), expected);
                    prop_assert_eq!(copy.revision(), store.revision());
                    // The restored revision index matches the restored history once the
                    // copy's physical compaction (restarted by the restore) is done.
                    prop_assert!(copy.wait_compacted_blocking(copy.compact_revision(), std::time::Duration::from_secs(10)));
                    prop_assert!(copy.check_revision_index().is_ok(), "{:?}", copy.check_revision_index());
                    prop_assert_eq!(copy.hash_kv(0).unwrap(), store.hash_kv(0).unwrap());
                    for rev in store.compact_revision().max(1)..=store.revision() {
                        let mut req = range_req("\0", "\0");
                        req.revision = rev;
                        prop_assert_eq!(copy.range(&req).unwrap(), store.range(&req).unwrap());
                    }
                }
            }
        }
    }
}

/// A step of the history model test.
#[derive(Clone, Debug)]
enum HStep {
    Act(Act),
    /// A txn that puts one key and deletes another (maybe the same one) in one revision.
    PutDel(u8, u8, u8),
    /// Compact to a revision picked from the readable ones (or one below: refused).
    Compact(u8, bool),
    /// Wait until physical compaction caught up.
    Settle,
    /// A range at a revision picked from the readable ones.
    Range(RangeShape),
    /// A full snapshot restored into a new store, compared at every readable revision.
    Snapshot,
}

#[derive(Clone, Debug)]
struct RangeShape {
    pick: u8,
    lo: u8,
    hi: Option<u8>,
    limit: u8,
    count_only: bool,
    keys_only: bool,
    sort: u8,
    min_mod: u8,
    max_mod: u8,
    min_create: u8,
    max_create: u8,
}

fn range_shape() -> impl Strategy<Value = RangeShape> {
    (
        (
            any::<u8>(),
            any::<u8>(),
            prop::option::of(any::<u8>()),
            0u8..5,
        ),
        (any::<bool>(), any::<bool>(), 0u8..4),
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()),
    )
        .prop_map(
            |((pick, lo, hi, limit), (count_only, keys_only, sort), (a, b, c, d))| RangeShape {
                pick,
                lo,
                hi,
                limit,
                count_only,
                keys_only,
                sort,
                min_mod: a,
                max_mod: b,
                min_create: c,
                max_create: d,
            },
        )
}

fn hstep() -> impl Strategy<Value = HStep> {
    prop_oneof![
        8 => act().prop_map(HStep::Act),
        2 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, v, b)| HStep::PutDel(a, v, b)),
        1 => (any::<u8>(), prop::bool::weighted(0.1)).prop_map(|(p, below)| HStep::Compact(p, below)),
        1 => Just(HStep::Settle),
        4 => range_shape().prop_map(HStep::Range),
        1 => Just(HStep::Snapshot),
    ]
}

/// The model of the whole history: the state after every revision.
struct History {
    now: Model,
    /// (revision, state at it), one per revision from the initial one.
    states: Vec<(i64, BTreeMap<String, M>)>,
    compacted: i64,
}

impl History {
    fn at(&self, rev: i64) -> &BTreeMap<String, M> {
        let i = self.states.partition_point(|(r, _)| *r <= rev);
        &self.states[i - 1].1
    }

    fn record(&mut self) {
        if self.states.last().map(|(r, _)| *r) != Some(self.now.rev) {
            self.states.push((self.now.rev, self.now.kv.clone()));
        }
    }

    /// A revision from `compacted..=now` chosen by `pick`.
    fn pick(&self, pick: u8) -> i64 {
        let span = self.now.rev - self.compacted.max(1) + 1;
        self.compacted.max(1) + i64::from(pick) % span
    }
}

/// A revision filter bound from a byte: 0 (none) or a revision up to the current one.
fn bound(b: u8, rev: i64) -> i64 {
    if b.is_multiple_of(3) {
        0
    } else {
        i64::from(b) % (rev + 1)
    }
}

fn check_range(store: &KvStore, h: &History, r: &RangeShape) -> Result<(), TestCaseError> {
    use raft_kv::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
    let rev = h.pick(r.pick);
    let lo = key(r.lo);
    let hi = r.hi.map(key);
    let (sort_target, sort_order) = match r.sort {
        0 => (SortTarget::Key, SortOrder::None),
        1 => (SortTarget::Key, SortOrder::Descend),
        2 => (SortTarget::Mod, SortOrder::Descend),
        _ => (SortTarget::Create, SortOrder::Ascend),
    };
    let (min_mod, max_mod) = (bound(r.min_mod, h.now.rev), bound(r.max_mod, h.now.rev));
    let (min_create, max_create) = (
        bound(r.min_create, h.now.rev),
        bound(r.max_create, h.now.rev),
    );
    let mut req = range_req(&lo, hi.as_deref().unwrap_or(""));
    req.revision = rev;
    req.limit = i64::from(r.limit);
    req.count_only = r.count_only;
    req.keys_only = r.keys_only;
    req.sort_target = sort_target as i32;
    req.sort_order = sort_order as i32;
    req.min_mod_revision = min_mod;
    req.max_mod_revision = max_mod;
    req.min_create_revision = min_create;
    req.max_create_revision = max_create;
    let got = store.range(&req).unwrap();
    prop_assert_eq!(got.header.unwrap().revision, h.now.rev);
    // The model: keys in range at `rev`, count before filters, then filters, sort, limit.
    let in_range: Vec<(&String, &M)> = h
        .at(rev)
        .iter()
        .filter(|(k, _)| {
            k.as_str() >= lo.as_str() && hi.as_ref().map_or(**k == lo, |e| k.as_str() < e.as_str())
        })
        .collect();
    prop_assert_eq!(got.count, in_range.len() as i64);
    let mut want: Vec<(&String, &M)> = in_range
        .into_iter()
        .filter(|(_, m)| {
            !(min_mod != 0 && m.modr < min_mod
                || max_mod != 0 && m.modr > max_mod
                || min_create != 0 && m.create < min_create
                || max_create != 0 && m.create > max_create)
        })
        .collect();
    let sort_value = |m: &M| match sort_target {
        SortTarget::Mod => m.modr,
        SortTarget::Create => m.create,
        _ => 0,
    };
    match (sort_target, sort_order) {
        (SortTarget::Key, SortOrder::Descend) => want.reverse(),
        (SortTarget::Key, _) => {}
        (_, SortOrder::Descend) => want.sort_by_key(|(_, m)| std::cmp::Reverse(sort_value(m))),
        _ => want.sort_by_key(|(_, m)| sort_value(m)),
    }
    if r.count_only {
        prop_assert!(got.kvs.is_empty());
        return Ok(());
    }
    let more = r.limit > 0 && want.len() > usize::from(r.limit);
    prop_assert_eq!(got.more, more);
    if more {
        want.truncate(usize::from(r.limit));
    }
    prop_assert_eq!(got.kvs.len(), want.len());
    if sort_target == SortTarget::Key || !more {
        // Equal sort values may come in any order: compare as sets, and the sort values in order.
        let mut g: Vec<_> = got
            .kvs
            .iter()
            .map(|kv| {
                (
                    s(&kv.key),
                    kv.value.is_empty(),
                    kv.mod_revision,
                    kv.create_revision,
                    kv.version,
                )
            })
            .collect();
        let mut w: Vec<_> = want
            .iter()
            .map(|(k, m)| {
                (
                    (*k).clone(),
                    r.keys_only || m.value.is_empty(),
                    m.modr,
                    m.create,
                    m.version,
                )
            })
            .collect();
        if sort_target == SortTarget::Key {
            prop_assert_eq!(&g, &w);
        }
        g.sort();
        w.sort();
        prop_assert_eq!(g, w);
        if r.keys_only {
            prop_assert!(got.kvs.iter().all(|kv| kv.value.is_empty()));
        }
    }
    let got_values: Vec<i64> = got
        .kvs
        .iter()
        .map(|kv| match sort_target {
            SortTarget::Mod => kv.mod_revision,
            SortTarget::Create => kv.create_revision,
            _ => 0,
        })
        .collect();
    let want_values: Vec<i64> = want.iter().map(|(_, m)| sort_value(m)).collect();
    prop_assert_eq!(got_values, want_values);
    Ok(())
}

/// Every readable revision of `copy` reads like `store`'s.
fn same_history(store: &KvStore, copy: &KvStore, h: &History) -> Result<(), TestCaseError> {
    prop_assert_eq!(copy.revision(), store.revision());
    prop_assert_eq!(copy.compact_revision(), store.compact_revision());
    for rev in h.compacted.max(1)..=h.now.rev {
        let mut req = range_req("\0", "\0");
        req.revision = rev;
        prop_assert_eq!(copy.range(&req).unwrap(), store.range(&req).unwrap());
    }
    prop_assert_eq!(copy.hash_kv(0).unwrap(), store.hash_kv(0).unwrap());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Puts, deletes, txns and compactions against a model of the whole history: ranges at
    /// random kept revisions (with every filter, limit, count and sort) read what the model
    /// held then, whatever physical compaction has removed so far; revisions below the
    /// compact revision are refused; hashes do not depend on how far physical compaction got;
    /// a snapshot restores the same history.
    #[test]
    fn history_matches_model(steps in prop::collection::vec(hstep(), 1..90)) {
        let store = KvStore::open_temporary().unwrap();
        let mut h = History {
            now: Model { rev: raft_kv::INITIAL_REVISION, ..Model::default() },
            states: Vec::new(),
            compacted: 0,
        };
        h.record();
        let index = std::cell::Cell::new(0u64);
        let apply = |op: Op| {
            index.set(index.get() + 1);
            store.apply(index.get(), 1, &Command::new(0, op)).unwrap()
        };
        for st in &steps {
            match st {
                HStep::Act(a) => {
                    apply(op(a));
                    h.now.act(a);
                }
                HStep::PutDel(a, v, b) => {
                    apply(Op::Txn(txn(
                        vec![],
                        vec![rput(&key(*a), &v.to_string()), rdel(&key(*b), "")],
                        vec![],
                    )));
                    let rev = h.now.rev + 1;
                    h.now.put(&key(*a), &v.to_string(), rev);
                    h.now.del(&key(*b), None);
                    h.now.rev = rev;
                }
                HStep::Compact(p, below) => {
                    let target = if *below { h.compacted } else { h.pick(*p) };
                    let r = apply(Op::Compact(raft_kv::pb::etcdserverpb::CompactionRequest {
                        revision: target,
                        physical: false,
                    }));
                    if target <= h.compacted {
                        prop_assert!(matches!(r.outcome, Outcome::Rejected(raft_kv::Error::Compacted)));
                    } else {
                        prop_assert!(matches!(r.outcome, Outcome::Response(_)), "{:?}", r.outcome);
                        h.compacted = target;
                    }
                }
                HStep::Settle => {
                    let hash = store.hash_kv(0).unwrap();
                    prop_assert!(store.wait_compacted_blocking(h.compacted, std::time::Duration::from_secs(10)));
                    prop_assert_eq!(store.hash_kv(0).unwrap(), hash);
                    prop_assert!(store.check_revision_index().is_ok(), "{:?}", store.check_revision_index());
                }
                HStep::Range(r) => check_range(&store, &h, r)?,
                HStep::Snapshot => {
                    let recs: Vec<_> = store.capture(CaptureKind::Full).unwrap().records.collect();
                    let copy = KvStore::open_temporary().unwrap();
                    copy.restore_full(index.get(), 1, recs).unwrap();
                    same_history(&store, &copy, &h)?;
                    prop_assert!(copy.wait_compacted_blocking(h.compacted, std::time::Duration::from_secs(10)));
                    prop_assert!(copy.check_revision_index().is_ok(), "{:?}", copy.check_revision_index());
                    same_history(&store, &copy, &h)?;
                }
            }
            h.record();
            prop_assert_eq!(store.revision(), h.now.rev);
            prop_assert_eq!(store.compact_revision(), h.compacted);
            if h.compacted > 1 {
                let mut req = range_req("\0", "\0");
                req.revision = h.compacted - 1;
                prop_assert!(matches!(store.range(&req), Err(raft_kv::Error::Compacted)));
            }
        }
        // Every kept revision, one last time, after physical compaction caught up.
        prop_assert!(store.wait_compacted_blocking(h.compacted, std::time::Duration::from_secs(10)));
        prop_assert!(store.check_revision_index().is_ok(), "{:?}", store.check_revision_index());
        for rev in h.compacted.max(1)..=h.now.rev {
            let mut req = range_req("\0", "\0");
            req.revision = rev;
            let got = state_of(&store.range(&req).unwrap());
            prop_assert_eq!(&got, h.at(rev), "at revision {}", rev);
        }
    }
}

fn state_of(r: &raft_kv::pb::etcdserverpb::RangeResponse) -> BTreeMap<String, M> {
    r.kvs
        .iter()
        .map(|kv| {
            (
                s(&kv.key),
                M {
                    value: s(&kv.value),
                    create: kv.create_revision,
                    modr: kv.mod_revision,
                    version: kv.version,
                },
            )
        })
        .collect()
}
