//! A subscriber connection's own media output: forwarded RTP and its sender reports are
//! protected here with the connection's SRTP keys and queued straight into the room's send
//! batch, without `rtc`'s write pipeline (interceptors, message moves, one drain per packet).
//!
//! `rtc` still owns everything else of the connection: ICE, DTLS, incoming RTCP. The keys come
//! from the DTLS handshake (`RTCPeerConnection::local_srtp_keys`, see vendor/rtc/PATCH.md);
//! this context is the only writer of the downtracks' SSRCs, RTP and RTCP alike, so rollover
//! counters and SRTCP indexes stay consistent.

use super::congestion::{Congestion, EXT_LEN};
use crate::forward::srtp::{GCM_TAG_LEN, GcmSender, Rollover};
use crate::udp::{Path, SendBatch};
use bwe::Pacer;
use bytes::BytesMut;
use rtc::peer_connection::transport::SrtpSessionKeys;
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;
use std::time::{Duration, Instant};

/// Size of the fixed RTP header we send (no CSRCs; the transport-wide number's extension
/// follows it when the connection negotiated one).
pub const RTP_HEADER_LEN: usize = 12;
/// Size of a sender report without report blocks.
pub const SR_LEN: usize = 28;
/// How often each downtrack gets a sender report.
pub const SR_INTERVAL: Duration = Duration::from_secs(1);

