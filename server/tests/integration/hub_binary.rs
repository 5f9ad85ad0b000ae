//! A station hub as operators run it: the real `server` binary, enrolled and started
//! with the README's two commands, its uplink to the district server (another real
//! `server` process) cut while three volunteers' phones sync with it, then restored;
//! the hub is killed with SIGKILL in the middle of forwarding and started again.
//! Every visit the hub receipted reaches the district server exactly once, under its
//! volunteer, and nothing is quarantined.

use crate::backends::{TestStore, conformance};
use crate::binary::{Data, Process, login, stored_visits};
use crate::hub_story::{Uplink, welcome};
use crate::phone::Phone;
use serde_json::json;
use server::store::{SqlStore, StoreOptions};
use std::collections::BTreeSet;
use std::time::Duration;
use sync_core::ids::*;
use sync_core::protocol::store::ServerStore;

/// Starts `server hub` on `hub`'s data folder and waits for its "listening" line.
async fn start_hub(hub: &Data) -> Process {
    hub.spawn(&["hub", "--every-secs", "1"], |line| {
        line.split(" listening on ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
    })
    .await
}

/// Waits until `check` holds, for at most 30 s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting until {what}");
}

async fn the_hub_binary_survives_sigkill_mid_forward(t: TestStore) {
    let central = Data {
        dir: tempfile::tempdir().unwrap(),
        url: t.url.clone(),
    };
    let site = central.set_up("coordinator", &["wang", "zhang", "li"]);
    let server = central.start().await;
    let (_coordinator, resident) = site.resident(&server.base, "王阿婆", 3).await;
    let mut phones = Vec::new();
    for code in &site.codes {
        let mut phone = Phone::enrol(&server.base, code).await;
        phone.sync().await.unwrap();
        assert!(phone.holds(resident));
        phones.push(phone);
    }

    // The coordinator issues a hub code; the README's two commands do the rest.
    let token = login(&server.base, &site.coordinator, &site.password).await;
    let answer = crate::serving::Answer::read(
        reqwest::Client::new()
            .post(format!("{}/api/v1/hub-codes", server.base))
            .bearer_auth(&token)
            .json(&json!({ "station": site.station.0 }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    answer.expect(201);
    let code = answer.json()["code"].as_str().unwrap().to_owned();
    let uplink = Uplink::to(&server.base).await;
    let dir = tempfile::tempdir().unwrap();
    let hub = Data {
        url: format!("sqlite://{}", dir.path().join("linli.db").display()),
        dir,
    };
    let enrolled = hub.operate(&["hub", "enrol", "--upstream", &uplink.base, "--code", &code]);
    assert!(enrolled.contains("Enrolled hub"), "{enrolled}");
    let process = start_hub(&hub).await;
    let hub_base = process.base.clone();

    // Once the hub has mirrored the station (the roster and the resident's file), the
    // uplink goes down and the volunteers sync at the hub, a few visits each.
    let hub_store = SqlStore::connect(&hub.url, StoreOptions::default())
        .await
        .unwrap();
    eventually("the hub holds the resident", || async {
        hub_store.load(resident.into()).await.unwrap().is_some()
    })
    .await;
    let mut logged = BTreeSet::new();
    let mut author = std::collections::BTreeMap::new();
    for phone in &mut phones {
        let mut tries = 0;
        while welcome(&hub_base, phone).await.is_err() {
            tries += 1;
            assert!(tries < 600, "the hub never learned of the phone");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    uplink.cut();
    for (n, phone) in phones.iter_mut().enumerate() {
        phone.sync().await.unwrap();
        assert!(phone.holds(resident));
        for k in 0..4 {
            let visit = phone.log_visit(resident, &format!("第 {n}-{k} 次探访"));
            logged.insert(visit);
            author.insert(visit, phone.user);
            let report = phone.sync().await.unwrap();
            assert_eq!(
                report.receipted,
                vec![DocId::from(resident)],
                "held at the station"
            );
        }
    }
    assert!(
        stored_visits(&t.url, &[resident])
            .await
            .is_disjoint(&logged),
        "nothing reached the district server while the uplink was down"
    );

    // The uplink returns; the hub is killed as soon as the first visit arrives, in the
    // middle of its batch, and started again.
    uplink.restore();
    eventually("the first forwarded visit arrives", || {
        let url = t.url.clone();
        let logged = logged.clone();
        async move { !stored_visits(&url, &[resident]).await.is_disjoint(&logged) }
    })
    .await;
    process.kill();
    let unrecorded = hub_store.outbox_counts().await.unwrap();
    eprintln!("killed with the outbox at {unrecorded:?}");
    let process = start_hub(&hub).await;
    eventually("every visit arrives", || {
        let url = t.url.clone();
        let logged = logged.clone();
        async move { stored_visits(&url, &[resident]).await.is_superset(&logged) }
    })
    .await;
    // The restarted hub forwards its batch again: the district server receipts it
    // without storing anything twice, and the outbox empties.
    eventually("the hub's outbox empties", || async {
        hub_store.outbox_counts().await.unwrap().waiting == 0
    })
    .await;
    drop(process);

    // Exactly once, under its volunteer, nothing quarantined; the hub's outbox is
    // empty.
    let store = SqlStore::connect(&t.url, StoreOptions::default())
        .await
        .unwrap();
    let doc = store.load(resident.into()).await.unwrap().unwrap();
    let file = sync_core::doc::casefile::CaseFile::from_doc(doc)
        .unwrap()
        .hydrate()
        .unwrap();
    assert_eq!(file.visits.len(), logged.len());
    for visit in &file.visits {
        assert_eq!(Some(&visit.volunteer), author.get(&visit.id), "{visit:?}");
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM quarantine", None).await, 0);
    store.close().await;
    hub_store.close().await;
}

conformance!(the_hub_binary_survives_sigkill_mid_forward);
