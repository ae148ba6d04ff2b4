//! Revisions, versions, ranges, prev_kv, compaction and replay against etcd's documented
//! behaviour.

use crate::common::*;
use raft_kv::pb::etcdserverpb::{CompactionRequest, PutRequest, RangeRequest, range_request};
use raft_kv::{ApplyEntry, Command, EntryPayload, Error, KvStore, Member, Op, Outcome, Response};

#[test]
fn revisions_and_versions_follow_etcd() {
    let mut h = Harness::new();
    // A new store is at revision 1, like etcd; the first write gets revision 2.
    assert_eq!(h.store.revision(), 1);
    assert_eq!(rev_of(&h.put("a", "1")), 2);
    let a = h.get("a").unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 2, 1));

    assert_eq!(rev_of(&h.put("a", "2")), 3);
    let a = h.get("a").unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 3, 2));
    assert_eq!(a.value.as_ref(), b"2");

    assert_eq!(rev_of(&h.put("b", "x")), 4);
    // Delete: gone, one revision.
    match h.del("a", "") {
        Response::DeleteRange(d) => {
            assert_eq!(d.deleted, 1);
            assert_eq!(d.header.unwrap().revision, 5);
        }
        r => panic!("{r:?}"),
    }
    assert!(h.get("a").is_none());
    // A delete of nothing does not bump the revision.
    match h.del("zzz", "") {
        Response::DeleteRange(d) => {
            assert_eq!(d.deleted, 0);
            assert_eq!(d.header.unwrap().revision, 5);
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.store.revision(), 5);
    // Re-create: new create_revision, version 1.
    h.put("a", "3");
    let a = h.get("a").unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (6, 6, 1));
    // The applied index moved for every entry, including the no-op delete.
    assert_eq!(h.store.applied_index(), 6);
}

#[test]
fn put_prev_kv_ignore_value_and_lease() {
    let mut h = Harness::new();
    let mut p = put_req("k", "v1");
    p.prev_kv = true;
    match h.ok(Op::Put(p.clone())) {
        Response::Put(r) => assert!(r.prev_kv.is_none()),
        r => panic!("{r:?}"),
    }
    p.value = b("v2");
    match h.ok(Op::Put(p)) {
        Response::Put(r) => {
            let prev = r.prev_kv.unwrap();
            assert_eq!(prev.value.as_ref(), b"v1");
            assert_eq!(prev.version, 1);
        }
        r => panic!("{r:?}"),
    }
    // ignore_value keeps the value and bumps the version.
    let iv = PutRequest {
        key: b("k"),
        ignore_value: true,
        ..Default::default()
    };
    h.ok(Op::Put(iv.clone()));
    let k = h.get("k").unwrap();
    assert_eq!((k.value.as_ref(), k.version), (&b"v2"[..], 3));
    // ignore_value on a missing key: etcd's "key not found"; no revision, index moves.
    let rev = h.store.revision();
    let mut missing = iv;
    missing.key = b("nope");
    match h.apply(Op::Put(missing)) {
        Outcome::Rejected(e) => assert_eq!(e.to_string(), "etcdserver: key not found"),
        o => panic!("{o:?}"),
    }
    assert_eq!(h.store.revision(), rev);
    assert_eq!(h.store.applied_index(), h.next_index - 1);
    // Leases are not served.
    let mut leased = put_req("l", "v");
    leased.lease = 5;
    assert!(matches!(
        h.apply(Op::Put(leased)),
        Outcome::Rejected(Error::LeaseNotFound)
    ));
}

