//! The watch check: every watcher watches one prefix from the same start revision and, after
//! any error, reconnects from the revision after the last event it received. Then:
//!
//! - each watcher's revisions strictly increase (no duplicate, no reordering);
//! - all watchers agree on what happened at each revision;
//! - each watcher's events are a gap-free prefix of the global order: every revision any
//!   watcher saw or any acknowledged put got, from the start revision up to the watcher's
//!   last event, is among its events;
//! - the events match the writes: an event carries the key and value of a put that was sent
//!   (values are unique), at the revision the put was acknowledged with when it was; no
//!   value appears at two revisions; no put reported failed appears;
//! - after the faults end every watcher catches up to the last write under the prefix (read
//!   after the writers stopped), so every acknowledged put was delivered to every watcher.

use crate::Verdict;
use crate::history::{ClientSummary, Outcome, WatchRecord, WatchWrite};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Checks the watch workload's writes and watcher records against the client's summary.
pub fn check(writes: &[WatchWrite], records: &[WatchRecord], summary: &ClientSummary) -> Verdict {
    let start = summary.watch_start_revision;
    let last = summary.watch_last_revision;
    let mut problems = Vec::new();
    // Each watcher's events in arrival order, and its reconnects.
    let mut events: BTreeMap<u64, Vec<(i64, &str, &str)>> = BTreeMap::new();
    let mut reconnects: BTreeMap<u64, usize> = BTreeMap::new();
    for w in 0..summary.watchers {
        events.entry(w).or_default();
    }
    for r in records {
        match r {
            WatchRecord::Event {
                watcher,
                revision,
                key,
                value,
                ..
            } => events
                .entry(*watcher)
                .or_default()
                .push((*revision, key, value)),
            WatchRecord::Watch { watcher, .. } => *reconnects.entry(*watcher).or_default() += 1,
            WatchRecord::Error { .. } => {}
        }
    }
    let by_value: HashMap<&str, &WatchWrite> =
        writes.iter().map(|w| (w.value.as_str(), w)).collect();
    let acked: BTreeMap<i64, &WatchWrite> = writes
        .iter()
        .filter(|w| w.outcome == Outcome::Ok)
        .filter_map(|w| w.revision.map(|r| (r, w)))
        .collect();

    // What happened at each revision, as the watchers tell it.
    let mut union: BTreeMap<i64, (&str, &str)> = BTreeMap::new();
    for (&w, evs) in &events {
        let mut prev = start - 1;
        for &(rev, key, value) in evs {
            if rev < start {
                problems.push(format!(
                    "watcher {w}: event at revision {rev}, before the start revision {start}"
                ));
            }
            if rev == prev {
                problems.push(format!("watcher {w}: revision {rev} delivered twice"));
            } else if rev < prev {
                problems.push(format!(
                    "watcher {w}: revision {rev} delivered after revision {prev} (out of order)"
                ));
            }
            prev = prev.max(rev);
            match union.get(&rev) {
                Some(&(k, v)) if (k, v) != (key, value) => problems.push(format!(
                    "watchers disagree on revision {rev}: {k}={v} and {key}={value}"
                )),
                Some(_) => {}
                None => {
                    union.insert(rev, (key, value));
                }
            }
        }
    }

    // The events against the writes.
    let mut seen_at: HashMap<&str, i64> = HashMap::new();
    for (&rev, &(key, value)) in &union {
        if let Some(&first) = seen_at.get(value) {
            problems.push(format!(
                "value {value} appears at revisions {first} and {rev} (a put applied twice)"
            ));
        }
        seen_at.insert(value, rev);
        match by_value.get(value) {
            None => problems.push(format!(
                "revision {rev}: {key}={value} was never written (a phantom event)"
            )),
            Some(w) if w.key != key => problems.push(format!(
                "revision {rev}: value {value} on key {key}, but it was put on {}",
                w.key
            )),
            Some(w) if w.outcome == Outcome::Fail => problems.push(format!(
                "revision {rev}: {key}={value} was reported failed but took effect"
            )),
            Some(w) => {
                if let Some(r) = w.revision
                    && r != rev
                {
                    problems.push(format!(
                        "revision {rev}: {key}={value} was acknowledged at revision {r}"
                    ));
                }
            }
        }
    }
    for (&rev, w) in &acked {
        if let Some(&(k, v)) = union.get(&rev)
            && (k, v) != (w.key.as_str(), w.value.as_str())
        {
            problems.push(format!(
                "revision {rev}: the put acknowledged there wrote {}={}, the watchers saw {k}={v}",
                w.key, w.value
            ));
        }
    }

    // Gap-free prefixes of the global order, and caught up at the end.
    let global: BTreeSet<i64> = union
        .keys()
        .copied()
        .chain(acked.keys().copied())
        .filter(|&r| r >= start)
        .collect();
    if last <= 0 {
        problems.push(
            "the last revision under the prefix could not be read after the run: \
             completeness not checked"
                .into(),
        );
    }
    if let Some(&max_acked) = acked.keys().next_back()
        && last > 0
        && max_acked > last
    {
        problems.push(format!(
            "a put was acknowledged at revision {max_acked}, after the last revision {last} \
             read once every writer had stopped"
        ));
    }
    let mut delivered = 0usize;
    for (&w, evs) in &events {
        delivered += evs.len();
        let mine: BTreeSet<i64> = evs.iter().map(|e| e.0).collect();
        let upto = mine.iter().next_back().copied().unwrap_or(start - 1);
        let gaps: Vec<i64> = global
            .range(start..=upto)
            .filter(|r| !mine.contains(r))
            .copied()
            .collect();
        if !gaps.is_empty() {
            problems.push(format!(
                "watcher {w}: gap: {} revisions missed before its last event {upto}, first {:?}",
                gaps.len(),
                &gaps[..gaps.len().min(5)]
            ));
        }
        if last > 0 && upto < last {
            problems.push(format!(
                "watcher {w}: stopped at revision {upto}, never reached the last write at {last} \
                 ({} events missing at the end)",
                global.range(upto + 1..=last).count()
            ));
        }
    }
    let unknown = writes
        .iter()
        .filter(|w| w.outcome == Outcome::Unknown)
        .count();
    let summary_line = format!(
        "{} watchers, {} puts ({} acknowledged, {unknown} unknown), {} revisions from {start} \
         to {last}, {delivered} events delivered, {} (re)connects",
        events.len(),
        writes.len(),
        acked.len(),
        global.len(),
        reconnects.values().sum::<usize>()
    );
    Verdict::from_problems(
        "watch: gap-free, duplicate-free, matches the writes",
        summary_line,
        problems,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(n: u64, rev: Option<i64>, outcome: Outcome) -> WatchWrite {
        WatchWrite {
            process: 0,
            key: format!("k{}", n % 2),
            value: format!("v{n}"),
            invoke_us: n * 10,
            complete_us: n * 10 + 5,
            outcome,
            revision: rev,
            error: None,
        }
    }

    fn ev(watcher: u64, rev: i64, n: u64) -> WatchRecord {
        WatchRecord::Event {
            watcher,
            revision: rev,
            key: format!("k{}", n % 2),
            value: format!("v{n}"),
            kind: "put".into(),
            at_us: rev as u64,
        }
    }

    fn summary(last: i64) -> ClientSummary {
        ClientSummary {
            watch_start_revision: 10,
            watch_last_revision: last,
            watchers: 2,
            ..ClientSummary::default()
        }
    }

    /// Puts v1..v4 at revisions 10, 12, 13, 15 (11 and 14 are other workloads' writes); v3
    /// is unknown to its writer.
    fn writes() -> Vec<WatchWrite> {
        vec![
            put(1, Some(10), Outcome::Ok),
            put(2, Some(12), Outcome::Ok),
            put(3, None, Outcome::Unknown),
            put(4, Some(15), Outcome::Ok),
        ]
    }

    fn good(watcher: u64) -> Vec<WatchRecord> {
        vec![
            ev(watcher, 10, 1),
            ev(watcher, 12, 2),
            ev(watcher, 13, 3),
            ev(watcher, 15, 4),
        ]
    }

    #[test]
    fn complete_watchers_pass() {
        let records = [good(0), good(1)].concat();
        let v = check(&writes(), &records, &summary(15));
        assert!(v.ok, "{}", v.render());
    }

    #[test]
    fn a_gap_fails() {
        let mut w1 = good(1);
        w1.remove(1); // watcher 1 never got revision 12
        let v = check(&writes(), &[good(0), w1].concat(), &summary(15));
        assert!(!v.ok);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("watcher 1: gap") && p.contains("[12]")),
            "{}",
            v.render()
        );
    }

    #[test]
    fn a_gap_of_an_acknowledged_write_seen_by_nobody_fails() {
        // Neither watcher saw revision 12, which a put was acknowledged at.
        let strip = |w| {
            let mut r = good(w);
            r.remove(1);
            r
        };
        let v = check(&writes(), &[strip(0), strip(1)].concat(), &summary(15));
        assert!(!v.ok);
        assert!(
            v.problems.iter().any(|p| p.contains("gap")),
            "{}",
            v.render()
        );
    }

    #[test]
    fn a_duplicate_fails() {
        // A reconnect from the last revision instead of last + 1 delivers 12 again.
        let mut w1 = good(1);
        w1.insert(2, ev(1, 12, 2));
        let v = check(&writes(), &[good(0), w1].concat(), &summary(15));
        assert!(!v.ok);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("revision 12 delivered twice")),
            "{}",
            v.render()
        );
    }

    #[test]
    fn out_of_order_fails() {
        let mut w1 = good(1);
        w1.swap(1, 2);
        let v = check(&writes(), &[good(0), w1].concat(), &summary(15));
        assert!(!v.ok);
        assert!(
            v.problems.iter().any(|p| p.contains("out of order")),
            "{}",
            v.render()
        );
    }

    #[test]
    fn a_watcher_that_falls_behind_fails() {
        let mut w1 = good(1);
        w1.pop();
        let v = check(&writes(), &[good(0), w1].concat(), &summary(15));
        assert!(!v.ok);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("watcher 1: stopped at revision 13")),
            "{}",
            v.render()
        );
    }

    #[test]
    fn a_phantom_or_misplaced_event_fails() {
        let mut w0 = good(0);
        w0.push(WatchRecord::Event {
            watcher: 0,
            revision: 16,
            key: "k0".into(),
            value: "never".into(),
            kind: "put".into(),
            at_us: 0,
        });
        let v = check(
            &writes(),
            &w0,
            &ClientSummary {
                watchers: 1,
                ..summary(16)
            },
        );
        assert!(
            v.problems.iter().any(|p| p.contains("phantom")),
            "{}",
            v.render()
        );

        // v2 was acknowledged at 12 but delivered at 11.
        let records = vec![ev(0, 10, 1), ev(0, 11, 2), ev(0, 13, 3), ev(0, 15, 4)];
        let v = check(
            &writes(),
            &records,
            &ClientSummary {
                watchers: 1,
                ..summary(15)
            },
        );
        assert!(!v.ok);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("acknowledged at revision 12")),
            "{}",
            v.render()
        );
    }

    #[test]
    fn watchers_that_disagree_fail() {
        let mut w1 = good(1);
        w1[2] = ev(1, 13, 4);
        let v = check(&writes(), &[good(0), w1].concat(), &summary(15));
        assert!(!v.ok);
        assert!(
            v.problems.iter().any(|p| p.contains("disagree")),
            "{}",
            v.render()
        );
    }
}
