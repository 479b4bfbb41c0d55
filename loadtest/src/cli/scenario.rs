//! Running a scenario: the join plan, one small task per client (join at its ramp slot,
//! publish, ask for the layer, watch events and stats), a measured window after the ramp,
//! and the outcome of every client at the end.
//!
//! Timeline: joins are spread evenly over `--ramp`; the measured window starts [`SETTLE`]
//! after the ramp and lasts `--duration`; every client snapshots its stats at both ends of
//! the window, so loss and latency exclude the joins.

use super::args::{Common, Scenario};
use loadtest::{Client, ClientError, ClientStats, Engine, EngineOptions, Event, JoinOptions, PublishOptions, Role};
use signaling::auth::{ApiKey, Grants, TokenRequest};
use signaling::protocol::{ServerMessage, TrackKind};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

/// Time between the last join and the start of the measured window.
pub const SETTLE: Duration = Duration::from_secs(2);
/// How often clients' stats snapshots are refreshed (progress only needs about one a second).
const STATS_INTERVAL: Duration = Duration::from_millis(500);

/// One client of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSpec {
    /// Room to join.
    pub room: String,
    /// Display name (unique within the run).
    pub name: String,
    /// Publishes audio + simulcast video.
    pub publish: bool,
    /// Remote tracks it should receive.
    pub expected_tracks: usize,
}

impl JoinSpec {
    /// Receives media (a subscriber in the sense of the capacity figures).
    pub fn subscribes(&self) -> bool {
        self.expected_tracks > 0
    }
}

/// The clients of a scenario, in join order.
pub fn plan(scenario: &Scenario) -> Vec<JoinSpec> {
    let prefix = &scenario.common().room_prefix;
    match scenario {
        Scenario::Conference { rooms, participants, .. } => {
            let per_room = 2 * (*participants as usize - 1);
            (0..*rooms)
                .flat_map(|r| {
                    (0..*participants).map(move |p| JoinSpec {
                        room: format!("{prefix}-{r}"),
                        name: format!("r{r}-p{p}"),
                        publish: true,
                        expected_tracks: per_room,
                    })
                })
                .collect()
        }
        Scenario::Broadcast { viewers, .. } => {
            let room = format!("{prefix}-0");
            let publisher =
                JoinSpec { room: room.clone(), name: "publisher".into(), publish: true, expected_tracks: 0 };
            let viewers = (0..*viewers).map(|v| JoinSpec {
                room: room.clone(),
                name: format!("viewer-{v}"),
                publish: false,
                expected_tracks: 2,
            });
            std::iter::once(publisher).chain(viewers).collect()
        }
    }
}

/// Live counters of one client, read by the progress bar.
#[derive(Default)]
pub struct Slot {
    /// 0 joining, 1 connected, 2 failed.
    pub state: AtomicU64,
    /// Packets received so far (all tracks).
    pub packets: AtomicU64,
    /// Packets lost so far (all tracks).
    pub lost: AtomicU64,
}

/// [`Slot::state`] of a client whose expected connections are all up (0: still joining).
pub const CONNECTED: u64 = 1;
/// Join refused or a connection failed.
pub const FAILED: u64 = 2;

/// What a client saw, for the report.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The plan entry.
    pub spec: Option<JoinSpec>,
    /// Why it failed to join or to publish.
    pub error: Option<String>,
    /// Time from starting the join to the last expected connection being up.
    pub connect_time: Option<Duration>,
    /// A connection went down after being up, or the server closed the socket.
    pub dropped: bool,
    /// Times ICE reported a connection disconnected (transient; see [`Event::Interrupted`]).
    pub interruptions: u32,
    /// Codes of the server's `error` messages.
    pub server_errors: Vec<String>,
    /// Stats at the start of the measured window (`None`: it joined later; count everything).
    pub window_start: Option<ClientStats>,
    /// Stats at the end.
    pub end: Option<ClientStats>,
    /// It received through the emulated downlink (`--downlink-kbps`).
    pub impaired: bool,
}

