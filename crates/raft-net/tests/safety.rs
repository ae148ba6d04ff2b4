//! Hostile and mistaken traffic: oversized frames, garbage, a foreign cluster id, a removed
//! member. The server refuses each with a clear status and keeps serving.

#[path = "util/harness.rs"]
mod harness;

use bytes::{Buf, BufMut, Bytes};
use harness::*;
use prost::Message as _;
use raft_net::CompressionConfig;
use raft_net::wire::{self, peer_client::PeerClient};
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

async fn channel(node: &Node) -> Channel {
    Channel::from_shared(format!("http://{}", node.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn frame(cluster: u64, from: u64, to: u64, msgs: &[raft_core::Message]) -> wire::Frame {
    let cfg = CompressionConfig {
        codec: raft_net::Codec::Snappy,
        threshold: 4096,
    };
    wire::build_frame(cluster, from, to, 0, msgs, &cfg).unwrap()
}

/// Sends arbitrary bytes as a gRPC message.
#[derive(Clone, Copy, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

async fn raw_send(ch: Channel, body: Bytes) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    grpc.unary(
        Request::new(body),
        PathAndQuery::from_static("/raftpeer.v1.Peer/Send"),
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

/// The server still delivers good traffic.
async fn still_serves(node: &mut Node) {
    let mut client = PeerClient::new(channel(node).await);
    client
        .send(frame(CLUSTER, 1, node.id, &[heartbeat(1, node.id, 77)]))
        .await
        .expect("server stopped serving");
    let m = recv(node, 5).await;
    assert_eq!(m, heartbeat(1, node.id, 77));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_refused_with_a_clear_error() {
    let mut cfg = config(2);
    cfg.max_message_size = 64 << 10;
    let mut b = start(cfg).await;
    // The raw clients below speak as node 1, which must be a peer of b.
    b.transport.add_peer(1, "127.0.0.1:1").unwrap();
    let big = [append(1, 2, 1, json_like(100_000))];

    // Light lane, uncompressed: tonic's limit on the wire.
    let plain = wire::build_frame(
        CLUSTER,
        1,
        2,
        0,
        &big,
        &CompressionConfig {
            codec: raft_net::Codec::None,
            threshold: 0,
        },
    )
    .unwrap();
    let mut client = PeerClient::new(channel(&b).await);
    let err = client.send(plain.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("too large"), "{}", err.message());

    // Compressed small on the wire, too large once expanded.
    let zipped = frame(CLUSTER, 1, 2, &big);
    assert!(zipped.encoded_len() < 64 << 10);
    let err = client.send(zipped).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(
        err.message().contains("exceeds the limit"),
        "{}",
        err.message()
    );

    // On the append stream: the stream fails with the same error.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(plain).await.unwrap();
    let mut acks = client
        .replicate(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let err = acks.message().await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    drop(tx);

    recv_nothing(&mut b, 100).await;
    still_serves(&mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_are_refused_and_do_not_crash_the_server() {
    let mut b = start(config(2)).await;
    // The raw clients below speak as node 1, which must be a peer of b.
    b.transport.add_peer(1, "127.0.0.1:1").unwrap();
    // Not protobuf at all.
    let err = raw_send(
        channel(&b).await,
        Bytes::from_static(b"\xff\xff\xff\xff\xff\xff garbage"),
    )
    .await
    .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    // Random bytes of many lengths.
    let mut x = 0x1234_5678_9abc_def0u64;
    for len in [1usize, 7, 100, 5000] {
        let body: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = raw_send(channel(&b).await, Bytes::from(body)).await;
    }
    // Valid protobuf, garbage compressed payload.
    let mut f = frame(CLUSTER, 1, 2, &[heartbeat(1, 2, 1)]);
    f.compression = wire::Compression::Zstd as i32;
    f.raw_len = 100;
    f.payload = Some(wire::frame::Payload::Compressed(Bytes::from_static(
        b"not zstd at all",
    )));
    let mut client = PeerClient::new(channel(&b).await);
    let err = client.send(f).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // A frame without payload, one with a message lacking a body, an unknown codec.
    let mut f = frame(CLUSTER, 1, 2, &[heartbeat(1, 2, 1)]);
    f.payload = None;
    assert_eq!(
        client.send(f).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut f = frame(CLUSTER, 1, 2, &[heartbeat(1, 2, 1)]);
    if let Some(wire::frame::Payload::Batch(b)) = &mut f.payload {
        b.messages[0].body = None;
    }
    assert_eq!(
        client.send(f).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut f = frame(CLUSTER, 1, 2, &[heartbeat(1, 2, 1)]);
    f.compression = 9;
    assert_eq!(
        client.send(f).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // A message inside claiming another sender (both are members).
    b.transport.add_peer(3, "127.0.0.1:1").unwrap();
    let f = frame(CLUSTER, 3, 2, &[heartbeat(1, 2, 1)]);
    assert_eq!(
        client.send(f).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    recv_nothing(&mut b, 100).await;
    still_serves(&mut b).await;
}

/// Connections are routed to the light-lane or the bulk server by their first bytes: one
/// that starts like the light lane's preface but is not it is closed, raw garbage goes to
/// the HTTP/2 server and is refused there, and neither stops the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_connection_prefaces_are_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut b = start(config(2)).await;
    // The raw clients below speak as node 1, which must be a peer of b.
    b.transport.add_peer(1, "127.0.0.1:1").unwrap();
    for junk in [
        &b"RAFTJUNK and more"[..],
        b"R",
        b"\x16\x03\x01 not TLS",
        b"hello",
    ] {
        let mut s = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        s.write_all(junk).await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        // The server closes the connection (possibly after an HTTP/2 GOAWAY).
        tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut rest))
            .await
            .expect("the server keeps a garbage connection open")
            .ok();
    }
    recv_nothing(&mut b, 100).await;
    still_serves(&mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_cluster_id_is_refused() {
    let mut b = start(config(2)).await;
    // The raw clients below speak as node 1, which must be a peer of b.
    b.transport.add_peer(1, "127.0.0.1:1").unwrap();
    // A raw frame from another cluster.
    let mut client = PeerClient::new(channel(&b).await);
    let err = client
        .send(frame(0xBAD, 1, 2, &[heartbeat(1, 2, 1)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("cluster id"), "{}", err.message());
    // A whole transport configured for another cluster.
    let mut cfg = config(1);
    cfg.cluster_id = 0xBAD;
    let mut a = start(cfg).await;
    a.transport.add_peer(2, b.addr.to_string()).unwrap();
    a.transport.send(heartbeat(1, 2, 1)).unwrap();
    a.transport.send(append(1, 2, 1, json_like(10))).unwrap();
    unreachable(&mut a, 2, 5).await;
    recv_nothing(&mut b, 200).await;
    // Frames for another node are refused too.
    let err = client
        .send(frame(CLUSTER, 1, 3, &[heartbeat(1, 3, 1)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    still_serves(&mut b).await;
}

/// An id that is no member (never added as a peer) cannot make the node step a message, an
/// append with a huge term included, whether it comes as a frame, a stream, a snapshot
/// probe or a transport of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_senders_are_refused_whatever_their_term() {
    let mut nodes = cluster(2, |_| {}).await;
    let b = nodes[1].addr;
    let mut client = PeerClient::new(
        Channel::from_shared(format!("http://{b}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let mut takeover = append(99, 2, 1, json_like(10));
    takeover.term = u64::MAX / 2;
    let err = client
        .send(frame(CLUSTER, 99, 2, &[takeover.clone()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("not a member"), "{err:?}");
    let probe = wire::SnapshotProbe {
        cluster_id: CLUSTER,
        from: 99,
        to: 2,
        term: u64::MAX / 2,
        meta: None,
        total_len: 10,
    };
    let err = client.snapshot_offset(probe).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // A whole transport as node 99 that knows node 2.
    let mut intruder = start(config(99)).await;
    intruder.transport.add_peer(2, b.to_string()).unwrap();
    intruder.transport.send(takeover).unwrap();
    intruder.transport.send(heartbeat(99, 2, 1)).unwrap();
    unreachable(&mut intruder, 2, 5).await;
    recv_nothing(&mut nodes[1], 300).await;
    // The members still talk.
    nodes[0].transport.send(heartbeat(1, 2, 3)).unwrap();
    assert_eq!(recv(&mut nodes[1], 5).await, heartbeat(1, 2, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_is_refused() {
    let mut nodes = cluster(3, |_| {}).await;
    nodes[1].transport.remove_peer(3);
    nodes[2].transport.send(heartbeat(3, 2, 1)).unwrap();
    unreachable(&mut nodes[2], 2, 5).await;
    recv_nothing(&mut nodes[1], 200).await;
    // Node 1 is still welcome.
    nodes[0].transport.send(heartbeat(1, 2, 1)).unwrap();
    assert_eq!(recv(&mut nodes[1], 5).await.from, 1);
    // And node 3 is welcome again once re-added.
    let addr = nodes[2].addr.to_string();
    nodes[1].transport.add_peer(3, addr).unwrap();
    // Retry until a heartbeat from node 3 arrives (the first ones may be sent before node 3
    // has reconnected).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let _ = nodes[2].transport.send(heartbeat(3, 2, 2));
        if let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(100), nodes[1].rx.recv()).await
        {
            assert_eq!(m.from, 3);
            break;
        }
        assert!(std::time::Instant::now() < deadline);
    }
}
