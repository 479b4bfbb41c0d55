//! The media port's socket, registered with the runtime for reading only.
//!
//! The server never waits for a UDP socket to become writable (a datagram the kernel cannot
//! take is dropped and counted, see `batch.rs`), so the socket is not watched for it: with
//! write interest registered (what `tokio::net::UdpSocket` always does), the kernel runs the
//! socket's epoll callback for every datagram it frees after sending it (`sock_wfree` ->
//! write space -> `ep_poll_callback`, under the socket's wait-queue lock with interrupts off)
//! and wakes the runtime's poller for a readiness nobody waits for.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A non-blocking UDP socket the runtime watches for readability only.
pub struct MediaSocket {
    inner: AsyncFd<std::net::UdpSocket>,
}

impl MediaSocket {
    /// Binds `addr` (inside a Tokio runtime).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::from_std(std::net::UdpSocket::bind(addr)?)
    }

    /// Takes over a bound socket (made non-blocking here).
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        // SAFETY: the `std` socket owns its descriptor, which nothing else closes or replaces
        // while the `AsyncFd` holds it (the socket is only reachable through it).
        let inner = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(io::Error::from)?;
        Ok(MediaSocket { inner })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// The socket itself: its calls never block.
    pub fn get_ref(&self) -> &std::net::UdpSocket {
        self.inner.get_ref()
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
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", entry.file_name().to_string_lossy())).ok()?;
            for line in info.lines() {
                // tfd:        7 events:       19 data: ...
                let mut words = line.split_whitespace();
                if words.next() == Some("tfd:") && words.next() == Some(fd.to_string().as_str()) && words.next() == Some("events:") {
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
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), rx.read(|s| s.recv_from(&mut [0; 16]))).await;
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
