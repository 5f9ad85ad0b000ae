//! Server load benchmark: simulated phones syncing with the real server binary over
//! loopback HTTP.
//!
//! Run with `cargo bench -p server --bench load` (`-- --test` for a quick smoke that
//! asserts the run works). For each backend (SQLite; PostgreSQL too when
//! `LINLI_TEST_POSTGRES_URL` names an admin URL ending in `/postgres`, as
//! `scripts/postgres-env` exports) the bench:
//!
//! 1. starts the release `server` binary as its own process on a fresh data directory
//!    (or a fresh PostgreSQL database), on `127.0.0.1:0`, and reads its address and
//!    the bootstrap admin's one-time password from its stdout;
//! 2. sets up, over HTTP, a district, a station, a staff user whose enrolled phone
//!    creates the residents' case files (`CaseFile::create`, synced) and assigns them,
//!    and the volunteers, each with an enrolled phone (a `Replica` writing as the actor
//!    the server registered) holding its residents after one sync;
//! 3. runs every phone as a concurrent task for three measured windows:
//!    * **baseline** (`nothing new`), closed loop: `prepare` → `POST /api/v1/sync` →
//!      `apply`, with nothing to upload: the pure round-trip cost (authentication,
//!      scope, feed);
//!    * **one new visit**, closed loop: `CaseFile::log_visit` for one of the phone's
//!      residents, saved into the replica, then the same exchange; the response must
//!      receipt the visit. Every phone always has a request in flight, so this is the
//!      most the server sustains, and its latencies are queueing (Little's law: 200
//!      phones at X syncs/s wait 200/X s on average);
//!    * **one new visit, paced**: the same, with the phones together offering
//!      `LINLI_LOAD_RATE` syncs a second, each on its own evenly spread schedule: the
//!      latency at that rate. A sync that starts over 100 ms after its slot counts as
//!      late (the phones fell behind);
//! 4. with `LINLI_LOAD_CASE_FILES` case files (default 100,000; 2,000 with `--test`)
//!    of a second station, 大站, written into the server's database by the bench
//!    before the phones are set up (through `SqlStore::append`, as the server stores
//!    an upload; the measured phones never see them), so that every window runs on a
//!    server holding a district's worth of residents; and after the windows, **the
//!    big station's first sync**: its staff member's new phone syncs until it holds
//!    every one of them, in as many exchanges as the server's response budget needs;
//! 5. after SQLite's windows, hands the same phones to a samod sync server (the peer,
//!    see `load/peer.rs`; `LINLI_LOAD_PEER_PHONES` of them, default all, 20 with
//!    `--test`) and runs the one-new-visit closed loop against it, reporting the
//!    ratios of throughput, bytes and server CPU per visit;
//! 6. reports syncs per second, latency percentiles of the HTTP round trip, errors, the
//!    server's CPU (from `/proc/<pid>/stat`), PostgreSQL's CPU (every `postgres`
//!    process), the server's peak memory (`VmHWM`, reset at the start of each window),
//!    the bytes that crossed loopback (`/proc/net/dev`) and the load generator's own
//!    CPU (it shares the machine), then stops the server with SIGTERM and checks it
//!    exits cleanly.
//!
//! The target (≥ 300 syncs/s on SQLite with p99 under 200 ms) counts as met
//! when the closed loop sustains the rate and the paced run at that rate keeps p99
//! under 200 ms with no late start and no error.
//!
//! Environment: `LINLI_LOAD_SECS` (the window, default 60 s; 3 s with `--test`),
//! `LINLI_LOAD_BASELINE_SECS` (default 20 s; 2 s with `--test`), `LINLI_LOAD_PHONES`
//! (default 200), `LINLI_LOAD_RATE` (the paced run's offered syncs a second, default
//! 300), `LINLI_LOAD_SERVER_BIN` (another server binary to measure, such as an older
//! build to compare with), `LINLI_TEST_POSTGRES_URL`, `LINLI_LOAD_ONLY_POSTGRES` (`1`:
//! PostgreSQL's windows alone, without SQLite's, the hub's or the peer's).

// In a benchmark an unwrap is an assertion: a panic fails the run with its message.
#![allow(clippy::unwrap_used)]

#[path = "load/hub.rs"]
mod hub;
#[path = "load/peer.rs"]
mod peer;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use server::now_ms;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync_core::automerge::{ActorId, ChangeHash};
use sync_core::doc::casefile::CaseFile;
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::channel::{self, Call, Channel};
use sync_core::protocol::envelope::{Hash, SyncResponse};
use sync_core::protocol::replica::Replica;
use sync_core::protocol::seal::{self, DeviceKeys};
use sync_core::protocol::store::{MemoryReplicaStore, ReplicaStore};
use sync_core::rules::Editor;
use tokio::sync::Semaphore;
use uuid::Uuid;

const ENVELOPE: &str = "application/vnd.linli.sync";
const SIGNING_KEY: &str = "linli-load-bench-signing-key-0123456789";
const RESIDENTS_PER_PHONE: usize = 5;
/// Residents created per sync of the staff phone.
const CREATE_BATCH: usize = 100;
/// Phones enrolled from one loopback address: the server allows 60 enrolments a
/// minute per client address, so the phones spread over 127.0.0.2, .3, …
const PHONES_PER_ADDRESS: usize = 50;
/// Concurrent requests while setting up.
const SETUP_CONCURRENCY: usize = 8;
const PROJECT: ProjectId = ProjectId(Uuid::from_u128(0x90));
const SERVICE: ServiceTypeId = ServiceTypeId(Uuid::from_u128(0x51));
/// The target, on SQLite with the visit load.
const TARGET_SYNCS_PER_SEC: f64 = 300.0;
const TARGET_P99_MS: f64 = 200.0;

// ---- settings ------------------------------------------------------------------------

