//! The REST API through the router without a socket (tower `oneshot`), on a fake media plane.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::json;
use signaling::NodeState;
use signaling::protocol::ServerMessage;
use std::time::Duration;

fn admin_routes(state: &signaling::AppState) -> Vec<(Method, String)> {
    signaling::routes(state)
        .into_iter()
        .filter(|r| r.admin)
        .map(|r| {
            (
                r.method.parse().unwrap(),
                r.path.replace("{room}", "r1").replace("{participant}", "PA_x").replace("{track}", "TR_x"),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_admin_route_refuses_bad_tokens_and_nothing_leaks() {
    let (state, seen) = state(false);
    let app = signaling::app(state.clone());
    let participant = join_token("r1");
    let cases: Vec<(Option<String>, StatusCode, &str)> = vec![
        (None, StatusCode::UNAUTHORIZED, "missing"),
        (Some(expired_admin_token()), StatusCode::UNAUTHORIZED, "expired"),
        (Some(forged_admin_token()), StatusCode::UNAUTHORIZED, "bad_signature"),
        (Some(unknown_key_admin_token()), StatusCode::UNAUTHORIZED, "unknown_key"),
        (Some("garbage".into()), StatusCode::UNAUTHORIZED, "malformed"),
        (Some(participant), StatusCode::FORBIDDEN, "no_admin_grant"),
    ];
    let routes = admin_routes(&state);
    assert!(routes.len() >= 9, "{routes:?}");
    for (method, path) in &routes {
        for (token, status, reason) in &cases {
            let body = (method == Method::POST).then(|| json!({"name": "r1", "muted": true}));
            let (got, body) = call(&app, method.clone(), path, token.as_deref(), body).await;
            assert_eq!(got, *status, "{method} {path} with {reason}: {body}");
            assert_eq!(body["reason"], *reason, "{method} {path}: {body}");
            let code = if *status == StatusCode::FORBIDDEN { "forbidden" } else { "unauthorized" };
            assert_eq!(body["error"], code);
            assert!(body["message"].is_string());
        }
    }
    // nothing happened: no room, no worker, still serving
    assert_eq!(state.rooms.len(), 0);
    assert!(seen.lock().unwrap().rooms.is_empty(), "no room worker was started");
    assert_eq!(state.node.state(), NodeState::Serving, "drain was not started");
    // a bearer with another scheme is a missing token
    let (s, body) = call_with_header(&app, "authorization", &format!("Basic {}", admin_token())).await;
    assert_eq!((s, body["reason"].as_str()), (StatusCode::UNAUTHORIZED, Some("missing")));
    // refusals are counted
    let (_, metrics) = call(&app, Method::GET, "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metric(&metrics, "sfu_auth_failures_total{reason=\"expired\",surface=\"api\"}").unwrap() >= routes.len() as f64,
        "{metrics}"
    );
}

async fn call_with_header(app: &axum::Router, name: &str, value: &str) -> (StatusCode, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = axum::http::Request::get("/api/rooms").header(name, value).body(axum::body::Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn rooms_participants_and_tracks() {
    let (state, seen) = state(false);
    let app = signaling::app(state.clone());
    let admin = admin_token();
    let t = Some(admin.as_str());

    let (s, body) = call(&app, Method::POST, "/api/rooms", t, Some(json!({"name": "r1", "max_participants": 2}))).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({"name": "r1", "participants": 0, "max_participants": 2}));
    assert_eq!(seen.lock().unwrap().rooms, vec!["r1".to_string()]);

    // errors of create
    let rows = [
        (json!({"name": "r1"}), StatusCode::CONFLICT, "room_exists"),
        (json!({"name": "bad name"}), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({"name": "r2", "max_participants": 0}), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({"name": "r2", "extra": 1}), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({"nom": "r2"}), StatusCode::BAD_REQUEST, "bad_request"),
    ];
    for (b, status, code) in rows {
        let (s, body) = call(&app, Method::POST, "/api/rooms", t, Some(b.clone())).await;
        assert_eq!((s, body["error"].as_str()), (status, Some(code)), "{b} -> {body}");
    }
    assert_eq!(state.rooms.len(), 1, "failed creates leave nothing behind");

    // two participants; the limit holds
    let mut alice = fake_join(&state, "r1", "PA_a", "alice").await;
    let mut bob = fake_join(&state, "r1", "PA_b", "bob").await;
    assert!(state.rooms.join("r1").is_err(), "max_participants 2");

    let (s, body) = call(&app, Method::GET, "/api/rooms", t, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, json!({"rooms": [{"name": "r1", "participants": 2, "max_participants": 2}]}));

    let (s, body) = call(&app, Method::GET, "/api/rooms/r1", t, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["room"]["participants"], 2);
    let ps = body["participants"].as_array().unwrap();
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[0]["id"], "PA_a");
    assert_eq!(ps[0]["identity"], "alice", "identity comes from the registry");
    assert_eq!(ps[0]["tracks"][0]["muted"], false);

    let (s, body) = call(&app, Method::GET, "/api/rooms/r1/participants", t, None).await;
    assert_eq!((s, body["participants"].as_array().unwrap().len()), (StatusCode::OK, 2));

    // mute alice's track: everyone is told
    let path = "/api/rooms/r1/participants/PA_a/tracks/TR_PA_a/mute";
    let (s, body) = call(&app, Method::POST, path, t, Some(json!({"muted": true}))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["muted"], true);
    for rx in [&mut alice, &mut bob] {
        let m = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert_eq!(m, ServerMessage::TrackMuted { participant: "PA_a".into(), track: "TR_PA_a".into(), muted: true });
    }
    let (s, body) = call(&app, Method::POST, path, t, Some(json!({"muted": "yes"}))).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    let (s, _) = call(
        &app,
        Method::POST,
        "/api/rooms/r1/participants/PA_a/tracks/TR_nope/mute",
        t,
        Some(json!({"muted": true})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // remove bob
    let (s, _) = call(&app, Method::DELETE, "/api/rooms/r1/participants/PA_b", t, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let m = tokio::time::timeout(Duration::from_secs(5), bob.recv()).await.unwrap().unwrap();
    assert!(matches!(m, ServerMessage::Removed { .. }), "{m:?}");
    let (s, body) = call(&app, Method::DELETE, "/api/rooms/r1/participants/PA_b", t, None).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    // unknown rooms
    for (m, p) in
        [(Method::GET, "/api/rooms/zz"), (Method::DELETE, "/api/rooms/zz"), (Method::GET, "/api/rooms/zz/participants")]
    {
        let (s, body) = call(&app, m.clone(), p, t, None).await;
        assert_eq!((s, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{m} {p}");
    }
    let (s, body) = call(&app, Method::GET, "/api/nothing/here", t, None).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    // delete the room: alice is told, the registry forgets it at once
    let (s, _) = call(&app, Method::DELETE, "/api/rooms/r1", t, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), alice.recv()).await.unwrap().unwrap() {
            ServerMessage::Removed { reason } => {
                assert!(reason.contains("deleted"), "{reason}");
                break;
            }
            _ => continue,
        }
    }
    assert_eq!(state.rooms.len(), 0);
    assert_eq!(state.rooms.participants(), 0);
    let (s, _) = call(&app, Method::GET, "/api/rooms/r1", t, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn node_status_drain_and_metrics() {
    let (state, _) = state(false);
    let app = signaling::app(state.clone());
    let admin = admin_token();
    let t = Some(admin.as_str());

    let _a = fake_join(&state, "r1", "PA_a", "alice").await;
    let _b = fake_join(&state, "r1", "PA_b", "bob").await;
    let _c = fake_join(&state, "r2", "PA_c", "carol").await;

    let (s, body) = call(&app, Method::GET, "/api/node", t, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["state"], "serving");
    assert_eq!((body["rooms"].as_u64(), body["participants"].as_u64()), (Some(2), Some(3)));
    assert_eq!(body["version"], "test");
    assert_eq!(body["drain_deadline_seconds"], 3600);
    assert!(body["drain_remaining_seconds"].is_null());

    let (_, m) = call(&app, Method::GET, "/metrics", None, None).await;
    let m = m.as_str().unwrap().to_string();
    assert_eq!(metric(&m, "sfu_rooms"), Some(2.0), "{m}");
    assert_eq!(metric(&m, "sfu_participants"), Some(3.0));
    assert_eq!(metric(&m, "sfu_node_draining"), Some(0.0));
    assert_eq!(metric(&m, "sfu_node_drain_remaining_seconds"), Some(0.0));

    let (s, body) = call(&app, Method::POST, "/api/node/drain", t, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(body["state"], "draining");
    let remaining = body["drain_remaining_seconds"].as_u64().unwrap();
    assert!((3590..=3600).contains(&remaining), "{remaining}");
    let (s, _) = call(&app, Method::POST, "/api/node/drain", t, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "idempotent");

    let (s, _) = call(&app, Method::GET, "/readyz", None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let (s, _) = call(&app, Method::GET, "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = call(&app, Method::POST, "/api/rooms", t, Some(json!({"name": "r3"}))).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("draining")));
    assert!(state.rooms.get("r3").is_none());
    let _d = fake_join(&state, "r1", "PA_d", "dave").await; // running rooms still admit

    let (_, m) = call(&app, Method::GET, "/metrics", None, None).await;
    let m = m.as_str().unwrap().to_string();
    assert_eq!(metric(&m, "sfu_node_draining"), Some(1.0));
    assert_eq!(metric(&m, "sfu_rooms"), Some(2.0));
    assert_eq!(metric(&m, "sfu_participants"), Some(4.0));
    assert!(metric(&m, "sfu_node_drain_remaining_seconds").unwrap() > 3500.0);
}

#[tokio::test]
async fn openapi_document_matches_the_checked_in_file_and_the_router() {
    let (state, _) = state(true);
    let app = signaling::app(state.clone());
    let (s, served) = call(&app, Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(served, file, "the served document is docs/openapi.json");
    assert!(served["openapi"].as_str().unwrap().starts_with("3."));

    let documented = openapi_operations(&served);
    let routes = signaling::routes(&state);
    for r in &routes {
        assert!(
            documented.contains_key(&(r.method.to_string(), r.path.to_string())),
            "route {} {} is not in docs/openapi.json",
            r.method,
            r.path
        );
        let op = &served["paths"][r.path][r.method.to_lowercase()];
        assert_eq!(op["security"].is_array(), r.admin, "{} {}: security matches the admin guard", r.method, r.path);
    }
    for (method, path) in documented.keys() {
        assert!(
            routes.iter().any(|r| r.method == method && r.path == path),
            "{method} {path} is documented but not routed"
        );
    }
    // every documented admin operation is reachable (not the API's 404 fallback, not 405)
    let admin = admin_token();
    for (method, path) in admin_routes(&state) {
        let body = (method == Method::POST).then(|| json!({"name": "docroom", "muted": true}));
        let (s, body) = call(&app, method.clone(), &path, Some(&admin), body).await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(!body["message"].as_str().unwrap_or("").contains("no such API route"), "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn dev_token_endpoint_exists_only_in_dev_mode() {
    let (prod, _) = state(false);
    let (s, body) = call(&signaling::app(prod.clone()), Method::GET, "/api/dev/token?room=r1&name=a", None, None).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    assert!(!signaling::routes(&prod).iter().any(|r| r.path == "/api/dev/token"));

    let (dev, _) = state(true);
    let app = signaling::app(dev.clone());
    let (s, body) = call(&app, Method::GET, "/api/dev/token?room=r1&name=Ann", None, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!((body["room"].as_str(), body["identity"].as_str()), (Some("r1"), Some("Ann")));
    let token = body["token"].as_str().unwrap();
    let grant = dev.auth.check_join(Some(token), "r1", "x").unwrap();
    assert!(grant.grants.join && grant.grants.publish && !grant.grants.admin);
    assert_eq!(dev.auth.check_join(Some(token), "r2", "x").unwrap_err().reason(), "wrong_room");
    assert_eq!(dev.auth.check_admin(Some(token)).unwrap_err().reason(), "no_admin_grant");
    for q in ["room=bad%20room&name=a", "room=r1&name=", "name=a"] {
        let (s, body) = call(&app, Method::GET, &format!("/api/dev/token?{q}"), None, None).await;
        assert_eq!((s, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{q}");
    }
    // a dev token never opens the admin API
    let (s, _) = call(&app, Method::GET, "/api/rooms", Some(token), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
