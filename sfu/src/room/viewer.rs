//! Receive-only viewers (WHEP players). The player offers its sections and cannot take an
//! offer back, so the room answers with one sender of its own per offered audio and video
//! section (a fresh SSRC each, any codec both sides know) and binds the tracks of the
//! participant the viewer watches to those senders as they open: no renegotiation ever. A
//! track that goes away frees its sender for the next one of its kind.

use super::core::RoomCore;
use super::negotiate::{fresh_ssrc, new_downtrack};
use super::participant::Participant;
use super::peer::Role;
use super::sdp;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use signaling::protocol::{ErrorCode, ServerMessage, TrackKind};
use signaling::room::EventSender;
use std::time::Instant;

/// What a viewer receives.
#[derive(Debug)]
pub struct Viewer {
    /// Whom it watches, as asked: a participant id or display name (a publisher that comes
    /// back under the same name is watched again); `None`: whoever publishes first.
    pub asked: Option<String>,
    /// One sender per offered audio or video section.
    pub slots: Vec<Slot>,
}

impl Viewer {
    /// The publisher whose tracks it receives now, if any.
    pub fn watching(&self) -> Option<&str> {
        self.slots.iter().find_map(|s| s.bound.as_ref().map(|(_, publisher)| publisher.as_str()))
    }
}

/// A sender of a viewer's connection.
#[derive(Debug)]
pub struct Slot {
    /// Audio or video.
    pub kind: TrackKind,
    /// The sender.
    pub sender_id: RTCRtpSenderId,
    /// Its SSRC, kept whatever track it carries.
    pub ssrc: u32,
    /// The track bound to it, and that track's publisher.
    pub bound: Option<(String, String)>,
    /// What the SSRC's stream was when its last track went away, so the next one continues
    /// it: sequence numbers, timestamps, picture ids, the SRTP rollover counter and the sender
    /// report counts (a player sees one stream whose source changed, as at a layer switch).
    pub carry: Option<Box<Carry>>,
}

/// The outgoing stream state a slot keeps between tracks.
#[derive(Debug)]
pub struct Carry {
    munger: crate::forward::munger::RtpMunger,
    vp8: crate::forward::vp8::Vp8Munger,
    rollover: crate::forward::srtp::Rollover,
    sent: super::egress::SentStats,
}

/// The kinds of an offer's audio and video sections, in order.
pub fn offered_kinds(offer: &str) -> Vec<TrackKind> {
    offer
        .split("\nm=")
        .skip(1)
        .filter_map(|section| match section.split_whitespace().next() {
            Some("audio") => Some(TrackKind::Audio),
            Some("video") => Some(TrackKind::Video),
            _ => None,
        })
        .collect()
}

