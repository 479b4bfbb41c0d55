//! The server's own SRTP output for subscribers (room/egress.rs), end to end over loopback:
//! a subscriber that loses packets gets them back by NACK (retransmitted from the packet
//! cache, protected by the subscriber connection's context) and receives sender reports whose
//! counts and RTP times match the media it got.

mod common;

use common::{Harness, STEP, remote_tracks, track_of};
use loadtest::{Client, ClientStats, Engine, EngineOptions, JoinOptions};
use signaling::protocol::TrackKind;

/// Every 20th inbound RTP datagram of each of the subscriber's streams is dropped before its
/// stack sees it.
const DROP_EVERY: u32 = 20;

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_packets_come_back_and_sender_reports_match() {
    let h = Harness::start().await;
    let _publisher = h.publisher("retx", "pub").await;
    let lossy = Engine::spawn_with(EngineOptions { drop_inbound_rtp_every: Some(DROP_EVERY), ..Default::default() });
    let mut sub = Client::join(&h.url, "retx", "lossy", JoinOptions::on(&lossy)).await.expect("join");
    let tracks = remote_tracks(&mut sub, 2).await;
    let video = track_of(&tracks, TrackKind::Video);
    let audio = track_of(&tracks, TrackKind::Audio);
    sub.set_layer(&video, Some("h")).unwrap();

    // about four seconds of media: several sender reports per track, many losses
    let enough = |s: &ClientStats| {
        let v = s.track(&video);
        let a = s.track(&audio);
        v.is_some_and(|v| v.frames >= 100 && v.sender_reports >= 3)
            && a.is_some_and(|a| a.packets >= 200 && a.sender_reports >= 3)
    };
    let stats = sub.wait_stats(STEP, "media and sender reports", enough).await.expect("media arrives");
    let metrics = h.metrics().await;

    let v = stats.track(&video).unwrap();
    let a = stats.track(&audio).unwrap();
    // Video has a NACK feedback line, so what the simulated network dropped was asked for
    // again and resent: nearly every loss is filled in (late packets count as out of order).
    let dropped_video = v.packets / u64::from(DROP_EVERY - 1);
    assert!(v.out_of_order >= dropped_video / 2, "retransmissions arrived: {v:?}");
    assert!(v.lost <= 3, "video losses recovered by NACK: lost {} of ~{dropped_video}", v.lost);
    assert_eq!(
        v.malformed + v.bad_keyframes + v.duplicates,
        0,
        "retransmitted payloads are intact (VP8 rewritten again)"
    );
    // audio has no NACK (Opus without the feedback line): its losses stay
    assert!(a.lost >= a.packets / u64::from(DROP_EVERY) / 2, "audio losses are real losses: {}", a.lost);
    assert!(metric(&metrics, "sfu_nacks_received_total") >= 1.0, "server counted NACKs");
    assert!(metric(&metrics, "sfu_rtp_retransmitted_packets_total") >= dropped_video as f64 / 2.0, "server resent");

    // Sender reports: one per second per track, RTP time on the stream's own clock.
    for t in [v, a] {
        assert!(t.sender_reports >= 3, "{:?} sender reports: {}", t.kind, t.sender_reports);
        assert!(t.sr_max_error_ms < 100.0, "{:?} SR rtp time off by {} ms", t.kind, t.sr_max_error_ms);
        // the count includes what the simulated network dropped and the retransmissions
        let received = t.packets;
        let count = u64::from(t.sr_packet_count);
        assert!(
            count > 0 && count <= received + received / 5 + 60,
            "{:?} SR count {count} vs {received} received",
            t.kind
        );
    }
    assert!(metric(&metrics, "sfu_rtcp_sender_reports_total") >= 6.0);
}

/// A subscriber on a collapsing path (every other packet lost) NACKs half the stream: the
/// server resends at most a quarter of what it forwards to it (plus a small burst), counts
/// the rest as rate limited, and a healthy subscriber of the same room is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmissions_to_a_lossy_subscriber_are_bounded() {
    let h = Harness::start().await;
    let _publisher = h.publisher("storm", "pub").await;
    let lossy_engine = Engine::spawn_with(EngineOptions { drop_inbound_rtp_every: Some(2), ..Default::default() });
    let mut lossy = Client::join(&h.url, "storm", "lossy", JoinOptions::on(&lossy_engine)).await.expect("join");
    let mut healthy = h.join("storm", "healthy").await;
    let tracks = remote_tracks(&mut lossy, 2).await;
    let video = track_of(&tracks, TrackKind::Video);
    remote_tracks(&mut healthy, 2).await;
    lossy.set_layer(&video, Some("f")).unwrap();
    healthy.set_layer(&video, Some("f")).unwrap();
    let healthy_stats = healthy
        .wait_stats(STEP, "three seconds of full-layer video", |s| {
            s.track(&video).is_some_and(|v| v.frames >= 75 && v.layer == Some(2))
        })
        .await
        .expect("healthy subscriber receives");
    let m = h.metrics().await;
    let v = healthy_stats.track(&video).unwrap();
    assert_eq!((v.lost, v.duplicates, v.malformed), (0, 0, 0), "healthy subscriber unaffected: {v:?}");
    let forwarded = metric(&m, "sfu_rtp_forwarded_packets_total");
    let resent = metric(&m, "sfu_rtp_retransmitted_packets_total");
    let limited = m
        .lines()
        .find(|l| l.starts_with("sfu_dropped_packets_total{reason=\"nack_rate_limited\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(resent > 0.0, "some losses were answered");
    assert!(limited > 0.0, "the rest was rate limited");
    // both subscribers' forwarded packets count; the lossy one's share is about half of it
    let bound = forwarded / 2.0 * f64::from(sfu::forward::budget::RETRANSMIT_SHARE)
        + 2.0 * f64::from(sfu::forward::budget::RETRANSMIT_BURST)
        + 20.0;
    assert!(resent <= bound, "resent {resent} of {forwarded} forwarded: above the budget {bound}");
}
