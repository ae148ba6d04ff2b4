//! The in-flight window of one peer: append messages sent but not yet acknowledged.

use std::collections::VecDeque;

/// A window limited both in messages and in entry bytes.
///
/// Invariant: `bytes` is the sum of the sizes in `queue`; the last indexes in `queue`
/// strictly increase.
#[derive(Clone, Debug)]
pub(crate) struct Inflights {
    queue: VecDeque<(u64, u64)>,
    bytes: u64,
    max_msgs: usize,
    max_bytes: u64,
}

impl Inflights {
    pub(crate) fn new(max_msgs: usize, max_bytes: u64) -> Self {
        Self {
            queue: VecDeque::new(),
            bytes: 0,
            max_msgs,
            max_bytes,
        }
    }

    /// Records a message whose last entry is `last` carrying `bytes` of entries.
    pub(crate) fn add(&mut self, last: u64, bytes: u64) {
        if let Some(&(prev, _)) = self.queue.back() {
            assert!(
                last > prev,
                "in-flight appends must move forward: {last} after {prev}"
            );
        }
        self.queue.push_back((last, bytes));
        self.bytes += bytes;
    }

    /// Frees every message whose last entry is at or below `index`.
    pub(crate) fn free_to(&mut self, index: u64) {
        while let Some(&(last, bytes)) = self.queue.front() {
            if last > index {
                break;
            }
            self.bytes -= bytes;
            self.queue.pop_front();
        }
    }

    /// True when no further message may be sent.
    pub(crate) fn full(&self) -> bool {
        self.queue.len() >= self.max_msgs || self.bytes >= self.max_bytes
    }

    /// Changes the limits; messages already in flight stay recorded.
    pub(crate) fn set_limits(&mut self, max_msgs: usize, max_bytes: u64) {
        self.max_msgs = max_msgs;
        self.max_bytes = max_bytes;
    }

    pub(crate) fn reset(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }

    pub(crate) fn count(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_by_messages_and_bytes() {
        let mut w = Inflights::new(2, 100);
        w.add(5, 10);
        assert!(!w.full());
        w.add(9, 10);
        assert!(w.full());
        w.free_to(5);
        assert!(!w.full());
        w.add(12, 95);
        assert!(w.full(), "byte limit reached");
        w.free_to(12);
        assert_eq!((w.count(), w.bytes()), (0, 0));
    }
}
