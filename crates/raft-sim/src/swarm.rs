//! The per-seed "swarm" configuration: which faults a run enables and how hard they hit.
//!
//! Swarm testing (Groce et al.) finds more bugs than running every fault in every run: a
//! run with only message drops and crashes explores deep into that corner instead of
//! drowning it in partitions. Each seed therefore first draws its cluster size, the subset
//! of fault kinds it enables and their rates, then the schedule itself.

use crate::rng::SimRng;
use std::fmt;

/// Simulated milliseconds per Raft tick.
pub const TICK_MS: u64 = 10;

/// Everything random about a run that is decided before it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct SwarmConfig {
    /// Voters at the start (1..=7).
    pub nodes: u64,
    /// Highest node id that may ever exist (spares join through membership changes).
    pub max_node_id: u64,
    /// Network behaviour of every link.
    pub net: NetFaults,
    /// Node and disk faults.
    pub node: NodeFaults,
    /// Operations the cluster is asked to perform.
    pub ops: OpsConfig,
    /// Raft timing, in ticks.
    pub heartbeat_ticks: u64,
    /// Raft election timeout base, in ticks.
    pub election_ticks: u64,
    /// Use pre-vote.
    pub pre_vote: bool,
    /// Use check-quorum.
    pub check_quorum: bool,
    /// Leaders tell followers new commit indexes lazily (with the next append or tick).
    pub lazy_commit: bool,
}

/// Network faults. Rates are per message; times in simulated milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct NetFaults {
    /// Probability that a message is dropped (0..=0.3).
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Smallest one-way delay.
    pub min_delay: u64,
    /// Largest one-way delay.
    pub max_delay: u64,
    /// Messages on one link may overtake each other (otherwise links are FIFO).
    pub reorder: bool,
    /// Mean time between partition events (0: no partitions).
    pub partition_every: u64,
    /// Partitions may be one-way (A hears B but B does not hear A).
    pub asymmetric: bool,
    /// Mean time between link clogs (0: no clogging).
    pub clog_every: u64,
    /// Longest a partition or clog lasts before it heals.
    pub max_fault_duration: u64,
    /// Longest a snapshot transfer takes on top of the message delay (0: as fast as a
    /// message).
    pub snapshot_delay_max: u64,
    /// Probability that a snapshot transfer fails (the leader is told, and retries).
    pub snapshot_fail: f64,
}

/// Node and disk faults.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFaults {
    /// Mean time between crashes (0: no crashes).
    pub crash_every: u64,
    /// A crash keeps a random prefix of the writes in flight (not only the synced ones).
    pub torn_writes: bool,
    /// Mean time between pauses (a node stops ticking and processing) (0: none).
    pub pause_every: u64,
    /// Longest a crashed node stays down or a paused node stays paused.
    pub max_down: u64,
    /// Smallest time a disk write takes to become durable.
    pub min_disk_delay: u64,
    /// Largest time a disk write takes to become durable.
    pub max_disk_delay: u64,
    /// Longest a committed entry waits before the state machine applies it (0: applied
    /// as soon as handed out). Apply runs behind commit, in order, as in raft-runtime.
    pub apply_lag_max: u64,
    /// With asynchronous apply, the chance after each applied batch that the state
    /// machine makes its state durable (a restart then resumes from it, applied behind
    /// commit, instead of from the snapshot).
    pub sm_flush: f64,
    /// Mean time between fsync errors (0: none). The write that fails makes its node
    /// stop (fail-stop, as raft-log's writer does), keeping a random prefix of what it
    /// had in flight; the node restarts later from its disk.
    pub fsync_error_every: u64,
    /// Bound on each node's clock drift, in parts per million: a node's tick lasts
    /// `TICK_MS * (1 + d)` with `|d|` up to this.
    pub drift_ppm: u64,
}

