//! Session deadlines over a real loopback socket: a socket that never joins, and a joined
//! client that stops answering, are closed (and leave their room); a client that answers the
//! server's pings stays; a client that stops reading is closed at the send deadline.

mod common;

use common::*;
use futures::StreamExt;
use signaling::protocol::{ErrorCode, ServerMessage};
use signaling::session::Limits;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Deadlines short enough for a test.
fn short() -> Limits {
    Limits {
        join: Duration::from_millis(300),
        ping_interval: Duration::from_millis(100),
        idle: Duration::from_millis(500),
        send: Duration::from_secs(2),
        // these sessions leave when their socket goes (waiting for a resume: ws_resume.rs)
        resume_grace: Duration::ZERO,
        ..Limits::default()
    }
}

/// Reads until the socket closes (answering pings, as a client library does); how long it took.
async fn until_closed(ws: &mut Ws, limit: Duration) -> Result<Duration, Vec<Message>> {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at((start + limit).into(), ws.next()).await {
            Err(_) => return Err(seen),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return Ok(start.elapsed()),
            Ok(Some(Ok(m))) => seen.push(m),
        }
    }
}

#[tokio::test]
async fn a_socket_that_never_joins_is_told_and_closed_at_the_join_deadline() {
    let (mut state, _) = state(true);
    state.limits = short();
    let addr = serve(state.clone()).await;
    let mut ws = connect(addr).await;
    match recv(&mut ws).await {
        ServerMessage::Error { code, message } => assert_eq!(code, ErrorCode::NotJoined, "{message}"),
        other => panic!("{other:?}"),
    }
    let took = until_closed(&mut ws, Duration::from_secs(5)).await.expect("closed");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let text = state.metrics.render();
    assert!(text.contains("sfu_signaling_timeouts_total{deadline=\"join\"} 1"), "{text}");
}

#[tokio::test]
async fn a_silent_client_is_closed_and_leaves_while_an_answering_one_stays() {
    let (mut state, _) = state(true);
    state.limits = short();
    let addr = serve(state.clone()).await;
    let mut answering = connect(addr).await;
    assert!(matches!(join(&mut answering, "live", None).await, ServerMessage::Joined { .. }));
    let mut silent = connect(addr).await;
    assert!(matches!(join(&mut silent, "live", None).await, ServerMessage::Joined { .. }));
    assert_eq!(state.rooms.participants(), 2);
    // the silent one reads nothing from here on (so answers no ping); the other reads (and
    // its library answers every ping) for three idle periods
    let stayed = until_closed(&mut answering, Duration::from_millis(1500)).await;
    let seen = stayed.expect_err("the answering client stays open");
    assert!(seen.iter().filter(|m| matches!(m, Message::Ping(_))).count() >= 5, "pings: {seen:?}");
    assert_eq!(state.rooms.participants(), 1, "the silent one left the room");
    let text = state.metrics.render();
    assert!(text.contains("sfu_signaling_timeouts_total{deadline=\"idle\"} 1"), "{text}");
    // what the silent one finds when it reads again: its socket was closed
    until_closed(&mut silent, Duration::from_secs(5)).await.expect("closed");
}

#[tokio::test]
async fn a_message_flood_is_dropped_past_the_burst_and_told_once() {
    let (state, _) = state(true);
    let addr = serve(state.clone()).await;
    let mut ws = connect(addr).await;
    let burst = state.limits.message_burst as usize;
    // messages before `join`: each one that is handled gets `not_joined`
    let flood = 4 * burst;
    for _ in 0..flood {
        send(&mut ws, serde_json::json!({"type": "leave"})).await;
    }
    let mut replies = Vec::new();
    while let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
        replies.push(serde_json::from_str::<ServerMessage>(&t).unwrap());
    }
    let code =
        |c: ErrorCode| replies.iter().filter(|m| matches!(m, ServerMessage::Error { code, .. } if *code == c)).count();
    // the burst, plus what the rate refilled while the flood was read (well under a burst)
    let handled = code(ErrorCode::NotJoined);
    assert!(handled >= burst && handled < 2 * burst, "{handled} handled of {flood}");
    assert_eq!(code(ErrorCode::LimitExceeded), 1, "told once: {replies:?}");
    let dropped = flood - handled;
    let text = state.metrics.render();
    let metric = metric(&text, "sfu_signaling_bad_messages_total{reason=\"rate_limited\"}").unwrap_or(0.0);
    assert_eq!(metric as usize, dropped, "every dropped message counted");
}

/// A joined client that keeps writing but stops reading: once the socket buffers between it
/// and the server are full, the server's next send waits; at the send deadline the session is
/// closed and leaves its room (before, a client could hold its session, and with it a drain,
/// inside a send forever). A small receive buffer on the client keeps the bytes it takes to
/// fill the path to a few hundred kilobytes.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_at_the_send_deadline() {
    use futures::SinkExt;
    let (mut state, _) = state(true);
    state.limits = Limits {
        // the server must not stop reading for the rate, only for its own blocked send
        messages_per_second: 1e9,
        message_burst: 1e9,
        idle: Duration::from_secs(60),
        ..short()
    };
    let addr = serve(state.clone()).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}/ws"), tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    assert!(matches!(join(&mut ws, "live", None).await, ServerMessage::Joined { .. }));
    assert_eq!(state.rooms.participants(), 1);

    // every message an unknown type, so every one gets an error back, which nobody reads
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let bogus = Message::Text(serde_json::json!({"type": "bogus", "pad": "x".repeat(64)}).to_string().into());
        let mut sent = 0usize;
        while start.elapsed() < Duration::from_secs(20) {
            match tokio::time::timeout(Duration::from_secs(1), ws.send(bogus.clone())).await {
                Ok(Ok(())) => sent += 1,
                Ok(Err(_)) => break,
                Err(_) => {} // the server stopped reading: keep the write pending a while
            }
        }
        sent
    });
    let left = loop {
        if state.rooms.participants() == 0 {
            break start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the non-reading client still holds its session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let sent = writer.await.unwrap();
    let text = state.metrics.render();
    assert!(text.contains("sfu_signaling_timeouts_total{deadline=\"send\"} 1"), "{text}");
    // the buffers filled, then one send deadline (2 s) passed
    assert!(left >= Duration::from_secs(2), "left after {left:?}");
    eprintln!("left {left:?} after {sent} unread replies were asked for");
}
