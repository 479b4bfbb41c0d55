//! The estimator, allocator, prober and pacer against the emulated link, in virtual time: the
//! numeric bars of a sender that adapts to its receiver's network.

use bwe::cases;
use bwe::scenario::{Trace, run};
use std::time::Duration;

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn mbps(x: f64) -> bwe::Bitrate {
    bwe::Bitrate::from_f64(x * 1e6)
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

#[test]
fn step_down_5_to_1() {
    let t = run(&cases::step_down());
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
    let t = run(&cases::step_up());
    dump("step 1 -> 5", &t);
    let at = t.samples.iter().find(|x| x.t > s(10.0) && x.estimate >= mbps(3.0)).map(|x| x.t);
    assert!(at.is_some_and(|at| at <= s(20.0)), "estimate reached 3 Mbit/s at {at:?} (step at 10 s)");
}

#[test]
fn steady_2_mbps() {
    let t = run(&cases::steady());
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
    let t = run(&cases::random_loss());
    dump("3% loss", &t);
    let low = t.samples.iter().filter(|x| x.t > s(10.0)).map(|x| x.estimate).min().unwrap();
    assert!(low > mbps(3.0), "lowest estimate after 10 s {low}");
}

#[test]
fn simulcast_on_a_slow_link_settles_on_layers_that_fit() {
    // audio and three simulcast cameras (each up to 1.7 Mbit/s) toward a 1 Mbit/s downlink
    let t = run(&cases::simulcast_slow());
    dump("simulcast 1", &t);
    let loss = t.loss(s(10.0), s(40.0));
    let sent = t.mean(s(10.0), s(40.0), |x| x.media.as_f64());
    let p95 = t.delay_quantile(s(10.0), s(40.0), 0.95, |t| t.link_queue);
    println!("loss {loss:.4}, media {sent:.0} bit/s, queuing delay p95 {p95:?}");
    assert!(loss < 0.02, "loss after convergence {loss}");
    assert!(sent > 0.5e6 && sent <= 1.0e6, "media rate {sent}");
    // a stable link: the allocation settles (each congestion holds upgrades back longer) and
    // does not flip between steps
    let changes = |from: f64, to: f64| {
        let a: Vec<_> = t.samples.iter().filter(|x| x.t > s(from) && x.t <= s(to)).map(|x| x.allocated).collect();
        a.windows(2).filter(|w| w[0] != w[1]).count()
    };
    println!("allocation changes: {} in 10-25 s, {} in 25-40 s", changes(10.0, 25.0), changes(25.0, 40.0));
    assert!(changes(10.0, 25.0) <= 4, "the allocation keeps changing");
    assert_eq!(changes(25.0, 40.0), 0, "the allocation settled");
    assert!(p95 < Duration::from_millis(100), "queuing delay p95 {p95:?}");
}

#[test]
fn simulcast_on_a_fast_link_gets_the_top_layers() {
    let t = run(&cases::simulcast_fast());
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
    let t = run(&cases::rfc8867());
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
