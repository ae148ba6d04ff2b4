//! Reading a node's `/metrics` (for `raftctl metrics` and tests): a plain HTTP/1.0 GET and
//! a parser of the Prometheus text format, with the sums and quantiles the summary shows.
//!
//! Why the parser is our own (about 50 lines) and not the `prometheus-parse` crate, the one
//! published parser of this format with a lenient, sample-level API: it splits label pairs on
//! `,` and `=` and keeps a value's backslash escapes, so a label value holding a comma, an
//! `=` or an escaped quote (a log filter, a URL, a peer name) comes out wrong; it groups
//! histogram buckets only after a `# TYPE` line and returns samples in hash order; and it
//! brings chrono, regex and a second itertools for what `raftctl metrics` needs: every
//! sample with its labels, unescaped, in order, skipping a line it cannot read instead of
//! failing the scrape. The other published parsers do not fit either: `openmetrics-parser`
//! is LGPL-3.0, outside the licences `deny.toml` allows; `nom-openmetrics` (0.2) fails the
//! whole document on one line it does not take (a timestamp, two spaces) and prints to
//! stderr from its library code for every `+Inf` bucket. The test below holds the cases
//! that matter here.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One sample: metric name, labels (in the order given) and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name (with `_bucket`, `_sum`, `_count` for histogram parts).
    pub name: String,
    /// Label pairs.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A parsed exposition.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

/// GETs `path` from the HTTP server at `addr` (`host:port`, an `http://` prefix is
/// accepted) and returns the status code and the body.
pub async fn http_request(
    addr: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let host = crate::config::strip_scheme(addr).trim_end_matches('/');
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(host)
            .await
            .map_err(|e| format!("connecting to {host}: {e}"))?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("sending to {host}: {e}"))?;
        let mut buf = Vec::new();
        stream
            .read_to_end(&mut buf)
            .await
            .map_err(|e| format!("reading from {host}: {e}"))?;
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("{host}: not an HTTP answer"))?;
        let head = String::from_utf8_lossy(&buf[..split]);
        let code = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("{host}: no HTTP status line"))?;
        Ok((code, buf[split + 4..].to_vec()))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("{host}{path}: no answer within {timeout:?}"))?
}

/// GETs `path` from `addr` and returns the body of a 200 answer as text.
pub async fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let (code, body) = http_request(addr, path, timeout).await?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if code != 200 {
        return Err(format!("{addr}{path}: HTTP {code}: {}", body.trim()));
    }
    Ok(body)
}

/// Parses `name{a="b",...} value` lines, skipping comments and lines it cannot read.
pub fn parse(text: &str) -> Exposition {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(p) => p,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((name, rest)) => (name.to_string(), parse_labels(rest.trim_end_matches('}'))),
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    Exposition { samples }
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((k, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((k.trim_start_matches(',').trim().to_string(), value));
        rest = &after[end..];
    }
    out
}

impl Exposition {
    /// The sum of every sample of `name` (over all label values); `None` when absent.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for s in self.samples.iter().filter(|s| s.name == name) {
            found = true;
            total += s.value;
        }
        found.then_some(total)
    }

    /// The sum of the samples of `name` whose label `key` is `value`.
    pub fn sum_where(&self, name: &str, key: &str, value: &str) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for s in self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels.iter().any(|(k, v)| k == key && v == value))
        {
            found = true;
            total += s.value;
        }
        found.then_some(total)
    }

    /// The `q` quantile (0..=1) of histogram `name`, interpolated linearly inside the
    /// bucket where it falls (as PromQL's `histogram_quantile`); `None` without samples.
    pub fn quantile(&self, name: &str, q: f64) -> Option<f64> {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for s in self.samples.iter().filter(|s| s.name == bucket) {
            let Some((_, le)) = s.labels.iter().find(|(k, _)| k == "le") else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some((_, n)) => *n += s.value,
                None => buckets.push((le, s.value)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut prev = (0.0, 0.0);
        for &(le, count) in &buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(prev.0);
                }
                let width = count - prev.1;
                let frac = if width > 0.0 {
                    (rank - prev.1) / width
                } else {
                    1.0
                };
                return Some(prev.0 + (le - prev.0) * frac);
            }
            prev = (le, count);
        }
        Some(prev.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP x_seconds a histogram
# TYPE x_seconds histogram
x_seconds_bucket{le="0.001"} 0
x_seconds_bucket{le="0.002"} 50
x_seconds_bucket{le="0.004"} 100
x_seconds_bucket{le="+Inf"} 100
x_seconds_sum 0.2
x_seconds_count 100
msgs_total{kind="heartbeat",peer="a\"b"} 7
msgs_total{kind="append"} 3
plain 5
filters{f="info,raft_net=debug",path="C:\\x"} 1
"#;

    #[test]
    fn parses_labels_sums_and_quantiles() {
        let e = parse(TEXT);
        assert_eq!(e.sum("msgs_total"), Some(10.0));
        assert_eq!(e.sum_where("msgs_total", "kind", "heartbeat"), Some(7.0));
        assert_eq!(e.sum_where("msgs_total", "peer", "a\"b"), Some(7.0));
        assert_eq!(e.sum("plain"), Some(5.0));
        assert_eq!(e.sum("absent"), None);
        assert_eq!(
            e.sum_where("filters", "f", "info,raft_net=debug"),
            Some(1.0)
        );
        assert_eq!(e.sum_where("filters", "path", "C:\\x"), Some(1.0));
        let p50 = e.quantile("x_seconds", 0.5).unwrap();
        assert!((p50 - 0.002).abs() < 1e-12, "{p50}");
        let p75 = e.quantile("x_seconds", 0.75).unwrap();
        assert!((p75 - 0.003).abs() < 1e-12, "{p75}");
        assert_eq!(e.quantile("absent", 0.5), None);
    }
}
