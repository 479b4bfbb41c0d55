//! RTCP of the room: sender reports from publishers (layer clocks), NACKs and keyframe
//! requests from subscribers (retransmissions from the cache, PLIs to publishers), and the
//! sender reports the room sends to subscribers.

use super::core::RoomCore;
use super::media_path::send_copy;
use super::track::{CACHE_PACKETS, Codec, SenderClock};
use crate::drop_reason::DropReason;
use crate::forward::munger::SeqOrigin;
use crate::forward::selector::Layer;
use crate::forward::vp8;
use crate::udp::PeerKey;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use std::time::Instant;

impl RoomCore {
    /// A publisher's sender report: the clock of the layer it describes (only that
    /// publisher's tracks: another connection may use the same SSRC).
    pub(super) fn on_sender_report(&mut self, key: PeerKey, sr: &SenderReport) {
        for t in self.tracks.iter_mut().filter(|t| t.peer == key) {
            for layer in t.layers.iter_mut().flatten() {
                if layer.ssrc == sr.ssrc {
                    layer.clock = Some(SenderClock { ntp: sr.ntp_time, rtp: sr.rtp_time });
                    return;
                }
            }
        }
    }

    pub(super) fn on_subscriber_rtcp(
        &mut self,
        key: PeerKey,
        track_id: &str,
        pkts: &[Box<dyn rtc::rtcp::Packet>],
        now: Instant,
    ) {
        let Some(sidx) = self.peers.get(&key).and_then(|p| self.participant_index(&p.owner)) else { return };
        let mut keyframe = false;
        for p in pkts {
            let any = p.as_any();
            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                keyframe = true;
            } else if let Some(tcc) = any.downcast_ref::<TransportLayerCc>() {
                self.on_transport_feedback(key, sidx, tcc, now);
            } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                self.ctx.metrics.nacks_received.inc();
                // once its allowance is spent the rest of the list is only counted, not looked
                // up: a storm of NACKs from overloaded receivers stays cheap
                let mut refused = 0u64;
                for pair in &nack.nacks {
                    for out_seq in pair.packet_list() {
                        if refused > 0 {
                            refused += 1;
                            continue;
                        }
                        match self.retransmit(sidx, track_id, out_seq, now) {
                            Resend::Handled => {}
                            Resend::Refused => refused += 1,
                            // the frame it belongs to cannot be completed: without a keyframe
                            // the receiver waits for one it asks for itself (Chrome: ~3 s)
                            Resend::Missing => keyframe = true,
                        }
                    }
                }
                if refused > 0 {
                    self.ctx.metrics.count_drop_n(DropReason::NackRateLimited, refused);
                }
            }
        }
        if !keyframe {
            return;
        }
        let layer =
            self.participants[sidx].downtracks.iter().find(|d| d.track == track_id).and_then(|d| d.selector.current());
        if let Some(layer) = layer {
            self.request_keyframe(track_id, layer, now);
        }
    }

    /// A subscriber's transport-wide feedback: the connection's estimate is updated and
    /// shared among its downtracks anew.
    fn on_transport_feedback(&mut self, key: PeerKey, sidx: usize, tcc: &TransportLayerCc, now: Instant) {
        let Some(egress) = self.peers.get_mut(&key).and_then(|p| p.egress.as_mut()) else { return };
        self.ctx.metrics.bwe_feedback.inc();
        if !egress.cc.on_twcc(tcc, now) {
            self.ctx.metrics.bwe_feedback_malformed.inc();
            return;
        }
        self.allocate_bandwidth(sidx, now);
    }

    /// Resends one packet a subscriber reported lost: the outgoing sequence number is mapped
    /// back through the munger to the publisher layer's cache, then rewritten again. Every
    /// request uses one of the downtrack's retransmission allowance, answerable or not (a
    /// lookup is work too), before any lookup.
    fn retransmit(&mut self, sidx: usize, track_id: &str, out_seq: u16, now: Instant) -> Resend {
        let metrics = &self.ctx.metrics;
        let p = &mut self.participants[sidx];
        let Some(dt) = p.downtracks.iter_mut().find(|d| d.track == track_id) else { return Resend::Handled };
        if !dt.retransmit_budget.take() {
            return Resend::Refused;
        }
        let (Some(layer), Some(pt)) = (dt.selector.current(), dt.payload_type) else { return Resend::Handled };
        let Some(SeqOrigin::Current(in_seq)) = dt.munger.out_to_in(out_seq) else {
            metrics.count_drop(DropReason::NackUnmapped);
            return Resend::Handled;
        };
        let Some(track) = self.tracks.iter().find(|t| t.id == track_id) else { return Resend::Handled };
        let Some(cached) = track.layers[layer.index()].as_ref().and_then(|l| l.cache.get(in_seq)) else {
            // never reached the server (lost on the publisher's uplink), or long forgotten
            metrics.count_drop(DropReason::NackNotCached);
            return Resend::Missing;
        };
        if cached.expired(now) {
            metrics.count_drop(DropReason::NackTooOld);
            return Resend::Handled;
        }
        let desc = if track.codec == Codec::Vp8 {
            let Ok(desc) = vp8::parse(&cached.payload) else { return Resend::Handled };
            Some(desc)
        } else {
            None
        };
        let Some(egress) = self.peers.get_mut(&p.subscriber).and_then(|peer| peer.egress.as_mut()) else {
            return Resend::Handled;
        };
        let fields = (cached.marker, pt, out_seq, cached.ts.wrapping_add(dt.ts_offset));
        let sent = send_copy(egress, dt, fields, &cached.payload, desc.as_ref(), &mut self.sends, now);
        let queued = std::mem::take(&mut egress.newly_queued).then_some(p.subscriber);
        if let Some(key) = queued {
            self.schedule(key, now);
        }
        let metrics = &self.ctx.metrics;
        match sent {
            Ok(Some(_)) => metrics.rtp_retransmitted.inc(),
            Ok(None) => {}
            Err(e) => {
                metrics.count_drop(DropReason::SrtpProtectFailed);
                tracing::debug!(error = %e, "retransmission not protected");
            }
        }
        Resend::Handled
    }

    /// Forgets expired packets of layers that receive few or none (a paused or stopped
    /// layer is not expired by inserts); runs with the sender reports, ten times a second.
    /// Costs one look per live layer: the walk stops at its first packet younger than the age.
    pub(super) fn expire_caches(&mut self, now: Instant) {
        for layer in self.tracks.iter_mut().flat_map(|t| t.layers.iter_mut().flatten()) {
            layer.expire_cache(now, CACHE_PACKETS);
        }
    }

    /// Sends the sender reports of one slice of the participants (see `REPORT_SLICES`): each
    /// downtrack that sent media reports once per `SR_INTERVAL`, protected by the subscriber
    /// connection's own context like its RTP.
    pub(super) fn send_sender_reports(&mut self, now: Instant) {
        let slice = self.report_slice % super::core::REPORT_SLICES;
        self.report_slice = self.report_slice.wrapping_add(1);
        let ntp = self.ntp_at(now);
        let slices = super::core::REPORT_SLICES as usize;
        for p in self.participants.iter().skip(slice as usize).step_by(slices) {
            let Some(egress) = self.peers.get_mut(&p.subscriber).and_then(|peer| peer.egress.as_mut()) else {
                continue;
            };
            for dt in &p.downtracks {
                let Some(sr) = dt.sent.report(dt.ssrc, now, ntp, dt.clock_rate) else { continue };
                match egress.send_rtcp(&sr, &mut self.sends) {
                    Ok(()) => self.ctx.metrics.sender_reports.inc(),
                    Err(e) => tracing::debug!(error = %e, "sender report not protected"),
                }
            }
        }
    }

    /// Asks the publisher of `track` for a keyframe on `layer`, at most every 500 ms per layer.
    pub(super) fn request_keyframe(&mut self, track: &str, layer: Layer, now: Instant) {
        let Some(t) = self.tracks.iter_mut().find(|t| t.id == track) else { return };
        let Some(ssrc) = t.layers[layer.index()].as_ref().map(|l| l.ssrc) else { return };
        if !t.pli.allow(layer, now) {
            return;
        }
        let Some(pidx) = self.participants.iter().position(|p| p.id == t.publisher) else { return };
        let Some(key) = self.participants[pidx].publisher else { return };
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if let Some(mut receiver) = peer.pc.rtp_receiver(t.receiver_id) {
            let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc: ssrc };
            if receiver.write_rtcp(now, vec![Box::new(pli)]).is_ok() {
                self.ctx.metrics.plis_sent.inc();
                self.mark_queued(key);
            }
        }
    }
}

/// What became of one packet a subscriber asked for again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Resent, or nothing to resend (unmapped, expired, a connection without output).
    Handled,
    /// The downtrack's retransmission allowance is spent.
    Refused,
    /// Not in the layer's cache: it never reached the server, so no retransmission repairs
    /// the frame it belongs to.
    Missing,
}
