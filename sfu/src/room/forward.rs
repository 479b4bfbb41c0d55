//! The media path of the room worker: publisher RTP fanned out to subscribers through the
//! selector and mungers, and RTCP feedback in both directions.

use super::peer::Role;
use super::egress::{Egress, EgressError};
use super::track::{CACHE_EXPIRE_PER_INSERT, CACHE_PACKETS, CachedPacket, Codec, DownTrack, SenderClock};
use super::worker::Room;
use crate::forward::h264;
use crate::forward::munger::SeqOrigin;
use crate::forward::selector::{Action, Layer, Wish};
use super::fanout::{Hint, WARM_AHEAD, settled_elsewhere, settled_on, warm_at};
use crate::forward::vp8;
use crate::udp::{PeerKey, SendBatch};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use signaling::protocol::{ServerMessage, TrackKind};
use std::time::Instant;

impl Room {
    pub(super) fn on_peer_message(&mut self, key: PeerKey, role: Role, msg: TaggedRTCMessage) {
        match (role, msg.message) {
            (Role::Publisher, RTCMessage::RtpPacket(track_id, pkt)) => {
                self.forward_rtp(key, &track_id, pkt, msg.now, Instant::now())
            }
            (Role::Publisher, RTCMessage::RtcpPacket(_, pkts)) => {
                for p in pkts {
                    if let Some(sr) = p.as_any().downcast_ref::<SenderReport>() {
                        self.on_sender_report(sr);
                    }
                }
            }
            (Role::Subscriber, RTCMessage::RtcpPacket(track_id, pkts)) => {
                self.on_subscriber_rtcp(key, &track_id, &pkts, Instant::now())
            }
            _ => {}
        }
    }

    fn on_sender_report(&mut self, sr: &SenderReport) {
        for t in &mut self.tracks {
            for layer in t.layers.iter_mut().flatten() {
                if layer.ssrc == sr.ssrc {
                    layer.clock = Some(SenderClock { ntp: sr.ntp_time, rtp: sr.rtp_time });
                    return;
                }
            }
        }
    }