impl RoomCore {
    /// A viewer joins with its offer: answered (`answer`, or `error` and nothing joined),
    /// then the tracks it watches are bound.
    pub(super) fn join_viewer(
        &mut self,
        id: String,
        name: String,
        events: EventSender,
        offer: String,
        source: Option<String>,
        now: Instant,
    ) {
        let refuse = |code: ErrorCode, why: String| {
            let _ = events.try_send(ServerMessage::error(code, why));
        };
        if let Some(reason) = &self.admin.closed {
            let _ = events.try_send(ServerMessage::Removed { reason: reason.clone() });
            return;
        }
        if let Err(e) = sdp::check_offer(&offer) {
            return refuse(self.refused_offer(&e), e.to_string());
        }
        let kinds = offered_kinds(&offer);
        if kinds.is_empty() {
            return refuse(ErrorCode::BadSdp, "the offer has no audio or video section".into());
        }
        let desc = match RTCSessionDescription::offer(offer) {
            Ok(d) => d,
            Err(e) => return refuse(ErrorCode::BadSdp, format!("cannot parse the offer: {e}")),
        };
        let key = match self.add_peer(&id, Role::Subscriber, now) {
            Ok(k) => k,
            Err(e) => return refuse(ErrorCode::Internal, format!("cannot create connection: {e}")),
        };
        let result = (|| {
            let pc = &mut self.peers.get_mut(&key).expect("peer just added").pc;
            pc.set_remote_description(now, desc)?;
            let mut slots: Vec<Slot> = Vec::new();
            for (i, kind) in kinds.iter().enumerate() {
                let ssrc = fresh_ssrc(|s| slots.iter().any(|x| x.ssrc == s), rand::random);
                let rtc_kind = match kind {
                    TrackKind::Audio => RtpCodecKind::Audio,
                    TrackKind::Video => RtpCodecKind::Video,
                };
                // no codec named: the answer keeps every codec both sides know, and each
                // packet goes out with the payload type of its track's codec
                let encoding = RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                    active: true,
                    ..Default::default()
                };
                let mst = MediaStreamTrack::new(
                    id.clone(),
                    format!("{id}-{i}"),
                    format!("{kind:?}"),
                    rtc_kind,
                    vec![encoding],
                );
                let sender_id = pc.add_track(mst)?;
                slots.push(Slot { kind: *kind, sender_id, ssrc, bound: None, carry: None });
            }
            let answer = pc.create_answer(None)?;
            pc.set_local_description(now, answer)?;
            let sdp = pc
                .local_description()
                .map(|d| d.sdp)
                .ok_or(rtc::shared::error::Error::ErrPeerConnLocalDescriptionNil)?;
            Ok::<_, rtc::shared::error::Error>((sdp, slots))
        })();
        let (answer, slots) = match result {
            Ok(r) => r,
            Err(e) => {
                self.remove_peer(key);
                return refuse(ErrorCode::BadSdp, format!("cannot answer the offer: {e}"));
            }
        };
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.negotiated(now);
        }
        let mut participant = Participant::new(id.clone(), name, events, key, self.overflow.clone());
        // a player, not a member the others need to see
        participant.announced = false;
        participant.viewer = Some(Viewer { asked: source, slots });
        participant.send(ServerMessage::Answer { sdp: answer });
        self.push_participant(participant);
        let idx = self.participants.len() - 1;
        for t in 0..self.tracks.len() {
            self.bind_viewer(idx, t);
        }
        self.mark_queued(key);
        tracing::info!(room = %self.name, participant = %id, participants = self.participants.len(), "viewer joined room");
    }

    /// Binds track `tidx` to a free sender of viewer `sidx` when it is of the participant the
    /// viewer watches: while one is bound, that publisher; else the one it asked for (by id or
    /// name), or any.
    pub(super) fn bind_viewer(&mut self, sidx: usize, tidx: usize) {
        let track = &self.tracks[tidx];
        let publisher_name = self.participants.iter().find(|p| p.id == track.publisher).map(|p| p.name.clone());
        let p = &mut self.participants[sidx];
        let Some(viewer) = p.viewer.as_mut() else { return };
        if p.id == track.publisher {
            return;
        }
        let watched = match (viewer.watching(), &viewer.asked) {
            (Some(current), _) => current == track.publisher,
            (None, None) => true,
            (None, Some(s)) => *s == track.publisher || publisher_name.as_deref() == Some(s.as_str()),
        };
        if !watched || p.downtracks.iter().any(|d| d.track == track.id) {
            return;
        }
        let Some(slot) = viewer.slots.iter_mut().find(|s| s.kind == track.kind && s.bound.is_none()) else { return };
        slot.bound = Some((track.id.clone(), track.publisher.clone()));
        let mut downtrack = new_downtrack(track, slot.sender_id, slot.ssrc);
        if let Some(c) = slot.carry.take() {
            // the SSRC's stream goes on where the last track left it
            let c = *c;
            (downtrack.munger, downtrack.vp8, downtrack.rollover, downtrack.sent) =
                (c.munger, c.vp8, c.rollover, c.sent);
        }
        // the answer is applied: media may flow at once
        downtrack.negotiated = true;
        self.push_downtrack(sidx, downtrack);
        self.ctx.metrics.subscribed_tracks.inc();
    }

    /// Viewer `sidx` lost the downtracks `gone`: their senders are free for the next tracks of
    /// their kinds (no renegotiation: the SSRCs stay, and so does their streams' state).
    pub(super) fn free_viewer_slots(&mut self, sidx: usize, gone: Vec<super::track::DownTrack>) {
        let Some(viewer) = self.participants[sidx].viewer.as_mut() else { return };
        for d in gone {
            if let Some(slot) = viewer.slots.iter_mut().find(|s| s.ssrc == d.ssrc) {
                slot.bound = None;
                let mut munger = d.munger;
                // the next track starts with a switch that continues the numbering
                munger.end_source();
                slot.carry = Some(Box::new(Carry { munger, vp8: d.vp8, rollover: d.rollover, sent: d.sent }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_of_an_offers_sections() {
        // columns: sections, kinds
        let rows: Vec<(&str, Vec<TrackKind>)> = vec![
            (
                "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
                vec![TrackKind::Audio, TrackKind::Video],
            ),
            (
                "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
                vec![TrackKind::Video],
            ),
            ("v=0\r\n", vec![]),
        ];
        for (sdp, want) in rows {
            assert_eq!(offered_kinds(sdp), want, "{sdp:?}");
        }
    }
}
