//! Three `sfu` processes and a `redis-server` on loopback, one fleet: a publisher and two
//! subscribers joining one room through three different nodes meet in one room (on one node,
//! the others relaying their signaling; media straight to that node's port), receive each
//! other's audio and video and switch layers through the relay; then the room's node is
//! killed (SIGKILL) and the participants, joining again through the surviving nodes, continue
//! the room there once the dead node's record has expired.
//!
//! A second test drains a node past its deadline: its room is handed to the other node before
//! the participants are told to reconnect, and goes on there.
//!
//! Before the kill, Redis is stopped mid-call: the call goes on without a media gap, a new
//! join gets `unavailable`, and once Redis is back joins work again by themselves.
//!
//! Prints `FLEET takeover_ms=<from the kill to the first join placed again>`,
//! `FLEET_OUTAGE outage_ms=<Redis away> max_gap_ms=<largest media gap meanwhile>` and
//! `FLEET_DRAIN gap_ms=<from the reconnect to media again>`.

mod common;
mod process;

use common::STEP;
use loadtest::{Client, ClientError, Engine, Event, JoinOptions, Role};
use process::{LogsOnPanic, Node};
use signaling::fleet::testing::RedisServer;
use signaling::protocol::{ErrorCode, ServerMessage, TrackKind};
use std::time::{Duration, Instant};