/// What the cluster is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct OpsConfig {
    /// Concurrent clients.
    pub clients: u64,
    /// Keys the clients use (few keys = many conflicts).
    pub keys: u64,
    /// Mean think time of a client between operations.
    pub think_time: u64,
    /// A client gives up on an operation after this long (it becomes indeterminate).
    pub client_timeout: u64,
    /// Mean time between membership changes (0: none).
    pub membership_every: u64,
    /// Mean time between leadership transfers (0: none).
    pub transfer_every: u64,
    /// Compact a node's log once this many applied entries are past its snapshot (0: never).
    pub compact_after: u64,
    /// Reads are served from the leader's lease (`ReadMode::Lease`, with a drift margin
    /// that covers `drift_ppm`); requires check-quorum.
    pub lease_reads: bool,
}

impl SwarmConfig {
    /// Draws a configuration from `rng` (the seed's first stream).
    pub fn draw(rng: &mut SimRng) -> Self {
        // Small clusters are cheap and common; big ones still come up often.
        let nodes = rng.range(1, 7);
        let on = |rng: &mut SimRng, p: f64| rng.chance(p);
        let drop = if on(rng, 0.5) {
            rng.range(1, 30) as f64 / 100.0
        } else {
            0.0
        };
        let duplicate = if on(rng, 0.3) {
            rng.range(1, 10) as f64 / 100.0
        } else {
            0.0
        };
        let min_delay = rng.range(1, 5);
        let max_delay = min_delay
            + if on(rng, 0.5) {
                rng.range(0, 40)
            } else {
                rng.range(0, 5)
            };
        let net = NetFaults {
            drop,
            duplicate,
            min_delay,
            max_delay,
            reorder: on(rng, 0.5),
            partition_every: if on(rng, 0.5) {
                rng.range(500, 5_000)
            } else {
                0
            },
            asymmetric: on(rng, 0.5),
            clog_every: if on(rng, 0.3) {
                rng.range(500, 5_000)
            } else {
                0
            },
            max_fault_duration: rng.range(200, 3_000),
            snapshot_delay_max: 0,
            snapshot_fail: 0.0,
        };
        let min_disk_delay = rng.range(0, 3);
        let node = NodeFaults {
            crash_every: if on(rng, 0.5) {
                rng.range(1_000, 10_000)
            } else {
                0
            },
            torn_writes: on(rng, 0.5),
            pause_every: if on(rng, 0.3) {
                rng.range(1_000, 10_000)
            } else {
                0
            },
            max_down: rng.range(100, 3_000),
            min_disk_delay,
            max_disk_delay: min_disk_delay + rng.range(0, 20),
            apply_lag_max: 0,
            sm_flush: 0.0,
            fsync_error_every: 0,
            drift_ppm: 0,
        };
        let ops = OpsConfig {
            clients: rng.range(1, 6),
            keys: rng.range(1, 5),
            think_time: rng.range(20, 200),
            client_timeout: rng.range(200, 2_000),
            membership_every: if on(rng, 0.4) {
                rng.range(1_000, 10_000)
            } else {
                0
            },
            transfer_every: if on(rng, 0.3) {
                rng.range(1_000, 10_000)
            } else {
                0
            },
            compact_after: if on(rng, 0.5) { rng.range(5, 200) } else { 0 },
            lease_reads: false,
        };
        let heartbeat_ticks = rng.range(1, 4);
        // An election must be able to finish: the timeout exceeds a few message delays
        // plus a disk write (as any real deployment chooses it), or nothing ever commits.
        let round_trip = 3 * net.max_delay + 2 * node.max_disk_delay;
        let election_ticks = (heartbeat_ticks * rng.range(4, 10))
            .max(round_trip.div_ceil(TICK_MS) + 2)
            .max(heartbeat_ticks + 1);
        let pre_vote = on(rng, 0.7);
        let check_quorum = on(rng, 0.7);
        let lazy_commit = on(rng, 0.5);
        // The faults added later come from a stream derived without drawing, so the
        // configurations and runs of seeds that draw none of them stay as they were.
        let x = &mut rng.derive(0x5157_4152_4d21);
        let mut net = net;
        let mut node = node;
        let mut ops = ops;
        if on(x, 0.5) {
            net.snapshot_delay_max = x.range(20, 300);
        }
        if on(x, 0.5) {
            net.snapshot_fail = x.range(5, 40) as f64 / 100.0;
        }
        if on(x, 0.5) {
            node.apply_lag_max = x.range(1, 40);
            node.sm_flush = x.range(5, 50) as f64 / 100.0;
        }
        if on(x, 0.25) {
            node.fsync_error_every = x.range(2_000, 20_000);
        }
        if check_quorum && on(x, 0.4) {
            ops.lease_reads = true;
            node.drift_ppm = x.range(0, 30_000);
        }
        SwarmConfig {
            nodes,
            max_node_id: 7,
            net,
            node,
            ops,
            heartbeat_ticks,
            election_ticks,
            pre_vote,
            check_quorum,
            lazy_commit,
        }
    }

