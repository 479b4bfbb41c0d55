//! Analysis of one received track, packet by packet: loss, duplicates and reordering with
//! 16-bit wrap-around, timestamp order, VP8 keyframes and picture ids, simulcast layer
//! switches (from the probe each synthetic packet carries), latency and jitter. Pure code.

use crate::probe::Probe;
use crate::stats::{LayerSwitch, TrackStats};
use crate::vp8;
use signaling::protocol::TrackKind;

/// Sequence numbers remembered for duplicate detection.
const WINDOW: u64 = 1024;
/// Longest list kept in [`TrackStats::widths`] and [`TrackStats::switches`].
const MAX_LOG: usize = 64;

/// The fields of a received RTP packet the analysis needs.
#[derive(Debug, Clone, Copy)]
pub struct RtpView<'a> {
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub ts: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload.
    pub payload: &'a [u8],
}

/// State of the frame being received.
#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    open: bool,
    bytes: usize,
    header: Option<vp8::FrameHeader>,
}

/// Receive-side analysis of one track; its counters are in [`RecvTrack::stats`].
#[derive(Debug, Clone)]
pub struct RecvTrack {
    /// The counters.
    pub stats: TrackStats,
    clock_rate: u32,
    started: bool,
    highest: Option<u64>,
    seen: [u64; (WINDOW / 64) as usize],
    last_ts: u32,
    /// Arrival (UNIX µs) of the packet that set `last_ts`.
    last_ts_arrival_us: u64,
    last_picture: Option<u16>,
    frame: Frame,
    transit: Option<i64>,
    jitter: f64,
}

impl RecvTrack {
    /// Analysis of a track of `kind` whose stats are `stats`.
    pub fn new(stats: TrackStats) -> Self {
        let clock_rate = match stats.kind {
            TrackKind::Audio => 48_000,
            TrackKind::Video => 90_000,
        };
        RecvTrack {
            stats,
            clock_rate,
            started: false,
            highest: None,
            seen: [0; (WINDOW / 64) as usize],
            last_ts: 0,
            last_ts_arrival_us: 0,
            last_picture: None,
            frame: Frame::default(),
            transit: None,
            jitter: 0.0,
        }
    }

    /// Highest extended sequence number received (the first packet's is in 2^16..2^17);
    /// `None` before the first analyzed packet.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Interarrival jitter (RFC 3550 6.4.1), RTP timestamp units.
    pub fn jitter_units(&self) -> u32 {
        self.jitter as u32
    }

    /// True for a video track whose first keyframe has not arrived yet (a decoder would ask for one).
    pub fn awaiting_keyframe(&self) -> bool {
        self.stats.kind == TrackKind::Video && !self.started
    }

    fn mark(&mut self, ext: u64) -> bool {
        let i = (ext % WINDOW) as usize;
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        let was = self.seen[word] & bit != 0;
        self.seen[word] |= bit;
        was
    }

    fn clear(&mut self, ext: u64) {
        let i = (ext % WINDOW) as usize;
        self.seen[i / 64] &= !(1u64 << (i % 64));
    }

    /// Records a sender report for this track that arrived at `arrival_us` (UNIX µs): counted,
    /// and its RTP time compared with the newest received timestamp advanced to that instant.
    pub fn on_sender_report(&mut self, rtp_time: u32, packet_count: u32, arrival_us: u64) {
        let s = &mut self.stats;
        s.sender_reports += 1;
        s.sr_packet_count = packet_count;
        if self.highest.is_none() {
            return;
        }
        let rate = f64::from(self.clock_rate);
        let since = arrival_us.saturating_sub(self.last_ts_arrival_us) as f64 / 1e6;
        let expected = self.last_ts.wrapping_add((since * rate) as u32);
        let error_ms = f64::from(rtp_time.wrapping_sub(expected) as i32).abs() * 1000.0 / rate;
        s.sr_max_error_ms = s.sr_max_error_ms.max(error_ms);
    }

    /// Records one packet that arrived at `arrival_us` (UNIX microseconds).
    /// Accounts one sequence number: duplicates, reordering, losses. `Some((gap, first))` for
    /// a packet in order (after `gap` missing numbers; `first`: the stream's first), `None`
    /// for one that came late or twice.
    fn sequence(&mut self, seq: u16) -> Option<(u64, bool)> {
        let ext = match self.highest {
            None => u64::from(seq) + (1 << 16),
            Some(h) => extend(h, seq),
        };
        let highest = self.highest.unwrap_or(ext - 1);
        if ext <= highest {
            if highest - ext >= WINDOW {
                self.stats.out_of_order += 1;
            } else if self.mark(ext) {
                self.stats.duplicates += 1;
            } else {
                self.stats.out_of_order += 1;
                self.stats.lost = self.stats.lost.saturating_sub(1);
            }
            return None;
        }
        // in order (possibly after a gap)
        let gap = ext - highest - 1;
        if self.highest.is_some() {
            self.stats.lost += gap;
        }
        for missing in (highest + 1).max(ext.saturating_sub(WINDOW))..ext {
            self.clear(missing);
        }
        self.clear(ext);
        self.mark(ext);
        let first = self.highest.is_none();
        self.highest = Some(ext);
        Some((gap, first))
    }

