//! Media paths other than direct UDP, to measure what they cost the server: ICE-TCP (RFC 6544,
//! RFC 4571 framing to the server's passive TCP candidate) and TURN (RFC 8656) over UDP or TCP
//! with the credentials in `joined`. The client's `rtc` connection still believes it talks UDP
//! to the server's UDP candidate; this layer carries those datagrams the other way and hands
//! what comes back as if it came from that candidate.
//!
//! The TURN client is written against `rtc`'s STUN and TURN attribute code, not the server's:
//! it checks the server from outside.

use crate::engine::PcId;
use crate::error::ClientError;
use crate::socket::Received;
use bytes::{Buf, BytesMut};
use futures::Stream;
use rtc::stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use rtc::stun::error_code::ErrorCodeAttribute;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{
    CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter, METHOD_ALLOCATE, METHOD_CHANNEL_BIND, Message, MessageType, Setter,
    TransactionId,
};
use rtc::stun::textattrs::TextAttribute;
use signaling::protocol::IceServer;
use std::future::Future as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

/// The channel bound to the server's media port.
const CHANNEL: u16 = 0x4000;
/// How long one setup exchange may take.
const EXCHANGE: Duration = Duration::from_secs(3);
/// The channel (and with it the permission, 300 s) is refreshed this often.
const REFRESH: Duration = Duration::from_secs(120);
/// Bytes queued on a TCP stream the kernel would not take yet; beyond it the stream is broken.
const MAX_BACKLOG: usize = 1 << 20;

/// How a client's connections reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaTransport {
    /// Straight UDP to the server's media port.
    #[default]
    Udp,
    /// ICE-TCP to the server's passive TCP candidate.
    IceTcp,
    /// Through the TURN server in `joined`, over UDP.
    TurnUdp,
    /// Through the TURN server in `joined`, over TCP.
    TurnTcp,
}

impl std::str::FromStr for MediaTransport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "udp" => Ok(MediaTransport::Udp),
            "tcp" => Ok(MediaTransport::IceTcp),
            "turn-udp" => Ok(MediaTransport::TurnUdp),
            "turn-tcp" => Ok(MediaTransport::TurnTcp),
            _ => Err(format!("{s:?}: one of udp, tcp, turn-udp, turn-tcp")),
        }
    }
}

impl std::fmt::Display for MediaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MediaTransport::Udp => "udp",
            MediaTransport::IceTcp => "tcp",
            MediaTransport::TurnUdp => "turn-udp",
            MediaTransport::TurnTcp => "turn-tcp",
        })
    }
}

/// A TURN server and the credential to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    /// The server's address.
    pub server: SocketAddr,
    /// `expiry:identity`.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl TurnCredential {
    /// The first plain `turn:` URL over `tcp` (else UDP) in `servers`.
    pub fn pick(servers: &[IceServer], tcp: bool) -> Option<TurnCredential> {
        let want = if tcp { "tcp" } else { "udp" };
        servers.iter().find_map(|s| {
            s.urls.iter().find_map(|u| {
                let rest = u.strip_prefix("turn:")?;
                let (hostport, query) = rest.split_once('?').unwrap_or((rest, "transport=udp"));
                if query != format!("transport={want}") {
                    return None;
                }
                let server = hostport.to_socket_addrs().ok()?.next()?;
                Some(TurnCredential { server, username: s.username.clone(), password: s.credential.clone() })
            })
        })
    }
}

/// The path a client's connections take: what [`MediaTransport`] needs, resolved at join.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MediaPath {
    /// Straight UDP.
    #[default]
    Direct,
    /// ICE-TCP.
    IceTcp,
    /// TURN over UDP (`tcp` false) or TCP.
    Turn {
        /// The server and credential.
        credential: TurnCredential,
        /// Over TCP.
        tcp: bool,
    },
}

