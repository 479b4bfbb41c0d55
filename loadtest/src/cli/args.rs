//! Command line of the `loadtest` binary: two scenarios sharing one set of flags.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::time::Duration;

/// Load tests of the SFU with headless WebRTC clients (many per engine task).
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
pub struct Cli {
    /// Which scenario.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// A load scenario.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// ROOMS rooms of PARTICIPANTS participants; everyone publishes audio + q/h/f VP8
    /// simulcast and receives everyone else in the room.
    Conference {
        /// Rooms.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        rooms: u32,
        /// Participants per room.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        participants: u32,
        #[command(flatten)]
        common: Common,
    },
    /// One publisher and VIEWERS receive-only subscribers in one room.
    Broadcast {
        /// Subscribers (they do not publish).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        viewers: u32,
        #[command(flatten)]
        common: Common,
    },
}

impl Scenario {
    /// The flags every scenario has.
    pub fn common(&self) -> &Common {
        match self {
            Scenario::Conference { common, .. } | Scenario::Broadcast { common, .. } => common,
        }
    }
}

/// Simulcast layer a subscriber asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayerArg {
    /// Quarter resolution (320x180, ~150 kb/s).
    Q,
    /// Half resolution (640x360, ~500 kb/s).
    H,
    /// Full resolution (1280x720, ~1.5 Mb/s).
    F,
}

impl LayerArg {
    /// The rid as the protocol spells it.
    pub fn rid(self) -> &'static str {
        match self {
            LayerArg::Q => "q",
            LayerArg::H => "h",
            LayerArg::F => "f",
        }
    }

    /// Layer index as the probes carry it (0 = q).
    pub fn index(self) -> u8 {
        self as u8
    }
}

/// Flags shared by every scenario.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Signaling URL of the server (loopback by default; anything else must be given here).
    #[arg(long, default_value = "ws://127.0.0.1:7880/ws")]
    pub url: String,
    /// How long the run measures, after the ramp (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Joins are spread evenly over this time (0s: all at once).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub ramp: Duration,
    /// Highest simulcast layer subscribers ask for.
    #[arg(long, value_enum, default_value = "f")]
    pub layer: LayerArg,
    /// Engine tasks the clients are spread over (round robin).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub engines: u32,
    /// Runtime worker threads (1: a single-threaded runtime, the process stays on ~1 core).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,
    /// Subscribers hand every inbound media packet to `rtc` instead of decrypting it
    /// themselves (the load tester's old, several times costlier receive path, for comparison).
    #[arg(long)]
    pub rtc_receive: bool,
    /// Publishers publish through WHIP (`POST /whip/{room}` on the `--url`'s host) instead of
    /// the WebSocket protocol; they then receive nothing (broadcast).
    #[arg(long)]
    pub whip: bool,
    /// Clients that do not publish play through WHEP (`POST /whep/{room}`), one audio and one
    /// video section each (broadcast).
    #[arg(long)]
    pub whep: bool,
    /// How clients' media reach the server: `udp`, `tcp` (ICE-TCP), `turn-udp` or `turn-tcp`
    /// (through the TURN server `joined` names: run the server with `--turn`).
    #[arg(long, default_value = "udp")]
    pub transport: loadtest::MediaTransport,
    /// Log filter for stderr (`tracing` syntax, e.g. `info` or `warn,loadtest=debug`).
    #[arg(long, default_value = "warn", env = "LOADTEST_LOG")]
    pub log: String,
    /// Room name prefix (rooms are PREFIX-0, PREFIX-1, ...).
    #[arg(long, default_value = "load")]
    pub room_prefix: String,
    /// One access token for every client (its room must match; see --key/--secret otherwise).
    #[arg(long, conflicts_with_all = ["key", "secret"])]
    pub token: Option<String>,
    /// API key that signs one token per client (with --secret); a dev server needs none.
    #[arg(long, requires = "secret")]
    pub key: Option<String>,
    /// Secret of --key.
    #[arg(long, requires = "key")]
    pub secret: Option<String>,
    /// Fail (exit 1) when the loss over the measured window exceeds this percentage.
    #[arg(long)]
    pub max_loss_pct: Option<f64>,
    /// Fail (exit 1) when the p99 end-to-end latency exceeds this many milliseconds.
    #[arg(long)]
    pub max_p99_latency_ms: Option<f64>,
    /// Fail (exit 1) when fewer than this percentage of clients connected.
    #[arg(long)]
    pub min_connected_pct: Option<f64>,
    /// Emulate a slow downlink in front of subscribing clients (see --downlink-share-pct): its
    /// rate in kbit/s, inside the load tester's engine (the server sees real congestion).
    #[arg(long)]
    pub downlink_kbps: Option<u64>,
    /// One-way delay of the emulated downlink.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    pub downlink_delay: Duration,
    /// Random loss of the emulated downlink, percent.
    #[arg(long, default_value_t = 0.0)]
    pub downlink_loss_pct: f64,
    /// Share of the subscribing clients behind the emulated downlink, percent (spread evenly
    /// over the plan); the summary then also reports both groups apart.
    #[arg(long, default_value_t = 100.0)]
    pub downlink_share_pct: f64,
    /// VP8 temporal layers each published simulcast layer carries (1: none; browsers send 3),
    /// finer steps for the server's bandwidth allocation.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub temporal_layers: u8,
    /// Time allowed for a client to connect and join.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub join_timeout: Duration,
    /// Progress bar even when stdout is not a terminal ("auto": only on a terminal).
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

