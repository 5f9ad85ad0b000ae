//! Follow-up tickets in a real browser (headless Chromium through fantoccini, like
//! `browser.rs`, on SQLite only): the coordinator opens a ticket from a visit on the
//! resident's page, comments on it and closes it, and the page says so after each
//! step; the list then links to the closed ticket, and the volunteer's phone has it.

use crate::backends::sqlite;
use crate::browser::{browser, click, driver, sign_in, type_into};
use crate::web::log_world;
use crate::world::COORDINATOR_PASSWORD;
use fantoccini::{Client, Locator};
use sync_core::model::FollowUpStatus;

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_opens_comments_and_closes_a_follow_up() {
    let driver = driver().await;
    let mut log = log_world(sqlite().await).await;
    let base = log.w.server.base.clone();
    let c = browser(&driver).await;
    sign_in(&c, &base, "coordinator", COORDINATOR_PASSWORD).await;

    // The visit asked for a follow-up: its form folds open, the title prefilled from
    // the volunteer's remarks.
    c.goto(&format!("{base}/web/residents/{}", log.resident_a.0))
        .await
        .unwrap();
    let anchor = format!("visit-{}", log.visit_a.0);
    c.wait()
        .for_element(Locator::Id(&format!("open-from-{anchor}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let form = c
        .find(Locator::Id(&format!("open-{anchor}")))
        .await
        .unwrap();
    let title = form.find(Locator::Css("input[name=title]")).await.unwrap();
    assert_eq!(title.prop("value").await.unwrap().as_deref(), Some("头晕"));
    title.send_keys("，请社区医生上门").await.unwrap();
    form.find(Locator::Css("select[name=owner]"))
        .await
        .unwrap()
        .select_by_value(&log.volunteer_a.user.0.to_string())
        .await
        .unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The ticket's page.
    let heading = c
        .wait()
        .for_element(Locator::Id("ticket-title"))
        .await
        .unwrap();
    assert!(
        heading
            .text()
            .await
            .unwrap()
            .contains("头晕，请社区医生上门")
    );
    assert!(text_of(&c, "#notice").await.contains("同步"));
    assert_eq!(text_of(&c, "#status").await, "处理中");
    assert_eq!(text_of(&c, "#owner").await, "wang");
    assert!(text_of(&c, "#no-comments").await.contains("还没有留言"));
    let ticket_url = c.current_url().await.unwrap();
    assert!(ticket_url.path().starts_with("/web/follow-ups/"));

    // A comment.
    type_into(&c, Locator::Id("comment-text"), "已电话联系家属").await;
    click(&c, Locator::Id("comment-button")).await;
    let comment = c
        .wait()
        .for_element(Locator::Css("li.comment"))
        .await
        .unwrap();
    let text = comment.text().await.unwrap();
    assert!(
        text.contains("已电话联系家属") && text.contains("李协调"),
        "{text}"
    );
    assert!(text_of(&c, "#notice").await.contains("留言已保存"));

    // Closed with a resolution: the forms to assign and close are gone.
    type_into(&c, Locator::Id("resolution-text"), "医生已上门，血压正常").await;
    click(&c, Locator::Id("close-button")).await;
    c.wait()
        .for_element(Locator::Id("closed-by"))
        .await
        .unwrap();
    assert_eq!(text_of(&c, "#status").await, "已关闭");
    assert_eq!(text_of(&c, "#resolution").await, "医生已上门，血压正常");
    assert!(text_of(&c, "#closed-by").await.contains("李协调"));
    assert!(c.find(Locator::Id("close-form")).await.is_err());
    assert!(c.find(Locator::Id("assign-form")).await.is_err());

    // The closed list links to it.
    c.goto(&format!("{base}/web/follow-ups?status=closed"))
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#follow-up-list a.ticket"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Id("ticket-title"))
        .await
        .unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), ticket_url.path());
    c.close().await.unwrap();

    // The volunteer's phone has the closed ticket and its comment.
    log.volunteer_a.sync().await.unwrap();
    let tickets = log.volunteer_a.resident(log.resident_a).follow_ups;
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    let ticket = &tickets[0];
    assert_eq!(ticket.title, "头晕，请社区医生上门");
    assert_eq!(ticket.visit, Some(log.visit_a));
    assert_eq!(ticket.owner, Some(log.volunteer_a.user));
    assert_eq!(ticket.status, FollowUpStatus::Closed);
    assert_eq!(ticket.resolution, "医生已上门，血压正常");
    assert_eq!(ticket.comments.len(), 1);
    assert_eq!(ticket.comments[0].text, "已电话联系家属");
}
