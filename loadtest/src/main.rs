//! `loadtest`: load scenarios against an SFU with headless WebRTC clients.
//!
//! ```sh
//! loadtest broadcast --url ws://127.0.0.1:7880/ws --viewers 500 --layer q --duration 30s --ramp 10s
//! loadtest conference --rooms 10 --participants 4 --max-loss-pct 1 --max-p99-latency-ms 50
//! ```
//!
//! Prints a summary table, then a final line of JSON. Exit status: 0 when every threshold
//! passed, 1 when one failed, 2 on a usage error.

mod cli;

use clap::Parser;
use cli::args::{Cli, ProgressMode, Scenario};
use cli::report::{CpuUse, Summary};
use cli::scenario::{self, Shared, Slot, Timeline};
use loadtest::procstat;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

/// Time given to the clients' WebSockets and connections to close before the process exits.
const CLOSE_GRACE: Duration = Duration::from_millis(300);

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors exit with status 2
    let common = cli.scenario.common().clone();
    if let Err(e) = common.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    // logs go to stderr, next to the progress bar; the summary and JSON line stay on stdout
    let filter = tracing_subscriber::EnvFilter::try_new(&common.log).unwrap_or_else(|e| {
        eprintln!("warning: --log {:?}: {e}; using \"warn\"", common.log);
        tracing_subscriber::EnvFilter::new("warn")
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let mut builder = if common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(common.threads as usize);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (summary, groups) = runtime.block_on(run(cli.scenario));
    drop(runtime);
    print!("{}", summary.table());
    for (label, g) in &groups {
        println!("{label}: {}", g.json());
    }
    let failed = summary.check(&common);
    for f in &failed {
        println!("  {:<15} {f}", "THRESHOLD FAILED");
    }
    println!("{}", summary.json());
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// CPU seconds of this process (0 if /proc is unreadable).
fn cpu_now() -> f64 {
    procstat::sample(None).map_or(0.0, |s| s.cpu_s())
}

/// Runs `scenario` to its end (or Ctrl-C) and sums up: everyone, and with an emulated
/// downlink the clients behind it and the others apart.
async fn run(scenario: Scenario) -> (Summary, Vec<(&'static str, Summary)>) {
    let common = scenario.common().clone();
    let plan = scenario::plan(&scenario);
    let name = match scenario {
        Scenario::Conference { .. } => "conference",
        Scenario::Broadcast { .. } => "broadcast",
    };
    let (stop_tx, stop) = watch::channel(false);
    let timeline = Timeline::new(&common);
    let shared = Arc::new(Shared {
        slots: (0..plan.len()).map(|_| Slot::default()).collect(),
        common: common.clone(),
        timeline,
        stop: stop.clone(),
    });
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping the run and reporting what was measured");
            let _ = stop_tx.send(true);
        }
    });
    let progress = tokio::spawn(cli::progress::run(shared.clone(), common.progress == ProgressMode::Auto));
    let window = tokio::spawn(measure_window(timeline, stop));
    let outcomes = scenario::run(shared.clone(), plan).await;
    let _ = progress.await;
    let (duration, cpu_window) = window.await.unwrap_or_default();
    tokio::time::sleep(CLOSE_GRACE).await;
    let cpu = CpuUse { total_s: cpu_now(), window_s: cpu_window };
    let summary = |o: &[scenario::Outcome]| Summary::new(name, o, common.layer.index(), duration.as_secs_f64(), cpu);
    let mut groups = Vec::new();
    if common.downlink_kbps.is_some() {
        let (behind, rest): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(|o| o.impaired);
        groups.push(("behind the emulated downlink", summary(&behind)));
        groups.push(("the others", summary(&rest)));
        let all: Vec<_> = behind.into_iter().chain(rest).collect();
        return (summary(&all), groups);
    }
    (summary(&outcomes), groups)
}

/// The measured window's real length and this process's CPU seconds within it.
async fn measure_window(t: Timeline, mut stop: watch::Receiver<bool>) -> (Duration, f64) {
    tokio::select! {
        _ = sleep_until(t.window) => {}
        _ = scenario::stopped(&mut stop) => return (Duration::ZERO, 0.0),
    }
    let (start, cpu0) = (Instant::now(), cpu_now());
    tokio::select! {
        _ = sleep_until(t.end) => {}
        _ = scenario::stopped(&mut stop) => {}
    }
    (start.elapsed(), cpu_now() - cpu0)
}
