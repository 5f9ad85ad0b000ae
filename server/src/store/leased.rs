//! PostgreSQL connections for the short reads every request makes, kept outside sqlx's
//! pool.
//!
//! The pool pings a connection each time it takes one back (sqlx 0.9 does so
//! unconditionally, to catch one a dropped request left mid-protocol). A sync makes
//! about eight reads of a few rows: with the ping, sixteen round trips to PostgreSQL,
//! each a write, a wake-up of PostgreSQL's backend and one of this server's task.
//! Here a read leases a connection and gives it back only once its rows are all in:
//! a read that fails, or whose request was dropped half way, closes its connection
//! instead, so no connection in the idle list can be mid-protocol.

use super::{Result, StoreError};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A connection idle for longer is pinged before a read: a restarted PostgreSQL
/// closes every idle connection, and a read should not be the one to find out.
const IDLE_PING: Duration = Duration::from_secs(1);

/// Read connections: at most `max` open, the idle ones kept for the next read.
pub(crate) struct Readers {
    options: PgConnectOptions,
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    open: Semaphore,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("available", &self.open.available_permits())
            .finish_non_exhaustive()
    }
}

impl Readers {
    pub(crate) fn new(options: PgConnectOptions, max: usize) -> Readers {
        Readers {
            options,
            idle: Mutex::new(Vec::new()),
            open: Semaphore::new(max.max(1)),
        }
    }

    /// A connection for one read: an idle one (pinged if it sat idle a while), or a
    /// new one (always, when `fresh`: the last was cut under its read). Waits while
    /// `max` reads are under way.
    pub(crate) async fn lease(&self, fresh: bool) -> Result<Lease<'_>> {
        let permit = self
            .open
            .acquire()
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))?;
        if fresh {
            // Every idle connection is as old as the one that was cut.
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some((mut conn, since)) = idle else {
                break;
            };
            if since.elapsed() <= IDLE_PING || conn.ping().await.is_ok() {
                return Ok(Lease {
                    readers: self,
                    conn: Some(conn),
                    _permit: permit,
                });
            }
            // Closed under us (PostgreSQL restarted): try the next, or a new one.
        }
        let conn = self.options.connect().await?;
        Ok(Lease {
            readers: self,
            conn: Some(conn),
            _permit: permit,
        })
    }
}

impl Readers {
    /// The rows of `sql` with `args` bound, read on a leased connection, and once more
    /// on a new one if that connection was cut under the read.
    pub(crate) async fn fetch_all(&self, sql: &str, args: PgArguments) -> Result<Vec<PgRow>> {
        let mut fresh = false;
        loop {
            let mut lease = self.lease(fresh).await?;
            match sqlx::query_with(AssertSqlSafe(sql), args.clone())
                .fetch_all(lease.conn()?)
                .await
            {
                Ok(rows) => {
                    lease.done();
                    return Ok(rows);
                }
                Err(e) if !fresh && cut(&e) => fresh = true,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Closes the idle connections (a read under way closes its own when it ends: the
    /// caller is closing the store).
    pub(crate) async fn close(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        for (conn, _) in idle {
            let _ = conn.close().await;
        }
    }
}

/// A connection leased for one read. Dropped without [`Lease::done`], it closes.
pub(crate) struct Lease<'a> {
    readers: &'a Readers,
    conn: Option<PgConnection>,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    pub(crate) fn conn(&mut self) -> Result<&mut PgConnection> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Worker("the read's connection was given back".into()))
    }

    /// Gives the connection back for the next read, once this one has read all its
    /// rows.
    pub(crate) fn done(mut self) {
        if let Some(conn) = self.conn.take() {
            self.readers
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((conn, Instant::now()));
        }
    }
}

/// Whether a read failed because its connection was cut (PostgreSQL restarted, or
/// ended the session): then the read is tried once more on a new connection. Reads
/// change nothing, so trying again is safe.
fn cut(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        // Class 08, connection exceptions; class 57, operator intervention (a
        // terminated backend, a shutdown).
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57")),
        _ => false,
    }
}
