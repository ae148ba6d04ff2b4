//! Proposals, configuration changes (joint consensus) and leadership transfer.

use super::{Raft, Role};
use crate::confchange;
use crate::entry::{Entry, EntryKind, NodeId};
use crate::error::{Error, Result};
use crate::log_read::LogRead;
use crate::membership::{ConfChange, Membership};
use crate::message::MessageBody;
use bytes::Bytes;

impl<L: LogRead> Raft<L> {
    fn check_can_propose(&self) -> Result<()> {
        if self.lead_transferee.is_some() {
            return Err(Error::ProposalDropped("leadership transfer in progress"));
        }
        if !self.promotable() {
            return Err(Error::ProposalDropped("this leader is no longer a voter"));
        }
        if self.demotion_pending && self.pending_conf_index > self.log.applied {
            return Err(Error::ProposalDropped(
                "a configuration change that ends this leader's vote is not applied yet",
            ));
        }
        Ok(())
    }

    /// True when `cc`, applied to `m`, leaves this node without a vote.
    fn ends_own_vote(&self, m: &Membership, cc: &ConfChange) -> bool {
        confchange::apply(m, cc).is_ok_and(|next| !next.is_voter(self.id))
    }

    /// True when a configuration change in the log past the applied index ends this
    /// node's vote (read by a new leader; an unreadable log counts as true, which only
    /// delays proposals until the log is applied).
    pub(crate) fn unapplied_log_demotes_self(&self) -> bool {
        let mut m = self.tracker.membership.clone();
        let mut lo = self.log.applied + 1;
        let hi = self.log.last_index() + 1;
        while lo < hi {
            let Ok(ents) = self.log.slice(lo, hi, self.cfg.max_bytes_per_append) else {
                return true;
            };
            let Some(last) = ents.last() else {
                return true;
            };
            lo = last.index + 1;
            for e in ents.iter().filter(|e| e.kind == EntryKind::ConfChange) {
                let Ok(cc) = confchange::decode(&e.data) else {
                    continue;
                };
                if self.ends_own_vote(&m, &cc) {
                    return true;
                }
                // A refused change leaves the configuration as it is, on every node.
                if let Ok(next) = confchange::apply(&m, &cc) {
                    m = next;
                }
            }
        }
        false
    }

    /// One application command: the common case, without a temporary vector.
    pub(crate) fn propose_normal(&mut self, data: Bytes) -> Result<()> {
        if self.role != Role::Leader {
            let e = Entry {
                data,
                ..Entry::default()
            };
            return self.propose_entries(vec![e]);
        }
        self.check_can_propose()?;
        self.log.append_one(Entry {
            index: self.log.last_index() + 1,
            term: self.term,
            kind: EntryKind::Normal,
            data,
        });
        self.bcast_pending = true;
        Ok(())
    }

    /// Appends proposals to the leader's log (index and term are assigned here).
    pub(crate) fn propose_entries(&mut self, mut ents: Vec<Entry>) -> Result<()> {
        if self.role != Role::Leader {
            return match self.leader {
                Some(leader) => {
                    self.send(leader, MessageBody::Propose(ents));
                    Ok(())
                }
                None => Err(Error::NoLeader),
            };
        }
        self.check_can_propose()?;
        let last = self.log.last_index();
        let n = ents.len();
        let mut pending_conf = self.pending_conf_index;
        let mut demotes = None;
        for (i, e) in ents.iter_mut().enumerate() {
            e.index = last + 1 + i as u64;
            e.term = self.term;
            if e.kind == EntryKind::ConfChange {
                // One change in flight at a time: the previous one must be applied.
                if pending_conf > self.log.applied {
                    return Err(Error::ConfChangeRejected(format!(
                        "the change at index {pending_conf} is not applied yet (applied {})",
                        self.log.applied
                    )));
                }
                let cc = confchange::decode(&e.data)?;
                confchange::apply(&self.tracker.membership, &cc)
                    .map_err(Error::ConfChangeRejected)?;
                let ends_vote = self.ends_own_vote(&self.tracker.membership, &cc);
                if ends_vote && i + 1 < n {
                    return Err(Error::ProposalDropped(
                        "nothing may follow a configuration change that ends this leader's vote",
                    ));
                }
                demotes = Some(ends_vote);
                pending_conf = e.index;
            }
        }
        self.pending_conf_index = pending_conf;
        if let Some(d) = demotes {
            // From here this leader appends nothing more until the change is applied
            // (see `hand_over_leadership`).
            self.demotion_pending = d;
        }
        self.log.append(&ents);
        self.bcast_pending = true;
        Ok(())
    }

