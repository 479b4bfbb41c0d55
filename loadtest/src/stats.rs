//! Counters a client exposes: what it sent as a publisher and, per received track, what
//! arrived and how healthy the stream was. Plain data, cheap to copy with `clone_from`.

use signaling::protocol::TrackKind;

/// Everything one client measured so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientStats {
    /// The publisher side, once it published.
    pub publisher: Option<PublisherStats>,
    /// One entry per received track, in the order they first arrived.
    pub tracks: Vec<TrackStats>,
    /// With [`crate::EngineOptions::sink_media`]: what arrived per SSRC, counted from the
    /// clear RTP header without decrypting.
    pub sink: Vec<SinkStream>,
}

/// One received stream in sink mode: counts from sequence numbers only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStream {
    /// Its SSRC.
    pub ssrc: u32,
    /// Datagrams received (duplicates and retransmissions included).
    pub packets: u64,
    /// Extended sequence number of the first packet.
    pub first: u64,
    /// Highest extended sequence number.
    pub highest: u64,
}

impl SinkStream {
    /// A stream whose first packet had `seq`.
    pub fn new(ssrc: u32, seq: u16) -> Self {
        let ext = u64::from(seq) + (1 << 16);
        SinkStream { ssrc, packets: 1, first: ext, highest: ext }
    }

    /// Counts a packet with `seq`.
    pub fn on_packet(&mut self, seq: u16) {
        self.packets += 1;
        let ext = crate::recv::extend(self.highest, seq);
        self.highest = self.highest.max(ext);
    }

    /// Sequence numbers between the first and the highest that never arrived (a late or
    /// duplicate packet offsets one loss: an estimate, exact without duplicates).
    pub fn lost(&self) -> u64 {
        (self.highest - self.first + 1).saturating_sub(self.packets)
    }
}

impl ClientStats {
    /// Stats of the received track `id`.
    pub fn track(&self, id: &str) -> Option<&TrackStats> {
        self.tracks.iter().find(|t| t.track == id)
    }

    /// Stats of the first received track of `kind`.
    pub fn first_of(&self, kind: TrackKind) -> Option<&TrackStats> {
        self.tracks.iter().find(|t| t.kind == kind)
    }
}

/// What the publisher connection sent and heard back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Audio packets written.
    pub audio_packets: u64,
    /// Video packets written, all layers.
    pub video_packets: u64,
    /// Video frames per layer (q, h, f).
    pub frames: [u64; 3],
    /// Keyframes per layer (q, h, f).
    pub keyframes: [u64; 3],
    /// PLI and FIR messages received, per layer.
    pub keyframe_requests: [u64; 3],
    /// NACK messages received.
    pub nacks: u64,
    /// Frames or audio packets skipped because the driver fell behind.
    pub skipped: u64,
    /// Packets `write_rtp` refused.
    pub write_errors: u64,
    /// SSRCs per layer (q, h, f).
    pub video_ssrcs: [u32; 3],
    /// SSRC of the audio stream.
    pub audio_ssrc: u32,
}

/// A switch of the simulcast layer a subscriber receives, as seen in the packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSwitch {
    /// Layer before (None for the first packet).
    pub from: Option<u8>,
    /// Layer after.
    pub to: u8,
    /// The first packet of the new layer starts a keyframe.
    pub at_keyframe: bool,
    /// Sequence number of that packet minus the previous one's (1 when continuous).
    pub seq_delta: i64,
    /// Picture id of that packet minus the previous one's, mod 2^15 (1 when continuous).
    pub picture_delta: Option<u16>,
    /// RTP timestamp of that packet minus the previous one's (as a signed 32-bit difference).
    pub ts_delta: i64,
}

/// Reception of one track.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackStats {
    /// Track id (`TR_...`).
    pub track: String,
    /// Publishing participant.
    pub participant: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// Subscriber-connection mid it arrived on.
    pub mid: String,
    /// Packets received (duplicates included).
    pub packets: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Video packets received before the first keyframe (not analyzed).
    pub before_keyframe: u64,
    /// Sequence numbers skipped and never filled in (loss).
    pub lost: u64,
    /// Packets whose sequence number had already been received.
    pub duplicates: u64,
    /// Packets older than the newest one received (late, reordered or retransmitted).
    pub out_of_order: u64,
    /// In-order packets whose timestamp went backwards.
    pub ts_backwards: u64,
    /// Keyframes received.
    pub keyframes: u64,
    /// Keyframes with an invalid frame header.
    pub bad_keyframes: u64,
    /// Width and height of the last keyframe.
    pub size: Option<(u16, u16)>,
    /// Distinct consecutive keyframe widths, oldest first (at most 64).
    pub widths: Vec<u16>,
    /// Video frames started.
    pub frames: u64,
    /// Frames that ended without their marker packet (a new frame began first).
    pub incomplete_frames: u64,
    /// Consecutive pictures whose picture id did not increase by exactly one.
    pub picture_id_jumps: u64,
    /// Packets whose payload could not be parsed.
    pub malformed: u64,
    /// Padding-only packets (a sender's bandwidth probes): they take sequence numbers, not
    /// counted in `packets`.
    pub padding: u64,
    /// Layer of the newest packet (from its probe).
    pub layer: Option<u8>,
    /// Layer switches seen, oldest first (at most 64).
    pub switches: Vec<LayerSwitch>,
    /// End-to-end latency of packets carrying a send time.
    pub latency: Histogram,
    /// Newest send time (UNIX microseconds) received.
    pub newest_sent_us: u64,
    /// Interarrival jitter (RFC 3550), milliseconds.
    pub jitter_ms: f64,
    /// Keyframe requests (PLI) sent for this track.
    pub plis_sent: u64,
    /// Retransmission requests sent (sequence numbers NACKed, repeats included).
    pub nacks_sent: u64,
    /// Packets dropped by the engine's own SRTP context (authentication failed, or a replay).
    pub srtp_errors: u64,
    /// Inter-arrival gaps (every received packet counts), see [`crate::gaps`].
    pub arrivals: crate::gaps::ArrivalGaps,
    /// RTCP sender reports received for this track.
    pub sender_reports: u64,
    /// Packet count of the latest sender report.
    pub sr_packet_count: u32,
    /// Largest distance, in milliseconds of media time, between a sender report's RTP time
    /// and the newest received timestamp advanced by the time since it arrived (a correct
    /// report differs by the network delay and the sender's frame-time estimate only).
    pub sr_max_error_ms: f64,
}

