//! `raft-snapshot`'s chain store on its own, with a downstream project's own state machine:
//! an inventory (item name -> count) that tracks which items changed since its last
//! snapshot, so that it can write incremental snapshots.
//!
//! It writes a full snapshot (the base) of 1,000 items at log index 100, changes a few items
//! and writes a delta at index 120, reopens the store, restores the chain (base + delta) into
//! an empty inventory and checks it equals the live one, restores the base alone (the state
//! at index 100: a point in time), then merges the chain into a new base and collects the
//! files it replaced. Every step is checked; it exits non-zero if anything is off.
//!
//! Run: `cargo run -p raft-snapshot --example chain_store`
#![allow(clippy::print_stdout)]

use bytes::Bytes;
use raft_core::{Membership, SnapshotMeta};
use raft_snapshot::{
    IterSource, Record, RestoreSink, SnapshotInfo, SnapshotKind, SnapshotStore, StoreOptions,
    compact_chain, restore_chain,
};
use std::collections::{BTreeMap, BTreeSet};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The downstream state machine: item counts, and the items changed since the last snapshot.
#[derive(Default)]
struct Inventory {
    items: BTreeMap<String, u64>,
    changed: BTreeSet<String>,
}

impl Inventory {
    fn set(&mut self, item: &str, count: u64) {
        self.items.insert(item.to_string(), count);
        self.changed.insert(item.to_string());
    }

    fn remove(&mut self, item: &str) {
        self.items.remove(item);
        self.changed.insert(item.to_string());
    }

    /// Every item, in key order (what a full snapshot holds).
    fn full_records(&self) -> Vec<Record> {
        self.items
            .iter()
            .map(|(k, v)| Record::Put {
                key: Bytes::copy_from_slice(k.as_bytes()),
                value: Bytes::copy_from_slice(&v.to_be_bytes()),
            })
            .collect()
    }

    /// What changed since the last snapshot, in key order: puts and deletes.
    fn delta_records(&self) -> Vec<Record> {
        self.changed
            .iter()
            .map(|k| {
                let key = Bytes::copy_from_slice(k.as_bytes());
                match self.items.get(k) {
                    Some(v) => Record::Put {
                        key,
                        value: Bytes::copy_from_slice(&v.to_be_bytes()),
                    },
                    None => Record::Delete { key },
                }
            })
            .collect()
    }
}

/// Restoring: the store feeds the base's records after `reset`, then each delta's.
impl RestoreSink for Inventory {
    fn reset(&mut self, _base: &SnapshotInfo) -> raft_snapshot::Result<()> {
        self.items.clear();
        self.changed.clear();
        Ok(())
    }

    fn put(&mut self, key: Bytes, value: Bytes) -> raft_snapshot::Result<()> {
        let count = u64::from_be_bytes(value.as_ref().try_into().map_err(|_| {
            raft_snapshot::Error::StateMachine(format!("a count of {} bytes", value.len()).into())
        })?);
        self.items
            .insert(String::from_utf8_lossy(&key).into_owned(), count);
        Ok(())
    }

    fn delete(&mut self, key: Bytes) -> raft_snapshot::Result<()> {
        self.items.remove(String::from_utf8_lossy(&key).as_ref());
        Ok(())
    }

    fn finish(&mut self, _tip: &SnapshotInfo) -> raft_snapshot::Result<()> {
        Ok(())
    }
}

fn check(ok: bool, what: &str) -> Result<(), BoxError> {
    if ok { Ok(()) } else { Err(what.into()) }
}

/// What a snapshot at `index` covers; the term and membership come from the Raft log.
fn meta(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term: 1,
        membership: Membership::with_voters([1, 2, 3]),
    }
}

fn main() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let store = SnapshotStore::open_dir(dir.path(), StoreOptions::default())?;
    let now_ms = 1_700_000_000_000;

    // 1. The base: every item as of log index 100.
    let mut live = Inventory::default();
    for i in 0..1_000 {
        live.set(&format!("item{i:04}"), i);
    }
    let mut w = store.begin(SnapshotKind::Full, None, &meta(100), now_ms)?;
    w.write_source(&mut IterSource(live.full_records().into_iter().map(Ok)))?;
    let base = w.finish()?;
    live.changed.clear(); // the base is durable: track changes from here
    let at_100 = live.items.clone();
    println!(
        "base {:?} at index {}: {} items, {} bytes",
        base.id, base.index, base.puts, base.size
    );

    // 2. A delta at index 120: ten counts change, two items go, three come.
    for i in 0..10 {
        live.set(&format!("item{:04}", i * 7), 5_000 + i);
    }
    live.remove("item0001");
    live.remove("item0002");
    for name in ["new-a", "new-b", "new-c"] {
        live.set(name, 1);
    }
    let mut w = store.begin(
        SnapshotKind::Delta,
        Some(base.id),
        &meta(120),
        now_ms + 1_000,
    )?;
    w.write_source(&mut IterSource(live.delta_records().into_iter().map(Ok)))?;
    let delta = w.finish()?;
    live.changed.clear();
    check(
        delta.puts == 13 && delta.deletes == 2,
        "the delta holds the 13 puts and 2 deletes",
    )?;
    println!(
        "delta {:?} at index {} on {:?}: {} puts, {} deletes, {} bytes",
        delta.id, delta.index, base.id, delta.puts, delta.deletes, delta.size
    );
    drop(store);

    // 3. Reopen the store (the manifest names the chain) and restore it: checksums are
    // verified before the first record reaches the sink.
    let store = SnapshotStore::open_dir(dir.path(), StoreOptions::default())?;
    let chain = store.latest().ok_or("no current chain after reopening")?;
    check(chain.len() == 2, "the current chain is base + delta")?;
    let mut restored = Inventory::default();
    let tip = restore_chain(&store, None, &mut restored)?;
    check(tip.index == 120, "the restored chain ends at index 120")?;
    check(
        restored.items == live.items,
        "base + delta restore the live state",
    )?;
    println!(
        "restored base + delta: {} items, equal to the live state",
        restored.items.len()
    );

    // 4. A point in time: the chain ending at the base is the state at index 100.
    let mut at_base = Inventory::default();
    let tip = restore_chain(&store, Some(base.id), &mut at_base)?;
    check(
        tip.index == 100 && at_base.items == at_100,
        "the base alone restores index 100",
    )?;
    println!("restored the base alone: the state at index 100");

    // 5. Merge the chain into a new base at the tip's index; the old files become garbage.
    let merged = compact_chain(&store, None, now_ms + 2_000)?;
    check(
        merged.kind == SnapshotKind::Full && merged.index == 120,
        "the merged snapshot is a base at index 120",
    )?;
    let removed = store.gc()?;
    check(removed.len() == 2, "gc removes the old base and delta")?;
    let mut from_merged = Inventory::default();
    restore_chain(&store, None, &mut from_merged)?;
    check(
        from_merged.items == live.items,
        "the merged base restores the live state",
    )?;
    println!(
        "merged into base {:?} ({} items); gc removed {} files",
        merged.id,
        merged.puts,
        removed.len()
    );
    println!("ok");
    Ok(())
}
