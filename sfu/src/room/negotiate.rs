//! Membership and SDP: joining, leaving, publishing, and keeping every subscriber
//! connection's offer in step with the room's tracks.

use super::core::RoomCore;
use super::participant::Participant;
use super::peer::{MAX_CANDIDATES, Role};
use super::sdp::{self, OfferError};
use super::track::{CACHE_PACKETS, Codec, DownTrack, LayerIn, PublishedTrack};
use crate::forward::cache::PacketCache;
use crate::forward::munger::RtpMunger;
use crate::forward::selector::{Layer, LayerActivity, LayerSelector, PliThrottle, Wish};
use crate::forward::seq::{SeqUnwrapper, TsUnwrapper};
use crate::forward::vp8::Vp8Munger;
use crate::metrics::Limit;
use crate::udp::PeerKey;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::RTCTrackEventInit;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use signaling::protocol::{
    ErrorCode, IceCandidate, PcTarget, ServerMessage, SubscriptionRequest, TrackKind, TrackRef, TrackSource,
};
use signaling::room::EventSender;
use std::collections::BTreeMap;
use std::time::Instant;

/// Tracks one participant may publish (as many as an offer may have media sections).
const MAX_TRACKS: usize = sdp::MAX_MEDIA_SECTIONS;

fn new_track_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let tail: String = (0..12).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("TR_{tail}")
}

