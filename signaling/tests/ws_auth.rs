//! Token checks of the WebSocket join and the publish grant, over a real loopback socket with
//! a fake media plane.

mod common;

use common::*;
use futures::StreamExt;
use serde_json::json;
use signaling::auth::{self, ApiKey, Grants};
use signaling::protocol::{ErrorCode, ServerMessage};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn join_refuses_bad_tokens_and_nothing_leaks() {
    let (state, seen) = state(false);
    let addr = serve(state.clone()).await;
    let now = auth::unix_now();
    let claims = |exp: u64, nbf: u64| json!({"sub": "a", "room": "r1", "exp": exp, "nbf": nbf, "grants": {"join": true, "publish": true}});
    let forged = ApiKey { key: KEY.into(), secret: "forged-forged-forged-forged-forged".into() };
    let unknown = ApiKey { key: "k9".into(), secret: SECRET.into() };
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing"),
        (Some(raw_token(&key(), claims(now - 3600, now - 7200))), "expired"),
        (Some(raw_token(&key(), claims(now + 7200, now + 3600))), "not_yet_valid"),
        (Some(raw_token(&forged, claims(now + 600, now))), "bad_signature"),
        (Some(raw_token(&unknown, claims(now + 600, now))), "unknown_key"),
        (Some(join_token("r2")), "wrong_room"),
        (Some(admin_token()), "wrong_room"),
        (
            Some(token_with(&key(), Some("r1"), Grants { publish: true, subscribe: true, ..Grants::default() })),
            "no_join_grant",
        ),
        (Some("a.b.c".into()), "malformed"),
        (Some(token_with(&auth::dev_key(), Some("r1"), Grants::participant())), "unknown_key"),
    ];
    for (token, reason) in cases {
        let mut ws = connect(addr).await;
        match join(&mut ws, "r1", token).await {
            ServerMessage::Error { code, message } => {
                assert_eq!(code, ErrorCode::Unauthorized, "{reason}: {message}");
                assert!(message.starts_with(&format!("{reason}: ")), "{reason}: {message}");
            }
            other => panic!("{reason}: expected an error, got {other:?}"),
        }
        // the session goes on, unjoined: a message other than join is refused
        send(&mut ws, json!({"type": "leave"})).await;
        let _ = ws.close(None).await;
        assert_eq!(state.rooms.len(), 0, "{reason}: no room was created");
        assert_eq!(state.rooms.participants(), 0, "{reason}: no participant was counted");
        assert!(seen.lock().unwrap().rooms.is_empty(), "{reason}: no room worker was started");
    }
    let (_, metrics) = call(&signaling::app(state.clone()), axum::http::Method::GET, "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert_eq!(
        metric(&metrics, "sfu_auth_failures_total{reason=\"wrong_room\",surface=\"ws\"}"),
        Some(2.0),
        "{metrics}"
    );

    // the right token joins, under the token's name
    let mut ws = connect(addr).await;
    match join(&mut ws, "r1", Some(join_token("r1"))).await {
        ServerMessage::Joined { room, participant, .. } => {
            assert_eq!(room, "r1");
            assert_eq!(participant.name, "Alice", "the token's name wins over the join message's");
        }
        other => panic!("expected joined, got {other:?}"),
    }
    assert_eq!(state.rooms.participants(), 1);
    assert_eq!(state.rooms.members("r1").values().next().unwrap().identity, "alice");
}

#[tokio::test]
async fn offer_needs_the_publish_grant() {
    let (state, seen) = state(false);
    let addr = serve(state.clone()).await;

    let viewer = token_with(&key(), Some("r1"), Grants { join: true, subscribe: true, ..Grants::default() });
    let mut ws = connect(addr).await;
    assert!(matches!(join(&mut ws, "r1", Some(viewer)).await, ServerMessage::Joined { .. }));
    send(&mut ws, json!({"type": "offer", "sdp": "v=0"})).await;
    match recv(&mut ws).await {
        ServerMessage::Error { code, message } => {
            assert_eq!(code, ErrorCode::Unauthorized);
            assert!(message.starts_with("no_publish_grant: "), "{message}");
        }
        other => panic!("expected unauthorized, got {other:?}"),
    }
    assert!(seen.lock().unwrap().offers.is_empty(), "the offer never reached the room");

    let mut ws2 = connect(addr).await;
    assert!(matches!(join(&mut ws2, "r1", Some(join_token("r1"))).await, ServerMessage::Joined { .. }));
    send(&mut ws2, json!({"type": "offer", "sdp": "v=0"})).await;
    loop {
        match recv(&mut ws2).await {
            ServerMessage::Answer { .. } => break,
            ServerMessage::Error { code, message } => panic!("{code:?} {message}"),
            _ => {}
        }
    }
    assert_eq!(seen.lock().unwrap().offers.len(), 1);
}

#[tokio::test]
async fn dev_mode_joins_without_a_token_but_checks_tokens_it_gets() {
    let (state, _) = state(true);
    let addr = serve(state.clone()).await;
    let mut ws = connect(addr).await;
    assert!(matches!(join(&mut ws, "r1", None).await, ServerMessage::Joined { .. }));
    let mut ws = connect(addr).await;
    let dev = token_with(&auth::dev_key(), Some("r1"), Grants::participant());
    assert!(matches!(join(&mut ws, "r1", Some(dev.clone())).await, ServerMessage::Joined { .. }));
    let mut ws = connect(addr).await;
    match join(&mut ws, "r2", Some(dev)).await {
        ServerMessage::Error { code, message } => {
            assert_eq!(code, ErrorCode::Unauthorized);
            assert!(message.starts_with("wrong_room: "), "{message}");
        }
        other => panic!("expected unauthorized, got {other:?}"),
    }
    assert_eq!(state.rooms.participants(), 2);
}

#[tokio::test]
async fn removed_participant_is_disconnected_and_released() {
    let (state, _) = state(false);
    let addr = serve(state.clone()).await;
    let app = signaling::app(state.clone());
    let mut ws = connect(addr).await;
    let id = match join(&mut ws, "r1", Some(join_token("r1"))).await {
        ServerMessage::Joined { participant, .. } => participant.id,
        other => panic!("{other:?}"),
    };
    let admin = admin_token();
    let (s, _) =
        call(&app, axum::http::Method::DELETE, &format!("/api/rooms/r1/participants/{id}"), Some(&admin), None).await;
    assert_eq!(s, axum::http::StatusCode::NO_CONTENT);
    assert!(matches!(recv(&mut ws).await, ServerMessage::Removed { .. }));
    // the server closes the socket, and the place is given back
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                _ => {}
            }
        }
    });
    end.await.expect("socket closed by the server");
    let mut changed = state.node.subscribe();
    tokio::time::timeout(Duration::from_secs(5), async {
        while state.rooms.participants() != 0 {
            changed.changed().await.unwrap();
        }
    })
    .await
    .expect("participant released");
    assert_eq!(state.rooms.len(), 0, "its room closed with it");
}