    fn on_subscriber_rtcp(
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
            } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                self.plane.metrics.nacks_received.inc();
                // once its allowance is spent the rest of the list is only counted, not looked
                // up: a storm of NACKs from overloaded receivers stays cheap
                let mut refused = 0u64;
                for pair in &nack.nacks {
                    for out_seq in pair.packet_list() {
                        if refused > 0 || !self.retransmit(sidx, track_id, out_seq, now) {
                            refused += 1;
                        }
                    }
                }
                if refused > 0 {
                    self.plane.metrics.count_drop_n("nack_rate_limited", refused);
                }
            }
        }
        if !keyframe {
            return;
        }
        let layer = self.participants[sidx]
            .downtracks
            .iter()
            .find(|d| d.track == track_id)
            .and_then(|d| d.selector.current());
        if let Some(layer) = layer {
            self.request_keyframe(track_id, layer, now);
        }
    }

    /// Resends one packet a subscriber reported lost: the outgoing sequence number is mapped
    /// back through the munger to the publisher layer's cache, then rewritten again. Every
    /// request uses one of the downtrack's retransmission allowance, answerable or not (a
    /// lookup is work too), before any lookup; false when it is spent.
    fn retransmit(&mut self, sidx: usize, track_id: &str, out_seq: u16, now: Instant) -> bool {
        let metrics = &self.plane.metrics;
        let p = &mut self.participants[sidx];
        let Some(dt) = p.downtracks.iter_mut().find(|d| d.track == track_id) else { return true };
        if !dt.retransmit_budget.take() {
            return false;
        }
        let (Some(layer), Some(pt)) = (dt.selector.current(), dt.payload_type) else { return true };
        let Some(SeqOrigin::Current(in_seq)) = dt.munger.out_to_in(out_seq) else {
            metrics.count_drop("nack_unmapped");
            return true;
        };
        let Some(track) = self.tracks.iter().find(|t| t.id == track_id) else { return true };
        let Some(cached) = track.layers[layer.index()].as_ref().and_then(|l| l.cache.get(in_seq)) else {
            metrics.count_drop("nack_not_cached");
            return true;
        };
        if cached.expired(now) {
            metrics.count_drop("nack_too_old");
            return true;
        }
        let desc = if track.codec == Codec::Vp8 {
            let Ok(desc) = vp8::parse(&cached.payload) else { return true };
            Some(desc)
        } else {
            None
        };
        let Some(egress) = self.peers.get_mut(&p.subscriber).and_then(|peer| peer.egress.as_mut()) else { return true };
        let fields = (cached.marker, pt, out_seq, cached.ts.wrapping_add(dt.ts_offset));
        match send_copy(egress, dt, fields, &cached.payload, desc.as_ref(), &mut self.sends, now) {
            Ok(Some(_)) => metrics.rtp_retransmitted.inc(),
            Ok(None) => {}
            Err(e) => {
                metrics.count_drop("srtp_protect_failed");
                tracing::debug!(error = %e, "retransmission not protected");
            }
        }
        true
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
        let slice = self.report_slice % super::worker::REPORT_SLICES;
        self.report_slice = self.report_slice.wrapping_add(1);
        let ntp = super::egress::ntp_now();
        let slices = super::worker::REPORT_SLICES as usize;
        for p in self.participants.iter().skip(slice as usize).step_by(slices) {
            let Some(egress) = self.peers.get_mut(&p.subscriber).and_then(|peer| peer.egress.as_mut()) else { continue };
            for dt in &p.downtracks {
                let Some(sr) = dt.sent.report(dt.ssrc, now, ntp, dt.clock_rate) else { continue };
                match egress.send_rtcp(&sr, &mut self.sends) {
                    Ok(()) => self.plane.metrics.sender_reports.inc(),
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
                self.plane.metrics.plis_sent.inc();
                self.mark_dirty(key);
            }
        }
    }

    /// Fans one publisher packet out to every subscriber of its track.
    fn forward_rtp(&mut self, key: PeerKey, rtc_track_id: &str, pkt: rtc::rtp::Packet, arrived: Instant, now: Instant) {
        if std::mem::take(&mut self.fanout_stale) {
            self.rebuild_fanout();
        }
        #[cfg(debug_assertions)]
        self.check_fanout();
        let metrics = &self.plane.metrics;
        metrics.rtp_in_packets.inc();
        let Some(tidx) = self.tracks.iter().position(|t| t.peer == key && t.rtc_track_id == rtc_track_id) else {
            metrics.count_drop("unknown_track");
            return;
        };
        let ssrc = pkt.header.ssrc;
        let track = &mut self.tracks[tidx];
        let layer = match track.layer_of(ssrc) {
            Some(l) => l,
            None => {
                // first packet of a layer before its OnOpen: ask the receiver for its rid
                let rid = self
                    .peers
                    .get_mut(&key)
                    .and_then(|p| p.pc.rtp_receiver(track.receiver_id))
                    .and_then(|r| r.track().rid(ssrc).cloned());
                let l = track.layer_for_rid(rid.as_deref());
                track.layers[l.index()] = Some(super::track::LayerIn::new(ssrc));
                l
            }
        };
        let layer_in = track.layers[layer.index()].as_mut().expect("layer just ensured");
        let seq = layer_in.seq.unwrap(pkt.header.sequence_number);
        let ts = layer_in.ts.unwrap(pkt.header.timestamp);

        if pkt.payload.is_empty() {
            // padding-only (bandwidth probing): never forwarded, and no gap for subscribers
            for s in &track.fanout {
                let dt = self.participants.get_mut(s.participant as usize).and_then(|p| p.downtracks.get_mut(s.downtrack as usize));
                if let Some(dt) = dt.filter(|d| d.track_key == track.key) {
                    if dt.selector.current() == Some(layer) {
                        dt.munger.drop_packet(seq);
                    }
                }
            }
            metrics.count_drop("padding_only");
            return;
        }

        if let Some(l) = track.layers[layer.index()].as_mut() {
            let cached = CachedPacket { ts: pkt.header.timestamp, marker: pkt.header.marker, payload: pkt.payload.clone(), at: now };
            l.cache.insert(seq, cached);
            l.expire_cache(now, CACHE_EXPIRE_PER_INSERT);
        }

        let (keyframe, desc) = match track.codec {
            Codec::Vp8 => match vp8::parse(&pkt.payload) {
                Ok(d) => {
                    if d.is_keyframe {
                        if let Some((w, h)) = vp8::keyframe_size(&pkt.payload, &d) {
                            track.activity.set_size(layer, u32::from(w), u32::from(h));
                        }
                    }
                    (d.is_keyframe, Some(d))
                }
                Err(_) => {
                    metrics.count_drop("bad_vp8");
                    return;
                }
            },
            Codec::H264 => (h264::is_keyframe(&pkt.payload), None),
            Codec::Opus | Codec::Other => (true, None),
        };
        track.activity.on_packet(layer, now);
        let is_video = track.kind == TrackKind::Video;
        let clock_rate = track.rtc_codec.clock_rate;
        let mut want_keyframe: Option<Layer> = None;
        // A muted track (admin API) is handled like a pause: nothing forwarded, and unmuting
        // restarts at a keyframe.
        let muted = self.admin.is_muted(&track.id);

        let mut forwarded = 0u64;
        // taken out so the loop can borrow the rest of the track; put back after it (the loop
        // has no early return)
        let mut subscribers = std::mem::take(&mut track.fanout);
        let mut hints = std::mem::take(&mut track.hints);
        let activity = &track.activity;
        let skips = |s: &super::fanout::Subscriber| is_video && settled_elsewhere(s.settled, layer, activity, now);
        // the state of a visit is fetched into the cache two visits ahead (`fanout::warm`)
        for j in 0..WARM_AHEAD {
            warm_at(&self.participants, &subscribers, &hints, j, skips);
        }
        for i in 0..subscribers.len() {
            warm_at(&self.participants, &subscribers, &hints, i + WARM_AHEAD, skips);
            let s = &mut subscribers[i];
            if skips(s) {
                // a packet of another layer than the one it settled on: nothing to decide, and
                // neither its downtrack nor its connection is touched (most packets at a low
                // layer: q subscribers see h and f packets too)
                continue;
            }
            let Some(p) = self.participants.get_mut(s.participant as usize) else {
                self.fanout_stale = true; // cannot happen: every change marks the lists stale
                continue;
            };
            let events = &p.events;
            let Some(dt) = p.downtracks.get_mut(s.downtrack as usize).filter(|d| d.track_key == track.key) else {
                self.fanout_stale = true;
                continue;
            };
            // one lookup of the subscriber's connection per packet
            let Some(peer) = self.peers.get_mut(&p.subscriber).filter(|peer| peer.connected) else { continue };
            if let (Some(egress), Some(h)) = (&peer.egress, hints.get_mut(i)) {
                *h = Hint::of(dt, peer, egress);
            }
            // media flows once the connection has its SRTP output
            let (pc, Some(egress)) = (&mut peer.pc, peer.egress.as_mut()) else { continue };
            if !dt.negotiated {
                continue; // selection starts once media can flow, so the first packet is a keyframe
            }
            let action = if is_video {
                let wish = Wish { paused: dt.wish.paused || muted, ..dt.wish };
                dt.selector.update_target(&wish, &track.activity, now);
                let a = dt.selector.on_packet(layer, keyframe);
                s.settled = settled_on(&dt.selector);
                if let Some(l) = dt.selector.wants_keyframe() {
                    want_keyframe = Some(want_keyframe.map_or(l, |w| w.max(l)));
                }
                a
            } else if dt.wish.paused || muted {
                Action::Drop
            } else if dt.munger.last_out_seq().is_none() {
                Action::Switch { from: None, to: layer }
            } else {
                Action::Forward
            };
            match action {
                Action::Drop => {
                    if dt.selector.current() == Some(layer) || !is_video {
                        dt.munger.drop_packet(seq);
                    }
                    continue;
                }
                Action::Switch { from, to } => {
                    let hint = match (from, dt.last_in_ts, dt.munger.last_out_ts()) {
                        (Some(f), Some(last_in), Some(last_out)) => {
                            let old = track.layers[f.index()].as_ref().and_then(|l| l.clock);
                            let new = track.layers[to.index()].as_ref().and_then(|l| l.clock);
                            match (old, new) {
                                (Some(o), Some(n)) => align_advance(o, n, pkt.header.timestamp, last_in as u32, clock_rate)
                                    .map(|adv| last_out + u64::from(adv)),
                                _ => None,
                            }
                        }
                        _ => None,
                    };
                    dt.munger.switch_source(seq, ts, hint, now);
                    dt.vp8.switch_source();
                    if is_video {
                        metrics.layer_switches.inc();
                    }
                    tracing::debug!(subscriber = %p.id, track = %dt.track, ?from, ?to, sr_aligned = hint.is_some(), "layer switch");
                }
                Action::Forward => {}
            }
            if dt.announced != dt.selector.current() {
                dt.announced = dt.selector.current();
                let layer = dt.announced.map(|l| track.rid_name(l));
                let msg = ServerMessage::LayerChanged { track: dt.track.clone(), layer };
                super::participant::queue(events, &p.overflowed, &p.room_overflow, &p.id, msg);
            }
            let Some((out_seq, out_ts)) = dt.munger.forward(seq, ts, now) else {
                metrics.count_drop("munger_rejected");
                continue;
            };
            let pt = match dt.payload_type {
                Some(pt) => pt,
                None => {
                    let Some(mut sender) = pc.rtp_sender(dt.sender_id) else { continue };
                    let found = sender
                        .get_parameters()
                        .rtp_parameters
                        .codecs
                        .iter()
                        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&track.rtc_codec.mime_type))
                        .map(|c| c.payload_type);
                    match found {
                        Some(pt) => {
                            dt.payload_type = Some(pt);
                            pt
                        }
                        None => {
                            metrics.count_drop("not_negotiated");
                            continue;
                        }
                    }
                }
            };
            let fields = (pkt.header.marker, pt, out_seq, out_ts);
            match send_copy(egress, dt, fields, &pkt.payload, desc.as_ref(), &mut self.sends, now) {
                Ok(Some(_)) => {
                    dt.last_in_ts = Some(ts);
                    dt.ts_offset = out_ts.wrapping_sub(pkt.header.timestamp);
                    dt.retransmit_budget.on_forwarded();
                    forwarded += 1;
                }
                Ok(None) => metrics.count_drop("bad_vp8"),
                Err(e) => {
                    metrics.count_drop("srtp_protect_failed");
                    tracing::debug!(error = %e, "forwarded packet not protected");
                }
            }
        }
        self.tracks[tidx].fanout = subscribers;
        self.tracks[tidx].hints = hints;
        metrics.rtp_forwarded.inc_by(forwarded);
        if forwarded > 0 {
            // observed once its copies left (see `flush`)
            self.forwarded_arrivals.push(arrived);
        }
        if let Some(l) = want_keyframe {
            let id = self.tracks[tidx].id.clone();
            self.request_keyframe(&id, l, now);
        }
    }
}

