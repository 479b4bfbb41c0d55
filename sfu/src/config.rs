//! Command-line flags, each also readable from an `SFU_*` environment variable.

use clap::{ArgAction, Args, Parser, Subcommand};
use signaling::auth::ApiKey;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The `sfu` command line: serving is the default when no subcommand is given.
#[derive(Debug, Clone, Parser)]
#[command(name = "sfu", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of the default `serve` behaviour.
    #[command(flatten)]
    pub serve: Config,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print a signed access token (JWT) for scripts and tests.
    Token(TokenArgs),
}

/// `sfu token` flags.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// API key id (`kid`/`iss`).
    #[arg(long, required_unless_present = "dev")]
    pub key: Option<String>,
    /// API key secret (env SFU_TOKEN_SECRET keeps it off the command line).
    #[arg(long, env = "SFU_TOKEN_SECRET", hide_env_values = true, required_unless_present = "dev")]
    pub secret: Option<String>,
    /// Sign with the insecure development key of `sfu --dev`.
    #[arg(long, conflicts_with_all = ["key", "secret"])]
    pub dev: bool,
    /// Room the token joins (grants join; required unless --admin).
    #[arg(long, required_unless_present = "admin")]
    pub room: Option<String>,
    /// Identity (`sub`).
    #[arg(long)]
    pub identity: String,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Grant the REST API (admin).
    #[arg(long)]
    pub admin: bool,
    /// Withhold the publish grant (a viewer).
    #[arg(long)]
    pub no_publish: bool,
    /// Withhold the subscribe grant.
    #[arg(long)]
    pub no_subscribe: bool,
    /// Lifetime, e.g. `6h`, `30m`.
    #[arg(long, default_value = "6h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

