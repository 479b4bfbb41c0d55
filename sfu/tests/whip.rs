//! WHIP ingest over real loopback sockets: a publisher on the load tester's engine sends its
//! offer (audio + q/h/f VP8 simulcast) to `POST /whip/{room}` as an encoder would, and a
//! WebSocket participant of the room receives it at the layers it asks for; the session's
//! `PATCH` (trickle, ICE restart, `If-Match`) and `DELETE`; and what is refused, with which
//! status.

mod common;
mod ops_common;

use common::{Harness, STEP, remote_tracks, track_of, wait_layer_changed};
use loadtest::wish::{self as whip, request};
use loadtest::{ClientStats, Event, JoinOptions, PublishOptions, Role};
use signaling::auth::Grants;
use signaling::protocol::{ServerMessage, TrackKind};
use std::time::Duration;

/// An offer the server can parse: what the load tester's engine sends for audio + video.
async fn engine_offer(h: &Harness) -> String {
    let (mut c, session) = whip::publisher(h.server.http, "offer-source", None, JoinOptions::on(&h.engine)).unwrap();
    c.publish_with(PublishOptions::default()).await.unwrap();
    c.wait_connected(Role::Publisher, STEP).await.unwrap();
    let offer = session.lock().unwrap().clone().expect("answered").expect("201").offer;
    c.leave(STEP).await.unwrap();
    offer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_publisher_is_received_by_the_room_at_the_layers_asked_for() {
    let h = Harness::start().await;
    let (mut publisher, session) =
        whip::publisher(h.server.http, "whip", None, JoinOptions::on(&h.engine)).expect("a WHIP client");
    publisher.publish_with(PublishOptions::default()).await.unwrap();
    publisher.wait_connected(Role::Publisher, STEP).await.expect("the WHIP publisher connects");
    let s = session.lock().unwrap().clone().expect("answered").expect("201 Created");
    assert!(s.location.starts_with("/whip/whip/WH_"), "{s:?}");
    assert!(s.etag.is_some(), "{s:?}");

    let mut viewer = h.join("whip", "viewer").await;
    let tracks = remote_tracks(&mut viewer, 2).await;
    let video = track_of(&tracks, TrackKind::Video);
    let audio = track_of(&tracks, TrackKind::Audio);
    assert_eq!(tracks.iter().find(|t| t.id == video).unwrap().layers, ["q", "h", "f"], "simulcast as offered");
    for (layer, width) in [("q", 320), ("f", 1280)] {
        viewer.set_layer(&video, Some(layer)).unwrap();
        wait_layer_changed(&mut viewer, &video, layer).await.unwrap();
        let (video, audio) = (video.clone(), audio.clone());
        viewer
            .wait_stats(STEP, &format!("{layer} video and audio"), move |s: &ClientStats| {
                s.track(&video).is_some_and(|v| v.width() == Some(width) && v.frames >= 25)
                    && s.track(&audio).is_some_and(|a| a.packets >= 50)
            })
            .await
            .unwrap();
    }
    // the publisher is a participant of the room, with the name WHIP gave it
    let others = viewer.participants_at_join();
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(others[0].name, "whip");

    // DELETE ends it: the room sees the participant leave; the session is gone
    let r = request(h.server.http, "DELETE", &s.location, &[], "").await.unwrap();
    assert_eq!(r.status, 200);
    viewer
        .wait_event(STEP, "participant_left", |e| {
            matches!(e, Event::Server(ServerMessage::ParticipantLeft { .. })).then_some(())
        })
        .await
        .unwrap();
    let r = request(h.server.http, "DELETE", &s.location, &[], "").await.unwrap();
    assert_eq!(r.status, 404, "ended once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_trickles_and_restarts_ice_and_checks_the_etag() {
    let h = Harness::start().await;
    let (mut publisher, session) = whip::publisher(h.server.http, "patch", None, JoinOptions::on(&h.engine)).unwrap();
    publisher.publish_with(PublishOptions::default()).await.unwrap();
    publisher.wait_connected(Role::Publisher, STEP).await.unwrap();
    let s = session.lock().unwrap().clone().unwrap().unwrap();
    let frag = [("Content-Type", "application/trickle-ice-sdpfrag")];
    let etag = s.etag.clone().unwrap();

    let trickle = "a=ice-ufrag:unchanged\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n";
    // a fragment with the offer's own ufrag is trickle, whatever the candidates
    let offer_ufrag = s.offer.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:").map(|u| u.trim().to_owned()));
    let trickle = trickle.replace("unchanged", &offer_ufrag.expect("the offer's ufrag"));
    let r = request(h.server.http, "PATCH", &s.location, &frag, &trickle).await.unwrap();
    assert_eq!(r.status, 204, "{r:?}");

    // new credentials: an ICE restart, answered with the server's new ones
    let restart = "a=ice-ufrag:fresh\r\na=ice-pwd:freshpasswordfreshpassword\r\n";
    let if_match = [frag[0], ("If-Match", etag.as_str())];
    let r = request(h.server.http, "PATCH", &s.location, &if_match, restart).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/trickle-ice-sdpfrag"));
    assert!(r.body.contains("a=ice-ufrag:") && r.body.contains("a=ice-pwd:"), "{}", r.body);
    let new_etag = r.header("etag").unwrap().to_owned();
    assert_ne!(new_etag, etag);
    // the old ETag no longer matches
    let r = request(h.server.http, "PATCH", &s.location, &if_match, restart).await.unwrap();
    assert_eq!(r.status, 412, "{r:?}");
    let r = request(h.server.http, "PATCH", "/whip/patch/WH_nosuchsession", &frag, trickle.as_str()).await.unwrap();
    assert_eq!(r.status, 404);
    let r = request(h.server.http, "PATCH", &s.location, &[("Content-Type", "text/plain")], "x").await.unwrap();
    assert_eq!(r.status, 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_whip_refuses_and_with_which_status() {
    let h = Harness::start().await;
    let offer = engine_offer(&h).await;
    let key = signaling::auth::dev_key();
    let subscribe_only =
        ops_common::token(&key, "viewer", Some("r"), Grants { join: true, subscribe: true, ..Grants::default() });
    let other_room = ops_common::token(&key, "pub", Some("elsewhere"), Grants::participant());
    let bearer = |t: &str| format!("Bearer {t}");
    let (sub_only, other) = (bearer(&subscribe_only), bearer(&other_room));
    let sdp = ("Content-Type", "application/sdp");
    // columns: case, path, headers, body, status
    let rows: Vec<(&str, &str, Vec<(&str, &str)>, &str, u16)> = vec![
        ("no content type", "/whip/r", vec![], offer.as_str(), 415),
        ("JSON instead of SDP", "/whip/r", vec![("Content-Type", "application/json")], "{}", 415),
        ("an empty offer", "/whip/r", vec![sdp], "", 400),
        ("not SDP", "/whip/r", vec![sdp], "hello", 400),
        ("a bad room name", "/whip/bad%20room", vec![sdp], offer.as_str(), 404),
        ("a forged token", "/whip/r", vec![sdp, ("Authorization", "Bearer x.y.z")], offer.as_str(), 401),
        ("a token for another room", "/whip/r", vec![sdp, ("Authorization", other.as_str())], offer.as_str(), 401),
        (
            "a token that may not publish",
            "/whip/r",
            vec![sdp, ("Authorization", sub_only.as_str())],
            offer.as_str(),
            403,
        ),
    ];
    for (case, path, headers, body, status) in rows {
        let r = request(h.server.http, "POST", path, &headers, body).await.unwrap();
        assert_eq!(r.status, status, "{case}: {}", r.body);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{case}: CORS on errors too");
    }
    let r = request(h.server.http, "DELETE", "/whip/r/WH_nosuchsession", &[], "").await.unwrap();
    assert_eq!(r.status, 404);
    let r = request(h.server.http, "OPTIONS", "/whip/r", &[], "").await.unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(r.header("accept-post"), Some("application/sdp"));
    // nobody was left behind in the room by the refused ones
    let deadline = tokio::time::Instant::now() + STEP;
    while h.server.rooms.participants() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a refused publisher stayed: {:?}",
            h.server.rooms.members("r")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
