//! Refused changes in a real browser (headless Chromium through fantoccini, like
//! `browser.rs`, on SQLite only), issue 12: a visit logged offline to a resident
//! unassigned before the sync reaches the coordinator, who finds it from the menu,
//! reads who sent what and why, and dismisses it with a reason that the volunteer's
//! phone then holds; a second one is accepted and appears on the resident's page.

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
async fn a_coordinator_dismisses_one_refused_visit_and_accepts_another() {
    let driver = driver().await;
    let w = World::new(sqlite().await).await;
    let mut coordinator_phone = w.coordinator_phone().await;
    let resident = w
        .resident(&mut coordinator_phone, w.station_a, "王阿婆")
        .await;
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, resident).await;
    v.sync().await.unwrap();
    v.log_visit(resident, "晚上八点上门，陪聊");
    w.unassign(v.user, resident).await;
    let report = v.sync().await.unwrap();
    let first = report.rejections[0].quarantine;
    assert!(first > 0, "{report:?}");

    let base = w.server.base.clone();
    let c = browser(&driver).await;
    sign_in(&c, &base, "coordinator", COORDINATOR_PASSWORD).await;
    click(&c, Locator::Id("nav-quarantine")).await;
    let row = text_of(&c, &format!("#refusal-{first}")).await;
    assert!(row.contains("王阿婆"), "{row}");
    assert!(row.contains("wang"), "{row}");
    assert!(row.contains("晚上八点上门，陪聊"), "{row}");
    assert!(row.contains("out_of_scope"), "{row}");
    click(&c, Locator::Css(&format!("#refusal-{first} a.open"))).await;
    type_into(
        &c,
        Locator::Css("#dismiss input[name=note]"),
        "该老人已转给其他志愿者",
    )
    .await;
    click(&c, Locator::Css("#dismiss button[type=submit]")).await;
    let notice = text_of(&c, "#notice").await;
    assert!(notice.contains("已驳回"), "{notice}");
    assert!(
        text_of(&c, "#decision")
            .await
            .contains("该老人已转给其他志愿者")
    );

    // The volunteer's phone receives the reason at its next sync.
    v.sync().await.unwrap();
    let refused = v.replica.refused().unwrap();
    let note = &refused[0].dismissed.as_ref().unwrap().note;
    assert!(note.contains("该老人已转给其他志愿者"), "{note}");

    // Another refused visit, accepted: it appears on the resident's page.
    w.assign(v.user, resident).await;
    v.sync().await.unwrap();
    v.log_visit(resident, "检查燃气灶，已关好阀门");
    w.unassign(v.user, resident).await;
    let second = v.sync().await.unwrap().rejections[0].quarantine;
    c.goto(&format!("{base}/web/quarantine")).await.unwrap();
    click(&c, Locator::Css(&format!("#refusal-{second} a.open"))).await;
    click(&c, Locator::Css("#accept button[type=submit]")).await;
    let notice = text_of(&c, "#notice").await;
    assert!(notice.contains("已接受"), "{notice}");
    click(&c, Locator::Css("#resident a")).await;
    let page = text_of(&c, "main").await;
    assert!(page.contains("检查燃气灶，已关好阀门"), "{page}");
    assert!(!page.contains("晚上八点上门，陪聊"), "dismissed: {page}");
    c.close().await.unwrap();
}
