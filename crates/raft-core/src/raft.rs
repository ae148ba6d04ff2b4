//! The Raft state machine: roles, terms, timers and message dispatch.
//!
//! The submodules add the parts of the protocol as further `impl Raft` blocks:
//! `election` (campaigns and votes), `replication` (appends, heartbeats, snapshots,
//! commit), `reads` (ReadIndex and lease reads) and `membership` (configuration changes
//! and leadership transfer).

mod election;
mod membership;
mod reads;
mod replication;
mod tuning;

use crate::config::Config;
use crate::entry::{Entry, HardState, NodeId};
use crate::error::{Error, Result};
use crate::log_read::LogRead;
use crate::message::{AppendResponse, Message, MessageBody, VoteResponse};
use crate::progress::ProgressState;
use crate::raft_log::RaftLog;
use crate::read_only::{ReadOnly, ReadState};
use crate::rng::SplitMix64;
use crate::tracker::Tracker;
use bytes::Bytes;

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Role {
    /// Follows a leader (or waits for one).
    #[default]
    Follower,
    /// Asks whether it could win an election, without changing term.
    PreCandidate,
    /// Campaigns in a new term.
    Candidate,
    /// Leads the current term.
    Leader,
}

/// The protocol state of one node.
pub(crate) struct Raft<L> {
    pub id: NodeId,
    pub cfg: Config,
    /// Invariant: never decreases.
    pub term: u64,
    /// Invariant: set at most once per term.
    pub vote: Option<NodeId>,
    pub log: RaftLog<L>,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub tracker: Tracker,
    /// Messages that may be sent at once.
    pub msgs: Vec<Message>,
    /// Messages that may be sent only once the current writes are durable.
    pub msgs_after_persist: Vec<Message>,
    pub read_states: Vec<ReadState>,
    /// Forwarded proposals that came back dropped (see `Ready::dropped_proposals`).
    pub dropped: Vec<Entry>,
    rng: SplitMix64,
    /// Ticks since the last heartbeat from the leader (follower), or since the last
    /// check-quorum round (leader).
    election_elapsed: u64,
    heartbeat_elapsed: u64,
    /// Ticks since this node became leader.
    leader_elapsed: u64,
    randomized_timeout: u64,
    /// A monotonic tick counter (for lease reads).
    now: u64,
    /// With lease reads, the node grants no vote before this tick (a transfer's excepted).
    /// A leader's lease counts on a majority not voting for an election timeout after its
    /// heartbeat; a node that restarts cannot know whether it acknowledged one just before,
    /// so it keeps that promise for an election timeout from its start.
    quiet_until: u64,
    pub lead_transferee: Option<NodeId>,
    transfer_elapsed: u64,
    /// Index of the latest configuration change proposed (or, on a new leader, of its
    /// no-op: a leader changes the configuration only once an entry of its own term is
    /// committed); no new change is accepted until it is applied.
    pub pending_conf_index: u64,
    /// The version of `log.confs` the tracker follows.
    config_version: u64,
    /// This node votes in the configuration in force (`tracker.membership`); kept with it
    /// (see `follow_config`) because every proposal checks it.
    votes_in_force: bool,
    reads: ReadOnly,
    /// Reads that arrived before the leader committed an entry of its term.
    reads_before_commit: Vec<(Bytes, Option<NodeId>)>,
    /// New entries or a new commit index must be broadcast at the next flush.
    bcast_pending: bool,
    /// Leader: data bytes of the entries it appended in its term and has not yet handed
    /// out as committed (bounded by `Config::max_uncommitted_bytes`).
    pub uncommitted_bytes: u64,
    /// Scratch space for peer ids while broadcasting (kept to avoid allocating).
    peer_buf: Vec<NodeId>,
}

