//! Handing committed entries over to be applied: held back while nobody here waits for
//! them (`apply_linger`), applied on the event loop itself when small and awaited
//! (`apply_inline_max_entries`), or sent to the apply thread, always in log order.

use super::Group;
use crate::apply::{ApplyJob, Waiter};
use crate::envelope;
use crate::error::{Error, Result};
use crate::state_machine::{Committed, Payload, StateMachine};
use crate::storage::LogStore;
use crate::transport::Transport;
use metrics::{counter, histogram};
use raft_core::{Entry, EntryKind, confchange};
use raft_metrics::runtime as m;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The most entries held back for a shared state-machine write before they are applied
/// anyway.
const LINGER_MAX_ENTRIES: usize = 1024;

impl<SM: StateMachine, S: LogStore, T: Transport> Group<SM, S, T> {
    /// Sends a job to the apply thread, after the entries held back (jobs run in log
    /// order).
    pub(crate) fn send_apply(&mut self, job: ApplyJob<SM>) -> Result<()> {
        if !matches!(job, ApplyJob::Entries { .. }) && !self.lingering.is_empty() {
            self.flush_lingering()?;
        }
        self.apply_queued.fetch_add(1, Ordering::AcqRel);
        self.apply_tx
            .send(job)
            .map_err(|_| Error::Fatal("the apply thread stopped".into()))
    }

    /// Sends the entries held back to the apply thread now.
    pub(crate) fn flush_lingering(&mut self) -> Result<()> {
        self.linger_until = None;
        if self.lingering.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.lingering);
        self.send_apply(ApplyJob::Entries {
            batch,
            waiters: Vec::new(),
        })
    }

    /// Whether `batch` (which no client of this node waits for) may be held back: lingering
    /// is on, every entry is a command (no membership change, no new leader's empty entry)
    /// and what is held back stays small.
    fn lingers(&self, batch: &[Committed]) -> bool {
        !self.cfg.apply_linger.is_zero()
            && self.lingering.len() + batch.len() < LINGER_MAX_ENTRIES
            && batch
                .iter()
                .all(|c| matches!(c.payload, Payload::Command(_)))
    }

    /// Applies `batch` on this loop when that keeps the log order and saves a hand-off: a
    /// small batch that a client of this node waits for, with every earlier entry applied
    /// and reported, no job of the loop's queued on the apply thread, and the state machine
    /// free (the apply thread may be serving a read). Otherwise gives the batch back.
    #[allow(clippy::type_complexity)]
    fn apply_here(
        &mut self,
        batch: Vec<Committed>,
        waiters: Vec<(usize, Waiter<SM::Response>)>,
    ) -> Result<Option<(Vec<Committed>, Vec<(usize, Waiter<SM::Response>)>)>> {
        let max = self.cfg.apply_inline_max_entries;
        if max == 0
            || batch.len() > max
            || waiters.is_empty()
            || batch.first().is_none_or(|e| e.index != self.applied + 1)
            || self.apply_queued.load(Ordering::Acquire) != 0
        {
            return Ok(Some((batch, waiters)));
        }
        let sm = self.sm.clone();
        let Ok(mut sm) = sm.try_lock() else {
            return Ok(Some((batch, waiters)));
        };
        counter!(m::APPLY_INLINE).increment(1);
        match crate::apply::apply_entries(&mut *sm, batch, waiters, &self.apply_metrics) {
            Ok(index) => {
                self.inline_applied = index.or(self.inline_applied);
                Ok(None)
            }
            Err(msg) => Err(Error::Fatal(msg)),
        }
    }

    /// Decodes committed entries for the state machine and attaches the clients waiting
    /// for them.
    pub(super) fn hand_to_apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        let now = Instant::now();
        let propose_to_commit = histogram!(m::PROPOSE_TO_COMMIT_SECONDS);
        let bytes: u64 = entries.iter().map(|e| e.data.len() as u64).sum();
        let mut batch = Vec::with_capacity(entries.len());
        let mut waiters: Vec<(usize, Waiter<SM::Response>)> = Vec::new();
        for (i, e) in entries.into_iter().enumerate() {
            let payload = match e.kind {
                EntryKind::ConfChange => match confchange::decode(&e.data) {
                    Ok(change) => {
                        let membership = confchange::apply(&self.handed_membership, &change).ok();
                        if let Some(next) = &membership {
                            self.handed_membership = next.clone();
                        }
                        Payload::ConfChange { change, membership }
                    }
                    Err(_) => Payload::Empty,
                },
                EntryKind::Normal if e.data.is_empty() => Payload::Empty,
                EntryKind::Normal => {
                    let (origin, cmd) = envelope::unwrap(&e.data);
                    if let Some(o) = origin
                        && o.node == self.id
                        && o.incarnation == self.incarnation
                        && let Some(p) = self.proposals.remove(&o.request)
                    {
                        propose_to_commit.record(now.duration_since(p.waiter.since).as_secs_f64());
                        waiters.push((i, p.waiter));
                    }
                    Payload::Command(cmd)
                }
            };
            self.match_conf(&e, &payload);
            batch.push(Committed {
                index: e.index,
                term: e.term,
                payload,
            });
        }
        if let Some(e) = batch.last() {
            self.handed = self.handed.max(e.index);
            self.log_bytes.handed(e.index, bytes);
        }
        // Nobody here waits for these entries: hold them back a little, so that one
        // state-machine write covers several batches (see `RuntimeConfig::apply_linger`).
        if waiters.is_empty() && self.lingers(&batch) {
            self.lingering.extend(batch);
            if self.linger_until.is_none() {
                self.linger_until = Some(tokio::time::Instant::now() + self.cfg.apply_linger);
            }
            return Ok(());
        }
        // Whatever was held back goes first, in the same batch.
        let (batch, waiters) = if self.lingering.is_empty() {
            (batch, waiters)
        } else {
            self.linger_until = None;
            let mut all = std::mem::take(&mut self.lingering);
            let base = all.len();
            all.extend(batch);
            let waiters = waiters.into_iter().map(|(i, w)| (base + i, w)).collect();
            (all, waiters)
        };
        match self.apply_here(batch, waiters)? {
            None => Ok(()),
            Some((batch, waiters)) => self.send_apply(ApplyJob::Entries { batch, waiters }),
        }
    }

    /// Notes when the membership change this node waits for is committed (or overwritten).
    fn match_conf(&mut self, e: &Entry, payload: &Payload) {
        let Some(c) = &mut self.conf else { return };
        if c.committed.is_some() {
            return;
        }
        match c.at {
            Some((index, term)) if index == e.index => {
                if term == e.term {
                    c.committed = Some(index);
                } else if let Some(c) = self.conf.take() {
                    let _ = c.tx.send(Err(Error::Overwritten));
                }
            }
            None => {
                if let Payload::ConfChange { change, .. } = payload
                    && *change == c.change
                {
                    c.committed = Some(e.index);
                }
            }
            _ => {}
        }
    }
}
