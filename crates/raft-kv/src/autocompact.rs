//! Auto-compaction as etcd's `--auto-compaction-mode` and `--auto-compaction-retention`: a
//! task on every member samples the store revision; the leader proposes `Compact` through
//! the log, so every member compacts at the same revision.
//!
//! - `periodic` with a retention `R` (etcd: a duration, or a bare number of hours): the
//!   revision is sampled every `min(R, 1 h) / 10`; every `min(R, 1 h)` (the first time once
//!   `R` has passed) the history older than `R` is compacted, that is up to the newest sample
//!   taken at least `R` ago.
//! - `revision` with a retention `N`: every 5 minutes, compacts up to the current revision
//!   minus `N` (the last `N` revisions are kept).
//!
//! The decisions are [`Schedule`]'s, a plain state machine fed with times and revisions, so
//! they can be tested without a clock; [`AutoCompactor`] runs it on tokio and takes policy
//! changes at run time (raftd's configuration reload).

use crate::machine::KvMachine;
use crate::pb::etcdserverpb::CompactionRequest;
use crate::{Command, KvStore, Op, Outcome};
use raft_runtime::RaftHandle;
use std::collections::VecDeque;
use std::time::Duration;

/// How often revision mode compacts (etcd's fixed interval).
pub const REVISION_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// An auto-compaction policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AutoCompaction {
    /// No auto-compaction (etcd's retention `0`).
    #[default]
    Off,
    /// Keep this much history, by time.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

impl AutoCompaction {
    /// Reads etcd's flags: `mode` `periodic` (retention a duration such as `30m`, or a
    /// number of hours) or `revision` (retention a number of revisions); retention `0` is
    /// off.
    pub fn parse(mode: &str, retention: &str) -> Result<Self, String> {
        let retention = retention.trim();
        match mode {
            "periodic" => {
                let d = match retention.parse::<u64>() {
                    Ok(hours) => Duration::from_secs(hours * 3600),
                    Err(_) => humantime_like(retention).ok_or_else(|| {
                        format!(
                            "periodic retention `{retention}` is not a duration (e.g. 1h, 30m, 10s)"
                        )
                    })?,
                };
                Ok(if d.is_zero() {
                    Self::Off
                } else {
                    Self::Periodic(d)
                })
            }
            "revision" => {
                let n = retention.parse::<i64>().map_err(|_| {
                    format!("revision retention `{retention}` is not a number of revisions")
                })?;
                if n < 0 {
                    return Err(format!("revision retention {n} is negative"));
                }
                Ok(if n == 0 { Self::Off } else { Self::Revision(n) })
            }
            other => Err(format!(
                "auto-compaction mode `{other}` is neither `periodic` nor `revision`"
            )),
        }
    }
}

