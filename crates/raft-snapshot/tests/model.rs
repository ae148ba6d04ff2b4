//! Property test: restoring a chain gives exactly the model state at the chain's tip, over
//! random workloads of puts, deletes, full and delta snapshots, compactions and transfers.

use bytes::Bytes;
use proptest::prelude::*;
use raft_core::{Membership, SnapshotMeta};
use raft_snapshot::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, Vec<u8>),
    Delete(u8),
    Full,
    Delta,
    Compact,
    Gc,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..40, proptest::collection::vec(any::<u8>(), 0..48)).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..40).prop_map(Op::Delete),
        1 => Just(Op::Full),
        3 => Just(Op::Delta),
        1 => Just(Op::Compact),
        1 => Just(Op::Gc),
    ]
}

fn restore(store: &SnapshotStore, tip: Option<SnapshotId>) -> BTreeMap<Bytes, Bytes> {
    let mut sink = MemState::new();
    restore_chain(store, tip, &mut sink).unwrap();
    sink.data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

    #[test]
    fn restore_equals_model(ops in proptest::collection::vec(op(), 1..60), block in 64usize..2048) {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open_dir(dir.path(), StoreOptions {
            id_salt: Some(1),
            writer: WriterOptions { block_size: block, zstd_level: 1 },
            ..StoreOptions::default()
        }).unwrap();
        let mut model = MemState::new();
        let mut index = 0u64;
        // Snapshots taken and the model state at each (while still in the store).
        let mut taken: Vec<(SnapshotId, BTreeMap<Bytes, Bytes>)> = Vec::new();
        for op in ops {
            index += 1;
            let meta = SnapshotMeta { index, term: 1 + index / 10, membership: Membership::with_voters([1]) };
            match op {
                Op::Put(k, v) => model.put(Bytes::from(format!("k{k:03}")), Bytes::from(v)),
                Op::Delete(k) => model.delete(format!("k{k:03}").as_bytes()),
                Op::Full | Op::Delta => {
                    let parent = store.latest().map(|c| c.tip().id);
                    let info = match (op, parent) {
                        (Op::Delta, Some(p)) => {
                            let mut w = store.begin(SnapshotKind::Delta, Some(p), &meta, index).unwrap();
                            w.write_source(&mut model.delta_source()).unwrap();
                            w.finish().unwrap()
                        }
                        _ => {
                            let mut w = store.begin(SnapshotKind::Full, None, &meta, index).unwrap();
                            w.write_source(&mut model.full_source()).unwrap();
                            w.finish().unwrap()
                        }
                    };
                    model.mark_snapshotted();
                    taken.push((info.id, model.data.clone()));
                }
                Op::Compact => {
                    if let Some(chain) = store.latest() {
                        let want = taken.iter().find(|(id, _)| *id == chain.tip().id).unwrap().1.clone();
                        let base = compact_chain(&store, None, index).unwrap();
                        prop_assert_eq!(base.index, chain.tip().index);
                        taken.push((base.id, want));
                    }
                }
                Op::Gc => {
                    let removed = store.gc().unwrap();
                    taken.retain(|(id, _)| !removed.contains(id));
                }
            }
        }
        for (id, want) in &taken {
            prop_assert_eq!(&restore(&store, Some(*id)), want);
        }
        if let Some(chain) = store.latest() {
            // The current chain survives a transfer to another node.
            let other_dir = tempfile::tempdir().unwrap();
            let other = SnapshotStore::open_dir(other_dir.path(), StoreOptions::default()).unwrap();
            let mut t = ChainTransfer::new(&store, None).unwrap();
            let mut inc = IncomingTransfer::begin(&other, "p", t.total_len()).unwrap();
            for c in t.chunks_from(0, 4096) {
                let c = c.unwrap();
                inc.write_chunk(c.offset, &c.data, Some(c.crc)).unwrap();
            }
            let got = inc.finish(Some(t.checksum())).unwrap();
            prop_assert_eq!(got.tip().id, chain.tip().id);
            let want = &taken.iter().find(|(id, _)| *id == chain.tip().id).unwrap().1;
            prop_assert_eq!(&restore(&other, None), want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Arbitrary damage (several bytes overwritten, a cut) to a valid file is an error, never
    /// a panic and never silently accepted.
    #[test]
    fn damaged_files_are_refused(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let header = FileHeader {
            kind: SnapshotKind::Delta,
            id: SnapshotId(9),
            parent: Some(SnapshotId(8)),
            index: 3,
            term: 1,
            created_ms: 0,
            membership: MembershipRecord::default(),
        };
        let opts = WriterOptions { block_size: 100, zstd_level: 1 };
        let mut w = FileWriter::new(Vec::new(), "mem", &header, opts).unwrap();
        for i in 0..40u32 {
            if i % 7 == 0 {
                w.delete(format!("k{i:03}").as_bytes()).unwrap();
            } else {
                w.put(format!("k{i:03}").as_bytes(), &i.to_le_bytes().repeat(5)).unwrap();
            }
        }
        let (mut bytes, _) = w.finish().unwrap();
        let mut touched = std::collections::BTreeSet::new();
        for (at, x) in edits {
            let i = at.index(bytes.len());
            if touched.insert(i) {
                bytes[i] ^= x;
            }
        }
        if let Some(c) = cut {
            let c = c.index(bytes.len());
            bytes.truncate(c);
        }
        let r = FileReader::new(bytes.as_slice(), "mem", true).and_then(|mut r| r.verify_to_end());
        prop_assert!(matches!(r, Err(Error::Corrupt { .. })), "{:?}", r);
    }
}
