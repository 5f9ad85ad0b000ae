//! The station channel: how a phone and a station hub talk over the station's Wi-Fi.
//!
//! The station's network is shared: anyone on it can listen, and anything on it can
//! stand between the phone and the hub and relay. Both already hold a key nobody else
//! does but the district server: the phone's key for this hub
//! ([`seal::DeviceKeys::hub_key`](super::seal::DeviceKeys::hub_key)), which the hub has
//! from its roster. After the handshake in which each side proves it holds that key
//! (the hub's one-time challenge, the phone's nonce: see [`seal`](super::seal)), every
//! call goes inside the channel: a ChaCha20-Poly1305 key derived from the hub key and
//! both of the handshake's random values, so that a listener reads no resident's name
//! and a relay can neither change, replay nor answer a call in the hub's name (a false
//! "revoked" would otherwise wipe the phone).
//!
//! ```text
//! call:  "LNCH" | version u8 = 1 | session (16 bytes: the hub's challenge) | seq u64 LE |
//!        ChaCha20-Poly1305(postcard(Call)), nonce 0x01 ‖ 0³ ‖ seq, the first 29 bytes as
//!        associated data
//! reply: the same header with the call's session and seq, postcard(Reply) under nonce
//!        0x02 ‖ 0³ ‖ seq
//! ```
//!
//! The phone numbers its calls in a session from 0; the hub takes each number once and
//! only upwards, so a recorded call replayed is refused, and a reply opens only as the
//! answer to its own call. A key is used for one session (one sync), so the 64-bit
//! counter never wraps. Sans-I/O: the hosts carry the bytes and keep the sessions.

use super::seal::hmac;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use serde::{Deserialize, Serialize};

/// The media type of channel frames.
pub const MEDIA_TYPE: &str = "application/vnd.linli.channel";

const MAGIC: [u8; 4] = *b"LNCH";
const VERSION: u8 = 1;
/// Bytes of a session id.
pub const SESSION: usize = 16;
const HEADER: usize = 4 + 1 + SESSION + 8;
const KEY_LABEL: &[u8] = b"linli station channel v1 ";
const CALL: u8 = 1;
const REPLY: u8 = 2;

/// One HTTP call inside the channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// `GET` or `POST`.
    pub method: String,
    /// Path and query, e.g. `/api/v1/sync`.
    pub path: String,
    /// The body's media type, if it has a body.
    pub content_type: Option<String>,
    /// The body's seal ([`seal::HEADER`](super::seal::HEADER)), for sync uploads.
    pub seal: Option<String>,
    /// The body.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl Call {
    /// A `GET` of `path`.
    pub fn get(path: &str) -> Call {
        Call {
            method: "GET".into(),
            path: path.into(),
            ..Call::default()
        }
    }

    /// A `POST` of `body` (of media type `content_type`, sealed with `seal` if given) to
    /// `path`.
    pub fn post(path: &str, content_type: &str, body: Vec<u8>, seal: Option<String>) -> Call {
        Call {
            method: "POST".into(),
            path: path.into(),
            content_type: Some(content_type.into()),
            seal,
            body,
        }
    }
}

/// The hub's answer to a [`Call`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The HTTP status the call had.
    pub status: u16,
    /// The body's media type.
    pub content_type: Option<String>,
    /// The body.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// Why bytes are not what this channel expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Too short, or not a channel frame of a version this build reads.
    #[error("not a station channel frame of a version this build reads")]
    NotAFrame,
    /// A reply to another session or call than the one it answers.
    #[error("the reply answers another call")]
    Misdirected,
    /// It does not open with this session's key (changed on the way, or made by
    /// someone without the key), or its contents do not decode.
    #[error("the frame does not open with this session's key")]
    Forged,
}