impl RoomCore {
    pub(super) fn join(&mut self, id: String, name: String, events: EventSender, subscribe: bool, now: Instant) {
        let subscriber = match self.add_peer(&id, Role::Subscriber, now) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(room = %self.name, error = %e, "cannot create subscriber connection");
                let _ = events.try_send(ServerMessage::error(ErrorCode::Internal, "cannot create connection"));
                return;
            }
        };
        let mut participant = Participant::new(id.clone(), name, events, subscriber, self.overflow.clone());
        participant.subscribe = subscribe;
        participant.announced = announce_on_join(self.participants.len(), self.ctx.quiet_viewers_above);
        let others =
            self.participants.iter().filter(|p| p.announced).map(|p| p.info(self.track_infos(&p.id))).collect();
        participant.send(ServerMessage::Joined {
            protocol: signaling::protocol::PROTOCOL_VERSION,
            room: self.name.clone(),
            participant: participant.info(Vec::new()),
            participants: others,
            ice_servers: Vec::new(),
        });
        if let Some(speakers) = self.speakers_for_newcomer() {
            participant.send(speakers);
        }
        if participant.announced {
            self.broadcast(&id, &ServerMessage::ParticipantJoined { participant: participant.info(Vec::new()) });
        } else {
            tracing::debug!(room = %self.name, participant = %id, "not announced until it publishes (large room)");
        }
        self.push_participant(participant);
        let idx = self.participants.len() - 1;
        let track_idxs: Vec<usize> = (0..self.tracks.len()).collect();
        for t in track_idxs {
            self.add_downtrack(idx, t);
        }
        self.negotiate(idx, now);
        tracing::info!(room = %self.name, participant = %id, participants = self.participants.len(), "joined room");
    }

    pub(super) fn leave(&mut self, id: &str, now: Instant) {
        let Some(idx) = self.participant_index(id) else { return };
        let p = self.remove_participant_at(idx);
        self.ctx.metrics.subscribed_tracks.sub(p.downtracks.len() as i64);
        self.remove_peer(p.subscriber);
        if let Some(k) = p.publisher {
            self.remove_peer(k);
        }
        self.unpublish(id, None, now);
        if p.announced {
            self.broadcast(id, &ServerMessage::ParticipantLeft { participant: id.to_string() });
        }
        tracing::info!(room = %self.name, participant = %id, participants = self.participants.len(), "left room");
    }

    /// Tells the others about `id` if they were not told at its join (a viewer of a large room
    /// that starts publishing).
    fn announce(&mut self, id: &str) {
        let Some(idx) = self.participant_index(id) else { return };
        if std::mem::replace(&mut self.participants[idx].announced, true) {
            return;
        }
        let info = self.participants[idx].info(Vec::new());
        self.broadcast(id, &ServerMessage::ParticipantJoined { participant: info });
    }

    pub(super) fn track_infos(&self, publisher: &str) -> Vec<signaling::protocol::TrackInfo> {
        self.tracks.iter().filter(|t| t.publisher == publisher).map(|t| t.info()).collect()
    }

    pub(super) fn on_publisher_offer(
        &mut self,
        id: &str,
        sdp_text: String,
        sources: BTreeMap<String, TrackSource>,
        now: Instant,
    ) {
        let Some(idx) = self.participant_index(id) else { return };
        if let Err(e) = sdp::check_offer(&sdp_text) {
            let code = self.refused_offer(&e);
            self.reply_error(id, code, e.to_string());
            return;
        }
        let desc = match RTCSessionDescription::offer(sdp_text.clone()) {
            Ok(d) => d,
            Err(e) => return self.reply_error(id, ErrorCode::BadSdp, format!("cannot parse the offer: {e}")),
        };
        let fresh = self.participants[idx].publisher.is_none();
        let key = match self.participants[idx].publisher {
            Some(k) => k,
            None => match self.add_peer(id, Role::Publisher, now) {
                Ok(k) => k,
                Err(e) => return self.reply_error(id, ErrorCode::Internal, format!("cannot create connection: {e}")),
            },
        };
        let result = (|| {
            let pc = &mut self.peers.get_mut(&key).expect("peer just looked up").pc;
            pc.set_remote_description(now, desc)?;
            let answer = pc.create_answer(None)?;
            pc.set_local_description(now, answer)?;
            pc.local_description().map(|d| d.sdp).ok_or(rtc::shared::error::Error::ErrPeerConnLocalDescriptionNil)
        })();
        match result {
            Ok(answer) => {
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.negotiated(now);
                }
                let p = &mut self.participants[idx];
                p.publisher = Some(key);
                p.offered_rids = sdp::send_rids_by_mid(&sdp_text);
                p.offered_sources = sources;
                p.audio_level_ext = sdp::audio_level_ext(&sdp_text);
                p.send(ServerMessage::Answer { sdp: answer });
                self.mark_queued(key);
                // a section that stopped sending (a share ended, a track removed) takes its
                // track out of the room
                let sending = sdp::sending_mids(&sdp_text);
                let stopped: Vec<String> = self
                    .tracks
                    .iter()
                    .filter(|t| t.publisher == id && t.mid.as_ref().is_some_and(|m| !sending.contains(m)))
                    .map(|t| t.rtc_track_id.clone())
                    .collect();
                for rtc_track_id in stopped {
                    self.unpublish(id, Some(&rtc_track_id), now);
                }
            }
            Err(e) => {
                if fresh {
                    self.remove_peer(key);
                }
                self.reply_error(id, ErrorCode::BadSdp, format!("cannot apply the offer: {e}"));
            }
        }
    }

    /// The error code of an offer `check_offer` refused (a limit is counted).
    pub(super) fn refused_offer(&self, e: &OfferError) -> ErrorCode {
        match e {
            OfferError::Malformed(_) => ErrorCode::BadSdp,
            OfferError::NoCodec => ErrorCode::NoCodec,
            OfferError::TooManySections(_) => {
                self.ctx.metrics.limit_exceeded(Limit::MediaSections);
                ErrorCode::LimitExceeded
            }
        }
    }

    pub(super) fn on_subscriber_answer(&mut self, id: &str, sdp_text: String, now: Instant) {
        let Some(idx) = self.participant_index(id) else { return };
        let key = self.participants[idx].subscriber;
        if !self.participants[idx].offer_outstanding {
            return self.reply_error(id, ErrorCode::BadMessage, "no subscriber offer is outstanding");
        }
        let result = RTCSessionDescription::answer(sdp_text)
            .and_then(|d| self.peers.get_mut(&key).expect("subscriber peer exists").pc.set_remote_description(now, d));
        if let Err(e) = result {
            self.reply_error(id, ErrorCode::BadSdp, format!("cannot apply the answer: {e}"));
            return;
        }
        self.mark_queued(key);
        if let Some(retired) = self.peers.get_mut(&key).and_then(|peer| peer.take_retired_ufrag()) {
            // the client has the restart's credentials: its checks name the new ufrag now
            self.ctx.demux.unregister(&retired);
        }
        let p = &mut self.participants[idx];
        p.offer_outstanding = false;
        let offered = std::mem::take(&mut p.offered_tracks);
        for dt in &mut p.downtracks {
            dt.payload_type = None; // re-resolve against the new negotiation
            // Media starts only once the client knows the track: earlier packets would be
            // dropped by it, including the keyframe a switch starts on.
            if offered.contains(&dt.track) {
                dt.negotiated = true;
            }
        }
        if std::mem::take(&mut p.renegotiate) {
            self.negotiate(idx, now);
        }
    }

    /// The client asks for an ICE restart of its subscriber connection (its network changed):
    /// new credentials, routed at once, in a new offer (after the outstanding one, if any).
    pub(super) fn on_ice_restart(&mut self, id: &str, now: Instant) {
        let Some(idx) = self.participant_index(id) else { return };
        if self.participants[idx].viewer.is_some() {
            return; // its restarts would come as offers (not supported)
        }
        let key = self.participants[idx].subscriber;
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if peer.pc.local_description().is_none() {
            return; // nothing negotiated yet: the first offer carries fresh credentials anyway
        }
        let unused = peer.restart_ice();
        self.route(key);
        if let Some(u) = unused {
            self.ctx.demux.unregister(&u);
        }
        self.ctx.metrics.ice_restarts.inc();
        tracing::info!(room = %self.name, participant = %id, "ICE restart of the subscriber connection");
        self.negotiate(idx, now);
    }

    pub(super) fn on_candidate(&mut self, id: &str, target: PcTarget, c: IceCandidate) {
        let Some(idx) = self.participant_index(id) else { return };
        if c.candidate.is_empty() {
            return;
        }
        let p = &self.participants[idx];
        let key = match target {
            PcTarget::Publisher => p.publisher,
            PcTarget::Subscriber => Some(p.subscriber),
        };
        let Some(peer) = key.and_then(|k| self.peers.get_mut(&k)) else { return };
        peer.remote_candidates = peer.remote_candidates.saturating_add(1);
        if peer.remote_candidates > MAX_CANDIDATES {
            if peer.remote_candidates == MAX_CANDIDATES + 1 {
                self.ctx.metrics.limit_exceeded(Limit::Candidates);
                let msg = format!("more than {MAX_CANDIDATES} candidates on one connection: the rest are ignored");
                self.reply_error(id, ErrorCode::LimitExceeded, msg);
            }
            return;
        }
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
            ..Default::default()
        };
        // ICE-lite learns addresses from checks; a candidate we cannot use is not an error.
        if let Err(e) = peer.pc.add_remote_candidate(init) {
            tracing::debug!(participant = %id, error = %e, "remote candidate ignored");
        }
    }

    pub(super) fn on_subscription(&mut self, id: &str, track: &str, req: SubscriptionRequest, now: Instant) {
        let Some(idx) = self.participant_index(id) else { return };
        let Some(tidx) = self.tracks.iter().position(|t| t.id == track) else {
            return self.reply_error(id, ErrorCode::UnknownTrack, format!("no track {track:?} in this room"));
        };
        let Some(didx) = self.participants[idx].downtracks.iter().position(|d| d.track == track) else {
            return self.reply_error(id, ErrorCode::UnknownTrack, format!("not subscribed to {track:?}"));
        };
        let t = &self.tracks[tidx];
        let dt = &mut self.participants[idx].downtracks[didx];
        if let Some(p) = req.paused {
            dt.wish.paused = p;
        }
        match req.layer {
            Some(Some(rid)) => match Layer::from_rid(&rid)
                .or_else(|| t.rids.iter().position(|r| *r == rid).and_then(|i| Layer::new(i as u8)))
            {
                Some(l) => dt.wish.max_layer = Some(l),
                None => {
                    let msg = format!("unknown layer {rid:?}; use one of q, h, f");
                    return self.reply_error(id, ErrorCode::BadMessage, msg);
                }
            },
            Some(None) => dt.wish.max_layer = None,
            None => {}
        }
        if let Some(size) = req.size {
            dt.wish.size = Some(size);
        }
        dt.selector.update_target(&dt.wish, &t.activity, now);
        // its target may have moved: the packet path looks at it again
        let entry = (idx as u32, didx as u32);
        if let Some(s) = self.tracks[tidx].fanout.iter_mut().find(|s| (s.participant, s.downtrack) == entry) {
            s.settled = None;
        }
    }

    /// A new SSRC started on a publisher connection: a new track or another layer of one.
    pub(super) fn on_track_open(&mut self, key: PeerKey, owner: &str, init: RTCTrackEventInit, now: Instant) {
        if self.ctx.inject_room_panic.as_deref() == Some(self.name.as_str()) {
            panic!("injected fault: room {} fails on a published track", self.name);
        }
        let Some(pidx) = self.participant_index(owner) else { return };
        let existing = self.tracks.iter().position(|t| t.publisher == owner && t.rtc_track_id == init.track_id);
        let tidx = match existing {
            Some(i) => i,
            None => {
                if self.tracks.iter().filter(|t| t.publisher == owner).count() >= MAX_TRACKS {
                    // renegotiations can add sections one offer at a time
                    self.ctx.metrics.limit_exceeded(Limit::Tracks);
                    let msg = format!("more than {MAX_TRACKS} published tracks: this one is not forwarded");
                    return self.reply_error(owner, ErrorCode::LimitExceeded, msg);
                }
                let Some(peer) = self.peers.get_mut(&key) else { return };
                let mid = peer.pc.rtp_transceiver(init.receiver_id.into()).and_then(|t| t.mid().clone());
                let Some(receiver) = peer.pc.rtp_receiver(init.receiver_id) else { return };
                let kind = match receiver.track().kind() {
                    RtpCodecKind::Audio => TrackKind::Audio,
                    _ => TrackKind::Video,
                };
                let Some(rtc_codec) = receiver.track().codec(init.ssrc).cloned() else {
                    tracing::warn!(participant = %owner, ssrc = init.ssrc, "track without codec ignored");
                    return;
                };
                let said = mid.as_ref().and_then(|m| self.participants[pidx].offered_sources.get(m).copied());
                let source = TrackSource::for_kind(kind, said);
                let rids = mid
                    .as_ref()
                    .and_then(|m| {
                        self.participants[pidx].offered_rids.iter().find(|(x, _)| x == m).map(|(_, r)| r.clone())
                    })
                    .unwrap_or_default();
                self.next_track_key = self.next_track_key.wrapping_add(1);
                let track = PublishedTrack {
                    key: self.next_track_key,
                    id: new_track_id(),
                    publisher: owner.to_string(),
                    peer: key,
                    rtc_track_id: init.track_id.clone(),
                    receiver_id: init.receiver_id,
                    kind,
                    source,
                    mid,
                    codec: Codec::from_mime(&rtc_codec.mime_type),
                    rtc_codec,
                    rids,
                    layers: Default::default(),
                    activity: LayerActivity::default(),
                    pli: PliThrottle::default(),
                    fanout: Vec::new(),
                    hints: Vec::new(),
                    dynacast: Default::default(),
                    level_ext: match kind {
                        TrackKind::Audio => self.participants[pidx].audio_level_ext,
                        TrackKind::Video => None,
                    },
                };
                tracing::info!(room = %self.name, participant = %owner, track = %track.id, ?kind,
                    codec = %track.rtc_codec.mime_type, rids = ?track.rids, "track published");
                let msg = ServerMessage::TrackPublished { participant: owner.to_string(), track: track.info() };
                // its publisher learns the id too (what `track_muted` names)
                self.participants[pidx]
                    .send(ServerMessage::TrackOpened { mid: track.mid.clone(), track: track.info() });
                self.announce(owner);
                self.push_track(track);
                self.ctx.metrics.published_tracks.inc();
                self.broadcast(owner, &msg);
                let tidx = self.tracks.len() - 1;
                for s in 0..self.participants.len() {
                    if self.participants[s].id != owner {
                        self.add_downtrack(s, tidx);
                        self.negotiate(s, now);
                    }
                }
                tidx
            }
        };
        let track = &mut self.tracks[tidx];
        let layer = track.layer_for_rid(init.rid.as_deref());
        if track.layers[layer.index()].as_ref().map(|l| l.ssrc) != Some(init.ssrc) {
            track.layers[layer.index()] = Some(LayerIn::new(init.ssrc));
        }
    }

    /// Removes `publisher`'s tracks (one, or all when `rtc_track_id` is None) from the room.
    pub(super) fn unpublish(&mut self, publisher: &str, rtc_track_id: Option<&str>, now: Instant) {
        let gone: Vec<String> = self
            .tracks
            .iter()
            .filter(|t| t.publisher == publisher && rtc_track_id.is_none_or(|id| t.rtc_track_id == id))
            .map(|t| t.id.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        self.retain_tracks(|t| !gone.contains(&t.id));
        self.ctx.metrics.published_tracks.sub(gone.len() as i64);
        for s in 0..self.participants.len() {
            let removed = self.take_downtracks(s, |d| gone.contains(&d.track));
            if removed.is_empty() {
                continue;
            }
            self.ctx.metrics.subscribed_tracks.sub(removed.len() as i64);
            if self.participants[s].viewer.is_some() {
                // its senders stay (its sections are fixed): the next tracks take them
                self.free_viewer_slots(s, removed);
                continue;
            }
            let p = &self.participants[s];
            if let Some(peer) = self.peers.get_mut(&p.subscriber) {
                for d in &removed {
                    if let Err(e) = peer.pc.remove_track(d.sender_id) {
                        tracing::debug!(error = %e, "remove_track");
                    }
                }
            }
            for d in &removed {
                p.send(ServerMessage::TrackUnpublished { participant: publisher.to_string(), track: d.track.clone() });
            }
            self.negotiate(s, now);
        }
    }

    /// Adds a sender for track `tidx` to subscriber `sidx`'s connection (negotiated later); a
    /// viewer's is bound to one of the senders it already has.
    pub(super) fn add_downtrack(&mut self, sidx: usize, tidx: usize) {
        if self.participants[sidx].viewer.is_some() {
            return self.bind_viewer(sidx, tidx);
        }
        let track = &self.tracks[tidx];
        let p = &mut self.participants[sidx];
        if !p.subscribe || p.id == track.publisher || p.downtracks.iter().any(|d| d.track == track.id) {
            return;
        }
        let Some(peer) = self.peers.get_mut(&p.subscriber) else { return };
        // unique on the connection: two streams of one SSRC would share SRTP nonces
        let ssrc = fresh_ssrc(|s| p.downtracks.iter().any(|d| d.ssrc == s), rand::random);
        let kind = match track.kind {
            TrackKind::Audio => RtpCodecKind::Audio,
            TrackKind::Video => RtpCodecKind::Video,
        };
        let encoding = RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            active: true,
            codec: track.rtc_codec.clone(),
            ..Default::default()
        };
        let mst =
            MediaStreamTrack::new(track.publisher.clone(), track.id.clone(), track.id.clone(), kind, vec![encoding]);
        let sender_id = match peer.pc.add_track(mst) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(participant = %p.id, track = %track.id, error = %e, "cannot add track to subscriber");
                return;
            }
        };
        let downtrack = new_downtrack(track, sender_id, ssrc);
        self.push_downtrack(sidx, downtrack);
        self.ctx.metrics.subscribed_tracks.inc();
    }

    /// Sends subscriber `idx` a new offer, or remembers to once its outstanding one is answered.
    /// A viewer is never offered: its sections are the ones it offered.
    pub(super) fn negotiate(&mut self, idx: usize, now: Instant) {
        let p = &mut self.participants[idx];
        if p.viewer.is_some() {
            return;
        }
        if p.offer_outstanding {
            p.renegotiate = true;
            return;
        }
        let key = p.subscriber;
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if p.downtracks.is_empty() && peer.pc.local_description().is_none() {
            return; // nothing to receive yet
        }
        let result = (|| {
            let offer = peer.pc.create_offer(None)?;
            peer.pc.set_local_description(now, offer)?;
            peer.pc.local_description().map(|d| d.sdp).ok_or(rtc::shared::error::Error::ErrPeerConnLocalDescriptionNil)
        })();
        match result {
            Ok(sdp) => {
                let mut tracks = BTreeMap::new();
                for d in &p.downtracks {
                    if let Some(mid) = peer.pc.rtp_transceiver(d.sender_id.into()).and_then(|t| t.mid().clone()) {
                        tracks.insert(
                            mid,
                            TrackRef { participant: d.publisher.clone(), track: d.track.clone(), kind: d.kind },
                        );
                    }
                }
                p.offered_tracks = tracks.values().map(|t| t.track.clone()).collect();
                p.offer_outstanding = true;
                peer.negotiated(now);
                p.send(ServerMessage::Offer { sdp, tracks });
                self.mark_queued(key);
            }
            Err(e) => tracing::error!(participant = %p.id, error = %e, "cannot create subscriber offer"),
        }
    }
}

