//! A bounded per-peer send queue (in messages and bytes) that never blocks the producer.

use metrics::gauge;
use raft_core::Message;
use raft_metrics::net as m;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// Messages waiting for one peer on one lane.
///
/// Invariant: `bytes` is the sum of the sizes recorded with the queued messages, and never
/// exceeds `max_bytes` except by a single message pushed into an empty queue.
#[derive(Debug)]
pub(crate) struct SendQueue {
    state: Mutex<State>,
    notify: Notify,
    max_messages: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<(Message, usize)>,
    bytes: usize,
    closed: bool,
}

impl SendQueue {
    /// An empty queue with the given bounds.
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            max_messages: max_messages.max(1),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `msg` of `size` bytes; false (and `msg` dropped) when the queue is full or
    /// closed.
    #[must_use]
    pub(crate) fn push(&self, msg: Message, size: usize) -> bool {
        {
            let mut s = self.lock();
            let full = s.items.len() >= self.max_messages
                || (!s.items.is_empty() && s.bytes + size > self.max_bytes);
            if s.closed || full {
                return false;
            }
            s.bytes += size;
            s.items.push_back((msg, size));
        }
        gauge!(m::QUEUED_MESSAGES).increment(1.0);
        self.notify.notify_one();
        true
    }

    /// Takes the next batch: at least one message, then more while under both bounds.
    /// Waits while the queue is empty; `None` once closed.
    pub(crate) async fn pop_batch(
        &self,
        max_messages: usize,
        max_bytes: usize,
    ) -> Option<Vec<Message>> {
        loop {
            {
                let mut s = self.lock();
                if s.closed {
                    return None;
                }
                if !s.items.is_empty() {
                    let mut out = Vec::new();
                    let mut bytes = 0;
                    while let Some((_, size)) = s.items.front() {
                        if !out.is_empty()
                            && (out.len() >= max_messages || bytes + size > max_bytes)
                        {
                            break;
                        }
                        let (msg, size) = s.items.pop_front().expect("front exists");
                        bytes += size;
                        s.bytes -= size;
                        out.push(msg);
                    }
                    gauge!(m::QUEUED_MESSAGES).decrement(out.len() as f64);
                    return Some(out);
                }
            }
            self.notify.notified().await;
        }
    }

    /// Drops everything queued; returns how many messages were dropped.
    pub(crate) fn clear(&self) -> usize {
        let n = {
            let mut s = self.lock();
            let n = s.items.len();
            s.items.clear();
            s.bytes = 0;
            n
        };
        gauge!(m::QUEUED_MESSAGES).decrement(n as f64);
        n
    }

    /// Closes the queue: pushes fail and the consumer's `pop_batch` returns `None`.
    pub(crate) fn close(&self) {
        self.clear();
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Messages currently queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::MessageBody;

    fn msg(term: u64) -> Message {
        Message {
            from: 1,
            to: 2,
            term,
            body: MessageBody::TimeoutNow,
        }
    }

    #[tokio::test]
    async fn bounds_in_messages_and_bytes() {
        let q = SendQueue::new(3, 100);
        assert!(q.push(msg(1), 40));
        assert!(q.push(msg(2), 40));
        assert!(!q.push(msg(3), 40), "byte bound");
        assert!(q.push(msg(3), 10));
        assert!(!q.push(msg(4), 1), "message bound");
        let b = q.pop_batch(2, 1000).await.unwrap();
        assert_eq!(b.iter().map(|m| m.term).collect::<Vec<_>>(), [1, 2]);
        let b = q.pop_batch(10, 1).await.unwrap();
        assert_eq!(b.len(), 1, "at least one message even over the byte bound");
        // One oversized message is accepted into an empty queue.
        assert!(q.push(msg(5), 1000));
        assert_eq!(q.clear(), 1);
        assert_eq!(q.len(), 0);
        q.close();
        assert!(q.pop_batch(1, 1).await.is_none());
        assert!(!q.push(msg(6), 1));
    }

    #[tokio::test]
    async fn consumer_wakes_on_push() {
        let q = std::sync::Arc::new(SendQueue::new(10, 1000));
        let q2 = q.clone();
        let t = tokio::spawn(async move { q2.pop_batch(10, 1000).await });
        tokio::task::yield_now().await;
        assert!(q.push(msg(9), 1));
        assert_eq!(t.await.unwrap().unwrap()[0].term, 9);
    }
}