impl<L: LogRead> Raft<L> {
    pub(crate) fn new(cfg: Config, store: L, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let init = store.initial_state()?;
        let snap = store.snapshot_meta()?;
        let last = store.last_index()?;
        let hs = init.hard_state;
        // Applied entries were committed even if the hard state saying so was not
        // persisted before a crash.
        let committed = hs.commit.max(snap.index).max(cfg.applied);
        if committed > last {
            return Err(Error::Storage(crate::log_read::StorageError::Failed(
                format!("hard state commit {committed} is beyond the last index {last}").into(),
            )));
        }
        let log = RaftLog::new(store, committed, cfg.applied, snap, init.membership)?;
        let mut tracker = Tracker::new(cfg.max_inflight_msgs, cfg.max_inflight_bytes);
        tracker.set_membership(log.confs.latest().clone(), &log.confs.members(), last + 1);
        let config_version = log.confs.version();
        let votes_in_force = tracker.membership.is_voter(cfg.id);
        let mut r = Self {
            id: cfg.id,
            term: hs.term,
            vote: hs.vote,
            log,
            role: Role::Follower,
            leader: None,
            tracker,
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            read_states: Vec::new(),
            dropped: Vec::new(),
            rng: SplitMix64::new(seed ^ cfg.id.wrapping_mul(0x2545_F491_4F6C_DD1D)),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            leader_elapsed: 0,
            randomized_timeout: 0,
            now: 0,
            quiet_until: match cfg.read_mode {
                crate::config::ReadMode::Lease { .. } => cfg.election_timeout_base_ticks,
                crate::config::ReadMode::Safe => 0,
            },
            lead_transferee: None,
            transfer_elapsed: 0,
            pending_conf_index: 0,
            config_version,
            votes_in_force,
            reads: ReadOnly::default(),
            reads_before_commit: Vec::new(),
            bcast_pending: false,
            uncommitted_bytes: 0,
            peer_buf: Vec::new(),
            cfg,
        };
        r.become_follower(hs.term, None);
        Ok(r)
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    /// True when this node may campaign: a voter of the configuration in force (the
    /// latest in its log), or of the one before it while that latest change is not known
    /// to be committed. Votes are counted in the configuration in force either way.
    pub(crate) fn promotable(&self) -> bool {
        self.log.confs.may_vote(self.id, self.log.committed)
    }

    /// Makes the tracker follow the log's configuration after the log changed (an append,
    /// an overwritten suffix, a snapshot) or the applied index moved (`force`: nodes of
    /// configurations now applied past are no longer tracked).
    #[inline]
    pub(crate) fn sync_config(&mut self, force: bool) {
        // Called after every append: the check stays in the caller, the work does not.
        if force || self.log.confs.version() != self.config_version {
            self.follow_config();
        }
    }

    /// The body of [`sync_config`](Self::sync_config), run when there is work.
    #[inline(never)]
    fn follow_config(&mut self) {
        self.config_version = self.log.confs.version();
        let latest = self.log.confs.latest().clone();
        let peers = self.log.confs.members();
        self.tracker
            .set_membership(latest, &peers, self.log.last_index() + 1);
        self.votes_in_force = self.tracker.membership.is_voter(self.id);
        if let Some(t) = self.lead_transferee
            && !self.tracker.membership.voters.contains(&t)
        {
            self.lead_transferee = None;
        }
        if self.role == Role::Leader {
            self.maybe_commit();
            self.bcast_pending = true;
        }
    }

    /// False for a node that joined with no membership at all: it waits for a snapshot.
    pub(crate) fn initialized(&self) -> bool {
        !self.tracker.membership.voters.is_empty()
    }

    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        self.msgs.push(Message {
            from: self.id,
            to,
            term: self.term,
            body,
        });
    }

