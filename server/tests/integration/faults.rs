//! Storage faults under the real binary. The disk fills up, on both backends (SQLite:
//! the server's file size limit, as its database files are its own; PostgreSQL: the
//! test database's tables on their own small filesystem, a tmpfs tablespace, filled
//! to the last byte), and the database goes away (PostgreSQL: every connection cut and
//! new ones refused). Each refused write answers 503 `storage_unavailable` and loses
//! nothing: the phone keeps the visit and sends it again, and once there is room (or
//! the database is back) the retry goes through. The server runs with a single pooled
//! connection, so a failed transaction (an append, an enrolment, a phone's document
//! list) that left its connection unusable would fail every later request: none may.

use crate::backends::{TestStore, conformance};
use crate::binary::{Data, Process, limit_file_size, stored_visits};
use crate::phone::Phone;
use crate::serving::Answer;
use reqwest::Client;
use serde_json::json;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use sync_core::ids::{ResidentId, VisitId};

/// `psql` as PostgreSQL's superuser on the local cluster the tests use (scripts/test
/// starts it; the tests run as root, as CI does), on database `db`.
fn psql(db: &str, sql: &str) -> String {
    let admin = std::env::var("LINLI_TEST_POSTGRES_URL").unwrap();
    let port = admin
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap()
        .to_owned();
    let output = Command::new("su")
        .args(["postgres", "-c"])
        .arg(format!(
            "psql -X -q -t -A -v ON_ERROR_STOP=1 -p {port} -d {db} -c \"{sql}\""
        ))
        .output()
        .expect("su and psql run");
    assert!(
        output.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?} failed");
}

/// The test database's tables and indexes on a tablespace of their own, on a 64 MiB
/// tmpfs: filling that filesystem is a full disk for PostgreSQL, for this database
/// alone (the WAL and every other test's database stay where they were).
struct Tablespace {
    db: String,
    name: String,
    mount: PathBuf,
}

impl Tablespace {
    fn new(url: &str) -> Self {
        let db = url.rsplit('/').next().unwrap().to_owned();
        let name = format!("{db}_disk");
        let mount = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&mount).unwrap();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=64m",
                "tmpfs",
                mount.to_str().unwrap(),
            ],
        );
        run("chown", &["postgres:postgres", mount.to_str().unwrap()]);
        psql(
            &db,
            &format!("CREATE TABLESPACE {name} LOCATION '{}'", mount.display()),
        );
        for kind in ["TABLE", "INDEX"] {
            psql(
                &db,
                &format!(
                    "ALTER {kind} ALL IN TABLESPACE pg_default OWNED BY linli_test SET TABLESPACE {name}"
                ),
            );
        }
        let moved = psql(
            &db,
            &format!(
                "SELECT count(*) FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace WHERE t.spcname = '{name}'"
            ),
        );
        assert!(
            moved.trim().parse::<u32>().unwrap() > 10,
            "the tables moved: {moved}"
        );
        Tablespace { db, name, mount }
    }

    fn filler(&self) -> PathBuf {
        self.mount.join("filler")
    }

    /// Writes a file until the filesystem has not a byte left.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).unwrap();
        for chunk in [1 << 20, 4096, 1] {
            let block = vec![0x5a_u8; chunk];
            while file.write_all(&block).is_ok() {}
        }
        let _ = file.sync_all();
    }

    fn make_room(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for Tablespace {
    /// Puts the tables back and unmounts, also when the test failed.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.filler());
        for kind in ["TABLE", "INDEX"] {
            let _ = std::panic::catch_unwind(|| {
                psql(
                    &self.db,
                    &format!(
                        "ALTER {kind} ALL IN TABLESPACE {} SET TABLESPACE pg_default",
                        self.name
                    ),
                )
            });
        }
        let _ =
            std::panic::catch_unwind(|| psql(&self.db, &format!("DROP TABLESPACE {}", self.name)));
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = std::fs::remove_dir(&self.mount);
    }
}

/// What fills the disk, per backend.
enum Disk<'a> {
    Sqlite(&'a Process),
    Postgres(&'a Tablespace),
}

impl Disk<'_> {
    fn fill(&self) {
        match self {
            // Not a page more: SQLite's WAL cannot grow.
            Disk::Sqlite(process) => limit_file_size(process, "4096"),
            Disk::Postgres(space) => space.fill(),
        }
    }

    fn make_room(&self) {
        match self {
            Disk::Sqlite(process) => limit_file_size(process, "unlimited"),
            Disk::Postgres(space) => space.make_room(),
        }
    }
}

