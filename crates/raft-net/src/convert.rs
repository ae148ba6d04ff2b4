//! The one place where protobuf types meet `raft-core` types, both ways.
//!
//! Entry payloads and read contexts are `bytes::Bytes` on both sides, so a conversion only
//! bumps reference counts: no payload is copied.

use crate::error::{Error, Result};
use crate::pb;
use raft_core::{
    Append, AppendResponse, Entry, EntryKind, Heartbeat, HeartbeatResponse, Membership, Message,
    MessageBody, NodeId, ReadIndexRequest, ReadIndexResponse, SnapshotMeta, VoteRequest,
    VoteResponse,
};

/// Converts a raft-core message to its protobuf form.
pub(crate) fn message_to_pb(msg: &Message) -> pb::Message {
    use pb::message::Body;
    let body = match &msg.body {
        MessageBody::Append(a) => Body::Append(pb::Append {
            prev_log_index: a.prev_log_index,
            prev_log_term: a.prev_log_term,
            entries: a.entries.iter().map(entry_to_pb).collect(),
            commit: a.commit,
        }),
        MessageBody::AppendResponse(r) => Body::AppendResponse(pb::AppendResponse {
            index: r.index,
            reject: r.reject,
            hint_index: r.hint_index,
            hint_term: r.hint_term,
        }),
        MessageBody::Heartbeat(h) => Body::Heartbeat(pb::Heartbeat {
            commit: h.commit,
            read_round: h.read_round,
        }),
        MessageBody::HeartbeatResponse(h) => Body::HeartbeatResponse(pb::HeartbeatResponse {
            read_round: h.read_round,
        }),
        MessageBody::Vote(v) => Body::Vote(pb::Vote {
            pre_vote: v.pre_vote,
            last_log_index: v.last_log_index,
            last_log_term: v.last_log_term,
            transfer: v.transfer,
        }),
        MessageBody::VoteResponse(v) => Body::VoteResponse(pb::VoteResponse {
            pre_vote: v.pre_vote,
            granted: v.granted,
        }),
        MessageBody::TimeoutNow => Body::TimeoutNow(pb::TimeoutNow {}),
        MessageBody::InstallSnapshot(meta) => Body::InstallSnapshot(pb::InstallSnapshot {
            meta: Some(meta_to_pb(meta)),
        }),
        MessageBody::ReadIndex(r) => Body::ReadIndex(pb::ReadIndex {
            context: r.context.clone(),
        }),
        MessageBody::ReadIndexResponse(r) => Body::ReadIndexResponse(pb::ReadIndexResponse {
            context: r.context.clone(),
            index: r.index,
        }),
        MessageBody::Propose(entries) => Body::Propose(pb::Propose {
            entries: entries.iter().map(entry_to_pb).collect(),
        }),
        MessageBody::ProposeDropped(entries) => Body::ProposeDropped(pb::ProposeDropped {
            entries: entries.iter().map(entry_to_pb).collect(),
        }),
    };
    pb::Message {
        from: msg.from,
        to: msg.to,
        term: msg.term,
        body: Some(body),
    }
}

