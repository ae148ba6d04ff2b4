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
    /// A leader appends proposals only while it is a voter of the configuration in force:
    /// one that proposed (or inherited) a change ending its own vote appends nothing after
    /// it, and hands over once that change is applied (see `hand_over_leadership`).
    fn check_can_propose(&self) -> Result<()> {
        if self.lead_transferee.is_some() {
            return Err(Error::ProposalDropped("leadership transfer in progress"));
        }
        debug_assert_eq!(
            self.votes_in_force,
            self.tracker.membership.is_voter(self.id),
            "votes_in_force follows the configuration in force"
        );
        if !self.votes_in_force {
            return Err(Error::ProposalDropped("this leader is no longer a voter"));
        }
        Ok(())
    }

    /// Counts `bytes` of new entries against `Config::max_uncommitted_bytes`, or refuses
    /// them (one batch always passes when nothing is uncommitted).
    fn admit_uncommitted(&mut self, bytes: u64) -> Result<()> {
        let after = self.uncommitted_bytes.saturating_add(bytes);
        if self.uncommitted_bytes > 0 && after > self.cfg.max_uncommitted_bytes {
            return Err(Error::ProposalDropped(
                "too many uncommitted bytes (max_uncommitted_bytes)",
            ));
        }
        self.uncommitted_bytes = after;
        Ok(())
    }

    /// Committed entries were handed out: they no longer count as uncommitted.
    pub(crate) fn reduce_uncommitted(&mut self, ents: &[Entry]) {
        if self.uncommitted_bytes == 0 {
            return;
        }
        let bytes: u64 = ents.iter().map(|e| e.data.len() as u64).sum();
        self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(bytes);
    }

    /// True when `cc`, applied to `m`, leaves this node without a vote.
    fn ends_own_vote(&self, m: &Membership, cc: &ConfChange) -> bool {
        confchange::apply(m, cc).is_ok_and(|next| !next.is_voter(self.id))
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
        self.admit_uncommitted(data.len() as u64)?;
        self.log.append_one(Entry {
            index: self.log.last_index() + 1,
            term: self.term,
            kind: EntryKind::Normal,
            data,
        });
        self.bcast_pending = true;
        Ok(())
    }

    /// Appends proposals to the leader's log (index and term are assigned here), or
    /// forwards them to the leader.
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
        self.append_proposals(&mut ents)
    }

    /// Proposals forwarded by `from`: appended or forwarded, or else sent back dropped, so
    /// the node that holds their callers can answer them.
    pub(crate) fn propose_forwarded(&mut self, from: NodeId, mut ents: Vec<Entry>) {
        let ok = match (self.role, self.leader) {
            (Role::Leader, _) => {
                let ok = self.append_proposals(&mut ents).is_ok();
                if let (true, Some(pr)) = (ok, self.tracker.progress.get_mut(&from)) {
                    pr.awaits_commit = pr.awaits_commit.max(self.log.last_index());
                }
                ok
            }
            (_, Some(leader)) if leader != from => {
                self.send(leader, MessageBody::Propose(ents));
                return;
            }
            _ => false,
        };
        if !ok {
            self.send(from, MessageBody::ProposeDropped(ents));
        }
    }

    /// The leader's side of [`propose_entries`](Self::propose_entries).
    fn append_proposals(&mut self, ents: &mut [Entry]) -> Result<()> {
        self.check_can_propose()?;
        let last = self.log.last_index();
        let n = ents.len();
        let mut pending_conf = self.pending_conf_index;
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
                pending_conf = e.index;
            }
        }
        self.admit_uncommitted(ents.iter().map(|e| e.data.len() as u64).sum())?;
        self.pending_conf_index = pending_conf;
        self.log.append(ents);
        self.bcast_pending = true;
        // A change takes effect once in the log.
        self.sync_config(false);
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

    /// The application applied up to `index`: changes at or before it are settled.
    /// Returns the configuration of the last change applied, if any.
    #[inline]
    pub(crate) fn on_applied_configs(&mut self, index: u64) -> Option<Membership> {
        let applied = self.log.confs.advance_base(index)?;
        self.settle_applied_config();
        Some(applied)
    }

    /// The rare part of [`on_applied_configs`](Self::on_applied_configs): a change was
    /// applied.
    #[inline(never)]
    fn settle_applied_config(&mut self) {
        self.sync_config(true);
        if self.role == Role::Leader
            && !self.tracker.membership.is_voter(self.id)
            && self.lead_transferee.is_none()
        {
            // Errors here are storage failures while sending; the transfer times out and
            // the node steps down (see `tick_leader`).
            let _ = self.hand_over_leadership();
        }
    }

    /// The change that ended this leader's vote is applied: it hands over to the most
    /// up-to-date voter, and steps down if that fails in time.
    ///
    /// The leader appended nothing after that change (proposals are refused from the moment
    /// the change is in its log), so once it is applied the leader's whole log is
    /// committed and any voter of the configuration in force can win.
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
