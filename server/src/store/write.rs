//! Appends: the changes, their feed entry and the projections, in one transaction.
//!
//! Both backends commit appends in groups. An append joins the queue of the store's
//! [`GroupWriter`]; whatever is queued when the writer is free is written in one
//! transaction, committed once, and only then is every append of the group answered. A
//! receipt is never sent before the commit that makes it true.
//!
//! - SQLite has one writer at a time and, with `synchronous=FULL`, pays an fsync for
//!   every commit: at a few hundred syncs a second the fsyncs, not the work, would fill
//!   the write lock. Its writer is a thread with a connection of its own; each append
//!   runs under its own savepoint, so a failing one is rolled back alone.
//! - On PostgreSQL, writers of one document queue on an advisory lock, and feed numbers
//!   commit in order under a second one, the feed's, held to the commit. With a
//!   transaction per append that lock let one append commit at a time, whatever the
//!   number of server processes. A group takes its documents' locks in one statement,
//!   reads them in one, and takes the feed's lock once, for the two statements that
//!   number and store the group's entries. If the group's transaction fails, its
//!   appends are written again one at a time, so a bad one fails alone.

use super::projections::{Arg, Pending};
use super::{
    ANNOUNCE_CHANNEL, COMPACT_MIN_BYTES, Result, StoreError, direct, heads_bytes, opt_bytes,
};
use rusqlite::types::{ToSql, ToSqlOutput};
use sqlx::{PgConnection, PgPool, Row};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use sync_core::automerge::Automerge;
use sync_core::ids::Timestamp;
use sync_core::protocol::store::{Append, AppendOutcome};
use tokio::sync::{mpsc, oneshot};

/// Appends committed together at most: bounds how long one group holds the write lock.
const MAX_GROUP: usize = 64;

/// PostgreSQL's groups written at once, each on a connection of its own. A group's
/// statements are round trips to PostgreSQL, one after another: while one group waits
/// on them, others are written, and they queue only for the feed's lock at the end.
const POSTGRES_GROUPS: usize = 3;

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
    /// What the append's announcement says after its feed number.
    announced: String,
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
            announced: super::announced(a.doc, &a.place),
            pending: Pending::new(a)?,
        })
    }

    /// The document after the append, for the cache.
    pub(super) fn into_doc(self) -> Automerge {
        self.pending.into_doc()
    }
}

// ---- the statements of one append --------------------------------------------------
//
// SQLite's writer runs them for each append of a group; PostgreSQL's runs their
// many-row forms below once for a whole group. Both fold chunks into a snapshot with
// the same two.

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

/// One append in a transaction of its own: a group of one.
async fn append_postgres(pool: &PgPool, mut job: Job) -> Result<(AppendOutcome, Job)> {
    let mut plans = Vec::with_capacity(1);
    let written = write_group_postgres(pool, std::slice::from_mut(&mut job), &mut plans).await;
    let outcome = unique_violation_is_moved(written.and_then(|mut outcomes| {
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a group of one answered nothing".into()))
    }))?;
    Ok((outcome, job))
}

// ---- the group writer: a queue of appends and what commits them -------------------

type Reply = oneshot::Sender<Result<(AppendOutcome, Job)>>;
type Queued = (Job, Reply);

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("doc", &hex::encode(&self.id))
            .finish()
    }
}

/// What drains a [`GroupWriter`]'s queue.
enum Worker {
    /// SQLite's: a thread holding the writer's own connection.
    Thread(std::thread::JoinHandle<()>),
    /// PostgreSQL's: a task taking a pooled connection for each group.
    Task(tokio::task::JoinHandle<()>),
}

/// The store's writer: appends are queued, and whatever is queued when the writer is
/// free is committed together ([`MAX_GROUP`] at most), then every append of the group
/// is answered. A receipt is never sent before the commit that makes it true.
pub(super) struct GroupWriter {
    jobs: Mutex<Option<mpsc::UnboundedSender<Queued>>>,
    worker: Mutex<Option<Worker>>,
}

