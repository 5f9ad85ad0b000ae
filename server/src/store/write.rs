//! Appends: the changes, their feed entry and the projections, in one transaction.
//!
//! On PostgreSQL every append is its own transaction; writers of one document queue on
//! an advisory lock, and sequence numbers commit in order under a second one.
//!
//! SQLite has one writer at a time and, with `synchronous=FULL`, pays an fsync for every
//! commit: at a few hundred syncs a second the fsyncs, not the work, would fill the write
//! lock. So SQLite's appends are committed in groups: an append joins the queue of a
//! writer thread with a connection of its own ([`SqliteWriter`]), which runs everything
//! queued in one transaction, each append under its own savepoint (so a failing one is
//! rolled back alone), commits once, and only then answers every append of the group. A
//! receipt is never sent before the commit that makes it true.

use super::projections::{Arg, Pending};
use super::{COMPACT_MIN_BYTES, Result, StoreError, direct, heads_bytes, opt_bytes};
use rusqlite::types::{ToSql, ToSqlOutput};
use sqlx::{PgConnection, PgPool, Row};
use std::path::Path;
use std::sync::{Mutex, PoisonError, mpsc};
use sync_core::automerge::Automerge;
use sync_core::ids::Timestamp;
use sync_core::protocol::store::{Append, AppendOutcome};
use tokio::sync::oneshot;

/// Appends committed together at most: bounds how long one group holds the write lock.
const MAX_GROUP: usize = 64;

/// One append, owned and ready to write: everything but the SQL is worked out before a
/// lock is taken.
pub(super) struct Job {
    id: Vec<u8>,
    expected: Vec<u8>,
    hashes: Vec<u8>,
    device: Option<Vec<u8>>,
    user: Option<Vec<u8>>,
    received_at: Timestamp,
    chunk: Vec<u8>,
    new_heads: Vec<u8>,
    district: Vec<u8>,
    station: Option<Vec<u8>>,
    closed: bool,
    pending: Pending,
}

impl Job {
    pub(super) fn new(a: &Append<'_>) -> Result<Job> {
        Ok(Job {
            id: a.doc.0.as_bytes().to_vec(),
            expected: heads_bytes(a.expected_heads),
            hashes: a.hashes.iter().flat_map(|h| h.0).collect(),
            device: opt_bytes(a.device.map(|d| d.0)),
            user: opt_bytes(a.user.map(|u| u.0)),
            received_at: a.received_at,
            chunk: a.changes.concat(),
            new_heads: heads_bytes(&a.after.get_heads()),
            district: a.place.district.0.as_bytes().to_vec(),
            station: opt_bytes(a.place.station.map(|s| s.0)),
            closed: a.place.closed,
            pending: Pending::new(a)?,
        })
    }

    /// The document after the append, for the cache.
    pub(super) fn into_doc(self) -> Automerge {
        self.pending.into_doc()
    }
}

// ---- the statements of an append, the same text for both backends ------------------

const SELECT_DOCUMENT: &str = "SELECT heads, CAST(length(snapshot) AS BIGINT) AS snapshot_len, chunk_bytes FROM documents WHERE id = $1";
const SELECT_PROJECTED_HEADS: &str = "SELECT heads FROM resident_rows WHERE id = $1";
const DELETE_CHANGES: &str = "DELETE FROM changes WHERE doc = $1";
const STORE_SNAPSHOT: &str =
    "INSERT INTO documents (id, district, station, snapshot, heads, chunk_bytes, updated_at, closed)
     VALUES ($1, $2, $3, $4, $5, 0, $6, $7)
     ON CONFLICT (id) DO UPDATE SET district = excluded.district, station = excluded.station,
       snapshot = excluded.snapshot, heads = excluded.heads, chunk_bytes = 0,
       updated_at = excluded.updated_at, closed = excluded.closed";
const UPDATE_DOCUMENT: &str =
    "UPDATE documents SET district = $2, station = $3, heads = $4, chunk_bytes = $5, updated_at = $6,
       closed = $7
     WHERE id = $1";
/// The number is the later of the next one and the receipt time in microseconds:
/// numbers rise with the clock, so after a restore from a backup (whose feed ends
/// earlier) new entries still number above every cursor a phone was given before, and
/// no phone passes over them.
const INSERT_FEED: &str = "INSERT INTO feed (seq, doc, hashes, device, user_id, received_at)
     VALUES ((SELECT CASE WHEN next > $6 THEN next ELSE $6 END
              FROM (SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM feed) AS last),
             $1, $2, $3, $4, $5) RETURNING seq";
const INSERT_CHUNK: &str = "INSERT INTO changes (doc, seq, bytes) VALUES ($1, $2, $3)";