/// When things happen, shared by every client task.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// Start of the run.
    pub start: Instant,
    /// Start of the measured window.
    pub window: Instant,
    /// End of the run.
    pub end: Instant,
}

impl Timeline {
    /// The timeline of `common`'s ramp and duration, from now.
    pub fn new(common: &Common) -> Self {
        let start = Instant::now();
        let window = start + common.ramp + SETTLE;
        Timeline { start, window, end: window + common.duration }
    }

    /// Join time of client `i` of `n`.
    pub fn join_at(&self, ramp: Duration, i: usize, n: usize) -> Instant {
        self.start + ramp.mul_f64(i as f64 / n.max(1) as f64)
    }
}

/// Everything the client tasks share.
pub struct Shared {
    /// Flags.
    pub common: Common,
    /// One counter block per client, in plan order.
    pub slots: Vec<Slot>,
    /// The timeline.
    pub timeline: Timeline,
    /// Turns true when the run must stop early (Ctrl-C).
    pub stop: watch::Receiver<bool>,
}

/// Completes once the run is told to stop (never, if the stop sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Spawns the engines and one task per client; returns their outcomes in plan order.
pub async fn run(shared: Arc<Shared>, plan: Vec<JoinSpec>) -> Vec<Outcome> {
    let opts = EngineOptions {
        stats_interval: STATS_INTERVAL,
        decrypt_in_engine: !shared.common.rtc_receive,
        ..Default::default()
    };
    let engines: Vec<Engine> = (0..shared.common.engines).map(|_| Engine::spawn_with(opts.clone())).collect();
    let n = plan.len();
    let tasks: Vec<_> = plan
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            let engine = engines[i % engines.len()].clone();
            let join_at = shared.timeline.join_at(shared.common.ramp, i, n);
            tokio::spawn(run_client(shared.clone(), i, spec, engine, join_at))
        })
        .collect();
    drop(engines);
    let mut outcomes = Vec::with_capacity(n);
    for t in tasks {
        outcomes.push(t.await.unwrap_or_else(|e| Outcome { error: Some(format!("task: {e}")), ..Default::default() }));
    }
    outcomes
}

fn token_for(common: &Common, spec: &JoinSpec) -> Result<Option<String>, String> {
    if let Some(t) = &common.token {
        return Ok(Some(t.clone()));
    }
    let (Some(key), Some(secret)) = (&common.key, &common.secret) else { return Ok(None) };
    let key = ApiKey { key: key.clone(), secret: secret.clone() };
    let ttl = common.ramp + common.duration + Duration::from_secs(3600);
    let grants = Grants { join: true, publish: spec.publish, subscribe: true, admin: false };
    let req = TokenRequest {
        identity: format!("{}-{}", spec.room, spec.name),
        name: Some(spec.name.clone()),
        room: Some(spec.room.clone()),
        grants,
        ttl,
    };
    signaling::auth::issue(&key, &req).map(|(t, _)| Some(t)).map_err(|e| format!("cannot sign a token: {e}"))
}

/// Joins, waits until `deadline` for the join (and publish) to complete.
async fn join(shared: &Shared, spec: &JoinSpec, engine: Engine, impaired: bool) -> Result<Client, String> {
    let c = &shared.common;
    let token = token_for(c, spec)?;
    let opts = JoinOptions {
        engine: Some(engine),
        token,
        timeout: c.join_timeout,
        max_pending_events: 256,
        transport: c.transport,
    };
    let http = || http_of(&c.url).ok_or_else(|| format!("--url {}: no host:port to send WHIP/WHEP to", c.url));
    let client = if c.whep && !spec.publish {
        loadtest::wish::viewer(http()?, &spec.room, None, opts.token.clone(), opts).await.map(|(c, _)| c)
    } else if c.whip && spec.publish {
        loadtest::wish::publisher(http()?, &spec.room, opts.token.clone(), opts).map(|(c, _)| c)
    } else {
        Client::join(&c.url, &spec.room, &spec.name, opts).await
    }
    .map_err(|e| describe(&e))?;
    if impaired && let Some(kbps) = c.downlink_kbps {
        let rate = bwe::Bitrate::kbps(kbps);
        let link = bwe::netem::LinkConfig {
            loss: c.downlink_loss_pct / 100.0,
            ..bwe::netem::LinkConfig::new(rate, c.downlink_delay)
        };
        client.set_downlink(Some(link)).map_err(|e| describe(&e))?;
    }
    if spec.publish {
        let opts = PublishOptions { temporal_layers: c.temporal_layers, ..PublishOptions::default() };
        client.publish_with(opts).await.map_err(|e| describe(&e))?;
    }
    Ok(client)
}

