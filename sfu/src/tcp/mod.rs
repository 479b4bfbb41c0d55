//! ICE-TCP (RFC 6544): a TCP listener beside the UDP media port, for clients whose networks
//! block UDP. Each connection is one more path to one peer connection: its first frame must
//! be a STUN request authenticated with that connection's ICE password (nothing is learned
//! from anything else), its frames (RFC 4571) go to the peer's room worker as datagrams, and
//! what the room sends to its address is written back, framed, by the connection's writer.

pub mod framing;

use crate::drop_reason::DropReason;
use crate::metrics::MediaMetrics;
use crate::udp::{Datagram, Demux, Path, Route, stun};
use bytes::BytesMut;
use dashmap::DashMap;
use framing::{Deframer, FrameError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Connections one listener keeps open at once (authenticated or not yet).
pub const MAX_CONNECTIONS: usize = 4096;
/// A connection must send its authenticated STUN request within this, or it is closed.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Datagrams waiting for a connection's writer; more are dropped (counted): real-time media
/// is not worth queueing behind a client that does not read.
pub const WRITE_QUEUE: usize = 512;
/// A write that does not finish within this closes the connection (the client stopped
/// reading; its ICE agent moves to another path or the connection fails).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Datagrams written with one system call.
const WRITE_BATCH: usize = 64;

/// The writers of one listener's open connections, by remote address: where the room drivers
/// send datagrams of [`Path::Tcp`].
#[derive(Default)]
pub struct TcpPaths {
    writers: DashMap<SocketAddr, mpsc::Sender<BytesMut>>,
}

impl TcpPaths {
    /// Queues `data` for the connection from `to`, never blocking: a full queue or a closed
    /// connection drops it (counted).
    pub fn send(&self, to: SocketAddr, data: BytesMut, metrics: &MediaMetrics) {
        let Some(writer) = self.writers.get(&to) else {
            metrics.count_drop(DropReason::TcpClosed);
            return;
        };
        match writer.try_send(data) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => metrics.count_drop(DropReason::TcpQueueFull),
            Err(mpsc::error::TrySendError::Closed(_)) => metrics.count_drop(DropReason::TcpClosed),
        }
    }

    /// Open, authenticated connections.
    pub fn len(&self) -> usize {
        self.writers.len()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.writers.is_empty()
    }
}

/// Binds the ICE-TCP listener at `addr`, inside the runtime that will serve it. `asked`: the
/// address was configured; a default one that is taken falls back to a port the OS picks
/// (logged).
pub fn bind(addr: SocketAddr, asked: bool) -> anyhow::Result<TcpListener> {
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) if !asked => {
            tracing::warn!(%addr, error = %e, "ICE-TCP cannot use the media port's number: a port the OS picks instead");
            std::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0))?
        }
        Err(e) => return Err(anyhow::anyhow!("--tcp {addr}: {e}")),
    };
    listener.set_nonblocking(true)?;
    Ok(TcpListener::from_std(listener)?)
}

/// Accepts connections until `stop` turns true, serving each on a task of its own.
pub async fn serve(
    listener: TcpListener,
    demux: Arc<Demux>,
    paths: Arc<TcpPaths>,
    metrics: Arc<MediaMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (stream, from) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // out of descriptors, mostly: wait instead of spinning
                tracing::debug!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            tracing::debug!(%from, "ICE-TCP connection refused: too many open");
            continue;
        }
        let conn = Connection {
            from,
            demux: demux.clone(),
            paths: paths.clone(),
            metrics: metrics.clone(),
            _open: Open::new(open.clone(), &metrics),
        };
        tokio::spawn(conn.run(stream, stop.clone()));
    }
}

/// Counts a connection in its listener's total and in the gauge while it lives.
struct Open(Arc<AtomicUsize>, prometheus::IntGauge);

impl Open {
    fn new(n: Arc<AtomicUsize>, metrics: &MediaMetrics) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        metrics.tcp_connections.inc();
        Open(n, metrics.tcp_connections.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.dec();
    }
}

/// One accepted connection.
struct Connection {
    from: SocketAddr,
    demux: Arc<Demux>,
    paths: Arc<TcpPaths>,
    metrics: Arc<MediaMetrics>,
    _open: Open,
}

