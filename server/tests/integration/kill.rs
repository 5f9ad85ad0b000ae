//! The real binary killed with SIGKILL in the middle of a stream of syncs, again and
//! again: every visit a phone was given a receipt for is in the database after each
//! kill, and once the server is back the phones converge with it. (A full disk and
//! the database going away: `faults.rs`.)

use crate::backends::{TestStore, conformance};
use crate::binary::{Data, login, put, stored_visits};
use crate::phone::Phone;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_core::ids::*;
use sync_core::protocol::store::ServerStore;

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

conformance!(receipted_visits_survive_sigkill);
