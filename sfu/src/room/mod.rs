//! Rooms: one task per room (its driver) owns the room's core, which holds every
//! participant's peer connections and all forwarding state. Signaling talks to it through
//! [`RoomCommand`]s, the UDP reader through [`Datagram`]s.

pub mod admin;
pub mod admin_state;
pub mod allocation;
pub mod congestion;
pub mod core;
#[cfg(test)]
mod core_tests;
pub mod driver;
pub mod dynacast;
pub mod egress;
pub mod fanout;
pub mod fanout_entry;
pub mod feedback;
pub mod media_path;
pub mod negotiate;
pub mod participant;
pub mod peer;
pub mod probing;
pub mod sdp;
#[cfg(test)]
mod sim;
pub mod speakers;
pub mod track;
pub mod viewer;

use crate::metrics::MediaMetrics;
use crate::udp::{Datagram, Demux};
use futures::FutureExt;
pub use peer::MediaAddr;
use signaling::room::{RoomCommand, RoomFactory, RoomSender};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::sync::mpsc;

/// Commands a room may queue before signaling waits.
const COMMAND_QUEUE: usize = 256;
/// Datagrams a room may queue before the reader drops them.
const DATAGRAM_QUEUE: usize = 8192;

/// What a room core needs of the node: metrics, addresses, the routing table, settings.
/// Nothing in it does IO: a test builds one without sockets.
#[derive(Clone)]
pub struct RoomContext {
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
    /// Room size from which participants that publish nothing are not announced (0: never).
    pub quiet_viewers_above: usize,
    /// Subscribers' layers are capped by their bandwidth estimates (`allocation.rs`).
    pub bwe_allocate: bool,
    /// Tests only: the room of this name panics when a track is published in it.
    pub inject_room_panic: Option<String>,
}

/// What every room driver of one media port shares: the room context and the IO.
#[derive(Clone)]
pub struct MediaPlane {
    /// What the room cores share.
    pub ctx: RoomContext,
    /// The media port.
    pub socket: Arc<crate::udp::MediaSocket>,
    /// The ICE-TCP connections beside it (empty with `--tcp off`).
    pub tcp: Arc<crate::tcp::TcpPaths>,
    /// Helper threads sending parts of large flushes.
    pub send_pool: Arc<crate::udp::SendPool>,
    /// The media thread whose runtime runs this plane's reader and rooms; `None`: the
    /// runtime that asks for a room (the server's shared one).
    pub runtime: Option<tokio::runtime::Handle>,
    /// Live rooms of this plane (`sfu_media_thread_rooms`): where the next room goes.
    pub rooms: prometheus::IntGauge,
}

/// The media threads of a node (`--media-threads`): each new room starts on the plane with
/// the fewest live rooms and stays there.
pub struct MediaThreads {
    planes: Vec<MediaPlane>,
}

impl MediaThreads {
    /// The node's planes; at least one.
    pub fn new(planes: Vec<MediaPlane>) -> Self {
        assert!(!planes.is_empty(), "a node has a media plane");
        MediaThreads { planes }
    }
}

impl RoomFactory for MediaThreads {
    fn spawn_room(&self, room: &str) -> RoomSender {
        let plane = self.planes.iter().min_by_key(|p| p.rooms.get()).expect("at least one plane");
        plane.spawn_room(room)
    }
}

impl MediaPlane {
    /// Starts the worker of `room` on this plane's runtime.
    fn spawn_room(&self, room: &str) -> RoomSender {
        let (cmd_tx, cmd_rx) = mpsc::channel::<RoomCommand>(COMMAND_QUEUE);
        let (dg_tx, dg_rx) = mpsc::channel::<Datagram>(DATAGRAM_QUEUE);
        let core = core::RoomCore::new(room.to_string(), self.ctx.clone(), dg_tx, std::time::Instant::now());
        let io = self.clone();
        let name = room.to_string();
        let (rooms, metrics) = (self.rooms.clone(), self.ctx.metrics.clone());
        rooms.inc();
        let task = async move {
            // a panic stays in its room: the worker's state is dropped while unwinding, which
            // closes its participants and forgets its routes (`Room`'s `Drop`), and the
            // node goes on serving every other room
            let outcome = AssertUnwindSafe(driver::run(core, io, cmd_rx, dg_rx)).catch_unwind().await;
            rooms.dec();
            match outcome {
                Ok(()) => tracing::info!(room = %name, "room worker stopped"),
                Err(panic) => {
                    metrics.room_panics.inc();
                    let what = panic_message(panic.as_ref());
                    tracing::error!(room = %name, panic = what, "room worker panicked: its participants were told and closed");
                }
            }
        };
        match &self.runtime {
            Some(thread) => drop(thread.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
        cmd_tx
    }
}

/// The message of a caught panic (a `&str` or `String` payload, as `panic!` makes).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a message)")
}
