//! The canonical messages whose bytes are kept in `tests/fixtures/v1/` and
//! `tests/fixtures/v2/`. A change to the wire format shows up as a fixture test failure.
//! Version 1 is what servers still read from older phones: its request decodes to
//! [`request_v1`] (the fields version 1 lacks empty) and [`response_v1`] encodes in
//! version 1 to its response file.

use super::envelope::*;
use crate::ids::DocId;
use uuid::Uuid;

fn doc(n: u128) -> DocId {
    DocId(Uuid::from_u128(n))
}

fn hash(byte: u8) -> Hash {
    Hash([byte; 32])
}

/// A request with every field in use.
pub fn request_v1() -> SyncRequest {
    SyncRequest {
        cursor: 4_242,
        held_digest: held_digest(&[doc(1), doc(2)]),
        held: Some(vec![doc(1), doc(2)]),
        uploads: vec![DocUpload {
            doc: doc(1),
            heads: vec![hash(0xAA)],
            changes: vec![
                Bytes(vec![0x85, 0x6F, 0x4A, 0x83, 1, 2, 3]),
                Bytes(vec![4, 5]),
            ],
        }],
        fallback: vec![FallbackMessage {
            doc: doc(2),
            message: Bytes(vec![0x42, 0, 0, 0, 0]),
        }],
        clock: 0,
        refused: vec![],
    }
}

/// A version-2 request with every field in use.
pub fn request_v2() -> SyncRequest {
    SyncRequest {
        clock: 1_764_000_000_000,
        refused: vec![7, 300],
        ..request_v1()
    }
}

/// A response with every field in use.
pub fn response_v1() -> SyncResponse {
    SyncResponse {
        cursor: 4_300,
        receipts: vec![Receipt {
            doc: doc(1),
            heads: vec![hash(0xAA)],
        }],
        rejections: vec![Rejection {
            doc: doc(3),
            code: "role_not_allowed".into(),
            message: "a volunteer may not review a visit".into(),
            heads: vec![hash(0xBB)],
            quarantine: 0,
        }],
        docs: vec![
            DocDelivery {
                doc: doc(4),
                snapshot: Some(Bytes(vec![0x85, 0x6F, 0x4A, 0x83, 9])),
                changes: vec![],
            },
            DocDelivery {
                doc: doc(1),
                snapshot: None,
                changes: vec![Bytes(vec![7, 7, 7])],
            },
        ],
        purge: vec![doc(5)],
        fallback: vec![FallbackMessage {
            doc: doc(2),
            message: Bytes(vec![0x42, 1]),
        }],
        need_held: false,
        more: true,
        decisions: vec![],
    }
}

/// A version-2 response with every field in use.
pub fn response_v2() -> SyncResponse {
    let mut response = response_v1();
    response.rejections[0].quarantine = 7;
    response.decisions = vec![
        Decision {
            quarantine: 300,
            accepted: false,
            note: "重复记录 (a duplicate)".into(),
        },
        Decision {
            quarantine: 12,
            accepted: true,
            note: String::new(),
        },
    ];
    response
}
