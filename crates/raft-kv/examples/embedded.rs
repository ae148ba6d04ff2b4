//! raft-kv without raftd: a program that opens the store and a write-ahead log itself, runs a
//! one-member Raft node with raft-runtime, serves the etcd v3 services in its own tonic
//! server (with a watch hub fed by the store), and talks to them with the generated gRPC
//! clients: a watch, then a put it sees.
//!
//! Run: `cargo run -p raft-kv --example embedded`. A real deployment adds more members and a
//! peer transport (raftd uses raft-net's); everything else is what this file shows.
#![allow(clippy::print_stdout, reason = "an example that shows what it did")]

use raft_core::{Membership, Message, NodeId};
use raft_kv::address_book::AddressBook;
use raft_kv::machine::KvMachine;
use raft_kv::pb::etcdserverpb::{
    PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, kv_client::KvClient,
    watch_client::WatchClient, watch_request::RequestUnion,
};
use raft_kv::service::{Ctx, EtcdService};
use raft_kv::watch::{WatchConfig, WatchHub};
use raft_kv::{KvStore, validate::Limits};
use raft_runtime::{BoxError, BoxFuture, RaftNode, RuntimeConfig, Transport, WalStore};
use std::sync::Arc;

/// A transport for a cluster of one: there is nobody to send to.
struct Alone;

impl Transport for Alone {
    fn send(&self, _msg: Message) {}
    fn send_snapshot(&self, _msg: Message) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async { Err("a one-member cluster sends no snapshots".into()) })
    }
    fn add_peer(&self, _id: NodeId) {}
    fn remove_peer(&self, _id: NodeId) {}
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = KvStore::open(dir.path().join("kv"))?;
    let wal = Arc::new(raft_log::Wal::open(
        dir.path().join("wal"),
        raft_log::Settings::default(),
    )?);
    let me: NodeId = 1;
    let members = Membership::with_voters([me]);
    let book = AddressBook::default();
    let machine = KvMachine::new(store.clone(), book.clone(), Some(members.clone()));
    let mut config = RuntimeConfig::new(me);
    config.bootstrap = Some(members);
    // No peers: nothing arrives from the network.
    let (_messages, rx) = tokio::sync::mpsc::channel(1);
    let (_unreachable, unreachable) = tokio::sync::mpsc::channel(1);
    let handle = RaftNode::start(
        config,
        WalStore::new(wal),
        machine,
        Arc::new(Alone),
        raft_runtime::Inbound {
            messages: rx,
            priority: None,
            unreachable,
        },
    )
    .await?;

    // The leader's lease clocks (expiry through the log); a single member always leads.
    let _keeper = raft_kv::lease::keeper::LeaseKeeper::spawn(
        handle.clone(),
        store.clone(),
        Default::default(),
    );
    let hub = WatchHub::for_store(&store, WatchConfig::default())?;
    let service = EtcdService::new(Ctx {
        handle: handle.clone(),
        store,
        book,
        cluster_id: 0x5eed,
        member_id: me,
        limits: Limits::default(),
    })
    .with_watch(hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(service.routes())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    // A single member elects itself after an election timeout.
    while handle.stats().leader.is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut kv = KvClient::new(channel.clone());
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    requests
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: "greeting".into(),
                ..Default::default()
            })),
        })
        .await?;
    let mut watch = WatchClient::new(channel)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let created = watch.message().await?.ok_or("the watch stream ended")?;
    println!(
        "watch {} created at revision {}",
        created.watch_id,
        created.header.map_or(0, |h| h.revision)
    );
    let put = kv
        .put(PutRequest {
            key: "greeting".into(),
            value: "hello".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let got = kv
        .range(RangeRequest {
            key: "greeting".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let kv0 = &got.kvs[0];
    println!(
        "put at revision {}; read back {:?} = {:?} (version {})",
        put.header.map_or(0, |h| h.revision),
        String::from_utf8_lossy(&kv0.key),
        String::from_utf8_lossy(&kv0.value),
        kv0.version
    );
    let seen = watch.message().await?.ok_or("the watch stream ended")?;
    for ev in &seen.events {
        let kv = ev.kv.as_ref().ok_or("an event without its key")?;
        println!(
            "watch {} saw {:?} = {:?} at revision {}",
            seen.watch_id,
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value),
            kv.mod_revision
        );
    }
    drop(requests);
    server.abort();
    handle.shutdown().await?;
    Ok(())
}
