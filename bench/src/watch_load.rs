//! Watch fan-out under a steady put load (the `etcd-client` crate): many watchers spread
//! over a few streams on every endpoint, either all on one key or spread over prefixes,
//! while closed-loop callers put to the watched keys. Measures events delivered per second
//! and the put-to-event latency (each value carries the time its put was sent).

use crate::cluster::connect;
use anyhow::{Context, Result, bail};
use etcd_client::{Client, WatchOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Which keys the watchers watch and the puts write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Every watcher watches the one key every put writes.
    OneKey,
    /// Watchers spread evenly over this many prefixes; each put writes a key under a
    /// random one of them.
    Prefixes(usize),
}

/// What to run.
#[derive(Clone, Debug)]
pub struct WatchSpec {
    /// The watched keys.
    pub layout: Layout,
    /// Watchers in all.
    pub watchers: usize,
    /// Watchers per stream (as a Go client multiplexes a process's watches).
    pub per_stream: usize,
    /// Concurrent put callers.
    pub put_clients: usize,
    /// Measured time (after a warm-up of a fifth of it, at most 1 s).
    pub duration: Duration,
    /// Value size of the puts (at least 16: the send time is in the value).
    pub value_size: usize,
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct WatchStats {
    /// Puts acknowledged in the measured window.
    pub puts: u64,
    /// Events received by all watchers in the measured window.
    pub events: u64,
    /// Events each put should reach (watchers of its key).
    pub fan_out: u64,
    /// The measured window.
    pub elapsed: Duration,
    /// Put-to-event latencies in microseconds (every 16th event), sorted.
    latencies_us: Vec<u32>,
}

impl WatchStats {
    /// Events delivered per second.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// Puts per second.
    pub fn puts_per_sec(&self) -> f64 {
        self.puts as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the put-to-event latencies, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// The key prefix of prefix `i` (`watch/p0042/`).
fn prefix(i: usize) -> String {
    format!("watch/p{i:04}/")
}

/// A value of `size` bytes starting with the send time (microseconds since `base`, 16 hex
/// digits).
fn stamped(base: Instant, size: usize) -> Vec<u8> {
    let mut v = format!("{:016x}", base.elapsed().as_micros() as u64).into_bytes();
    v.resize(size.max(16), b'x');
    v
}

/// The send time carried by a value.
fn stamp(value: &[u8]) -> Option<Duration> {
    let hex = std::str::from_utf8(value.get(..16)?).ok()?;
    u64::from_str_radix(hex, 16).ok().map(Duration::from_micros)
}

/// Runs `spec` against `endpoints`: watchers round-robin over the endpoints, puts through
/// the first connection that works.
pub async fn run(endpoints: &[String], spec: &WatchSpec) -> Result<WatchStats> {
    if spec.watchers == 0 || spec.per_stream == 0 || spec.put_clients == 0 {
        bail!("a watch load needs watchers, streams and put callers");
    }
    if let Layout::Prefixes(0) = spec.layout {
        bail!("a prefix layout needs at least one prefix");
    }
    let base = Instant::now();
    let warmup = (spec.duration / 5).min(Duration::from_secs(1));
    let events = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let streams = spec.watchers.div_ceil(spec.per_stream);
    let mut created = 0;
    for s in 0..streams {
        let ep = &endpoints[s % endpoints.len()];
        let mut c: Client = connect(std::slice::from_ref(ep), Duration::from_secs(10))
            .await
            .with_context(|| format!("connecting to {ep}"))?;
        let n = spec.per_stream.min(spec.watchers - created);
        let opts = |w: usize| match spec.layout {
            Layout::OneKey => ("watch/hot".to_string(), WatchOptions::new()),
            Layout::Prefixes(p) => (prefix(w % p), WatchOptions::new().with_prefix()),
        };
        let (key, o) = opts(created);
        let mut stream = c.watch(key, Some(o)).await?;
        for w in 1..n {
            let (key, o) = opts(created + w);
            stream.watch(key, Some(o)).await?;
        }
        created += n;
        // Wait for every created answer before the load starts.
        let mut answered = 0;
        while answered < n {
            let r = tokio::time::timeout(Duration::from_secs(30), stream.message())
                .await
                .context("watch creation timed out")??
                .context("the watch stream ended")?;
            answered += usize::from(r.created());
        }
        let (events, measuring, done) = (events.clone(), measuring.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                let r = match tokio::time::timeout(Duration::from_millis(100), stream.message())
                    .await
                {
                    Ok(Ok(Some(r))) => r,
                    Ok(_) => break,
                    Err(_) => continue,
                };
                let now = base.elapsed();
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                for e in r.events() {
                    events.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                    if n.is_multiple_of(16)
                        && let Some(sent) = e.kv().and_then(|kv| stamp(kv.value()))
                    {
                        let us = now.saturating_sub(sent).as_micros();
                        lat.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
            }
            lat
        }));
    }
    let fan_out = match spec.layout {
        Layout::OneKey => spec.watchers as u64,
        Layout::Prefixes(p) => (spec.watchers / p) as u64,
    };
    let writer = connect(endpoints, Duration::from_secs(10)).await?;
    let puts = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + warmup;
    let end = start + spec.duration;
    let mut callers = Vec::new();
    for c in 0..spec.put_clients {
        let mut kv = writer.kv_client();
        let (puts, spec) = (puts.clone(), spec.clone());
        callers.push(tokio::spawn(async move {
            let mut i = c as u64;
            while Instant::now() < end {
                let key = match spec.layout {
                    Layout::OneKey => "watch/hot".to_string(),
                    Layout::Prefixes(p) => format!("{}k{}", prefix((i as usize) % p), i % 1000),
                };
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let sent = Instant::now();
                let ok = kv
                    .put(key, stamped(base, spec.value_size), None)
                    .await
                    .is_ok();
                if ok && sent >= start && Instant::now() <= end {
                    puts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep_until(start.into()).await;
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep_until(end.into()).await;
    measuring.store(false, Ordering::Relaxed);
    for c in callers {
        c.await?;
    }
    done.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for r in readers {
        latencies_us.extend(r.await?);
    }
    latencies_us.sort_unstable();
    Ok(WatchStats {
        puts: puts.load(Ordering::Relaxed),
        events: events.load(Ordering::Relaxed),
        fan_out,
        elapsed: spec.duration,
        latencies_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_send_time() {
        let base = Instant::now() - Duration::from_secs(3);
        let v = stamped(base, 64);
        assert_eq!(v.len(), 64);
        let t = stamp(&v).unwrap();
        assert!(t >= Duration::from_secs(3) && t < Duration::from_secs(60));
        assert_eq!(stamped(base, 4).len(), 16);
        assert_eq!(stamp(b"short"), None);
        assert_eq!(prefix(42), "watch/p0042/");
    }
}
