//! The real binary under hostile conditions. Killed with SIGKILL in the middle of a
//! stream of syncs, again and again: every visit a phone was given a receipt for is in
//! the database after each kill, and once the server is back the phones converge with
//! it. Out of disk: the write is refused with 503, the server keeps serving, and the
//! visit goes through once there is room again.

use crate::backends::{TestStore, conformance};
use crate::phone::Phone;
use crate::serving::Answer;
use reqwest::Client;
use serde_json::json;
use server::store::{SqlStore, StoreOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_core::doc::casefile::CaseFile;
use sync_core::ids::*;
use sync_core::protocol::store::ServerStore;

/// Where a server process keeps its data.
struct Data {
    dir: tempfile::TempDir,
    url: String,
}

impl Data {
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
        command
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--database-url")
            .arg(&self.url)
            .arg("--bind")
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "warn");
        command
    }

    /// Runs an operator command and returns what it printed.
    fn operate(&self, args: &[&str]) -> String {
        let output = self.command().args(args).output().unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(
            output.status.success(),
            "server {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// The id an operator command printed at the end of its first line.
    fn operate_id(&self, args: &[&str]) -> uuid::Uuid {
        let out = self.operate(args);
        out.lines()
            .next()
            .and_then(|l| l.rsplit(": ").next())
            .and_then(|id| id.trim().parse().ok())
            .unwrap_or_else(|| panic!("no id in {out:?}"))
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the server and waits for its "listening" line.
    async fn start(&self) -> Process {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads every line, so the server never writes into a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap()
            .unwrap_or_else(|e| {
                panic!(
                    "the server did not start ({e}); see {}",
                    self.log().display()
                )
            });
        let base = line
            .strip_prefix("Linli server listening on ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Process { child, base }
    }
}

/// A district set up by the operator commands before the server starts: one station,
/// a coordinator (with the one-time password they sign in with), volunteers, and an
/// enrolment code for each of them.
struct Site {
    station: StationId,
    password: String,
    coordinator_code: String,
    volunteers: Vec<UserId>,
    codes: Vec<String>,
}

impl Data {
    /// Sets up a district whose coordinator signs in as `coordinator` and whose
    /// volunteers sign in as `volunteers`.
    fn set_up(&self, coordinator: &str, volunteers: &[&str]) -> Site {
        self.operate(&["create-district", "彭浦镇"]);
        let station = StationId(self.operate_id(&[
            "create-station",
            "--district",
            "彭浦镇",
            "华沙六村党群服务站",
        ]));
        let created = self.operate(&[
            "create-user",
            coordinator,
            "--role",
            "coordinator",
            "--district",
            "彭浦镇",
        ]);
        let password = created
            .lines()
            .find_map(|l| l.strip_prefix("one-time password (shown once): "))
            .unwrap()
            .trim()
            .to_owned();
        let volunteer_ids = (volunteers.iter())
            .map(|login| {
                UserId(self.operate_id(&[
                    "create-user",
                    login,
                    "--role",
                    "volunteer",
                    "--district",
                    "彭浦镇",
                ]))
            })
            .collect();
        let code = |login: &str| {
            let out = self.operate(&["issue-enrolment-code", login]);
            out.split(": ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .unwrap()
                .to_owned()
        };
        Site {
            station,
            password,
            coordinator_code: code(coordinator),
            volunteers: volunteer_ids,
            codes: volunteers.iter().map(|l| code(l)).collect(),
        }
    }
}

/// Signs in over the API and returns the access token.
async fn login(base: &str, login: &str, password: &str) -> String {
    let answer = Answer::read(
        Client::new()
            .post(format!("{base}/api/v1/login"))
            .json(&json!({ "login": login, "password": password }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    answer.expect(200).json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

struct Process {
    child: Child,
    base: String,
}

impl Process {
    /// SIGKILL: no shutdown, no flush, nothing.
    fn kill(self) {
        drop(self);
    }
}

impl Drop for Process {
    /// Also when a test fails: no server outlives its test.
    fn drop(&mut self) {
        // `Child::kill` sends SIGKILL on unix.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each phone's visits: logged, and receipted by the server.
#[derive(Default)]
struct Ledger {
    logged: BTreeSet<VisitId>,
    receipted: BTreeSet<VisitId>,
}

/// Logs a visit and tries one sync exchange, over and over until told to stop; the
/// server may be gone at any moment. Every receipt is written down at once.
async fn keep_visiting(
    mut phone: Phone,
    residents: Vec<ResidentId>,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) -> Phone {
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let resident = residents[n % residents.len()];
        let visit = phone.log_visit(resident, &format!("第 {n} 次探访"));
        ledger.lock().unwrap().logged.insert(visit);
        n += 1;
        let request = phone.replica.prepare(server::now_ms()).unwrap();
        match phone.send(&request).await {
            Ok(_) => {
                let mut unreceipted = BTreeSet::new();
                for r in &residents {
                    unreceipted.extend(phone.replica.unreceipted_visits((*r).into()).unwrap());
                }
                let mut ledger = ledger.lock().unwrap();
                let receipted: Vec<VisitId> =
                    ledger.logged.difference(&unreceipted).copied().collect();
                ledger.receipted.extend(receipted);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    phone
}

/// Every visit stored in the residents' case files, read through a fresh connection.
async fn stored_visits(url: &str, residents: &[ResidentId]) -> BTreeSet<VisitId> {
    let store = SqlStore::connect(url, StoreOptions::default())
        .await
        .unwrap();
    let mut visits = BTreeSet::new();
    for r in residents {
        let doc = store.load((*r).into()).await.unwrap().unwrap();
        let file = CaseFile::from_doc(doc).unwrap().hydrate().unwrap();
        visits.extend(file.visits.iter().map(|v| v.id));
    }
    store.close().await;
    visits
}

async fn put(base: &str, token: &str, volunteer: UserId, resident: ResidentId) {
    let response = Client::new()
        .put(format!(
            "{base}/api/v1/volunteers/{}/residents/{}",
            volunteer.0, resident.0
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    Answer::read(response).await.expect(204);
}

async fn receipted_visits_survive_sigkill(t: TestStore) {
    let data = Data {
        dir: tempfile::tempdir().unwrap(),
        url: t.url.clone(),
    };
    let site = data.set_up("coordinator", &["wang", "zhang", "li"]);
    let (station, volunteers, codes) = (site.station, &site.volunteers, &site.codes);

    let mut process = data.start().await;
    let base = process.base.clone();
    let token = login(&base, "coordinator", &site.password).await;
    let mut staff = Phone::enrol(&base, &site.coordinator_code).await;
    let residents: Vec<ResidentId> = ["王阿婆", "李老伯", "赵阿姨"]
        .iter()
        .map(|name| staff.register(station, name))
        .collect();
    assert_eq!(staff.sync().await.unwrap().receipted.len(), 3);
    // Each resident has two volunteers, so their phones write to one case file at once.
    let mut work: Vec<(Phone, Vec<ResidentId>)> = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let mine = vec![residents[i], residents[(i + 1) % 3]];
        for r in &mine {
            put(&base, &token, volunteers[i], *r).await;
        }
        let mut phone = Phone::enrol(&base, code).await;
        phone.sync().await.unwrap();
        work.push((phone, mine));
    }
    let ledgers: Vec<Arc<Mutex<Ledger>>> = work.iter().map(|_| Arc::default()).collect();

    // Killed at different moments of the stream: once the round's syncs have brought
    // this many more receipts, and a little later. Four times in CI;
    // `LINLI_KILLS=20` for the long run `RELIABILITY.md` reports, the moments after the
    // first four spread by a fixed pseudo-random walk.
    let kills: usize = std::env::var("LINLI_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4);
    let moments: Vec<(usize, u64)> = [(1, 0), (4, 3), (10, 11), (25, 29)]
        .into_iter()
        .chain((4..).map(|k: usize| (1 + (k * 7) % 23, ((k * 13) % 37) as u64)))
        .take(kills)
        .collect();
    let receipted = |ledgers: &[Arc<Mutex<Ledger>>]| -> usize {
        ledgers
            .iter()
            .map(|l| l.lock().unwrap().receipted.len())
            .sum()
    };
    for (round, (receipts, later_ms)) in moments.into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = work
            .drain(..)
            .zip(&ledgers)
            .map(|((mut phone, mine), ledger)| {
                phone.base = process.base.clone();
                let task = tokio::spawn(keep_visiting(
                    phone,
                    mine.clone(),
                    stop.clone(),
                    ledger.clone(),
                ));
                (task, mine)
            })
            .collect();
        let target = receipted(&ledgers) + receipts;
        tokio::time::timeout(Duration::from_secs(120), async {
            while receipted(&ledgers) < target {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the phones' syncs stalled");
        tokio::time::sleep(Duration::from_millis(later_ms)).await;
        process.kill();
        stop.store(true, Ordering::SeqCst);
        for (task, mine) in tasks {
            work.push((task.await.unwrap(), mine));
        }

        let stored = stored_visits(&data.url, &residents).await;
        for ledger in &ledgers {
            let ledger = ledger.lock().unwrap();
            let lost: Vec<_> = ledger.receipted.difference(&stored).collect();
            assert!(
                lost.is_empty(),
                "round {round}: receipted visits lost by the kill: {lost:?}"
            );
        }
        eprintln!(
            "round {round}: {} visits receipted, {} stored",
            receipted(&ledgers),
            stored.len()
        );
        process = data.start().await;
    }

    // The phones retry and converge with the server: nothing lost, nothing pending.
    for (phone, _) in &mut work {
        phone.base = process.base.clone();
        phone.sync().await.unwrap();
    }
    for (phone, _) in &mut work {
        phone.sync().await.unwrap();
    }
    staff.base = process.base.clone();
    staff.sync().await.unwrap();
    let stored = stored_visits(&data.url, &residents).await;
    let logged: BTreeSet<VisitId> = ledgers
        .iter()
        .flat_map(|l| l.lock().unwrap().logged.clone())
        .collect();
    assert_eq!(stored, logged, "every logged visit reached the server");
    let store = &t.store;
    let mut heads: BTreeMap<ResidentId, _> = BTreeMap::new();
    for r in &residents {
        let mut h = store.load((*r).into()).await.unwrap().unwrap().get_heads();
        h.sort();
        heads.insert(*r, h);
        assert_eq!(staff.heads(*r), heads[r]);
    }
    for (phone, mine) in &work {
        assert_eq!(phone.pending(), 0);
        for r in mine {
            assert!(
                phone
                    .replica
                    .unreceipted_visits((*r).into())
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(phone.heads(*r), heads[r]);
        }
    }
    assert!(store.quarantined(10).await.unwrap().is_empty());
    process.kill();
    let check = data.operate(&["check"]);
    assert!(!check.is_empty());
}

/// Sets the running server's soft file size limit (`prlimit`, from util-linux; the
/// hard limit stays, so no privilege is needed to lift it again): a write past it
/// fails with EFBIG, as on a full disk.
fn limit_file_size(process: &Process, limit: &str) {
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(process.child.id().to_string())
        .arg(format!("--fsize={limit}:"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit --fsize={limit} failed");
}

/// SQLite only: the database file is the server's own, so the server's file size limit
/// stands in for a full disk. (PostgreSQL's disk belongs to PostgreSQL; a write it
/// refuses reaches the server as the same kind of database error.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_the_visit_and_loses_nothing() {
    let t = crate::backends::sqlite().await;
    let data = Data {
        dir: tempfile::tempdir().unwrap(),
        url: t.url.clone(),
    };
    let site = data.set_up("staff", &["wang"]);
    let (station, volunteer) = (site.station, site.volunteers[0]);
    let process = data.start().await;
    let base = process.base.clone();
    let token = login(&base, "staff", &site.password).await;
    let mut staff = Phone::enrol(&base, &site.coordinator_code).await;
    let resident = staff.register(station, "王阿婆");
    staff.sync().await.unwrap();
    put(&base, &token, volunteer, resident).await;
    let mut phone = Phone::enrol(&base, &site.codes[0]).await;
    phone.sync().await.unwrap();
    let first = phone.log_visit(resident, "磁盘满之前");
    phone.sync().await.unwrap();

    // No room for a single page more.
    limit_file_size(&process, "4096");
    let second = phone.log_visit(resident, "磁盘满的时候");
    let refused = phone.sync().await.unwrap_err().refused();
    refused.expect_error(503, "storage_unavailable");
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("nothing was lost")
    );
    assert_eq!(
        phone.replica.unreceipted_visits(resident.into()).unwrap(),
        BTreeSet::from([second]),
        "the phone keeps the refused visit to send again"
    );
    // The server is still up and still reads.
    Answer::read(
        Client::new()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200);
    assert_eq!(
        stored_visits(&data.url, &[resident]).await,
        BTreeSet::from([first])
    );

    // Room again: the same phone's retry goes through.
    limit_file_size(&process, "unlimited");
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
    assert_eq!(
        stored_visits(&data.url, &[resident]).await,
        BTreeSet::from([first, second])
    );
    assert!(t.store.check().await.unwrap().problems.is_empty());
    drop(process);
}

conformance!(receipted_visits_survive_sigkill);
