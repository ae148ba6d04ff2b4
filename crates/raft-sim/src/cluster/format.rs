//! Compact one-line renderings of messages for the trace.

use raft_core::{Message, MessageBody};
use std::fmt;

/// Displays a message as `n1>n2 t3 App(p5/2 n3 c7)`.
pub struct Msg<'a>(pub &'a Message);

impl fmt::Display for Msg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "n{}>n{} t{} ", m.from, m.to, m.term)?;
        match &m.body {
            MessageBody::Append(a) => write!(
                f,
                "App(p{}/{} n{} c{})",
                a.prev_log_index,
                a.prev_log_term,
                a.entries.len(),
                a.commit
            ),
            MessageBody::AppendResponse(r) => {
                if r.reject {
                    write!(f, "AppRej({} h{}/{})", r.index, r.hint_index, r.hint_term)
                } else {
                    write!(f, "AppOk({})", r.index)
                }
            }
            MessageBody::Heartbeat(h) => write!(f, "Hb(c{} r{})", h.commit, h.read_round),
            MessageBody::HeartbeatResponse(h) => write!(f, "HbOk(r{})", h.read_round),
            MessageBody::Vote(v) => write!(
                f,
                "{}({}/{}{})",
                if v.pre_vote { "PreVote" } else { "Vote" },
                v.last_log_index,
                v.last_log_term,
                if v.transfer { " xfer" } else { "" }
            ),
            MessageBody::VoteResponse(v) => write!(
                f,
                "{}{}",
                if v.pre_vote { "PreVote" } else { "Vote" },
                if v.granted { "Yes" } else { "No" }
            ),
            MessageBody::TimeoutNow => write!(f, "TimeoutNow"),
            MessageBody::InstallSnapshot(s) => write!(f, "Snap({}/{})", s.index, s.term),
            MessageBody::ReadIndex(_) => write!(f, "ReadIdx"),
            MessageBody::ReadIndexResponse(r) => write!(f, "ReadIdxOk({})", r.index),
            MessageBody::Propose(e) => write!(f, "Fwd({})", e.len()),
            MessageBody::ProposeDropped(e) => write!(f, "FwdDropped({})", e.len()),
        }
    }
}
