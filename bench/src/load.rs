//! Closed-loop load through the etcd v3 API (the `etcd-client` crate): `clients` concurrent
//! callers, each sending its next request when the previous one answered. Given several
//! endpoints, each caller sends its requests to them in turn, as etcd's clients balance
//! requests over the endpoints they are given (round robin per request); latencies are
//! also kept per endpoint, so a report can say what each member's role costs.

use crate::cluster::connect_tls;
use anyhow::{Result, bail};
use etcd_client::{Client, GetOptions};
use std::time::{Duration, Instant};

/// Bytes in every key (`{:08}` of a number below the key space).
pub const KEY_LEN: usize = 8;

/// One workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Puts of `value_size`-byte values to random keys of the key space.
    Put,
    /// Linearizable (ReadIndex / quorum) gets of random keys of the read key space.
    GetLinearizable,
    /// Serializable (local) gets of random keys of the read key space.
    GetSerializable,
    /// Nine linearizable gets for every put (chosen at random), over the read key space.
    Mixed,
    /// Linearizable gets of random keys of the read key space at this store revision (an
    /// old one: a read of the history, `etcdctl get --rev`).
    GetAtRevision(i64),
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// The workload.
    pub workload: Workload,
    /// Concurrent callers.
    pub clients: usize,
    /// Measured time (after a warm-up of a fifth of it, at most 1 s).
    pub duration: Duration,
    /// Keys are `0..key_space`.
    pub key_space: u64,
    /// Value size of puts, in bytes.
    pub value_size: usize,
    /// TLS settings, for a TLS cluster.
    pub tls: Option<etcd_client::TlsOptions>,
}

/// The outcome of one load run.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Successful requests in the measured window.
    pub ops: u64,
    /// Successful requests in the whole run, warm-up included.
    pub all_ops: u64,
    /// Failed requests in the measured window.
    pub errors: u64,
    /// The first error seen in the measured window, if any (to say what failed).
    pub first_error: Option<String>,
    /// The measured window.
    pub elapsed: Duration,
    /// Latencies of the successful requests, in microseconds, sorted.
    latencies_us: Vec<u32>,
    /// The same, per endpoint (in the order given to [`run`]), each sorted.
    per_endpoint_us: Vec<Vec<u32>>,
}

impl Stats {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies, in milliseconds (0 without samples).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.latencies_us, q)
    }

    /// The `q` quantile of the latencies of the requests sent to the endpoints `which`
    /// (indexes into the endpoints given to [`run`]); 0 without samples.
    pub fn quantile_ms_at(&self, which: &[usize], q: f64) -> f64 {
        let mut v: Vec<u32> = which
            .iter()
            .filter_map(|&i| self.per_endpoint_us.get(i))
            .flatten()
            .copied()
            .collect();
        v.sort_unstable();
        quantile_ms(&v, q)
    }
}

/// The `q` quantile (0..=1) of sorted latencies in microseconds, in milliseconds (0 without
/// samples).
pub fn quantile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    sorted_us[i] as f64 / 1000.0
}

/// Client connections for `clients` callers: one per 16 callers, at most 16. The same for
/// every server, so the comparison is fair.
pub fn connections_for(clients: usize) -> usize {
    clients.div_ceil(16).clamp(1, 16)
}

/// A key of the key space, 8 bytes.
pub fn key(n: u64) -> String {
    format!("{:08}", n % 100_000_000)
}

