//! Accounts and a station move in a real browser (headless Chromium through
//! fantoccini, like `browser.rs`, on SQLite only), issue 12: the coordinator moves a
//! staff member from one station to the other, moves a resident to that station, and
//! disables a volunteer; each page says so, and the store holds the result.

use crate::backends::sqlite;
use crate::browser::{browser, click, driver, sign_in};
use crate::web_client::staff;
use crate::world::{COORDINATOR_PASSWORD, World};
use fantoccini::{Client, Locator};
use sync_core::protocol::store::ServerStore;

async fn notice(c: &Client) -> String {
    c.wait()
        .for_element(Locator::Id("notice"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_moves_staff_and_a_resident_and_disables_a_volunteer() {
    let driver = driver().await;
    let w = World::new(sqlite().await).await;
    let mut c = w.coordinator_phone().await;
    let resident = w.resident(&mut c, w.station_a, "王阿婆").await;
    let staffer = staff(&w, "staff-a", &[w.station_a]).await;
    let v = w.volunteer("wang").await;
    let base = w.server.base.clone();
    let b = browser(&driver).await;
    sign_in(&b, &base, "coordinator", COORDINATOR_PASSWORD).await;

    // The staff member covers station B instead of A.
    b.goto(&format!("{base}/web/admin/users/{}", staffer.0))
        .await
        .unwrap();
    let (a, bb) = (w.station_a.0.to_string(), w.station_b.0.to_string());
    click(&b, Locator::Css(&format!("#edit-user input[value='{a}']"))).await;
    click(&b, Locator::Css(&format!("#edit-user input[value='{bb}']"))).await;
    click(&b, Locator::Css("#edit-user button[type=submit]")).await;
    assert!(notice(&b).await.contains("已保存"));
    let district = w
        .server
        .store()
        .station_district(w.station_a)
        .await
        .unwrap()
        .unwrap();
    let covered: Vec<_> = w
        .server
        .store()
        .staff_stations_in(district)
        .await
        .unwrap()
        .into_iter()
        .filter(|(u, _)| *u == staffer)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(covered, vec![w.station_b]);

    // The resident moves to station B.
    b.goto(&format!("{base}/web/residents/{}", resident.0))
        .await
        .unwrap();
    click(&b, Locator::Css("#move-station summary")).await;
    b.find(Locator::Css("#station-form select[name=station]"))
        .await
        .unwrap()
        .select_by_value(&bb)
        .await
        .unwrap();
    click(&b, Locator::Css("#station-form button[type=submit]")).await;
    assert!(notice(&b).await.contains("已转站"));
    let doc = w
        .server
        .store()
        .load(resident.into())
        .await
        .unwrap()
        .unwrap();
    let file = sync_core::doc::casefile::CaseFile::from_doc(doc).unwrap();
    assert_eq!(file.station().unwrap(), w.station_b);

    // The volunteer is disabled.
    b.goto(&format!("{base}/web/admin/users/{}", v.user.0))
        .await
        .unwrap();
    click(&b, Locator::Css("#disable-user button[type=submit]")).await;
    assert!(notice(&b).await.contains("账号已停用"));
    let user = w.server.store().user(v.user).await.unwrap().unwrap();
    assert!(user.disabled);
    b.close().await.unwrap();
}
