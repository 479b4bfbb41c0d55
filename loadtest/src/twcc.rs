//! Transport-wide congestion control feedback from the receiving side (the server estimates
//! each subscriber's downlink from it): arrivals of packets carrying the transport-wide
//! sequence number extension, reported in TWCC packets every [`INTERVAL`].

use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, RecvDelta, StatusChunkTypeTcc, StatusVectorChunk, SymbolSizeTypeTcc, SymbolTypeTcc,
    TransportLayerCc,
};
use std::time::{Duration, Instant};

/// How often feedback is sent (as Chrome does, about every 50-100 ms).
pub const INTERVAL: Duration = Duration::from_millis(50);

/// The header extension's URI in an SDP `a=extmap` line.
pub const URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// The id an SDP gives the transport-wide extension.
pub fn ext_id_from_sdp(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("a=extmap:")?;
        let (id, uri) = rest.split_once(' ')?;
        let id = id.split('/').next()?.parse::<u8>().ok()?;
        (uri.trim() == URI).then_some(id)
    })
}

/// The 16-bit value of one-byte-header extension `id` (RFC 8285) in a raw RTP header.
fn one_byte_extension(p: &[u8], id: u8) -> Option<u16> {
    if p.len() < 12 || p[0] & 0x10 == 0 {
        return None;
    }
    let at = 12 + 4 * usize::from(p[0] & 0x0f);
    let profile = p.get(at..at + 2)?;
    if profile != [0xbe, 0xde] {
        return None;
    }
    let words = usize::from(u16::from_be_bytes([*p.get(at + 2)?, *p.get(at + 3)?]));
    let block = p.get(at + 4..at + 4 + 4 * words)?;
    let mut i = 0;
    while i < block.len() {
        let b = block[i];
        if b == 0 {
            i += 1; // padding
            continue;
        }
        let (eid, len) = (b >> 4, usize::from(b & 0x0f) + 1);
        if eid == 15 {
            return None;
        }
        let data = block.get(i + 1..i + 1 + len)?;
        if eid == id && len >= 2 {
            return Some(u16::from_be_bytes([data[0], data[1]]));
        }
        i += 1 + len;
    }
    None
}

/// Arrivals not reported yet, and what to report next.
#[derive(Debug, Default)]
pub struct TwccRecorder {
    /// The extension id (from the offer).
    pub ext_id: Option<u8>,
    base: Option<Instant>,
    arrivals: Vec<(u16, i64)>,
    next_seq: Option<u16>,
    fb_count: u8,
    next_due: Option<Instant>,
}

impl TwccRecorder {
    /// Records a packet arriving at `at`, if it carries the extension.
    pub fn on_packet(&mut self, header: &rtc::rtp::Header, at: Instant) {
        let Some(id) = self.ext_id else { return };
        let Some(ext) = header.get_extension(id) else { return };
        let [hi, lo, ..] = ext[..] else { return };
        let base = *self.base.get_or_insert(at);
        self.arrivals.push((u16::from_be_bytes([hi, lo]), at.saturating_duration_since(base).as_micros() as i64));
        self.next_due.get_or_insert(at + INTERVAL);
    }

    /// Records a packet arriving at `at` from its raw RTP header (`header`: the fixed header,
    /// CSRCs and extensions), for packets decrypted outside `rtc`.
    pub fn on_raw_header(&mut self, header: &[u8], at: Instant) {
        let Some(id) = self.ext_id else { return };
        let Some(seq) = one_byte_extension(header, id) else { return };
        let base = *self.base.get_or_insert(at);
        self.arrivals.push((seq, at.saturating_duration_since(base).as_micros() as i64));
        self.next_due.get_or_insert(at + INTERVAL);
    }

    /// When feedback is next due.
    pub fn next_due(&self) -> Option<Instant> {
        self.next_due
    }

