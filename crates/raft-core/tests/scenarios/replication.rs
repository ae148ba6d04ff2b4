//! Log replication: continuity checks, conflict hints, the commit rule, flow control and
//! the asynchronous persistence contract.

use crate::harness::{Cluster, default_config, lazy_commit_config, log_with_terms};
use bytes::Bytes;
use raft_core::{Config, LogRead, MessageBody, NodeId, ProgressState, ReadMode, Role};

fn log_terms(c: &Cluster, id: NodeId) -> Vec<u64> {
    let log = c.node(id).raw.log();
    let last = log.last_index().unwrap();
    (1..=last).map(|i| log.term(i).unwrap()).collect()
}

fn is_reject(b: &MessageBody) -> bool {
    matches!(b, MessageBody::AppendResponse(r) if r.reject)
}

fn no_pre_vote(id: NodeId) -> Config {
    Config {
        pre_vote: false,
        ..default_config(id)
    }
}

#[test]
fn figure7_divergent_followers_converge_to_the_leader_log() {
    // Raft paper, Figure 7: the leader of term 8 and followers (a)-(f).
    let voters = [1, 2, 3, 4, 5, 6, 7];
    let leader = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: [&[u64]; 6] = [
        &[1, 1, 1, 4, 4, 5, 5, 6, 6],
        &[1, 1, 1, 4],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        &[1, 1, 1, 4, 4, 4, 4],
        &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ];
    let mut c = Cluster::empty(no_pre_vote);
    c.add_node(1, log_with_terms(&voters, &leader, 7));
    for (i, terms) in followers.iter().enumerate() {
        c.add_node(i as u64 + 2, log_with_terms(&voters, terms, 7));
    }
    c.elect(1);
    assert_eq!(c.term(1), 8);
    let mut expected = leader.to_vec();
    expected.push(8); // the new leader's no-op
    for id in voters {
        assert_eq!(log_terms(&c, id), expected, "node {id} converged");
        assert_eq!(c.commit(id), 11);
    }
    // (f) diverges from index 4 across two terms; the hint skips whole terms.
    assert!(c.count_sent(7, 1, is_reject) <= 1);
    // (e) is missing whole terms too.
    assert!(c.count_sent(6, 1, is_reject) <= 2);
}

#[test]
fn figure8_entries_of_older_terms_are_not_committed_by_counting_replicas() {
    fn cfg(id: NodeId) -> Config {
        Config {
            max_entries_per_append: 1,
            ..no_pre_vote(id)
        }
    }
    let voters = [1, 2, 3, 4, 5];
    let mut c = Cluster::empty(cfg);
    // State (c) of Figure 8: S1 led term 2 and got index 2 to S2; S5 led term 3.
    c.add_node(1, log_with_terms(&voters, &[1, 2], 3));
    c.add_node(2, log_with_terms(&voters, &[1, 2], 3));
    c.add_node(3, log_with_terms(&voters, &[1], 3));
    c.add_node(4, log_with_terms(&voters, &[1], 3));
    c.add_node(5, log_with_terms(&voters, &[1, 3], 3));
    c.isolate(4);
    c.isolate(5);
    // S1 wins term 4 but only index 2 (not its term-4 no-op) reaches S3 and S2. The
    // first probe to S3 (prev 2) passes: S3 lacks index 2 and rejects it anyway.
    let first_probe_to_s3 = std::cell::Cell::new(true);
    c.filter = Some(Box::new(move |m| {
        if m.to == 3 && matches!(m.body, MessageBody::Append(_)) && first_probe_to_s3.get() {
            first_probe_to_s3.set(false);
            return false;
        }
        matches!(&m.body, MessageBody::Append(a) if a.entries.iter().any(|e| e.index >= 3))
    }));
    c.elect(1);
    assert_eq!(c.term(1), 4);
    assert_eq!(log_terms(&c, 3), vec![1, 2], "index 2 is on a majority");
    assert_eq!(
        c.commit(1),
        0,
        "a term-2 entry is not committed by counting"
    );

    // S1 crashes; S5 wins term 5 and overwrites index 2: safe, as it was never committed.
    c.filter = None;
    c.heal();
    c.isolate(1);
    // Time passes without S1: S2 and S3 stop being sticky; model that by letting S5 run
    // the election a transfer would (voters disregard the recently heard leader).
    let term = c.term(1);
    c.raw(5)
        .step(raft_core::Message {
            from: 1,
            to: 5,
            term,
            body: MessageBody::TimeoutNow,
        })
        .unwrap();
    c.stabilize();
    assert_eq!(c.role(5), Role::Leader);
    for id in [2, 3, 4, 5] {
        assert_eq!(log_terms(&c, id), vec![1, 3, 5], "node {id}");
    }

    // Had S1 replicated its term-4 entry, index 2 would be committed with it.
    let mut c = Cluster::empty(cfg);
    c.add_node(1, log_with_terms(&voters, &[1, 2], 3));
    c.add_node(2, log_with_terms(&voters, &[1, 2], 3));
    c.add_node(3, log_with_terms(&voters, &[1], 3));
    c.add_node(4, log_with_terms(&voters, &[1], 3));
    c.add_node(5, log_with_terms(&voters, &[1, 3], 3));
    c.isolate(4);
    c.isolate(5);
    c.elect(1);
    assert_eq!(
        c.commit(1),
        3,
        "committing the term-4 entry commits index 2 too"
    );
}

