//! The transport's own threads, so its two kinds of work do not share a CPU queue:
//!
//! - the *network thread*: a single-threaded tokio runtime at normal priority for the light
//!   lanes on both sides (outbound workers and their connections, the accept loop, inbound
//!   light-lane connections). It sleeps most of the time, so the kernel gives it a CPU
//!   soon after it wakes;
//! - the *bulk runtime*: a multi-threaded tokio runtime for the heavy work (outbound append
//!   streams, inbound append streams and snapshot transfers: encoding, socket I/O,
//!   decoding), whose threads lower their own scheduling priority by `bulk_nice`, so the
//!   light lanes and the caller's runtime (where the Raft loop runs) get a CPU first when
//!   the append streams keep every core busy.

use crate::error::Result;
use raft_core::NodeId;
use std::sync::Mutex;
use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;
use tracing::debug;

/// A tokio runtime kept on a thread of its own until dropped (so it is never dropped
/// inside another runtime).
#[derive(Debug)]
pub(crate) struct NetRuntime {
    handle: Handle,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl NetRuntime {
    /// Starts the network thread: one current-thread runtime at normal priority.
    pub(crate) fn start(node_id: NodeId) -> Result<Self> {
        let mut builder = Builder::new_current_thread();
        Self::run(&mut builder, format!("raft-net-{node_id}"))
    }

    /// Starts the bulk runtime: `threads` workers (at least one), each lowering its own
    /// priority by `nice` (0 leaves it as it is).
    pub(crate) fn start_bulk(node_id: NodeId, threads: usize, nice: i32) -> Result<Self> {
        let mut builder = Builder::new_multi_thread();
        builder
            .worker_threads(threads.max(1))
            .thread_name(format!("raft-bulk-{node_id}"))
            .on_thread_start(move || lower_thread_priority(nice));
        Self::run(&mut builder, format!("raft-bulk-{node_id}-main"))
    }

    fn run(builder: &mut Builder, name: String) -> Result<Self> {
        let rt = builder.enable_all().build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new().name(name).spawn(move || {
            rt.block_on(async {
                let _ = stopped.await;
            });
            rt.shutdown_background();
        })?;
        Ok(Self {
            handle,
            stop: Mutex::new(Some(stop)),
        })
    }

    /// Where to spawn onto this runtime.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for NetRuntime {
    fn drop(&mut self) {
        let stop = self
            .stop
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
    }
}

/// Raises the calling thread's nice value by `nice` (a lower priority; any user may do
/// this). Linux applies `setpriority(PRIO_PROCESS, tid)` to that one thread. Best effort:
/// a failure is logged and the thread keeps its priority.
fn lower_thread_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let tid = rustix::thread::gettid();
        let result = getpriority_process(Some(tid))
            .and_then(|now| setpriority_process(Some(tid), (now + nice).min(19)));
        if let Err(e) = result {
            debug!(%e, nice, "cannot lower the bulk thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    debug!(nice, "bulk_nice is only applied on Linux");
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn bulk_threads_run_at_the_lower_priority() {
        use rustix::process::getpriority_process;
        let base = getpriority_process(None).unwrap();
        let bulk = NetRuntime::start_bulk(1, 1, 5).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        bulk.handle().spawn(async move {
            let nice = getpriority_process(Some(rustix::thread::gettid())).unwrap();
            tx.send(nice).unwrap();
        });
        let nice = rx.recv().unwrap();
        assert_eq!(nice, (base + 5).min(19));
        // The caller's thread is untouched.
        assert_eq!(getpriority_process(None).unwrap(), base);
    }
}
