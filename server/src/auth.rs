//! Credentials: signed access tokens (JWT, HS256), hashed refresh tokens and enrolment
//! codes, and argon2 password hashes.

use crate::error::{AuthFailure, Error, Result};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use uuid::Uuid;

/// How long an access token lives, in seconds.
pub const ACCESS_TOKEN_SECS: u64 = 15 * 60;
/// How long an enrolment code stays usable, in milliseconds.
pub const ENROLMENT_CODE_MS: i64 = 15 * 60 * 1000;
const AUDIENCE: &str = "linli";
/// The audience of a station hub's tokens: a hub's token is refused wherever a user's
/// is taken, and the reverse.
const HUB_AUDIENCE: &str = "linli-hub";
const MIN_KEY_BYTES: usize = 32;

/// What an access token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: Uuid,
    /// The device, for tokens issued to an enrolled device; `None` for a password
    /// login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<Uuid>,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// Always `linli`.
    pub aud: String,
}

/// The keys that sign and verify access tokens.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    hub_validation: Validation,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    /// Keys from a secret of at least 32 bytes.
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(Error::Config(format!(
                "the signing key must be at least {MIN_KEY_BYTES} bytes"
            )));
        }
        // Only HS256 verifies: `alg: none` and every other algorithm are refused.
        let validation = |audience: &str| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "sub", "aud"]);
            validation.leeway = 5;
            validation
        };
        Ok(Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation: validation(AUDIENCE),
            hub_validation: validation(HUB_AUDIENCE),
        })
    }

    /// The configured key, or the one kept in `data_dir/signing.key`, created on first
    /// start.
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> Result<Self> {
        if let Some(key) = configured {
            return Keys::new(key.as_bytes());
        }
        let path = data_dir.join("signing.key");
        match std::fs::read(&path) {
            Ok(bytes) => Keys::new(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = hex::encode(random_bytes::<32>()?);
                write_private(&path, key.as_bytes())?;
                Keys::new(key.as_bytes())
            }
            Err(e) => Err(Error::Config(format!(
                "cannot read the signing key {}: {e}",
                path.display()
            ))),
        }
    }

    /// Signs an access token for `user` (and `device`) issued at `now_secs`.
    pub fn issue(&self, user: Uuid, device: Option<Uuid>, now_secs: u64) -> Result<String> {
        self.sign(user, device, AUDIENCE, now_secs)
    }

    /// Signs an access token for the station hub `hub`, issued at `now_secs`.
    pub fn issue_hub(&self, hub: Uuid, now_secs: u64) -> Result<String> {
        self.sign(hub, None, HUB_AUDIENCE, now_secs)
    }

    fn sign(&self, sub: Uuid, dev: Option<Uuid>, aud: &str, now_secs: u64) -> Result<String> {
        let claims = Claims {
            sub,
            dev,
            iat: now_secs,
            exp: now_secs + ACCESS_TOKEN_SECS,
            aud: aud.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("signing a token: {e}")))
    }

    /// Verifies a user's or device's token: signature, algorithm, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthFailure> {
        self.check(token, &self.validation)
    }

    /// Verifies a station hub's token; its `sub` is the hub.
    pub fn verify_hub(&self, token: &str) -> Result<Claims, AuthFailure> {
        self.check(token, &self.hub_validation)
    }

    fn check(&self, token: &str, validation: &Validation) -> Result<Claims, AuthFailure> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthFailure::Expired,
                _ => AuthFailure::Invalid,
            })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| {
        Error::Config(format!(
            "cannot create the signing key {}: {e}",
            path.display()
        ))
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))
}

/// `N` bytes from the operating system's generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no randomness available: {e}")))?;
    Ok(bytes)
}

/// A new opaque secret (refresh token): 256 random bits, URL-safe base64.
pub fn new_secret() -> Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// A new enrolment code: 100 random bits in Crockford base32 (20 characters, no
/// look-alike letters), for a QR code or, at worst, typing.
pub fn new_enrolment_code() -> Result<String> {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bytes = random_bytes::<20>()?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b & 31)] as char)
        .collect())
}

/// How a secret is stored: its SHA-256. Secrets are 100+ random bits, so a fast hash
/// is enough; a leaked table reveals nothing usable.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.trim().as_bytes()).to_vec()
}

/// How an enrolment code is stored: case and surrounding spaces do not matter, as
/// people may type it.
pub fn code_hash(code: &str) -> Vec<u8> {
    sync_core::protocol::channel::code_hash(code).to_vec()
}

/// An argon2id hash of `password` with a fresh salt.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| Error::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing a password: {e}")))
}

/// Whether `password` matches `hash`. A malformed stored hash never matches.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn a_token_verifies_only_with_its_key_and_before_expiry() {
        let keys = Keys::new(&[7; 32]).unwrap();
        let user = Uuid::from_u128(1);
        let token = keys.issue(user, Some(Uuid::from_u128(2)), now()).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub, claims.dev), (user, Some(Uuid::from_u128(2))));

        let other = Keys::new(&[8; 32]).unwrap();
        assert_eq!(other.verify(&token), Err(AuthFailure::Invalid));
        let old = keys
            .issue(user, None, now() - 2 * ACCESS_TOKEN_SECS)
            .unwrap();
        assert_eq!(keys.verify(&old), Err(AuthFailure::Expired));
        assert_eq!(keys.verify("not.a.token"), Err(AuthFailure::Invalid));
    }

    #[test]
    fn hub_tokens_and_user_tokens_do_not_open_each_others_doors() {
        let keys = Keys::new(&[7; 32]).unwrap();
        let hub = Uuid::from_u128(5);
        let hub_token = keys.issue_hub(hub, now()).unwrap();
        assert_eq!(keys.verify_hub(&hub_token).unwrap().sub, hub);
        assert_eq!(keys.verify(&hub_token), Err(AuthFailure::Invalid));
        let user_token = keys.issue(hub, None, now()).unwrap();
        assert_eq!(keys.verify_hub(&user_token), Err(AuthFailure::Invalid));
        let old = keys.issue_hub(hub, now() - 2 * ACCESS_TOKEN_SECS).unwrap();
        assert_eq!(keys.verify_hub(&old), Err(AuthFailure::Expired));
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let keys = Keys::new(&[7; 32]).unwrap();
        let token = keys.issue(Uuid::from_u128(1), None, now()).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            keys.verify(&format!("{none_header}.{payload}.")),
            Err(AuthFailure::Invalid)
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(matches!(Keys::new(&[1; 31]), Err(Error::Config(_))));
    }

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong horse"));
        assert!(!verify_password("garbage", "correct horse"));
    }

    #[test]
    fn enrolment_codes_are_normalised_before_hashing() {
        let code = new_enrolment_code().unwrap();
        assert_eq!(code.len(), 20);
        assert_eq!(
            code_hash(&code),
            code_hash(&format!(" {} ", code.to_lowercase()))
        );
        assert_ne!(secret_hash("abc"), secret_hash("ABC"));
    }
}
