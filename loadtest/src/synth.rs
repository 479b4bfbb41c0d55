//! Synthetic media: VP8 simulcast layers and Opus-sized audio, packetized into RTP payloads
//! with no codec behind them. Pure code: the caller says what time it is and supplies the
//! buffer arena, so one frame costs no allocation beyond the arena's occasional growth.

use crate::probe::{PROBE_LEN, Probe};
use crate::vp8;
use bytes::{BufMut, Bytes, BytesMut};
use std::time::{Duration, Instant};

/// Largest RTP payload written (VP8 descriptor included).
pub const MAX_PAYLOAD: usize = 1100;
/// Bytes the arena grows by when it runs out.
const ARENA_CHUNK: usize = 64 * 1024;
/// A keyframe is this many times the size of an average frame.
const KEYFRAME_FACTOR: usize = 3;
/// RTP clock of video.
pub const VIDEO_CLOCK: u32 = 90_000;
/// RTP clock of Opus.
pub const AUDIO_CLOCK: u32 = 48_000;
/// Audio packet duration.
pub const AUDIO_PTIME: Duration = Duration::from_millis(20);
/// Timestamp step of one audio packet (20 ms at 48 kHz).
pub const AUDIO_TS_STEP: u32 = 960;

/// One simulcast layer's encoding parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// RTP stream id.
    pub rid: &'static str,
    /// Frame width in pixels.
    pub width: u16,
    /// Frame height in pixels.
    pub height: u16,
    /// Target bitrate in bits per second.
    pub bitrate: u32,
}

/// The three layers a browser camera sends: q, h, f.
pub const SIMULCAST_LAYERS: [LayerSpec; 3] = [
    LayerSpec { rid: "q", width: 320, height: 180, bitrate: 150_000 },
    LayerSpec { rid: "h", width: 640, height: 360, bitrate: 500_000 },
    LayerSpec { rid: "f", width: 1280, height: 720, bitrate: 1_500_000 },
];

/// One RTP packet to send, minus the header fields the connection fills in.
#[derive(Debug, Clone)]
pub struct SynthPacket {
    /// SSRC of its stream.
    pub ssrc: u32,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub ts: u32,
    /// Marker bit (last packet of a video frame).
    pub marker: bool,
    /// The payload.
    pub payload: Bytes,
}

fn reserve(arena: &mut BytesMut, n: usize) {
    if arena.capacity() - arena.len() < n {
        arena.reserve(n.max(ARENA_CHUNK));
    }
}

/// Sends one VP8 simulcast layer.
#[derive(Debug, Clone)]
pub struct VideoLayer {
    /// Layer index (0 = q).
    pub index: u8,
    /// Its parameters.
    pub spec: LayerSpec,
    /// Its SSRC.
    pub ssrc: u32,
    seq: u16,
    ts_base: u32,
    picture_id: u16,
    tl0picidx: u8,
    frame: u32,
    /// VP8 temporal layers (1: none, no TID written).
    temporal_layers: u8,
    /// Position in the temporal pattern; a keyframe restarts it.
    pattern: u32,
    keyframe_pending: bool,
    last_keyframe: Option<Instant>,
    /// RTP timestamp of the last frame.
    last_ts: u32,
}

impl VideoLayer {
    /// A layer starting at random sequence number, timestamp and picture id, keyframe first.
    pub fn new(index: u8, spec: LayerSpec, ssrc: u32) -> Self {
        VideoLayer {
            index,
            spec,
            ssrc,
            seq: rand::random(),
            ts_base: rand::random(),
            picture_id: rand::random::<u16>() % vp8::PICTURE_ID_MODULO,
            tl0picidx: rand::random(),
            frame: 0,
            temporal_layers: 1,
            pattern: 0,
            keyframe_pending: true,
            last_keyframe: None,
            last_ts: 0,
        }
    }

    /// Sends `n` VP8 temporal layers (clamped to 1..=3) in the pattern encoders use: TIDs
    /// 0-2-1-2 for three, 0-1 for two, with the layer sync bit on a frame that refers only to
    /// the base, and the base frames larger (shares of the bitrate 40/20/40 % and 60/40 %).
    pub fn with_temporal_layers(mut self, n: u8) -> Self {
        self.temporal_layers = n.clamp(1, 3);
        self
    }

