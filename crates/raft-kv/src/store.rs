//! [`KvStore`]: the sled-backed etcd state machine — apply of committed entries (atomic with
//! the applied index), reads, and the metadata the service and snapshots need.

mod exec;
mod query;
mod view;

pub use exec::Response;

use crate::command::{Command, Op};
use crate::cow::{BatchReads, CowState};
use crate::error::{Error, Result};
use crate::layout::{
    COW, DATA, LAYOUT_VERSION, be_u64, dirty_key, encode_key_list, meta, meta_key, prefixed,
};
use crate::members::{Member, decode_members, encode_members};
use crate::pb::etcdserverpb::{RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use crate::pb::mvccpb::KeyValue;
use exec::Batch;
use parking_lot::{Mutex, RwLock, RwLockUpgradableReadGuard};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use view::{Overlay, View};

/// The name of the sled tree holding the whole state machine.
pub const TREE_NAME: &str = "raft-kv";

/// The revision of a new, empty store. etcd reports revision 1 before any write and gives
/// the first write revision 2; so do we, so clients see the same numbers.
pub const INITIAL_REVISION: i64 = 1;

/// The replicated key-value state machine, on sled.
///
/// Cheap to clone (an `Arc`): the apply loop, the gRPC service and snapshot tasks share one.
/// Reads see a consistent state: a whole applied batch or none of it.
///
/// # Semantics
/// etcd v3 MVCC for the *current* state: each key has `create_revision`, `mod_revision`,
/// `version` and its value (lease always 0). Like etcd, a new store is at revision 1 (so the
/// first write gets revision 2), and the store revision grows by one per write
/// transaction: a put, a delete-range that deletes something, a txn with at least one write
/// (a txn is one revision); reads, read-only txns and deletes of nothing leave it alone.
///
/// **Old revisions.** Only the latest version of each key is kept, so only the current
/// revision can be read: a `Range` (top-level or in a txn) with `revision` in
/// `1..current` fails with [`Error::Compacted`] ("etcdserver: mvcc: required revision has been
/// compacted") and one above the current revision with [`Error::FutureRevision`]; `0` or
/// the current revision is served. In effect the store is always compacted up to its current
/// revision. `Compact(r)` is still honoured as etcd does it — `r` above the current
/// revision is refused as future, `r` at or below the compact revision as compacted, otherwise
/// [`compact_revision`](Self::compact_revision) becomes `r` — and it does not change the
/// store revision.
///
/// # On-disk layout
/// One sled tree named [`TREE_NAME`]; every sled key starts with a one-byte key space tag.
/// Every applied batch is one `sled::Batch` (atomic, also across crashes) holding the data,
/// the batch's dirty list, the metadata and the copy-on-write pre-images that do not fit in
/// memory, so the applied index never disagrees with the data.
///
/// | sled key | value |
/// |---|---|
/// | `b'k' ++ user key` | the key's [`Record`](crate::Record) encoding |
/// | `b'm' ++ b"applied_index"` / `b"applied_term"` | u64 big-endian |
/// | `b'm' ++ b"revision"` / `b"compact_revision"` | i64 big-endian |
/// | `b'm' ++ b"members"` | prost `etcdserverpb.MemberListResponse` (only `members`) |
/// | `b'm' ++ b"dirty_gen"` / `b"dirty_floor"` | u64 BE: current dirty generation; marks `<=` floor are in a durable snapshot |
/// | `b'm' ++ b"snapshot_index"` | u64 BE: index of the last durable or restored snapshot |
/// | `b'm' ++ b"layout"` | u8: layout version (2) |
/// | `b'm' ++ b"restoring"` | empty; present while a restore is unfinished |
/// | `b'd' ++ generation ++ index` (u64 BE each) | the dirty list of the batch that ended at `index`: the user keys it wrote or deleted, each as a varint length and the bytes |
/// | `b'c' ++ capture number (u64 BE) ++ user key` | cow pre-image while that capture runs, when the in-memory ones are over their budget: flags byte (bit 1: the key existed) then the record encoding if it existed |
///
/// Dirty lists are one entry per applied batch, not one per key: a delta capture reads the
/// lists of its generations and sorts their keys in memory, and a durable snapshot retires its
/// generations as a key range (one remove per batch, no lock, see `snapshot::tidy`).
#[derive(Clone)]
pub struct KvStore {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) db: sled::Db,
    pub(crate) tree: sled::Tree,
    pub(crate) state: RwLock<State>,
    /// The running capture's progress and pre-images (see [`crate::cow`]).
    pub(crate) cow: Mutex<CowState>,
}

