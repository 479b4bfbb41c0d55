use super::*;
use shared::{
    error::{Error, Result},
    marshal::{MarshalSize, Unmarshal},
};

use bytes::BytesMut;

impl Context {
    /// Decrypts an SRTP packet whose header has already been parsed.
    ///
    /// Saves re-parsing when the caller needed the header to route the packet. The header must
    /// be the one belonging to `encrypted`.
    ///
    /// # Errors
    ///
    /// Fails if authentication fails, if the packet is a replay, or if it is too short to hold
    /// the profile's auth tag.
    pub fn decrypt_rtp_with_header(
        &mut self,
        encrypted: &[u8],
        header: &rtp::Header,
    ) -> Result<BytesMut> {
        // sfu patch: a copy decrypted in place (one path for the checks below)
        let mut buf = BytesMut::from(encrypted);
        self.open_rtp_in_place(&mut buf, header, 0)?;
        Ok(buf)
    }

    /// sfu patch: the checks and state of an RTP decryption around the cipher's in-place one:
    /// the packet (`header` plus at least `header_len` bytes) holds the auth tag, is no replay;
    /// on success the replay window and rollover counter take it in.
    fn open_rtp_in_place(&mut self, buf: &mut BytesMut, header: &rtp::Header, header_len: usize) -> Result<()> {
        let auth_tag_len = self.cipher.rtp_auth_tag_len();
        if buf.len() < header.marshal_size().max(header_len) + auth_tag_len {
            return Err(Error::ErrTooShortRtp);
        }

        // sfu patch: the state of an SSRC seen first is kept only if its packet authenticates
        let use_count = self.next_use();
        let new_detector = &self.new_srtp_replay_detector;
        let mut fresh = None;
        let state = match self.srtp_ssrc_states.get_mut(&header.ssrc) {
            Some(state) => state,
            None => fresh.insert(SrtpSsrcState {
                ssrc: header.ssrc,
                replay_detector: Some(new_detector()),
                ..Default::default()
            }),
        };
        let (roc, diff, _) = state.next_rollover_count(header.sequence_number);
        if let Some(replay_detector) = &mut state.replay_detector
            && !replay_detector.check(header.sequence_number as u64)
        {
            return Err(Error::SrtpSsrcDuplicated(
                header.ssrc,
                header.sequence_number,
            ));
        }

        self.cipher.decrypt_rtp_in_place(buf, header, roc)?;
        if let Some(replay_detector) = &mut state.replay_detector {
            replay_detector.accept();
        }
        state.update_rollover_count(header.sequence_number, diff);
        state.last_used = use_count;
        if let Some(state) = fresh {
            self.admit_srtp_state(state);
        }
        Ok(())
    }

    /// sfu patch: decrypts an SRTP packet in its own buffer: on success `buf` holds the plain
    /// RTP packet (auth tag cut off), with no allocation or copy, and the header it parsed is
    /// returned with its length in bytes (where the payload starts), so the caller need not
    /// parse it again. On error the packet is to be dropped: its buffer's contents are
    /// unspecified, the replay window is unchanged.
    ///
    /// # Errors
    ///
    /// As [`Context::decrypt_rtp`].
    pub fn decrypt_rtp_in_place(&mut self, buf: &mut BytesMut) -> Result<(rtp::Header, usize)> {
        let (header, header_len) = {
            let mut b: &[u8] = buf;
            let header = rtp::Header::unmarshal(&mut b)?;
            (header, buf.len() - b.len())
        };
        // both lengths of the header (as parsed, as the cipher frames it) fit before the tag,
        // so the caller can always skip `header_len` bytes of the plain packet
        self.open_rtp_in_place(buf, &header, header_len)?;
        Ok((header, header_len))
    }

    /// DecryptRTP decrypts a RTP packet with an encrypted payload
    pub fn decrypt_rtp(&mut self, encrypted: &[u8]) -> Result<BytesMut> {
        let mut buf = encrypted;
        let header = rtp::Header::unmarshal(&mut buf)?;
        self.decrypt_rtp_with_header(encrypted, &header)
    }

    /// Encrypts an RTP payload, using an already-parsed header.
    ///
    /// Saves re-parsing when the caller has just built the header. Returns the full protected
    /// packet, header included.
    ///
    /// # Errors
    ///
    /// Fails if the SRTP context has no key for this SSRC or the cipher rejects the input.
    pub fn encrypt_rtp_with_header(
        &mut self,
        plaintext: &[u8],
        header: &rtp::Header,
    ) -> Result<BytesMut> {
        let (roc, diff, ovf) = self
            .get_srtp_ssrc_state(header.ssrc)
            .next_rollover_count(header.sequence_number);
        if ovf {
            // ... when 2^48 SRTP packets or 2^31 SRTCP packets have been secured with the same key
            // (whichever occurs before), the key management MUST be called to provide new master key(s)
            // (previously stored and used keys MUST NOT be used again), or the session MUST be terminated.
            // https://www.rfc-editor.org/rfc/rfc3711#section-9.2
            return Err(Error::ErrExceededMaxPackets);
        }

        let dst = self.cipher.encrypt_rtp(plaintext, header, roc)?;

        self.get_srtp_ssrc_state(header.ssrc)
            .update_rollover_count(header.sequence_number, diff);

        Ok(dst)
    }

    /// EncryptRTP marshals and encrypts an RTP packet, writing to the dst buffer provided.
    /// If the dst buffer does not have the capacity to hold `len(plaintext) + 10` bytes, a new one will be allocated and returned.
    pub fn encrypt_rtp(&mut self, plaintext: &[u8]) -> Result<BytesMut> {
        let mut buf = plaintext;
        let header = rtp::Header::unmarshal(&mut buf)?;
        self.encrypt_rtp_with_header(plaintext, &header)
    }
}
