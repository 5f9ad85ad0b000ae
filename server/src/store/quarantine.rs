//! Refused batches (`quarantine`, migrations `0001_sync` and `0006_refusals`): kept with
//! the district of the user whose device sent them, bounded per device per day by the
//! core's [`QUARANTINE_PER_DAY`], and decided on by a person (accepted into the record
//! or dismissed with a note). Phones ask after their own batches' decisions by number.

use super::{Result, SqlStore, StoreError, id_of};
use sqlx::Row;
use sync_core::automerge::ChangeHash;
use sync_core::ids::{DeviceId, DistrictId, DocId, Timestamp, UserId};
use sync_core::protocol::envelope::Decision;
use sync_core::protocol::store::{QUARANTINE_PER_DAY, Quarantined, Refusals};
use uuid::Uuid;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// A batch's byte strings as the `bytes` column holds them.
fn encoded(item: &Quarantined) -> Result<Vec<u8>> {
    postcard::to_stdvec(&item.bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A quarantined batch as the coordinators' page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineRow {
    /// Its quarantine number.
    pub number: u64,
    /// The batch.
    pub item: Quarantined,
    /// The decision taken, if any.
    pub decision: Option<QuarantineDecision>,
}

/// A person's decision on a quarantined batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineDecision {
    /// Accepted into the record, or dismissed.
    pub accepted: bool,
    /// Who decided.
    pub by: UserId,
    /// When.
    pub at: Timestamp,
    /// The note that reaches the phone.
    pub note: String,
}

/// The columns [`read_row`] reads, as a literal for `concat!`.
macro_rules! columns {
    () => {
        "id, doc, district, device, user_id, code, reason, bytes, at, decision, decided_by, decided_at, note"
    };
}
pub(super) use columns;

fn uuid(bytes: &[u8]) -> Result<Uuid> {
    id_of(bytes).map(|d| d.0)
}

pub(super) fn read_row<R: Row>(r: &R) -> Result<QuarantineRow>
where
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let district: Option<Vec<u8>> = r.try_get("district")?;
    let decision: Option<String> = r.try_get("decision")?;
    let decided_by: Option<Vec<u8>> = r.try_get("decided_by")?;
    let decision = match (decision, decided_by) {
        (Some(d), Some(by)) => Some(QuarantineDecision {
            accepted: d == "accepted",
            by: UserId(uuid(&by)?),
            at: r.try_get::<Option<i64>, _>("decided_at")?.unwrap_or(0),
            note: r.try_get::<Option<String>, _>("note")?.unwrap_or_default(),
        }),
        _ => None,
    };
    let bytes: Vec<u8> = r.try_get("bytes")?;
    Ok(QuarantineRow {
        number: u64::try_from(r.try_get::<i64, _>("id")?).unwrap_or(0),
        item: Quarantined {
            doc: id_of(&r.try_get::<Vec<u8>, _>("doc")?)?,
            district: DistrictId(match district {
                Some(d) => uuid(&d)?,
                None => Uuid::nil(),
            }),
            device: DeviceId(uuid(&r.try_get::<Vec<u8>, _>("device")?)?),
            user: UserId(uuid(&r.try_get::<Vec<u8>, _>("user_id")?)?),
            code: r.try_get("code")?,
            reason: r.try_get("reason")?,
            bytes: postcard::from_bytes(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            at: r.try_get("at")?,
        },
        decision,
    })
}

impl SqlStore {
    /// Keeps a refused batch unless its device has used up its allowance for the last
    /// 24 hours; returns its quarantine number.
    pub(super) async fn keep_quarantined(&self, item: Quarantined) -> Result<Option<u64>> {
        let device = item.device.0.as_bytes().to_vec();
        let bytes = encoded(&item)?;
        if let Some(id) = self.same_undecided(&item, &bytes).await? {
            return Ok(Some(id));
        }
        let since = item.at.saturating_sub(DAY_MS);
        let (batches, size): (i64, i64) = with_pool!(self, p => sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM quarantine WHERE device = $1 AND at > $2")
            .bind(device.clone())
            .bind(since)
            .fetch_one(p)
            .await?);
        let to_u64 = |n: i64| u64::try_from(n).unwrap_or(0);
        if !QUARANTINE_PER_DAY.admits(to_u64(batches), to_u64(size), item.size()) {
            return Ok(None);
        }
        self.insert_quarantined(item, bytes).await.map(Some)
    }

