//! Room workers: one task per room owns every participant's peer connections and all
//! forwarding state. Signaling talks to it through [`RoomCommand`]s, the UDP reader through
//! [`Datagram`]s.

pub mod admin;
pub mod egress;
pub mod fanout;
pub mod forward;
pub mod negotiate;
pub mod participant;
pub mod peer;
pub mod sdp;
pub mod track;
pub mod worker;

use crate::metrics::MediaMetrics;
use crate::udp::{Datagram, Demux};
pub use peer::MediaAddr;
use signaling::room::{RoomCommand, RoomFactory, RoomSender};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::sync::mpsc;

/// Commands a room may queue before signaling waits.
const COMMAND_QUEUE: usize = 256;
/// Datagrams a room may queue before the reader drops them.
const DATAGRAM_QUEUE: usize = 8192;

/// What every room worker shares: the media socket, the demux, metrics.
#[derive(Clone)]
pub struct MediaPlane {
    /// The one media socket.
    pub socket: Arc<crate::udp::MediaSocket>,
    /// Routing table of the media port.
    pub demux: Arc<Demux>,
    /// Media metrics.
    pub metrics: Arc<MediaMetrics>,
    /// Bound and announced addresses.
    pub addr: MediaAddr,
    /// Source of unique peer keys.
    pub next_key: Arc<AtomicU64>,
    /// Datagrams per send system call.
    pub send_batch: usize,
    /// UDP GSO for runs of datagrams to one destination.
    pub gso: bool,
    /// Helper threads sending parts of large flushes.
    pub send_pool: Arc<crate::udp::SendPool>,
    /// Room size from which participants that publish nothing are not announced (0: never).
    pub quiet_viewers_above: usize,
}

impl RoomFactory for MediaPlane {
    fn spawn_room(&self, room: &str) -> RoomSender {
        let (cmd_tx, cmd_rx) = mpsc::channel::<RoomCommand>(COMMAND_QUEUE);
        let (dg_tx, dg_rx) = mpsc::channel::<Datagram>(DATAGRAM_QUEUE);
        let worker = worker::Room::new(room.to_string(), self.clone(), dg_tx);
        let name = room.to_string();
        tokio::spawn(async move {
            worker.run(cmd_rx, dg_rx).await;
            tracing::info!(room = %name, "room worker stopped");
        });
        cmd_tx
    }
}
