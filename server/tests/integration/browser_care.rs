//! A resident's care in a real browser (headless Chromium through fantoccini, like
//! `browser.rs`, on SQLite only), issue 12: the coordinator finds a resident by name in
//! the resident list, assigns a volunteer on the resident page and corrects the phone
//! number; the volunteer's phone then holds the case file with the new number.

use crate::backends::sqlite;
use crate::browser::{browser, click, driver, sign_in, type_into};
use crate::world::{COORDINATOR_PASSWORD, World};
use fantoccini::{Client, Locator};

async fn text_of(c: &Client, css: &str) -> String {
    c.wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_finds_a_resident_assigns_a_volunteer_and_corrects_the_phone() {
    let driver = driver().await;
    let w = World::new(sqlite().await).await;
    let mut c = w.coordinator_phone().await;
    let resident = w.resident(&mut c, w.station_a, "王阿婆").await;
    w.resident(&mut c, w.station_b, "李老伯").await;
    let mut v = w.volunteer("wang").await;
    v.sync().await.unwrap();
    assert!(!v.holds(resident));

    let base = w.server.base.clone();
    let b = browser(&driver).await;
    sign_in(&b, &base, "coordinator", COORDINATOR_PASSWORD).await;
    click(&b, Locator::Id("nav-residents")).await;
    type_into(&b, Locator::Id("search"), "王").await;
    click(&b, Locator::Id("apply-filters")).await;
    let list = text_of(&b, "#resident-list").await;
    assert!(
        list.contains("王阿婆") && !list.contains("李老伯"),
        "{list}"
    );
    click(&b, Locator::Css("#resident-list a.resident")).await;

    // Assign the volunteer from the menu.
    b.wait()
        .for_element(Locator::Css("#assign select[name=volunteer]"))
        .await
        .unwrap()
        .select_by_value(&v.user.0.to_string())
        .await
        .unwrap();
    click(&b, Locator::Css("#assign button[type=submit]")).await;
    assert!(text_of(&b, "#notice").await.contains("已指派"));
    assert!(text_of(&b, "#volunteers").await.contains("wang"));

    // Correct the phone number.
    click(&b, Locator::Css("#edit-profile summary")).await;
    let phone = b
        .find(Locator::Css("#profile-form input[name=phone]"))
        .await
        .unwrap();
    phone.clear().await.unwrap();
    phone.send_keys("13912345678").await.unwrap();
    click(&b, Locator::Css("#profile-form button[type=submit]")).await;
    assert!(text_of(&b, "#notice").await.contains("档案已保存"));
    assert!(text_of(&b, "main").await.contains("13912345678"));
    b.close().await.unwrap();

    v.sync().await.unwrap();
    assert_eq!(v.resident(resident).profile.phone, "13912345678");
}