/// Why a packet could not be protected.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// `rtc`'s SRTP context refused the packet (rollover exhausted, cipher failure).
    #[error("srtp: {0}")]
    Srtp(#[from] rtc::shared::error::Error),
    /// Our AES-GCM protection failed.
    #[error("srtp: {0}")]
    Gcm(#[from] crate::forward::srtp::SrtpError),
    /// No crypto provider is compiled in.
    #[error("crypto provider: {0}")]
    Crypto(String),
}

/// SRTP output of one subscriber connection.
pub struct Egress {
    /// AEAD_AES_128_GCM (what browsers negotiate): protected in place, no allocation.
    gcm: Option<GcmSender>,
    /// `rtc`'s context: SRTCP always, RTP for the other profiles.
    context: Context,
    /// Where the connection's ICE-selected pair points.
    pub remote: Path,
    /// The master key it was made from (a new DTLS handshake brings a new one).
    master_key: Vec<u8>,
    /// Transport-wide numbering and the connection's bandwidth estimate.
    pub cc: Congestion,
    /// Spreads what the connection sends at its estimate (only once it is estimated): a
    /// keyframe's burst waits here instead of in the subscriber's bottleneck.
    pub pacer: Pacer<BytesMut>,
    /// A packet went into the pacer's empty queue since the room last looked: the room
    /// schedules the connection (see `probing.rs`).
    pub newly_queued: bool,
}

/// The pacing rate as a multiple of the estimate: a little above, so media the allocation fit
/// into the estimate never queues for long, while bursts are spread.
pub const PACING_FACTOR: f64 = 1.1;
/// The pacer's queue drains within this (faster than the pacing rate when it must).
pub const PACER_MAX_DELAY: Duration = Duration::from_millis(250);

impl Egress {
    /// True when `keys` are the ones this output already uses: a connection that comes back
    /// from `disconnected` keeps its context (a fresh one would restart the SRTCP index,
    /// which the receiver's replay window rejects).
    pub fn same_keys(&self, keys: &SrtpSessionKeys) -> bool {
        self.master_key == keys.master_key
    }

    /// A fresh sending context from the handshake's keys.
    pub fn new(keys: &SrtpSessionKeys, remote: Path) -> Result<Self, EgressError> {
        let provider = rtc::crypto::default_provider().map_err(|e| EgressError::Crypto(e.to_string()))?;
        let context = Context::new(&keys.master_key, &keys.master_salt, keys.profile, None, None, provider.crypto())?;
        let gcm = match keys.profile {
            ProtectionProfile::AeadAes128Gcm => {
                Some(GcmSender::new(provider.crypto(), &keys.master_key, &keys.master_salt)?)
            }
            _ => None,
        };
        let pacer = Pacer::new(super::congestion::BWE.start.mul_f64(PACING_FACTOR), PACER_MAX_DELAY);
        Ok(Egress {
            gcm,
            context,
            remote,
            master_key: keys.master_key.clone(),
            cc: Congestion::new(),
            pacer,
            newly_queued: false,
        })
    }

    /// What `send_rtp` reads of this output, for prefetching it (see `fanout::warm`): where
    /// its own fields lie (the ones it reads on the AES-GCM path, and `master_key`, where the
    /// compiler likely keeps what tells an `Option<Egress>` apart), and where the AES-GCM key
    /// schedule lies and its size (zero for `rtc`'s own contexts).
    pub fn hot_spans(&self) -> ([usize; 3], (usize, usize)) {
        use crate::forward::prefetch::addr;
        let fields = [addr(&self.gcm), addr(&self.remote), addr(&self.master_key)];
        (fields, self.gcm.as_ref().map(GcmSender::key_span).unwrap_or_default())
    }

    /// Protects one RTP packet and queues it: `payload` is copied behind a fresh header (with
    /// the transport-wide number when the connection negotiated it) into the batch's buffer,
    /// then `rewrite` may patch the copy in place (VP8 descriptor). `rollover` is the stream's
    /// counter (for the AES-GCM path). Returns the payload bytes sent, or `Ok(None)` when
    /// `rewrite` refused the payload.
    pub fn send_rtp(
        &mut self,
        header: &rtc::rtp::Header,
        payload: &[u8],
        rewrite: impl FnOnce(&mut [u8]) -> bool,
        rollover: &mut Rollover,
        sends: &mut SendBatch,
        now: std::time::Instant,
    ) -> Result<Option<usize>, EgressError> {
        self.send(header, payload, rewrite, rollover, sends, now, true)
    }

    /// [`Egress::send_rtp`], through the pacer or (`paced` false: probe padding, sent only
    /// while nothing waits) around it.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        header: &rtc::rtp::Header,
        payload: &[u8],
        rewrite: impl FnOnce(&mut [u8]) -> bool,
        rollover: &mut Rollover,
        sends: &mut SendBatch,
        now: std::time::Instant,
        paced: bool,
    ) -> Result<Option<usize>, EgressError> {
        let ext = self.cc.stamp();
        let header_len = RTP_HEADER_LEN + ext.map_or(0, |_| EXT_LEN);
        let buf = sends.builder(header_len + payload.len() + GCM_TAG_LEN);
        let mut fixed =
            rtp_header(header.marker, header.payload_type, header.sequence_number, header.timestamp, header.ssrc);
        if header.padding {
            fixed[0] |= 0x20;
        }
        if let Some(ext) = ext {
            fixed[0] |= 0x10;
            buf.extend_from_slice(&fixed);
            buf.extend_from_slice(&ext);
        } else {
            buf.extend_from_slice(&fixed);
        }
        buf.extend_from_slice(payload);
        if !rewrite(&mut buf[header_len..]) {
            sends.discard();
            if ext.is_some() {
                self.cc.unstamp();
            }
            return Ok(None);
        }
        let protected = match self.gcm.as_mut() {
            Some(gcm) => {
                let roc = rollover.roc(header.sequence_number);
                gcm.protect(buf, header_len, header.ssrc, roc, header.sequence_number).map_err(EgressError::from)
            }
            // `rtc`'s context keeps its own rollover counters (and reads the header from the bytes)
            None => match self.context.encrypt_rtp(buf) {
                Ok(p) => {
                    buf.clear();
                    buf.extend_from_slice(&p);
                    Ok(())
                }
                Err(e) => Err(e.into()),
            },
        };
        if let Err(e) = protected {
            sends.discard();
            if ext.is_some() {
                self.cc.unstamp();
            }
            return Err(e);
        }
        let size = buf.len();
        if ext.is_none() {
            sends.commit(self.remote);
        } else if (!paced && self.pacer.is_empty()) || self.pacer.try_pass(size, now) {
            self.cc.on_sent(size, now);
            sends.commit(self.remote);
        } else {
            self.newly_queued |= self.pacer.is_empty();
            self.pacer.push(sends.detach(), size, now);
        }
        Ok(Some(payload.len()))
    }

    /// Hands the paced packets due at `now` to the batch, recording them as sent; returns how
    /// long each waited, for the delay metric.
    pub fn release(&mut self, now: Instant, sends: &mut SendBatch, mut waited: impl FnMut(Duration)) {
        while let Some((data, w)) = self.pacer.pop(now) {
            self.cc.on_sent(data.len(), now);
            sends.push(data, self.remote);
            waited(w);
        }
    }

    /// Follows the estimate with the pacing rate.
    pub fn set_pacing_rate(&mut self) {
        self.pacer.set_rate(self.cc.bwe.estimate().mul_f64(PACING_FACTOR));
    }

    /// Protects one padding-only RTP packet (RFC 3550 5.1: `len` bytes of padding, the last
    /// holding the count) and queues it: a bandwidth probe, which the receiver counts in its
    /// transport-wide feedback and discards.
    pub fn send_padding(
        &mut self,
        (payload_type, sequence_number, timestamp, ssrc): (u8, u16, u32, u32),
        len: u8,
        rollover: &mut Rollover,
        sends: &mut SendBatch,
        now: std::time::Instant,
    ) -> Result<(), EgressError> {
        let header = rtc::rtp::Header {
            version: 2,
            padding: true,
            payload_type,
            sequence_number,
            timestamp,
            ssrc,
            ..Default::default()
        };
        let len = len.max(1);
        let mut padding = [0u8; 255];
        padding[usize::from(len) - 1] = len;
        self.send(&header, &padding[..usize::from(len)], |_| true, rollover, sends, now, false)?;
        Ok(())
    }

    /// Protects one compound RTCP packet and queues it.
    pub fn send_rtcp(&mut self, packet: &[u8], sends: &mut SendBatch) -> Result<(), EgressError> {
        let protected = self.context.encrypt_rtcp(packet)?;
        sends.push(protected, self.remote);
        Ok(())
    }
}