    /// The feedback due at `now`, if any: every number from the last reported up to the
    /// highest arrived, with arrivals or as lost.
    pub fn build(&mut self, now: Instant, sender_ssrc: u32, media_ssrc: u32) -> Option<TransportLayerCc> {
        if self.next_due.is_none_or(|t| t > now) || self.arrivals.is_empty() {
            return None;
        }
        self.next_due = Some(now + INTERVAL);
        let first = self.next_seq.unwrap_or_else(|| self.arrivals.iter().map(|a| a.0).min().unwrap_or(0));
        // numbers before `first` were reported already (or are too old)
        self.arrivals.retain(|a| a.0.wrapping_sub(first) < 0x8000);
        self.arrivals.sort_by_key(|a| a.0.wrapping_sub(first));
        self.arrivals.dedup_by_key(|a| a.0);
        let count = self.arrivals.last()?.0.wrapping_sub(first) + 1;
        let reference = self.arrivals.iter().map(|a| a.1).min().unwrap_or(0) / 64_000;
        let mut reported = reference * 64_000;
        let mut symbols = Vec::with_capacity(usize::from(count));
        let mut deltas = Vec::new();
        let mut it = self.arrivals.iter().peekable();
        for off in 0..count {
            let seq = first.wrapping_add(off);
            match it.peek() {
                Some(&&(s, at)) if s == seq => {
                    it.next();
                    let d = ((at - reported) / 250).clamp(i64::from(i16::MIN), i64::from(i16::MAX)) * 250;
                    reported += d;
                    let t = if (0..=63_750).contains(&d) {
                        SymbolTypeTcc::PacketReceivedSmallDelta
                    } else {
                        SymbolTypeTcc::PacketReceivedLargeDelta
                    };
                    symbols.push(t);
                    deltas.push(RecvDelta { type_tcc_packet: t, delta: d });
                }
                _ => symbols.push(SymbolTypeTcc::PacketNotReceived),
            }
        }
        let packet_chunks = symbols
            .chunks(7)
            .map(|c| {
                PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                    type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                    symbol_size: SymbolSizeTypeTcc::TwoBit,
                    symbol_list: c.to_vec(),
                })
            })
            .collect();
        self.arrivals.clear();
        self.next_seq = Some(first.wrapping_add(count));
        let fb = TransportLayerCc {
            sender_ssrc,
            media_ssrc,
            base_sequence_number: first,
            packet_status_count: count,
            reference_time: (reference as u32) & 0x00ff_ffff,
            fb_pkt_count: self.fb_count,
            packet_chunks,
            recv_deltas: deltas,
        };
        self.fb_count = self.fb_count.wrapping_add(1);
        Some(fb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::shared::marshal::{Marshal, Unmarshal};

    #[test]
    fn raw_headers() {
        let fixed = |x: bool| {
            let mut h = vec![0x80u8, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
            if x {
                h[0] |= 0x10;
            }
            h
        };
        let with = |ext: &[u8]| [fixed(true), ext.to_vec()].concat();
        // columns: header, id asked, expected
        let rows: Vec<(Vec<u8>, u8, Option<u16>)> = vec![
            (fixed(false), 3, None),
            (with(&[0xbe, 0xde, 0, 1, 0x31, 0x12, 0x34, 0]), 3, Some(0x1234)),
            (with(&[0xbe, 0xde, 0, 1, 0x31, 0x12, 0x34, 0]), 4, None),
            // mid (id 1, 2 bytes) first, padding, then id 3
            (with(&[0xbe, 0xde, 0, 2, 0x11, b'a', b'b', 0, 0x31, 0xab, 0xcd, 0]), 3, Some(0xabcd)),
            // two-byte-header profile: not read
            (with(&[0x10, 0x00, 0, 1, 3, 2, 0x12, 0x34]), 3, None),
            // cut off
            (with(&[0xbe, 0xde, 0, 2, 0x31, 0x12]), 3, None),
        ];
        for (h, id, want) in rows {
            assert_eq!(one_byte_extension(&h, id), want, "{h:02x?} id {id}");
        }
    }

    #[test]
    fn extension_id_from_an_offer() {
        let sdp = "v=0\r\na=extmap:2 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n";
        assert_eq!(ext_id_from_sdp(sdp), Some(5));
        assert_eq!(ext_id_from_sdp("v=0\r\n"), None);
    }

    #[test]
    fn feedback_reports_arrivals_and_losses() {
        let t0 = Instant::now();
        let mut r = TwccRecorder { ext_id: Some(3), ..Default::default() };
        let header = |seq: u16| {
            let mut h = rtc::rtp::Header { version: 2, ssrc: 9, ..Default::default() };
            h.set_extension(3, bytes::Bytes::copy_from_slice(&seq.to_be_bytes())).unwrap();
            h
        };
        // 10, 11 arrive, 12 lost, 13 arrives 100 ms later (a large delta), 65535 is old
        r.on_packet(&header(10), t0);
        r.on_packet(&header(11), t0 + Duration::from_millis(1));
        r.on_packet(&header(13), t0 + Duration::from_millis(101));
        assert!(r.build(t0 + Duration::from_millis(10), 1, 9).is_none(), "not due yet");
        let fb = r.build(t0 + INTERVAL, 1, 9).expect("due");
        let wire = fb.marshal().unwrap();
        let parsed = TransportLayerCc::unmarshal(&mut &wire[..]).unwrap();
        assert_eq!((parsed.base_sequence_number, parsed.packet_status_count), (10, 4));
        let deltas: Vec<i64> = parsed.recv_deltas.iter().map(|d| d.delta).collect();
        assert_eq!(deltas, [0, 1000, 100_000]);
        r.on_packet(&header(65535), t0 + Duration::from_millis(120));
        r.on_packet(&header(14), t0 + Duration::from_millis(121));
        let fb = r.build(t0 + Duration::from_secs(1), 1, 9).expect("due");
        assert_eq!((fb.base_sequence_number, fb.packet_status_count), (14, 1), "reported and older numbers left out");
    }
}