/// The stored document an append is written on, as [`SELECT_DOCUMENT`] reads it.
struct Stored {
    heads: Vec<u8>,
    snapshot_len: i64,
    chunk_bytes: i64,
}

/// How an append goes on once the stored document is read: refused because the heads
/// moved, or written, folding the chunks into a new snapshot or adding one.
enum Course {
    HeadsMoved,
    Write { grown: i64, compact: bool },
}

impl Job {
    /// Whether the changes still apply to `stored`, and how they are stored.
    fn course(&self, stored: Option<Stored>) -> Course {
        let (exists, chunk_bytes, snapshot_len) = match stored {
            Some(s) if s.heads != self.expected => return Course::HeadsMoved,
            Some(s) => (true, s.chunk_bytes, s.snapshot_len),
            None if !self.expected.is_empty() => return Course::HeadsMoved,
            None => (false, 0, 0),
        };
        let grown = chunk_bytes + self.chunk.len() as i64;
        Course::Write {
            grown,
            compact: !exists || grown > COMPACT_MIN_BYTES.max(snapshot_len / 2),
        }
    }

    /// The projection's statements. A case file's rows that show the heads the changes
    /// were checked against (`projected`) need only what the changes touched; any
    /// others (wiped, never written) are rewritten whole. A catalog's rows are always
    /// rewritten whole.
    fn plan(&mut self, projected: Option<Vec<u8>>) -> Result<Vec<super::projections::Stmt>> {
        let current =
            !self.pending.is_case_file() || projected.as_deref() == Some(self.expected.as_slice());
        self.pending.take_plan(current)
    }
}

// ---- PostgreSQL ----------------------------------------------------------------------

/// The writes of an append, in an open transaction holding the document's lock.
/// Commits nothing: the caller does.
async fn write_postgres(conn: &mut PgConnection, job: &mut Job) -> Result<AppendOutcome> {
    let stored = sqlx::query(SELECT_DOCUMENT)
        .bind(job.id.clone())
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| -> Result<Stored> {
            Ok(Stored {
                heads: r.try_get("heads")?,
                snapshot_len: r.try_get("snapshot_len")?,
                chunk_bytes: r.try_get("chunk_bytes")?,
            })
        })
        .transpose()?;
    let Course::Write { grown, compact } = job.course(stored) else {
        return Ok(AppendOutcome::HeadsMoved);
    };
    let projected = if job.pending.is_case_file() {
        sqlx::query_scalar(SELECT_PROJECTED_HEADS)
            .bind(job.id.clone())
            .fetch_optional(&mut *conn)
            .await?
    } else {
        None
    };
    let plan = job.plan(projected)?;
    run_plan!(conn, plan, false);
    if compact {
        sqlx::query(DELETE_CHANGES)
            .bind(job.id.clone())
            .execute(&mut *conn)
            .await?;
        sqlx::query(STORE_SNAPSHOT)
            .bind(job.id.clone())
            .bind(job.district.clone())
            .bind(job.station.clone())
            .bind(job.pending.doc().save())
            .bind(job.new_heads.clone())
            .bind(job.received_at)
            .bind(job.closed)
            .execute(&mut *conn)
            .await?;
    } else {
        sqlx::query(UPDATE_DOCUMENT)
            .bind(job.id.clone())
            .bind(job.district.clone())
            .bind(job.station.clone())
            .bind(job.new_heads.clone())
            .bind(grown)
            .bind(job.received_at)
            .bind(job.closed)
            .execute(&mut *conn)
            .await?;
    }
    // The feed entry comes last but for the chunk that carries its number, so that the
    // feed lock is held for as little of the append as can be. Sequence numbers must
    // commit in order, or a reader could pass a gap that fills later: the lock is taken
    // only once the heads are known to match.
    sqlx::query("SELECT pg_advisory_xact_lock(7235)")
        .execute(&mut *conn)
        .await?;
    let seq: i64 = sqlx::query(INSERT_FEED)
        .bind(job.id.clone())
        .bind(std::mem::take(&mut job.hashes))
        .bind(job.device.take())
        .bind(job.user.take())
        .bind(job.received_at)
        .bind(job.received_at.saturating_mul(1000))
        .fetch_one(&mut *conn)
        .await?
        .try_get("seq")?;
    if !compact {
        sqlx::query(INSERT_CHUNK)
            .bind(job.id.clone())
            .bind(seq)
            .bind(std::mem::take(&mut job.chunk))
            .execute(&mut *conn)
            .await?;
    }
    Ok(AppendOutcome::Stored(u64::try_from(seq).unwrap_or(0)))
}

