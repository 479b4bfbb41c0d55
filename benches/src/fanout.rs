//! One point of the fan-out macro benchmark: one publisher (audio + q/h/f VP8 simulcast) and
//! N subscribers asking for one layer, in a fresh room of a real `sfu` process; once every
//! subscriber receives, a fixed window measures the server's CPU time (`/proc/PID/stat`),
//! its forwarded packets (`/metrics`), the subscribers' loss and latency and the server's RSS.

use crate::janus_process::JanusProcess;
use crate::prom;
use crate::sfu_process::SfuProcess;
use futures::StreamExt;
use loadtest::janus::Janus;
use loadtest::{Client, ClientStats, Engine, Event, Histogram, JoinOptions, Role, procstat};
use signaling::protocol::TrackKind;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time allowed for one connection step (join, publish, connect).
pub(crate) const STEP: Duration = Duration::from_secs(20);

/// How a point is measured.
#[derive(Debug, Clone)]
pub struct Options {
    /// Layer subscribers ask for (`q`, `h`, `f`).
    pub layer: String,
    /// Length of the measured window.
    pub window: Duration,
    /// Wait between "every subscriber receives" and the window.
    pub settle: Duration,
    /// Longest wait for every subscriber to receive its layer.
    pub ready_timeout: Duration,
    /// Subscribers joining at once.
    pub join_concurrency: usize,
    /// Rooms measured at once, each with a publisher and the point's N subscribers.
    pub rooms: usize,
    /// Publishers pace video at this multiple of its bitrate (`None`: each frame one burst).
    pub pacing: Option<f64>,
    /// Subscribers count packets from the clear RTP header without decrypting
    /// ([`loadtest::EngineOptions::sink_media`]): loss from sequence numbers, no latency.
    pub sink: bool,
    /// How subscribers' media reach the server (publishers use UDP).
    pub transport: loadtest::MediaTransport,
}

/// The server a point measures.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// This server (its `/metrics` adds the server's own counts).
    Sfu(&'a SfuProcess),
    /// Janus's VideoRoom, every client a handle on one session.
    Janus(&'a JanusProcess, &'a Arc<Janus>),
}

impl Target<'_> {
    pub(crate) fn pid(&self) -> u32 {
        match self {
            Target::Sfu(s) => s.pid,
            Target::Janus(j, _) => j.pid,
        }
    }

    /// This server's metrics (Janus has none to compare).
    async fn scrape(&self) -> anyhow::Result<Option<String>> {
        match self {
            Target::Sfu(s) => Ok(Some(prom::scrape(s.http).await?)),
            Target::Janus(..) => Ok(None),
        }
    }
}

/// Where a room's subscribers join.
#[derive(Clone)]
enum RoomRef {
    Sfu { url: String, room: String },
    Janus { janus: Arc<Janus>, room: u64, feed: u64 },
}

/// What one point measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Point {
    /// Which server binary (and extra flags) was measured.
    pub server: String,
    /// Subscribers asked for, per room.
    pub n: usize,
    /// Rooms (each with one publisher and `n` subscribers).
    pub rooms: usize,
    /// Subscribers that joined and connected.
    pub connected: usize,
    /// Subscribers receiving audio and the requested video layer when the window started.
    pub ready: usize,
    /// Window length, seconds.
    pub window_s: f64,
    /// `sfu_rtp_forwarded_packets_total` increase per second (this server only).
    pub forwarded_pps: f64,
    /// Packets the subscribers received per second (both servers: the comparable count).
    pub delivered_pps: f64,
    /// Server CPU microseconds per packet a subscriber received.
    pub us_per_delivered: f64,
    /// `sfu_udp_out_packets_total` increase per second (forwarded + RTCP + ICE).
    pub udp_out_pps: f64,
    /// `sfu_rtp_in_packets_total` increase per second (from the publisher).
    pub rtp_in_pps: f64,
    /// Server CPU (user + system) over the window, percent of one core.
    pub server_cpu_pct: f64,
    /// Server CPU microseconds per forwarded packet.
    pub us_per_forwarded: f64,
    /// The user-mode part of it: the server's own code (forwarding, SRTP, `rtc`).
    pub us_user_per_forwarded: f64,
    /// The kernel part: mostly the sends, and on loopback the kernel also delivers each
    /// datagram to the receiving socket within the sender's system call.
    pub us_system_per_forwarded: f64,
    /// Forwarded packets per second one core would carry at that cost.
    pub forwarded_pps_per_core: f64,
    /// Loss seen by the subscribers in the window, percent.
    pub loss_pct: f64,
    /// Subscribers' end-to-end latency p50 / p99, milliseconds.
    pub latency_p50_ms: Option<f64>,
    /// p99 of the same.
    pub latency_p99_ms: Option<f64>,
    /// `sfu_forward_delay_seconds` p50 / p99 over the window, microseconds.
    pub forward_delay_p50_us: Option<f64>,
    /// p99 of the same.
    pub forward_delay_p99_us: Option<f64>,
    /// Server VmRSS at the end of the window, bytes.
    pub rss_bytes: u64,
    /// `sfu_subscribed_tracks` (audio + video) during the window.
    pub subscribed_tracks: u64,
    /// RSS growth since before the room existed, per subscribed track, KiB.
    pub rss_kib_per_track: Option<f64>,
    /// CPU of this (load generating) process over the window, percent of one core.
    pub loadgen_cpu_pct: f64,
}