/// What reading a frame gave.
enum Read {
    Frame(BytesMut),
    /// The peer closed, the read failed, or it sent what no WebRTC client sends.
    End,
}

impl Connection {
    async fn run(self, stream: TcpStream, mut stop: watch::Receiver<bool>) {
        // datagrams are small and latency-bound
        let _ = stream.set_nodelay(true);
        let (mut rd, wr) = stream.into_split();
        let mut deframer = Deframer::default();
        let first = match tokio::time::timeout(FIRST_FRAME_TIMEOUT, self.read(&mut rd, &mut deframer)).await {
            Ok(Read::Frame(f)) => f,
            Ok(Read::End) => return,
            Err(_) => {
                tracing::debug!(from = %self.from, "ICE-TCP connection closed: no STUN request in time");
                return;
            }
        };
        self.metrics.tcp_in_packets.inc();
        let route = match self.demux.route_stream(&first) {
            Ok(r) => r,
            Err(why) => {
                self.metrics.count_drop(why.into());
                tracing::debug!(from = %self.from, ?why, "ICE-TCP connection closed: its first frame is not an authenticated check");
                return;
            }
        };
        tracing::debug!(from = %self.from, peer = route.peer.0, "ICE-TCP connection");
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        self.paths.writers.insert(self.from, tx);
        let from = self.from;
        tokio::select! {
            _ = self.read_loop(rd, deframer, first, &route) => {}
            _ = write_loop(wr, rx, &self.metrics) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        self.demux.release_stream(route.peer);
        self.paths.writers.remove(&from);
        tracing::debug!(%from, peer = route.peer.0, "ICE-TCP connection closed");
    }

    /// Hands every frame to the route's room, `first` first, until the connection ends or its
    /// peer connection is gone.
    async fn read_loop(&self, mut rd: OwnedReadHalf, mut deframer: Deframer, first: BytesMut, route: &Route) {
        let mut next = Some(first);
        loop {
            let frame = match next.take() {
                Some(f) => f,
                None => match self.read(&mut rd, &mut deframer).await {
                    Read::Frame(f) => {
                        self.metrics.tcp_in_packets.inc();
                        f
                    }
                    Read::End => return,
                },
            };
            if frame.is_empty() {
                self.metrics.count_drop(DropReason::Empty);
                continue;
            }
            if let Some(ufrag) = stun::local_ufrag(&frame) {
                // one connection belongs to one peer connection, for as long as it exists
                if ufrag != route.ufrag {
                    self.metrics.count_drop(DropReason::AddressTaken);
                    continue;
                }
                if !self.demux.is_registered(ufrag) {
                    return;
                }
            }
            let dg = Datagram { peer: route.peer, from: Path::Tcp(self.from), at: Instant::now(), data: frame };
            match route.room.try_send(dg) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => self.metrics.count_drop(DropReason::RoomQueueFull),
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }

    async fn read(&self, rd: &mut OwnedReadHalf, deframer: &mut Deframer) -> Read {
        loop {
            match deframer.next_frame() {
                Ok(Some(frame)) => return Read::Frame(frame),
                Ok(None) => {}
                Err(FrameError::TooLarge(len)) => {
                    self.metrics.count_drop(DropReason::TcpFrameTooLarge);
                    tracing::debug!(from = %self.from, len, "ICE-TCP connection closed: frame too large");
                    return Read::End;
                }
            }
            match rd.read_buf(deframer.read_buf()).await {
                Ok(0) | Err(_) => return Read::End,
                Ok(_) => {}
            }
        }
    }
}

/// Writes what the rooms queue for one connection, framed, several datagrams per write.
async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<BytesMut>, metrics: &MediaMetrics) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut out = BytesMut::new();
    loop {
        if rx.recv_many(&mut batch, WRITE_BATCH).await == 0 {
            return;
        }
        out.clear();
        let n = batch.len() as u64;
        for data in batch.drain(..) {
            framing::put_frame(&mut out, &data);
        }
        match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&out)).await {
            Ok(Ok(())) => metrics.tcp_out_packets.inc_by(n),
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests;