/// The in-memory copy of the metadata (the truth is in sled), plus capture bookkeeping.
pub(crate) struct State {
    pub(crate) applied_index: u64,
    pub(crate) applied_term: u64,
    pub(crate) revision: i64,
    pub(crate) compact_revision: i64,
    pub(crate) members: BTreeMap<u64, Member>,
    /// Writes are marked with this generation. Invariant: `dirty_floor < dirty_gen`.
    pub(crate) dirty_gen: u64,
    /// Dirty lists at or below this generation are in the last durable snapshot.
    pub(crate) dirty_floor: u64,
    pub(crate) snapshot_index: u64,
    /// The capture being read, if any (at most one).
    pub(crate) capture: Option<ActiveCapture>,
    /// The number the next capture gets (its pre-images live under it).
    pub(crate) next_capture: u64,
    /// `(index, generation)` of the latest capture, until it is reported durable.
    pub(crate) pending_durable: Option<(u64, u64)>,
    pub(crate) restoring: bool,
}

/// A running copy-on-write capture.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActiveCapture {
    /// Dirty lists of generations in `(floor, generation]` are the capture's delta.
    pub(crate) floor: u64,
    pub(crate) generation: u64,
    /// Its number: its sled pre-images are under `b'c' ++ number`.
    pub(crate) number: u64,
}

/// The payload of one committed entry for [`KvStore::apply_batch`].
#[derive(Clone, Copy, Debug)]
pub enum EntryPayload<'a> {
    /// A decoded command.
    Command(&'a Command),
    /// A normal entry's raw data, decoded here; undecodable data is applied as a rejected
    /// command (every replica rejects it alike).
    Data(&'a [u8]),
    /// An entry without a command (a new leader's empty entry): only the index advances.
    Empty,
    /// A configuration change: the member list after it.
    Members(&'a [Member]),
}

/// One committed entry for [`KvStore::apply_batch`].
#[derive(Clone, Copy, Debug)]
pub struct ApplyEntry<'a> {
    /// The entry's log index.
    pub index: u64,
    /// The entry's term.
    pub term: u64,
    /// What it carries.
    pub payload: EntryPayload<'a>,
}

/// What applying one entry did.
#[derive(Debug)]
pub struct ApplyResult {
    /// The entry's index.
    pub index: u64,
    /// The command's request id (0 for entries without a command).
    pub request_id: u64,
    /// The store revision after the entry.
    pub revision: i64,
    /// The outcome.
    pub outcome: Outcome,
}

/// The outcome of applying one entry.
#[derive(Debug)]
pub enum Outcome {
    /// The index was applied before (replay after a restart): nothing was done.
    AlreadyApplied,
    /// An entry without a command: only the applied index moved.
    Noop,
    /// The command was applied; the answer for the client.
    Response(Response),
    /// The command was refused with an etcd request error (or could not be decoded); the
    /// applied index moved, nothing else changed.
    Rejected(Error),
}

/// A summary for `Maintenance.Status` and monitoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    /// Index of the last applied entry.
    pub applied_index: u64,
    /// Its term.
    pub applied_term: u64,
    /// The store revision.
    pub revision: i64,
    /// The compact revision.
    pub compact_revision: i64,
    /// Index of the last durable (or restored) snapshot; 0 for none.
    pub snapshot_index: u64,
}

