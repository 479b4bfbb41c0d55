//! Per-track forwarding state: what a publisher sends ([`PublishedTrack`]) and what one
//! subscriber receives of it ([`DownTrack`]).

use crate::forward::cache::PacketCache;
use crate::forward::munger::RtpMunger;
use crate::forward::selector::{Layer, LayerActivity, LayerSelector, PliThrottle, Wish};
use crate::forward::seq::{SeqUnwrapper, TsUnwrapper};
use crate::forward::temporal::Tid;
use crate::forward::vp8::Vp8Munger;
use glue::replay::ReplayWindow;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use signaling::protocol::{TrackInfo, TrackKind};

/// Codec of a published track, as far as forwarding cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Opus audio.
    Opus,
    /// VP8 video: picture ids are rewritten.
    Vp8,
    /// H264 video: no payload rewrite.
    H264,
    /// Anything else: forwarded without payload inspection.
    Other,
}

impl Codec {
    /// From a MIME type such as `video/VP8`.
    pub fn from_mime(mime: &str) -> Codec {
        match mime.to_ascii_lowercase().as_str() {
            "audio/opus" => Codec::Opus,
            "video/vp8" => Codec::Vp8,
            "video/h264" => Codec::H264,
            _ => Codec::Other,
        }
    }
}

pub use crate::forward::switch_hint::SenderClock;

/// Packets kept per layer for answering NACKs (about 3 s of the top layer).
pub const CACHE_PACKETS: usize = 512;

/// The oldest packet a layer's cache keeps and resends: a retransmission later than this
/// reaches a receiver that gave up on its frame long ago (mediasoup uses 2 s for video too).
/// Without it a cache of 512 packets held 20 s of a 25 packets/s layer, and every cached
/// packet keeps its whole datagram buffer.
pub const CACHE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(2);

/// Sequence numbers a cache insert looks at for expiry (more than one, so expiry outpaces
/// arrivals).
pub const CACHE_EXPIRE_PER_INSERT: usize = 2;

/// What the NACK cache keeps of a packet: the payload is shared, never copied.
#[derive(Debug, Clone)]
pub struct CachedPacket {
    /// Source RTP timestamp.
    pub ts: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload (reference-counted).
    pub payload: bytes::Bytes,
    /// When it was forwarded (for [`CACHE_MAX_AGE`]).
    pub at: std::time::Instant,
}

impl CachedPacket {
    /// Older than [`CACHE_MAX_AGE`] at `now`: neither kept nor resent.
    pub fn expired(&self, now: std::time::Instant) -> bool {
        now.saturating_duration_since(self.at) > CACHE_MAX_AGE
    }
}

/// One incoming simulcast layer (one SSRC).
pub struct LayerIn {
    /// Its SSRC.
    pub ssrc: u32,
    /// Extends sequence numbers.
    pub seq: SeqUnwrapper,
    /// Extends timestamps.
    pub ts: TsUnwrapper,
    /// Last sender report.
    pub clock: Option<SenderClock>,
    /// The rate it arrives at.
    pub rate: crate::forward::rate::RateMeter,
    /// Recent packets by extended sequence number, for retransmission.
    pub cache: PacketCache<CachedPacket>,
    /// Which sequence numbers arrived: a number is forwarded once. Its mapping to every
    /// subscriber is fixed, so a second packet of that number (an RTX repair of a packet that
    /// came, a publisher resending it with other content) would be sealed under the same
    /// AES-GCM nonce as the first.
    pub seen: ReplayWindow<SEEN_WORDS>,
}

/// Sequence numbers a layer remembers having seen: 1024, seconds of video at any layer's rate
/// (a packet that late is useless to a real-time receiver).
pub const SEEN_WORDS: usize = 16;

impl LayerIn {
    /// Forgets cached packets older than [`CACHE_MAX_AGE`], looking at up to `max` sequence
    /// numbers from where the last call stopped, up to the newest seen (included: a layer that
    /// went quiet keeps nothing past the age either).
    pub fn expire_cache(&mut self, now: std::time::Instant, max: usize) -> usize {
        let Some(highest) = self.seq.highest() else { return 0 };
        self.cache.expire_oldest(highest.saturating_add(1), max, |c| c.expired(now))
    }
}

/// A track some participant publishes.
pub struct PublishedTrack {
    /// Room-unique number: what the packet path compares instead of the id string.
    pub key: u32,
    /// Public id (`TR_...`).
    pub id: String,
    /// Publishing participant.
    pub publisher: String,
    /// The publisher connection it arrives on.
    pub peer: crate::udp::PeerKey,
    /// What it carries (a screen share is ranked above cameras).
    pub source: signaling::protocol::TrackSource,
    /// The publisher connection's section that carries it.
    pub mid: Option<String>,
    /// The track id inside the publisher's `rtc` connection.
    pub rtc_track_id: String,
    /// Its receiver in the publisher's connection.
    pub receiver_id: RTCRtpReceiverId,
    /// Audio or video.
    pub kind: TrackKind,
    /// Codec used.
    pub codec: Codec,
    /// Codec parameters, copied to subscribers' senders.
    pub rtc_codec: RTCRtpCodec,
    /// Simulcast rids in the offer, lowest first (empty if not simulcast).
    pub rids: Vec<String>,
    /// Incoming layers by [`Layer`] index.
    pub layers: [Option<LayerIn>; Layer::COUNT],
    /// Which layers are alive and how large.
    pub activity: LayerActivity,
    /// Keyframe-request throttle per layer.
    pub pli: PliThrottle,
    /// Audio: the id of the RFC 6464 level extension its packets carry (active speakers).
    pub level_ext: Option<u8>,
    /// Its subscribers, in fan-out order (see `fanout.rs`).
    pub fanout: Vec<super::fanout_entry::Subscriber>,
    /// Where each subscriber's state was at its last visit, by position in `fanout`.
    pub hints: Vec<super::fanout_entry::Hint>,
    /// Which layers the publisher keeps encoding.
    pub dynacast: crate::forward::dynacast::Dynacast,
}

