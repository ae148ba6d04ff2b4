//! The periodic corruption check (`corrupt_check_interval`, etcd's
//! `--experimental-corrupt-check-time`): while this member leads, every interval it runs
//! raft-kv's [`EtcdService::check_corruption`], asking the other members for their `HashKV`
//! over the peer port (application requests of kind [`HASHKV_KIND`]). A mismatch raises the
//! CORRUPT alarm through the log; each round is counted in raft-metrics'
//! `raftd_corruption_checks_total` (`CORRUPTION_CHECKS`).

use bytes::Bytes;
use raft_kv::service::EtcdService;
use raft_kv::service::corruption::{PeerCall, PeerFuture};
use raft_metrics::node::CORRUPTION_CHECKS;
use raft_net::PeerTransport;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The application-request kind of `HashKV` requests between members.
pub const HASHKV_KIND: &str = "etcd.hashkv";

/// Sends `HashKV` requests to members over the peer transport.
pub struct PeerHashCall(pub PeerTransport);

impl PeerCall for PeerHashCall {
    fn call(&self, to: u64, request: Bytes) -> PeerFuture {
        let net = self.0.clone();
        Box::pin(async move {
            net.call(to, HASHKV_KIND, request)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Runs the check every `interval_ms` milliseconds (0: off, looked at again every second,
/// so a reload turns it on or off) while this member leads.
pub async fn run(service: EtcdService, net: PeerTransport, interval_ms: Arc<AtomicU64>) {
    let peers = PeerHashCall(net);
    let mut announced = 0;
    loop {
        let ms = interval_ms.load(Ordering::Relaxed);
        if ms != announced {
            if ms == 0 {
                tracing::info!("corruption check off");
            } else {
                tracing::info!(
                    interval = %humantime::format_duration(Duration::from_millis(ms)),
                    "corruption check on"
                );
            }
            announced = ms;
        }
        if ms == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if interval_ms.load(Ordering::Relaxed) == 0 || !service.is_leader() {
            continue;
        }
        let result = match service.check_corruption(&peers).await {
            Ok(r) if r.mismatched.is_empty() => {
                tracing::debug!(
                    revision = r.revision,
                    matched = r.matched.len(),
                    skipped = r.skipped.len(),
                    "corruption check passed"
                );
                "ok"
            }
            Ok(r) => {
                tracing::error!(
                    revision = r.revision,
                    compact_revision = r.compact_revision,
                    mismatched = ?r.mismatched.iter().map(|id| format!("{id:x}")).collect::<Vec<_>>(),
                    raised = r.raised.len(),
                    "corruption check found damaged members: CORRUPT alarm active, writes refused"
                );
                "mismatch"
            }
            Err(status) => {
                tracing::warn!(%status, "corruption check did not run");
                "error"
            }
        };
        metrics::counter!(CORRUPTION_CHECKS, "result" => result).increment(1);
    }
}
