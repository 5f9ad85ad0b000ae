//! The server's storage: `sync_core`'s [`ServerStore`] over SQL, on SQLite (the
//! embedded default: one file, WAL) or PostgreSQL (to scale out). One implementation,
//! the same SQL for both where the dialects agree; the differences are the schema types
//! (each backend has its migrations), how an append takes its locks, and nothing else.
//!
//! A document is a compacted snapshot plus the change chunks appended since; an append
//! folds the chunks into a new snapshot once they outgrow half the snapshot. Loaded
//! documents stay in a bounded cache, checked against the stored heads on every load
//! so that several server processes can share one database. Every append also writes
//! the read-side [`projections`] of the document, in the same transaction.

use lru::LruCache;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, migrate::Migrator};
use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;
use sync_core::automerge::{Automerge, ChangeHash};
use sync_core::ids::{DeviceId, DocId};
use sync_core::model::Scope;
use sync_core::protocol::envelope::Decision;
use sync_core::protocol::store::{
    Append, AppendOutcome, FeedEntry, FeedPage, Quarantined, Refusals, ServerStore,
};
use uuid::Uuid;

mod check;
pub(crate) mod direct;
mod migrations;

pub use check::CheckReport;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// SQLite refused or failed, on the writer's own connection (`write::GroupWriter`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored bytes do not load: the database was damaged or written by something else.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// A group commit failed after this append was queued in it; nothing of the group
    /// was stored.
    #[error("the group commit failed: {0}")]
    GroupCommit(String),
    /// A check handed to a worker thread did not finish (it panicked, or the server
    /// is shutting down). Nothing of it was stored.
    #[error("a worker thread failed: {0}")]
    Worker(String),
    /// The database URL names no backend this server speaks. Holds the scheme only:
    /// the rest of a URL may carry a password.
    #[error("unsupported database URL scheme {0:?}: use sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    /// A SQLite database in memory: the server needs a file.
    #[error("a SQLite database in memory is not supported: give it a file (sqlite://path)")]
    InMemory,
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The connection pool of whichever backend the store uses.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store has.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store.pool() {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Takes, in a PostgreSQL transaction, the lock every writer of document `id` holds
/// until it commits, so writers of one document serialise across processes.
pub(crate) async fn lock_document(conn: &mut sqlx::PgConnection, id: &[u8]) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended(encode($1, 'hex'), 0))")
        .bind(id.to_vec())
        .execute(conn)
        .await
        .map(|_| ())
}

/// Runs `$body` with `$tx` a transaction that holds document `$id`'s write lock from
/// its start: SQLite's (`BEGIN IMMEDIATE`, so nothing commits between a check and the
/// writes after it), or the PostgreSQL lock of [`lock_document`].
macro_rules! with_document_locked {
    ($store:expr, $id:expr, $tx:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite(p) => {
                let mut $tx = p.begin_with("BEGIN IMMEDIATE").await?;
                $body
            }
            $crate::store::Pool::Postgres(p) => {
                let mut $tx = p.begin().await?;
                $crate::store::lock_document(&mut $tx, $id).await?;
                $body
            }
        }
    };
}

/// [`read_rows!`] on PostgreSQL alone: on a leased connection
/// ([`leased::Readers::fetch_all`]), tried once more on a new one if the connection was
/// cut under the read.
macro_rules! pg_rows {
    ($store:expr, $sql:expr, [$($arg:expr),* $(,)?], |$r:ident| $map:expr) => {{
        #[allow(unused_imports)]
        use $crate::store::direct::Columns as _;
        type Read<T> = ::std::result::Result<T, $crate::store::StoreError>;
        let read = async {
            #[allow(unused_mut)]
            let mut args = sqlx::postgres::PgArguments::default();
            $(
                sqlx::Arguments::add(&mut args, &$arg)
                    .map_err(|e| $crate::store::StoreError::Database(sqlx::Error::Encode(e)))?;
            )*
            $store.pg_readers()?.fetch_all($sql, args).await
        };
        read.await.and_then(|rows| rows.iter().map(|$r| -> Read<_> { Ok($map) }).collect::<Read<Vec<_>>>())
    }};
}
pub(crate) use pg_rows;

