//! The access log (issue 16), on both backends: a coordinator's and a staff member's
//! views of a resident's page, an export of visits and an opened refused batch are
//! recorded before they are shown; the district's coordinator reads them newest first,
//! narrowed by resident or by user. From the attacker's side: station staff may not
//! read the log, another district's coordinator sees none of it, bad filters are 400s,
//! and the database itself refuses to change or delete an entry.

use crate::backends::{TestStore, conformance};
use crate::web_client::{Browser, STAFF_PASSWORD, coordinator, other_district_coordinator, staff};
use crate::world::World;

/// The rows of the access log page, as (who, what, resident, detail).
fn entries(page: &str) -> Vec<(String, String, String, String)> {
    let cell = |row: &str, class: &str| -> String {
        row.split(&format!("class=\"{class}\""))
            .nth(1)
            .map(|rest| {
                let inner = rest.split_once('>').map_or("", |(_, r)| r);
                inner.split('<').next().unwrap_or_default().to_owned()
            })
            .unwrap_or_default()
    };
    page.split("<tr class=\"access\">")
        .skip(1)
        .map(|row| {
            (
                cell(row, "who"),
                cell(row, "action"),
                cell(row, "resident"),
                cell(row, "detail"),
            )
        })
        .collect()
}

async fn reads_are_logged_and_only_the_district_s_managers_read_the_log(t: TestStore) {
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let resident = w.resident(&mut c, w.station_a, "王阿婆").await;
    let page_path = format!("/web/residents/{}", resident.0);

    let staff_id = staff(&w, "staff-a", &[w.station_a]).await;
    let mut sa = Browser::new(&w.server);
    sa.sign_in("staff-a", STAFF_PASSWORD).await.expect(303);
    let mut b = coordinator(&w).await;
    assert!(b.page("/web/access-log").await.contains("id=\"no-access\""));

    // Reads: the coordinator views the page, staff view it, the coordinator exports.
    let page = b.page(&page_path).await;
    assert!(page.contains("id=\"resident-access\""), "{page}");
    assert!(!sa.page(&page_path).await.contains("id=\"resident-access\""));
    let station = w.station_a.0.to_string();
    b.get(&format!("/web/visits/export.csv?station={station}"))
        .await
        .expect(200);

    let log = b.page("/web/access-log").await;
    let rows = entries(&log);
    assert_eq!(rows.len(), 3, "{log}");
    // Newest first: the export, then staff's view, then the coordinator's.
    assert_eq!(rows[0].1, "导出走访记录");
    assert_eq!(rows[0].2, "");
    assert!(
        rows[0].3.starts_with("csv, 0 visits, station="),
        "{:?}",
        rows[0]
    );
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str(), rows[1].2.as_str()),
        ("staff-a", "查看档案", "王阿婆")
    );
    assert_eq!(
        (rows[2].1.as_str(), rows[2].2.as_str()),
        ("查看档案", "王阿婆")
    );

    // Narrowed by resident (the resident page's link) and by user.
    let about = b
        .page(&format!("/web/access-log?resident={}", resident.0))
        .await;
    // Reading the log is not itself a view of the case file.
    assert_eq!(entries(&about).len(), 2, "{about}");
    assert!(about.contains("id=\"narrowed\""));
    let by = b
        .page(&format!("/web/access-log?user={}", staff_id.0))
        .await;
    assert_eq!(entries(&by).len(), 1, "{by}");
    for bad in ["resident=x", "user=1", "before=later"] {
        b.get(&format!("/web/access-log?{bad}")).await.expect(400);
    }

    // Station staff may not read the log.
    sa.get("/web/access-log").await.expect(403);

    // Another district's coordinator sees none of this district's entries.
    let mut b2 = other_district_coordinator(&w, "coordinator-2", STAFF_PASSWORD).await;
    assert!(
        b2.page("/web/access-log")
            .await
            .contains("id=\"no-access\"")
    );
    let leak = b2
        .get(&format!("/web/access-log?resident={}", resident.0))
        .await;
    leak.expect(200);
    assert!(entries(&leak.text()).is_empty());
    b2.get(&page_path).await.expect(404);

    // The log is append-only in the database itself.
    for sql in [
        "UPDATE access_log SET detail = 'nothing to see'",
        "DELETE FROM access_log",
    ] {
        let refused = w.server.t.try_execute(sql).await.expect_err(sql);
        assert!(refused.contains("append-only"), "{refused}");
    }
    assert_eq!(entries(&b.page("/web/access-log").await).len(), 3);
}

conformance!(reads_are_logged_and_only_the_district_s_managers_read_the_log);