impl TrackStats {
    /// Empty stats of a track.
    pub fn new(track: &str, participant: &str, kind: TrackKind, mid: &str) -> Self {
        TrackStats {
            track: track.to_owned(),
            participant: participant.to_owned(),
            kind,
            mid: mid.to_owned(),
            packets: 0,
            bytes: 0,
            before_keyframe: 0,
            lost: 0,
            duplicates: 0,
            out_of_order: 0,
            ts_backwards: 0,
            keyframes: 0,
            bad_keyframes: 0,
            size: None,
            widths: Vec::new(),
            frames: 0,
            incomplete_frames: 0,
            picture_id_jumps: 0,
            malformed: 0,
            padding: 0,
            layer: None,
            switches: Vec::new(),
            latency: Histogram::default(),
            newest_sent_us: 0,
            jitter_ms: 0.0,
            plis_sent: 0,
            nacks_sent: 0,
            srtp_errors: 0,
            arrivals: crate::gaps::ArrivalGaps::default(),
            sender_reports: 0,
            sr_packet_count: 0,
            sr_max_error_ms: 0.0,
        }
    }

    /// Width of the last keyframe.
    pub fn width(&self) -> Option<u16> {
        self.size.map(|(w, _)| w)
    }
}

/// Sub-buckets per power of two.
const SUB: usize = 8;
/// Powers of two covered (values up to 2^40).
const POWERS: usize = 40;

/// A log-linear histogram of microsecond values: fixed size, no allocation when recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    buckets: Box<[u32; SUB * POWERS]>,
    /// Values recorded.
    pub count: u64,
    /// Sum of values.
    pub sum: u64,
    /// Smallest value.
    pub min: u64,
    /// Largest value.
    pub max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: Box::new([0; SUB * POWERS]), count: 0, sum: 0, min: u64::MAX, max: 0 }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let power = 63 - v.leading_zeros() as usize; // >= 3
    let sub = ((v >> (power - 3)) & (SUB as u64 - 1)) as usize;
    ((power - 2) * SUB + sub).min(SUB * POWERS - 1)
}

fn bucket_high(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let power = b / SUB + 2;
    let sub = (b % SUB) as u64;
    ((SUB as u64 + sub + 1) << (power - 3)) - 1
}

fn bucket_low(b: usize) -> u64 {
    if b == 0 { 0 } else { bucket_high(b - 1) + 1 }
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.buckets[bucket_of(v)] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds every value recorded in `other` (for totals over many tracks).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += *b;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The values recorded after `earlier`, an older snapshot of this same histogram (for a
    /// measurement window). Counts and sum are exact; min and max are bucket bounds.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut h = Histogram::default();
        for (i, (now, before)) in self.buckets.iter().zip(earlier.buckets.iter()).enumerate() {
            let n = now.saturating_sub(*before);
            h.buckets[i] = n;
            if n > 0 {
                h.min = h.min.min(bucket_low(i));
                h.max = h.max.max(bucket_high(i).min(self.max));
            }
        }
        h.count = self.count.saturating_sub(earlier.count);
        h.sum = self.sum.saturating_sub(earlier.sum);
        h
    }

    /// Mean of the recorded values.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// An upper bound (within 12.5%) of the `q` quantile (0.0-1.0).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                return Some(bucket_high(b).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for v in [0u64, 1, 7, 8, 9, 15, 16, 17, 100, 1000, 12345, 1 << 30, u64::MAX / 2] {
            let b = bucket_of(v);
            assert!(b >= last, "{v}");
            last = b;
            if b < SUB * POWERS - 1 {
                assert!(bucket_high(b) >= v, "{v} above its bucket");
                assert!(bucket_high(b) <= v + v / 8, "{v} bucket too wide");
            }
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=1000u64 {
            h.record(v);
        }
        assert_eq!((h.min, h.max, h.count), (1, 1000, 1000));
        let p50 = h.quantile(0.5).unwrap();
        assert!((500..=563).contains(&p50), "{p50}");
        assert_eq!(h.quantile(1.0), Some(1000));
        assert!((h.mean().unwrap() - 500.5).abs() < 1e-9);
    }

    #[test]
    fn merge_and_window() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for v in 1..=100u64 {
            a.record(v);
            b.record(v * 1000);
        }
        let before = a.clone();
        for v in 0..100u64 {
            a.record(5000 + v);
        }
        let w = a.since(&before);
        assert_eq!((w.count, w.sum), (100, (5000..5100).sum::<u64>()));
        assert!(w.min <= 5000 && w.min >= 4096, "{}", w.min);
        assert_eq!(w.max, 5099);
        let p50 = w.quantile(0.5).unwrap();
        assert!((5000..=5100).contains(&p50) || (4900..5700).contains(&p50), "{p50}");
        let mut total = Histogram::default();
        total.merge(&before);
        total.merge(&b);
        assert_eq!((total.count, total.min, total.max), (200, 1, 100_000));
        assert!(total.quantile(0.25).unwrap() <= 56);
    }
}