impl PublishedTrack {
    /// The layer a rid stands for: `q`/`h`/`f` by name, other rids by position in the offer.
    pub fn layer_for_rid(&self, rid: Option<&str>) -> Layer {
        let Some(rid) = rid.filter(|r| !r.is_empty()) else { return Layer::LOW };
        if let Some(l) = Layer::from_rid(rid) {
            return l;
        }
        let pos = self.rids.iter().position(|r| r == rid).unwrap_or(0);
        Layer::new(pos.min(Layer::COUNT - 1) as u8).unwrap_or(Layer::LOW)
    }

    /// The layer an SSRC carries, if known.
    pub fn layer_of(&self, ssrc: u32) -> Option<Layer> {
        self.layers
            .iter()
            .enumerate()
            .find_map(|(i, l)| l.as_ref().filter(|l| l.ssrc == ssrc).and_then(|_| Layer::new(i as u8)))
    }

    /// Public description.
    pub fn info(&self) -> TrackInfo {
        TrackInfo { id: self.id.clone(), kind: self.kind, layers: self.rids.clone(), source: self.source }
    }

    /// The rid to report for a layer.
    pub fn rid_name(&self, layer: Layer) -> String {
        if self.rids.iter().all(|r| Layer::from_rid(r).is_some()) {
            return layer.rid().to_string();
        }
        self.rids.get(layer.index()).cloned().unwrap_or_else(|| layer.rid().to_string())
    }
}

/// One subscriber's view of one published track.
pub struct DownTrack {
    /// The published track's [`PublishedTrack::key`].
    pub track_key: u32,
    /// Published track id.
    pub track: String,
    /// Its publisher.
    pub publisher: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// Codec (same as published).
    pub codec: Codec,
    /// Sender in the subscriber's connection.
    pub sender_id: RTCRtpSenderId,
    /// Outgoing SSRC.
    pub ssrc: u32,
    /// Outgoing payload type, once negotiated.
    pub payload_type: Option<u8>,
    /// Layer choice.
    pub selector: LayerSelector,
    /// The subscriber's wish.
    pub wish: Wish,
    /// Seq/timestamp mapping.
    pub munger: RtpMunger,
    /// VP8 picture id mapping.
    pub vp8: Vp8Munger,
    /// Which VP8 temporal layers of the forwarded layer go out.
    pub temporal: crate::forward::temporal::TemporalFilter,
    /// Source (extended) timestamp of the last forwarded packet, for sender-report alignment.
    pub last_in_ts: Option<u64>,
    /// Outgoing minus source timestamp of the current source (constant between switches).
    pub ts_offset: u32,
    /// The subscriber has answered an offer carrying this track: media may flow.
    pub negotiated: bool,
    /// The last packet forwarded ended a frame: probe padding may follow it.
    pub frame_end: bool,
    /// Layer last announced with `layer_changed`.
    pub announced: Option<Layer>,
    /// RTP clock rate, for sender reports.
    pub clock_rate: u32,
    /// What was sent, for sender reports.
    pub sent: super::egress::SentStats,
    /// SRTP rollover counter of its SSRC.
    pub rollover: crate::forward::srtp::Rollover,
    /// How many NACKed packets it may still resend.
    pub retransmit_budget: crate::forward::budget::RetransmitBudget,
    /// What the subscriber's bandwidth allows of it (see `allocation.rs`).
    pub allocated: Allocated,
}

/// What a subscriber's bandwidth allocation grants one downtrack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Allocated {
    /// No allocation ran (no estimate for the connection): no cap.
    #[default]
    Unlimited,
    /// Up to this layer, and of it up to this temporal layer.
    UpTo(Layer, Tid),
    /// Nothing: not even the lowest layer fits.
    Paused,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn cached_packets_expire_after_the_max_age() {
        let t0 = Instant::now();
        let packet = CachedPacket { ts: 0, marker: false, payload: bytes::Bytes::new(), at: t0 };
        // columns: time since it was forwarded, expired
        let rows = [
            (Duration::ZERO, false),
            (CACHE_MAX_AGE - Duration::from_millis(1), false),
            (CACHE_MAX_AGE, false),
            (CACHE_MAX_AGE + Duration::from_millis(1), true),
            (Duration::from_secs(60), true),
        ];
        for (age, want) in rows {
            assert_eq!(packet.expired(t0 + age), want, "{age:?}");
        }
        // a clock read before the packet (another task's `now`) is not an age
        assert!(!CachedPacket { at: t0 + Duration::from_secs(5), ..packet }.expired(t0));
    }
}
