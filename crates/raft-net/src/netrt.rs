//! The transport's own threads, so its two kinds of work do not share a CPU queue:
//!
//! - the *network thread*: a single-threaded tokio runtime for the light lanes on both
//!   sides (outbound workers and their connections, the accept loop, inbound light-lane
//!   connections). It sleeps most of the time; it changes its own nice value by
//!   `network_nice` (a negative value, when the process may, so that on wake-up it gets a
//!   CPU ahead of the bulk threads even when those are still owed CPU time) and, with
//!   `network_realtime_priority`, runs under the real-time round-robin policy, so it takes a
//!   CPU the moment it wakes instead of waiting for a running thread's time slice to end;
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
#[cfg(target_os = "linux")]
use tracing::info;

/// A tokio runtime kept on a thread of its own until dropped (so it is never dropped
/// inside another runtime).
#[derive(Debug)]
pub(crate) struct NetRuntime {
    handle: Handle,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl NetRuntime {
    /// Starts the network thread: one current-thread runtime, whose thread changes its
    /// own nice value by `nice` (0 leaves it as it is; see [`adjust_thread_nice`]) and, with
    /// a `realtime` priority of 1 to 99, moves itself to the real-time round-robin policy
    /// (see [`use_realtime_policy`]).
    pub(crate) fn start(node_id: NodeId, nice: i32, realtime: u8) -> Result<Self> {
        let mut builder = Builder::new_current_thread();
        Self::run(&mut builder, format!("raft-net-{node_id}"), move || {
            adjust_thread_nice("network", nice);
            use_realtime_policy("network", realtime);
        })
    }

    /// Starts the bulk runtime: `threads` workers (at least one), each lowering its own
    /// priority by `nice` (0 leaves it as it is).
    pub(crate) fn start_bulk(node_id: NodeId, threads: usize, nice: i32) -> Result<Self> {
        let mut builder = Builder::new_multi_thread();
        builder
            .worker_threads(threads.max(1))
            .thread_name(format!("raft-bulk-{node_id}"))
            .on_thread_start(move || adjust_thread_nice("bulk", nice.max(0)));
        Self::run(&mut builder, format!("raft-bulk-{node_id}-main"), || {})
    }

    /// Builds the runtime and keeps it on a new thread named `name`, which first calls
    /// `on_start` (for a current-thread runtime, this thread is the one that runs its tasks).
    fn run(
        builder: &mut Builder,
        name: String,
        on_start: impl FnOnce() + Send + 'static,
    ) -> Result<Self> {
        let rt = builder.enable_all().build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new().name(name).spawn(move || {
            on_start();
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

/// Changes the calling thread's nice value by `delta` (kept within -20..=19), for the
/// transport's `kind` of thread (`"network"`, `"bulk"`). Linux applies
/// `setpriority(PRIO_PROCESS, tid)` to that one thread. A positive `delta` (a lower
/// priority) is allowed to any process; a negative one needs `CAP_SYS_NICE` or a high
/// enough `RLIMIT_NICE`. Best effort: when refused, the thread keeps its priority, and a
/// refused raise is logged once per process at info level with the reason.
fn adjust_thread_nice(kind: &'static str, delta: i32) {
    if delta == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        use std::sync::atomic::{AtomicBool, Ordering};
        /// Whether a refused raise was logged already (once per process is enough).
        static RAISE_REFUSED_LOGGED: AtomicBool = AtomicBool::new(false);
        let tid = rustix::thread::gettid();
        let result = getpriority_process(Some(tid)).and_then(|now| {
            let target = (now + delta).clamp(-20, 19);
            setpriority_process(Some(tid), target).map(|()| target)
        });
        match result {
            Ok(target) => debug!(
                kind,
                delta,
                nice = target,
                "transport thread's nice value set"
            ),
            Err(e) if delta < 0 => {
                if !RAISE_REFUSED_LOGGED.swap(true, Ordering::Relaxed) {
                    info!(
                        %e,
                        kind,
                        delta,
                        "cannot raise the transport thread's priority (needs CAP_SYS_NICE or \
                         RLIMIT_NICE, e.g. systemd LimitNICE= or AmbientCapabilities=CAP_SYS_NICE); \
                         it keeps its nice value"
                    );
                }
            }
            Err(e) => debug!(%e, kind, delta, "cannot lower the transport thread's priority"),
        }
    }
    #[cfg(not(target_os = "linux"))]
    debug!(kind, delta, "thread nice values are only applied on Linux");
}

/// Moves the calling thread to the real-time round-robin policy (`SCHED_RR`) at
/// `priority` (1 to 99; 0 leaves the thread as it is). A real-time thread that wakes up
/// takes a CPU from any thread of the normal policy at once, instead of waiting for the
/// running one's time slice to end. Needs `CAP_SYS_NICE` or a high enough `RLIMIT_RTPRIO`;
/// best effort: when refused, the thread keeps its policy and a refusal is logged once per
/// process at info level. Linux only.
fn use_realtime_policy(kind: &'static str, priority: u8) {
    if priority == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        use thread_priority::{
            RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue,
            ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
        };
        /// Whether a refusal was logged already (once per process is enough).
        static REFUSED_LOGGED: AtomicBool = AtomicBool::new(false);
        let result = ThreadPriorityValue::try_from(priority)
            .map_err(|e| e.to_string())
            .and_then(|value| {
                set_thread_priority_and_policy(
                    thread_native_id(),
                    ThreadPriority::Crossplatform(value),
                    ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::RoundRobin),
                )
                .map_err(|e| format!("{e:?}"))
            });
        match result {
            Ok(()) => debug!(
                kind,
                priority, "transport thread runs at a real-time priority"
            ),
            Err(e) => {
                if !REFUSED_LOGGED.swap(true, Ordering::Relaxed) {
                    info!(
                        error = %e,
                        kind,
                        priority,
                        "cannot give the transport thread a real-time priority (needs \
                         CAP_SYS_NICE or RLIMIT_RTPRIO, e.g. systemd LimitRTPRIO= or \
                         AmbientCapabilities=CAP_SYS_NICE); it keeps the normal policy"
                    );
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    debug!(
        kind,
        priority, "real-time priorities are only applied on Linux"
    );
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

    /// Whether this process may lower a thread's nice value (root, CAP_SYS_NICE or a
    /// high enough RLIMIT_NICE), tried on a scratch thread.
    fn may_raise_priority() -> bool {
        use rustix::process::{getpriority_process, setpriority_process};
        std::thread::spawn(|| {
            let tid = rustix::thread::gettid();
            let now = getpriority_process(Some(tid)).unwrap();
            now > -20 && setpriority_process(Some(tid), now - 1).is_ok()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn network_thread_raises_its_priority_when_allowed() {
        use rustix::process::getpriority_process;
        let base = getpriority_process(None).unwrap();
        let allowed = may_raise_priority();
        let net = NetRuntime::start(1, -3, 0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        net.handle().spawn(async move {
            let tid = rustix::thread::gettid();
            let name = std::thread::current().name().map(str::to_owned);
            tx.send((getpriority_process(Some(tid)).unwrap(), name))
                .unwrap();
        });
        let (nice, name) = rx.recv().unwrap();
        assert_eq!(name.as_deref(), Some("raft-net-1"));
        if allowed {
            assert_eq!(nice, (base - 3).max(-20));
        } else {
            // Refused: the transport still runs, at the nice value it inherited.
            assert_eq!(nice, base);
        }
        assert_eq!(getpriority_process(None).unwrap(), base);

        // 0 leaves the thread as it is.
        let plain = NetRuntime::start(2, 0, 0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        plain.handle().spawn(async move {
            let tid = rustix::thread::gettid();
            tx.send(getpriority_process(Some(tid)).unwrap()).unwrap();
        });
        assert_eq!(rx.recv().unwrap(), base);
    }

    /// The network thread takes the real-time policy when the process may give it one
    /// (root, CAP_SYS_NICE, RLIMIT_RTPRIO), and otherwise runs on under the normal policy.
    #[test]
    fn network_thread_runs_at_a_real_time_priority_when_allowed() {
        use thread_priority::{
            RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue,
            ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
            thread_schedule_policy,
        };
        let rr = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::RoundRobin);
        // Whether this process may: try on a thread of its own.
        let allowed = std::thread::spawn(move || {
            set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Crossplatform(ThreadPriorityValue::try_from(1u8).unwrap()),
                rr,
            )
            .is_ok()
        })
        .join()
        .unwrap();
        let policy_on = |net: &NetRuntime| {
            let (tx, rx) = std::sync::mpsc::channel();
            net.handle().spawn(async move {
                tx.send(thread_schedule_policy().unwrap()).unwrap();
            });
            rx.recv().unwrap()
        };
        let net = NetRuntime::start(1, 0, 1).unwrap();
        assert_eq!(policy_on(&net) == rr, allowed, "allowed: {allowed}");
        // Priority 0 leaves the thread under the normal policy.
        let plain = NetRuntime::start(2, 0, 0).unwrap();
        assert_ne!(policy_on(&plain), rr);
        // The caller's thread is untouched.
        assert_ne!(thread_schedule_policy().unwrap(), rr);
    }
}
