//! Access tokens: JWT (HS256) signed with an API key's secret, carrying an identity, a room and
//! grants. The WebSocket join needs a token for its room with the `join` grant; the REST API needs
//! the `admin` grant.
//!
//! The key that signed a token is named by the `kid` header, else by the `iss` claim.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The development key of `--dev`: public, so never secure.
pub const DEV_KEY: &str = "devkey";
/// The development secret of `--dev`: public, so never secure.
pub const DEV_SECRET: &str = "devsecret";
/// Shortest secret accepted for a production key (HS256 secrets are attacked offline).
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock skew tolerated on `exp` and `nbf`, seconds.
const LEEWAY_SECS: u64 = 30;

/// An API key and its secret. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Key id (`kid` header or `iss` claim of the tokens it signs).
    pub key: String,
    /// HMAC secret.
    pub secret: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}:<redacted>)", self.key)
    }
}

impl std::str::FromStr for ApiKey {
    type Err = String;

    /// Parses `KEY:SECRET`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() && !v.is_empty() => {
                Ok(ApiKey { key: k.trim().to_string(), secret: v.to_string() })
            }
            _ => Err("expected KEY:SECRET".into()),
        }
    }
}

/// What a token allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Join the token's room.
    #[serde(default)]
    pub join: bool,
    /// Publish media (send `offer`).
    #[serde(default)]
    pub publish: bool,
    /// Receive media.
    #[serde(default)]
    pub subscribe: bool,
    /// Use the REST API.
    #[serde(default)]
    pub admin: bool,
}

impl Grants {
    /// Join, publish and subscribe: what a conference participant needs.
    pub fn participant() -> Self {
        Grants { join: true, publish: true, subscribe: true, admin: false }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// API key that signed it (alternative to the `kid` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Identity of the holder.
    pub sub: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Room it is valid for (admin tokens may have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not valid before, seconds since the Unix epoch.
    pub nbf: u64,
    /// What it allows.
    #[serde(default)]
    pub grants: Grants,
}

/// Why a token was refused; [`AuthError::reason`] is the machine-readable form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("a token is required")]
    Missing,
    /// Not a JWT, or claims of the wrong shape.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// Its key is not configured on this node.
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify (or the algorithm is not HS256).
    #[error("the token signature is invalid")]
    BadSignature,
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
    /// Before `nbf`.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// For another room (or for none).
    #[error("the token is not valid for room {0:?}")]
    WrongRoom(String),
    /// No `join` grant.
    #[error("the token does not grant join")]
    NoJoinGrant,
    /// No `publish` grant.
    #[error("the token does not grant publish")]
    NoPublishGrant,
    /// No `subscribe` grant (a WHEP player).
    #[error("the token does not grant subscribe")]
    NoSubscribeGrant,
    /// No `admin` grant.
    #[error("the token does not grant admin")]
    NoAdminGrant,
}

impl AuthError {
    /// Machine-readable reason, e.g. `expired`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongRoom(_) => "wrong_room",
            AuthError::NoJoinGrant => "no_join_grant",
            AuthError::NoPublishGrant => "no_publish_grant",
            AuthError::NoSubscribeGrant => "no_subscribe_grant",
            AuthError::NoAdminGrant => "no_admin_grant",
        }
    }

    /// True when the holder is known but lacks a grant (HTTP 403 rather than 401).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::NoAdminGrant)
    }
}

/// Why the auth configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither keys nor `--dev`.
    #[error("no API keys configured: pass --keys KEY:SECRET (env SFU_KEYS), or --dev for an insecure development node")]
    NoKeys,
    /// A secret too short to resist offline guessing.
    #[error("the secret of key {0:?} is shorter than {MIN_SECRET_BYTES} bytes")]
    WeakSecret(String),
    /// The same key twice.
    #[error("key {0:?} is configured twice")]
    DuplicateKey(String),
}

/// What a verified join allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGrant {
    /// Identity (`sub`), or the display name for a tokenless dev join.
    pub identity: String,
    /// Display name from the token, if it has one (it wins over the join message's).
    pub name: Option<String>,
    /// The token's grants.
    pub grants: Grants,
}

/// Verifies tokens against the configured keys.
pub struct Auth {
    keys: HashMap<String, DecodingKey>,
    dev: bool,
    validation: Validation,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&String> = self.keys.keys().collect();
        keys.sort();
        f.debug_struct("Auth").field("keys", &keys).field("dev", &self.dev).finish()
    }
}

