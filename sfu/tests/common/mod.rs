//! Shared setup of the loopback integration tests: an in-process server on 127.0.0.1 with
//! ephemeral ports, and headless clients from the `loadtest` crate on one engine task.

#![allow(dead_code)]

use clap::Parser;
use loadtest::{Client, ClientError, Engine, Event, JoinOptions, Role};
use signaling::protocol::{ServerMessage, TrackInfo, TrackKind};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Generous bound for one step (connecting, a keyframe after a PLI, ...).
pub const STEP: Duration = Duration::from_secs(10);

/// A running server and an engine for its clients.
pub struct Harness {
    pub server: sfu::server::Server,
    pub url: String,
    pub engine: Engine,
}

impl Harness {
    /// Starts a dev-mode server on loopback ports and an engine.
    pub async fn start() -> Harness {
        Harness::start_with(&[]).await
    }

    /// Starts a dev-mode server with `args` added to its command line.
    pub async fn start_with(args: &[&str]) -> Harness {
        Harness::start_configured(args, |_| {}).await
    }

    /// Starts a dev-mode server with `args` added to its command line, then `edit` applied
    /// to its configuration (for settings that have no flag).
    pub async fn start_configured(args: &[&str], edit: impl FnOnce(&mut sfu::config::Config)) -> Harness {
        // As the binary does: logs, plus the counter of packets `rtc` rejects internally.
        let filter = tracing_subscriber::EnvFilter::try_from_env("TEST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rtc_dtls=error"));
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(filter))
            .with(sfu::telemetry::RejectLayer.with_filter(sfu::telemetry::reject_filter()))
            .try_init();
        let base = ["sfu", "--dev", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"];
        let mut config = sfu::config::Config::parse_from(base.iter().chain(args));
        edit(&mut config);
        let server = sfu::server::start(&config).await.expect("server starts");
        let url = format!("ws://{}/ws", server.http);
        Harness { server, url, engine: Engine::spawn() }
    }

    /// Joins `room` as `name` on the shared engine.
    pub async fn join(&self, room: &str, name: &str) -> Client {
        Client::join(&self.url, room, name, JoinOptions::on(&self.engine)).await.expect("join")
    }

    /// Joins and publishes audio + q/h/f video; returns once the publisher connection is up.
    pub async fn publisher(&self, room: &str, name: &str) -> Client {
        let mut c = self.join(room, name).await;
        c.publish().await.expect("publish");
        c.wait_connected(Role::Publisher, STEP).await.expect("publisher connects");
        c
    }

    /// Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        http_get(self.server.http, "/metrics").await
    }
}

/// A plain HTTP/1.0 GET (no client library needed for one request).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect http");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).await.expect("read");
    body
}

/// The value of `sfu_dropped_packets_total{reason="..."}` in a metrics text, 0 if absent.
pub fn dropped_metric(metrics: &str, reason: &str) -> u64 {
    let key = format!("sfu_dropped_packets_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse::<f64>().expect("number") as u64)
        .unwrap_or(0)
}

/// Waits until `client` knows `n` remote tracks (from `joined` or `track_published`).
pub async fn remote_tracks(client: &mut Client, n: usize) -> Vec<TrackInfo> {
    let mut tracks: Vec<TrackInfo> =
        client.participants_at_join().iter().flat_map(|p| p.tracks.iter().cloned()).collect();
    while tracks.len() < n {
        let t = client
            .wait_event(STEP, "track_published", |e| match e {
                Event::Server(ServerMessage::TrackPublished { track, .. }) => Some(track.clone()),
                _ => None,
            })
            .await
            .expect("track published");
        if !tracks.iter().any(|x| x.id == t.id) {
            tracks.push(t);
        }
    }
    tracks
}

/// The id of the first track of `kind`.
pub fn track_of(tracks: &[TrackInfo], kind: TrackKind) -> String {
    tracks.iter().find(|t| t.kind == kind).map(|t| t.id.clone()).expect("track of kind")
}

/// Waits for `layer_changed` of `track` to `layer`.
pub async fn wait_layer_changed(client: &mut Client, track: &str, layer: &str) -> Result<(), ClientError> {
    client
        .wait_event(STEP, &format!("layer_changed {layer}"), |e| match e {
            Event::Server(ServerMessage::LayerChanged { track: t, layer: Some(l), .. }) if t == track && l == layer => {
                Some(())
            }
            _ => None,
        })
        .await
}
