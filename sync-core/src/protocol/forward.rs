//! What a station hub forwards to the district server, and the answer.
//!
//! A hub keeps every request its phones sent while the district server was out of
//! reach, as the phone sent it (body and seal), and forwards them in the order it
//! received them once the uplink is back. The district server checks each seal with the
//! device's upload key ([`super::seal`]) and takes the uploads as the phone's
//! ([`super::server::handle_forwarded`]). Same header as the sync envelope, with
//! kinds of its own:
//!
//! ```text
//! magic "LNSY" | version u8 = 2 | kind u8 (3 forward, 4 forwarded) | postcard body
//! ```

use super::envelope::{Bytes, DecodeError, Receipt, Rejection, VERSION, body, encode, header};
use crate::ids::{DeviceId, DocId, Timestamp};
use serde::{Deserialize, Serialize};

const KIND_FORWARD: u8 = 3;
const KIND_FORWARDED: u8 = 4;

/// Refusal codes for a forwarded item as a whole. Nothing of it was stored or
/// quarantined; the hub keeps it.
pub mod codes {
    /// The item's body is not a sync request.
    pub const MALFORMED: &str = "malformed";
    /// The seal does not match the body under the device's upload key: the phone did
    /// not send this (or the device has no export key to check it with).
    pub const BAD_SEAL: &str = "bad_seal";
    /// The device is unknown, or its user works at another station than the hub's.
    pub const NOT_THIS_STATION: &str = "not_this_station";
}

/// A batch of the phones' requests, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardRequest {
    /// The requests.
    pub items: Vec<ForwardItem>,
}

/// One phone request, as the phone sent it to the hub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardItem {
    /// The hub's number for it, echoed in the answer.
    pub id: u64,
    /// The device that sent it (the hub authenticated it with its hub key).
    pub device: DeviceId,
    /// When the hub took it, by the hub's clock.
    pub received_at: Timestamp,
    /// The request body, byte for byte.
    pub body: Bytes,
    /// The phone's seal of the body.
    pub seal: [u8; 32],
    /// The documents whose uploads the hub took (stored, or refused into its
    /// quarantine). The district server takes only these: the rest the hub left to
    /// it (`not_here`, `busy`), and the phone still holds them for its next sync.
    pub docs: Vec<DocId>,
}

/// The district server's answer, one outcome per item in the request's order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardResponse {
    /// The outcomes.
    pub items: Vec<ForwardOutcome>,
}

/// What became of one item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardOutcome {
    /// The item's number.
    pub id: u64,
    /// Taken or refused.
    pub result: ForwardResult,
}

/// Taken (each upload receipted or refused into quarantine), or refused whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardResult {
    /// The uploads were checked as the device's.
    Taken(Taken),
    /// The item was refused whole ([`codes`]): nothing was stored or quarantined.
    Refused {
        /// A stable code.
        code: String,
        /// A sentence for people.
        message: String,
    },
}

/// What the district server did with one forwarded request's uploads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    /// Uploads the district server now holds: final receipts for the phone.
    pub receipts: Vec<Receipt>,
    /// Uploads refused, each quarantined on the district server under the device.
    pub rejections: Vec<Rejection>,
    /// Documents whose uploads build on changes the district server lacks (nothing
    /// stored, nothing quarantined): forward them again once what they build on has
    /// gone up.
    pub missing: Vec<DocId>,
}

impl ForwardRequest {
    /// Encodes the batch with its header.
    pub fn encode(&self) -> Vec<u8> {
        encode(VERSION, KIND_FORWARD, self)
    }

    /// Decodes a batch; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match header(bytes, KIND_FORWARD, "forward request")? {
            VERSION => body(bytes),
            old => Err(DecodeError::UnsupportedVersion(old)),
        }
    }
}

impl ForwardResponse {
    /// Encodes the answer with its header.
    pub fn encode(&self) -> Vec<u8> {
        encode(VERSION, KIND_FORWARDED, self)
    }

    /// Decodes an answer; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match header(bytes, KIND_FORWARDED, "forward response")? {
            VERSION => body(bytes),
            old => Err(DecodeError::UnsupportedVersion(old)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::envelope::SyncRequest;

    #[test]
    fn batches_round_trip_and_are_not_sync_requests() {
        let request = ForwardRequest {
            items: vec![ForwardItem {
                id: 7,
                device: DeviceId(uuid::Uuid::from_u128(3)),
                received_at: 1_700_000_000_000,
                body: Bytes(SyncRequest::default().encode()),
                seal: [9; 32],
                docs: vec![DocId(uuid::Uuid::from_u128(4))],
            }],
        };
        let bytes = request.encode();
        assert_eq!(ForwardRequest::decode(&bytes), Ok(request));
        assert!(SyncRequest::decode(&bytes).is_err());
        assert!(ForwardRequest::decode(&SyncRequest::default().encode()).is_err());
        assert!(ForwardResponse::decode(&bytes).is_err());
        let answer = ForwardResponse {
            items: vec![ForwardOutcome {
                id: 7,
                result: ForwardResult::Refused {
                    code: codes::BAD_SEAL.into(),
                    message: "no".into(),
                },
            }],
        };
        assert_eq!(ForwardResponse::decode(&answer.encode()), Ok(answer));
    }

    #[test]
    fn truncated_or_padded_batches_are_errors() {
        let bytes = ForwardRequest::default().encode();
        assert!(ForwardRequest::decode(&bytes[..5]).is_err());
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(ForwardRequest::decode(&padded).is_err());
    }
}
