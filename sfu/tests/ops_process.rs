//! The real `sfu` binary: SIGTERM drain and exit, a second SIGTERM, API-triggered drain exit,
//! refusal to start without keys, and `sfu token`.

mod ops_common;

use ops_common::*;
use serde_json::json;
use signaling::auth::{ApiKey, Auth};
use signaling::protocol::{ErrorCode, ServerMessage};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const EXIT_WITHIN: Duration = Duration::from_secs(5);

fn sfu() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sfu"));
    for var in
        ["SFU_DEV", "SFU_KEYS", "SFU_HTTP", "SFU_UDP", "SFU_DRAIN_DEADLINE", "SFU_DRAIN_ADMIT", "SFU_TOKEN_SECRET"]
    {
        c.env_remove(var);
    }
    c.env("SFU_LOG", "error").env("RUST_BACKTRACE", "0").kill_on_drop(true);
    c
}

/// Starts `sfu --dev` (plus `extra`) on loopback ports; returns it and its HTTP address from
/// the `SFU_READY http=... udp=...` line.
async fn spawn_dev(extra: &[&str]) -> (Child, SocketAddr) {
    let mut child = sfu()
        .args(["--dev", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sfu");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(STEP, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("SFU_READY ") {
                let http = rest.split_whitespace().find_map(|kv| kv.strip_prefix("http=")).expect("http=");
                assert!(rest.contains("udp="), "{line}");
                return http.parse::<SocketAddr>().expect("address");
            }
        }
        panic!("sfu exited before SFU_READY");
    });
    let http = ready.await.expect("SFU_READY in time");
    (child, http)
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
}

async fn exit_code(child: &mut Child) -> i32 {
    let status = tokio::time::timeout(EXIT_WITHIN, child.wait()).await.expect("exited in time").unwrap();
    status.code().expect("exited, not killed by a signal")
}

/// Polls an external process's readiness (no event to wait on across processes).
async fn wait_readyz(http: SocketAddr, want: u16) {
    for _ in 0..100 {
        if ops_common::http(http, "GET", "/readyz", None, None).await.0 == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz never answered {want}");
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero_when_the_last_participant_leaves() {
    let (mut child, addr) = spawn_dev(&[]).await;
    wait_readyz(addr, 200).await;
    let (mut a, _) = Ws::joined(addr, "call", "a", None).await;

    sigterm(&child);
    wait_readyz(addr, 503).await;
    assert_eq!(http(addr, "GET", "/healthz", None, None).await.0, 200);
    let mut b = Ws::connect(addr).await;
    match b.join("another", "b", None).await {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::Draining),
        m => panic!("expected draining, got {m:?}"),
    }
    let (mut c, _) = Ws::joined(addr, "call", "c", None).await; // the running call still admits
    let m = metrics(addr).await;
    assert_eq!((metric(&m, "sfu_node_draining"), metric(&m, "sfu_participants")), (Some(1.0), Some(2.0)), "{m}");
    assert!(tokio::time::timeout(Duration::from_millis(300), child.wait()).await.is_err(), "still serving its call");

    for ws in [&mut a, &mut c] {
        ws.send(json!({"type": "leave"})).await;
        ws.closed(STEP).await;
    }
    let started = std::time::Instant::now();
    assert_eq!(exit_code(&mut child).await, 0);
    eprintln!("exited {:?} after the last participant left", started.elapsed());
}

#[tokio::test]
async fn second_sigterm_exits_at_once() {
    let (mut child, addr) = spawn_dev(&[]).await;
    let (_a, _) = Ws::joined(addr, "call", "a", None).await;
    sigterm(&child);
    wait_readyz(addr, 503).await;
    sigterm(&child);
    assert_eq!(exit_code(&mut child).await, 0);
}

#[tokio::test]
async fn drain_by_api_exits_zero_and_deadline_evacuates() {
    // an empty node exits right after answering the drain call
    let (mut child, addr) = spawn_dev(&[]).await;
    let admin = admin(&signaling::auth::dev_key());
    let (s, body) = http_json(addr, "POST", "/api/node/drain", Some(&admin), None).await;
    assert_eq!((s, body["state"].as_str()), (202, Some("draining")));
    assert_eq!(exit_code(&mut child).await, 0);

    // with a participant and a 1 s deadline: reconnect, closed, exit 0
    let (mut child, addr) = spawn_dev(&["--drain-deadline", "1s"]).await;
    let (mut a, _) = Ws::joined(addr, "call", "a", None).await;
    assert_eq!(http(addr, "POST", "/api/node/drain", Some(&admin), None).await.0, 202);
    let delay = a
        .wait_for(STEP, |m| match m {
            ServerMessage::Reconnect { delay_ms, .. } => Some(*delay_ms),
            _ => None,
        })
        .await;
    assert!(delay < 60_000);
    a.closed(STEP).await;
    assert_eq!(exit_code(&mut child).await, 0);
}

#[tokio::test]
async fn refuses_to_start_without_keys() {
    let out = sfu().args(["--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"]).output().await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no API keys configured") && err.contains("--keys"), "{err}");
    assert!(out.stdout.is_empty(), "never became ready");
    let out =
        sfu().args(["--keys", "k:tooshort", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 32 bytes"));
}

#[tokio::test]
async fn token_subcommand_prints_a_token_the_node_accepts() {
    let out = sfu()
        .args([
            "token",
            "--key",
            KEY,
            "--secret",
            SECRET,
            "--room",
            "r1",
            "--identity",
            "ann",
            "--name",
            "Ann",
            "--ttl",
            "10m",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let auth = Auth::new(&[ApiKey { key: KEY.into(), secret: SECRET.into() }], false).unwrap();
    let claims = auth.verify(&token).unwrap();
    assert_eq!((claims.sub.as_str(), claims.name.as_deref(), claims.room.as_deref()), ("ann", Some("Ann"), Some("r1")));
    assert!(claims.grants.join && claims.grants.publish && claims.grants.subscribe && !claims.grants.admin);
    assert!((590..=600).contains(&(claims.exp - claims.nbf)));

    let out = sfu().args(["token", "--dev", "--identity", "ops", "--admin"]).output().await.unwrap();
    let token = String::from_utf8(out.stdout).unwrap();
    let claims = Auth::dev().check_admin(Some(token.trim())).unwrap();
    assert!(claims.room.is_none() && !claims.grants.join);

    let out = sfu().args(["token", "--key", KEY, "--secret", SECRET, "--identity", "x"]).output().await.unwrap();
    assert!(!out.status.success(), "a token needs --room or --admin");
}
