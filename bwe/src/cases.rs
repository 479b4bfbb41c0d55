//! The named link scenarios the tests assert on and the plots draw (`bwe_plots` in
//! `benches/`), so both always show the same runs.

use crate::Bitrate;
use crate::netem::LinkConfig;
use crate::scenario::Scenario;
use std::time::Duration;

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn mbps(x: f64) -> Bitrate {
    Bitrate::from_f64(x * 1e6)
}

/// A link of `rate_mbps` with a round trip of `rtt_ms` (half each way) and a 300 ms queue.
pub fn link(rate_mbps: f64, rtt_ms: u64) -> LinkConfig {
    LinkConfig::new(mbps(rate_mbps), Duration::from_millis(rtt_ms / 2))
}

/// 5 Mbit/s, falling to 1 Mbit/s at 15 s; 40 ms RTT; 30 s.
pub fn step_down() -> Scenario {
    Scenario::adaptive(link(5.0, 40), s(30.0)).rate_at(s(15.0), mbps(1.0))
}

/// 1 Mbit/s, rising to 5 Mbit/s at 10 s; 40 ms RTT; 30 s.
pub fn step_up() -> Scenario {
    Scenario::adaptive(link(1.0, 40), s(30.0)).rate_at(s(10.0), mbps(5.0))
}

/// 2 Mbit/s, 40 ms RTT, 30 s.
pub fn steady() -> Scenario {
    Scenario::adaptive(link(2.0, 40), s(30.0))
}

/// 5 Mbit/s with 3 % random loss, 40 ms RTT, 30 s.
pub fn random_loss() -> Scenario {
    let mut sc = Scenario::adaptive(LinkConfig { loss: 0.03, ..link(5.0, 40) }, s(30.0));
    sc.seed = 3;
    sc
}

/// RFC 8867 section 5.1: 1 -> 2.5 -> 0.6 -> 1 Mbit/s at 0, 40, 60, 80 s; 50 ms one way; 100 s.
pub fn rfc8867() -> Scenario {
    Scenario::adaptive(LinkConfig::new(mbps(1.0), Duration::from_millis(50)), s(100.0))
        .rate_at(s(40.0), mbps(2.5))
        .rate_at(s(60.0), mbps(0.6))
        .rate_at(s(80.0), mbps(1.0))
}

/// Audio and three simulcast cameras toward a 1 Mbit/s link, 60 ms RTT, 40 s.
pub fn simulcast_slow() -> Scenario {
    Scenario::simulcast(link(1.0, 60), s(40.0))
}

/// Audio and three simulcast cameras toward a 10 Mbit/s link, 40 ms RTT, 20 s.
pub fn simulcast_fast() -> Scenario {
    Scenario::simulcast(link(10.0, 40), s(20.0))
}

/// Every case with a file-friendly name and a title.
pub fn all() -> Vec<(&'static str, &'static str, Scenario)> {
    vec![
        ("step-down", "Step 5 -> 1 Mbit/s, 40 ms RTT", step_down()),
        ("step-up", "Step 1 -> 5 Mbit/s, 40 ms RTT", step_up()),
        ("steady", "Steady 2 Mbit/s, 40 ms RTT", steady()),
        ("random-loss", "5 Mbit/s with 3 % random loss", random_loss()),
        ("rfc8867", "RFC 8867 5.1: 1 -> 2.5 -> 0.6 -> 1 Mbit/s, 100 ms RTT", rfc8867()),
        ("simulcast-slow", "Audio + 3 simulcast cameras on 1 Mbit/s", simulcast_slow()),
        ("simulcast-fast", "Audio + 3 simulcast cameras on 10 Mbit/s", simulcast_fast()),
    ]
}