impl std::fmt::Debug for GroupWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupWriter").finish_non_exhaustive()
    }
}

impl GroupWriter {
    /// SQLite's writer: opens a connection of its own to the database file at `path`
    /// (already created and migrated through the pool, in WAL mode) and starts its
    /// thread.
    ///
    /// Through sqlx every statement is a round trip to its connection's worker thread
    /// (two context switches and a wake-up); an append runs a dozen, and at a few
    /// hundred syncs a second the switching took a third of the server's CPU. Here the
    /// whole group runs on the thread that holds the connection, with rusqlite's
    /// prepared-statement cache.
    pub(super) fn sqlite(path: &Path, cache_kib: u32) -> Result<GroupWriter> {
        let conn = direct::open(path, false, cache_kib)?;
        let (jobs, queue) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve_sqlite(conn, queue))
            .map_err(|e| StoreError::Worker(format!("could not start the writer thread: {e}")))?;
        Ok(GroupWriter {
            jobs: Mutex::new(Some(jobs)),
            worker: Mutex::new(Some(Worker::Thread(thread))),
        })
    }

    /// PostgreSQL's writer: a task on the current runtime that commits each group on a
    /// connection of `pool`.
    pub(super) fn postgres(pool: PgPool) -> GroupWriter {
        let (jobs, queue) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve_postgres(pool, queue));
        GroupWriter {
            jobs: Mutex::new(Some(jobs)),
            worker: Mutex::new(Some(Worker::Task(task))),
        }
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

    /// Lets the queued appends finish, then stops the worker (and closes SQLite's
    /// connection).
    pub(super) async fn close(&self) {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match worker {
            Some(Worker::Thread(thread)) => {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            Some(Worker::Task(task)) => {
                let _ = task.await;
            }
            None => {}
        }
    }
}

// ---- PostgreSQL: group commit on a writer task -----------------------------------------

/// Takes every document's lock, in one order for every writer (of this process or
/// another), so that two groups cannot wait on each other. The order is the sorted
/// subquery's; were it ever not kept, PostgreSQL would find the deadlock, one group
/// would fail and its appends would be written one at a time.
const LOCK_DOCUMENTS: &str = "SELECT pg_advisory_xact_lock(k) FROM
       (SELECT DISTINCT hashtextextended(encode(id, 'hex'), 0) AS k
        FROM unnest($1::bytea[]) AS id ORDER BY k) AS keys";
/// The feed's lock: every PostgreSQL writer takes it before numbering feed entries and
/// holds it to the commit, so feed numbers become visible in order.
const LOCK_FEED: &str = "SELECT pg_advisory_xact_lock(7235)";
/// [`SELECT_DOCUMENT`] and [`SELECT_PROJECTED_HEADS`] for every document of a group.
const SELECT_DOCUMENTS: &str =
    "SELECT j.id, d.heads, CAST(length(d.snapshot) AS BIGINT) AS snapshot_len,
       d.chunk_bytes, r.heads AS projected
     FROM unnest($1::bytea[]) AS j(id)
     LEFT JOIN documents d ON d.id = j.id
     LEFT JOIN resident_rows r ON r.id = j.id";
/// [`UPDATE_DOCUMENT`] for every document of a group that keeps its snapshot.
const UPDATE_DOCUMENTS: &str =
    "UPDATE documents AS d SET district = u.district, station = u.station,
       heads = u.heads, chunk_bytes = u.chunk_bytes, updated_at = u.updated_at, closed = u.closed
     FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bigint[], $6::bigint[],
                 $7::boolean[]) AS u(id, district, station, heads, chunk_bytes, updated_at, closed)
     WHERE d.id = u.id";
/// [`INSERT_FEED`] for every stored append of a group, numbered in the group's order
/// from the later of the next number and `$6` (the latest receipt time, in
/// microseconds).
const INSERT_FEED_ROWS: &str = "INSERT INTO feed (seq, doc, hashes, device, user_id, received_at)
     SELECT last.next + e.n - 1, e.doc, e.hashes, e.device, e.user_id, e.received_at
     FROM (SELECT GREATEST(COALESCE(MAX(seq), 0) + 1, $6) AS next FROM feed) AS last,
          unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bigint[])
            WITH ORDINALITY AS e(doc, hashes, device, user_id, received_at, n)
     RETURNING seq";
