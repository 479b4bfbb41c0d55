//! Probes toward subscribers: while a connection's estimator runs a probe cluster (the
//! allocation wants more than the estimate), padding-only packets fill the cluster up to its
//! rate. They ride a video downtrack's SSRC at the end of a frame, on a sequence number the
//! munger reserves (a receiver drops packets of SSRCs it does not know before counting them
//! in its feedback), and carry the connection's transport-wide numbers like media.

use super::congestion::PADDING_LEN;
use super::core::RoomCore;
use crate::udp::PeerKey;
use signaling::protocol::TrackKind;
use std::time::Instant;

impl RoomCore {
    /// Lists a connection whose estimator started a probe, and sends its first padding.
    pub(super) fn start_probing(&mut self, key: PeerKey, now: Instant) {
        if !self.probing.contains(&key) {
            self.probing.push(key);
            self.ctx.metrics.bwe_probes.inc();
        }
        self.send_probe_padding(now);
    }

    /// Sends the padding every probing connection needs now; drops the ones whose cluster
    /// ended and notes when padding is next due.
    pub(super) fn send_probe_padding(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        let mut i = 0;
        while i < self.probing.len() {
            match self.pad(self.probing[i], now) {
                Some(due) => {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    i += 1;
                }
                None => {
                    self.probing.swap_remove(i);
                }
            }
        }
        self.next_padding = next;
    }

    /// Pads one connection's cluster up to now; `Some(when padding is next due)` while it
    /// runs, `None` once it ended (or the connection is gone).
    fn pad(&mut self, key: PeerKey, now: Instant) -> Option<Instant> {
        let peer = self.peers.get_mut(&key).filter(|p| p.connected)?;
        let egress = peer.egress.as_mut()?;
        let p = self.participants.iter_mut().find(|p| p.subscriber == key)?;
        while egress.cc.bwe.poll_padding(now).is_some() {
            let carrier = p
                .downtracks
                .iter_mut()
                .find(|d| d.kind == TrackKind::Video && d.negotiated && d.frame_end && d.payload_type.is_some());
            let Some(dt) = carrier else { break };
            let (Some(pt), Some((seq, ts))) = (dt.payload_type, dt.munger.reserve_padding()) else { break };
            match egress.send_padding((pt, seq, ts, dt.ssrc), PADDING_LEN, &mut dt.rollover, &mut self.sends, now) {
                Ok(()) => {
                    dt.sent.on_sent(ts, 0, now);
                    self.ctx.metrics.bwe_padding_bytes.inc_by(u64::from(PADDING_LEN));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "probe padding not protected");
                    break;
                }
            }
        }
        if !egress.cc.bwe.probing() {
            return None;
        }
        // a cluster with nothing to pad on still ends by its timeout: look again soon
        Some(
            egress
                .cc
                .bwe
                .poll_timeout()
                .unwrap_or(now + std::time::Duration::from_millis(5))
                .max(now + std::time::Duration::from_millis(1)),
        )
    }
}
