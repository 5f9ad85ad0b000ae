//! Appends: the changes, their feed entry and the projections, in one transaction.
//!
//! On PostgreSQL every append is its own transaction; writers of one document queue on
//! an advisory lock, and sequence numbers commit in order under a second one.
//!
//! SQLite has one writer at a time and, with `synchronous=FULL`, pays an fsync for every
//! commit: at a few hundred syncs a second the fsyncs, not the work, would fill the write
//! lock. So SQLite's appends are committed in groups: an append joins a queue; whichever
//! append next holds the writer runs everything queued in one transaction, each append
//! under its own savepoint (so a failing one is rolled back alone), commits once, and
//! only then answers every append of the group. A receipt is never sent before the
//! commit that makes it true.

use super::projections::Pending;
use super::{COMPACT_MIN_BYTES, Result, StoreError, heads_bytes, opt_bytes};
use sqlx::{PgConnection, PgPool, Row, SqliteConnection, SqlitePool};
use std::sync::{Mutex, PoisonError};
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

/// The writes of an append, the same for both backends once a transaction is open and
/// the backend's locks are held. Commits nothing: the caller does.
macro_rules! write_job {
    ($conn:ident, $job:ident, $sqlite:expr; $($feed_lock:tt)*) => {{
        let row = sqlx::query("SELECT heads, CAST(length(snapshot) AS BIGINT) AS snapshot_len, chunk_bytes FROM documents WHERE id = $1")
            .bind($job.id.clone())
            .fetch_optional(&mut *$conn)
            .await?;
        let (exists, chunk_bytes, snapshot_len) = match &row {
            Some(r) => {
                let heads: Vec<u8> = r.try_get("heads")?;
                if heads != $job.expected {
                    return Ok(AppendOutcome::HeadsMoved);
                }
                (true, r.try_get::<i64, _>("chunk_bytes")?, r.try_get::<i64, _>("snapshot_len")?)
            }
            None if !$job.expected.is_empty() => return Ok(AppendOutcome::HeadsMoved),
            None => (false, 0, 0),
        };
        // A case file's rows that show the heads the changes were checked against need
        // only what the changes touched; any others (wiped, never written) are
        // rewritten whole. A catalog's rows are always rewritten whole.
        let current = if $job.pending.is_case_file() {
            let projected: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT heads FROM resident_rows WHERE id = $1")
                    .bind($job.id.clone())
                    .fetch_optional(&mut *$conn)
                    .await?;
            projected.as_deref() == Some($job.expected.as_slice())
        } else {
            true
        };
        let plan = $job.pending.take_plan(current)?;
        run_plan!($conn, plan, $sqlite);
        let chunk = std::mem::take(&mut $job.chunk);
        let grown = chunk_bytes + chunk.len() as i64;
        let compact = !exists || grown > COMPACT_MIN_BYTES.max(snapshot_len / 2);
        if compact {
            // Fold everything into a fresh snapshot.
            sqlx::query("DELETE FROM changes WHERE doc = $1")
                .bind($job.id.clone())
                .execute(&mut *$conn)
                .await?;
            sqlx::query(
                "INSERT INTO documents (id, district, station, snapshot, heads, chunk_bytes, updated_at, closed)
                 VALUES ($1, $2, $3, $4, $5, 0, $6, $7)
                 ON CONFLICT (id) DO UPDATE SET district = excluded.district, station = excluded.station,
                   snapshot = excluded.snapshot, heads = excluded.heads, chunk_bytes = 0,
                   updated_at = excluded.updated_at, closed = excluded.closed",
            )
            .bind($job.id.clone())
            .bind($job.district.clone())
            .bind($job.station.clone())
            .bind($job.pending.doc().save())
            .bind($job.new_heads.clone())
            .bind($job.received_at)
            .bind($job.closed)
            .execute(&mut *$conn)
            .await?;
        } else {
            sqlx::query(
                "UPDATE documents SET district = $2, station = $3, heads = $4, chunk_bytes = $5, updated_at = $6,
                   closed = $7
                 WHERE id = $1",
            )
            .bind($job.id.clone())
            .bind($job.district.clone())
            .bind($job.station.clone())
            .bind($job.new_heads.clone())
            .bind(grown)
            .bind($job.received_at)
            .bind($job.closed)
            .execute(&mut *$conn)
            .await?;
        }
        // The feed entry comes last, but for the chunk that carries its number: on
        // PostgreSQL the feed lock is then held for as little of the append as can be.
        $($feed_lock)*
        // The number is the later of the next one and the receipt time in microseconds:
        // numbers rise with the clock, so after a restore from a backup (whose feed
        // ends earlier) new entries still number above every cursor a phone was given
        // before, and no phone passes over them.
        let seq: i64 = sqlx::query(
            "INSERT INTO feed (seq, doc, hashes, device, user_id, received_at)
             VALUES ((SELECT CASE WHEN next > $6 THEN next ELSE $6 END
                      FROM (SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM feed) AS last),
                     $1, $2, $3, $4, $5) RETURNING seq",
        )
        .bind($job.id.clone())
        .bind(std::mem::take(&mut $job.hashes))
        .bind($job.device.take())
        .bind($job.user.take())
        .bind($job.received_at)
        .bind($job.received_at.saturating_mul(1000))
        .fetch_one(&mut *$conn)
        .await?
        .try_get("seq")?;
        if !compact {
            sqlx::query("INSERT INTO changes (doc, seq, bytes) VALUES ($1, $2, $3)")
                .bind($job.id.clone())
                .bind(seq)
                .bind(chunk)
                .execute(&mut *$conn)
                .await?;
        }
        Ok(AppendOutcome::Stored(u64::try_from(seq).unwrap_or(0)))
    }};
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
        other => other,
    }
}

