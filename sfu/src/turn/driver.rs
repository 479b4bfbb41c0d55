//! The tokio side of the embedded TURN server: the UDP, TCP and TLS listeners, one relay
//! socket per allocation, and the one task that owns the [`TurnServer`] and does its sends.

use super::framing::Deframer;
use super::metrics::TurnMetrics;
use super::server::{Client, ConnId, Event, RelayId, Transmit, Transport, TurnServer};
use crate::tls::Tls;
use bytes::BytesMut;
use rustc_hash::FxHashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

/// Messages queued toward one TCP or TLS client before more are dropped.
const STREAM_QUEUE: usize = 512;
/// Inbound messages queued toward the server task.
const INBOUND_QUEUE: usize = 8192;
/// Open TCP and TLS connections at most.
const MAX_CONNECTIONS: usize = 4096;
/// A connection that sends nothing for this long is closed (an allocation in use carries ICE
/// consent checks every few seconds).
const IDLE: Duration = Duration::from_secs(120);
/// Time for a TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Where the listeners are bound.
#[derive(Debug, Clone, Copy, Default)]
pub struct Listeners {
    /// TURN over UDP.
    pub udp: Option<SocketAddr>,
    /// TURN over TCP.
    pub tcp: Option<SocketAddr>,
    /// TURN over TLS.
    pub tls: Option<SocketAddr>,
}

/// What the driver needs beyond the state machine.
pub struct Setup {
    /// The UDP and TCP listen address (`--turn`).
    pub plain: Option<SocketAddr>,
    /// The TLS listen address (`--turn-tls`) and its certificate.
    pub tls: Option<(SocketAddr, Arc<Tls>)>,
    /// The IP relay sockets bind (where the media ports are reached locally).
    pub relay_bind: IpAddr,
    /// The IP clients are told their relayed address has.
    pub relayed_ip: IpAddr,
}

enum Inbound {
    Opened { conn: ConnId, tx: mpsc::Sender<Vec<u8>> },
    Message { client: Client, data: BytesMut },
    Closed { conn: ConnId },
    Relay { relay: RelayId, from: SocketAddr, data: Vec<u8> },
}

/// Binds the listeners and starts the server task; it ends when `stop` turns true.
pub async fn start(
    server: TurnServer,
    setup: Setup,
    metrics: TurnMetrics,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Listeners> {
    let mut bound = Listeners::default();
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    let udp = match setup.plain {
        Some(addr) => {
            let socket = UdpSocket::bind(addr).await?;
            let addr = socket.local_addr()?;
            bound.udp = Some(addr);
            // TCP on the same port number, as TURN servers listen
            let tcp = TcpListener::bind(addr).await?;
            bound.tcp = Some(tcp.local_addr()?);
            tokio::spawn(accept(tcp, None, tx.clone(), metrics.clone(), stop.clone()));
            Some(socket)
        }
        None => None,
    };
    if let Some((addr, tls)) = setup.tls {
        let listener = TcpListener::bind(addr).await?;
        bound.tls = Some(listener.local_addr()?);
        tokio::spawn(accept(listener, Some(tls), tx.clone(), metrics.clone(), stop.clone()));
    }
    let task = Task {
        server,
        udp,
        tx,
        conns: FxHashMap::default(),
        relays: FxHashMap::default(),
        next_relay: 1,
        relay_bind: setup.relay_bind,
        relayed_ip: setup.relayed_ip,
        metrics,
    };
    tokio::spawn(task.run(rx, stop));
    Ok(bound)
}

struct Relay {
    socket: Arc<UdpSocket>,
    reader: tokio::task::AbortHandle,
}

struct Task {
    server: TurnServer,
    udp: Option<UdpSocket>,
    tx: mpsc::Sender<Inbound>,
    conns: FxHashMap<ConnId, mpsc::Sender<Vec<u8>>>,
    relays: FxHashMap<RelayId, Relay>,
    next_relay: u64,
    relay_bind: IpAddr,
    relayed_ip: IpAddr,
    metrics: TurnMetrics,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Inbound>, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let deadline = tokio::time::Instant::from_std(self.server.poll_timeout());
            tokio::select! {
                r = recv(self.udp.as_ref(), &mut buf) => match r {
                    Ok((n, from)) => {
                        let client = Client { transport: Transport::Udp, addr: from };
                        self.server.handle_client(Instant::now(), client, &buf[..n]);
                    }
                    Err(e) => tracing::debug!(error = %e, "TURN UDP read"),
                },
                Some(msg) = rx.recv() => self.inbound(msg),
                _ = tokio::time::sleep_until(deadline) => self.server.handle_timeout(Instant::now()),
                _ = stop.wait_for(|s| *s) => break,
            }
            self.flush();
        }
        for (_, r) in self.relays.drain() {
            r.reader.abort();
        }
    }

    fn inbound(&mut self, msg: Inbound) {
        let now = Instant::now();
        match msg {
            Inbound::Opened { conn, tx } => {
                self.conns.insert(conn, tx);
            }
            Inbound::Message { client, data } => self.server.handle_client(now, client, &data),
            Inbound::Closed { conn } => {
                self.conns.remove(&conn);
                self.server.connection_closed(conn);
            }
            Inbound::Relay { relay, from, data } => self.server.handle_relay(now, relay, from, &data),
        }
    }

    fn flush(&mut self) {
        loop {
            while let Some(t) = self.server.poll_transmit() {
                self.transmit(t);
            }
            let Some(event) = self.server.poll_event() else { break };
            match event {
                Event::OpenRelay { client } => {
                    let opened = self.open_relay();
                    if let Err(e) = &opened {
                        tracing::warn!(error = %e, "TURN relay socket not opened");
                    }
                    self.server.relay_opened(Instant::now(), client, opened.ok());
                }
                Event::CloseRelay { relay } => {
                    if let Some(r) = self.relays.remove(&relay) {
                        r.reader.abort();
                    }
                }
            }
        }
    }

    fn transmit(&mut self, t: Transmit) {
        let sent = match t {
            Transmit::Client { to, data } => match to.transport.conn() {
                None => match &self.udp {
                    Some(s) => s.try_send_to(&data, to.addr).map(drop).map_err(|_| "send_failed"),
                    None => Err("send_failed"),
                },
                Some(conn) => match self.conns.get(&conn).map(|tx| tx.try_send(data)) {
                    Some(Ok(())) => Ok(()),
                    Some(Err(mpsc::error::TrySendError::Full(_))) => Err("queue_full"),
                    _ => Err("closed"),
                },
            },
            Transmit::Peer { relay, to, data } => match self.relays.get(&relay) {
                Some(r) => r.socket.try_send_to(&data, to).map(drop).map_err(|_| "send_failed"),
                None => Err("closed"),
            },
        };
        if let Err(reason) = sent {
            self.metrics.dropped.with_label_values(&[reason]).inc();
        }
    }

    fn open_relay(&mut self) -> std::io::Result<(RelayId, SocketAddr)> {
        let std = std::net::UdpSocket::bind(SocketAddr::new(self.relay_bind, 0))?;
        std.set_nonblocking(true)?;
        let socket = Arc::new(UdpSocket::from_std(std)?);
        let port = socket.local_addr()?.port();
        let relay = RelayId(self.next_relay);
        self.next_relay += 1;
        let reader =
            tokio::spawn(read_relay(relay, socket.clone(), self.tx.clone(), self.metrics.clone())).abort_handle();
        self.relays.insert(relay, Relay { socket, reader });
        Ok((relay, SocketAddr::new(self.relayed_ip, port)))
    }
}