    pub(crate) fn needs_auto_leave(&self) -> bool {
        self.role == Role::Leader
            && self.tracker.membership.is_joint()
            && self.tracker.membership.auto_leave
            && self.pending_conf_index <= self.log.applied
            && self.lead_transferee.is_none()
    }

    pub(crate) fn propose_auto_leave(&mut self) -> Result<()> {
        let e = Entry {
            kind: EntryKind::ConfChange,
            data: confchange::encode(&ConfChange::default()),
            ..Entry::default()
        };
        self.propose_entries(vec![e])
    }

    /// Applies a committed configuration change; returns the new membership, or `None`
    /// when the change is refused (all nodes refuse it the same way).
    pub(crate) fn apply_conf_change(&mut self, cc: &ConfChange) -> Option<Membership> {
        let next = confchange::apply(&self.tracker.membership, cc).ok()?;
        let last = self.log.last_index();
        self.tracker.set_membership(next.clone(), last + 1);
        if let Some(t) = self.lead_transferee
            && !next.voters.contains(&t)
        {
            self.lead_transferee = None;
        }
        if self.role == Role::Leader {
            self.maybe_commit();
            self.bcast_pending = true;
            if !next.is_voter(self.id) {
                // Errors here are storage failures while sending; the transfer times out
                // and the node steps down (see `tick_leader`).
                let _ = self.hand_over_leadership();
            }
        }
        Some(next)
    }

    /// This leader is no longer a voter: it keeps leading (proposals refused) only to hand
    /// over to the most up-to-date voter, and steps down if that fails in time.
    ///
    /// Voters that have not learned that the change committed still count this node and
    /// may need its vote, while it can no longer campaign. Its vote goes only to a log at
    /// least as up to date as its own, so its log must not run ahead of what they can
    /// hold: a leader appends nothing after a change that ends its own vote (proposals
    /// are refused from the proposal of that change, or from the election of a leader
    /// whose unapplied log holds one, until it is applied). When the change applies, the
    /// leader's whole log is committed (the commit index reached the change, or the
    /// leader's no-op after it), so a quorum holds its last entry and any of them can
    /// win its vote.
    fn hand_over_leadership(&mut self) -> Result<()> {
        let target = self
            .tracker
            .membership
            .voters
            .iter()
            .copied()
            .max_by_key(|id| self.tracker.progress.get(id).map_or(0, |p| p.matched));
        let Some(target) = target else {
            let term = self.term;
            self.become_follower(term, None);
            return Ok(());
        };
        self.lead_transferee = None;
        self.transfer_leader(target)
    }

    pub(crate) fn transfer_leader(&mut self, target: NodeId) -> Result<()> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if target == self.id {
            self.lead_transferee = None;
            return Ok(());
        }
        if !self.tracker.membership.voters.contains(&target) {
            return Err(Error::NotAVoter(target));
        }
        if self.lead_transferee == Some(target) {
            return Ok(());
        }
        self.lead_transferee = Some(target);
        self.transfer_elapsed = 0;
        let caught_up = self.tracker.progress[&target].matched == self.log.last_index();
        if caught_up {
            self.send(target, MessageBody::TimeoutNow);
        } else {
            self.maybe_send_append(target, true)?;
        }
        Ok(())
    }
}
