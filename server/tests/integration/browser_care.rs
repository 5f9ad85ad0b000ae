//! A resident's care in a real browser (headless Chromium through fantoccini, like
//! `browser.rs`, on SQLite only), issue 12: the coordinator finds a resident by name in
//! the resident list, assigns a volunteer on the resident page and corrects the phone
//! number; the volunteer's phone then holds the case file with the new number. Then
//! (issue 16) the coordinator closes the case file (in hospital) and reopens it, and
//! the phone lets it go and receives it again.

use crate::backends::sqlite;
use crate::browser::{browser, click, driver, sign_in, type_into};
use crate::world::{COORDINATOR_PASSWORD, World};
use fantoccini::{Client, Locator};

/// Waits until the page's notice says `expected` (a form's answer replaces the page,
/// and the notice of the page before may still be showing).
async fn notice_says(c: &Client, expected: &str) {
    for _ in 0..100 {
        if let Ok(e) = c.find(Locator::Id("notice")).await
            && e.text().await.is_ok_and(|t| t.contains(expected))
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the page never said {expected:?}");
}

/// The text of the element `css` finds, once the page holding it has settled (an
/// element of the page being replaced goes stale: look again).
async fn text_of(c: &Client, css: &str) -> String {
    for _ in 0..100 {
        if let Ok(e) = c.wait().for_element(Locator::Css(css)).await
            && let Ok(text) = e.text().await
        {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no settled {css}");
}

/// Waits until the browser is at a URL containing `part`.
async fn at_url(c: &Client, part: &str) {
    for _ in 0..100 {
        if c.current_url()
            .await
            .is_ok_and(|u| u.as_str().contains(part))
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the browser never reached a URL with {part:?}");
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
    at_url(&b, "q=").await;
    let list = text_of(&b, "#resident-list").await;
    assert!(
        list.contains("王阿婆") && !list.contains("李老伯"),
        "{list}"
    );
    click(&b, Locator::Css("#resident-list a.resident")).await;
    at_url(&b, &format!("/web/residents/{}", resident.0)).await;

    // Assign the volunteer from the menu.
    b.wait()
        .for_element(Locator::Css("#assign select[name=volunteer]"))
        .await
        .unwrap()
        .select_by_value(&v.user.0.to_string())
        .await
        .unwrap();
    click(&b, Locator::Css("#assign button[type=submit]")).await;
    notice_says(&b, "已指派").await;
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
    notice_says(&b, "档案已保存").await;
    assert!(text_of(&b, "main").await.contains("13912345678"));
    v.sync().await.unwrap();
    assert_eq!(v.resident(resident).profile.phone, "13912345678");

    // She goes into hospital: the coordinator closes her case file (issue 16), and
    // the volunteer's phone lets it go; reopened, it comes back.
    click(&b, Locator::Css("#close-file summary")).await;
    b.find(Locator::Id("close-reason"))
        .await
        .unwrap()
        .select_by_value("in_hospital")
        .await
        .unwrap();
    type_into(&b, Locator::Id("close-note"), "市第一人民医院").await;
    click(&b, Locator::Id("close")).await;
    notice_says(&b, "已结案").await;
    let banner = text_of(&b, "#closed-banner").await;
    assert!(
        banner.contains("住院") && banner.contains("市第一人民医院"),
        "{banner}"
    );
    v.sync().await.unwrap();
    assert!(!v.holds(resident), "the closed file left the phone");
    click(&b, Locator::Id("reopen")).await;
    notice_says(&b, "已重新开启").await;
    b.close().await.unwrap();
    v.sync().await.unwrap();
    assert!(v.holds(resident), "the reopened file is back");
}
