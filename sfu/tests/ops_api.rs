//! The REST API against a real in-process node: room lifecycle, participants as the room
//! worker reports them, removal, deletion, muting a published track, metrics.

mod ops_common;

use loadtest::{Client, Engine, Event, JoinOptions, Role};
use ops_common::*;
use serde_json::json;
use signaling::auth;
use signaling::protocol::{ServerMessage, TrackKind};

#[tokio::test]
async fn rooms_and_participants_on_a_real_node() {
    let server = start_node(&["--max-participants", "5"]).await;
    let addr = server.http;
    let admin = admin(&key());
    let t = Some(admin.as_str());

    // no node without auth: every API route refuses anonymous and participant callers
    let (s, body) = http_json(addr, "GET", "/api/rooms", None, None).await;
    assert_eq!((s, body["reason"].as_str()), (401, Some("missing")));
    let (s, body) =
        http_json(addr, "POST", "/api/rooms", Some(&join_token("x", "u")), Some(json!({"name": "x"}))).await;
    assert_eq!((s, body["reason"].as_str()), (403, Some("no_admin_grant")));
    assert_eq!(server.rooms.len(), 0);
    // no dev token endpoint outside dev mode
    assert_eq!(http(addr, "GET", "/api/dev/token?room=x&name=y", None, None).await.0, 404);

    let (s, body) =
        http_json(addr, "POST", "/api/rooms", t, Some(json!({"name": "standup", "max_participants": 2}))).await;
    assert_eq!(s, 201, "{body}");
    let (mut a, a_id) = Ws::joined(addr, "standup", "Ann", Some(&join_token("standup", "ann"))).await;
    let (mut b, b_id) = Ws::joined(addr, "standup", "Ben", Some(&join_token("standup", "ben"))).await;
    let mut c = Ws::connect(addr).await;
    match c.join("standup", "Cy", Some(&join_token("standup", "cy"))).await {
        ServerMessage::Error { code, .. } => assert_eq!(code, signaling::protocol::ErrorCode::RoomFull),
        m => panic!("the API's limit of 2 holds: {m:?}"),
    }

    let (s, body) = http_json(addr, "GET", "/api/rooms/standup", t, None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["room"], json!({"name": "standup", "participants": 2, "max_participants": 2}));
    let ps = body["participants"].as_array().unwrap();
    let ids: Vec<&str> = ps.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![a_id.as_str(), b_id.as_str()]);
    assert_eq!((ps[0]["identity"].as_str(), ps[0]["name"].as_str()), (Some("ann"), Some("Ann")));
    assert_eq!(ps[0]["tracks"], json!([]));

    let m = metrics(addr).await;
    assert_eq!((metric(&m, "sfu_rooms"), metric(&m, "sfu_participants")), (Some(1.0), Some(2.0)), "{m}");

    // remove Ben: he is told and disconnected; Ann sees him leave
    assert_eq!(http(addr, "DELETE", &format!("/api/rooms/standup/participants/{b_id}"), t, None).await.0, 204);
    let reason = b.wait_for(STEP, |m| match m {
        ServerMessage::Removed { reason } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.await.contains("operator"));
    b.closed(STEP).await;
    let left = a.wait_for(STEP, |m| match m {
        ServerMessage::ParticipantLeft { participant } => Some(participant.clone()),
        _ => None,
    });
    assert_eq!(left.await, b_id);
    until(&server.node, STEP, "Ben's place given back", || server.rooms.participants() == 1).await;
    assert_eq!(http(addr, "DELETE", &format!("/api/rooms/standup/participants/{b_id}"), t, None).await.0, 404);
    let (s, _) = http_json(
        addr,
        "POST",
        &format!("/api/rooms/standup/participants/{a_id}/tracks/TR_none/mute"),
        t,
        Some(json!({"muted": true})),
    )
    .await;
    assert_eq!(s, 404, "Ann publishes nothing");

    // delete the room: Ann is told and disconnected; the name is free again at once
    assert_eq!(http(addr, "DELETE", "/api/rooms/standup", t, None).await.0, 204);
    a.wait_for(STEP, |m| matches!(m, ServerMessage::Removed { .. }).then_some(())).await;
    a.closed(STEP).await;
    assert_eq!(http(addr, "GET", "/api/rooms/standup", t, None).await.0, 404);
    let (s, _) = http_json(addr, "POST", "/api/rooms", t, Some(json!({"name": "standup"}))).await;
    assert_eq!(s, 201, "a deleted room's name can be reused");
    let m = metrics(addr).await;
    assert_eq!((metric(&m, "sfu_rooms"), metric(&m, "sfu_participants")), (Some(1.0), Some(0.0)), "{m}");
    let (_, list) = http_json(addr, "GET", "/api/rooms", t, None).await;
    assert_eq!(list, json!({"rooms": [{"name": "standup", "participants": 0, "max_participants": 5}]}));
}

