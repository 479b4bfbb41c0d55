//! Inbound SRTP of a subscriber connection, decrypted by the engine itself: media packets of
//! streams the connection already opened skip `rtc`'s read pipeline (demux, interceptors,
//! per-packet messages), which costs several times the decryption. `rtc` keeps ICE, DTLS,
//! RTCP and the first packet of every stream (which opens its track).
//!
//! AEAD_AES_128_GCM (RFC 7714, what the server negotiates) is opened in place in the datagram's
//! own buffer, with the header read straight from the bytes and a replay window of fixed size
//! per stream: no allocation, copy or map lookup per packet. Any other profile goes through
//! `rtc`'s SRTP context. The crypto itself is `rtc`'s provider either way; this is written
//! independently of the server's sender so that a framing bug on one side cannot hide in both.

use crate::recv::extend;
use bytes::BytesMut;
use glue::replay::{ReplayWindow, Seen};
use glue::srtp_kdf::{LABEL_SRTP_ENCRYPTION, LABEL_SRTP_SALT, derive};
use rtc::crypto::{AeadAlgorithm, AeadCipher, RTCCrypto};
use rtc::peer_connection::transport::SrtpSessionKeys;
use rtc::shared::marshal::Unmarshal;
use rtc::srtp::context::Context;
use rtc::srtp::option::srtp_replay_protection;
use rtc::srtp::protection_profile::ProtectionProfile;

/// Sequence numbers the replay check remembers: as far back as the subscriber NACKs, so a
/// retransmission it asked for is never refused as a replay.
const REPLAY_WINDOW: usize = crate::reports::NACK_WINDOW as usize;
const REPLAY_WORDS: usize = REPLAY_WINDOW / 64;
const GCM_TAG_LEN: usize = 16;
const GCM_SALT_LEN: usize = 12;
/// Extended indexes start in the second 2^16 range, so a packet from just before the first one
/// received still has an index (rollover counter = index / 2^16 - 1).
const FIRST_RANGE: u64 = 1 << 16;

/// Why an inbound packet was dropped.
#[derive(Debug, thiserror::Error)]
pub enum SrtpInError {
    /// The RTP header does not parse.
    #[error("bad RTP header: {0}")]
    Header(String),
    /// Authentication failed, replay, or too short.
    #[error("SRTP: {0}")]
    Srtp(String),
    /// No context could be built from the keys.
    #[error("SRTP context: {0}")]
    Setup(String),
}

/// A decrypted packet: the header fields the subscriber uses and the whole clear packet.
pub struct Clear {
    /// Synchronisation source.
    pub ssrc: u32,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub ts: u32,
    /// Marker bit.
    pub marker: bool,
    /// Header and payload in the clear (tag removed).
    pub packet: BytesMut,
    /// Where the payload starts in `packet`.
    pub payload_at: usize,
    /// Where it ends (padding excluded).
    pub payload_end: usize,
}

impl Clear {
    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.packet[self.payload_at..self.payload_end]
    }
}

/// The fixed part of an RTP header and where the payload starts (RFC 3550 5.1, 5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    padding: bool,
    len: usize,
}

fn parse_header(p: &[u8]) -> Result<Header, SrtpInError> {
    let bad = |what: &str| SrtpInError::Header(format!("{what} ({} bytes)", p.len()));
    if p.len() < 12 {
        return Err(bad("shorter than 12 bytes"));
    }
    if p[0] >> 6 != 2 {
        return Err(bad("not RTP version 2"));
    }
    let mut len = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let Some(ext) = p.get(len + 2..len + 4) else { return Err(bad("extension header cut off")) };
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    if len > p.len() {
        return Err(bad("header longer than the packet"));
    }
    Ok(Header {
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        seq: u16::from_be_bytes([p[2], p[3]]),
        ts: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        marker: p[1] & 0x80 != 0,
        padding: p[0] & 0x20 != 0,
        len,
    })
}

/// Rollover counter and replay window of one inbound stream (RFC 3711 3.3.1, 3.3.2), over
/// extended indexes (rollover counter and sequence number).
#[derive(Debug, Clone)]
struct Replay {
    ssrc: u32,
    /// Where indexes are extended from until the first packet is accepted.
    first: u64,
    window: ReplayWindow<REPLAY_WORDS>,
}