    /// A configuration with no faults at all (for debugging and the liveness baseline).
    pub fn calm(nodes: u64) -> Self {
        SwarmConfig {
            nodes,
            max_node_id: nodes.max(1),
            net: NetFaults {
                drop: 0.0,
                duplicate: 0.0,
                min_delay: 1,
                max_delay: 3,
                reorder: false,
                partition_every: 0,
                asymmetric: false,
                clog_every: 0,
                max_fault_duration: 1_000,
                snapshot_delay_max: 0,
                snapshot_fail: 0.0,
            },
            node: NodeFaults {
                crash_every: 0,
                torn_writes: false,
                pause_every: 0,
                max_down: 1_000,
                min_disk_delay: 1,
                max_disk_delay: 2,
                apply_lag_max: 0,
                sm_flush: 0.0,
                fsync_error_every: 0,
                drift_ppm: 0,
            },
            ops: OpsConfig {
                clients: 3,
                keys: 3,
                think_time: 20,
                client_timeout: 1_000,
                membership_every: 0,
                transfer_every: 0,
                compact_after: 0,
                lease_reads: false,
            },
            heartbeat_ticks: 1,
            election_ticks: 10,
            pre_vote: true,
            check_quorum: true,
            lazy_commit: false,
        }
    }
}

impl fmt::Display for SwarmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.net;
        let d = &self.node;
        let o = &self.ops;
        write!(
            f,
            "nodes={} hb={} el={} prevote={} cq={} lazy_commit={} | drop={:.2} dup={:.2} delay={}..{} reorder={} \
             partition_every={} asym={} clog_every={} | crash_every={} torn={} pause_every={} \
             disk={}..{} | clients={} keys={} think={} timeout={} member_every={} \
             transfer_every={} compact_after={} | snap_delay={} snap_fail={:.2} apply_lag={} \
             sm_flush={:.2} fsync_error_every={} lease={} drift_ppm={}",
            self.nodes,
            self.heartbeat_ticks,
            self.election_ticks,
            self.pre_vote,
            self.check_quorum,
            self.lazy_commit,
            n.drop,
            n.duplicate,
            n.min_delay,
            n.max_delay,
            n.reorder,
            n.partition_every,
            n.asymmetric,
            n.clog_every,
            d.crash_every,
            d.torn_writes,
            d.pause_every,
            d.min_disk_delay,
            d.max_disk_delay,
            o.clients,
            o.keys,
            o.think_time,
            o.client_timeout,
            o.membership_every,
            o.transfer_every,
            o.compact_after,
            n.snapshot_delay_max,
            n.snapshot_fail,
            d.apply_lag_max,
            d.sm_flush,
            d.fsync_error_every,
            o.lease_reads,
            d.drift_ppm,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_deterministic_and_in_range() {
        let mut sizes = [0u32; 8];
        for seed in 0..500 {
            let a = SwarmConfig::draw(&mut SimRng::new(seed));
            let b = SwarmConfig::draw(&mut SimRng::new(seed));
            assert_eq!(a, b);
            assert!((1..=7).contains(&a.nodes));
            assert!((0.0..=0.3).contains(&a.net.drop));
            assert!(a.net.min_delay <= a.net.max_delay);
            assert!(a.node.min_disk_delay <= a.node.max_disk_delay);
            assert!(a.election_ticks > a.heartbeat_ticks);
            sizes[a.nodes as usize] += 1;
        }
        // Every cluster size comes up.
        assert!(sizes[1..].iter().all(|c| *c > 20), "{sizes:?}");
    }
}