/// The 12-byte RTP header of a forwarded packet: version 2, no padding, no extension, no CSRC.
pub fn rtp_header(marker: bool, payload_type: u8, seq: u16, ts: u32, ssrc: u32) -> [u8; RTP_HEADER_LEN] {
    let mut h = [0u8; RTP_HEADER_LEN];
    h[0] = 0x80;
    h[1] = (u8::from(marker) << 7) | (payload_type & 0x7f);
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

/// What a downtrack has sent, for its sender reports (RFC 3550 6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SentStats {
    /// Packets sent (wrapping, as in the report).
    pub packets: u32,
    /// Payload octets sent (wrapping).
    pub octets: u32,
    /// RTP timestamp of the last packet sent and when it left.
    pub last: Option<(u32, Instant)>,
}

impl SentStats {
    /// Counts one packet.
    pub fn on_sent(&mut self, ts: u32, payload_len: usize, now: Instant) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        // the timestamp clock only moves forward with new frames; keep the first send time of a frame
        if self.last.is_none_or(|(last_ts, _)| last_ts != ts) {
            self.last = Some((ts, now));
        }
    }

    /// The sender report at `now` (wall clock `ntp`, 32.32 fixed point): the RTP time is the
    /// last packet's timestamp advanced by the time since it was sent. `None` before any packet.
    pub fn report(&self, ssrc: u32, now: Instant, ntp: u64, clock_rate: u32) -> Option<[u8; SR_LEN]> {
        let (ts, at) = self.last?;
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        let rtp = ts.wrapping_add((elapsed * f64::from(clock_rate)) as u32);
        let mut b = [0u8; SR_LEN];
        b[0] = 0x80; // V=2, P=0, RC=0
        b[1] = 200; // SR
        b[2..4].copy_from_slice(&((SR_LEN / 4 - 1) as u16).to_be_bytes());
        b[4..8].copy_from_slice(&ssrc.to_be_bytes());
        b[8..16].copy_from_slice(&ntp.to_be_bytes());
        b[16..20].copy_from_slice(&rtp.to_be_bytes());
        b[20..24].copy_from_slice(&self.packets.to_be_bytes());
        b[24..28].copy_from_slice(&self.octets.to_be_bytes());
        Some(b)
    }
}

