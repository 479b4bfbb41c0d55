//! HS256, the one JWT algorithm the node uses, as `jsonwebtoken`'s crypto provider. The crate's
//! `rust_crypto` backend would bring RSA, ECDSA and EdDSA along for nothing (and RSA with an
//! open advisory, RUSTSEC-2023-0071); this one signs and verifies HS256 and refuses the rest.

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use sha2::Sha256;

/// An HMAC-SHA256 key, signing or verifying.
struct Hs256(Hmac<Sha256>);

impl Hs256 {
    fn new(alg: &Algorithm, family: AlgorithmFamily, secret: &[u8]) -> Result<Self> {
        if *alg != Algorithm::HS256 || family != AlgorithmFamily::Hmac {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        Ok(Hs256(Hmac::new_from_slice(secret).map_err(|_| ErrorKind::InvalidKeyFormat)?))
    }

    fn mac(&self, msg: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(msg);
        mac
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.mac(msg).finalize().into_bytes().to_vec())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        // constant-time comparison
        self.mac(msg).verify_slice(signature).map_err(signature::Error::from_source)
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |alg, key| Ok(Box::new(Hs256::new(alg, key.family(), key.as_bytes())?)),
    verifier_factory: |alg, key| Ok(Box::new(Hs256::new(alg, key.family(), key.try_get_as_bytes()?)?)),
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes HS256 the process's JWT provider. Every path that signs or verifies calls it first:
/// `jsonwebtoken` settles on a provider at its first use (without a backend feature, one that
/// panics), after which installing is refused.
pub fn install() {
    let _ = PROVIDER.install_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation, decode, encode};

    #[test]
    fn signs_and_verifies_hs256_only() {
        install();
        let claims = serde_json::json!({"sub": "a", "exp": jsonwebtoken::get_current_timestamp() + 60});
        let secret = b"0123456789abcdef0123456789abcdef";
        let token = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret)).unwrap();
        let ok =
            decode::<serde_json::Value>(&token, &DecodingKey::from_secret(secret), &Validation::new(Algorithm::HS256));
        assert_eq!(ok.unwrap().claims, claims);
        let forged = decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(b"another"),
            &Validation::new(Algorithm::HS256),
        );
        assert_eq!(forged.unwrap_err().kind(), &ErrorKind::InvalidSignature);
        // columns: algorithm asked for with an HMAC key: refused unless HS256
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let refused = encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret)).unwrap_err();
            assert_eq!(refused.kind(), &ErrorKind::InvalidAlgorithm, "{alg:?}");
        }
    }
}