#[test]
fn conflict_hints_back_up_a_term_at_a_time_not_an_entry_at_a_time() {
    let voters = [1, 2, 3];
    let mut good = vec![1; 5];
    good.extend([3; 5]);
    let mut stale = vec![1; 5];
    stale.extend([2; 50]);
    let mut c = Cluster::empty(no_pre_vote);
    c.add_node(1, log_with_terms(&voters, &good, 3));
    c.add_node(2, log_with_terms(&voters, &good, 3));
    c.add_node(3, log_with_terms(&voters, &stale, 3));
    c.elect(1);
    let mut expected = good.clone();
    expected.push(4);
    assert_eq!(
        log_terms(&c, 3),
        expected,
        "the 50-entry stale suffix was truncated"
    );
    let rejects = c.count_sent(3, 1, is_reject);
    assert!(rejects <= 2, "{rejects} rejections for a 50-entry conflict");
}

#[test]
fn the_inflight_window_limits_messages() {
    fn cfg(id: NodeId) -> Config {
        Config {
            max_inflight_msgs: 2,
            max_entries_per_append: 1,
            ..default_config(id)
        }
    }
    let mut c = Cluster::with_config(&[1, 2, 3], cfg);
    c.elect(1);
    c.tick_all(1); // progress reaches Replicate
    c.filter = Some(Box::new(|m| m.to == 1)); // acknowledgements are lost
    let before = c.count_sent(
        1,
        2,
        |b| matches!(b, MessageBody::Append(a) if !a.entries.is_empty()),
    );
    for i in 0..10 {
        c.raw(1).propose(Bytes::from(vec![b'x'; i + 1])).unwrap();
        c.stabilize();
    }
    let sent = c.count_sent(
        1,
        2,
        |b| matches!(b, MessageBody::Append(a) if !a.entries.is_empty()),
    );
    assert_eq!(sent - before, 2, "the window holds two appends");
    let s = c.node(1).raw.status();
    assert_eq!(s.progress[&2].inflight_msgs, 2);
    assert_eq!(s.progress[&2].state, ProgressState::Replicate);
    // Lost acknowledgements are recovered from by probing again.
    c.filter = None;
    c.tick_all(25);
    assert_eq!(c.state_of(2).len(), 10);
    assert_eq!(c.state_of(1), c.state_of(2));
}

#[test]
fn the_inflight_window_limits_bytes() {
    fn cfg(id: NodeId) -> Config {
        Config {
            max_inflight_bytes: 150,
            max_entries_per_append: 1,
            ..default_config(id)
        }
    }
    let mut c = Cluster::with_config(&[1, 2, 3], cfg);
    c.elect(1);
    c.tick_all(1);
    c.filter = Some(Box::new(|m| m.to == 1));
    for _ in 0..10 {
        c.raw(1).propose(Bytes::from(vec![b'x'; 60])).unwrap();
        c.stabilize();
    }
    let s = c.node(1).raw.status();
    assert_eq!(
        s.progress[&2].inflight_msgs, 2,
        "84 + 84 bytes reach the 150 limit"
    );
    assert!(s.progress[&2].inflight_bytes >= 150);
}