/// [`INSERT_CHUNK`] for every stored append of a group that keeps its snapshot.
const INSERT_CHUNKS: &str = "INSERT INTO changes (doc, seq, bytes)
     SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[])";

/// The writer task: waits for an append, takes every other one queued meanwhile, and
/// commits them as a group, up to [`POSTGRES_GROUPS`] groups at once. A group holds one
/// append per document (a second of the same document waits for a later group, where
/// it finds the first's heads or waits on its lock). Ends when the store is closed and
/// every group has committed.
///
/// One transaction per append held the feed's lock through every commit, so appends
/// committed one at a time (the lock, not the machine, capped PostgreSQL at about 400
/// syncs a second). A group takes the lock once, for the few statements that number
/// its feed entries, and commits once.
async fn serve_postgres(pool: PgPool, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let writers = std::sync::Arc::new(tokio::sync::Semaphore::new(POSTGRES_GROUPS));
    let mut running = tokio::task::JoinSet::new();
    let mut waiting: VecDeque<Queued> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match queue.recv().await {
                Some(queued) => waiting.push_back(queued),
                None => break,
            }
        }
        // While every writer is busy, the queue fills, and the next group is larger.
        let Ok(permit) = writers.clone().acquire_owned().await else {
            break;
        };
        while let Ok(queued) = queue.try_recv() {
            waiting.push_back(queued);
        }
        let group = take_group(&mut waiting);
        running.spawn(commit_postgres(pool.clone(), group, permit));
        // A panic ends its group's task alone: the group's callers hear that the write
        // was interrupted, and the writer goes on.
        while let Some(done) = running.try_join_next() {
            if let Err(e) = done {
                tracing::warn!(error = %e, "a group commit's task failed");
            }
        }
    }
    while let Some(done) = running.join_next().await {
        if let Err(e) = done {
            tracing::warn!(error = %e, "a group commit's task failed");
        }
    }
}

/// Up to [`MAX_GROUP`] of the waiting appends, in order, at most one per document.
fn take_group(waiting: &mut VecDeque<Queued>) -> Vec<Queued> {
    let mut group: Vec<Queued> = Vec::new();
    let mut rest = VecDeque::new();
    while let Some(queued) = waiting.pop_front() {
        if group.len() < MAX_GROUP && !group.iter().any(|(j, _)| j.id == queued.0.id) {
            group.push(queued);
        } else {
            rest.push_back(queued);
        }
    }
    *waiting = rest;
    group
}

/// Commits `group` and answers its appends. If the group's transaction fails (an
/// append the database refuses, a lost connection), each append is written again in a
/// transaction of its own, so that one bad append fails alone.
async fn commit_postgres(
    pool: PgPool,
    group: Vec<Queued>,
    _writer: tokio::sync::OwnedSemaphorePermit,
) {
    let (mut jobs, mut replies): (Vec<Job>, Vec<Reply>) = group.into_iter().unzip();
    if jobs.len() == 1
        && let (Some(job), Some(reply)) = (jobs.pop(), replies.pop())
    {
        let _ = reply.send(append_postgres(&pool, job).await);
        return;
    }
    let mut plans = Vec::with_capacity(jobs.len());
    match write_group_postgres(&pool, &mut jobs, &mut plans).await {
        Ok(outcomes) => {
            for ((job, reply), outcome) in jobs.into_iter().zip(replies).zip(outcomes) {
                // The caller may have gone; its client retries and finds the changes
                // stored.
                let _ = reply.send(Ok((outcome, job)));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, appends = jobs.len(), "a group commit failed; writing its appends one at a time");
            let mut plans = plans.into_iter();
            for (mut job, reply) in jobs.into_iter().zip(replies) {
                if let Some(plan) = plans.next().flatten() {
                    job.pending.restore_plan(plan);
                }
                let _ = reply.send(append_postgres(&pool, job).await);
            }
        }
    }
}

