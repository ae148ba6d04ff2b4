//! Property test: random puts, deletes and txns (applied in random batches) against a
//! `BTreeMap` model of etcd's semantics; then a snapshot round trip of the result.

use crate::common::*;
use proptest::prelude::*;
use raft_kv::pb::etcdserverpb::compare::{CompareResult as R, TargetUnion as T};
use raft_kv::{ApplyEntry, CaptureKind, Command, EntryPayload, KvStore, Op};
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
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => act().prop_map(Step::Act),
        1 => (any::<bool>(), prop::bool::weighted(0.8))
            .prop_map(|(full, durable)| Step::Capture { full, durable }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Restoring the chain of durable snapshots (base, then deltas) always gives the state at
    /// the chain's last index, whatever the workload and whichever captures failed.
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
                    prop_assert_eq!(copy.hash_kv(0).unwrap(), store.hash_kv(0).unwrap());
                }
            }
        }
    }
}
