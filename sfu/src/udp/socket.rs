//! The media port's sockets: one the runtime watches for reading only, and (on Linux) a
//! second bound to the same port that only sends.
//!
//! The server never waits for a UDP socket to become writable (a datagram the kernel cannot
//! take is dropped and counted, see `batch.rs`), so the socket is not watched for it: with
//! write interest registered (what `tokio::net::UdpSocket` always does), the kernel runs the
//! socket's epoll callback for every datagram it frees after sending it (`sock_wfree` ->
//! write space -> `ep_poll_callback`, under the socket's wait-queue lock with interrupts off)
//! and wakes the runtime's poller for a readiness nobody waits for.
//!
//! Even read-only, the registration leaves an entry in the socket's wait queue, so every sent
//! datagram still takes that lock when it is freed. Sends therefore leave through a second
//! socket of the same port that nothing waits on (`sock_wfree` finds its wait queue empty):
//! the two form a `SO_REUSEPORT` group whose steering program sends every arriving datagram
//! to the reading socket. The reading socket binds first without `SO_REUSEPORT`, so a port
//! held by anyone else (another server) still fails with "address in use", and a port 0 is
//! one nobody else holds; the send socket joins it after. Where any step is refused, the
//! reading socket sends too.
//!
//! Sent datagrams carry the don't-fragment bit (`IP_PMTUDISC_PROBE`, as QUIC stacks do): RTP
//! is sized to fit a path's MTU and a fragment lost loses the whole packet, and a datagram
//! with DF set skips the kernel's per-destination IP identifier (a hash and a shared atomic
//! per datagram).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A non-blocking UDP socket the runtime watches for readability only, with its send side.
pub struct MediaSocket {
    inner: AsyncFd<std::net::UdpSocket>,
    /// The send-only member of the port's group; `None` sends on `inner`.
    send: Option<std::net::UdpSocket>,
}

