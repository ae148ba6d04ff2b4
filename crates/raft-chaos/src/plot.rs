//! The plot of a run (`plot.svg`), as Jepsen draws them: every operation's latency against
//! the time it was invoked (log scale), coloured by workload, with operations that failed or
//! ended unknown marked apart, and the fault windows shaded and labelled; below, the
//! throughput of successful operations per second. SVG only: no fonts or system libraries.

use crate::history::Outcome;
use crate::{Error, Result};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// One operation on the plot.
#[derive(Clone, Debug)]
pub struct Point {
    /// Invocation time, seconds since the client started.
    pub t_s: f64,
    /// Latency in ms.
    pub latency_ms: f64,
    /// Its workload (`register`, `bank`, `watch`, `lock`).
    pub workload: &'static str,
    /// How it ended.
    pub outcome: Outcome,
}

/// A fault window to shade.
#[derive(Clone, Debug)]
pub struct Window {
    /// Start, seconds since the client started.
    pub start_s: f64,
    /// End.
    pub end_s: f64,
    /// A short label (`kill 2`).
    pub label: String,
}

const WORKLOAD_COLORS: [(&str, RGBColor); 6] = [
    ("register", RGBColor(31, 119, 180)),
    ("bank", RGBColor(44, 160, 44)),
    ("watch", RGBColor(148, 103, 189)),
    ("lock", RGBColor(255, 127, 14)),
    ("append", RGBColor(214, 39, 40)),
    ("sread", RGBColor(140, 86, 75)),
];

fn color_of(workload: &str) -> RGBColor {
    WORKLOAD_COLORS
        .iter()
        .find(|(w, _)| *w == workload)
        .map_or(BLACK, |(_, c)| *c)
}

/// Draws the plot into `path` (SVG), `title` on top, the time axis up to `end_s`.
pub fn draw(
    path: &Path,
    title: &str,
    points: &[Point],
    windows: &[Window],
    end_s: f64,
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Plot {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let end_s = end_s.max(points.iter().map(|p| p.t_s).fold(1.0, f64::max));
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(560);

    let max_ms = points.iter().map(|p| p.latency_ms).fold(10.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end_s, (0.05f64..max_ms).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| err(&e))?;
    shade(&mut chart, windows, 0.05, max_ms).map_err(|e| err(&e))?;
    for (workload, color) in WORKLOAD_COLORS {
        let ok: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.workload == workload && p.outcome == Outcome::Ok)
            .map(|p| (p.t_s, p.latency_ms.max(0.05)))
            .collect();
        if ok.is_empty() {
            continue;
        }
        chart
            .draw_series(
                ok.iter()
                    .map(|&(x, y)| Circle::new((x, y), 2, color.mix(0.6).filled())),
            )
            .map_err(|e| err(&e))?
            .label(format!("{workload} ok"))
            .legend(move |(x, y)| Circle::new((x, y), 3, color.filled()));
    }
    for (outcome, color, name) in [
        (Outcome::Fail, RGBColor(255, 127, 14), "failed"),
        (Outcome::Unknown, RGBColor(214, 39, 40), "unknown"),
    ] {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.outcome == outcome)
            .map(|p| (p.t_s, p.latency_ms.max(0.05)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(pts.iter().map(|&(x, y)| Cross::new((x, y), 3, color)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| Cross::new((x, y), 3, color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;

    // Throughput of successful operations, per workload, per second.
    let mut per_sec: BTreeMap<&str, BTreeMap<u64, u64>> = BTreeMap::new();
    for p in points.iter().filter(|p| p.outcome == Outcome::Ok) {
        *per_sec
            .entry(p.workload)
            .or_default()
            .entry(p.t_s.max(0.0) as u64)
            .or_default() += 1;
    }
    let max_rate = per_sec
        .values()
        .flat_map(|m| m.values())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end_s, 0.0..max_rate)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("ok ops/s")
        .draw()
        .map_err(|e| err(&e))?;
    shade(&mut chart, windows, 0.0, max_rate).map_err(|e| err(&e))?;
    let secs = end_s.ceil() as u64;
    for (workload, counts) in &per_sec {
        let color = color_of(workload);
        chart
            .draw_series(LineSeries::new(
                (0..secs).map(|s| (s as f64 + 0.5, *counts.get(&s).unwrap_or(&0) as f64)),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Shades each fault window over the chart's full height and labels it at the top.
fn shade<Y, DB>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    windows: &[Window],
    y_lo: f64,
    y_hi: f64,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64>,
{
    let fill = RGBColor(128, 128, 128).mix(0.18);
    chart.draw_series(
        windows
            .iter()
            .map(|w| Rectangle::new([(w.start_s, y_lo), (w.end_s, y_hi)], fill.filled())),
    )?;
    chart.draw_series(windows.iter().map(|w| {
        Text::new(
            w.label.clone(),
            (w.start_s, y_hi),
            ("sans-serif", 11).into_font().color(&BLACK),
        )
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_points_and_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        let points: Vec<Point> = (0..200)
            .map(|i| Point {
                t_s: i as f64 * 0.05,
                latency_ms: 1.0 + (i % 7) as f64,
                workload: ["register", "bank", "watch"][i % 3],
                outcome: if i % 50 == 0 {
                    Outcome::Unknown
                } else {
                    Outcome::Ok
                },
            })
            .collect();
        let windows = vec![Window {
            start_s: 2.0,
            end_s: 4.5,
            label: "kill 2".into(),
        }];
        draw(&path, "seed 1", &points, &windows, 10.0).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("kill 2"));
        assert!(svg.contains("register ok"));
        assert!(svg.contains("unknown"));
    }
}