/// A selective forwarding media server.
#[derive(Debug, Clone, Parser)]
#[command(name = "sfu", version, about)]
pub struct Config {
    /// Development mode: embedded defaults, joins without tokens, the public development key
    /// (`devkey`:`devsecret`) and `GET /api/dev/token`. Insecure: never in production. Binds
    /// loopback unless `--http`/`--udp` say otherwise; refused together with `--keys` (it would
    /// accept the public key beside them).
    #[arg(long, env = "SFU_DEV", default_value_t = false, conflicts_with = "keys")]
    pub dev: bool,
    /// API keys that sign access tokens, `KEY:SECRET[,KEY:SECRET]` (secrets of 32+ bytes).
    #[arg(long, env = "SFU_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub keys: Vec<ApiKey>,
    /// How long a drain waits for rooms to end before telling participants to reconnect
    /// elsewhere (e.g. `2h`, `30s`).
    #[arg(long, env = "SFU_DRAIN_DEADLINE", default_value = "2h", value_parser = humantime::parse_duration)]
    pub drain_deadline: Duration,
    /// While draining, existing rooms keep admitting participants up to their limit.
    #[arg(long, env = "SFU_DRAIN_ADMIT", default_value_t = true, action = ArgAction::Set)]
    pub drain_admit: bool,
    /// HTTP/WebSocket listen address [default: 0.0.0.0:7880; 127.0.0.1:7880 with `--dev`].
    #[arg(long, env = "SFU_HTTP")]
    pub http: Option<SocketAddr>,
    /// UDP media listen address (one port for all media; the first of `--media-threads`'
    /// ports) [default: 0.0.0.0:7882; 127.0.0.1:7882 with `--dev`].
    #[arg(long, env = "SFU_UDP")]
    pub udp: Option<SocketAddr>,
    /// ICE-TCP listen address (RFC 6544: clients whose networks block UDP connect to it), or
    /// `off` [default: the UDP media port's address, the same port number over TCP; with
    /// `--media-threads`, one per thread beside each UDP port].
    #[arg(long, env = "SFU_TCP")]
    pub tcp: Option<TcpListen>,
    /// IPs announced in ICE candidates (comma-separated); `auto` asks `--stun-server` for
    /// this node's public address once at start (a node behind a 1:1 NAT). Default: the bound
    /// address, or every local interface address when bound to 0.0.0.0.
    #[arg(long, env = "SFU_EXTERNAL_IP", value_delimiter = ',')]
    pub external_ip: Vec<ExternalIp>,
    /// Shared secret of an external TURN server (coturn `use-auth-secret` /
    /// `static-auth-secret`): every `joined` then carries `ice_servers` with `--turn-urls` and
    /// credentials for the participant (`expiry:identity`, HMAC-SHA1 of it).
    #[arg(long, env = "SFU_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// TURN URLs handed out with `--turn-secret` (comma-separated), e.g.
    /// `turn:turn.example.com:3478?transport=udp,turns:turn.example.com:5349?transport=tcp`.
    #[arg(long, env = "SFU_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,
    /// How long TURN credentials stay valid (the TURN server refuses them after; an allocation
    /// made before lives on only while the server accepts its refreshes).
    #[arg(long, env = "SFU_TURN_TTL", default_value = "12h", value_parser = humantime::parse_duration)]
    pub turn_ttl: Duration,
    /// Embedded TURN server on UDP and TCP at this address (e.g. `0.0.0.0:3478`): every
    /// `joined` then carries credentials for it (with `--turn-secret`, the shared secret; else
    /// one made at start). It relays only to this node's media ports. Off by default.
    #[arg(long, env = "SFU_TURN")]
    pub turn: Option<SocketAddr>,
    /// Embedded TURN over TLS at this address (e.g. `0.0.0.0:5349`), with `--tls-cert`'s
    /// certificate.
    #[arg(long, env = "SFU_TURN_TLS", requires = "tls_cert")]
    pub turn_tls: Option<SocketAddr>,
    /// Host in the embedded TURN server's URLs handed to clients [default: the first
    /// announced IP]; for TURN over TLS, a name the certificate covers.
    #[arg(long, env = "SFU_TURN_HOST")]
    pub turn_host: Option<String>,
    /// STUN server (`host:port`) that `--external-ip auto` asks.
    #[arg(long, env = "SFU_STUN_SERVER", default_value = "stun.l.google.com:19302")]
    pub stun_server: String,
    /// The address `--external-ip auto` learned (set at start).
    #[arg(skip)]
    pub discovered_ip: Option<IpAddr>,
    /// Participant limit of a room.
    #[arg(long, env = "SFU_MAX_PARTICIPANTS", default_value_t = 100)]
    pub max_participants: usize,
    /// In a room that already has this many participants, a newcomer is announced to the
    /// others (`participant_joined`, `participant_left`, their `joined` lists) only once it
    /// publishes a track: a broadcast to thousands of viewers then does not send every viewer
    /// a message per other viewer. 0 announces everyone. The default equals the default room
    /// limit: it acts in rooms whose limit was raised.
    #[arg(long, env = "SFU_QUIET_VIEWERS_ABOVE", default_value_t = 100)]
    pub quiet_viewers_above: usize,
    /// Cap each subscriber's layers by its connection's bandwidth estimate, pausing what does
    /// not fit (transport-wide feedback is read and the estimate kept either way, see
    /// `/metrics`); `false` forwards what the subscriber asks whatever its downlink.
    #[arg(long, env = "SFU_BWE_ALLOCATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub bwe_allocate: bool,
    /// Datagrams per send system call (sendmmsg, 1-64); 1 sends each datagram on its own, as a
    /// baseline for benchmarks.
    #[arg(long, env = "SFU_SEND_BATCH", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub send_batch: u16,
    /// UDP segmentation offload: consecutive datagrams to one destination leave as one
    /// message (`--gso false` sends each on its own, as a baseline for benchmarks).
    #[arg(long, env = "SFU_GSO", default_value_t = true, action = clap::ArgAction::Set)]
    pub gso: bool,
    /// Kernel receive buffer of the media socket, bytes (0: the kernel's default,
    /// `net.core.rmem_default`, ~208 KiB). Beyond `net.core.rmem_max` only with CAP_NET_ADMIN
    /// (a warning says when it was capped). Datagrams the kernel drops for lack of it are
    /// counted as `sfu_dropped_packets_total{reason="udp_receive_buffer_full"}`: a 40-publisher
    /// conference lost 52-1,933 per 20 s run in the kernel's default and none with 1 MiB.
    /// Arrival times come from the kernel (`SO_TIMESTAMPNS`), so a datagram that waited in the
    /// buffer does not look like network delay to its sender's bandwidth estimate (without
    /// them 1 MiB slowed a browser's ramp to its top layer from ~1 s to ~20 s;
    /// docs/perf-history.md 16.6, 17.1).
    #[arg(long, env = "SFU_UDP_RECV_BUFFER", default_value_t = 1 << 20)]
    pub udp_recv_buffer: usize,
    /// Helper threads that share the sending of a room's large flushes (256+ datagrams, e.g. a
    /// video frame to hundreds of subscribers) with its worker, so one room's fan-out can use
    /// more than one core. Default: one less than the CPUs; 0 turns it off.
    #[arg(long, env = "SFU_SEND_THREADS")]
    pub send_threads: Option<usize>,
    /// Media threads: each runs its own reader and its rooms on one thread, on its own UDP
    /// port (`--udp`'s port + 0, 1, ..., or an ephemeral one each for port 0), so a room's
    /// datagrams never cross threads between the socket and its worker. A new room goes to
    /// the thread with the fewest rooms. Operators open every port of the range. 0 (default):
    /// one media port, read by one task, rooms on the server's shared runtime. With 2, a
    /// 25 x 4 conference cost ~11% less server CPU, one room of 500 viewers ~10% more
    /// (docs/perf-history.md 22).
    #[arg(long, env = "SFU_MEDIA_THREADS", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub media_threads: u16,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(
        long,
        env = "SFU_LOG",
        default_value = "info,rtc=warn,rtc_ice=warn,rtc_ice::agent=error,rtc::peer_connection::handler=error,rtc_dtls=error,rtc_srtp=error"
    )]
    pub log: String,
    /// Open HTTP and WebSocket connections at most (more are closed at once).
    #[arg(long, env = "SFU_HTTP_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub http_max_connections: usize,
    /// Open HTTP and WebSocket connections from one IP address at most: no one host takes
    /// every socket (a load test from one host needs one per simulated client).
    #[arg(long, env = "SFU_HTTP_MAX_PER_IP", default_value_t = 2_000)]
    pub http_max_per_ip: usize,
    /// How long a request's headers may take to arrive (a client trickling them would hold
    /// its connection forever).
    #[arg(long, env = "SFU_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_header_timeout: Duration,
    /// Certificate chain (PEM) for HTTPS and WSS on the `--http` port; with `--tls-key`.
    /// Reloaded on SIGHUP and when the file changes. Without it the port speaks plain HTTP
    /// (behind a TLS-terminating proxy).
    #[arg(long, env = "SFU_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = "SFU_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Redis URL of the fleet directory (`redis://host:6379/0`): with it the node joins the
    /// fleet of every node given the same URL (and `--fleet-prefix`): a room lives on one
    /// node, and a join reaching another node is relayed there. Without it the node runs
    /// alone.
    #[arg(long, env = "SFU_REDIS")]
    pub redis: Option<String>,
    /// This node's id in the fleet [default: `<hostname>-<HTTP port>`, unique per host and
    /// kept across restarts].
    #[arg(long, env = "SFU_NODE_ID")]
    pub node_id: Option<String>,
    /// This node's HTTP base URL as the other nodes reach it [default: `http://<IP>:<HTTP
    /// port>`, the IP being `--http`'s, else the first `--external-ip`, else this host's].
    #[arg(long, env = "SFU_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Between the fleet heartbeats of a node: its record lives 3 of them, a room's lease 5,
    /// so a node that dies loses its rooms within 5.
    #[arg(long, env = "SFU_FLEET_HEARTBEAT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub fleet_heartbeat: Duration,
    /// Prefix of the fleet's Redis keys (fleets sharing one Redis differ in it).
    #[arg(long, env = "SFU_FLEET_PREFIX", default_value = "sfu:")]
    pub fleet_prefix: String,
    /// Tests only, no flag: the worker of the room of this name panics when a track is
    /// published in it (the containment of a failed room is tested with a real one).
    #[arg(skip)]
    pub inject_room_panic: Option<String>,
}

