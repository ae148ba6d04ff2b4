//! The hub with its thread: a writer applying while streams read at their own pace, an
//! inbox over its bound, revisions that reach the store without being handed over.

use super::mem::MemHistory;
use super::*;
use crate::pb::etcdserverpb::WatchCreateRequest;
use bytes::Bytes;
use std::time::Instant;

fn header(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision: rev,
        ..Default::default()
    })
}

fn watch_req(key: &str, end: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        range_end: Bytes::copy_from_slice(end.as_bytes()),
        start_revision: start,
        ..Default::default()
    }
}

/// Reads a stream until `want` events arrived (or 20 s passed), pausing `pause` between
/// reads; returns the revision of every event, in order.
async fn read_events(stream: &WatchStream, want: usize, pause: Duration) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut revs = Vec::new();
    while revs.len() < want && Instant::now() < deadline {
        let next = tokio::time::timeout(
            Duration::from_millis(500),
            stream.next_responses(1 << 20, &header),
        );
        if let Ok(resps) = next.await {
            for r in resps {
                assert!(!r.canceled, "{r:?}");
                revs.extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
            }
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    revs
}

fn start(mem: &Arc<MemHistory>, config: WatchConfig) -> WatchHub {
    let hub = WatchHub::start(mem.clone(), config).unwrap();
    mem.set_sink(hub.sink());
    hub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_replayed_and_slow_streams_each_get_every_event_once_in_order() {
    let mem = MemHistory::new();
    for i in 0..50 {
        mem.put("k", &i.to_string());
    }
    let hub = start(
        &mem,
        WatchConfig {
            stream_buffer_events: 8,
            ..WatchConfig::default()
        },
    );
    let live = hub.open_stream();
    live.create(&watch_req("k", "", 0));
    let replay = hub.open_stream();
    replay.create(&watch_req("k", "", 2));
    let slow = hub.open_stream();
    slow.create(&watch_req("", "\0", 2));
    let writer = {
        let mem = mem.clone();
        std::thread::spawn(move || {
            for i in 0..400 {
                mem.put("k", &format!("w{i}"));
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
    };
    let (live_revs, replay_revs, slow_revs) = tokio::join!(
        read_events(&live, 400, Duration::ZERO),
        read_events(&replay, 450, Duration::ZERO),
        read_events(&slow, 450, Duration::from_millis(2)),
    );
    writer.join().unwrap();
    assert_eq!(live_revs, (52..=451).collect::<Vec<_>>());
    assert_eq!(replay_revs, (2..=451).collect::<Vec<_>>());
    assert_eq!(slow_revs, (2..=451).collect::<Vec<_>>());
    let stats = hub.stats();
    assert_eq!((stats.watchers, stats.unsynced, stats.streams), (3, 0, 3));
    assert_eq!(stats.revision, 451);
    drop((live, replay, slow));
    assert_eq!(hub.stats().streams, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_over_its_bound_loses_nothing() {
    let mem = MemHistory::new();
    // Any batch behind another is over the bound: most are dropped on the way.
    let hub = start(
        &mem,
        WatchConfig {
            inbox_bytes: 1,
            ..WatchConfig::default()
        },
    );
    let stream = hub.open_stream();
    stream.create(&watch_req("k", "l", 0));
    let writer = {
        let mem = mem.clone();
        std::thread::spawn(move || {
            for i in 0..300 {
                mem.put(&format!("k{}", i % 7), "v");
            }
        })
    };
    let revs = read_events(&stream, 300, Duration::ZERO).await;
    writer.join().unwrap();
    assert_eq!(revs, (2..=301).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_never_handed_over_are_noticed_and_sent() {
    let mem = MemHistory::new();
    let hub = start(&mem, WatchConfig::default());
    let stream = hub.open_stream();
    stream.create(&watch_req("k", "", 0));
    // Written as a snapshot install would: the store moves, the sink hears nothing.
    for _ in 0..3 {
        mem.write_with(&[("k", Some("s"))], false);
    }
    // Noticed at all is the property (`read_events` gives up after its own deadline); how
    // soon is not checked.
    let revs = read_events(&stream, 3, Duration::ZERO).await;
    assert_eq!(revs, vec![2, 3, 4]);
    // Then live again.
    mem.put("k", "live");
    assert_eq!(read_events(&stream, 1, Duration::ZERO).await, vec![5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_progress_and_a_stopped_hub() {
    let mem = MemHistory::new();
    let hub = start(
        &mem,
        WatchConfig {
            progress_interval: Duration::from_millis(1),
            ..WatchConfig::default()
        },
    );
    let stream = hub.open_stream();
    stream.create(&WatchCreateRequest {
        progress_notify: true,
        ..watch_req("k", "", 0)
    });
    mem.put("other", "v");
    let t = Instant::now();
    let mut progress = None;
    while progress.is_none() && t.elapsed() < Duration::from_secs(5) {
        for r in stream.next_responses(1 << 20, &header).await {
            if !r.created && r.events.is_empty() {
                progress = Some((r.watch_id, r.header.unwrap().revision));
            }
        }
    }
    // Clamped to etcd's 100 ms minimum, and told the revision fanned out.
    assert_eq!(progress, Some((0, 2)));
    assert!(t.elapsed() >= MIN_PROGRESS_INTERVAL / 2);
    hub.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    mem.put("k", "after");
    let later = tokio::time::timeout(
        Duration::from_millis(300),
        stream.next_responses(1 << 20, &header),
    )
    .await;
    assert!(
        later.is_err() || later.unwrap().iter().all(|r| r.events.is_empty()),
        "a stopped hub sends no events"
    );
}
