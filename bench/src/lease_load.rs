//! Lease load (the `etcd-client` crate), issue 20's lease churn: closed-loop callers spread
//! over the endpoints, either each running grant + put with the lease + revoke cycles
//! ([`LeaseWorkload::Churn`]: cycles per second, a cycle's latency), or each keeping one lease
//! alive on its own stream as fast as the answers come ([`LeaseWorkload::KeepAlive`]:
//! keep-alives per second, their latency; a follower forwards them to the leader).

use crate::cluster::connect;
use anyhow::{Context, Result, bail};
use etcd_client::{Client, PutOptions};
use std::time::{Duration, Instant};

/// What each caller does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseWorkload {
    /// Grant (TTL 60 s), put one key with the lease, revoke: one cycle.
    Churn,
    /// Keep one lease alive, one keep-alive at a time on a stream of its own.
    KeepAlive,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LeaseSpec {
    /// The workload.
    pub workload: LeaseWorkload,
    /// Concurrent callers.
    pub clients: usize,
    /// Measured time (after a warm-up of a fifth of it, at most 1 s).
    pub duration: Duration,
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct LeaseStats {
    /// Operations (cycles or keep-alives) completed in the measured window.
    pub ops: u64,
    /// Failed operations (the run goes on).
    pub errors: u64,
    /// The measured window.
    pub elapsed: Duration,
    /// Latencies of the measured operations in microseconds, sorted.
    latencies_us: Vec<u32>,
}

impl LeaseStats {
    /// Operations per second.
    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// One grant + put + revoke cycle.
async fn churn(c: &mut Client, key: &str) -> Result<()> {
    let id = c.lease_grant(60, None).await?.id();
    c.put(key, "v", Some(PutOptions::new().with_lease(id)))
        .await?;
    c.lease_revoke(id).await?;
    Ok(())
}

/// Runs `spec` against `endpoints` (callers spread over them round-robin).
pub async fn run(endpoints: &[String], spec: &LeaseSpec) -> Result<LeaseStats> {
    if endpoints.is_empty() || spec.clients == 0 {
        bail!("no endpoints or no callers");
    }
    let warm = (spec.duration / 5).min(Duration::from_secs(1));
    let start = Instant::now();
    let (from, until) = (start + warm, start + warm + spec.duration);
    let mut tasks = Vec::new();
    for i in 0..spec.clients {
        let ep = endpoints[i % endpoints.len()].clone();
        let mut c = connect(&[ep], Duration::from_secs(10)).await?;
        let workload = spec.workload;
        tasks.push(tokio::spawn(async move {
            let (mut ops, mut errors, mut lat) = (0u64, 0u64, Vec::new());
            let key = format!("lease-load/{i}");
            let mut keeper = None;
            if workload == LeaseWorkload::KeepAlive {
                let id = c.lease_grant(60, None).await?.id();
                keeper = Some(c.lease_keep_alive(id).await?);
            }
            loop {
                let t0 = Instant::now();
                if t0 >= until {
                    break;
                }
                let done = match (&mut keeper, workload) {
                    (Some((k, s)), LeaseWorkload::KeepAlive) => {
                        async {
                            k.keep_alive().await?;
                            s.message().await?.context("the keep-alive stream ended")?;
                            anyhow::Ok(())
                        }
                        .await
                    }
                    _ => churn(&mut c, &key).await,
                };
                let took = t0.elapsed();
                if t0 >= from {
                    match done {
                        Ok(()) => {
                            ops += 1;
                            lat.push(took.as_micros().min(u32::MAX as u128) as u32);
                        }
                        Err(_) => errors += 1,
                    }
                }
            }
            anyhow::Ok((ops, errors, lat))
        }));
    }
    let mut stats = LeaseStats {
        ops: 0,
        errors: 0,
        elapsed: spec.duration,
        latencies_us: Vec::new(),
    };
    for t in tasks {
        let (ops, errors, lat) = t.await??;
        stats.ops += ops;
        stats.errors += errors;
        stats.latencies_us.extend(lat);
    }
    stats.latencies_us.sort_unstable();
    Ok(stats)
}
