//! Profile fields that hold concurrent values: two people changed the same field
//! offline. Automerge keeps every concurrent value; the coordinator chooses.

use super::casefile::{CaseFile, FieldValue, ProfileField};
use super::schema::*;
use crate::error::Result;
use crate::ids::{Timestamp, UserId};
use automerge::{ROOT, ReadDoc, Value};

/// One of the values a conflicting field holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictingValue {
    /// The value.
    pub value: FieldValue,
    /// Who wrote it (the change's author), when known.
    pub user: Option<UserId>,
    /// The Automerge actor (device) that wrote it, in hex.
    pub actor: String,
    /// When it was written, by the writing device's clock.
    pub at: Timestamp,
}

/// A profile field with more than one current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldConflict {
    /// Which field.
    pub field: ProfileField,
    /// Its values, the one Automerge currently shows first.
    pub values: Vec<ConflictingValue>,
}

impl CaseFile {
    /// Every profile field holding concurrent, different values.
    pub fn conflicts(&self) -> Result<Vec<FieldConflict>> {
        let doc = self.doc();
        let Some(p) = get_obj(doc, &ROOT, PROFILE) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for &field in ProfileField::ALL {
            let all = doc.get_all(&p, field.key())?;
            if all.len() < 2 {
                continue;
            }
            let mut values: Vec<ConflictingValue> = Vec::with_capacity(all.len());
            for (value, opid) in all {
                let value = match value {
                    Value::Scalar(s) => FieldValue::from_scalar(&s),
                    Value::Object(_) => FieldValue::Empty,
                };
                let meta = doc
                    .hash_for_opid(&opid)
                    .and_then(|h| doc.get_change_meta_by_hash(&h));
                let (user, actor, at) = match meta {
                    Some(m) => (
                        m.message.as_deref().and_then(|s| s.parse().ok()),
                        m.actor.to_hex_string(),
                        m.timestamp,
                    ),
                    None => (None, String::new(), 0),
                };
                values.push(ConflictingValue {
                    value,
                    user,
                    actor,
                    at,
                });
            }
            // Equal values written concurrently (two phones applying the same fix) are
            // not a conflict anyone needs to resolve.
            let first = &values[0].value;
            if values.iter().all(|v| &v.value == first) {
                continue;
            }
            out.push(FieldConflict { field, values });
        }
        Ok(out)
    }
}