// ---- PostgreSQL ----------------------------------------------------------------------

async fn write_postgres(conn: &mut PgConnection, job: &mut Job) -> Result<AppendOutcome> {
    write_job!(conn, job, false;
        // Sequence numbers must commit in order, or a reader could pass a gap that
        // fills later: the feed lock is taken only once the heads are known to match.
        sqlx::query("SELECT pg_advisory_xact_lock(7235)").execute(&mut *conn).await?;
    )
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

// ---- SQLite: group commit ------------------------------------------------------------

async fn write_sqlite(conn: &mut SqliteConnection, job: &mut Job) -> Result<AppendOutcome> {
    write_job!(conn, job, true;)
}

type Reply = oneshot::Sender<Result<(AppendOutcome, Job)>>;

/// SQLite's queue of appends and the right to write them.
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    queue: Mutex<Vec<(Job, Reply)>>,
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("doc", &hex::encode(&self.id))
            .finish()
    }
}

impl GroupCommit {
    /// Queues `job` and answers once the group it joined has committed.
    pub(super) async fn append(&self, pool: &SqlitePool, job: Job) -> Result<(AppendOutcome, Job)> {
        let (reply, answer) = oneshot::channel();
        self.queue().push((job, reply));
        {
            // Appends queue in arrival order here, and the holder writes for everyone
            // queued meanwhile; one's own job may already be in a group that ran.
            let _writer = self.writer.lock().await;
            loop {
                let group: Vec<_> = {
                    let mut queue = self.queue();
                    let n = queue.len().min(MAX_GROUP);
                    queue.drain(..n).collect()
                };
                if group.is_empty() {
                    break;
                }
                // On a task of its own, so that a caller that gives up (its client went
                // away) cannot cut a group short between commit and answers.
                let running = tokio::spawn(commit_group(pool.clone(), group));
                if running.await.is_err() {
                    // The task panicked: its replies were dropped, and their appends
                    // answer below that the group failed.
                    tracing::error!("a group commit panicked");
                }
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::GroupCommit(
                "the write was interrupted before it committed".into(),
            ))
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<(Job, Reply)>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes a group in one transaction, each job under a savepoint, commits once, then
/// answers every job.
async fn commit_group(pool: SqlitePool, group: Vec<(Job, Reply)>) {
    let mut done: Vec<(Result<AppendOutcome>, Job, Reply)> = Vec::with_capacity(group.len());
    let failed = match write_group(&pool, group, &mut done).await {
        Ok(()) => None,
        Err(e) => {
            tracing::warn!(error = %e, appends = done.len(), "a group commit failed");
            Some(e.to_string())
        }
    };
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

/// Writes `group`, moving every job into `done` with its outcome. An error here means
/// the transaction as a whole did not commit.
async fn write_group(
    pool: &SqlitePool,
    group: Vec<(Job, Reply)>,
    done: &mut Vec<(Result<AppendOutcome>, Job, Reply)>,
) -> Result<()> {
    // The transaction is run by hand on a pooled connection rather than through
    // sqlx's `Transaction`: after a full disk or an I/O error SQLite rolls the whole
    // transaction back itself, sqlx's own ROLLBACK then fails, and the connection would
    // go back to the pool believing it is still inside a transaction, refusing every
    // later BEGIN. Here a failed group closes its connection instead.
    let opened = match pool.acquire().await {
        Ok(mut conn) => match sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            Ok(_) => Ok(conn),
            Err(e) => Err(StoreError::from(e)),
        },
        Err(e) => Err(StoreError::from(e)),
    };
    // A failure before the transaction opens fails every job.
    let mut conn = match opened {
        Ok(conn) => InTransaction {
            conn,
            committed: false,
        },
        Err(e) => {
            for (job, reply) in group {
                done.push((Err(StoreError::GroupCommit(e.to_string())), job, reply));
            }
            return Err(e);
        }
    };
    let written = write_jobs(conn.get(), group, done).await;
    let committed = match written {
        Ok(()) => sqlx::query("COMMIT")
            .execute(conn.get())
            .await
            .map(|_| ())
            .map_err(StoreError::from),
        Err(e) => Err(e),
    };
    if committed.is_ok() {
        conn.committed();
    }
    committed
}

/// The group's connection while its transaction, begun by hand, is open. sqlx does not
/// count that transaction, so the pool's release check cannot see it: unless
/// [`InTransaction::committed`] was called, dropping this (a failed group, or a panic
/// unwinding) closes the connection instead of pooling it, which ends whatever SQLite
/// left open; the pool opens a fresh one.
struct InTransaction {
    conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    committed: bool,
}

impl InTransaction {
    fn get(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// Back to the pool on drop, outside any transaction.
    fn committed(mut self) {
        self.committed = true;
    }
}

impl Drop for InTransaction {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.close_on_drop();
        }
    }
}

/// Writes each job of a group under its own savepoint, in the open transaction.
async fn write_jobs(
    conn: &mut SqliteConnection,
    group: Vec<(Job, Reply)>,
    done: &mut Vec<(Result<AppendOutcome>, Job, Reply)>,
) -> Result<()> {
    let mut jobs = group.into_iter();
    while let Some((mut job, reply)) = jobs.next() {
        if let Err(e) = sqlx::query("SAVEPOINT job").execute(&mut *conn).await {
            done.push((Err(e.into()), job, reply));
            done.extend(
                jobs.map(|(j, r)| (Err(StoreError::GroupCommit("not attempted".into())), j, r)),
            );
            return Err(StoreError::GroupCommit("could not open a savepoint".into()));
        }
        let outcome = unique_violation_is_moved(write_sqlite(conn, &mut job).await);
        let close = if outcome.is_ok() {
            sqlx::query("RELEASE job").execute(&mut *conn).await
        } else {
            // Undo this job alone. If SQLite already rolled the whole transaction back
            // (a full disk, an I/O error), there is no savepoint left and the group fails.
            match sqlx::query("ROLLBACK TO job").execute(&mut *conn).await {
                Ok(_) => sqlx::query("RELEASE job").execute(&mut *conn).await,
                Err(e) => Err(e),
            }
        };
        done.push((outcome, job, reply));
        if let Err(e) = close {
            done.extend(
                jobs.map(|(j, r)| (Err(StoreError::GroupCommit("not attempted".into())), j, r)),
            );
            return Err(e.into());
        }
    }
    Ok(())
}