impl Replay {
    fn new(ssrc: u32, seq: u16) -> Self {
        Replay { ssrc, first: FIRST_RANGE + u64::from(seq) - 1, window: ReplayWindow::default() }
    }

    /// The packet's extended index, or `None` for a replay or a packet older than the window.
    fn check(&self, seq: u16) -> Option<u64> {
        let index = extend(self.window.highest().unwrap_or(self.first), seq);
        (index >= FIRST_RANGE && self.window.check(index) == Seen::New).then_some(index)
    }

    /// Records an authenticated packet.
    fn accept(&mut self, index: u64) {
        self.window.accept(index);
    }
}

/// AEAD_AES_128_GCM opened in place.
struct GcmOpen {
    cipher: Box<dyn AeadCipher>,
    salt: [u8; GCM_SALT_LEN],
    streams: Vec<Replay>,
}

impl GcmOpen {
    fn new(crypto: &dyn RTCCrypto, keys: &SrtpSessionKeys) -> Result<Self, SrtpInError> {
        if keys.master_key.len() != 16 || keys.master_salt.len() != GCM_SALT_LEN {
            return Err(SrtpInError::Setup(format!(
                "AEAD_AES_128_GCM needs a 16-byte key and 12-byte salt, got {} / {}",
                keys.master_key.len(),
                keys.master_salt.len()
            )));
        }
        let (mut key, mut salt) = ([0u8; 16], [0u8; GCM_SALT_LEN]);
        let kdf = |label, out: &mut [u8]| derive(crypto, &keys.master_key, &keys.master_salt, label, out);
        kdf(LABEL_SRTP_ENCRYPTION, &mut key)
            .and_then(|()| kdf(LABEL_SRTP_SALT, &mut salt))
            .map_err(|e| SrtpInError::Setup(e.0))?;
        let cipher = crypto.new_aead(AeadAlgorithm::Aes128Gcm, &key).map_err(|e| SrtpInError::Setup(e.to_string()))?;
        Ok(GcmOpen { cipher, salt, streams: Vec::new() })
    }

    fn open(&mut self, mut packet: BytesMut) -> Result<Clear, SrtpInError> {
        let h = parse_header(&packet)?;
        if packet.len() < h.len + GCM_TAG_LEN {
            return Err(SrtpInError::Srtp(format!("{} bytes: no room for the tag", packet.len())));
        }
        let i = match self.streams.iter().position(|s| s.ssrc == h.ssrc) {
            Some(i) => i,
            None => {
                self.streams.push(Replay::new(h.ssrc, h.seq));
                self.streams.len() - 1
            }
        };
        let Some(index) = self.streams[i].check(h.seq) else {
            return Err(SrtpInError::Srtp(format!("ssrc {} seq {}: replayed or too old", h.ssrc, h.seq)));
        };
        let roc = (index >> 16) as u32 - 1;
        // RFC 7714 8.1: 00 00 || SSRC || ROC || SEQ, XORed with the session salt
        let mut iv = [0u8; GCM_SALT_LEN];
        iv[2..6].copy_from_slice(&h.ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&h.seq.to_be_bytes());
        for (v, s) in iv.iter_mut().zip(self.salt) {
            *v ^= s;
        }
        let end = packet.len() - GCM_TAG_LEN;
        let (aad, rest) = packet.split_at_mut(h.len);
        let (body, tag) = rest.split_at_mut(end - h.len);
        self.cipher
            .open_in_place(&iv, aad, body, tag)
            .map_err(|e| SrtpInError::Srtp(format!("ssrc {} seq {}: {e}", h.ssrc, h.seq)))?;
        self.streams[i].accept(index);
        packet.truncate(end);
        Ok(clear(h, packet))
    }
}

fn clear(h: Header, packet: BytesMut) -> Clear {
    let payload_at = h.len.min(packet.len());
    let padding = if h.padding { packet.last().map_or(0, |p| usize::from(*p)) } else { 0 };
    let payload_end = packet.len().saturating_sub(padding).max(payload_at);
    Clear { ssrc: h.ssrc, seq: h.seq, ts: h.ts, marker: h.marker, packet, payload_at, payload_end }
}

