//! The sync envelope from the wire: decoding requests (both versions) and responses,
//! and the server step on whatever decodes. A decoded message must encode back to
//! itself; the step must answer (never panic) and leave a store whose documents still
//! load.

use crate::fixtures;
use sync_core::doc::casefile::CaseFile;
use sync_core::protocol::envelope::{SyncRequest, SyncResponse};
use sync_core::protocol::server::{Limits, handle_sync_bytes};
use sync_core::protocol::store::ServerStore;

pub fn run(data: &[u8]) {
    crate::quiet_automerge_panics();
    if let Ok(response) = SyncResponse::decode(data) {
        let again = SyncResponse::decode(&response.encode()).expect("a response re-decodes");
        assert_eq!(again, response, "a response survives encoding");
    }
    let Ok((request, version)) = SyncRequest::decode_versioned(data) else {
        return;
    };
    let again = SyncRequest::decode(&request.encode()).expect("a request re-decodes");
    assert_eq!(again, request, "a request survives encoding");

    // The server step, as the volunteer's phone, on a copy of the fixture server.
    let store = fixtures::server().0.backup();
    let auth = fixtures::volunteer_device();
    let limits = Limits::default();
    let answer = pollster::block_on(handle_sync_bytes(
        &store,
        &auth,
        data,
        fixtures::NOW,
        limits,
    ))
    .expect("the memory store does not fail");
    if version == sync_core::protocol::envelope::VERSION {
        SyncResponse::decode(&answer).expect("the server's answer decodes");
    }
    // Whatever the step stored is still a case file the core reads whole.
    for doc in store.doc_ids() {
        let Ok(stored) = pollster::block_on(store.load(doc));
        if let Some(file) = stored.and_then(|d| CaseFile::from_doc(d).ok()) {
            file.hydrate().expect("a stored case file hydrates");
        }
    }
    crate::no_linli_panic();
}
