//! The fleet directory against a real `redis-server` on loopback: placement (claim, relay,
//! takeover of a dead node's room), leases (renewed, re-claimed, lost, released), a Redis
//! outage (the node's own rooms go on, other joins get `unavailable`, recovery by itself), and
//! a WebSocket join relayed from one node to the room's node.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use signaling::fleet::directory::Directory;
use signaling::fleet::testing::RedisServer;
use signaling::fleet::{Fleet, FleetConfig, NodeId, Place, PlaceError};
use signaling::protocol::{ErrorCode, ServerMessage};
use signaling::{AppState, NodeState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const HEARTBEAT: Duration = Duration::from_millis(100);

struct Member {
    state: AppState,
    fleet: Arc<Fleet>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A node `id` of the fleet at `redis`, its heartbeat running; `url` is where others reach it.
fn member(redis: &str, id: &str, url: &str) -> Member {
    let (mut state, _) = state(true);
    let config = FleetConfig {
        redis: redis.to_string(),
        node_id: NodeId::from(id),
        url: url.to_string(),
        heartbeat: HEARTBEAT,
        prefix: "test:".into(),
    };
    let fleet = Fleet::new(config, state.node.clone(), state.rooms.clone(), &state.metrics.registry).unwrap();
    state.fleet = Some(fleet.clone());
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(fleet.clone().run(stop_rx));
    Member { state, fleet, stop, task }
}

async fn until(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn relay_to(p: Result<Place, PlaceError>) -> Option<NodeId> {
    match p {
        Ok(Place::Relay(r)) => Some(r.id),
        _ => None,
    }
}

#[tokio::test]
async fn rooms_are_claimed_relayed_renewed_released_and_taken_over_from_dead_nodes() {
    let redis = RedisServer::start();
    let dir = Directory::new(&redis.url(), "test:").unwrap();
    let a = member(&redis.url(), "a", "http://a");
    let b = member(&redis.url(), "b", "http://b");
    until("both nodes listed", Duration::from_secs(5), async || dir.nodes().await.unwrap().len() == 2).await;
    let id = NodeId::from;

    // a free room goes to the node that placed it (equal load); the other relays to it
    assert_eq!(a.fleet.place("r1", false).await, Ok(Place::Local));
    assert_eq!(dir.owner("r1").await.unwrap(), Some(id("a")));
    assert_eq!(relay_to(b.fleet.place("r1", false).await), Some(id("a")));
    // a relayed join is never relayed again
    assert_eq!(b.fleet.place("r1", true).await, Err(PlaceError::Moved(id("a"))));

    // the room lives on a: its lease is renewed past its length while it does
    a.state.rooms.join("r1").unwrap();
    tokio::time::sleep(a_lease() * 2).await;
    assert_eq!(dir.owner("r1").await.unwrap(), Some(id("a")), "renewed");

    // a room that empties is released at the next heartbeat
    a.state.rooms.leave("r1");
    until("r1 released", Duration::from_secs(5), async || dir.owner("r1").await.unwrap().is_none()).await;

    // a draining node gets no new room, but keeps the one it has
    a.state.rooms.join("kept").unwrap();
    until("kept claimed", Duration::from_secs(5), async || dir.owner("kept").await.unwrap() == Some(id("a"))).await;
    a.state.node.start_drain();
    until("a listed as draining", Duration::from_secs(5), async || {
        dir.nodes().await.unwrap().iter().any(|n| n.id == id("a") && n.state == NodeState::Draining)
    })
    .await;
    assert_eq!(relay_to(a.fleet.place("fresh", false).await), Some(id("b")), "placed on the serving node");
    assert_eq!(relay_to(b.fleet.place("kept", false).await), Some(id("a")), "its room stays");

    // a dies (no deregistration, no release): once its record expires its rooms are taken over
    // (the room's lease made long, as a node's outlives its record by two heartbeats)
    a.task.abort();
    dir.claim("kept", &id("a"), None, Duration::from_secs(60)).await.unwrap();
    until("a's record expired, as b reads the directory", Duration::from_secs(5), async || {
        b.fleet.nodes().iter().all(|n| n.id != id("a"))
    })
    .await;
    assert_eq!(b.fleet.place("kept", false).await, Ok(Place::Local), "taken over");
    assert_eq!(dir.owner("kept").await.unwrap(), Some(id("b")));
    let text = b.state.metrics.render();
    assert!(text.contains("sfu_fleet_room_leases_total{event=\"taken_over\"} 1"), "{text}");

    // b hosts a room whose key expired (re-claimed) or that another node took (lost)
    b.state.rooms.join("kept").unwrap();
    dir.release("kept", &id("b")).await.unwrap();
    until("re-claimed", Duration::from_secs(5), async || dir.owner("kept").await.unwrap() == Some(id("b"))).await;
    dir.claim("kept", &id("c"), Some(&id("b")), Duration::from_secs(60)).await.unwrap();
    until("lost counted", Duration::from_secs(5), async || {
        b.state.metrics.render().contains("sfu_fleet_room_leases_total{event=\"lost\"} 1")
    })
    .await;
    let text = b.state.metrics.render();
    assert!(text.contains("sfu_fleet_room_leases_total{event=\"reclaimed\"} 1"), "{text}");
    assert!(text.contains("sfu_fleet_directory_up 1"), "{text}");

    // leaving on purpose removes the node's record at once
    b.stop.send(true).unwrap();
    b.task.await.unwrap();
    assert!(dir.nodes().await.unwrap().is_empty());
}

#[tokio::test]
async fn without_a_fleet_the_api_says_so() {
    let (state, _) = state(true);
    state.rooms.join("here").unwrap();
    let app = signaling::app(state);
    let admin = admin_token();
    let (s, fleet) = call(&app, Method::GET, "/api/fleet", Some(&admin), None).await;
    assert_eq!(
        (s, fleet["enabled"].as_bool(), fleet["nodes"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(false), Some(0))
    );
    let (s, placed) = call(&app, Method::GET, "/api/fleet/rooms/here", Some(&admin), None).await;
    assert_eq!((s, placed["local"].as_bool()), (StatusCode::OK, Some(true)), "{placed}");
    let (s, _) = call(&app, Method::GET, "/api/fleet/rooms/elsewhere", Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

fn a_lease() -> Duration {
    HEARTBEAT * 5
}

#[tokio::test]
async fn without_redis_a_node_keeps_its_rooms_refuses_new_ones_and_recovers() {
    let mut redis = RedisServer::start();
    let port = redis.addr.port();
    let a = member(&redis.url(), "a", "http://a");
    assert_eq!(a.fleet.place("here", false).await, Ok(Place::Local));
    a.state.rooms.join("here").unwrap();

    redis.stop();
    let start = Instant::now();
    assert_eq!(a.fleet.place("elsewhere", false).await, Err(PlaceError::Unavailable));
    assert!(start.elapsed() < Duration::from_secs(3), "refused within the operation timeout: {:?}", start.elapsed());
    assert_eq!(a.fleet.place("here", false).await, Ok(Place::Local), "its own room takes joins");
    until("down in metrics", Duration::from_secs(5), async || {
        a.state.metrics.render().contains("sfu_fleet_directory_up 0")
    })
    .await;

    // back, empty (no persistence): the node re-registers and re-claims its room by itself
    let _redis = RedisServer::start_on(port);
    let dir = Directory::new(&format!("redis://127.0.0.1:{port}/0"), "test:").unwrap();
    until("re-claimed", Duration::from_secs(10), async || {
        dir.owner("here").await.ok().flatten() == Some(NodeId::from("a"))
    })
    .await;
    assert_eq!(a.fleet.place("elsewhere", false).await, Ok(Place::Local));
    assert!(a.state.metrics.render().contains("sfu_fleet_directory_up 1"));
}

#[tokio::test]
async fn a_join_reaching_another_node_is_relayed_to_the_rooms_node() {
    let redis = RedisServer::start();
    // the nodes' addresses are known only once they listen: bind first, then join the fleet
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr_a, addr_b) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let a = member(&redis.url(), "a", &format!("http://{addr_a}"));
    let b = member(&redis.url(), "b", &format!("http://{addr_b}"));
    for (l, s) in [(la, a.state.clone()), (lb, b.state.clone())] {
        tokio::spawn(async move { axum::serve(l, signaling::app(s)).await.unwrap() });
    }
    let dir = Directory::new(&redis.url(), "test:").unwrap();
    until("both nodes listed", Duration::from_secs(5), async || dir.nodes().await.unwrap().len() == 2).await;

    let mut first = connect(addr_a).await;
    assert!(matches!(join(&mut first, "meet", None).await, ServerMessage::Joined { .. }));
    let mut second = connect(addr_b).await;
    let ServerMessage::Joined { participants, .. } = join(&mut second, "meet", None).await else { panic!("joined") };
    assert_eq!(participants.len(), 1, "the second sees the first: one room");
    assert!(matches!(recv_any(&mut second).await, ServerMessage::Session { .. }), "session, through the relay");
    assert_eq!((a.state.rooms.participants(), b.state.rooms.participants()), (2, 0));
    // messages pass through both ways: an offer reaches a's room and its answer comes back
    send(&mut second, serde_json::json!({"type": "offer", "sdp": "v=0"})).await;
    assert!(matches!(recv(&mut second).await, ServerMessage::Answer { .. }));
    let text = b.state.metrics.render();
    assert!(text.contains("sfu_fleet_joins_total{placement=\"relayed\"} 1"), "{text}");
    assert!(text.contains("sfu_fleet_relayed_sessions 1"), "{text}");

    // the REST view of the fleet, asked of b
    let app = signaling::app(b.state.clone());
    let admin = admin_token();
    let (s, fleet) = call(&app, Method::GET, "/api/fleet", Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK, "{fleet}");
    assert_eq!((fleet["enabled"].as_bool(), fleet["node"].as_str()), (Some(true), Some("b")), "{fleet}");
    let ids: Vec<&str> = fleet["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b"], "{fleet}");
    let (s, placed) = call(&app, Method::GET, "/api/fleet/rooms/meet", Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK, "{placed}");
    assert_eq!((placed["node"].as_str(), placed["local"].as_bool()), (Some("a"), Some(false)), "{placed}");
    assert_eq!(placed["url"].as_str(), Some(format!("http://{addr_a}").as_str()));
    let (s, _) = call(&app, Method::GET, "/api/fleet/rooms/nowhere", Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // closing the client's socket ends the relayed session on both nodes
    futures::SinkExt::close(&mut second).await.unwrap();
    drop(second);
    until("left through the relay", Duration::from_secs(5), async || {
        a.state.rooms.participants() == 1 && b.state.metrics.render().contains("sfu_fleet_relayed_sessions 0")
    })
    .await;

    // a room whose node is listed but does not answer: the join is told to retry
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let ghost = signaling::fleet::NodeRecord {
        id: NodeId::from("ghost"),
        url: format!("http://{closed}"),
        state: NodeState::Serving,
        rooms: 1,
        participants: 1,
        version: "test".into(),
    };
    dir.heartbeat(&ghost, Duration::from_secs(60)).await.unwrap();
    dir.claim("haunted", &ghost.id, None, Duration::from_secs(60)).await.unwrap();
    let mut third = connect(addr_b).await;
    let reply = join(&mut third, "haunted", None).await;
    assert!(matches!(reply, ServerMessage::Error { code: ErrorCode::Unavailable, .. }), "{reply:?}");
    assert!(b.state.metrics.render().contains("sfu_fleet_joins_total{placement=\"refused\"} 1"));
    drop(first);
}
