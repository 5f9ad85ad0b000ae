//! Crafted uploads with valid checksums: a device can send any change it likes, well
//! formed and correctly hashed, with operations that make no sense for a case file. The
//! server step must answer each one (a receipt, a rejection or a repair) and never
//! panic, and whatever it stores must still load.

use crate::support::*;
use proptest::prelude::*;
use sync_core::automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType, SortedVec};
use sync_core::automerge::{Automerge, Change, ExpandedChange, ObjType, ScalarValue};
use sync_core::protocol::envelope::SyncRequest;
use sync_core::protocol::store::{MemoryServerStore, ServerStore};

/// One change to one operation of the honest change.
#[derive(Clone, Debug)]
enum Mutation {
    Key(String),
    SeqKey(u64),
    Object(Option<u64>),
    Put(ScalarValue),
    Make(ObjType),
    Delete,
    Increment(i64),
    FlipInsert,
    ClearPred,
    BogusPred(u64),
}

fn scalar() -> impl Strategy<Value = ScalarValue> {
    prop_oneof![
        any::<i64>().prop_map(ScalarValue::Int),
        any::<u64>().prop_map(ScalarValue::Uint),
        any::<f64>().prop_map(ScalarValue::F64),
        any::<bool>().prop_map(ScalarValue::Boolean),
        Just(ScalarValue::Null),
        any::<i64>().prop_map(ScalarValue::Timestamp),
        "[a-z0-9-]{0,40}".prop_map(|s| ScalarValue::Str(s.into())),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(ScalarValue::Bytes),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Keys the documents really use, so crafted values land where the rules look.
    let keys = prop_oneof![
        Just("visits".to_owned()),
        Just("review".to_owned()),
        Just("status".to_owned()),
        Just("profile".to_owned()),
        Just("station".to_owned()),
        Just("district".to_owned()),
        Just("kind".to_owned()),
        Just("schema".to_owned()),
        Just("author".to_owned()),
        Just("deleted".to_owned()),
        Just("started_at".to_owned()),
        "[a-z_]{1,12}",
    ];
    prop_oneof![
        keys.prop_map(Mutation::Key),
        (1u64..64).prop_map(Mutation::SeqKey),
        proptest::option::of(1u64..64).prop_map(Mutation::Object),
        scalar().prop_map(Mutation::Put),
        prop_oneof![
            Just(ObjType::Map),
            Just(ObjType::List),
            Just(ObjType::Text),
            Just(ObjType::Table)
        ]
        .prop_map(Mutation::Make),
        Just(Mutation::Delete),
        any::<i64>().prop_map(Mutation::Increment),
        Just(Mutation::FlipInsert),
        Just(Mutation::ClearPred),
        (1u64..64).prop_map(Mutation::BogusPred),
    ]
}

fn apply(op: &mut Op, m: &Mutation, change: &ExpandedChange) {
    let actor = change.actor_id.clone();
    let own = |counter: u64| OpId(counter, actor.clone());
    match m {
        Mutation::Key(k) => op.key = Key::Map(k.as_str().into()),
        Mutation::SeqKey(n) => op.key = Key::Seq(ElementId::Id(own(*n))),
        Mutation::Object(None) => op.obj = ObjectId::Root,
        Mutation::Object(Some(n)) => op.obj = ObjectId::Id(own(*n)),
        Mutation::Put(v) => op.action = OpType::Put(v.clone()),
        Mutation::Make(t) => op.action = OpType::Make(*t),
        Mutation::Delete => op.action = OpType::Delete,
        Mutation::Increment(n) => op.action = OpType::Increment(*n),
        Mutation::FlipInsert => op.insert = !op.insert,
        Mutation::ClearPred => op.pred = SortedVec::new(),
        Mutation::BogusPred(n) => op.pred = SortedVec::from(vec![own(*n)]),
    }
}

/// A volunteer's honest upload of one new visit, and the server it goes to.
fn honest() -> (Phone, SyncRequest, MemoryServerStore) {
    let r = resident(1);
    let server = crafted_server();
    let mut v = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    v.sync(&server);
    v.edit(r, |f, e| {
        f.log_visit(e, sync_core::ids::VisitId(uuid(0xF1)), &record(NOW - HOUR))
            .unwrap();
    });
    let request = v.replica.prepare(NOW).unwrap();
    (v, request, server)
}

fn crafted_server() -> MemoryServerStore {
    let server = MemoryServerStore::new();
    let mut staff_phone = Phone::new(1, staff(STAFF_A, STATION_A));
    let file = new_case_file(staff_phone.principal(), actor(1), resident(1), STATION_A);
    staff_phone.replica.save_case_file(&file).unwrap();
    staff_phone.sync(&server);
    server
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn crafted_changes_with_valid_checksums_are_answered_never_a_panic(
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), mutation()), 1..4)
    ) {
        let (v, request, server) = honest();
        let doc = request.uploads[0].doc;
        let before = pollster::block_on(server.load(doc)).unwrap().unwrap().get_heads();
        let change = Change::from_bytes(request.uploads[0].changes[0].0.clone()).unwrap();
        let mut expanded: ExpandedChange = change.decode();
        for (at, m) in &mutations {
            let i = at.index(expanded.operations.len());
            let snapshot = expanded.clone();
            apply(&mut expanded.operations[i], m, &snapshot);
        }
        // Re-encoding gives a correct hash and checksum: the crafted change is as
        // well formed as an honest one.
        let crafted = Change::from(expanded);
        let mut request = request.clone();
        request.uploads[0].changes[0].0 = crafted.raw_bytes().to_vec();
        request.uploads[0].heads = vec![crafted.hash().into()];
        let response = v.serve(&server, &request);
        let answered =
            response.receipts.len() + response.rejections.len() + response.fallback.len();
        prop_assert_eq!(answered, 1, "{:?}", response);
        let stored = pollster::block_on(server.load(doc)).unwrap().unwrap();
        if response.receipts.is_empty() {
            prop_assert_eq!(stored.get_heads(), before);
        }
        // Whatever was stored still loads and still reads as a case file.
        let reloaded = Automerge::load(&stored.save()).unwrap();
        prop_assert!(sync_core::doc::casefile::CaseFile::from_doc(reloaded).is_ok());
    }
}