/// Converts a protobuf message to raft-core's, refusing what raft-core cannot represent.
pub(crate) fn message_from_pb(msg: pb::Message) -> Result<Message> {
    use pb::message::Body;
    check_node(msg.from, "from")?;
    check_node(msg.to, "to")?;
    let body = match msg.body {
        None => return Err(Error::Malformed("message without a body".into())),
        Some(Body::Append(a)) => MessageBody::Append(Append {
            prev_log_index: a.prev_log_index,
            prev_log_term: a.prev_log_term,
            entries: entries_from_pb(a.entries)?,
            commit: a.commit,
        }),
        Some(Body::AppendResponse(r)) => MessageBody::AppendResponse(AppendResponse {
            index: r.index,
            reject: r.reject,
            hint_index: r.hint_index,
            hint_term: r.hint_term,
        }),
        Some(Body::Heartbeat(h)) => MessageBody::Heartbeat(Heartbeat {
            commit: h.commit,
            read_round: h.read_round,
        }),
        Some(Body::HeartbeatResponse(h)) => MessageBody::HeartbeatResponse(HeartbeatResponse {
            read_round: h.read_round,
        }),
        Some(Body::Vote(v)) => MessageBody::Vote(VoteRequest {
            pre_vote: v.pre_vote,
            last_log_index: v.last_log_index,
            last_log_term: v.last_log_term,
            transfer: v.transfer,
        }),
        Some(Body::VoteResponse(v)) => MessageBody::VoteResponse(VoteResponse {
            pre_vote: v.pre_vote,
            granted: v.granted,
        }),
        Some(Body::TimeoutNow(_)) => MessageBody::TimeoutNow,
        Some(Body::InstallSnapshot(s)) => {
            let meta = s
                .meta
                .ok_or_else(|| Error::Malformed("InstallSnapshot without meta".into()))?;
            MessageBody::InstallSnapshot(meta_from_pb(meta)?)
        }
        Some(Body::ReadIndex(r)) => MessageBody::ReadIndex(ReadIndexRequest { context: r.context }),
        Some(Body::ReadIndexResponse(r)) => MessageBody::ReadIndexResponse(ReadIndexResponse {
            context: r.context,
            index: r.index,
        }),
        Some(Body::Propose(p)) => MessageBody::Propose(entries_from_pb(p.entries)?),
        Some(Body::ProposeDropped(p)) => MessageBody::ProposeDropped(entries_from_pb(p.entries)?),
    };
    Ok(Message {
        from: msg.from,
        to: msg.to,
        term: msg.term,
        body,
    })
}

fn check_node(id: NodeId, what: &str) -> Result<()> {
    if id == 0 {
        return Err(Error::Malformed(format!("node id 0 in `{what}`")));
    }
    Ok(())
}

fn entry_to_pb(e: &Entry) -> pb::Entry {
    pb::Entry {
        index: e.index,
        term: e.term,
        kind: match e.kind {
            EntryKind::Normal => pb::EntryKind::Normal as i32,
            EntryKind::ConfChange => pb::EntryKind::ConfChange as i32,
        },
        data: e.data.clone(),
    }
}

fn entries_from_pb(entries: Vec<pb::Entry>) -> Result<Vec<Entry>> {
    entries
        .into_iter()
        .map(|e| {
            let kind = match pb::EntryKind::try_from(e.kind) {
                Ok(pb::EntryKind::Normal) => EntryKind::Normal,
                Ok(pb::EntryKind::ConfChange) => EntryKind::ConfChange,
                Err(_) => return Err(Error::Malformed(format!("unknown entry kind {}", e.kind))),
            };
            Ok(Entry {
                index: e.index,
                term: e.term,
                kind,
                data: e.data,
            })
        })
        .collect()
}

/// Converts raft-core snapshot metadata to its protobuf form.
pub(crate) fn meta_to_pb(meta: &SnapshotMeta) -> pb::SnapshotMeta {
    let m = &meta.membership;
    pb::SnapshotMeta {
        index: meta.index,
        term: meta.term,
        voters: m.voters.iter().copied().collect(),
        learners: m.learners.iter().copied().collect(),
        voters_outgoing: m.voters_outgoing.iter().copied().collect(),
        learners_next: m.learners_next.iter().copied().collect(),
        auto_leave: m.auto_leave,
    }
}

/// Converts protobuf snapshot metadata to raft-core's.
pub(crate) fn meta_from_pb(meta: pb::SnapshotMeta) -> Result<SnapshotMeta> {
    let all = meta
        .voters
        .iter()
        .chain(&meta.learners)
        .chain(&meta.voters_outgoing)
        .chain(&meta.learners_next);
    for id in all {
        check_node(*id, "membership")?;
    }
    Ok(SnapshotMeta {
        index: meta.index,
        term: meta.term,
        membership: Membership {
            voters: meta.voters.into_iter().collect(),
            voters_outgoing: meta.voters_outgoing.into_iter().collect(),
            learners: meta.learners.into_iter().collect(),
            learners_next: meta.learners_next.into_iter().collect(),
            auto_leave: meta.auto_leave,
        },
    })
}