/// Two first writers of one new document: the loser sees the heads moved and retries.
fn unique_violation_is_moved(r: Result<AppendOutcome>) -> Result<AppendOutcome> {
    match r {
        Err(StoreError::Database(e))
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            Ok(AppendOutcome::HeadsMoved)
        }
        Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Ok(AppendOutcome::HeadsMoved)
        }
        other => other,
    }
}

/// One append in its own transaction.
pub(super) async fn append_postgres(p: &PgPool, mut job: Job) -> Result<(AppendOutcome, Job)> {
    let mut tx = p.begin().await?;
    // Serialise writers of this document across processes.
    super::lock_document(&mut tx, &job.id).await?;
    let outcome = unique_violation_is_moved(write_postgres(&mut tx, &mut job).await)?;
    if matches!(outcome, AppendOutcome::Stored(_)) {
        unique_violation_is_moved(tx.commit().await.map(|()| outcome).map_err(Into::into))
            .map(|o| (o, job))
    } else {
        Ok((outcome, job))
    }
}

// ---- SQLite: group commit on a writer thread ------------------------------------------

type Reply = oneshot::Sender<Result<(AppendOutcome, Job)>>;

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("doc", &hex::encode(&self.id))
            .finish()
    }
}

/// SQLite's writer: a connection of its own, on a thread of its own, that takes the
/// appends queued for it and commits them in groups.
///
/// Through sqlx every statement is a round trip to its connection's worker thread (two
/// context switches and a wake-up); an append runs a dozen, and at a few hundred syncs a
/// second the switching took a third of the server's CPU. Here the whole group runs on
/// the thread that holds the connection, with rusqlite's prepared-statement cache.
pub(super) struct SqliteWriter {
    jobs: Mutex<Option<mpsc::Sender<(Job, Reply)>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for SqliteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWriter").finish_non_exhaustive()
    }
}

impl SqliteWriter {
    /// Opens the writer's connection to the database file at `path` (already created
    /// and migrated through the pool, in WAL mode) and starts its thread.
    pub(super) fn open(path: &Path, cache_kib: u32) -> Result<SqliteWriter> {
        let conn = direct::open(path, false, cache_kib)?;
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(conn, queue))
            .map_err(|e| StoreError::Worker(format!("could not start the writer thread: {e}")))?;
        Ok(SqliteWriter {
            jobs: Mutex::new(Some(jobs)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `job` and answers once the group it joined has committed.
    pub(super) async fn append(&self, job: Job) -> Result<(AppendOutcome, Job)> {
        let (reply, answer) = oneshot::channel();
        let queued = match &*self.jobs.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(jobs) => jobs.send((job, reply)).is_ok(),
            None => false,
        };
        if !queued {
            return Err(StoreError::GroupCommit("the store is closed".into()));
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::GroupCommit(
                "the write was interrupted before it committed".into(),
            ))
        })
    }

    /// Lets the queued appends finish, then stops the thread and closes its connection.
    pub(super) async fn close(&self) {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// The writer thread: waits for an append, takes every other one queued meanwhile (up
/// to [`MAX_GROUP`]), writes them in one transaction, commits once and only then
/// answers them. Ends when the store is dropped or closed.
fn serve(conn: rusqlite::Connection, queue: mpsc::Receiver<(Job, Reply)>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        group.extend(queue.try_iter().take(MAX_GROUP - 1));
        let mut done: Vec<(Result<AppendOutcome>, Job, Reply)> = Vec::with_capacity(group.len());
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_group(&conn, group, &mut done)
        }));
        let failed = match written {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            // The appends not yet in `done` were dropped with their replies, and their
            // callers hear that the write was interrupted.
            Err(_) => Some("the writer panicked".to_owned()),
        };
        if let Some(e) = &failed {
            tracing::warn!(error = %e, appends = done.len(), "a group commit failed");
        }
        // After a full disk or an I/O error SQLite may have rolled the transaction back
        // itself, or left it open (a failed COMMIT): either way the next group starts
        // outside one.
        if !conn.is_autocommit()
            && let Err(e) = conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(error = %e, "could not roll a failed group back");
        }
        for (outcome, job, reply) in done {
            let answer = match (&failed, outcome) {
                // Nothing of a failed group is stored, whatever each append saw.
                (Some(e), Ok(AppendOutcome::Stored(_))) => Err(StoreError::GroupCommit(e.clone())),
                (_, outcome) => outcome.map(|o| (o, job)),
            };
            // The caller may have gone; its client retries and finds the changes stored.
            let _ = reply.send(answer);
        }
    }
}