/// Reads the rows of `$sql` (numbered parameters, `$args` bound in order), each mapped
/// by `$map`, in which `$r.col::<T>(i)?` reads column `i`; evaluates to a
/// `Result<Vec<_>, StoreError>`. On SQLite the read runs in this thread, on one of the
/// store's own reader connections ([`direct::Readers`]: no round trip to a worker
/// thread); on PostgreSQL on a leased connection ([`leased::Readers`]: no ping after
/// every read, as through sqlx's pool). Only for reads of a few rows.
macro_rules! read_rows {
    ($store:expr, $sql:expr, [$($arg:expr),* $(,)?], |$r:ident| $map:expr) => {{
        #[allow(unused_imports)]
        use $crate::store::direct::Columns as _;
        type Read<T> = ::std::result::Result<T, $crate::store::StoreError>;
        match $store.pool() {
            $crate::store::Pool::Postgres(_) => {
                $crate::store::pg_rows!($store, $sql, [$($arg),*], |$r| $map)
            }
            $crate::store::Pool::Sqlite(_) => $store.readers().and_then(|readers| readers.rows(
                $sql,
                &[$(&$arg as &dyn rusqlite::types::ToSql),*],
                |$r| -> Read<_> { Ok($map) },
            )),
        }
    }};
    // `$sql` made at run time (fixed text and placeholders only), its arguments a slice.
    ($store:expr, $sql:expr, all $args:expr, |$r:ident| $map:expr) => {{
        #[allow(unused_imports)]
        use $crate::store::direct::Columns as _;
        type Read<T> = ::std::result::Result<T, $crate::store::StoreError>;
        let sql: &str = $sql;
        match $store.pool() {
            $crate::store::Pool::Postgres(_) => {
                let read = async {
                    let mut args = sqlx::postgres::PgArguments::default();
                    for arg in $args.iter() {
                        sqlx::Arguments::add(&mut args, arg).map_err(|e| {
                            $crate::store::StoreError::Database(sqlx::Error::Encode(e))
                        })?;
                    }
                    $store.pg_readers()?.fetch_all(sql, args).await
                };
                read.await.and_then(|rows| rows.iter().map(|$r| -> Read<_> { Ok($map) }).collect::<Read<Vec<_>>>())
            }
            $crate::store::Pool::Sqlite(_) => {
                let args: Vec<&dyn rusqlite::types::ToSql> =
                    $args.iter().map(|a| a as &dyn rusqlite::types::ToSql).collect();
                $store.readers().and_then(|readers| readers.rows(sql, &args, |$r| -> Read<_> { Ok($map) }))
            }
        }
    }};
}
pub(crate) use read_rows;

/// Tuning for a [`SqlStore`].
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// Loaded documents kept in memory.
    pub cache_docs: usize,
    /// Database connections.
    pub max_connections: u32,
    /// Feed rows examined per request when filtering for one phone.
    pub feed_window: i64,
    /// Phones holding at most this many documents (a volunteer's) read the feed by
    /// document, through its index; others (a station's staff phone) in a window.
    pub feed_by_doc_max: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_docs: 512,
            max_connections: 8,
            feed_window: 5_000,
            feed_by_doc_max: 64,
        }
    }
}

/// Checks run at once on the blocking pool: as many as the cores. More would only take
/// turns, each holding its document, while several phones' big uploads could start
/// hundreds of threads.
fn check_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1)
}

