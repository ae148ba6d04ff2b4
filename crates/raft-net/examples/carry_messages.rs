//! `raft-net` on its own, carrying the messages of a downstream project's own replicated
//! state machine between two transports on loopback.
//!
//! The state machine is a ledger of `add N` commands. Node 1 plays the leader's part: it
//! sends the commands as `raft_core` entries in `Append` messages on the pipelined stream
//! lane (without waiting for answers), and heartbeats on the light lane. Node 2 checks each
//! append's continuity, applies its commands and answers with `AppendResponse`s on its own
//! light lane. Node 1 waits until node 2 has acknowledged every entry, then asks node 2 for
//! its ledger total with an application request (`PeerTransport::call`, answered by node 2's
//! `AppHandler`) and checks it. Frames above 1 KiB are compressed with zstd. It exits non-zero
//! if anything is off.
//!
//! Run: `cargo run -p raft-net --example carry_messages`
#![allow(clippy::print_stdout)]

use bytes::Bytes;
use raft_core::{Append, AppendResponse, Entry, EntryKind, Heartbeat, Message, MessageBody};
use raft_net::{
    AppFuture, AppHandler, Codec, CompressionConfig, Inbound, MemorySnapshotSink, PeerTransport,
    TransportConfig,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::timeout;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Both nodes belong to this cluster; frames of another cluster are refused.
const CLUSTER: u64 = 0x5eed;
/// Commands sent, and commands per append message.
const COMMANDS: u64 = 1_000;
const PER_APPEND: u64 = 5;
/// How long any one wait may take before the example gives up.
const PATIENCE: Duration = Duration::from_secs(10);

/// The command at log index `i`: add `i` to the ledger, padded like a real command with
/// some description (compressible, so the zstd threshold is crossed by merged frames).
fn command(i: u64) -> Bytes {
    Bytes::from(format!(
        "add {i} # ledger line {i}, booked by the example client"
    ))
}

fn amount(data: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(data).ok()?;
    text.strip_prefix("add ")?.split(' ').next()?.parse().ok()
}

fn config(node: u64) -> TransportConfig {
    let mut cfg = TransportConfig::new(node, CLUSTER);
    cfg.compression = CompressionConfig {
        codec: Codec::Zstd { level: 1 },
        threshold: 1024,
    };
    cfg
}

/// Node 2's answer to application requests: its ledger total.
struct Total(Arc<AtomicU64>);

impl AppHandler for Total {
    fn handle(&self, _from: u64, kind: &str, _payload: Bytes) -> AppFuture {
        let answer = match kind {
            "total" => Ok(Bytes::from(self.0.load(Ordering::SeqCst).to_string())),
            other => Err(format!("unknown request `{other}`")),
        };
        Box::pin(async move { answer })
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Two transports, each with its own listener and inbound channels.
    let (in1, mut rx1) = Inbound::channels(1024, Arc::new(MemorySnapshotSink::new()));
    let (in2, mut rx2) = Inbound::channels(1024, Arc::new(MemorySnapshotSink::new()));
    let t1 = PeerTransport::new(config(1), in1)?;
    let t2 = PeerTransport::new(config(2), in2)?;
    let s1 = t1.serve(TcpListener::bind("127.0.0.1:0").await?)?;
    let s2 = t2.serve(TcpListener::bind("127.0.0.1:0").await?)?;
    t1.add_peer(2, s2.local_addr().to_string())?;
    t2.add_peer(1, s1.local_addr().to_string())?;
    let total = Arc::new(AtomicU64::new(0));
    t2.set_app_handler(Some(Arc::new(Total(total.clone()))));

    // Node 2: the follower side of the ledger.
    let follower = {
        let t2 = t2.clone();
        let total = total.clone();
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut heartbeats = 0u64;
            // Until every command is applied and at least one heartbeat came (the light lane
            // does not wait behind the appends, so heartbeats may come before or after them).
            while last < COMMANDS || heartbeats == 0 {
                let m = timeout(PATIENCE, rx2.recv())
                    .await
                    .map_err(|_| "node 2 waited too long for a message")?
                    .ok_or("node 2's transport closed")?;
                let reply = match m.body {
                    MessageBody::Append(a) => {
                        if a.prev_log_index != last {
                            return Err(format!(
                                "append after {} while the ledger ends at {last}",
                                a.prev_log_index
                            ));
                        }
                        for e in &a.entries {
                            let n = amount(&e.data).ok_or("an entry that is not a command")?;
                            total.fetch_add(n, Ordering::SeqCst);
                            last = e.index;
                        }
                        AppendResponse {
                            index: last,
                            ..AppendResponse::default()
                        }
                    }
                    MessageBody::Heartbeat(_) => {
                        heartbeats += 1;
                        continue;
                    }
                    other => return Err(format!("unexpected message {other:?}")),
                };
                t2.send(Message {
                    from: 2,
                    to: 1,
                    term: 1,
                    body: MessageBody::AppendResponse(reply),
                })
                .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(heartbeats)
        })
    };

    // Node 1: send every command, pipelined, with a heartbeat every 50 appends.
    let mut expected = 0;
    for first in (1..=COMMANDS).step_by(PER_APPEND as usize) {
        let entries: Vec<Entry> = (first..first + PER_APPEND)
            .map(|i| {
                expected += i;
                Entry {
                    index: i,
                    term: 1,
                    kind: EntryKind::Normal,
                    data: command(i),
                }
            })
            .collect();
        let append = Append {
            prev_log_index: first - 1,
            prev_log_term: if first == 1 { 0 } else { 1 },
            entries,
            commit: first - 1,
        };
        t1.send(Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::Append(append),
        })?;
        if first % (50 * PER_APPEND) == 1 {
            t1.send(Message {
                from: 1,
                to: 2,
                term: 1,
                body: MessageBody::Heartbeat(Heartbeat {
                    commit: first - 1,
                    read_round: 0,
                }),
            })?;
        }
    }

    // Wait for node 2's acknowledgements to cover every entry.
    let mut matched = 0;
    while matched < COMMANDS {
        let m = timeout(PATIENCE, rx1.recv())
            .await
            .map_err(|_| "node 1 waited too long for an acknowledgement")?
            .ok_or("node 1's transport closed")?;
        match m.body {
            MessageBody::AppendResponse(r) if !r.reject => matched = matched.max(r.index),
            other => return Err(format!("unexpected answer {other:?}").into()),
        }
    }
    let heartbeats = follower.await??;
    println!(
        "node 2 applied and acknowledged {COMMANDS} commands; {heartbeats} heartbeats arrived"
    );
    if heartbeats == 0 {
        return Err("no heartbeat arrived".into());
    }

    // An application request on its own connection: node 2's total.
    let answer = t1.call(2, "total", Bytes::new()).await?;
    let got: u64 = std::str::from_utf8(&answer)?.parse()?;
    if got != expected {
        return Err(format!("node 2's total is {got}, expected {expected}").into());
    }
    println!("node 2's ledger total, asked through the transport: {got}");

    t1.close();
    t2.close();
    s1.shutdown().await?;
    s2.shutdown().await?;
    println!("ok");
    Ok(())
}
