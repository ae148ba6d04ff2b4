//! What the leader knows about one peer's log, and how it may send to it.

mod inflights;

pub(crate) use inflights::Inflights;

/// How the leader is replicating to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// The leader does not know where the logs match: one append at a time, waiting for
    /// the answer (or the next heartbeat) before the next.
    Probe,
    /// The logs match up to `matched`: appends are pipelined within the in-flight window.
    Replicate,
    /// The peer needs a snapshot, which is being transferred; nothing else is sent.
    Snapshot,
}

/// Replication progress of one peer, kept by the leader.
///
/// Invariant: `matched < next`.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// The highest index known to be in the peer's log (and, for the leader itself,
    /// durable).
    pub matched: u64,
    /// The next index to send.
    pub next: u64,
    pub state: ProgressState,
    /// In `Probe`: an append was sent and not answered since the last heartbeat.
    pub probe_sent: bool,
    /// In `Snapshot`: the index of the snapshot being sent.
    pub pending_snapshot: u64,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Appends in flight.
    pub inflights: Inflights,
    /// A learner: replicated to, never counted in a quorum.
    pub is_learner: bool,
    /// The highest commit index sent to the peer.
    pub sent_commit: u64,
    /// The highest index the peer waits to learn committed: the last entry of proposals it
    /// forwarded, or the index of a read it asked for. With `lazy_commit`, a commit index
    /// below it is sent at once rather than at the next tick (the peer's clients wait on it).
    pub awaits_commit: u64,
    /// The highest heartbeat round the peer acknowledged in the current term.
    pub acked_round: u64,
    /// Leader ticks since the last acknowledgement while appends are in flight (to
    /// recover from lost messages).
    pub stall_ticks: u64,
}

impl Progress {
    pub(crate) fn new(next: u64, max_msgs: usize, max_bytes: u64) -> Self {
        Self {
            matched: 0,
            next: next.max(1),
            state: ProgressState::Probe,
            probe_sent: false,
            pending_snapshot: 0,
            recent_active: false,
            inflights: Inflights::new(max_msgs, max_bytes),
            is_learner: false,
            sent_commit: 0,
            awaits_commit: 0,
            acked_round: 0,
            stall_ticks: 0,
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.state = state;
        self.probe_sent = false;
        self.stall_ticks = 0;
        self.pending_snapshot = 0;
        self.inflights.reset();
    }

    pub(crate) fn become_probe(&mut self) {
        let next = if self.state == ProgressState::Snapshot {
            (self.matched + 1).max(self.pending_snapshot + 1)
        } else {
            self.matched + 1
        };
        self.reset_state(ProgressState::Probe);
        self.next = next;
    }

    pub(crate) fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next = self.matched + 1;
    }

    pub(crate) fn become_snapshot(&mut self, index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = index;
    }

    /// The peer acknowledged `index`; returns true when `matched` moved.
    pub(crate) fn maybe_update(&mut self, index: u64) -> bool {
        let updated = self.matched < index;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index + 1);
        updated
    }

    /// The peer rejected an append at `rejected`, hinting its log may match up to
    /// `match_hint`. Returns false when the rejection is stale.
    pub(crate) fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            return true;
        }
        if self.next - 1 != rejected {
            return false;
        }
        self.next = rejected.min(match_hint + 1).max(self.matched + 1);
        self.probe_sent = false;
        true
    }

    /// True when no append may be sent now.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }

    /// Records that an append ending at `last` (carrying `bytes`) was sent; `last` is
    /// `next - 1` for an empty append.
    pub(crate) fn sent_append(&mut self, last: u64, bytes: u64, entries: bool) {
        match self.state {
            ProgressState::Replicate => {
                if entries {
                    self.next = last + 1;
                    self.inflights.add(last, bytes);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {
                panic!("an append must not be sent to a peer receiving a snapshot")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_backs_off_to_hint_and_ignores_stale_rejects() {
        let mut p = Progress::new(11, 4, 1000);
        p.matched = 2;
        assert!(!p.maybe_decr_to(7, 3), "stale: not the probe in flight");
        assert!(p.maybe_decr_to(10, 5));
        assert_eq!(p.next, 6);
        assert!(p.maybe_decr_to(5, 0));
        assert_eq!(p.next, 3, "never below matched + 1");
    }

    #[test]
    fn an_ack_moves_match_and_next_only_forward() {
        let mut p = Progress::new(1, 4, 1000);
        assert!(p.maybe_update(7));
        assert_eq!(
            (p.matched, p.next),
            (7, 8),
            "next follows the acknowledged index"
        );
        assert!(!p.maybe_update(7), "the same index again is no update");
        assert!(!p.maybe_update(3), "an older acknowledgement is no update");
        assert_eq!((p.matched, p.next), (7, 8));
    }

    #[test]
    fn replicate_pipelines_until_window_full() {
        let mut p = Progress::new(1, 2, 1000);
        p.become_replicate();
        p.sent_append(5, 10, true);
        assert_eq!(p.next, 6);
        assert!(!p.is_paused());
        p.sent_append(8, 10, true);
        assert!(p.is_paused());
        assert!(p.maybe_update(5));
        p.inflights.free_to(5);
        assert!(!p.is_paused());
        assert!(p.maybe_decr_to(8, 0));
        assert_eq!(p.next, 6);
    }
}
