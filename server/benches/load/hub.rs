//! A station hub under the same phones (issue 15): after SQLite's windows the bench
//! enrols a hub for the phones' station with the README's two commands (`server hub
//! enrol`, then `server hub`, the release binary as its own process on its own SQLite
//! file), waits until it has mirrored the station, moves every phone to it (a session
//! from the hub's challenge, a cursor of its own) and runs the one-new-visit closed
//! loop and the paced window against the hub. The uplink stays up, so the hub forwards
//! to the district server while it serves, as at a station whose uplink just came
//! back. After the windows the bench reports the outbox's backlog and how long the
//! hub took to drain it, then stops the hub with SIGTERM and checks it exits cleanly.

use super::{Api, Load, Phone, Run, ServerProcess, Settings, measure};
use serde_json::json;
use server::store::{SqlStore, StoreOptions};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use sync_core::ids::StationId;
use sync_core::protocol::channel::Channel;
use sync_core::protocol::seal;
use sync_core::protocol::store::ReplicaStore;

/// What the hub had to hand on after the windows, and how long it took.
pub struct Drain {
    /// Requests the district server answered for, in all.
    pub forwarded: i64,
    /// Requests still waiting when the last window ended.
    pub backlog: i64,
    /// Seconds from the end of the windows until the outbox was empty.
    pub secs: f64,
}

impl Drain {
    pub fn report(&self) {
        println!(
            "hub: the district server took {} forwarded requests; {} were waiting when the windows ended and the hub handed them on in {:.1} s",
            self.forwarded, self.backlog, self.secs
        );
    }
}

/// How long the hub may take to mirror the station, or to drain its outbox.
const PATIENCE: Duration = Duration::from_secs(600);

fn binary() -> std::ffi::OsString {
    std::env::var_os("LINLI_LOAD_SERVER_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_server").into())
}

/// Enrols and starts a hub for `station` in front of `central`, moves the phones to it
/// and measures it.
pub async fn windows(
    central: &ServerProcess,
    api: &Api,
    station: StationId,
    mut phones: Vec<Phone>,
    settings: &Settings,
) -> (Vec<Phone>, Vec<Run>, Drain) {
    let admin = central.admin_token(api).await;
    #[derive(serde::Deserialize)]
    struct Code {
        code: String,
    }
    let code: Code = api
        .post(
            "/api/v1/hub-codes",
            Some(&admin),
            json!({ "station": station.0 }),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let enrolled = Command::new(binary())
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "hub",
            "enrol",
            "--upstream",
            &central.base,
            "--code",
            &code.code,
        ])
        .output()
        .unwrap();
    assert!(
        enrolled.status.success(),
        "server hub enrol: {}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    let log = dir.path().join("hub.log");
    let mut child = Command::new(binary())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--bind", "127.0.0.1:0", "--log-format", "json"])
        .args(["hub", "--every-secs", "1"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .split(" listening on ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    std::thread::spawn(move || lines.for_each(drop));
    let hub = ServerProcess {
        child,
        base: base.clone(),
        backend: "hub (SQLite)".into(),
        admin_password: String::new(),
        log,
    };

    // The hub mirrors the station: every phone's case files (and the district's
    // catalog, if it has one).
    let url = format!("sqlite://{}", dir.path().join("linli.db").display());
    let store = SqlStore::connect(&url, StoreOptions::default())
        .await
        .unwrap();
    let expected = phones.iter().map(|p| p.files.len()).sum::<usize>();
    let started = Instant::now();
    while store.hub_mirrored().await.unwrap().len() < expected {
        assert!(
            started.elapsed() < PATIENCE,
            "the hub did not mirror the station"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "hub: {} mirrored {expected} documents in {:.1} s; moving {} phones to it",
        base,
        started.elapsed().as_secs_f64(),
        phones.len()
    );
    let hub_api = Api::new(&base, None, phones.len() + 16);
    for phone in &mut phones {
        phone.hub = Some((session(&hub_api, phone).await, 0));
        // The phone library keeps a cursor per server.
        phone.replica.store_mut().set_cursor(0).unwrap();
        phone.replica.store_mut().set_need_held(true).unwrap();
        phone.settle(&hub_api).await;
    }
    let (phones, visits) = measure(&hub, &hub_api, phones, Load::NewVisit, settings.secs).await;
    let (mut phones, paced) = measure(
        &hub,
        &hub_api,
        phones,
        Load::Paced(settings.rate),
        settings.secs,
    )
    .await;
    let backlog = store.outbox_counts().await.unwrap().waiting;
    let ended = Instant::now();
    loop {
        let counts = store.outbox_counts().await.unwrap();
        if counts.waiting == 0 {
            break;
        }
        assert!(
            ended.elapsed() < PATIENCE,
            "the hub did not drain its outbox: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain = Drain {
        forwarded: store.outbox_counts().await.unwrap().forwarded,
        backlog,
        secs: ended.elapsed().as_secs_f64(),
    };
    store.close().await;
    hub.stop();
    // Back to the district server for what comes after.
    for phone in &mut phones {
        phone.hub = None;
    }
    (phones, vec![visits, paced], drain)
}

/// A session at the hub: its challenge answered with the phone's key for this hub; its
/// channel.
async fn session(api: &Api, phone: &Phone) -> Channel {
    #[derive(serde::Deserialize)]
    struct Info {
        hub: uuid::Uuid,
        challenge: String,
    }
    #[derive(serde::Deserialize)]
    struct Session {
        hub_proof: String,
    }
    let info: Info = api
        .http
        .get(format!("{}/api/v1/hub", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let challenge = hex::decode(&info.challenge).unwrap();
    let device = phone.device;
    let key = phone.keys.hub_key(info.hub);
    let proof = seal::hub_proof(&key, &challenge, device);
    let nonce = server::auth::random_bytes::<16>().unwrap();
    let session: Session = api
        .post(
            "/api/v1/hub/session",
            None,
            json!({
                "device": device,
                "challenge": info.challenge,
                "proof": hex::encode(proof),
                "nonce": hex::encode(nonce),
            }),
        )
        .await;
    let proof = hex::decode(session.hub_proof).unwrap();
    assert!(seal::verify_hub_answer(
        &key, info.hub, device, &nonce, &challenge, &proof
    ));
    Channel::new(
        &key,
        info.hub,
        device,
        &nonce,
        challenge.try_into().unwrap(),
    )
}
