//! The transport's own network thread: a single-threaded tokio runtime that runs the
//! outbound light lanes (and their connections), so heartbeats and votes are not scheduled
//! behind the CPU work of big appends on the caller's runtime. Inbound connections stay on
//! the caller's runtime (one thread serving every connection would put the light calls
//! behind the append streams' socket I/O).

use crate::error::Result;
use raft_core::NodeId;
use std::sync::Mutex;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A dedicated thread running a current-thread runtime until dropped.
#[derive(Debug)]
pub(crate) struct NetRuntime {
    handle: Handle,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl NetRuntime {
    /// Starts the thread.
    pub(crate) fn start(node_id: NodeId) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("raft-net-{node_id}"))
            .spawn(move || {
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

    /// Where to spawn onto the network thread.
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
