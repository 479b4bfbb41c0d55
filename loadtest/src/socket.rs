//! The UDP socket of one peer connection as a stream of datagrams, so that one task can wait
//! on thousands of them at once (`futures::stream::SelectAll` polls only the woken ones).
//! Datagrams are read into a shared arena: one allocation per ~60 packets, not one per packet.
//!
//! On Linux the socket asks for UDP GRO (`UDP_GRO`): a train of equal-sized datagrams from
//! one sender that the kernel holds as one buffer (the server's GSO messages: a video frame's
//! packets to one subscriber) is read with one `recvmsg` and cut into its datagrams here, so
//! the kernel queues and wakes once per train instead of once per datagram. On loopback that
//! delivery runs in the *sender's* system call, so it also stops inflating the server's CPU
//! figure with work that on a real network belongs to the receiving host.

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
/// Room reserved for one read with GRO: a coalesced train is at most 64 KiB.
#[cfg(target_os = "linux")]
const MAX_TRAIN: usize = 65_536;
/// Bytes the arena grows by.
const ARENA: usize = 256 * 1024;

/// What one read returned: a datagram, or a coalesced train of datagrams from one sender.
pub struct Received {
    /// The connection whose socket it arrived on.
    pub pc: PcId,
    /// Sender.
    pub from: SocketAddr,
    /// The bytes: one datagram, or a train of `segment`-byte datagrams (the last may be shorter).
    pub data: BytesMut,
    /// Datagram size of a coalesced train; 0 for a single datagram.
    pub segment: usize,
}

impl Received {
    /// Splits off the next datagram; `None` once all were taken.
    pub fn next_datagram(&mut self) -> Option<BytesMut> {
        if self.data.is_empty() {
            return None;
        }
        let n = if self.segment == 0 { self.data.len() } else { self.segment.min(self.data.len()) };
        Some(self.data.split_to(n))
    }
}

/// A connection's socket; the stream ends when the paired [`Closer`] is dropped. Each item is
/// one read (a whole train with GRO), so the task's per-item cost is paid once per train.
pub struct PeerSocket {
    pc: PcId,
    socket: Arc<UdpSocket>,
    arena: BytesMut,
    closed: oneshot::Receiver<()>,
    /// The socket coalesces datagram trains (UDP GRO is on).
    gro: bool,
}

/// Dropping it ends the paired [`PeerSocket`] stream.
pub type Closer = oneshot::Sender<()>;

impl PeerSocket {
    /// A stream over `socket` for connection `pc`, and the handle that ends it.
    pub fn new(pc: PcId, socket: Arc<UdpSocket>) -> (PeerSocket, Closer) {
        let (tx, rx) = oneshot::channel();
        let gro = enable_gro(&socket);
        (PeerSocket { pc, socket, arena: BytesMut::new(), closed: rx, gro }, tx)
    }

    /// Whether the socket reads coalesced trains (UDP GRO).
    pub fn gro(&self) -> bool {
        self.gro
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
            #[cfg(target_os = "linux")]
            if this.gro {
                if this.arena.capacity() - this.arena.len() < MAX_TRAIN {
                    this.arena.reserve(ARENA);
                }
                let (socket, arena) = (&this.socket, &mut this.arena);
                match socket.try_io(tokio::io::Interest::READABLE, || recv_train(socket, arena)) {
                    Ok((from, segment)) => {
                        let data = this.arena.split();
                        let segment = segment.filter(|&seg| seg > 0 && data.len() > seg).unwrap_or(0);
                        return Poll::Ready(Some(Received { pc: this.pc, from, data, segment }));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        tracing::trace!(error = %e, "udp recv");
                        continue;
                    }
                }
            }
            if this.arena.capacity() - this.arena.len() < MAX_DATAGRAM {
                this.arena.reserve(ARENA);
            }
            match this.socket.try_recv_buf_from(&mut this.arena) {
                Ok((_, from)) => {
                    let data = this.arena.split();
                    return Poll::Ready(Some(Received { pc: this.pc, from, data, segment: 0 }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                // ICMP errors (port unreachable) surface here: not fatal
                Err(e) => tracing::trace!(error = %e, "udp recv"),
            }
        }
    }
}

/// Turns UDP GRO on; false where the platform or kernel has none.
fn enable_gro(socket: &UdpSocket) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value of the size passed.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_GRO,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        r == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        false
    }
}

