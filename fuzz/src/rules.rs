//! The rules against random Automerge changes: a user (any role, in scope or not)
//! writes up to four changes of arbitrary operations (puts, new objects, deletes,
//! list inserts, counters, text splices, anywhere in the document, with the keys and
//! values the documents really use or any others), signed and timed correctly or not,
//! on the stored case file, the catalog or a new document. `rules::check` must answer;
//! a change it accepts must leave a document the core still reads whole, as the
//! server's projections and pages will.

use crate::fixtures::{self, NOW};
use arbitrary::{Arbitrary, Unstructured};
use sync_core::automerge::transaction::{CommitOptions, Transactable};
use sync_core::automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use sync_core::doc::casefile::CaseFile;
use sync_core::doc::catalog::CatalogDoc;
use sync_core::rules::{self, Editor};
use uuid::Uuid;

#[derive(Arbitrary, Debug)]
enum Base {
    CaseFile,
    Catalog,
    New,
}

#[derive(Arbitrary, Debug)]
struct Input {
    base: Base,
    /// Who writes: an index into [`fixtures::principals`].
    who: u8,
    /// Which fixture actor the changes are made by.
    actor: u8,
    changes: Vec<ChangeSpec>,
}

#[derive(Arbitrary, Debug)]
struct ChangeSpec {
    signer: Signer,
    time: Time,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Signer {
    Editor,
    Principal(u8),
    Text(String),
    Unsigned,
}

/// When a change says it was made. `Raw` is any time within ±2^50 ms (35,000 years):
/// the rules judge far past and far future alike, while times whose differences leave
/// `i64` overflow a delta column inside Automerge (debug builds panic, release builds
/// wrap), which is Automerge's business, and the server applies uploads under a panic
/// guard anyway.
#[derive(Arbitrary, Debug)]
enum Time {
    Now,
    Minutes(i16),
    Raw(i64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Put {
        obj: u8,
        key: Key,
        value: Val,
    },
    Make {
        obj: u8,
        key: Key,
        kind: Kind,
    },
    Delete {
        obj: u8,
        key: Key,
    },
    Insert {
        obj: u8,
        at: u8,
        value: Val,
    },
    InsertObject {
        obj: u8,
        at: u8,
        kind: Kind,
    },
    DeleteAt {
        obj: u8,
        at: u8,
    },
    /// By an `i32`: counter sums past `i64` overflow inside Automerge, as times do (see
    /// [`Time`]).
    Increment {
        obj: u8,
        key: Key,
        by: i32,
    },
    Splice {
        obj: u8,
        at: u8,
        delete: i8,
        text: String,
    },
}

#[derive(Arbitrary, Debug)]
enum Key {
    /// A key the base documents use.
    Known(u8),
    /// A fixture id as text, the way visits and follow-ups are keyed.
    Id(u8),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Val {
    /// A value the base documents hold.
    Known(u8),
    /// A fixture id as the documents store ids (16 bytes).
    Id(u8),
    Str(String),
    Int(i64),
    Uint(u64),
    F64(f64),
    Bool(bool),
    Null,
    Timestamp(i64),
    Bytes(Vec<u8>),
    Counter(i32),
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Map,
    List,
    Text,
}

impl Kind {
    fn obj_type(&self) -> ObjType {
        match self {
            Kind::Map => ObjType::Map,
            Kind::List => ObjType::List,
            Kind::Text => ObjType::Text,
        }
    }
}

/// Every id the fixtures know, new ones included.
fn ids() -> Vec<Uuid> {
    use fixtures::*;
    vec![
        DISTRICT.0,
        OTHER_DISTRICT.0,
        STATION_A.0,
        STATION_B.0,
        PROJECT.0,
        SERVICE.0,
        HAZARD.0,
        RESIDENT.0,
        VISIT.0,
        FOLLOW_UP.0,
        COORDINATOR.0,
        STAFF_A.0,
        STAFF_B.0,
        VOLUNTEER.0,
        STRANGER.0,
        Uuid::from_u128(0x7002),
        Uuid::from_u128(0xF002),
    ]
}

/// The objects, keys and scalar values of a document.
struct Vocabulary {
    objects: Vec<ObjId>,
    keys: Vec<String>,
    values: Vec<ScalarValue>,
}

fn vocabulary(docs: &[&Automerge]) -> Vocabulary {
    let mut v = Vocabulary {
        objects: Vec::new(),
        keys: Vec::new(),
        values: Vec::new(),
    };
    for doc in docs {
        let mut stack = vec![ROOT];
        while let Some(obj) = stack.pop() {
            let mut found = Vec::new();
            match doc.object_type(&obj) {
                Ok(ObjType::Map | ObjType::Table) => {
                    for key in doc.keys(&obj) {
                        if !v.keys.contains(&key) {
                            v.keys.push(key.clone());
                        }
                        found.extend(doc.get_all(&obj, key).unwrap_or_default());
                    }
                }
                Ok(ObjType::List) => {
                    for i in 0..doc.length(&obj) {
                        found.extend(doc.get_all(&obj, i).unwrap_or_default());
                    }
                }
                _ => {}
            }
            for (value, id) in found {
                match value {
                    Value::Object(_) => stack.push(id),
                    Value::Scalar(s) => {
                        if !v.values.contains(&s) {
                            v.values.push(s.into_owned());
                        }
                    }
                }
            }
            if std::ptr::eq(*doc, docs[0]) {
                v.objects.push(obj);
            }
        }
    }
    v
}

fn pick<T: Clone>(items: &[T], i: u8) -> Option<T> {
    (!items.is_empty()).then(|| items[usize::from(i) % items.len()].clone())
}

fn key(k: &Key, vocab: &Vocabulary) -> String {
    match k {
        Key::Known(i) => pick(&vocab.keys, *i).unwrap_or_default(),
        Key::Id(i) => pick(&ids(), *i).unwrap_or_default().to_string(),
        Key::Text(s) => s.clone(),
    }
}

fn scalar(v: &Val, vocab: &Vocabulary) -> ScalarValue {
    match v {
        Val::Known(i) => pick(&vocab.values, *i).unwrap_or(ScalarValue::Null),
        Val::Id(i) => ScalarValue::Bytes(pick(&ids(), *i).unwrap_or_default().as_bytes().to_vec()),
        Val::Str(s) => ScalarValue::Str(s.as_str().into()),
        Val::Int(n) => ScalarValue::Int(*n),
        Val::Uint(n) => ScalarValue::Uint(*n),
        Val::F64(n) => ScalarValue::F64(*n),
        Val::Bool(b) => ScalarValue::Boolean(*b),
        Val::Null => ScalarValue::Null,
        Val::Timestamp(t) => ScalarValue::Timestamp(*t),
        Val::Bytes(b) => ScalarValue::Bytes(b.clone()),
        Val::Counter(n) => ScalarValue::counter(i64::from(*n)),
    }
}

pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    // Arbitrary operations reach assertions inside Automerge itself (an op-set
    // assertion after list edits, found here); the server judges uploads under a panic
    // guard and refuses such a change as malformed, and so does this target. A panic
    // in Linli's code (a rule, or the checks below) still fails the input.
    crate::quiet_automerge_panics();
    let _ = std::panic::catch_unwind(|| judge(&input));
    crate::no_linli_panic();
}

fn judge(input: &Input) {
    let base = fixtures::base();
    let mut after = match input.base {
        Base::CaseFile => base.case_file.fork(),
        Base::Catalog => base.catalog.fork(),
        Base::New => Automerge::new(),
    }
    .with_actor(fixtures::actor(input.actor % 6));
    let before = after.get_heads();
    let mut vocab = vocabulary(&[&after, &base.case_file, &base.catalog]);
    let principals = fixtures::principals();
    let Some(principal) = pick(&principals, input.who) else {
        return;
    };

    for spec in input.changes.iter().take(4) {
        let mut tx = after.transaction();
        for op in spec.ops.iter().take(64) {
            let obj = |i: &u8| pick(&vocab.objects, *i).unwrap_or(ROOT);
            let made = match op {
                Op::Put {
                    obj: o,
                    key: k,
                    value,
                } => tx
                    .put(obj(o), key(k, &vocab), scalar(value, &vocab))
                    .map(|()| None),
                Op::Make {
                    obj: o,
                    key: k,
                    kind,
                } => tx
                    .put_object(obj(o), key(k, &vocab), kind.obj_type())
                    .map(Some),
                Op::Delete { obj: o, key: k } => tx.delete(obj(o), key(k, &vocab)).map(|()| None),
                Op::Insert { obj: o, at, value } => tx
                    .insert(obj(o), usize::from(*at), scalar(value, &vocab))
                    .map(|()| None),
                Op::InsertObject { obj: o, at, kind } => tx
                    .insert_object(obj(o), usize::from(*at), kind.obj_type())
                    .map(Some),
                Op::DeleteAt { obj: o, at } => tx.delete(obj(o), usize::from(*at)).map(|()| None),
                Op::Increment { obj: o, key: k, by } => tx
                    .increment(obj(o), key(k, &vocab), i64::from(*by))
                    .map(|()| None),
                Op::Splice {
                    obj: o,
                    at,
                    delete,
                    text,
                } => tx
                    .splice_text(obj(o), usize::from(*at), isize::from(*delete), text)
                    .map(|()| None),
            };
            // An operation Automerge itself refuses (a list op on a map, an index
            // past the end) is simply not part of the change.
            if let Ok(Some(new)) = made {
                vocab.objects.push(new);
            }
        }
        let message = match &spec.signer {
            Signer::Editor => Some(principal.user.to_string()),
            Signer::Principal(i) => pick(&principals, *i).map(|p| p.user.to_string()),
            Signer::Text(s) => Some(s.clone()),
            Signer::Unsigned => None,
        };
        let time = match spec.time {
            Time::Now => NOW,
            Time::Minutes(m) => NOW + i64::from(m) * 60_000,
            Time::Raw(t) => t % (1 << 50),
        };
        let mut options = CommitOptions::default().with_time(time);
        if let Some(m) = message {
            options = options.with_message(m);
        }
        tx.commit_with(options);
    }

    let changes = after.get_changes(&before);
    let editor = Editor {
        principal: &principal,
        now: NOW,
    };
    if rules::check(&editor, &after, &before, &changes).is_err() {
        return;
    }
    let catalog = CatalogDoc::from_doc(base.catalog.clone())
        .and_then(|c| c.hydrate())
        .expect("the fixture catalog");
    // Refusing is fine here (the change may name what the catalog lacks); answering
    // is what counts.
    let _ = rules::check_catalog_refs(&after, &changes, Some(&catalog));
    // Accepted: the document must still read whole, as the server's projections, the
    // pages and the phones will read it.
    if let Ok(file) = CaseFile::from_doc(after.clone()) {
        file.hydrate()
            .unwrap_or_else(|e| panic!("an accepted change leaves an unreadable case file: {e}"));
        file.closure()
            .unwrap_or_else(|e| panic!("an accepted change leaves an unreadable closure: {e}"));
        assert!(
            sync_core::protocol::server::place_of(file.doc()).is_some(),
            "an accepted change leaves a case file with no place"
        );
        sync_core::doc::casefile::listing(file.doc())
            .unwrap_or_else(|e| panic!("an accepted change leaves an unlistable case file: {e}"));
    } else if let Ok(cat) = CatalogDoc::from_doc(after.clone()) {
        cat.hydrate()
            .unwrap_or_else(|e| panic!("an accepted change leaves an unreadable catalog: {e}"));
    } else {
        panic!("an accepted change leaves a document that is neither a case file nor a catalog");
    }
}

/// The input as the target reads it, for triaging a crash.
pub fn describe(data: &[u8]) -> String {
    match Input::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(input) => format!("{input:#?}"),
        Err(e) => format!("not an input: {e}"),
    }
}
