//! The estimator, allocator, prober and pacer against the emulated link, in virtual time: the
//! numeric bars of a sender that adapts to its receiver's network.

use bwe::Bitrate;
use bwe::netem::LinkConfig;
use bwe::scenario::{Scenario, Trace, run};
use std::time::Duration;

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn mbps(x: f64) -> Bitrate {
    Bitrate::from_f64(x * 1e6)
}

/// Prints the trace every `every` samples (seen with `--nocapture` when a bar fails).
fn dump(name: &str, t: &Trace) {
    println!("{name}: t capacity estimate sent media delivered lost/packets allocated");
    for x in t.samples.iter().step_by(5) {
        println!(
            "{:>5.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>3}/{:<4} {}",
            x.t.as_secs_f64(),
            x.capacity.to_string(),
            x.estimate.to_string(),
            x.sent.to_string(),
            x.media.to_string(),
            x.delivered.to_string(),
            x.lost,
            x.packets,
            x.allocated
        );
    }
}

fn link(rate_mbps: f64, rtt_ms: u64) -> LinkConfig {
    LinkConfig::new(mbps(rate_mbps), Duration::from_millis(rtt_ms / 2))
}

#[test]
fn step_down_5_to_1() {
    let sc = Scenario::adaptive(link(5.0, 40), s(30.0)).rate_at(s(15.0), mbps(1.0));
    let t = run(&sc);
    dump("step 5 -> 1", &t);
    // settled near 5 first
    let before = t.mean(s(10.0), s(15.0), |x| x.estimate.as_f64());
    assert!(before > 3.5e6, "estimate before the step {before}");
    // within 2 s of the step the sent rate (over each second) is at most 1.1 Mbit/s and stays there
    for from in (17..29).map(|x| x as f64) {
        let sent = t.mean(s(from), s(from + 1.0), |x| x.sent.as_f64());
        assert!(sent <= 1.1e6, "sent {sent} in the second after {from} s");
    }
}

#[test]
fn step_up_1_to_5() {
    let sc = Scenario::adaptive(link(1.0, 40), s(30.0)).rate_at(s(10.0), mbps(5.0));
    let t = run(&sc);
    dump("step 1 -> 5", &t);
    let at = t.samples.iter().find(|x| x.t > s(10.0) && x.estimate >= mbps(3.0)).map(|x| x.t);
    assert!(at.is_some_and(|at| at <= s(20.0)), "estimate reached 3 Mbit/s at {at:?} (step at 10 s)");
}

#[test]
fn steady_2_mbps() {
    let sc = Scenario::adaptive(link(2.0, 40), s(30.0));
    let t = run(&sc);
    dump("steady 2", &t);
    let util = t.mean(s(10.0), s(30.0), |x| x.delivered.as_f64()) / 2e6;
    let p95 = t.delay_quantile(s(10.0), s(30.0), 0.95, |t| t.link_queue);
    let pacer = t.delay_quantile(s(10.0), s(30.0), 0.95, |t| t.pacer);
    println!("utilization {util:.3}, queuing delay p95 {p95:?}, pacer delay p95 {pacer:?}");
    assert!(util >= 0.85, "utilization {util}");
    assert!(p95 < Duration::from_millis(100), "queuing delay p95 {p95:?}");
}

#[test]
fn random_loss_3_percent() {
    let mut sc = Scenario::adaptive(LinkConfig { loss: 0.03, ..link(5.0, 40) }, s(30.0));
    sc.seed = 3;
    let t = run(&sc);
    dump("3% loss", &t);
    let low = t.samples.iter().filter(|x| x.t > s(10.0)).map(|x| x.estimate).min().unwrap();
    assert!(low > mbps(3.0), "lowest estimate after 10 s {low}");
}

#[test]
fn simulcast_on_a_slow_link_settles_on_layers_that_fit() {
    // audio and three simulcast cameras (each up to 1.7 Mbit/s) toward a 1 Mbit/s downlink
    let sc = Scenario::simulcast(link(1.0, 60), s(40.0));
    let t = run(&sc);
    dump("simulcast 1", &t);
    let loss = t.loss(s(10.0), s(40.0));
    let sent = t.mean(s(10.0), s(40.0), |x| x.media.as_f64());
    let p95 = t.delay_quantile(s(10.0), s(40.0), 0.95, |t| t.link_queue);
    println!("loss {loss:.4}, media {sent:.0} bit/s, queuing delay p95 {p95:?}");
    assert!(loss < 0.02, "loss after convergence {loss}");
    assert!(sent > 0.5e6 && sent <= 1.0e6, "media rate {sent}");
    assert!(p95 < Duration::from_millis(100), "queuing delay p95 {p95:?}");
}

#[test]
fn simulcast_on_a_fast_link_gets_the_top_layers() {
    let sc = Scenario::simulcast(link(10.0, 40), s(20.0));
    let t = run(&sc);
    let top = 40e3 + 3.0 * 1.7e6;
    let allocated = t.mean(s(10.0), s(20.0), |x| x.allocated.as_f64());
    assert!((allocated - top).abs() < 1e3, "allocated {allocated}, all top layers {top}");
    assert_eq!(t.loss(s(5.0), s(20.0)), 0.0);
}

/// RFC 8867 section 5.1: one flow over a link whose capacity goes 1 -> 2.5 -> 0.6 -> 1 Mbit/s
/// at 0, 40, 60 and 80 s, 50 ms one-way delay. Prints utilization, delay and loss per phase;
/// asserts the estimate follows each phase.
#[test]
fn rfc8867_variable_capacity() {
    let sc = Scenario::adaptive(LinkConfig::new(mbps(1.0), Duration::from_millis(50)), s(100.0))
        .rate_at(s(40.0), mbps(2.5))
        .rate_at(s(60.0), mbps(0.6))
        .rate_at(s(80.0), mbps(1.0));
    let t = run(&sc);
    println!("| phase | capacity | mean sent | utilization | queuing p50 | queuing p95 | loss |");
    println!("|---|---|---|---|---|---|---|");
    for (from, to, cap) in [(0.0, 40.0, 1.0), (40.0, 60.0, 2.5), (60.0, 80.0, 0.6), (80.0, 100.0, 1.0)] {
        let delivered = t.mean(s(from), s(to), |x| x.delivered.as_f64());
        let util = delivered / (cap * 1e6);
        let p50 = t.delay_quantile(s(from), s(to), 0.5, |t| t.link_queue);
        let p95 = t.delay_quantile(s(from), s(to), 0.95, |t| t.link_queue);
        let loss = t.loss(s(from), s(to));
        println!(
            "| {from:.0}-{to:.0} s | {cap} Mbit/s | {:.2} Mbit/s | {:.0}% | {} ms | {} ms | {:.2}% |",
            t.mean(s(from), s(to), |x| x.sent.as_f64()) / 1e6,
            util * 100.0,
            p50.as_millis(),
            p95.as_millis(),
            loss * 100.0
        );
        // after the first seconds of each phase the link is used and not flooded
        let settled = t.mean(s(from + 5.0), s(to), |x| x.delivered.as_f64()) / (cap * 1e6);
        assert!(settled > 0.7, "utilization {settled} in {from}-{to} s");
        assert!(t.loss(s(from + 5.0), s(to)) < 0.02, "loss in {from}-{to} s");
    }
}
