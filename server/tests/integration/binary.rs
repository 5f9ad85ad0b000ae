//! The real server binary run by tests: its data folder, operator commands, a district
//! set up before it starts, and the process, killed with the test.

use crate::phone::Phone;
use crate::serving::Answer;
use reqwest::Client;
use serde_json::json;
use server::store::{SqlStore, StoreOptions};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use sync_core::doc::casefile::CaseFile;
use sync_core::ids::*;
use sync_core::protocol::store::ServerStore;

/// Where a server process keeps its data.
pub struct Data {
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl Data {
    pub fn command(&self) -> Command {
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
    pub fn operate(&self, args: &[&str]) -> String {
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
    pub fn operate_id(&self, args: &[&str]) -> uuid::Uuid {
        let out = self.operate(args);
        out.lines()
            .next()
            .and_then(|l| l.rsplit(": ").next())
            .and_then(|id| id.trim().parse().ok())
            .unwrap_or_else(|| panic!("no id in {out:?}"))
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the server and waits for its "listening" line.
    pub async fn start(&self) -> Process {
        self.start_with(&[]).await
    }

    /// [`Data::start`] with more options (`--db-connections 1`, say).
    pub async fn start_with(&self, args: &[&str]) -> Process {
        self.spawn(args, |line| {
            line.strip_prefix("Linli server listening on ")
                .and_then(|rest| rest.split(' ').next())
        })
        .await
    }

    /// Runs the binary with `args` and waits for its first line, from which `address`
    /// reads where it listens.
    pub async fn spawn(&self, args: &[&str], address: fn(&str) -> Option<&str>) -> Process {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let mut child = self
            .command()
            .args(args)
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
        let base = address(&line)
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Process { child, base }
    }
}

/// A district set up by the operator commands before the server starts: one station,
/// a coordinator (with the one-time password they sign in with), volunteers, and an
/// enrolment code for each of them.
pub struct Site {
    pub coordinator: String,
    pub station: StationId,
    pub password: String,
    pub coordinator_code: String,
    pub volunteers: Vec<UserId>,
    pub codes: Vec<String>,
}

impl Site {
    /// The coordinator enrols a phone, registers a resident at the station and assigns
    /// the first `volunteers` volunteers to them: the coordinator's phone, synced, and
    /// the resident.
    pub async fn resident(&self, base: &str, name: &str, volunteers: usize) -> (Phone, ResidentId) {
        let token = login(base, &self.coordinator, &self.password).await;
        let mut phone = Phone::enrol(base, &self.coordinator_code).await;
        let resident = phone.register(self.station, name);
        phone.sync().await.unwrap();
        for v in &self.volunteers[..volunteers] {
            put(base, &token, *v, resident).await;
        }
        (phone, resident)
    }
}

impl Data {
    /// Sets up a district whose coordinator signs in as `coordinator` and whose
    /// volunteers sign in as `volunteers`.
    pub fn set_up(&self, coordinator: &str, volunteers: &[&str]) -> Site {
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
            coordinator: coordinator.to_owned(),
            station,
            password,
            coordinator_code: code(coordinator),
            volunteers: volunteer_ids,
            codes: volunteers.iter().map(|l| code(l)).collect(),
        }
    }
}

/// Signs in over the API and returns the access token.
pub async fn login(base: &str, login: &str, password: &str) -> String {
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

pub struct Process {
    pub child: Child,
    pub base: String,
}

impl Process {
    /// SIGKILL: no shutdown, no flush, nothing.
    pub fn kill(self) {
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

/// Every visit stored in the residents' case files, read through a fresh connection.
pub async fn stored_visits(url: &str, residents: &[ResidentId]) -> BTreeSet<VisitId> {
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

pub async fn put(base: &str, token: &str, volunteer: UserId, resident: ResidentId) {
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

/// Sets the running server's soft file size limit (`prlimit`, from util-linux; the
/// hard limit stays, so no privilege is needed to lift it again): a write past it
/// fails with EFBIG, as on a full disk.
pub fn limit_file_size(process: &Process, limit: &str) {
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(process.child.id().to_string())
        .arg(format!("--fsize={limit}:"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit --fsize={limit} failed");
}