#[test]
fn range_variants() {
    let mut h = Harness::new();
    for (k, v) in [
        ("a", "1"),
        ("ab", "2"),
        ("abc", "3"),
        ("b", "4"),
        ("c", "5"),
    ] {
        h.put(k, v);
    }
    let keys = |r: Vec<(String, String)>| r.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys(h.range("ab", "")), ["ab"]);
    assert_eq!(keys(h.range("x", "")), Vec::<String>::new());
    assert_eq!(keys(h.range("a", "b")), ["a", "ab", "abc"]);
    // Prefix "ab": range_end = "ac".
    assert_eq!(keys(h.range("ab", "ac")), ["ab", "abc"]);
    // "\0": every key >= key.
    assert_eq!(keys(h.range("ab", "\0")), ["ab", "abc", "b", "c"]);
    assert_eq!(keys(h.range("\0", "\0")).len(), 5);
    // range_end <= key: nothing.
    assert!(h.range("b", "a").is_empty());

    // Limit: `more` and the full count.
    let mut r = range_req("a", "\0");
    r.limit = 2;
    let resp = h.store.range(&r).unwrap();
    assert_eq!(resp.kvs.len(), 2);
    assert!(resp.more);
    assert_eq!(resp.count, 5);
    assert_eq!(resp.header.unwrap().revision, 6);
    r.limit = 5;
    assert!(!h.store.range(&r).unwrap().more);

    // count_only and keys_only.
    let mut r = range_req("a", "\0");
    r.count_only = true;
    let resp = h.store.range(&r).unwrap();
    assert!(resp.kvs.is_empty());
    assert_eq!(resp.count, 5);
    let mut r = range_req("a", "\0");
    r.keys_only = true;
    let resp = h.store.range(&r).unwrap();
    assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(resp.kvs[0].version, 1);

    // Sort by mod revision, descending, with a limit (sorted before the limit).
    h.put("a", "again"); // a: mod 7
    let mut r = range_req("a", "\0");
    r.sort_order = range_request::SortOrder::Descend as i32;
    r.sort_target = range_request::SortTarget::Mod as i32;
    r.limit = 2;
    let resp = h.store.range(&r).unwrap();
    let got: Vec<_> = resp.kvs.iter().map(|kv| s(&kv.key)).collect();
    assert_eq!(got, ["a", "c"]);
    assert!(resp.more);
    // Sort by value: target other than key defaults to ascending.
    let mut r = range_req("a", "\0");
    r.sort_target = range_request::SortTarget::Value as i32;
    let got: Vec<_> = h
        .store
        .range(&r)
        .unwrap()
        .kvs
        .iter()
        .map(|kv| s(&kv.value))
        .collect();
    assert_eq!(got, ["2", "3", "4", "5", "again"]);
    // Key descending.
    let mut r = range_req("a", "\0");
    r.sort_order = range_request::SortOrder::Descend as i32;
    let got: Vec<_> = h
        .store
        .range(&r)
        .unwrap()
        .kvs
        .iter()
        .map(|kv| s(&kv.key))
        .collect();
    assert_eq!(got, ["c", "b", "abc", "ab", "a"]);

    // Revision filters.
    let r = RangeRequest {
        key: b("a"),
        range_end: b("\0"),
        min_mod_revision: 4,
        max_mod_revision: 6,
        ..Default::default()
    };
    let got: Vec<_> = h
        .store
        .range(&r)
        .unwrap()
        .kvs
        .iter()
        .map(|kv| s(&kv.key))
        .collect();
    assert_eq!(got, ["abc", "b", "c"]);
    let r = RangeRequest {
        key: b("a"),
        range_end: b("\0"),
        max_create_revision: 3,
        ..Default::default()
    };
    let got: Vec<_> = h
        .store
        .range(&r)
        .unwrap()
        .kvs
        .iter()
        .map(|kv| s(&kv.key))
        .collect();
    assert_eq!(got, ["a", "ab"]);
}

