//! Session resume over real loopback sockets: a joined client gets a `session` message with a
//! resume token after `joined`; when its socket goes away without a close, it stays in the
//! room for the grace period and a new socket takes the session back with `resume` (messages
//! that waited follow); a clean close or `leave` ends it at once; an unknown token or one whose
//! grace ran out is refused with `resume_failed`.

mod common;

use common::*;
use signaling::protocol::{ErrorCode, ServerMessage};
use signaling::session::Limits;
use std::time::{Duration, Instant};

const GRACE: Duration = Duration::from_millis(800);

fn limits() -> Limits {
    Limits { resume_grace: GRACE, ..Limits::default() }
}

/// Joins `room` and returns the resume token of the `session` message that follows `joined`.
async fn join_with_token(ws: &mut Ws, room: &str) -> String {
    assert!(matches!(join(ws, room, None).await, ServerMessage::Joined { .. }));
    match recv_any(ws).await {
        ServerMessage::Session { resume_token, grace_ms } => {
            assert_eq!(grace_ms, GRACE.as_millis() as u64);
            assert_eq!(resume_token.len(), 32, "128 random bits");
            resume_token
        }
        other => panic!("session after joined, got {other:?}"),
    }
}

/// A node with the test's grace, serving on loopback.
async fn node() -> (signaling::AppState, std::net::SocketAddr) {
    let (mut state, _) = state(true);
    state.limits = limits();
    let addr = serve(state.clone()).await;
    (state, addr)
}

/// A session joined to `room` whose socket then went away without a close: its token, once
/// it waits.
async fn parked(state: &signaling::AppState, addr: std::net::SocketAddr, room: &str) -> String {
    let waiting = state.parking.len();
    let mut ws = connect(addr).await;
    let token = join_with_token(&mut ws, room).await;
    drop(ws);
    until("parked", Duration::from_secs(2), || state.parking.len() == waiting + 1).await;
    token
}

async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_dropped_socket_is_resumed_within_the_grace_and_its_messages_follow() {
    let (state, addr) = node().await;
    // the socket goes away without a close (a network change)
    let token = parked(&state, addr, "r").await;
    assert_eq!(state.rooms.participants(), 1, "still in the room");

    // a message for the participant while nobody reads: it waits
    let mut other = connect(addr).await;
    assert!(matches!(join(&mut other, "r", None).await, ServerMessage::Joined { .. }));

    let mut again = connect(addr).await;
    send(&mut again, serde_json::json!({"type": "resume", "room": "r", "token": token})).await;
    assert!(matches!(recv(&mut again).await, ServerMessage::Resumed { .. }));
    assert_eq!((state.rooms.participants(), state.parking.len()), (2, 0));
    // the room answers this session again (the fake plane answers offers)
    send(&mut again, serde_json::json!({"type": "offer", "sdp": "v=0"})).await;
    assert!(matches!(recv(&mut again).await, ServerMessage::Answer { .. }));
    // past the grace it is still there: resumed, not waiting
    tokio::time::sleep(GRACE + Duration::from_millis(200)).await;
    assert_eq!(state.rooms.participants(), 2);
    // and the token was used up
    let mut third = connect(addr).await;
    send(&mut third, serde_json::json!({"type": "resume", "room": "r", "token": token})).await;
    assert!(matches!(recv(&mut third).await, ServerMessage::Error { code: ErrorCode::ResumeFailed, .. }));
    assert!(state.metrics.render().contains("sfu_signaling_resumes_total 1"));
}

#[tokio::test]
async fn without_a_resume_the_session_leaves_at_the_end_of_its_grace() {
    let (state, addr) = node().await;
    let token = parked(&state, addr, "r").await;
    let since = Instant::now();
    until("left after the grace", Duration::from_secs(3), || state.rooms.participants() == 0).await;
    assert!(since.elapsed() >= GRACE - Duration::from_millis(100), "not before the grace: {:?}", since.elapsed());
    let mut late = connect(addr).await;
    send(&mut late, serde_json::json!({"type": "resume", "room": "r", "token": token})).await;
    assert!(matches!(recv(&mut late).await, ServerMessage::Error { code: ErrorCode::ResumeFailed, .. }));
    // the socket can still join
    assert!(matches!(join(&mut late, "r", None).await, ServerMessage::Joined { .. }));
}

#[tokio::test]
async fn a_clean_close_or_leave_ends_the_session_at_once() {
    let (state, addr) = node().await;
    let mut closing = connect(addr).await;
    let token = join_with_token(&mut closing, "r").await;
    let mut leaving = connect(addr).await;
    join_with_token(&mut leaving, "r").await;
    closing.close(None).await.unwrap();
    send(&mut leaving, serde_json::json!({"type": "leave"})).await;
    until("both left", Duration::from_secs(2), || state.rooms.participants() == 0).await;
    assert_eq!(state.parking.len(), 0, "nothing waits");
    let mut again = connect(addr).await;
    send(&mut again, serde_json::json!({"type": "resume", "room": "r", "token": token})).await;
    assert!(matches!(recv(&mut again).await, ServerMessage::Error { code: ErrorCode::ResumeFailed, .. }));
    // a token is bound to its room
    let token = parked(&state, addr, "r").await;
    let mut elsewhere = connect(addr).await;
    send(&mut elsewhere, serde_json::json!({"type": "resume", "room": "other", "token": token})).await;
    assert!(matches!(recv(&mut elsewhere).await, ServerMessage::Error { code: ErrorCode::ResumeFailed, .. }));
}
