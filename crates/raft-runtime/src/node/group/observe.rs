//! The metrics the event loop records on its hot paths, through handles registered once
//! (no registry lookup per message), and the per-peer replication gauges it refreshes from
//! the core's progress every housekeeping round.

use metrics::{Counter, Histogram, counter, gauge, histogram};
use raft_core::{Message, MessageBody, NodeId, Role, Status};
use raft_metrics::runtime as m;
use std::collections::BTreeSet;

/// The position of a message's kind in [`m::MESSAGE_KINDS`].
fn kind_index(body: &MessageBody) -> usize {
    match body {
        MessageBody::Append(_) => 0,
        MessageBody::AppendResponse(_) => 1,
        MessageBody::Heartbeat(_) => 2,
        MessageBody::HeartbeatResponse(_) => 3,
        MessageBody::Vote(v) if v.pre_vote => 6,
        MessageBody::Vote(_) => 4,
        MessageBody::VoteResponse(v) if v.pre_vote => 7,
        MessageBody::VoteResponse(_) => 5,
        MessageBody::TimeoutNow => 8,
        MessageBody::InstallSnapshot(_) => 9,
        MessageBody::ReadIndex(_) => 10,
        MessageBody::ReadIndexResponse(_) => 11,
        // Proposals sent back dropped count as proposal traffic.
        MessageBody::Propose(_) | MessageBody::ProposeDropped(_) => 12,
    }
}

/// Why the core refused a message, as the `reason` label of [`m::MESSAGES_REFUSED`].
pub(crate) fn refusal_reason(e: &raft_core::Error) -> &'static str {
    match e {
        raft_core::Error::InvalidMessage(_) | raft_core::Error::Decode(_) => "invalid",
        raft_core::Error::NoLeader | raft_core::Error::NotLeader { .. } => "not_leader",
        raft_core::Error::ProposalDropped(_) => "proposal_dropped",
        _ => "other",
    }
}

/// Registered metric handles of one group.
pub(crate) struct GroupMetrics {
    sent: Vec<Counter>,
    received: Vec<Counter>,
    append_entries: Histogram,
    /// Peers whose replication gauges were set (zeroed when they stop being followed).
    gauged: BTreeSet<NodeId>,
}

impl GroupMetrics {
    pub(crate) fn new() -> Self {
        let kinds = m::MESSAGE_KINDS.iter();
        Self {
            sent: kinds
                .clone()
                .map(|k| counter!(m::MESSAGES_SENT, "kind" => *k))
                .collect(),
            received: kinds
                .map(|k| counter!(m::MESSAGES_RECEIVED, "kind" => *k))
                .collect(),
            append_entries: histogram!(m::APPEND_ENTRIES_PER_MESSAGE),
            gauged: BTreeSet::new(),
        }
    }

    /// Counts a message this node sends.
    pub(crate) fn sent(&self, msg: &Message) {
        if let MessageBody::Append(a) = &msg.body {
            self.append_entries.record(a.entries.len() as f64);
        }
        self.sent[kind_index(&msg.body)].increment(1);
    }

    /// Counts a message from a peer about to be stepped.
    pub(crate) fn received(&self, msg: &Message) {
        self.received[kind_index(&msg.body)].increment(1);
    }

    /// True when [`refresh_peers`](Self::refresh_peers) has something to do in `role`.
    pub(crate) fn wants_refresh(&self, role: Role) -> bool {
        role == Role::Leader || !self.gauged.is_empty()
    }

    /// Sets the per-peer lag and in-flight gauges from the leader's progress, and zeroes
    /// those of peers no longer followed (or of every peer once this node stops leading).
    pub(crate) fn refresh_peers(&mut self, status: &Status) {
        let mut now = BTreeSet::new();
        for (&peer, p) in &status.progress {
            if peer == status.id {
                continue;
            }
            let label = peer.to_string();
            gauge!(m::PEER_REPLICATION_LAG, "peer" => label.clone())
                .set(status.last_index.saturating_sub(p.matched) as f64);
            gauge!(m::PEER_INFLIGHT_MESSAGES, "peer" => label.clone()).set(p.inflight_msgs as f64);
            gauge!(m::PEER_INFLIGHT_BYTES, "peer" => label).set(p.inflight_bytes as f64);
            now.insert(peer);
        }
        for gone in self.gauged.difference(&now) {
            let label = gone.to_string();
            gauge!(m::PEER_REPLICATION_LAG, "peer" => label.clone()).set(0.0);
            gauge!(m::PEER_INFLIGHT_MESSAGES, "peer" => label.clone()).set(0.0);
            gauge!(m::PEER_INFLIGHT_BYTES, "peer" => label).set(0.0);
        }
        self.gauged = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Append, VoteRequest, VoteResponse};

    #[test]
    fn every_kind_has_a_label_and_pre_votes_are_apart() {
        let bodies = [
            MessageBody::Append(Append::default()),
            MessageBody::Vote(VoteRequest::default()),
            MessageBody::Vote(VoteRequest {
                pre_vote: true,
                ..Default::default()
            }),
            MessageBody::VoteResponse(VoteResponse {
                pre_vote: true,
                granted: true,
            }),
            MessageBody::Propose(Vec::new()),
        ];
        let labels: Vec<&str> = bodies
            .iter()
            .map(|b| m::MESSAGE_KINDS[kind_index(b)])
            .collect();
        assert_eq!(
            labels,
            ["append", "vote", "pre_vote", "pre_vote_response", "propose"]
        );
    }
}
