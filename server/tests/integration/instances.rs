//! Three server processes on one PostgreSQL database, as a deployment behind a reverse
//! proxy runs them (issue 14): started together on an empty database, they migrate it
//! once and make one first admin; phones enrol at one instance and sync through
//! whichever comes next, switching in the middle of a sync; a coordinator's page and
//! live events on one instance see what phones stored through another; an instance
//! killed in the middle of the stream loses nothing, the phones carry on through the
//! others, and every phone converges with the database.

use crate::backends::empty_postgres;
use crate::binary::{Data, login, put};
use crate::http::events_until;
use crate::phone::{Failure, Phone};
use crate::web_client::Browser;
use server::store::{SqlStore, StoreOptions};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use sync_core::protocol::store::{ReplicaStore, ServerStore};

/// Every instance signs and checks tokens with the same key (`LINLI_SIGNING_KEY` in a
/// deployment), so a token from one is good at all.
const SIGNING_KEY: &str = "one-signing-key-shared-by-every-instance-2026";

/// Exchanges tried by every phone so far, to kill an instance mid-stream.
static EXCHANGES: AtomicUsize = AtomicUsize::new(0);
/// Exchanges that found no instance answering (the killed one).
static UNANSWERED: AtomicUsize = AtomicUsize::new(0);

/// Syncs until settled, each exchange through the next instance in turn; an instance
/// that does not answer is skipped, as a proxy's next try would.
async fn sync_rotating(phone: &mut Phone, bases: &[String], next: &mut usize) {
    for _ in 0..64 {
        phone.base = bases[*next % bases.len()].clone();
        *next += 1;
        EXCHANGES.fetch_add(1, Ordering::SeqCst);
        let request = phone.replica.prepare(server::now_ms()).unwrap();
        match phone.send(&request).await {
            Ok(report) => {
                let quiet = !report.more
                    && !phone.replica.store().need_held().unwrap()
                    && phone.pending() == 0;
                if quiet {
                    return;
                }
            }
            Err(Failure::Transport(_)) => {
                UNANSWERED.fetch_add(1, Ordering::SeqCst);
            }
            Err(Failure::Refused(answer)) => panic!("refused: {answer:?}"),
        }
    }
    panic!("the phone did not settle in 64 exchanges");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_postgresql() {
    let url = empty_postgres().await;
    let data: Vec<Data> = (0..3)
        .map(|_| Data {
            dir: tempfile::tempdir().unwrap(),
            url: url.clone(),
        })
        .collect();
    let args = ["--signing-key", SIGNING_KEY];
    let (a, b, c) = tokio::join!(
        data[0].start_with(&args),
        data[1].start_with(&args),
        data[2].start_with(&args)
    );
    let mut processes = [Some(a), Some(b), Some(c)];
    let bases: Vec<String> = (processes.iter())
        .map(|p| p.as_ref().unwrap().base.clone())
        .collect();

    // Migrated once, one first admin, though all three started at once.
    let store = SqlStore::connect(&url, StoreOptions::default())
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(
        count("SELECT COUNT(DISTINCT version) FROM _sqlx_migrations WHERE success").await,
        i64::try_from(migrations).unwrap()
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM _sqlx_migrations").await,
        i64::try_from(migrations).unwrap()
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM users WHERE role = 'admin'").await,
        1
    );

    // Residents registered through two different instances.
    let site = data[0].set_up("coordinator", &["wang", "li", "zhao"]);
    let (mut coordinator, first) = site.resident(&bases[0], "王阿婆", 3).await;
    coordinator.base = bases[1].clone();
    let second = coordinator.register(site.station, "李老伯");
    coordinator.sync().await.unwrap();
    let token = login(&bases[1], &site.coordinator, &site.password).await;
    for v in &site.volunteers {
        put(&bases[2], &token, *v, second).await;
    }
    let residents = [first, second];

    // The coordinator watches on instance 2: signed in on the web, and listening.
    let mut browser = Browser::at(&bases[2]);
    browser
        .sign_in(&site.coordinator, &site.password)
        .await
        .expect(303);
    let token = login(&bases[2], &site.coordinator, &site.password).await;
    let mut events = reqwest::Client::new()
        .get(format!("{}/api/v1/events", bases[2]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);

    // Each volunteer enrols at another instance.
    let mut phones = Vec::new();
    for (i, code) in site.codes.iter().enumerate() {
        phones.push(Phone::enrol(&bases[i], code).await);
    }
    // A visit stored through instance 0 reaches instance 2's listener and page.
    let wang = &mut phones[0];
    wang.base = bases[0].clone();
    wang.sync().await.unwrap();
    let mut logged = BTreeSet::from([wang.log_visit(first, "经由第一台服务器")]);
    wang.sync().await.unwrap();
    events_until(&mut events, first).await;
    let page = browser.page(&format!("/web/residents/{}", first.0)).await;
    assert!(page.contains("经由第一台服务器"), "{page}");

    // Everyone logs and syncs at once, each exchange through the next instance;
    // instance 1 is killed in the middle of the stream.
    let bases = Arc::new(bases);
    let mut tasks = Vec::new();
    for (p, mut phone) in phones.into_iter().enumerate() {
        let bases = bases.clone();
        tasks.push(tokio::spawn(async move {
            let mut next = p;
            let mut logged = BTreeSet::new();
            sync_rotating(&mut phone, &bases, &mut next).await;
            for round in 0..6 {
                let resident = residents[(round + p) % residents.len()];
                logged.insert(phone.log_visit(resident, &format!("第 {round} 轮")));
                sync_rotating(&mut phone, &bases, &mut next).await;
            }
            (phone, logged, next)
        }));
    }
    let started = EXCHANGES.load(Ordering::SeqCst);
    while EXCHANGES.load(Ordering::SeqCst) < started + 12 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    processes[1].take().unwrap().kill();
    let mut phones = Vec::new();
    for task in tasks {
        let (phone, l, next) = task.await.unwrap();
        phones.push((phone, next));
        logged.extend(l);
    }
    let unanswered = UNANSWERED.load(Ordering::SeqCst);
    assert!(
        unanswered > 0,
        "the phones met the killed instance and went on"
    );
    eprintln!("{unanswered} exchanges went to the killed instance");
    // Once more round, so each phone has what the others sent last.
    for (phone, next) in &mut phones {
        sync_rotating(phone, &bases, next).await;
    }
    let phones: Vec<Phone> = phones.into_iter().map(|(p, _)| p).collect();

    // Every visit stored once; every phone holds exactly the database's documents, so
    // no cursor skipped what another instance numbered.
    let mut stored = BTreeSet::new();
    for r in residents {
        let doc = store.load(r.into()).await.unwrap().unwrap();
        let file = sync_core::doc::casefile::CaseFile::from_doc(doc.clone()).unwrap();
        stored.extend(file.hydrate().unwrap().visits.iter().map(|v| v.id));
        for phone in &phones {
            phone.assert_converged(r, &doc.get_heads());
        }
    }
    assert_eq!(stored, logged);
    assert_eq!(
        count("SELECT COUNT(*) FROM visit_rows").await,
        i64::try_from(logged.len()).unwrap()
    );
    assert!(store.check().await.unwrap().problems.is_empty());
    // The coordinator's page on instance 2 shows the last round's visits too.
    let page = browser.page(&format!("/web/residents/{}", first.0)).await;
    assert!(page.contains("第 5 轮"), "{page}");
    store.close().await;
}