/// Where the window of this point is profiled with `perf record`.
#[derive(Debug, Clone)]
pub struct Perf {
    /// Output file.
    pub output: PathBuf,
    /// Extra `perf record` arguments (e.g. `--call-graph dwarf`).
    pub args: Vec<String>,
}

async fn join_subscriber(
    room: RoomRef,
    i: usize,
    engine: Engine,
    layer: String,
    transport: loadtest::MediaTransport,
) -> Option<Client> {
    let opts = JoinOptions { timeout: STEP, transport, ..JoinOptions::on(&engine) };
    let name = format!("sub-{i}");
    let mut c = match room {
        RoomRef::Sfu { url, room } => Client::join(&url, &room, &name, opts).await.ok()?,
        RoomRef::Janus { janus, room, feed } => match janus.subscriber(room, feed, &name, opts).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("# janus subscriber {i}: {e}");
                return None;
            }
        },
    };
    // The first offer may precede the publisher's video (its track opens with its first
    // packet): wait for the offer that carries video, then cap its layer.
    let video = loop {
        let tracks = c
            .wait_event(STEP, "subscriber offer", |e| match e {
                Event::Negotiated { role: Role::Subscriber, tracks } => Some(tracks.clone()),
                _ => None,
            })
            .await
            .ok()?;
        let video: Vec<String> =
            tracks.values().filter(|t| t.kind == TrackKind::Video).map(|t| t.track.clone()).collect();
        if !video.is_empty() {
            break video;
        }
    };
    for t in &video {
        c.set_layer(t, Some(&layer)).ok()?;
    }
    c.wait_connected(Role::Subscriber, STEP).await.ok()?;
    Some(c)
}

pub(crate) fn receives(s: &ClientStats, layer: u8, sink: bool) -> bool {
    if sink {
        // audio and video arrive (the layer cannot be seen without decrypting)
        return s.sink.iter().filter(|x| x.packets > 0).count() >= 2;
    }
    let video = s.tracks.iter().any(|t| t.kind == TrackKind::Video && t.layer == Some(layer) && t.packets > 0);
    let audio = s.tracks.iter().any(|t| t.kind == TrackKind::Audio && t.packets > 0);
    video && audio
}

pub(crate) async fn snapshot(clients: &[Client]) -> Vec<ClientStats> {
    let mut out = Vec::with_capacity(clients.len());
    for c in clients {
        out.push(c.stats().await.unwrap_or_default());
    }
    out
}

/// Packets received, lost and latency of `after` minus `before`, over every client and track.
pub(crate) fn window_stats(before: &[ClientStats], after: &[ClientStats]) -> (u64, u64, Histogram) {
    let (mut received, mut lost, mut latency) = (0, 0, Histogram::default());
    for (b, a) in before.iter().zip(after) {
        for x in &a.sink {
            let old = b.sink.iter().find(|o| o.ssrc == x.ssrc);
            received += x.packets - old.map_or(0, |o| o.packets);
            lost += x.lost().saturating_sub(old.map_or(0, |o| o.lost()));
        }
        for t in &a.tracks {
            match b.track(&t.track) {
                Some(old) => {
                    received += t.packets.saturating_sub(old.packets);
                    lost += t.lost.saturating_sub(old.lost);
                    latency.merge(&t.latency.since(&old.latency));
                }
                None => {
                    received += t.packets;
                    lost += t.lost;
                    latency.merge(&t.latency);
                }
            }
        }
    }
    (received, lost, latency)
}

