//! SRTP session keys from a DTLS-SRTP master key and salt (RFC 3711 4.3), as both the server's
//! egress and the load tester's receiver derive them for their own AES-GCM contexts.

use rtc::crypto::{BlockCipherAlgorithm, RTCCrypto};

/// Label of the SRTP encryption key (RFC 3711 4.3.2).
pub const LABEL_SRTP_ENCRYPTION: u8 = 0x00;
/// Label of the SRTP salt.
pub const LABEL_SRTP_SALT: u8 = 0x02;

/// A key derivation that failed in the crypto provider.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("srtp key derivation: {0}")]
pub struct KdfError(pub String);

/// RFC 3711 4.3.3 AES-CM key derivation with a key derivation rate of 0 (RFC 5764): fills `out`
/// with the session key or salt for `label`.
pub fn derive(
    crypto: &dyn RTCCrypto,
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) -> Result<(), KdfError> {
    let mut block = [0u8; 16];
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        block.fill(0);
        block[..master_salt.len()].copy_from_slice(master_salt);
        block[7] ^= label;
        block[14..16].copy_from_slice(&(i as u16).to_be_bytes());
        crypto
            .block_encrypt(BlockCipherAlgorithm::Aes128, master_key, &mut block)
            .map_err(|e| KdfError(e.to_string()))?;
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn rfc_3711_b3_test_vectors() {
        let provider = rtc::crypto::default_provider().unwrap();
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        // columns: label, output length, expected (RFC 3711 appendix B.3)
        let rows = [
            (LABEL_SRTP_ENCRYPTION, 16, "C61E7A93744F39EE10734AFE3FF7A087"),
            (LABEL_SRTP_SALT, 14, "30CBBC08863D8C85D49DB34A9AE1"),
            (0x01, 20, "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"), // the authentication key, over a block
        ];
        for (label, len, want) in rows {
            let mut out = vec![0u8; len];
            derive(provider.crypto(), &key, &salt, label, &mut out).unwrap();
            assert_eq!(out, hex(want), "label {label}");
        }
    }
}
