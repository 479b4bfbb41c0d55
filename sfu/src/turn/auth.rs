//! Long-term credentials of the embedded TURN server in the coturn REST convention
//! (`signaling::turn`): `username = expiry:identity`, `password = base64(HMAC-SHA1(secret,
//! username))`, so any node sharing the secret checks what any node issued, with no lookup.
//! Nonces are stateless: an expiry and a MAC over it, so a stale one is told from a forged one.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::time::Duration;

/// How long a nonce is accepted (then `438 Stale Nonce` hands out a new one).
pub const NONCE_LIFETIME: Duration = Duration::from_secs(3600);

/// The MD5 key of a long-term credential (RFC 8489 9.2.2).
pub type Key = [u8; 16];

/// Why a request's credentials are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No USERNAME, REALM or NONCE beside MESSAGE-INTEGRITY: `400`.
    Incomplete,
    /// The nonce expired: `438`, with a new one.
    StaleNonce,
    /// A nonce this server did not make, a malformed or expired username, or a wrong
    /// signature: `401`.
    Unauthorized,
}

/// The shared secret, the realm and the nonce key.
pub struct Credentials {
    secret: String,
    realm: String,
    nonce_key: [u8; 32],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("realm", &self.realm).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials checked against `secret` in `realm`; `nonce_key` signs nonces.
    pub fn new(secret: String, realm: String, nonce_key: [u8; 32]) -> Self {
        Credentials { secret, realm, nonce_key }
    }

    /// The realm named in challenges.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// A nonce valid for [`NONCE_LIFETIME`] from `unix_now` (seconds).
    pub fn nonce(&self, unix_now: u64) -> String {
        let expiry = format!("{:016x}", unix_now + NONCE_LIFETIME.as_secs());
        let tag = self.nonce_tag(&expiry);
        format!("{expiry}{tag}")
    }

    fn nonce_tag(&self, expiry: &str) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(&self.nonce_key).expect("HMAC takes any key length");
        mac.update(expiry.as_bytes());
        mac.finalize().into_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks a nonce this server made.
    pub fn check_nonce(&self, nonce: &str, unix_now: u64) -> Result<(), Refusal> {
        let (expiry, tag) = nonce.split_at_checked(16).ok_or(Refusal::Unauthorized)?;
        let made_here: bool = {
            let want = self.nonce_tag(expiry);
            rtc::crypto::constant_time_eq(want.as_bytes(), tag.as_bytes())
        };
        if !made_here {
            return Err(Refusal::Unauthorized);
        }
        let expiry = u64::from_str_radix(expiry, 16).map_err(|_| Refusal::Unauthorized)?;
        if expiry < unix_now { Err(Refusal::StaleNonce) } else { Ok(()) }
    }

    /// The key of `username` if it is well formed and, when `check_expiry`, not expired at
    /// `unix_now`. The signature is checked by the caller with this key.
    pub fn key(&self, username: &str, unix_now: u64, check_expiry: bool) -> Result<Key, Refusal> {
        let (expiry, identity) = username.split_once(':').ok_or(Refusal::Unauthorized)?;
        let expiry: u64 = expiry.parse().map_err(|_| Refusal::Unauthorized)?;
        if identity.is_empty() || (check_expiry && expiry < unix_now) {
            return Err(Refusal::Unauthorized);
        }
        let password = signaling::turn::credential(&self.secret, username);
        Ok(long_term_key(username, &self.realm, &password))
    }
}

/// `MD5(username ":" realm ":" password)`.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> Key {
    use md5::Digest;
    let mut h = md5::Md5::new();
    h.update(format!("{username}:{realm}:{password}").as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new("north".into(), "sfu".into(), [9; 32])
    }

    #[test]
    fn usernames_in_the_rest_convention() {
        let c = creds();
        let now = 1_700_000_000;
        // columns: username, whether expiry is checked, accepted
        let rows = [
            ("1700003600:alice", true, true),
            ("1699999999:alice", true, false),
            ("1699999999:alice", false, true),
            ("1700003600:", true, false),
            ("alice", true, false),
            ("soon:alice", true, false),
            ("", true, false),
        ];
        for (user, check, ok) in rows {
            assert_eq!(c.key(user, now, check).is_ok(), ok, "{user} {check}");
        }
        // the key is MD5 over the coturn password: a vector from the REST test in signaling
        let want = long_term_key("1700003600:alice", "sfu", "wjwSXO2ch1B6VaLTLMy2Avn5O9o=");
        assert_eq!(c.key("1700003600:alice", now, true), Ok(want));
        assert_ne!(
            Credentials::new("south".into(), "sfu".into(), [9; 32]).key("1700003600:alice", now, true),
            Ok(want)
        );
    }

    #[test]
    fn nonces_expire_and_cannot_be_forged() {
        let c = creds();
        let n = c.nonce(1000);
        assert_eq!(c.check_nonce(&n, 1000), Ok(()));
        assert_eq!(c.check_nonce(&n, 1000 + NONCE_LIFETIME.as_secs()), Ok(()));
        assert_eq!(c.check_nonce(&n, 1001 + NONCE_LIFETIME.as_secs()), Err(Refusal::StaleNonce));
        let other = Credentials::new("north".into(), "sfu".into(), [8; 32]);
        assert_eq!(other.check_nonce(&n, 1000), Err(Refusal::Unauthorized), "another node's key");
        let mut forged = n.clone();
        forged.replace_range(..16, &format!("{:016x}", u64::MAX));
        assert_eq!(c.check_nonce(&forged, 1000), Err(Refusal::Unauthorized), "a pushed-out expiry");
        for junk in ["", "short", "zzzzzzzzzzzzzzzz0000000000000000", "é"] {
            assert_eq!(c.check_nonce(junk, 1000), Err(Refusal::Unauthorized), "{junk:?}");
        }
    }

    #[test]
    fn the_long_term_key_matches_rfc_5769() {
        // RFC 5769 2.4 uses SASLprep'd values; this pair needs none
        let key = long_term_key("user", "realm", "pass");
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        // printf 'user:realm:pass' | md5sum
        assert_eq!(hex, "8493fbc53ba582fb4c044c456bdc40eb");
    }
}
