//! Rolling upgrade, played on loopback with the real binary twice and headless `loadtest`
//! clients: node A serves a conference (1 publisher, 2 subscribers, room "upgrade-a"); node B
//! (the new version) starts; a tiny load balancer places rooms on the first node whose
//! `/readyz` is 200; A is drained through the API; the new room "after-drain" lands on B and
//! works there; A's conference goes on undisturbed through an 8 s drain window (no loss, no
//! participant event, no arrival gap over 250 ms on any track) until its participants leave,
//! and then A exits 0 (the time from the last leave to the exit is measured).
//!
//! Gaps are measured by the clients in this process. On a loaded machine the process itself can
//! go unscheduled for a few hundred ms, which looks like a media gap but is the instrument
//! being down: a 5 ms ticker thread records such stalls, and the part of a gap they cover does
//! not count against the 250 ms (the raw largest gap is reported as `max_gap_ms` regardless).
//!
//! Prints `ROLLING_UPGRADE interruptions=<n> max_gap_ms=<x> loss=<pkts> exit_after_empty_ms=<y>`
//! and a `ROLLING_UPGRADE_DETAIL ...` line (run with `--nocapture`, or
//! `scripts/rolling-upgrade.sh`).

mod common;
mod process;

use common::{remote_tracks, track_of};
use loadtest::{Client, ClientError, ClientStats, Engine, Event, JoinOptions, Role};
use process::{BIN, LogsOnPanic, Node};
use signaling::protocol::{ErrorCode, ServerMessage, TrackKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Bound for one step (start, connect, first keyframe, ...), generous for a loaded 2-core machine.
const STEP: Duration = Duration::from_secs(20);
/// How long A's conference is observed after the drain started (B's room is set up meanwhile).
const DRAIN_WINDOW: Duration = Duration::from_secs(8);
/// A gap in arrivals longer than this (stalls of the test process taken out) is a media
/// interruption.
const MAX_GAP: Duration = Duration::from_millis(250);
/// A drained, empty node must be gone within this.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// One HTTP/1.0 request; `None` when the node does not answer (gone, refusing connections).
async fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).await.ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange).await.ok().flatten()
}

/// The load balancer: the first node of the pool whose `/readyz` answers 200.
async fn pick(pool: &[SocketAddr]) -> Option<SocketAddr> {
    for &node in pool {
        if http(node, "GET", "/readyz", None).await.is_some_and(|(s, _)| s == 200) {
            return Some(node);
        }
    }
    None
}

