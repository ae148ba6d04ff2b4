//! Transport benchmarks on loopback, printed as Markdown tables: append throughput over the
//! pipelined stream vs one unary RPC per message, heartbeat latency while appends saturate
//! the stream, and zstd/snappy ratio and speed on compressible and random payloads.
//!
//! Run: `cargo bench -p raft-net --bench transport` (add `-- --quick` for a shorter run).
#![allow(clippy::print_stdout, missing_docs)]

use bytes::Bytes;
use raft_core::{Append, Entry, EntryKind, Heartbeat, Message, MessageBody, NodeId};
use raft_net::wire::peer_client::PeerClient;
use raft_net::{
    Codec, CompressionConfig, Inbound, InboundReceivers, MemorySnapshotSink, PeerTransport,
    ServerHandle, TransportConfig, compression, wire,
};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLUSTER: u64 = 7;
const MIB: f64 = (1 << 20) as f64;

struct Node {
    transport: PeerTransport,
    rx: InboundReceivers,
    server: ServerHandle,
}

async fn node(id: NodeId, tweak: impl Fn(&mut TransportConfig)) -> Node {
    let mut cfg = TransportConfig::new(id, CLUSTER);
    cfg.compression.codec = Codec::None;
    cfg.queue_max_messages = 1 << 20;
    cfg.queue_max_bytes = 1 << 30;
    tweak(&mut cfg);
    let (inbound, rx) =
        Inbound::channels_with_priority(1 << 16, Arc::new(MemorySnapshotSink::new()));
    let transport = PeerTransport::new(cfg, inbound).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = transport.serve(listener).unwrap();
    Node {
        transport,
        rx,
        server,
    }
}

fn append(index: u64, payload: &Bytes) -> Message {
    Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::Append(Append {
            prev_log_index: index - 1,
            prev_log_term: 1,
            entries: vec![Entry {
                index,
                term: 1,
                kind: EntryKind::Normal,
                data: payload.clone(),
            }],
            commit: index.saturating_sub(10),
        }),
    }
}

fn heartbeat(seq: u64) -> Message {
    Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::Heartbeat(Heartbeat {
            commit: seq,
            read_round: 0,
        }),
    }
}

struct Throughput {
    label: String,
    messages: u64,
    payload: usize,
    elapsed: Duration,
}

impl Throughput {
    fn row(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        format!(
            "| {} | {} B | {} | {:.0} | {:.1} |",
            self.label,
            self.payload,
            self.messages,
            self.messages as f64 / secs,
            (self.messages as f64 * self.payload as f64) / MIB / secs
        )
    }
}

/// Appends through `PeerTransport::send` (stream lane), timed until the last one arrives.
async fn stream_throughput(payload: usize, n: u64, merge: bool) -> Throughput {
    let a = node(1, |c| {
        if !merge {
            c.max_frame_messages = 1;
        }
    })
    .await;
    let mut b = node(2, |_| {}).await;
    a.transport
        .add_peer(2, b.server.local_addr().to_string())
        .unwrap();
    let data = Bytes::from(vec![0x5Au8; payload]);
    // Warm up the connection.
    a.transport.send(append(1, &data)).unwrap();
    b.rx.recv().await.unwrap();
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        for _ in 0..n {
            black_box(b.rx.recv().await.unwrap());
        }
        (start.elapsed(), b)
    });
    for i in 0..n {
        a.transport.send(append(i + 2, &data)).unwrap();
        if i % 256 == 255 {
            tokio::task::yield_now().await;
        }
    }
    let (elapsed, b) = receiver.await.unwrap();
    b.server.shutdown().await.unwrap();
    a.server.shutdown().await.unwrap();
    Throughput {
        label: if merge {
            "pipelined stream, merged frames".into()
        } else {
            "pipelined stream, 1 message/frame".into()
        },
        messages: n,
        payload,
        elapsed,
    }
}

/// The baseline: one unary `Send` RPC per append, each awaited before the next.
async fn unary_throughput(payload: usize, n: u64) -> Throughput {
    let mut b = node(2, |_| {}).await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", b.server.local_addr()))
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap();
    let mut client = PeerClient::new(channel);
    let data = Bytes::from(vec![0x5Au8; payload]);
    let none = CompressionConfig {
        codec: Codec::None,
        threshold: usize::MAX,
    };
    let drain = tokio::spawn(async move {
        for _ in 0..n {
            black_box(b.rx.recv().await.unwrap());
        }
        b
    });
    let start = Instant::now();
    for i in 0..n {
        let frame = wire::build_frame(CLUSTER, 1, 2, 0, &[append(i + 1, &data)], &none).unwrap();
        client.send(frame).await.unwrap();
    }
    let elapsed = start.elapsed();
    let b = drain.await.unwrap();
    b.server.shutdown().await.unwrap();
    Throughput {
        label: "unary RPC per message".into(),
        messages: n,
        payload,
        elapsed,
    }
}

