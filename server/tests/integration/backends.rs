//! Fresh stores for tests: a SQLite file in a temporary directory, or a new database on
//! the PostgreSQL server named by `LINLI_TEST_POSTGRES_URL` (set by `scripts/test`).

use server::store::{SqlStore, StoreOptions};
use sqlx::Connection;
use std::sync::atomic::{AtomicU32, Ordering};

/// A store and what keeps it alive.
pub struct TestStore {
    pub store: SqlStore,
    /// The URL it was opened with, to open a second handle (a second process).
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database this test made, dropped with the store: a run makes
    /// hundreds, and a full disk has failed CI.
    database: Option<String>,
}

/// So that a test can share the whole `TestStore` (which owns the clean-up) where it
/// would share the store.
impl std::ops::Deref for TestStore {
    type Target = SqlStore;
    fn deref(&self) -> &SqlStore {
        &self.store
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let (Some(name), Ok(admin)) = (
            self.database.take(),
            std::env::var("LINLI_TEST_POSTGRES_URL"),
        ) else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on a future; a thread
        // of its own can. FORCE ends the store's own connections. Best effort: what is
        // left, scripts/test drops at its next start.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut c = sqlx::PgConnection::connect(&admin).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("note: a test database was left for scripts/test to drop");
        }
    }
}

impl TestStore {
    /// Runs `sql` on the store's database through a connection of its own (what
    /// another process would do); the database's error text if it refuses.
    pub async fn try_execute(&self, sql: &str) -> Result<(), String> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if self.url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.map(|_| ())
        } else {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.map(|_| ())
        }
        .map_err(|e| e.to_string())
    }

    /// One number from `sql`, with `id` bound as `$1` when given, through a connection
    /// of its own.
    pub async fn count(&self, sql: &'static str, id: Option<uuid::Uuid>) -> i64 {
        let bytes = id.map(|u| u.as_bytes().to_vec());
        if self.url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            let q = sqlx::query_scalar(sql);
            let q = match bytes {
                Some(b) => q.bind(b),
                None => q,
            };
            q.fetch_one(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            let q = sqlx::query_scalar(sql);
            let q = match bytes {
                Some(b) => q.bind(b),
                None => q,
            };
            q.fetch_one(&mut c).await.unwrap()
        }
    }
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("linli.sqlite").display());
    TestStore {
        store: SqlStore::connect(&url, StoreOptions::default())
            .await
            .unwrap(),
        url,
        _dir: Some(dir),
        database: None,
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

pub async fn postgres() -> TestStore {
    let url = empty_postgres().await;
    TestStore {
        store: SqlStore::connect(&url, StoreOptions::default())
            .await
            .unwrap(),
        database: url.rsplit_once('/').map(|(_, name)| name.to_owned()),
        url,
        _dir: None,
    }
}

/// A new, empty database on the test PostgreSQL server (no tables yet): its URL.
pub async fn empty_postgres() -> String {
    let admin = std::env::var("LINLI_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("LINLI_TEST_POSTGRES_URL is not set: run the tests with scripts/test, which starts PostgreSQL")
    });
    let name = format!(
        "linli_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

/// Declares each named test once per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::backends::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::backends::postgres().await).await
                }
            )*
        }
    };
}
pub(crate) use conformance;