/// A session's key, held by the phone and the hub alike.
#[derive(Clone)]
pub struct Channel {
    cipher: ChaCha20Poly1305,
    session: [u8; SESSION],
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// The channel of the handshake in which device `device` answered hub `hub`'s
    /// `challenge` (16 bytes, the session's id) and sent `nonce`, both proving they
    /// hold `hub_key`.
    pub fn new(
        hub_key: &[u8; 32],
        hub: uuid::Uuid,
        device: uuid::Uuid,
        nonce: &[u8],
        challenge: [u8; SESSION],
    ) -> Channel {
        let key = hmac(
            hub_key,
            &[
                KEY_LABEL,
                hub.as_bytes(),
                device.as_bytes(),
                nonce,
                &challenge,
            ],
        );
        Channel {
            cipher: ChaCha20Poly1305::new(&key.into()),
            session: challenge,
        }
    }

    /// The session's id.
    pub fn session(&self) -> [u8; SESSION] {
        self.session
    }

    /// The phone's `seq`-th call of the session, sealed.
    pub fn seal_call(&self, seq: u64, call: &Call) -> Vec<u8> {
        self.seal(CALL, seq, call)
    }

    /// Opens a call ([`frame_of`] found its session): its number and contents.
    pub fn open_call(&self, frame: &[u8]) -> Result<(u64, Call), ChannelError> {
        let (session, seq) = frame_of(frame)?;
        if session != self.session {
            return Err(ChannelError::Misdirected);
        }
        Ok((seq, self.open(CALL, seq, frame)?))
    }

    /// The hub's reply to call `seq`, sealed.
    pub fn seal_reply(&self, seq: u64, reply: &Reply) -> Vec<u8> {
        self.seal(REPLY, seq, reply)
    }

    /// Opens the reply to call `seq`.
    pub fn open_reply(&self, seq: u64, frame: &[u8]) -> Result<Reply, ChannelError> {
        if frame_of(frame)? != (self.session, seq) {
            return Err(ChannelError::Misdirected);
        }
        self.open(REPLY, seq, frame)
    }

    fn seal<T: Serialize>(&self, direction: u8, seq: u64, message: &T) -> Vec<u8> {
        let mut frame = Vec::with_capacity(HEADER + 64);
        frame.extend_from_slice(&MAGIC);
        frame.push(VERSION);
        frame.extend_from_slice(&self.session);
        frame.extend_from_slice(&seq.to_le_bytes());
        let plain = postcard::to_stdvec(message).expect("postcard encodes these types");
        let sealed = self
            .cipher
            .encrypt(
                &nonce(direction, seq),
                Payload {
                    msg: &plain,
                    aad: &frame,
                },
            )
            .expect("ChaCha20-Poly1305 seals any message this size");
        frame.extend_from_slice(&sealed);
        frame
    }

    fn open<T: for<'de> Deserialize<'de>>(
        &self,
        direction: u8,
        seq: u64,
        frame: &[u8],
    ) -> Result<T, ChannelError> {
        let (header, sealed) = frame.split_at(HEADER);
        let plain = self
            .cipher
            .decrypt(
                &nonce(direction, seq),
                Payload {
                    msg: sealed,
                    aad: header,
                },
            )
            .map_err(|_| ChannelError::Forged)?;
        postcard::from_bytes(&plain).map_err(|_| ChannelError::Forged)
    }
}

/// The header of a hub enrolment: [`code_lookup`] of the code, in hex.
pub const CODE_HEADER: &str = "linli-code";

/// An enrolment code as the district server keeps it, and as a hub learns it: SHA-256
/// of the code, trimmed and upper-cased (people type it).
pub fn code_hash(code: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(code.trim().to_ascii_uppercase().as_bytes()).into()
}

/// What a phone enrolling at a hub names its code by, without giving it away: an
/// HMAC under the code's hash, which the hub holds for each of its station's codes.
pub fn code_lookup(code_hash: &[u8; 32]) -> [u8; 32] {
    hmac(code_hash, &[b"linli hub enrol lookup v1"])
}

/// The channel a phone enrols at hub `hub` in: keyed by the code's hash, which only the
/// phone (from the code) and the station's hub (from its roster) hold, and the phone's
/// random `session`. A listener on the station's network learns neither the code nor
/// the device's keys, and only the district's hub of that station can answer.
pub fn enrolment_channel(code_hash: &[u8; 32], hub: uuid::Uuid, session: [u8; SESSION]) -> Channel {
    Channel::new(code_hash, hub, uuid::Uuid::nil(), &session, session)
}

