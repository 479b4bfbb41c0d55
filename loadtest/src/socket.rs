//! The UDP socket of one peer connection as a stream of datagrams, so that one task can wait
//! on thousands of them at once (`futures::stream::SelectAll` polls only the woken ones).
//! Datagrams are read into a shared arena: one allocation per ~60 packets, not one per packet.

use crate::engine::PcId;
use bytes::BytesMut;
use futures::Stream;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// Room reserved for one datagram.
const MAX_DATAGRAM: usize = 2048;
/// Bytes the arena grows by.
const ARENA: usize = 128 * 1024;

/// One received datagram.
pub struct Received {
    /// The connection whose socket it arrived on.
    pub pc: PcId,
    /// Sender.
    pub from: SocketAddr,
    /// The bytes.
    pub data: BytesMut,
}

/// A connection's socket; the stream ends when the paired [`Closer`] is dropped.
pub struct PeerSocket {
    pc: PcId,
    socket: Arc<UdpSocket>,
    arena: BytesMut,
    closed: oneshot::Receiver<()>,
}

/// Dropping it ends the paired [`PeerSocket`] stream.
pub type Closer = oneshot::Sender<()>;

impl PeerSocket {
    /// A stream over `socket` for connection `pc`, and the handle that ends it.
    pub fn new(pc: PcId, socket: Arc<UdpSocket>) -> (PeerSocket, Closer) {
        let (tx, rx) = oneshot::channel();
        (PeerSocket { pc, socket, arena: BytesMut::new(), closed: rx }, tx)
    }
}

impl Stream for PeerSocket {
    type Item = Received;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Received>> {
        let this = self.get_mut();
        if Pin::new(&mut this.closed).poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        loop {
            if let Err(e) = ready!(this.socket.poll_recv_ready(cx)) {
                tracing::debug!(error = %e, "udp socket failed");
                return Poll::Ready(None);
            }
            if this.arena.capacity() - this.arena.len() < MAX_DATAGRAM {
                this.arena.reserve(ARENA);
            }
            match this.socket.try_recv_buf_from(&mut this.arena) {
                Ok((_, from)) => {
                    let data = this.arena.split();
                    return Poll::Ready(Some(Received { pc: this.pc, from, data }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                // ICMP errors (port unreachable) surface here: not fatal
                Err(e) => tracing::trace!(error = %e, "udp recv"),
            }
        }
    }
}