/// xorshift64*: a cheap, seeded key picker (one per caller).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Writes keys `0..n` (so that gets find values), with 64 concurrent callers.
pub async fn fill(
    endpoints: &[String],
    n: u64,
    value_size: usize,
    tls: Option<etcd_client::TlsOptions>,
) -> Result<()> {
    let client = connect_tls(endpoints, Duration::from_secs(10), tls).await?;
    let value = vec![b'v'; value_size];
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let mut kv = client.kv_client();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while i < n {
                kv.put(key(i), value.clone(), None).await?;
                i += 64;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Runs `spec` against `endpoints` and returns what was measured in the window after the
/// warm-up. Every endpoint gets its own connections (as many as [`connections_for`] the
/// callers); each caller starts at a different endpoint and moves to the next after every
/// request.
pub async fn run(endpoints: &[String], spec: &LoadSpec) -> Result<Stats> {
    if spec.clients == 0 || spec.key_space == 0 || endpoints.is_empty() {
        bail!("a load needs at least one client, one key and one endpoint");
    }
    let mut conns: Vec<Vec<Client>> = Vec::new();
    for ep in endpoints {
        let mut per = Vec::new();
        for _ in 0..connections_for(spec.clients) {
            let one = std::slice::from_ref(ep);
            per.push(connect_tls(one, Duration::from_secs(10), spec.tls.clone()).await?);
        }
        conns.push(per);
    }
    let warmup = (spec.duration / 5).min(Duration::from_secs(1));
    let start = Instant::now() + warmup;
    let end = start + spec.duration;
    let value = vec![b'x'; spec.value_size];
    let n_eps = endpoints.len();
    let mut tasks = Vec::with_capacity(spec.clients);
    for c in 0..spec.clients {
        let mut kvs: Vec<_> = conns
            .iter()
            .map(|per| per[(c / n_eps) % per.len()].kv_client())
            .collect();
        let value = value.clone();
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng =
                Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
            let mut lat: Vec<Vec<u32>> = vec![Vec::new(); n_eps];
            let (mut ops, mut errors, mut all_ops) = (0u64, 0u64, 0u64);
            let mut first_error = None;
            let mut at = c % n_eps;
            loop {
                let r = rng.next();
                let k = key(r % spec.key_space);
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let kv = &mut kvs[at];
                let write = match spec.workload {
                    Workload::Put => true,
                    Workload::Mixed => (r >> 32).is_multiple_of(10),
                    Workload::GetLinearizable
                    | Workload::GetSerializable
                    | Workload::GetAtRevision(_) => false,
                };
                let outcome = if write {
                    kv.put(k, value.clone(), None).await.map(drop)
                } else if let Workload::GetAtRevision(rev) = spec.workload {
                    kv.get(k, Some(GetOptions::new().with_revision(rev)))
                        .await
                        .map(drop)
                } else if spec.workload == Workload::GetSerializable {
                    kv.get(k, Some(GetOptions::new().with_serializable()))
                        .await
                        .map(drop)
                } else {
                    kv.get(k, None).await.map(drop)
                };
                let done = Instant::now();
                let ep = at;
                at = (at + 1) % n_eps;
                all_ops += u64::from(outcome.is_ok());
                if sent < start || done > end {
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        ops += 1;
                        let us = u32::try_from((done - sent).as_micros()).unwrap_or(u32::MAX);
                        lat[ep].push(us);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (ops, all_ops, errors, first_error, lat)
        }));
    }
    let mut stats = Stats {
        ops: 0,
        all_ops: 0,
        errors: 0,
        first_error: None,
        elapsed: spec.duration,
        latencies_us: Vec::new(),
        per_endpoint_us: vec![Vec::new(); n_eps],
    };
    for t in tasks {
        let (ops, all_ops, errors, first_error, lat) = t.await?;
        stats.ops += ops;
        stats.all_ops += all_ops;
        stats.errors += errors;
        if stats.first_error.is_none() {
            stats.first_error = first_error;
        }
        for (i, l) in lat.into_iter().enumerate() {
            stats.latencies_us.extend_from_slice(&l);
            stats.per_endpoint_us[i].extend(l);
        }
    }
    stats.latencies_us.sort_unstable();
    for l in &mut stats.per_endpoint_us {
        l.sort_unstable();
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_eight_bytes() {
        assert_eq!(key(0).len(), KEY_LEN);
        assert_eq!(key(12_345_678_901).len(), KEY_LEN);
    }

    #[test]
    fn quantiles_pick_sorted_samples() {
        let s = Stats {
            ops: 4,
            all_ops: 5,
            errors: 0,
            first_error: None,
            elapsed: Duration::from_secs(2),
            latencies_us: vec![1000, 2000, 3000, 10_000],
            per_endpoint_us: vec![vec![1000, 10_000], vec![2000, 3000]],
        };
        assert_eq!(s.throughput(), 2.0);
        assert_eq!(s.quantile_ms(0.0), 1.0);
        assert_eq!(s.quantile_ms(0.5), 3.0);
        assert_eq!(s.quantile_ms(1.0), 10.0);
        assert_eq!(s.quantile_ms_at(&[1], 1.0), 3.0);
        assert_eq!(s.quantile_ms_at(&[0], 0.0), 1.0);
        assert_eq!(s.quantile_ms_at(&[0, 1], 0.5), 3.0);
        assert_eq!(s.quantile_ms_at(&[], 0.5), 0.0);
    }

    #[test]
    fn connections_grow_with_clients() {
        assert_eq!(connections_for(1), 1);
        assert_eq!(connections_for(16), 1);
        assert_eq!(connections_for(17), 2);
        assert_eq!(connections_for(256), 16);
        assert_eq!(connections_for(10_000), 16);
    }
}
