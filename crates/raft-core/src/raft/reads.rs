//! Linearizable reads: ReadIndex confirmed by a heartbeat round, and lease reads.

use super::{Raft, Role};
use crate::config::ReadMode;
use crate::entry::NodeId;
use crate::error::{Error, Result};
use crate::log_read::LogRead;
use crate::message::{MessageBody, ReadIndexRequest, ReadIndexResponse};
use crate::read_only::ReadState;
use bytes::Bytes;

impl<L: LogRead> Raft<L> {
    /// A local read request: served through the leader.
    pub(crate) fn read_index(&mut self, context: Bytes) -> Result<()> {
        match self.role {
            Role::Leader => {
                self.leader_read(context, None);
                Ok(())
            }
            _ => match self.leader {
                Some(leader) => {
                    self.send(leader, MessageBody::ReadIndex(ReadIndexRequest { context }));
                    Ok(())
                }
                None => Err(Error::NoLeader),
            },
        }
    }

    /// True when this leader has committed an entry of its own term (so its commit index
    /// is at least that of any previous leader).
    fn committed_in_term(&self) -> bool {
        self.log
            .term(self.log.committed)
            .is_ok_and(|t| t == self.term)
    }

    fn lease_valid(&self) -> bool {
        let ReadMode::Lease { drift_margin_ticks } = self.cfg.read_mode else {
            return false;
        };
        let Some(start) = self.reads.lease_start else {
            return false;
        };
        if self.lead_transferee.is_some() {
            // The transfer target campaigns without waiting for stickiness to expire.
            return false;
        }
        self.now < start + self.cfg.election_timeout_base_ticks - drift_margin_ticks
    }

    pub(crate) fn leader_read(&mut self, context: Bytes, from: Option<NodeId>) {
        if !self.committed_in_term() {
            self.reads_before_commit.push((context, from));
            return;
        }
        let index = self.log.committed;
        if self.lease_valid() {
            self.answer_read(context, index, from);
            return;
        }
        // Confirmed by the next heartbeat round, broadcast at the next flush.
        self.reads.add(context, index, from);
    }

    fn answer_read(&mut self, context: Bytes, index: u64, from: Option<NodeId>) {
        match from {
            None | Some(0) => self.read_states.push(ReadState { context, index }),
            Some(f) if f == self.id => self.read_states.push(ReadState { context, index }),
            Some(f) => {
                self.send(
                    f,
                    MessageBody::ReadIndexResponse(ReadIndexResponse { context, index }),
                );
                // The reader waits until it has applied `index`: with `lazy_commit` it would
                // otherwise learn that commit at the next tick.
                if let Some(pr) = self.tracker.progress.get_mut(&f) {
                    pr.awaits_commit = pr.awaits_commit.max(index);
                    if pr.sent_commit < index {
                        self.bcast_pending = true;
                    }
                }
            }
        }
    }

    /// Releases the reads confirmed by the rounds a quorum has acknowledged.
    pub(crate) fn check_read_quorum(&mut self) {
        let round = self.tracker.quorum_round(self.id, self.reads.sent);
        for r in self.reads.confirm(round) {
            self.answer_read(r.context, r.index, r.from);
        }
    }

    /// The first entry of this term got committed: serve the reads that waited for it.
    pub(crate) fn on_commit_in_term(&mut self) {
        if self.reads_before_commit.is_empty() || !self.committed_in_term() {
            return;
        }
        for (context, from) in std::mem::take(&mut self.reads_before_commit) {
            self.leader_read(context, from);
        }
    }
}
