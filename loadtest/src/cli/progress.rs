//! The live progress bar (indicatif): elapsed time against the run, clients connected and
//! failed, received packets per second and loss. Hidden unless stdout is a terminal.

use super::scenario::{CONNECTED, FAILED, Shared};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// How often the bar refreshes.
const TICK: Duration = Duration::from_secs(1);

/// Totals of the live counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    /// Clients connected.
    pub connected: u64,
    /// Clients failed.
    pub failed: u64,
    /// Packets received.
    pub packets: u64,
    /// Packets lost.
    pub lost: u64,
}

/// Sums the clients' live counters.
pub fn live(shared: &Shared) -> Live {
    let mut l = Live::default();
    for s in &shared.slots {
        match s.state.load(Ordering::Relaxed) {
            CONNECTED => l.connected += 1,
            FAILED => l.failed += 1,
            _ => {}
        }
        l.packets += s.packets.load(Ordering::Relaxed);
        l.lost += s.lost.load(Ordering::Relaxed);
    }
    l
}

/// Draws the bar until the end of the run (a no-op task when stdout is not a terminal).
pub async fn run(shared: Arc<Shared>, enabled: bool) {
    if !enabled || !std::io::stdout().is_terminal() {
        return;
    }
    let t = shared.timeline;
    let total = (t.end - t.start).as_secs().max(1);
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}s {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stop = shared.stop.clone();
    let mut last = (Instant::now(), Live::default());
    let n = shared.slots.len();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = super::scenario::stopped(&mut stop) => break,
        }
        let now = Instant::now();
        if now >= t.end {
            break;
        }
        let l = live(&shared);
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let rate = l.packets.saturating_sub(last.1.packets) as f64 / dt;
        let d_lost = l.lost.saturating_sub(last.1.lost);
        let d_all = l.packets.saturating_sub(last.1.packets) + d_lost;
        let loss = if d_all > 0 { 100.0 * d_lost as f64 / d_all as f64 } else { 0.0 };
        let phase = if now < t.window { "ramp" } else { "measuring" };
        bar.set_position(now.duration_since(t.start).as_secs());
        bar.set_message(format!(
            "{phase} | connected {}/{n} failed {} | {rate:.0} pkt/s | loss {loss:.2}%",
            l.connected, l.failed
        ));
        last = (now, l);
    }
    bar.finish_and_clear();
}