/// Wall-clock time as a 32.32 NTP timestamp.
pub fn ntp_now() -> u64 {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let frac = ((u64::from(d.subsec_nanos())) << 32) / 1_000_000_000;
    ((d.as_secs() + NTP_UNIX_OFFSET) << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::shared::marshal::{Marshal, Unmarshal};

    #[test]
    fn header_matches_rtc_marshal() {
        // columns: marker, pt, seq, ts, ssrc
        let rows: &[(bool, u8, u16, u32, u32)] = &[
            (false, 96, 0, 0, 0),
            (true, 111, 65535, u32::MAX, 0xdead_beef),
            (true, 127, 1, 90_000, 1),
            (false, 102, 4242, 123_456_789, 0x8000_0000),
        ];
        for &(marker, pt, seq, ts, ssrc) in rows {
            let h = rtc::rtp::Header {
                version: 2,
                marker,
                payload_type: pt,
                sequence_number: seq,
                timestamp: ts,
                ssrc,
                ..Default::default()
            };
            let want = h.marshal().expect("marshal");
            assert_eq!(&rtp_header(marker, pt, seq, ts, ssrc)[..], &want[..], "{h:?}");
        }
    }

    #[test]
    fn sender_report_parses_and_extrapolates() {
        let t0 = Instant::now();
        let mut s = SentStats::default();
        assert!(s.report(7, t0, 1, 90_000).is_none(), "no report before the first packet");
        s.on_sent(1000, 1000, t0);
        s.on_sent(1000, 500, t0 + Duration::from_millis(5)); // same frame: send time kept
        s.on_sent(4000, 200, t0 + Duration::from_millis(33));
        // columns: report time after t0 (ms), expected rtp time
        let rows: &[(u64, u32)] = &[(33, 4000), (133, 4000 + 9000), (1033, 4000 + 90_000)];
        for &(ms, want_rtp) in rows {
            let b = s.report(0x1234, t0 + Duration::from_millis(ms), 0x0102_0304_0506_0708, 90_000).expect("report");
            let sr = rtc::rtcp::sender_report::SenderReport::unmarshal(&mut &b[..]).expect("valid SR");
            assert_eq!(sr.ssrc, 0x1234);
            assert_eq!(sr.ntp_time, 0x0102_0304_0506_0708);
            assert_eq!(sr.rtp_time, want_rtp, "at {ms} ms");
            assert_eq!(sr.packet_count, 3);
            assert_eq!(sr.octet_count, 1700);
            assert!(sr.reports.is_empty());
        }
    }

    #[test]
    fn counters_wrap() {
        let t0 = Instant::now();
        let mut s = SentStats { packets: u32::MAX, octets: u32::MAX - 9, last: None };
        s.on_sent(1, 20, t0);
        assert_eq!((s.packets, s.octets), (0, 10));
    }

    #[test]
    fn protected_packets_decrypt_with_the_peer_keys() {
        use rtc::srtp::protection_profile::ProtectionProfile;
        for profile in [ProtectionProfile::AeadAes128Gcm, ProtectionProfile::Aes128CmHmacSha1_80] {
            let keys = SrtpSessionKeys {
                profile,
                master_key: vec![3; profile.key_len()],
                master_salt: vec![5; profile.salt_len()],
            };
            let remote = Path::Udp("127.0.0.1:5000".parse().unwrap());
            let mut egress = Egress::new(&keys, remote).expect("context");
            assert!(egress.same_keys(&keys));
            let rekeyed = SrtpSessionKeys { master_key: vec![4; profile.key_len()], ..keys.clone() };
            assert!(!egress.same_keys(&rekeyed), "a new handshake's keys need a new context");
            let provider = rtc::crypto::default_provider().unwrap();
            let mut peer =
                Context::new(&keys.master_key, &keys.master_salt, profile, None, None, provider.crypto()).unwrap();
            let mut sends = SendBatch::new(8);
            let header = rtc::rtp::Header {
                version: 2,
                marker: true,
                payload_type: 96,
                sequence_number: 65535,
                timestamp: 9,
                ssrc: 77,
                ..Default::default()
            };
            let mut roc = Rollover::default();
            let sent = egress
                .send_rtp(
                    &header,
                    b"\x90\x80\x05payload",
                    |p| {
                        p[2] = 0x06;
                        true
                    },
                    &mut roc,
                    &mut sends,
                    Instant::now(),
                )
                .expect("protect");
            assert_eq!(sent, Some(10));
            let refused =
                egress.send_rtp(&header, b"x", |_| false, &mut roc, &mut sends, Instant::now()).expect("no error");
            assert_eq!(refused, None);
            let sr = SentStats { packets: 1, octets: 10, last: Some((9, Instant::now())) }
                .report(77, Instant::now(), 5, 90_000)
                .unwrap();
            egress.send_rtcp(&sr, &mut sends).expect("protect rtcp");
            let queued = sends.take_for_test();
            assert_eq!(queued.len(), 2);
            assert!(queued.iter().all(|(_, to)| Path::Udp(*to) == remote));
            let plain = peer.decrypt_rtp(&queued[0].0).expect("decrypts");
            let pkt = rtc::rtp::Packet::unmarshal(&mut &plain[..]).unwrap();
            assert_eq!((pkt.header.sequence_number, pkt.header.ssrc, pkt.header.marker), (65535, 77, true));
            assert_eq!(&pkt.payload[..], b"\x90\x80\x06payload", "rewritten in place");
            let rtcp = peer.decrypt_rtcp(&queued[1].0).expect("rtcp decrypts");
            assert_eq!(&rtcp[..], &sr[..]);
        }
    }
}