/// One `recvmsg` into the arena's spare room (at least [`MAX_TRAIN`] bytes); returns the
/// sender and, for a coalesced train, its segment size. The bytes read are appended to `arena`.
#[cfg(target_os = "linux")]
fn recv_train(socket: &UdpSocket, arena: &mut BytesMut) -> std::io::Result<(SocketAddr, Option<usize>)> {
    use std::os::fd::AsRawFd;
    let spare = arena.spare_capacity_mut();
    let mut iov = libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: spare.len() };
    let mut cmsg = [0u64; 8];
    let mut segment = None;
    // SAFETY: every pointer in `hdr` points at a live buffer of the stated length (the address
    // storage is socket2's, of the length it passes); the control messages are read within
    // what the kernel wrote.
    let (n, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let mut hdr: libc::msghdr = std::mem::zeroed();
            hdr.msg_name = storage.cast();
            hdr.msg_namelen = *len;
            hdr.msg_iov = &mut iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = cmsg.as_mut_ptr().cast();
            hdr.msg_controllen = std::mem::size_of_val(&cmsg);
            let n = libc::recvmsg(socket.as_raw_fd(), &mut hdr, libc::MSG_DONTWAIT);
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            *len = hdr.msg_namelen;
            let mut c = libc::CMSG_FIRSTHDR(&hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                    let seg = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                    segment = usize::try_from(seg).ok();
                }
                c = libc::CMSG_NXTHDR(&hdr, c);
            }
            Ok(n as usize)
        })?
    };
    // SAFETY: the kernel initialised the first `n` bytes of the spare room.
    unsafe { arena.set_len(arena.len() + n) };
    let from = addr
        .as_socket()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "datagram from a non-IP address"))?;
    Ok((from, segment))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// Sends `payload` as one GSO message of `segment`-byte datagrams.
    fn send_gso(from: &std::net::UdpSocket, to: SocketAddr, payload: &[u8], segment: u16) {
        use std::os::fd::AsRawFd;
        let SocketAddr::V4(to) = to else { panic!("test uses IPv4") };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: to.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(to.ip().octets()) },
            sin_zero: [0; 8],
        };
        let mut iov = libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() };
        let mut cmsg = [0u64; 4];
        // SAFETY: plain C structs; every pointer points at a live buffer of the stated length.
        unsafe {
            let mut hdr: libc::msghdr = std::mem::zeroed();
            hdr.msg_name = (&sin as *const libc::sockaddr_in as *mut libc::sockaddr_in).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            hdr.msg_iov = &mut iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = cmsg.as_mut_ptr().cast();
            hdr.msg_controllen = libc::CMSG_SPACE(2) as usize;
            let c = libc::CMSG_FIRSTHDR(&hdr);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, segment);
            assert_eq!(
                libc::sendmsg(from.as_raw_fd(), &hdr, 0),
                payload.len() as isize,
                "{}",
                std::io::Error::last_os_error()
            );
        }
    }

    #[tokio::test]
    async fn a_coalesced_train_comes_out_as_its_datagrams() {
        let std_rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std_rx.set_nonblocking(true).unwrap();
        let to = std_rx.local_addr().unwrap();
        let (mut stream, _closer) = PeerSocket::new(PcId(7), Arc::new(UdpSocket::from_std(std_rx).unwrap()));
        assert!(stream.gro(), "UDP GRO is available on Linux");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = tx.local_addr().unwrap();
        // three 100-byte datagrams and a 40-byte one, each filled with its index; then a plain one
        let payload: Vec<u8> = (0..340).map(|i| (i / 100) as u8).collect();
        send_gso(&tx, to, &payload, 100);
        tx.send_to(&[9; 30], to).unwrap();
        let mut got = Vec::new();
        let mut reads = 0;
        while got.len() < 5 {
            let mut rx = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await.unwrap().unwrap();
            assert_eq!(rx.pc, PcId(7));
            assert_eq!(rx.from, sender);
            while let Some(d) = rx.next_datagram() {
                got.push(d.to_vec());
            }
            reads += 1;
        }
        assert_eq!(reads, 2, "the train is one item, the plain datagram another");
        let want: Vec<Vec<u8>> = vec![vec![0; 100], vec![1; 100], vec![2; 100], vec![3; 40], vec![9; 30]];
        assert_eq!(got, want);
    }
}
