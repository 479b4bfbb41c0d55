//! Batched sending: the datagrams a room worker produces in one wake-up leave in as few
//! `sendmmsg(2)` calls as possible (64 per call) instead of one `sendto` each.

use bytes::BytesMut;
use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Most datagrams per `sendmmsg` call.
pub const MAX_CHUNK: usize = 64;

/// Outcome of one flush, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Dropped because the socket buffer was full.
    pub would_block: u64,
    /// Dropped because of another send error.
    pub errors: u64,
    /// System calls made.
    pub syscalls: u64,
}

/// Datagrams waiting to be sent; the buffers are reused from flush to flush.
pub struct SendBatch {
    queue: Vec<(BytesMut, SocketAddr)>,
    chunk: usize,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new(MAX_CHUNK)
    }
}

impl SendBatch {
    /// A batch sending up to `chunk` datagrams per system call (clamped to 1..=[`MAX_CHUNK`]).
    pub fn new(chunk: usize) -> Self {
        SendBatch { queue: Vec::new(), chunk: chunk.clamp(1, MAX_CHUNK) }
    }

    /// Queues a datagram.
    pub fn push(&mut self, data: BytesMut, to: SocketAddr) {
        self.queue.push((data, to));
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Takes the queued datagrams without sending them (tests).
    #[cfg(test)]
    pub fn take_for_test(&mut self) -> Vec<(BytesMut, SocketAddr)> {
        std::mem::take(&mut self.queue)
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Sends everything queued, never blocking: what the socket cannot take now is dropped
    /// and counted (real-time media is not worth queueing behind a full buffer).
    pub fn flush(&mut self, socket: &UdpSocket) -> Flushed {
        let mut out = Flushed::default();
        if self.queue.is_empty() {
            return out;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = socket.as_raw_fd();
            let mut start = 0;
            while start < self.queue.len() {
                let end = (start + self.chunk).min(self.queue.len());
                match send_chunk(fd, &self.queue[start..end], &mut out) {
                    ChunkResult::Sent(n) => start += n,
                    ChunkResult::WouldBlock => {
                        out.would_block += (self.queue.len() - start) as u64;
                        break;
                    }
                    ChunkResult::Failed => {
                        out.errors += 1; // the first datagram of the chunk is undeliverable
                        start += 1;
                    }
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        for (data, to) in &self.queue {
            out.syscalls += 1;
            match socket.try_send_to(data, *to) {
                Ok(n) => {
                    out.sent += 1;
                    out.bytes += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => out.would_block += 1,
                Err(_) => out.errors += 1,
            }
        }
        self.queue.clear();
        out
    }
}

#[cfg(target_os = "linux")]
enum ChunkResult {
    /// This many datagrams (at least one) were sent.
    Sent(usize),
    /// The socket buffer is full.
    WouldBlock,
    /// The first datagram failed for another reason.
    Failed,
}

/// One `sendmmsg` for up to [`MAX_CHUNK`] datagrams.
#[cfg(target_os = "linux")]
fn send_chunk(fd: std::os::fd::RawFd, items: &[(BytesMut, SocketAddr)], out: &mut Flushed) -> ChunkResult {
    debug_assert!(!items.is_empty() && items.len() <= MAX_CHUNK);
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut addrs: [libc::sockaddr_storage; MAX_CHUNK] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; MAX_CHUNK] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; MAX_CHUNK] = unsafe { std::mem::zeroed() };
    for (i, (data, to)) in items.iter().enumerate() {
        let len = write_sockaddr(to, &mut addrs[i]);
        iovs[i] = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
        msgs[i].msg_hdr.msg_name = (&mut addrs[i]) as *mut libc::sockaddr_storage as *mut libc::c_void;
        msgs[i].msg_hdr.msg_namelen = len;
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    out.syscalls += 1;
    // SAFETY: `msgs` points into `addrs` and `iovs`, which outlive the call; each iovec points
    // at a live buffer of `items`, which the kernel only reads.
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), items.len() as libc::c_uint, libc::MSG_DONTWAIT) };
    if n > 0 {
        let n = n as usize;
        out.sent += n as u64;
        out.bytes += items[..n].iter().map(|(d, _)| d.len() as u64).sum::<u64>();
        return ChunkResult::Sent(n);
    }
    let err = std::io::Error::last_os_error();
    match err.kind() {
        std::io::ErrorKind::WouldBlock => ChunkResult::WouldBlock,
        std::io::ErrorKind::Interrupted => ChunkResult::Sent(0),
        _ => {
            tracing::debug!(error = %err, to = %items[0].1, "sendmmsg failed");
            ChunkResult::Failed
        }
    }
}

/// Writes `addr` as a C socket address; returns its length.
#[cfg(target_os = "linux")]
fn write_sockaddr(addr: &SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn flush_delivers_every_datagram_in_order_to_each_destination() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rx_a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rx_b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (a, b) = (rx_a.local_addr().unwrap(), rx_b.local_addr().unwrap());
        let mut batch = SendBatch::default();
        // 150 datagrams: more than two chunks, alternating destinations, distinct sizes
        for i in 0..150u32 {
            let mut d = BytesMut::new();
            d.extend_from_slice(&i.to_be_bytes());
            d.resize(4 + (i as usize % 7) * 100, 0xee);
            batch.push(d, if i % 2 == 0 { a } else { b });
        }
        let f = batch.flush(&tx);
        assert_eq!((f.sent, f.would_block, f.errors), (150, 0, 0));
        assert_eq!(f.syscalls, 3, "150 datagrams in chunks of 64");
        let mut single = SendBatch::new(1);
        single.push(BytesMut::from(&b"x"[..]), a);
        single.push(BytesMut::from(&b"y"[..]), b);
        assert_eq!(single.flush(&tx).syscalls, 2, "chunk 1: one call per datagram");
        assert!(batch.is_empty());
        let mut buf = [0u8; 2048];
        for (sock, parity) in [(&rx_a, 0u32), (&rx_b, 1)] {
            for k in 0..75u32 {
                let i = 2 * k + parity;
                let n = tokio::time::timeout(std::time::Duration::from_secs(2), sock.recv(&mut buf)).await.unwrap().unwrap();
                assert_eq!(u32::from_be_bytes(buf[..4].try_into().unwrap()), i);
                assert_eq!(n, 4 + (i as usize % 7) * 100);
            }
        }
    }

    #[tokio::test]
    async fn an_unreachable_destination_does_not_stop_the_rest() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut batch = SendBatch::default();
        let v6 = SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 9)); // IPv4 socket: EAFNOSUPPORT/EINVAL
        batch.push(BytesMut::from(&b"lost"[..]), v6);
        batch.push(BytesMut::from(&b"kept"[..]), rx.local_addr().unwrap());
        let f = batch.flush(&tx);
        assert_eq!((f.sent, f.errors), (1, 1));
        let mut buf = [0u8; 16];
        let n = rx.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"kept");
    }
}