    pub fn on_packet(&mut self, p: RtpView<'_>, arrival_us: u64) {
        if p.payload.is_empty() {
            // padding only: it fills its sequence number, nothing else
            self.stats.padding += 1;
            if self.started || self.stats.kind != TrackKind::Video {
                self.sequence(p.seq);
            }
            return;
        }
        self.stats.arrivals.record(arrival_us);
        let s = &mut self.stats;
        s.packets += 1;
        s.bytes += p.payload.len() as u64;
        let video = s.kind == TrackKind::Video;
        let desc = if video {
            match vp8::parse_descriptor(p.payload) {
                Ok(d) => Some(d),
                Err(_) => {
                    s.malformed += 1;
                    return;
                }
            }
        } else {
            None
        };
        let header = match desc.filter(|d| d.frame_start()) {
            Some(d) => match vp8::parse_frame_header(&p.payload[d.len..]) {
                Ok(h) => Some(h),
                Err(_) => {
                    s.malformed += 1;
                    s.bad_keyframes += u64::from(p.payload[d.len] & 1 == 0);
                    None
                }
            },
            None => None,
        };
        let keyframe_start = header.is_some_and(|h| h.keyframe);
        if video && !self.started {
            if !keyframe_start {
                s.before_keyframe += 1;
                return;
            }
            self.started = true;
        }
        let probe_at = desc.map_or(0, |d| d.len) + header.map_or(0, |h| h.len);
        let probe = p.payload.get(probe_at..).and_then(Probe::read);
        if let Some(pr) = probe {
            s.latency.record(arrival_us.saturating_sub(pr.sent_us));
            s.newest_sent_us = s.newest_sent_us.max(pr.sent_us);
        }
        self.update_jitter(p.ts, arrival_us);

        let Some((gap, first)) = self.sequence(p.seq) else { return };
        let s = &mut self.stats;
        if !first && (p.ts.wrapping_sub(self.last_ts) as i32) < 0 {
            s.ts_backwards += 1;
        }
        let ts_delta = i64::from(p.ts.wrapping_sub(self.last_ts) as i32);
        if first || p.ts != self.last_ts {
            self.last_ts_arrival_us = arrival_us;
        }
        self.last_ts = p.ts;

        let picture = desc.and_then(|d| d.picture_id.filter(|_| d.long_picture_id));
        let picture_delta = match (picture, self.last_picture) {
            (Some(now), Some(before)) => {
                Some(now.wrapping_sub(before).wrapping_add(vp8::PICTURE_ID_MODULO) % vp8::PICTURE_ID_MODULO)
            }
            _ => None,
        };
        if let Some(layer) = probe.map(|pr| pr.layer)
            && s.layer != Some(layer)
        {
            if s.switches.len() < MAX_LOG {
                s.switches.push(LayerSwitch {
                    from: s.layer,
                    to: layer,
                    at_keyframe: keyframe_start,
                    seq_delta: if first { 0 } else { (gap + 1) as i64 },
                    picture_delta,
                    ts_delta: if first { 0 } else { ts_delta },
                });
            }
            s.layer = Some(layer);
        }
        if let Some(d) = desc {
            self.on_vp8(d, header, picture_delta, p);
        }
    }

    fn on_vp8(&mut self, d: vp8::Descriptor, header: Option<vp8::FrameHeader>, delta: Option<u16>, p: RtpView<'_>) {
        let s = &mut self.stats;
        let data = p.payload.len() - d.len;
        if d.frame_start() {
            if self.frame.open {
                s.incomplete_frames += 1;
                self.finish_frame();
            }
            let s = &mut self.stats;
            s.frames += 1;
            if delta.is_some_and(|d| d != 1) {
                s.picture_id_jumps += 1;
            }
            if let Some(pid) = d.picture_id {
                self.last_picture = Some(pid);
            }
            self.frame = Frame { open: true, bytes: data, header };
        } else if self.frame.open {
            self.frame.bytes += data;
        }
        if p.marker && self.frame.open {
            self.finish_frame();
        }
    }

    fn finish_frame(&mut self) {
        let f = std::mem::take(&mut self.frame);
        let Some(h) = f.header.filter(|h| h.keyframe) else { return };
        let s = &mut self.stats;
        s.keyframes += 1;
        if !h.is_valid(f.bytes) {
            s.bad_keyframes += 1;
            return;
        }
        s.size = h.size;
        if let Some((w, _)) = h.size
            && s.widths.last() != Some(&w)
            && s.widths.len() < MAX_LOG
        {
            s.widths.push(w);
        }
    }

    fn update_jitter(&mut self, ts: u32, arrival_us: u64) {
        let arrival = (u128::from(arrival_us) * u128::from(self.clock_rate) / 1_000_000) as u32;
        let transit = i64::from(arrival.wrapping_sub(ts) as i32);
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
            self.stats.jitter_ms = self.jitter * 1000.0 / f64::from(self.clock_rate);
        }
        self.transit = Some(transit);
    }
}

/// Extends a 16-bit sequence number to the value nearest to `reference`.
pub fn extend(reference: u64, seq: u16) -> u64 {
    let diff = u64::from(seq.wrapping_sub(reference as u16));
    if diff < 1 << 15 { reference + diff } else { reference.saturating_sub((1 << 16) - diff) }
}

#[cfg(test)]
#[path = "recv_tests.rs"]
mod tests;
