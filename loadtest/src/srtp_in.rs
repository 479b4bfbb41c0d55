//! Inbound SRTP of a subscriber connection, decrypted by the engine itself: media packets of
//! streams the connection already opened skip `rtc`'s read pipeline (demux, interceptors,
//! per-packet messages), which costs several times the decryption. `rtc` keeps ICE, DTLS,
//! RTCP and the first packet of every stream (which opens its track).

use bytes::BytesMut;
use rtc::peer_connection::transport::SrtpSessionKeys;
use rtc::shared::marshal::{MarshalSize, Unmarshal};
use rtc::srtp::context::Context;
use rtc::srtp::option::srtp_replay_protection;

/// Sequence numbers the replay check remembers: as far back as the subscriber NACKs, so a
/// retransmission it asked for is never refused as a replay (the check's cost grows with it).
const REPLAY_WINDOW: usize = crate::reports::NACK_WINDOW as usize;

/// Why an inbound packet was dropped.
#[derive(Debug, thiserror::Error)]
pub enum SrtpInError {
    /// The RTP header does not parse.
    #[error("bad RTP header: {0}")]
    Header(rtc::shared::error::Error),
    /// Authentication failed, replay, or too short.
    #[error("SRTP: {0}")]
    Srtp(rtc::shared::error::Error),
    /// No context could be built from the keys.
    #[error("SRTP context: {0}")]
    Setup(String),
}

/// A decrypted packet: its header and the whole clear packet.
pub struct Clear {
    /// Parsed header.
    pub header: rtc::rtp::Header,
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

/// The receiving direction's SRTP context of one connection.
pub struct SrtpIn {
    context: Context,
}

impl SrtpIn {
    /// A context from the keys `rtc` exported at the end of the DTLS handshake.
    pub fn new(keys: &SrtpSessionKeys) -> Result<Self, SrtpInError> {
        let provider = rtc::crypto::default_provider().map_err(|e| SrtpInError::Setup(e.to_string()))?;
        let context = Context::new(
            &keys.master_key,
            &keys.master_salt,
            keys.profile,
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            None,
            provider.crypto(),
        )
        .map_err(|e| SrtpInError::Setup(e.to_string()))?;
        Ok(SrtpIn { context })
    }

    /// Authenticates and decrypts one SRTP packet.
    pub fn open(&mut self, data: &[u8]) -> Result<Clear, SrtpInError> {
        let mut buf = data;
        let header = rtc::rtp::Header::unmarshal(&mut buf).map_err(SrtpInError::Header)?;
        let packet = self.context.decrypt_rtp_with_header(data, &header).map_err(SrtpInError::Srtp)?;
        let payload_at = header.marshal_size().min(packet.len());
        let padding = if header.padding { packet.last().map_or(0, |p| usize::from(*p)) } else { 0 };
        let payload_end = packet.len().saturating_sub(padding).max(payload_at);
        Ok(Clear { header, packet, payload_at, payload_end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::protection_profile::ProtectionProfile;

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

    fn packet(seq: u16, padding: u8) -> Vec<u8> {
        let mut p = vec![0x80 | if padding > 0 { 0x20 } else { 0 }, 96, (seq >> 8) as u8, seq as u8, 0, 0, 0, 9, 0, 0, 0xbe, 0xef];
        p.extend_from_slice(b"payload");
        if padding > 0 {
            p.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
            p.push(padding);
        }
        p
    }

    #[test]
    fn decrypts_what_a_sender_protected() {
        // columns: profile, sequence numbers sent in order, padding
        let rows = [
            (ProtectionProfile::AeadAes128Gcm, &[1u16, 2, 3][..], 0u8),
            (ProtectionProfile::AeadAes128Gcm, &[65534, 65535, 0, 1][..], 0),
            (ProtectionProfile::Aes128CmHmacSha1_80, &[7, 8][..], 0),
            (ProtectionProfile::AeadAes128Gcm, &[5][..], 4),
        ];
        for (profile, seqs, padding) in rows {
            let k = keys(profile);
            let mut tx = sender(&k);
            let mut rx = SrtpIn::new(&k).unwrap();
            for &seq in seqs {
                let sealed = tx.encrypt_rtp(&packet(seq, padding)).unwrap();
                let clear = rx.open(&sealed).unwrap_or_else(|e| panic!("{profile:?} seq {seq}: {e}"));
                assert_eq!((clear.header.sequence_number, clear.header.ssrc), (seq, 0xbeef));
                assert_eq!(clear.payload(), b"payload", "{profile:?} seq {seq}");
            }
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let k = keys(ProtectionProfile::AeadAes128Gcm);
        let mut tx = sender(&k);
        let mut rx = SrtpIn::new(&k).unwrap();
        let sealed = tx.encrypt_rtp(&packet(10, 0)).unwrap();
        let mut tampered = sealed.to_vec();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(rx.open(&tampered), Err(SrtpInError::Srtp(_))), "tag checked");
        assert!(matches!(rx.open(&sealed[..5]), Err(SrtpInError::Header(_))), "truncated header");
        assert!(matches!(rx.open(&sealed[..14]), Err(SrtpInError::Srtp(_))), "no room for the tag");
        assert!(rx.open(&sealed).is_ok());
        assert!(matches!(rx.open(&sealed), Err(SrtpInError::Srtp(_))), "replay refused");
    }
}
