//! A revoked phone's sealed export, handed over by an enrolled device (issue 12), on
//! both backends: the batch lands in quarantine under the revoked device with the code
//! `recovered`; and from the attacker's side, garbage, an export sealed with the wrong
//! key, another user's export, a second hand-over and a caller that is no device are
//! refused, keeping nothing.

use crate::backends::{TestStore, conformance};
use crate::world::World;
use sync_core::protocol::envelope::Bytes;
use sync_core::protocol::export::{Export, ExportBatch};

async fn a_revoked_devices_export_is_recovered_once_by_its_user(t: TestStore) {
    let w = World::new(t).await;
    let mut c = w.coordinator_phone().await;
    let resident = w.resident(&mut c, w.station_a, "王阿婆").await;
    let mut old = w.volunteer("wang").await;
    w.assign(old.user, resident).await;
    old.sync().await.unwrap();
    old.log_visit(resident, "没同步");
    let changes = old
        .replica
        .unsynced()
        .unwrap()
        .into_iter()
        .flat_map(|b| b.changes)
        .collect::<Vec<Bytes>>();
    assert_eq!(changes.len(), 1);
    let export = Export {
        device: old.device,
        user: old.user,
        made_at: server::now_ms(),
        batches: vec![ExportBatch {
            doc: resident.into(),
            changes,
        }],
    };
    let sealed = export.seal(&old.export_key, [3; 24]).unwrap();
    w.server
        .post(
            &format!("/api/v1/devices/{}/revoke", old.device.0),
            Some(&w.coordinator_token),
            &serde_json::json!({}),
        )
        .await
        .expect(204);

    // Another volunteer's device cannot hand it over; a password login is no device.
    let other = w.volunteer("li").await;
    other
        .recover(sealed.clone())
        .await
        .expect_error(403, "forbidden");
    let by_password = w
        .server
        .call(
            reqwest::Method::POST,
            "/api/v1/recover",
            Some(&w.coordinator_token),
            None,
        )
        .await;
    assert_eq!(by_password.status.as_u16(), 403, "{by_password:?}");
    // Garbage, and an export sealed with a key that is not the device's.
    let again = w.phone(old.user).await;
    again
        .recover(b"not an export".to_vec())
        .await
        .expect_error(400, "malformed");
    let forged = export.seal(&[9; 32], [3; 24]).unwrap();
    again.recover(forged).await.expect_error(400, "malformed");
    assert_eq!(w.server.store().quarantined(10).await.unwrap().len(), 0);

    // The same user's new device hands it over: kept in quarantine, once.
    let answer = again.recover(sealed.clone()).await;
    answer.expect(200);
    assert_eq!(answer.json()["kept"], 1);
    let q = w.server.store().quarantined(10).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(
        (q[0].code.as_str(), q[0].device, q[0].user),
        ("recovered", old.device, old.user)
    );
    again.recover(sealed).await.expect_error(409, "conflict");
    assert_eq!(w.server.store().quarantined(10).await.unwrap().len(), 1);
}

conformance!(a_revoked_devices_export_is_recovered_once_by_its_user);
