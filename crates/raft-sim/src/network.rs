//! The simulated network: per-link loss, duplication, delay, reordering, partitions and
//! clogging, all decided by the seeded RNG.
//!
//! The network does not own the event queue: [`Network::send`] decides the fate of one
//! message and returns the times at which copies of it arrive; the cluster schedules those.
//! At arrival, [`Network::admit`] decides whether a partition (which may have started
//! while the message was in flight) eats it, or a clog holds it longer.

use crate::fxhash::FxHashMap;
use crate::rng::SimRng;
use crate::swarm::NetFaults;
use std::collections::BTreeSet;

/// A node id on the simulated network.
pub type Addr = u64;

/// What happens to a message on arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Deliver it now.
    Deliver,
    /// A partition is in the way: the message is lost.
    Drop,
    /// The link is clogged: try again at this time.
    RetryAt(u64),
}

/// The simulated network's state.
#[derive(Debug)]
pub struct Network {
    faults: NetFaults,
    rng: SimRng,
    /// Directed links that are cut: (from, to).
    cut: BTreeSet<(Addr, Addr)>,
    /// Directed links that hold messages until the given time.
    clogged: FxHashMap<(Addr, Addr), u64>,
    /// For FIFO links: the latest arrival time scheduled on each link.
    last_arrival: FxHashMap<(Addr, Addr), u64>,
    /// Messages sent / dropped / duplicated (for the run report).
    pub stats: NetStats,
}

/// Counters of what the network did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages lost to random drops.
    pub dropped: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Messages lost to partitions.
    pub cut: u64,
}

impl Network {
    /// A healed network with the given fault rates.
    pub fn new(faults: NetFaults, rng: SimRng) -> Self {
        Self {
            faults,
            rng,
            cut: BTreeSet::new(),
            clogged: FxHashMap::default(),
            last_arrival: FxHashMap::default(),
            stats: NetStats::default(),
        }
    }

    /// The fault rates in force.
    pub fn faults(&self) -> &NetFaults {
        &self.faults
    }

    /// Turns random loss and duplication off (the liveness phase) or back to `faults`.
    pub fn set_faults(&mut self, faults: NetFaults) {
        self.faults = faults;
    }

    /// Decides the fate of a message sent at `now`: the arrival times of its copies
    /// (empty when it is lost).
    pub fn send(&mut self, now: u64, from: Addr, to: Addr) -> Vec<u64> {
        self.stats.sent += 1;
        if from != to && self.rng.chance(self.faults.drop) {
            self.stats.dropped += 1;
            return Vec::new();
        }
        let copies = if self.rng.chance(self.faults.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        let mut out = Vec::with_capacity(copies);
        for _ in 0..copies {
            let delay = self.rng.range(self.faults.min_delay, self.faults.max_delay);
            let mut at = now + delay;
            if !self.faults.reorder {
                let last = self.last_arrival.entry((from, to)).or_insert(0);
                at = at.max(*last);
                *last = at;
            }
            out.push(at);
        }
        out
    }

    /// Decides, at arrival time `now`, whether a message on `from -> to` gets through.
    pub fn admit(&mut self, now: u64, from: Addr, to: Addr) -> Admit {
        if self.cut.contains(&(from, to)) {
            self.stats.cut += 1;
            return Admit::Drop;
        }
        match self.clogged.get(&(from, to)) {
            Some(&until) if until > now => Admit::RetryAt(until),
            _ => Admit::Deliver,
        }
    }

    /// True when `from -> to` is currently cut.
    pub fn is_cut(&self, from: Addr, to: Addr) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Cuts every link between `side` and `rest`, in both directions or (asymmetric) only
    /// from `side` to `rest`.
    pub fn partition(&mut self, side: &[Addr], rest: &[Addr], one_way: bool) {
        for &a in side {
            for &b in rest {
                self.cut.insert((a, b));
                if !one_way {
                    self.cut.insert((b, a));
                }
            }
        }
    }

    /// Isolates `node` from `others` in both directions.
    pub fn isolate(&mut self, node: Addr, others: &[Addr]) {
        self.partition(&[node], others, false);
    }

    /// Clogs the link `from -> to` until `until`: messages wait, none are lost.
    pub fn clog(&mut self, from: Addr, to: Addr, until: u64) {
        let e = self.clogged.entry((from, to)).or_insert(0);
        *e = (*e).max(until);
    }

    /// Heals every partition and clog.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.clogged.clear();
    }

    /// Heals the partitions only.
    pub fn heal_partitions(&mut self) {
        self.cut.clear();
    }

    /// Describes the cut links, for the trace.
    pub fn describe_cuts(&self) -> String {
        let v: Vec<String> = self.cut.iter().map(|(a, b)| format!("{a}>{b}")).collect();
        v.join(",")
    }

    /// Access to the network's RNG stream (for drawing fault schedules).
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(drop: f64, dup: f64, reorder: bool) -> NetFaults {
        NetFaults {
            drop,
            duplicate: dup,
            min_delay: 1,
            max_delay: 20,
            reorder,
            partition_every: 0,
            asymmetric: false,
            clog_every: 0,
            max_fault_duration: 100,
            snapshot_delay_max: 0,
            snapshot_fail: 0.0,
        }
    }

    #[test]
    fn drop_rate_and_duplicates() {
        let mut n = Network::new(faults(0.3, 0.1, true), SimRng::new(1));
        let mut delivered = 0;
        for _ in 0..10_000 {
            delivered += n.send(0, 1, 2).len();
        }
        assert!((2_600..3_400).contains(&n.stats.dropped), "{:?}", n.stats);
        assert!(n.stats.duplicated > 400);
        assert_eq!(
            delivered as u64,
            10_000 - n.stats.dropped + n.stats.duplicated
        );
    }

    #[test]
    fn fifo_links_never_reorder() {
        let mut n = Network::new(faults(0.0, 0.0, false), SimRng::new(2));
        let mut last = 0;
        for t in 0..1000 {
            let at = n.send(t, 1, 2)[0];
            assert!(at >= last && at > t);
            last = at;
        }
        let mut n = Network::new(faults(0.0, 0.0, true), SimRng::new(2));
        let arrivals: Vec<u64> = (0..100).map(|t| n.send(t, 1, 2)[0]).collect();
        assert!(
            arrivals.windows(2).any(|w| w[1] < w[0]),
            "reordering happens"
        );
    }

    #[test]
    fn partitions_symmetric_asymmetric_and_heal() {
        let mut n = Network::new(faults(0.0, 0.0, true), SimRng::new(3));
        n.partition(&[1], &[2, 3], true);
        assert_eq!(n.admit(5, 1, 2), Admit::Drop);
        assert_eq!(n.admit(5, 2, 1), Admit::Deliver);
        n.partition(&[1], &[2, 3], false);
        assert_eq!(n.admit(5, 3, 1), Admit::Drop);
        assert_eq!(n.admit(5, 2, 3), Admit::Deliver);
        n.heal();
        assert_eq!(n.admit(5, 1, 2), Admit::Deliver);
    }

    #[test]
    fn clogged_links_hold_messages() {
        let mut n = Network::new(faults(0.0, 0.0, true), SimRng::new(4));
        n.clog(1, 2, 50);
        assert_eq!(n.admit(10, 1, 2), Admit::RetryAt(50));
        assert_eq!(n.admit(10, 2, 1), Admit::Deliver);
        assert_eq!(n.admit(50, 1, 2), Admit::Deliver);
    }
}
