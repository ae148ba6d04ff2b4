//! `raft-log` on its own, as a downstream project would use it: a durable, segmented log of
//! `raft_core::Entry` records and a hard state, with no Raft node, network or runtime.
//!
//! It opens a log in a scratch directory, records the cluster's membership, appends 1,000
//! entries in pipelined writes (each write is submitted before the previous one is durable;
//! the writer groups them under shared `fdatasync`s), closes and reopens the log and reads
//! everything back, replaces a tail the way a new Raft leader does, compacts a prefix (whole
//! segments are deleted) and reopens once more. Every step is checked; it exits non-zero if
//! anything is off.
//!
//! Run: `cargo run -p raft-log --example standalone_wal`
#![allow(clippy::print_stdout)]

use bytes::Bytes;
use raft_core::{Entry, EntryKind, HardState, Membership, SnapshotMeta};
use raft_log::{Error, Settings, Wal};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Entries written, and the payload size of each.
const ENTRIES: u64 = 1_000;
const PAYLOAD: usize = 1_024;

fn entry(index: u64, term: u64) -> Entry {
    let mut data = format!("entry {index} of term {term}: ").into_bytes();
    data.resize(PAYLOAD, b'.');
    Entry {
        index,
        term,
        kind: EntryKind::Normal,
        data: Bytes::from(data),
    }
}

fn check(ok: bool, what: &str) -> Result<(), BoxError> {
    if ok { Ok(()) } else { Err(what.into()) }
}

fn main() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    // Small segments and group-commit batches, so that this example fills several segments
    // and compaction can delete some (a batch larger than a segment gets a segment of its
    // own). The defaults (64 MiB, 4 MiB) suit a real log; every other setting is the
    // default: fsync before a write counts as durable, adaptive group commit.
    let settings = Settings {
        segment_size: 256 << 10,
        max_batch_bytes: 64 << 10,
        ..Settings::default()
    };

    // 1. Open an empty log, record the membership, append.
    let wal = Wal::open(dir.path(), settings.clone())?;
    let membership = Membership::with_voters([1, 2, 3]);
    wal.bootstrap(membership.clone())?.wait()?;
    let mut tickets = Vec::new();
    for batch in 0..ENTRIES / 100 {
        let entries: Vec<Entry> = (1..=100).map(|i| entry(batch * 100 + i, 1)).collect();
        let commit = batch * 100; // what a Raft node would know committed by then
        let hs = HardState {
            term: 1,
            vote: Some(1),
            commit,
        };
        // Submitted without waiting: the writes are ordered at submission.
        tickets.push(wal.write(entries, Some(hs))?);
    }
    for t in tickets {
        t.wait()?; // durable once this returns
    }
    check(wal.last_index() == ENTRIES, "last index after the appends")?;
    let segments = wal.segment_count();
    println!(
        "appended {ENTRIES} entries of {PAYLOAD} B into {segments} segments of {} KiB",
        settings.segment_size >> 10
    );
    wal.close()?;

    // 2. Reopen: recovery scans the segments, checks every CRC and rebuilds the index.
    let wal = Wal::open(dir.path(), settings.clone())?;
    check(wal.first_index() == 1, "first index after reopening")?;
    check(wal.last_index() == ENTRIES, "last index after reopening")?;
    check(
        wal.hard_state()
            == HardState {
                term: 1,
                vote: Some(1),
                commit: ENTRIES - 100,
            },
        "hard state after reopening",
    )?;
    check(wal.membership() == membership, "membership after reopening")?;
    let read = wal.entries(1, ENTRIES + 1, None)?;
    check(read.len() as u64 == ENTRIES, "entry count read back")?;
    for e in &read {
        check(*e == entry(e.index, 1), "an entry read back differs")?;
    }
    println!("reopened: {ENTRIES} entries, hard state and membership read back intact");

    // 3. A new leader (term 2) overwrites the uncommitted tail from index 951: a write whose
    // first index is at or below the last one replaces everything from there.
    let tail: Vec<Entry> = (951..=960).map(|i| entry(i, 2)).collect();
    wal.write(
        tail,
        Some(HardState {
            term: 2,
            vote: Some(2),
            commit: ENTRIES - 100,
        }),
    )?
    .wait()?;
    check(wal.last_index() == 960, "last index after the new tail")?;
    check(
        wal.term(950)? == 1 && wal.term(951)? == 2,
        "terms around the new tail",
    )?;
    println!("replaced the tail from index 951 with 10 entries of term 2");

    // 4. Compact: a snapshot of the state machine was taken at index 800, so the log may
    // drop everything up to it. Segments holding only compacted entries are deleted.
    wal.compact_prefix(SnapshotMeta {
        index: 800,
        term: 1,
        membership: membership.clone(),
    })?
    .wait()?;
    check(wal.first_index() == 801, "first index after compaction")?;
    check(
        matches!(wal.entries(1, 10, None), Err(Error::Compacted(_))),
        "compacted entries must not be readable",
    )?;
    let after = wal.segment_count();
    check(after < segments, "compaction deletes whole segments")?;
    println!("compacted up to 800: {segments} -> {after} segments");
    wal.close()?;

    // 5. Reopen once more: the compaction and the new tail are durable.
    let wal = Wal::open(dir.path(), settings)?;
    check(
        wal.first_index() == 801,
        "first index after the last reopen",
    )?;
    check(wal.last_index() == 960, "last index after the last reopen")?;
    check(
        wal.snapshot().index == 800,
        "snapshot index after the last reopen",
    )?;
    for e in wal.entries(801, 961, None)? {
        let term = if e.index > 950 { 2 } else { 1 };
        check(
            e == entry(e.index, term),
            "an entry after the last reopen differs",
        )?;
    }
    check(
        wal.hard_state().term == 2,
        "hard state after the last reopen",
    )?;
    wal.close()?;
    println!("ok");
    Ok(())
}
