//! How the workers (the log's writer thread, the apply thread, snapshot tasks) report to
//! the event loop, and which reports may wait for the loop's next turn instead of waking
//! it.
//!
//! Two completions are often not needed at once: a follower's log write whose
//! acknowledgements already left from the write's completion, and the apply thread's
//! applied index when nothing (a read, a membership change, backpressure, a snapshot
//! request) waits for it. Waking the loop for each costs a thread hand-off and a turn of
//! the loop per write on a 2-core machine where those compete with the next request. Such
//! reports are *deferred*: they go to a second channel that the loop drains at the start
//! of every turn (each message, request, event or tick, so at most one tick later) and
//! never waits on. The loop publishes which kinds it wants at once ([`Wants`]); a deferred
//! report of a wanted kind nudges it awake.
//!
//! Deferring only delays what the loop learns (as a slower disk or state machine would),
//! never what is durable or acknowledged: a follower's acknowledgement still leaves only
//! after its fsync, and the loop handles reports of either channel in any order (writes are
//! released by number, applied indexes only move forward).

use crate::apply::Event;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering, fence};
use tokio::sync::mpsc;

/// The kinds of deferrable report the loop wants at once, as bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Wants(u8);

impl Wants {
    /// Nothing: deferred reports wait for the loop's next turn.
    pub const NONE: Wants = Wants(0);
    /// Log write completions (`Event::Persisted`).
    pub const PERSISTED: Wants = Wants(1);
    /// The applied index (`Event::Applied`).
    pub const APPLIED: Wants = Wants(2);

    /// Both sets together.
    pub fn with(self, other: Wants) -> Wants {
        Wants(self.0 | other.0)
    }

    /// Whether `other`'s kinds are all in this set.
    pub fn contains(self, other: Wants) -> bool {
        self.0 & other.0 == other.0
    }
}

/// The workers' side: posts reports to the loop.
#[derive(Clone)]
pub(crate) struct EventSink {
    now: mpsc::UnboundedSender<Event>,
    later: mpsc::UnboundedSender<Event>,
    wants: Arc<AtomicU8>,
}

/// The loop's side: the channel it waits on, the deferred one it drains each turn, and the
/// kinds it wants at once.
pub(crate) struct EventSource {
    /// Reports that wake the loop.
    pub now: mpsc::UnboundedReceiver<Event>,
    later: mpsc::UnboundedReceiver<Event>,
    wants: Arc<AtomicU8>,
    published: Wants,
}

/// A connected sink and source; the loop wants everything at once until it says otherwise.
pub(crate) fn channel() -> (EventSink, EventSource) {
    let (now_tx, now_rx) = mpsc::unbounded_channel();
    let (later_tx, later_rx) = mpsc::unbounded_channel();
    let all = Wants::PERSISTED.with(Wants::APPLIED);
    let wants = Arc::new(AtomicU8::new(all.0));
    (
        EventSink {
            now: now_tx,
            later: later_tx,
            wants: wants.clone(),
        },
        EventSource {
            now: now_rx,
            later: later_rx,
            wants,
            published: all,
        },
    )
}

impl EventSink {
    /// Posts a report that wakes the loop.
    pub fn send(&self, ev: Event) {
        let _ = self.now.send(ev);
    }

    /// Posts a report of kind `kind` that may wait for the loop's next turn, unless the
    /// loop wants that kind at once.
    pub fn defer(&self, kind: Wants, ev: Event) {
        if self.wanted(kind) {
            self.send(ev);
            return;
        }
        let _ = self.later.send(ev);
        // Pairs with the fence in `EventSource::publish`: either the loop's drain after
        // publishing sees this report, or this load sees what it published (then it is
        // woken to drain).
        fence(Ordering::SeqCst);
        if self.wanted(kind) {
            self.send(Event::Nudge);
        }
    }

    fn wanted(&self, kind: Wants) -> bool {
        Wants(self.wants.load(Ordering::SeqCst)).contains(kind)
    }
}

impl EventSource {
    /// Publishes the kinds the loop wants at once. Returns true when it now wants a kind it
    /// did not: the caller must then drain the deferred reports (one may have been posted
    /// just before the change).
    pub fn publish(&mut self, wants: Wants) -> bool {
        if wants == self.published {
            return false;
        }
        let widened = !self.published.contains(wants);
        self.published = wants;
        self.wants.store(wants.0, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        widened
    }

    /// The next deferred report, if any.
    pub fn try_deferred(&mut self) -> Option<Event> {
        self.later.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(index: u64) -> Event {
        Event::Applied { index }
    }

    fn index(ev: Option<Event>) -> Option<u64> {
        match ev {
            Some(Event::Applied { index }) => Some(index),
            _ => None,
        }
    }

    #[test]
    fn deferred_reports_wait_until_wanted() {
        let (sink, mut src) = channel();
        // Everything is wanted at first: a deferrable report wakes the loop.
        sink.defer(Wants::APPLIED, applied(1));
        assert_eq!(index(src.now.try_recv().ok()), Some(1));
        assert!(src.try_deferred().is_none());

        assert!(!src.publish(Wants::PERSISTED));
        sink.defer(Wants::APPLIED, applied(2));
        assert!(src.now.try_recv().is_err(), "not wanted: no wake-up");
        assert_eq!(index(src.try_deferred()), Some(2));

        // A kind that is wanted again: the caller is told to drain, reports wake the loop.
        sink.defer(Wants::APPLIED, applied(3));
        assert!(src.publish(Wants::PERSISTED.with(Wants::APPLIED)));
        assert_eq!(index(src.try_deferred()), Some(3));
        sink.defer(Wants::APPLIED, applied(4));
        assert_eq!(index(src.now.try_recv().ok()), Some(4));
        // Reports that never defer always wake it.
        assert!(!src.publish(Wants::NONE));
        sink.send(applied(5));
        assert_eq!(index(src.now.try_recv().ok()), Some(5));
    }
}
