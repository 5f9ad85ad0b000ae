//! The sync envelope, version 2. See `sync-core/PROTOCOL.md` for the byte layout.
//!
//! ```text
//! magic "LNSY" | version u8 = 2 | kind u8 (1 request, 2 response) | postcard body
//! ```
//! The body is [postcard](https://postcard.jamesmunns.com/wire-format) (a stable,
//! documented wire format) of [`SyncRequest`] or [`SyncResponse`]. Decoding checks the
//! header, rejects trailing bytes and never panics on malformed input.
//!
//! Version 1 lacked the phone's clock, the quarantine numbers of refusals and the
//! coordinators' decisions on them. A server still reads version-1 requests
//! ([`SyncRequest::decode_versioned`]) and answers them in version 1
//! ([`SyncResponse::encode_version`]), so phones in the field keep syncing.

use crate::ids::{DocId, Timestamp};
use automerge::ChangeHash;
use serde::{Deserialize, Serialize};

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"LNSY";
/// The envelope version this build writes.
pub const VERSION: u8 = 2;
/// The oldest request version a server still reads (and answers in kind).
pub const OLDEST_VERSION: u8 = 1;
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
    #[error("envelope version {0} is not supported (this build reads versions 1 and 2)")]
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
    /// The phone's clock when it made the request, Unix ms (0: unknown, as from a
    /// version-1 phone). The server judges the times a phone wrote by the phone's
    /// clock where it runs ahead, so a phone whose clock drifted is not refused.
    pub clock: Timestamp,
    /// Quarantine numbers of the phone's refused uploads that still await a person's
    /// decision; the server answers each decided one in [`SyncResponse::decisions`].
    pub refused: Vec<u64>,
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
    /// Decisions on refused uploads the request listed in [`SyncRequest::refused`].
    pub decisions: Vec<Decision>,
}

/// A person's decision on a refused upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The refused upload's quarantine number ([`Rejection::quarantine`]).
    pub quarantine: u64,
    /// Accepted: the changes are now in the server's copy and reach the phone like
    /// any other. Dismissed otherwise.
    pub accepted: bool,
    /// Who decided, and why, for the volunteer.
    pub note: String,
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
    /// The quarantine number the server keeps the refused bytes under, for the
    /// phone to ask after a decision (0: nothing was kept, as for `busy`).
    pub quarantine: u64,
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
        encode(VERSION, KIND_REQUEST, self)
    }

    /// Decodes a request of the current version; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match Self::decode_versioned(bytes)? {
            (request, VERSION) => Ok(request),
            (_, old) => Err(DecodeError::UnsupportedVersion(old)),
        }
    }

    /// Decodes a request of any version a server still reads, with that version, so
    /// the answer can be encoded in kind. Fields a version lacks are empty.
    pub fn decode_versioned(bytes: &[u8]) -> Result<(Self, u8), DecodeError> {
        match header(bytes, KIND_REQUEST, "request")? {
            1 => {
                let v1: v1::Request = body(bytes)?;
                Ok((v1.into(), 1))
            }
            v => Ok((body(bytes)?, v)),
        }
    }
}

impl SyncResponse {
    /// Encodes the response with its header.
    pub fn encode(&self) -> Vec<u8> {
        encode(VERSION, KIND_RESPONSE, self)
    }

    /// Encodes the response in `version` (a request's): what that version lacks is
    /// left out.
    pub fn encode_version(&self, version: u8) -> Vec<u8> {
        match version {
            1 => encode(1, KIND_RESPONSE, &v1::Response::from(self)),
            _ => self.encode(),
        }
    }

    /// Decodes a response of the current version; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match header(bytes, KIND_RESPONSE, "response")? {
            VERSION => body(bytes),
            old => Err(DecodeError::UnsupportedVersion(old)),
        }
    }
}

pub(super) fn encode<T: Serialize>(version: u8, kind: u8, body: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.push(version);
    out.push(kind);
    // Serialising these plain structs into a Vec cannot fail.
    postcard::to_extend(body, out).unwrap_or_default()
}

/// Checks the header and returns the envelope's version.
pub(super) fn header(bytes: &[u8], kind: u8, name: &'static str) -> Result<u8, DecodeError> {
    if bytes.len() < 6 {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if !(OLDEST_VERSION..=VERSION).contains(&bytes[4]) {
        return Err(DecodeError::UnsupportedVersion(bytes[4]));
    }
    if bytes[5] != kind {
        return Err(DecodeError::WrongKind {
            expected: name,
            found: bytes[5],
        });
    }
    Ok(bytes[4])
}

/// Decodes the body after a checked header.
pub(super) fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (body, rest) =
        postcard::take_from_bytes(&bytes[6..]).map_err(|e| DecodeError::Body(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(body)
}

/// Version 1's bodies, read from and written for phones that still speak it.
mod v1 {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub(super) struct Request {
        cursor: u64,
        held_digest: [u8; 16],
        held: Option<Vec<DocId>>,
        uploads: Vec<DocUpload>,
        fallback: Vec<FallbackMessage>,
    }

    impl From<Request> for SyncRequest {
        fn from(r: Request) -> Self {
            SyncRequest {
                cursor: r.cursor,
                held_digest: r.held_digest,
                held: r.held,
                uploads: r.uploads,
                fallback: r.fallback,
                clock: 0,
                refused: Vec::new(),
            }
        }
    }

    #[derive(Serialize)]
    struct Rejection<'a> {
        doc: DocId,
        code: &'a str,
        message: &'a str,
        heads: &'a [Hash],
    }

    #[derive(Serialize)]
    pub(super) struct Response<'a> {
        cursor: u64,
        receipts: &'a [Receipt],
        rejections: Vec<Rejection<'a>>,
        docs: &'a [DocDelivery],
        purge: &'a [DocId],
        fallback: &'a [FallbackMessage],
        need_held: bool,
        more: bool,
    }

    impl<'a> From<&'a SyncResponse> for Response<'a> {
        fn from(r: &'a SyncResponse) -> Self {
            Response {
                cursor: r.cursor,
                receipts: &r.receipts,
                rejections: r
                    .rejections
                    .iter()
                    .map(|x| Rejection {
                        doc: x.doc,
                        code: &x.code,
                        message: &x.message,
                        heads: &x.heads,
                    })
                    .collect(),
                docs: &r.docs,
                purge: &r.purge,
                fallback: &r.fallback,
                need_held: r.need_held,
                more: r.more,
            }
        }
    }
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