const ROOM: &str = "fleet";
/// How long Redis is away mid-call (`FLEET_OUTAGE_SECONDS`, default 3).
static OUTAGE: std::sync::LazyLock<Duration> = std::sync::LazyLock::new(|| {
    Duration::from_secs(std::env::var("FLEET_OUTAGE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3))
});

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

/// Prometheus text of a node (empty when it does not answer).
async fn metrics(node: &Node) -> String {
    let get = common::http_get(node.http, "/metrics");
    tokio::time::timeout(Duration::from_secs(5), get).await.unwrap_or_default()
}

fn value(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0)
}

/// Waits until `node` reads `n` nodes in the directory.
async fn until_listed(node: &Node, n: usize) {
    let t = Instant::now();
    while value(&metrics(node).await, "sfu_fleet_nodes ") < n as f64 {
        assert!(t.elapsed() < STEP, "{n} nodes in the directory");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Joins `ROOM` through `node`, again and again while the fleet answers `unavailable` (the
/// room's node just died and its record has not expired yet).
async fn join(node: &Node, name: &str, engine: &Engine) -> Client {
    join_room(node, ROOM, name, engine).await
}

/// As [`join`], into `room`.
async fn join_room(node: &Node, room: &str, name: &str, engine: &Engine) -> Client {
    let deadline = Instant::now() + STEP;
    loop {
        let opts = JoinOptions { timeout: STEP, ..JoinOptions::on(engine) };
        match Client::join(&node.ws_url(), room, name, opts).await {
            Ok(c) => return c,
            Err(ClientError::Rejected { code: ErrorCode::Unavailable, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{name} joins through {}: {e}", node.name),
        }
    }
}

async fn publisher(node: &Node, name: &str, engine: &Engine) -> Client {
    let mut c = join(node, name, engine).await;
    c.publish().await.expect("publish");
    c.wait_connected(Role::Publisher, STEP).await.expect("publisher connects");
    c
}

/// Waits until `sub` receives the room's video (at `width`, if given) and audio. Tracks are
/// found by kind in what the client receives: their `track_published` may have been taken by
/// an earlier wait, or never sent (the tracks were listed in `joined`).
async fn receives(sub: &mut Client, who: &str, width: Option<u16>) {
    let video_frames = |s: &loadtest::ClientStats| {
        s.tracks.iter().filter(|t| t.kind == TrackKind::Video).map(|t| t.frames).max().unwrap_or(0)
    };
    let frames_then = video_frames(&sub.stats().await.unwrap());
    sub.wait_stats(STEP, &format!("{who} receives video and audio"), move |s| {
        let video = s.tracks.iter().any(|t| {
            t.kind == TrackKind::Video && t.frames >= frames_then + 25 && width.is_none_or(|w| t.width() == Some(w))
        });
        video && s.tracks.iter().any(|t| t.kind == TrackKind::Audio && t.packets >= 50)
    })
    .await
    .unwrap_or_else(|e| panic!("{who}: {e}"));
}

/// Which of `nodes` hosts the room (has its participants), by their metrics.
async fn host(nodes: &[&Node], participants: f64) -> usize {
    let deadline = Instant::now() + STEP;
    loop {
        for (i, n) in nodes.iter().enumerate() {
            if value(&metrics(n).await, "sfu_participants ") == participants {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no node hosts {participants} participants");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_joined_through_any_node_is_one_room_and_outlives_its_node() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let args = ["--redis", url.as_str(), "--fleet-heartbeat", "200ms", "--fleet-prefix", "fleet-test:"];
    let mut nodes = vec![
        Node::start_with("A", &args).await,
        Node::start_with("B", &args).await,
        Node::start_with("C", &args).await,
    ];
    let _logs = LogsOnPanic(nodes.iter().map(|n| (n.name, n.log.clone())).collect());
    let t = Instant::now();
    until_listed(&nodes[0], 3).await;

    // one participant through each node: one room
    let engine = Engine::spawn();
    let publ = publisher(&nodes[1], "pub", &engine).await;
    let mut sub_a = join(&nodes[0], "sub-a", &engine).await;
    let mut sub_c = join(&nodes[2], "sub-c", &engine).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let h = host(&all, 3.0).await;
    let relayed: f64 = {
        let mut sum = 0.0;
        for n in &nodes {
            sum += value(&metrics(n).await, "sfu_fleet_relayed_sessions ");
        }
        sum
    };
    assert_eq!(relayed, 2.0, "two of the three joins relayed to node {}", nodes[h].name);
    receives(&mut sub_a, "sub-a", None).await;
    receives(&mut sub_c, "sub-c", None).await;

    // a layer switch asked through a relay
    let video =
        sub_c.stats().await.unwrap().tracks.iter().find(|t| t.kind == TrackKind::Video).map(|t| t.track.clone());
    let video = video.expect("sub-c receives a video track");
    sub_c.set_layer(&video, Some("q")).unwrap();
    receives(&mut sub_c, "sub-c on q", Some(320)).await;
    eprintln!("room on node {} with joins through A, B and C after {:?}", nodes[h].name, t.elapsed());

    // Redis goes away mid-call: the call goes on, a join for another room is refused clearly
    let from_us = now_us();
    let outage = Instant::now();
    let port = redis.addr.port();
    redis.stop();
    let refused = Client::join(
        &nodes[0].ws_url(),
        "during-outage",
        "x",
        JoinOptions { timeout: STEP, ..JoinOptions::on(&engine) },
    )
    .await;
    assert!(
        matches!(refused, Err(ClientError::Rejected { code: ErrorCode::Unavailable, .. })),
        "a join needing the directory is refused with `unavailable`: {:?}",
        refused.map(|_| ())
    );
    tokio::time::sleep(OUTAGE.saturating_sub(outage.elapsed())).await;
    let _redis = RedisServer::start_on(port);
    let away = outage.elapsed();
    // back by itself: a join for a new room through another node works again
    let later = join_room(&nodes[2], "after-outage", "x", &engine).await;
    receives(&mut sub_a, "sub-a after the outage", None).await;
    let to_us = now_us();
    let mut max_gap = 0;
    for sub in [&sub_a, &sub_c] {
        for t in sub.stats().await.unwrap().tracks {
            max_gap = max_gap.max(t.arrivals.max_gap_between(from_us, to_us).expect("window kept"));
        }
    }
    assert!(max_gap < 500_000, "the call went on through the outage: largest gap {max_gap} us");
    println!("FLEET_OUTAGE outage_ms={} max_gap_ms={:.0}", away.as_millis(), max_gap as f64 / 1000.0);

    // the room's node dies; everyone joins again through the survivors
    let killed = Instant::now();
    nodes[h].kill9();
    drop((publ, sub_a, sub_c, later));
    let survivors: Vec<&Node> = nodes.iter().enumerate().filter(|(i, _)| *i != h).map(|(_, n)| n).collect();
    let publ = publisher(survivors[0], "pub-again", &engine).await;
    let takeover = killed.elapsed();
    let mut sub = join(survivors[1], "sub-again", &engine).await;
    receives(&mut sub, "sub-again", None).await;
    let h2 = host(&survivors, 2.0).await;
    // taken over from the dead node, or claimed anew if its lease ran out first
    let text = metrics(survivors[h2]).await;
    let leases = |e: &str| value(&text, &format!("sfu_fleet_room_leases_total{{event=\"{e}\"}} "));
    assert!(leases("taken_over") + leases("claimed") >= 1.0, "{text}");
    println!("FLEET takeover_ms={}", takeover.as_millis());
    drop((publ, sub));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_nodes_room_is_handed_off_and_goes_on() {
    let redis = RedisServer::start();
    let url = redis.url();
    let fleet = ["--redis", url.as_str(), "--fleet-heartbeat", "200ms", "--fleet-prefix", "drain-test:"];
    let (mut a, mut b) = (fleet.to_vec(), fleet.to_vec());
    a.extend(["--node-id", "A", "--drain-deadline", "2s"]);
    b.extend(["--node-id", "B"]);
    let mut nodes = [Node::start_with("A", &a).await, Node::start_with("B", &b).await];
    let dir = signaling::fleet::directory::Directory::new(&url, "drain-test:").unwrap();
    let _logs = LogsOnPanic(nodes.iter().map(|n| (n.name, n.log.clone())).collect());
    until_listed(&nodes[0], 2).await;
    // the room starts on A (its first join came through A)
    let engine = Engine::spawn();
    let mut publ = publisher(&nodes[0], "pub", &engine).await;
    let mut sub = join(&nodes[1], "sub", &engine).await;
    receives(&mut sub, "sub", None).await;
    assert_eq!(host(&[&nodes[0], &nodes[1]], 2.0).await, 0, "the room is on A");

    // A drains (SIGTERM); at its deadline both are told to reconnect and do so through B
    nodes[0].sigterm();
    let reconnect = |e: &Event| matches!(e, Event::Server(ServerMessage::Reconnect { .. })).then_some(());
    sub.wait_event(STEP, "reconnect", reconnect).await.expect("sub told to reconnect");
    let told = Instant::now();
    // handed to B before anyone was told
    assert_eq!(dir.owner(ROOM).await.unwrap(), Some(signaling::fleet::NodeId::from("B")));
    publ.wait_event(STEP, "reconnect", reconnect).await.expect("pub told to reconnect");
    drop((publ, sub));
    let publ = publisher(&nodes[1], "pub-again", &engine).await;
    let mut sub = join(&nodes[1], "sub-again", &engine).await;
    receives(&mut sub, "sub-again", None).await;
    let gap = told.elapsed();
    assert_eq!(host(&[&nodes[1]], 2.0).await, 0, "the room goes on on B");
    let status = tokio::time::timeout(STEP, nodes[0].child.wait()).await.expect("A exits").unwrap();
    assert!(status.success(), "A exits 0 after its drain: {status}");
    println!("FLEET_DRAIN gap_ms={}", gap.as_millis());
    drop((publ, sub));
}
