//! Command-line flags, each also readable from an `SFU_*` environment variable.

use clap::Parser;
use std::net::{IpAddr, SocketAddr};

/// A selective forwarding media server.
#[derive(Debug, Clone, Parser)]
#[command(name = "sfu", version, about)]
pub struct Config {
    /// Development mode: embedded defaults, joins without tokens.
    #[arg(long, env = "SFU_DEV", default_value_t = false)]
    pub dev: bool,
    /// HTTP/WebSocket listen address.
    #[arg(long, env = "SFU_HTTP", default_value = "0.0.0.0:7880")]
    pub http: SocketAddr,
    /// UDP media listen address (one port for all media).
    #[arg(long, env = "SFU_UDP", default_value = "0.0.0.0:7882")]
    pub udp: SocketAddr,
    /// IPs announced in ICE candidates (comma-separated); defaults to the bound address, or
    /// every local interface address when bound to 0.0.0.0.
    #[arg(long, env = "SFU_EXTERNAL_IP", value_delimiter = ',')]
    pub external_ip: Vec<IpAddr>,
    /// Participant limit of a room.
    #[arg(long, env = "SFU_MAX_PARTICIPANTS", default_value_t = 100)]
    pub max_participants: usize,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "SFU_LOG", default_value = "info,rtc_dtls=error")]
    pub log: String,
}

impl Config {
    /// The IPs to announce: explicit ones, else the bound IP, else local interface addresses.
    pub fn announce_ips(&self, bound: SocketAddr) -> Vec<IpAddr> {
        if !self.external_ip.is_empty() {
            return self.external_ip.clone();
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

/// Addresses of this host's interfaces: learned by "connecting" UDP sockets (no packet is
/// sent), which finds the address of the default route, plus loopback.
fn local_ips() -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for probe in ["192.0.2.1:9", "[2001:db8::1]:9"] {
        let bind = if probe.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
        if let Ok(s) = std::net::UdpSocket::bind(bind) {
            if s.connect(probe).is_ok() {
                if let Ok(a) = s.local_addr() {
                    if !a.ip().is_unspecified() {
                        ips.push(a.ip());
                    }
                }
            }
        }
    }
    ips.push(IpAddr::from([127, 0, 0, 1]));
    ips
}