impl MediaPath {
    /// The path for `transport` given the `ice_servers` of `joined`.
    pub fn resolve(transport: MediaTransport, ice_servers: &[IceServer]) -> Result<MediaPath, ClientError> {
        let turn = |tcp: bool| {
            TurnCredential::pick(ice_servers, tcp).map(|credential| MediaPath::Turn { credential, tcp }).ok_or_else(
                || ClientError::Protocol(format!("no turn: URL over {} in joined", if tcp { "TCP" } else { "UDP" })),
            )
        };
        match transport {
            MediaTransport::Udp => Ok(MediaPath::Direct),
            MediaTransport::IceTcp => Ok(MediaPath::IceTcp),
            MediaTransport::TurnUdp => turn(false),
            MediaTransport::TurnTcp => turn(true),
        }
    }
}

/// The server's first UDP host candidate and first passive TCP candidate in an SDP.
pub(crate) fn candidates(sdp: &str) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let (mut udp, mut tcp) = (None, None);
    for line in sdp.lines() {
        let Some(c) = line.strip_prefix("a=candidate:") else { continue };
        let f: Vec<&str> = c.split_whitespace().collect();
        // foundation component transport priority address port "typ" type ...
        let (Some(proto), Some(ip), Some(port)) = (f.get(2), f.get(4), f.get(5)) else { continue };
        let Some(addr) = ip.parse().ok().zip(port.parse().ok()).map(|(ip, port)| SocketAddr::new(ip, port)) else {
            continue;
        };
        match proto.to_ascii_lowercase().as_str() {
            "udp" if udp.is_none() => udp = Some(addr),
            "tcp" if tcp.is_none() && c.contains("tcptype passive") => tcp = Some(addr),
            _ => {}
        }
    }
    (udp, tcp)
}

/// Long-term credentials with the realm and nonce of a challenge.
#[derive(Debug, Clone)]
struct Auth {
    username: String,
    password: String,
    realm: String,
    nonce: String,
}

fn request(method: rtc::stun::message::Method, auth: Option<&Auth>, attrs: Vec<Box<dyn Setter>>) -> Vec<u8> {
    let provider = rtc::crypto::default_provider().expect("a crypto provider");
    let mut setters: Vec<Box<dyn Setter + '_>> =
        vec![Box::new(TransactionId::new()), Box::new(MessageType::new(method, CLASS_REQUEST))];
    setters.extend(attrs);
    if let Some(a) = auth {
        setters.push(Box::new(TextAttribute::new(ATTR_USERNAME, a.username.clone())));
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, a.realm.clone())));
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, a.nonce.clone())));
        setters.push(Box::new(
            MessageIntegrity::new_long_term_integrity_with_provider(
                a.username.clone(),
                a.realm.clone(),
                a.password.clone(),
                provider.crypto(),
            )
            .expect("MD5 from the provider"),
        ));
    }
    let mut m = Message::new();
    m.build(&setters).expect("a request builds");
    m.raw
}

fn allocate(auth: Option<&Auth>) -> Vec<u8> {
    let transport = rtc::turn::proto::reqtrans::RequestedTransport { protocol: rtc::turn::proto::PROTO_UDP };
    let lifetime = rtc::turn::proto::lifetime::Lifetime(Duration::from_secs(3600));
    request(METHOD_ALLOCATE, auth, vec![Box::new(transport), Box::new(lifetime)])
}

fn channel_bind(auth: &Auth, peer: SocketAddr) -> Vec<u8> {
    let number = rtc::turn::proto::channum::ChannelNumber(CHANNEL);
    let peer = rtc::turn::proto::peeraddr::PeerAddress { ip: peer.ip(), port: peer.port() };
    request(METHOD_CHANNEL_BIND, Some(auth), vec![Box::new(number), Box::new(peer)])
}

/// A reply: success, or the error code with the realm and nonce of a challenge.
fn verdict(raw: &[u8]) -> Result<(), (u16, Option<String>, Option<String>)> {
    let mut m = Message::new();
    m.unmarshal_binary(raw).map_err(|_| (0, None, None))?;
    if m.typ.class == CLASS_SUCCESS_RESPONSE {
        return Ok(());
    }
    let mut code = ErrorCodeAttribute::default();
    let code = code.get_from(&m).map(|()| code.code.0).unwrap_or(0);
    let text = |t| TextAttribute::get_from_as(&m, t).ok().map(|a| a.text);
    Err((code, text(ATTR_REALM), text(ATTR_NONCE)))
}

