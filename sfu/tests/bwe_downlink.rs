//! Congestion control on real UDP: the load tester emulates a slow downlink in front of one
//! viewer (its own engine holds the datagrams: rate, delay, tail-drop queue), the server
//! learns it from transport-wide feedback and allocates layers that fit, while a viewer on a
//! fast path keeps the top layers.

mod common;

use bwe::Bitrate;
use bwe::netem::LinkConfig;
use common::{Harness, STEP};
use loadtest::{ClientStats, Role};
use signaling::protocol::TrackKind;
use signaling::room::RoomCommand;
use std::time::Duration;

/// (lost, received) video packets so far, and the layer each video arrives on.
fn video(s: &ClientStats) -> (u64, u64, Vec<Option<u8>>) {
    let v: Vec<_> = s.tracks.iter().filter(|t| t.kind == TrackKind::Video).collect();
    (v.iter().map(|t| t.lost).sum(), v.iter().map(|t| t.packets).sum(), v.iter().map(|t| t.layer).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_viewer_gets_layers_that_fit_and_a_fast_one_the_top() {
    let h = Harness::start().await;
    let mut publishers = Vec::new();
    for i in 0..2 {
        let mut p = h.join("bwe", &format!("pub{i}")).await;
        p.publish().await.unwrap();
        p.wait_connected(Role::Publisher, STEP).await.unwrap();
        publishers.push(p);
    }
    // q/h/f simulcast at 150 k / 500 k / 1.5 Mbit/s each: two publishers' top layers need
    // about 3.2 Mbit/s with audio; the slow viewer has 700 kbit/s
    let mut slow = h.join("bwe", "slow").await;
    slow.set_downlink(Some(LinkConfig::new(Bitrate::kbps(700), Duration::from_millis(25)))).unwrap();
    let mut fast = h.join("bwe", "fast").await;
    let both_video =
        |s: &ClientStats| s.tracks.iter().filter(|t| t.kind == TrackKind::Video && t.packets > 0).count() == 2;
    slow.wait_stats(STEP, "slow viewer receives both videos", both_video).await.unwrap();
    fast.wait_stats(STEP, "fast viewer receives both videos", both_video).await.unwrap();
    // convergence, then a measured window
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (s0, f0) = (slow.stats().await.unwrap(), fast.stats().await.unwrap());
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (s1, f1) = (slow.stats().await.unwrap(), fast.stats().await.unwrap());
    let ((l0, p0, _), (l1, p1, slow_layers)) = (video(&s0), video(&s1));
    let (lost, received) = (l1 - l0, p1 - p0);
    let loss = lost as f64 / (lost + received).max(1) as f64;
    let (_, fp0, _) = video(&f0);
    let (_, fp1, fast_layers) = video(&f1);
    println!(
        "slow viewer: layers {slow_layers:?}, {received} video packets in 8 s, loss {:.2} %; fast viewer: layers {fast_layers:?}, {} packets",
        loss * 100.0,
        fp1 - fp0
    );
    assert!(loss < 0.02, "slow viewer's loss after convergence: {lost} of {}", lost + received);
    assert!(received > 200, "slow viewer keeps receiving video: {received} packets in 8 s");
    assert!(slow_layers.iter().all(|l| *l != Some(2)), "no top layer fits 700 kbit/s: {slow_layers:?}");
    assert!(fast_layers.iter().all(|l| *l == Some(2)), "fast viewer keeps the top layers: {fast_layers:?}");

    // what the REST API's participants route shows of both (the room worker's report)
    let (_, room) = h.server.rooms.get("bwe").expect("room");
    let (reply, rx) = tokio::sync::oneshot::channel();
    room.send(RoomCommand::Participants { reply }).await.unwrap();
    let details = rx.await.unwrap();
    let of = |id: &str| details.iter().find(|d| d.id == id).expect("participant listed");
    let slow_d = of(&slow.participant().id);
    let fast_d = of(&fast.participant().id);
    println!("slow downlink {:?}\nfast downlink {:?}", slow_d.downlink, fast_d.downlink);
    let slow_est = slow_d.downlink.as_ref().expect("slow viewer estimated").estimate_bps;
    let fast_est = fast_d.downlink.as_ref().expect("fast viewer estimated").estimate_bps;
    assert!(slow_est < 1_000_000, "slow viewer's estimate {slow_est}");
    assert!(fast_est > 3_000_000, "fast viewer's estimate {fast_est}");
    let video_subs = |d: &signaling::room::ParticipantDetail| d.subscriptions.len();
    assert_eq!((video_subs(slow_d), video_subs(fast_d)), (4, 4), "two audio and two video tracks each");
    assert!(slow_d.subscriptions.iter().all(|s| s.layer.as_deref() != Some("f")), "{:?}", slow_d.subscriptions);
}