async fn recv(socket: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Reads one relay socket into the server task; drops when that task is behind.
async fn read_relay(relay: RelayId, socket: Arc<UdpSocket>, tx: mpsc::Sender<Inbound>, metrics: TurnMetrics) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
        match tx.try_send(Inbound::Relay { relay, from, data: buf[..n].to_vec() }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => metrics.dropped.with_label_values(&["inbound_full"]).inc(),
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
static OPEN: AtomicUsize = AtomicUsize::new(0);

async fn accept(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    tx: mpsc::Sender<Inbound>,
    metrics: TurnMetrics,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, addr)) => {
                if OPEN.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    metrics.dropped.with_label_values(&["too_many_connections"]).inc();
                    continue;
                }
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, addr, tls.clone(), tx.clone(), metrics.clone()));
            }
            Err(e) => {
                // out of descriptors, most likely: do not spin
                tracing::debug!(error = %e, "TURN accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<Arc<Tls>>,
    tx: mpsc::Sender<Inbound>,
    metrics: TurnMetrics,
) {
    let conn = ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed));
    match tls {
        None => serve(stream, Client { transport: Transport::Tcp(conn), addr }, "tcp", tx, metrics).await,
        Some(tls) => match tokio::time::timeout(HANDSHAKE, tls.acceptor_without_alpn().accept(stream)).await {
            Ok(Ok(s)) => serve(s, Client { transport: Transport::Tls(conn), addr }, "tls", tx, metrics).await,
            _ => metrics.dropped.with_label_values(&["tls_handshake"]).inc(),
        },
    }
}

/// Reads messages from one connection into the server task and writes its queue back.
async fn serve<S>(stream: S, client: Client, label: &str, tx: mpsc::Sender<Inbound>, metrics: TurnMetrics)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let conn = client.transport.conn().expect("a stream");
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
    if tx.send(Inbound::Opened { conn, tx: out_tx }).await.is_err() {
        return;
    }
    OPEN.fetch_add(1, Ordering::Relaxed);
    let gauge = metrics.connections.with_label_values(&[label]);
    gauge.inc();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let writing = tokio::spawn(async move {
        // what queued meanwhile leaves in one write
        let (mut batch, mut out) = (Vec::with_capacity(64), Vec::new());
        while out_rx.recv_many(&mut batch, 64).await > 0 {
            out.clear();
            for data in batch.drain(..) {
                out.extend_from_slice(&data);
            }
            if writer.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    let mut deframer = Deframer::default();
    'read: loop {
        match tokio::time::timeout(IDLE, reader.read_buf(deframer.read_buf())).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
        loop {
            match deframer.next_frame() {
                Ok(Some(data)) => {
                    if tx.send(Inbound::Message { client, data }).await.is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, peer = %client.addr, "TURN stream closed");
                    metrics.dropped.with_label_values(&["bad_stream"]).inc();
                    break 'read;
                }
            }
        }
    }
    writing.abort();
    gauge.dec();
    OPEN.fetch_sub(1, Ordering::Relaxed);
    let _ = tx.send(Inbound::Closed { conn }).await;
}
