//! A group driven by hand, without the driver's task and channels: the calls the driver
//! makes are all a group needs (the seam a multi-raft driver would use).

use super::{Group, Outlets, Recovered};
use crate::apply::{self, Event};
use crate::config::RuntimeConfig;
use crate::error::{BoxError, Error};
use crate::handle::Stats;
use crate::request::Request;
use crate::state_machine::{Committed, Payload, StateMachine};
use crate::storage::{LogStore, MemStore};
use crate::transport::{BoxFuture, Transport};
use bytes::Bytes;
use raft_core::{Membership, Message, NodeId, RawNode, Role};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Counts the commands it applies; answers each with the count so far.
#[derive(Default)]
struct Counter {
    applied: u64,
    count: u64,
}

impl StateMachine for Counter {
    type Response = u64;
    fn apply(&mut self, batch: &[Committed]) -> Result<Vec<u64>, BoxError> {
        Ok(batch
            .iter()
            .map(|e| {
                self.applied = e.index;
                if let Payload::Command(_) = e.payload {
                    self.count += 1;
                }
                self.count
            })
            .collect())
    }
    fn applied_index(&self) -> u64 {
        self.applied
    }
}

/// A single voter talks to nobody.
struct Alone;
impl Transport for Alone {
    fn send(&self, _msg: Message) {}
    fn send_snapshot(&self, _msg: Message) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async { Err("no peers".into()) })
    }
    fn add_peer(&self, _id: NodeId) {}
    fn remove_peer(&self, _id: NodeId) {}
}

type TestGroup = Group<Counter, MemStore, Alone>;

/// A single-voter group over a memory log, with the receiving end of its events.
fn single_voter() -> (TestGroup, mpsc::UnboundedReceiver<Event>) {
    let mut cfg = RuntimeConfig::new(1);
    cfg.bootstrap = Some(Membership::with_voters([1]));
    let mut store = MemStore::new();
    store.prepare(0, cfg.bootstrap.as_ref()).unwrap();
    let raw = RawNode::new(cfg.raft.clone(), store, 7).unwrap();
    let (events, events_rx) = mpsc::unbounded_channel();
    let (apply, apply_rx) = std::sync::mpsc::channel();
    let sm = Arc::new(std::sync::Mutex::new(apply::Held::new(Counter::default())));
    let stopping = Arc::new(AtomicBool::new(false));
    let apply_queued = apply::Queued::default();
    apply::spawn(
        1,
        sm.clone(),
        apply_rx,
        events.clone(),
        stopping.clone(),
        apply_queued.clone(),
    )
    .unwrap();
    let group = Group::new(
        cfg,
        raw,
        Outlets {
            transport: Arc::new(Alone),
            events,
            apply,
            sm,
            apply_queued,
            stopping,
        },
        Recovered {
            applied: 0,
            snapshot_index: 0,
            hard_state: Default::default(),
            incarnation: 1,
        },
        Arc::new(Stats::default()),
    );
    (group, events_rx)
}

/// Hands the group every event reported until `done` holds (each batch ending the turn
/// with `process_ready`, as the driver does).
async fn pump(
    group: &mut TestGroup,
    events: &mut mpsc::UnboundedReceiver<Event>,
    done: impl Fn(&TestGroup) -> bool,
) {
    while !done(group) {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
            .expect("the event channel is open");
        group.on_event(ev).unwrap();
        while let Ok(ev) = events.try_recv() {
            group.on_event(ev).unwrap();
        }
        group.process_ready().unwrap();
    }
}

fn propose(cmd: &'static [u8]) -> (Request<Counter>, oneshot::Receiver<crate::Result<u64>>) {
    let (tx, rx) = oneshot::channel();
    let r = Request::Propose {
        cmd: Bytes::from_static(cmd),
        tx,
        since: Instant::now(),
    };
    (r, rx)
}

#[tokio::test]
async fn a_group_is_driven_by_calls_alone() {
    let (mut group, mut events) = single_voter();

    // Elected through a campaign request; the leader's empty entry is applied.
    let (tx, rx) = oneshot::channel();
    let asked = group
        .on_requests(Request::Campaign { tx }, |_| None)
        .unwrap();
    assert!(asked.is_none());
    rx.await.unwrap().unwrap();
    group.process_ready().unwrap();
    pump(&mut group, &mut events, |g| {
        g.role == Role::Leader && g.applied >= 1
    })
    .await;
    assert_eq!(group.leader, Some(1));

    // Requests queued behind the first are pulled through the closure, proposals only while
    // the group takes them, into one batch: one log write for both.
    let writes = group.stats.log_writes.load(Ordering::Relaxed);
    let (first, a) = propose(b"a");
    let (second, b) = propose(b"b");
    let mut queued = Some(second);
    let mut offered = Vec::new();
    let asked = group
        .on_requests(first, |proposals| {
            offered.push(proposals);
            if proposals { queued.take() } else { None }
        })
        .unwrap();
    assert!(asked.is_none());
    assert_eq!(offered, [true, true], "asked again after the second");
    group.process_ready().unwrap();
    assert_eq!(group.stats.log_writes.load(Ordering::Relaxed), writes + 1);
    pump(&mut group, &mut events, |g| g.proposals.is_empty()).await;
    assert_eq!(a.await.unwrap().unwrap(), 1);
    assert_eq!(b.await.unwrap().unwrap(), 2);

    // A shutdown ends the batch and goes back to the driver; what was before it is done.
    let (status_tx, status_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let mut queued = Some(Request::Shutdown { tx: stop_tx });
    let asked = group
        .on_requests(Request::Status { tx: status_tx }, |_| queued.take())
        .unwrap();
    assert_eq!(status_rx.await.unwrap().unwrap().id, 1);
    let asked = asked.expect("the shutdown is handed back");

    // Stopping: a waiting client fails with the reason, then the apply thread stops and
    // the log is flushed.
    let (third, c) = propose(b"c");
    group.on_requests(third, |_| None).unwrap();
    group.fail_waiting(|| Error::Shutdown);
    assert!(matches!(c.await.unwrap(), Err(Error::Shutdown)));
    group.close().await.unwrap();
    let _ = asked.send(Ok(()));
    stop_rx.await.unwrap().unwrap();
}
