//! Congestion control of one subscriber connection: every packet the room sends it (media,
//! retransmissions, probe padding) carries a transport-wide sequence number stamped at send
//! time, the subscriber's transport-wide feedback (TWCC) comes back, and the estimator of
//! `bwe` turns both into the rate the room allocates among the subscriber's tracks.

use bwe::feedback::{Feedback, Report};
use bwe::{BweConfig, SendSideBwe};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::{PacketStatusChunk, SymbolTypeTcc, TransportLayerCc};
use std::time::Instant;

/// The header extension a subscriber must accept for its connection to be estimated.
pub const TRANSPORT_CC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Length of the one-byte-header extension block carrying the transport-wide number: the
/// 4-byte profile header, one element (1 + 2 bytes) and one byte of padding.
pub const EXT_LEN: usize = 8;

/// Padding bytes of one probe packet (the most an RTP padding count can say).
pub const PADDING_LEN: u8 = 255;

/// The estimator's bounds toward a subscriber. It starts high: a subscriber gets what its
/// tiles ask for until its feedback shows congestion (within about a second on a slow link);
/// probes climb back from there.
pub const BWE: BweConfig = BweConfig {
    start: bwe::Bitrate::mbps(10),
    min: bwe::Bitrate::kbps(100),
    max: bwe::Bitrate::mbps(50),
    // header, transport-wide extension, padding, AES-GCM tag
    padding: 12 + EXT_LEN + PADDING_LEN as usize + 16,
};

/// Unit of a TWCC reference time.
const REFERENCE_UNIT_US: i64 = 64_000;

/// The estimator and numbering of one subscriber connection.
#[derive(Debug)]
pub struct Congestion {
    /// The extension id the connection negotiated (`None`: not negotiated, or not known yet).
    pub ext_id: Option<u8>,
    /// The estimator.
    pub bwe: SendSideBwe,
    /// Reused for each feedback.
    feedback: Feedback,
    /// The next transport-wide number to stamp: ahead of the estimator's history while
    /// stamped packets wait in the pacer (they are recorded when they leave, in order).
    stamped: u16,
}

impl Default for Congestion {
    fn default() -> Self {
        Self::new()
    }
}

impl Congestion {
    /// Not negotiated yet; the estimate starts at [`BWE`]`.start`.
    pub fn new() -> Self {
        Self { ext_id: None, bwe: SendSideBwe::new(BWE), feedback: Feedback::default(), stamped: 0 }
    }

    /// The extension block for the next packet, taking its number (`None` when the
    /// connection has no id). The packet is recorded by [`Congestion::on_sent`] when it
    /// leaves (packets leave in the order they were stamped), or its number given back with
    /// [`Congestion::unstamp`].
    pub fn stamp(&mut self) -> Option<[u8; EXT_LEN]> {
        let id = self.ext_id?;
        let seq = self.stamped.to_be_bytes();
        self.stamped = self.stamped.wrapping_add(1);
        Some([0xbe, 0xde, 0x00, 0x01, (id << 4) | 1, seq[0], seq[1], 0])
    }

    /// Gives back the number the last [`Congestion::stamp`] took (its packet was not sent).
    pub fn unstamp(&mut self) {
        self.stamped = self.stamped.wrapping_sub(1);
    }

    /// Records a stamped packet of `size` bytes leaving at `now`.
    pub fn on_sent(&mut self, size: usize, now: Instant) {
        self.bwe.on_sent(size, now);
        debug_assert!(self.stamped.wrapping_sub(self.bwe.next_seq()) < 0x8000, "recorded a packet never stamped");
    }

    /// Takes a TWCC packet the subscriber sent; false when it was malformed (its statuses and
    /// deltas disagree).
    pub fn on_twcc(&mut self, tcc: &TransportLayerCc, now: Instant) -> bool {
        let mut fb = std::mem::take(&mut self.feedback);
        let ok = twcc_to_feedback(tcc, &mut fb);
        if ok {
            self.bwe.on_feedback(&fb, now);
        }
        self.feedback = fb;
        ok
    }
}

