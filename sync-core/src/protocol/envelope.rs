//! The sync envelope, version 1. See `sync-core/PROTOCOL.md` for the byte layout.
//!
//! ```text
//! magic "LNSY" | version u8 = 1 | kind u8 (1 request, 2 response) | postcard body
//! ```
//! The body is [postcard](https://postcard.jamesmunns.com/wire-format) (a stable,
//! documented wire format) of [`SyncRequest`] or [`SyncResponse`]. Decoding checks the
//! header, rejects trailing bytes and never panics on malformed input.

use crate::ids::DocId;
use automerge::ChangeHash;
use serde::{Deserialize, Serialize};

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"LNSY";
/// The envelope version this build writes and reads.
pub const VERSION: u8 = 1;
const KIND_REQUEST: u8 = 1;
const KIND_RESPONSE: u8 = 2;

/// Why bytes are not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the six-byte header.
    #[error("the message is {0} bytes long, shorter than the 6-byte header")]
    TooShort(usize),
    /// Not a Linli sync message.
    #[error("the message does not start with \"LNSY\"")]
    BadMagic,
    /// A version this build does not read.
    #[error("envelope version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u8),
    /// A request where a response was expected, or the reverse.
    #[error("expected a {expected}, found message kind {found}")]
    WrongKind {
        /// What the caller expected.
        expected: &'static str,
        /// The kind byte found.
        found: u8,
    },
    /// The body does not decode.
    #[error("the body does not decode: {0}")]
    Body(String),
    /// Bytes follow the body.
    #[error("{0} unexpected bytes follow the body")]
    TrailingBytes(usize),
    /// A change hash is not 32 bytes.
    #[error("a change hash is malformed")]
    BadHash,
}

/// A change hash on the wire: 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", ChangeHash(self.0))
    }
}

impl From<ChangeHash> for Hash {
    fn from(h: ChangeHash) -> Self {
        Hash(h.0)
    }
}

impl From<Hash> for ChangeHash {
    fn from(h: Hash) -> Self {
        ChangeHash(h.0)
    }
}

/// Converts a list of wire hashes to Automerge hashes.
pub fn to_change_hashes(hashes: &[Hash]) -> Vec<ChangeHash> {
    hashes.iter().map(|h| ChangeHash::from(*h)).collect()
}

/// Converts Automerge hashes to wire hashes.
pub fn to_wire_hashes(hashes: &[ChangeHash]) -> Vec<Hash> {
    hashes.iter().map(|h| Hash::from(*h)).collect()
}

/// A phone's request: what it has seen, what it changed, and any per-document repairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// The last feed sequence number whose changes the phone holds.
    pub cursor: u64,
    /// Digest of the documents the phone holds that the server knows it holds
    /// (see [`held_digest`]). The server answers with `need_held` when its record differs.
    pub held_digest: [u8; 16],
    /// The full list of held documents, sent only after the server asked for it.
    pub held: Option<Vec<DocId>>,
    /// Documents changed on the phone: the changes since the heads the server receipted.
    pub uploads: Vec<DocUpload>,
    /// Automerge sync messages for documents being repaired.
    pub fallback: Vec<FallbackMessage>,
}

/// A phone's new changes to one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocUpload {
    /// Which document.
    pub doc: DocId,
    /// The phone's heads once these changes are applied; echoed in the receipt.
    pub heads: Vec<Hash>,
    /// Raw Automerge changes, in causal order.
    pub changes: Vec<Bytes>,
}

/// An Automerge sync-protocol message for one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackMessage {
    /// Which document.
    pub doc: DocId,
    /// `automerge::sync::Message::encode()`.
    pub message: Bytes,
}

/// Bytes, serialised as one length-prefixed block.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Bytes(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({})", self.0.len())
    }
}

/// The server's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// The phone's new cursor.
    pub cursor: u64,
    /// Uploads now durably stored.
    pub receipts: Vec<Receipt>,
    /// Uploads refused, each kept in the server's quarantine.
    pub rejections: Vec<Rejection>,
    /// Changes and documents the phone lacks.
    pub docs: Vec<DocDelivery>,
    /// Documents that left the phone's scope: delete them.
    pub purge: Vec<DocId>,
    /// Automerge sync messages for documents being repaired.
    pub fallback: Vec<FallbackMessage>,
    /// The server's record of what the phone holds differs from the phone's digest:
    /// send the full `held` list next time.
    pub need_held: bool,
    /// More is waiting: sync again.
    pub more: bool,
}

/// The receipt for one upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Which document.
    pub doc: DocId,
    /// The uploaded heads, now stored.
    pub heads: Vec<Hash>,
}

/// Why one upload was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Which document.
    pub doc: DocId,
    /// A stable code ([`crate::rules::Violation::code`] or a protocol code).
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// The refused upload's heads (empty for a refused repair message), so the phone
    /// knows whether it has written anything since.
    pub heads: Vec<Hash>,
}

/// What the phone lacks of one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocDelivery {
    /// Which document.
    pub doc: DocId,
    /// A whole saved document, for documents new to the phone.
    pub snapshot: Option<Bytes>,
    /// Raw changes, in causal order.
    pub changes: Vec<Bytes>,
}

impl SyncRequest {
    /// Encodes the request with its header.
    pub fn encode(&self) -> Vec<u8> {
        encode(KIND_REQUEST, self)
    }

    /// Decodes a request; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes, KIND_REQUEST, "request")
    }
}

impl SyncResponse {
    /// Encodes the response with its header.
    pub fn encode(&self) -> Vec<u8> {
        encode(KIND_RESPONSE, self)
    }

    /// Decodes a response; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes, KIND_RESPONSE, "response")
    }
}

fn encode<T: Serialize>(kind: u8, body: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    // Serialising these plain structs into a Vec cannot fail.
    postcard::to_extend(body, out).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    kind: u8,
    name: &'static str,
) -> Result<T, DecodeError> {
    if bytes.len() < 6 {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if bytes[4] != VERSION {
        return Err(DecodeError::UnsupportedVersion(bytes[4]));
    }
    if bytes[5] != kind {
        return Err(DecodeError::WrongKind {
            expected: name,
            found: bytes[5],
        });
    }
    let (body, rest) =
        postcard::take_from_bytes(&bytes[6..]).map_err(|e| DecodeError::Body(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(body)
}

/// The digest of a set of documents: their count and the wrapping sum of their ids.
/// Order-free and cheap to keep up to date; a differing set matches by chance with
/// probability about 2^-120.
pub fn held_digest<'a>(docs: impl IntoIterator<Item = &'a DocId>) -> [u8; 16] {
    let mut sum: u128 = 0;
    let mut count: u64 = 0;
    for d in docs {
        // Spread the id so structured (v7) ids do not cancel each other out.
        let x =
            d.0.as_u128()
                .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        sum = sum.wrapping_add(x ^ (x >> 61));
        count += 1;
    }
    (sum ^ u128::from(count).wrapping_mul(0xD6E8_FEB8_6659_FD93)).to_le_bytes()
}