    /// The temporal layer, layer sync bit and size relative to the average frame of the next
    /// frame.
    fn temporal(&self) -> (u8, bool, f64) {
        match (self.temporal_layers, self.pattern % 4) {
            (3, 0) => (0, false, 1.6),
            (3, 1) => (2, true, 0.8),
            (3, 2) => (1, true, 0.8),
            (3, _) => (2, false, 0.8),
            (2, p) if p % 2 == 0 => (0, false, 1.2),
            (2, _) => (1, true, 0.8),
            _ => (0, false, 1.0),
        }
    }

    /// One padding-only packet (no payload) after the last frame, as browsers probe for
    /// bandwidth: it takes a sequence number of the layer.
    pub fn padding(&mut self, out: &mut Vec<SynthPacket>) {
        out.push(SynthPacket {
            ssrc: self.ssrc,
            seq: self.seq,
            ts: self.last_ts,
            marker: false,
            payload: Bytes::new(),
        });
        self.seq = self.seq.wrapping_add(1);
    }

    /// Makes the next frame a keyframe (a PLI or FIR arrived).
    pub fn request_keyframe(&mut self) {
        self.keyframe_pending = true;
    }

    /// Packetizes the frame captured `capture` after the stream started, sent at `sent_us`
    /// (UNIX microseconds), into `out`; returns true if it was a keyframe.
    #[allow(clippy::too_many_arguments)]
    pub fn frame(
        &mut self,
        capture: Duration,
        fps: u32,
        sent_us: u64,
        now: Instant,
        keyframe_interval: Duration,
        arena: &mut BytesMut,
        out: &mut Vec<SynthPacket>,
    ) -> bool {
        let keyframe = self.keyframe_pending
            || self.last_keyframe.is_none_or(|at| now.saturating_duration_since(at) >= keyframe_interval);
        if keyframe {
            self.keyframe_pending = false;
            self.last_keyframe = Some(now);
            self.pattern = 0;
        }
        let (tid, sync, weight) = self.temporal();
        if tid == 0 {
            self.tl0picidx = self.tl0picidx.wrapping_add(1);
        }
        let average = (self.spec.bitrate / 8 / fps.max(1)) as usize;
        let min = vp8::KEYFRAME_HEADER_LEN + PROBE_LEN;
        let frame_len =
            (if keyframe { average * KEYFRAME_FACTOR } else { (average as f64 * weight) as usize }).max(min);
        let temporal = self.temporal_layers > 1;
        let desc_len = if temporal { vp8::TEMPORAL_DESCRIPTOR_LEN } else { vp8::DESCRIPTOR_LEN };
        let chunk_max = MAX_PAYLOAD - desc_len;
        let packets = frame_len.div_ceil(chunk_max);
        let (base, extra) = (frame_len / packets, frame_len % packets);
        let ts = self.ts_base.wrapping_add(ticks(capture, VIDEO_CLOCK));
        self.last_ts = ts;
        let probe = Probe { layer: self.index, sent_us, frame: self.frame };
        let size = keyframe.then_some((self.spec.width, self.spec.height));
        let mut scratch = [0u8; vp8::KEYFRAME_HEADER_LEN + PROBE_LEN];
        for i in 0..packets {
            let chunk = base + usize::from(i < extra);
            reserve(arena, desc_len + chunk);
            let mut desc = [0u8; vp8::TEMPORAL_DESCRIPTOR_LEN];
            if temporal {
                vp8::write_temporal_descriptor(&mut desc, i == 0, self.picture_id, self.tl0picidx, (tid, sync));
            } else {
                let base: &mut [u8; vp8::DESCRIPTOR_LEN] =
                    (&mut desc[..vp8::DESCRIPTOR_LEN]).try_into().expect("DESCRIPTOR_LEN bytes");
                vp8::write_descriptor(base, i == 0, self.picture_id, self.tl0picidx);
            }
            arena.put_slice(&desc[..desc_len]);
            let header = if i == 0 { vp8::write_frame_header(&mut scratch, frame_len, size) } else { 0 };
            probe.write(&mut scratch[header..]);
            arena.put_slice(&scratch[..header + PROBE_LEN]);
            arena.put_bytes(0, chunk - header - PROBE_LEN);
            out.push(SynthPacket {
                ssrc: self.ssrc,
                seq: self.seq,
                ts,
                marker: i + 1 == packets,
                payload: arena.split().freeze(),
            });
            self.seq = self.seq.wrapping_add(1);
        }
        self.picture_id = (self.picture_id + 1) % vp8::PICTURE_ID_MODULO;
        self.pattern = self.pattern.wrapping_add(1);
        self.frame = self.frame.wrapping_add(1);
        keyframe
    }
}

