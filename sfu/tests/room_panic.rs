//! A room worker that panics is contained: its participants are told `error internal` and
//! closed, its routes and gauges go, a metric counts it, the room's name can be joined again,
//! and every other room keeps forwarding.

mod common;

use common::{Harness, STEP, remote_tracks, track_of};
use loadtest::{ClientStats, Event};
use signaling::protocol::{ErrorCode, TrackKind};
use std::time::{Duration, Instant};

/// Polls `f` until it holds, for at most [`STEP`] (for counters, which have no event).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + STEP;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_room_closes_alone() {
    let h = Harness::start_configured(&[], |c| c.inject_room_panic = Some("doomed".into())).await;
    let m = h.server.media_metrics.clone();
    let routes = |h: &Harness| h.server.demuxes.iter().map(|d| d.len()).sum::<usize>();

    // a healthy room with media flowing
    let _publisher = h.publisher("healthy", "hp").await;
    let mut viewer = h.join("healthy", "hv").await;
    let tracks = remote_tracks(&mut viewer, 2).await;
    let video = track_of(&tracks, TrackKind::Video);
    let v = video.clone();
    viewer
        .wait_stats(STEP, "healthy media", move |s: &ClientStats| s.track(&v).is_some_and(|t| t.keyframes > 0))
        .await
        .unwrap();
    let (routes0, published0, subscribed0) = (routes(&h), m.published_tracks.get(), m.subscribed_tracks.get());
    assert_eq!(m.room_panics.get(), 0);

    // the doomed room fails when its publisher's first track opens
    let mut doomed_viewer = h.join("doomed", "dv").await;
    let mut doomed_publisher = h.join("doomed", "dp").await;
    assert!(routes(&h) > routes0, "the doomed room's connections are routed");
    doomed_publisher.publish().await.unwrap();
    for c in [&mut doomed_publisher, &mut doomed_viewer] {
        let (code, message) = c.wait_error(STEP).await.expect("told of the failure");
        assert_eq!(code, ErrorCode::Internal, "{message}");
        c.wait_event(STEP, "its session closed", |e| (*e == Event::SignalingClosed).then_some(())).await.unwrap();
    }
    eventually("the panic counted", || m.room_panics.get() == 1).await;
    assert_eq!(routes(&h), routes0, "the failed room's routes are gone");
    assert_eq!(m.published_tracks.get(), published0, "its published tracks are no longer counted");
    assert_eq!(m.subscribed_tracks.get(), subscribed0);
    let text = h.metrics().await;
    assert!(text.contains("sfu_room_panics_total 1"), "{text}");

    // the other room never stopped
    let before = viewer.stats().await.unwrap().track(&video).map_or(0, |t| t.packets);
    let v = video.clone();
    viewer
        .wait_stats(STEP, "healthy media after the panic", move |s: &ClientStats| {
            s.track(&v).is_some_and(|t| t.packets > before + 20)
        })
        .await
        .unwrap();

    // the failed room's name starts a fresh room
    let again = h.join("doomed", "again").await;
    assert!(again.participants_at_join().is_empty(), "a fresh room: {:?}", again.participants_at_join());
}