/// A dev-mode node, real media: Ann publishes, Ben receives; an operator mutes Ann's video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muting_a_published_track_tells_the_room() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn,rtc_dtls=error").try_init();
    let MediaRoom { server, url, admin, engine, _ann, ann_id, mut ben, video } = MediaRoom::start("media").await;
    let addr = server.http;

    let (s, body) = http_json(addr, "GET", "/api/rooms/media/participants", Some(&admin), None).await;
    assert_eq!(s, 200, "{body}");
    let ann_entry =
        body["participants"].as_array().unwrap().iter().find(|p| p["id"] == ann_id.as_str()).unwrap().clone();
    assert_eq!(ann_entry["identity"], "Ann", "tokenless dev joins use the name as identity");
    let tracks = ann_entry["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 2, "{ann_entry}");
    let v = tracks.iter().find(|t| t["kind"] == "video").unwrap();
    assert_eq!(v["id"], video.as_str());
    assert_eq!(v["layers"], json!(["q", "h", "f"]));
    assert_eq!(v["muted"], false);

    let path = format!("/api/rooms/media/participants/{ann_id}/tracks/{video}/mute");
    let (s, body) = http_json(addr, "POST", &path, Some(&admin), Some(json!({"muted": true}))).await;
    assert_eq!((s, body["muted"].as_bool()), (200, Some(true)), "{body}");
    let told = ben
        .wait_event(STEP, "track_muted", |e| match e {
            Event::Server(ServerMessage::TrackMuted { participant, track, muted }) => {
                Some((participant.clone(), track.clone(), *muted))
            }
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(told, (ann_id.clone(), video.clone(), true));
    let (_, body) = http_json(addr, "GET", "/api/rooms/media", Some(&admin), None).await;
    let muted: Vec<bool> = body["participants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["tracks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["id"] == video.as_str())
                .map(|t| t["muted"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(muted, vec![true]);

    // a newcomer learns about the muted track when it joins
    let mut cy = Client::join(&url, "media", "Cy", JoinOptions::on(&engine)).await.unwrap();
    cy.wait_event(STEP, "track_muted for the newcomer", |e| match e {
        Event::Server(ServerMessage::TrackMuted { track, muted: true, .. }) if *track == video => Some(()),
        _ => None,
    })
    .await
    .unwrap();

    let (s, body) = http_json(addr, "POST", &path, Some(&admin), Some(json!({"muted": false}))).await;
    assert_eq!((s, body["muted"].as_bool()), (200, Some(false)));
    ben.wait_event(STEP, "track unmuted", |e| match e {
        Event::Server(ServerMessage::TrackMuted { muted: false, .. }) => Some(()),
        _ => None,
    })
    .await
    .unwrap();
}

/// A dev-mode node with real media in `room`: Ann publishes, Ben receives.
struct MediaRoom {
    server: sfu::server::Server,
    url: String,
    admin: String,
    engine: Engine,
    _ann: Client,
    ann_id: String,
    ben: Client,
    /// Ann's video track.
    video: String,
}

impl MediaRoom {
    async fn start(room: &str) -> MediaRoom {
        let config = <sfu::config::Config as clap::Parser>::parse_from([
            "sfu",
            "--dev",
            "--http",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
        ]);
        let server = sfu::server::start(&config).await.unwrap();
        let url = format!("ws://{}/ws", server.http);
        let admin = admin(&auth::dev_key());
        let engine = Engine::spawn();
        let mut ann = Client::join(&url, room, "Ann", JoinOptions::on(&engine)).await.unwrap();
        let ann_id = ann.participant().id.clone();
        ann.publish().await.unwrap();
        ann.wait_connected(Role::Publisher, STEP).await.unwrap();
        let mut ben = Client::join(&url, room, "Ben", JoinOptions::on(&engine)).await.unwrap();
        let video = remote_video(&mut ben).await;
        MediaRoom { server, url, admin, engine, _ann: ann, ann_id, ben, video }
    }
}

/// The id of the remote video track `client` knows of (from `joined` or `track_published`).
async fn remote_video(client: &mut Client) -> String {
    let known = client
        .participants_at_join()
        .iter()
        .flat_map(|p| p.tracks.iter())
        .find(|t| t.kind == TrackKind::Video)
        .map(|t| t.id.clone());
    match known {
        Some(id) => id,
        None => client
            .wait_event(STEP, "video track_published", |e| match e {
                Event::Server(ServerMessage::TrackPublished { track, .. }) if track.kind == TrackKind::Video => {
                    Some(track.id.clone())
                }
                _ => None,
            })
            .await
            .unwrap(),
    }
}

/// Muted means not forwarded, and unmuting brings the media back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_track_is_not_forwarded() {
    let MediaRoom { server, admin, engine: _engine, _ann, ann_id, mut ben, video, .. } = MediaRoom::start("m2").await;
    let addr = server.http;
    ben.set_layer(&video, Some("q")).unwrap();
    ben.wait_event(STEP, "layer_changed q", |e| match e {
        Event::Server(ServerMessage::LayerChanged { track, layer: Some(_), .. }) if *track == video => Some(()),
        _ => None,
    })
    .await
    .unwrap();
    ben.wait_stats(STEP, "media arrives", |s| s.track(&video).is_some_and(|t| t.packets > 10)).await.unwrap();
    let path = format!("/api/rooms/m2/participants/{ann_id}/tracks/{video}/mute");
    assert_eq!(http(addr, "POST", &path, Some(&admin), Some(json!({"muted": true}))).await.0, 200);
    // let in-flight packets land, then nothing more may arrive for a second
    let _ = ben.wait_stats(STEP, "settle", |_| true).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = ben.stats().await.unwrap().track(&video).unwrap().packets;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let after = ben.stats().await.unwrap();
    assert_eq!(after.track(&video).unwrap().packets, before, "muted video is not forwarded");
    assert!(after.first_of(TrackKind::Audio).unwrap().packets > 0);
    assert_eq!(http(addr, "POST", &path, Some(&admin), Some(json!({"muted": false}))).await.0, 200);
    ben.wait_stats(STEP, "video resumes", |s| s.track(&video).is_some_and(|t| t.packets > before + 20)).await.unwrap();
}

/// A participant that stops reading its WebSocket is removed once its signaling queue
/// overflows (rather than silently missing messages) and its socket is closed; everyone else
/// keeps their messages and media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_stops_reading_is_removed_not_desynchronized() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn,rtc_dtls=error").try_init();
    let MediaRoom { server, admin, _ann, ann_id, mut ben, video, .. } = MediaRoom::start("busy").await;
    let addr = server.http;
    // a small receive buffer, so that the kernel holds few of the messages it never reads
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(addr).await.unwrap();
    let ws =
        tokio_tungstenite::client_async(format!("ws://{addr}/ws"), tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap()
            .0;
    let mut stuck = Ws { ws };
    let stuck_id = match stuck.join("busy", "Stuck", None).await {
        ServerMessage::Joined { participant, .. } => participant.id,
        other => panic!("{other:?}"),
    };

    // every mute toggle is a `track_muted` to everyone; Stuck reads none of them, so its
    // socket buffers fill, then its queue
    let path = format!("/api/rooms/busy/participants/{ann_id}/tracks/{video}/mute");
    let mut toggles = 0u32;
    while metric(&metrics(addr).await, "sfu_signaling_overflows_total").unwrap_or(0.0) < 1.0 {
        assert!(toggles < 40_000, "no overflow after {toggles} messages");
        for _ in 0..50 {
            toggles += 1;
            let (s, _) = http_json(addr, "POST", &path, Some(&admin), Some(json!({"muted": toggles % 2 == 1}))).await;
            assert_eq!(s, 200);
        }
    }
    if toggles % 2 == 1 {
        toggles += 1;
        http_json(addr, "POST", &path, Some(&admin), Some(json!({"muted": false}))).await;
    }
    eprintln!("overflow after {toggles} messages");
    assert!(toggles < 4000, "within what the client keeps of unconsumed events");

    // Stuck is gone from the room and its socket gets closed after what was buffered
    let (_, list) = http_json(addr, "GET", "/api/rooms/busy/participants", Some(&admin), None).await;
    let ids: Vec<&str> = list["participants"].as_array().unwrap().iter().filter_map(|p| p["id"].as_str()).collect();
    assert!(!ids.contains(&stuck_id.as_str()), "{ids:?}");
    stuck.closed(STEP * 3).await;
    assert_eq!(
        metric(&metrics(addr).await, "sfu_signaling_overflows_total"),
        Some(1.0),
        "only the one that stopped reading"
    );

    // Ben read everything: all toggles arrived in order, and video flows again after the last unmute
    let mut last = None;
    for _ in 0..toggles {
        let muted = ben
            .wait_event(STEP, "track_muted", |e| match e {
                Event::Server(ServerMessage::TrackMuted { muted, .. }) => Some(*muted),
                _ => None,
            })
            .await
            .expect("every toggle reaches a reading participant");
        assert_ne!(Some(muted), last, "toggles alternate: none lost");
        last = Some(muted);
    }
    let before = ben.stats().await.unwrap().first_of(TrackKind::Video).map_or(0, |t| t.packets);
    ben.wait_stats(STEP, "video after unmute", |s| {
        s.first_of(TrackKind::Video).is_some_and(|t| t.packets > before + 20)
    })
    .await
    .expect("the others keep their media");
}