/// One `--external-ip` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalIp {
    /// This address.
    Ip(IpAddr),
    /// The public address a STUN server sees (`auto`).
    Auto,
}

impl std::str::FromStr for ExternalIp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ExternalIp::Auto),
            _ => s.parse().map(ExternalIp::Ip).map_err(|_| format!("{s:?} is neither an IP address nor `auto`")),
        }
    }
}

/// `--tcp`: where ICE-TCP listens, or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpListen {
    /// This address (with `--media-threads`, its port + the thread's index).
    Addr(SocketAddr),
    /// No ICE-TCP.
    Off,
}

impl std::str::FromStr for TcpListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(TcpListen::Off),
            _ => s.parse().map(TcpListen::Addr).map_err(|_| format!("{s:?} is neither a socket address nor `off`")),
        }
    }
}

/// Default HTTP port.
pub const HTTP_PORT: u16 = 7880;
/// Default media port.
pub const UDP_PORT: u16 = 7882;

impl Config {
    /// The HTTP listener's limits.
    pub fn http_limits(&self) -> crate::http::HttpLimits {
        crate::http::HttpLimits {
            connections: self.http_max_connections,
            per_ip: self.http_max_per_ip,
            header_read: self.http_header_timeout,
        }
    }

    /// Where HTTP and WebSocket listen: `--http`, else every interface, or loopback in
    /// development mode.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.unwrap_or_else(|| self.default_addr(HTTP_PORT))
    }

    /// Where media listens: `--udp`, else every interface, or loopback in development mode.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp.unwrap_or_else(|| self.default_addr(UDP_PORT))
    }

    fn default_addr(&self, port: u16) -> SocketAddr {
        let ip = if self.dev { IpAddr::from([127, 0, 0, 1]) } else { IpAddr::from([0, 0, 0, 0]) };
        SocketAddr::new(ip, port)
    }

    /// In development mode, the listen addresses other hosts can reach (given explicitly):
    /// the insecure node is exposed there.
    pub fn dev_exposed(&self) -> Vec<SocketAddr> {
        let addrs = [self.http_addr(), self.udp_addr()];
        addrs.into_iter().filter(|a| self.dev && !a.ip().is_loopback()).collect()
    }

    /// Helper threads of the send pool: `--send-threads`, else one less than the CPUs.
    pub fn send_helpers(&self) -> usize {
        self.send_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1))
            .min(64)
    }

    /// The media port of media thread `i`: `--udp` with its port + `i` (an ephemeral port
    /// stays ephemeral); an error past port 65535.
    pub fn media_thread_addr(&self, i: u16) -> anyhow::Result<SocketAddr> {
        let mut addr = self.udp_addr();
        if addr.port() != 0 {
            let port = addr.port().checked_add(i).ok_or_else(|| {
                anyhow::anyhow!(
                    "--media-threads {}: media port {} + {i} is past 65535",
                    self.media_threads,
                    addr.port()
                )
            })?;
            addr.set_port(port);
        }
        Ok(addr)
    }

    /// Where media thread `i`'s ICE-TCP listener binds, beside its UDP socket bound at `udp`:
    /// `--tcp` (its port + `i`), else `udp` itself (the same port number over TCP); `None`
    /// with `--tcp off`. The flag says whether the address was asked for (a default that is
    /// taken falls back to a port the OS picks).
    pub fn tcp_addr(&self, i: u16, udp: SocketAddr) -> anyhow::Result<Option<(SocketAddr, bool)>> {
        match self.tcp {
            Some(TcpListen::Off) => Ok(None),
            None => Ok(Some((udp, false))),
            Some(TcpListen::Addr(mut addr)) => {
                if addr.port() != 0 {
                    let port = addr.port().checked_add(i).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--media-threads {}: TCP port {} + {i} is past 65535",
                            self.media_threads,
                            addr.port()
                        )
                    })?;
                    addr.set_port(port);
                }
                Ok(Some((addr, true)))
            }
        }
    }

    /// The IPs to announce: explicit ones, else the bound IP, else local interface addresses.
    pub fn announce_ips(&self, bound: SocketAddr) -> Vec<IpAddr> {
        if !self.external_ip.is_empty() {
            return self
                .external_ip
                .iter()
                .filter_map(|e| match e {
                    ExternalIp::Ip(ip) => Some(*ip),
                    ExternalIp::Auto => self.discovered_ip,
                })
                .collect();
        }
        if !bound.ip().is_unspecified() {
            return vec![bound.ip()];
        }
        let mut ips = local_ips();
        if ips.is_empty() {
            ips.push(IpAddr::from([127, 0, 0, 1]));
        }
        ips
    }
}