impl LayerIn {
    /// A layer first seen with `ssrc`.
    pub fn new(ssrc: u32) -> Self {
        LayerIn {
            ssrc,
            seq: SeqUnwrapper::default(),
            ts: TsUnwrapper::default(),
            clock: None,
            rate: Default::default(),
            cache: PacketCache::new(CACHE_PACKETS),
            seen: Default::default(),
        }
    }
}

/// What subscriber state forwarding `track` starts from, sent by `sender_id` as `ssrc`.
pub(super) fn new_downtrack(
    track: &PublishedTrack,
    sender_id: rtc::rtp_transceiver::RTCRtpSenderId,
    ssrc: u32,
) -> DownTrack {
    let clock_rate = track.rtc_codec.clock_rate;
    DownTrack {
        track_key: track.key,
        track: track.id.clone(),
        publisher: track.publisher.clone(),
        kind: track.kind,
        codec: track.codec,
        sender_id,
        ssrc,
        payload_type: None,
        selector: LayerSelector::default(),
        wish: Wish::default(),
        munger: RtpMunger::new(clock_rate, rand::random(), rand::random()),
        vp8: Vp8Munger::default(),
        temporal: Default::default(),
        last_in_ts: None,
        ts_offset: 0,
        negotiated: false,
        announced: None,
        clock_rate,
        sent: Default::default(),
        rollover: Default::default(),
        retransmit_budget: Default::default(),
        allocated: Default::default(),
        frame_end: false,
    }
}