/// Heartbeat latency (send to delivery) while 64 KiB appends keep the stream saturated.
async fn heartbeat_latency(heartbeats: u64, with_load: bool) -> (Vec<Duration>, f64) {
    let a = node(1, |c| c.queue_max_bytes = 32 << 20).await;
    let mut b = node(2, |_| {}).await;
    a.transport
        .add_peer(2, b.server.local_addr().to_string())
        .unwrap();
    a.transport.send(heartbeat(0)).unwrap();
    b.rx.recv().await.unwrap();
    let base = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..=heartbeats).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));

    let load = {
        let t = a.transport.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let data = Bytes::from(vec![0xA5u8; 64 << 10]);
            let mut i = 2;
            while with_load && !stop.load(Ordering::Relaxed) {
                if t.send(append(i, &data)).is_err() {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                } else {
                    i += 1;
                }
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let receiver = {
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut append_bytes = 0u64;
            let started = Instant::now();
            while (lat.len() as u64) < heartbeats {
                let m = b.rx.recv().await.unwrap();
                match m.body {
                    MessageBody::Heartbeat(h) => {
                        let now = base.elapsed().as_nanos() as u64;
                        let at = sent_at[h.commit as usize].load(Ordering::Acquire);
                        lat.push(Duration::from_nanos(now - at));
                    }
                    MessageBody::Append(a) => append_bytes += a.entries[0].data.len() as u64,
                    _ => {}
                }
            }
            let mibs = append_bytes as f64 / MIB / started.elapsed().as_secs_f64();
            (lat, mibs, b)
        })
    };
    // Let the append stream fill up first.
    tokio::time::sleep(Duration::from_millis(if with_load { 200 } else { 10 })).await;
    for seq in 1..=heartbeats {
        sent_at[seq as usize].store(base.elapsed().as_nanos() as u64, Ordering::Release);
        a.transport.send(heartbeat(seq)).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (mut lat, mibs, b) = receiver.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    a.transport.close();
    b.server.shutdown().await.unwrap();
    a.server.shutdown().await.unwrap();
    lat.sort();
    (lat, mibs)
}

fn json_like(n: usize) -> Vec<u8> {
    let mut s = String::with_capacity(n + 128);
    let mut i = 0u64;
    while s.len() < n {
        s.push_str(&format!(
            r#"{{"id":{i},"user":"user-{}","op":"put","key":"/registry/pods/ns-{}/pod-{i}","labels":{{"app":"web","tier":"{}"}},"ok":true}},"#,
            i % 97,
            i % 13,
            i % 3
        ));
        i += 1;
    }
    s.truncate(n);
    s.into_bytes()
}

fn random(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn compression_row(name: &str, codec: Codec, payload: &str, data: &[u8], rounds: usize) -> String {
    let c = compression::compress(codec, data).unwrap();
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(compression::compress(codec, black_box(data)).unwrap());
    }
    let enc = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(compression::decompress(codec, black_box(&c), data.len(), data.len()).unwrap());
    }
    let dec = start.elapsed().as_secs_f64();
    let total = (data.len() * rounds) as f64 / MIB;
    format!(
        "| {name} | {payload} | {:.2} | {:.0} | {:.0} |",
        data.len() as f64 / c.len() as f64,
        total / enc,
        total / dec
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 4 } else { 1 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "Machine: {} cores, load average at start: {}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    rt.block_on(async {
        println!("### Append throughput, one peer on loopback (compression off)\n");
        println!("| path | entry payload | messages | messages/s | MiB/s |");
        println!("|---|---|---|---|---|");
        for payload in [256usize, 4096] {
            let n_stream = 200_000 / scale as u64;
            let n_unary = 10_000 / scale as u64;
            let merged = stream_throughput(payload, n_stream, true).await;
            let single = stream_throughput(payload, n_stream / 2, false).await;
            let unary = unary_throughput(payload, n_unary).await;
            println!("{}", merged.row());
            println!("{}", single.row());
            println!("{}", unary.row());
            let rate = |t: &Throughput| t.messages as f64 / t.elapsed.as_secs_f64();
            println!(
                "| speed-up vs unary ({payload} B; target >= 5x) | | | merged {:.1}x, 1 msg/frame {:.1}x | |",
                rate(&merged) / rate(&unary),
                rate(&single) / rate(&unary)
            );
        }

        let hb = 2000 / scale as u64;
        println!("\n### Heartbeat latency on the light lane (target p99 < 2 ms while appends saturate the stream)\n");
        println!("| append load on the stream | heartbeats | appends delivered | p50 | p90 | p99 | max |");
        println!("|---|---|---|---|---|---|---|");
        for with_load in [false, true] {
            let (lat, mibs) = heartbeat_latency(hb, with_load).await;
            let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
            println!(
                "| {} | {} | {:.0} MiB/s | {:?} | {:?} | {:?} | {:?} |",
                if with_load { "saturating, 64 KiB appends" } else { "none (baseline)" },
                lat.len(),
                mibs,
                pct(50),
                pct(90),
                pct(99),
                lat[lat.len() - 1]
            );
        }
    });

    println!("\n### Compression, 1 MiB payloads (per-thread reused contexts)\n");
    println!("| codec | payload | ratio | encode MiB/s | decode MiB/s |");
    println!("|---|---|---|---|---|");
    let json = json_like(1 << 20);
    let rnd = random(1 << 20);
    let rounds = 40 / scale;
    for (name, codec) in [
        ("snappy", Codec::Snappy),
        ("zstd level 1", Codec::Zstd { level: 1 }),
        ("zstd level 3", Codec::Zstd { level: 3 }),
    ] {
        println!(
            "{}",
            compression_row(name, codec, "JSON-like", &json, rounds)
        );
        println!("{}", compression_row(name, codec, "random", &rnd, rounds));
    }
}
