//! Failover time: kill -9 the leader under load, then time the first write that succeeds.

use crate::cluster::{Cluster, connect_tls};
use crate::load::key;
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Callers of the background load during a trial.
const LOAD_CLIENTS: usize = 16;
/// A new probe write starts this often after the kill (the measurement's resolution).
const PROBE_EVERY: Duration = Duration::from_millis(5);
/// How long one probe may wait for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// One trial: with `LOAD_CLIENTS` callers writing through every member, kills the leader
/// with SIGKILL and returns the time from the kill to the first successful write among probe
/// writes started after the kill (through the survivors). Then restarts the killed member
/// and waits until it has caught up, so trials can follow each other.
pub async fn trial(cluster: &mut Cluster, value_size: usize) -> Result<Duration> {
    let leader = cluster.leader(Duration::from_secs(30)).await?;
    let survivors: Vec<String> = cluster
        .running()
        .into_iter()
        .filter(|&i| i != leader)
        .map(|i| cluster.endpoint(i))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load = connect_tls(
        &cluster.endpoints(),
        Duration::from_secs(1),
        cluster.client_tls(),
    )
    .await?;
    let mut workers = Vec::new();
    for c in 0..LOAD_CLIENTS {
        let mut kv = load.kv_client();
        let stop = stop.clone();
        let value = vec![b'f'; value_size];
        workers.push(tokio::spawn(async move {
            let mut i = c as u64;
            while !stop.load(Ordering::Relaxed) {
                if kv.put(key(i % 10_000), value.clone(), None).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                i += LOAD_CLIENTS as u64;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let probe = connect_tls(&survivors, PROBE_TIMEOUT, cluster.client_tls()).await?;

    cluster.kill9(leader)?;
    let killed = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let prober = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut kv = probe.kv_client();
                let tx = tx.clone();
                n += 1;
                tokio::spawn(async move {
                    if kv.put(format!("probe{n:03}"), "p", None).await.is_ok() {
                        let _ = tx.send(Instant::now());
                    }
                });
                tokio::time::sleep(PROBE_EVERY).await;
            }
        })
    };
    let first = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
    stop.store(true, Ordering::Relaxed);
    let _ = prober.await;
    for w in workers {
        let _ = w.await;
    }
    let first = match first {
        Ok(Some(t)) => t,
        _ => bail!(
            "no write succeeded within 30 s of killing the leader\n{}",
            cluster.logs(15)
        ),
    };
    let failover = first.duration_since(killed);

    cluster.spawn(leader)?;
    catch_up(cluster, leader).await?;
    Ok(failover)
}

/// Waits until member `id` serves (serializable read) a write made after it started.
pub async fn catch_up(cluster: &Cluster, id: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut all = connect_tls(
        &cluster.endpoints(),
        Duration::from_secs(2),
        cluster.client_tls(),
    )
    .await?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let marker = format!("caught-up-{id}-{nanos}");
    loop {
        if all.put(marker.as_str(), "1", None).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("no write succeeded after restarting member {id}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        if let Ok(mut c) = cluster.etcd_client(&[id], Duration::from_secs(1)).await {
            let opts = etcd_client::GetOptions::new().with_serializable();
            if let Ok(r) = c.get(marker.as_str(), Some(opts)).await
                && !r.kvs().is_empty()
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(anyhow::anyhow!("{}", cluster.logs(15)))
                .with_context(|| format!("member {id} did not catch up within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
