//! One `sfu` process per node, for the tests that need several (rolling upgrade, fleet): the
//! real binary on loopback ports, its log kept and printed when the test fails.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sfu");
/// Bound for a node to start.
const START: Duration = Duration::from_secs(20);

/// One `sfu` process.
pub struct Node {
    pub name: &'static str,
    pub child: Child,
    pub http: SocketAddr,
    pub udp: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Starts `sfu --dev` on loopback ports and waits for its `SFU_READY http=... udp=...` line.
    pub async fn start(name: &'static str) -> Node {
        Node::start_with(name, &[]).await
    }

    /// As [`Node::start`], with `args` added to the command line.
    pub async fn start_with(name: &'static str, args: &[&str]) -> Node {
        let mut cmd = Command::new(BIN);
        for var in [
            "SFU_DEV",
            "SFU_KEYS",
            "SFU_HTTP",
            "SFU_UDP",
            "SFU_DRAIN_DEADLINE",
            "SFU_DRAIN_ADMIT",
            "SFU_MAX_PARTICIPANTS",
            "SFU_REDIS",
            "SFU_NODE_ID",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .args(["--dev", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"])
            .args(args)
            .env("SFU_LOG", "info,rtc_dtls=error")
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sfu");
        let log = Arc::new(Mutex::new(Vec::new()));
        collect(child.stderr.take().unwrap(), log.clone());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(START, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("SFU_READY ") {
                    let field = |k: &str| rest.split_whitespace().find_map(|kv| kv.strip_prefix(k)).map(str::to_owned);
                    let http: SocketAddr = field("http=").expect("http=").parse().expect("http address");
                    let udp: SocketAddr = field("udp=").expect("udp=").parse().expect("udp address");
                    return Some((http, udp));
                }
            }
            None
        });
        let (http, udp) = ready.await.expect("SFU_READY in time").expect("sfu exited before SFU_READY");
        // keep draining stdout so that a late print never hits a closed pipe
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        eprintln!("node {name}: http={http} udp={udp}");
        Node { name, child, http, udp, log }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }

    pub fn sigterm(&self) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: signals our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }
}

fn collect(stream: impl AsyncRead + Unpin + Send + 'static, log: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = log.lock().unwrap();
            if log.len() > 5000 {
                log.drain(..1000);
            }
            log.push(line);
        }
    });
}

/// Prints the nodes' logs if the test fails.
pub struct LogsOnPanic(pub Vec<(&'static str, Arc<Mutex<Vec<String>>>)>);

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, log) in &self.0 {
                let log = log.lock().unwrap();
                eprintln!(
                    "--- node {name} log (last 150 lines) ---\n{}",
                    log[log.len().saturating_sub(150)..].join("\n")
                );
            }
        }
    }
}

impl Node {
    /// Kills the process at once (SIGKILL: no drain, no goodbye to the fleet).
    pub fn kill9(&mut self) {
        let _ = self.child.start_kill();
    }
}
