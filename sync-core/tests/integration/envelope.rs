//! The sync envelope: round trips, version-1 and version-2 fixtures, and malformed input.

use proptest::prelude::*;
use sync_core::ids::DocId;
use sync_core::protocol::envelope::*;
use sync_core::protocol::fixtures::{request_v1, request_v2, response_v1, response_v2};

const REQUEST_V1: &[u8] = include_bytes!("../fixtures/v1/request.bin");
const RESPONSE_V1: &[u8] = include_bytes!("../fixtures/v1/response.bin");
const REQUEST_V2: &[u8] = include_bytes!("../fixtures/v2/request.bin");
const RESPONSE_V2: &[u8] = include_bytes!("../fixtures/v2/response.bin");

#[test]
fn version_2_fixtures_decode_to_what_they_encode() {
    assert_eq!(SyncRequest::decode(REQUEST_V2).unwrap(), request_v2());
    assert_eq!(SyncResponse::decode(RESPONSE_V2).unwrap(), response_v2());
    assert_eq!(
        request_v2().encode(),
        REQUEST_V2,
        "the request wire format changed"
    );
    assert_eq!(
        response_v2().encode(),
        RESPONSE_V2,
        "the response wire format changed"
    );
}

#[test]
fn a_server_reads_version_1_requests_and_answers_in_version_1() {
    assert_eq!(
        SyncRequest::decode_versioned(REQUEST_V1).unwrap(),
        (request_v1(), 1)
    );
    assert_eq!(
        SyncRequest::decode_versioned(REQUEST_V2).unwrap(),
        (request_v2(), 2)
    );
    // What version 1 lacks (quarantine numbers, decisions) is left out of its answer.
    assert_eq!(response_v1().encode_version(1), RESPONSE_V1);
    assert_eq!(
        response_v2().encode_version(1),
        RESPONSE_V1,
        "the version-1 response wire format changed"
    );
    assert_eq!(response_v2().encode_version(2), RESPONSE_V2);
    // A phone reads only the current version: a version-1 answer is not one.
    assert_eq!(
        SyncResponse::decode(RESPONSE_V1),
        Err(DecodeError::UnsupportedVersion(1))
    );
    assert_eq!(
        SyncRequest::decode(REQUEST_V1),
        Err(DecodeError::UnsupportedVersion(1))
    );
}

#[test]
fn the_header_is_checked() {
    assert_eq!(SyncRequest::decode(b""), Err(DecodeError::TooShort(0)));
    assert_eq!(
        SyncRequest::decode(b"LNSY\x01"),
        Err(DecodeError::TooShort(5))
    );
    assert_eq!(
        SyncRequest::decode(b"HTTP/1.1 200"),
        Err(DecodeError::BadMagic)
    );
    for version in [0, 3] {
        let mut other = REQUEST_V2.to_vec();
        other[4] = version;
        assert_eq!(
            SyncRequest::decode_versioned(&other),
            Err(DecodeError::UnsupportedVersion(version))
        );
    }
    assert_eq!(
        SyncRequest::decode(RESPONSE_V2),
        Err(DecodeError::WrongKind {
            expected: "request",
            found: 2
        })
    );
    for fixture in [REQUEST_V1, REQUEST_V2] {
        let mut trailing = fixture.to_vec();
        trailing.extend_from_slice(b"xyz");
        assert_eq!(
            SyncRequest::decode_versioned(&trailing),
            Err(DecodeError::TrailingBytes(3))
        );
    }
}