/// One copy of a packet to a subscriber: a fresh header from `(marker, payload type, seq,
/// timestamp)` (no CSRCs and no header extensions: their ids are the publisher connection's),
/// the VP8 descriptor rewritten through the downtrack's munger, protected and queued, and
/// counted for its sender reports. `Ok(None)`: the VP8 payload could not be rewritten.
fn send_copy(
    egress: &mut Egress,
    dt: &mut DownTrack,
    (marker, payload_type, sequence_number, timestamp): (bool, u8, u16, u32),
    payload: &[u8],
    desc: Option<&vp8::Vp8Descriptor>,
    sends: &mut SendBatch,
    now: Instant,
) -> Result<Option<usize>, EgressError> {
    let header = rtc::rtp::Header { version: 2, marker, payload_type, sequence_number, timestamp, ssrc: dt.ssrc, ..Default::default() };
    let vp8 = &mut dt.vp8;
    let rewrite = |b: &mut [u8]| match desc {
        Some(d) => vp8::write(b, d, &vp8.munge(d)).is_ok(),
        None => true,
    };
    let sent = egress.send_rtp(&header, payload, rewrite, &mut dt.rollover, sends)?;
    if let Some(len) = sent {
        dt.sent.on_sent(timestamp, len, now);
    }
    Ok(sent)
}