/// An estimate of a message's encoded size, used for queue and batch byte bounds.
pub(crate) fn message_size(msg: &Message) -> usize {
    const HEADER: usize = 32;
    let body = match &msg.body {
        MessageBody::Append(a) => a.entries.iter().map(|e| e.size() as usize).sum(),
        MessageBody::Propose(entries) | MessageBody::ProposeDropped(entries) => {
            entries.iter().map(|e| e.size() as usize).sum()
        }
        MessageBody::ReadIndex(r) => r.context.len(),
        MessageBody::ReadIndexResponse(r) => r.context.len(),
        MessageBody::InstallSnapshot(meta) => meta.membership.members().len() * 10,
        _ => 0,
    };
    HEADER + body
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// One message of every kind, from 1 to 2.
    pub(crate) fn every_kind() -> Vec<Message> {
        let entry = |i: u64, kind| Entry {
            index: i,
            term: 3,
            kind,
            data: Bytes::from(format!("payload-{i}")),
        };
        let bodies = vec![
            MessageBody::Append(Append {
                prev_log_index: 4,
                prev_log_term: 2,
                entries: vec![entry(5, EntryKind::Normal), entry(6, EntryKind::ConfChange)],
                commit: 4,
            }),
            MessageBody::AppendResponse(AppendResponse {
                index: 6,
                reject: true,
                hint_index: 3,
                hint_term: 2,
            }),
            MessageBody::Heartbeat(Heartbeat {
                commit: 9,
                read_round: 7,
            }),
            MessageBody::HeartbeatResponse(HeartbeatResponse { read_round: 7 }),
            MessageBody::Vote(VoteRequest {
                pre_vote: true,
                last_log_index: 10,
                last_log_term: 3,
                transfer: true,
            }),
            MessageBody::VoteResponse(VoteResponse {
                pre_vote: true,
                granted: true,
            }),
            MessageBody::TimeoutNow,
            MessageBody::InstallSnapshot(SnapshotMeta {
                index: 100,
                term: 3,
                membership: Membership {
                    voters: [1, 2, 3].into(),
                    voters_outgoing: [1, 2, 4].into(),
                    learners: [5].into(),
                    learners_next: [4].into(),
                    auto_leave: true,
                },
            }),
            MessageBody::ReadIndex(ReadIndexRequest {
                context: Bytes::from_static(b"ctx"),
            }),
            MessageBody::ReadIndexResponse(ReadIndexResponse {
                context: Bytes::from_static(b"ctx"),
                index: 42,
            }),
            MessageBody::Propose(vec![entry(0, EntryKind::Normal)]),
            MessageBody::ProposeDropped(vec![entry(0, EntryKind::Normal)]),
        ];
        bodies
            .into_iter()
            .map(|body| Message {
                from: 1,
                to: 2,
                term: 3,
                body,
            })
            .collect()
    }

    #[test]
    fn every_kind_round_trips() {
        for msg in every_kind() {
            let back = message_from_pb(message_to_pb(&msg)).unwrap();
            assert_eq!(back, msg);
        }
    }

    #[test]
    fn payloads_are_shared_not_copied() {
        let data = Bytes::from(vec![7u8; 1000]);
        let msg = Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::Propose(vec![Entry {
                index: 1,
                term: 1,
                kind: EntryKind::Normal,
                data: data.clone(),
            }]),
        };
        let pb = message_to_pb(&msg);
        let Some(pb::message::Body::Propose(p)) = &pb.body else {
            panic!("wrong body")
        };
        assert_eq!(p.entries[0].data.as_ptr(), data.as_ptr());
        let back = message_from_pb(pb).unwrap();
        let MessageBody::Propose(entries) = back.body else {
            panic!("wrong body")
        };
        assert_eq!(entries[0].data.as_ptr(), data.as_ptr());
    }

    #[test]
    fn malformed_messages_are_refused() {
        let mut pb = message_to_pb(&every_kind()[0]);
        pb.body = None;
        assert!(matches!(message_from_pb(pb), Err(Error::Malformed(_))));
        let mut pb = message_to_pb(&every_kind()[0]);
        pb.from = 0;
        assert!(matches!(message_from_pb(pb), Err(Error::Malformed(_))));
        let mut pb = message_to_pb(&every_kind()[0]);
        if let Some(pb::message::Body::Append(a)) = &mut pb.body {
            a.entries[0].kind = 99;
        }
        assert!(matches!(message_from_pb(pb), Err(Error::Malformed(_))));
    }
}
