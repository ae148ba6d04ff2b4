//! [`Lessor`]: the leases of a store in memory, and on the leader their clocks.
//!
//! Every member keeps every lease here (id, granted TTL, checkpointed remaining TTL), updated
//! by apply in log order. Only a *primary* lessor (the leader's, once promoted) gives leases
//! an expiry time; the others never expire anything, as in etcd. Expiry is only ever decided
//! here and carried out through the log (a revoke entry), so every member deletes a lease's
//! keys at the same revision.
//!
//! - [`promote`](Lessor::promote): the leader, once it has applied its own term's first
//!   entry (so it knows every lease), gives each lease `extend + remaining` from now, where
//!   `remaining` is the last checkpoint's remaining TTL or else the full TTL: no lease expires
//!   because the leader changed, and a checkpointed long lease is not extended to its full
//!   TTL again. Expiries are spread when many fall into the same second (etcd's rule: at most
//!   3/4 of the revoke rate per second).
//! - [`renew`](Lessor::renew) (keep-alive) restarts a lease's TTL; when a checkpoint is on
//!   record (or on its way), the caller clears it through the log, so a later leader does not
//!   use a remaining TTL older than the renewal.
//! - [`take_expired`](Lessor::take_expired) hands out the leases past their expiry, each again
//!   after `retry` if its revoke has not been applied by then.
//! - [`take_due_checkpoints`](Lessor::take_due_checkpoints): every `checkpoint_interval`, the
//!   remaining TTL of each lease whose remaining TTL exceeds the interval.
//!
//! Time is a parameter of every call (an `Instant`), so the rules are tested without a clock.

use crate::pb::etcdserverpb::LeaseCheckpoint;
use crate::pb::kvlease::LeaseRecord;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Settings of the leader's lease clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LessorConfig {
    /// Every lease gets this much on top of its remaining TTL when a leader is promoted
    /// (etcd: the election timeout), covering the time no leader could renew it.
    pub extend_on_promote: Duration,
    /// How often remaining TTLs are checkpointed through the log (etcd's
    /// `--experimental-lease-checkpoint-interval`, 5 minutes); `None`: never.
    pub checkpoint_interval: Option<Duration>,
    /// Most leases revoked per second (etcd: 1000); expiries are spread to stay below it.
    pub revoke_rate: usize,
    /// An expired lease whose revoke has not been applied is handed out again after this
    /// (etcd: 3 seconds).
    pub retry: Duration,
}

impl Default for LessorConfig {
    fn default() -> Self {
        LessorConfig {
            extend_on_promote: Duration::from_secs(1),
            checkpoint_interval: Some(Duration::from_secs(5 * 60)),
            revoke_rate: 1000,
            retry: Duration::from_secs(3),
        }
    }
}

/// One lease in memory.
#[derive(Clone, Debug)]
struct Lease {
    ttl: i64,
    /// The last checkpoint's remaining TTL (0: none).
    remaining: i64,
    /// While primary: when it expires.
    expiry: Option<Instant>,
    /// While primary: its place in `expiries` (the expiry, or a retry time after it).
    notify: Option<Instant>,
    /// While primary: a checkpoint of it was handed out and not applied yet.
    checkpoint_pending: bool,
}

impl Lease {
    /// The TTL a new leader counts from.
    fn remaining_or_ttl(&self) -> i64 {
        if self.remaining > 0 {
            self.remaining
        } else {
            self.ttl
        }
    }
}

/// What [`Lessor::renew`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Renewed: its TTL runs again from now. With `clear_checkpoint`, a checkpoint of it is
    /// on record (or on its way): propose a checkpoint with remaining TTL 0.
    Renewed {
        /// The granted TTL.
        ttl: i64,
        /// See above.
        clear_checkpoint: bool,
    },
    /// No such lease.
    NotFound,
    /// It expired and its revoke is on its way: it cannot be renewed (wait for the revoke).
    Expired,
    /// This lessor keeps no clocks (not the leader, or not promoted yet).
    NotPrimary,
}

/// What [`Lessor::time_to_live`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeToLive {
    /// The lease's remaining TTL (whole seconds, rounded down, never negative) and granted
    /// TTL.
    Found {
        /// Seconds left.
        remaining: i64,
        /// The granted TTL.
        granted: i64,
    },
    /// No such lease.
    NotFound,
    /// This lessor keeps no clocks.
    NotPrimary,
}