enum Opener {
    Gcm(GcmOpen),
    /// `rtc`'s context, for the other profiles.
    Reference(Box<Context>),
}

/// The receiving direction's SRTP of one connection.
pub struct SrtpIn {
    opener: Opener,
}

impl SrtpIn {
    /// A context from the keys `rtc` exported at the end of the DTLS handshake.
    pub fn new(keys: &SrtpSessionKeys) -> Result<Self, SrtpInError> {
        let provider = rtc::crypto::default_provider().map_err(|e| SrtpInError::Setup(e.to_string()))?;
        let opener = if matches!(keys.profile, ProtectionProfile::AeadAes128Gcm) {
            Opener::Gcm(GcmOpen::new(provider.crypto(), keys)?)
        } else {
            let context = Context::new(
                &keys.master_key,
                &keys.master_salt,
                keys.profile,
                Some(srtp_replay_protection(REPLAY_WINDOW)),
                None,
                provider.crypto(),
            )
            .map_err(|e| SrtpInError::Setup(e.to_string()))?;
            Opener::Reference(Box::new(context))
        };
        Ok(SrtpIn { opener })
    }

    /// Authenticates and decrypts one SRTP packet (in place where the profile allows).
    pub fn open(&mut self, packet: BytesMut) -> Result<Clear, SrtpInError> {
        match &mut self.opener {
            Opener::Gcm(g) => g.open(packet),
            Opener::Reference(context) => {
                let h = parse_header(&packet)?;
                let mut buf = &packet[..];
                let header = rtc::rtp::Header::unmarshal(&mut buf).map_err(|e| SrtpInError::Header(e.to_string()))?;
                let clear_packet =
                    context.decrypt_rtp_with_header(&packet, &header).map_err(|e| SrtpInError::Srtp(e.to_string()))?;
                Ok(clear(h, clear_packet))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(profile: ProtectionProfile) -> SrtpSessionKeys {
        let (key, salt) = match profile {
            ProtectionProfile::AeadAes128Gcm => (16, 12),
            _ => (16, 14),
        };
        SrtpSessionKeys { profile, master_key: (1..=key).collect(), master_salt: (50..50 + salt).collect() }
    }

    fn sender(k: &SrtpSessionKeys) -> Context {
        let provider = rtc::crypto::default_provider().unwrap();
        Context::new(&k.master_key, &k.master_salt, k.profile, None, None, provider.crypto()).unwrap()
    }

    /// An RTP packet: optional CSRC count and one-word header extension, then "payload" and padding.
    fn packet(seq: u16, padding: u8, csrcs: u8, extension: bool) -> Vec<u8> {
        let b0 = 0x80 | if padding > 0 { 0x20 } else { 0 } | if extension { 0x10 } else { 0 } | csrcs;
        let mut p = vec![b0, 0x80 | 96, (seq >> 8) as u8, seq as u8, 0, 0, 0x12, 0x34, 0, 0, 0xbe, 0xef];
        for c in 0..csrcs {
            p.extend_from_slice(&[0, 0, 0, c]);
        }
        if extension {
            p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]);
        }
        p.extend_from_slice(b"payload");
        if padding > 0 {
            p.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
            p.push(padding);
        }
        p
    }

    #[test]
    fn decrypts_what_a_sender_protected() {
        // columns: profile, sequence numbers (sent in this order by a sender that counts its own
        // rollovers), padding, CSRCs, header extension, sequence numbers that must be refused
        let gcm = ProtectionProfile::AeadAes128Gcm;
        let cm = ProtectionProfile::Aes128CmHmacSha1_80;
        let rows: &[(ProtectionProfile, &[u16], u8, u8, bool, &[u16])] = &[
            (gcm, &[1, 2, 3], 0, 0, false, &[]),
            (gcm, &[65534, 65535, 0, 1, 2], 0, 0, false, &[]),
            (gcm, &[10, 12, 11, 13], 0, 0, false, &[]),
            (gcm, &[5], 4, 2, true, &[]),
            (gcm, &[100, 101, 101, 102], 0, 0, true, &[]),
            (gcm, &[0, 1, 600, 2, 601], 0, 0, false, &[2]),
            (cm, &[7, 8], 0, 0, false, &[]),
            (cm, &[65535, 0], 0, 1, true, &[]),
        ];
        for &(profile, seqs, padding, csrcs, extension, refused) in rows {
            let k = keys(profile);
            let mut rx = SrtpIn::new(&k).unwrap();
            // the reference sender refuses to re-protect an old index: keep each sealed copy
            let mut tx = sender(&k);
            let mut sealed = std::collections::HashMap::new();
            let mut seen = std::collections::HashSet::new();
            for &seq in seqs {
                let plain = packet(seq, padding, csrcs, extension);
                let s = sealed.entry(seq).or_insert_with(|| tx.encrypt_rtp(&plain).unwrap()).clone();
                let got = rx.open(BytesMut::from(&s[..]));
                if !seen.insert(seq) || refused.contains(&seq) {
                    assert!(matches!(got, Err(SrtpInError::Srtp(_))), "{profile:?} {seqs:?}: seq {seq} refused");
                    continue;
                }
                let clear = got.unwrap_or_else(|e| panic!("{profile:?} {seqs:?} seq {seq}: {e}"));
                assert_eq!((clear.seq, clear.ssrc, clear.ts, clear.marker), (seq, 0xbeef, 0x1234, true));
                assert_eq!(clear.payload(), b"payload", "{profile:?} seq {seq}");
                assert_eq!(&clear.packet[..], &plain[..], "{profile:?} seq {seq}: whole clear packet");
            }
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        for profile in [ProtectionProfile::AeadAes128Gcm, ProtectionProfile::Aes128CmHmacSha1_80] {
            let k = keys(profile);
            let mut tx = sender(&k);
            let mut rx = SrtpIn::new(&k).unwrap();
            let sealed = tx.encrypt_rtp(&packet(10, 0, 0, false)).unwrap();
            let mut tampered = sealed.to_vec();
            *tampered.last_mut().unwrap() ^= 1;
            let open = |rx: &mut SrtpIn, b: &[u8]| rx.open(BytesMut::from(b));
            assert!(matches!(open(&mut rx, &tampered), Err(SrtpInError::Srtp(_))), "{profile:?}: tag checked");
            assert!(
                matches!(open(&mut rx, &sealed[..5]), Err(SrtpInError::Header(_))),
                "{profile:?}: truncated header"
            );
            assert!(
                matches!(open(&mut rx, &sealed[..14]), Err(SrtpInError::Srtp(_))),
                "{profile:?}: no room for the tag"
            );
            let mut v1 = sealed.to_vec();
            v1[0] = 0x40;
            assert!(matches!(open(&mut rx, &v1), Err(SrtpInError::Header(_))), "{profile:?}: version 1");
            let mut long_ext = sealed.to_vec();
            long_ext[0] |= 0x10;
            long_ext[14..16].copy_from_slice(&[0xff, 0xff]);
            assert!(
                matches!(open(&mut rx, &long_ext), Err(SrtpInError::Header(_))),
                "{profile:?}: extension past the end"
            );
            assert!(open(&mut rx, &sealed).is_ok(), "{profile:?}: a failed packet does not poison the window");
            assert!(matches!(open(&mut rx, &sealed), Err(SrtpInError::Srtp(_))), "{profile:?}: replay refused");
        }
    }

    #[test]
    fn replay_window_table() {
        // columns: accepted indexes in order (relative to the first, which is seq 1000),
        // then probes and whether each is new
        let rows: &[(&[u64], &[(u64, bool)])] = &[
            (&[0, 1, 2], &[(1, false), (3, true), (0, false)]),
            (&[0, 5], &[(3, true), (5, false), (6, true)]),
            (&[0, 511], &[(0, false), (1, true)]),
            (&[0, 512], &[(0, false), (1, true), (512, false)]),
            (&[0, 2000], &[(1488, false), (1489, true), (1999, true)]),
        ];
        for (accepted, probes) in rows {
            let first = 1000u64;
            let mut r = Replay::new(0, first as u16);
            for a in *accepted {
                let seq = (first + a) as u16;
                let i = r.check(seq).unwrap_or_else(|| panic!("{accepted:?}: {a} accepted"));
                r.accept(i);
            }
            for &(p, new) in *probes {
                assert_eq!(r.check((first + p) as u16).is_some(), new, "{accepted:?}: probe {p}");
            }
        }
    }
}