impl Auth {
    /// Production keys, plus the development key and tokenless joins when `dev`. Refuses an
    /// empty key set outside dev mode: there is no unauthenticated node.
    pub fn new(keys: &[ApiKey], dev: bool) -> Result<Auth, ConfigError> {
        crate::jwt_hs256::install();
        if keys.is_empty() && !dev {
            return Err(ConfigError::NoKeys);
        }
        let mut map = HashMap::new();
        for k in keys {
            if k.secret.len() < MIN_SECRET_BYTES {
                return Err(ConfigError::WeakSecret(k.key.clone()));
            }
            if map.insert(k.key.clone(), DecodingKey::from_secret(k.secret.as_bytes())).is_some() {
                return Err(ConfigError::DuplicateKey(k.key.clone()));
            }
        }
        if dev {
            map.entry(DEV_KEY.to_string()).or_insert_with(|| DecodingKey::from_secret(DEV_SECRET.as_bytes()));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "nbf", "sub"]);
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = LEEWAY_SECS;
        Ok(Auth { keys: map, dev, validation })
    }

    /// Development only: the dev key, tokenless joins.
    pub fn dev() -> Auth {
        Auth::new(&[], true).expect("dev mode needs no keys")
    }

    /// True in development mode.
    pub fn is_dev(&self) -> bool {
        self.dev
    }

    /// Verifies a token's key, signature and validity window.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        crate::jwt_hs256::install();
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let key_id = match header.kid {
            Some(kid) => kid,
            None => {
                #[derive(Deserialize)]
                struct Issuer {
                    iss: Option<String>,
                }
                let claims: Issuer = jsonwebtoken::dangerous::insecure_decode_claims(token)
                    .map_err(|e| AuthError::Malformed(e.to_string()))?;
                claims.iss.ok_or(AuthError::UnknownKey)?
            }
        };
        let key = self.keys.get(&key_id).ok_or(AuthError::UnknownKey)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                AuthError::BadSignature
            }
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            _ => AuthError::Malformed(e.to_string()),
        })?;
        Ok(data.claims)
    }

    /// Checks a WebSocket join of `room`. In dev mode a join without a token is allowed (with
    /// participant grants); a token that is present is always verified.
    pub fn check_join(&self, token: Option<&str>, room: &str, name: &str) -> Result<JoinGrant, AuthError> {
        let token = token.filter(|t| !t.trim().is_empty());
        let Some(token) = token else {
            if self.dev {
                return Ok(JoinGrant { identity: name.to_string(), name: None, grants: Grants::participant() });
            }
            return Err(AuthError::Missing);
        };
        let claims = self.verify(token)?;
        if claims.room.as_deref() != Some(room) {
            return Err(AuthError::WrongRoom(room.to_string()));
        }
        if !claims.grants.join {
            return Err(AuthError::NoJoinGrant);
        }
        Ok(JoinGrant { identity: claims.sub, name: claims.name, grants: claims.grants })
    }

    /// Checks a REST API bearer token: valid and with the admin grant.
    pub fn check_admin(&self, token: Option<&str>) -> Result<Claims, AuthError> {
        let claims = self.verify(token.ok_or(AuthError::Missing)?)?;
        if !claims.grants.admin {
            return Err(AuthError::NoAdminGrant);
        }
        Ok(claims)
    }
}

/// What to put in a new token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Identity (`sub`).
    pub identity: String,
    /// Display name.
    pub name: Option<String>,
    /// Room (required for joins).
    pub room: Option<String>,
    /// Grants.
    pub grants: Grants,
    /// Lifetime from now.
    pub ttl: Duration,
}

/// Signs a token with `key` (named in both `kid` and `iss`); valid from now for `ttl`.
pub fn issue(key: &ApiKey, req: &TokenRequest) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
    crate::jwt_hs256::install();
    let now = unix_now();
    let claims = Claims {
        iss: Some(key.key.clone()),
        sub: req.identity.clone(),
        name: req.name.clone(),
        room: req.room.clone(),
        exp: now + req.ttl.as_secs().max(1),
        nbf: now,
        grants: req.grants,
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.key.clone());
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key.secret.as_bytes()))?;
    Ok((token, claims))
}

