//! The subscriber connection: answers the server's offers (renegotiation included), maps
//! each incoming stream to the remote track its mid carries, and feeds packets to the
//! per-track analysis.

use crate::recv::{RecvTrack, RtpView};
use crate::stats::TrackStats;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::RTCTrackEventInit;
use rtc::peer_connection::sdp::RTCSessionDescription;
use signaling::protocol::TrackRef;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Least time between two keyframe requests for one track.
const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// Reception state of one subscriber connection.
#[derive(Default)]
pub struct Subscriber {
    /// mid -> remote track, from the latest offer.
    mids: BTreeMap<String, TrackRef>,
    /// `rtc` track id -> (mid, receiver), from track-open events.
    receivers: Vec<(String, String, RTCRtpReceiverId)>,
    /// SSRC -> (index into `tracks`, receiver, last keyframe request).
    by_ssrc: Vec<(u32, usize, RTCRtpReceiverId, Option<Instant>)>,
    /// Keyframe requests to send: (receiver, media SSRC).
    plis: Vec<(RTCRtpReceiverId, u32)>,
    /// Every track received so far.
    pub tracks: Vec<RecvTrack>,
    /// Packets that could not be mapped to a track.
    pub unmapped: u64,
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
        self.mids = tracks;
        pc.local_description().map(|d| d.sdp).ok_or(rtc::shared::error::Error::ErrPeerConnLocalDescriptionNil)
    }

    /// Remembers which mid a newly opened remote track arrives on.
    pub fn on_track_open(&mut self, pc: &mut RTCPeerConnection, init: &RTCTrackEventInit) {
        let mid = pc.rtp_transceiver(init.receiver_id.into()).and_then(|t| t.mid().clone());
        if let Some(mid) = mid {
            self.receivers.retain(|(t, _, _)| *t != init.track_id);
            self.receivers.push((init.track_id.clone(), mid, init.receiver_id));
        }
    }

    /// Records one received packet; a video track still without a keyframe asks for one
    /// (at most every 500 ms), as a decoder would.
    pub fn on_rtp(&mut self, track_id: &str, pkt: &rtc::rtp::Packet, at: Instant, arrival_us: u64) {
        let ssrc = pkt.header.ssrc;
        let slot = match self.by_ssrc.iter().position(|(s, ..)| *s == ssrc) {
            Some(i) => i,
            None => match self.resolve(track_id) {
                Some((i, receiver)) => {
                    self.by_ssrc.push((ssrc, i, receiver, None));
                    self.by_ssrc.len() - 1
                }
                None => {
                    self.unmapped += 1;
                    return;
                }
            },
        };
        let (_, idx, receiver, last_pli) = &mut self.by_ssrc[slot];
        let view = RtpView {
            seq: pkt.header.sequence_number,
            ts: pkt.header.timestamp,
            marker: pkt.header.marker,
            payload: &pkt.payload,
        };
        let track = &mut self.tracks[*idx];
        track.on_packet(view, arrival_us);
        if track.awaiting_keyframe() && last_pli.is_none_or(|t| at.saturating_duration_since(t) >= PLI_INTERVAL) {
            *last_pli = Some(at);
            track.stats.plis_sent += 1;
            self.plis.push((*receiver, ssrc));
        }
    }

    /// Records the sender reports among inbound RTCP (arrived at `arrival_us`, UNIX µs).
    pub fn on_rtcp(&mut self, pkts: &[Box<dyn rtc::rtcp::Packet>], arrival_us: u64) {
        use rtc::rtcp::sender_report::SenderReport;
        for p in pkts {
            let Some(sr) = p.as_any().downcast_ref::<SenderReport>() else { continue };
            if let Some((_, idx, ..)) = self.by_ssrc.iter().find(|(s, ..)| *s == sr.ssrc) {
                self.tracks[*idx].on_sender_report(sr.rtp_time, sr.packet_count, arrival_us);
            }
        }
    }

    /// Writes the keyframe requests queued by [`Subscriber::on_rtp`].
    pub fn send_plis(&mut self, pc: &mut RTCPeerConnection, now: Instant) {
        for (receiver, ssrc) in self.plis.drain(..) {
            if let Some(mut r) = pc.rtp_receiver(receiver) {
                let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc: ssrc };
                if let Err(e) = r.write_rtcp(now, vec![Box::new(pli)]) {
                    tracing::debug!(error = %e, "cannot send PLI");
                }
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