/// The session and number a frame says it belongs to (not yet checked: only opening
/// it with the session's key proves them).
pub fn frame_of(frame: &[u8]) -> Result<([u8; SESSION], u64), ChannelError> {
    if frame.len() < HEADER || frame[..4] != MAGIC || frame[4] != VERSION {
        return Err(ChannelError::NotAFrame);
    }
    let session = frame[5..5 + SESSION]
        .try_into()
        .map_err(|_| ChannelError::NotAFrame)?;
    let seq = frame[5 + SESSION..HEADER]
        .try_into()
        .map(u64::from_le_bytes)
        .map_err(|_| ChannelError::NotAFrame)?;
    Ok((session, seq))
}

fn nonce(direction: u8, seq: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[0] = direction;
    nonce[4..].copy_from_slice(&seq.to_le_bytes());
    nonce.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: uuid::Uuid = uuid::Uuid::from_u128(1);
    const DEVICE: uuid::Uuid = uuid::Uuid::from_u128(2);

    fn channel(key: u8, nonce: u8, challenge: u8) -> Channel {
        Channel::new(&[key; 32], HUB, DEVICE, &[nonce; 16], [challenge; SESSION])
    }

    fn call() -> Call {
        Call {
            method: "POST".into(),
            path: "/api/v1/sync".into(),
            content_type: Some("application/vnd.linli.sync".into()),
            seal: Some("ab".repeat(32)),
            body: "读报，量血压 135/85".as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_call_and_its_reply_open_on_the_other_side_and_hide_their_contents() {
        let (phone, hub) = (channel(7, 1, 9), channel(7, 1, 9));
        let frame = phone.seal_call(3, &call());
        assert_eq!(frame_of(&frame), Ok(([9; SESSION], 3)));
        assert_eq!(hub.open_call(&frame), Ok((3, call())));
        let needle = "量血压".as_bytes();
        assert!(!frame.windows(needle.len()).any(|w| w == needle));

        let reply = Reply {
            status: 401,
            content_type: Some("application/json".into()),
            body: br#"{"code":"device_revoked"}"#.to_vec(),
        };
        let sealed = hub.seal_reply(3, &reply);
        assert_eq!(phone.open_reply(3, &sealed), Ok(reply));
    }

    #[test]
    fn what_a_relay_changes_or_moves_does_not_open() {
        let (phone, hub) = (channel(7, 1, 9), channel(7, 1, 9));
        let frame = phone.seal_call(0, &call());
        for at in [5, 21, 30, frame.len() - 1] {
            let mut changed = frame.clone();
            changed[at] ^= 1;
            assert!(hub.open_call(&changed).is_err(), "byte {at} changed");
        }
        let reply = hub.seal_reply(0, &Reply::default());
        assert_eq!(
            phone.open_reply(1, &reply),
            Err(ChannelError::Misdirected),
            "a reply to call 0 is no answer to call 1"
        );
        assert_eq!(
            phone.open_reply(0, &frame),
            Err(ChannelError::Forged),
            "a call is no reply"
        );
        assert_eq!(
            hub.open_call(&reply),
            Err(ChannelError::Forged),
            "a reply is no call"
        );
        assert_eq!(hub.open_call(b"LNCH"), Err(ChannelError::NotAFrame));
        assert_eq!(hub.open_call(&[]), Err(ChannelError::NotAFrame));
    }

    #[test]
    fn only_the_same_key_and_handshake_open_a_frame() {
        let frame = channel(7, 1, 9).seal_call(0, &call());
        assert_eq!(
            channel(8, 1, 9).open_call(&frame),
            Err(ChannelError::Forged),
            "another key"
        );
        assert_eq!(
            channel(7, 2, 9).open_call(&frame),
            Err(ChannelError::Forged),
            "another nonce"
        );
        assert_eq!(
            channel(7, 1, 8).open_call(&frame),
            Err(ChannelError::Misdirected),
            "another session"
        );
        let other_device = Channel::new(&[7; 32], HUB, HUB, &[1; 16], [9; SESSION]);
        assert_eq!(other_device.open_call(&frame), Err(ChannelError::Forged));
    }
}
