//! One conference point: `rooms` rooms of `participants` participants, each publishing audio
//! and q/h/f VP8 simulcast and receiving every other participant's audio and video at one
//! layer, on this server or on Janus; once every participant receives everything, a window
//! measures the server's CPU per packet delivered and per packet the publishers sent.

use crate::fanout::{STEP, Target, receives, snapshot, wait_room_gone, window_stats};
use loadtest::{Client, Engine, Event, JoinOptions, PublishOptions, Role, procstat};
use signaling::protocol::TrackKind;
use std::time::{Duration, Instant};

/// What one conference point measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConferencePoint {
    /// Which server.
    pub server: String,
    /// Rooms.
    pub rooms: usize,
    /// Participants per room.
    pub participants: usize,
    /// Participants receiving every other one when the window started.
    pub ready: usize,
    /// Window length, seconds.
    pub window_s: f64,
    /// Packets the publishers sent per second (what the server takes in).
    pub inbound_pps: f64,
    /// Packets the participants received per second.
    pub delivered_pps: f64,
    /// Server CPU over the window, percent of one core.
    pub server_cpu_pct: f64,
    /// Server CPU microseconds per delivered packet.
    pub us_per_delivered: f64,
    /// Server CPU microseconds per inbound packet (everything it does for one, fan-out included).
    pub us_per_inbound: f64,
    /// Loss seen by the receivers, percent.
    pub loss_pct: f64,
    /// End-to-end latency p50, milliseconds.
    pub latency_p50_ms: Option<f64>,
    /// p99 of the same.
    pub latency_p99_ms: Option<f64>,
    /// Server RSS at the end of the window, bytes.
    pub rss_bytes: u64,
}

/// Waits until `c` was offered `k` remote videos; their track ids.
async fn offered_videos(c: &mut Client, k: usize) -> anyhow::Result<Vec<String>> {
    loop {
        let tracks = c
            .wait_event(STEP, "subscriber offer", |e| match e {
                Event::Negotiated { role: Role::Subscriber, tracks } => Some(tracks.clone()),
                _ => None,
            })
            .await?;
        let videos: Vec<String> =
            tracks.values().filter(|t| t.kind == TrackKind::Video).map(|t| t.track.clone()).collect();
        if videos.len() >= k {
            return Ok(videos);
        }
    }
}

/// Whether a receiver gets `k` videos at `layer` and `k` audios.
fn receives_all(s: &loadtest::ClientStats, layer: u8, k: usize) -> bool {
    let video =
        s.tracks.iter().filter(|t| t.kind == TrackKind::Video && t.layer == Some(layer) && t.packets > 0).count();
    let audio = s.tracks.iter().filter(|t| t.kind == TrackKind::Audio && t.packets > 0).count();
    video >= k && audio >= k && receives(s, layer, false)
}

