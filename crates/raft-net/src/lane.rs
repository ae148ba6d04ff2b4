//! The two lanes a peer's messages travel on, and how each end of a connection tells
//! them apart (the light lane's connection preface and request metadata).
//!
//! Both the sending side (`peer`) and the receiving side (`server`) use these; they sit
//! below both.

use raft_core::{Message, MessageBody};

/// Which lane a message travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// The pipelined append stream: appends and forwarded proposals (in order).
    Stream,
    /// The light lane: heartbeats, votes, responses, TimeoutNow, read-index traffic.
    Light,
}

impl Lane {
    /// The lane `msg` goes on. `InstallSnapshot` has none: use
    /// [`PeerTransport::send_snapshot`](crate::PeerTransport::send_snapshot).
    pub fn of(msg: &Message) -> Option<Lane> {
        match msg.body {
            MessageBody::Append(_) | MessageBody::Propose(_) | MessageBody::ProposeDropped(_) => {
                Some(Lane::Stream)
            }
            MessageBody::InstallSnapshot(_) => None,
            _ => Some(Lane::Light),
        }
    }
}

/// The request metadata key that marks a `Replicate` stream as the light lane's.
pub(crate) const LANE_KEY: &str = "raft-lane";

/// The name of `lane` in metrics and in [`LANE_KEY`].
pub(crate) fn lane_name(lane: Lane) -> &'static str {
    match lane {
        Lane::Stream => "stream",
        Lane::Light => "light",
    }
}

/// The first bytes a light-lane connection sends, before HTTP/2 (and before TLS): the
/// accept loop hands such connections to the server on the network thread, so heartbeats
/// and votes are received there instead of waiting behind the append streams' work.
pub(crate) const LIGHT_PREFACE: &[u8; 8] = b"RAFTLITE";