    /// Keeps a batch recovered from a revoked device's export, outside the daily
    /// allowance: an export opens only with the device's own key, is taken once per
    /// device, and is bounded by the request body limit.
    pub async fn keep_recovered(&self, item: Quarantined) -> Result<u64> {
        let bytes = encoded(&item)?;
        if let Some(id) = self.same_undecided(&item, &bytes).await? {
            return Ok(id);
        }
        self.insert_quarantined(item, bytes).await
    }

    /// The number of the same batch of the same device, refused before and still
    /// awaiting a decision: a station hub forwards what its phone already handed over
    /// itself, or forwards it twice, or a revoked phone's export holds what its hub
    /// forwarded. One batch for a coordinator, under the number the phone already
    /// keeps. A batch that holds all of an undecided one and more (the volunteer wrote
    /// to the resident again on top of the refused changes, and the phone handed the
    /// whole over) takes its place, with the new reason, under its number.
    async fn same_undecided(&self, item: &Quarantined, bytes: &[u8]) -> Result<Option<u64>> {
        let rows: Vec<(i64, Vec<u8>)> = with_pool!(self, p => sqlx::query_as(
            "SELECT id, bytes FROM quarantine WHERE device = $1 AND doc = $2 AND decision IS NULL
             ORDER BY id")
            .bind(item.device.0.as_bytes().to_vec())
            .bind(item.doc.0.as_bytes().to_vec())
            .fetch_all(p)
            .await?);
        if let Some((id, _)) = rows.iter().find(|(_, b)| b.as_slice() == bytes) {
            return Ok(u64::try_from(*id).ok());
        }
        let grown = rows.iter().find(|(_, b)| {
            postcard::from_bytes::<Vec<Vec<u8>>>(b)
                .is_ok_and(|old| !old.is_empty() && old.iter().all(|c| item.bytes.contains(c)))
        });
        let Some((id, _)) = grown else {
            return Ok(None);
        };
        let size = i64::try_from(item.size()).unwrap_or(i64::MAX);
        with_pool!(self, p => sqlx::query(
            "UPDATE quarantine SET bytes = $2, size = $3, code = $4, reason = $5
             WHERE id = $1 AND decision IS NULL")
            .bind(*id)
            .bind(bytes.to_vec())
            .bind(size)
            .bind(&item.code)
            .bind(&item.reason)
            .execute(p)
            .await
            .map(|_| ())?);
        Ok(u64::try_from(*id).ok())
    }

    /// How far `hashes` (changes to `doc`) were refused: in any device's quarantined
    /// batch, decided or not, or (on a hub) by the district server after the hub took
    /// them.
    pub(super) async fn refusals_here(
        &self,
        doc: DocId,
        hashes: &[ChangeHash],
    ) -> Result<Refusals> {
        let id = doc.0.as_bytes().to_vec();
        let rows: Vec<(Vec<u8>, Option<String>)> = with_pool!(self, p => sqlx::query_as(
            "SELECT bytes, decision FROM quarantine WHERE doc = $1")
            .bind(id.clone()).fetch_all(p).await?);
        let at_hub: Vec<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar(
            "SELECT hash FROM hub_refused WHERE doc = $1")
            .bind(id).fetch_all(p).await?);
        let batches: Vec<(Vec<Vec<u8>>, bool)> = rows
            .iter()
            .filter_map(|(bytes, decision)| {
                let bytes = postcard::from_bytes::<Vec<Vec<u8>>>(bytes).ok()?;
                Some((bytes, decision.as_deref() == Some("dismissed")))
            })
            .collect();
        Ok(Refusals::of(
            hashes,
            batches.iter().map(|(b, d)| (b.as_slice(), *d)),
            at_hub
                .iter()
                .filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok().map(ChangeHash)),
        ))
    }