/// The HTTP address of a `ws://host:port/...` URL.
fn http_of(url: &str) -> Option<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next()?;
    hostport.to_socket_addrs().ok()?.next()
}

/// The protocol's snake_case name of an error code.
fn code_name(code: &signaling::protocol::ErrorCode) -> String {
    serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| format!("{code:?}"))
}

/// A short reason, the same for every client that failed the same way (the report counts them).
fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Rejected { code, .. } => format!("rejected: {}", code_name(code)),
        ClientError::Timeout(_) => "join timed out".into(),
        ClientError::WebSocket(_) | ClientError::Io(_) | ClientError::Closed => "connection failed".into(),
        other => other.to_string(),
    }
}

/// Whether plan entry `i` is behind the emulated downlink: `share_pct` of the entries,
/// spread evenly.
pub fn impaired(i: usize, share_pct: f64) -> bool {
    let share = (share_pct / 100.0).clamp(0.0, 1.0);
    ((i + 1) as f64 * share).floor() > (i as f64 * share).floor()
}

/// One client from its ramp slot to the end of the run.
async fn run_client(shared: Arc<Shared>, i: usize, spec: JoinSpec, engine: Engine, join_at: Instant) -> Outcome {
    let slot = &shared.slots[i];
    let t = shared.timeline;
    let mut stop = shared.stop.clone();
    let behind =
        shared.common.downlink_kbps.is_some() && spec.subscribes() && impaired(i, shared.common.downlink_share_pct);
    let mut out = Outcome { spec: Some(spec.clone()), impaired: behind, ..Default::default() };
    tokio::select! {
        _ = sleep_until(join_at) => {}
        _ = stopped(&mut stop) => return out,
    }
    let started = Instant::now();
    let joined = tokio::select! {
        r = join(&shared, &spec, engine, behind) => r,
        _ = sleep_until(t.end) => Err("join did not finish before the end of the run".into()),
        _ = stopped(&mut stop) => Err("stopped while joining".into()),
    };
    let mut client = match joined {
        Ok(c) => c,
        Err(e) => {
            slot.state.store(FAILED, Ordering::Relaxed);
            out.error = Some(e);
            return out;
        }
    };
    let layer = shared.common.layer.rid();
    let mut layered: HashSet<String> = HashSet::new();
    let mut stats = client.stats_watch();
    let (mut pub_up, mut sub_up) = (!spec.publish, !spec.subscribes());
    let mut window_taken = Instant::now() >= t.window;
    loop {
        let wait = t.end.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        tokio::select! {
            biased;
            _ = sleep_until(t.end) => break,
            _ = stopped(&mut stop) => break,
            _ = sleep_until(t.window), if !window_taken => {
                window_taken = true;
                out.window_start = client.stats().await.ok();
            }
            ev = client.wait_event(wait, "any event", |e| Some(e.clone())) => match ev {
                Ok(Event::Connected(role)) => {
                    match role {
                        Role::Publisher => pub_up = true,
                        Role::Subscriber => sub_up = true,
                    }
                    if pub_up && sub_up && out.connect_time.is_none() {
                        out.connect_time = Some(started.elapsed());
                        slot.state.store(CONNECTED, Ordering::Relaxed);
                    }
                }
                Ok(Event::Negotiated { role: Role::Subscriber, tracks }) => {
                    for tr in tracks.values().filter(|tr| tr.kind == TrackKind::Video) {
                        if layered.insert(tr.track.clone()) {
                            let _ = client.set_layer(&tr.track, Some(layer));
                        }
                    }
                }
                Ok(Event::Interrupted(role)) => {
                    tracing::info!(client = i, ?role, "connection interrupted (ICE disconnected)");
                    out.interruptions += 1;
                }
                Ok(ev @ (Event::Disconnected(_) | Event::SignalingClosed)) => {
                    tracing::warn!(client = i, event = ?ev, connected = out.connect_time.is_some(), "client dropped");
                    out.dropped = true;
                    if out.connect_time.is_none() {
                        slot.state.store(FAILED, Ordering::Relaxed);
                        out.error.get_or_insert_with(|| "disconnected before connecting".into());
                        break;
                    }
                }
                Ok(Event::NegotiationFailed { error, .. }) => {
                    out.error.get_or_insert(format!("negotiation failed: {error}"));
                }
                Ok(Event::Server(ServerMessage::Error { code, .. })) => {
                    out.server_errors.push(code_name(&code));
                }
                Ok(_) => {}
                Err(_) => break,
            },
            Ok(()) = stats.changed() => {
                let s = stats.borrow_and_update();
                let (p, l) = s.tracks.iter().fold((0, 0), |(p, l), t| (p + t.packets, l + t.lost));
                slot.packets.store(p, Ordering::Relaxed);
                slot.lost.store(l, Ordering::Relaxed);
            }
        }
    }
    if out.connect_time.is_none() {
        slot.state.store(FAILED, Ordering::Relaxed);
        out.error.get_or_insert_with(|| "not connected by the end of the run".into());
    }
    out.end = client.stats().await.ok();
    out
}