/// Sends 20 ms Opus-sized audio packets.
#[derive(Debug, Clone)]
pub struct AudioStream {
    /// Its SSRC.
    pub ssrc: u32,
    /// Payload size in bytes.
    pub payload_len: usize,
    seq: u16,
    ts_base: u32,
    packet: u32,
}

impl AudioStream {
    /// A stream of `payload_len`-byte packets (at least a probe) from random seq/timestamp.
    pub fn new(ssrc: u32, payload_len: usize) -> Self {
        AudioStream {
            ssrc,
            payload_len: payload_len.max(PROBE_LEN),
            seq: rand::random(),
            ts_base: rand::random(),
            packet: 0,
        }
    }

    /// Builds the next packet (timestamp advancing by 960 per packet) into `out`.
    pub fn packet(&mut self, sent_us: u64, arena: &mut BytesMut, out: &mut Vec<SynthPacket>) {
        reserve(arena, self.payload_len);
        let mut probe = [0u8; PROBE_LEN];
        Probe { layer: 0, sent_us, frame: self.packet }.write(&mut probe);
        arena.put_slice(&probe);
        arena.put_bytes(0, self.payload_len - PROBE_LEN);
        out.push(SynthPacket {
            ssrc: self.ssrc,
            seq: self.seq,
            ts: self.ts_base.wrapping_add(self.packet.wrapping_mul(AUDIO_TS_STEP)),
            marker: self.packet == 0,
            payload: arena.split().freeze(),
        });
        self.seq = self.seq.wrapping_add(1);
        self.packet = self.packet.wrapping_add(1);
    }
}

