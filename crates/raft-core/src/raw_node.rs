//! [`RawNode`]: the public face of the protocol, driven by the caller through `Ready`.

use crate::confchange;
use crate::config::Config;
use crate::entry::{Entry, EntryKind, HardState, NodeId};
use crate::error::{Error, Result};
use crate::log_read::LogRead;
use crate::membership::{ConfChange, Membership};
use crate::message::Message;
use crate::raft::{Raft, Role};
use crate::ready::{Ready, SoftState};
use crate::status::{PeerProgress, Status};
use bytes::Bytes;
use std::collections::{BTreeSet, VecDeque};

/// What one handed-out `Ready` asked to persist.
#[derive(Debug)]
struct PendingWrite {
    number: u64,
    hard_state: Option<HardState>,
    snapshot_index: Option<u64>,
    last_entry: Option<(u64, u64)>,
}

/// A Raft node without I/O: the caller feeds it ticks and messages and carries out the
/// work in its [`Ready`]s (see the crate documentation for the contract).
pub struct RawNode<L: LogRead> {
    raft: Raft<L>,
    prev_soft: SoftState,
    prev_hard: HardState,
    next_number: u64,
    /// Invariant: numbers strictly increase.
    pending_writes: VecDeque<PendingWrite>,
    /// The version of the configuration in force last reported in a `Ready`.
    prev_config_version: u64,
}