/// Measures one conference point (see the module doc).
#[allow(clippy::too_many_arguments)]
pub async fn run_point(
    target: Target<'_>,
    engines: &[Engine],
    rooms: usize,
    participants: usize,
    layer: &str,
    window: Duration,
    settle: Duration,
    ready_timeout: Duration,
) -> anyhow::Result<ConferencePoint> {
    let layer_index =
        ["q", "h", "f"].iter().position(|l| *l == layer).ok_or_else(|| anyhow::anyhow!("layer q, h or f"))? as u8;
    let pid = target.pid();
    let others = participants.saturating_sub(1);
    // publishers, and the clients that receive (the same ones on this server; a subscriber
    // handle per participant on Janus)
    let mut senders: Vec<Client> = Vec::new();
    let mut receivers: Vec<Client> = Vec::new();
    for r in 0..rooms {
        let mut feeds = Vec::new();
        let janus_room = 5000 + r as u64;
        for p in 0..participants {
            let opts =
                JoinOptions { timeout: STEP, ..JoinOptions::on(&engines[(r * participants + p) % engines.len()]) };
            let name = format!("p{p}");
            let mut c = match target {
                Target::Sfu(server) => {
                    Client::join(&format!("ws://{}/ws", server.http), &format!("conf-{r}"), &name, opts).await?
                }
                Target::Janus(_, janus) => {
                    if p == 0 {
                        janus.create_room(janus_room).await?;
                    }
                    let (c, feed) = janus.publisher(janus_room, &name, opts).await?;
                    feeds.push(feed);
                    c
                }
            };
            c.publish_with(PublishOptions::default()).await?;
            c.wait_connected(Role::Publisher, STEP).await?;
            senders.push(c);
        }
        if let Target::Janus(_, janus) = target {
            for (p, _) in feeds.iter().enumerate() {
                let opts =
                    JoinOptions { timeout: STEP, ..JoinOptions::on(&engines[(r * participants + p) % engines.len()]) };
                let rest: Vec<u64> = feeds.iter().enumerate().filter(|(q, _)| *q != p).map(|(_, f)| *f).collect();
                receivers.push(janus.subscriber_of(janus_room, &rest, &format!("p{p}-sub"), opts).await?);
            }
        }
    }
    // on this server a participant's one client also receives
    if receivers.is_empty() {
        receivers = std::mem::take(&mut senders);
    }
    for c in receivers.iter_mut() {
        for v in offered_videos(c, others).await? {
            c.set_layer(&v, Some(layer))?;
        }
    }
    let ready_by = Instant::now() + ready_timeout;
    let mut ready = 0;
    while Instant::now() < ready_by {
        ready = snapshot(&receivers).await.iter().filter(|s| receives_all(s, layer_index, others)).count();
        if ready == receivers.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(settle).await;

    let sending = |stats: &[loadtest::ClientStats]| -> u64 {
        stats.iter().filter_map(|s| s.publisher.as_ref()).map(|p| p.audio_packets + p.video_packets).sum()
    };
    let s0 = snapshot(&receivers).await;
    let out0 = if senders.is_empty() { s0.clone() } else { snapshot(&senders).await };
    let (p0, t0) = (procstat::sample(Some(pid))?, Instant::now());
    tokio::time::sleep(window).await;
    let (p1, elapsed) = (procstat::sample(Some(pid))?, t0.elapsed().as_secs_f64());
    let s1 = snapshot(&receivers).await;
    let out1 = if senders.is_empty() { s1.clone() } else { snapshot(&senders).await };
    let (received, lost, latency) = window_stats(&s0, &s1);
    let inbound = sending(&out1).saturating_sub(sending(&out0));
    let cpu_s = p1.cpu_s() - p0.cpu_s();
    let point = ConferencePoint {
        server: String::new(),
        rooms,
        participants,
        ready,
        window_s: elapsed,
        inbound_pps: inbound as f64 / elapsed,
        delivered_pps: received as f64 / elapsed,
        server_cpu_pct: 100.0 * cpu_s / elapsed,
        us_per_delivered: if received > 0 { cpu_s * 1e6 / received as f64 } else { f64::NAN },
        us_per_inbound: if inbound > 0 { cpu_s * 1e6 / inbound as f64 } else { f64::NAN },
        loss_pct: if received + lost > 0 { 100.0 * lost as f64 / (received + lost) as f64 } else { 0.0 },
        latency_p50_ms: latency.quantile(0.5).map(|v| v as f64 / 1000.0),
        latency_p99_ms: latency.quantile(0.99).map(|v| v as f64 / 1000.0),
        rss_bytes: p1.rss_bytes,
    };
    drop(receivers);
    drop(senders);
    wait_room_gone(target, Duration::from_secs(10)).await;
    Ok(point)
}

/// The conference points as a markdown table.
pub fn markdown(points: &[ConferencePoint]) -> String {
    let mut s = String::from(
        "| server | rooms x participants | ready | inbound pkt/s | delivered pkt/s | server CPU | µs/inbound pkt | µs/delivered pkt | loss % | p50 / p99 ms | RSS MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in points {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        s.push_str(&format!(
            "| {} | {}x{} | {}/{} | {:.0} | {:.0} | {:.1}% | {:.1} | {:.2} | {:.3} | {} / {} | {:.1} |\n",
            p.server,
            p.rooms,
            p.participants,
            p.ready,
            p.rooms * p.participants,
            p.inbound_pps,
            p.delivered_pps,
            p.server_cpu_pct,
            p.us_per_inbound,
            p.us_per_delivered,
            p.loss_pct,
            ms(p.latency_p50_ms),
            ms(p.latency_p99_ms),
            p.rss_bytes as f64 / (1024.0 * 1024.0),
        ));
    }
    s
}
