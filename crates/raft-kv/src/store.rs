//! [`KvStore`]: the sled-backed etcd state machine with its MVCC history: opening (and
//! converting older layouts), reads at any kept revision, and the metadata the service and
//! snapshots need. Apply lives in `crate::apply`, snapshots in `crate::snapshot`, physical
//! compaction in `crate::compact`, hashes in `crate::hash`.

mod auth;
pub(crate) mod exec;
pub(crate) mod query;
pub(crate) mod view;

pub use exec::Response;

use crate::command::Op;
use crate::cow::CowState;
use crate::error::{Error, Result};
use crate::events::EventSink;
use crate::layout::{COW, DATA, LAYOUT_VERSION, meta, meta_key, prefixed};
use crate::members::Member;
use crate::pb::etcdserverpb::{AlarmMember, RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use crate::pb::mvccpb::KeyValue;
use crate::record::Current;
use crate::state::{CompactionSignal, INITIAL_REVISION, Shared, State, remove_space};
use exec::Batch;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use view::{Overlay, Pending, View};

/// The name of the sled tree holding the whole state machine.
pub const TREE_NAME: &str = "raft-kv";

/// The replicated key-value state machine, on sled, with etcd's MVCC history.
///
/// Cheap to clone (an `Arc`): the apply loop, the gRPC service and snapshot tasks share one.
/// Reads see a consistent state: a whole applied batch or none of it.
///
/// # Semantics
/// etcd v3 MVCC: each key has `create_revision`, `mod_revision`, `version`, `lease` and its
/// value. Like etcd, a new store is at revision 1 (so the first write gets revision 2), and
/// the store revision grows by one per write transaction: a put, a delete-range that deletes
/// something, a txn with at least one write (a txn is one revision, its writes numbered by
/// sub-revision); reads, read-only txns and deletes of nothing leave it alone. Every version
/// of every key is kept until compacted: a `Range` (top-level or in a txn) at any revision
/// from the compact revision to the current one sees the keys as they were then; below it
/// fails with [`Error::Compacted`], above the current revision with
/// [`Error::FutureRevision`]. `Compact(r)` moves the compact revision at once (logical
/// compaction); a background thread then removes what no read can reach any more
/// (physical compaction, `crate::compact`).
///
/// # On-disk layout
/// One sled tree named [`TREE_NAME`]; every sled key starts with a one-byte key space tag.
/// Every applied batch is one `sled::Batch` (atomic, also across crashes) holding the data,
/// the history events, the batch's dirty list, the metadata and the copy-on-write
/// pre-images that do not fit in memory, so the applied index never disagrees with the
/// data. `docs/mvcc.md` explains the layout and its invariants.
///
/// | sled key | value |
/// |---|---|
/// | `b'h' ++ main (u64 BE) ++ sub (u32 BE)` | the history event of the write at that revision: the key, then the key's entry as the write left it (`crate::history`) |
/// | `b'i' ++ name` | internal records of the node, out of reach of clients (`crate::internal`): peer URLs, leases, alarms, users and roles (`crate::auth::record`) |
/// | `b'r' ++ user key length (varint) ++ user key ++ main (u64 BE) ++ sub (u32 BE)` | empty: the per-key revision index, one entry per history event, for reads at old revisions (`crate::revindex`; not in snapshots, rebuilt by restores) |
/// | `b'l' ++ lease id (u64 BE) ++ user key` | empty: the key's current version is attached to the lease (`crate::lease::record`; not in snapshots, rebuilt by restores) |
/// | `b'k' ++ user key` | the key's current entry: its latest version, or the tombstone of its deletion, each linking the revision of its own write and of the key's previous write (`Current` in `crate::record`) |
/// | `b'm' ++ b"applied_index"` / `b"applied_term"` | u64 big-endian |
/// | `b'm' ++ b"revision"` / `b"compact_revision"` | i64 big-endian |
/// | `b'm' ++ b"compact_cursor"` | main (u64 BE) ++ sub (u32 BE): physical compaction processed every event below |
/// | `b'm' ++ b"members"` | prost `etcdserverpb.MemberListResponse` (only `members`) |
/// | `b'm' ++ b"dirty_gen"` / `b"dirty_floor"` | u64 BE: current dirty generation; marks `<=` floor are in a durable snapshot |
/// | `b'm' ++ b"snapshot_index"` / `b"snapshot_revision"` | u64 / i64 BE: index and store revision of the last durable or restored snapshot |
/// | `b'm' ++ b"layout"` | u8: layout version (5) |
/// | `b'm' ++ b"restoring"` | empty; present while a restore is unfinished |
/// | `b'd' ++ generation ++ index` (u64 BE each) | the dirty list of the batch that ended at `index`: the user keys it wrote, each as a varint length and the bytes |
/// | `b'c' ++ capture number (u64 BE) ++ user key` | cow pre-image while that capture runs, when the in-memory ones are over their budget: flags byte (bit 1: the key had an entry) then the entry's encoding |
///
/// Dirty lists are one entry per applied batch, not one per key: a delta capture reads the
/// lists of its generations and sorts their keys in memory, and a durable snapshot retires its
/// generations as a key range (one remove per batch, no lock, see `snapshot::tidy`). History
/// events need no list: a delta holds those above the parent snapshot's revision.
#[derive(Clone)]
pub struct KvStore {
    pub(crate) shared: Arc<Shared>,
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

/// What [`KvStore::defragment`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Defragmented {
    /// [`KvStore::db_size`] before.
    pub size_before: u64,
    /// [`KvStore::db_size`] after.
    pub size_after: u64,
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
    ///
    /// The directory is made durably, and synced once sled has opened it: sled fsyncs its
    /// files but never a directory, so without this a power loss soon after the first start
    /// could lose the files it created there (its `db`, `conf` and `blobs`) whole.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        use raft_fs::Fs as _;
        let path = path.as_ref();
        let dir_err = |e: std::io::Error| Error::Storage(sled::Error::Io(e));
        raft_fs::StdFs.create_dir_all(path).map_err(dir_err)?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match sled::open(path) {
                Ok(db) => {
                    raft_fs::StdFs.sync_dir(path).map_err(dir_err)?;
                    return Self::with_db(db);
                }
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
            Some(v) if matches!(v.as_ref(), [1] | [2] | [3] | [4]) => {}
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
        crate::upgrade::upgrade(&tree)?;
        let state = State::load(&tree)?;
        let mut lessor = crate::lease::Lessor::new(crate::lease::LessorConfig::default());
        lessor.load(
            crate::lease::record::load_all(&tree)?,
            std::time::Instant::now(),
        );
        let auth = crate::auth::record::load(&tree)?;
        let behind =
            state.compact_revision > 0 && state.compact_cursor.main <= state.compact_revision;
        let compaction = Arc::new(CompactionSignal::new(
            state.compact_cursor,
            state.compact_revision,
        ));
        tracing::debug!(
            applied_index = state.applied_index,
            revision = state.revision,
            "raft-kv store opened"
        );
        let store = KvStore {
            shared: Arc::new(Shared {
                db,
                tree,
                state: RwLock::new(state),
                cow: Mutex::new(CowState::new()),
                pins: Mutex::new(BTreeMap::new()),
                compaction,
                sink: RwLock::new(None),
                leases: Mutex::new(lessor),
                auth: RwLock::new(Arc::new(auth)),
                tokens: Mutex::new(Default::default()),
                jwt: RwLock::new(None),
            }),
        };
        if behind {
            // Physical compaction did not finish before the store was closed.
            crate::compact::start(&store.shared);
        }
        Ok(store)
    }

    /// Index of the last applied entry (0 for a new store).
    pub fn applied_index(&self) -> u64 {
        self.shared.state.read().applied_index
    }

    /// The store revision ([`INITIAL_REVISION`] for a new store, as in etcd).
    pub fn revision(&self) -> i64 {
        self.shared.state.read().revision
    }

    /// The compact revision (0 until a `Compact`): reads below it are refused.
    pub fn compact_revision(&self) -> i64 {
        self.shared.state.read().compact_revision
    }

    /// The compact revision up to which physical compaction is done and durable (0 before
    /// the first compaction, and after a restore until compaction ran again).
    pub fn physically_compacted(&self) -> i64 {
        *self.shared.compaction.durable.borrow()
    }

    /// Waits until physical compaction reached `revision` and is durable (what `Compact`
    /// with `physical` set answers after). Waits as long as a running snapshot capture or
    /// hash holds compaction at a lower revision.
    pub async fn wait_compacted(&self, revision: i64) -> Result<()> {
        let mut rx = self.shared.compaction.durable.subscribe();
        rx.wait_for(|done| *done >= revision)
            .await
            .map(|_| ())
            .map_err(|_| Error::corrupt("the compaction signal closed while the store is open"))
    }

    /// [`wait_compacted`](Self::wait_compacted) for threads: false when `timeout` passed
    /// first.
    pub fn wait_compacted_blocking(&self, revision: i64, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.physically_compacted() < revision {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        true
    }

    /// Limits physical compaction to `bytes_per_sec` of history read per second (0:
    /// unlimited, the default), as `snapshot.max_build_rate` paces snapshot builds; the
    /// thread also runs at a lower priority than apply. Takes effect at the next step.
    pub fn set_compaction_rate(&self, bytes_per_sec: u64) {
        self.shared
            .compaction
            .max_rate
            .store(bytes_per_sec, std::sync::atomic::Ordering::Relaxed);
    }

    /// The peer URLs members registered through the log ([`Op::SetPeerUrls`]), by member id.
    pub fn peer_urls(&self) -> Result<BTreeMap<u64, Vec<String>>> {
        crate::internal::peer_urls(&self.shared.tree)
    }

    /// Registers the hub that receives the events of every batch applied from now on
    /// (`None`: nobody listens, and apply builds no events). See [`crate::events`].
    pub fn set_event_sink(&self, sink: Option<Arc<dyn EventSink>>) {
        *self.shared.sink.write() = sink;
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

    /// The active alarms of `Maintenance.Alarm` (etcd's GET: type `NONE` for every type).
    pub fn alarms(&self, alarm: crate::pb::etcdserverpb::AlarmType) -> Vec<AlarmMember> {
        self.shared.state.read().alarms.get(alarm as i32)
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

    /// `Maintenance.Defragment`, the part sled allows: makes everything applied durable
    /// (one flush) and reports the store's size on disk before and after.
    ///
    /// It does not shrink the file, and nothing can while the store is open: sled has no
    /// defragmentation (no compacting copy of a live database). sled's log-structured page
    /// store already reclaims space inside its file in the background: its flusher thread
    /// rewrites the live pages of mostly-garbage segments and reuses the freed segments for
    /// later writes, so after deletes and a (physical) compaction the file stops growing
    /// while new data fills the freed space; but measured, the file itself does not get
    /// smaller (see `compact::tests`). What does shrink it is offline:
    /// [`rebuild_store`](crate::rebuild::rebuild_store) on a closed store (`raftd defrag`).
    pub fn defragment(&self) -> Result<Defragmented> {
        let db = &self.shared.db;
        let size_before = db.size_on_disk()?;
        db.flush()?;
        Ok(Defragmented {
            size_before,
            size_after: db.size_on_disk()?,
        })
    }

    /// Checks the per-key revision index against the history space: every kept history
    /// event has its index entry and every entry names a kept event of its key. Returns the
    /// number of entries, or [`Error::Corrupt`] naming the first mismatch. Reads the whole
    /// history, and is exact only while nothing writes or compacts (a stopped member, tests).
    pub fn check_revision_index(&self) -> Result<usize> {
        crate::revindex::check(&self.shared.tree)
    }

    /// Makes everything applied so far durable (one fsync). Apply does not sync by itself:
    /// after a crash the log replays what sled lost, from the stored applied index.
    pub fn flush(&self) -> Result<()> {
        self.shared.tree.flush()?;
        Ok(())
    }

    /// Serves `KV.Range` (header: revision only) at `req.revision`: 0 for the current
    /// state, else any revision from the compact revision to the current one
    /// ([`Error::Compacted`] below, [`Error::FutureRevision`] above).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        self.range_limited(req, usize::MAX)
    }

    /// [`range`](Self::range), refused with [`Error::RangeTooLarge`] once the key and value
    /// bytes it gathers exceed `max_bytes` (before it gathers more).
    pub fn range_limited(&self, req: &RangeRequest, max_bytes: usize) -> Result<RangeResponse> {
        let state = self.shared.state.read();
        if let Some(e) = state.unusable() {
            return Err(e);
        }
        let at = query::read_revision(req.revision, state.revision, state.compact_revision)?;
        let (overlay, pending) = (Overlay::new(), Pending::new());
        let view = View {
            tree: &self.shared.tree,
            overlay: &overlay,
            pending: &pending,
        };
        query::range(&view, req, state.revision, at, max_bytes)
    }

    /// The current version of one key, if it exists.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let state = self.shared.state.read();
        if let Some(e) = state.unusable() {
            return Err(e);
        }
        match self.shared.tree.get(prefixed(DATA, key))? {
            Some(raw) => Ok(Current::decode(&raw)?
                .into_live()
                .map(|r| r.to_key_value(key))),
            None => Ok(None),
        }
    }

    /// Serves a txn that only reads (every branch, nested ones too, holds only ranges)
    /// locally, without the log; a txn that may write is refused with
    /// [`Error::NotReadOnly`].
    pub fn txn_read_only(&self, req: &TxnRequest) -> Result<TxnResponse> {
        if !crate::validate::txn_is_read_only(req) {
            return Err(Error::NotReadOnly);
        }
        let state = self.shared.state.read();
        if let Some(e) = state.unusable() {
            return Err(e);
        }
        let mut batch = Batch {
            tree: &self.shared.tree,
            overlay: Overlay::new(),
            pending: Pending::new(),
            events: None,
            pre: None,
            revision: state.revision,
            compact_revision: state.compact_revision,
            members: BTreeMap::new(),
            members_changed: false,
            internal: BTreeMap::new(),
            lease: Default::default(),
            alarms: state.alarms.clone(),
            auth: Default::default(),
            index: state.applied_index,
        };
        match batch.execute(&Op::Txn(req.clone()))? {
            Response::Txn(t) => Ok(t),
            other => Err(Error::corrupt(format!("txn answered with {other:?}"))),
        }
    }
}
