//! The task that reads the media port and hands datagrams to room workers.

use super::MediaSocket;
use super::arena::DatagramArena;
use super::demux::{Datagram, Demux};
use super::recv_batch::{Meta, RecvBatch};
use crate::drop_reason::DropReason;
use crate::metrics::MediaMetrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::error::TrySendError;

/// Reads datagrams until `stop` turns true (or its sender is gone), routing each to its room.
/// `shares_thread`: the rooms run on this task's thread (a media thread), so after a full
/// batch (more is likely queued) the reader lets them run before it reads again instead of
/// filling their queues first.
pub async fn run(
    socket: Arc<MediaSocket>,
    demux: Arc<Demux>,
    metrics: Arc<MediaMetrics>,
    shares_thread: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut batch = RecvBatch::default();
    let mut arena = DatagramArena::default();
    let mut reports = SocketReports::new(&socket);
    let mut errors = ErrorBackoff::default();
    loop {
        let read = tokio::select! {
            biased;
            r = socket.read(|s| batch.read(s)) => r,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                // not expected on an unconnected UDP socket (ICMP errors are not reported to it
                // without IP_RECVERR); a socket that keeps failing must not spin the reader
                metrics.udp_recv_errors.inc();
                tracing::debug!(error = %e, "udp recv error");
                errors.wait().await;
                continue;
            }
        };
        errors.reset();
        metrics.udp_recv_calls.inc();
        let (now, wall) = (Instant::now(), SystemTime::now());
        for i in 0..n {
            let (data, meta) = batch.get(i);
            let at = reports.take(meta, wall, now, &metrics);
            if meta.truncated {
                // larger than any media datagram: garbage, or a path MTU gone wrong
                metrics.count_drop(DropReason::Oversized);
                continue;
            }
            if data.is_empty() {
                // nothing to route; `rtc` would log each one as an error
                metrics.count_drop(DropReason::Empty);
                continue;
            }
            match meta.from {
                Some(from) => route(data, from, at, &demux, &mut arena, &metrics),
                None => metrics.count_drop(DropReason::UnknownSource),
            }
        }
        if shares_thread && n == super::recv_batch::CAPACITY {
            tokio::task::yield_now().await;
        }
    }
}

/// Hands one datagram to its room without ever blocking: a room whose queue is full loses the
/// datagram (counted), other rooms are unaffected. Datagrams the kernel dropped because the
/// socket's receive buffer was full are counted by the caller (`SO_RXQ_OVFL`, Linux):
/// upstream loss that no other counter of the server sees. `at` is when the kernel queued it;
/// its bytes are copied into a buffer cut from `arena` (unless the room has fallen behind).
fn route(data: &[u8], from: SocketAddr, at: Instant, demux: &Demux, arena: &mut DatagramArena, metrics: &MediaMetrics) {
    metrics.udp_in_packets.inc();
    metrics.udp_in_bytes.inc_by(data.len() as u64);
    let sent = demux.dispatch(data, from, |route| {
        let queued = route.room.max_capacity() - route.room.capacity();
        route.room.try_send(Datagram { peer: route.peer, from: from.into(), at, data: arena.copy_for(data, queued) })
    });
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(TrySendError::Full(_))) => metrics.count_drop(DropReason::RoomQueueFull),
        Ok(Err(TrySendError::Closed(_))) => metrics.count_drop(DropReason::RoomClosed),
        Err(why) => metrics.count_drop(why.into()),
    }
}

/// What the kernel reports on the media socket: its running count of datagrams it dropped (as
/// last reported, `SO_RXQ_OVFL`) and, turned on with it, each datagram's receive stamp.
struct SocketReports {
    seen: u32,
    /// Drops since the last warning, and when it was logged (at most one a second).
    unlogged: u64,
    warned: Option<Instant>,
}

