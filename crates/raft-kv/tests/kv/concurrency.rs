//! Apply, reads at old revisions, physical compaction and snapshot captures at the same
//! time: every read and every restored snapshot agrees with a model of the whole history.

use crate::common::*;
use parking_lot::Mutex;
use raft_kv::pb::etcdserverpb::CompactionRequest;
use raft_kv::{CaptureKind, Command, Error, KvStore, Op};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// key -> (value, version) at one revision.
type State = BTreeMap<String, (String, i64)>;

/// The state after every revision (index = revision - 1).
struct Model {
    states: Vec<State>,
}

impl Model {
    fn at(&self, rev: i64) -> &State {
        &self.states[(rev - 1) as usize]
    }
}

fn read(store: &KvStore, rev: i64) -> Result<State, Error> {
    let mut req = range_req("\0", "\0");
    req.revision = rev;
    Ok(store
        .range(&req)?
        .kvs
        .into_iter()
        .map(|kv| (s(&kv.key), (s(&kv.value), kv.version)))
        .collect())
}

#[test]
fn reads_compaction_and_captures_agree_with_the_history_while_apply_runs() {
    let store = KvStore::open_temporary().unwrap();
    let model = Arc::new(Mutex::new(Model {
        states: vec![State::new()],
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));

    let reader = {
        let (store, model, stop, failures) =
            (store.clone(), model.clone(), stop.clone(), failures.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // The model follows apply: read no further than it knows.
                let known = model.lock().states.len() as i64;
                let (c, rev) = (store.compact_revision().max(1), known);
                if c > rev {
                    continue;
                }
                let at = c + (n >> 33) as i64 % (rev - c + 1);
                match read(&store, at) {
                    Ok(got) => {
                        reads += 1;
                        let m = model.lock();
                        if &got != m.at(at) {
                            failures
                                .lock()
                                .push(format!("read at {at}: {got:?} != {:?}", m.at(at)));
                        }
                    }
                    // Compacted meanwhile.
                    Err(Error::Compacted) => {}
                    Err(e) => failures.lock().push(format!("read at {at}: {e}")),
                }
            }
            reads
        })
    };
    let capturer = {
        let (store, model, stop, failures) =
            (store.clone(), model.clone(), stop.clone(), failures.clone());
        std::thread::spawn(move || {
            let mut restored = 0;
            while !stop.load(Ordering::Relaxed) {
                let Ok(cap) = store.capture(CaptureKind::Full) else {
                    continue;
                };
                let (index, rev, c) =
                    (cap.info.index, cap.info.revision, cap.info.compact_revision);
                // Read slowly, so apply and compaction go on while the capture reads.
                let records: Vec<_> = cap
                    .records
                    .enumerate()
                    .inspect(|(n, _)| {
                        if n.is_multiple_of(16) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    })
                    .map(|(_, r)| r)
                    .collect();
                let copy = KvStore::open_temporary().unwrap();
                if let Err(e) = copy.restore_full(index, 1, records) {
                    failures.lock().push(format!("restore: {e}"));
                    continue;
                }
                restored += 1;
                // The states it should hold, copied out so apply is not held up meanwhile.
                let want: Vec<State> = loop {
                    let m = model.lock();
                    if m.states.len() as i64 >= rev {
                        break (c.max(1)..=rev).map(|at| m.at(at).clone()).collect();
                    }
                    drop(m);
                    std::thread::yield_now();
                };
                for (at, want) in (c.max(1)..=rev).zip(&want) {
                    match read(&copy, at) {
                        Ok(got) if &got == want => {}
                        other => failures
                            .lock()
                            .push(format!("snapshot at {rev}, read at {at}: {other:?}")),
                    }
                }
            }
            restored
        })
    };

    let deadline = Instant::now() + Duration::from_secs(3);
    let mut index = 0u64;
    let mut i = 0u64;
    let mut state = State::new();
    while Instant::now() < deadline {
        i += 1;
        let key = format!("k{}", i % 13);
        let op = if i.is_multiple_of(5) {
            Op::DeleteRange(del_req(&key, "", false))
        } else {
            put_op(&key, &i.to_string())
        };
        index += 1;
        store.apply(index, 1, &Command::new(0, op.clone())).unwrap();
        match op {
            Op::DeleteRange(_) => {
                state.remove(&key);
            }
            _ => {
                let version = state.get(&key).map_or(0, |(_, v)| *v) + 1;
                state.insert(key, (i.to_string(), version));
            }
        }
        {
            let mut m = model.lock();
            while (m.states.len() as i64) < store.revision() {
                m.states.push(state.clone());
            }
        }
        if i.is_multiple_of(50) {
            // Keep the last 600 revisions readable: captures read the history in several
            // chunks while compaction removes what falls out of the window.
            let target = store.revision() - 600;
            if target > store.compact_revision() {
                index += 1;
                let cmd = Command::new(
                    0,
                    Op::Compact(CompactionRequest {
                        revision: target,
                        physical: false,
                    }),
                );
                store.apply(index, 1, &cmd).unwrap();
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    let restored = capturer.join().unwrap();
    let failures = failures.lock();
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(
        reads > 100 && restored > 0 && store.compact_revision() > 0,
        "{reads} reads, {restored} snapshots, compact revision {}",
        store.compact_revision()
    );
    assert!(store.wait_compacted_blocking(store.compact_revision(), Duration::from_secs(10)));
    let m = model.lock();
    for at in store.compact_revision().max(1)..=store.revision() {
        assert_eq!(&read(&store, at).unwrap(), m.at(at), "at {at}");
    }
}
