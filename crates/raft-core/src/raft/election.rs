//! Campaigns, pre-votes and votes.

use super::{Raft, Role};
use crate::entry::{Entry, EntryKind, NodeId};
use crate::error::Result;
use crate::log_read::LogRead;
use crate::message::{MessageBody, VoteRequest, VoteResponse};
use crate::quorum::VoteResult;

impl<L: LogRead> Raft<L> {
    fn become_pre_candidate(&mut self) {
        assert_ne!(
            self.role,
            Role::Leader,
            "a leader cannot become a pre-candidate"
        );
        // Term and vote stay: a pre-vote changes nothing durable.
        let term = self.term;
        self.reset(term);
        self.role = Role::PreCandidate;
    }

    fn become_candidate(&mut self) {
        assert_ne!(
            self.role,
            Role::Leader,
            "a leader cannot become a candidate"
        );
        let term = self.term + 1;
        self.reset(term);
        self.vote = Some(self.id);
        self.role = Role::Candidate;
    }

    pub(crate) fn become_leader(&mut self) {
        assert_ne!(
            self.role,
            Role::Follower,
            "a follower cannot become leader directly"
        );
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = Some(self.id);
        let persisted = self.log.persisted_last();
        let me = self.id;
        if let Some(pr) = self.tracker.progress.get_mut(&me) {
            pr.maybe_update(persisted);
            pr.become_replicate();
            pr.recent_active = true;
        }
        let noop = Entry {
            index: self.log.last_index() + 1,
            term: self.term,
            kind: EntryKind::Normal,
            data: bytes::Bytes::new(),
        };
        // No configuration change until the no-op is applied: the log may hold an
        // unapplied change, and a leader must commit an entry of its own term before it
        // changes the configuration (otherwise an uncommitted change of an earlier term,
        // in force on a node that still holds it, could be disjoint from this one's).
        self.pending_conf_index = noop.index;
        self.log.append(std::slice::from_ref(&noop));
        self.bcast_pending = true;
    }

    /// Starts an election (with a pre-vote round first unless `transfer` or pre-vote is
    /// off).
    pub(crate) fn campaign(&mut self, transfer: bool) -> Result<()> {
        if !self.promotable() || self.role == Role::Leader {
            return Ok(());
        }
        let pre_vote = self.cfg.pre_vote && !transfer;
        if pre_vote {
            self.become_pre_candidate();
            // A pre-vote for ourselves changes nothing durable: count it at once.
            self.tracker.record_vote(self.id, true);
        } else {
            self.become_candidate();
            // Our own vote is recorded once the hard state holding it is durable
            // (`on_hard_state_persisted`).
        }
        if self.tally_votes()? != VoteResult::Pending {
            return Ok(());
        }
        let req = VoteRequest {
            pre_vote,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term()?,
            transfer,
        };
        let term = if pre_vote { self.term + 1 } else { self.term };
        let voters: Vec<NodeId> = self
            .tracker
            .membership
            .voters
            .union(&self.tracker.membership.voters_outgoing)
            .copied()
            .filter(|id| *id != self.id)
            .collect();
        for id in voters {
            self.msgs.push(crate::message::Message {
                from: self.id,
                to: id,
                term,
                body: MessageBody::Vote(req.clone()),
            });
        }
        Ok(())
    }

    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: u64,
        req: VoteRequest,
    ) -> Result<()> {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (req.pre_vote && term > self.term);
        let up_to_date = self
            .log
            .is_up_to_date(req.last_log_index, req.last_log_term)?;
        let granted = can_vote && up_to_date;
        let body = MessageBody::VoteResponse(VoteResponse {
            pre_vote: req.pre_vote,
            granted,
        });
        if req.pre_vote {
            // A granted pre-vote answers in the term asked about, so the pre-candidate
            // does not mistake it for a stale reply. Nothing durable changed.
            let t = if granted { term } else { self.term };
            self.msgs.push(crate::message::Message {
                from: self.id,
                to: from,
                term: t,
                body,
            });
        } else {
            if granted {
                self.election_elapsed = 0;
                self.vote = Some(from);
            }
            // The vote must be durable before the candidate hears of it.
            let t = self.term;
            self.send_after_persist(from, t, body);
        }
        Ok(())
    }

    pub(crate) fn handle_vote_response(&mut self, from: NodeId, r: VoteResponse) -> Result<()> {
        let expected_pre = self.role == Role::PreCandidate;
        if r.pre_vote != expected_pre {
            return Ok(());
        }
        self.tracker.record_vote(from, r.granted);
        self.tally_votes()?;
        Ok(())
    }

    /// Acts on the election result so far.
    pub(crate) fn tally_votes(&mut self) -> Result<VoteResult> {
        let result = self.tracker.tally();
        match (self.role, result) {
            (Role::PreCandidate, VoteResult::Won) => self.campaign_after_pre_vote()?,
            (Role::Candidate, VoteResult::Won) => self.become_leader(),
            (Role::PreCandidate | Role::Candidate, VoteResult::Lost) => {
                let term = self.term;
                self.become_follower(term, None);
            }
            _ => {}
        }
        Ok(result)
    }

    fn campaign_after_pre_vote(&mut self) -> Result<()> {
        // Run the real election; `campaign` with pre-vote off for this round.
        let pre = self.cfg.pre_vote;
        self.cfg.pre_vote = false;
        let r = self.campaign(false);
        self.cfg.pre_vote = pre;
        r
    }
}