impl MediaSocket {
    /// Binds `addr` (inside a Tokio runtime), with a send-only socket on the same port where
    /// the kernel allows it.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let reader = std::net::UdpSocket::bind(addr)?;
        let send = match send_only_member(&reader) {
            Ok(send) => Some(send),
            Err(e) => {
                tracing::info!(error = %e, "no send-only media socket: sending on the reading one");
                None
            }
        };
        Self::new(reader, send)
    }

    /// Takes over a bound socket (made non-blocking here), which both reads and sends.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        Self::new(socket, None)
    }

    fn new(reader: std::net::UdpSocket, send: Option<std::net::UdpSocket>) -> io::Result<Self> {
        reader.set_nonblocking(true)?;
        // SAFETY: the `std` socket owns its descriptor, which nothing else closes or replaces
        // while the `AsyncFd` holds it (the socket is only reachable through it).
        let inner = unsafe { AsyncFd::register_with_interest(reader, Interest::READABLE) }.map_err(io::Error::from)?;
        let socket = MediaSocket { inner, send };
        socket.prepare_sends();
        Ok(socket)
    }

    /// Don't-fragment on whatever socket sends (best effort: without it the kernel picks
    /// identifiers and may fragment, as before).
    fn prepare_sends(&self) {
        #[cfg(target_os = "linux")]
        {
            let fd = self.sender().as_raw_fd();
            let v4 = super::set_int_option(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE);
            let v6 = self.local_addr().is_ok_and(|a| a.is_ipv6())
                && super::set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE);
            tracing::debug!(v4, v6, "media sends set don't-fragment");
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// The reading socket: its calls never block.
    pub fn get_ref(&self) -> &std::net::UdpSocket {
        self.inner.get_ref()
    }

    /// The socket sends leave through (same port; never blocks).
    pub fn sender(&self) -> &std::net::UdpSocket {
        self.send.as_ref().unwrap_or_else(|| self.inner.get_ref())
    }

    /// Whether sends leave through their own socket.
    pub fn has_send_only_socket(&self) -> bool {
        self.send.is_some()
    }

    /// Waits until datagrams are queued and runs `read` on the socket; a `WouldBlock` from it
    /// (another reader took them, or a spurious wake-up) waits again.
    pub async fn read<R>(&self, mut read: impl FnMut(&std::net::UdpSocket) -> io::Result<R>) -> io::Result<R> {
        loop {
            let mut ready = self.inner.readable().await?;
            match ready.try_io(|s| read(s.get_ref())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsRawFd for MediaSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

/// `SO_ATTACH_REUSEPORT_CBPF` where it has the generic value (alpha, hppa, sparc and mips
/// number their socket options apart; there the reading socket sends).
#[cfg(target_os = "linux")]
const SO_ATTACH_REUSEPORT_CBPF: Option<libc::c_int> = if cfg!(any(
    target_arch = "sparc",
    target_arch = "sparc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6"
)) {
    None
} else {
    Some(51)
};

/// A socket bound to `reader`'s address that only sends: `reader` and it become a
/// `SO_REUSEPORT` group whose classic BPF program answers 0 (the group's first member,
/// `reader`) for every datagram, so nothing is ever queued on the send socket. On failure the
/// reader is left as it was bound.
#[cfg(target_os = "linux")]
fn send_only_member(reader: &std::net::UdpSocket) -> io::Result<std::net::UdpSocket> {
    use socket2::SockRef;
    let option = SO_ATTACH_REUSEPORT_CBPF.ok_or_else(|| {
        io::Error::new(io::ErrorKind::Unsupported, "SO_ATTACH_REUSEPORT_CBPF unknown on this architecture")
    })?;
    let joined = join_group(reader, option);
    if joined.is_err() {
        let _ = SockRef::from(reader).set_reuse_port(false);
    }
    joined
}

#[cfg(target_os = "linux")]
fn join_group(reader: &std::net::UdpSocket, option: libc::c_int) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, SockRef, Socket, Type};
    let addr = reader.local_addr()?;
    // bound without it: the port was free of everyone else; from now on only sockets of this
    // user that ask for it can join, and the program below gives them nothing
    SockRef::from(reader).set_reuse_port(true)?;
    let send = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // the reader's dual-stack setting, or the two would not share the port
        send.set_only_v6(SockRef::from(reader).only_v6()?)?;
    }
    send.set_reuse_port(true)?;
    send.bind(&addr.into())?;
    // `ret #0`: every datagram to the reader (the group exists once the second socket has
    // joined, so this comes after the bind; no peer knows the port in between)
    let mut program = [libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: 0 }];
    let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_mut_ptr() };
    // SAFETY: `fprog` points at a live one-instruction program of the length given; the
    // kernel copies it before returning.
    let attached = unsafe {
        libc::setsockopt(
            reader.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if attached != 0 {
        return Err(io::Error::last_os_error());
    }
    send.set_nonblocking(true)?;
    Ok(send.into())
}

#[cfg(not(target_os = "linux"))]
fn send_only_member(_reader: &std::net::UdpSocket) -> io::Result<std::net::UdpSocket> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no SO_REUSEPORT steering on this platform"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event mask the runtime's epoll instance watches `fd` with, from `/proc/self/fdinfo`.
    #[cfg(target_os = "linux")]
    fn epoll_events(fd: RawFd) -> Option<u32> {
        for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
            let is_epoll = std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().contains("eventpoll"));
            if !is_epoll {
                continue;
            }
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", entry.file_name().to_string_lossy())).ok()?;
            for line in info.lines() {
                // tfd:        7 events:       19 data: ...
                let mut words = line.split_whitespace();
                if words.next() == Some("tfd:")
                    && words.next() == Some(fd.to_string().as_str())
                    && words.next() == Some("events:")
                {
                    return words.next().and_then(|e| u32::from_str_radix(e, 16).ok());
                }
            }
        }
        None
    }

    #[tokio::test]
    async fn reads_wait_for_datagrams() {
        let rx = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        // nothing queued: the read waits instead of returning WouldBlock
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), rx.read(|s| s.recv_from(&mut [0; 16]))).await;
        assert!(waiting.is_err(), "a read returned with nothing queued: {waiting:?}");
        tx.send_to(b"hello", to).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = rx.read(|s| s.recv_from(&mut buf)).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"hello"[..], tx.local_addr().unwrap()));
        // and a socket call that finds nothing fails at once (non-blocking)
        let err = rx.get_ref().recv_from(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[cfg(target_os = "linux")]
    fn int_option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a c_int out-parameter of the length passed, on a socket the test owns.
        let r = unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut libc::c_int).cast(), &mut len) };
        assert_eq!(r, 0, "getsockopt: {}", io::Error::last_os_error());
        value
    }

    /// Everything sent to the port reaches the reading socket, whatever its source (the
    /// group's steering, not the kernel's hash of the 4-tuple); sends leave from the port.
    async fn check_port_pair(media: &MediaSocket, peer_ip: &str) {
        let port = media.local_addr().unwrap();
        let peers: Vec<std::net::UdpSocket> =
            (0..64).map(|_| std::net::UdpSocket::bind(format!("{peer_ip}:0")).unwrap()).collect();
        for (i, p) in peers.iter().enumerate() {
            p.send_to(&[i as u8; 20], port).unwrap();
        }
        let mut seen = vec![false; peers.len()];
        let mut buf = [0u8; 64];
        for _ in 0..peers.len() {
            let got =
                tokio::time::timeout(std::time::Duration::from_secs(5), media.read(|s| s.recv_from(&mut buf))).await;
            let (n, from) = got.expect("every datagram reaches the reading socket").unwrap();
            assert_eq!(n, 20);
            let i = buf[0] as usize;
            assert_eq!(from, peers[i].local_addr().unwrap());
            seen[i] = true;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
        let err = media.sender().recv_from(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "nothing is queued on the send socket");
        // a send leaves from the port the peers know
        media.sender().send_to(b"answer", peers[7].local_addr().unwrap()).unwrap();
        peers[7].set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let (n, from) = peers[7].recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"answer"[..], port));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn sends_leave_from_the_port_through_a_socket_nothing_waits_on() {
        let media = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(media.has_send_only_socket());
        assert_ne!(media.sender().as_raw_fd(), media.as_raw_fd());
        assert_eq!(media.sender().local_addr().unwrap(), media.local_addr().unwrap());
        assert!(epoll_events(media.as_raw_fd()).is_some(), "the reader is registered");
        assert_eq!(epoll_events(media.sender().as_raw_fd()), None, "the send socket is in no epoll set");
        check_port_pair(&media, "127.0.0.1").await;
        // don't-fragment on what sends
        let fd = media.sender().as_raw_fd();
        assert_eq!(int_option(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER), libc::IP_PMTUDISC_PROBE);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_port_pair_works_on_ipv6() {
        let Ok(media) = MediaSocket::bind("[::1]:0".parse().unwrap()) else {
            eprintln!("no IPv6 loopback here: skipped");
            return;
        };
        assert!(media.has_send_only_socket());
        check_port_pair(&media, "[::1]").await;
        assert_eq!(
            int_option(media.sender().as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER),
            libc::IPV6_PMTUDISC_PROBE
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_second_server_cannot_take_the_port() {
        let media = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = media.local_addr().unwrap();
        let plain = std::net::UdpSocket::bind(port).unwrap_err();
        assert_eq!(plain.kind(), io::ErrorKind::AddrInUse);
        let second = MediaSocket::bind(port).err().expect("a second media socket on a held port");
        assert_eq!(second.kind(), io::ErrorKind::AddrInUse);
        // and the first still gets its datagrams
        check_port_pair(&media, "127.0.0.1").await;
    }

    #[tokio::test]
    async fn a_socket_taken_over_reads_and_sends_itself() {
        let media = MediaSocket::from_std(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        assert!(!media.has_send_only_socket());
        assert_eq!(media.sender().as_raw_fd(), media.as_raw_fd());
        check_port_pair(&media, "127.0.0.1").await;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_runtime_watches_it_for_reading_only() {
        let media = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let plain = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let out = libc::EPOLLOUT as u32;
        let plain_events = epoll_events(plain.as_raw_fd()).expect("tokio's socket is registered");
        assert_ne!(plain_events & out, 0, "the check sees tokio's write interest: {plain_events:#x}");
        let media_events = epoll_events(media.as_raw_fd()).expect("the media socket is registered");
        assert_ne!(media_events & libc::EPOLLIN as u32, 0, "{media_events:#x}");
        assert_eq!(media_events & out, 0, "no write interest: {media_events:#x}");
    }
}
