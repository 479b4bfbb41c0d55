//! The HTTP listener's limits over real sockets: a client that trickles its request headers is
//! cut off at the header deadline, and connections past the per-address limit are closed at
//! once while the others keep working.

mod common;

use common::{Harness, http_get};

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A GET that tolerates being refused (an empty answer).
async fn try_get(addr: std::net::SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr).await else { return String::new() };
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.is_err() {
        return String::new();
    }
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body).await;
    String::from_utf8_lossy(&body).into_owned()
}

/// Reads until the server closes `s`; how long that took (`None`: still open after `limit`).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_cut_off_at_the_deadline() {
    let h = Harness::start_configured(&[], |c| c.http_header_timeout = Duration::from_millis(300)).await;
    let mut slow = TcpStream::connect(h.server.http).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap(); // never the blank line
    let took = closed_within(&mut slow, Duration::from_secs(5)).await.expect("closed by the server");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // a whole request still works
    assert!(http_get(h.server.http, "/healthz").await.contains(" 200 "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_address_limit_are_closed_at_once() {
    let h = Harness::start_with(&["--http-max-per-ip", "3"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(h.server.http).await.unwrap());
    }
    let mut fourth = TcpStream::connect(h.server.http).await.unwrap();
    assert!(closed_within(&mut fourth, Duration::from_secs(2)).await.is_some(), "the fourth is closed");
    let metrics_after_close = {
        drop(held.pop());
        // the slot comes back once the server sees the close: a request gets through
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = try_get(h.server.http, "/metrics").await;
            if text.contains(" 200 ") {
                break text;
            }
            assert!(Instant::now() < deadline, "a slot came back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(
        metrics_after_close.contains("sfu_http_refused_connections_total{limit=\"per_ip\"}"),
        "{metrics_after_close:.300}"
    );
    let refused = metrics_after_close
        .lines()
        .find_map(|l| l.strip_prefix("sfu_http_refused_connections_total{limit=\"per_ip\"} "))
        .map(|v| v.trim().parse::<f64>().unwrap())
        .unwrap();
    assert!(refused >= 1.0);
}

/// In a fleet the other nodes' addresses are spared the per-address limit: a node relays many
/// clients' sessions over its own connections. (This node's own URL is on 127.0.0.1, as the
/// test's client is, so loopback counts as a node address here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_nodes_address_is_spared_the_per_address_limit() {
    let redis = signaling::fleet::testing::RedisServer::start();
    let url = redis.url();
    let h = Harness::start_with(&["--http-max-per-ip", "2", "--redis", &url, "--fleet-heartbeat", "100ms"]).await;
    let fleet = h.server.fleet.clone().expect("in a fleet");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fleet.is_node_ip("127.0.0.1".parse().unwrap()) {
        assert!(Instant::now() < deadline, "the node read its own record");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(h.server.http).await.unwrap());
    }
    let answer = try_get(h.server.http, "/healthz").await;
    assert!(answer.contains(" 200 "), "a sixth connection from a node's address is served: {answer:?}");
    assert!(!h.metrics().await.contains("sfu_http_refused_connections_total{limit=\"per_ip\"}"));
    drop(held);
}