/// The reports of a TWCC packet: one per sequence number it covers, with arrival times from
/// its reference time and deltas. False (and `out` partial) when deltas run out before the
/// received statuses do.
pub fn twcc_to_feedback(tcc: &TransportLayerCc, out: &mut Feedback) -> bool {
    out.reports.clear();
    let count = usize::from(tcc.packet_status_count);
    let mut arrival = i64::from(tcc.reference_time) * REFERENCE_UNIT_US;
    let mut deltas = tcc.recv_deltas.iter();
    let mut seq = tcc.base_sequence_number;
    let mut push = |symbol: SymbolTypeTcc, out: &mut Feedback| -> bool {
        if out.reports.len() >= count {
            return true;
        }
        let arrival_us = match symbol {
            SymbolTypeTcc::PacketReceivedSmallDelta | SymbolTypeTcc::PacketReceivedLargeDelta => {
                let Some(d) = deltas.next() else { return false };
                arrival += d.delta;
                Some(arrival)
            }
            SymbolTypeTcc::PacketNotReceived | SymbolTypeTcc::PacketReceivedWithoutDelta => None,
        };
        out.reports.push(Report { seq, arrival_us });
        seq = seq.wrapping_add(1);
        true
    };
    for chunk in &tcc.packet_chunks {
        match chunk {
            PacketStatusChunk::RunLengthChunk(c) => {
                for _ in 0..c.run_length {
                    if !push(c.packet_status_symbol, out) {
                        return false;
                    }
                }
            }
            PacketStatusChunk::StatusVectorChunk(c) => {
                for &s in &c.symbol_list {
                    if !push(s, out) {
                        return false;
                    }
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
        RecvDelta, RunLengthChunk, StatusChunkTypeTcc, StatusVectorChunk, SymbolSizeTypeTcc,
    };
    use rtc::shared::marshal::{Marshal, Unmarshal};

    fn delta(us: i64) -> RecvDelta {
        let t = if (0..=63_750).contains(&us) {
            SymbolTypeTcc::PacketReceivedSmallDelta
        } else {
            SymbolTypeTcc::PacketReceivedLargeDelta
        };
        RecvDelta { type_tcc_packet: t, delta: us }
    }

    #[test]
    fn twcc_packets_become_reports() {
        use SymbolTypeTcc::*;
        // 65534, 65535 received, 0 lost, 1 received, 2..=4 lost (run), 5 received late
        let tcc = TransportLayerCc {
            sender_ssrc: 1,
            media_ssrc: 2,
            base_sequence_number: 65534,
            packet_status_count: 8,
            reference_time: 10,
            fb_pkt_count: 0,
            packet_chunks: vec![
                PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                    type_tcc: StatusChunkTypeTcc::StatusVectorChunk,
                    symbol_size: SymbolSizeTypeTcc::TwoBit,
                    symbol_list: vec![
                        PacketReceivedSmallDelta,
                        PacketReceivedSmallDelta,
                        PacketNotReceived,
                        PacketReceivedSmallDelta,
                        PacketNotReceived,
                        PacketNotReceived,
                        PacketNotReceived,
                    ],
                }),
                PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                    type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                    packet_status_symbol: PacketReceivedLargeDelta,
                    run_length: 1,
                }),
            ],
            recv_deltas: vec![delta(1000), delta(250), delta(5000), delta(-2000)],
        };
        // through the wire and back, as the subscriber's packet arrives
        let wire = tcc.marshal().expect("marshal");
        let parsed = TransportLayerCc::unmarshal(&mut &wire[..]).expect("unmarshal");
        let mut fb = Feedback::default();
        assert!(twcc_to_feedback(&parsed, &mut fb));
        let base = 10 * REFERENCE_UNIT_US;
        let want = [
            (65534, Some(base + 1000)),
            (65535, Some(base + 1250)),
            (0, None),
            (1, Some(base + 6250)),
            (2, None),
            (3, None),
            (4, None),
            (5, Some(base + 4250)),
        ];
        let got: Vec<_> = fb.reports.iter().map(|r| (r.seq, r.arrival_us)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn deltas_missing_is_malformed() {
        let tcc = TransportLayerCc {
            base_sequence_number: 0,
            packet_status_count: 3,
            packet_chunks: vec![PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                type_tcc: StatusChunkTypeTcc::RunLengthChunk,
                packet_status_symbol: SymbolTypeTcc::PacketReceivedSmallDelta,
                run_length: 3,
            })],
            recv_deltas: vec![delta(10)],
            ..Default::default()
        };
        let mut fb = Feedback::default();
        assert!(!twcc_to_feedback(&tcc, &mut fb));
        let mut c = Congestion::new();
        assert!(!c.on_twcc(&tcc, Instant::now()));
        assert_eq!(c.bwe.feedbacks, 0, "a malformed feedback is not used");
    }

    #[test]
    fn extension_carries_the_next_number() {
        let t0 = Instant::now();
        let mut c = Congestion::new();
        assert_eq!(c.stamp(), None, "no id negotiated");
        c.ext_id = Some(5);
        assert_eq!(c.stamp(), Some([0xbe, 0xde, 0, 1, 0x51, 0, 0, 0]));
        assert_eq!(c.stamp(), Some([0xbe, 0xde, 0, 1, 0x51, 0, 1, 0]));
        c.on_sent(100, t0);
        c.on_sent(100, t0);
        assert_eq!(c.stamp(), Some([0xbe, 0xde, 0, 1, 0x51, 0, 2, 0]));
        c.unstamp();
        assert_eq!(c.stamp(), Some([0xbe, 0xde, 0, 1, 0x51, 0, 2, 0]), "a number given back is taken again");
        // the block parses as rtc reads it
        let mut pkt = crate::room::egress::rtp_header(false, 96, 1, 2, 3).to_vec();
        pkt[0] |= 0x10;
        c.unstamp();
        pkt.extend_from_slice(&c.stamp().unwrap());
        pkt.extend_from_slice(b"payload");
        let parsed = rtc::rtp::Packet::unmarshal(&mut &pkt[..]).expect("parses");
        assert_eq!(parsed.header.get_extension(5).as_deref(), Some(&[0u8, 2][..]));
        assert_eq!(&parsed.payload[..], b"payload");
    }
}