impl SocketReports {
    fn new(socket: &MediaSocket) -> Self {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = socket.as_raw_fd();
            if !super::set_int_option(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1) {
                tracing::warn!("SO_RXQ_OVFL refused: datagrams the kernel drops on the media port are not counted");
            }
            // arrival times from the kernel: a datagram that waited in the receive buffer keeps
            // the time it arrived (TWCC feedback, stale-media age), see `arrival`
            if !super::set_int_option(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1) {
                tracing::warn!("SO_TIMESTAMPNS refused: arrival times are taken when a datagram is read");
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = socket;
        SocketReports { seen: 0, unlogged: 0, warned: None }
    }

    /// Takes in what the kernel said about one datagram of a batch read at `now` (`wall` on
    /// the wall clock): counts the drops it reported and the datagram's wait; returns when
    /// the datagram arrived (`arrival` of its stamp, else the read time).
    fn take(&mut self, meta: &Meta, wall: SystemTime, now: Instant, metrics: &MediaMetrics) -> Instant {
        if let Some(total) = meta.drops {
            self.update(total, metrics);
        }
        let Some(stamp) = meta.stamp else { return now };
        let at = arrival(stamp, wall, now);
        metrics.udp_receive_queue.observe(now.duration_since(at).as_secs_f64());
        at
    }

    /// Counts what the kernel dropped since the last report.
    fn update(&mut self, total: u32, metrics: &MediaMetrics) {
        let new = total.wrapping_sub(self.seen);
        if new > 0 && new < u32::MAX / 2 {
            metrics.count_drop_n(DropReason::UdpReceiveBufferFull, u64::from(new));
            self.unlogged += u64::from(new);
            let now = Instant::now();
            if self.warned.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
                tracing::warn!(
                    dropped = self.unlogged,
                    total,
                    "the media port's receive buffer overflowed: datagrams lost in the kernel (see --udp-recv-buffer)"
                );
                self.unlogged = 0;
                self.warned = Some(now);
            }
        }
        self.seen = total;
    }
}

/// Pauses the reader after failed reads in a row: one error is read again at once, a socket
/// that keeps failing (it cannot recover by itself) is retried at most every 100 ms instead
/// of spinning a core.
#[derive(Default)]
struct ErrorBackoff {
    streak: u32,
}

impl ErrorBackoff {
    /// How long to wait after the `streak`th failure in a row.
    fn delay(streak: u32) -> Duration {
        match streak {
            0 | 1 => Duration::ZERO,
            n => Duration::from_millis(1u64 << (n - 2).min(7)).min(Duration::from_millis(100)),
        }
    }