/// Writes `group`, moving every job into `done` with its outcome. An error here means
/// the transaction as a whole did not commit.
fn write_group(
    conn: &rusqlite::Connection,
    group: Vec<(Job, Reply)>,
    done: &mut Vec<(Result<AppendOutcome>, Job, Reply)>,
) -> Result<()> {
    let mut jobs = group.into_iter();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // A failure before the transaction opens fails every job.
        done.extend(jobs.map(|(j, r)| (Err(StoreError::GroupCommit(e.to_string())), j, r)));
        return Err(e.into());
    }
    while let Some((mut job, reply)) = jobs.next() {
        if let Err(e) = execute(conn, "SAVEPOINT job", &[]) {
            done.push((Err(e.into()), job, reply));
            done.extend(
                jobs.map(|(j, r)| (Err(StoreError::GroupCommit("not attempted".into())), j, r)),
            );
            return Err(StoreError::GroupCommit("could not open a savepoint".into()));
        }
        let outcome = unique_violation_is_moved(write_sqlite(conn, &mut job));
        let close = if outcome.is_ok() {
            execute(conn, "RELEASE job", &[])
        } else {
            // Undo this job alone. If SQLite already rolled the whole transaction back
            // (a full disk, an I/O error), there is no savepoint left and the group fails.
            execute(conn, "ROLLBACK TO job", &[]).and_then(|_| execute(conn, "RELEASE job", &[]))
        };
        done.push((outcome, job, reply));
        if let Err(e) = close {
            done.extend(
                jobs.map(|(j, r)| (Err(StoreError::GroupCommit("not attempted".into())), j, r)),
            );
            return Err(e.into());
        }
    }
    execute(conn, "COMMIT", &[])?;
    Ok(())
}

/// The writes of an append in the writer's open transaction, as [`write_postgres`]
/// does them but for the locks: SQLite has one writer.
fn write_sqlite(conn: &rusqlite::Connection, job: &mut Job) -> Result<AppendOutcome> {
    let stored = query_row(conn, SELECT_DOCUMENT, &[&job.id], |r| {
        Ok(Stored {
            heads: r.get(0)?,
            snapshot_len: r.get(1)?,
            chunk_bytes: r.get(2)?,
        })
    })?;
    let Course::Write { grown, compact } = job.course(stored) else {
        return Ok(AppendOutcome::HeadsMoved);
    };
    let projected = if job.pending.is_case_file() {
        query_row(conn, SELECT_PROJECTED_HEADS, &[&job.id], |r| r.get(0))?
    } else {
        None
    };
    for stmt in job.plan(projected)? {
        let args: Vec<&dyn ToSql> = stmt.args.iter().map(|a| a as &dyn ToSql).collect();
        execute(conn, stmt.text(true), &args)?;
    }
    if compact {
        execute(conn, DELETE_CHANGES, &[&job.id])?;
        let snapshot = job.pending.doc().save();
        execute(
            conn,
            STORE_SNAPSHOT,
            &[
                &job.id,
                &job.district,
                &job.station,
                &snapshot,
                &job.new_heads,
                &job.received_at,
                &job.closed,
            ],
        )?;
    } else {
        execute(
            conn,
            UPDATE_DOCUMENT,
            &[
                &job.id,
                &job.district,
                &job.station,
                &job.new_heads,
                &grown,
                &job.received_at,
                &job.closed,
            ],
        )?;
    }
    let seq: i64 = query_row(
        conn,
        INSERT_FEED,
        &[
            &job.id,
            &job.hashes,
            &job.device,
            &job.user,
            &job.received_at,
            &job.received_at.saturating_mul(1000),
        ],
        |r| r.get(0),
    )?
    .ok_or_else(|| StoreError::Corrupt("the feed insert returned no number".into()))?;
    if !compact {
        execute(conn, INSERT_CHUNK, &[&job.id, &seq, &job.chunk])?;
    }
    Ok(AppendOutcome::Stored(u64::try_from(seq).unwrap_or(0)))
}

fn execute(conn: &rusqlite::Connection, sql: &str, args: &[&dyn ToSql]) -> rusqlite::Result<usize> {
    direct::bound(conn, sql, args)?.raw_execute()
}

/// The first row's value, if there is a row (the statement is stepped to its end, as
/// an `INSERT … RETURNING` wants).
fn query_row<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[&dyn ToSql],
    mut read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    Ok(direct::rows(conn, sql, args, |r| Ok(read(r)?))?
        .into_iter()
        .next())
}

impl ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Arg::Bytes(v) => v.to_sql(),
            Arg::OptBytes(v) => v.to_sql(),
            Arg::Int(v) => v.to_sql(),
            Arg::OptInt(v) => v.to_sql(),
            Arg::Text(v) => v.to_sql(),
            Arg::OptText(v) => v.to_sql(),
            Arg::Bool(v) => v.to_sql(),
        }
    }
}
