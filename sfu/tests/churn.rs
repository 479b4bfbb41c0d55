//! Churn: participants join, publish, receive, switch layers and leave, cycle after cycle, on
//! one server. After every cycle the node's tables are empty again (demux routes, rooms,
//! participants, track gauges) and file descriptors are back where they were; the process's
//! RSS is reported per cycle with its slope after warm-up. `CHURN_CYCLES` sets the cycles (a
//! few in the test command; `CHURN_CYCLES=200 cargo test --release -p sfu --test churn --
//! --nocapture` is the soak).

mod common;

use common::{Harness, STEP, remote_tracks, track_of, wait_layer_changed};
use loadtest::ClientStats;
use signaling::protocol::TrackKind;
use std::time::{Duration, Instant};

/// Resident set size of this process (server and clients), bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Open file descriptors of this process.
fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// A gauge's value in Prometheus text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

/// Least-squares slope of `ys` per step.
fn slope(ys: &[f64]) -> f64 {
    let n = ys.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let (num, den) = ys.iter().enumerate().fold((0.0, 0.0), |(a, b), (i, y)| {
        let dx = i as f64 - mx;
        (a + dx * (y - my), b + dx * dx)
    });
    if den == 0.0 { 0.0 } else { num / den }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_empty_and_memory_flat_through_join_and_leave_cycles() {
    let cycles: usize = std::env::var("CHURN_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let h = Harness::start().await;
    let routes = |h: &Harness| h.server.demuxes.iter().map(|d| d.len()).sum::<usize>();
    let m = h.server.media_metrics.clone();
    let mut rss_per_cycle = Vec::with_capacity(cycles);
    let mut fds_after_first = None;
    let started = Instant::now();
    for cycle in 0..cycles {
        // two rooms of a publisher and two viewers
        let mut clients = Vec::new();
        for r in 0..2 {
            let room = format!("churn-{r}");
            let publisher = h.publisher(&room, &format!("p{cycle}")).await;
            let mut viewer = h.join(&room, &format!("v{cycle}")).await;
            let other = h.join(&room, &format!("w{cycle}")).await;
            let tracks = remote_tracks(&mut viewer, 2).await;
            let video = track_of(&tracks, TrackKind::Video);
            let v = video.clone();
            viewer
                .wait_stats(STEP, "video at the viewer", move |s: &ClientStats| {
                    s.track(&v).is_some_and(|t| t.keyframes > 0)
                })
                .await
                .expect("media flows");
            // a layer switch, so the switching state is exercised each cycle
            viewer.set_layer(&video, Some("q")).expect("subscription");
            wait_layer_changed(&mut viewer, &video, "q").await.expect("switched to q");
            clients.extend([publisher, viewer, other]);
        }
        assert!(routes(&h) > 0, "cycle {cycle}: the connections are routed");
        for c in clients {
            c.leave(STEP).await.expect("leaves");
        }
        // the node forgets everything once the last participant left
        let deadline = Instant::now() + STEP;
        loop {
            let text = h.metrics().await;
            let empty = routes(&h) == 0
                && gauge(&text, "sfu_rooms") == Some(0.0)
                && gauge(&text, "sfu_participants") == Some(0.0)
                && m.published_tracks.get() == 0
                && m.subscribed_tracks.get() == 0;
            if empty {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: tables not empty: routes {}, rooms {:?}, participants {:?}, published {}, subscribed {}",
                routes(&h),
                gauge(&text, "sfu_rooms"),
                gauge(&text, "sfu_participants"),
                m.published_tracks.get(),
                m.subscribed_tracks.get()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // sockets and timers of the clients and the peers are closed too (their tasks end a
        // moment after the leave)
        tokio::time::sleep(Duration::from_millis(100)).await;
        let base = *fds_after_first.get_or_insert_with(fds);
        let deadline = Instant::now() + STEP;
        while fds() > base + 4 {
            assert!(Instant::now() < deadline, "cycle {cycle}: file descriptors grew from {base} to {}", fds());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rss_per_cycle.push(rss() as f64 / (1 << 20) as f64);
    }
    // the first cycle warms allocators and pools up
    let warm = &rss_per_cycle[1.min(rss_per_cycle.len() - 1)..];
    println!(
        "churn: {cycles} cycles of 6 participants in {:.1} s; RSS per cycle (MiB) {:?}; slope after the first {:.2} MiB/cycle",
        started.elapsed().as_secs_f64(),
        rss_per_cycle.iter().map(|r| (r * 10.0).round() / 10.0).collect::<Vec<_>>(),
        slope(warm)
    );
}