/// A random SSRC that `taken` does not hold (and not 0, which some stacks treat as unset).
pub(super) fn fresh_ssrc(taken: impl Fn(u32) -> bool, mut draw: impl FnMut() -> u32) -> u32 {
    loop {
        let ssrc = draw();
        if ssrc != 0 && !taken(ssrc) {
            return ssrc;
        }
    }
}

/// Whether a participant joining a room where `present` others are is announced at once: always
/// while the room is below `quiet_above` (0: no limit), else only once it publishes.
fn announce_on_join(present: usize, quiet_above: usize) -> bool {
    quiet_above == 0 || present < quiet_above
}

#[cfg(test)]
mod tests {
    #[test]
    fn newcomers_of_large_rooms_are_announced_when_they_publish() {
        // columns: participants present, limit, announced at join
        let rows = [
            (0, 100, true),
            (99, 100, true),
            (100, 100, false),
            (5000, 100, false),
            (5000, 0, true),
            (0, 1, true),
            (1, 1, false),
        ];
        for (present, limit, want) in rows {
            assert_eq!(super::announce_on_join(present, limit), want, "{present} present, limit {limit}");
        }
    }

    #[test]
    fn a_downtrack_ssrc_is_never_one_its_connection_uses() {
        // columns: SSRCs taken, SSRCs drawn in order, the one chosen
        let rows: &[(&[u32], &[u32], u32)] = &[(&[], &[7], 7), (&[7], &[7, 9], 9), (&[7, 9], &[0, 7, 9, 7, 11], 11)];
        for &(taken, draws, want) in rows {
            let mut draws = draws.iter().copied();
            let got = super::fresh_ssrc(|s| taken.contains(&s), || draws.next().expect("drawn enough"));
            assert_eq!(got, want, "taken {taken:?}");
        }
    }
}
