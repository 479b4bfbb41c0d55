//! The subscriber connection: answers the server's offers (renegotiation included), maps
//! each incoming stream to the remote track its mid carries, feeds packets to the per-track
//! analysis, and sends the feedback a browser would (keyframe requests, NACKs,
//! receiver reports: [`crate::reports`]).

use crate::recv::{RecvTrack, RtpView};
use crate::reports::{NackList, RR_INTERVAL, Reception, ReportPrior, report_block};
use crate::stats::TrackStats;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::RTCTrackEventInit;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{TransportLayerNack, nack_pairs_from_sequence_numbers};
use rtc::rtp_transceiver::RTCRtpReceiverId;
use signaling::protocol::{TrackKind, TrackRef};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Least time between two keyframe requests for one track.
const PLI_INTERVAL: Duration = Duration::from_millis(500);
/// SSRC this receive-only client puts in its RTCP (Chrome uses 1 as well).
const FEEDBACK_SSRC: u32 = 1;
/// Report blocks one receiver report holds (a 5-bit count).
const MAX_REPORT_BLOCKS: usize = 31;

/// Whether a stream whose first packet `rtc` decrypted with `first` can continue on the
/// engine's own SRTP context from a packet with `seq`. That context starts its rollover counter
/// at 0 with its first packet, like `rtc`'s did; the sender counts from its first packet too, so
/// the two agree unless the sequence number wrapped in between (a fresh context would then be
/// one rollover behind and fail every packet): such a stream stays on `rtc`'s path.
pub fn handover_ok(first: u16, seq: u16) -> bool {
    seq >= first && seq - first < 1 << 15
}

/// One inbound stream (SSRC) of the connection.
struct Inbound {
    ssrc: u32,
    /// Index into `tracks`.
    track: usize,
    receiver: RTCRtpReceiverId,
    last_pli: Option<Instant>,
    /// Video only (audio is offered without NACK feedback).
    nacks: Option<NackList>,
    /// Middle 32 bits of the latest sender report's NTP time and its arrival (UNIX µs).
    last_sr: Option<(u32, u64)>,
    prior: ReportPrior,
    /// Sequence number of the first packet `rtc` delivered.
    first_seq: u16,
    /// Whether the engine decrypts this stream itself: `None` until its first packet after
    /// the one `rtc` delivered decides it (see [`handover_ok`]).
    own_path: Option<bool>,
}

/// Reception state of one subscriber connection.
#[derive(Default)]
pub struct Subscriber {
    /// mid -> remote track, from the latest offer.
    mids: BTreeMap<String, TrackRef>,
    /// `rtc` track id -> (mid, receiver), from track-open events.
    receivers: Vec<(String, String, RTCRtpReceiverId)>,
    inbound: Vec<Inbound>,
    /// Keyframe requests to send: (receiver, media SSRC).
    plis: Vec<(RTCRtpReceiverId, u32)>,
    /// When the next receiver report is due (from the first packet on).
    next_report: Option<Instant>,
    /// Every track received so far.
    pub tracks: Vec<RecvTrack>,
    /// Packets that could not be mapped to a track.
    pub unmapped: u64,
    /// Transport-wide feedback (packets delivered through `rtc`'s pipeline only).
    pub twcc: crate::twcc::TwccRecorder,
}

impl Subscriber {
    /// Applies a server offer and returns the answer SDP to send back.
    pub fn on_offer(
        &mut self,
        pc: &mut RTCPeerConnection,
        sdp: String,
        tracks: BTreeMap<String, TrackRef>,
        now: Instant,
    ) -> Result<String, rtc::shared::error::Error> {
        let offer = RTCSessionDescription::offer(sdp)?;
        pc.set_remote_description(now, offer)?;
        let answer = pc.create_answer(None)?;
        pc.set_local_description(now, answer)?;
        if let Some(id) = pc.remote_description().and_then(|d| crate::twcc::ext_id_from_sdp(&d.sdp)) {
            self.twcc.ext_id = Some(id);
        }
        self.mids = tracks;
        // streams of tracks the offer no longer carries are gone (their stats stay)
        let (mids, all) = (&self.mids, &self.tracks);
        self.inbound.retain(|i| mids.get(&all[i.track].stats.mid).is_some_and(|t| t.track == all[i.track].stats.track));
        pc.local_description().map(|d| d.sdp).ok_or(rtc::shared::error::Error::ErrPeerConnLocalDescriptionNil)
    }

    /// Offers to receive one section of each of `kinds` (a WHEP player: the client offers).
    pub fn offer(
        &mut self,
        pc: &mut RTCPeerConnection,
        kinds: &[TrackKind],
        now: Instant,
    ) -> Result<String, rtc::shared::error::Error> {
        use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
        use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
        for kind in kinds {
            let kind = match kind {
                TrackKind::Audio => RtpCodecKind::Audio,
                TrackKind::Video => RtpCodecKind::Video,
            };
            let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
            pc.add_transceiver_from_kind(kind, Some(init))?;
        }
        let offer = pc.create_offer(None)?;
        pc.set_local_description(now, offer)?;
        pc.local_description().map(|d| d.sdp).ok_or(rtc::shared::error::Error::ErrPeerConnLocalDescriptionNil)
    }