#[test]
fn appends_are_batched_by_count_and_pipelined_without_waiting_for_acks() {
    fn cfg(id: NodeId) -> Config {
        Config {
            max_entries_per_append: 3,
            ..default_config(id)
        }
    }
    let mut c = Cluster::with_config(&[1, 2, 3], cfg);
    c.elect(1);
    c.tick_all(1);
    c.raw(1)
        .propose_batch((0..10).map(|i| Bytes::from(format!("e{i}"))))
        .unwrap();
    let rd = c.raw(1).ready().unwrap();
    assert_eq!(rd.entries.len(), 10, "the leader writes its own batch");
    let to2: Vec<usize> = rd
        .messages
        .iter()
        .filter(|m| m.to == 2)
        .filter_map(|m| match &m.body {
            MessageBody::Append(a) => Some(a.entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(to2, vec![3, 3, 3, 1], "four appends in flight at once");
}

#[test]
fn appends_are_batched_by_bytes() {
    fn cfg(id: NodeId) -> Config {
        Config {
            max_bytes_per_append: 200,
            ..default_config(id)
        }
    }
    let mut c = Cluster::with_config(&[1, 2, 3], cfg);
    c.elect(1);
    c.tick_all(1);
    c.raw(1)
        .propose_batch((0..6).map(|_| Bytes::from(vec![0u8; 76])))
        .unwrap();
    let rd = c.raw(1).ready().unwrap();
    let sizes: Vec<usize> = rd
        .messages
        .iter()
        .filter(|m| m.to == 2)
        .filter_map(|m| match &m.body {
            MessageBody::Append(a) => Some(a.entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(
        sizes,
        vec![2, 2, 2],
        "100-byte entries, 200 bytes per append"
    );
}

#[test]
fn heartbeats_carry_no_entries_and_cap_the_commit_at_the_peer_match() {
    fn cfg(id: NodeId) -> Config {
        Config {
            heartbeat_ticks: 2,
            ..default_config(id)
        }
    }
    let mut c = Cluster::with_config(&[1, 2, 3], cfg);
    c.elect(1);
    c.isolate(3);
    c.propose(1, "a");
    c.propose(1, "b");
    let commit = c.commit(1);
    let matched3 = c.node(1).raw.status().progress[&3].matched;
    assert!(matched3 < commit);
    c.heal();
    c.sent_log.clear();
    c.filter = Some(Box::new(|m| m.to == 1)); // keep node 3 behind
    c.raw(1).tick().unwrap();
    c.stabilize();
    c.raw(1).tick().unwrap();
    c.stabilize();
    let hbs: Vec<_> = c
        .sent_log
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::Heartbeat(h) => Some((m.to, h.commit)),
            _ => None,
        })
        .collect();
    assert_eq!(hbs.len(), 2, "one heartbeat per peer every heartbeat_ticks");
    assert!(
        hbs.contains(&(3, matched3)),
        "commit capped at what node 3 has"
    );
    assert!(hbs.contains(&(2, commit)));
}

#[test]
fn the_leader_counts_its_own_append_only_after_on_persisted() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.isolate(3);
    c.nodes.get_mut(&1).unwrap().manual_persist = true;
    let commit = c.commit(1);
    c.raw(1).propose(Bytes::from_static(b"x")).unwrap();
    c.stabilize();
    // The leader sent the entry in parallel with its own (pending) write.
    let held = &c.node(1).held;
    assert!(
        held.iter()
            .any(|rd| rd.entries.iter().any(|e| e.data == "x"))
    );
    assert!(held.iter().any(|rd| rd.messages.iter().any(
        |m| matches!(&m.body, MessageBody::Append(a) if a.entries.iter().any(|e| e.data == "x"))
    )));
    assert_eq!(
        c.node(1).raw.status().progress[&2].matched,
        commit + 1,
        "node 2 acked"
    );
    assert_eq!(
        c.commit(1),
        commit,
        "one durable copy of three is not a quorum"
    );
    c.persist_held(1);
    c.stabilize();
    assert_eq!(c.commit(1), commit + 1);
    assert_eq!(c.state_of(1), vec![b"x".as_slice()]);
}

#[test]
fn a_follower_applies_only_entries_it_has_persisted() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.nodes.get_mut(&3).unwrap().manual_persist = true;
    c.propose(1, "a");
    c.tick_all(2);
    assert_eq!(c.state_of(1), vec![b"a".as_slice()]);
    assert!(
        c.commit(3) >= c.commit(1),
        "node 3 learned the commit index"
    );
    assert!(c.state_of(3).is_empty(), "but has not persisted the entry");
    c.persist_held(3);
    c.stabilize();
    assert_eq!(c.state_of(3), vec![b"a".as_slice()]);
}

#[test]
fn followers_forward_proposals_to_the_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.propose(2, "from-2");
    for id in [1, 2, 3] {
        assert_eq!(c.state_of(id), vec![b"from-2".as_slice()]);
    }
}

#[test]
fn append_acks_wait_for_the_write_while_the_leader_sends_at_once() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    c.raw(1).propose(Bytes::from_static(b"p")).unwrap();
    let rd = c.raw(1).ready().unwrap();
    assert!(
        rd.entries.iter().any(|e| e.data == "p"),
        "the leader's own write"
    );
    let appends: Vec<_> = rd
        .messages
        .iter()
        .filter(|m| matches!(m.body, MessageBody::Append(_)))
        .cloned()
        .collect();
    assert_eq!(
        appends.len(),
        2,
        "sent before the leader's write is durable"
    );
    assert!(rd.persisted_messages.is_empty());
    let to2 = appends.into_iter().find(|m| m.to == 2).unwrap();
    c.raw(2).step(to2).unwrap();
    let rd2 = c.raw(2).ready().unwrap();
    assert_eq!(rd2.entries.len(), 1);
    assert!(
        rd2.messages.is_empty(),
        "no acknowledgement before the write"
    );
    assert!(matches!(
        rd2.persisted_messages.as_slice(),
        [m] if matches!(&m.body, MessageBody::AppendResponse(r) if !r.reject)
    ));
}

