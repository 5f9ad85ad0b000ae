//! PROTOCOL.md is the contract a second implementation (an iOS team's own client, a
//! station hub in another language) is written from. This module decodes envelopes
//! the code makes using only what that document states: it reads the header table and
//! the grammar out of PROTOCOL.md and interprets them, with nothing of the crate's own
//! decoder. Each decoded envelope is compared with the values the code encoded, by
//! the field names the document gives, so a field the document omits, misnames,
//! mistypes or misorders fails here.

use crate::support::*;
use std::collections::BTreeMap;
use sync_core::protocol::envelope::*;
use sync_core::protocol::fixtures;
use sync_core::protocol::store::MemoryServerStore;

const PROTOCOL: &str = include_str!("../../PROTOCOL.md");

/// A value decoded by the document's grammar.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Unsigned(u64),
    Signed(i64),
    Bool(bool),
    Text(String),
    Raw(Vec<u8>),
    List(Vec<Value>),
    Maybe(Option<Box<Value>>),
    Record(Vec<(String, Value)>),
}

/// A type as the grammar writes it.
#[derive(Debug, Clone)]
enum Type {
    Named(String),
    Vec(Box<Type>),
    Option(Box<Type>),
    Array(usize),
}

fn parse_type(text: &str) -> Type {
    if let Some(inner) = text.strip_prefix("Vec<").and_then(|t| t.strip_suffix('>')) {
        return Type::Vec(Box::new(parse_type(inner)));
    }
    if let Some(inner) = text
        .strip_prefix("Option<")
        .and_then(|t| t.strip_suffix('>'))
    {
        return Type::Option(Box::new(parse_type(inner)));
    }
    if let Some(n) = text.strip_prefix("[u8;").and_then(|t| t.strip_suffix(']')) {
        return Type::Array(n.trim().parse().expect("array length"));
    }
    Type::Named(text.to_owned())
}

/// What PROTOCOL.md states about the bytes.
struct Doc {
    magic: Vec<u8>,
    version: u8,
    request_kind: u8,
    response_kind: u8,
    /// Records: name → fields in order.
    records: BTreeMap<String, Vec<(String, Type)>>,
    /// Types the document defines in words, by the words.
    prose: BTreeMap<String, String>,
}

