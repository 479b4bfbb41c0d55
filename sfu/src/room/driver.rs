//! The driver of a room: the tokio task that feeds its [`RoomCore`] commands, datagrams and
//! timeouts, and sends what the core hands out. It owns the IO (the media socket, the send
//! pool) and the clock, read once per wake-up.

use super::MediaPlane;
use super::core::RoomCore;
use crate::drop_reason::DropReason;
use crate::udp::Datagram;
use signaling::room::RoomCommand;
use std::time::Instant;
use tokio::sync::mpsc;

/// Datagrams handled per wake-up before output is sent.
const BATCH: usize = 64;

/// Runs `core` until every command sender is dropped (the room closed); dropping the core then
/// closes its connections.
pub async fn run(
    mut core: RoomCore,
    io: MediaPlane,
    mut commands: mpsc::Receiver<RoomCommand>,
    mut datagrams: mpsc::Receiver<Datagram>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let deadline = core.poll_timeout();
        let now = tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                let now = Instant::now();
                core.handle_command(now, cmd);
                now
            }
            n = datagrams.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                for dg in batch.drain(..) {
                    core.handle_datagram(now, dg);
                }
                now
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let now = Instant::now();
                core.handle_timeout(now);
                now
            }
        };
        send(&mut core, &io, now);
    }
}

/// Sends what the core has to send, in batches, and counts it.
fn send(core: &mut RoomCore, io: &MediaPlane, now: Instant) {
    let batch = core.transmit(now);
    let f = batch.flush_with(io.socket.sender(), Some(&io.send_pool));
    let metrics = &io.ctx.metrics;
    for (data, to) in batch.drain_tcp() {
        io.tcp.send(to, data, metrics);
    }
    metrics.udp_out_by_helpers.inc_by(f.by_helpers);
    metrics.udp_out_packets.inc_by(f.sent);
    metrics.udp_out_bytes.inc_by(f.bytes);
    metrics.udp_send_calls.inc_by(f.syscalls);
    metrics.udp_gso_messages.inc_by(f.gso_messages);
    if f.would_block > 0 {
        metrics.count_drop_n(DropReason::SendWouldBlock, f.would_block);
    }
    if f.errors > 0 {
        metrics.count_drop_n(DropReason::SendError, f.errors);
    }
    if core.forwarded() {
        core.on_sent(Instant::now());
    }
}
