//! The plots of a cluster benchmark run: for each workload measured at two or more client
//! counts (put at 1/16/256, the gets at 1/256), one SVG with throughput and latency (p50 and
//! p99) against clients, raftd and etcd on the same axes, callers over all endpoints on the
//! left and to the leader only on the right.
//!
//! A run saves its figures as [`Results`] (`results.json`, next to the SVGs), so the plots
//! can be redrawn (`raft-bench plot --from results.json`) without running the benchmark
//! again. SVG only (plotters' SVG backend): no fonts or system libraries.

use anyhow::{Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The figures of one load run of one server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The workload as the report names it (`put`, `get (linearizable)`, ...).
    pub workload: String,
    /// Concurrent callers.
    pub clients: usize,
    /// Where the callers sent: `all` (rotating over every member) or `leader`.
    pub endpoints: String,
    /// `raftd` or `etcd`.
    pub server: String,
    /// Successful requests per second.
    pub ops_per_sec: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// The saved figures of a cluster benchmark run (`results.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// What the run was on and how it was run (CPUs, load, duration), for the plots' titles.
    pub setup: String,
    /// One row per server per load run.
    pub rows: Vec<Row>,
}

impl Results {
    /// Writes the results as pretty JSON to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads results saved by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Results> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Workloads with two or more client counts, in the order they first appear.
    fn plottable_workloads(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !seen.contains(&r.workload.as_str()) {
                seen.push(&r.workload);
            }
        }
        seen.retain(|w| {
            self.rows
                .iter()
                .filter(|r| r.workload == *w)
                .map(|r| r.clients)
                .collect::<BTreeSet<_>>()
                .len()
                >= 2
        });
        seen
    }

    /// The rows of `workload` for `server` through `endpoints`, by clients.
    fn series(&self, workload: &str, server: &str, endpoints: &str) -> Vec<&Row> {
        let mut rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.workload == workload && r.server == server && r.endpoints == endpoints)
            .collect();
        rows.sort_by_key(|r| r.clients);
        rows
    }

    /// The servers in the results, in the order they first appear.
    fn servers(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !seen.contains(&r.server.as_str()) {
                seen.push(&r.server);
            }
        }
        seen
    }
}

/// The file name of a workload's plot: `put.svg`, `get-linearizable.svg`.
pub fn file_name(workload: &str) -> String {
    let mut name = String::new();
    for c in workload.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    format!("{}.svg", name.trim_end_matches('-'))
}

/// Each server's colour; other servers are drawn black.
fn color_of(server: &str) -> RGBColor {
    match server {
        "raftd" => RGBColor(31, 119, 180),
        "etcd" => RGBColor(214, 39, 40),
        _ => BLACK,
    }
}

/// Draws one SVG per plottable workload into `dir` (created if missing); returns their
/// paths. A workload at a single client count (the 90/10 mix) has no curve and stays in the
/// report's table.
pub fn draw_all(results: &Results, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut paths = Vec::new();
    for workload in results.plottable_workloads() {
        let path = dir.join(file_name(workload));
        draw(results, workload, &path)?;
        paths.push(path);
    }
    Ok(paths)
}

/// Draws `workload`'s plot into `path`: a 2 x 2 grid, throughput above latency (p50 a thick
/// line, p99 a thin one), all endpoints left and the leader only right; clients on a log
/// axis.
pub fn draw(results: &Results, workload: &str, path: &Path) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("plotting {}: {e}", path.display());
    let rows: Vec<&Row> = results
        .rows
        .iter()
        .filter(|r| r.workload == workload)
        .collect();
    anyhow::ensure!(!rows.is_empty(), "no results for workload {workload:?}");
    let max_clients = rows.iter().map(|r| r.clients).max().unwrap_or(1).max(2) as f64;
    let max_rate = rows.iter().map(|r| r.ops_per_sec).fold(1.0, f64::max) * 1.15;
    let lat = |r: &&Row| [r.p50_ms, r.p99_ms];
    let min_ms = rows
        .iter()
        .flat_map(lat)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let min_ms = if min_ms.is_finite() {
        min_ms / 2.0
    } else {
        0.01
    };
    let max_ms = rows.iter().flat_map(lat).fold(min_ms * 4.0, f64::max) * 2.0;
    let servers = results.servers();

    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(
            &format!("{workload}: {}", results.setup),
            ("sans-serif", 18),
        )
        .map_err(|e| err(&e))?;
    let panels = root.split_evenly((2, 2));
    for (col, endpoints) in ["all", "leader"].into_iter().enumerate() {
        let label = if endpoints == "all" {
            "callers over all endpoints"
        } else {
            "callers to the leader only"
        };
        let per_server = servers
            .iter()
            .map(|s| (*s, results.series(workload, s, endpoints)))
            .filter(|(_, rows)| !rows.is_empty());
        let point = |r: &&Row, y: f64| (r.clients as f64, y);

        // Throughput.
        let mut chart = panel(
            &panels[col],
            format!("throughput, {label}"),
            max_clients,
            0.0..max_rate,
            "ops/s",
        )
        .map_err(|e| err(&e))?;
        for (server, rows) in per_server.clone() {
            let pts = rows.iter().map(|r| point(r, r.ops_per_sec)).collect();
            line(&mut chart, pts, color_of(server), server.to_string()).map_err(|e| err(&e))?;
        }
        legend(&mut chart).map_err(|e| err(&e))?;

        // Latency: p50 thick, p99 thin.
        let mut chart = panel(
            &panels[2 + col],
            format!("latency, {label}"),
            max_clients,
            (min_ms..max_ms).log_scale(),
            "latency (ms)",
        )
        .map_err(|e| err(&e))?;
        for (server, rows) in per_server {
            let color = color_of(server);
            let p50 = rows
                .iter()
                .map(|r| point(r, r.p50_ms.max(min_ms)))
                .collect();
            line(&mut chart, p50, color, format!("{server} p50")).map_err(|e| err(&e))?;
            let p99 = rows
                .iter()
                .map(|r| point(r, r.p99_ms.max(min_ms)))
                .collect();
            let thin = ShapeStyle::from(color.mix(0.6)).stroke_width(1);
            line(&mut chart, p99, thin, format!("{server} p99")).map_err(|e| err(&e))?;
        }
        legend(&mut chart).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// A chart of the plot: clients on a log axis, values on `Y`.
type Chart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<LogCoord<f64>, Y>>;

/// A chart on `area`: clients on a log axis up to `max_clients`, `y` as the value axis.
fn panel<'a, 'b, Y>(
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: String,
    max_clients: f64,
    y: Y,
    y_desc: &str,
) -> Result<Chart<'a, 'b, Y::CoordDescType>>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0..max_clients * 1.5).log_scale(), y)?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    Ok(chart)
}

