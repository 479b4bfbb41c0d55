//! `--media-threads`: each media thread reads its own port and runs its own rooms. Rooms go
//! to the thread with the fewest, media flows in every one of them over real UDP/DTLS/SRTP,
//! and garbage on any port is counted and dropped without disturbing the others.

mod common;

use common::{Harness, STEP, remote_tracks, track_of};
use loadtest::{Client, ClientStats};
use sfu::drop_reason::DropReason;
use signaling::protocol::TrackKind;

/// `sfu_media_thread_rooms{thread="i"}` in a metrics text.
fn rooms_on(metrics: &str, thread: u16) -> i64 {
    let key = format!("sfu_media_thread_rooms{{thread=\"{thread}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&key)).map_or(-1, |v| v.trim().parse().expect("number"))
}

/// A subscriber of `room` (whose publisher is up) once it has had a second of clean media.
async fn clean_subscriber(h: &Harness, room: &str) -> (Client, String, ClientStats) {
    let mut sub = h.join(room, &format!("{room}-sub")).await;
    let tracks = remote_tracks(&mut sub, 2).await;
    let (video, audio) = (track_of(&tracks, TrackKind::Video), track_of(&tracks, TrackKind::Audio));
    let enough = {
        let (video, audio) = (video.clone(), audio.clone());
        move |s: &ClientStats| {
            s.track(&video).is_some_and(|v| v.frames >= 25 && v.keyframes >= 1)
                && s.track(&audio).is_some_and(|a| a.packets >= 50)
        }
    };
    let stats = sub.wait_stats(STEP, &format!("media in room {room}"), enough).await.unwrap();
    for t in [stats.track(&video).unwrap(), stats.track(&audio).unwrap()] {
        assert_eq!((t.lost, t.duplicates, t.out_of_order, t.malformed), (0, 0, 0, 0), "room {room}: {t:?}");
    }
    assert_eq!(stats.track(&video).unwrap().bad_keyframes, 0, "room {room}");
    (sub, video, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_over_media_threads_each_with_its_port() {
    let h = Harness::start_with(&["--media-threads", "2"]).await;
    let ports = h.server.media_ports.clone();
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert_ne!(ports[0].port(), ports[1].port(), "each thread binds its own port");
    assert_eq!(h.server.udp, ports[0]);
    let m = h.metrics().await;
    assert_eq!((rooms_on(&m, 0), rooms_on(&m, 1)), (0, 0), "{m}");

    // the first room goes to thread 0, the second to the emptier thread 1
    let pub_a = h.publisher("a", "pub-a").await;
    let m = h.metrics().await;
    assert_eq!((rooms_on(&m, 0), rooms_on(&m, 1)), (1, 0));
    let pub_b = h.publisher("b", "pub-b").await;
    let m = h.metrics().await;
    assert_eq!((rooms_on(&m, 0), rooms_on(&m, 1)), (1, 1));

    let (mut sub_a, video_a, before_a) = clean_subscriber(&h, "a").await;
    let (mut sub_b, video_b, before_b) = clean_subscriber(&h, "b").await;

    // garbage on both ports: counted, dropped, nobody's media disturbed
    let dropped0 = h.server.media_metrics.dropped(DropReason::UnknownSource);
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for port in &ports {
        for i in 0..10u8 {
            attacker.send_to(&[0x80 | i, 0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, i], port).await.unwrap();
        }
    }
    let more = |before: &ClientStats, video: &str| {
        let (video, frames) = (video.to_string(), before.track(video).unwrap().frames);
        move |s: &ClientStats| s.track(&video).is_some_and(|v| v.frames >= frames + 25)
    };
    let after_a = sub_a.wait_stats(STEP, "room a after the garbage", more(&before_a, &video_a)).await.unwrap();
    let after_b = sub_b.wait_stats(STEP, "room b after the garbage", more(&before_b, &video_b)).await.unwrap();
    assert_eq!(
        h.server.media_metrics.dropped(DropReason::UnknownSource) - dropped0,
        20,
        "every garbage datagram counted, on both ports"
    );
    for (room, s, video) in [("a", &after_a, &video_a), ("b", &after_b, &video_b)] {
        let v = s.track(video).unwrap();
        assert_eq!((v.lost, v.malformed, v.picture_id_jumps), (0, 0, 0), "room {room} after the garbage: {v:?}");
    }

    // a room that ends frees its thread: the next room goes there
    sub_a.leave(STEP).await.unwrap();
    pub_a.leave(STEP).await.unwrap();
    let deadline = tokio::time::Instant::now() + STEP;
    while rooms_on(&h.metrics().await, 0) != 0 {
        assert!(tokio::time::Instant::now() < deadline, "room a's worker did not stop");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _pub_c = h.publisher("c", "pub-c").await;
    let m = h.metrics().await;
    assert_eq!((rooms_on(&m, 0), rooms_on(&m, 1)), (1, 1), "room c on the freed thread 0");
    clean_subscriber(&h, "c").await;
    drop(pub_b);
}
