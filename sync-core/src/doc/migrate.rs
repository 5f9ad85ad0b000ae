//! Schema migration. Documents record the schema version they were written with; the
//! server migrates stored documents forward on load (as itself, so the migration is an
//! ordinary change that syncs to every phone), and phones read older layouts in place
//! until the migrated document reaches them.
//!
//! Version 1 kept the visit frequency as a label (`profile.visit_frequency`: "weekly",
//! "fortnightly", "monthly", "quarterly"); version 2 keeps the number of days
//! (`profile.visit_every_days`), which the due-visit list computes with.

use super::schema::*;
use crate::error::Result;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Automerge, ObjId, ROOT, ReadDoc, ScalarValue};

pub(crate) const V1_FREQUENCY: &str = "visit_frequency";

/// Days between visits for a schema-1 frequency label.
pub fn v1_label_days(label: &str) -> Option<i64> {
    match label {
        "weekly" => Some(7),
        "fortnightly" => Some(14),
        "monthly" => Some(30),
        "quarterly" => Some(91),
        _ => None,
    }
}

pub(crate) fn v1_frequency_days<R: ReadDoc>(doc: &R, profile: &ObjId) -> Result<Option<i64>> {
    Ok(opt_str(doc, profile, V1_FREQUENCY)?.and_then(|l| v1_label_days(&l)))
}

/// Migrates `doc` to [`CURRENT_SCHEMA`] in one change committed at `now` with the
/// message `migration`. Returns whether anything was written. Concurrent migrations on
/// two servers write equal values, which merge without a visible conflict.
pub fn migrate(doc: &mut Automerge, now: i64) -> Result<bool> {
    let Some(header) = super::header(doc)? else {
        return Ok(false);
    };
    if header.schema >= CURRENT_SCHEMA {
        return Ok(false);
    }
    let mut tx = doc.transaction();
    if header.schema < 2
        && header.kind == super::DocKind::Resident
        && let Some(p) = get_obj(&tx, &ROOT, PROFILE)
    {
        if let Some(days) = v1_frequency_days(&tx, &p)? {
            tx.put(&p, "visit_every_days", days)?;
        }
        if tx.get(&p, V1_FREQUENCY)?.is_some() {
            tx.delete(&p, V1_FREQUENCY)?;
        }
    }
    tx.put(ROOT, SCHEMA, ScalarValue::Uint(CURRENT_SCHEMA))?;
    tx.commit_with(
        CommitOptions::default()
            .with_message("migration")
            .with_time(now),
    );
    Ok(true)
}
