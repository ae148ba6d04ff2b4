//! `raft-bench compare`: the cost of a setting, measured as users run it. Two 3-member raftd
//! clusters run side by side on the same machine, `a` with the base settings and `b` with
//! extra ones (backups on, TLS, ...) or another raftd binary (an earlier commit); the same
//! load (callers over all endpoints) runs on each in turn, alternating which goes first, for
//! several rounds. Reported per round and as the
//! median of the per-round ratios b/a, with their spread: on a shared 2-core machine a single
//! pair of runs is too noisy to show a 5% cost, and interleaving cancels the drift.
// Progress of each round goes to stderr as it is measured (a run takes minutes).
#![allow(clippy::print_stderr)]

use crate::cluster::{Cluster, Server};
use crate::load::{self, LoadSpec, Workload};
use anyhow::Result;
use raft_node::testing::TlsFiles;
use std::path::Path;
use std::time::Duration;

/// What to compare.
#[derive(Clone, Debug)]
pub struct CompareSpec {
    /// Another raftd binary for cluster b (e.g. a build of an earlier commit, for the cost
    /// of a change); `None`: the same binary as a.
    pub b_raftd: Option<std::path::PathBuf>,
    /// raftd settings (`KEY=VALUE`) of cluster b, on top of a's.
    pub b_settings: Vec<String>,
    /// Cluster b runs with TLS on every port (clients and peers).
    pub b_tls: bool,
    /// The load of every round.
    pub load: LoadSpec,
    /// Rounds (each runs a then b, or b then a).
    pub rounds: usize,
}

/// One round's figures: throughput and p50 of a and b, and the server CPU per request.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    /// Requests per second of a and b.
    pub ops: [f64; 2],
    /// p50 latency of a and b, ms.
    pub p50_ms: [f64; 2],
    /// Server CPU per request of a and b (the 3 members together), µs.
    pub cpu_us: [f64; 2],
    /// Context switches (threads switched onto a CPU) per request of a and b, the 3
    /// members together.
    pub switches: [f64; 2],
}

/// Runs the comparison with `raftd` under `dir` (wiped first).
pub async fn run(raftd: &Path, dir: &Path, spec: &CompareSpec) -> Result<Vec<Round>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let a = Cluster::start(Server::Raftd(raftd.to_path_buf()), &dir.join("a"), 3, &[])?;
    let b_args: Vec<&str> = spec
        .b_settings
        .iter()
        .flat_map(|kv| ["--set", kv.as_str()])
        .collect();
    let tls = if spec.b_tls {
        Some(TlsFiles::generate(&dir.join("certs"), true)?)
    } else {
        None
    };
    let b_raftd = spec.b_raftd.as_deref().unwrap_or(raftd);
    let b = Cluster::start_with(
        Server::Raftd(b_raftd.to_path_buf()),
        &dir.join("b"),
        3,
        &b_args,
        tls,
    )?;
    let clusters = [a, b];
    for c in &clusters {
        c.leader(Duration::from_secs(30)).await?;
    }
    if spec.load.workload != Workload::Put {
        for c in &clusters {
            load::fill(
                &c.endpoints(),
                spec.load.key_space,
                spec.load.value_size,
                c.client_tls(),
            )
            .await?;
        }
    }
    let mut rounds = Vec::new();
    for r in 0..spec.rounds {
        let mut round = Round {
            ops: [0.0; 2],
            p50_ms: [0.0; 2],
            cpu_us: [0.0; 2],
            switches: [0.0; 2],
        };
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let c = &clusters[i];
            let mut load = spec.load.clone();
            load.tls = c.client_tls();
            let cpu0 = c.cpu_time();
            let sw0 = c.switches();
            let s = load::run(&c.endpoints(), &load).await?;
            let cpu = c.cpu_time().saturating_sub(cpu0);
            round.switches[i] = c.switches().saturating_sub(sw0) as f64 / s.all_ops.max(1) as f64;
            round.ops[i] = s.throughput();
            round.p50_ms[i] = s.quantile_ms(0.5);
            round.cpu_us[i] = cpu.as_secs_f64() * 1e6 / s.all_ops.max(1) as f64;
            if s.errors > 0 {
                eprintln!(
                    "  {} errors in {}: {}",
                    s.errors,
                    ["a", "b"][i],
                    s.first_error.as_deref().unwrap_or("")
                );
            }
        }
        eprintln!(
            "round {}: a {:.0}/s p50 {:.2} ms, b {:.0}/s p50 {:.2} ms, b/a {:.3}",
            r + 1,
            round.ops[0],
            round.p50_ms[0],
            round.ops[1],
            round.p50_ms[1],
            round.ops[1] / round.ops[0]
        );
        rounds.push(round);
    }
    Ok(rounds)
}

/// The median of `v` and its smallest and largest values.
pub fn median_min_max(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median_min_max(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(median_min_max(&[4.0, 1.0, 3.0, 2.0]), (3.0, 1.0, 4.0));
        assert_eq!(median_min_max(&[]), (0.0, 0.0, 0.0));
    }
}
