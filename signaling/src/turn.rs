//! TURN credentials in the coturn REST convention (draft-uberti-behave-turn-rest, coturn's
//! `use-auth-secret`): `username = expiry:identity` (expiry in Unix seconds), `credential =
//! base64(HMAC-SHA1(secret, username))`. The TURN server shares the secret and checks both the
//! HMAC and the expiry, so the SFU hands out credentials without talking to it.

use crate::protocol::IceServer;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where clients relay through, and how their credentials are made.
#[derive(Clone)]
pub struct TurnCredentials {
    secret: String,
    urls: Vec<String>,
    ttl: Duration,
}

impl std::fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the secret in a log line
        f.debug_struct("TurnCredentials").field("urls", &self.urls).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// Why a TURN configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnConfigError {
    /// A secret without URLs, or URLs without a secret.
    #[error("--turn-secret and --turn-urls go together")]
    Incomplete,
    /// A URL that is not `turn:` or `turns:`.
    #[error("{0:?} is not a turn: or turns: URL")]
    BadUrl(String),
    /// A lifetime of zero.
    #[error("--turn-ttl must be longer than zero")]
    ZeroTtl,
}

impl TurnCredentials {
    /// The configuration from `--turn-secret`, `--turn-urls` and `--turn-ttl`: `None` when
    /// neither of the first two is given.
    pub fn new(secret: Option<String>, urls: Vec<String>, ttl: Duration) -> Result<Option<Self>, TurnConfigError> {
        let secret = secret.filter(|s| !s.is_empty());
        match (secret, urls.is_empty()) {
            (None, true) => Ok(None),
            (Some(secret), false) => {
                if let Some(bad) = urls.iter().find(|u| !(u.starts_with("turn:") || u.starts_with("turns:"))) {
                    return Err(TurnConfigError::BadUrl(bad.clone()));
                }
                if ttl.is_zero() {
                    return Err(TurnConfigError::ZeroTtl);
                }
                Ok(Some(TurnCredentials { secret, urls, ttl }))
            }
            _ => Err(TurnConfigError::Incomplete),
        }
    }

    /// The TURN servers `identity` may use from `now` until the lifetime runs out.
    pub fn ice_servers(&self, identity: &str, now: SystemTime) -> Vec<IceServer> {
        let expiry = (now + self.ttl).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let username = format!("{expiry}:{identity}");
        let credential = credential(&self.secret, &username);
        vec![IceServer { urls: self.urls.clone(), username, credential }]
    }
}

/// `base64(HMAC-SHA1(secret, username))`.
pub fn credential(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_coturn_rest_convention() {
        // a vector computed independently: printf '%s' '1700003600:alice' |
        //   openssl dgst -sha1 -hmac 'north' -binary | base64
        assert_eq!(credential("north", "1700003600:alice"), "wjwSXO2ch1B6VaLTLMy2Avn5O9o=");
        let turn =
            TurnCredentials::new(Some("north".into()), vec!["turn:t.example:3478".into()], Duration::from_secs(3600))
                .unwrap()
                .unwrap();
        let servers = turn.ice_servers("alice", UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(
            servers,
            vec![IceServer {
                urls: vec!["turn:t.example:3478".into()],
                username: "1700003600:alice".into(),
                credential: "wjwSXO2ch1B6VaLTLMy2Avn5O9o=".into(),
            }]
        );
        assert!(!format!("{turn:?}").contains("north"), "the secret stays out of logs");
    }

    #[test]
    fn configuration_needs_a_secret_and_turn_urls_together() {
        let ttl = Duration::from_secs(60);
        let urls = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // columns: secret, URLs, lifetime, outcome (Ok(configured) or the error)
        let rows: Vec<(Option<&str>, Vec<String>, Duration, Result<bool, TurnConfigError>)> = vec![
            (None, vec![], ttl, Ok(false)),
            (Some(""), vec![], ttl, Ok(false)),
            (Some("s"), urls(&["turn:h:3478?transport=tcp", "turns:h:5349"]), ttl, Ok(true)),
            (Some("s"), vec![], ttl, Err(TurnConfigError::Incomplete)),
            (None, urls(&["turn:h"]), ttl, Err(TurnConfigError::Incomplete)),
            (Some("s"), urls(&["stun:h"]), ttl, Err(TurnConfigError::BadUrl("stun:h".into()))),
            (Some("s"), urls(&["turn:h"]), Duration::ZERO, Err(TurnConfigError::ZeroTtl)),
        ];
        for (secret, urls, ttl, want) in rows {
            let got = TurnCredentials::new(secret.map(str::to_owned), urls.clone(), ttl).map(|c| c.is_some());
            assert_eq!(got, want, "{secret:?} {urls:?} {ttl:?}");
        }
    }
}
