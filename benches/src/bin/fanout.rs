//! Fan-out macro benchmark: the real `sfu` binary forwarding one publisher to N subscribers.
//!
//! ```sh
//! cargo build --release --bin sfu && cargo run --release -p sfu-benches --bin fanout -- --fanout 10,100,500 --layer q
//! ```
//!
//! For each N: a fresh room, one publisher (audio + q/h/f VP8 simulcast), N subscribers on
//! this process's engine(s) asking for `--layer`; once they all receive it, a `--window`
//! measures the server's CPU per forwarded packet, loss, latency, forwarding delay and RSS.
//! Prints a markdown table and a final JSON line. The server is `$SFU_BIN` (default
//! `target/release/sfu`), started with `--log warn` unless `--sfu-log` says otherwise.

use clap::Parser;
use loadtest::{Engine, EngineOptions, MediaTransport};
use sfu_benches::conference::{self, ConferencePoint};
use sfu_benches::fanout::{self, Options, Perf, Point, Target};
use sfu_benches::janus_process::JanusProcess;
use sfu_benches::sfu_process::{SfuProcess, default_binary};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Fan-out macro benchmark of the SFU's forwarding path.
#[derive(Debug, Parser)]
struct Args {
    /// Subscriber counts to measure, in order [default: 10,100,500 unless --conference].
    #[arg(long, value_delimiter = ',')]
    fanout: Vec<usize>,
    /// Layer subscribers ask for. `q` (150 kb/s, ~25 video + 50 audio packets/s per
    /// subscriber) keeps 500 subscribers within what one load-generating core can receive;
    /// `f` (1.5 Mb/s) saturates this 2-core machine well before 500.
    #[arg(long, default_value = "q", value_parser = ["q", "h", "f"])]
    layer: String,
    /// Measured window per point.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Wait after every subscriber receives, before the window.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Longest wait for every subscriber to receive its layer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    ready_timeout: Duration,
    /// Subscribers joining at once.
    #[arg(long, default_value_t = 25)]
    join_concurrency: usize,
    /// Engine tasks for the clients.
    #[arg(long, default_value_t = 1)]
    engines: usize,
    /// Runtime worker threads of this process (1: single-threaded, ~1 core of load).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Server binary (default: $SFU_BIN, else target/release/sfu). Repeat it to compare
    /// binaries in one run (e.g. a baseline build and the current one): each gets every N.
    #[arg(long)]
    sfu_bin: Vec<PathBuf>,
    /// Also measure a peer SFU in the same run, after each binary's points: `janus` (Debian's
    /// `janus`, VideoRoom over its HTTP API, configuration generated into target/janus-bench).
    #[arg(long, value_parser = ["janus"])]
    peer: Vec<String>,
    /// Address Janus listens on and gathers ICE candidates from (Janus skips loopback
    /// interfaces: `scripts/side-by-side.sh` gives it a dummy interface in a namespace).
    #[arg(long, default_value = "127.0.0.1")]
    janus_ip: std::net::IpAddr,
    /// Conference points, `ROOMSxPARTICIPANTS` (e.g. `5x4`): everyone publishes and receives
    /// everyone else at `--layer`; measured after the fan-out points of each server.
    #[arg(long, value_delimiter = ',')]
    conference: Vec<String>,
    /// Measure only the peers (no server binary).
    #[arg(long)]
    only_peers: bool,
    /// Rounds: every binary and peer measured this many times, alternating (A B A B ...).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Extra server flags, split at spaces (e.g. "--send-batch 1").
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    sfu_args: String,
    /// Server log filter.
    #[arg(long, default_value = "warn")]
    sfu_log: String,
    /// Where the server's log goes.
    #[arg(long, default_value = "target/fanout-sfu.log")]
    sfu_log_file: PathBuf,
    /// Rooms per point, each with its own publisher and N subscribers (several room workers
    /// at once, as on a node hosting many meetings).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Publishers pace their video at this multiple of its bitrate, as browsers do (Chrome:
    /// 2.5); without it every frame leaves as one burst, the worst case for forwarding delay.
    #[arg(long)]
    pace: Option<f64>,
    /// Subscribers count packets by their clear RTP header without decrypting (a sink costs a
    /// fraction of a full client, so the server can be loaded further; loss from sequence
    /// numbers, no latency or payload checks).
    #[arg(long)]
    sink: bool,
    /// Full receivers hand every packet to `rtc`'s read pipeline instead of decrypting it
    /// themselves (the load tester's older, costlier receive path).
    #[arg(long)]
    rtc_receive: bool,
    /// How subscribers reach the server, comma-separated to compare in one run (each N is
    /// measured over each in turn on the same server process): `udp`, `tcp` (ICE-TCP),
    /// `turn-udp`, `turn-tcp` (through the server's embedded TURN server, started with
    /// `--turn 127.0.0.1:0` for them). Publishers use UDP.
    #[arg(long, value_delimiter = ',', default_value = "udp")]
    transport: Vec<loadtest::MediaTransport>,
    /// Profile the window of the LAST point with `perf record` into this file.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Arguments of `perf record` (with --perf).
    #[arg(long, default_value = "-F 499 --call-graph dwarf,16384", allow_hyphen_values = true)]
    perf_args: String,
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!("{cpus} CPUs ({model}), loadavg {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// `ROOMSxPARTICIPANTS`.
fn conference_shapes(args: &Args) -> anyhow::Result<Vec<(usize, usize)>> {
    args.conference
        .iter()
        .map(|c| {
            let (r, p) = c.split_once('x').ok_or_else(|| anyhow::anyhow!("--conference {c}: ROOMSxPARTICIPANTS"))?;
            Ok((r.parse()?, p.parse()?))
        })
        .collect()
}

/// The conference points of `args` against `target`, labelled `label`.
async fn conferences(
    args: &Args,
    target: Target<'_>,
    engines: &[Engine],
    label: &str,
) -> anyhow::Result<Vec<ConferencePoint>> {
    let mut points = Vec::new();
    for (rooms, participants) in conference_shapes(args)? {
        eprintln!("# {label} conference {rooms}x{participants}: joining, then measuring {:?}", args.window);
        match conference::run_point(
            target,
            engines,
            rooms,
            participants,
            &args.layer,
            args.window,
            args.settle,
            args.ready_timeout,
        )
        .await
        {
            Ok(mut p) => {
                p.server = label.to_owned();
                eprintln!("# {label} conference {rooms}x{participants}: {}", serde_json::to_string(&p)?);
                points.push(p);
            }
            Err(e) => eprintln!("# {label} conference {rooms}x{participants}: failed: {e:#}"),
        }
    }
    Ok(points)
}

/// The fan-out points and the conference points of a run.
type Points = (Vec<Point>, Vec<ConferencePoint>);

async fn run(args: Args) -> anyhow::Result<Points> {
    let binaries = if args.sfu_bin.is_empty() { vec![default_binary()] } else { args.sfu_bin.clone() };
    let (mut points, mut conference_points) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds.max(1) {
        for binary in binaries.iter().filter(|_| !args.only_peers) {
            let (p, c) = run_server(&args, binary).await?;
            points.extend(p);
            conference_points.extend(c);
        }
        for peer in &args.peer {
            let (p, c) = match peer.as_str() {
                "janus" => run_janus(&args).await?,
                other => anyhow::bail!("unknown peer {other}"),
            };
            points.extend(p);
            conference_points.extend(c);
        }
    }
    Ok((points, conference_points))
}

fn engines(args: &Args) -> Vec<Engine> {
    let engine_opts = EngineOptions {
        stats_interval: Duration::from_millis(500),
        sink_media: args.sink,
        decrypt_in_engine: !args.rtc_receive,
        ..Default::default()
    };
    (0..args.engines.max(1)).map(|_| Engine::spawn_with(engine_opts.clone())).collect()
}

fn options(args: &Args) -> Options {
    Options {
        layer: args.layer.clone(),
        window: args.window,
        settle: args.settle,
        ready_timeout: args.ready_timeout,
        join_concurrency: args.join_concurrency,
        sink: args.sink,
        rooms: args.rooms,
        pacing: args.pace,
        transport: loadtest::MediaTransport::Udp,
    }
}

/// Every N against Janus.
async fn run_janus(args: &Args) -> anyhow::Result<Points> {
    let log = args.sfu_log_file.with_file_name("fanout-janus.log");
    let janus = JanusProcess::start(&JanusProcess::default_dir(), args.janus_ip, &log).await?;
    let version = std::process::Command::new("janus")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.lines().next().map(|l| l.trim().to_owned()))
        .unwrap_or_default();
    eprintln!("# janus pid {} http {} ({version}); {}", janus.pid, janus.http, machine());
    let session = loadtest::janus::Janus::connect(janus.http).await?;
    let engines = engines(args);
    let opts = options(args);
    let conf = conferences(args, Target::Janus(&janus, &session), &engines, "janus").await?;
    let mut points = Vec::new();
    for &n in &args.fanout {
        eprintln!("# janus N={n}: joining, waiting for layer {}, then measuring {:?}", args.layer, args.window);
        match fanout::run_point(Target::Janus(&janus, &session), &engines, n, &opts, None).await {
            Ok(mut p) => {
                p.server = "janus".into();
                eprintln!("# janus N={n}: {}", serde_json::to_string(&p)?);
                points.push(p);
            }
            Err(e) => eprintln!("# janus N={n}: failed: {e:#}"),
        }
    }
    drop(engines);
    drop(session);
    janus.stop(Duration::from_secs(5)).await;
    Ok((points, conf))
}

/// Every N against one server binary.
async fn run_server(args: &Args, binary: &Path) -> anyhow::Result<Points> {
    let mut extra =
        vec!["--log".to_owned(), args.sfu_log.clone(), "--max-participants".to_owned(), "100000".to_owned()];
    extra.extend(args.sfu_args.split_whitespace().map(str::to_owned));
    let turn = args.transport.iter().any(|t| matches!(t, MediaTransport::TurnUdp | MediaTransport::TurnTcp));
    if turn && !extra.iter().any(|a| a == "--turn") {
        extra.extend(["--turn".to_owned(), "127.0.0.1:0".to_owned()]);
    }
    let label = binary.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned())
        + &if args.sfu_args.trim().is_empty() { String::new() } else { format!(" {}", args.sfu_args.trim()) };
    let server = SfuProcess::start(binary, &extra, &args.sfu_log_file).await?;
    eprintln!(
        "# server {} pid {} http {} udp {}; {}",
        binary.display(),
        server.pid,
        server.http,
        server.udp,
        machine()
    );
    let engines = engines(args);
    let opts = options(args);
    let perf = args.perf.as_ref().map(|output| Perf {
        output: output.clone(),
        args: args.perf_args.split_whitespace().map(str::to_owned).collect(),
    });
    let mut points = Vec::new();
    let last = args.fanout.len().saturating_sub(1);
    let conf = conferences(args, Target::Sfu(&server), &engines, &label).await?;
    let compare = args.transport.len() > 1 || args.transport.first() != Some(&MediaTransport::Udp);
    for (i, &n) in args.fanout.iter().enumerate() {
        for (j, &transport) in args.transport.iter().enumerate() {
            eprintln!(
                "# N={n} via {transport}: joining, waiting for layer {}, then measuring {:?}",
                args.layer, args.window
            );
            let profile = if i == last && j + 1 == args.transport.len() { perf.as_ref() } else { None };
            let opts = Options { transport, ..opts.clone() };
            match fanout::run_point(Target::Sfu(&server), &engines, n, &opts, profile).await {
                Ok(mut p) => {
                    p.server = if compare { format!("{label} via {transport}") } else { label.clone() };
                    eprintln!("# N={n} via {transport}: {}", serde_json::to_string(&p)?);
                    points.push(p);
                }
                Err(e) => eprintln!("# N={n} via {transport}: failed: {e:#}"),
            }
        }
    }
    drop(engines);
    server.stop(Duration::from_secs(5)).await;
    Ok((points, conf))
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.fanout.is_empty() && args.conference.is_empty() {
        args.fanout = vec![10, 100, 500];
    }
    let mut builder = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    let runtime = builder.enable_all().build()?;
    let layer = args.layer.clone();
    let window = args.window;
    let (points, conference_points) = runtime.block_on(run(args))?;
    if !points.is_empty() {
        println!("{}", fanout::markdown(&points));
    }
    if !conference_points.is_empty() {
        println!("{}", conference::markdown(&conference_points));
    }
    let json = serde_json::json!({ "bench": "fanout", "layer": layer, "window_s": window.as_secs_f64(), "machine": machine(), "points": points, "conference": conference_points });
    println!("{json}");
    anyhow::ensure!(!points.is_empty() || !conference_points.is_empty(), "no point measured");
    Ok(())
}
