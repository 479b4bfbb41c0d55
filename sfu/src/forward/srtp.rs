//! SRTP protection of forwarded packets in place: AEAD_AES_128_GCM (RFC 7714), the profile
//! browsers negotiate, on the caller's buffer with no allocation, and the rollover counter
//! kept per outgoing stream by its owner (no per-packet map lookup).
//!
//! The crypto itself is `rtc`'s provider (ring by default); only the packet framing is here.

use super::seq::{SEQ_BITS, SeqUnwrapper};
use glue::srtp_kdf::{LABEL_SRTP_ENCRYPTION, LABEL_SRTP_SALT, derive};
use rtc::crypto::{AeadAlgorithm, AeadCipher, RTCCrypto};

/// Length of the GCM authentication tag appended to every packet.
pub const GCM_TAG_LEN: usize = 16;
const GCM_SALT_LEN: usize = 12;
const AES_128_KEY_LEN: usize = 16;
const MASTER_SALT_LEN: usize = 12;

/// Why protection failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SrtpError {
    /// Master key or salt of the wrong length for AES-128-GCM.
    #[error("master key/salt of {key} / {salt} bytes: AEAD_AES_128_GCM needs 16 / 12")]
    KeyLength {
        /// Key bytes given.
        key: usize,
        /// Salt bytes given.
        salt: usize,
    },
    /// The crypto provider failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// The buffer is shorter than the header it is said to hold.
    #[error("packet of {len} bytes has no {header_len}-byte header")]
    Truncated {
        /// Buffer length.
        len: usize,
        /// Claimed header length.
        header_len: usize,
    },
}

/// Sending side of an AEAD_AES_128_GCM SRTP session.
pub struct GcmSender {
    cipher: Box<dyn AeadCipher>,
    salt: [u8; GCM_SALT_LEN],
}

impl GcmSender {
    /// Derives the session key and salt from the DTLS-exported master key and salt.
    pub fn new(crypto: &dyn RTCCrypto, master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        if master_key.len() != AES_128_KEY_LEN || master_salt.len() != MASTER_SALT_LEN {
            return Err(SrtpError::KeyLength { key: master_key.len(), salt: master_salt.len() });
        }
        let mut key = [0u8; AES_128_KEY_LEN];
        let mut salt = [0u8; GCM_SALT_LEN];
        let kdf = |label, out: &mut [u8]| derive(crypto, master_key, master_salt, label, out);
        kdf(LABEL_SRTP_ENCRYPTION, &mut key)
            .and_then(|()| kdf(LABEL_SRTP_SALT, &mut salt))
            .map_err(|e| SrtpError::Crypto(e.0))?;
        let cipher = crypto.new_aead(AeadAlgorithm::Aes128Gcm, &key).map_err(|e| SrtpError::Crypto(e.to_string()))?;
        key.fill(0);
        Ok(GcmSender { cipher, salt })
    }

    /// Where the cipher's state (its own allocation: with `ring`, the key schedule itself)
    /// lies, and its size.
    pub fn key_span(&self) -> (usize, usize) {
        super::prefetch::span(&*self.cipher)
    }

    /// Protects the RTP packet in `buf` in place: the first `header_len` bytes (the RTP header)
    /// are authenticated, the rest encrypted, and the tag appended.
    pub fn protect(
        &mut self,
        buf: &mut bytes::BytesMut,
        header_len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> Result<(), SrtpError> {
        if buf.len() < header_len {
            return Err(SrtpError::Truncated { len: buf.len(), header_len });
        }
        // RFC 7714 8.1: 00 00 || SSRC || ROC || SEQ, XORed with the session salt
        let mut iv = [0u8; GCM_SALT_LEN];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&seq.to_be_bytes());
        for (v, s) in iv.iter_mut().zip(self.salt) {
            *v ^= s;
        }
        let mut tag = [0u8; GCM_TAG_LEN];
        let (aad, payload) = buf.split_at_mut(header_len);
        self.cipher.seal_in_place(&iv, aad, payload, &mut tag).map_err(|e| SrtpError::Crypto(e.to_string()))?;
        buf.extend_from_slice(&tag);
        Ok(())
    }
}