/// RTP clock ticks in `d` at `rate` Hz (wrapping like the 32-bit field).
pub fn ticks(d: Duration, rate: u32) -> u32 {
    (d.as_micros() * u128::from(rate) / 1_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(layer: &mut VideoLayer, n: usize, keyframe_interval: Duration) -> Vec<Vec<SynthPacket>> {
        let mut arena = BytesMut::new();
        let t0 = Instant::now();
        (0..n)
            .map(|i| {
                let mut out = Vec::new();
                let at = Duration::from_millis(40 * i as u64);
                layer.frame(at, 25, 1_000 + i as u64, t0 + at, keyframe_interval, &mut arena, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn temporal_layers_follow_the_encoders_pattern() {
        // columns: temporal layers, (TID, layer sync) of frames 0.. (a keyframe at 0 and 6)
        let rows: &[(u8, &[(u8, bool)])] = &[
            (1, &[(0, false); 7]),
            (2, &[(0, false), (1, true), (0, false), (1, true), (0, false), (1, true), (0, false)]),
            (3, &[(0, false), (2, true), (1, true), (2, false), (0, false), (2, true), (0, false)]),
        ];
        for &(n, want) in rows {
            let mut layer = VideoLayer::new(0, SIMULCAST_LAYERS[0], 1).with_temporal_layers(n);
            let all = frames(&mut layer, want.len(), Duration::from_millis(240));
            let mut tl0 = None::<u8>;
            for (f, (pkts, &(tid, sync))) in all.iter().zip(want).enumerate() {
                for p in pkts {
                    let d = vp8::parse_descriptor(&p.payload).unwrap();
                    let t = (n > 1).then_some(tid);
                    assert_eq!(d.tid, t, "{n} layers, frame {f}");
                    if n > 1 {
                        assert_eq!(
                            p.payload[vp8::TEMPORAL_DESCRIPTOR_LEN - 1] & 0x20 != 0,
                            sync,
                            "{n} layers, frame {f}"
                        );
                    }
                    // TL0PICIDX counts base layer frames
                    let idx = d.tl0picidx.unwrap();
                    if let Some(prev) = tl0.filter(|_| p.marker) {
                        let step = if tid == 0 { 1 } else { 0 };
                        assert_eq!(idx, prev.wrapping_add(step), "{n} layers, frame {f}");
                    }
                }
                tl0 = vp8::parse_descriptor(&pkts[0].payload).unwrap().tl0picidx;
            }
        }
    }

    #[test]
    fn layers_packetize_to_valid_vp8() {
        for (i, spec) in SIMULCAST_LAYERS.iter().enumerate() {
            let mut layer = VideoLayer::new(i as u8, *spec, 1000 + i as u32);
            let all = frames(&mut layer, 30, Duration::from_secs(1));
            let mut last_seq = None::<u16>;
            let mut last_pid = None::<u16>;
            let mut bytes = 0usize;
            for (f, pkts) in all.iter().enumerate() {
                let keyframe = f % 25 == 0;
                assert!(pkts.iter().all(|p| p.payload.len() <= MAX_PAYLOAD && p.ts == pkts[0].ts));
                assert!(pkts.last().unwrap().marker && pkts.iter().filter(|p| p.marker).count() == 1);
                let mut frame_len = 0;
                for (k, p) in pkts.iter().enumerate() {
                    if let Some(s) = last_seq {
                        assert_eq!(p.seq, s.wrapping_add(1));
                    }
                    last_seq = Some(p.seq);
                    let d = vp8::parse_descriptor(&p.payload).unwrap();
                    assert_eq!(d.frame_start(), k == 0);
                    let data = &p.payload[d.len..];
                    frame_len += data.len();
                    let skip = if k == 0 { vp8::parse_frame_header(data).unwrap().len } else { 0 };
                    let probe = Probe::read(&data[skip..]).unwrap();
                    assert_eq!((probe.layer, probe.frame), (i as u8, f as u32));
                    bytes += p.payload.len();
                }
                let d = vp8::parse_descriptor(&pkts[0].payload).unwrap();
                let h = vp8::parse_frame_header(&pkts[0].payload[d.len..]).unwrap();
                assert_eq!(h.keyframe, keyframe, "frame {f}");
                assert!(h.is_valid(frame_len));
                if keyframe {
                    assert_eq!(h.size, Some((spec.width, spec.height)));
                }
                let pid = d.picture_id.unwrap();
                if let Some(l) = last_pid {
                    assert_eq!(pid, (l + 1) % vp8::PICTURE_ID_MODULO);
                }
                last_pid = Some(pid);
            }
            // 30 frames at 25 fps with two keyframes: close to the target bitrate
            let bps = bytes as f64 * 8.0 / 1.2;
            let target = spec.bitrate as f64;
            assert!(bps > target && bps < target * 1.5, "{} {bps}", spec.rid);
        }
    }

    #[test]
    fn keyframe_on_request() {
        let mut layer = VideoLayer::new(0, SIMULCAST_LAYERS[0], 1);
        let mut arena = BytesMut::new();
        let t0 = Instant::now();
        let mut is_key = |layer: &mut VideoLayer, i: u64| {
            let mut out = Vec::new();
            let at = Duration::from_millis(40 * i);
            layer.frame(at, 25, 0, t0 + at, Duration::from_secs(100), &mut arena, &mut out)
        };
        assert!(is_key(&mut layer, 0));
        assert!(!is_key(&mut layer, 1));
        layer.request_keyframe();
        assert!(is_key(&mut layer, 2));
        assert!(!is_key(&mut layer, 3));
    }

    #[test]
    fn audio_packets() {
        let mut a = AudioStream::new(7, 80);
        let mut arena = BytesMut::new();
        let mut out = Vec::new();
        for i in 0..3 {
            a.packet(i, &mut arena, &mut out);
        }
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].ts.wrapping_sub(out[0].ts), AUDIO_TS_STEP);
        assert_eq!(out[2].seq, out[0].seq.wrapping_add(2));
        assert!(out.iter().all(|p| p.payload.len() == 80));
        assert_eq!(Probe::read(&out[2].payload).unwrap().sent_us, 2);
    }
}