impl<L: LogRead> RawNode<L> {
    /// Creates a node from its configuration, its persisted log and a seed for its
    /// random election timeouts.
    ///
    /// See [`InitialState::membership`](crate::InitialState) for the membership `log` must
    /// report.
    pub fn new(config: Config, log: L, rng_seed: u64) -> Result<Self> {
        let raft = Raft::new(config, log, rng_seed)?;
        let prev_hard = raft.hard_state();
        let prev_config_version = raft.log.confs.version();
        Ok(Self {
            prev_soft: SoftState {
                leader: raft.leader,
                role: raft.role,
            },
            prev_hard,
            raft,
            next_number: 1,
            pending_writes: VecDeque::new(),
            prev_config_version,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.raft.id
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) -> Result<()> {
        self.raft.tick()
    }

    /// Processes a message from a peer.
    #[inline]
    pub fn step(&mut self, m: Message) -> Result<()> {
        if m.to != self.raft.id {
            return Err(Error::InvalidMessage("addressed to another node"));
        }
        if m.from == 0 || m.from == self.raft.id {
            return Err(Error::InvalidMessage("bad sender"));
        }
        self.raft.step(m)
    }

    /// Proposes an application command. On a follower it is forwarded to the leader.
    pub fn propose(&mut self, data: Bytes) -> Result<()> {
        self.raft.propose_normal(data)
    }

    /// Proposes several commands at once (one log append).
    pub fn propose_batch(&mut self, data: impl IntoIterator<Item = Bytes>) -> Result<()> {
        let ents = data
            .into_iter()
            .map(|data| Entry {
                kind: EntryKind::Normal,
                data,
                ..Entry::default()
            })
            .collect();
        self.raft.propose_entries(ents)
    }

    /// Proposes a membership change. Refused while another change is not applied, or
    /// when unsafe (see [`crate::confchange::apply`]).
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<()> {
        if self.raft.role == Role::Leader {
            confchange::apply(&self.raft.tracker.membership, &cc)
                .map_err(Error::ConfChangeRejected)?;
        }
        self.raft.propose_entries(vec![Entry {
            kind: EntryKind::ConfChange,
            data: confchange::encode(&cc),
            ..Entry::default()
        }])
    }

    /// Requests a linearizable read; the answer arrives as a `ReadState` with `ctx`.
    pub fn read_index(&mut self, ctx: Bytes) -> Result<()> {
        self.raft.read_index(ctx)
    }

    /// Hands leadership to `target` once it has caught up (leader only).
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<()> {
        self.raft.transfer_leader(target)
    }

    /// Starts an election now (skips the timeout, not the pre-vote).
    pub fn campaign(&mut self) -> Result<()> {
        self.raft.campaign(false)
    }

    /// The transport could not reach `id`: the leader stops pipelining to it and probes.
    pub fn report_unreachable(&mut self, id: NodeId) {
        self.raft.report_unreachable(id);
    }

    /// The transport finished sending a snapshot to `id` (`ok`) or gave up. The transport
    /// must report every `InstallSnapshot` it was handed, failures included: until then the
    /// leader sends nothing else to that peer.
    pub fn report_snapshot(&mut self, id: NodeId, ok: bool) {
        self.raft.report_snapshot(id, ok);
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.raft.leader,
            role: self.raft.role,
        }
    }

    /// True when [`ready`](Self::ready) has work to hand out.
    #[inline]
    pub fn has_ready(&self) -> bool {
        self.soft_state() != self.prev_soft
            || self.raft.hard_state() != self.prev_hard
            || self.raft.log.has_unpersisted()
            || !self.raft.msgs.is_empty()
            || !self.raft.msgs_after_persist.is_empty()
            || self.raft.log.has_next_committed()
            || !self.raft.read_states.is_empty()
            || !self.raft.dropped.is_empty()
            || self.raft.log.confs.version() != self.prev_config_version
            || self.raft.needs_flush()
    }

    /// Takes the pending work. Several `Ready`s may be outstanding (asynchronous
    /// persistence); acknowledge each with [`on_persisted`](Self::on_persisted).
    #[inline]
    pub fn ready(&mut self) -> Result<Ready> {
        self.raft.flush()?;
        let number = self.next_number;
        self.next_number += 1;
        let soft = self.soft_state();
        let soft_state = (soft != self.prev_soft).then_some(soft);
        self.prev_soft = soft;
        let hs = self.raft.hard_state();
        let hard_state = (hs != self.prev_hard).then_some(hs);
        self.prev_hard = hs;
        let (snapshot, entries) = self.raft.log.take_unpersisted();
        let committed_entries = self
            .raft
            .log
            .take_next_committed(self.raft.cfg.max_committed_bytes_per_ready)?;
        if self.raft.role == Role::Leader {
            self.raft.reduce_uncommitted(&committed_entries);
        }
        let version = self.raft.log.confs.version();
        let membership = (version != self.prev_config_version)
            .then(|| Box::new(self.raft.tracker.membership.clone()));
        self.prev_config_version = version;
        self.pending_writes.push_back(PendingWrite {
            number,
            hard_state,
            snapshot_index: snapshot.as_ref().map(|s| s.index),
            last_entry: entries.last().map(|e| (e.index, e.term)),
        });
        Ok(Ready {
            number,
            soft_state,
            hard_state,
            membership,
            snapshot,
            entries,
            messages: std::mem::take(&mut self.raft.msgs),
            persisted_messages: std::mem::take(&mut self.raft.msgs_after_persist),
            committed_entries,
            read_states: std::mem::take(&mut self.raft.read_states),
            dropped_proposals: std::mem::take(&mut self.raft.dropped),
        })
    }

    /// The writes of `Ready` number `number` and of every earlier one are durable.
    ///
    /// Storage must reflect them by now (the node reads persisted entries through
    /// [`LogRead`]). The leader counts its own log toward the commit quorum from here.
    #[inline]
    pub fn on_persisted(&mut self, number: u64) -> Result<()> {
        if number >= self.next_number {
            return Err(Error::InvalidMessage(
                "on_persisted for a Ready that was not handed out",
            ));
        }
        while self
            .pending_writes
            .front()
            .is_some_and(|w| w.number <= number)
        {
            let w = self.pending_writes.pop_front().expect("checked");
            if let Some(i) = w.snapshot_index {
                self.raft.log.stable_snap_to(i);
            }
            if let Some((i, t)) = w.last_entry {
                self.raft.log.stable_to(i, t);
            }
            if let Some(hs) = w.hard_state {
                self.raft.on_hard_state_persisted(&hs)?;
            }
        }
        self.raft.on_log_persisted()
    }

    /// The application applied every committed entry up to `index`. Returns the
    /// configuration of the last configuration change among the entries this call covers,
    /// if any: the membership as of `index`, which a snapshot taken at `index` records.
    /// (The configuration in force changed earlier, when the change entered the log; see
    /// [`Ready::membership`].)
    pub fn on_applied(&mut self, index: u64) -> Result<Option<Membership>> {
        if index > self.raft.log.applying {
            return Err(Error::InvalidMessage(
                "applied index beyond the committed entries handed out",
            ));
        }
        self.raft.log.applied_to(index);
        Ok(self.raft.on_applied_configs(self.raft.log.applied))
    }

    /// Convenience for synchronous callers: everything in `ready` is durable and its
    /// committed entries are applied.
    pub fn advance(&mut self, ready: &Ready) -> Result<Option<Membership>> {
        self.on_persisted(ready.number)?;
        match ready.committed_entries.last() {
            Some(e) => self.on_applied(e.index),
            None => Ok(None),
        }
    }

    /// The caller compacted its log up to `index`. The node reads the new first index
    /// from storage; this only checks that nothing unapplied was discarded.
    pub fn on_compacted(&mut self, index: u64) -> Result<()> {
        if index > self.raft.log.applied {
            return Err(Error::InvalidMessage(
                "the log was compacted beyond the applied index",
            ));
        }
        Ok(())
    }

    /// The configuration in force: the latest in the log, committed or not. Elections,
    /// commits and reads count quorums in it.
    pub fn membership(&self) -> &Membership {
        &self.raft.tracker.membership
    }

    /// The membership as of the applied index (or a restored snapshot): what a snapshot
    /// taken at the applied index records, and what the state machine has seen.
    pub fn applied_membership(&self) -> &Membership {
        self.raft.log.confs.base()
    }

    /// Every node this node may have to talk to: the members of the configuration in force
    /// and of any configuration logged after the applied index (a node removed by a change
    /// that is not applied yet is still replicated to, so it learns of its removal).
    pub fn peers(&self) -> BTreeSet<NodeId> {
        self.raft.log.confs.members()
    }

    /// The persisted log.
    pub fn log(&self) -> &L {
        &self.raft.log.store
    }

    /// The persisted log, for writing what a `Ready` asks. Write only what the node
    /// handed out, in order.
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.raft.log.store
    }