/// The development key pair.
pub fn dev_key() -> ApiKey {
    ApiKey { key: DEV_KEY.to_string(), secret: DEV_SECRET.to_string() }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn prod() -> (Auth, ApiKey) {
        let key = ApiKey { key: "k1".into(), secret: SECRET.into() };
        (Auth::new(std::slice::from_ref(&key), false).unwrap(), key)
    }

    fn req(room: Option<&str>, grants: Grants) -> TokenRequest {
        TokenRequest {
            identity: "alice".into(),
            name: Some("Alice".into()),
            room: room.map(Into::into),
            grants,
            ttl: Duration::from_secs(600),
        }
    }

    fn sign_claims(key: &ApiKey, claims: &serde_json::Value, kid: bool) -> String {
        crate::jwt_hs256::install();
        let mut header = Header::new(Algorithm::HS256);
        if kid {
            header.kid = Some(key.key.clone());
        }
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key.secret.as_bytes())).unwrap()
    }

    #[test]
    fn config_is_refused_without_keys_or_with_weak_secrets() {
        assert_eq!(Auth::new(&[], false).err(), Some(ConfigError::NoKeys));
        let weak = ApiKey { key: "k".into(), secret: "short".into() };
        assert_eq!(Auth::new(&[weak], false).err(), Some(ConfigError::WeakSecret("k".into())));
        assert!(Auth::new(&[], true).is_ok());
        assert_eq!("k:s:x".parse::<ApiKey>().unwrap().secret, "s:x");
        assert!(":s".parse::<ApiKey>().is_err());
        assert!(!format!("{:?}", "k:topsecret".parse::<ApiKey>().unwrap()).contains("topsecret"));
    }

    #[test]
    fn join_checks() {
        let (auth, key) = prod();
        let (good, _) = issue(&key, &req(Some("r1"), Grants::participant())).unwrap();
        let g = auth.check_join(Some(&good), "r1", "x").unwrap();
        assert_eq!((g.identity.as_str(), g.name.as_deref()), ("alice", Some("Alice")));
        let rows: Vec<(Option<String>, &str, &str)> = vec![
            (None, "r1", "missing"),
            (Some(good.clone()), "r2", "wrong_room"),
            (Some("not.a.jwt".into()), "r1", "malformed"),
            (Some(issue(&key, &req(Some("r1"), Grants::default())).unwrap().0), "r1", "no_join_grant"),
            (Some(issue(&key, &req(None, Grants { admin: true, ..Grants::default() })).unwrap().0), "r1", "wrong_room"),
        ];
        for (token, room, want) in rows {
            let got = auth.check_join(token.as_deref(), room, "x").unwrap_err();
            assert_eq!(got.reason(), want, "{token:?} {room}");
        }
    }

    #[test]
    fn signature_key_and_time_checks() {
        let (auth, key) = prod();
        let now = unix_now();
        let claims = |exp: u64, nbf: u64| serde_json::json!({"sub": "a", "room": "r", "exp": exp, "nbf": nbf, "grants": {"join": true}});
        let forged = ApiKey { key: "k1".into(), secret: "another-secret-another-secret-xx".into() };
        let unknown = ApiKey { key: "k9".into(), secret: SECRET.into() };
        let rows: Vec<(String, &str)> = vec![
            (sign_claims(&key, &claims(now - 3600, now - 7200), true), "expired"),
            (sign_claims(&key, &claims(now + 7200, now + 3600), true), "not_yet_valid"),
            (sign_claims(&forged, &claims(now + 60, now), true), "bad_signature"),
            (sign_claims(&unknown, &claims(now + 60, now), true), "unknown_key"),
            (sign_claims(&key, &claims(now + 60, now), false), "unknown_key"), // neither kid nor iss
            // type confusion: nbf as a string must not skip the nbf check
            (
                sign_claims(
                    &key,
                    &serde_json::json!({"sub": "a", "room": "r", "exp": now + 60, "nbf": "99999999999", "iss": "k1"}),
                    false,
                ),
                "malformed",
            ),
            (
                sign_claims(&key, &serde_json::json!({"sub": "a", "room": "r", "exp": now + 60, "iss": "k1"}), false),
                "malformed",
            ),
        ];
        for (token, want) in rows {
            assert_eq!(auth.verify(&token).unwrap_err().reason(), want, "{token}");
        }
        // iss instead of kid names the key
        let by_iss = sign_claims(
            &key,
            &serde_json::json!({"sub": "a", "room": "r", "exp": now + 60, "nbf": now, "iss": "k1", "grants": {"join": true}}),
            false,
        );
        assert!(auth.check_join(Some(&by_iss), "r", "x").is_ok());
        // alg none is refused
        let none = format!("{}.{}.", b64(r#"{"alg":"none","kid":"k1"}"#), b64(&claims(now + 60, now).to_string()));
        assert!(auth.verify(&none).is_err());
    }

    #[test]
    fn admin_and_dev() {
        let (auth, key) = prod();
        let (admin, _) = issue(&key, &req(None, Grants { admin: true, ..Grants::default() })).unwrap();
        assert!(auth.check_admin(Some(&admin)).is_ok());
        let (user, _) = issue(&key, &req(Some("r"), Grants::participant())).unwrap();
        assert_eq!(auth.check_admin(Some(&user)).unwrap_err(), AuthError::NoAdminGrant);
        assert_eq!(auth.check_admin(None).unwrap_err(), AuthError::Missing);
        let (dev_token, _) = issue(&dev_key(), &req(Some("r"), Grants::participant())).unwrap();
        assert_eq!(auth.check_join(Some(&dev_token), "r", "x").unwrap_err(), AuthError::UnknownKey);
        let dev = Auth::dev();
        assert!(dev.check_join(Some(&dev_token), "r", "x").is_ok());
        assert_eq!(dev.check_join(None, "r", "bob").unwrap().identity, "bob");
        assert_eq!(dev.check_join(Some(&dev_token), "other", "x").unwrap_err().reason(), "wrong_room");
    }

    fn b64(s: &str) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &v)| acc | (u32::from(v) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
