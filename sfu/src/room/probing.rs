//! Paced output and probes toward subscribers. A connection whose pacer holds packets, or
//! whose estimator runs a probe cluster (the allocation wants more than the estimate), is
//! scheduled: at its due times the room releases what the pacer lets go and sends the padding
//! the cluster needs. Padding-only packets ride a video downtrack's SSRC at the end of a
//! frame, on a sequence number the munger reserves (a receiver drops packets of SSRCs it does
//! not know before counting them in its feedback), and carry the connection's transport-wide
//! numbers like media; they are sent only while nothing waits in the pacer (they must not
//! overtake it).

use super::congestion::PADDING_LEN;
use super::core::RoomCore;
use crate::udp::PeerKey;
use signaling::protocol::TrackKind;
use std::time::{Duration, Instant};

impl RoomCore {
    /// Schedules a connection (its pacer queued a packet, or its estimator started a probe);
    /// it is served at the next timeout, which is now.
    pub(super) fn schedule(&mut self, key: PeerKey, now: Instant) {
        if !self.scheduled.contains(&key) {
            self.scheduled.push(key);
        }
        self.next_egress = Some(self.next_egress.map_or(now, |t| t.min(now)));
    }

    /// Serves every scheduled connection; drops the ones with nothing left and notes when the
    /// rest are next due.
    pub(super) fn service_egress(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        let mut i = 0;
        while i < self.scheduled.len() {
            match self.serve(self.scheduled[i], now) {
                Some(due) => {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    i += 1;
                }
                None => {
                    self.scheduled.swap_remove(i);
                }
            }
        }
        self.next_egress = next;
    }

    /// Releases one connection's paced packets and pads its probe cluster up to now;
    /// `Some(when it is next due)`, `None` once nothing waits and no cluster runs.
    fn serve(&mut self, key: PeerKey, now: Instant) -> Option<Instant> {
        let peer = self.peers.get_mut(&key)?;
        let egress = peer.egress.as_mut()?;
        let metrics = &self.ctx.metrics;
        egress.release(now, &mut self.sends, |w| metrics.bwe_pacer_delay.observe(w.as_secs_f64()));
        egress.newly_queued = false;
        if egress.pacer.is_empty() && peer.connected {
            let p = self.participants.iter_mut().find(|p| p.subscriber == key)?;
            while egress.cc.bwe.poll_padding(now).is_some() {
                let carrier = p
                    .downtracks
                    .iter_mut()
                    .find(|d| d.kind == TrackKind::Video && d.negotiated && d.frame_end && d.payload_type.is_some());
                let Some(dt) = carrier else { break };
                let (Some(pt), Some((seq, ts))) = (dt.payload_type, dt.munger.reserve_padding()) else { break };
                let out = (pt, seq, ts, dt.ssrc);
                match egress.send_padding(out, PADDING_LEN, &mut dt.rollover, &mut self.sends, now) {
                    Ok(()) => {
                        dt.sent.on_sent(ts, 0, now);
                        metrics.bwe_padding_bytes.inc_by(u64::from(PADDING_LEN));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "probe padding not protected");
                        break;
                    }
                }
                if !egress.pacer.is_empty() {
                    break; // the padding itself had to wait
                }
            }
        }
        let paced = egress.pacer.poll_timeout();
        let probe = egress.cc.bwe.probing().then(|| {
            // a cluster with nothing to pad on still ends by its timeout: look again soon
            egress.cc.bwe.poll_timeout().unwrap_or(now + Duration::from_millis(5))
        });
        let due = match (paced, probe) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(due.max(now + Duration::from_micros(200)))
    }
}