/// An object made inside itself: Automerge would follow its parents for ever, so the
/// rules' walk from an operation up to the root must stop and refuse the change. (A
/// random case of the test above found it, and hung the server step.)
#[test]
fn an_object_made_inside_itself_is_refused_not_followed_for_ever() {
    let (v, request, server) = honest();
    let doc = request.uploads[0].doc;
    let before = pollster::block_on(server.load(doc))
        .unwrap()
        .unwrap()
        .get_heads();
    let change = Change::from_bytes(request.uploads[0].changes[0].0.clone()).unwrap();
    let mut expanded: ExpandedChange = change.decode();
    let own = OpId(expanded.start_op.get(), expanded.actor_id.clone());
    let first = &mut expanded.operations[0];
    first.action = OpType::Make(ObjType::Map);
    first.obj = ObjectId::Id(own);
    first.insert = false;
    first.key = Key::Map("loop".into());
    let crafted = Change::from(expanded);
    let mut request = request.clone();
    request.uploads[0].changes[0].0 = crafted.raw_bytes().to_vec();
    request.uploads[0].heads = vec![crafted.hash().into()];
    let response = v.serve(&server, &request);
    assert!(response.receipts.is_empty(), "{response:?}");
    assert_eq!(
        response.rejections.len() + response.fallback.len(),
        1,
        "{response:?}"
    );
    let stored = pollster::block_on(server.load(doc)).unwrap().unwrap();
    assert_eq!(stored.get_heads(), before);
}