    pub(crate) fn send_after_persist(&mut self, to: NodeId, term: u64, body: MessageBody) {
        self.msgs_after_persist.push(Message {
            from: self.id,
            to,
            term,
            body,
        });
    }

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = None;
        }
        self.leader = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.leader_elapsed = 0;
        self.lead_transferee = None;
        self.reads = ReadOnly::default();
        self.reads_before_commit.clear();
        self.bcast_pending = false;
        self.uncommitted_bytes = 0;
        let jitter = self.cfg.effective_jitter();
        self.randomized_timeout = self.rng.gen_range(
            self.cfg.election_timeout_base_ticks,
            self.cfg.election_timeout_base_ticks + jitter,
        );
        self.tracker.reset(self.log.last_index() + 1);
    }

    pub(crate) fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    /// Advances time by one tick.
    pub(crate) fn tick(&mut self) -> Result<()> {
        self.now += 1;
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => {
                self.election_elapsed += 1;
                if self.promotable()
                    && self.cfg.priority > 0
                    && self.election_elapsed >= self.randomized_timeout
                {
                    self.election_elapsed = 0;
                    self.campaign(false)?;
                }
                Ok(())
            }
        }
    }

    fn tick_leader(&mut self) -> Result<()> {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        self.leader_elapsed += 1;
        if self.lead_transferee.is_some() {
            self.transfer_elapsed += 1;
            if self.transfer_elapsed >= self.cfg.election_timeout_base_ticks {
                // The target did not win in time: accept proposals again, or, if this
                // leader is no longer a voter, give up leading.
                self.lead_transferee = None;
                if !self.tracker.membership.is_voter(self.id) {
                    self.become_follower(self.term, None);
                    return Ok(());
                }
            }
        }
        if self.election_elapsed >= self.cfg.election_timeout_base_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum {
                if !self.tracker.quorum_active(self.id) {
                    self.become_follower(self.term, None);
                    return Ok(());
                }
                let me = self.id;
                for (id, pr) in self.tracker.progress.iter_mut() {
                    if *id != me {
                        pr.recent_active = false;
                    }
                }
            }
        }
        // Appends in flight with no acknowledgement for an election timeout were lost
        // (or the peer restarted): fall back to probing from the last known match.
        let limit = self.cfg.election_timeout_base_ticks;
        for pr in self.tracker.progress.values_mut() {
            if pr.state == ProgressState::Replicate && pr.inflights.count() > 0 {
                pr.stall_ticks += 1;
                if pr.stall_ticks >= limit {
                    pr.become_probe();
                }
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat();
        }
        if self.cfg.lazy_commit {
            self.send_commit_updates()?;
        }
        Ok(())
    }

    /// True when this node ignores a higher-term (pre-)vote request (leader stickiness): a
    /// leader within its minimum leadership period or holding its check-quorum lease; with
    /// check-quorum, a follower that heard from a live leader within the minimum election
    /// timeout (without check-quorum a leader that lost its quorum never steps down, and
    /// followers that still hear it would refuse every other candidate for good); with
    /// lease reads, a node within an election timeout of its start (see `quiet_until`).
    fn in_leader_lease(&self) -> bool {
        match self.role {
            Role::Leader => {
                self.cfg.check_quorum || self.leader_elapsed < self.cfg.min_leadership_ticks
            }
            _ => (self.cfg.check_quorum && self.hears_leader()) || self.now < self.quiet_until,
        }
    }

    /// True when this node leads, or heard from a leader within the minimum election
    /// timeout.
    fn hears_leader(&self) -> bool {
        self.role == Role::Leader
            || (self.leader.is_some()
                && self.election_elapsed < self.cfg.election_timeout_base_ticks)
    }

    /// Processes a message from a peer.
    pub(crate) fn step(&mut self, m: Message) -> Result<()> {
        if matches!(m.body, MessageBody::ProposeDropped(_)) {
            // About our own proposals, whatever the sender's term: nothing else changes.
            // (Tested by kind first: a by-value match here moved every message.)
            let MessageBody::ProposeDropped(ents) = m.body else {
                unreachable!("matched above")
            };
            self.dropped.extend(ents);
            return Ok(());
        }
        if matches!(m.body, MessageBody::Vote(_))
            && self.hears_leader()
            && !self.log.confs.members().contains(&m.from)
        {
            // A candidate in none of the configurations of our log from the applied index
            // on, while we have a live leader: most likely removed by a change we applied
            // (and it never learned so). Its term must not depose our leader, with or
            // without stickiness. (It may also be a node added by a change we do not hold
            // yet: once we stop hearing our leader we answer it.)
            return Ok(());
        }
        if m.term > self.term {
            if let MessageBody::Vote(req) = &m.body
                && !req.transfer
                && self.in_leader_lease()
            {
                // Leader stickiness: a live leader exists; do not disturb it.
                return Ok(());
            }
            match &m.body {
                MessageBody::Vote(req) if req.pre_vote => {}
                MessageBody::VoteResponse(r) if r.pre_vote && r.granted => {}
                MessageBody::Append(_)
                | MessageBody::Heartbeat(_)
                | MessageBody::InstallSnapshot(_) => self.become_follower(m.term, Some(m.from)),
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match &m.body {
                MessageBody::Append(_)
                | MessageBody::Heartbeat(_)
                | MessageBody::InstallSnapshot(_) => {
                    // Tell the stale leader about the new term so it steps down.
                    self.send(
                        m.from,
                        MessageBody::AppendResponse(AppendResponse::default()),
                    );
                }
                MessageBody::Vote(req) if req.pre_vote => {
                    self.send(
                        m.from,
                        MessageBody::VoteResponse(VoteResponse {
                            pre_vote: true,
                            granted: false,
                        }),
                    );
                }
                MessageBody::Propose(_) => {
                    // Forwarded under a stale term: not appended; tell the proposer.
                    let MessageBody::Propose(ents) = m.body else {
                        unreachable!("matched above")
                    };
                    self.send(m.from, MessageBody::ProposeDropped(ents));
                }
                MessageBody::Vote(_) if self.role != Role::Leader && !self.in_leader_lease() => {
                    // A candidate behind our term cannot win our vote, and may never
                    // learn the term otherwise: we may not be promotable ourselves (a
                    // voter of a configuration we have not applied yet), while another
                    // node keeps raising our term. Tell it, so it can campaign above it.
                    // With a live leader the candidate is stale or removed: ignore it, so
                    // that a removed node is not helped to disrupt the cluster.
                    self.send(
                        m.from,
                        MessageBody::VoteResponse(VoteResponse {
                            pre_vote: false,
                            granted: false,
                        }),
                    );
                }
                _ => {}
            }
            return Ok(());
        }
        match m.body {
            MessageBody::Vote(req) => self.handle_vote_request(m.from, m.term, req),
            body => match self.role {
                Role::Leader => self.step_leader(m.from, body),
                Role::Candidate | Role::PreCandidate => self.step_candidate(m.from, body),
                Role::Follower => self.step_follower(m.from, body),
            },
        }
    }

    fn step_leader(&mut self, from: NodeId, body: MessageBody) -> Result<()> {
        match body {
            MessageBody::AppendResponse(r) => self.handle_append_response(from, r),
            MessageBody::HeartbeatResponse(r) => self.handle_heartbeat_response(from, r.read_round),
            MessageBody::ReadIndex(req) => {
                self.leader_read(req.context, Some(from));
                Ok(())
            }
            MessageBody::Propose(ents) => {
                self.propose_forwarded(from, ents);
                Ok(())
            }
            MessageBody::Append(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::InstallSnapshot(_) => Err(Error::InvalidMessage(
                "another leader claims the same term (peer violates the protocol)",
            )),
            _ => Ok(()),
        }
    }

    fn step_candidate(&mut self, from: NodeId, body: MessageBody) -> Result<()> {
        match body {
            MessageBody::VoteResponse(r) => self.handle_vote_response(from, r),
            MessageBody::Propose(ents) => {
                self.propose_forwarded(from, ents);
                Ok(())
            }
            b @ (MessageBody::Append(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::InstallSnapshot(_)) => {
                // Someone won this term.
                self.become_follower(self.term, Some(from));
                self.step_follower(from, b)
            }
            _ => Ok(()),
        }
    }

    fn step_follower(&mut self, from: NodeId, body: MessageBody) -> Result<()> {
        match body {
            MessageBody::Append(a) => {
                self.election_elapsed = 0;
                self.leader = Some(from);
                self.handle_append(from, a)
            }
            MessageBody::Heartbeat(h) => {
                self.election_elapsed = 0;
                self.leader = Some(from);
                self.handle_heartbeat(from, h);
                Ok(())
            }
            MessageBody::InstallSnapshot(meta) => {
                self.election_elapsed = 0;
                self.leader = Some(from);
                self.handle_snapshot(from, meta);
                Ok(())
            }
            MessageBody::TimeoutNow => {
                if self.promotable() {
                    self.campaign(true)?;
                }
                Ok(())
            }
            MessageBody::Propose(ents) => {
                self.propose_forwarded(from, ents);
                Ok(())
            }
            MessageBody::ReadIndexResponse(r) => {
                self.read_states.push(ReadState {
                    context: r.context,
                    index: r.index,
                });
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Work deferred to the next `Ready`: broadcasts after proposals or commit changes,
    /// read rounds, the automatic leave of a joint configuration.
    pub(crate) fn needs_flush(&self) -> bool {
        self.role == Role::Leader && (self.bcast_pending || self.reads.needs_round)
            || self.needs_auto_leave()
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.role != Role::Leader {
            return Ok(());
        }
        if self.needs_auto_leave() {
            self.propose_auto_leave()?;
        }
        if self.bcast_pending {
            self.bcast_pending = false;
            self.bcast_append()?;
        }
        if self.reads.needs_round {
            self.bcast_heartbeat();
        }
        Ok(())
    }

    /// The durable hard state now includes `hs`.
    pub(crate) fn on_hard_state_persisted(&mut self, hs: &HardState) -> Result<()> {
        if self.role == Role::Candidate && hs.term == self.term && hs.vote == Some(self.id) {
            // Our own vote counts only once it can no longer be forgotten.
            self.tracker.record_vote(self.id, true);
            self.tally_votes()?;
        }
        Ok(())
    }

    /// More of the log became durable.
    pub(crate) fn on_log_persisted(&mut self) -> Result<()> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let persisted = self.log.persisted_last();
        let me = self.id;
        let updated = self
            .tracker
            .progress
            .get_mut(&me)
            .is_some_and(|pr| pr.maybe_update(persisted));
        if updated {
            self.maybe_commit();
        }
        Ok(())
    }

    pub(crate) fn ticks_now(&self) -> u64 {
        self.now
    }
}