    async fn wait(&mut self) {
        self.streak = self.streak.saturating_add(1);
        let d = Self::delay(self.streak);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    fn reset(&mut self) {
        self.streak = 0;
    }
}

/// Longest wait in the kernel's queue that `arrival` reports: a longer gap between the stamp
/// and the wall clock is a reader stall (already far past the stale-media limit) or a clock
/// step forward, and either way counts as this long.
const MAX_QUEUED: Duration = Duration::from_secs(1);

/// The `Instant` at which the kernel queued a datagram: its stamp (`CLOCK_REALTIME`, time since
/// the epoch) is `wall - stamp` before the read, which happened at `now`, at most
/// `MAX_QUEUED`. A stamp after `wall` (the clock was stepped back) counts as no wait.
fn arrival(stamp: Duration, wall: SystemTime, now: Instant) -> Instant {
    let wall = wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    match wall.checked_sub(stamp) {
        Some(waited) => now.checked_sub(waited.min(MAX_QUEUED)).unwrap_or(now),
        None => now,
    }
}

/// Asks for `bytes` of kernel receive buffer on the media socket (past `net.core.rmem_max`
/// where the process may, as root does); returns what the kernel granted (it reports double
/// the usable size). Only called for `--udp-recv-buffer` > 0; why the default is 1 MiB is on
/// that flag (`Config::udp_recv_buffer`, docs/perf-history.md 17.1).
pub fn size_receive_buffer(socket: &MediaSocket, bytes: usize) -> usize {
    let sock = socket2::SockRef::from(socket.get_ref());
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // without CAP_NET_ADMIN the forced variant fails: the plain one is capped by the sysctl
        if !super::set_int_option(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v) {
            super::set_int_option(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, v);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = sock.set_recv_buffer_size(bytes);
    sock.recv_buffer_size().unwrap_or(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A media socket with the kernel's reports turned on, and metrics to count them.
    async fn receiver() -> (MediaSocket, MediaMetrics, SocketReports) {
        let rx = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let metrics = MediaMetrics::new(&prometheus::Registry::new());
        let reports = SocketReports::new(&rx);
        (rx, metrics, reports)
    }

    /// Reads one batch and takes in what the kernel said about each datagram, as `run` does:
    /// the first datagram's length, first byte, sender and arrival, and how many the batch held.
    async fn recv_first(
        rx: &MediaSocket,
        batch: &mut RecvBatch,
        reports: &mut SocketReports,
        metrics: &MediaMetrics,
    ) -> (usize, u8, SocketAddr, Instant, usize) {
        let n = rx.read(|s| batch.read(s)).await.unwrap();
        let (now, wall) = (Instant::now(), SystemTime::now());
        let arrivals: Vec<Instant> = (0..n).map(|i| reports.take(batch.get(i).1, wall, now, metrics)).collect();
        let (data, meta) = batch.get(0);
        (data.len(), data.first().copied().unwrap_or_default(), meta.from.unwrap(), arrivals[0], n)
    }

    #[tokio::test]
    async fn datagrams_the_kernel_dropped_are_counted() {
        let (rx, metrics, mut reports) = receiver().await;
        socket2::SockRef::from(rx.get_ref()).set_recv_buffer_size(4096).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..200u8 {
            tx.send_to(&[i; 1000], rx.local_addr().unwrap()).unwrap();
        }
        let mut batch = RecvBatch::default();
        let (n, first, from, _, _) = recv_first(&rx, &mut batch, &mut reports, &metrics).await;
        assert_eq!((n, from, first), (1000, tx.local_addr().unwrap(), 0), "the first datagram was queued");
        // the kernel stamps its running drop count on datagrams queued after the drops
        while rx.get_ref().recv(&mut [0; 2048]).is_ok() {}
        tx.send_to(&[7; 10], rx.local_addr().unwrap()).unwrap();
        let (n, first, _, _, in_batch) = recv_first(&rx, &mut batch, &mut reports, &metrics).await;
        assert_eq!((n, first, in_batch), (10, 7, 1));
        let dropped = metrics.dropped(DropReason::UdpReceiveBufferFull);
        assert!(dropped > 150, "a 4 KiB buffer holds a few of 200 datagrams: {dropped} counted");
        // the count is cumulative: a later datagram with no new drops adds nothing
        tx.send_to(&[8; 10], rx.local_addr().unwrap()).unwrap();
        let _ = recv_first(&rx, &mut batch, &mut reports, &metrics).await;
        assert_eq!(metrics.dropped(DropReason::UdpReceiveBufferFull), dropped);
    }

    #[tokio::test]
    async fn a_datagram_keeps_the_time_the_kernel_queued_it() {
        let (rx, metrics, mut reports) = receiver().await;
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RecvBatch::default();
        // The kernel turns its receive stamps on asynchronously once a socket first asks (a
        // deferred static key), and stamps a datagram that arrived before then when it is
        // read: a few tries allow for that.
        let mut waits = Vec::new();
        for _ in 0..5 {
            let sent = Instant::now();
            tx.send_to(&[1; 100], rx.local_addr().unwrap()).unwrap();
            tokio::time::sleep(Duration::from_millis(80)).await;
            let (n, _, _, at, _) = recv_first(&rx, &mut batch, &mut reports, &metrics).await;
            let read = Instant::now();
            assert_eq!(n, 100);
            assert!(
                at + Duration::from_millis(5) >= sent,
                "stamped {:?} before it was sent",
                sent.saturating_duration_since(at)
            );
            waits.push(read.duration_since(at));
            if read.duration_since(at) >= Duration::from_millis(70) {
                // and the wait is in the receive-queue histogram
                let h = &metrics.udp_receive_queue;
                assert!(
                    h.get_sample_count() >= 1 && h.get_sample_sum() >= 0.07,
                    "{} samples, {} s",
                    h.get_sample_count(),
                    h.get_sample_sum()
                );
                return;
            }
        }
        panic!("no datagram kept its arrival time: read {waits:?} after the stamps");
    }

    #[test]
    fn a_failing_socket_is_retried_slower_and_slower() {
        let ms = Duration::from_millis;
        // columns: failures in a row, wait before the next read
        let rows = [(1, ms(0)), (2, ms(1)), (3, ms(2)), (5, ms(8)), (8, ms(64)), (9, ms(100)), (1000, ms(100))];
        for (streak, want) in rows {
            assert_eq!(ErrorBackoff::delay(streak), want, "after {streak} failures");
        }
    }

    #[test]
    fn arrival_times_from_kernel_stamps() {
        let now = Instant::now() + Duration::from_secs(10);
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let epoch = |d: Duration| wall.duration_since(SystemTime::UNIX_EPOCH).unwrap() - d;
        let ms = Duration::from_millis;
        // (how long before the wall clock the kernel stamped it, expected wait)
        let table = [
            (ms(0), ms(0)),
            (ms(7), ms(7)),
            (Duration::from_micros(250), Duration::from_micros(250)),
            (MAX_QUEUED, MAX_QUEUED),
            (MAX_QUEUED + ms(1), MAX_QUEUED), // a stall or a clock step forward: clamped
            (Duration::from_secs(3600), MAX_QUEUED),
        ];
        for (before, waited) in table {
            assert_eq!(arrival(epoch(before), wall, now), now - waited, "stamped {before:?} before the wall clock");
        }
        // stamped after the wall clock (the clock was stepped back): no wait
        assert_eq!(arrival(epoch(ms(0)) + ms(3), wall, now), now);
    }
}