impl Doc {
    fn read() -> Doc {
        let header = PROTOCOL
            .split("```text")
            .nth(1)
            .expect("the header table")
            .split("```")
            .next()
            .unwrap_or_default();
        let line = |field: &str| -> &str {
            header
                .lines()
                .find(|l| l.contains(field))
                .unwrap_or_else(|| panic!("PROTOCOL.md's header table lacks {field}"))
        };
        let hex = |l: &str, after: &str| -> u8 {
            let at = l.find(after).expect("a value") + after.len();
            let h = l[at..].trim_start().trim_start_matches("0x");
            u8::from_str_radix(&h[..2], 16).expect("a hex byte")
        };
        let magic_line = line("magic");
        let magic = magic_line
            .split('"')
            .nth(1)
            .expect("the magic in quotes")
            .as_bytes()
            .to_vec();
        assert!(magic_line.starts_with("0 ") && line("envelope version").starts_with("4 "));
        let version = hex(line("envelope version"), "=");
        let kinds = line("kind:");
        let request_kind = hex(kinds, "kind:");
        let response_kind = hex(kinds, "request,");
        assert!(line("body:").starts_with("6 "), "the body starts at byte 6");

        let grammar = PROTOCOL
            .split("```text")
            .find(|block| block.contains("SyncRequest  ="))
            .expect("the grammar block")
            .split("```")
            .next()
            .unwrap_or_default();
        // Join continuation lines (indented, no `=`) to the definition above them.
        let mut definitions: Vec<(String, String)> = Vec::new();
        for l in grammar.lines().filter(|l| !l.trim().is_empty()) {
            match l.split_once('=') {
                Some((name, rest)) if !l.starts_with(' ') => {
                    definitions.push((name.trim().to_owned(), rest.trim().to_owned()))
                }
                _ => {
                    let last = definitions.last_mut().expect("a definition to continue");
                    last.1.push(' ');
                    last.1.push_str(l.trim());
                }
            }
        }
        let mut records = BTreeMap::new();
        let mut prose = BTreeMap::new();
        for (name, body) in definitions {
            let fields: Option<Vec<(String, Type)>> = body
                .split_whitespace()
                .map(|t| {
                    t.split_once(':')
                        .filter(|(f, _)| f.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                        .map(|(f, ty)| (f.to_owned(), parse_type(ty)))
                })
                .collect();
            match fields {
                Some(fields) => {
                    records.insert(name, fields);
                }
                None => {
                    prose.insert(name, body);
                }
            }
        }
        Doc {
            magic,
            version,
            request_kind,
            response_kind,
            records,
            prose,
        }
    }
}

/// Reads bytes by the document's words: postcard's varints, lengths and tags.
struct Reader<'a> {
    doc: &'a Doc,
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let b = *self.bytes.get(self.at).expect("the envelope ended early");
        self.at += 1;
        b
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let out = self.bytes[self.at..self.at + n].to_vec();
        self.at += n;
        out
    }

    /// "integers are LEB128 varints"
    fn varint(&mut self) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte();
            value |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return value;
            }
        }
        panic!("a varint longer than 64 bits")
    }

    fn read(&mut self, ty: &Type) -> Value {
        match ty {
            // "sequences and byte strings a varint length then the items"
            Type::Vec(inner) => {
                let n = self.varint();
                Value::List((0..n).map(|_| self.read(inner)).collect())
            }
            // "`Option` a 0/1 tag"
            Type::Option(inner) => match self.byte() {
                0 => Value::Maybe(None),
                1 => Value::Maybe(Some(Box::new(self.read(inner)))),
                t => panic!("an Option tag {t}"),
            },
            Type::Array(n) => Value::Raw(self.take(*n)),
            Type::Named(name) => self.named(name),
        }
    }

    fn named(&mut self, name: &str) -> Value {
        match name {
            "u64" => Value::Unsigned(self.varint()),
            // "`i64` is a zigzag varint"
            "i64" => {
                let z = self.varint();
                Value::Signed(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            "bool" => match self.byte() {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => panic!("a bool {b}"),
            },
            "String" => {
                let n = self.varint() as usize;
                Value::Text(String::from_utf8(self.take(n)).expect("UTF-8"))
            }
            _ => {
                if let Some(fields) = self.doc.records.get(name) {
                    let fields = fields.clone();
                    return Value::Record(
                        fields
                            .iter()
                            .map(|(f, ty)| (f.clone(), self.read(ty)))
                            .collect(),
                    );
                }
                let words = self
                    .doc
                    .prose
                    .get(name)
                    .unwrap_or_else(|| panic!("PROTOCOL.md does not define {name}"));
                self.prose(name, words)
            }
        }
    }

    /// The types the document defines in words: the words must say what is read.
    fn prose(&mut self, name: &str, words: &str) -> Value {
        if words.starts_with("varint 16, then the 16 bytes") {
            assert_eq!(self.varint(), 16, "{name}: the length 16");
            return Value::Raw(self.take(16));
        }
        if words.starts_with("32 bytes") && words.contains("no length") {
            return Value::Raw(self.take(32));
        }
        if words.starts_with("varint length, then the bytes") {
            let n = self.varint() as usize;
            return Value::Raw(self.take(n));
        }
        panic!("this reader does not understand PROTOCOL.md's {name} = {words}")
    }
}

/// Decodes a whole envelope of `kind` as `top` (`SyncRequest`, `SyncResponse`).
fn decode(doc: &Doc, bytes: &[u8], kind: u8, top: &str) -> Value {
    assert_eq!(&bytes[..4], doc.magic.as_slice(), "magic");
    assert_eq!(bytes[4], doc.version, "version");
    assert_eq!(bytes[5], kind, "kind");
    let mut r = Reader { doc, bytes, at: 6 };
    let value = r.named(top);
    assert_eq!(
        r.at,
        bytes.len(),
        "{top}: trailing bytes the document does not account for"
    );
    value
}

// ---- What the code encoded, by the document's names ---------------------------------

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn list<T>(items: &[T], f: impl Fn(&T) -> Value) -> Value {
    Value::List(items.iter().map(f).collect())
}

fn doc_id(d: &sync_core::ids::DocId) -> Value {
    Value::Raw(d.0.as_bytes().to_vec())
}

fn hash(h: &Hash) -> Value {
    Value::Raw(h.0.to_vec())
}

fn bytes(b: &Bytes) -> Value {
    Value::Raw(b.0.clone())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn fallback(f: &FallbackMessage) -> Value {
    record(vec![
        ("doc", doc_id(&f.doc)),
        ("message", bytes(&f.message)),
    ])
}

fn request(r: &SyncRequest) -> Value {
    record(vec![
        ("cursor", Value::Unsigned(r.cursor)),
        ("held_digest", Value::Raw(r.held_digest.to_vec())),
        (
            "held",
            Value::Maybe(r.held.as_ref().map(|h| Box::new(list(h, doc_id)))),
        ),
        (
            "uploads",
            list(&r.uploads, |u| {
                record(vec![
                    ("doc", doc_id(&u.doc)),
                    ("heads", list(&u.heads, hash)),
                    ("changes", list(&u.changes, bytes)),
                ])
            }),
        ),
        ("fallback", list(&r.fallback, fallback)),
        ("clock", Value::Signed(r.clock)),
        ("refused", list(&r.refused, |q| Value::Unsigned(*q))),
    ])
}

fn response(r: &SyncResponse) -> Value {
    record(vec![
        ("cursor", Value::Unsigned(r.cursor)),
        (
            "receipts",
            list(&r.receipts, |x| {
                record(vec![
                    ("doc", doc_id(&x.doc)),
                    ("heads", list(&x.heads, hash)),
                ])
            }),
        ),
        (
            "rejections",
            list(&r.rejections, |x| {
                record(vec![
                    ("doc", doc_id(&x.doc)),
                    ("code", text(&x.code)),
                    ("message", text(&x.message)),
                    ("heads", list(&x.heads, hash)),
                    ("quarantine", Value::Unsigned(x.quarantine)),
                ])
            }),
        ),
        (
            "docs",
            list(&r.docs, |d| {
                record(vec![
                    ("doc", doc_id(&d.doc)),
                    (
                        "snapshot",
                        Value::Maybe(d.snapshot.as_ref().map(|s| Box::new(bytes(s)))),
                    ),
                    ("changes", list(&d.changes, bytes)),
                ])
            }),
        ),
        ("purge", list(&r.purge, doc_id)),
        ("fallback", list(&r.fallback, fallback)),
        ("need_held", Value::Bool(r.need_held)),
        ("more", Value::Bool(r.more)),
        (
            "decisions",
            list(&r.decisions, |d| {
                record(vec![
                    ("quarantine", Value::Unsigned(d.quarantine)),
                    ("accepted", Value::Bool(d.accepted)),
                    ("note", text(&d.note)),
                ])
            }),
        ),
    ])
}

// ---- The tests ----------------------------------------------------------------------

#[test]
fn the_fixtures_decode_by_protocol_md_alone() {
    let doc = Doc::read();
    let req = fixtures::request_v2();
    let res = fixtures::response_v2();
    for bytes in [
        req.encode(),
        include_bytes!("../fixtures/v2/request.bin").to_vec(),
    ] {
        assert_eq!(
            decode(&doc, &bytes, doc.request_kind, "SyncRequest"),
            request(&req)
        );
    }
    for bytes in [
        res.encode(),
        include_bytes!("../fixtures/v2/response.bin").to_vec(),
    ] {
        assert_eq!(
            decode(&doc, &bytes, doc.response_kind, "SyncResponse"),
            response(&res)
        );
    }
}

#[test]
fn a_real_exchange_decodes_by_protocol_md_alone() {
    let doc = Doc::read();
    let server = MemoryServerStore::new();
    let r = resident(1);

    // Staff registers a resident offline and syncs: a request with a real Automerge
    // change, answered with a receipt.
    let mut staff_phone = Phone::new(1, staff(STAFF_A, STATION_A));
    let file = new_case_file(staff_phone.principal(), actor(1), r, STATION_A);
    staff_phone.replica.save_case_file(&file).unwrap();
    let first = staff_phone.replica.prepare(NOW).unwrap();
    assert_eq!(first.uploads.len(), 1);
    let answer = staff_phone.serve(&server, &first);
    assert_eq!(answer.receipts.len(), 1);
    let decoded = decode(&doc, &first.encode(), doc.request_kind, "SyncRequest");
    assert_eq!(decoded, request(&first));
    let decoded = decode(&doc, &answer.encode(), doc.response_kind, "SyncResponse");
    assert_eq!(decoded, response(&answer));

    // A volunteer's first sync: the server delivers the document.
    let volunteer_phone = Phone::new(2, volunteer(VOLUNTEER_1, &[r]));
    let req = volunteer_phone.replica.prepare(NOW).unwrap();
    let res = volunteer_phone.serve(&server, &req);
    assert!(!res.docs.is_empty(), "{res:?}");
    assert_eq!(
        decode(&doc, &res.encode(), doc.response_kind, "SyncResponse"),
        response(&res)
    );
}

#[test]
fn the_reader_refuses_what_the_document_does_not_say() {
    // The interpreter is not lenient: a byte the document does not account for fails.
    let doc = Doc::read();
    let mut bytes = fixtures::request_v2().encode();
    bytes.push(0);
    let trailing = std::panic::catch_unwind(|| {
        decode(&doc, &bytes, doc.request_kind, "SyncRequest");
    });
    assert!(trailing.is_err());
    // A document whose grammar lost a field no longer decodes the code's bytes.
    let mut short = Doc::read();
    short
        .records
        .get_mut("Rejection")
        .expect("Rejection")
        .retain(|(f, _)| f != "heads");
    let bytes = fixtures::response_v2().encode();
    let decoded =
        std::panic::catch_unwind(|| decode(&short, &bytes, short.response_kind, "SyncResponse"));
    assert!(decoded.map_or(true, |v| v != response(&fixtures::response_v2())));
}
