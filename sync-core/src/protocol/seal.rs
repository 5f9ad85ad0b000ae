//! Keys a phone derives from its device's export key, and the seal it puts on every
//! sync request.
//!
//! A station hub (see `ARCHITECTURE.md`, "Station hubs") takes a phone's request while
//! the district server is out of reach and hands it on later. The district server must
//! then know that the phone wrote it, not the hub: a hub holds its station's residents
//! and could otherwise upload a visit under any of its phones' names. So the phone
//! seals each request body with a key that only it and the district server hold, and
//! the server checks the seal of every body a hub forwards.
//!
//! Both keys come from the device's export key (32 random bytes, given to the phone
//! once at enrolment and kept beside the device on the server), as HMAC-SHA256 under
//! a label, so each key serves one purpose:
//!
//! - the **upload key** seals request bodies (the district server checks it);
//! - a **hub key**, one per hub, lets a phone prove to that hub which device it is.
//!   The district server gives each hub the hub keys of its station's devices; a hub
//!   learns no other hub's key and cannot make an upload key's seal.
//!
//! Sans-I/O: the hosts keep the export key and carry the seal in an HTTP header
//! ([`HEADER`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The HTTP header that carries a request body's seal, as 64 lowercase hex digits.
pub const HEADER: &str = "linli-seal";

const UPLOAD_LABEL: &[u8] = b"linli upload key v1";
const HUB_LABEL: &[u8] = b"linli hub key v1 ";
const HUB_PROOF_LABEL: &[u8] = b"linli hub proof v1 ";
const HUB_ANSWER_LABEL: &[u8] = b"linli hub answer v1 ";

type HmacSha256 = Hmac<Sha256>;

/// A seal: HMAC-SHA256 of a request body under the device's upload key.
pub type Seal = [u8; 32];

/// A key is not the 32 bytes an export key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an export key is 32 bytes")]
pub struct BadKey;

/// The keys derived from one device's export key.
#[derive(Clone)]
pub struct DeviceKeys {
    export: [u8; 32],
}

impl std::fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKeys([redacted])")
    }
}

/// HMAC-SHA256 of `parts`, one after the other, under `key`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl DeviceKeys {
    /// The keys of the device whose export key is `export_key`.
    pub fn new(export_key: &[u8]) -> Result<Self, BadKey> {
        Ok(DeviceKeys {
            export: export_key.try_into().map_err(|_| BadKey)?,
        })
    }

    fn upload_key(&self) -> [u8; 32] {
        hmac(&self.export, &[UPLOAD_LABEL])
    }

    /// The key this device proves itself with to the hub `hub` (the hub's id).
    pub fn hub_key(&self, hub: uuid::Uuid) -> [u8; 32] {
        hmac(&self.export, &[HUB_LABEL, hub.as_bytes()])
    }

    /// The seal of a request body.
    pub fn seal(&self, body: &[u8]) -> Seal {
        hmac(&self.upload_key(), &[body])
    }

    /// Whether `seal` is this device's seal of `body` (compared in constant time).
    pub fn verify(&self, body: &[u8], seal: &[u8]) -> bool {
        verify_hmac(&self.upload_key(), &[body], seal)
    }
}

/// A phone's proof to a hub that it is `device`: HMAC-SHA256 under the device's key
/// for that hub ([`DeviceKeys::hub_key`]) of the hub's one-time `challenge` and the
/// device's id. The hub, which holds the hub key, checks it with [`verify_hub_proof`].
pub fn hub_proof(hub_key: &[u8; 32], challenge: &[u8], device: uuid::Uuid) -> [u8; 32] {
    hmac(hub_key, &[HUB_PROOF_LABEL, device.as_bytes(), challenge])
}

/// Whether `proof` is [`hub_proof`] of `challenge` for `device` (in constant time).
pub fn verify_hub_proof(
    hub_key: &[u8; 32],
    challenge: &[u8],
    device: uuid::Uuid,
    proof: &[u8],
) -> bool {
    verify_hmac(
        hub_key,
        &[HUB_PROOF_LABEL, device.as_bytes(), challenge],
        proof,
    )
}

/// The hub's proof to the phone that it is hub `hub` of the district: HMAC-SHA256,
/// under the same per-hub key (which a hub receives from the district server with its
/// roster, and nobody else holds but the phone), of the phone's own `nonce` and the
/// hub's `challenge`. A device on the station's network posing as the hub cannot
/// make it, so the phone sends nothing to it. (It does not stop a relay between the
/// phone and the real hub: that needs TLS.)
pub fn hub_answer(
    hub_key: &[u8; 32],
    hub: uuid::Uuid,
    device: uuid::Uuid,
    nonce: &[u8],
    challenge: &[u8],
) -> [u8; 32] {
    hmac(
        hub_key,
        &answered(hub.as_bytes(), device.as_bytes(), nonce, challenge),
    )
}

/// Whether `answer` is [`hub_answer`] of these (in constant time).
pub fn verify_hub_answer(
    hub_key: &[u8; 32],
    hub: uuid::Uuid,
    device: uuid::Uuid,
    nonce: &[u8],
    challenge: &[u8],
    answer: &[u8],
) -> bool {
    let parts = answered(hub.as_bytes(), device.as_bytes(), nonce, challenge);
    verify_hmac(hub_key, &parts, answer)
}

