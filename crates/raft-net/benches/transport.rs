//! Transport benchmarks on loopback, printed as Markdown tables: append throughput over the
//! pipelined stream vs one unary RPC per message, heartbeat latency while appends saturate
//! the stream, and zstd/snappy ratio and speed on compressible and random payloads.
//!
//! Run: `cargo bench -p raft-net --bench transport` (add `-- --quick` for a shorter run).
//! Every row is measured twice: with the default `bulk_nice` (10: the transport's bulk
//! threads run at a lower priority) and with `bulk_nice = 0`; `-- --bulk-nice N` measures
//! only that value. The network thread's `network_nice` is the transport's default unless
//! `-- --network-nice N` is given. The network thread's real-time priority
//! (`network_realtime_priority`) is 1, the setting of the heartbeat target, unless
//! `-- --network-rt N` is given (0: none, the transport's default). The receiving process
//! of the two-process rows gets the same values.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CLUSTER: u64 = 7;
const MIB: f64 = (1 << 20) as f64;

struct Node {
    transport: PeerTransport,
    rx: InboundReceivers,
    server: ServerHandle,
}

/// The `bulk_nice` values every row is measured with by default: the default, then none.
const NICES: [i32; 2] = [10, 0];

/// The thread priorities of both transports of a measurement.
#[derive(Clone, Copy, Debug)]
struct Nices {
    bulk: i32,
    network: i32,
    /// The network thread's real-time priority (0: none).
    realtime: u8,
}