/// Whether a SQLite connection given back to the pool is outside any transaction,
/// as SQLite and sqlx both see it; if not, the pool closes it and opens another.
/// After a full disk or an I/O error SQLite rolls a transaction back by itself, so
/// sqlx's own ROLLBACK (when a `Transaction` is dropped on the error) fails and sqlx
/// still counts the connection as inside one: its next `BEGIN IMMEDIATE` would be
/// refused, and a savepoint taken in its place would leave SQLite inside a
/// transaction that nothing ends, failing every later write on that connection.
///
/// sqlx counts its transactions itself, and only its worker thread lowers the count,
/// when it runs a rollback or a commit. A connection that counts none was given back by
/// plain reads (every release but a few) and is kept without asking the worker: the
/// question was a round trip to its thread on every release, a quarter of a sync's.
/// One that counts some had a `Transaction` dropped, whose rollback is queued: waiting
/// for the worker to answer a ping runs it, and the count is then true. (Appends do
/// not come here: they are written on the writer's own connection, `write::GroupWriter`.)
async fn outside_transaction(conn: &mut sqlx::SqliteConnection) -> sqlx::Result<bool> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

/// The SQL store.
#[derive(Debug)]
pub struct SqlStore {
    pool: Pool,
    cache: Mutex<LruCache<DocId, Automerge>>,
    options: StoreOptions,
    /// The appends, committed in groups (`None` only while the store is being opened).
    writer: Option<write::GroupWriter>,
    /// SQLite's connections for short reads in the calling thread (`None` on
    /// PostgreSQL).
    readers: Option<direct::Readers>,
    /// Checks running on the blocking pool (see [`ServerStore::run_check`]).
    checks: tokio::sync::Semaphore,
    /// PostgreSQL's connections for short reads ([`leased::Readers`]).
    pg_readers: Option<leased::Readers>,
}

/// SQLite's page caches, all connections together, in KiB.
const SQLITE_PAGE_CACHE_KIB: u32 = 64 * 1024;

/// SQLite reader connections kept open at most (see [`direct::Readers`]); reads in the
/// calling thread rarely overlap more than the async threads and a few blocking ones.
const READERS_KEPT: u32 = 4;

/// How long a SQLite connection waits for another's write lock before it fails.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Chunks are folded into a new snapshot once they pass this size, or half the
/// snapshot's, whichever is larger.
const COMPACT_MIN_BYTES: i64 = 64 * 1024;

