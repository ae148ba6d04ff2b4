//! Changing timing and flow-control settings of running nodes (`RawNode::set_config`).

use crate::harness::{Cluster, default_config};
use raft_core::{Config, Error, MemLog, MessageBody, RawNode, ReadMode, Role};

fn heartbeats(c: &Cluster, from: u64) -> usize {
    c.count_sent(from, 2, |b| matches!(b, MessageBody::Heartbeat(_)))
        + c.count_sent(from, 3, |b| matches!(b, MessageBody::Heartbeat(_)))
}

#[test]
fn a_new_heartbeat_interval_applies_from_the_next_tick() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let before = heartbeats(&c, 1);
    c.tick_all(20);
    let fast = heartbeats(&c, 1) - before;
    assert_eq!(fast, 40, "one heartbeat per tick to each of 2 followers");

    let mut cfg = c.raw(1).config().clone();
    cfg.heartbeat_ticks = 4;
    c.raw(1).set_config(cfg).unwrap();
    let before = heartbeats(&c, 1);
    c.tick_all(20);
    let slow = heartbeats(&c, 1) - before;
    assert_eq!(slow, 10, "one heartbeat per 4 ticks to each of 2 followers");
    assert_eq!(c.leader(), Some(1), "the leader kept its followers");
}

#[test]
fn fixed_fields_and_invalid_values_are_refused_and_nothing_changes() {
    let mut n = RawNode::new(default_config(1), MemLog::with_voters([1, 2, 3]), 7).unwrap();
    let original = n.config().clone();
    for (field, change) in [
        ("id", (|c: &mut Config| c.id = 9) as fn(&mut Config)),
        ("pre_vote", |c| c.pre_vote = !c.pre_vote),
        ("check_quorum", |c| c.check_quorum = !c.check_quorum),
        ("priority", |c| c.priority = 3),
        ("read_mode", |c| {
            c.read_mode = ReadMode::Lease {
                drift_margin_ticks: 1,
            }
        }),
        // Invalid: the election timeout must exceed the heartbeat interval.
        ("election_timeout_base_ticks", |c| {
            c.heartbeat_ticks = 5;
            c.election_timeout_base_ticks = 5;
        }),
        ("max_inflight_msgs", |c| c.max_inflight_msgs = 0),
    ] {
        let mut cfg = original.clone();
        cfg.max_entries_per_append = 1; // an allowed change riding along
        change(&mut cfg);
        match n.set_config(cfg) {
            Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected InvalidConfig, got {other:?}"),
        }
        assert_eq!(n.config(), &original, "{field}: nothing changed");
    }
}

/// Ticks a lone follower (its peers never answer) until it campaigns.
fn ticks_to_campaign(n: &mut RawNode<MemLog>) -> u64 {
    let mut ticks = 0;
    while n.status().role != Role::Candidate {
        n.tick().unwrap();
        ticks += 1;
        assert!(ticks < 1000, "never campaigned");
    }
    ticks
}

#[test]
fn a_new_election_timeout_is_drawn_within_the_new_bounds_deterministically() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..30 {
        let mut runs = Vec::new();
        for _ in 0..2 {
            let mut cfg = default_config(1);
            cfg.pre_vote = false;
            let mut n = RawNode::new(cfg.clone(), MemLog::with_voters([1, 2, 3]), seed).unwrap();
            n.tick().unwrap();
            cfg.election_timeout_base_ticks = 30;
            cfg.jitter_max_ticks = 10;
            n.set_config(cfg).unwrap();
            // One tick was already waited before the change.
            runs.push(ticks_to_campaign(&mut n) + 1);
        }
        assert_eq!(runs[0], runs[1], "seed {seed}: same inputs, same timeout");
        assert!(
            (30..40).contains(&runs[0]),
            "seed {seed}: {} outside [30, 40)",
            runs[0]
        );
        seen.insert(runs[0]);
    }
    assert!(seen.len() > 3, "timeouts are still randomized: {seen:?}");
}

#[test]
fn a_smaller_inflight_window_limits_appends_at_once() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(1, "a"); // node 2 acknowledges: it is replicating now
    // Node 2's acknowledgements are lost from here on: its window only fills.
    c.filter = Some(Box::new(|m| {
        m.from == 2 && matches!(m.body, MessageBody::AppendResponse(_))
    }));
    let mut cfg = c.raw(1).config().clone();
    cfg.max_inflight_msgs = 2;
    c.raw(1).set_config(cfg).unwrap();
    let appends = |c: &Cluster| {
        c.count_sent(
            1,
            2,
            |b| matches!(b, MessageBody::Append(a) if !a.entries.is_empty()),
        )
    };
    let before = appends(&c);
    for data in ["b", "c", "d", "e", "f"] {
        c.propose(1, data);
    }
    assert_eq!(appends(&c) - before, 2, "the window of 2 is full");
    assert_eq!(
        c.commit(1),
        c.node(1).raw.status().last_index,
        "node 3 still acknowledges: everything commits"
    );
}

#[test]
fn lease_reads_pin_the_election_timeout() {
    let mut cfg = default_config(1);
    cfg.read_mode = ReadMode::Lease {
        drift_margin_ticks: 2,
    };
    let mut n = RawNode::new(cfg.clone(), MemLog::with_voters([1, 2, 3]), 1).unwrap();
    let mut changed = cfg.clone();
    changed.election_timeout_base_ticks = 20;
    assert!(matches!(
        n.set_config(changed),
        Err(Error::InvalidConfig {
            field: "election_timeout_base_ticks",
            ..
        })
    ));
    // Other timing still changes.
    cfg.heartbeat_ticks = 3;
    n.set_config(cfg).unwrap();
    assert_eq!(n.config().heartbeat_ticks, 3);
}