/// The TURN client's progress: challenge, allocation, channel, then relaying.
#[derive(Debug)]
enum TurnState {
    Challenge,
    Allocate(Auth),
    Bind(Auth),
    Ready { auth: Auth, refreshed: Instant },
    Failed,
}

/// A TURN client that never blocks: each reply moves it on; requests are retransmitted when
/// the connection next sends.
#[derive(Debug)]
struct TurnClient {
    credential: TurnCredential,
    state: TurnState,
    /// The request in flight and when it was last sent.
    pending: Option<(Vec<u8>, Instant)>,
    tries: u32,
}

/// Retransmission interval of a setup request.
const RETRANSMIT: Duration = Duration::from_millis(250);
/// Sends of one setup request before the client gives up.
const TRIES: u32 = 12;

impl TurnClient {
    fn new(credential: TurnCredential) -> Self {
        TurnClient {
            credential,
            state: TurnState::Challenge,
            pending: Some((allocate(None), Instant::now())),
            tries: 0,
        }
    }

    fn ready(&self) -> bool {
        matches!(self.state, TurnState::Ready { .. })
    }

    fn ask(&mut self, req: Vec<u8>) {
        self.pending = Some((req, Instant::now()));
        self.tries = 0;
    }

    /// The request to (re)send now, if any: setup requests until answered, and the channel
    /// refresh when due.
    fn due(&mut self, server: SocketAddr) -> Option<Vec<u8>> {
        if let TurnState::Ready { auth, refreshed } = &mut self.state {
            if refreshed.elapsed() < REFRESH {
                return None;
            }
            *refreshed = Instant::now();
            return Some(channel_bind(auth, server));
        }
        let (req, sent) = self.pending.as_mut()?;
        if self.tries > 0 && sent.elapsed() < RETRANSMIT {
            return None;
        }
        if self.tries >= TRIES {
            tracing::warn!(server = %self.credential.server, state = ?self.state, "the TURN server does not answer");
            self.state = TurnState::Failed;
            self.pending = None;
            return None;
        }
        self.tries += 1;
        *sent = Instant::now();
        Some(req.clone())
    }

    /// A STUN message from the TURN server.
    fn on_reply(&mut self, raw: &[u8], server: SocketAddr) {
        let v = verdict(raw);
        let state = std::mem::replace(&mut self.state, TurnState::Failed);
        self.state = match (state, v) {
            (TurnState::Challenge, Err((401, Some(realm), Some(nonce)))) => {
                let c = &self.credential;
                let auth = Auth { username: c.username.clone(), password: c.password.clone(), realm, nonce };
                self.ask(allocate(Some(&auth)));
                TurnState::Allocate(auth)
            }
            (TurnState::Allocate(auth), Ok(())) => {
                self.ask(channel_bind(&auth, server));
                TurnState::Bind(auth)
            }
            (TurnState::Bind(auth), Ok(())) => {
                self.pending = None;
                TurnState::Ready { auth, refreshed: Instant::now() }
            }
            // a nonce that went stale: the same request with the new one
            (TurnState::Allocate(mut auth), Err((438, _, Some(nonce)))) => {
                auth.nonce = nonce;
                self.ask(allocate(Some(&auth)));
                TurnState::Allocate(auth)
            }
            (TurnState::Bind(mut auth), Err((438, _, Some(nonce)))) => {
                auth.nonce = nonce;
                self.ask(channel_bind(&auth, server));
                TurnState::Bind(auth)
            }
            (TurnState::Ready { mut auth, refreshed }, Err((438, _, Some(nonce)))) => {
                auth.nonce = nonce;
                // refresh again at once with the new nonce
                TurnState::Ready { auth, refreshed: refreshed.checked_sub(REFRESH).unwrap_or(refreshed) }
            }
            // a refresh's answer, or a retransmission's second answer
            (s @ TurnState::Ready { .. }, _) => s,
            (TurnState::Allocate(auth), Err((437, ..))) => {
                // the allocation exists: a retransmitted Allocate's answer was lost
                self.ask(channel_bind(&auth, server));
                TurnState::Bind(auth)
            }
            (s, v) => {
                tracing::warn!(server = %self.credential.server, state = ?s, reply = ?v, "TURN setup refused");
                self.pending = None;
                TurnState::Failed
            }
        };
    }
}