/// A duration written as a number and a unit (`ms`, `s`, `m`, `h`), as etcd's flag takes.
fn humantime_like(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// When to compact, and to which revision (see the module documentation). Times are
/// offsets from any fixed origin.
#[derive(Debug)]
pub struct Schedule {
    policy: AutoCompaction,
    /// Periodic mode: `(time, revision)` samples, oldest first.
    samples: VecDeque<(Duration, i64)>,
    started: Duration,
    last: Option<Duration>,
    last_sample: Option<Duration>,
}

impl Schedule {
    /// A schedule for `policy` starting at `now`.
    pub fn new(policy: AutoCompaction, now: Duration) -> Self {
        Schedule {
            policy,
            samples: VecDeque::new(),
            started: now,
            last: None,
            last_sample: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> AutoCompaction {
        self.policy
    }

    /// How often [`tick`](Self::tick) wants to be called (`None`: never, the policy is off).
    pub fn poll_interval(&self) -> Option<Duration> {
        match self.policy {
            AutoCompaction::Off => None,
            AutoCompaction::Periodic(r) => Some(Self::period(r) / 10),
            AutoCompaction::Revision(_) => Some(REVISION_INTERVAL),
        }
    }

    /// Periodic mode's compaction interval.
    fn period(retention: Duration) -> Duration {
        retention.min(Duration::from_secs(3600))
    }

    /// Takes a sample of the store `revision` at `now` (the compact revision is
    /// `compacted`) and says whether to compact, to which revision.
    pub fn tick(&mut self, now: Duration, revision: i64, compacted: i64) -> Option<i64> {
        let target = match self.policy {
            AutoCompaction::Off => return None,
            AutoCompaction::Revision(n) => {
                if self
                    .last
                    .is_some_and(|t| now.saturating_sub(t) < REVISION_INTERVAL)
                {
                    return None;
                }
                self.last = Some(now);
                revision - n
            }
            AutoCompaction::Periodic(r) => {
                let every = Self::period(r) / 10;
                if self
                    .last_sample
                    .is_none_or(|t| now.saturating_sub(t) >= every)
                {
                    self.samples.push_back((now, revision));
                    self.last_sample = Some(now);
                }
                let due = match self.last {
                    None => now.saturating_sub(self.started) >= r,
                    Some(t) => now.saturating_sub(t) >= Self::period(r),
                };
                if !due {
                    return None;
                }
                // The newest sample at least `r` old; older ones are not needed again.
                let cut = now.checked_sub(r)?;
                let mut target = None;
                while let Some(&(t, rev)) = self.samples.front() {
                    if t > cut {
                        break;
                    }
                    target = Some(rev);
                    self.samples.pop_front();
                }
                let target = target?;
                // Keep it as the oldest sample: the next compaction starts from it.
                self.samples.push_front((cut, target));
                self.last = Some(now);
                target
            }
        };
        (target > compacted).then_some(target)
    }
}

/// Runs a [`Schedule`] for a node (see the module documentation) until dropped.
pub struct AutoCompactor {
    policy: tokio::sync::watch::Sender<AutoCompaction>,
    task: tokio::task::JoinHandle<()>,
}

impl AutoCompactor {
    /// Starts the task (on the current tokio runtime). `member_id` is this node: it
    /// proposes only while it is the leader.
    pub fn spawn(
        handle: RaftHandle<KvMachine>,
        store: KvStore,
        member_id: u64,
        policy: AutoCompaction,
    ) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(policy);
        let task = tokio::spawn(run(handle, store, member_id, rx));
        AutoCompactor { policy: tx, task }
    }

    /// Changes the policy (takes effect at once; the samples start over).
    pub fn set(&self, policy: AutoCompaction) {
        self.policy.send_if_modified(|p| {
            let changed = *p != policy;
            *p = policy;
            changed
        });
    }

    /// The policy in force.
    pub fn policy(&self) -> AutoCompaction {
        *self.policy.borrow()
    }
}

impl Drop for AutoCompactor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    handle: RaftHandle<KvMachine>,
    store: KvStore,
    member_id: u64,
    mut policy: tokio::sync::watch::Receiver<AutoCompaction>,
) {
    let origin = tokio::time::Instant::now();
    let mut schedule = Schedule::new(*policy.borrow_and_update(), Duration::ZERO);
    loop {
        let wait = schedule.poll_interval();
        tokio::select! {
            changed = policy.changed() => {
                if changed.is_err() {
                    return;
                }
                let p = *policy.borrow_and_update();
                tracing::info!(?p, "auto-compaction policy changed");
                schedule = Schedule::new(p, origin.elapsed());
                continue;
            }
            () = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        let status = store.status();
        let Some(target) =
            schedule.tick(origin.elapsed(), status.revision, status.compact_revision)
        else {
            continue;
        };
        if handle.stats().leader != Some(member_id) {
            continue;
        }
        let cmd = Command::new(
            0,
            Op::Compact(CompactionRequest {
                revision: target,
                physical: false,
            }),
        );
        match handle.propose(cmd.encode()).await {
            Ok(r) => match r.outcome {
                Outcome::Response(_) => {
                    tracing::info!(revision = target, "auto-compaction compacted the history")
                }
                other => tracing::debug!(revision = target, ?other, "auto-compaction refused"),
            },
            Err(e) => tracing::debug!(%e, revision = target, "auto-compaction not proposed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn parses_etcd_flags() {
        assert_eq!(
            AutoCompaction::parse("periodic", "0"),
            Ok(AutoCompaction::Off)
        );
        assert_eq!(
            AutoCompaction::parse("periodic", "2"),
            Ok(AutoCompaction::Periodic(2 * 3600 * S))
        );
        assert_eq!(
            AutoCompaction::parse("periodic", "30m"),
            Ok(AutoCompaction::Periodic(1800 * S))
        );
        assert_eq!(
            AutoCompaction::parse("periodic", "1.5s"),
            Ok(AutoCompaction::Periodic(Duration::from_millis(1500)))
        );
        assert_eq!(
            AutoCompaction::parse("revision", "1000"),
            Ok(AutoCompaction::Revision(1000))
        );
        assert_eq!(
            AutoCompaction::parse("revision", "0"),
            Ok(AutoCompaction::Off)
        );
        assert!(AutoCompaction::parse("revision", "1h").is_err());
        assert!(AutoCompaction::parse("revision", "-1").is_err());
        assert!(AutoCompaction::parse("periodic", "soon").is_err());
        assert!(AutoCompaction::parse("daily", "1").is_err());
    }

    /// Revision mode: every 5 minutes, to the revision minus the retention.
    #[test]
    fn revision_mode() {
        let mut s = Schedule::new(AutoCompaction::Revision(100), Duration::ZERO);
        assert_eq!(s.poll_interval(), Some(REVISION_INTERVAL));
        assert_eq!(s.tick(Duration::ZERO, 50, 0), None, "not enough history");
        assert_eq!(
            s.tick(60 * S, 500, 0),
            None,
            "too soon after the last check"
        );
        assert_eq!(s.tick(300 * S, 500, 0), Some(400));
        assert_eq!(s.tick(600 * S, 450, 400), None, "nothing new to compact");
        assert_eq!(s.tick(900 * S, 1000, 400), Some(900));
    }

    /// Periodic mode: the first compaction once the retention has passed, to the revision
    /// sampled a retention ago; then every retention (at most an hour).
    #[test]
    fn periodic_mode() {
        let r = 100 * S;
        let mut s = Schedule::new(AutoCompaction::Periodic(r), Duration::ZERO);
        assert_eq!(s.poll_interval(), Some(10 * S));
        let mut got = Vec::new();
        // The revision grows by 10 per second.
        for t in (0..=400).step_by(10) {
            let now = t * S;
            let compacted = got.last().copied().unwrap_or(0);
            if let Some(rev) = s.tick(now, 10 * t as i64, compacted) {
                got.push(rev);
                // What was written in the last `r` is kept.
                assert!(rev <= 10 * (t as i64 - 100), "at {t}: {rev}");
            }
        }
        // The first compaction (at 100 s) would keep nothing older than revision 0.
        assert_eq!(got, [1000, 2000, 3000]);
        let mut off = Schedule::new(AutoCompaction::Off, Duration::ZERO);
        assert_eq!(off.poll_interval(), None);
        assert_eq!(off.tick(1000 * S, 10, 0), None);
    }

    /// A long retention compacts hourly, keeping the retention.
    #[test]
    fn periodic_mode_caps_the_interval_at_an_hour() {
        let r = 10 * 3600 * S;
        let mut s = Schedule::new(AutoCompaction::Periodic(r), Duration::ZERO);
        assert_eq!(s.poll_interval(), Some(360 * S));
        let mut got: Vec<(u32, i64)> = Vec::new();
        for k in 0..=150u32 {
            let now = k * 360 * S;
            let compacted = got.last().map_or(0, |g| g.1);
            if let Some(rev) = s.tick(now, i64::from(k) + 1, compacted) {
                got.push((k, rev));
            }
        }
        // First at 10 h (k = 100), then every hour (10 samples).
        assert_eq!(got.first(), Some(&(100, 1)));
        assert_eq!(got[1], (110, 11));
        assert_eq!(got.len(), 6);
    }
}
