//! Erasing a resident's personal data (issue 16), on both backends. On the web: only the
//! district's coordinators and admins, only a closed case file, only with the resident's
//! name typed to confirm; afterwards the case file, its rows and its quarantined batches
//! are gone, the visits stay anonymised for the statistics, the access log keeps its
//! entries, a phone's offline visit to the erased file is refused as `erased` (nothing
//! quarantined, nothing made again) and the phone deletes its copy. The retention
//! command (the server binary, as an operator runs it) erases case files closed longer
//! ago than its period, and a dry run erases nothing.

use crate::backends::{TestStore, conformance};
use crate::web_client::{Browser, STAFF_PASSWORD, coordinator, field, staff};
use crate::world::{World, stored};
use sync_core::ids::ResidentId;
use sync_core::model::ClosureReason;

/// One number from SQL with the resident's id bound as `$1`, on either backend.
async fn count(w: &World, sql: &'static str, resident: ResidentId) -> i64 {
    w.server.t.count(sql, Some(resident.0)).await
}

async fn a_resident_s_data_is_erased_on_request(t: TestStore) {
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let resident = w.resident(&mut c, w.station_a, "王阿婆").await;

    // A visit on the record, a refused one in quarantine, and an offline one pending.
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, resident).await;
    v.sync().await.unwrap();
    v.log_visit(resident, "量血压 150/95，头晕");
    v.sync().await.unwrap();
    v.log_visit(resident, "离线记录");
    w.unassign(v.user, resident).await;
    let report = v.sync().await.unwrap();
    assert_eq!(report.rejections.len(), 1, "{report:?}");
    assert_eq!(stored(&w.server, resident).await.quarantined, 1);
    let mut z = w.volunteer("zhao").await;
    w.assign(z.user, resident).await;
    z.sync().await.unwrap();
    z.log_visit(resident, "她女儿说要搬走了");

    let page_path = format!("/web/residents/{}", resident.0);
    let erase_path = format!("{page_path}/erase");
    let mut b = coordinator(&w).await;
    let csrf = field(&b.page(&page_path).await, "csrf");
    let confirm = [("csrf", csrf.as_str()), ("confirm", "王阿婆")];

    // The attacker's side, and the safeguards: nothing is erased.
    staff(&w, "staff-a", &[w.station_a]).await;
    let mut sa = Browser::new(&w.server);
    sa.sign_in("staff-a", STAFF_PASSWORD).await.expect(303);
    let csrf_a = field(&sa.page(&page_path).await, "csrf");
    sa.post(&erase_path, &[("csrf", &csrf_a), ("confirm", "王阿婆")])
        .await
        .expect(403);
    b.post(&erase_path, &[("csrf", "forged"), ("confirm", "王阿婆")])
        .await
        .expect(403);
    // An open case file is not erased: close it first.
    b.post(&erase_path, &confirm).await.expect(409);
    let page = b.page(&page_path).await;
    assert!(!page.contains("id=\"erase-form\""), "{page}");
    b.post(
        &format!("{page_path}/close"),
        &[("csrf", &csrf), ("reason", "moved_away"), ("note", "")],
    )
    .await
    .expect(303);
    let page = b.page(&page_path).await;
    assert!(page.contains("id=\"erase-form\""), "{page}");
    assert!(!sa.page(&page_path).await.contains("id=\"erase-form\""));
    b.post(&erase_path, &[("csrf", &csrf), ("confirm", "王")])
        .await
        .expect(400);
    assert_eq!(
        count(&w, "SELECT COUNT(*) FROM documents WHERE id = $1", resident).await,
        1
    );
    let logged = count(
        &w,
        "SELECT COUNT(*) FROM access_log WHERE resident = $1",
        resident,
    )
    .await;
    assert!(logged > 0);

    // Erased.
    let answer = b.post(&erase_path, &confirm).await;
    answer.expect(303);
    assert!(answer.location().contains("erased=1"));
    let list = b.page(&answer.location()).await;
    assert!(
        list.contains("id=\"notice\"") && !list.contains("王阿婆"),
        "{list}"
    );
    b.get(&page_path).await.expect(404);
    b.post(&erase_path, &confirm).await.expect(404);
    for (sql, left) in [
        ("SELECT COUNT(*) FROM documents WHERE id = $1", 0),
        ("SELECT COUNT(*) FROM changes WHERE doc = $1", 0),
        ("SELECT COUNT(*) FROM feed WHERE doc = $1", 0),
        ("SELECT COUNT(*) FROM resident_rows WHERE id = $1", 0),
        ("SELECT COUNT(*) FROM visit_rows WHERE resident = $1", 0),
        ("SELECT COUNT(*) FROM assignments WHERE resident = $1", 0),
        ("SELECT COUNT(*) FROM quarantine WHERE doc = $1", 0),
        ("SELECT COUNT(*) FROM erasures WHERE doc = $1", 1),
    ] {
        assert_eq!(count(&w, sql, resident).await, left, "{sql}");
    }
    // The visit stays for the statistics, with nothing that says whose it was.
    assert_eq!(
        count(
            &w,
            "SELECT COUNT(*) FROM visit_rows WHERE notes = '' AND systolic IS NULL AND resident <> $1",
            resident
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &w,
            "SELECT COUNT(*) FROM access_log WHERE resident = $1",
            resident
        )
        .await,
        logged,
        "the access log keeps its entries"
    );

    // The phone with an offline visit: refused as erased, nothing kept, its copy gone,
    // and the document is not made again from it.
    let report = z.sync().await.unwrap();
    let codes: Vec<_> = report.rejections.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, ["erased"], "{report:?}");
    z.sync().await.unwrap();
    assert!(!z.holds(resident));
    let after = stored(&w.server, resident).await;
    assert!(after.heads.is_empty(), "the document was made again");
    assert_eq!(after.quarantined, 0);
}

async fn the_retention_command_erases_files_closed_too_long_ago(t: TestStore) {
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let old = w.resident(&mut c, w.station_a, "去年结案").await;
    let recent = w.resident(&mut c, w.station_a, "上周结案").await;
    let open = w.resident(&mut c, w.station_a, "在访").await;
    const DAY: i64 = 86_400_000;
    for (r, days_ago) in [(old, 400), (recent, 7)] {
        c.clock_offset = -days_ago * DAY;
        c.edit(r, |f, e| {
            f.close(e, ClosureReason::MovedAway, "").unwrap();
        });
        c.clock_offset = 0;
        c.sync().await.unwrap();
    }

    let retention = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .arg("--database-url")
            .arg(&w.server.t.url)
            .arg("--data-dir")
            .arg(std::env::temp_dir())
            .arg("retention")
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let dry = retention(&["--closed-days", "365", "--dry-run"]);
    assert!(dry.contains(&old.0.to_string()), "{dry}");
    assert!(!dry.contains(&recent.0.to_string()), "{dry}");
    assert_eq!(
        count(&w, "SELECT COUNT(*) FROM documents WHERE id = $1", old).await,
        1
    );
    let done = retention(&["--closed-days", "365"]);
    assert!(done.starts_with("1 case files"), "{done}");
    for (r, left) in [(old, 0), (recent, 1), (open, 1)] {
        assert_eq!(
            count(&w, "SELECT COUNT(*) FROM documents WHERE id = $1", r).await,
            left
        );
    }
    // A period of zero days is refused: closing is not erasing.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("--database-url")
        .arg(&w.server.t.url)
        .args(["retention", "--closed-days", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

conformance!(
    a_resident_s_data_is_erased_on_request,
    the_retention_command_erases_files_closed_too_long_ago,
);
