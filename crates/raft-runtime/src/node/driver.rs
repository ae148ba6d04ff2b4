//! The driver: the tokio task that owns the ticker and the receiving ends of every channel
//! (client requests, proposals, inbound messages, unreachable reports, completion events),
//! waits for the next input and hands it to its [`Group`], then lets the group carry out
//! what the input made ready ([`Group::process_ready`]).
//!
//! It drives one group. The seams a multi-raft driver would widen are here: inputs would
//! arrive tagged with a group id (messages from the transport, events from the log and the
//! apply pool, requests from each group's handle) and be routed to that group; one ticker
//! would tick every group (with housekeeping spread over ticks); one WAL writer and one
//! apply pool would serve all groups through their [`Outlets`](super::group::Outlets); a
//! turn would end with `process_ready` on each group the turn touched; stopping would stop
//! every group, then the shared workers.

use super::group::{Group, ShutdownTx};
use crate::apply::Event;
use crate::error::{Error, Result};
use crate::request::Request;
use crate::state_machine::StateMachine;
use crate::storage::LogStore;
use crate::transport::{Inbound, Transport};
use tokio::sync::mpsc;

/// Ticks between two housekeeping rounds.
const HOUSEKEEPING_TICKS: u32 = 10;

/// The driver of one group, with the receiving ends of its inputs.
pub(crate) struct Driver<SM: StateMachine, S: LogStore, T: Transport> {
    pub group: Group<SM, S, T>,
    /// Control requests (and reads) from the handle.
    pub requests: mpsc::Receiver<Request<SM>>,
    /// Client proposals (held back while the state machine lags).
    pub proposal_rx: mpsc::Receiver<Request<SM>>,
    pub inbound: Inbound,
    /// Completions reported by the log, the apply thread and snapshot transfers.
    pub events: mpsc::UnboundedReceiver<Event>,
}

impl<SM: StateMachine, S: LogStore, T: Transport> Driver<SM, S, T> {
    /// Runs until the handle asks to stop (or every handle is gone) or the group fails,
    /// then stops the group.
    pub(crate) async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.group.cfg.tick);
        let mut housekeeping = 0u32;
        let mut shutdown: Option<ShutdownTx> = None;
        let outcome: Result<()> = loop {
            let step: Result<()> = tokio::select! {
                biased;
                _ = ticker.tick() => {
                    housekeeping += 1;
                    if housekeeping >= HOUSEKEEPING_TICKS {
                        housekeeping = 0;
                        self.group.housekeeping();
                    }
                    self.group.tick()
                }
                Some(ev) = self.events.recv() => self.on_events(ev),
                () = linger_end(self.group.linger_deadline()) => self.group.flush_lingering(),
                Some(msg) = recv_priority(&mut self.inbound.priority) => self.step_all(msg, true),
                Some(msg) = self.inbound.messages.recv() => self.step_all(msg, false),
                Some(id) = self.inbound.unreachable.recv() => {
                    self.group.report_unreachable(id);
                    Ok(())
                }
                r = self.requests.recv() => match r {
                    None => break Ok(()),
                    Some(r) => self.on_requests(r, &mut shutdown),
                },
                Some(r) = self.proposal_rx.recv(), if !self.group.apply_lagging() => {
                    self.on_requests(r, &mut shutdown)
                }
            };
            if let Err(e) = step.and_then(|()| self.group.process_ready()) {
                break Err(e);
            }
            if shutdown.is_some() {
                break Ok(());
            }
        };
        let reason = match &outcome {
            Ok(()) => Error::Shutdown,
            Err(e) => {
                tracing::error!(error = %e, "raft node stopped");
                *self
                    .group
                    .stats
                    .fatal
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                Error::Fatal(e.to_string())
            }
        };
        let flushed = self.stop(reason).await;
        if let Some(tx) = shutdown {
            let _ = tx.send(outcome.and(flushed));
        }
    }

    /// Hands `first` and the events queued behind it to the group.
    fn on_events(&mut self, first: Event) -> Result<()> {
        self.group.on_event(first)?;
        while let Ok(ev) = self.events.try_recv() {
            self.group.on_event(ev)?;
        }
        Ok(())
    }

    /// Steps `first` and the messages queued behind it on the same channel (the priority
    /// one or the other), up to `max_batch_messages`.
    fn step_all(&mut self, first: raft_core::Message, priority: bool) -> Result<()> {
        self.group.step(first)?;
        for _ in 1..self.group.max_batch_messages() {
            let next = match (priority, &mut self.inbound.priority) {
                (true, Some(rx)) => rx.try_recv(),
                _ => self.inbound.messages.try_recv(),
            };
            match next {
                Ok(m) => self.group.step(m)?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Hands `first` and the requests queued behind it to the group (proposals first,
    /// while it takes them); notes a shutdown it was asked for.
    fn on_requests(&mut self, first: Request<SM>, shutdown: &mut Option<ShutdownTx>) -> Result<()> {
        let Self {
            group,
            requests,
            proposal_rx,
            ..
        } = self;
        let asked = group.on_requests(first, |proposals| {
            if proposals {
                proposal_rx.try_recv().ok()
            } else {
                None
            }
            .or_else(|| requests.try_recv().ok())
        })?;
        if asked.is_some() {
            *shutdown = asked;
        }
        Ok(())
    }

    /// Stops: fails what waits (in the group, then in the queues), stops the apply thread
    /// and flushes the log (bounded time).
    async fn stop(&mut self, reason: Error) -> Result<()> {
        let msg = reason.to_string();
        let err = || match &reason {
            Error::Shutdown => Error::Shutdown,
            _ => Error::Fatal(msg.clone()),
        };
        self.group.fail_waiting(err);
        self.requests.close();
        self.proposal_rx.close();
        while let Ok(r) = self.requests.try_recv() {
            fail_request(r, err());
        }
        while let Ok(r) = self.proposal_rx.try_recv() {
            fail_request(r, err());
        }
        self.group.close().await
    }
}

/// Fails a request that will not be handled.
fn fail_request<SM: StateMachine>(r: Request<SM>, e: Error) {
    match r {
        Request::Propose { tx, .. } => drop(tx.send(Err(e))),
        Request::ReadIndex { tx } => drop(tx.send(Err(e))),
        Request::ConfChange { tx, .. } => drop(tx.send(Err(e))),
        Request::Transfer { tx, .. } => drop(tx.send(Err(e))),
        Request::Campaign { tx } => drop(tx.send(Err(e))),
        Request::Status { tx } => drop(tx.send(Err(e))),
        Request::Reconfigure { tx, .. } => drop(tx.send(Err(e))),
        Request::Snapshot { tx } => drop(tx.send(Err(e))),
        Request::Shutdown { tx } => drop(tx.send(Ok(()))),
    }
}

/// Resolves at `at`; never without it.
async fn linger_end(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next message of the priority channel; never ready without one.
async fn recv_priority(
    rx: &mut Option<mpsc::Receiver<raft_core::Message>>,
) -> Option<raft_core::Message> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