/// Enrols a device by code, answering whatever the server answered.
async fn try_enrol(base: &str, code: &str) -> Answer {
    Answer::read(
        Client::new()
            .post(format!("{base}/api/v1/enrol"))
            .json(&json!({ "code": code, "device_name": "test phone" }))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn get(base: &str, path: &str) -> Answer {
    Answer::read(
        Client::new()
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// With the fault gone, the phone's retry goes through: nothing refused, nothing left
/// waiting for a receipt, and the database holds exactly `want` of the resident's
/// visits.
async fn retry_stores(
    phone: &mut Phone,
    data: &Data,
    resident: ResidentId,
    want: &BTreeSet<VisitId>,
) {
    let report = phone.sync().await.unwrap_or_else(|e| {
        panic!(
            "the retry failed: {e:?}; the server's log:\n{}",
            std::fs::read_to_string(data.log()).unwrap_or_default()
        )
    });
    assert!(report.rejections.is_empty(), "{report:?}");
    assert!(
        phone
            .replica
            .unreceipted_visits(resident.into())
            .unwrap()
            .is_empty()
    );
    assert_eq!(&stored_visits(&data.url, &[resident]).await, want);
}

/// Nearly the 4,000 characters a visit's notes may hold, of text that compresses
/// poorly (hex of a hash chain), so that a few visits outgrow any page's free space
/// and PostgreSQL must extend a file.
fn bulky_notes(seed: u64) -> String {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    let mut h = seed;
    (0..243)
        .map(|_| {
            h = hasher.hash_one(h);
            format!("{h:016x}")
        })
        .collect()
}

async fn a_full_disk_refuses_writes_and_loses_nothing(t: TestStore) {
    let data = Data {
        dir: tempfile::tempdir().unwrap(),
        url: t.url.clone(),
    };
    let site = data.set_up("staff", &["wang", "li", "zhao"]);
    let space = (!t.url.starts_with("sqlite:")).then(|| Tablespace::new(&t.url));
    let process = data.start_with(&["--db-connections", "1"]).await;
    let disk = match &space {
        None => Disk::Sqlite(&process),
        Some(space) => Disk::Postgres(space),
    };
    let base = process.base.clone();
    let (_staff, resident) = site.resident(&base, "王阿婆", 2).await;
    let mut wang = Phone::enrol(&base, &site.codes[0]).await;
    wang.sync().await.unwrap();
    let mut logged = BTreeSet::from([wang.log_visit(resident, "磁盘满之前")]);
    wang.sync().await.unwrap();
    // Li's phone is enrolled but has never synced: its first sync writes its
    // document list, in a transaction of its own.
    let mut li = Phone::enrol(&base, &site.codes[1]).await;

    disk.fill();
    // Visits until one no longer fits (PostgreSQL may still have room in a page).
    let mut refused = None;
    for n in 0..30 {
        logged.insert(wang.log_visit(resident, &bulky_notes(n)));
        if let Err(e) = wang.sync().await {
            refused = Some(e.refused());
            break;
        }
    }
    let refused = refused.expect("a full disk refuses a visit within 30");
    refused.expect_error(503, "storage_unavailable");
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("nothing was lost")
    );
    let stored = stored_visits(&data.url, &[resident]).await;
    let kept = wang.replica.unreceipted_visits(resident.into()).unwrap();
    assert!(!kept.is_empty(), "the phone keeps the refused visit");
    assert_eq!(
        stored.union(&kept).copied().collect::<BTreeSet<_>>(),
        logged,
        "every visit is stored or kept on the phone"
    );
    // The other writes answer too: refused (SQLite cannot write a byte) or, where a
    // page still had room, done; never a failure of another kind.
    let li_first = li.sync().await;
    let zhao = try_enrol(&base, &site.codes[2]).await;
    if space.is_none() {
        li_first
            .unwrap_err()
            .refused()
            .expect_error(503, "storage_unavailable");
        zhao.expect_error(503, "storage_unavailable");
    } else {
        if let Err(e) = li_first {
            e.refused().expect_error(503, "storage_unavailable");
        }
        assert!(zhao.status == 200 || zhao.status == 503, "{zhao:?}");
    }
    get(&base, "/healthz").await.expect(200);

    // Room again. The one pooled connection served every failed transaction above:
    // each request now must work on it.
    disk.make_room();
    get(&base, "/readyz").await.expect(200);
    li.sync().await.unwrap();
    if zhao.status == 503 {
        try_enrol(&base, &site.codes[2]).await.expect(200);
    }
    retry_stores(&mut wang, &data, resident, &logged).await;
    assert!(li.replica.case_file(resident.into()).unwrap().is_some());
    assert!(t.store.check().await.unwrap().problems.is_empty());
    drop(process);
}

conformance!(a_full_disk_refuses_writes_and_loses_nothing);

/// PostgreSQL only (SQLite is a file the server holds open): the database goes away
/// mid-stream, every connection cut and new ones refused, and comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_refuses_writes_and_loses_nothing() {
    let t = crate::backends::postgres().await;
    let data = Data {
        dir: tempfile::tempdir().unwrap(),
        url: t.url.clone(),
    };
    let db = t.url.rsplit('/').next().unwrap().to_owned();
    let site = data.set_up("staff", &["wang"]);
    let process = data.start_with(&["--db-connections", "2"]).await;
    let base = process.base.clone();
    let (_staff, resident) = site.resident(&base, "王阿婆", 1).await;
    let mut wang = Phone::enrol(&base, &site.codes[0]).await;
    wang.sync().await.unwrap();
    let first = wang.log_visit(resident, "数据库在");
    wang.sync().await.unwrap();

    // Away: no new connections, and the server's are cut.
    psql(
        "postgres",
        &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"),
    );
    psql(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}'"
        ),
    );
    let second = wang.log_visit(resident, "数据库不在");
    let started = std::time::Instant::now();
    let refused = wang.sync().await.unwrap_err().refused();
    refused.expect_error(503, "storage_unavailable");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the phone is answered promptly, not left waiting: {:?}",
        started.elapsed()
    );
    assert_eq!(
        wang.replica.unreceipted_visits(resident.into()).unwrap(),
        BTreeSet::from([second]),
        "the phone keeps the visit"
    );
    get(&base, "/readyz")
        .await
        .expect_error(503, "storage_unavailable");
    get(&base, "/healthz").await.expect(200);

    // Back: the pool connects again by itself.
    psql(
        "postgres",
        &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"),
    );
    get(&base, "/readyz").await.expect(200);
    retry_stores(&mut wang, &data, resident, &BTreeSet::from([first, second])).await;
    assert!(t.store.check().await.unwrap().problems.is_empty());
    drop(process);
}
