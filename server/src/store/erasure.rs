//! Erasing a resident's personal data (issue 16), at their request or by the retention
//! rule, in one transaction:
//!
//! - the case file (`documents`, `changes`) and its feed entries are deleted, and an
//!   `erasures` row (id, district, time, who, why: no personal data) stays, so the
//!   sync step refuses any phone's old copy (`erased`) instead of making the document
//!   again, and the phones delete theirs;
//! - the resident's row, follow-ups, assignments and quarantined batches are deleted;
//! - the visits stay for the statistics, anonymised: their free text (notes, remarks,
//!   hazard notes, review comments) and health readings are blanked, and the resident's
//!   id is replaced by a random one shared by their visits, so counts by project, unit,
//!   station, month and "residents visited" are unchanged and nothing links back;
//! - the access log keeps its entries (ids and times only).
//!
//! Backups taken before the erasure still hold the data until they age out of the
//! rotation; the server README says what an operator does after restoring one.

use super::{Result, SqlStore};
use sync_core::ids::{DistrictId, DocId, ResidentId, Timestamp, UserId};

/// Why a case file was erased.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErasureReason {
    /// The resident (or their family) asked.
    Request,
    /// Closed for longer than the retention period.
    Retention,
}

impl ErasureReason {
    fn code(self) -> &'static str {
        match self {
            ErasureReason::Request => "request",
            ErasureReason::Retention => "retention",
        }
    }
}

/// What an erasure removed and kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// Visits kept, anonymised, for the statistics.
    pub visits_kept: u64,
    /// Quarantined batches deleted.
    pub quarantined_deleted: u64,
}

/// The statements that anonymise the visits kept: `$1` is the resident's id, `$2` the
/// pseudonym its visits keep.
const ANONYMISE: [&str; 3] = [
    "UPDATE visit_rows SET resident = $2, notes = '', remarks = '', systolic = NULL,
       diastolic = NULL, blood_sugar_dmmol = NULL, review_comment = NULL WHERE resident = $1",
    "UPDATE visit_services SET resident = $2 WHERE resident = $1",
    "UPDATE visit_hazards SET resident = $2, note = '' WHERE resident = $1",
];

/// The statements that delete the rest: `$1` is the resident's (and document's) id.
const DELETE: [&str; 7] = [
    "DELETE FROM follow_up_rows WHERE resident = $1",
    "DELETE FROM resident_rows WHERE id = $1",
    "DELETE FROM assignments WHERE resident = $1",
    "DELETE FROM changes WHERE doc = $1",
    "DELETE FROM feed WHERE doc = $1",
    "DELETE FROM documents WHERE id = $1",
    "DELETE FROM quarantine WHERE doc = $1",
];

impl SqlStore {
    /// Whether `doc` was erased.
    pub async fn erased(&self, doc: DocId) -> Result<bool> {
        let n: i64 = with_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM erasures WHERE doc = $1")
            .bind(doc.0.as_bytes().to_vec())
            .fetch_one(p)
            .await?);
        Ok(n > 0)
    }

    /// Erases a resident's case file in `district` (see the module's documentation).
    /// `None` when there is no such case file.
    pub async fn erase_resident(
        &self,
        resident: ResidentId,
        district: DistrictId,
        by: Option<UserId>,
        reason: ErasureReason,
        now: Timestamp,
    ) -> Result<Option<Erased>> {
        let id = resident.0.as_bytes().to_vec();
        let pseudonym = uuid::Uuid::now_v7().as_bytes().to_vec();
        macro_rules! erase {
            ($tx:ident) => {{
                let found: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM documents WHERE id = $1 AND district = $2 AND station IS NOT NULL",
                )
                .bind(id.clone())
                .bind(district.0.as_bytes().to_vec())
                .fetch_one(&mut *$tx)
                .await?;
                if found == 0 {
                    return Ok(None);
                }
                let visits_kept: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM visit_rows WHERE resident = $1")
                        .bind(id.clone())
                        .fetch_one(&mut *$tx)
                        .await?;
                let quarantined: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM quarantine WHERE doc = $1")
                        .bind(id.clone())
                        .fetch_one(&mut *$tx)
                        .await?;
                for sql in ANONYMISE {
                    sqlx::query(sql)
                        .bind(id.clone())
                        .bind(pseudonym.clone())
                        .execute(&mut *$tx)
                        .await?;
                }
                for sql in DELETE {
                    sqlx::query(sql).bind(id.clone()).execute(&mut *$tx).await?;
                }
                sqlx::query(
                    "INSERT INTO erasures (doc, district, at, by_user, reason) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id.clone())
                .bind(district.0.as_bytes().to_vec())
                .bind(now)
                .bind(by.map(|u| u.0.as_bytes().to_vec()))
                .bind(reason.code())
                .execute(&mut *$tx)
                .await?;
                $tx.commit().await?;
                Erased {
                    visits_kept: u64::try_from(visits_kept).unwrap_or(0),
                    quarantined_deleted: u64::try_from(quarantined).unwrap_or(0),
                }
            }};
        }
        // No append commits between the check and the deletes.
        let erased = with_document_locked!(self, &id, tx => erase!(tx));
        self.cache_lock().pop(&DocId(resident.0));
        Ok(Some(erased))
    }

    /// Forgets a document without a trace: what a station hub does when the district
    /// server no longer delivers it (the resident moved to another station, or the
    /// file was closed). Unlike an erasure nothing marks it erased, so a phone's copy
    /// is neither refused as `erased` nor deleted: the hub, having no trace of it,
    /// leaves it to the district server (`not_here`). Its feed entries, projection
    /// rows and cached copy go.
    pub async fn forget_document(&self, doc: DocId) -> Result<()> {
        let id = doc.0.as_bytes().to_vec();
        let rows = [
            "DELETE FROM visit_services WHERE resident = $1",
            "DELETE FROM visit_hazards WHERE resident = $1",
            "DELETE FROM visit_rows WHERE resident = $1",
        ];
        macro_rules! forget {
            ($tx:ident) => {{
                for sql in rows.iter().chain(DELETE.iter()) {
                    sqlx::query(*sql)
                        .bind(id.clone())
                        .execute(&mut *$tx)
                        .await?;
                }
                $tx.commit().await?;
            }};
        }
        with_document_locked!(self, &id, tx => forget!(tx));
        self.cache_lock().pop(&doc);
        Ok(())
    }

    /// The case files of every district closed before `closed_before`: what the
    /// retention rule erases.
    pub async fn closed_before(
        &self,
        closed_before: Timestamp,
    ) -> Result<Vec<(ResidentId, DistrictId)>> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = with_pool!(self, p => sqlx::query_as(
            "SELECT id, district FROM resident_rows WHERE closed_at IS NOT NULL AND closed_at < $1 ORDER BY id")
            .bind(closed_before)
            .fetch_all(p)
            .await?);
        rows.into_iter()
            .map(|(id, district)| {
                Ok((
                    ResidentId(super::id_of(&id)?.0),
                    DistrictId(super::id_of(&district)?.0),
                ))
            })
            .collect()
    }
}
