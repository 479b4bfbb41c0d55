//! Datagrams of the media port read by one system call (`recvmmsg` on Linux), each with its
//! sender and what the kernel says about it: its receive stamp (`SO_TIMESTAMPNS`) and its
//! running count of datagrams dropped on the socket (`SO_RXQ_OVFL`).

use std::net::SocketAddr;
use std::net::UdpSocket;
use std::time::Duration;

/// Largest datagram accepted; anything longer is truncated by the kernel and dropped by SRTP.
pub const MAX_DATAGRAM: usize = 2048;

/// Datagrams per system call at most.
pub const CAPACITY: usize = 16;

/// Control-message space per datagram, in u64 words: `SO_RXQ_OVFL` (a u32) and
/// `SCM_TIMESTAMPNS` (a timespec), each with its header, fit in 56 bytes.
#[cfg(target_os = "linux")]
const CMSG_WORDS: usize = 12;

/// One datagram of a batch, as the kernel described it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    /// Bytes in the datagram's buffer.
    pub len: usize,
    /// The sender; `None` for an address that is not IPv4 or IPv6 (never on a UDP/IP socket).
    pub from: Option<SocketAddr>,
    /// The kernel's running count of datagrams it dropped on the socket, when it sent one.
    pub drops: Option<u32>,
    /// The kernel's receive stamp (`CLOCK_REALTIME`, since the epoch), when it sent one.
    pub stamp: Option<Duration>,
    /// Longer than [`MAX_DATAGRAM`]: cut by the kernel (no media datagram is this large).
    pub truncated: bool,
}

/// Buffers for up to [`CAPACITY`] datagrams, reused for every read (no allocation per read).
pub struct RecvBatch {
    bufs: Box<[[u8; MAX_DATAGRAM]; CAPACITY]>,
    meta: [Meta; CAPACITY],
    #[cfg(target_os = "linux")]
    names: Box<[libc::sockaddr_storage; CAPACITY]>,
    #[cfg(target_os = "linux")]
    cmsgs: Box<[[u64; CMSG_WORDS]; CAPACITY]>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: Box::new([[0; MAX_DATAGRAM]; CAPACITY]),
            meta: [Meta::default(); CAPACITY],
            #[cfg(target_os = "linux")]
            // SAFETY: sockaddr_storage is plain data; all zeroes is a valid (unspecified) value.
            names: Box::new([unsafe { std::mem::zeroed() }; CAPACITY]),
            #[cfg(target_os = "linux")]
            cmsgs: Box::new([[0; CMSG_WORDS]; CAPACITY]),
        }
    }
}

impl RecvBatch {
    /// The `i`th datagram of the last read (below what `read` returned): its bytes and what
    /// the kernel said about it.
    pub fn get(&self, i: usize) -> (&[u8], &Meta) {
        let m = &self.meta[i];
        (&self.bufs[i][..m.len], m)
    }