impl SqlStore {
    /// Connects to `url` (`sqlite://path` or `postgres://…`), creating a SQLite file if
    /// missing, and brings the schema up to date.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self> {
        // The pool's connections, the writer's and the readers' share the page cache's
        // budget.
        let connections = options.max_connections.max(1);
        let readers_kept = connections.min(READERS_KEPT);
        let cache_kib = SQLITE_PAGE_CACHE_KIB / (connections + 1 + readers_kept);
        let mut sqlite_file = None;
        let mut pg_readers = None;
        let pool = if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)?;
            // The writer opens the file again: a database in memory would be another.
            let file = connect.get_filename().to_owned();
            if file.as_os_str().is_empty() || file.as_os_str() == ":memory:" {
                return Err(StoreError::InMemory);
            }
            sqlite_file = Some(file);
            let connect = connect
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // A receipt promises the visit is stored: commit to disk every time.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                // SQLITE_PAGE_CACHE_KIB shared out among the connections, the writer's
                // and the readers' (about 5 MiB each with the default 8 pooled; SQLite's
                // default is 2 MiB): the pages' reads of a month
                // of visits and their indexes stay in the process instead of being
                // copied from the OS on every request, and the whole stays bounded. At
                // 32 MiB each, a new phone syncing 100,000 case files filled every
                // connection's cache with snapshots: 365 MiB of server, over issue 14's
                // 300 MB.
                .pragma("cache_size", format!("-{cache_kib}"))
                .pragma("temp_store", "memory")
                .foreign_keys(true);
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(options.max_connections)
                    .after_release(|conn, _| Box::pin(outside_transaction(conn)))
                    .connect_with(connect)
                    .await?,
            )
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let connect = PgConnectOptions::from_str(url)?;
            pg_readers = Some(leased::Readers::new(
                connect.clone(),
                options.max_connections as usize,
            ));
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(options.max_connections)
                    // Hands out connections it has pinged (sqlx's default): after
                    // PostgreSQL restarts, writes find live ones. The reads every
                    // request makes go through `pg_readers` instead.
                    .connect_with(connect)
                    .await?,
            )
        } else {
            let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
            return Err(StoreError::UnsupportedUrl(
                scheme.chars().take(20).collect(),
            ));
        };
        let mut store = SqlStore {
            pool,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(options.cache_docs.max(1)).unwrap_or(NonZeroUsize::MIN),
            )),
            options,
            writer: None,
            readers: sqlite_file
                .clone()
                .map(|file| direct::Readers::new(file, readers_kept as usize, cache_kib)),
            checks: tokio::sync::Semaphore::new(check_threads()),
            pg_readers,
        };
        store.migrate().await?;
        store.writer = Some(match (&store.pool, sqlite_file) {
            (Pool::Sqlite(_), Some(file)) => write::GroupWriter::sqlite(&file, cache_kib)?,
            (Pool::Postgres(p), _) => write::GroupWriter::postgres(p.clone()),
            (Pool::Sqlite(_), None) => return Err(StoreError::InMemory),
        });
        store.backfill_catalogs().await?;
        Ok(store)
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// PostgreSQL's connections for short reads; a SQLite store has none.
    pub(crate) fn pg_readers(&self) -> Result<&leased::Readers> {
        self.pg_readers
            .as_ref()
            .ok_or_else(|| StoreError::Worker("PostgreSQL's readers are not set up".into()))
    }

    /// SQLite's reader connections; a PostgreSQL store has none.
    pub(crate) fn readers(&self) -> Result<&direct::Readers> {
        self.readers
            .as_ref()
            .ok_or_else(|| StoreError::Worker("SQLite's readers are not set up".into()))
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    async fn migrate(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(p) => {
                Migrator::with_migrations(migrations::sqlite())
                    .run(p)
                    .await?
            }
            Pool::Postgres(p) => {
                Migrator::with_migrations(migrations::postgres())
                    .run(p)
                    .await?
            }
        }
        Ok(())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        if let Some(readers) = &self.pg_readers {
            readers.close().await;
        }
        with_pool!(self, p => p.close().await)
    }

    /// The most recent quarantined batches, newest first, for administrators.
    pub async fn quarantined(&self, limit: i64) -> Result<Vec<Quarantined>> {
        let rows = with_pool!(self, p => sqlx::query(
            concat!("SELECT ", quarantine::columns!(), " FROM quarantine ORDER BY id DESC LIMIT $1"))
            .bind(limit)
            .fetch_all(p)
            .await?
            .iter()
            .map(quarantine::read_row)
            .collect::<Result<Vec<_>>>()?);
        Ok(rows.into_iter().map(|r| r.item).collect())
    }

    /// Runs a query selecting one id column, with byte-string parameters. `sql` holds
    /// only fixed text and placeholders: every value is bound.
    async fn ids(&self, sql: &str, params: &[Vec<u8>]) -> Result<Vec<DocId>> {
        let rows = with_pool!(self, p => {
            let mut q = sqlx::query_scalar::<_, Vec<u8>>(sqlx::AssertSqlSafe(sql.to_owned()));
            for param in params {
                q = q.bind(param.clone());
            }
            q.fetch_all(p).await?
        });
        rows.iter().map(|r| id_of(r)).collect()
    }

    /// A volunteer's documents: the district's catalog and the open case files of
    /// `residents` in it. The residents are looked up by primary key alone and the
    /// district and closure checked here: with the district in the same condition,
    /// SQLite's planner took the documents' place index and read every case file of
    /// the district, snapshots and all, on every sync (the load bench with 100,000
    /// case files of another station fell from 3,600 syncs a second to 42).
    async fn residents_in_scope(
        &self,
        district: Vec<u8>,
        residents: &BTreeSet<sync_core::ids::ResidentId>,
    ) -> Result<BTreeSet<DocId>> {
        let sql = format!(
            "SELECT id, district, closed FROM documents WHERE district = $1 AND station IS NULL
             UNION ALL
             SELECT id, district, closed FROM documents WHERE station IS NOT NULL AND id IN ({})",
            numbered(2, residents.len())
        );
        let args: Vec<Vec<u8>> = std::iter::once(district.clone())
            .chain(residents.iter().map(|r| r.0.as_bytes().to_vec()))
            .collect();
        let rows: Vec<(Vec<u8>, Vec<u8>, bool)> =
            read_rows!(self, &sql, all args, |r| (r.col(0)?, r.col(1)?, r.col(2)?))?;
        rows.iter()
            .filter(|(_, d, closed)| *d == district && !closed)
            .map(|(id, _, _)| id_of(id))
            .collect()
    }

    /// [`ServerStore::feed_since`] for a phone holding few documents (a volunteer's):
    /// only their entries, through the feed's index on `(doc, seq)`, rather than every
    /// entry since the cursor. With hundreds of phones syncing, a phone's cursor is a
    /// few hundred entries behind, nearly all of other phones' documents.
    async fn feed_of_docs(
        &self,
        cursor: i64,
        docs: &BTreeSet<DocId>,
        limit: usize,
    ) -> Result<FeedPage> {
        use direct::Columns as _;
        if docs.is_empty() {
            return Ok(FeedPage {
                entries: Vec::new(),
                complete_to: u64::MAX,
            });
        }
        let ids: Vec<Vec<u8>> = docs.iter().map(|d| d.0.as_bytes().to_vec()).collect();
        let limit_arg = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = match self.pool() {
            Pool::Postgres(_) => pg_rows!(
                self,
                "SELECT seq, doc, hashes FROM feed WHERE doc = ANY($1) AND seq > $2
                 ORDER BY seq LIMIT $3",
                [ids, cursor, limit_arg],
                |r| (r.col(0)?, r.col(1)?, r.col(2)?)
            )?,
            Pool::Sqlite(_) => {
                let n = ids.len();
                let sql = format!(
                    "SELECT seq, doc, hashes FROM feed WHERE doc IN ({}) AND seq > ${} \
                     ORDER BY seq LIMIT ${}",
                    numbered(1, n),
                    n + 1,
                    n + 2
                );
                let mut args: Vec<&dyn rusqlite::types::ToSql> = ids
                    .iter()
                    .map(|a| a as &dyn rusqlite::types::ToSql)
                    .collect();
                args.push(&cursor);
                args.push(&limit_arg);
                self.readers()?
                    .rows(&sql, &args, |r| Ok((r.col(0)?, r.col(1)?, r.col(2)?)))?
            }
        };
        let full = rows.len() >= limit;
        let mut page = FeedPage {
            entries: rows.iter().map(feed_entry).collect::<Result<_>>()?,
            complete_to: u64::MAX,
        };
        if full && let Some(last) = page.entries.last() {
            page.complete_to = last.seq;
        }
        Ok(page)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        match self.pool() {
            // A connection PostgreSQL cut while it sat idle is not an answer: the read
            // is tried on a new one.
            Pool::Postgres(_) => {
                pg_rows!(self, "SELECT 1", [], |r| r.col::<i32>(0)?)?;
            }
            Pool::Sqlite(p) => {
                sqlx::query("SELECT 1").execute(p).await?;
            }
        }
        Ok(())
    }

    /// Documents in the cache.
    pub fn cached_docs(&self) -> usize {
        self.cache_lock().len()
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, LruCache<DocId, Automerge>> {
        // The cache holds only copies of stored documents; after a panic elsewhere it is
        // still consistent enough to use (every load re-checks heads).
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn stored_heads(&self, doc: DocId) -> Result<Option<Vec<u8>>> {
        let id = doc.0.as_bytes().to_vec();
        let heads = read_rows!(
            self,
            "SELECT heads FROM documents WHERE id = $1",
            [id],
            |r| r.col::<Vec<u8>>(0)?
        )?;
        Ok(heads.into_iter().next())
    }

    async fn load_from_db(&self, doc: DocId) -> Result<Option<Automerge>> {
        let id = doc.0.as_bytes().to_vec();
        let (snapshot, chunks) = with_pool!(self, p => {
            let Some(row) = sqlx::query("SELECT snapshot FROM documents WHERE id = $1")
                .bind(id.clone())
                .fetch_optional(p)
                .await?
            else {
                return Ok(None);
            };
            let snapshot: Vec<u8> = row.try_get("snapshot")?;
            let chunks: Vec<Vec<u8>> = sqlx::query("SELECT bytes FROM changes WHERE doc = $1 ORDER BY seq")
                .bind(id)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(|r| r.try_get::<Vec<u8>, _>("bytes"))
                .collect::<Result<_, _>>()?;
            (snapshot, chunks)
        });
        let mut loaded = Automerge::load(&snapshot)
            .map_err(|e| StoreError::Corrupt(format!("document {doc}: {e}")))?;
        for chunk in chunks {
            loaded
                .load_incremental(&chunk)
                .map_err(|e| StoreError::Corrupt(format!("document {doc}: {e}")))?;
        }
        Ok(Some(loaded))
    }
}

/// The channel on which a PostgreSQL store announces every append it commits, in the
/// append's transaction (`http::events` relays them to live pages and phones).
pub(crate) const ANNOUNCE_CHANNEL: &str = "linli_changed";

/// An announcement's text after the feed number: the document and where it sits.
pub(crate) fn announced(doc: DocId, place: &sync_core::protocol::store::DocPlace) -> String {
    let station = place
        .station
        .map_or_else(|| "-".to_owned(), |s| s.0.simple().to_string());
    format!(
        "{} {} {} {}",
        doc.0.simple(),
        place.district.0.simple(),
        station,
        u8::from(place.closed)
    )
}

/// Text as the store's rows hold it. PostgreSQL's `text` cannot hold U+0000, so each
/// NUL becomes U+FFFD, the replacement character, on both backends alike: a visit note
/// pasted with a stray NUL is stored, not refused by the database on every retry. The
/// document keeps exactly what was written; only the rows derived from it for pages
/// and reports differ.
pub(crate) fn row_text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

pub(crate) fn heads_bytes(heads: &[ChangeHash]) -> Vec<u8> {
    let mut sorted = heads.to_vec();
    sorted.sort();
    sorted.iter().flat_map(|h| h.0).collect()
}

pub(crate) fn hashes_from(bytes: &[u8]) -> Result<Vec<ChangeHash>> {
    if !bytes.len().is_multiple_of(32) {
        return Err(StoreError::Corrupt(
            "a hash list is not a multiple of 32 bytes".into(),
        ));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            ChangeHash(h)
        })
        .collect())
}