/// Waits (at most `within`) until the server has no published or subscribed track left.
pub(crate) async fn wait_room_gone(target: Target<'_>, within: Duration) {
    let Target::Sfu(server) = target else {
        tokio::time::sleep(Duration::from_secs(2)).await;
        return;
    };
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(m) = prom::scrape(server.http).await
            && prom::value(&m, "sfu_subscribed_tracks") == 0.0
            && prom::value(&m, "sfu_published_tracks") == 0.0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Measures one fan-out point (see the module doc); clients are spread over `engines`.
pub async fn run_point(
    target: Target<'_>,
    engines: &[Engine],
    n: usize,
    opts: &Options,
    perf: Option<&Perf>,
) -> anyhow::Result<Point> {
    let layer_index = ["q", "h", "f"]
        .iter()
        .position(|l| *l == opts.layer)
        .ok_or_else(|| anyhow::anyhow!("layer must be q, h or f"))? as u8;
    let pid = target.pid();
    let rss_before = procstat::sample(Some(pid))?.rss_bytes;

    // `rooms` rooms, each with its publisher and n subscribers
    let mut publishers = Vec::new();
    let mut rooms = Vec::new();
    for r in 0..opts.rooms.max(1) {
        let options = JoinOptions { timeout: STEP, ..JoinOptions::on(&engines[r % engines.len()]) };
        let (mut publisher, room) = match target {
            Target::Sfu(server) => {
                let (url, room) = (format!("ws://{}/ws", server.http), format!("fanout-{n}-{r}"));
                (Client::join(&url, &room, "publisher", options).await?, RoomRef::Sfu { url, room })
            }
            Target::Janus(_, janus) => {
                let room = 1000 + 100 * n as u64 + r as u64;
                janus.create_room(room).await?;
                let (c, feed) = janus.publisher(room, "publisher", options).await?;
                (c, RoomRef::Janus { janus: janus.clone(), room, feed })
            }
        };
        publisher.publish_with(loadtest::PublishOptions { pacing: opts.pacing, ..Default::default() }).await?;
        publisher.wait_connected(Role::Publisher, STEP).await?;
        publishers.push(publisher);
        rooms.push(room);
    }
    let total = n * opts.rooms.max(1);
    let subs: Vec<Client> = futures::stream::iter(0..total)
        .map(|i| {
            let engine = engines[i % engines.len()].clone();
            join_subscriber(rooms[i / n.max(1)].clone(), i, engine, opts.layer.clone(), opts.transport)
        })
        .buffer_unordered(opts.join_concurrency.max(1))
        .filter_map(|c| async move { c })
        .collect()
        .await;
    let connected = subs.len();
    let ready_by = Instant::now() + opts.ready_timeout;
    let mut ready = 0;
    while Instant::now() < ready_by {
        ready = snapshot(&subs).await.iter().filter(|s| receives(s, layer_index, opts.sink)).count();
        if ready == connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if ready < connected {
        // say what the stragglers receive, so a readiness problem can be told from a slow join
        for s in snapshot(&subs).await.iter().filter(|s| !receives(s, layer_index, opts.sink)).take(5) {
            let tracks: Vec<String> = s
                .tracks
                .iter()
                .map(|t| {
                    format!(
                        "{:?} layer {:?} packets {} before-keyframe {} keyframes {} plis {}",
                        t.kind, t.layer, t.packets, t.before_keyframe, t.keyframes, t.plis_sent
                    )
                })
                .collect();
            eprintln!(
                "# N={n}: not ready: {}",
                if tracks.is_empty() { "no tracks".to_string() } else { tracks.join("; ") }
            );
        }
    }
    tokio::time::sleep(opts.settle).await;

    let s0 = snapshot(&subs).await;
    let m0 = target.scrape().await?.unwrap_or_default();
    let (p0, me0, t0) = (procstat::sample(Some(pid))?, procstat::sample(None)?, Instant::now());
    let recorder = match perf {
        Some(p) => Some(
            tokio::process::Command::new("perf")
                .arg("record")
                .args(&p.args)
                .arg("-p")
                .arg(pid.to_string())
                .arg("-o")
                .arg(&p.output)
                .args(["--", "sleep", &opts.window.as_secs_f64().to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?,
        ),
        None => None,
    };
    tokio::time::sleep(opts.window).await;
    let (p1, me1, elapsed) = (procstat::sample(Some(pid))?, procstat::sample(None)?, t0.elapsed().as_secs_f64());
    let m1 = target.scrape().await?.unwrap_or_default();
    let s1 = snapshot(&subs).await;
    if let Some(mut r) = recorder {
        let _ = r.wait().await;
    }

    let rate = |name: &str| (prom::value(&m1, name) - prom::value(&m0, name)) / elapsed;
    let forwarded =
        prom::value(&m1, "sfu_rtp_forwarded_packets_total") - prom::value(&m0, "sfu_rtp_forwarded_packets_total");
    let cpu_s = p1.cpu_s() - p0.cpu_s();
    let us_per = if forwarded > 0.0 { cpu_s * 1e6 / forwarded } else { f64::NAN };
    let (received, lost, latency) = window_stats(&s0, &s1);
    let delay =
        prom::delta(&prom::buckets(&m0, "sfu_forward_delay_seconds"), &prom::buckets(&m1, "sfu_forward_delay_seconds"));
    // Janus has no such count: two tracks (audio, video) per connected subscriber
    let subscribed_tracks = match m1.is_empty() {
        true => 2 * connected as u64,
        false => prom::value(&m1, "sfu_subscribed_tracks") as u64,
    };
    let grown = p1.rss_bytes.saturating_sub(rss_before) as f64;
    let point = Point {
        server: String::new(),
        n,
        rooms: opts.rooms.max(1),
        connected,
        ready,
        window_s: elapsed,
        forwarded_pps: forwarded / elapsed,
        delivered_pps: received as f64 / elapsed,
        us_per_delivered: if received > 0 { cpu_s * 1e6 / received as f64 } else { f64::NAN },
        udp_out_pps: rate("sfu_udp_out_packets_total"),
        rtp_in_pps: rate("sfu_rtp_in_packets_total"),
        server_cpu_pct: 100.0 * cpu_s / elapsed,
        us_per_forwarded: us_per,
        us_user_per_forwarded: (p1.user_s - p0.user_s) * 1e6 / forwarded,
        us_system_per_forwarded: (p1.system_s - p0.system_s) * 1e6 / forwarded,
        forwarded_pps_per_core: 1e6 / us_per,
        loss_pct: if received + lost > 0 { 100.0 * lost as f64 / (received + lost) as f64 } else { 0.0 },
        latency_p50_ms: latency.quantile(0.5).map(|v| v as f64 / 1000.0),
        latency_p99_ms: latency.quantile(0.99).map(|v| v as f64 / 1000.0),
        forward_delay_p50_us: prom::quantile(&delay, 0.5).map(|v| v * 1e6),
        forward_delay_p99_us: prom::quantile(&delay, 0.99).map(|v| v * 1e6),
        rss_bytes: p1.rss_bytes,
        subscribed_tracks,
        rss_kib_per_track: (subscribed_tracks > 0).then(|| grown / subscribed_tracks as f64 / 1024.0),
        loadgen_cpu_pct: 100.0 * (me1.cpu_s() - me0.cpu_s()) / elapsed,
    };
    drop(subs);
    drop(publishers);
    wait_room_gone(target, Duration::from_secs(10)).await;
    Ok(point)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

/// The points as a markdown table.
pub fn markdown(points: &[Point]) -> String {
    let mut s = String::from(
        "| server | N | ready | fwd pkt/s | delivered pkt/s | server CPU | µs/fwd pkt | µs/delivered pkt | user / sys µs | fwd pkt/s/core | udp out/s | loss % | p50 / p99 ms | fwd delay p50/p99 µs | RSS MiB | KiB/track | loadgen CPU |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in points {
        s.push_str(&format!(
            "| {} | {} | {}/{} | {:.0} | {:.0} | {:.1}% | {:.2} | {:.2} | {:.2} / {:.2} | {:.0} | {:.0} | {:.3} | {} / {} | {}/{} | {:.1} | {} | {:.0}% |\n",
            p.server,
            if p.rooms > 1 { format!("{}x{}", p.rooms, p.n) } else { p.n.to_string() },
            p.ready,
            p.n * p.rooms.max(1),
            p.forwarded_pps,
            p.delivered_pps,
            p.server_cpu_pct,
            p.us_per_forwarded,
            p.us_per_delivered,
            p.us_user_per_forwarded,
            p.us_system_per_forwarded,
            p.forwarded_pps_per_core,
            p.udp_out_pps,
            p.loss_pct,
            opt(p.latency_p50_ms, 1),
            opt(p.latency_p99_ms, 1),
            opt(p.forward_delay_p50_us, 0),
            opt(p.forward_delay_p99_us, 0),
            p.rss_bytes as f64 / (1024.0 * 1024.0),
            opt(p.rss_kib_per_track, 1),
            p.loadgen_cpu_pct,
        ));
    }
    s
}