    /// Stores `item`, whose byte strings `bytes` holds encoded (see [`encoded`]).
    async fn insert_quarantined(&self, item: Quarantined, bytes: Vec<u8>) -> Result<u64> {
        let device = item.device.0.as_bytes().to_vec();
        let size = i64::try_from(item.size()).unwrap_or(i64::MAX);
        let id: i64 = with_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO quarantine (doc, district, device, user_id, code, reason, bytes, at, size)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(item.doc.0.as_bytes().to_vec())
        .bind(item.district.0.as_bytes().to_vec())
        .bind(device)
        .bind(item.user.0.as_bytes().to_vec())
        .bind(item.code)
        .bind(super::row_text(&item.reason))
        .bind(bytes)
        .bind(item.at)
        .bind(size)
        .fetch_one(p)
        .await?);
        u64::try_from(id).map_err(|_| StoreError::Corrupt("a negative quarantine id".into()))
    }

    /// The decisions on `device`'s batches among `numbers`.
    pub(super) async fn decisions_for(
        &self,
        device: DeviceId,
        numbers: &[u64],
    ) -> Result<Vec<Decision>> {
        let mut out = Vec::new();
        // A phone awaits a handful; each is one indexed read.
        for &number in numbers.iter().take(1_000) {
            let Ok(id) = i64::try_from(number) else {
                continue;
            };
            let row: Option<(Option<String>, Option<String>)> = with_pool!(self, p => sqlx::query_as(
                "SELECT decision, note FROM quarantine WHERE id = $1 AND device = $2")
                .bind(id)
                .bind(device.0.as_bytes().to_vec())
                .fetch_optional(p)
                .await?);
            if let Some((Some(decision), note)) = row {
                out.push(Decision {
                    quarantine: number,
                    accepted: decision == "accepted",
                    note: note.unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    /// A district's quarantined batches, newest first: those awaiting a decision, or
    /// (with `decided`) those decided.
    pub async fn quarantine_list(
        &self,
        district: DistrictId,
        decided: bool,
        limit: i64,
    ) -> Result<Vec<QuarantineRow>> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM quarantine WHERE district = $1 AND (decision IS NULL) = $2 ORDER BY id DESC LIMIT $3"
        );
        with_pool!(self, p => sqlx::query(sql)
            .bind(district.0.as_bytes().to_vec())
            .bind(!decided)
            .bind(limit)
            .fetch_all(p)
            .await?
            .iter()
            .map(read_row)
            .collect())
    }

    /// A device's batches awaiting a decision, newest first: its phone sets aside
    /// those a station hub took and the district server refused.
    pub async fn quarantine_open_of_device(
        &self,
        device: DeviceId,
        limit: i64,
    ) -> Result<Vec<QuarantineRow>> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM quarantine WHERE device = $1 AND decision IS NULL ORDER BY id DESC LIMIT $2"
        );
        with_pool!(self, p => sqlx::query(sql)
            .bind(device.0.as_bytes().to_vec())
            .bind(limit)
            .fetch_all(p)
            .await?
            .iter()
            .map(read_row)
            .collect())
    }

    /// How many of a district's batches await a decision.
    pub async fn quarantine_open_count(&self, district: DistrictId) -> Result<i64> {
        Ok(with_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM quarantine WHERE district = $1 AND decision IS NULL")
            .bind(district.0.as_bytes().to_vec())
            .fetch_one(p)
            .await?))
    }

    /// One batch of a district's quarantine.
    pub async fn quarantine_row(
        &self,
        district: DistrictId,
        number: u64,
    ) -> Result<Option<QuarantineRow>> {
        let Ok(id) = i64::try_from(number) else {
            return Ok(None);
        };
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM quarantine WHERE id = $1 AND district = $2"
        );
        with_pool!(self, p => sqlx::query(sql)
            .bind(id)
            .bind(district.0.as_bytes().to_vec())
            .fetch_optional(p)
            .await?
            .as_ref()
            .map(read_row)
            .transpose())
    }

    /// Records a decision on an undecided batch; `false` if it was decided already.
    pub async fn decide_quarantined(
        &self,
        number: u64,
        decision: &QuarantineDecision,
    ) -> Result<bool> {
        let Ok(id) = i64::try_from(number) else {
            return Ok(false);
        };
        let updated = with_pool!(self, p => sqlx::query(
            "UPDATE quarantine SET decision = $2, decided_by = $3, decided_at = $4, note = $5
             WHERE id = $1 AND decision IS NULL")
            .bind(id)
            .bind(if decision.accepted { "accepted" } else { "dismissed" })
            .bind(decision.by.0.as_bytes().to_vec())
            .bind(decision.at)
            .bind(decision.note.clone())
            .execute(p)
            .await?
            .rows_affected());
        Ok(updated == 1)
    }

    /// Quarantined batches of `doc` awaiting a decision (a resident's page warns).
    pub async fn quarantine_open_for_doc(&self, doc: DocId) -> Result<i64> {
        Ok(with_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM quarantine WHERE doc = $1 AND decision IS NULL")
            .bind(doc.0.as_bytes().to_vec())
            .fetch_one(p)
            .await?))
    }
}
