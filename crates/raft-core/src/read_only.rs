//! Linearizable reads: requests waiting for a heartbeat round that confirms leadership.
//!
//! Every heartbeat broadcast of a leader is a numbered *round* (`Heartbeat::read_round`,
//! echoed by followers). A read that arrives while round `r` is the latest sent waits for
//! round `r + 1`: once a quorum has acknowledged a round `>= r + 1`, the leader was still
//! leader after the read arrived, and the commit index it recorded for the read is safe
//! to serve at. Reads arriving between two flushes share one round (batching).

use crate::entry::NodeId;
use bytes::Bytes;
use std::collections::VecDeque;

/// A read that may be served once the state machine has applied `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The context given to `read_index`.
    pub context: Bytes,
    /// The index the state machine must have applied before serving the read.
    pub index: u64,
}

/// A read waiting for its round.
#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    pub context: Bytes,
    /// The commit index when the read arrived.
    pub index: u64,
    /// The round that must be acknowledged by a quorum.
    pub round: u64,
    /// The follower that forwarded the read; `None` for a local read.
    pub from: Option<NodeId>,
}

/// The leader's read bookkeeping for one term.
///
/// Invariant: `pending` is ordered by `round`; `confirmed <= sent`; the ticks in
/// `sent_at` belong to rounds in `(confirmed, sent]`.
#[derive(Debug, Default)]
pub(crate) struct ReadOnly {
    pending: VecDeque<PendingRead>,
    /// The last round broadcast.
    pub sent: u64,
    /// The last round acknowledged by a quorum.
    pub confirmed: u64,
    /// A read waits for a round not broadcast yet.
    pub needs_round: bool,
    sent_at: VecDeque<(u64, u64)>,
    /// When the confirmed round was sent (the start of the leader lease).
    pub lease_start: Option<u64>,
}

impl ReadOnly {
    pub(crate) fn add(&mut self, context: Bytes, index: u64, from: Option<NodeId>) {
        self.pending.push_back(PendingRead {
            context,
            index,
            round: self.sent + 1,
            from,
        });
        self.needs_round = true;
    }

    /// Starts a new round at tick `now` and returns its number.
    pub(crate) fn next_round(&mut self, now: u64) -> u64 {
        self.sent += 1;
        self.sent_at.push_back((self.sent, now));
        self.needs_round = false;
        self.sent
    }

    /// A quorum acknowledged `round`: returns the reads it releases.
    pub(crate) fn confirm(&mut self, round: u64) -> Vec<PendingRead> {
        if round <= self.confirmed {
            return Vec::new();
        }
        self.confirmed = round;
        while let Some(&(r, at)) = self.sent_at.front() {
            if r > round {
                break;
            }
            if r == round {
                self.lease_start = Some(at);
            }
            self.sent_at.pop_front();
        }
        let n = self.pending.iter().take_while(|p| p.round <= round).count();
        self.pending.drain(..n).collect()
    }

    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wait_for_a_round_sent_after_them_and_are_batched() {
        let mut r = ReadOnly::default();
        let first = r.next_round(0);
        r.add(Bytes::from_static(b"a"), 5, None);
        r.add(Bytes::from_static(b"b"), 6, Some(2));
        assert!(r.confirm(first).is_empty(), "round sent before the reads");
        let second = r.next_round(3);
        let released = r.confirm(second);
        assert_eq!(released.len(), 2);
        assert_eq!(r.lease_start, Some(3));
        assert_eq!(r.pending_len(), 0);
    }
}