/// `$from, $from+1, …`: `count` numbered parameters, for an `IN (…)` list.
fn numbered(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A feed row as both feed reads select it (`seq, doc, hashes`).
fn feed_entry((seq, doc, hashes): &(i64, Vec<u8>, Vec<u8>)) -> Result<FeedEntry> {
    Ok(FeedEntry {
        seq: u64::try_from(*seq).unwrap_or(0),
        doc: id_of(doc)?,
        hashes: hashes_from(hashes)?,
    })
}

pub(crate) fn id_of(bytes: &[u8]) -> Result<DocId> {
    Uuid::from_slice(bytes)
        .map(DocId)
        .map_err(|_| StoreError::Corrupt("a stored id is not 16 bytes".into()))
}

fn opt_bytes(id: Option<Uuid>) -> Option<Vec<u8>> {
    id.map(|u| u.as_bytes().to_vec())
}

/// Runs a projection write plan (`Vec<projections::Stmt>`) in `$conn`, a SQLite
/// connection when `$sqlite`.
macro_rules! run_plan {
    ($conn:ident, $plan:expr, $sqlite:expr) => {
        for stmt in $plan {
            let mut q = sqlx::query(stmt.text($sqlite));
            for arg in stmt.args {
                use $crate::store::projections::Arg;
                q = match arg {
                    Arg::Bytes(v) => q.bind(v),
                    Arg::OptBytes(v) => q.bind(v),
                    Arg::Int(v) => q.bind(v),
                    Arg::OptInt(v) => q.bind(v),
                    Arg::Text(v) => q.bind(v),
                    Arg::OptText(v) => q.bind(v),
                    Arg::Bool(v) => q.bind(v),
                };
            }
            q.execute(&mut *$conn).await?;
        }
    };
}

pub mod access;
pub mod catalog_rows;
pub mod erasure;
pub(crate) mod leased;
pub mod projections;
pub mod quarantine;
mod write;

impl ServerStore for SqlStore {
    type Error = StoreError;

    async fn load(&self, doc: DocId) -> Result<Option<Automerge>> {
        let Some(stored) = self.stored_heads(doc).await? else {
            return Ok(None);
        };
        if let Some(cached) = self.cache_lock().get(&doc)
            && heads_bytes(&cached.get_heads()) == stored
        {
            return Ok(Some(cached.clone()));
        }
        let loaded = self.load_from_db(doc).await?;
        if let Some(d) = &loaded {
            self.cache_lock().put(doc, d.clone());
        }
        Ok(loaded)
    }

    async fn is_erased(&self, doc: DocId) -> Result<bool> {
        self.erased(doc).await
    }

    async fn append(&self, append: Append<'_>) -> Result<AppendOutcome> {
        // The projection and the bytes are worked out before any lock is taken.
        let job = write::Job::new(&append)?;
        let (outcome, job) = match &self.writer {
            Some(writer) => writer.append(job).await?,
            None => return Err(StoreError::GroupCommit("the writer is not open".into())),
        };
        if matches!(outcome, AppendOutcome::Stored(_)) {
            self.cache_lock().put(append.doc, job.into_doc());
        }
        Ok(outcome)
    }

    async fn quarantine(&self, item: Quarantined) -> Result<Option<u64>> {
        self.keep_quarantined(item).await
    }

    async fn decisions(&self, device: DeviceId, numbers: &[u64]) -> Result<Vec<Decision>> {
        self.decisions_for(device, numbers).await
    }

    async fn refusals(&self, doc: DocId, hashes: &[ChangeHash]) -> Result<Refusals> {
        self.refusals_here(doc, hashes).await
    }

    async fn docs_in_scope(&self, scope: &Scope) -> Result<BTreeSet<DocId>> {
        // One query per sync: the district's catalog documents, plus the open case
        // files of the scope's stations (on the place index) or residents (on the
        // primary key, see `residents_in_scope`).
        const CATALOG: &str = "SELECT id FROM documents WHERE district = $1 AND station IS NULL";
        let district = scope.district().0.as_bytes().to_vec();
        let stations: Vec<Vec<u8>> = match scope {
            Scope::District(_) => {
                let sql = "SELECT id FROM documents WHERE district = $1 AND closed = FALSE";
                return Ok(self.ids(sql, &[district]).await?.into_iter().collect());
            }
            Scope::Residents { residents, .. } if !residents.is_empty() => {
                return self.residents_in_scope(district, residents).await;
            }
            Scope::Residents { .. } => Vec::new(),
            Scope::Stations { stations, .. } => {
                stations.iter().map(|s| s.0.as_bytes().to_vec()).collect()
            }
        };
        if stations.is_empty() {
            return Ok(self.ids(CATALOG, &[district]).await?.into_iter().collect());
        }
        let sql = format!(
            "{CATALOG} UNION ALL SELECT id FROM documents WHERE district = $1 AND station IS NOT NULL AND closed = FALSE AND station IN ({})",
            numbered(2, stations.len())
        );
        let mut params = Vec::with_capacity(stations.len() + 1);
        params.push(district);
        params.extend(stations);
        Ok(self.ids(&sql, &params).await?.into_iter().collect())
    }

    async fn feed_since(
        &self,
        cursor: u64,
        docs: &BTreeSet<DocId>,
        limit: usize,
    ) -> Result<FeedPage> {
        let cursor = i64::try_from(cursor).unwrap_or(i64::MAX);
        if docs.len() <= self.options.feed_by_doc_max {
            return self.feed_of_docs(cursor, docs, limit).await;
        }
        let window = self.options.feed_window;
        // At most `feed_window` rows (5,000 by default), most often none.
        let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = read_rows!(
            self,
            "SELECT seq, doc, hashes FROM feed WHERE seq > $1 ORDER BY seq LIMIT $2",
            [cursor, window],
            |r| (r.col(0)?, r.col(1)?, r.col(2)?)
        )?;
        let scanned_all = (rows.len() as i64) < window;
        let mut page = FeedPage {
            entries: Vec::new(),
            complete_to: u64::MAX,
        };
        for row in &rows {
            if !docs.contains(&id_of(&row.1)?) {
                continue;
            }
            let entry = feed_entry(row)?;
            let seq = entry.seq;
            page.entries.push(entry);
            if page.entries.len() >= limit {
                page.complete_to = seq;
                return Ok(page);
            }
        }
        if !scanned_all && let Some((last, _, _)) = rows.last() {
            page.complete_to = u64::try_from(*last).unwrap_or(0);
        }
        Ok(page)
    }

    async fn feed_contains(&self, seq: u64) -> Result<bool> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(false);
        };
        let found = read_rows!(self, "SELECT seq FROM feed WHERE seq = $1", [seq], |r| {
            r.col::<i64>(0)?
        })?;
        Ok(!found.is_empty())
    }

    async fn doc_feed_head(&self, doc: DocId) -> Result<u64> {
        let head = read_rows!(
            self,
            "SELECT MAX(seq) FROM feed WHERE doc = $1",
            [doc.0.as_bytes().to_vec()],
            |r| r.col::<Option<i64>>(0)?
        )?;
        Ok(head
            .into_iter()
            .flatten()
            .next()
            .map_or(0, |h| u64::try_from(h).unwrap_or(0)))
    }

    async fn feed_head(&self) -> Result<u64> {
        let head = read_rows!(self, "SELECT COALESCE(MAX(seq), 0) FROM feed", [], |r| {
            r.col::<i64>(0)?
        })?;
        Ok(head.first().map_or(0, |&h| u64::try_from(h).unwrap_or(0)))
    }

    async fn feed_head_holding(&self, cursor: u64) -> Result<(u64, bool)> {
        // A number past what SQL holds names no entry (and is past the head).
        let number = i64::try_from(cursor).unwrap_or(-1);
        let read = read_rows!(
            self,
            "SELECT COALESCE(MAX(seq), 0), EXISTS (SELECT 1 FROM feed WHERE seq = $1) FROM feed",
            [number],
            |r| (r.col::<i64>(0)?, r.col::<bool>(1)?)
        )?;
        let (head, found) = read.first().copied().unwrap_or((0, false));
        let head = u64::try_from(head).unwrap_or(0);
        Ok((head, found || cursor == 0 || cursor >= head))
    }

    async fn device_docs(&self, device: DeviceId) -> Result<BTreeSet<DocId>> {
        // Every sync reads it, in this thread on SQLite: a volunteer's phone holds a
        // few case files, a station's staff phone its station's.
        let docs = read_rows!(
            self,
            "SELECT doc FROM device_docs WHERE device = $1",
            [device.0.as_bytes().to_vec()],
            |r| r.col::<Vec<u8>>(0)?
        )?;
        docs.iter().map(|d| id_of(d)).collect()
    }

    /// On tokio's blocking pool: a station's first upload is checked on every core
    /// while this request's task goes on storing what was checked already.
    async fn run_check<T, F>(&self, work: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self
            .checks
            .acquire()
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))
    }

    async fn set_device_docs(&self, device: DeviceId, docs: &BTreeSet<DocId>) -> Result<()> {
        let current = self.device_docs(device).await?;
        if &current == docs {
            // The steady state writes nothing.
            return Ok(());
        }
        let dev = device.0.as_bytes().to_vec();
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            for gone in current.difference(docs) {
                sqlx::query("DELETE FROM device_docs WHERE device = $1 AND doc = $2")
                    .bind(dev.clone())
                    .bind(gone.0.as_bytes().to_vec())
                    .execute(&mut *tx)
                    .await?;
            }
            for new in docs.difference(&current) {
                sqlx::query("INSERT INTO device_docs (device, doc) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(dev.clone())
                    .bind(new.0.as_bytes().to_vec())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