    /// Changes the settings of the running node: heartbeat, election timeout base and
    /// jitter, minimum leadership period, append and in-flight limits, and the committed
    /// bytes per `Ready`. They take effect from the next tick or message. `id`, `pre_vote`,
    /// `check_quorum`, `priority` and `read_mode` are fixed (changing one is an
    /// [`Error::InvalidConfig`] naming it), and so is the election timeout under lease reads;
    /// `applied` is ignored. A changed election timeout is drawn again, from the node's
    /// seeded generator, within the new bounds (ticks already waited still count).
    /// On error nothing changes.
    pub fn set_config(&mut self, config: Config) -> Result<()> {
        self.raft.set_config(config)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.raft.cfg
    }

    /// On a leader, the index a configuration change must not be proposed before: the last
    /// change in its log (or, just after its election, its no-op). A new change is refused
    /// until the applied index reaches it. Meaningless on other roles.
    pub fn pending_conf_index(&self) -> u64 {
        self.raft.pending_conf_index
    }

    /// The number of logical ticks seen.
    pub fn ticks(&self) -> u64 {
        self.raft.ticks_now()
    }

    /// A view of the node's state.
    pub fn status(&self) -> Status {
        let r = &self.raft;
        let progress = if r.role == Role::Leader {
            r.tracker
                .progress
                .iter()
                .map(|(id, p)| {
                    (
                        *id,
                        PeerProgress {
                            matched: p.matched,
                            next: p.next,
                            state: p.state,
                            inflight_msgs: p.inflights.count(),
                            inflight_bytes: p.inflights.bytes(),
                            recent_active: p.recent_active,
                            is_learner: p.is_learner,
                        },
                    )
                })
                .collect()
        } else {
            Default::default()
        };
        Status {
            id: r.id,
            role: r.role,
            term: r.term,
            vote: r.vote,
            leader: r.leader,
            commit: r.log.committed,
            applied: r.log.applied,
            last_index: r.log.last_index(),
            persisted_index: r.log.persisted_last(),
            membership: r.tracker.membership.clone(),
            lead_transferee: r.lead_transferee,
            progress,
        }
    }
}