async fn node(id: NodeId, nice: Nices, tweak: impl Fn(&mut TransportConfig)) -> Node {
    let mut cfg = TransportConfig::new(id, CLUSTER);
    cfg.bulk_nice = nice.bulk;
    cfg.network_nice = nice.network;
    cfg.network_realtime_priority = nice.realtime;
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
async fn stream_throughput(payload: usize, n: u64, merge: bool, nice: Nices) -> Throughput {
    let a = node(1, nice, |c| {
        if !merge {
            c.max_frame_messages = 1;
        }
    })
    .await;
    let mut b = node(2, nice, |_| {}).await;
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
async fn unary_throughput(payload: usize, n: u64, nice: Nices) -> Throughput {
    let mut b = node(2, nice, |_| {}).await;
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

/// Nanoseconds on the system clock, which every process on the machine shares: a
/// heartbeat carries its send time in `commit`, so a receiver in another process can time
/// it too (0 marks an untimed warm-up heartbeat).
fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// Keeps the stream lane to node 2 full of 64 KiB appends until `stop`.
fn spawn_append_load(t: PeerTransport, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let data = Bytes::from(vec![0xA5u8; 64 << 10]);
        let mut i = 2;
        while !stop.load(Ordering::Relaxed) {
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
}

/// Sends a timed heartbeat every millisecond until `done`, starting once the append
/// stream (if loaded) had time to fill up.
async fn send_heartbeats(t: &PeerTransport, done: &AtomicBool, with_load: bool) {
    tokio::time::sleep(Duration::from_millis(if with_load { 200 } else { 10 })).await;
    while !done.load(Ordering::Relaxed) {
        // A full queue drops the heartbeat; the receiver then waits for the next ones.
        let _ = t.send(heartbeat(wall_nanos()));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Receives until `heartbeats` timed heartbeats arrived; returns their latencies (sorted)
/// and the append MiB/s delivered meanwhile.
async fn receive_heartbeats(rx: &mut InboundReceivers, heartbeats: usize) -> (Vec<Duration>, f64) {
    let mut lat = Vec::with_capacity(heartbeats);
    let mut append_bytes = 0u64;
    let started = Instant::now();
    while lat.len() < heartbeats {
        let m = rx.recv().await.expect("transport gone");
        match m.body {
            MessageBody::Heartbeat(h) if h.commit > 0 => {
                lat.push(Duration::from_nanos(wall_nanos().saturating_sub(h.commit)));
            }
            MessageBody::Append(a) => append_bytes += a.entries[0].data.len() as u64,
            _ => {}
        }
    }
    lat.sort();
    (
        lat,
        append_bytes as f64 / MIB / started.elapsed().as_secs_f64(),
    )
}

/// Heartbeat latency (send to delivery), with both transports in this process.
async fn heartbeat_latency(
    heartbeats: usize,
    with_load: bool,
    nice: Nices,
) -> (Vec<Duration>, f64) {
    let a = node(1, nice, |c| c.queue_max_bytes = 32 << 20).await;
    let mut b = node(2, nice, |_| {}).await;
    a.transport
        .add_peer(2, b.server.local_addr().to_string())
        .unwrap();
    a.transport.send(heartbeat(0)).unwrap();
    b.rx.recv().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = with_load.then(|| spawn_append_load(a.transport.clone(), stop.clone()));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let done = done.clone();
        tokio::spawn(async move {
            let result = receive_heartbeats(&mut b.rx, heartbeats).await;
            done.store(true, Ordering::Relaxed);
            (result, b)
        })
    };
    send_heartbeats(&a.transport, &done, with_load).await;
    let ((lat, mibs), b) = receiver.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    if let Some(load) = load {
        load.await.unwrap();
    }
    a.transport.close();
    b.server.shutdown().await.unwrap();
    a.server.shutdown().await.unwrap();
    (lat, mibs)
}

/// The receiving node of the two-process measurement (this executable started with
/// `--receiver N BULK_NICE NETWORK_NICE NETWORK_RT`): prints its address, receives N timed heartbeats, prints their
/// latencies in nanoseconds and the append MiB/s, and exits.
fn receiver_process(heartbeats: usize, nice: Nices) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut b = node(2, nice, |_| {}).await;
        println!("ADDR {}", b.server.local_addr());
        let (lat, mibs) = tokio::time::timeout(Duration::from_secs(300), async {
            // The sender's untimed warm-up heartbeat: both lanes' connections are up.
            while !matches!(b.rx.recv().await.unwrap().body, MessageBody::Heartbeat(h) if h.commit == 0) {}
            println!("READY");
            receive_heartbeats(&mut b.rx, heartbeats).await
        })
        .await
        .expect("the sender stopped");
        let ns: Vec<String> = lat.iter().map(|d| d.as_nanos().to_string()).collect();
        println!("RESULT {mibs} {}", ns.join(" "));
        b.server.shutdown().await.unwrap();
    });
}

/// Heartbeat latency with the receiving node in a child process (as two raftd nodes on one
/// machine would be): this process sends, the child receives and times.
async fn heartbeat_latency_two_processes(
    heartbeats: usize,
    with_load: bool,
    nice: Nices,
) -> (Vec<Duration>, f64) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--receiver",
            &heartbeats.to_string(),
            &nice.bulk.to_string(),
            &nice.network.to_string(),
            &nice.realtime.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("ADDR ")
        .expect("receiver address")
        .to_string();
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in lines {
            let _ = line_tx.send(line.unwrap());
        }
    });
    let a = node(1, nice, |c| c.queue_max_bytes = 32 << 20).await;
    a.transport.add_peer(2, addr).unwrap();
    a.transport.send(heartbeat(0)).unwrap();
    assert_eq!(line_rx.recv().await.as_deref(), Some("READY"));
    let result = async move {
        let line = line_rx.recv().await.expect("receiver result");
        line.strip_prefix("RESULT ")
            .expect("receiver result")
            .to_string()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let load = with_load.then(|| spawn_append_load(a.transport.clone(), stop.clone()));
    let done = Arc::new(AtomicBool::new(false));
    let waiter = {
        let done = done.clone();
        tokio::spawn(async move {
            let r = result.await;
            done.store(true, Ordering::Relaxed);
            r
        })
    };
    send_heartbeats(&a.transport, &done, with_load).await;
    let line = waiter.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    if let Some(load) = load {
        load.await.unwrap();
    }
    a.transport.close();
    a.server.shutdown().await.unwrap();
    child.wait().unwrap();
    let mut fields = line.split_whitespace();
    let mibs: f64 = fields.next().unwrap().parse().unwrap();
    let lat = fields
        .map(|n| Duration::from_nanos(n.parse().unwrap()))
        .collect();
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
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--receiver") {
        let nice = Nices {
            bulk: args[i + 2].parse().unwrap(),
            network: args[i + 3].parse().unwrap(),
            realtime: args[i + 4].parse().unwrap(),
        };
        receiver_process(args[i + 1].parse().unwrap(), nice);
        return;
    }
    let value_of = |flag: &str| -> Option<i32> {
        let i = args.iter().position(|a| a == flag)?;
        Some(args.get(i + 1)?.parse().expect("a nice value"))
    };
    let bulk_nices: Vec<i32> = value_of("--bulk-nice").map_or(NICES.to_vec(), |n| vec![n]);
    let network_nice =
        value_of("--network-nice").unwrap_or_else(|| TransportConfig::new(1, CLUSTER).network_nice);
    // The heartbeat target is stated with the network thread at real-time priority 1.
    let network_rt = value_of("--network-rt").map_or(1, |n| {
        u8::try_from(n).expect("a real-time priority, 0 to 99")
    });
    let quick = args.iter().any(|a| a == "--quick");
    // `--heartbeats-in-process` / `--heartbeats-two-processes`: only that latency table.
    let heartbeats_only = if args.iter().any(|a| a == "--heartbeats-in-process") {
        Some(false)
    } else if args.iter().any(|a| a == "--heartbeats-two-processes") {
        Some(true)
    } else {
        None
    };
    // `--throughput-only`: only the append throughput table.
    let throughput_only = args.iter().any(|a| a == "--throughput-only");
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
        if heartbeats_only.is_none() {
            println!("### Append throughput, one peer on loopback (compression off)\n");
            println!("| bulk_nice | network_nice | path | entry payload | messages | messages/s | MiB/s |");
            println!("|---|---|---|---|---|---|---|");
            for &bulk in &bulk_nices {
                let nice = Nices { bulk, network: network_nice, realtime: network_rt };
                for payload in [256usize, 4096] {
                    let n_stream = 200_000 / scale as u64;
                    let n_unary = 10_000 / scale as u64;
                    let merged = stream_throughput(payload, n_stream, true, nice).await;
                    let single = stream_throughput(payload, n_stream / 2, false, nice).await;
                    let unary = unary_throughput(payload, n_unary, nice).await;
                    for t in [&merged, &single, &unary] {
                        println!("| {bulk} | {network_nice} {}", t.row());
                    }
                    let rate = |t: &Throughput| t.messages as f64 / t.elapsed.as_secs_f64();
                    println!(
                        "| {bulk} | {network_nice} | speed-up vs unary ({payload} B; target >= 5x) | | | merged {:.1}x, 1 msg/frame {:.1}x | |",
                        rate(&merged) / rate(&unary),
                        rate(&single) / rate(&unary)
                    );
                }
            }
        }
        if throughput_only {
            return;
        }
        let hb = 2000 / scale;
        println!("\n### Heartbeat latency on the light lane (target p99 < 2 ms while appends saturate the stream)\n");
        println!("| bulk_nice | network_nice | network_rt | processes | append load on the stream | heartbeats | appends delivered | p50 | p90 | p99 | max |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for &bulk in &bulk_nices {
            let nice = Nices { bulk, network: network_nice, realtime: network_rt };
            for two in [false, true] {
                if heartbeats_only.is_some_and(|t| t != two) {
                    continue;
                }
                for with_load in [false, true] {
                    let (lat, mibs) = if two {
                        heartbeat_latency_two_processes(hb, with_load, nice).await
                    } else {
                        heartbeat_latency(hb, with_load, nice).await
                    };
                    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
                    println!(
                        "| {bulk} | {network_nice} | {network_rt} | {} | {} | {} | {:.0} MiB/s | {:?} | {:?} | {:?} | {:?} |",
                        if two { "two (sender, receiver)" } else { "one" },
                        if with_load { "saturating, 64 KiB appends" } else { "none (baseline)" },
                        lat.len(),
                        mibs,
                        pct(50),
                        pct(90),
                        pct(99),
                        lat[lat.len() - 1]
                    );
                }
            }
        }
    });

    if heartbeats_only.is_some() || throughput_only {
        return;
    }
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
