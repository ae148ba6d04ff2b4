//! The [`StateMachine`] trait: what the runtime applies committed entries to.

use crate::error::BoxError;
use bytes::Bytes;
use raft_core::{ConfChange, Membership, SnapshotMeta};

/// What a committed entry carries, as the state machine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// An application command (the bytes given to `RaftHandle::propose`).
    Command(Bytes),
    /// The empty entry a new leader appends; only moves the applied index.
    Empty,
    /// A membership change. The runtime applies it to the protocol itself; the state
    /// machine only records that the index is applied (and may keep its own view, e.g. to
    /// list members).
    ConfChange {
        /// The change as proposed.
        change: ConfChange,
        /// The membership once it is applied; `None` when the change is refused (every
        /// node refuses it the same way and the membership stays as it was).
        membership: Option<Membership>,
    },
}

/// One committed entry to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Its log index. Invariant: consecutive within and across batches.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// What it says.
    pub payload: Payload,
}

/// Work that builds a snapshot from a view captured by [`StateMachine::snapshot`]; it runs
/// on its own thread while applying continues (copy-on-write).
pub type SnapshotBuilder = Box<dyn FnOnce() -> Result<(), BoxError> + Send + 'static>;

/// The replicated application: it applies committed entries in log order.
///
/// Every method runs on the runtime's apply thread, never on the protocol loop, so they
/// may block on the disk.
pub trait StateMachine: Send + 'static {
    /// The result of one command, returned to the client that proposed it.
    type Response: Send + 'static;

    /// Applies a batch of consecutive committed entries and returns exactly one response per
    /// entry, in order (responses for [`Payload::Empty`] and [`Payload::ConfChange`]
    /// entries are discarded; return any value, e.g. a "nothing" variant). A command the
    /// application refuses is a normal response (e.g. an error value inside it); an `Err`
    /// means the state machine itself failed (disk error) and stops the node.
    ///
    /// The state machine must store its applied index with the data (atomically) so that a
    /// restart does not apply entries again.
    fn apply(&mut self, batch: &[Committed]) -> Result<Vec<Self::Response>, BoxError>;

    /// Applies a batch like [`apply`](Self::apply), but hands the responses to `answer` as
    /// soon as they are final, which may be before the batch is written to the state
    /// machine's own storage: the runtime answers the waiting clients from `answer` while
    /// the write goes on. This is what the runtime calls; the default applies, then answers.
    ///
    /// An implementation that answers early must:
    /// - call `answer` exactly once, with one response per entry, before returning `Ok`;
    /// - keep every read that starts after `answer` from seeing the state before the batch
    ///   (e.g. hold a lock that readers take from before `answer` until the write is done),
    ///   so a client that was answered reads its own write;
    /// - compute responses that a replay of the same entries after a crash would compute
    ///   again (they are deterministic in the entries and the state before them), since an
    ///   `Err` after `answer` stops the node and the batch is applied again from the log at
    ///   the next start.
    ///
    /// Answering before the write is safe for the protocol: the entries are committed, so
    /// they are durable in the log of a majority.
    fn apply_and_answer(
        &mut self,
        batch: &[Committed],
        answer: &mut dyn FnMut(Vec<Self::Response>),
    ) -> Result<(), BoxError> {
        let responses = self.apply(batch)?;
        answer(responses);
        Ok(())
    }

    /// The index of the last entry applied (durably or not: entries after the durable
    /// applied index are applied again after a crash, from the log). 0 when empty.
    fn applied_index(&self) -> u64;

    /// Captures a consistent view of the state as of [`applied_index`](Self::applied_index)
    /// quickly and returns the work that writes it as the snapshot described by `meta`, so
    /// that peers can be sent it and the log compacted up to it. `meta.index` is the
    /// applied index (the runtime describes the state as it is when it asks: its index,
    /// that entry's term and the membership as of it).
    /// The default refuses (the log is then never compacted).
    fn snapshot(&mut self, meta: &SnapshotMeta) -> Result<SnapshotBuilder, BoxError> {
        let _ = meta;
        Err("this state machine does not build snapshots".into())
    }

    /// Replaces the whole state by the snapshot described by `meta`, whose data reached
    /// this node out of band (the transport stored it). Afterwards
    /// [`applied_index`](Self::applied_index) is `meta.index`. The default accepts only the
    /// empty bootstrap snapshot (index 0) of a node joining a cluster.
    fn restore(&mut self, meta: &SnapshotMeta) -> Result<(), BoxError> {
        if meta.index == 0 {
            Ok(())
        } else {
            Err("this state machine cannot restore snapshots".into())
        }
    }
}