#[test]
fn delete_range_with_prev_kv() {
    let mut h = Harness::new();
    for k in ["p/1", "p/2", "q"] {
        h.put(k, k);
    }
    match h.ok(Op::DeleteRange(del_req("p/", "p0", true))) {
        Response::DeleteRange(d) => {
            assert_eq!(d.deleted, 2);
            let keys: Vec<_> = d.prev_kvs.iter().map(|kv| s(&kv.key)).collect();
            assert_eq!(keys, ["p/1", "p/2"]);
            assert_eq!(d.header.unwrap().revision, 5);
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(h.range("\0", "\0").len(), 1);
}

#[test]
fn old_and_future_revisions_and_compaction() {
    let mut h = Harness::new();
    // Revision 1 (new store), then 2..=6.
    for i in 0..5 {
        h.put("k", &i.to_string());
    }
    assert_eq!(h.store.revision(), 6);
    let at = |rev| RangeRequest {
        key: b("k"),
        revision: rev,
        ..Default::default()
    };
    let value_at = |h: &Harness, rev| {
        let r = h.store.range(&at(rev)).unwrap();
        // The header carries the store revision, whatever was read.
        assert_eq!(r.header.unwrap().revision, 6);
        r.kvs
            .first()
            .map(|kv| (s(&kv.value), kv.mod_revision, kv.version))
    };
    assert_eq!(value_at(&h, 6), Some(("4".into(), 6, 5)));
    assert_eq!(value_at(&h, 0), Some(("4".into(), 6, 5)));
    assert_eq!(value_at(&h, 3), Some(("1".into(), 3, 2)));
    assert_eq!(value_at(&h, 1), None, "before the first write");
    let e = h.store.range(&at(7)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "etcdserver: mvcc: required revision is a future revision"
    );
    assert_eq!(e.code(), tonic::Code::OutOfRange);

    // Compact moves the compact revision, not the revision.
    let compact = |rev| {
        Op::Compact(CompactionRequest {
            revision: rev,
            physical: false,
        })
    };
    match h.ok(compact(3)) {
        Response::Compact(c) => assert_eq!(c.header.unwrap().revision, 6),
        r => panic!("{r:?}"),
    }
    assert_eq!(h.store.compact_revision(), 3);
    assert_eq!(h.store.revision(), 6);
    // The compact revision itself stays readable; below it is gone.
    assert_eq!(value_at(&h, 3), Some(("1".into(), 3, 2)));
    let e = h.store.range(&at(2)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(e.code(), tonic::Code::OutOfRange);
    assert!(matches!(
        h.apply(compact(3)),
        Outcome::Rejected(Error::Compacted)
    ));
    assert!(matches!(
        h.apply(compact(2)),
        Outcome::Rejected(Error::Compacted)
    ));
    assert!(matches!(
        h.apply(compact(9)),
        Outcome::Rejected(Error::FutureRevision)
    ));
    h.ok(compact(6));
    assert_eq!(h.store.compact_revision(), 6);
    assert_eq!(value_at(&h, 6), Some(("4".into(), 6, 5)));
    assert!(matches!(h.store.range(&at(5)), Err(Error::Compacted)));
}

#[test]
fn replay_after_reopen_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let cmds: Vec<Command> = (1..=20)
        .map(|i| Command::new(i, put_op(&format!("k{}", i % 7), &i.to_string())))
        .collect();
    let (rev, all) = {
        let store = KvStore::open(dir.path()).unwrap();
        let entries = entries_at(&cmds[..12], 1, 2);
        let results = store.apply_batch(&entries).unwrap();
        assert_eq!(results.len(), 12);
        store.flush().unwrap();
        (
            store.revision(),
            store.range(&range_req("\0", "\0")).unwrap().kvs,
        )
    };
    assert_eq!(rev, 13);
    let store = KvStore::open(dir.path()).unwrap();
    assert_eq!(store.applied_index(), 12);
    assert_eq!(store.status().applied_term, 2);
    assert_eq!(store.revision(), 13);
    assert_eq!(store.range(&range_req("\0", "\0")).unwrap().kvs, all);
    // The log replays everything from 1: the first 12 are skipped, the rest applied.
    let entries = entries_at(&cmds, 1, 2);
    let results = store.apply_batch(&entries).unwrap();
    let skipped = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::AlreadyApplied))
        .count();
    assert_eq!(skipped, 12);
    assert_eq!(store.applied_index(), 20);
    assert_eq!(store.revision(), 21);
    // Exactly as if each had been applied once.
    let fresh = KvStore::open_temporary().unwrap();
    fresh.apply_batch(&entries).unwrap();
    assert_eq!(
        fresh.range(&range_req("\0", "\0")).unwrap().kvs,
        store.range(&range_req("\0", "\0")).unwrap().kvs
    );
}