/// A connection's way to the server, once set up.
pub(crate) struct Tunnel {
    kind: TunnelKind,
    /// The server's UDP candidate: what the connection sends to and hears from.
    pub(crate) server: SocketAddr,
    /// For TURN: the client.
    turn: Option<TurnClient>,
}

enum TunnelKind {
    IceTcp { write: OwnedWriteHalf, backlog: Vec<u8> },
    TurnUdp { turn: SocketAddr },
    TurnTcp { write: OwnedWriteHalf, backlog: Vec<u8> },
}

/// What [`open`] returns: the tunnel and, for TCP, the stream of what arrives on it.
pub(crate) type Opened = (Tunnel, Option<(TcpIn, oneshot::Sender<()>)>);

/// Sets the path up for connection `pc` to the server that sent `remote_sdp`; TURN's
/// exchanges then run as the connection sends and receives (`udp` is the connection's socket,
/// which TURN over UDP uses).
pub(crate) fn open(pc: PcId, path: &MediaPath, remote_sdp: &str, udp: &UdpSocket) -> Result<Opened, ClientError> {
    let (server_udp, server_tcp) = candidates(remote_sdp);
    let server = server_udp.ok_or_else(|| ClientError::Protocol("no UDP candidate in the server's SDP".into()))?;
    // a connect to a listening port completes in the kernel (on loopback at once)
    let connect = |to: SocketAddr| -> Result<(OwnedReadHalf, OwnedWriteHalf), ClientError> {
        let s = std::net::TcpStream::connect_timeout(&to, EXCHANGE)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        Ok(tokio::net::TcpStream::from_std(s)?.into_split())
    };
    let (mut tunnel, stream) = match path {
        MediaPath::Direct => return Err(ClientError::Protocol("a direct path needs no tunnel".into())),
        MediaPath::IceTcp => {
            let to = server_tcp
                .ok_or_else(|| ClientError::Protocol("no passive TCP candidate in the server's SDP".into()))?;
            let (read, write) = connect(to)?;
            let (tx, rx) = oneshot::channel();
            let tunnel = Tunnel { kind: TunnelKind::IceTcp { write, backlog: Vec::new() }, server, turn: None };
            (tunnel, Some((TcpIn::new(pc, read, server, Framing::Rfc4571, rx), tx)))
        }
        MediaPath::Turn { credential, tcp: false } => {
            let kind = TunnelKind::TurnUdp { turn: credential.server };
            (Tunnel { kind, server, turn: Some(TurnClient::new(credential.clone())) }, None)
        }
        MediaPath::Turn { credential, tcp: true } => {
            let (read, write) = connect(credential.server)?;
            let (tx, rx) = oneshot::channel();
            let kind = TunnelKind::TurnTcp { write, backlog: Vec::new() };
            let tunnel = Tunnel { kind, server, turn: Some(TurnClient::new(credential.clone())) };
            (tunnel, Some((TcpIn::new(pc, read, server, Framing::Turn, rx), tx)))
        }
    };
    tunnel.pump(udp)?;
    Ok((tunnel, stream))
}

