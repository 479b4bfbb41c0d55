//! Janus (Debian's `janus` package) as a peer in the benchmarks: started with a generated
//! configuration as its documentation recommends for a deployment, but on loopback only: the
//! VideoRoom plugin and the HTTP transport alone, no event handlers, no admin API, log level
//! warnings (as `fanout` runs this server, `--log warn`), its RTP ports in one range, ICE and
//! HTTP on one address. Janus never gathers loopback candidates, so the benchmark runs in a
//! network namespace of its own with a dummy interface (`scripts/side-by-side.sh`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Where Debian installs Janus's plugins and transports.
const LIBS: &str = "/usr/lib/x86_64-linux-gnu/janus";
/// Every other plugin and transport is disabled.
const OTHER_PLUGINS: &str = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,\
libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,\
libjanus_videocall.so,libjanus_voicemail.so";
const OTHER_TRANSPORTS: &str =
    "libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so,libjanus_websockets.so";

/// A running Janus.
pub struct JanusProcess {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// Its HTTP transport (`/janus`).
    pub http: SocketAddr,
}

fn free_port(ip: IpAddr) -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// Writes the configuration into `dir`.
fn configure(dir: &Path, ip: IpAddr, http_port: u16) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let janus = format!(
        r#"general: {{
	configs_folder = "{dir}"
	plugins_folder = "{LIBS}/plugins"
	transports_folder = "{LIBS}/transports"
	events_folder = "{LIBS}/events"
	loggers_folder = "{LIBS}/loggers"
	debug_level = 3
	session_timeout = 120
}}
certificates: {{
}}
media: {{
	rtp_port_range = "30000-60000"
}}
nat: {{
	ice_enforce_list = "{ip}"
}}
plugins: {{
	disable = "{OTHER_PLUGINS}"
}}
transports: {{
	disable = "{OTHER_TRANSPORTS}"
}}
loggers: {{
	disable = "libjanus_jsonlog.so"
}}
events: {{
	broadcast = false
}}
"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("janus.jcfg"), janus)?;
    let http = format!(
        "general: {{\n\tjson = \"compact\"\n\tbase_path = \"/janus\"\n\thttp = true\n\tport = {http_port}\n\tip = \"{ip}\"\n\thttps = false\n}}\nadmin: {{\n\tadmin_http = false\n}}\n"
    );
    std::fs::write(dir.join("janus.transport.http.jcfg"), http)?;
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
    Ok(())
}

impl JanusProcess {
    /// Starts `janus` with its configuration in `dir` (written there), its log in `log`, and
    /// waits until its HTTP transport answers.
    pub async fn start(dir: &Path, ip: IpAddr, log: &Path) -> anyhow::Result<JanusProcess> {
        let port = free_port(ip)?;
        configure(dir, ip, port)?;
        let log_file = std::fs::File::create(log)?;
        let mut child = Command::new("janus")
            .arg("-F")
            .arg(dir)
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start janus ({e}): apt-get install janus"))?;
        let pid = child.id().ok_or_else(|| anyhow::anyhow!("janus exited at once"))?;
        let http = SocketAddr::new(ip, port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(http).await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                anyhow::bail!("janus exited ({status}) before listening (log: {})", log.display());
            }
            anyhow::ensure!(Instant::now() < deadline, "janus did not listen on {http} within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(JanusProcess { child, pid, http })
    }

    /// The configuration directory `fanout` uses.
    pub fn default_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/janus-bench")
    }

    /// Stops it (SIGTERM, then SIGKILL after `grace`).
    pub async fn stop(mut self, grace: Duration) {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}
