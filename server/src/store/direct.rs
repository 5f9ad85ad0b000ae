//! SQLite without sqlx on the hot paths: the writer's connection ([`super::write`]) and
//! the readers' ([`Readers`]), both through rusqlite on the same libsqlite3 as sqlx's.
//!
//! sqlx runs each SQLite connection on a worker thread of its own and hands it every
//! statement, and every row back, through channels: two context switches and a wake-up
//! for each. A sync runs a dozen short reads (the device and its user, the scope, the
//! feed, the documents' heads), and under load perf put a third of the server's CPU in
//! the kernel's task switching. A point read on SQLite takes microseconds; here it runs
//! in the calling thread, on a connection taken from a small set of the store's own.
//!
//! Only reads that return a bounded, small set of rows go here: an async thread that
//! runs one is busy for its duration. Reads of whole stations, pages and exports stay on
//! sqlx's pool.

use super::{Result, SQLITE_BUSY_TIMEOUT};
use rusqlite::types::ToSql;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// Opens a connection of the store's own to the database file at `path` (created and
/// migrated through sqlx's pool, in WAL mode), set up as the pool's are.
pub(super) fn open(path: &Path, read_only: bool, cache_kib: u32) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let access = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let conn =
        rusqlite::Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    // A receipt promises the visit is on disk (`synchronous` matters to the writer only).
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = memory;
         PRAGMA cache_size = -{cache_kib};"
    ))?;
    // The query planner's stability guarantee: a plan never depends on the values
    // bound. Without it, SQLite expires a statement whenever a parameter the planner
    // looked at is bound again (a `LIMIT $2`, a range on an index), and prepares it
    // afresh on its next step: the statement cache would save nothing on those.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A cached statement with `args` bound. The store's statements are written for both
/// backends, with PostgreSQL's numbered parameters (`$1`), which SQLite takes as names
/// and numbers in the order they first appear; each is bound here by its number.
/// Anonymous ones (`?`, the projections' many-row inserts on SQLite) are bound in order.
pub(super) fn bound<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    args: &[&dyn ToSql],
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut stmt = conn.prepare_cached(sql)?;
    for i in 1..=stmt.parameter_count() {
        let n = match stmt.parameter_name(i) {
            None => i,
            Some(name) => name
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.to_owned()))?,
        };
        let arg = n
            .checked_sub(1)
            .and_then(|k| args.get(k))
            .ok_or(rusqlite::Error::InvalidParameterCount(n, args.len()))?;
        stmt.raw_bind_parameter(i, arg)?;
    }
    Ok(stmt)
}

/// Reads every row of `sql`, mapped by `map`.
pub(super) fn rows<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[&dyn ToSql],
    mut map: impl FnMut(&rusqlite::Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = bound(conn, sql, args)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// Read-only connections to the store's SQLite file, used in the calling thread.
pub(crate) struct Readers {
    path: PathBuf,
    cache_kib: u32,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// Idle connections kept at most; more are opened when that many are busy at once,
    /// and closed when given back.
    keep: usize,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("path", &self.path)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl Readers {
    pub(super) fn new(path: PathBuf, keep: usize, cache_kib: u32) -> Readers {
        Readers {
            path,
            cache_kib,
            idle: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// Every row of `sql`, mapped by `map` (see [`read_rows!`](super::read_rows)).
    pub(crate) fn rows<T>(
        &self,
        sql: &str,
        args: &[&dyn ToSql],
        map: impl FnMut(&rusqlite::Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let conn = self.idle().pop();
        let conn = match conn {
            Some(c) => c,
            None => open(&self.path, true, self.cache_kib)?,
        };
        let read = rows(&conn, sql, args, map);
        // A failed read leaves a connection in autocommit, as good as before.
        let mut idle = self.idle();
        if idle.len() < self.keep {
            idle.push(conn);
        }
        read
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<rusqlite::Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A value either backend reads from a column.
pub(crate) trait Column:
    rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>
{
}

impl<T> Column for T where
    T: rusqlite::types::FromSql
        + for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
{
}

/// A row of either backend, read by column number.
pub(crate) trait Columns {
    fn col<T: Column>(&self, i: usize) -> Result<T>;
}

impl Columns for rusqlite::Row<'_> {
    fn col<T: Column>(&self, i: usize) -> Result<T> {
        Ok(self.get(i)?)
    }
}

impl Columns for sqlx::postgres::PgRow {
    fn col<T: Column>(&self, i: usize) -> Result<T> {
        use sqlx::Row;
        Ok(self.try_get(i)?)
    }
}