/// The rollover counter of one outgoing stream (RFC 3711 3.3.1): counts sequence number
/// wraps, and gives older packets (retransmissions) the counter they were sent with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rollover(SeqUnwrapper);

impl Rollover {
    /// The rollover counter of a packet sent now with `seq`.
    pub fn roc(&mut self, seq: u16) -> u32 {
        // the unwrapper starts its first value in the second 2^16 range
        ((self.0.unwrap(seq) >> SEQ_BITS).saturating_sub(1)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    #[test]
    fn rollover_counter() {
        // columns: sequence numbers sent in order, expected counters
        let rows: &[(&str, &[u16], &[u32])] = &[
            ("plain", &[10, 11, 12], &[0, 0, 0]),
            ("wrap", &[65534, 65535, 0, 1], &[0, 0, 1, 1]),
            ("retransmission before the wrap", &[65535, 0, 1, 65535], &[0, 1, 1, 0]),
            ("retransmission after the wrap", &[65535, 0, 1, 0], &[0, 1, 1, 1]),
            ("gap across the wrap", &[65000, 100], &[0, 1]),
            ("two wraps", &[65535, 0, 30000, 60000, 0], &[0, 1, 1, 1, 2]),
        ];
        for (name, seqs, want) in rows {
            let mut r = Rollover::default();
            let got: Vec<u32> = seqs.iter().map(|&s| r.roc(s)).collect();
            assert_eq!(&got[..], *want, "{name}");
        }
    }

    #[test]
    fn matches_the_reference_context_across_a_wrap() {
        let provider = rtc::crypto::default_provider().unwrap();
        let key: Vec<u8> = (1..=16).collect();
        let salt: Vec<u8> = (100..112).collect();
        let mut ours = GcmSender::new(provider.crypto(), &key, &salt).unwrap();
        let mut reference =
            Context::new(&key, &salt, ProtectionProfile::AeadAes128Gcm, None, None, provider.crypto()).unwrap();
        let mut receiver =
            Context::new(&key, &salt, ProtectionProfile::AeadAes128Gcm, None, None, provider.crypto()).unwrap();
        let mut roc = Rollover::default();
        for (i, seq) in [65533u16, 65534, 65535, 0, 1, 2, 65535].into_iter().enumerate() {
            let header = rtc::rtp::Header {
                version: 2,
                payload_type: 96,
                sequence_number: seq,
                timestamp: 3000 * i as u32,
                ssrc: 0xfeed,
                ..Default::default()
            };
            let mut plain = bytes::BytesMut::new();
            plain.extend_from_slice(&crate::room::egress::rtp_header(false, 96, seq, header.timestamp, 0xfeed));
            plain.extend_from_slice(&[i as u8; 100]);
            let mut buf = plain.clone();
            ours.protect(&mut buf, 12, 0xfeed, roc.roc(seq), seq).unwrap();
            if seq != 65535 || i < 3 {
                // the reference keeps its own counter for new packets only
                let want = reference.encrypt_rtp_with_header(&plain, &header).unwrap();
                assert_eq!(&buf[..], &want[..], "seq {seq}: same bytes as rtc's SRTP");
            }
            let back = receiver.decrypt_rtp(&buf).unwrap();
            assert_eq!(&back[..], &plain[..], "seq {seq} decrypts");
        }
    }

    /// Publishers' RTP is decrypted in its datagram's own buffer (`vendor/rtc-srtp`, the
    /// `decrypt_rtp_in_place` patch): the same plain packet as the copying path for every
    /// profile, header extensions included, and every bad packet an error, never a panic.
    #[test]
    fn in_place_decryption_matches_the_copying_one() {
        use rtc::shared::marshal::Marshal;
        use rtc::srtp::option::srtp_replay_protection;
        let provider = rtc::crypto::default_provider().unwrap();
        let profiles = [
            ProtectionProfile::AeadAes128Gcm,
            ProtectionProfile::AeadAes256Gcm,
            ProtectionProfile::Aes128CmHmacSha1_80,
            ProtectionProfile::Aes128CmHmacSha1_32,
        ];
        for profile in profiles {
            let key: Vec<u8> = (1..=profile.key_len() as u8).collect();
            let salt: Vec<u8> = (100..100 + profile.salt_len() as u8).collect();
            let ctx = |replay: bool| {
                let opt = replay.then(|| srtp_replay_protection(64));
                Context::new(&key, &salt, profile, opt, None, provider.crypto()).unwrap()
            };
            let (mut sender, mut copying, mut in_place) = (ctx(false), ctx(false), ctx(true));
            let packet = |seq: u16, ext: bool| {
                let header = rtc::rtp::Header {
                    version: 2,
                    payload_type: 96,
                    sequence_number: seq,
                    timestamp: 90 * u32::from(seq),
                    ssrc: 0xfeed,
                    extension: ext,
                    extension_profile: if ext { 0xbede } else { 0 },
                    extensions: if ext {
                        vec![rtc::rtp::header::Extension { id: 3, payload: bytes::Bytes::from_static(&[1, 2, 3]) }]
                    } else {
                        vec![]
                    },
                    ..Default::default()
                };
                let payload = bytes::Bytes::from(vec![seq as u8; 300]);
                rtc::rtp::Packet { header, payload }.marshal().unwrap()
            };
            // columns: sequence number, header extension, how the sealed packet is damaged
            // (none, flip a payload bit, flip a tag bit, cut to the header, cut to 3 bytes,
            // send again), decrypts
            let rows: &[(u16, bool, &str, bool)] = &[
                (1, false, "none", true),
                (2, true, "none", true),
                (3, false, "payload", false),
                (4, true, "tag", false),
                (5, false, "header only", false),
                (6, false, "3 bytes", false),
                (2, true, "replay", false),
                (7, true, "none", true), // failures above left the context working
            ];
            for &(seq, ext, damage, ok) in rows {
                let plain = packet(seq, ext);
                let sealed = sender.encrypt_rtp(&plain).unwrap();
                let mut buf = bytes::BytesMut::from(&sealed[..]);
                let n = buf.len();
                match damage {
                    "payload" => buf[n - 20] ^= 1,
                    "tag" => buf[n - 1] ^= 1,
                    "header only" => buf.truncate(plain.len() - 300),
                    "3 bytes" => buf.truncate(3),
                    _ => {}
                }
                let what = format!("{profile:?} seq {seq} {damage}");
                let got = in_place.decrypt_rtp_in_place(&mut buf);
                assert_eq!(got.is_ok(), ok, "{what}: {got:?}");
                if let Ok((header, header_len)) = got {
                    assert_eq!(&buf[..], &plain[..], "{what}: the plain packet, tag cut off");
                    assert_eq!(header_len, plain.len() - 300, "{what}: where the payload starts");
                    assert_eq!((header.sequence_number, header.extension), (seq, ext), "{what}: its header");
                    assert_eq!(&copying.decrypt_rtp(&sealed).unwrap()[..], &plain[..], "{what}: copying path");
                }
            }
        }
    }

    /// A decrypting context keeps SSRC state only for packets that authenticate (the
    /// `ssrc-state-after-auth` patch of `vendor/rtc-srtp`), and at most `MAX_REMOTE_SSRCS`
    /// of it, the least recently used forgotten first: neither forged datagrams from a
    /// participant's address nor the participant itself can grow a node's memory with SSRCs.
    #[test]
    fn decryption_keeps_ssrc_state_only_for_authentic_packets_and_a_bounded_number() {
        use rtc::srtp::context::MAX_REMOTE_SSRCS;
        use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
        let provider = rtc::crypto::default_provider().unwrap();
        let profile = ProtectionProfile::AeadAes128Gcm;
        let salt: Vec<u8> = (100..112).collect();
        let ctx = |key: u8, replay: bool| {
            let (rtp, rtcp) = if replay {
                (Some(srtp_replay_protection(64)), Some(srtcp_replay_protection(64)))
            } else {
                (None, None)
            };
            Context::new(&[key; 16], &salt, profile, rtp, rtcp, provider.crypto()).unwrap()
        };
        let (mut peer, mut stranger, mut node) = (ctx(1, false), ctx(2, false), ctx(1, true));
        let rtp = |c: &mut Context, ssrc: u32, seq: u16| {
            let mut plain = crate::room::egress::rtp_header(false, 96, seq, 0, ssrc).to_vec();
            plain.extend_from_slice(&[7; 200]);
            c.encrypt_rtp(&plain).unwrap()
        };
        let rtcp = |c: &mut Context, ssrc: u32| {
            let [a, b, cc, d] = ssrc.to_be_bytes();
            c.encrypt_rtcp(&[0x80, 201, 0, 1, a, b, cc, d]).unwrap()
        };
        let mut ssrc = 0x1234_5678u32;
        let mut next_ssrc = || {
            ssrc = ssrc.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ssrc
        };

        // forged: a key the node does not hold, every datagram a new SSRC
        for i in 0..2000u16 {
            let s = next_ssrc();
            assert!(node.decrypt_rtp(&rtp(&mut stranger, s, i)).is_err());
            assert!(node.decrypt_rtcp(&rtcp(&mut stranger, s)).is_err());
        }
        assert_eq!(node.ssrc_state_counts(), (0, 0), "no state for packets that do not authenticate");

        // authentic: one SSRC kept busy among a stream of new ones
        let busy = 0xb05;
        let first = rtp(&mut peer, busy, 1);
        assert!(node.decrypt_rtp(&first).is_ok());
        assert!(node.decrypt_rtcp(&rtcp(&mut peer, busy)).is_ok());
        assert_eq!(node.ssrc_state_counts(), (1, 1));
        for i in 0..2000u16 {
            let s = next_ssrc();
            assert!(node.decrypt_rtp(&rtp(&mut peer, s, i)).is_ok(), "authentic new SSRC {i}");
            assert!(node.decrypt_rtcp(&rtcp(&mut peer, s)).is_ok());
            if i % 16 == 0 {
                assert!(node.decrypt_rtp(&rtp(&mut peer, busy, 2 + i)).is_ok());
                assert!(node.decrypt_rtcp(&rtcp(&mut peer, busy)).is_ok());
            }
        }
        assert_eq!(node.ssrc_state_counts(), (MAX_REMOTE_SSRCS, MAX_REMOTE_SSRCS), "capped");
        // the busy SSRC's replay window survived the churn: its first packet is still a replay
        assert!(node.decrypt_rtp(&first).is_err(), "the busy SSRC kept its state");
        assert!(node.decrypt_rtp(&rtp(&mut peer, busy, 4000)).is_ok());
    }

    #[test]
    fn bad_input_is_an_error() {
        let provider = rtc::crypto::default_provider().unwrap();
        assert_eq!(
            GcmSender::new(provider.crypto(), &[0; 32], &[0; 12]).err(),
            Some(SrtpError::KeyLength { key: 32, salt: 12 })
        );
        let mut s = GcmSender::new(provider.crypto(), &[0; 16], &[0; 12]).unwrap();
        let mut short = bytes::BytesMut::from(&[0u8; 5][..]);
        assert_eq!(s.protect(&mut short, 12, 1, 0, 0), Err(SrtpError::Truncated { len: 5, header_len: 12 }));
    }
}