    /// Applies the answer to [`Subscriber::offer`]; `tracks` names what arrives on each mid.
    pub fn on_answer(
        &mut self,
        pc: &mut RTCPeerConnection,
        sdp: String,
        tracks: BTreeMap<String, TrackRef>,
        now: Instant,
    ) -> Result<(), rtc::shared::error::Error> {
        pc.set_remote_description(now, RTCSessionDescription::answer(sdp)?)?;
        if let Some(id) = pc.remote_description().and_then(|d| crate::twcc::ext_id_from_sdp(&d.sdp)) {
            self.twcc.ext_id = Some(id);
        }
        self.mids = tracks;
        Ok(())
    }

    /// Remembers which mid a newly opened remote track arrives on.
    pub fn on_track_open(&mut self, pc: &mut RTCPeerConnection, init: &RTCTrackEventInit) {
        let mid = pc.rtp_transceiver(init.receiver_id.into()).and_then(|t| t.mid().clone());
        if let Some(mid) = mid {
            self.receivers.retain(|(t, _, _)| *t != init.track_id);
            self.receivers.push((init.track_id.clone(), mid, init.receiver_id));
        }
    }

    /// The stream whose packet (`ssrc`, sequence number `seq`) the engine decrypts itself and
    /// records with [`Subscriber::on_own_rtp`]: the connection delivered the stream's first
    /// packet (and opened its track), and no wrap of the sequence number lies between that
    /// packet and the first one taken over (see [`handover_ok`]). `None`: `rtc`'s path.
    pub fn own_stream(&mut self, ssrc: u32, seq: u16) -> Option<usize> {
        let slot = self.inbound.iter().position(|i| i.ssrc == ssrc)?;
        let i = &mut self.inbound[slot];
        i.own_path.get_or_insert_with(|| handover_ok(i.first_seq, seq)).then_some(slot)
    }

    /// Records one packet the connection delivered for its track `track_id`; true when
    /// feedback (a keyframe request or NACK) is due now.
    pub fn on_rtp(&mut self, track_id: &str, pkt: &rtc::rtp::Packet, at: Instant, arrival_us: u64) -> bool {
        self.twcc.on_packet(&pkt.header, at);
        let ssrc = pkt.header.ssrc;
        let slot = match self.inbound.iter().position(|i| i.ssrc == ssrc) {
            Some(i) => i,
            None => match self.resolve(track_id) {
                Some((track, receiver)) => {
                    let video = self.tracks[track].stats.kind == TrackKind::Video;
                    let nacks = video.then(NackList::default);
                    let first_seq = pkt.header.sequence_number;
                    self.inbound.push(Inbound {
                        ssrc,
                        track,
                        receiver,
                        last_pli: None,
                        nacks,
                        last_sr: None,
                        prior: ReportPrior::default(),
                        first_seq,
                        own_path: None,
                    });
                    self.inbound.len() - 1
                }
                None => {
                    self.unmapped += 1;
                    return false;
                }
            },
        };
        let view = RtpView {
            seq: pkt.header.sequence_number,
            ts: pkt.header.timestamp,
            marker: pkt.header.marker,
            payload: &pkt.payload,
        };
        self.record(slot, view, at, arrival_us)
    }

    /// Records one packet of `stream` (from [`Subscriber::own_stream`]), decrypted by the
    /// caller; true when feedback is due now.
    pub fn on_own_rtp(&mut self, stream: usize, view: RtpView<'_>, at: Instant, arrival_us: u64) -> bool {
        self.record(stream, view, at, arrival_us)
    }

    /// Counts a packet of `stream` (from [`Subscriber::own_stream`]) that failed SRTP.
    pub fn on_undecryptable(&mut self, stream: usize) {
        let track = self.inbound[stream].track;
        self.tracks[track].stats.srtp_errors += 1;
    }

    /// A video track still without a keyframe asks for one (at most every 500 ms), as a
    /// decoder would; a gap in a video stream is NACKed.
    fn record(&mut self, slot: usize, view: RtpView<'_>, at: Instant, arrival_us: u64) -> bool {
        let i = &mut self.inbound[slot];
        let track = &mut self.tracks[i.track];
        track.on_packet(view, arrival_us);
        let mut due = false;
        if track.awaiting_keyframe() && i.last_pli.is_none_or(|t| at.saturating_duration_since(t) >= PLI_INTERVAL) {
            i.last_pli = Some(at);
            track.stats.plis_sent += 1;
            self.plis.push((i.receiver, i.ssrc));
            due = true;
        }
        if let Some(n) = &mut i.nacks {
            due |= n.on_packet(view.seq, at);
        }
        self.next_report.get_or_insert(at + RR_INTERVAL);
        due
    }

