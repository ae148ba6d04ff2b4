//! The entry point of one simulated run: options, the report of a passing seed and the
//! failure of a failing one.

use crate::cluster::Cluster;
use crate::invariants::Violation;
use crate::options::{RunReport, SimOptions};
use crate::rng::SimRng;
use crate::swarm::SwarmConfig;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A failing seed: what broke, where, and how to replay it.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The broken invariant.
    pub violation: Violation,
    /// Simulated time of the failure (ms).
    pub time: u64,
    /// The run's configuration.
    pub config: String,
    /// The trace lines kept (the tail, by default).
    pub trace: String,
    /// The command that replays the seed.
    pub replay: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} FAILED at t={}ms: {}",
            self.seed, self.time, self.violation
        )?;
        writeln!(f, "config: {}", self.config)?;
        writeln!(f, "replay: {}", self.replay)?;
        writeln!(f, "--- trace (last lines) ---")?;
        write!(f, "{}", self.trace)
    }
}

/// The command that replays `seed` with `opts` (the options that differ from the
/// defaults are spelled out).
pub fn replay_command(seed: u64, opts: &SimOptions) -> String {
    let mut cmd = format!("cargo xtask sim --seed {seed}");
    if opts.ticks != SimOptions::default().ticks {
        cmd.push_str(&format!(" --ticks {}", opts.ticks));
    }
    if !opts.check_linearizability {
        cmd.push_str(" --no-lin");
    }
    if let Some(m) = opts.mutation {
        cmd.push_str(&format!(" --mutation {}", m.cli_name()));
    }
    cmd
}

/// Runs one seed: draws its configuration, simulates, checks. Deterministic: the same seed
/// and options give the same result and trace hash.
pub fn run_seed(seed: u64, opts: &SimOptions) -> Result<RunReport, Box<Failure>> {
    let mut rng = SimRng::new(seed);
    let cfg = match &opts.swarm {
        Some(c) => c.clone(),
        None => SwarmConfig::draw(&mut rng),
    };
    let config = cfg.to_string();
    let mut cluster = Cluster::new(seed, cfg, opts.clone(), rng);
    let outcome = catch_unwind(AssertUnwindSafe(|| cluster.run()));
    let violation = match outcome {
        Ok(Ok(())) => return Ok(cluster.report()),
        Ok(Err(v)) => v,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Violation::Panic(msg)
        }
    };
    Err(Box::new(Failure {
        seed,
        violation,
        time: cluster.now(),
        config,
        trace: cluster.trace_text(),
        replay: replay_command(seed, opts),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Mutation;

    #[test]
    fn replay_command_spells_out_non_default_options() {
        assert_eq!(
            replay_command(7, &SimOptions::default()),
            "cargo xtask sim --seed 7"
        );
        let opts = SimOptions {
            ticks: 500,
            mutation: Some(Mutation::DoubleVote),
            ..SimOptions::default()
        };
        assert_eq!(
            replay_command(7, &opts),
            "cargo xtask sim --seed 7 --ticks 500 --mutation double-vote"
        );
        for m in Mutation::ALL {
            assert_eq!(Mutation::from_cli_name(m.cli_name()), Some(m));
        }
    }

    #[test]
    fn a_short_calm_run_passes_and_commits() {
        let opts = SimOptions {
            ticks: 600,
            liveness_ticks: 300,
            liveness_bound_ticks: 200,
            swarm: Some(SwarmConfig::calm(3)),
            ..SimOptions::default()
        };
        let r = run_seed(1, &opts).expect("a calm cluster passes");
        assert!(r.committed > 10, "{r:?}");
        assert!(r.history_ops > 10);
        assert_eq!(r.crashes, 0);
    }
}
