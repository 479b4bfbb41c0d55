//! The task that reads the media port and hands datagrams to room workers.

use super::demux::{Datagram, Demux};
use crate::metrics::MediaMetrics;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;

/// Largest datagram accepted; anything longer is truncated by the kernel and dropped by SRTP.
const MAX_DATAGRAM: usize = 2048;

/// Reads datagrams until the socket fails, routing each to its room without ever blocking:
/// a room whose queue is full loses the datagram (counted), other rooms are unaffected.
pub async fn run(socket: Arc<UdpSocket>, demux: Arc<Demux>, metrics: Arc<MediaMetrics>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                // ICMP port unreachable surfaces as ECONNREFUSED on some systems: not fatal.
                tracing::debug!(error = %e, "udp recv error");
                continue;
            }
        };
        metrics.udp_in_packets.inc();
        metrics.udp_in_bytes.inc_by(n as u64);
        let data = &buf[..n];
        let route = match demux.route(data, from) {
            Ok(r) => r,
            Err(why) => {
                metrics.count_drop(why.label());
                continue;
            }
        };
        let dg = Datagram { peer: route.peer, from, at: Instant::now(), data: BytesMut::from(data) };
        match route.room.try_send(dg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => metrics.count_drop("room_queue_full"),
            Err(TrySendError::Closed(_)) => metrics.count_drop("room_closed"),
        }
    }
}