/// What a hub's answer is an HMAC of.
fn answered<'a>(
    hub: &'a [u8],
    device: &'a [u8],
    nonce: &'a [u8],
    challenge: &'a [u8],
) -> [&'a [u8]; 5] {
    [HUB_ANSWER_LABEL, hub, device, nonce, challenge]
}

/// Whether `tag` is the HMAC-SHA256 of `parts` under `key`, in constant time.
pub fn verify_hmac(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(key) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(tag).is_ok()
}

/// A seal as the header carries it.
pub fn to_header(seal: &Seal) -> String {
    seal.iter().map(|b| format!("{b:02x}")).collect()
}

/// A seal from the header's value; `None` unless it is 64 hex digits.
pub fn from_header(value: &str) -> Option<Seal> {
    let value = value.trim().as_bytes();
    if value.len() != 64 {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16);
    let mut seal = [0u8; 32];
    for (byte, pair) in seal.iter_mut().zip(value.chunks_exact(2)) {
        // Each digit is below 16, so the byte fits.
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(seal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(byte: u8) -> DeviceKeys {
        DeviceKeys::new(&[byte; 32]).expect("32 bytes")
    }

    #[test]
    fn a_seal_verifies_only_for_its_body_and_device() {
        let body = b"LNSY\x02\x01 a request";
        let seal = keys(1).seal(body);
        assert!(keys(1).verify(body, &seal));
        assert!(!keys(2).verify(body, &seal), "another device's key");
        assert!(
            !keys(1).verify(b"LNSY\x02\x01 another", &seal),
            "another body"
        );
        assert!(!keys(1).verify(body, &seal[..31]), "a short seal");
        let mut flipped = seal;
        flipped[0] ^= 1;
        assert!(!keys(1).verify(body, &flipped));
    }

    #[test]
    fn hub_keys_differ_per_hub_and_from_the_upload_key() {
        let a = uuid::Uuid::from_u128(1);
        let b = uuid::Uuid::from_u128(2);
        let k = keys(7);
        assert_ne!(k.hub_key(a), k.hub_key(b));
        assert_ne!(k.hub_key(a), k.upload_key());
        assert_ne!(k.hub_key(a), keys(8).hub_key(a));
        // A hub key cannot make the device's seal.
        let body = b"body";
        assert!(!k.verify(body, &hmac(&k.hub_key(a), &[body])));
    }

    #[test]
    fn a_hub_proof_verifies_only_for_its_device_challenge_and_key() {
        let hub = uuid::Uuid::from_u128(9);
        let device = uuid::Uuid::from_u128(4);
        let key = keys(5).hub_key(hub);
        let proof = hub_proof(&key, b"challenge", device);
        assert!(verify_hub_proof(&key, b"challenge", device, &proof));
        assert!(!verify_hub_proof(&key, b"challengf", device, &proof));
        assert!(!verify_hub_proof(
            &key,
            b"challenge",
            uuid::Uuid::from_u128(3),
            &proof
        ));
        let other = keys(6).hub_key(hub);
        assert!(!verify_hub_proof(&other, b"challenge", device, &proof));
        assert!(!verify_hub_proof(&key, b"challenge", device, &proof[..16]));
    }

    #[test]
    fn a_hub_answer_verifies_only_for_its_hub_device_nonce_challenge_and_key() {
        let (hub, device, other) = (
            uuid::Uuid::from_u128(9),
            uuid::Uuid::from_u128(4),
            uuid::Uuid::from_u128(3),
        );
        let key = keys(5).hub_key(hub);
        let answer = hub_answer(&key, hub, device, b"nonce", b"challenge");
        let verifies = |key: &[u8; 32], hub, device, nonce: &[u8], challenge: &[u8]| {
            verify_hub_answer(key, hub, device, nonce, challenge, &answer)
        };
        assert!(verifies(&key, hub, device, b"nonce", b"challenge"));
        assert!(!verifies(&key, other, device, b"nonce", b"challenge"));
        assert!(!verifies(&key, hub, other, b"nonce", b"challenge"));
        assert!(!verifies(&key, hub, device, b"noncf", b"challenge"));
        assert!(!verifies(&key, hub, device, b"nonce", b"challengf"));
        let wrong = keys(6).hub_key(hub);
        assert!(!verifies(&wrong, hub, device, b"nonce", b"challenge"));
        // The phone's own proof is no answer: a hub cannot echo it back.
        let proof = hub_proof(&key, b"challenge", device);
        assert!(!verify_hub_answer(
            &key,
            hub,
            device,
            b"",
            b"challenge",
            &proof
        ));
    }

    #[test]
    fn the_header_round_trips_and_refuses_what_is_not_a_seal() {
        let seal = keys(3).seal(b"x");
        assert_eq!(from_header(&to_header(&seal)), Some(seal));
        assert_eq!(from_header(&format!(" {} ", to_header(&seal))), Some(seal));
        assert_eq!(from_header("abc"), None);
        assert_eq!(from_header(&"zz".repeat(32)), None);
        assert_eq!(from_header(&"é".repeat(32)), None);
        assert_eq!(from_header(&"+1".repeat(32)), None);
        assert!(DeviceKeys::new(&[0; 31]).is_err());
    }
}
