//! [`RaftNode::start`] and the event loop that drives the `RawNode`.
//!
//! The event loop is two parts. A [`Group`](group::Group) is one Raft group: the `RawNode`,
//! the clients waiting on it, the `Ready`s in flight, what was handed to be applied, and
//! all the logic that carries out `Ready`s and follows what comes back. The
//! [`Driver`](driver::Driver) is the tokio task around it: it owns the ticker and the
//! receiving ends of the channels, waits for an input and calls the group
//! (`tick`, `step`, `on_requests`, `on_event`, ...), then `process_ready`.
//!
//! Today a driver drives exactly one group, and there is no group id. The split is where
//! multi-raft (many groups in one process) would go: a driver holding groups by id, routing
//! each input (messages, completion events, requests) to its group, one ticker for all
//! groups, and one WAL writer and one apply pool shared through the groups'
//! [`Outlets`](group::Outlets) instead of a writer and an apply thread per node.

mod driver;
mod group;

use crate::apply;
use crate::config::RuntimeConfig;
use crate::error::{Error, Result};
use crate::handle::{RaftHandle, Stats};
use crate::state_machine::StateMachine;
use crate::storage::LogStore;
use crate::transport::{Inbound, Transport};
use driver::Driver;
use group::{Group, Outlets, Recovered};
use raft_core::RawNode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::Instrument;

/// Starts nodes.
#[derive(Debug)]
pub struct RaftNode;

impl RaftNode {
    /// Starts a node: recovers from `storage` and `sm` (the state machine's applied index is
    /// respected: nothing at or below it is applied again), spawns the event loop task and
    /// the apply thread, and returns the handle. Must be called inside a tokio runtime.
    ///
    /// The transport gets `add_peer` for every member but this node; `inbound` is what the
    /// network delivers.
    pub async fn start<SM, S, T>(
        config: RuntimeConfig,
        mut storage: S,
        mut sm: SM,
        transport: Arc<T>,
        inbound: Inbound,
    ) -> Result<RaftHandle<SM>>
    where
        SM: StateMachine,
        S: LogStore,
        T: Transport,
    {
        config.validate()?;
        let id = config.raft.id;
        storage.prepare(sm.applied_index(), config.bootstrap.as_ref())?;
        let snap = storage
            .snapshot_meta()
            .map_err(|e| Error::Storage(Box::new(e)))?;
        if sm.applied_index() < snap.index {
            // The log was replaced by a snapshot the state machine has not restored yet
            // (a crash in between): restore it before anything is applied on top.
            sm.restore(&snap).map_err(Error::StateMachine)?;
        }
        let applied = sm.applied_index();
        let mut raft_cfg = config.raft.clone();
        raft_cfg.applied = applied;
        let seed = config.rng_seed.unwrap_or_else(|| {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ id.rotate_left(32)
        });
        let written_hard_state = storage
            .initial_state()
            .map_err(|e| Error::Storage(Box::new(e)))?
            .hard_state;
        let raw = RawNode::new(raft_cfg, storage, seed)?;
        let incarnation = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
            ^ u64::from(std::process::id());

        let (req_tx, req_rx) = mpsc::channel(1024);
        let (prop_tx, prop_rx) = mpsc::channel(config.request_queue);
        let (apply_tx, apply_rx) = std::sync::mpsc::channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let sm = Arc::new(std::sync::Mutex::new(apply::Held::new(sm)));
        let apply_queued = apply::Queued::default();
        apply::spawn(
            id,
            sm.clone(),
            apply_rx,
            ev_tx.clone(),
            stopping.clone(),
            apply_queued.clone(),
        )?;
        let stats = Arc::new(Stats::default());
        let group = Group::new(
            config,
            raw,
            Outlets {
                transport,
                events: ev_tx,
                apply: apply_tx.clone(),
                sm,
                apply_queued,
                stopping,
            },
            Recovered {
                applied,
                snapshot_index: snap.index,
                hard_state: written_hard_state,
                incarnation,
            },
            stats.clone(),
        );
        let driver = Driver {
            group,
            requests: req_rx,
            proposal_rx: prop_rx,
            inbound,
            events: ev_rx,
        };
        // The term is not a span field: recording a new value appends it to every later
        // line ("term=1 term=2 ..."); the events that need it carry it.
        let span = tracing::info_span!("raft", node_id = id);
        tokio::spawn(driver.run().instrument(span));
        Ok(RaftHandle {
            id,
            requests: req_tx,
            proposals: prop_tx,
            apply: apply_tx,
            timeout: None,
            stats,
        })
    }
}