#[cfg(test)]
mod impaired_tests {
    use super::impaired;

    #[test]
    fn the_share_is_spread_evenly() {
        // columns: share %, entries, expected impaired indexes
        let rows: &[(f64, usize, &[usize])] =
            &[(100.0, 4, &[0, 1, 2, 3]), (0.0, 4, &[]), (50.0, 6, &[1, 3, 5]), (25.0, 8, &[3, 7])];
        for &(share, n, want) in rows {
            let got: Vec<usize> = (0..n).filter(|&i| impaired(i, share)).collect();
            assert_eq!(got, want, "{share} % of {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::Cli;
    use clap::Parser;

    #[test]
    fn plans() {
        let cli = Cli::parse_from(["loadtest", "conference", "--rooms", "2", "--participants", "3"]);
        let p = plan(&cli.scenario);
        assert_eq!(p.len(), 6);
        assert!(p.iter().all(|s| s.publish && s.expected_tracks == 4));
        assert_eq!((p[0].room.as_str(), p[3].room.as_str()), ("load-0", "load-1"));
        let names: HashSet<_> = p.iter().map(|s| &s.name).collect();
        assert_eq!(names.len(), 6);

        let cli = Cli::parse_from(["loadtest", "broadcast", "--viewers", "4", "--room-prefix", "b"]);
        let p = plan(&cli.scenario);
        assert_eq!(p.len(), 5);
        assert!(p[0].publish && !p[0].subscribes());
        assert!(p[1..].iter().all(|s| !s.publish && s.subscribes() && s.room == "b-0"));
    }

    #[test]
    fn ramp_spreads_joins() {
        let cli = Cli::parse_from(["loadtest", "broadcast", "--ramp", "10s", "--duration", "5s"]);
        let t = Timeline::new(cli.scenario.common());
        assert_eq!(t.window - t.start, Duration::from_secs(12));
        assert_eq!(t.end - t.window, Duration::from_secs(5));
        let ramp = Duration::from_secs(10);
        assert_eq!(t.join_at(ramp, 0, 4), t.start);
        assert_eq!(t.join_at(ramp, 2, 4) - t.start, Duration::from_secs(5));
    }
}