fn ntp_seconds(ntp: u64) -> f64 {
    (ntp >> 32) as f64 + (ntp & 0xffff_ffff) as f64 / 4_294_967_296.0
}

/// How far (in RTP ticks) the first packet of a new layer lies after the last forwarded packet
/// of the old layer, from both layers' sender reports: the new packet's capture time expressed
/// on the old layer's clock. `None` when implausible (not 0-5 s after the last packet).
pub fn align_advance(
    old: SenderClock,
    new: SenderClock,
    new_ts: u32,
    last_in_old: u32,
    clock_rate: u32,
) -> Option<u32> {
    let rate = clock_rate as f64;
    let capture = ntp_seconds(new.ntp) + (new_ts.wrapping_sub(new.rtp) as i32) as f64 / rate;
    let on_old_clock = old.rtp.wrapping_add(((capture - ntp_seconds(old.ntp)) * rate).round() as i64 as u32);
    let advance = on_old_clock.wrapping_sub(last_in_old) as i32;
    if advance <= 0 || advance as f64 > 5.0 * rate {
        return None;
    }
    Some(advance as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ntp(secs: f64) -> u64 {
        ((secs.trunc() as u64) << 32) | ((secs.fract() * 4_294_967_296.0) as u64)
    }

    #[test]
    fn sender_report_alignment() {
        // old layer: ts 1000 at t=100 s; new layer: ts 4_294_960_000 at t=100 s (wraps soon)
        let old = SenderClock { ntp: ntp(100.0), rtp: 1000 };
        let new = SenderClock { ntp: ntp(100.0), rtp: 4_294_960_000 };
        // columns: new_ts, last_in_old, expected advance
        let rows: &[(u32, u32, Option<u32>)] = &[
            // new packet 50 ms after the SR (4500 ticks), last old packet at the SR instant
            (4_294_964_500, 1000, Some(4500)),
            // across the 32-bit wrap of the new layer: 100 ms after the SR
            (4_294_960_000u32.wrapping_add(9000), 1000, Some(9000)),
            // last old packet 20 ms after the SR: advance shrinks
            (4_294_964_500, 2800, Some(2700)),
            // old layer's clock across its own wrap
            (4_294_964_500, 1000u32.wrapping_sub(1800), Some(6300)),
            // new packet older than the last forwarded one: implausible
            (4_294_960_000, 5000, None),
            // 10 s jump: implausible
            (4_294_960_000u32.wrapping_add(900_000), 1000, None),
        ];
        for &(new_ts, last_in, want) in rows {
            assert_eq!(align_advance(old, new, new_ts, last_in, 90_000), want, "new_ts {new_ts}");
        }
    }
}