/// How long [`KvStore::open`] waits for a directory lock held by another store.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Whether sled refused to open because another store holds the directory's lock.
fn is_lock_busy(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl KvStore {
    /// Opens (or creates) the store in a sled database at `path`.
    ///
    /// sled locks the directory for one process. A store dropped a moment ago in this
    /// process may still hold that lock while sled's background threads wind down, so a
    /// lock held elsewhere is retried for up to [`LOCK_WAIT`] before the error is returned.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match sled::open(path) {
                Ok(db) => return Self::with_db(db),
                Err(e) if is_lock_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A store in a temporary sled database, removed when dropped (tests, simulations).
    pub fn open_temporary() -> Result<Self> {
        Self::with_db(sled::Config::new().temporary(true).open()?)
    }

    /// Opens the store in the tree [`TREE_NAME`] of an open sled database.
    pub fn with_db(db: sled::Db) -> Result<Self> {
        let tree = db.open_tree(TREE_NAME)?;
        match tree.get(meta_key(meta::LAYOUT))? {
            Some(v) if v.as_ref() == [LAYOUT_VERSION] => {}
            // Converted below, after the stale pre-images are gone.
            Some(v) if v.as_ref() == [1] => {}
            Some(v) => return Err(Error::corrupt(format!("unsupported layout version {v:?}"))),
            None if tree.is_empty() => {
                let mut b = sled::Batch::default();
                b.insert(meta_key(meta::LAYOUT), &[LAYOUT_VERSION]);
                b.insert(meta_key(meta::REVISION), &INITIAL_REVISION.to_be_bytes());
                tree.apply_batch(b)?;
            }
            None => return Err(Error::corrupt("layout version missing")),
        }
        // A capture does not survive a restart: its pre-images are garbage now.
        remove_space(&tree, COW, |_| true)?;
        crate::snapshot::upgrade_layout(&tree)?;
        let state = State::load(&tree)?;
        tracing::debug!(
            applied_index = state.applied_index,
            revision = state.revision,
            "raft-kv store opened"
        );
        Ok(KvStore {
            shared: Arc::new(Shared {
                db,
                tree,
                state: RwLock::new(state),
                cow: Mutex::new(CowState::new()),
            }),
        })
    }

    /// Index of the last applied entry (0 for a new store).
    pub fn applied_index(&self) -> u64 {
        self.shared.state.read().applied_index
    }

    /// The store revision ([`INITIAL_REVISION`] for a new store, as in etcd).
    pub fn revision(&self) -> i64 {
        self.shared.state.read().revision
    }

    /// The compact revision (0 until a `Compact`).
    pub fn compact_revision(&self) -> i64 {
        self.shared.state.read().compact_revision
    }

    /// The member list, by id.
    pub fn members(&self) -> Vec<Member> {
        self.shared.state.read().members.values().cloned().collect()
    }

    /// Applied index and term, revisions and snapshot index at one instant.
    pub fn status(&self) -> StoreStatus {
        let s = self.shared.state.read();
        StoreStatus {
            applied_index: s.applied_index,
            applied_term: s.applied_term,
            revision: s.revision,
            compact_revision: s.compact_revision,
            snapshot_index: s.snapshot_index,
        }
    }

    /// True while a snapshot restore is unfinished (also after a crash in the middle of
    /// one): the store then refuses apply and reads until a restore completes.
    pub fn restore_pending(&self) -> bool {
        self.shared.state.read().restoring
    }

    /// Bytes the sled database uses on disk (for `Maintenance.Status`).
    pub fn db_size(&self) -> Result<u64> {
        Ok(self.shared.db.size_on_disk()?)
    }

    /// Sets how many bytes of copy-on-write pre-images a running capture keeps in memory
    /// (default [`DEFAULT_PRE_IMAGE_BUDGET`](crate::DEFAULT_PRE_IMAGE_BUDGET), 64 MiB); past
    /// it, pre-images are written to sled with the batch that makes them. Takes effect for
    /// the pre-images made from now on.
    pub fn set_pre_image_budget(&self, bytes: usize) {
        self.shared.cow.lock().budget = bytes;
    }

    /// Makes everything applied so far durable (one fsync). Apply does not sync by itself:
    /// after a crash the log replays what sled lost, from the stored applied index.
    pub fn flush(&self) -> Result<()> {
        self.shared.tree.flush()?;
        Ok(())
    }

    /// Applies one committed command at `index` (see [`apply_batch`](Self::apply_batch)).
    pub fn apply(&self, index: u64, term: u64, cmd: &Command) -> Result<ApplyResult> {
        let mut r = self.apply_batch(&[ApplyEntry {
            index,
            term,
            payload: EntryPayload::Command(cmd),
        }])?;
        Ok(r.pop().expect("one result per entry"))
    }

    /// Applies a configuration change at `index`: the member list becomes `members` (a
    /// member's published name and client URLs are kept when the new entry has none).
    pub fn apply_membership(
        &self,
        index: u64,
        term: u64,
        members: &[Member],
    ) -> Result<ApplyResult> {
        let mut r = self.apply_batch(&[ApplyEntry {
            index,
            term,
            payload: EntryPayload::Members(members),
        }])?;
        Ok(r.pop().expect("one result per entry"))
    }

    /// Applies committed entries in order with one atomic sled write that also stores the
    /// last entry's index and term as the applied index.
    ///
    /// Entries at or below the applied index are skipped ([`Outcome::AlreadyApplied`]), so
    /// replaying the log after a restart is harmless. Returns one result per entry. An `Err`
    /// (storage failure) means nothing of the batch was applied.
    pub fn apply_batch(&self, entries: &[ApplyEntry<'_>]) -> Result<Vec<ApplyResult>> {
        let mut results = Vec::new();
        self.apply_batch_answering(entries, |r| results = r)?;
        Ok(results)
    }

    /// [`apply_batch`](Self::apply_batch) that hands the results to `answer` as soon as
    /// they are computed, before the sled write, so callers can answer clients while it
    /// runs. Readers are held from just before `answer` until the write is done: a read
    /// that starts after `answer` sees the batch. `answer` is called exactly once when
    /// this returns `Ok`. An `Err` after `answer` (the sled write failed) leaves the store
    /// as it was; applying the same entries again computes the same results.
    pub fn apply_batch_answering(
        &self,
        entries: &[ApplyEntry<'_>],
        answer: impl FnOnce(Vec<ApplyResult>),
    ) -> Result<()> {
        let shared = &*self.shared;
        let guard = shared.state.upgradable_read();
        if guard.restoring {
            return Err(Error::RestoreIncomplete);
        }
        let mut batch = Batch {
            tree: &shared.tree,
            overlay: Overlay::new(),
            // Reading the capture's progress once per batch spares the keys it has passed.
            pre: guard
                .capture
                .and_then(|_| BatchReads::new(shared.cow.lock().progress.clone())),
            revision: guard.revision,
            compact_revision: guard.compact_revision,
            members: guard.members.clone(),
            members_changed: false,
        };
        let mut last = (guard.applied_index, guard.applied_term);
        let mut results = Vec::with_capacity(entries.len());
        for e in entries {
            if e.index <= last.0 {
                results.push(ApplyResult {
                    index: e.index,
                    request_id: 0,
                    revision: batch.revision,
                    outcome: Outcome::AlreadyApplied,
                });
                continue;
            }
            let decoded;
            let (request_id, outcome) = match e.payload {
                EntryPayload::Empty => (0, Outcome::Noop),
                EntryPayload::Members(ms) => (
                    0,
                    Outcome::Response(Response::Members(batch.set_members(ms))),
                ),
                EntryPayload::Command(cmd) => (cmd.request_id, execute(&mut batch, &cmd.op)?),
                EntryPayload::Data(data) => match Command::decode(data) {
                    Ok(cmd) => {
                        decoded = cmd;
                        (decoded.request_id, execute(&mut batch, &decoded.op)?)
                    }
                    Err(err) => {
                        tracing::warn!(index = e.index, %err, "undecodable entry applied as rejected");
                        (0, Outcome::Rejected(err))
                    }
                },
            };
            last = (e.index, e.term);
            results.push(ApplyResult {
                index: e.index,
                request_id,
                revision: batch.revision,
                outcome,
            });
        }
        if last.0 == guard.applied_index {
            answer(results);
            return Ok(());
        }
        let mut b = sled::Batch::default();
        let mut spilled = Vec::new();
        if let Some(cap) = guard.capture {
            // Before the batch is written: see `crate::cow` and the snapshot module.
            spilled = shared.cow.lock().preserve(
                &shared.tree,
                cap.number,
                batch.overlay.keys(),
                batch.pre.take().unwrap_or_default(),
                &mut b,
            )?;
        }
        for (key, rec) in &batch.overlay {
            match rec {
                Some(r) => b.insert(prefixed(DATA, key), r.encode()),
                None => b.remove(prefixed(DATA, key)),
            }
        }
        if !batch.overlay.is_empty() {
            b.insert(
                dirty_key(guard.dirty_gen, last.0),
                encode_key_list(batch.overlay.keys().map(Vec::as_slice)),
            );
        }
        b.insert(meta_key(meta::APPLIED_INDEX), &last.0.to_be_bytes());
        b.insert(meta_key(meta::APPLIED_TERM), &last.1.to_be_bytes());
        b.insert(meta_key(meta::REVISION), &batch.revision.to_be_bytes());
        b.insert(
            meta_key(meta::COMPACT_REVISION),
            &batch.compact_revision.to_be_bytes(),
        );
        if batch.members_changed {
            b.insert(
                meta_key(meta::MEMBERS),
                encode_members(batch.members.values()),
            );
        }
        let mut state = RwLockUpgradableReadGuard::upgrade(guard);
        answer(results);
        shared.tree.apply_batch(b)?;
        state.applied_index = last.0;
        state.applied_term = last.1;
        state.revision = batch.revision;
        state.compact_revision = batch.compact_revision;
        if batch.members_changed {
            state.members = batch.members;
        }
        if !spilled.is_empty() {
            shared.cow.lock().spilled_written(spilled);
        }
        Ok(())
    }

    /// Serves `KV.Range` from the current state (header: revision only).
    ///
    /// `revision` must be 0 or the current revision (see the type's documentation).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        self.range_limited(req, usize::MAX)
    }

    /// [`range`](Self::range), refused with [`Error::RangeTooLarge`] once the key and value
    /// bytes it gathers exceed `max_bytes` (before it gathers more).
    pub fn range_limited(&self, req: &RangeRequest, max_bytes: usize) -> Result<RangeResponse> {
        let state = self.shared.state.read();
        if state.restoring {
            return Err(Error::RestoreIncomplete);
        }
        query::check_read_revision(req.revision, state.revision)?;
        let overlay = Overlay::new();
        let view = View {
            tree: &self.shared.tree,
            overlay: &overlay,
        };
        query::range(&view, req, state.revision, max_bytes)
    }

    /// The current version of one key, if it exists.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let state = self.shared.state.read();
        if state.restoring {
            return Err(Error::RestoreIncomplete);
        }
        match self.shared.tree.get(prefixed(DATA, key))? {
            Some(raw) => Ok(Some(crate::Record::decode(&raw)?.to_key_value(key))),
            None => Ok(None),
        }
    }

    /// A CRC-32C over every key and record, for `Maintenance.HashKV` and for comparing
    /// replicas: equal states at equal applied indexes hash alike. `revision` as for a
    /// range (0 or the current one). Returns the hash and the revision it covers.
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64)> {
        let state = self.shared.state.read();
        if state.restoring {
            return Err(Error::RestoreIncomplete);
        }
        query::check_read_revision(revision, state.revision)?;
        let mut crc = crc32c::crc32c(&state.revision.to_be_bytes());
        for item in self.shared.tree.scan_prefix([DATA]) {
            let (k, v) = item?;
            crc = crc32c::crc32c_append(crc, &(k.len() as u64).to_be_bytes());
            crc = crc32c::crc32c_append(crc, &k);
            crc = crc32c::crc32c_append(crc, &(v.len() as u64).to_be_bytes());
            crc = crc32c::crc32c_append(crc, &v);
        }
        Ok((crc, state.revision))
    }

    /// Serves a txn that only reads (every branch, nested ones too, holds only ranges)
    /// locally, without the log; a txn that may write is refused with
    /// [`Error::NotReadOnly`].
    pub fn txn_read_only(&self, req: &TxnRequest) -> Result<TxnResponse> {
        if !crate::validate::txn_is_read_only(req) {
            return Err(Error::NotReadOnly);
        }
        let state = self.shared.state.read();
        if state.restoring {
            return Err(Error::RestoreIncomplete);
        }
        let mut batch = Batch {
            tree: &self.shared.tree,
            overlay: Overlay::new(),
            pre: None,
            revision: state.revision,
            compact_revision: state.compact_revision,
            members: BTreeMap::new(),
            members_changed: false,
        };
        match batch.execute(&Op::Txn(req.clone()))? {
            Response::Txn(t) => Ok(t),
            other => Err(Error::corrupt(format!("txn answered with {other:?}"))),
        }
    }
}

