//! Token grants on a production-mode node: a participant without the subscribe grant stays in
//! the room but is never offered anyone's media.

mod ops_common;

use loadtest::{Client, Engine, JoinOptions};
use ops_common::*;
use signaling::auth::Grants;
use signaling::protocol::{ServerMessage, TrackKind};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_subscribe_grant_no_media_is_offered() {
    let server = start_node(&[]).await;
    let addr = server.http;
    let room = "grants";
    let engine = Engine::spawn();
    let publisher_token = join_token(room, "pub");
    let options = JoinOptions { token: Some(publisher_token), ..JoinOptions::on(&engine) };
    let publisher = Client::join(&format!("ws://{addr}/ws"), room, "pub", options).await.unwrap();
    publisher.publish().await.unwrap();

    let listen_only = Grants { join: true, publish: true, subscribe: false, admin: false };
    let (mut muted, _) =
        Ws::joined(addr, room, "no-sub", Some(&token(&key(), "no-sub", Some(room), listen_only))).await;
    let (mut full, _) = Ws::joined(addr, room, "full", Some(&join_token(room, "full"))).await;

    // The control: a participant with the grant is offered the publisher's media (this raw
    // socket never answers, so later tracks wait for a renegotiation: one offer is enough).
    let offered = full
        .wait_for(STEP, |m| match m {
            ServerMessage::Offer { tracks, .. } if !tracks.is_empty() => Some(tracks.clone()),
            _ => None,
        })
        .await;
    assert!(offered.values().all(|t| t.kind == TrackKind::Audio || t.kind == TrackKind::Video));
    // the metric changes without a notification: poll it, bounded
    let subscribed = &server.media_metrics.subscribed_tracks;
    tokio::time::timeout(STEP, async {
        while subscribed.get() != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("`full` never subscribed both tracks: {} subscribed", subscribed.get()));

    // Without it: never an offer (observed for 3 s after the full participant got its offer).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, muted.recv(Duration::from_secs(60))).await {
            Err(_) => break, // the window is over
            Ok(None) => panic!("the participant without the subscribe grant was disconnected"),
            Ok(Some(ServerMessage::Offer { tracks, .. })) => {
                panic!("offered media without the subscribe grant: {tracks:?}")
            }
            Ok(Some(_)) => {}
        }
    }
    let m = metrics(addr).await;
    assert_eq!(metric(&m, "sfu_published_tracks"), Some(2.0), "{m}");
    assert_eq!(metric(&m, "sfu_subscribed_tracks"), Some(2.0), "only `full` subscribes: {m}");
}