/// The stored document and its resident row's heads, as [`SELECT_DOCUMENTS`] reads
/// them.
type Found = (Option<Stored>, Option<Vec<u8>>);

/// Writes `jobs` in one transaction and commits it, answering each: stored with its
/// feed number, or refused because its heads moved. The projection statements each
/// job ran go into `plans` (in order; `None` for a refused one), for writing them
/// again should the transaction fail.
async fn write_group_postgres(
    pool: &PgPool,
    jobs: &mut [Job],
    plans: &mut Vec<Option<Vec<super::projections::Stmt>>>,
) -> Result<Vec<AppendOutcome>> {
    let mut tx = pool.begin().await?;
    let ids: Vec<&[u8]> = jobs.iter().map(|j| j.id.as_slice()).collect();
    sqlx::query(LOCK_DOCUMENTS)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    let mut found: HashMap<Vec<u8>, Found> = HashMap::with_capacity(jobs.len());
    for r in sqlx::query(SELECT_DOCUMENTS)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
    {
        let stored = match r.try_get::<Option<Vec<u8>>, _>("heads")? {
            Some(heads) => Some(Stored {
                heads,
                snapshot_len: r.try_get("snapshot_len")?,
                chunk_bytes: r.try_get("chunk_bytes")?,
            }),
            None => None,
        };
        found.insert(r.try_get("id")?, (stored, r.try_get("projected")?));
    }
    drop(ids);
    let mut outcomes = vec![AppendOutcome::HeadsMoved; jobs.len()];
    // The appends stored, by index, and the chunk bytes of each that keeps its
    // snapshot (`None`: folded into a new one).
    let mut stored: Vec<(usize, Option<i64>)> = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter_mut().enumerate() {
        let (doc, projected) = found.remove(&job.id).unwrap_or((None, None));
        let Course::Write { grown, compact } = job.course(doc) else {
            plans.push(None);
            continue;
        };
        plans.push(Some(job.plan(projected)?));
        if let Some(Some(plan)) = plans.last() {
            run_statements(&mut tx, plan).await?;
        }
        if compact {
            store_snapshot_postgres(&mut tx, job).await?;
        }
        stored.push((i, (!compact).then_some(grown)));
    }
    if stored.is_empty() {
        tx.commit().await?;
        return Ok(outcomes);
    }
    let all: Vec<&Job> = stored.iter().map(|&(i, _)| &jobs[i]).collect();
    // The stored appends that keep their snapshots: position in `all`, append, and
    // chunk bytes since the snapshot.
    let kept: Vec<(usize, &Job, i64)> = stored
        .iter()
        .enumerate()
        .filter_map(|(p, &(_, grown))| grown.map(|g| (p, all[p], g)))
        .collect();
    if !kept.is_empty() {
        sqlx::query(UPDATE_DOCUMENTS)
            .bind(kept.iter().map(|k| k.1.id.as_slice()).collect::<Vec<_>>())
            .bind(
                kept.iter()
                    .map(|k| k.1.district.as_slice())
                    .collect::<Vec<_>>(),
            )
            .bind(
                kept.iter()
                    .map(|k| k.1.station.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                kept.iter()
                    .map(|k| k.1.new_heads.as_slice())
                    .collect::<Vec<_>>(),
            )
            .bind(kept.iter().map(|k| k.2).collect::<Vec<_>>())
            .bind(kept.iter().map(|k| k.1.received_at).collect::<Vec<_>>())
            .bind(kept.iter().map(|k| k.1.closed).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
    }
    // The feed entries come last but for the chunks that carry their numbers, so that
    // the feed's lock is held for as little of the transaction as can be. Numbers must
    // commit in order, or a reader could pass a gap that fills later: the lock is taken
    // only once every document's heads are known to match.
    sqlx::query(LOCK_FEED).execute(&mut *tx).await?;
    let floor = all.iter().map(|j| j.received_at).max().unwrap_or(0);
    let mut seqs: Vec<i64> = sqlx::query_scalar(INSERT_FEED_ROWS)
        .bind(all.iter().map(|j| j.id.as_slice()).collect::<Vec<_>>())
        .bind(all.iter().map(|j| j.hashes.as_slice()).collect::<Vec<_>>())
        .bind(all.iter().map(|j| j.device.as_deref()).collect::<Vec<_>>())
        .bind(all.iter().map(|j| j.user.as_deref()).collect::<Vec<_>>())
        .bind(all.iter().map(|j| j.received_at).collect::<Vec<_>>())
        .bind(floor.saturating_mul(1000))
        .fetch_all(&mut *tx)
        .await?;
    if seqs.len() != all.len() {
        return Err(StoreError::Corrupt(format!(
            "the feed insert numbered {} of {} entries",
            seqs.len(),
            all.len()
        )));
    }
    // Numbered in the group's order: the smallest is the first stored append's.
    seqs.sort_unstable();
    // Delivered to every listener when the transaction commits, and only then.
    sqlx::query("SELECT pg_notify($1, announced) FROM unnest($2::text[]) AS announced")
        .bind(ANNOUNCE_CHANNEL)
        .bind(
            all.iter()
                .zip(&seqs)
                .map(|(j, seq)| format!("{seq} {}", j.announced))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
    if !kept.is_empty() {
        sqlx::query(INSERT_CHUNKS)
            .bind(kept.iter().map(|k| k.1.id.as_slice()).collect::<Vec<_>>())
            .bind(kept.iter().map(|k| seqs[k.0]).collect::<Vec<_>>())
            .bind(
                kept.iter()
                    .map(|k| k.1.chunk.as_slice())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    for (&(i, _), &seq) in stored.iter().zip(&seqs) {
        outcomes[i] = AppendOutcome::Stored(u64::try_from(seq).unwrap_or(0));
    }
    Ok(outcomes)
}

/// Folds an append's changes into a new snapshot of its document.
async fn store_snapshot_postgres(conn: &mut PgConnection, job: &Job) -> Result<()> {
    sqlx::query(DELETE_CHANGES)
        .bind(job.id.as_slice())
        .execute(&mut *conn)
        .await?;
    sqlx::query(STORE_SNAPSHOT)
        .bind(job.id.as_slice())
        .bind(job.district.as_slice())
        .bind(job.station.as_deref())
        .bind(job.pending.doc().save())
        .bind(job.new_heads.as_slice())
        .bind(job.received_at)
        .bind(job.closed)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Runs a projection plan's statements, binding their arguments by reference so the
/// plan can be run again.
async fn run_statements(conn: &mut PgConnection, plan: &[super::projections::Stmt]) -> Result<()> {
    for stmt in plan {
        let mut q = sqlx::query(stmt.text(false));
        for arg in &stmt.args {
            q = match arg {
                Arg::Bytes(v) => q.bind(v.as_slice()),
                Arg::OptBytes(v) => q.bind(v.as_deref()),
                Arg::Int(v) => q.bind(*v),
                Arg::OptInt(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.as_str()),
                Arg::OptText(v) => q.bind(v.as_deref()),
                Arg::Bool(v) => q.bind(*v),
            };
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

// ---- SQLite: group commit on a writer thread ------------------------------------------

/// The writer thread: waits for an append, takes every other one queued meanwhile (up
/// to [`MAX_GROUP`]), writes them in one transaction, commits once and only then
/// answers them. Ends when the store is dropped or closed.
fn serve_sqlite(conn: rusqlite::Connection, mut queue: mpsc::UnboundedReceiver<Queued>) {
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        group.extend(std::iter::from_fn(|| queue.try_recv().ok()).take(MAX_GROUP - 1));
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
    group: Vec<Queued>,
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

/// The writes of one append in the writer's open transaction. SQLite has one writer,
/// so no lock is taken.
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
