//! Shared helpers of the integration tests: nodes on loopback, one message of every kind.
#![allow(dead_code)]

use bytes::Bytes;
use raft_core::{
    Append, AppendResponse, Entry, EntryKind, Heartbeat, HeartbeatResponse, Membership, Message,
    MessageBody, NodeId, ReadIndexRequest, ReadIndexResponse, SnapshotMeta, VoteRequest,
    VoteResponse,
};
use raft_net::{
    BackoffConfig, Inbound, InboundReceivers, MemorySnapshotSink, PeerTransport, ServerHandle,
    TransportConfig,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub const CLUSTER: u64 = 0xC1A5;

/// One node: its transport, its running server, and what it received.
pub struct Node {
    pub id: NodeId,
    pub transport: PeerTransport,
    pub server: Option<ServerHandle>,
    pub rx: InboundReceivers,
    pub sink: Arc<MemorySnapshotSink>,
    pub addr: SocketAddr,
}

/// A test configuration: fast back-off and timeouts.
pub fn config(id: NodeId) -> TransportConfig {
    let mut cfg = TransportConfig::new(id, CLUSTER);
    cfg.backoff = BackoffConfig {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    cfg.connect_timeout = Duration::from_millis(500);
    cfg
}

/// Starts node `id` on a fresh loopback port.
pub async fn start(cfg: TransportConfig) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_on(cfg, listener).await
}

/// Starts a node on `listener`.
pub async fn start_on(cfg: TransportConfig, listener: TcpListener) -> Node {
    let id = cfg.node_id;
    let sink = Arc::new(MemorySnapshotSink::new());
    let (inbound, rx) = Inbound::channels_with_priority(4096, sink.clone());
    let transport = PeerTransport::new(cfg, inbound).unwrap();
    let server = transport.serve(listener).unwrap();
    let addr = server.local_addr();
    Node {
        id,
        transport,
        server: Some(server),
        rx,
        sink,
        addr,
    }
}

/// Starts `n` nodes (ids 1..=n) that all know each other.
pub async fn cluster(n: u64, tweak: impl Fn(&mut TransportConfig)) -> Vec<Node> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        let mut cfg = config(id);
        tweak(&mut cfg);
        nodes.push(start(cfg).await);
    }
    connect_all(&nodes);
    nodes
}

/// Makes every node a peer of every other.
pub fn connect_all(nodes: &[Node]) {
    for a in nodes {
        for b in nodes {
            if a.id != b.id {
                a.transport.add_peer(b.id, b.addr.to_string()).unwrap();
            }
        }
    }
}

/// The next message `node` receives, within `secs` seconds.
pub async fn recv(node: &mut Node, secs: u64) -> Message {
    tokio::time::timeout(Duration::from_secs(secs), node.rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("inbound channel closed")
}

/// Asserts that `node` receives nothing for `ms` milliseconds.
pub async fn recv_nothing(node: &mut Node, ms: u64) {
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(ms), node.rx.recv()).await {
        panic!("unexpected message {m:?}");
    }
}

/// Waits for an unreachable report about `peer`.
pub async fn unreachable(node: &mut Node, peer: NodeId, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = tokio::time::timeout_at(deadline, node.rx.unreachable.recv())
            .await
            .expect("no unreachable report")
            .unwrap();
        if got == peer {
            return;
        }
    }
}

pub fn heartbeat(from: NodeId, to: NodeId, commit: u64) -> Message {
    Message {
        from,
        to,
        term: 1,
        body: MessageBody::Heartbeat(Heartbeat {
            commit,
            read_round: 0,
        }),
    }
}

pub fn append(from: NodeId, to: NodeId, index: u64, payload: Bytes) -> Message {
    Message {
        from,
        to,
        term: 1,
        body: MessageBody::Append(Append {
            prev_log_index: index - 1,
            prev_log_term: 1,
            entries: vec![Entry {
                index,
                term: 1,
                kind: EntryKind::Normal,
                data: payload,
            }],
            commit: 0,
        }),
    }
}

/// JSON-like, compressible bytes.
pub fn json_like(n: usize) -> Bytes {
    let mut s = String::with_capacity(n + 128);
    let mut i = 0u64;
    while s.len() < n {
        s.push_str(&format!(
            r#"{{"id":{i},"user":"user-{}","op":"put","key":"/registry/pods/ns-{}/pod-{i}"}},"#,
            i % 97,
            i % 13
        ));
        i += 1;
    }
    s.truncate(n);
    Bytes::from(s)
}

pub fn snapshot_meta() -> SnapshotMeta {
    SnapshotMeta {
        index: 100,
        term: 3,
        membership: Membership {
            voters: [1, 2, 3].into(),
            voters_outgoing: [1, 2, 4].into(),
            learners: [5].into(),
            learners_next: [4].into(),
            auto_leave: true,
        },
    }
}

/// One message of every kind that `send` carries (InstallSnapshot goes by send_snapshot).
pub fn every_kind(from: NodeId, to: NodeId) -> Vec<Message> {
    let entry = |i: u64, kind| Entry {
        index: i,
        term: 3,
        kind,
        data: Bytes::from(format!("payload-{i}")),
    };
    let bodies = vec![
        MessageBody::Append(Append {
            prev_log_index: 4,
            prev_log_term: 2,
            entries: vec![entry(5, EntryKind::Normal), entry(6, EntryKind::ConfChange)],
            commit: 4,
        }),
        MessageBody::AppendResponse(AppendResponse {
            index: 6,
            reject: true,
            hint_index: 3,
            hint_term: 2,
        }),
        MessageBody::Heartbeat(Heartbeat {
            commit: 9,
            read_round: 7,
        }),
        MessageBody::HeartbeatResponse(HeartbeatResponse { read_round: 7 }),
        MessageBody::Vote(VoteRequest {
            pre_vote: true,
            last_log_index: 10,
            last_log_term: 3,
            transfer: false,
        }),
        MessageBody::Vote(VoteRequest {
            pre_vote: false,
            last_log_index: 10,
            last_log_term: 3,
            transfer: true,
        }),
        MessageBody::VoteResponse(VoteResponse {
            pre_vote: true,
            granted: true,
        }),
        MessageBody::VoteResponse(VoteResponse {
            pre_vote: false,
            granted: false,
        }),
        MessageBody::TimeoutNow,
        MessageBody::ReadIndex(ReadIndexRequest {
            context: Bytes::from_static(b"ctx"),
        }),
        MessageBody::ReadIndexResponse(ReadIndexResponse {
            context: Bytes::from_static(b"ctx"),
            index: 42,
        }),
        MessageBody::Propose(vec![entry(0, EntryKind::Normal)]),
    ];
    bodies
        .into_iter()
        .map(|body| Message {
            from,
            to,
            term: 3,
            body,
        })
        .collect()
}
