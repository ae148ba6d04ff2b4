//! The node's internal records (peer addresses) live in a key space no client request can
//! name: client ranges never show them, client writes never reach them.

use crate::common::*;
use raft_kv::pb::kvcmd::MemberPeerUrls;
use raft_kv::{Member, Op};

#[test]
fn clients_can_neither_read_nor_write_internal_records() {
    let mut h = Harness::new();
    h.store
        .apply_membership(
            h.next_index,
            1,
            &[Member {
                id: 1,
                ..Default::default()
            }],
        )
        .unwrap();
    h.next_index += 1;
    h.put("a", "1");
    let rev = h.store.revision();
    let kv_hash = h.store.hash_kv(0).unwrap();
    let hash = h.store.hash().unwrap();
    h.ok(Op::SetPeerUrls(MemberPeerUrls {
        id: 2,
        peer_urls: vec!["http://10.0.0.2:2380".into()],
    }));
    // Not a key-value write: no revision, no change to the MVCC state.
    assert_eq!(h.store.revision(), rev);
    assert_eq!(h.store.hash_kv(0).unwrap(), kv_hash);
    assert_ne!(
        h.store.hash().unwrap(),
        hash,
        "Hash covers everything replicated"
    );
    assert_eq!(h.store.peer_urls().unwrap()[&2], ["http://10.0.0.2:2380"]);
    // Every key a client can name: only the client's own.
    assert_eq!(h.range("\0", "\0"), [("a".to_string(), "1".to_string())]);
    assert_eq!(h.range("", "\0").len(), 1);
    // The key where older versions kept addresses is an ordinary key now.
    h.put("\0raftd/peer/2", "http://attacker:1");
    h.put("\0raftd/peer/3", "http://attacker:1");
    h.del("\0", "\0");
    assert_eq!(h.range("\0", "\0"), Vec::<(String, String)>::new());
    let urls = h.store.peer_urls().unwrap();
    assert_eq!(urls.len(), 1);
    assert_eq!(urls[&2], ["http://10.0.0.2:2380"]);
    // A member's URLs also reach the member list.
    h.ok(Op::SetPeerUrls(MemberPeerUrls {
        id: 1,
        peer_urls: vec!["http://10.0.0.1:2380".into()],
    }));
    assert_eq!(h.store.members()[0].peer_urls, ["http://10.0.0.1:2380"]);
}