    /// Records the sender reports among inbound RTCP (arrived at `arrival_us`, UNIX µs).
    pub fn on_rtcp(&mut self, pkts: &[Box<dyn rtc::rtcp::Packet>], arrival_us: u64) {
        use rtc::rtcp::sender_report::SenderReport;
        for p in pkts {
            let Some(sr) = p.as_any().downcast_ref::<SenderReport>() else { continue };
            if let Some(i) = self.inbound.iter_mut().find(|i| i.ssrc == sr.ssrc) {
                i.last_sr = Some(((sr.ntp_time >> 16) as u32, arrival_us));
                self.tracks[i.track].on_sender_report(sr.rtp_time, sr.packet_count, arrival_us);
            }
        }
    }

    /// When [`Subscriber::send_feedback`] has something to send next (a NACK retry or the
    /// receiver report).
    pub fn next_due(&self) -> Option<Instant> {
        let nacks = self.inbound.iter().filter_map(|i| i.nacks.as_ref()?.next_due()).min();
        let nacks = match (nacks, self.twcc.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (nacks, self.next_report) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Writes what is due at `now` (`now_us` in UNIX µs): the keyframe requests queued by
    /// [`Subscriber::record`], NACKs, and every [`RR_INTERVAL`] one receiver report with a
    /// block per stream.
    pub fn send_feedback(&mut self, pc: &mut RTCPeerConnection, now: Instant, now_us: u64) {
        for (receiver, ssrc) in self.plis.drain(..) {
            let pli = PictureLossIndication { sender_ssrc: FEEDBACK_SSRC, media_ssrc: ssrc };
            write(pc, receiver, Box::new(pli), now);
        }
        let mut seqs = Vec::new();
        for i in &mut self.inbound {
            let Some(n) = &mut i.nacks else { continue };
            seqs.clear();
            n.due(now, &mut seqs);
            if seqs.is_empty() {
                continue;
            }
            self.tracks[i.track].stats.nacks_sent += seqs.len() as u64;
            let nack = TransportLayerNack {
                sender_ssrc: FEEDBACK_SSRC,
                media_ssrc: i.ssrc,
                nacks: nack_pairs_from_sequence_numbers(&seqs),
            };
            write(pc, i.receiver, Box::new(nack), now);
        }
        if let Some(media_ssrc) = self.inbound.first().map(|i| i.ssrc)
            && let Some(fb) = self.twcc.build(now, FEEDBACK_SSRC, media_ssrc)
            && let Some(via) = self.inbound.iter().map(|i| i.receiver).find(|r| pc.rtp_receiver(*r).is_some())
        {
            write(pc, via, Box::new(fb), now);
        }
        if self.next_report.is_some_and(|t| t <= now) {
            self.next_report = Some(now + RR_INTERVAL);
            let mut reports = Vec::with_capacity(self.inbound.len());
            for i in &mut self.inbound {
                let t = &self.tracks[i.track];
                let Some(highest) = t.highest() else { continue };
                let r = Reception {
                    ssrc: i.ssrc,
                    highest,
                    lost: t.stats.lost,
                    jitter: t.jitter_units(),
                    last_sr: i.last_sr,
                };
                reports.push(report_block(&r, &mut i.prior, now_us));
            }
            // at most 31 blocks per report (RFC 3550 6.4.2); any live receiver carries them
            for chunk in reports.chunks(MAX_REPORT_BLOCKS) {
                let rr = ReceiverReport {
                    ssrc: FEEDBACK_SSRC,
                    reports: chunk.to_vec(),
                    profile_extensions: Default::default(),
                };
                let Some(via) = self.inbound.iter().map(|i| i.receiver).find(|r| pc.rtp_receiver(*r).is_some()) else {
                    break;
                };
                write(pc, via, Box::new(rr), now);
            }
        }
    }

    fn resolve(&mut self, track_id: &str) -> Option<(usize, RTCRtpReceiverId)> {
        let (_, mid, receiver) = self.receivers.iter().find(|(t, ..)| t == track_id)?;
        let tref = self.mids.get(mid)?;
        if let Some(i) = self.tracks.iter().position(|t| t.stats.track == tref.track) {
            return Some((i, *receiver));
        }
        self.tracks.push(RecvTrack::new(TrackStats::new(&tref.track, &tref.participant, tref.kind, mid)));
        Some((self.tracks.len() - 1, *receiver))
    }
}

/// Writes one RTCP packet through `receiver` (`rtc` protects it with the connection's SRTCP).
fn write(pc: &mut RTCPeerConnection, receiver: RTCRtpReceiverId, pkt: Box<dyn rtc::rtcp::Packet>, now: Instant) {
    if let Some(mut r) = pc.rtp_receiver(receiver)
        && let Err(e) = r.write_rtcp(now, vec![pkt])
    {
        tracing::debug!(error = %e, "cannot send RTCP");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn handover_only_without_a_wrap_in_between() {
        // columns: first seq through rtc, first seq on the own path, handed over
        let rows = [
            (100, 101, true),
            (100, 100, true),
            (65000, 65535, true),
            (65534, 1, false),
            (65535, 0, false),
            (100, 99, false),
            (0, 40000, false),
        ];
        for (first, seq, want) in rows {
            assert_eq!(super::handover_ok(first, seq), want, "{first} -> {seq}");
        }
    }
}
