//! WHEP playback over real loopback sockets: a player on the load tester's engine offers one
//! audio and one video section to `POST /whep/{room}` and receives the participant it names,
//! without renegotiation: when that publisher leaves and comes back under the same name, the
//! same sections carry the new tracks. The player is not announced to the room; what WHEP
//! refuses, with which status.

mod common;

use common::{Harness, STEP};
use loadtest::wish::{self, request};
use loadtest::{ClientStats, Event, JoinOptions, Role};
use signaling::auth::Grants;
use signaling::protocol::{ServerMessage, TrackKind};

/// Video frames and audio packets a viewer has received so far.
fn received(s: &ClientStats) -> (u64, u64) {
    let v = s.first_of(TrackKind::Video).map_or(0, |t| t.frames);
    let a = s.first_of(TrackKind::Audio).map_or(0, |t| t.packets);
    (v, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_player_receives_the_participant_it_names_across_a_reconnect() {
    let h = Harness::start().await;
    let mut bystander = h.publisher("show", "bystander").await;
    let studio = h.publisher("show", "studio").await;

    let (mut viewer, session) = wish::viewer(h.server.http, "show", Some("studio"), None, JoinOptions::on(&h.engine))
        .await
        .expect("a WHEP client");
    viewer.wait_connected(Role::Subscriber, STEP).await.expect("the WHEP player connects");
    let s = session.lock().unwrap().clone().expect("answered").expect("201 Created");
    assert!(s.location.starts_with("/whep/show/WE_"), "{s:?}");
    let first = viewer
        .wait_stats(STEP, "studio's video and audio", |s| {
            let (v, a) = received(s);
            v >= 25 && a >= 50
        })
        .await
        .unwrap();
    assert_eq!(first.tracks.len(), 2, "one audio and one video section: {:?}", first.tracks);
    let video = first.first_of(TrackKind::Video).unwrap();
    assert!(video.lost * 100 <= video.packets, "{video:?}");

    // the player is no participant the others see
    let announced = bystander.pending_events().into_iter().any(|e| {
        matches!(e, Event::Server(ServerMessage::ParticipantJoined { ref participant }) if participant.name == "whep")
    });
    assert!(!announced, "a WHEP player is not announced");

    // the studio leaves and comes back (a new participant, the same name): the same sections
    // carry it again, with no new offer
    let before = received(&viewer.stats().await.unwrap());
    studio.leave(STEP).await.unwrap();
    let _studio = h.publisher("show", "studio").await;
    viewer
        .wait_stats(STEP, "the returning studio's video and audio", move |s| {
            let (v, a) = received(s);
            v >= before.0 + 25 && a >= before.1 + 50
        })
        .await
        .unwrap();
    let text = h.metrics().await;
    assert!(text.contains("sfu_wish_sessions{kind=\"whep\"} 1"), "one WHEP session open");

    let r = request(h.server.http, "DELETE", &s.location, &[], "").await.unwrap();
    assert_eq!(r.status, 200);
    let r = request(h.server.http, "DELETE", &s.location, &[], "").await.unwrap();
    assert_eq!(r.status, 404);
    drop(viewer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_whep_refuses_and_with_which_status() {
    let h = Harness::start().await;
    let _publisher = h.publisher("r", "studio").await;
    let (mut probe, session) = wish::viewer(h.server.http, "r", None, None, JoinOptions::on(&h.engine)).await.unwrap();
    probe.wait_connected(Role::Subscriber, STEP).await.unwrap();
    let offer = session.lock().unwrap().clone().unwrap().unwrap().offer;
    let key = signaling::auth::dev_key();
    let no_subscribe = signaling::auth::issue(
        &key,
        &signaling::auth::TokenRequest {
            identity: "encoder".into(),
            name: None,
            room: Some("r".into()),
            grants: Grants { join: true, publish: true, ..Grants::default() },
            ttl: std::time::Duration::from_secs(600),
        },
    )
    .unwrap()
    .0;
    let no_subscribe = format!("Bearer {no_subscribe}");
    let sdp = ("Content-Type", "application/sdp");
    let audio_free =
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
    // columns: case, headers, body, status
    let rows: Vec<(&str, Vec<(&str, &str)>, &str, u16)> = vec![
        ("no content type", vec![], offer.as_str(), 415),
        ("not SDP", vec![sdp], "hello", 400),
        ("no audio or video section", vec![sdp], audio_free, 400),
        ("a token that may not subscribe", vec![sdp, ("Authorization", no_subscribe.as_str())], offer.as_str(), 403),
        ("a forged token", vec![sdp, ("Authorization", "Bearer x.y.z")], offer.as_str(), 401),
    ];
    for (case, headers, body, status) in rows {
        let r = request(h.server.http, "POST", "/whep/r", &headers, body).await.unwrap();
        assert_eq!(r.status, status, "{case}: {}", r.body);
    }
    let frag = [("Content-Type", "application/trickle-ice-sdpfrag")];
    let location = session.lock().unwrap().clone().unwrap().unwrap().location;
    let restart = "a=ice-ufrag:fresh\r\na=ice-pwd:freshpasswordfreshpassword\r\n";
    let r = request(h.server.http, "PATCH", &location, &frag, restart).await.unwrap();
    assert_eq!(r.status, 422, "no ICE restart of a WHEP session: {}", r.body);
    // a WHIP session id is not a WHEP one
    let r = request(h.server.http, "DELETE", &location.replace("/whep/", "/whip/"), &[], "").await.unwrap();
    assert_eq!(r.status, 404);
    let r = request(h.server.http, "GET", "/watch?room=r", &[], "").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("/watch.js"), "the player page");
}
