//! Application requests between members (`PeerTransport::call` and the registered
//! `AppHandler`): answers come back, the handler's failures and a missing handler are errors,
//! the fault switch and unknown peers refuse the call, and a member re-added at a new address
//! is called there.

#[path = "util/harness.rs"]
mod harness;

use bytes::Bytes;
use harness::*;
use raft_net::{AppFuture, AppHandler, Error};
use std::sync::Arc;

/// Answers `kind:from:payload`; fails on the kind "fail".
struct Echo(u64);

impl AppHandler for Echo {
    fn handle(&self, from: u64, kind: &str, payload: Bytes) -> AppFuture {
        let me = self.0;
        let kind = kind.to_string();
        Box::pin(async move {
            if kind == "fail" {
                return Err("refused on purpose".to_string());
            }
            let mut out = format!("{me}:{kind}:{from}:").into_bytes();
            out.extend_from_slice(&payload);
            Ok(Bytes::from(out))
        })
    }
}

fn status_code(e: &Error) -> Option<tonic::Code> {
    match e {
        Error::Rpc { status, .. } => Some(status.code()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reach_the_peers_handler_and_come_back() {
    let nodes = cluster(3, |_| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    // No handler yet: refused as UNIMPLEMENTED.
    let e = a
        .transport
        .call(2, "k", Bytes::from("x"))
        .await
        .unwrap_err();
    assert_eq!(status_code(&e), Some(tonic::Code::Unimplemented), "{e}");
    b.transport.set_app_handler(Some(Arc::new(Echo(2))));
    for i in 0..20 {
        let got = a
            .transport
            .call(2, "lease", Bytes::from(format!("req{i}")))
            .await
            .unwrap();
        assert_eq!(got, Bytes::from(format!("2:lease:1:req{i}")));
    }
    // Many at once share the connection.
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let t = a.transport.clone();
            tokio::spawn(async move { t.call(2, "k", Bytes::from(vec![i as u8; 1000])).await })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        let got = c.await.unwrap().unwrap();
        assert!(got.starts_with(b"2:k:1:") && got[6..] == vec![i as u8; 1000][..]);
    }
    // The handler's failure comes back as UNAVAILABLE with its reason.
    let e = a.transport.call(2, "fail", Bytes::new()).await.unwrap_err();
    assert_eq!(status_code(&e), Some(tonic::Code::Unavailable), "{e}");
    assert!(e.to_string().contains("refused on purpose"), "{e}");
    // Unknown peers and the fault switch refuse at once.
    assert!(matches!(
        a.transport.call(9, "k", Bytes::new()).await,
        Err(Error::UnknownPeer(9))
    ));
    a.transport.set_isolated(true);
    assert!(matches!(
        a.transport.call(2, "k", Bytes::new()).await,
        Err(Error::Isolated)
    ));
    a.transport.set_isolated(false);
    // A removed sender is refused by the receiver.
    b.transport.remove_peer(1);
    let e = a.transport.call(2, "k", Bytes::new()).await.unwrap_err();
    assert_eq!(status_code(&e), Some(tonic::Code::PermissionDenied), "{e}");
    // Peer 2 re-added at node 3's address: the call goes there (a new connection).
    nodes[2].transport.set_app_handler(Some(Arc::new(Echo(3))));
    a.transport.add_peer(2, nodes[2].addr.to_string()).unwrap();
    let e = a.transport.call(2, "k", Bytes::new()).await.unwrap_err();
    // Node 3 is not node 2: refused as addressed to another node.
    assert_eq!(status_code(&e), Some(tonic::Code::InvalidArgument), "{e}");
}
