//! The outside tools and endpoints integration tests read a member through: etcdctl (found
//! on `PATH`, run once or retried over a leader change), and the member's HTTP endpoint
//! (`/metrics` parsed, `/status`, any path).

use super::Cluster;
use crate::scrape::Exposition;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `name` from a `PATH` directory. `None` when it is missing, which is a panic under
/// `CI=true` (naming `install`, how to get it): a CI run never skips a tool's test
/// silently.
pub fn tool_on_path(name: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    assert!(
        found.is_some() || std::env::var("CI").as_deref() != Ok("true"),
        "{name} is not on PATH and CI=true: {install}"
    );
    found
}

/// `etcdctl` from `PATH` (Debian's `etcd-client`, etcdctl 3.4); see [`tool_on_path`].
pub fn etcdctl() -> Option<PathBuf> {
    tool_on_path("etcdctl", "install Debian's etcd-client")
}

/// What one etcdctl run printed, and whether it succeeded.
#[derive(Clone, Debug)]
pub struct EtcdctlOutput {
    /// Exit status 0.
    pub ok: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl EtcdctlOutput {
    /// Whether it failed the way a leader change (or a loaded machine) makes a request
    /// fail, so that the same request may succeed when sent again.
    pub fn transient(&self) -> bool {
        ["leader changed", "no leader", "timed out", "Unavailable"]
            .iter()
            .any(|t| self.stderr.contains(t))
    }
}

/// Runs `bin` (etcdctl) once, API v3, against `endpoints` (comma-separated, `host:port` or
/// URLs) with a 5 s command timeout, then `args`; `stdin`, when given, is its input.
pub fn etcdctl_once(
    bin: &Path,
    endpoints: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> EtcdctlOutput {
    let mut child = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoints, "--command-timeout=5s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("piped stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).expect("etcdctl's stdin");
        }
    }
    let out = child.wait_with_output().expect("etcdctl's output");
    EtcdctlOutput {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`etcdctl_once`], sent again (for up to 20 s, every 200 ms) while it fails
/// [transiently](EtcdctlOutput::transient); the last output and whether it was sent more
/// than once (a retried write may have been applied by an attempt whose answer was lost).
pub fn etcdctl_retried(
    bin: &Path,
    endpoints: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> (EtcdctlOutput, bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut retried = false;
    loop {
        let out = etcdctl_once(bin, endpoints, args, stdin);
        if out.ok || !out.transient() || Instant::now() >= deadline {
            return (out, retried);
        }
        retried = true;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`etcdctl_retried`] that must succeed; its standard output.
pub fn etcdctl_ok(bin: &Path, endpoints: &str, args: &[&str]) -> String {
    let (out, _) = etcdctl_retried(bin, endpoints, args, None);
    assert!(out.ok, "etcdctl {args:?} failed: {}", out.stderr);
    out.stdout
}

/// GETs `path` from member `id`'s HTTP endpoint (the cluster runs with metrics): status
/// code and body. Waits up to 60 s (a profile takes its seconds plus symbol resolution,
/// slow in a debug build on a loaded machine); a connection failure panics.
pub async fn http(cluster: &Cluster, id: u64, path: &str) -> (u16, Vec<u8>) {
    crate::scrape::http_request(cluster.metrics(id), path, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("GET {path} on member {id}: {e}"))
}

/// Member `id`'s `/metrics`, parsed, and its text (which must come with 200).
pub async fn scrape(cluster: &Cluster, id: u64) -> (Exposition, String) {
    let (code, body) = http(cluster, id, "/metrics").await;
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(code, 200, "{text}");
    (crate::scrape::parse(&text), text)
}

/// The sum of the samples of `name` whose labels include every pair of `labels` (0 when
/// none does).
pub fn metric_sum(m: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_the_samples_with_every_label() {
        let m = crate::scrape::parse(
            "calls{method=\"Put\",code=\"OK\"} 2\n\
             calls{method=\"Put\",code=\"NotFound\"} 1\n\
             calls{method=\"Range\",code=\"OK\"} 5\n",
        );
        assert_eq!(metric_sum(&m, "calls", &[("method", "Put")]), 3.0);
        assert_eq!(
            metric_sum(&m, "calls", &[("method", "Put"), ("code", "OK")]),
            2.0
        );
        assert_eq!(metric_sum(&m, "calls", &[]), 8.0);
        assert_eq!(metric_sum(&m, "other", &[]), 0.0);
    }

    #[test]
    fn transient_failures_are_the_leader_change_ones() {
        let out = |stderr: &str| EtcdctlOutput {
            ok: false,
            stdout: String::new(),
            stderr: stderr.into(),
        };
        assert!(out("Error: etcdserver: leader changed").transient());
        assert!(out("context deadline exceeded; timed out").transient());
        assert!(!out("Error: etcdserver: permission denied").transient());
    }
}
