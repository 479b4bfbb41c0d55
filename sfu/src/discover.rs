//! `--external-ip auto`: this node's public address, from a STUN server's answer to a binding
//! request (RFC 8489), for nodes behind a 1:1 NAT (cloud VMs) whose public address no local
//! interface carries. Asked once at start, three tries within the deadline; a node that cannot
//! learn it does not start (it would announce an address nobody reaches).

use rtc::stun::message::{BINDING_REQUEST, Getter, Message, TransactionId};
use rtc::stun::xoraddr::XorMappedAddress;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;

/// Why the public address could not be learned.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The server's name did not resolve, or a socket could not be opened.
    #[error("STUN server {server}: {error}")]
    Io {
        /// The server asked.
        server: String,
        /// What failed.
        error: std::io::Error,
    },
    /// No usable answer in time.
    #[error("no answer with an XOR-MAPPED-ADDRESS from STUN server {server} within {within:?}")]
    NoAnswer {
        /// The server asked.
        server: String,
        /// How long it was given.
        within: Duration,
    },
}

/// The address `server` (`host:port`) sees this host's requests come from.
pub async fn public_ip(server: &str, within: Duration) -> Result<IpAddr, DiscoverError> {
    let io = |error| DiscoverError::Io { server: server.to_owned(), error };
    let to: SocketAddr = tokio::net::lookup_host(server)
        .await
        .map_err(io)?
        .next()
        .ok_or_else(|| io(std::io::Error::other("no address")))?;
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0".parse() } else { "[::]:0".parse() }.expect("valid");
    let socket = UdpSocket::bind(bind).await.map_err(io)?;
    let mut request = Message::new();
    request
        .build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        socket.send_to(&request.raw, to).await.map_err(io)?;
        let deadline = tokio::time::Instant::now() + within / 3;
        while let Ok(Ok((n, from))) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
            if from != to {
                continue;
            }
            if let Some(ip) = mapped(&buf[..n], &request.transaction_id) {
                return Ok(ip);
            }
        }
    }
    Err(DiscoverError::NoAnswer { server: server.to_owned(), within })
}

/// The XOR-MAPPED-ADDRESS of a binding response to transaction `id`.
fn mapped(datagram: &[u8], id: &TransactionId) -> Option<IpAddr> {
    let mut m = Message::new();
    m.unmarshal_binary(datagram).ok()?;
    if m.transaction_id != *id {
        return None;
    }
    let mut addr = XorMappedAddress::default();
    addr.get_from(&m).ok()?;
    Some(addr.ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::stun::message::{BINDING_SUCCESS, Setter};

    /// A STUN server on loopback that answers every binding request with `public` (and drops
    /// the first `drop_first` requests).
    async fn server(public: IpAddr, drop_first: usize) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let mut seen = 0;
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                seen += 1;
                let mut req = Message::new();
                if req.unmarshal_binary(&buf[..n]).is_err() || seen <= drop_first {
                    continue;
                }
                let mut resp = Message::new();
                let xor = XorMappedAddress { ip: public, port: 40000 };
                resp.build(&[
                    Box::new(req.transaction_id),
                    Box::new(BINDING_SUCCESS),
                    Box::new(xor) as Box<dyn Setter>,
                ])
                .unwrap();
                let _ = socket.send_to(&resp.raw, from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn learns_the_mapped_address_and_retries() {
        let public: IpAddr = "203.0.113.7".parse().unwrap();
        for drop_first in [0, 2] {
            let addr = server(public, drop_first).await;
            let got = public_ip(&addr.to_string(), Duration::from_millis(900)).await.unwrap();
            assert_eq!(got, public, "after {drop_first} lost requests");
        }
        // nobody answers: a clear error in time
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let err = public_ip(&silent.local_addr().unwrap().to_string(), Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(err, DiscoverError::NoAnswer { .. }), "{err}");
    }
}
