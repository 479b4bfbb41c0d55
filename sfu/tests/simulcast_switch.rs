//! A subscriber asks for q, then f, then h: each switch lands on a keyframe of the new layer
//! and the outgoing stream stays continuous (sequence numbers, picture ids, timestamps).

mod common;

use common::{Harness, STEP, remote_tracks, track_of, wait_layer_changed};
use loadtest::{ClientStats, PublishOptions, Role};
use signaling::protocol::TrackKind;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_q_f_h_is_keyframe_gated_and_continuous() {
    let h = Harness::start().await;
    let mut publisher = h.join("switch", "pub").await;
    // periodic keyframes far apart: every switch below needs a PLI answered at once
    let opts = PublishOptions { keyframe_interval: Duration::from_secs(120), ..Default::default() };
    publisher.publish_with(opts).await.unwrap();
    publisher.wait_connected(Role::Publisher, STEP).await.unwrap();
    let mut sub = h.join("switch", "sub").await;
    let tracks = remote_tracks(&mut sub, 2).await;
    let video = track_of(&tracks, TrackKind::Video);

    for (rid, layer, width) in [("q", 0u8, 320u16), ("f", 2, 1280), ("h", 1, 640)] {
        sub.set_layer(&video, Some(rid)).unwrap();
        wait_layer_changed(&mut sub, &video, rid).await.unwrap();
        let started = std::time::Instant::now();
        let v = video.clone();
        let s = sub
            .wait_stats(STEP, &format!("{rid} keyframe"), move |s: &ClientStats| {
                s.track(&v).is_some_and(|t| t.layer == Some(layer) && t.width() == Some(width))
            })
            .await
            .unwrap();
        let frames = s.track(&video).unwrap().frames;
        // a second of the new layer before the next switch
        let v = video.clone();
        sub.wait_stats(STEP, &format!("frames of {rid}"), move |s: &ClientStats| {
            s.track(&v).is_some_and(|t| t.frames >= frames + 25)
        })
        .await
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "switch to {rid} took {:?}", started.elapsed());
    }

    let s = sub.stats().await.unwrap();
    let v = s.track(&video).unwrap();
    assert!(v.widths.ends_with(&[320, 1280, 640]), "keyframe widths {:?}", v.widths);
    // the first entry may be the start of forwarding (from None) rather than a switch
    assert!(v.switches.len() >= 3, "{:?}", v.switches);
    let last3 = &v.switches[v.switches.len() - 3..];
    assert_eq!(last3.iter().map(|s| s.to).collect::<Vec<_>>(), [0, 2, 1], "{:?}", v.switches);
    for sw in last3 {
        assert!(sw.at_keyframe, "layer not entered at a keyframe start: {sw:?}");
        if sw.from.is_none() {
            continue;
        }
        assert_eq!(sw.seq_delta, 1, "sequence numbers not continuous across the switch: {sw:?}");
        assert_eq!(sw.picture_delta, Some(1), "picture ids not continuous across the switch: {sw:?}");
        assert!(sw.ts_delta > 0 && sw.ts_delta < 90_000, "timestamp jump across the switch: {sw:?}");
    }
    assert_eq!((v.lost, v.duplicates, v.out_of_order), (0, 0, 0), "{v:?}");
    assert_eq!((v.ts_backwards, v.picture_id_jumps, v.bad_keyframes, v.malformed), (0, 0, 0, 0), "{v:?}");

    let p = publisher.stats().await.unwrap().publisher.unwrap();
    // layer f and h keyframes after the first came from keyframe requests, not the 120 s timer
    assert!(p.keyframe_requests[2] >= 1 && p.keyframe_requests[1] >= 1, "{p:?}");
    assert!(p.keyframes[2] >= 2 && p.keyframes[1] >= 2, "{p:?}");
}
