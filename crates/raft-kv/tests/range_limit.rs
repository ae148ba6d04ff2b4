//! `KvStore::range_limited`: a Range whose answer would exceed the byte limit is refused with
//! `RESOURCE_EXHAUSTED` (and never gathered in full); one within it, or one asked with a
//! `limit` that keeps it within, is served.

use prost::bytes::Bytes;
use raft_kv::pb::etcdserverpb::{PutRequest, RangeRequest};
use raft_kv::{Command, Error, KvStore, Op};

fn store_with(keys: u64, value_len: usize) -> KvStore {
    let store = KvStore::open_temporary().unwrap();
    for i in 1..=keys {
        let put = PutRequest {
            key: Bytes::from(format!("k{i:04}")),
            value: Bytes::from(vec![b'v'; value_len]),
            ..Default::default()
        };
        store.apply(i, 1, &Command::new(i, Op::Put(put))).unwrap();
    }
    store
}

fn all(limit: i64) -> RangeRequest {
    RangeRequest {
        key: Bytes::from_static(b"k"),
        range_end: Bytes::from_static(b"l"),
        limit,
        ..Default::default()
    }
}

#[test]
fn ranges_over_the_byte_limit_are_refused_and_smaller_ones_served() {
    // 100 keys of 5 + 1000 bytes: 100,500 bytes in all.
    let store = store_with(100, 1000);
    let err = store.range_limited(&all(0), 64 * 1024).unwrap_err();
    assert!(
        matches!(err, Error::RangeTooLarge { limit: 65536 }),
        "{err:?}"
    );
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        err.to_string().contains("exceed the limit of 65536 bytes"),
        "{err}"
    );

    // With a limit the answer fits; `more` and `count` are as without a byte limit.
    let page = store.range_limited(&all(10), 64 * 1024).unwrap();
    assert_eq!((page.kvs.len(), page.more, page.count), (10, true, 100));
    // Counting never gathers values.
    let count = RangeRequest {
        count_only: true,
        ..all(0)
    };
    assert_eq!(store.range_limited(&count, 1024).unwrap().count, 100);
    // Within the limit, the whole range; without one, the same.
    let whole = store.range_limited(&all(0), 200 * 1024).unwrap();
    assert_eq!(whole.kvs.len(), 100);
    assert_eq!(store.range(&all(0)).unwrap().kvs, whole.kvs);
}