impl Config {
    /// The fleet settings, with `--redis`; `http` is the bound HTTP address.
    pub fn fleet(&self, http: SocketAddr) -> Option<signaling::fleet::FleetConfig> {
        let redis = self.redis.clone()?;
        let node_id = self.node_id.clone().unwrap_or_else(|| format!("{}-{}", hostname(), http.port()));
        let url = self.advertise_url.clone().unwrap_or_else(|| {
            let ip = self.announce_ips(http)[0];
            let scheme = if self.tls_cert.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", SocketAddr::new(ip, http.port()))
        });
        Some(signaling::fleet::FleetConfig {
            redis,
            node_id: node_id.into(),
            url,
            heartbeat: self.fleet_heartbeat,
            prefix: self.fleet_prefix.clone(),
        })
    }
}

/// This host's name (`node` when it cannot be read).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

/// Addresses of this host's interfaces: learned by "connecting" UDP sockets (no packet is
/// sent), which finds the address of the default route, plus loopback.
fn local_ips() -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for probe in ["192.0.2.1:9", "[2001:db8::1]:9"] {
        let bind = if probe.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
        if let Ok(s) = std::net::UdpSocket::bind(bind)
            && s.connect(probe).is_ok()
            && let Ok(a) = s.local_addr()
            && !a.ip().is_unspecified()
        {
            ips.push(a.ip());
        }
    }
    ips.push(IpAddr::from([127, 0, 0, 1]));
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("sfu").chain(args.iter().copied()))
    }

    #[test]
    fn tcp_listens_beside_udp_unless_moved_or_off() {
        let udp: SocketAddr = "10.0.0.5:7882".parse().unwrap();
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        // columns: flags, media thread, where ICE-TCP binds (and whether it was asked for)
        let rows: &[(&[&str], u16, Option<(SocketAddr, bool)>)] = &[
            (&[], 0, Some((udp, false))),
            (&["--tcp", "off"], 0, None),
            (&["--tcp", "0.0.0.0:443"], 0, Some((a("0.0.0.0:443"), true))),
            (&["--tcp", "0.0.0.0:443"], 2, Some((a("0.0.0.0:445"), true))),
            (&["--tcp", "127.0.0.1:0"], 3, Some((a("127.0.0.1:0"), true))),
        ];
        for (flags, thread, want) in rows {
            assert_eq!(parse(flags).unwrap().tcp_addr(*thread, udp).unwrap(), *want, "{flags:?} thread {thread}");
        }
        assert!(parse(&["--tcp", "65535"]).is_err(), "an address or off");
        assert!(parse(&["--tcp", "0.0.0.0:65535"]).unwrap().tcp_addr(1, udp).is_err(), "past the last port");
    }

    #[test]
    fn external_ips_explicit_auto_or_default() {
        let bound: SocketAddr = "10.0.0.5:7882".parse().unwrap();
        let public: IpAddr = "203.0.113.7".parse().unwrap();
        // columns: flags, the address `auto` learned, announced
        let rows: &[(&[&str], Option<IpAddr>, Vec<IpAddr>)] = &[
            (&[], None, vec![bound.ip()]),
            (&["--external-ip", "198.51.100.1"], None, vec!["198.51.100.1".parse().unwrap()]),
            (&["--external-ip", "auto"], Some(public), vec![public]),
            (&["--external-ip", "auto,198.51.100.1"], Some(public), vec![public, "198.51.100.1".parse().unwrap()]),
        ];
        for (flags, learned, want) in rows {
            let mut c = parse(flags).unwrap();
            c.discovered_ip = *learned;
            assert_eq!(&c.announce_ips(bound), want, "{flags:?}");
        }
        assert!(parse(&["--external-ip", "somewhere"]).is_err(), "neither an IP nor auto");
    }

    #[test]
    fn dev_mode_binds_loopback_unless_told_and_refuses_keys() {
        let key = "k1:0123456789abcdef0123456789abcdef";
        // columns: arguments, HTTP address, media address, exposed in development mode
        let rows: &[(&[&str], &str, &str, usize)] = &[
            (&["--dev"], "127.0.0.1:7880", "127.0.0.1:7882", 0),
            (&["--keys", key], "0.0.0.0:7880", "0.0.0.0:7882", 0),
            (&["--dev", "--http", "0.0.0.0:8080"], "0.0.0.0:8080", "127.0.0.1:7882", 1),
            (&["--dev", "--http", "0.0.0.0:80", "--udp", "10.0.0.1:9"], "0.0.0.0:80", "10.0.0.1:9", 2),
            (&["--dev", "--udp", "[::1]:5000"], "127.0.0.1:7880", "[::1]:5000", 0),
        ];
        for &(args, http, udp, exposed) in rows {
            let c = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(c.http_addr(), http.parse::<SocketAddr>().unwrap(), "{args:?}");
            assert_eq!(c.udp_addr(), udp.parse::<SocketAddr>().unwrap(), "{args:?}");
            assert_eq!(c.dev_exposed().len(), exposed, "{args:?}");
        }
        let refused = parse(&["--dev", "--keys", key]).expect_err("--dev with --keys");
        assert_eq!(refused.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn the_kubernetes_log_filter_is_the_default() {
        // a filter that turns rtc's per-datagram warnings back on lets peers flood the log
        let yaml = include_str!("../../k8s/configmap.yaml");
        let line = yaml.lines().find_map(|l| l.trim().strip_prefix("SFU_LOG: ")).expect("SFU_LOG in the ConfigMap");
        assert_eq!(line.trim_matches('"'), parse(&["--dev"]).unwrap().log);
    }
}
