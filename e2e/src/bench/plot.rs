//! The SVG plot of the latency distributions: one panel per comparison (both sides' CDFs), or
//! per section of plain series, drawn with plotters' SVG backend (no fonts needed).
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::{report::Section, stats::Series};

const COLORS: [RGBColor; 6] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// A panel: a title and the series drawn in it.
struct Panel<'a> {
    title: String,
    series: Vec<&'a Series>,
}

fn panels(sections: &[Section]) -> Vec<Panel<'_>> {
    let mut out = Vec::new();
    for s in sections {
        let find = |label: &str| s.series.iter().find(|x| x.label == label);
        if s.comparisons.is_empty() {
            if !s.series.is_empty() {
                out.push(Panel {
                    title: s.title.clone(),
                    series: s.series.iter().collect(),
                });
            }
            continue;
        }
        for c in &s.comparisons {
            let series: Vec<&Series> = [find(&c.a), find(&c.b)].into_iter().flatten().collect();
            if !series.is_empty() {
                out.push(Panel {
                    title: c.what.clone(),
                    series,
                });
            }
        }
    }
    out.retain(|p| p.series.iter().any(|s| !s.samples_ms.is_empty()));
    out
}

/// Writes the plot; an SVG with a note when there is nothing to draw.
pub fn write_svg(path: &Path, sections: &[Section]) -> Result<()> {
    let panels = panels(sections);
    let rows = panels.len().div_ceil(2).max(1);
    let height = u32::try_from(rows * 320).unwrap_or(u32::MAX);
    let root = SVGBackend::new(path, (1200, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    if panels.is_empty() {
        root.draw(&Text::new(
            "no latency samples",
            (20, 20),
            ("sans-serif", 16),
        ))
        .map_err(|e| anyhow!("{e}"))?;
    }
    let areas = root.split_evenly((rows, 2));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(area, panel)?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: &Panel<'_>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    // The x range ends at the largest p99 (a single outlier would squash the curves).
    let x_max = p
        .series
        .iter()
        .map(|s| s.stats.p99_ms)
        .fold(0.0_f64, f64::max)
        * 1.15;
    let x_min = p
        .series
        .iter()
        .map(|s| s.stats.min_ms)
        .fold(f64::INFINITY, f64::min)
        * 0.9;
    let x_min = if x_min.is_finite() { x_min } else { 0.0 };
    let x_max = if x_max > x_min { x_max } else { x_min + 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(40)
        .build_cartesian_2d(x_min..x_max, 0.0..1.0_f64)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("ms")
        .y_desc("fraction ≤ x")
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, s) in p.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut v = s.samples_ms.clone();
        v.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss)]
        let n = v.len() as f64;
        #[allow(clippy::cast_precision_loss)]
        let points = v
            .iter()
            .enumerate()
            .map(|(k, x)| (x.min(x_max), (k + 1) as f64 / n));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(format!("{} (median {:.2} ms)", s.label, s.stats.p50_ms))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 11))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