/// Polls the load balancer until it places new rooms on `want` (readiness is polled across
/// processes: there is no event to wait on).
async fn wait_pick(pool: &[SocketAddr], want: SocketAddr) {
    let deadline = Instant::now() + STEP;
    loop {
        let got = pick(pool).await;
        if got == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "the load balancer never picked {want} (last pick {got:?})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spans (start_us, end_us) during which a thread of this process that wanted to run every
/// 5 ms could not: the test process (and so the clients measuring) was not scheduled.
fn hiccup_meter(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(u64, u64)>> {
    std::thread::spawn(move || {
        let mut stalls = Vec::new();
        let tick = Duration::from_millis(5);
        while !stop.load(Ordering::Relaxed) {
            let before = Instant::now();
            std::thread::sleep(tick);
            let late = before.elapsed().saturating_sub(tick);
            if late >= Duration::from_millis(30) {
                let end = now_us();
                stalls.push((end - late.as_micros() as u64, end));
            }
        }
        stalls
    })
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

async fn join(url: &str, room: &str, name: &str, engine: &Engine) -> Client {
    let opts = JoinOptions { timeout: STEP, ..JoinOptions::on(engine) };
    Client::join(url, room, name, opts).await.unwrap_or_else(|e| panic!("{name} joins {room} at {url}: {e}"))
}

async fn publisher(url: &str, room: &str, name: &str, engine: &Engine) -> Client {
    let mut c = join(url, room, name, engine).await;
    c.publish().await.expect("publish");
    c.wait_connected(Role::Publisher, STEP).await.expect("publisher connects");
    c
}

/// Asks for `layer` of `video` and waits until the stream carries it (at a keyframe of the
/// expected width) and has flowed a while.
async fn settle(client: &mut Client, video: &str, audio: &str, layer: &str, width: u16) {
    client.set_layer(video, Some(layer)).unwrap();
    client
        .wait_event(STEP, &format!("layer_changed {layer}"), |e| match e {
            Event::Server(ServerMessage::LayerChanged { track, layer: Some(l), .. })
                if track == video && l == layer =>
            {
                Some(())
            }
            _ => None,
        })
        .await
        .expect("layer changed");
    let (v, a) = (video.to_owned(), audio.to_owned());
    let frames_then = client.stats().await.unwrap().track(video).map_or(0, |t| t.frames);
    client
        .wait_stats(STEP, &format!("{layer} video at width {width} and audio"), move |s: &ClientStats| {
            s.track(&v).is_some_and(|t| t.width() == Some(width) && t.frames >= frames_then + 25)
                && s.track(&a).is_some_and(|t| t.packets >= 50)
        })
        .await
        .expect("media flows");
}

/// What A's subscribers received during the drain window.
#[derive(Debug, Default)]
struct Window {
    /// Packets lost (sequence numbers never received), all tracks.
    loss: u64,
    /// Largest inter-arrival gap on any track, raw.
    max_gap_us: u64,
    /// Largest gap once the spans when the test process itself was not scheduled are taken out.
    max_unexplained_us: u64,
    /// Gap spans over [`MAX_GAP`] (after taking out the test process's stalls), merged across tracks.
    interruptions: Vec<(u64, u64)>,
    packets: u64,
    detail: Vec<String>,
}

/// Microseconds of `[start, end]` covered by `spans` (sorted, non-overlapping).
fn covered(spans: &[(u64, u64)], start: u64, end: u64) -> u64 {
    spans.iter().map(|&(s, e)| e.min(end).saturating_sub(s.max(start))).sum()
}

/// Merges overlapping spans.
fn merge(mut spans: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    spans.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Adds one subscriber's tracks over `[from_us, to_us]` to `w`; `stalls` are the test process's
/// own stalls (merged).
fn measure(
    who: &str,
    before: &ClientStats,
    after: &ClientStats,
    from_us: u64,
    to_us: u64,
    stalls: &[(u64, u64)],
    w: &mut Window,
) {
    assert_eq!(after.tracks.len(), 2, "{who} receives audio and video: {after:?}");
    let rel = |us: u64| (us as f64 - from_us as f64) / 1000.0;
    for t in &after.tracks {
        let b = before.track(&t.track).expect("track known before the drain");
        let gap = t.arrivals.max_gap_between(from_us, to_us).expect("window kept");
        let mut notable = Vec::new();
        for g in t.arrivals.gaps_over(from_us, to_us, loadtest::gaps::LONG_GAP_US).expect("window kept") {
            let start = g.end_us - g.gap_us;
            let unexplained = g.gap_us - covered(stalls, start, g.end_us);
            w.max_unexplained_us = w.max_unexplained_us.max(unexplained);
            if unexplained > MAX_GAP.as_micros() as u64 {
                w.interruptions.push((start, g.end_us));
            }
            notable.push(format!(
                "{:.0} ms (unexplained {:.0}) ending +{:.0} ms",
                g.gap_us as f64 / 1000.0,
                unexplained as f64 / 1000.0,
                rel(g.end_us)
            ));
        }
        if gap < loadtest::gaps::LONG_GAP_US {
            w.max_unexplained_us = w.max_unexplained_us.max(gap);
        }
        let lost = t.lost.saturating_sub(b.lost);
        w.loss += lost;
        w.max_gap_us = w.max_gap_us.max(gap);
        w.packets += t.packets - b.packets;
        w.detail.push(format!(
            "{who} {:?}: {} packets, lost {lost}, dup {}, out of order {}, max gap {:.1} ms, gaps >= 100 ms {notable:?}",
            t.kind,
            t.packets - b.packets,
            t.duplicates - b.duplicates,
            t.out_of_order - b.out_of_order,
            gap as f64 / 1000.0,
        ));
    }
}

/// Events that would mean the conference was disturbed.
fn disturbing(e: &Event) -> bool {
    matches!(
        e,
        Event::Server(
            ServerMessage::Reconnect { .. }
                | ServerMessage::Removed { .. }
                | ServerMessage::ParticipantLeft { .. }
                | ServerMessage::Error { .. }
        ) | Event::Disconnected(_)
            | Event::Interrupted(_)
            | Event::SignalingClosed
    )
}

async fn admin_token() -> String {
    let out =
        Command::new(BIN).args(["token", "--dev", "--identity", "ops", "--admin"]).output().await.expect("sfu token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_keeps_calls_running_and_the_old_node_exits_zero() {
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let meter = hiccup_meter(stop.clone());
    let mut a = Node::start("A").await;
    let mut pool = vec![a.http];
    let mut guard = LogsOnPanic(vec![(a.name, a.log.clone())]);

    // Node A serves a conference placed by the load balancer.
    assert_eq!(pick(&pool).await, Some(a.http), "A is ready");
    let engine_a = Engine::spawn();
    let url_a = a.ws_url();
    let pub_a = publisher(&url_a, "upgrade-a", "pub", &engine_a).await;
    let mut low = join(&url_a, "upgrade-a", "low", &engine_a).await;
    let mut high = join(&url_a, "upgrade-a", "high", &engine_a).await;
    let tracks = remote_tracks(&mut low, 2).await;
    remote_tracks(&mut high, 2).await;
    let (video, audio) = (track_of(&tracks, TrackKind::Video), track_of(&tracks, TrackKind::Audio));
    settle(&mut low, &video, &audio, "q", 320).await;
    settle(&mut high, &video, &audio, "f", 1280).await;
    eprintln!("conference on A running after {:?}", t0.elapsed());

    // Node B, the new version, starts and joins the pool (A stays first while it is ready).
    let b = Node::start("B").await;
    pool.push(b.http);
    guard.0.push((b.name, b.log.clone()));
    assert_eq!(pick(&pool).await, Some(a.http));

    // Drain A through the API.
    let admin = admin_token().await;
    let stats_before = (low.stats().await.unwrap(), high.stats().await.unwrap());
    low.pending_events();
    high.pending_events();
    let (disturbed_low, disturbed_high) = (low.pending_events().len(), high.pending_events().len());
    let from_us = now_us();
    let drain_started = Instant::now();
    let (status, body) = http(a.http, "POST", "/api/node/drain", Some(&admin)).await.expect("A answers the drain call");
    assert_eq!(status, 202, "{body}");
    let node: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((node["state"].as_str(), node["participants"].as_u64()), (Some("draining"), Some(3)), "{node}");
    assert_eq!(http(a.http, "GET", "/healthz", None).await.map(|r| r.0), Some(200), "a draining node stays live");

    // New rooms: the balancer now picks B; A itself refuses them.
    wait_pick(&pool, b.http).await;
    let lb_switch = drain_started.elapsed();
    match Client::join(&url_a, "after-drain", "probe", JoinOptions { timeout: STEP, ..JoinOptions::on(&engine_a) })
        .await
    {
        Err(ClientError::Rejected { code: ErrorCode::Draining, .. }) => {}
        Err(e) => panic!("A must refuse a new room with `draining`, got {e}"),
        Ok(_) => panic!("A must refuse a new room while draining"),
    }
    let placed = pick(&pool).await.expect("a ready node");
    assert_eq!(placed, b.http, "the new room goes to B");
    let url_b = format!("ws://{placed}/ws");
    let engine_b = Engine::spawn();
    let pub_b = publisher(&url_b, "after-drain", "pub", &engine_b).await;
    let mut sub_b = join(&url_b, "after-drain", "sub", &engine_b).await;
    let tracks_b = remote_tracks(&mut sub_b, 2).await;
    let (video_b, audio_b) = (track_of(&tracks_b, TrackKind::Video), track_of(&tracks_b, TrackKind::Audio));
    let sb = sub_b
        .wait_stats(STEP, "media of the new room on B", |s| {
            s.track(&video_b).is_some_and(|t| t.frames >= 25 && t.keyframes >= 1)
                && s.track(&audio_b).is_some_and(|t| t.packets >= 50)
        })
        .await
        .expect("media flows on B");
    for t in &sb.tracks {
        assert_eq!((t.lost, t.malformed, t.bad_keyframes), (0, 0, 0), "new room on B: {t:?}");
    }
    let b_room_ready = drain_started.elapsed();
    eprintln!("LB on B after {lb_switch:?}; the room on B has media {b_room_ready:?} after the drain started");

    // A's conference keeps going through the drain window (a bounded observation).
    tokio::time::sleep_until((drain_started + DRAIN_WINDOW).into()).await;
    let to_us = now_us();
    let stats_after = (low.stats().await.unwrap(), high.stats().await.unwrap());
    stop.store(true, Ordering::Relaxed);
    let stalls = merge(meter.join().unwrap().into_iter().filter(|&(s, e)| e >= from_us && s <= to_us).collect());
    let stall_ms = covered(&stalls, from_us, to_us) / 1000;
    let mut w = Window::default();
    measure("low", &stats_before.0, &stats_after.0, from_us, to_us, &stalls, &mut w);
    measure("high", &stats_before.1, &stats_after.1, from_us, to_us, &stalls, &mut w);
    let interruptions = merge(w.interruptions.clone());
    for line in &w.detail {
        eprintln!("  {line}");
    }
    let rel = |us: u64| (us as f64 - from_us as f64) / 1000.0;
    eprintln!(
        "  test-process stalls >= 30 ms: {:?}",
        stalls
            .iter()
            .map(|&(s, e)| format!("{:.0} ms ending +{:.0} ms", (e - s) as f64 / 1000.0, rel(e)))
            .collect::<Vec<_>>()
    );
    for (who, c, seen) in [("low", &mut low, disturbed_low), ("high", &mut high, disturbed_high)] {
        let events: Vec<Event> = c.pending_events().into_iter().skip(seen).filter(disturbing).collect();
        assert!(events.is_empty(), "{who} was disturbed during the drain: {events:?}");
        let s = if who == "low" { &stats_after.0 } else { &stats_after.1 };
        for t in &s.tracks {
            let last = to_us.saturating_sub(t.arrivals.last_us);
            assert!(last < 1_000_000, "{who}'s {:?} stopped {last} us before the end of the window", t.kind);
        }
    }
    let p = pub_a.stats().await.unwrap().publisher.unwrap();
    assert_eq!(p.write_errors, 0, "publisher on A: {p:?}");
    assert!(a.child.try_wait().unwrap().is_none(), "A keeps running while its conference lasts");
    let window_ms = (to_us - from_us) / 1000;
    assert!(w.packets > 0, "media flowed during the window");

    // The conference ends: A exits 0 once it is empty.
    pub_a.leave(STEP).await.expect("publisher leaves");
    high.leave(STEP).await.expect("high leaves");
    let last_leave = Instant::now();
    low.leave(STEP).await.expect("low leaves");
    let status = tokio::time::timeout(EXIT_WITHIN, a.child.wait())
        .await
        .unwrap_or_else(|_| {
            panic!("A did not exit within {EXIT_WITHIN:?} of its last participant leaving:\n{}", a.log_tail(40))
        })
        .unwrap();
    let exit_after_empty = last_leave.elapsed();
    assert_eq!(status.code(), Some(0), "A's exit status {status:?}");

    // Only now the measured figures are asserted (so that a failure shows all of them).
    println!(
        "ROLLING_UPGRADE interruptions={} max_gap_ms={:.1} loss={} exit_after_empty_ms={}",
        interruptions.len(),
        w.max_gap_us as f64 / 1000.0,
        w.loss,
        exit_after_empty.as_millis()
    );
    println!(
        "ROLLING_UPGRADE_DETAIL window_ms={window_ms} packets={} max_gap_without_client_stalls_ms={:.1} client_stall_ms={stall_ms} \
         lb_on_b_ms={} b_room_media_ms={} total_s={:.1}",
        w.packets,
        w.max_unexplained_us as f64 / 1000.0,
        lb_switch.as_millis(),
        b_room_ready.as_millis(),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(w.loss, 0, "A's conference lost packets during the drain: {:#?}", w.detail);
    assert!(
        interruptions.is_empty(),
        "A's conference had {} gap(s) over {MAX_GAP:?} not explained by the test process's own stalls: {:#?}",
        interruptions.len(),
        w.detail
    );

    // B's room ends too; B (drained by SIGTERM, as Kubernetes does) exits 0 at once.
    pub_b.leave(STEP).await.expect("leave B");
    sub_b.leave(STEP).await.expect("leave B");
    let mut b = b;
    b.sigterm();
    let status = tokio::time::timeout(EXIT_WITHIN, b.child.wait()).await.expect("B exits").unwrap();
    assert_eq!(status.code(), Some(0), "B's exit status");
    drop(guard);
}