/// Runs one command, turning request errors into [`Outcome::Rejected`].
fn execute(batch: &mut Batch<'_>, op: &Op) -> Result<Outcome> {
    match batch.execute(op) {
        Ok(r) => Ok(Outcome::Response(r)),
        Err(e) if e.is_request_error() => Ok(Outcome::Rejected(e)),
        Err(e) => Err(e),
    }
}

/// Removes the entries of key space `space` whose value satisfies `doomed`, in chunks.
pub(crate) fn remove_space(
    tree: &sled::Tree,
    space: u8,
    mut doomed: impl FnMut(&[u8]) -> bool,
) -> Result<usize> {
    let mut removed = 0;
    let mut b = sled::Batch::default();
    let mut n = 0;
    for item in tree.scan_prefix([space]) {
        let (k, v) = item?;
        if doomed(&v) {
            b.remove(k);
            n += 1;
            if n == 10_000 {
                tree.apply_batch(std::mem::take(&mut b))?;
                removed += n;
                n = 0;
            }
        }
    }
    tree.apply_batch(b)?;
    Ok(removed + n)
}

impl State {
    /// Reads the metadata from the tree.
    pub(crate) fn load(tree: &sled::Tree) -> Result<Self> {
        let u = |name: &[u8]| -> Result<u64> {
            match tree.get(meta_key(name))? {
                Some(v) => be_u64(&v).ok_or_else(|| {
                    Error::corrupt(format!("meta {}", String::from_utf8_lossy(name)))
                }),
                None => Ok(0),
            }
        };
        let members = match tree.get(meta_key(meta::MEMBERS))? {
            Some(v) => decode_members(&v)?.into_iter().map(|m| (m.id, m)).collect(),
            None => BTreeMap::new(),
        };
        let dirty_floor = u(meta::DIRTY_FLOOR)?;
        let dirty_gen = u(meta::DIRTY_GEN)?.max(dirty_floor + 1);
        Ok(State {
            applied_index: u(meta::APPLIED_INDEX)?,
            applied_term: u(meta::APPLIED_TERM)?,
            revision: match tree.get(meta_key(meta::REVISION))? {
                Some(v) => be_u64(&v).ok_or_else(|| Error::corrupt("meta revision"))? as i64,
                None => INITIAL_REVISION,
            },
            compact_revision: u(meta::COMPACT_REVISION)? as i64,
            members,
            dirty_gen,
            dirty_floor,
            snapshot_index: u(meta::SNAPSHOT_INDEX)?,
            capture: None,
            next_capture: 0,
            pending_durable: None,
            restoring: tree.contains_key(meta_key(meta::RESTORING))?,
        })
    }
}
