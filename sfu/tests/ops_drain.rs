//! Drain of an in-process node started by the API: readiness, refused rooms, admission into
//! running rooms, metrics, the end of the drain, and the deadline's `reconnect`.

mod ops_common;

use ops_common::*;
use serde_json::json;
use signaling::drain::DrainOutcome;
use signaling::protocol::{ErrorCode, ServerMessage};
use std::time::Duration;

#[tokio::test]
async fn drain_by_api_keeps_running_rooms_and_ends_when_they_are_empty() {
    let server = start_node(&[]).await;
    let addr = server.http;
    let admin = admin(&key());
    let (mut a, _) = Ws::joined(addr, "running", "a", Some(&join_token("running", "a"))).await;

    let (s, body) = http_json(addr, "POST", "/api/node/drain", Some(&admin), None).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["state"], "draining");
    assert_eq!(http(addr, "GET", "/readyz", None, None).await.0, 503);
    assert_eq!(http(addr, "GET", "/healthz", None, None).await.0, 200);

    // new rooms are refused, on the WebSocket and on the API
    let mut other = Ws::connect(addr).await;
    match other.join("fresh", "b", Some(&join_token("fresh", "b"))).await {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::Draining),
        m => panic!("expected draining, got {m:?}"),
    }
    let (s, body) = http_json(addr, "POST", "/api/rooms", Some(&admin), Some(json!({"name": "fresh"}))).await;
    assert_eq!((s, body["error"].as_str()), (503, Some("draining")));

    // the running room still admits its participants
    let (mut b, _) = Ws::joined(addr, "running", "b", Some(&join_token("running", "b"))).await;

    let m = metrics(addr).await;
    assert_eq!(metric(&m, "sfu_node_draining"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "sfu_rooms"), Some(1.0));
    assert_eq!(metric(&m, "sfu_participants"), Some(2.0));
    let (_, node) = http_json(addr, "GET", "/api/node", Some(&admin), None).await;
    assert_eq!(
        (node["state"].as_str(), node["rooms"].as_u64(), node["participants"].as_u64()),
        (Some("draining"), Some(1), Some(2))
    );
    assert!(node["drain_remaining_seconds"].as_u64().unwrap() > 7000, "{node}");
    assert!(!server.drained.is_finished(), "a running room keeps the node up");

    a.send(json!({"type": "leave"})).await;
    a.closed(STEP).await;
    assert!(!server.drained.is_finished());
    b.send(json!({"type": "leave"})).await;
    b.closed(STEP).await;
    let outcome = tokio::time::timeout(STEP, server.drained).await.expect("drain ends").unwrap();
    assert!(matches!(outcome, DrainOutcome::Empty { .. }), "{outcome:?}");
    assert_eq!(metric(&metrics(addr).await, "sfu_participants"), Some(0.0));
}

#[tokio::test]
async fn drain_deadline_tells_participants_to_reconnect() {
    let server = start_node(&["--drain-deadline", "1s"]).await;
    let addr = server.http;
    let (mut a, _) = Ws::joined(addr, "late", "a", Some(&join_token("late", "a"))).await;
    let (mut b, _) = Ws::joined(addr, "late2", "b", Some(&join_token("late2", "b"))).await;
    let (s, _) = http(addr, "POST", "/api/node/drain", Some(&admin(&key())), None).await;
    assert_eq!(s, 202);
    let started = std::time::Instant::now();
    for ws in [&mut a, &mut b] {
        let (reason, delay) = ws
            .wait_for(STEP, |m| match m {
                ServerMessage::Reconnect { reason, delay_ms } => Some((reason.clone(), *delay_ms)),
                _ => None,
            })
            .await;
        assert!(reason.contains("drain"), "{reason}");
        assert!(delay < 60_000);
        ws.closed(STEP).await; // the server closes the socket after reconnect
    }
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the deadline");
    let outcome = tokio::time::timeout(STEP, server.drained).await.expect("drain ends").unwrap();
    assert_eq!(outcome, DrainOutcome::Deadline { evacuated: 2, remaining: 0 });
    assert_eq!(server.rooms.participants(), 0);
}

#[tokio::test]
async fn drain_without_admission_refuses_running_rooms_too() {
    let server = start_node(&["--drain-admit", "false"]).await;
    let addr = server.http;
    let (_a, _) = Ws::joined(addr, "running", "a", Some(&join_token("running", "a"))).await;
    server.node.start_drain(); // as SIGTERM does
    let mut b = Ws::connect(addr).await;
    match b.join("running", "b", Some(&join_token("running", "b"))).await {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::Draining),
        m => panic!("expected draining, got {m:?}"),
    }
    assert_eq!(server.rooms.participants(), 1);
}
