//! The real `sfu` binary as a child process on loopback ports: started in dev mode, ready
//! once it prints `SFU_READY http=... udp=...`, stopped (SIGTERM, then SIGKILL) at the end.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the server may take to print its ready line.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running server.
pub struct SfuProcess {
    child: Child,
    /// Its process id (for `/proc/PID/stat`).
    pub pid: u32,
    /// HTTP address (signaling, `/metrics`).
    pub http: SocketAddr,
    /// Media (UDP) address.
    pub udp: SocketAddr,
}

/// The server binary: `$SFU_BIN`, else `target/release/sfu` of this workspace.
pub fn default_binary() -> PathBuf {
    match std::env::var_os("SFU_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/sfu"),
    }
}

fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("SFU_READY ")?;
    let field = |k: &str| rest.split_whitespace().find_map(|kv| kv.strip_prefix(k))?.parse().ok();
    Some((field("http=")?, field("udp=")?))
}

impl SfuProcess {
    /// Starts `binary --dev` on 127.0.0.1 (ephemeral ports unless `extra` sets `--http` or
    /// `--udp`) with `extra` flags; its log
    /// (stderr) goes to `log`.
    pub async fn start(binary: &Path, extra: &[String], log: &Path) -> anyhow::Result<SfuProcess> {
        anyhow::ensure!(
            binary.exists(),
            "no server binary at {} (cargo build --release --bin sfu, or set SFU_BIN)",
            binary.display()
        );
        let log_file = std::fs::File::create(log).map_err(|e| {
            anyhow::anyhow!("server log {}: {e} (a relative path is from the working directory)", log.display())
        })?;
        let mut cmd = Command::new(binary);
        cmd.arg("--dev");
        // ephemeral loopback ports unless `extra` names them (e.g. a fixed media port that a
        // packet filter matches)
        for flag in ["--http", "--udp"] {
            if !extra.iter().any(|a| a == flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        cmd.args(extra).stdout(Stdio::piped()).stderr(Stdio::from(log_file)).kill_on_drop(true);
        for var in ["SFU_KEYS", "SFU_HTTP", "SFU_UDP", "SFU_LOG", "SFU_EXTERNAL_IP", "SFU_MAX_PARTICIPANTS"] {
            cmd.env_remove(var);
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().ok_or_else(|| anyhow::anyhow!("server exited at once"))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = tokio::time::timeout(READY_WITHIN, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addrs) = parse_ready(&line) {
                    return Ok(addrs);
                }
            }
            anyhow::bail!("the server exited before SFU_READY (log: {})", log.display())
        });
        let (http, udp) = ready.await.map_err(|_| anyhow::anyhow!("no SFU_READY within {READY_WITHIN:?}"))??;
        // keep draining stdout so the server never blocks on a full pipe
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(SfuProcess { child, pid, http, udp })
    }

    /// Asks the server to drain (SIGTERM; it exits once its rooms are empty), kills it after
    /// `grace`.
    pub async fn stop(mut self, grace: Duration) {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line() {
        let (h, u) = parse_ready("SFU_READY http=127.0.0.1:4100 udp=127.0.0.1:4101").unwrap();
        assert_eq!((h.port(), u.port()), (4100, 4101));
        assert!(parse_ready("sfu ready").is_none());
    }
}