#[test]
fn every_truncation_of_a_fixture_is_an_error() {
    for fixture in [REQUEST_V1, REQUEST_V2] {
        for len in 0..fixture.len() {
            assert!(
                SyncRequest::decode_versioned(&fixture[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
    }
    for len in 0..RESPONSE_V2.len() {
        assert!(
            SyncResponse::decode(&RESPONSE_V2[..len]).is_err(),
            "prefix of {len} bytes decoded"
        );
    }
}

#[test]
fn a_huge_length_prefix_is_an_error_not_an_allocation() {
    // cursor 0, digest, held: None, uploads: a count of 2^63.
    let mut bytes = b"LNSY\x02\x01\x00".to_vec();
    bytes.extend_from_slice(&[0u8; 16]);
    bytes.push(0);
    bytes.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    assert!(matches!(
        SyncRequest::decode(&bytes),
        Err(DecodeError::Body(_))
    ));
}

fn doc_id() -> impl Strategy<Value = DocId> {
    any::<u128>().prop_map(|n| DocId(uuid::Uuid::from_u128(n)))
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes)
}

fn fallback() -> impl Strategy<Value = FallbackMessage> {
    (doc_id(), bytes()).prop_map(|(doc, message)| FallbackMessage { doc, message })
}

fn request() -> impl Strategy<Value = SyncRequest> {
    let upload = (
        doc_id(),
        proptest::collection::vec(hash(), 0..3),
        proptest::collection::vec(bytes(), 0..4),
    )
        .prop_map(|(doc, heads, changes)| DocUpload {
            doc,
            heads,
            changes,
        });
    (
        any::<u64>(),
        any::<[u8; 16]>(),
        proptest::option::of(proptest::collection::vec(doc_id(), 0..5)),
        proptest::collection::vec(upload, 0..4),
        proptest::collection::vec(fallback(), 0..3),
        (any::<i64>(), proptest::collection::vec(any::<u64>(), 0..3)),
    )
        .prop_map(
            |(cursor, held_digest, held, uploads, fallback, (clock, refused))| SyncRequest {
                cursor,
                held_digest,
                held,
                uploads,
                fallback,
                clock,
                refused,
            },
        )
}

fn response() -> impl Strategy<Value = SyncResponse> {
    let receipt = (doc_id(), proptest::collection::vec(hash(), 0..3))
        .prop_map(|(doc, heads)| Receipt { doc, heads });
    let rejection = (
        doc_id(),
        "[a-z_]{0,20}",
        "\\PC{0,40}",
        proptest::collection::vec(hash(), 0..2),
        any::<u64>(),
    )
        .prop_map(|(doc, code, message, heads, quarantine)| Rejection {
            doc,
            code,
            message,
            heads,
            quarantine,
        });
    let decision =
        (any::<u64>(), any::<bool>(), "\\PC{0,40}").prop_map(|(quarantine, accepted, note)| {
            Decision {
                quarantine,
                accepted,
                note,
            }
        });
    let delivery = (
        doc_id(),
        proptest::option::of(bytes()),
        proptest::collection::vec(bytes(), 0..4),
    )
        .prop_map(|(doc, snapshot, changes)| DocDelivery {
            doc,
            snapshot,
            changes,
        });
    (
        any::<u64>(),
        proptest::collection::vec(receipt, 0..3),
        proptest::collection::vec(rejection, 0..3),
        proptest::collection::vec(delivery, 0..3),
        proptest::collection::vec(doc_id(), 0..3),
        proptest::collection::vec(fallback(), 0..3),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(decision, 0..3),
    )
        .prop_map(
            |(cursor, receipts, rejections, docs, purge, fallback, need_held, more, decisions)| {
                SyncResponse {
                    cursor,
                    receipts,
                    rejections,
                    docs,
                    purge,
                    fallback,
                    need_held,
                    more,
                    decisions,
                }
            },
        )
}

proptest! {
    #[test]
    fn requests_round_trip(r in request()) {
        prop_assert_eq!(SyncRequest::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn responses_round_trip(r in response()) {
        prop_assert_eq!(SyncResponse::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        for version in [1, 2] {
            let mut framed = vec![b'L', b'N', b'S', b'Y', version, 1];
            framed.extend_from_slice(&body);
            let _ = SyncRequest::decode_versioned(&body);
            let _ = SyncRequest::decode_versioned(&framed);
            framed[5] = 2;
            let _ = SyncResponse::decode(&framed);
        }
    }

    #[test]
    fn corrupted_fixtures_never_panic(at in 0usize..219, byte in any::<u8>()) {
        for fixture in [REQUEST_V1, REQUEST_V2] {
            let mut req = fixture.to_vec();
            let i = at % req.len();
            req[i] = byte;
            let _ = SyncRequest::decode_versioned(&req);
        }
        let mut resp = RESPONSE_V2.to_vec();
        let j = at % resp.len();
        resp[j] = byte;
        let _ = SyncResponse::decode(&resp);
    }

    #[test]
    fn the_held_digest_ignores_order_and_sees_membership(ids in proptest::collection::btree_set(any::<u128>(), 1..20), extra in any::<u128>()) {
        let docs: Vec<DocId> = ids.iter().map(|n| DocId(uuid::Uuid::from_u128(*n))).collect();
        let mut reversed = docs.clone();
        reversed.reverse();
        prop_assert_eq!(held_digest(&docs), held_digest(&reversed));
        prop_assert_ne!(held_digest(&docs), held_digest(&docs[1..]));
        if !ids.contains(&extra) {
            let mut more = docs.clone();
            more.push(DocId(uuid::Uuid::from_u128(extra)));
            prop_assert_ne!(held_digest(&docs), held_digest(&more));
        }
    }
}