struct Settings {
    test: bool,
    phones: usize,
    secs: f64,
    baseline_secs: f64,
    /// Syncs a second the phones offer together in the paced run.
    rate: u32,
    /// Case files of the big station.
    case_files: usize,
    /// Phones in the samod comparison (the first of Linli's phones).
    peer_phones: usize,
    postgres: Option<String>,
    /// PostgreSQL's windows alone: no SQLite, hub or peer (`LINLI_LOAD_ONLY_POSTGRES=1`).
    only_postgres: bool,
}

fn env_number(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn settings() -> Settings {
    let test = std::env::args().any(|a| a == "--test");
    let phones = env_number("LINLI_LOAD_PHONES", 200.0) as usize;
    assert!(phones > 0, "LINLI_LOAD_PHONES must be at least 1");
    Settings {
        test,
        phones,
        secs: env_number("LINLI_LOAD_SECS", if test { 3.0 } else { 60.0 }),
        baseline_secs: env_number("LINLI_LOAD_BASELINE_SECS", if test { 2.0 } else { 20.0 }),
        rate: env_number("LINLI_LOAD_RATE", TARGET_SYNCS_PER_SEC) as u32,
        case_files: env_number(
            "LINLI_LOAD_CASE_FILES",
            if test { 2_000.0 } else { 100_000.0 },
        ) as usize,
        // The smoke keeps samod's set-up short (see `peer::SETUP_TIMEOUT`).
        peer_phones: (env_number("LINLI_LOAD_PEER_PHONES", if test { 20.0 } else { 200.0 })
            as usize)
            .min(phones),
        postgres: std::env::var("LINLI_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        only_postgres: env_number("LINLI_LOAD_ONLY_POSTGRES", 0.0) != 0.0,
    }
}

// ---- the server process ---------------------------------------------------------------

struct ServerProcess {
    child: Child,
    base: String,
    backend: String,
    admin_password: String,
    log: std::path::PathBuf,
}

impl ServerProcess {
    /// Starts the server binary on `data_dir` (and `database_url`, if any) and reads its
    /// address and the bootstrap admin's password from its stdout.
    fn start(data_dir: &Path, database_url: Option<&str>) -> Self {
        let log = data_dir.join("server.log");
        // Another build of the server (an older commit, to compare) may stand in.
        let binary = std::env::var_os("LINLI_LOAD_SERVER_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_server").into());
        let mut command = Command::new(binary);
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--bind", "127.0.0.1:0", "--log-format", "json"])
            .args(["--signing-key", SIGNING_KEY])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next_line = |what: &str| -> String {
            match lines.next() {
                Some(line) => line.unwrap(),
                None => panic!(
                    "the server exited before printing {what}; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        };
        let listening = next_line("its address");
        let rest = listening
            .strip_prefix("Linli server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {listening:?}"));
        let (base, backend) = rest.split_once(" (").unwrap();
        let backend = backend.trim_end_matches(')').to_owned();
        let first = next_line("the bootstrap password");
        let admin_password = first
            .rsplit_once("one-time password ")
            .map(|(_, p)| p.trim().to_owned())
            .unwrap_or_else(|| panic!("unexpected second line {first:?}"));
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        ServerProcess {
            child,
            base: base.to_owned(),
            backend,
            admin_password,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The bootstrap admin's access token, by password sign-in.
    async fn admin_token(&self, api: &Api) -> String {
        let admin: Token = api
            .post(
                "/api/v1/login",
                None,
                json!({"login": "admin", "password": self.admin_password}),
            )
            .await;
        admin.access_token
    }

    /// Stops the server with SIGTERM (a graceful shutdown) and checks that it exits
    /// cleanly within 30 s.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the server exited with {status} after SIGTERM; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return;
            }
            if Instant::now() > deadline {
                self.child.kill().unwrap();
                panic!("the server did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// CPU time of a process (user + system), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str, ticks_per_sec: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime field 14, stime field 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let utime: f64 = fields[11].parse().unwrap();
    let stime: f64 = fields[12].parse().unwrap();
    (utime + stime) / ticks_per_sec
}

/// CPU time of every PostgreSQL process on the machine: on loopback the database's
/// work is part of what a sync costs. Processes that end mid-window drop out.
fn postgres_cpu_seconds(ticks_per_sec: f64) -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    procs
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                && std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks_per_sec)
        })
        .sum()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A field of `/proc/<pid>/status` in kB (`VmHWM`, `VmRSS`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Bytes received on the loopback interface so far (`/proc/net/dev`; on `lo` every
/// byte sent is also received, so this counts each byte once).
fn loopback_bytes() -> u64 {
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    dev.lines()
        .find_map(|l| l.trim_start().strip_prefix("lo:"))
        .and_then(|counters| counters.split_whitespace().next()?.parse().ok())
        .expect("no lo in /proc/net/dev")
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS, so that the peak of a
/// window can be read at its end. Returns whether the kernel allowed it.
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

// ---- PostgreSQL ----------------------------------------------------------------------

/// A fresh database on the server `admin` names, dropped by [`drop_database`].
async fn create_database(admin: &str) -> (String, String) {
    use sqlx::Connection;
    let name = format!("linli_test_load_{}_{}", std::process::id(), now_ms());
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    (name.clone(), format!("{base}/{name}"))
}

async fn drop_database(admin: &str, name: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

// ---- HTTP ----------------------------------------------------------------------------

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
}

#[derive(Deserialize)]
struct Created {
    id: Uuid,
}

#[derive(Deserialize)]
struct Code {
    code: String,
}

#[derive(Deserialize)]
struct Credential {
    device_id: Uuid,
    actors: Vec<String>,
    access_token: String,
    export_key: String,
}

impl Api {
    fn new(base: &str, local: Option<IpAddr>, pool: usize) -> Self {
        Api {
            http: reqwest::Client::builder()
                .local_address(local)
                .pool_max_idle_per_host(pool)
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            base: base.to_owned(),
        }
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
        body: serde_json::Value,
    ) -> T {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: {e}: {text}"))
    }

    async fn put(&self, path: &str, token: &str) {
        let response = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(
            status.is_success(),
            "PUT {path}: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// One sync exchange: the request envelope out, sealed as the phone library seals
    /// it, the response envelope back.
    async fn sync(
        &self,
        token: &str,
        keys: &DeviceKeys,
        body: Vec<u8>,
    ) -> Result<SyncResponse, String> {
        self.sync_sized(token, keys, body)
            .await
            .map(|(response, _)| response)
    }

    /// [`Api::sync`], with the response's size in bytes.
    async fn sync_sized(
        &self,
        token: &str,
        keys: &DeviceKeys,
        body: Vec<u8>,
    ) -> Result<(SyncResponse, usize), String> {
        let seal = seal::to_header(&keys.seal(&body));
        let response = self
            .http
            .post(format!("{}/api/v1/sync", self.base))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, ENVELOPE)
            .header(seal::HEADER, seal)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("sync: {e}"))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| format!("sync: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "sync: {status} {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        SyncResponse::decode(&bytes)
            .map(|r| (r, bytes.len()))
            .map_err(|e| format!("sync response: {e}"))
    }
}

impl Api {
    /// [`Api::sync`] at a station hub: the call `seq` of a session, sealed in its
    /// channel, as the phone library makes it.
    async fn sync_at_hub(
        &self,
        channel: &Channel,
        seq: u64,
        keys: &DeviceKeys,
        body: Vec<u8>,
    ) -> Result<SyncResponse, String> {
        let seal = seal::to_header(&keys.seal(&body));
        let call = Call::post("/api/v1/sync", ENVELOPE, body, Some(seal));
        let response = self
            .http
            .post(format!("{}/api/v1/hub/channel", self.base))
            .header(reqwest::header::CONTENT_TYPE, channel::MEDIA_TYPE)
            .body(channel.seal_call(seq, &call))
            .send()
            .await
            .map_err(|e| format!("sync: {e}"))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| format!("sync: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "sync: {status} {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        let reply = channel
            .open_reply(seq, &bytes)
            .map_err(|e| format!("the hub's reply: {e}"))?;
        if reply.status != 200 {
            return Err(format!(
                "sync: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ));
        }
        SyncResponse::decode(&reply.body).map_err(|e| format!("sync response: {e}"))
    }
}

// ---- phones --------------------------------------------------------------------------

struct Phone {
    n: usize,
    replica: Replica<MemoryReplicaStore>,
    principal: Principal,
    token: String,
    /// At a station hub: the session's channel, and its next call's number.
    hub: Option<(Channel, u64)>,
    /// The device.
    device: Uuid,
    /// The keys from its export key: the seal on every request, its key for a hub.
    keys: DeviceKeys,
    /// The phone's case files, kept open between visits (the app keeps what it shows).
    files: Vec<CaseFile>,
    visits: u64,
}

impl Phone {
    fn new(n: usize, credential: Credential, principal: Principal) -> Self {
        let actor = ActorId::from(hex::decode(&credential.actors[0]).unwrap());
        Phone {
            n,
            replica: Replica::new(MemoryReplicaStore::new(), actor),
            principal,
            token: credential.access_token,
            hub: None,
            device: credential.device_id,
            keys: DeviceKeys::new(&hex::decode(&credential.export_key).unwrap()).unwrap(),
            files: Vec::new(),
            visits: 0,
        }
    }

    /// Syncs until nothing is pending on either side.
    async fn settle(&mut self, api: &Api) {
        for _ in 0..20 {
            let request = self.replica.prepare(now_ms()).unwrap().encode();
            let response = self.sync(api, request).await.unwrap();
            let report = self.replica.apply(&response).unwrap();
            assert!(report.rejections.is_empty(), "{report:?}");
            if !report.more
                && report.repairing.is_empty()
                && !self.replica.store().need_held().unwrap()
                && self.replica.pending_changes().unwrap() == 0
            {
                return;
            }
        }
        panic!("phone {} did not settle in 20 syncs", self.n);
    }

    /// One sync exchange at the district server, or sealed in the channel of the
    /// phone's session at a hub.
    async fn sync(&mut self, api: &Api, request: Vec<u8>) -> Result<SyncResponse, String> {
        match &mut self.hub {
            None => api.sync(&self.token, &self.keys, request).await,
            Some((channel, next)) => {
                *next += 1;
                api.sync_at_hub(channel, *next, &self.keys, request).await
            }
        }
    }

    /// A new visit id: a v7 UUID whose random part names the phone and the visit.
    fn visit_id(&mut self, now: Timestamp) -> VisitId {
        self.visits += 1;
        let mut random = [0u8; 10];
        random[..4].copy_from_slice(&(self.n as u32).to_be_bytes());
        random[4..].copy_from_slice(&self.visits.to_be_bytes()[2..]);
        VisitId::new_v7(now, random)
    }

    /// Writes one visit to the next resident in turn (the rules' check included);
    /// returns which of `files` and the new change.
    fn write_visit(&mut self) -> (usize, ChangeHash) {
        let now = now_ms();
        let visit = self.visit_id(now);
        let i = (self.visits as usize) % self.files.len();
        let editor = Editor {
            principal: &self.principal,
            now,
        };
        let hash = self.files[i]
            .log_visit(&editor, visit, &record(now))
            .unwrap()
            .unwrap();
        (i, hash)
    }

    /// Logs one visit (see [`Phone::write_visit`]) and saves it; returns the document
    /// and the change to see receipted.
    fn log_visit(&mut self) -> (DocId, Hash) {
        let (i, hash) = self.write_visit();
        let file = &self.files[i];
        self.replica.save_case_file(file).unwrap();
        (file.id().into(), Hash::from(hash))
    }

    /// One exchange of the measured loop: the round-trip time, or what went wrong.
    async fn exchange(&mut self, api: &Api, load: Load) -> Result<Duration, String> {
        let expected = match load {
            Load::NothingNew => None,
            Load::NewVisit | Load::Paced(_) => Some(self.log_visit()),
        };
        let request = self.replica.prepare(now_ms()).unwrap().encode();
        let started = Instant::now();
        let response = self.sync(api, request).await?;
        let took = started.elapsed();
        let report = self.replica.apply(&response).map_err(|e| e.to_string())?;
        if !report.rejections.is_empty() {
            return Err(format!("rejected: {:?}", report.rejections));
        }
        if let Some((doc, hash)) = expected {
            let receipted = response
                .receipts
                .iter()
                .any(|r| r.doc == doc && r.heads.contains(&hash));
            if !receipted {
                return Err(format!("no receipt for the visit: {report:?}"));
            }
        } else if report.sent_changes + report.received_changes > 0 {
            return Err(format!("a nothing-new sync moved changes: {report:?}"));
        }
        Ok(took)
    }
}

fn record(now: Timestamp) -> VisitRecord {
    VisitRecord {
        project: PROJECT,
        unit: None,
        started_at: now - 3_600_000,
        ended_at: now - 1_800_000,
        services: vec![SERVICE],
        condition: Condition {
            wellbeing: Wellbeing::Good,
            systolic: Some(130),
            diastolic: Some(80),
            blood_sugar_dmmol: None,
            remarks: "精神不错".into(),
        },
        hazards: vec![],
        notes: "读报半小时".into(),
        follow_up_needed: false,
    }
}

fn profile(n: usize) -> Profile {
    Profile {
        name: format!("居民{n}"),
        address: format!("华沙六村 {n}号"),
        phone: String::new(),
        birth_year: Some(1938),
        living_situation: Some(LivingSituation::Alone),
        emergency_contact: String::new(),
        needs: String::new(),
        risk_level: Some(RiskLevel::Medium),
        visit_every_days: Some(7),
    }
}

/// An enrolment code for `user`, issued by `admin` through `api`, redeemed for a device
/// credential through `enrol_api` (which may sign in from another loopback address).
async fn enrol(api: &Api, enrol_api: &Api, admin: &str, user: Uuid, device: &str) -> Credential {
    let code: Code = api
        .post(
            "/api/v1/enrolment-codes",
            Some(admin),
            json!({"user": user}),
        )
        .await;
    enrol_api
        .post(
            "/api/v1/enrol",
            None,
            json!({"code": code.code, "device_name": device}),
        )
        .await
}

/// A station staff member's account (`login`) and enrolled phone, made by the admin.
async fn staff_phone(
    api: &Api,
    admin: &str,
    login: &str,
    district: DistrictId,
    station: StationId,
) -> Phone {
    let staff: Created = api
        .post(
            "/api/v1/users",
            Some(admin),
            json!({"login": login, "display_name": "站点社工", "role": "station_staff",
                   "district": district.0, "stations": [station.0]}),
        )
        .await;
    let credential = enrol(api, api, admin, staff.id, &format!("{login}'s phone")).await;
    let principal = Principal {
        user: UserId(staff.id),
        role: Role::StationStaff,
        scope: Scope::Stations {
            district,
            stations: BTreeSet::from([station]),
        },
    };
    Phone::new(usize::MAX, credential, principal)
}

/// The big station: its id, and how many case files were written for it.
struct BigStation {
    district: DistrictId,
    station: StationId,
    case_files: usize,
    /// How long writing them took.
    seeded_in: Duration,
}

async fn set_up(
    server: &ServerProcess,
    database_url: &str,
    settings: &Settings,
) -> (Api, Vec<Phone>, BigStation, StationId) {
    let phones = settings.phones;
    let api = Api::new(&server.base, None, phones + 16);
    let admin = server.admin_token(&api).await;
    let district: Created = api
        .post("/api/v1/districts", Some(&admin), json!({"name": "长宁区"}))
        .await;
    let station: Created = api
        .post(
            "/api/v1/stations",
            Some(&admin),
            json!({"name": "华阳路站", "district": district.id}),
        )
        .await;
    let (district, station) = (DistrictId(district.id), StationId(station.id));
    let big: Created = api
        .post(
            "/api/v1/stations",
            Some(&admin),
            json!({"name": "大站", "district": district.0}),
        )
        .await;
    let big = BigStation {
        district,
        station: StationId(big.id),
        case_files: settings.case_files,
        seeded_in: Duration::ZERO,
    };
    let big = seed_case_files(database_url, big).await;

    // Station staff: enrols a phone, creates every resident's case file on it and syncs.
    let mut staff_phone = staff_phone(&api, &admin, "staff", district, station).await;
    let residents: Vec<ResidentId> = (0..phones * RESIDENTS_PER_PHONE)
        .map(|n| {
            let mut random = [0xAB; 10];
            random[..8].copy_from_slice(&(n as u64).to_be_bytes());
            ResidentId::new_v7(now_ms(), random)
        })
        .collect();
    for (batch, chunk) in residents.chunks(CREATE_BATCH).enumerate() {
        for (i, resident) in chunk.iter().enumerate() {
            let editor = Editor {
                principal: &staff_phone.principal,
                now: now_ms(),
            };
            let file = CaseFile::create(
                staff_phone.replica.actor().clone(),
                &editor,
                *resident,
                district,
                station,
                &profile(batch * CREATE_BATCH + i),
            )
            .unwrap();
            staff_phone.replica.save_case_file(&file).unwrap();
        }
        staff_phone.settle(&api).await;
    }
    let staff_token = Arc::new(staff_phone.token.clone());
    // Enrolment codes come from a password sign-in, never from a device's token.
    let admin_token = Arc::new(admin.clone());

    // The volunteers, a few at a time: account, code, enrolment (spread over loopback
    // addresses, see PHONES_PER_ADDRESS), assignments, first sync.
    let enrol_apis: Vec<Api> = (0..phones.div_ceil(PHONES_PER_ADDRESS))
        .map(|k| {
            let ip = Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(k).unwrap());
            Api::new(&server.base, Some(IpAddr::V4(ip)), SETUP_CONCURRENCY)
        })
        .collect();
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..phones {
        let (api, enrol_api) = (api.clone(), enrol_apis[n / PHONES_PER_ADDRESS].clone());
        let (gate, staff_token, admin_token) =
            (gate.clone(), staff_token.clone(), admin_token.clone());
        let mine: Vec<ResidentId> =
            residents[n * RESIDENTS_PER_PHONE..(n + 1) * RESIDENTS_PER_PHONE].to_vec();
        tasks.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let user: Created = api
                .post(
                    "/api/v1/users",
                    Some(&staff_token),
                    json!({"login": format!("volunteer{n:03}"), "display_name": format!("志愿者{n}"),
                           "role": "volunteer"}),
                )
                .await;
            let credential =
                enrol(&api, &enrol_api, &admin_token, user.id, &format!("phone {n}")).await;
            for r in &mine {
                api.put(
                    &format!("/api/v1/volunteers/{}/residents/{}", user.id, r.0),
                    &staff_token,
                )
                .await;
            }
            let principal = Principal {
                user: UserId(user.id),
                role: Role::Volunteer,
                scope: Scope::Residents {
                    district,
                    residents: mine.iter().copied().collect(),
                },
            };
            let mut phone = Phone::new(n, credential, principal);
            phone.settle(&api).await;
            for r in &mine {
                let file = phone.replica.case_file((*r).into()).unwrap();
                phone.files.push(file.unwrap_or_else(|| {
                    panic!("phone {n} did not receive resident {r} at its first sync")
                }));
            }
            phone
        });
    }
    let mut all: Vec<Phone> = tasks.join_all().await;
    all.sort_by_key(|p| p.n);
    (api, all, big, station)
}

/// Writes the big station's case files into the server's database from this process,
/// as the server stores an upload (`SqlStore::append`: document, feed entry and
/// projection rows in one transaction), a few hundred at a time.
async fn seed_case_files(database_url: &str, mut big: BigStation) -> BigStation {
    use sync_core::protocol::store::{Append, DocPlace, ServerStore};
    let started = Instant::now();
    let store = Arc::new(
        server::store::SqlStore::connect(database_url, Default::default())
            .await
            .unwrap(),
    );
    let staff = Arc::new(Principal {
        user: UserId(Uuid::from_u128(0xB16)),
        role: Role::StationStaff,
        scope: Scope::Stations {
            district: big.district,
            stations: BTreeSet::from([big.station]),
        },
    });
    let (district, station) = (big.district, big.station);
    for first in (0..big.case_files).step_by(256) {
        let mut tasks = tokio::task::JoinSet::new();
        for n in first..(first + 256).min(big.case_files) {
            let (store, staff) = (store.clone(), staff.clone());
            tasks.spawn(async move {
                let mut random = [0xB1; 10];
                random[..8].copy_from_slice(&(n as u64).to_be_bytes());
                let now = now_ms();
                let resident = ResidentId::new_v7(now, random);
                let editor = Editor {
                    principal: &staff,
                    now,
                };
                let doc = CaseFile::create(
                    ActorId::from(vec![0xB1; 16]),
                    &editor,
                    resident,
                    district,
                    station,
                    &profile(n),
                )
                .unwrap()
                .into_doc();
                let changes = doc.get_changes(&[]);
                let outcome = store
                    .append(Append {
                        doc: resident.into(),
                        place: DocPlace {
                            district,
                            station: Some(station),
                            closed: false,
                        },
                        expected_heads: &[],
                        changes: changes.iter().map(|c| c.raw_bytes().to_vec()).collect(),
                        hashes: changes.iter().map(|c| c.hash()).collect(),
                        after: &doc,
                        device: None,
                        user: Some(staff.user),
                        received_at: now,
                    })
                    .await
                    .unwrap();
                assert!(
                    matches!(
                        outcome,
                        sync_core::protocol::store::AppendOutcome::Stored(_)
                    ),
                    "{outcome:?}"
                );
            });
        }
        tasks.join_all().await;
    }
    big.seeded_in = started.elapsed();
    big
}

/// The big station's first sync, measured.
struct FirstSync {
    backend: String,
    case_files: usize,
    seeded_in: Duration,
    exchanges: usize,
    bytes: usize,
    elapsed: Duration,
    peak_rss_kb: u64,
    peak_rss_window: bool,
}

/// The big station's staff member enrols a new phone, which syncs until it holds every
/// case file of the station.
async fn big_station_first_sync(server: &ServerProcess, api: &Api, big: &BigStation) -> FirstSync {
    let admin = server.admin_token(api).await;
    let mut phone = staff_phone(api, &admin, "big-station-staff", big.district, big.station).await;
    let pid = server.pid();
    let peak_rss_window = reset_peak_rss(pid);
    let started = Instant::now();
    let (mut exchanges, mut bytes) = (0, 0);
    loop {
        let request = phone.replica.prepare(now_ms()).unwrap().encode();
        let (response, size) = api
            .sync_sized(&phone.token, &phone.keys, request)
            .await
            .unwrap();
        let report = phone.replica.apply(&response).unwrap();
        assert!(report.rejections.is_empty(), "{report:?}");
        exchanges += 1;
        bytes += size;
        if !report.more && !phone.replica.store().need_held().unwrap() {
            break;
        }
        assert!(exchanges < 10_000, "the first sync did not end");
    }
    let elapsed = started.elapsed();
    // The station's case files, and the district's catalog if it has one.
    let held = phone.replica.store().doc_ids().unwrap().len();
    assert!(
        held >= big.case_files,
        "the big station's phone holds {held} documents of {} case files",
        big.case_files
    );
    FirstSync {
        backend: server.backend.clone(),
        case_files: big.case_files,
        seeded_in: big.seeded_in,
        exchanges,
        bytes,
        elapsed,
        peak_rss_kb: status_kb(pid, "VmHWM"),
        peak_rss_window,
    }
}

// ---- the measured runs ---------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    /// Phones with nothing new: the pure round-trip cost.
    NothingNew,
    /// Every sync carries one new visit.
    NewVisit,
    /// Every sync carries one new visit, and the phones together offer this many syncs
    /// a second, each phone on its own schedule: the latency a station sees at that rate.
    Paced(u32),
}

impl Load {
    fn name(self) -> String {
        match self {
            Load::NothingNew => "baseline: nothing new".into(),
            Load::NewVisit => "one new visit, closed loop".into(),
            Load::Paced(rate) => format!("one new visit, {rate}/s offered"),
        }
    }
}

struct Run {
    backend: String,
    load: Load,
    elapsed: f64,
    /// Round-trip times of the successful syncs, in microseconds, sorted.
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    /// Paced syncs that started more than 100 ms after their slot: the phones fell
    /// behind the offered rate.
    late: u64,
    server_cpu: f64,
    /// PostgreSQL's CPU over the window (`None` on SQLite, which runs in the server).
    db_cpu: Option<f64>,
    client_cpu: f64,
    /// Peak RSS of the server during the window (or its whole life, if the kernel
    /// refused the reset), kB.
    peak_rss_kb: u64,
    peak_rss_window: bool,
    /// Bytes that crossed loopback in the window (TCP/IP headers included).
    wire_bytes: u64,
}

impl Run {
    fn syncs(&self) -> usize {
        self.latencies.len()
    }

    fn per_sec(&self) -> f64 {
        self.syncs() as f64 / self.elapsed
    }

    /// The `q` quantile of the round-trip time, in ms.
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        f64::from(self.latencies[rank - 1]) / 1000.0
    }

    /// Bytes on the wire per sync, both ways.
    fn wire_per_sync(&self) -> f64 {
        self.wire_bytes as f64 / self.syncs() as f64
    }

    /// Server (and database) CPU per sync, ms.
    fn cpu_per_sync_ms(&self) -> f64 {
        1000.0 * (self.server_cpu + self.db_cpu.unwrap_or(0.0)) / self.syncs() as f64
    }

    fn max_ms(&self) -> f64 {
        self.latencies
            .last()
            .map_or(f64::NAN, |&l| f64::from(l) / 1000.0)
    }
}

#[derive(Default)]
struct PhoneTally {
    latencies: Vec<u32>,
    /// Paced syncs that started more than 100 ms after their slot.
    late: u64,
    errors: u64,
    first_error: Option<String>,
}

impl PhoneTally {
    /// One exchange: its round-trip time, or what went wrong.
    fn record(&mut self, exchange: Result<Duration, String>) {
        match exchange {
            Ok(took) => self
                .latencies
                .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX)),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Runs every phone in a closed loop for `secs`, measuring the server.
async fn measure(
    server: &ServerProcess,
    api: &Api,
    phones: Vec<Phone>,
    load: Load,
    secs: f64,
) -> (Vec<Phone>, Run) {
    let ticks = clock_ticks();
    let pid = server.pid();
    let n = phones.len();
    let peak_rss_window = reset_peak_rss(pid);
    let server_cpu = cpu_seconds(&pid.to_string(), ticks);
    let client_cpu = cpu_seconds("self", ticks);
    let postgres = server.backend == "postgres";
    let db_cpu = if postgres {
        postgres_cpu_seconds(ticks)
    } else {
        0.0
    };
    let wire = loopback_bytes();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for mut phone in phones {
        let api = api.clone();
        tasks.spawn(async move {
            let mut tally = PhoneTally::default();
            // Paced: this phone's slots, spread evenly over the phones.
            let period = match load {
                Load::Paced(rate) => Some(Duration::from_secs_f64(n as f64 / f64::from(rate))),
                _ => None,
            };
            let mut slot = period.map(|p| started + p.mul_f64(phone.n as f64 / n as f64));
            loop {
                if let (Some(at), Some(p)) = (slot, period) {
                    if at >= deadline {
                        break;
                    }
                    let now = Instant::now();
                    if now < at {
                        tokio::time::sleep_until(at.into()).await;
                    } else if now - at > Duration::from_millis(100) {
                        tally.late += 1;
                    }
                    slot = Some(at + p);
                } else if Instant::now() >= deadline {
                    break;
                }
                tally.record(phone.exchange(&api, load).await);
            }
            (phone, tally)
        });
    }
    let mut phones = Vec::with_capacity(n);
    let mut latencies = Vec::new();
    let (mut errors, mut first_error, mut late) = (0, None, 0);
    while let Some(done) = tasks.join_next().await {
        let (phone, tally) = done.unwrap();
        phones.push(phone);
        latencies.extend(tally.latencies);
        late += tally.late;
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    // A paced run offers syncs over exactly `secs`; a closed loop runs until its last
    // sync returns.
    let elapsed = match load {
        Load::Paced(_) => secs,
        _ => started.elapsed().as_secs_f64(),
    };
    let wire = loopback_bytes() - wire;
    let server_cpu = cpu_seconds(&pid.to_string(), ticks) - server_cpu;
    let client_cpu = cpu_seconds("self", ticks) - client_cpu;
    let db_cpu = postgres.then(|| postgres_cpu_seconds(ticks) - db_cpu);
    latencies.sort_unstable();
    phones.sort_by_key(|p| p.n);
    let run = Run {
        backend: server.backend.clone(),
        load,
        elapsed,
        latencies,
        errors,
        first_error,
        late,
        server_cpu,
        db_cpu,
        client_cpu,
        peak_rss_kb: status_kb(pid, "VmHWM"),
        peak_rss_window,
        wire_bytes: wire,
    };
    (phones, run)
}

/// One backend: start the server, set up, run the baseline and the visit load, stop.
async fn bench_backend(
    settings: &Settings,
    database_url: Option<&str>,
) -> (Vec<Run>, FirstSync, Vec<Phone>, Option<hub::Drain>) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), database_url);
    eprintln!(
        "{}: server {} (pid {}); writing {} case files of the big station, setting up {} phones with {} residents each",
        server.backend,
        server.base,
        server.pid(),
        settings.case_files,
        settings.phones,
        RESIDENTS_PER_PHONE
    );
    let setup = Instant::now();
    let url = match database_url {
        Some(url) => url.to_owned(),
        None => format!("sqlite://{}", dir.path().join("linli.db").display()),
    };
    let (api, phones, big, station) = set_up(&server, &url, settings).await;
    eprintln!(
        "{}: set up in {:.1} s; measuring ({} s nothing new, then {} s one new visit)",
        server.backend,
        setup.elapsed().as_secs_f64(),
        settings.baseline_secs,
        settings.secs
    );
    let (phones, baseline) = measure(
        &server,
        &api,
        phones,
        Load::NothingNew,
        settings.baseline_secs,
    )
    .await;
    let (phones, visits) = measure(&server, &api, phones, Load::NewVisit, settings.secs).await;
    let (phones, paced) = measure(
        &server,
        &api,
        phones,
        Load::Paced(settings.rate),
        settings.secs,
    )
    .await;
    eprintln!(
        "{}: the big station's first sync ({} case files)",
        server.backend, big.case_files
    );
    let first = big_station_first_sync(&server, &api, &big).await;
    let mut runs = vec![baseline, visits, paced];
    // A station hub in front of the same server, on SQLite (issue 15).
    let (phones, drain) = if database_url.is_none() {
        let (phones, hub_runs, drain) =
            hub::windows(&server, &api, station, phones, settings).await;
        runs.extend(hub_runs);
        (phones, Some(drain))
    } else {
        (phones, None)
    };
    server.stop();
    (runs, first, phones, drain)
}

// ---- the report ----------------------------------------------------------------------

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!(
        "{model}, {} cores, {:.0} GiB",
        cores(),
        memory_kb as f64 / 1024.0 / 1024.0
    )
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The peer's set-up: its time in seconds, or how far it got.
type PeerSetup = Result<f64, peer::Unfinished>;

fn print_report(settings: &Settings, runs: &[Run], firsts: &[FirstSync], peer: Option<&PeerSetup>) {
    let cores = cores() as f64;
    let share = |cpu: f64, r: &Run| 100.0 * cpu / (r.elapsed * cores);
    println!();
    println!(
        "== Linli server load: {} phones, {} residents each, over loopback HTTP ==",
        settings.phones, RESIDENTS_PER_PHONE
    );
    println!("machine: {}", machine());
    println!();
    println!(
        "| backend | load | window | syncs | syncs/s | p50 | p99 | max | errors | late starts | server CPU, % of machine | PostgreSQL CPU, % of machine | load generator CPU, % of machine | server peak RSS | loopback bytes per sync |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        println!(
            "| {} | {} | {:.1} s | {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} | {:.0} % | {} | {:.0} % | {:.1} MiB{} | {:.0} |",
            r.backend,
            r.load.name(),
            r.elapsed,
            r.syncs(),
            r.per_sec(),
            r.quantile_ms(0.50),
            r.quantile_ms(0.99),
            r.max_ms(),
            r.errors,
            r.late,
            share(r.server_cpu, r),
            r.db_cpu
                .map_or_else(|| "—".into(), |c| format!("{:.0} %", share(c, r))),
            share(r.client_cpu, r),
            r.peak_rss_kb as f64 / 1024.0,
            if r.peak_rss_window {
                ""
            } else {
                " (whole life)"
            },
            r.wire_per_sync(),
        );
    }
    println!();
    for backend in ["sqlite", "postgres"] {
        let find = |load: Load| runs.iter().find(|r| r.backend == backend && r.load == load);
        let (Some(baseline), Some(visits)) = (find(Load::NothingNew), find(Load::NewVisit)) else {
            continue;
        };
        let cpu_per_sync = Run::cpu_per_sync_ms;
        println!(
            "{backend}: one new visit vs nothing new (closed loops): throughput {:.2}×, p50 {:.2}×, p99 {:.2}×, server+database CPU per sync {:.2}× ({:.2} ms vs {:.2} ms)",
            visits.per_sec() / baseline.per_sec(),
            visits.quantile_ms(0.5) / baseline.quantile_ms(0.5),
            visits.quantile_ms(0.99) / baseline.quantile_ms(0.99),
            cpu_per_sync(visits) / cpu_per_sync(baseline),
            cpu_per_sync(visits),
            cpu_per_sync(baseline),
        );
    }
    for r in runs {
        if let Some(e) = &r.first_error {
            println!("{} / {}: first error: {e}", r.backend, r.load.name());
        }
    }
    let sqlite = |load: Load| {
        runs.iter()
            .find(|r| r.backend == "sqlite" && r.load == load)
    };
    // The peer (issue 14): Linli's goal is ≥ 5× samod on the same workload.
    let samod = runs.iter().find(|r| r.backend == "samod");
    match peer {
        None => println!("peer: not run (PostgreSQL's windows alone)"),
        Some(Ok(secs)) => println!(
            "peer: samod took {} phones' case files in {secs:.1} s",
            settings.peer_phones
        ),
        Some(Err(u)) => println!(
            "peer: samod had taken {} of the {} case files of {} phones when its set-up limit ran out after {:.0} s; no window ran",
            u.taken, u.case_files, u.phones, u.secs
        ),
    }
    if let (Some(linli), Some(samod)) = (sqlite(Load::NewVisit), samod) {
        println!(
            "peer, one new visit, closed loop (Linli with {} phones, samod with {}), Linli (SQLite) / samod:",
            settings.phones, settings.peer_phones
        );
        println!(
            "  throughput {:.2}× ({:.0} vs {:.0} syncs/s, goal ≥ 5×); loopback bytes per visit {:.2}× ({:.0} vs {:.0}); server CPU per visit {:.2}× ({:.2} ms vs {:.2} ms)",
            linli.per_sec() / samod.per_sec(),
            linli.per_sec(),
            samod.per_sec(),
            linli.wire_per_sync() / samod.wire_per_sync(),
            linli.wire_per_sync(),
            samod.wire_per_sync(),
            linli.cpu_per_sync_ms() / samod.cpu_per_sync_ms(),
            linli.cpu_per_sync_ms(),
            samod.cpu_per_sync_ms(),
        );
    }
    if let (Some(closed), Some(paced)) =
        (sqlite(Load::NewVisit), sqlite(Load::Paced(settings.rate)))
    {
        // The server must sustain the rate (closed loop) and answer fast at it (paced,
        // with every phone keeping its schedule and no errors).
        let met = settings.rate as f64 >= TARGET_SYNCS_PER_SEC
            && closed.per_sec() >= TARGET_SYNCS_PER_SEC
            && paced.per_sec() >= 0.99 * f64::from(settings.rate)
            && paced.quantile_ms(0.99) < TARGET_P99_MS
            && paced.late == 0
            && paced.errors == 0;
        println!(
            "target (SQLite, one new visit: ≥ {TARGET_SYNCS_PER_SEC:.0} syncs/s with p99 < {TARGET_P99_MS:.0} ms): sustains {:.0} syncs/s (closed loop); at {} syncs/s offered: {:.0} achieved, p99 {:.1} ms, {} late starts: {}",
            closed.per_sec(),
            settings.rate,
            paced.per_sec(),
            paced.quantile_ms(0.99),
            paced.late,
            if met { "met" } else { "NOT met" }
        );
    }
    println!();
    println!("The big station's first sync (a new phone of its staff member):");
    println!();
    println!(
        "| backend | case files | written by the bench in | exchanges | bytes received | time | server peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for f in firsts {
        println!(
            "| {} | {} | {:.1} s | {} | {} | {:.1} s | {:.1} MiB{} |",
            f.backend,
            f.case_files,
            f.seeded_in.as_secs_f64(),
            f.exchanges,
            f.bytes,
            f.elapsed.as_secs_f64(),
            f.peak_rss_kb as f64 / 1024.0,
            if f.peak_rss_window {
                ""
            } else {
                " (whole life)"
            },
        );
    }
    // The memory target: the server stays within 300 MB while serving its case
    // files, in every window and in the big station's first sync.
    for f in firsts {
        let peak = runs
            .iter()
            .filter(|r| r.backend == f.backend)
            .map(|r| r.peak_rss_kb)
            .chain([f.peak_rss_kb])
            .max()
            .unwrap_or(0);
        println!(
            "{}: server peak RSS with {} case files: {:.1} MiB ({:.0} MB), target ≤ 300 MB: {}",
            f.backend,
            f.case_files,
            peak as f64 / 1024.0,
            peak as f64 * 1024.0 / 1e6,
            if peak as f64 * 1024.0 <= 300e6 {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    if settings.postgres.is_none() {
        println!("PostgreSQL: skipped (LINLI_TEST_POSTGRES_URL is not set)");
    }
    println!();
}

fn main() {
    if let Ok(dir) = std::env::var(peer::SERVE_ENV) {
        peer::serve(&dir);
    }
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if settings.only_postgres {
        let admin = settings
            .postgres
            .clone()
            .expect("LINLI_LOAD_ONLY_POSTGRES needs LINLI_TEST_POSTGRES_URL");
        let (runs, first) = runtime.block_on(async {
            let (name, url) = create_database(&admin).await;
            let (runs, first, _, _) = bench_backend(&settings, Some(&url)).await;
            drop_database(&admin, &name).await;
            (runs, first)
        });
        print_report(&settings, &runs, &[first], None);
        return;
    }
    let (runs, firsts, peer, drain) = runtime.block_on(async {
        let (mut runs, first, phones, drain) = bench_backend(&settings, None).await;
        // The peer, with the same phones and case files, right after Linli's windows.
        let peer_phones = phones.into_iter().take(settings.peer_phones).collect();
        let peer = match peer::closed_loop(peer_phones, settings.secs).await {
            Ok((run, setup)) => {
                runs.push(run);
                Ok(setup)
            }
            Err(unfinished) => Err(unfinished),
        };
        let mut firsts = vec![first];
        match &settings.postgres {
            Some(admin) => {
                let (name, url) = create_database(admin).await;
                let (more, first, _, _) = bench_backend(&settings, Some(&url)).await;
                runs.extend(more);
                firsts.push(first);
                drop_database(admin, &name).await;
            }
            None => eprintln!(
                "PostgreSQL: skipped (LINLI_TEST_POSTGRES_URL is not set; scripts/postgres-env sets it)"
            ),
        }
        (runs, firsts, peer, drain)
    });
    print_report(&settings, &runs, &firsts, Some(&peer));
    if let Some(drain) = &drain {
        drain.report();
    }
    if settings.test {
        if let Err(u) = &peer {
            panic!(
                "samod held {} of {} case files after {:.0} s",
                u.taken, u.case_files, u.secs
            );
        }
        for r in &runs {
            assert_eq!(
                r.errors,
                0,
                "{} / {}: {} errors, the first: {:?}",
                r.backend,
                r.load.name(),
                r.errors,
                r.first_error
            );
            assert!(
                r.syncs() > 0,
                "{} / {}: no sync completed",
                r.backend,
                r.load.name()
            );
        }
    }
}