/// When to draw the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Only when stdout is a terminal.
    Auto,
    /// Never.
    Never,
}

impl Common {
    /// Checks what clap cannot; the message is for a usage error (exit 2).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return Err(format!("--url must be a ws:// or wss:// URL, got {:?}", self.url));
        }
        if self.duration.is_zero() {
            return Err("--duration must be more than 0".into());
        }
        for (name, v) in [("--max-loss-pct", self.max_loss_pct), ("--min-connected-pct", self.min_connected_pct)] {
            if v.is_some_and(|v| !(0.0..=100.0).contains(&v)) {
                return Err(format!("{name} must be between 0 and 100"));
            }
        }
        if self.max_p99_latency_ms.is_some_and(|v| v.is_nan() || v < 0.0) {
            return Err("--max-p99-latency-ms must be 0 or more".into());
        }
        if !signaling::protocol::valid_room_name(&format!("{}-0", self.room_prefix)) {
            return Err("--room-prefix: use A-Z a-z 0-9 _ . - (rooms are PREFIX-N)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_and_flags() {
        let cli =
            parse(&["broadcast", "--viewers", "500", "--layer", "q", "--duration", "1m", "--ramp", "0s"]).unwrap();
        let Scenario::Broadcast { viewers, common } = &cli.scenario else { panic!("broadcast") };
        assert_eq!(*viewers, 500);
        assert_eq!(common.layer, LayerArg::Q);
        assert_eq!(common.duration, Duration::from_secs(60));
        assert_eq!(common.ramp, Duration::ZERO);
        assert_eq!((common.engines, common.threads), (1, 1));
        assert_eq!(common.url, "ws://127.0.0.1:7880/ws");
        common.validate().unwrap();

        let cli = parse(&["conference", "--rooms", "3", "--participants", "4"]).unwrap();
        let Scenario::Conference { rooms, participants, common } = &cli.scenario else { panic!("conference") };
        assert_eq!((*rooms, *participants, common.layer), (3, 4, LayerArg::F));
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&["broadcast", "--duration", "soon"]).is_err());
        assert!(parse(&["broadcast", "--layer", "x"]).is_err());
        assert!(parse(&["broadcast", "--key", "k"]).is_err(), "--key needs --secret");
        assert!(parse(&["broadcast", "--token", "t", "--key", "k", "--secret", "s"]).is_err());
        assert!(parse(&["conference", "--rooms", "0"]).is_err());
        let cli = parse(&["broadcast", "--url", "http://x", "--max-loss-pct", "5"]).unwrap();
        assert!(cli.scenario.common().validate().is_err());
        let cli = parse(&["broadcast", "--max-loss-pct", "500"]).unwrap();
        assert!(cli.scenario.common().validate().is_err());
    }
}