/// Writes what the kernel takes now, keeping the rest for the next write.
fn write_stream(write: &OwnedWriteHalf, backlog: &mut Vec<u8>, parts: &[&[u8]]) -> std::io::Result<()> {
    for p in parts {
        backlog.extend_from_slice(p);
    }
    // past tokio's readiness, which a stream just made does not have yet
    let socket = socket2::SockRef::from(write.as_ref());
    while !backlog.is_empty() {
        match socket.send(backlog) {
            Ok(n) => drop(backlog.drain(..n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if backlog.len() > MAX_BACKLOG {
        backlog.clear();
        return Err(std::io::Error::other("TCP backlog overflow"));
    }
    Ok(())
}

/// The header of a ChannelData message carrying `len` bytes on our channel.
fn channel_header(len: usize) -> [u8; 4] {
    let [a, b] = CHANNEL.to_be_bytes();
    let [c, d] = (len as u16).to_be_bytes();
    [a, b, c, d]
}

/// The zero bytes that pad a ChannelData message of `len` payload bytes on a stream.
fn channel_padding(len: usize) -> &'static [u8] {
    &[0u8; 3][..(4 + len).next_multiple_of(4) - (4 + len)]
}

fn channel_data(payload: &[u8], pad: bool) -> Vec<u8> {
    let mut out = channel_header(payload.len()).to_vec();
    out.extend_from_slice(payload);
    if pad {
        out.extend_from_slice(channel_padding(payload.len()));
    }
    out
}

impl Tunnel {
    /// Sends a datagram meant for the server (dropped while TURN is still being set up:
    /// ICE sends its checks again).
    pub(crate) fn send(&mut self, udp: &UdpSocket, data: &[u8]) -> std::io::Result<()> {
        self.pump(udp)?;
        if self.turn.as_ref().is_some_and(|t| !t.ready()) {
            return Ok(());
        }
        match &mut self.kind {
            TunnelKind::IceTcp { write, backlog } => {
                write_stream(write, backlog, &[&(data.len() as u16).to_be_bytes(), data])
            }
            TunnelKind::TurnUdp { turn } => udp.try_send_to(&channel_data(data, false), *turn).map(drop),
            TunnelKind::TurnTcp { write, backlog } => {
                write_stream(write, backlog, &[&channel_header(data.len()), data, channel_padding(data.len())])
            }
        }
    }

    /// Ends the TURN allocation (a Refresh with lifetime 0) so it does not outlive the
    /// connection on the server; a TCP stream's allocation ends with the stream anyway.
    pub(crate) fn close(&mut self, udp: &UdpSocket) {
        let (Some(TurnClient { state: TurnState::Ready { auth, .. }, .. }), TunnelKind::TurnUdp { turn }) =
            (&self.turn, &self.kind)
        else {
            return;
        };
        let zero = rtc::turn::proto::lifetime::Lifetime(Duration::ZERO);
        let req = request(rtc::stun::message::METHOD_REFRESH, Some(auth), vec![Box::new(zero)]);
        let _ = socket2::SockRef::from(udp).send_to(&req, &(*turn).into());
    }

    /// Sends the TURN request that is due (setup, retransmission, refresh).
    fn pump(&mut self, udp: &UdpSocket) -> std::io::Result<()> {
        let Some(req) = self.turn.as_mut().and_then(|t| t.due(self.server)) else { return Ok(()) };
        let sent = match &mut self.kind {
            // past tokio's readiness, which a socket just made does not have yet
            TunnelKind::TurnUdp { turn } => socket2::SockRef::from(udp).send_to(&req, &(*turn).into()).map(drop),
            TunnelKind::TurnTcp { write, backlog } => write_stream(write, backlog, &[&req]),
            TunnelKind::IceTcp { .. } => Ok(()),
        };
        match sent {
            // sent again after the retransmission interval
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    /// A datagram that arrived for the connection: with TURN, ChannelData from the TURN
    /// server gives its payload as from the server, and the TURN server's STUN replies move
    /// the setup on; anything else is left as it is.
    pub(crate) fn receive(
        &mut self,
        udp: &UdpSocket,
        from: SocketAddr,
        mut data: BytesMut,
    ) -> Option<(SocketAddr, BytesMut)> {
        let turn_addr = match &self.kind {
            TunnelKind::TurnUdp { turn } => *turn,
            // TcpIn names the server's candidate as the sender
            TunnelKind::TurnTcp { .. } => self.server,
            TunnelKind::IceTcp { .. } => return Some((from, data)),
        };
        if from != turn_addr {
            return None;
        }
        if let Some(payload) = unwrap_channel_data(&mut data) {
            return Some((self.server, payload));
        }
        if data.first().is_some_and(|b| *b < 0x40)
            && let Some(t) = self.turn.as_mut()
        {
            t.on_reply(&data, self.server);
            if let Err(e) = self.pump(udp) {
                tracing::debug!(error = %e, "TURN request not sent");
            }
        }
        None
    }
}

/// The payload of a ChannelData message on our channel; `None` for anything else (STUN
/// replies to refreshes).
fn unwrap_channel_data(data: &mut BytesMut) -> Option<BytesMut> {
    if data.len() < 4 || u16::from_be_bytes([data[0], data[1]]) != CHANNEL {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    if data.len() < 4 + len {
        return None;
    }
    data.advance(4);
    Some(data.split_to(len))
}

/// How a TCP stream carries datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// A 16-bit length before each (ICE-TCP).
    Rfc4571,
    /// STUN and ChannelData messages (TURN over TCP).
    Turn,
}

/// What arrives on a connection's TCP stream, as datagrams from the server's UDP candidate.
pub(crate) struct TcpIn {
    pc: PcId,
    read: OwnedReadHalf,
    buf: BytesMut,
    from: SocketAddr,
    framing: Framing,
    closed: oneshot::Receiver<()>,
}

impl TcpIn {
    fn new(pc: PcId, read: OwnedReadHalf, from: SocketAddr, framing: Framing, closed: oneshot::Receiver<()>) -> Self {
        TcpIn { pc, read, buf: BytesMut::with_capacity(64 * 1024), from, framing, closed }
    }

    /// The next datagram (ICE-TCP) or message (TURN: STUN or ChannelData, for
    /// [`Tunnel::receive`]) in the buffer; `Err` when the stream is not what it should be.
    fn next_datagram(&mut self) -> Result<Option<BytesMut>, ()> {
        {
            if self.buf.len() < 4 {
                return Ok(None);
            }
            let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
            let (whole, take) = match self.framing {
                Framing::Rfc4571 => {
                    let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
                    if self.buf.len() < 2 + len {
                        return Ok(None);
                    }
                    self.buf.advance(2);
                    return Ok(Some(self.buf.split_to(len)));
                }
                Framing::Turn => match self.buf[0] {
                    0x00..=0x3F => (20 + len, false),
                    0x40..=0x7F => ((4 + len).next_multiple_of(4), true),
                    _ => return Err(()),
                },
            };
            if self.buf.len() < whole {
                return Ok(None);
            }
            let mut frame = self.buf.split_to(whole);
            if take {
                // ChannelData without its padding
                frame.truncate(4 + len);
            }
            Ok(Some(frame))
        }
    }
}

impl Stream for TcpIn {
    type Item = Received;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Received>> {
        let this = self.get_mut();
        if Pin::new(&mut this.closed).poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        loop {
            match this.next_datagram() {
                Ok(Some(data)) => {
                    return Poll::Ready(Some(Received { pc: this.pc, from: this.from, data, segment: 0 }));
                }
                Ok(None) => {}
                Err(()) => return Poll::Ready(None),
            }
            if ready!(this.read.as_ref().poll_read_ready(cx)).is_err() {
                return Poll::Ready(None);
            }
            this.buf.reserve(64 * 1024);
            match this.read.try_read_buf(&mut this.buf) {
                Ok(0) => return Poll::Ready(None),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_from_the_servers_sdp() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host\r\n\
                   a=candidate:2 1 tcp 1671430143 127.0.0.1 7883 typ host tcptype passive\r\n\
                   a=candidate:3 1 udp 2130706431 10.0.0.1 7882 typ host\r\n";
        assert_eq!(candidates(sdp), (Some("127.0.0.1:7882".parse().unwrap()), Some("127.0.0.1:7883".parse().unwrap())));
        assert_eq!(candidates("v=0\r\n"), (None, None));
    }

    #[test]
    fn turn_urls_are_picked_by_transport() {
        let servers = vec![IceServer {
            urls: vec![
                "turn:127.0.0.1:3478?transport=udp".into(),
                "turn:127.0.0.1:3479?transport=tcp".into(),
                "turns:h:5349?transport=tcp".into(),
            ],
            username: "1:a".into(),
            credential: "p".into(),
        }];
        assert_eq!(
            TurnCredential::pick(&servers, false).unwrap().server,
            "127.0.0.1:3478".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            TurnCredential::pick(&servers, true).unwrap().server,
            "127.0.0.1:3479".parse::<SocketAddr>().unwrap()
        );
        assert!(MediaPath::resolve(MediaTransport::TurnUdp, &[]).is_err(), "no TURN server in joined");
        for t in ["udp", "tcp", "turn-udp", "turn-tcp"] {
            assert_eq!(t.parse::<MediaTransport>().unwrap().to_string(), t);
        }
    }

    #[tokio::test]
    async fn tcp_streams_yield_what_each_framing_carries() {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let stun = [0x01u8, 0x09, 0, 0, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        // columns: framing, bytes written, what comes out
        let rows: Vec<(Framing, Vec<u8>, Vec<Vec<u8>>)> = vec![
            (Framing::Rfc4571, [&[0, 3][..], b"abc", &[0, 2], b"de"].concat(), vec![b"abc".to_vec(), b"de".to_vec()]),
            (
                Framing::Turn,
                [channel_data(b"abc", true), stun.to_vec(), channel_data(b"de", true)].concat(),
                vec![channel_data(b"abc", false), stun.to_vec(), channel_data(b"de", false)],
            ),
        ];
        for (framing, bytes, want) in rows {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (mut server, _) = listener.accept().await.unwrap();
            let (read, _write) = client.into_split();
            let (_tx, rx) = oneshot::channel();
            let from: SocketAddr = "127.0.0.1:7882".parse().unwrap();
            let mut stream = TcpIn::new(PcId(1), read, from, framing, rx);
            // one byte at a time: frames are cut however the stream splits them
            for b in &bytes {
                server.write_all(&[*b]).await.unwrap();
            }
            let mut got = Vec::new();
            while got.len() < want.len() {
                let r = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap();
                assert_eq!((r.pc, r.from), (PcId(1), from));
                got.push(r.data.to_vec());
            }
            assert_eq!(got, want, "{framing:?}");
        }
    }

    #[test]
    fn the_turn_client_walks_challenge_allocate_bind() {
        let server: SocketAddr = "127.0.0.1:7882".parse().unwrap();
        let cred =
            TurnCredential { server: "127.0.0.1:3478".parse().unwrap(), username: "9:a".into(), password: "p".into() };
        let mut c = TurnClient::new(cred);
        let reply = |class: rtc::stun::message::MessageClass, method, attrs: Vec<Box<dyn Setter>>| {
            let mut setters: Vec<Box<dyn Setter>> =
                vec![Box::new(TransactionId::new()), Box::new(MessageType::new(method, class))];
            setters.extend(attrs);
            let mut m = Message::new();
            m.build(&setters).unwrap();
            m.raw
        };
        let challenge = reply(
            rtc::stun::message::CLASS_ERROR_RESPONSE,
            METHOD_ALLOCATE,
            vec![
                Box::new(ErrorCodeAttribute {
                    code: rtc::stun::error_code::CODE_UNAUTHORIZED,
                    reason: b"Unauthorized".to_vec(),
                }),
                Box::new(TextAttribute::new(ATTR_REALM, "sfu".into())),
                Box::new(TextAttribute::new(ATTR_NONCE, "n1".into())),
            ],
        );
        let first = c.due(server).expect("the first Allocate");
        assert!(c.due(server).is_none(), "not again before the retransmission interval");
        c.on_reply(&challenge, server);
        let signed = c.due(server).expect("a signed Allocate");
        assert_ne!(signed, first);
        c.on_reply(&reply(CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, vec![]), server);
        assert!(matches!(c.state, TurnState::Bind(_)));
        assert!(c.due(server).is_some(), "the ChannelBind");
        assert!(!c.ready());
        c.on_reply(&reply(CLASS_SUCCESS_RESPONSE, METHOD_CHANNEL_BIND, vec![]), server);
        assert!(c.ready());
        assert!(c.due(server).is_none(), "nothing until the refresh");
        // a refusal ends it
        let mut c = TurnClient::new(TurnCredential { server, username: "x".into(), password: "y".into() });
        c.due(server);
        c.on_reply(&challenge, server);
        c.on_reply(
            &reply(
                rtc::stun::message::CLASS_ERROR_RESPONSE,
                METHOD_ALLOCATE,
                vec![Box::new(ErrorCodeAttribute { code: rtc::stun::error_code::CODE_UNAUTHORIZED, reason: vec![] })],
            ),
            server,
        );
        assert!(matches!(c.state, TurnState::Failed));
        assert!(c.due(server).is_none());
    }
}
