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

/// A small case file in the schema-1 layout, as the fixture
/// `tests/fixtures/v1/resident-schema1.automerge` holds it: resident
/// `00000000-0000-0000-0000-000000001001` at station `…5a` of district `…d1`, one
/// visit, a "fortnightly" visit frequency.
pub fn schema1_example() -> Vec<u8> {
    use automerge::{ActorId, ObjType};
    let id = |n: u128| ScalarValue::Bytes(uuid::Uuid::from_u128(n).as_bytes().to_vec());
    let mut doc = Automerge::new().with_actor(ActorId::from(vec![0x11; 16]));
    let mut tx = doc.transaction();
    let write = |tx: &mut automerge::transaction::Transaction<'_>| -> Result<()> {
        tx.put(ROOT, SCHEMA, ScalarValue::Uint(1))?;
        tx.put(ROOT, KIND, KIND_RESIDENT)?;
        tx.put(ROOT, ID, id(0x1001))?;
        tx.put(ROOT, DISTRICT, id(0xD1))?;
        tx.put(ROOT, STATION, id(0x5A))?;
        tx.put(ROOT, CREATED_BY, id(0xA0))?;
        tx.put(ROOT, CREATED_AT, ScalarValue::Timestamp(1_700_000_000_000))?;
        let p = tx.put_object(ROOT, PROFILE, ObjType::Map)?;
        tx.put(&p, "name", "李老伯")?;
        tx.put(&p, "address", "华沙六村 3号")?;
        tx.put(&p, V1_FREQUENCY, "fortnightly")?;
        let visits = tx.put_object(ROOT, VISITS, ObjType::Map)?;
        let v = tx.put_object(
            &visits,
            uuid::Uuid::from_u128(0xF1).to_string().as_str(),
            ObjType::Map,
        )?;
        tx.put(&v, V_VOLUNTEER, id(0x71))?;
        tx.put(&v, V_PROJECT, id(0x90))?;
        tx.put(&v, V_STARTED, ScalarValue::Timestamp(1_700_100_000_000))?;
        tx.put(&v, V_ENDED, ScalarValue::Timestamp(1_700_103_600_000))?;
        let c = tx.put_object(&v, V_CONDITION, ObjType::Map)?;
        tx.put(&c, C_WELLBEING, "good")?;
        tx.put_object(&v, V_SERVICES, ObjType::List)?;
        tx.put(&v, V_NOTES, "")?;
        tx.put_object(ROOT, FOLLOW_UPS, ObjType::Map)?;
        Ok(())
    };
    if write(&mut tx).is_err() {
        return Vec::new();
    }
    tx.commit_with(
        CommitOptions::default()
            .with_message("00000000-0000-0000-0000-0000000000a0")
            .with_time(1_700_000_000_000),
    );
    doc.save()
}
