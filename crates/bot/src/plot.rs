//! plot.png: loss and p99 latency against forwarded streams, one line per
//! server and scenario.

use crate::bench::{server_label, BenchReport};
use anyhow::{anyhow, Context};
use plotters::prelude::*;
use std::path::Path;

const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

fn register_font() -> anyhow::Result<()> {
    let bytes = FONTS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or_else(|| anyhow!("no TrueType font found (apt-get install fonts-dejavu-core)"))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("the font could not be loaded"))?;
    Ok(())
}

/// One line of the plot: its name and its points (streams, loss %, p99 ms).
type Series = (String, Vec<(f64, f64, f64)>);

pub fn draw(report: &BenchReport, path: &Path) -> anyhow::Result<()> {
    register_font()?;
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (left, right) = root.split_horizontally(600);
    let mut series: Vec<Series> = Vec::new();
    for l in &report.levels {
        let name = format!("{} {}", server_label(l.server, l.workers), l.scenario);
        let point = (l.streams.max(1) as f64, l.loss_pct, l.p99_ms);
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, pts)) => pts.push(point),
            None => series.push((name, vec![point])),
        }
    }
    let max_x = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.0))
        .fold(10.0, f64::max)
        * 1.5;
    let max_loss = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .fold(2.0, f64::max)
        * 1.1;
    let max_p99 = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.2))
        .fold(60.0, f64::max)
        * 1.1;
    for (area, title, max_y, pick) in [
        (&left, "loss % vs forwarded streams", max_loss, 1usize),
        (
            &right,
            "p99 added latency (ms) vs forwarded streams",
            max_p99,
            2usize,
        ),
    ] {
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d((1.0..max_x).log_scale(), 0.0..max_y)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("streams (log)")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let data: Vec<(f64, f64)> = pts
                .iter()
                .map(|p| (p.0, if pick == 1 { p.1 } else { p.2 }))
                .collect();
            chart
                .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
                .map_err(|e| anyhow!("{e}"))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2))
                });
            chart
                .draw_series(data.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| anyhow!("{e}"))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present()
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}
