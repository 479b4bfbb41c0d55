//! Draws the bandwidth estimator's scenarios (`bwe::cases`, the runs its tests assert on) as
//! PNG: link capacity, estimate and sent rate over time, and the link's queuing delay below.
//!
//! `cargo run --release -p sfu-benches --bin bwe_plots -- --out docs/bwe`

use bwe::scenario::{SAMPLE, Trace, run};
use clap::Parser;
use plotters::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
struct Args {
    /// Folder the PNG files go to (one per case, `bwe-<case>.png`).
    #[arg(long, default_value = "docs/bwe")]
    out: PathBuf,
    /// A TrueType font for the labels.
    #[arg(long, default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")]
    font: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let font: &'static [u8] = Box::leak(std::fs::read(&args.font)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("{} is not a usable font", args.font.display()))?;
    std::fs::create_dir_all(&args.out)?;
    for (name, title, sc) in bwe::cases::all() {
        let trace = run(&sc);
        let path = args.out.join(format!("bwe-{name}.png"));
        draw(&trace, title, &path)?;
        println!("{}", path.display());
    }
    Ok(())
}

/// The largest link queuing delay of the media packets queued in each sample interval, ms.
fn queue_per_sample(t: &Trace) -> Vec<(f64, f64)> {
    let mut out = vec![0f64; t.samples.len()];
    for trip in &t.trips {
        let i = (trip.queued.as_nanos() / SAMPLE.as_nanos()) as usize;
        if let Some(v) = out.get_mut(i) {
            *v = v.max(trip.link_queue.as_secs_f64() * 1e3);
        }
    }
    t.samples.iter().zip(out).map(|(s, q)| (s.t.as_secs_f64(), q)).collect()
}

fn draw(t: &Trace, title: &str, path: &PathBuf) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(440);
    let end = t.samples.last().map_or(Duration::ZERO, |s| s.t).as_secs_f64();
    let mbps = |b: bwe::Bitrate| b.as_f64() / 1e6;
    let peak = t.samples.iter().map(|s| mbps(s.capacity).max(mbps(s.estimate)).max(mbps(s.sent))).fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 22))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end, 0.0..(peak * 1.1).min(12.0))?;
    chart.configure_mesh().y_desc("Mbit/s").x_desc("s").label_style(("sans-serif", 14)).draw()?;
    let series: [(&str, RGBColor, fn(&bwe::scenario::Sample) -> bwe::Bitrate); 3] = [
        ("link capacity", BLACK, |s| s.capacity),
        ("estimate", BLUE, |s| s.estimate),
        ("sent (media + probes)", RED, |s| s.sent),
    ];
    for (label, color, pick) in series {
        chart
            .draw_series(LineSeries::new(
                t.samples.iter().map(|s| (s.t.as_secs_f64(), mbps(pick(s)))),
                color.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    let q = queue_per_sample(t);
    let qmax = q.iter().map(|p| p.1).fold(10.0, f64::max);
    let mut delay = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end, 0.0..qmax * 1.1)?;
    delay.configure_mesh().y_desc("queue ms").x_desc("s").label_style(("sans-serif", 14)).draw()?;
    delay
        .draw_series(LineSeries::new(q, GREEN.stroke_width(1)))?
        .label("link queuing delay (max per 100 ms)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    delay
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
