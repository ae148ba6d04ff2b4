//! Tickets: how a caller learns that its write is durable (or failed).
//!
//! A [`Ticket`] can be waited on from plain threads ([`Ticket::wait`]), awaited as a
//! `std::future::Future` from any async runtime (no runtime dependency), or given a callback
//! ([`Ticket::on_complete`]) that runs on the writer thread the moment the batch is durable.

use crate::error::{Error, Result};
use parking_lot::{Condvar, Mutex};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

type Callback = Box<dyn FnOnce(Result<()>) + Send + 'static>;

/// Runs a pending batch on the calling thread when the writer is idle.
pub(crate) type Helper = Arc<dyn Fn() + Send + Sync>;

enum Slot {
    Pending {
        waker: Option<Waker>,
        callback: Option<Callback>,
    },
    Done(Result<()>),
}

struct Inner {
    slot: Mutex<Slot>,
    cv: Condvar,
}

/// The promise of one write: completes with `Ok(())` once the write is durable (as the
/// [`SyncPolicy`](crate::SyncPolicy) defines it), or with the error that stopped the writer.
#[must_use = "a write is only known to be durable once its ticket completes"]
pub struct Ticket {
    inner: Arc<Inner>,
    helper: Option<Helper>,
    /// Wakes the writer for a write that did not wake it when submitted (a deferred one):
    /// called once someone waits for the outcome.
    kick: Option<Helper>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("complete", &self.is_complete())
            .finish()
    }
}

/// The writer's side of a ticket.
pub(crate) struct Completer {
    inner: Arc<Inner>,
}

/// A new pending ticket and the handle that completes it.
pub(crate) fn ticket() -> (Ticket, Completer) {
    let inner = Arc::new(Inner {
        slot: Mutex::new(Slot::Pending {
            waker: None,
            callback: None,
        }),
        cv: Condvar::new(),
    });
    (
        Ticket {
            inner: inner.clone(),
            helper: None,
            kick: None,
        },
        Completer { inner },
    )
}

impl Ticket {
    /// Lets [`Ticket::wait`] run the writer's next batch on the waiting thread when the
    /// writer is idle.
    pub(crate) fn with_helper(mut self, helper: Helper) -> Self {
        self.helper = Some(helper);
        self
    }

    /// For a write submitted without waking the writer: `kick` wakes it once the outcome is
    /// waited for (by any of `wait`, `wait_timeout`, `on_complete` or polling).
    pub(crate) fn with_kick(mut self, kick: Helper) -> Self {
        self.kick = Some(kick);
        self
    }

    fn kick(&self) {
        if let Some(kick) = &self.kick {
            kick();
        }
    }

    /// Blocks until the write is durable or failed. When no batch is being written, the
    /// waiting thread writes and syncs the pending batch itself (saving the hand-offs to and
    /// from the writer thread); otherwise it sleeps until the batch with its write completes.
    pub fn wait(self) -> Result<()> {
        if !self.is_complete() {
            // The writer may be busy with another batch, so `help` may not run this one.
            self.kick();
            if let Some(help) = &self.helper {
                help();
            }
        }
        let mut slot = self.inner.slot.lock();
        loop {
            if let Slot::Done(r) = &*slot {
                return r.clone();
            }
            self.inner.cv.wait(&mut slot);
        }
    }

    /// Blocks for at most `timeout`; `None` when the write is still in flight.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<()>> {
        self.kick();
        let deadline = std::time::Instant::now() + timeout;
        let mut slot = self.inner.slot.lock();
        loop {
            if let Slot::Done(r) = &*slot {
                return Some(r.clone());
            }
            if self.inner.cv.wait_until(&mut slot, deadline).timed_out() {
                return match &*slot {
                    Slot::Done(r) => Some(r.clone()),
                    Slot::Pending { .. } => None,
                };
            }
        }
    }

    /// True once the outcome is known.
    pub fn is_complete(&self) -> bool {
        matches!(&*self.inner.slot.lock(), Slot::Done(_))
    }

    /// Runs `f` with the outcome: right away when it is known, otherwise on the thread that
    /// completes the batch (the writer thread, or a thread blocked in [`Ticket::wait`]). Keep
    /// `f` short (it delays the next batch) and never let it block on another ticket: the
    /// writing thread would be waiting for itself. Handing the
    /// result to a channel or waking a task is the intended use.
    pub fn on_complete(self, f: impl FnOnce(Result<()>) + Send + 'static) {
        let mut slot = self.inner.slot.lock();
        match &mut *slot {
            Slot::Done(r) => {
                let r = r.clone();
                drop(slot);
                f(r);
            }
            Slot::Pending { callback, .. } => {
                *callback = Some(Box::new(f));
                drop(slot);
                self.kick();
            }
        }
    }
}

impl Future for Ticket {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut slot = self.inner.slot.lock();
        match &mut *slot {
            Slot::Done(r) => Poll::Ready(r.clone()),
            Slot::Pending { waker, .. } => {
                let first = waker.is_none();
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                drop(slot);
                if first {
                    self.kick();
                }
                Poll::Pending
            }
        }
    }
}

impl Completer {
    /// Delivers the outcome to whoever waits: a blocked thread, a task or a callback.
    pub fn complete(self, result: Result<()>) {
        let mut slot = self.inner.slot.lock();
        let old = std::mem::replace(&mut *slot, Slot::Done(result.clone()));
        drop(slot);
        self.inner.cv.notify_all();
        if let Slot::Pending { waker, callback } = old {
            if let Some(w) = waker {
                w.wake();
            }
            if let Some(cb) = callback {
                cb(result);
            }
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        // A completer dropped without an outcome (writer gone) must not strand its waiter.
        let pending = matches!(&*self.inner.slot.lock(), Slot::Pending { .. });
        if pending {
            Completer {
                inner: self.inner.clone(),
            }
            .complete(Err(Error::Closed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn wait_callback_and_drop() {
        let (t, c) = ticket();
        let h = std::thread::spawn(move || t.wait());
        c.complete(Ok(()));
        assert!(h.join().unwrap().is_ok());

        let (t, c) = ticket();
        let hit = Arc::new(AtomicBool::new(false));
        let h2 = hit.clone();
        t.on_complete(move |r| h2.store(r.is_ok(), Ordering::SeqCst));
        c.complete(Ok(()));
        assert!(hit.load(Ordering::SeqCst));

        let (t, c) = ticket();
        drop(c);
        assert!(matches!(t.wait(), Err(Error::Closed)));
    }
}