/// A change apply made to a lease, in log order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseEvent {
    /// A lease was granted.
    Granted {
        /// Its id.
        id: i64,
        /// Its TTL.
        ttl: i64,
    },
    /// A lease was revoked (its keys deleted).
    Revoked(i64),
    /// A checkpoint set a lease's remaining TTL (0: cleared).
    Checkpointed {
        /// The lease.
        id: i64,
        /// The remaining TTL.
        remaining: i64,
    },
}

/// The leases of a store (see the module documentation).
#[derive(Debug)]
pub struct Lessor {
    config: LessorConfig,
    leases: HashMap<i64, Lease>,
    /// `Some(term)` while primary: promoted as the leader of that term.
    primary: Option<u64>,
    /// While primary: `(notify time, id)` of every lease.
    expiries: BTreeSet<(Instant, i64)>,
    /// While primary: `(due time, id)` of the scheduled checkpoints.
    checkpoints: BTreeSet<(Instant, i64)>,
}

/// The longest TTL a lease may have (etcd's `MaxLeaseTTL`, about 285 years).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

fn secs(n: i64) -> Duration {
    Duration::from_secs(n.clamp(0, MAX_LEASE_TTL) as u64)
}

impl Lessor {
    /// An empty, non-primary lessor.
    pub fn new(config: LessorConfig) -> Self {
        Lessor {
            config,
            leases: HashMap::new(),
            primary: None,
            expiries: BTreeSet::new(),
            checkpoints: BTreeSet::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> LessorConfig {
        self.config
    }

    /// Changes the settings (the next promotion and checkpoints use them).
    pub fn set_config(&mut self, config: LessorConfig) {
        self.config = config;
    }

    /// Replaces every lease with `records` (a store opened or restored). A primary lessor
    /// stays primary and counts each lease's remaining TTL from `now`.
    pub(crate) fn load(&mut self, records: Vec<LeaseRecord>, now: Instant) {
        self.leases = records
            .into_iter()
            .map(|r| {
                (
                    r.id,
                    Lease {
                        ttl: r.ttl,
                        remaining: r.remaining_ttl,
                        expiry: None,
                        notify: None,
                        checkpoint_pending: false,
                    },
                )
            })
            .collect();
        if let Some(term) = self.primary {
            self.promote_with(term, now, Duration::ZERO);
        }
    }

    /// The number of leases.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// True without leases.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Every lease's id and granted TTL, by id.
    pub fn list(&self) -> Vec<(i64, i64)> {
        let mut v: Vec<(i64, i64)> = self.leases.iter().map(|(id, l)| (*id, l.ttl)).collect();
        v.sort_unstable();
        v
    }

    /// A lease's granted TTL and checkpointed remaining TTL.
    pub fn get(&self, id: i64) -> Option<(i64, i64)> {
        self.leases.get(&id).map(|l| (l.ttl, l.remaining))
    }

    /// The term this lessor was promoted in, while primary.
    pub fn primary_term(&self) -> Option<u64> {
        self.primary
    }

    /// Applies what a batch did to the leases, in log order.
    pub(crate) fn applied(&mut self, events: &[LeaseEvent], now: Instant) {
        for e in events {
            match *e {
                LeaseEvent::Granted { id, ttl } => {
                    let mut lease = Lease {
                        ttl,
                        remaining: 0,
                        expiry: None,
                        notify: None,
                        checkpoint_pending: false,
                    };
                    if self.primary.is_some() {
                        lease.expiry = Some(now + secs(ttl));
                    }
                    if let Some(old) = self.leases.insert(id, lease) {
                        self.unschedule(id, &old);
                    }
                    self.schedule(id, now);
                }
                LeaseEvent::Revoked(id) => {
                    if let Some(old) = self.leases.remove(&id) {
                        self.unschedule(id, &old);
                    }
                }
                LeaseEvent::Checkpointed { id, remaining } => {
                    if let Some(l) = self.leases.get_mut(&id) {
                        l.remaining = remaining;
                        l.checkpoint_pending = false;
                        if self.primary.is_some() {
                            self.schedule_checkpoint(id, now);
                        }
                    }
                }
            }
        }
    }

    /// Starts keeping clocks as the leader of `term`: every lease expires `extend_on_promote`
    /// after its remaining TTL from `now` (see the module documentation).
    pub fn promote(&mut self, term: u64, now: Instant) {
        let extend = self.config.extend_on_promote;
        self.promote_with(term, now, extend);
    }

    fn promote_with(&mut self, term: u64, now: Instant, extend: Duration) {
        self.primary = Some(term);
        self.expiries.clear();
        self.checkpoints.clear();
        let mut order: Vec<(Instant, i64)> = Vec::with_capacity(self.leases.len());
        for (id, l) in &mut self.leases {
            let expiry = now + extend + secs(l.remaining_or_ttl());
            l.expiry = Some(expiry);
            l.checkpoint_pending = false;
            order.push((expiry, *id));
        }
        // Spread expiries that pile up: at most 3/4 of the revoke rate per second (etcd's
        // Promote), so revokes of leases that all lapsed during the election do not use up
        // the whole rate.
        let per_second = (3 * self.config.revoke_rate / 4).max(1);
        if order.len() > per_second {
            order.sort_unstable();
            let base = order[0].0;
            // Seconds after `base` fill up in order: a lease goes to its own second, or to the
            // first later one with room (expiries are sorted, so that is the current one or
            // the next).
            let (mut second, mut count) = (0u64, 0usize);
            for (expiry, id) in &mut order {
                let natural = (*expiry - base).as_secs();
                if natural > second {
                    second = natural;
                    count = 0;
                }
                if count == per_second {
                    second += 1;
                    count = 0;
                }
                count += 1;
                if second > natural {
                    *expiry = base + Duration::from_secs(second);
                    if let Some(l) = self.leases.get_mut(id) {
                        l.expiry = Some(*expiry);
                    }
                }
            }
        }
        let ids: Vec<i64> = order.iter().map(|(_, id)| *id).collect();
        for id in ids {
            self.schedule(id, now);
        }
    }

    /// Stops keeping clocks (leadership lost): nothing expires here any more.
    pub fn demote(&mut self) {
        self.primary = None;
        self.expiries.clear();
        self.checkpoints.clear();
        for l in self.leases.values_mut() {
            l.expiry = None;
            l.notify = None;
            l.checkpoint_pending = false;
        }
    }

    /// Keep-alive: restarts lease `id`'s TTL at `now` (primary only).
    pub fn renew(&mut self, id: i64, now: Instant) -> Renewal {
        if self.primary.is_none() {
            return Renewal::NotPrimary;
        }
        let Some(l) = self.leases.get_mut(&id) else {
            return Renewal::NotFound;
        };
        if l.expiry.is_some_and(|e| e <= now) {
            return Renewal::Expired;
        }
        let clear_checkpoint = l.remaining > 0 || l.checkpoint_pending;
        let old = l.clone();
        l.expiry = Some(now + secs(l.ttl));
        let ttl = l.ttl;
        self.unschedule(id, &old);
        self.schedule(id, now);
        Renewal::Renewed {
            ttl,
            clear_checkpoint,
        }
    }

    /// Lease `id`'s remaining and granted TTL at `now` (primary only).
    pub fn time_to_live(&self, id: i64, now: Instant) -> TimeToLive {
        if self.primary.is_none() {
            return TimeToLive::NotPrimary;
        }
        match self.leases.get(&id) {
            None => TimeToLive::NotFound,
            Some(l) => TimeToLive::Found {
                remaining: l
                    .expiry
                    .map_or(l.ttl, |e| e.saturating_duration_since(now).as_secs() as i64),
                granted: l.ttl,
            },
        }
    }

    /// Up to `limit` leases past their expiry at `now` (primary only). Each is handed out
    /// again `retry` later while it exists (its revoke may be lost in a leader change).
    pub fn take_expired(&mut self, now: Instant, limit: usize) -> Vec<i64> {
        let mut out = Vec::new();
        if self.primary.is_none() {
            return out;
        }
        while out.len() < limit {
            let Some(&(at, id)) = self.expiries.first() else {
                break;
            };
            if at > now {
                break;
            }
            self.expiries.pop_first();
            let Some(l) = self.leases.get_mut(&id) else {
                continue;
            };
            let again = now + self.config.retry;
            l.notify = Some(again);
            self.expiries.insert((again, id));
            if l.expiry.is_some_and(|e| e <= now) {
                out.push(id);
            }
        }
        out
    }

    /// Up to `limit` checkpoints due at `now` (primary only): each lease's remaining TTL,
    /// rounded up, when it is below the granted TTL.
    pub fn take_due_checkpoints(&mut self, now: Instant, limit: usize) -> Vec<LeaseCheckpoint> {
        let mut out = Vec::new();
        if self.primary.is_none() {
            return out;
        }
        while out.len() < limit {
            let Some(&(at, id)) = self.checkpoints.first() else {
                break;
            };
            if at > now {
                break;
            }
            self.checkpoints.pop_first();
            let Some(l) = self.leases.get_mut(&id) else {
                continue;
            };
            let Some(expiry) = l.expiry.filter(|e| *e > now) else {
                continue;
            };
            let left = expiry - now;
            let remaining = left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0);
            if remaining >= l.ttl {
                // Nothing to record yet (a lease granted before this lessor was promoted has
                // the promotion's extension on top of its TTL): look again one interval
                // later, or the lease would never be checkpointed.
                self.schedule_checkpoint(id, now);
                continue;
            }
            l.checkpoint_pending = true;
            out.push(LeaseCheckpoint {
                id,
                remaining_ttl: remaining,
            });
        }
        out
    }

    /// The earliest time something is due (an expiry or a checkpoint), while primary.
    pub fn next_due(&self) -> Option<Instant> {
        let e = self.expiries.first().map(|(t, _)| *t);
        let c = self.checkpoints.first().map(|(t, _)| *t);
        match (e, c) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Registers lease `id`'s expiry and, when needed, its next checkpoint (primary only).
    fn schedule(&mut self, id: i64, now: Instant) {
        if self.primary.is_none() {
            return;
        }
        if let Some(l) = self.leases.get_mut(&id)
            && let Some(expiry) = l.expiry
        {
            l.notify = Some(expiry);
            self.expiries.insert((expiry, id));
        }
        self.schedule_checkpoint(id, now);
    }

    /// etcd's `scheduleCheckpointIfNeeded`: a checkpoint one interval from now when the
    /// lease's remaining TTL is longer than the interval.
    fn schedule_checkpoint(&mut self, id: i64, now: Instant) {
        let Some(interval) = self.config.checkpoint_interval else {
            return;
        };
        let Some(l) = self.leases.get(&id) else {
            return;
        };
        if secs(l.remaining_or_ttl()) > interval {
            self.checkpoints.insert((now + interval, id));
        }
    }

    fn unschedule(&mut self, id: i64, old: &Lease) {
        if let Some(n) = old.notify {
            self.expiries.remove(&(n, id));
        }
        // Scheduled checkpoints of a lease that is gone are skipped when they come due.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lessor() -> Lessor {
        Lessor::new(LessorConfig {
            extend_on_promote: Duration::from_secs(2),
            checkpoint_interval: Some(Duration::from_secs(10)),
            revoke_rate: 8,
            retry: Duration::from_secs(3),
        })
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn only_a_primary_keeps_clocks() {
        let t0 = Instant::now();
        let mut l = lessor();
        l.applied(&[LeaseEvent::Granted { id: 1, ttl: 5 }], t0);
        assert_eq!(l.renew(1, t0), Renewal::NotPrimary);
        assert_eq!(l.time_to_live(1, t0), TimeToLive::NotPrimary);
        assert!(l.take_expired(t0 + s(100), 10).is_empty());
        l.promote(7, t0);
        assert_eq!(l.primary_term(), Some(7));
        // Promotion adds the extension: 5 + 2 seconds.
        assert!(l.take_expired(t0 + s(6), 10).is_empty());
        assert_eq!(
            l.time_to_live(1, t0 + s(1)),
            TimeToLive::Found {
                remaining: 6,
                granted: 5
            }
        );
        assert_eq!(l.take_expired(t0 + s(7), 10), [1]);
        // Handed out again only after the retry interval, while it exists.
        assert!(l.take_expired(t0 + s(8), 10).is_empty());
        assert_eq!(l.renew(1, t0 + s(8)), Renewal::Expired);
        assert_eq!(l.take_expired(t0 + s(10), 10), [1]);
        l.applied(&[LeaseEvent::Revoked(1)], t0 + s(10));
        assert!(l.take_expired(t0 + s(20), 10).is_empty());
        assert_eq!(l.renew(1, t0 + s(20)), Renewal::NotFound);
        l.demote();
        assert_eq!(l.renew(1, t0), Renewal::NotPrimary);
    }

    #[test]
    fn renewals_restart_the_ttl() {
        let t0 = Instant::now();
        let mut l = lessor();
        l.promote(1, t0);
        l.applied(&[LeaseEvent::Granted { id: 9, ttl: 4 }], t0);
        // Granted while primary: no extension.
        for i in 1..10 {
            assert_eq!(
                l.renew(9, t0 + s(3 * i)),
                Renewal::Renewed {
                    ttl: 4,
                    clear_checkpoint: false
                }
            );
            assert!(l.take_expired(t0 + s(3 * i + 3), 10).is_empty());
        }
        assert_eq!(l.take_expired(t0 + s(31), 10), [9]);
    }

    #[test]
    fn a_new_leader_counts_the_checkpointed_remaining_ttl() {
        let t0 = Instant::now();
        let mut l = lessor();
        l.promote(1, t0);
        l.applied(&[LeaseEvent::Granted { id: 3, ttl: 60 }], t0);
        // No checkpoint before the interval.
        assert!(l.take_due_checkpoints(t0 + s(9), 10).is_empty());
        let cps = l.take_due_checkpoints(t0 + s(10), 10);
        assert_eq!(
            cps,
            [LeaseCheckpoint {
                id: 3,
                remaining_ttl: 50
            }]
        );
        // A renewal while the checkpoint is on its way asks to clear it.
        assert_eq!(
            l.renew(3, t0 + s(11)),
            Renewal::Renewed {
                ttl: 60,
                clear_checkpoint: true
            }
        );
        l.applied(
            &[LeaseEvent::Checkpointed {
                id: 3,
                remaining: 50,
            }],
            t0 + s(11),
        );
        assert_eq!(l.get(3), Some((60, 50)));
        // Leadership moves: the next leader counts 50 + the extension, not 60.
        l.demote();
        let t1 = t0 + s(100);
        l.promote(2, t1);
        assert!(l.take_expired(t1 + s(51), 10).is_empty());
        assert_eq!(l.take_expired(t1 + s(52), 10), [3]);
        // The clear applied: the full TTL counts again.
        l.applied(
            &[LeaseEvent::Checkpointed {
                id: 3,
                remaining: 0,
            }],
            t1,
        );
        l.promote(3, t1);
        assert!(l.take_expired(t1 + s(61), 10).is_empty());
        assert_eq!(l.take_expired(t1 + s(62), 10), [3]);
    }

    #[test]
    fn a_lease_granted_before_promotion_is_checkpointed_past_the_extension() {
        let t0 = Instant::now();
        let mut l = Lessor::new(LessorConfig {
            extend_on_promote: Duration::from_millis(250),
            checkpoint_interval: Some(Duration::from_secs(1)),
            ..lessor().config()
        });
        // Applied while not primary: the promotion adds its extension to the 40 s TTL.
        l.applied(&[LeaseEvent::Granted { id: 4, ttl: 40 }], t0);
        l.promote(1, t0);
        // One interval in, 39.25 s are left, no less than the TTL once rounded up: nothing
        // to record, but the lease stays scheduled.
        assert!(l.take_due_checkpoints(t0 + s(1), 10).is_empty());
        assert_eq!(
            l.take_due_checkpoints(t0 + s(2), 10),
            [LeaseCheckpoint {
                id: 4,
                remaining_ttl: 39
            }]
        );
    }

    #[test]
    fn leases_shorter_than_the_interval_are_never_checkpointed() {
        let t0 = Instant::now();
        let mut l = lessor();
        l.promote(1, t0);
        l.applied(&[LeaseEvent::Granted { id: 1, ttl: 10 }], t0);
        assert!(l.take_due_checkpoints(t0 + s(60), 10).is_empty());
        assert_eq!(l.next_due(), Some(t0 + s(10)));
    }

    #[test]
    fn promotion_spreads_piled_up_expiries() {
        let t0 = Instant::now();
        let mut l = lessor();
        let events: Vec<LeaseEvent> = (1..=20)
            .map(|id| LeaseEvent::Granted { id, ttl: 5 })
            .collect();
        l.applied(&events, t0);
        l.promote(1, t0);
        // revoke_rate 8: at most 6 per second.
        let mut seen = 0;
        for sec in 0..20u64 {
            let now = t0 + s(7 + sec);
            let expired = l.take_expired(now, 100);
            let n = expired.len();
            assert!(n <= 6, "{n} expiries in second {sec}");
            seen += n;
            let revoked: Vec<LeaseEvent> = expired.into_iter().map(LeaseEvent::Revoked).collect();
            l.applied(&revoked, now);
            if seen == 20 {
                break;
            }
        }
        assert_eq!(seen, 20);
    }

    #[test]
    fn load_replaces_the_leases_and_keeps_a_primary_primary() {
        let t0 = Instant::now();
        let mut l = lessor();
        l.applied(&[LeaseEvent::Granted { id: 1, ttl: 5 }], t0);
        l.promote(4, t0);
        l.load(
            vec![LeaseRecord {
                id: 2,
                ttl: 30,
                remaining_ttl: 8,
            }],
            t0,
        );
        assert_eq!(l.list(), [(2, 30)]);
        assert_eq!(l.primary_term(), Some(4));
        assert_eq!(
            l.time_to_live(2, t0),
            TimeToLive::Found {
                remaining: 8,
                granted: 30
            }
        );
    }
}
