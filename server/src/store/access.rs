//! The access log (`access_log`, migration `0010_access_log`): who read a resident's
//! data on the web, and when. Health readings of elderly people are sensitive personal
//! information, so reads are recorded, not only writes. Rows are only ever added:
//! nothing here updates or deletes one, and the database's triggers refuse to.

use super::{Result, SqlStore, id_of};
use sqlx::Row;
use sync_core::ids::{DistrictId, ResidentId, Timestamp, UserId};

/// What was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessAction {
    /// A resident's page (profile, visits, follow-ups, history).
    ViewResident,
    /// An export of the visit log (CSV or XLSX).
    ExportVisits,
    /// A refused batch, decoded on the quarantine page.
    ViewRefused,
}

impl AccessAction {
    /// The stored code.
    pub fn code(self) -> &'static str {
        match self {
            AccessAction::ViewResident => "view_resident",
            AccessAction::ExportVisits => "export_visits",
            AccessAction::ViewRefused => "view_refused",
        }
    }

    /// From a stored code.
    pub fn from_code(code: &str) -> Option<Self> {
        [
            AccessAction::ViewResident,
            AccessAction::ExportVisits,
            AccessAction::ViewRefused,
        ]
        .into_iter()
        .find(|a| a.code() == code)
    }
}

/// One read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// Its place in the log (ascending with time of writing).
    pub seq: i64,
    /// When (server clock, Unix ms).
    pub at: Timestamp,
    /// Who read.
    pub user: UserId,
    /// The reader's district, when the account has one.
    pub district: Option<DistrictId>,
    /// What they read.
    pub action: AccessAction,
    /// The resident concerned, when one is.
    pub resident: Option<ResidentId>,
    /// What else identifies the read (the export's format, filters and size; the
    /// refused batch's number).
    pub detail: String,
}

/// Which entries to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct AccessQuery {
    /// The district's entries only; `None`: every entry.
    pub district: Option<DistrictId>,
    /// About this resident only.
    pub resident: Option<ResidentId>,
    /// By this user only.
    pub user: Option<UserId>,
    /// Entries older than this sequence number (the next page).
    pub before: Option<i64>,
}

impl SqlStore {
    /// Adds one entry.
    pub async fn record_access(
        &self,
        user: UserId,
        district: Option<DistrictId>,
        action: AccessAction,
        resident: Option<ResidentId>,
        detail: &str,
        at: Timestamp,
    ) -> Result<()> {
        with_pool!(self, p => sqlx::query(
            "INSERT INTO access_log (at, user_id, district, action, resident, detail)
             VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(at)
            .bind(user.0.as_bytes().to_vec())
            .bind(district.map(|d| d.0.as_bytes().to_vec()))
            .bind(action.code())
            .bind(resident.map(|r| r.0.as_bytes().to_vec()))
            .bind(super::row_text(detail))
            .execute(p)
            .await
            .map(|_| ())?);
        Ok(())
    }

    /// At most `limit` entries that `query` selects, newest first.
    pub async fn access_log(&self, query: &AccessQuery, limit: i64) -> Result<Vec<Access>> {
        // One statement with every filter optional, so the SQL stays a literal.
        let sql = "SELECT seq, at, user_id, district, action, resident, detail FROM access_log
             WHERE ($1 IS NULL OR district = $1) AND ($2 IS NULL OR resident = $2)
               AND ($3 IS NULL OR user_id = $3) AND seq < $4
             ORDER BY seq DESC LIMIT $5";
        let bytes = |u: Option<uuid::Uuid>| u.map(|u| u.as_bytes().to_vec());
        let rows = with_pool!(self, p => sqlx::query(sql)
            .bind(bytes(query.district.map(|d| d.0)))
            .bind(bytes(query.resident.map(|r| r.0)))
            .bind(bytes(query.user.map(|u| u.0)))
            .bind(query.before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(p)
            .await?
            .iter()
            .map(read)
            .collect::<Result<Vec<_>>>())?;
        Ok(rows)
    }
}

fn read<R: Row>(r: &R) -> Result<Access>
where
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let uuid = |b: &[u8]| id_of(b).map(|d| d.0);
    let action: String = r.try_get("action")?;
    Ok(Access {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        user: UserId(uuid(&r.try_get::<Vec<u8>, _>("user_id")?)?),
        district: r
            .try_get::<Option<Vec<u8>>, _>("district")?
            .map(|b| uuid(&b).map(DistrictId))
            .transpose()?,
        action: AccessAction::from_code(&action).ok_or_else(|| {
            super::StoreError::Corrupt(format!("unknown access log action {action:?}"))
        })?,
        resident: r
            .try_get::<Option<Vec<u8>>, _>("resident")?
            .map(|b| uuid(&b).map(ResidentId))
            .transpose()?,
        detail: r.try_get("detail")?,
    })
}
