//! Installing the Prometheus recorder that every metric of the toolkit goes to.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Errors from setting up the exporter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The recorder could not be built or installed (e.g. another recorder is installed).
    #[error("installing the Prometheus recorder: {0}")]
    Install(String),
    /// The bucket configuration was refused.
    #[error("configuring histogram buckets: {0}")]
    Buckets(String),
}

/// Result of this crate's fallible functions.
pub type Result<T> = std::result::Result<T, Error>;

/// Buckets (in seconds) for latency histograms: 50 µs to 10 s, dense around the
/// sub-millisecond range where fsync and loopback commit latencies live.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.003, 0.005,
    0.007_5, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets for size histograms (entries or bytes per batch): powers of four up to 16 Mi.
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0,
];

fn builder() -> Result<PrometheusBuilder> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets(SIZE_BUCKETS))
        .map_err(|e| Error::Buckets(e.to_string()))
}

/// Installs the process-wide Prometheus recorder, describes every metric of the toolkit,
/// and returns a handle that renders the exposition text (for a `/metrics` endpoint the
/// caller serves, next to its own `/health` and `/status`; the exporter's own HTTP listener
/// is not compiled in). The caller runs [`PrometheusHandle::run_upkeep`] now and then (raftd
/// does every few seconds) so histograms are drained even when nobody scrapes.
pub fn install_recorder() -> Result<PrometheusHandle> {
    let handle = builder()?
        .install_recorder()
        .map_err(|e| Error::Install(e.to_string()))?;
    crate::describe_all();
    Ok(handle)
}
