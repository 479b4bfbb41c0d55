//! Which way a peer connection's datagrams travel: the UDP media port, or an ICE-TCP
//! connection (RFC 6544) on the TCP media port, known by its remote address.

use rtc::shared::TransportProtocol;
use std::net::SocketAddr;

/// A transport address of a peer: the remote address, and whether it is a UDP address or the
/// remote end of a TCP connection (the two port spaces are separate, so an address alone does
/// not say which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// A UDP address (the media port sends to it).
    Udp(SocketAddr),
    /// The remote end of an ICE-TCP connection (its writer sends, RFC 4571 framed).
    Tcp(SocketAddr),
}

impl Path {
    /// The remote address.
    pub fn addr(self) -> SocketAddr {
        match self {
            Path::Udp(a) | Path::Tcp(a) => a,
        }
    }

    /// The transport protocol, as `rtc` names it.
    pub fn protocol(self) -> TransportProtocol {
        match self {
            Path::Udp(_) => TransportProtocol::UDP,
            Path::Tcp(_) => TransportProtocol::TCP,
        }
    }

    /// The path of `addr` over `protocol`.
    pub fn new(addr: SocketAddr, protocol: TransportProtocol) -> Path {
        match protocol {
            TransportProtocol::TCP => Path::Tcp(addr),
            _ => Path::Udp(addr),
        }
    }
}

impl From<SocketAddr> for Path {
    fn from(addr: SocketAddr) -> Path {
        Path::Udp(addr)
    }
}