#[test]
fn an_early_answer_comes_before_the_write_and_holds_readers_until_it_lands() {
    let mut h = Harness::new();
    h.put("k", "old");
    let store = h.store.clone();
    let cmds = [
        Command::new(2, put_op("k", "new")),
        Command::new(3, put_op("j", "x")),
    ];
    let entries = entries_at(&cmds, 2, 1);
    let mut answered = Vec::new();
    let mut reader = None;
    h.store
        .apply_batch_answering(&entries, |results| {
            answered = results;
            // A read that starts after the answer must see the batch, even though the
            // write has not happened yet: it waits for it.
            let s = store.clone();
            reader = Some(std::thread::spawn(move || s.get(b"k").unwrap()));
            std::thread::sleep(std::time::Duration::from_millis(30));
        })
        .unwrap();
    let seen = reader.expect("answer was called").join().unwrap();
    assert_eq!(seen.map(|kv| s(&kv.value)), Some("new".to_string()));
    assert_eq!(answered.len(), 2);
    assert_eq!(answered[0].index, 2);
    assert_eq!(answered[1].revision, 4);
    assert_eq!(h.store.applied_index(), 3);
}

#[test]
fn batch_mixes_entries_and_undecodable_data() {
    let store = KvStore::open_temporary().unwrap();
    let put = Command::new(1, put_op("a", "1")).encode();
    let members = [Member {
        id: 7,
        name: String::new(),
        peer_urls: vec!["http://n7:2380".into()],
        client_urls: vec![],
        is_learner: false,
    }];
    let publish = Command::new(
        9,
        Op::PublishMember(raft_kv::pb::kvcmd::MemberAttributes {
            id: 7,
            name: "n7".into(),
            client_urls: vec!["http://n7:2379".into()],
        }),
    );
    let results = store
        .apply_batch(&[
            ApplyEntry {
                index: 1,
                term: 1,
                payload: EntryPayload::Empty,
            },
            ApplyEntry {
                index: 2,
                term: 1,
                payload: EntryPayload::Data(&put),
            },
            ApplyEntry {
                index: 3,
                term: 1,
                payload: EntryPayload::Data(b"\x07junk"),
            },
            ApplyEntry {
                index: 4,
                term: 1,
                payload: EntryPayload::Members(&members),
            },
            ApplyEntry {
                index: 5,
                term: 1,
                payload: EntryPayload::Command(&publish),
            },
        ])
        .unwrap();
    assert!(matches!(results[0].outcome, Outcome::Noop));
    assert!(matches!(
        results[1].outcome,
        Outcome::Response(Response::Put(_))
    ));
    assert_eq!(results[1].request_id, 1);
    assert!(matches!(
        results[2].outcome,
        Outcome::Rejected(Error::UnsupportedCommandVersion(7))
    ));
    assert_eq!(store.applied_index(), 5);
    assert_eq!(store.revision(), 2);
    let ms = store.members();
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0].name, "n7");
    assert_eq!(ms[0].client_urls, ["http://n7:2379"]);
    // A later membership change keeps the published attributes.
    let mut learner = members[0].clone();
    learner.is_learner = true;
    let more = [
        learner,
        Member {
            id: 8,
            ..Default::default()
        },
    ];
    store.apply_membership(6, 1, &more).unwrap();
    let ms = store.members();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0].name, "n7");
    assert!(ms[0].is_learner);
    // Publishing for an unknown member is refused.
    let unknown = Command::new(
        10,
        Op::PublishMember(raft_kv::pb::kvcmd::MemberAttributes {
            id: 99,
            ..Default::default()
        }),
    );
    let r = store.apply(7, 1, &unknown).unwrap();
    assert!(matches!(
        r.outcome,
        Outcome::Rejected(Error::MemberNotFound)
    ));
}

/// `cmds` as consecutive entries from index `first`, all of term `term`.
fn entries_at(cmds: &[Command], first: u64, term: u64) -> Vec<ApplyEntry<'_>> {
    cmds.iter()
        .zip(first..)
        .map(|(c, index)| ApplyEntry {
            index,
            term,
            payload: EntryPayload::Command(c),
        })
        .collect()
}