    /// Reads what the socket has queued, up to [`CAPACITY`] datagrams, without waiting:
    /// `WouldBlock` when nothing is queued.
    #[cfg(target_os = "linux")]
    pub fn read(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: iovec and mmsghdr are plain data; all zeroes is valid, every pointer is set
        // below before the call.
        let mut iovs: [libc::iovec; CAPACITY] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; CAPACITY] = unsafe { std::mem::zeroed() };
        for (iov, buf) in iovs.iter_mut().zip(self.bufs.iter_mut()) {
            *iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: MAX_DATAGRAM };
        }
        let iov_base = iovs.as_mut_ptr();
        for (i, hdr) in hdrs.iter_mut().enumerate() {
            let h = &mut hdr.msg_hdr;
            // in/out fields, so set again for every call
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = iov_base.wrapping_add(i);
            h.msg_iovlen = 1;
            h.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of::<[u64; CMSG_WORDS]>() as _;
        }
        // SAFETY: every header points at live buffers of the stated lengths (this batch's
        // buffers, addresses and control space, and `iovs`, all alive until the call returns).
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                CAPACITY as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if n == 0 {
            // not expected with a non-empty vector: treated as nothing queued, so the caller
            // waits for readiness again instead of spinning
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = n as usize;
        for (i, h) in hdrs.iter().enumerate().take(n) {
            self.meta[i] = Meta {
                len: (h.msg_len as usize).min(MAX_DATAGRAM),
                from: socket_addr(&self.names[i], h.msg_hdr.msg_namelen),
                truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                ..Meta::default()
            };
            // SAFETY: the kernel wrote `msg_controllen` bytes of control messages into this
            // datagram's control space; the macros stay within them.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                while !c.is_null() {
                    let holds = |size: usize| (*c).cmsg_len as usize >= libc::CMSG_LEN(size as libc::c_uint) as usize;
                    let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
                    if level == libc::SOL_SOCKET && kind == libc::SO_RXQ_OVFL && holds(std::mem::size_of::<u32>()) {
                        self.meta[i].drops = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const u32));
                    } else if level == libc::SOL_SOCKET
                        && kind == libc::SCM_TIMESTAMPNS
                        && holds(std::mem::size_of::<libc::timespec>())
                    {
                        let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                        if let (Ok(secs), Ok(nanos)) = (u64::try_from(ts.tv_sec), u32::try_from(ts.tv_nsec)) {
                            self.meta[i].stamp = Some(Duration::new(secs, nanos.min(999_999_999)));
                        }
                    }
                    c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
                }
            }
        }
        Ok(n)
    }

    /// Reads one datagram without waiting (no batched receive on this platform).
    #[cfg(not(target_os = "linux"))]
    pub fn read(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        let (n, from) = socket.recv_from(&mut self.bufs[0])?;
        self.meta[0] = Meta { len: n, from: Some(from), ..Meta::default() };
        Ok(1)
    }
}

/// The address the kernel wrote into `s` (`len` bytes of it).
#[cfg(target_os = "linux")]
fn socket_addr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    let len = len as usize;
    match libc::c_int::from(s.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is long enough.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, and it is long enough.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    use crate::udp::MediaSocket;

    async fn read_all(
        rx: &MediaSocket,
        batch: &mut RecvBatch,
        want: usize,
    ) -> (Vec<(Vec<u8>, SocketAddr, bool)>, usize) {
        let (mut got, mut reads) = (Vec::new(), 0);
        while got.len() < want {
            match rx.read(|s| batch.read(s)).await {
                Ok(n) => {
                    reads += 1;
                    for i in 0..n {
                        let (data, m) = batch.get(i);
                        assert!(m.stamp.is_some(), "every datagram carries its receive stamp");
                        got.push((data.to_vec(), m.from.unwrap(), m.truncated));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        (got, reads)
    }

    #[tokio::test]
    async fn one_read_takes_what_is_queued_in_order_with_each_sender() {
        let rx = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(crate::udp::set_int_option(
            std::os::fd::AsRawFd::as_raw_fd(&rx),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            1
        ));
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        // (sender, bytes): sizes from empty to past the largest datagram (truncated)
        let sent: Vec<(&std::net::UdpSocket, Vec<u8>)> = (0..40u8)
            .map(|i| {
                (if i % 3 == 0 { &b } else { &a }, vec![i; [0, 1, 200, 1200, MAX_DATAGRAM, 3000][usize::from(i) % 6]])
            })
            .collect();
        for (s, bytes) in &sent {
            s.send_to(bytes, to).unwrap();
        }
        let mut batch = RecvBatch::default();
        let (got, reads) = read_all(&rx, &mut batch, sent.len()).await;
        for (i, ((s, bytes), (data, from, truncated))) in sent.iter().zip(&got).enumerate() {
            let kept = bytes.len().min(MAX_DATAGRAM);
            assert_eq!(
                (data.as_slice(), *from, *truncated),
                (&bytes[..kept], s.local_addr().unwrap(), bytes.len() > MAX_DATAGRAM),
                "datagram {i}"
            );
        }
        assert!(reads <= sent.len().div_ceil(CAPACITY) + 1, "{} datagrams took {reads} reads", sent.len());
    }
}