/// One series: the points joined by a line in `style`, each marked, named `label` in the
/// legend.
fn line<'a, 'b: 'a, Y>(
    chart: &mut Chart<'a, 'b, Y>,
    pts: Vec<(f64, f64)>,
    style: impl Into<ShapeStyle>,
    label: String,
) -> Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    let style: ShapeStyle = style.into();
    chart
        .draw_series(LineSeries::new(pts.clone(), style))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, style.filled())))?;
    Ok(())
}

/// The legend box, upper left.
fn legend<'a, 'b: 'a, Y>(chart: &mut Chart<'a, 'b, Y>) -> Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up run: put at 1/16/256, a get at 1/256, the mix at 256 only; both servers,
    /// both endpoint modes.
    fn made_up() -> Results {
        let mut rows = Vec::new();
        for (workload, clients) in [
            ("put", vec![1, 16, 256]),
            ("get (linearizable)", vec![1, 256]),
            ("mixed 90% get / 10% put", vec![256]),
        ] {
            for &c in &clients {
                for (server, speed) in [("raftd", 1.3), ("etcd", 1.0)] {
                    for endpoints in ["all", "leader"] {
                        rows.push(Row {
                            workload: workload.into(),
                            clients: c,
                            endpoints: endpoints.into(),
                            server: server.into(),
                            ops_per_sec: speed * 400.0 * (c as f64).sqrt(),
                            p50_ms: 2.0 + c as f64 / 50.0 / speed,
                            p99_ms: 5.0 + c as f64 / 10.0 / speed,
                        });
                    }
                }
            }
        }
        Results {
            setup: "2 CPUs, made up".into(),
            rows,
        }
    }

    #[test]
    fn draws_one_svg_per_workload_with_both_servers_series() {
        let dir = tempfile::tempdir().unwrap();
        let paths = draw_all(&made_up(), dir.path()).unwrap();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        // The mix has one client count: no curve, no file.
        assert_eq!(names, ["put.svg", "get-linearizable.svg"]);
        for path in &paths {
            let svg = std::fs::read_to_string(path).unwrap();
            assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
            for label in [
                "raftd p50",
                "raftd p99",
                "etcd p50",
                "etcd p99",
                "throughput, callers over all endpoints",
                "latency, callers to the leader only",
                "2 CPUs, made up",
            ] {
                assert!(svg.contains(label), "{} lacks {label:?}", path.display());
            }
            // The throughput legends name each server on its own as well (plotters puts a
            // text's content on its own line).
            assert!(svg.contains("\nraftd\n") && svg.contains("\netcd\n"));
        }
    }

    #[test]
    fn results_round_trip_through_json_and_redraw_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let results = made_up();
        let json = dir.path().join("results.json");
        results.save(&json).unwrap();
        let back = Results::load(&json).unwrap();
        assert_eq!(back, results);
        let a = draw_all(&results, &dir.path().join("a")).unwrap();
        let b = draw_all(&back, &dir.path().join("b")).unwrap();
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(
                std::fs::read(a).unwrap(),
                std::fs::read(b).unwrap(),
                "{} redrawn differs",
                a.display()
            );
        }
    }

    #[test]
    fn a_raftd_only_run_plots_raftd_alone() {
        let mut results = made_up();
        results.rows.retain(|r| r.server == "raftd");
        let dir = tempfile::tempdir().unwrap();
        let paths = draw_all(&results, dir.path()).unwrap();
        let svg = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(svg.contains("raftd p50"));
        assert!(!svg.contains("etcd"));
    }

    #[test]
    fn unreadable_results_are_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.json");
        std::fs::write(&path, "{ not json").unwrap();
        let e = Results::load(&path).unwrap_err();
        assert!(format!("{e:#}").contains("results.json"), "{e:#}");
    }

    #[test]
    fn file_names_are_plain() {
        assert_eq!(file_name("put"), "put.svg");
        assert_eq!(file_name("get (serializable)"), "get-serializable.svg");
    }
}