fn is_empty_append(b: &MessageBody) -> bool {
    matches!(b, MessageBody::Append(a) if a.entries.is_empty())
}

#[test]
fn lazy_commit_tells_followers_with_the_next_append_or_tick() {
    for lazy in [false, true] {
        let mut c = if lazy {
            Cluster::with_config(&[1, 2, 3], lazy_commit_config)
        } else {
            Cluster::new(&[1, 2, 3])
        };
        c.elect(1);
        let base = c.commit(1);
        let empties_before = c.count_sent(1, 2, is_empty_append);
        c.propose(1, "a");
        assert_eq!(c.commit(1), base + 1, "the leader commits either way");
        let empties = c.count_sent(1, 2, is_empty_append) - empties_before;
        if lazy {
            // No append just to carry the commit index: the follower has the entry but
            // has not heard that it committed.
            assert_eq!(empties, 0);
            assert_eq!(c.commit(2), base);
            // The next write carries it.
            c.propose(1, "b");
            assert_eq!(c.commit(2), base + 1);
            assert_eq!(c.state_of(2), vec![b"a".as_slice()]);
            // With no further write, the next tick does (no heartbeat is due).
            let heartbeats = c.count_sent(1, 2, |b| matches!(b, MessageBody::Heartbeat(_)));
            c.tick_all(1);
            assert_eq!(
                c.count_sent(1, 2, |b| matches!(b, MessageBody::Heartbeat(_))),
                heartbeats
            );
            assert_eq!(c.commit(2), base + 2);
            assert_eq!(c.state_of(2), vec![b"a".as_slice(), b"b".as_slice()]);
        } else {
            assert!(empties >= 1, "an empty append carries the commit at once");
            assert_eq!(c.commit(2), base + 1);
        }
    }
}

#[test]
fn lazy_commit_tells_a_proposing_follower_at_once() {
    let mut c = Cluster::with_config(&[1, 2, 3], lazy_commit_config);
    c.elect(1);
    let base = c.commit(1);
    // Follower 2 forwards a proposal: its client waits until 2 applies it, so the leader
    // sends 2 the commit at once; follower 3 forwarded nothing and waits for a later
    // append or the next tick, as with any write.
    c.propose(2, "a");
    assert_eq!(c.commit(1), base + 1);
    assert_eq!(
        c.commit(2),
        base + 1,
        "the proposer learns the commit without a tick"
    );
    assert_eq!(c.state_of(2), vec![b"a".as_slice()]);
    assert_eq!(c.commit(3), base, "a bystander still learns it lazily");
    // Once told, the proposer is back to the lazy rule: the leader's own write does not
    // cost it an empty append.
    let empties = c.count_sent(1, 2, is_empty_append);
    c.propose(1, "b");
    assert_eq!(c.count_sent(1, 2, is_empty_append), empties);
    assert_eq!(c.commit(2), base + 1);
}

#[test]
fn lazy_commit_tells_a_lease_reader_at_once() {
    fn cfg(id: NodeId) -> Config {
        Config {
            read_mode: ReadMode::Lease {
                drift_margin_ticks: 2,
            },
            ..lazy_commit_config(id)
        }
    }
    let mut c = Cluster::with_config(&[1, 2, 3], cfg);
    let l = c.tick_until_leader(100);
    let f = if l == 1 { 2 } else { 1 };
    c.tick_all(5); // a heartbeat round (every 5 ticks here) acknowledged by a quorum starts the lease
    c.propose(l, "a");
    let commit = c.commit(l);
    assert!(c.commit(f) < commit, "lazy: the follower has not heard yet");
    // Under the lease the leader answers the forwarded read at once, with no heartbeat
    // round that would carry the commit: the reader, which must apply the read index
    // before it answers, is sent the commit with it rather than at the next tick.
    let heartbeats = c.count_sent(l, f, |b| matches!(b, MessageBody::Heartbeat(_)));
    c.raw(f).read_index(Bytes::from_static(b"r")).unwrap();
    c.stabilize();
    assert_eq!(
        c.count_sent(l, f, |b| matches!(b, MessageBody::Heartbeat(_))),
        heartbeats,
        "answered under the lease, without a heartbeat round"
    );
    let rs = &c.node(f).read_states;
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].index, commit);
    assert!(c.node(f).applied_index >= commit);
}
