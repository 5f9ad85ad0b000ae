//! The station hub's story (issue 15): a district server, a hub at station A reached
//! through an uplink the test can cut, and phones that sync with the hub over the
//! station's LAN while the uplink is down. The hub runs in this process on its own
//! SQLite store, as `server hub` runs it.

use crate::backends::{TestStore, conformance};
use crate::phone::Phone;
use crate::world::{World, stored};
use serde_json::json;
use server::auth::Keys;
use server::http::{AppState, HttpLimits};
use server::hub::upstream::{self, Upstream, UpstreamError};
use server::hub::{HubSide, cycle};
use server::store::{SqlStore, StoreOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use sync_core::ids::*;
use sync_core::model::ReviewStatus;
use sync_core::protocol::channel::{Call, Channel};
use sync_core::protocol::seal::{self, DeviceKeys};
use sync_core::protocol::store::{ReplicaStore, ServerStore};
use tokio::net::{TcpListener, TcpStream};

/// The station's uplink: a TCP relay to the district server that can be cut. Cut, it
/// closes every connection at once, as a dead uplink would.
pub(crate) struct Uplink {
    up: Arc<AtomicBool>,
    pub base: String,
}

impl Uplink {
    pub async fn to(target: &str) -> Uplink {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let open = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !open.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let open = open.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = async {
                            while open.load(Ordering::SeqCst) {
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            }
                        } => {}
                    }
                });
            }
        });
        Uplink { up, base }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// A hub serving on its own port, with its link to the district server.
struct Hub {
    state: Arc<AppState>,
    upstream: Upstream,
    base: String,
    _dir: tempfile::TempDir,
}

impl Hub {
    /// Enrols a hub for `station` through `uplink` and starts serving.
    async fn start(w: &World, uplink: &Uplink, station: StationId) -> Hub {
        let answer = w
            .server
            .post(
                "/api/v1/hub-codes",
                Some(&w.coordinator_token),
                &json!({ "station": station.0 }),
            )
            .await;
        answer.expect(201);
        let code = answer.json()["code"].as_str().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let credential = upstream::enrol(&uplink.base, &code, "华沙站", dir.path())
            .await
            .unwrap();
        assert_eq!(credential.station, station.0);
        // What a restart reads back.
        let credential = upstream::load_credential(dir.path()).unwrap();
        let url = format!("sqlite://{}", dir.path().join("linli.db").display());
        let store = SqlStore::connect(&url, StoreOptions::default())
            .await
            .unwrap();
        let state = AppState::for_hub(
            store,
            Keys::new(&server::auth::random_bytes::<32>().unwrap()).unwrap(),
            HubSide::new(credential.hub, StationId(credential.station)),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = server::http::hub_app(state.clone(), HttpLimits::default());
        tokio::spawn(server::http::serve_router(
            listener,
            router,
            std::future::pending(),
        ));
        Hub {
            upstream: Upstream::new(dir.path(), credential),
            state,
            base,
            _dir: dir,
        }
    }

    async fn cycle(&self) -> Result<server::hub::Cycle, UpstreamError> {
        cycle(&self.state, &self.upstream).await
    }

    async fn welcome(&self, phone: &mut Phone) -> Result<(), crate::serving::Answer> {
        welcome(&self.base, phone).await
    }
}

/// Moves `phone` to the hub at `base`, as the phone library does when it finds the hub
/// on the station's network: it answers the hub's challenge with its key for this hub,
/// gets a session, and keeps a cursor of its own for this server.
pub(crate) async fn welcome(base: &str, phone: &mut Phone) -> Result<(), crate::serving::Answer> {
    let http = reqwest::Client::new();
    let info =
        crate::serving::Answer::read(http.get(format!("{base}/api/v1/hub")).send().await.unwrap())
            .await;
    if info.status != 200 {
        return Err(info);
    }
    let info = info.json();
    let hub: uuid::Uuid = info["hub"].as_str().unwrap().parse().unwrap();
    let challenge = hex::decode(info["challenge"].as_str().unwrap()).unwrap();
    let key = DeviceKeys::new(&phone.export_key).unwrap().hub_key(hub);
    let proof = seal::hub_proof(&key, &challenge, phone.device.0);
    let nonce = server::auth::random_bytes::<16>().unwrap();
    let answer = crate::serving::Answer::read(
        http.post(format!("{base}/api/v1/hub/session"))
            .json(&json!({
                "device": phone.device.0,
                "challenge": hex::encode(&challenge),
                "proof": hex::encode(proof),
                "nonce": hex::encode(nonce),
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // The hub proves itself to the phone, on a refusal that would wipe it too.
    let hub_proof = hex::decode(answer.json()["hub_proof"].as_str().unwrap_or_default());
    let genuine = hub_proof
        .is_ok_and(|p| seal::verify_hub_answer(&key, hub, phone.device.0, &nonce, &challenge, &p));
    if answer.status == 200 || answer.code() == "device_revoked" {
        assert!(genuine, "the hub did not prove itself: {:?}", answer.json());
    }
    if answer.status != 200 {
        return Err(answer);
    }
    let session = <[u8; 16]>::try_from(challenge.as_slice()).unwrap();
    phone.enter_hub(
        base,
        Channel::new(&key, hub, phone.device.0, &nonce, session),
    );
    phone.replica.store_mut().set_cursor(0).unwrap();
    Ok(())
}

/// The hub's page for the station's staff.
async fn hub_page(hub: &Hub) -> String {
    let answer = reqwest::get(format!("{}/", hub.base)).await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.text().await.unwrap()
}

/// Moves `phone` back to the district server, as the phone library does: its own
/// token there, and the cursor it keeps for it (here, as the test keeps none, from
/// the start).
async fn back_at_the_district_server(w: &World, phone: &mut Phone) {
    phone.base = w.server.base.clone();
    phone.channel = None;
    phone.refresh().await.unwrap();
    phone.replica.store_mut().set_cursor(0).unwrap();
}

/// The visits of a resident's file, which the store holds.
async fn visits_in(store: &SqlStore, resident: ResidentId) -> Vec<sync_core::model::Visit> {
    let doc = store.load(resident.into()).await.unwrap();
    sync_core::doc::casefile::CaseFile::from_doc(doc.expect("the file is held"))
        .unwrap()
        .hydrate()
        .unwrap()
        .visits
}

/// The whole exchange happens with the uplink cut: a volunteer logs a visit at the
/// hub and is told it is held at the station, the station's staff receive it from the
/// hub and approve it. The uplink returns: the hub forwards both, the district server
/// takes them as the phones' own, and what the district's coordinator changes flows
/// back down through the hub. Nothing is lost or stored twice; a revocation at the
/// district server reaches the hub.
async fn phones_sync_at_the_hub_while_the_uplink_is_down(t: TestStore) {
    let w = World::new(t).await;
    let staff = w.user("staff", "station_staff", &[w.station_a]).await;
    let mut s = w.phone(staff).await;
    let resident = w.resident(&mut s, w.station_a, "李老伯").await;
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, resident).await;
    // The volunteer also visits a resident of station B, which this hub does not hold.
    let staff_b = w.user("staff_b", "station_staff", &[w.station_b]).await;
    let mut sb = w.phone(staff_b).await;
    let elsewhere = w.resident(&mut sb, w.station_b, "赵阿姨").await;
    w.assign(v.user, elsewhere).await;
    v.sync().await.unwrap();
    s.sync().await.unwrap();

    let uplink = Uplink::to(&w.server.base).await;
    let hub = Hub::start(&w, &uplink, w.station_a).await;
    let first = hub.cycle().await.unwrap();
    assert!(
        first.pulled_docs >= 1,
        "the hub mirrors its station: {first:?}"
    );
    assert!(
        hub.state
            .store
            .load(resident.into())
            .await
            .unwrap()
            .is_some()
    );

    // The uplink goes down; the phones reach the hub over the station's Wi-Fi.
    uplink.cut();
    let before = stored(&w.server, resident).await;
    hub.welcome(&mut v).await.unwrap();
    v.sync().await.unwrap();
    let visit = v.log_visit(resident, "读报，量血压 135/85");
    // Unsealed (an app too old to seal), the upload is refused, and nothing of it is
    // taken or kept at the hub: the phone still holds it.
    let unsealed = v.replica.prepare(v.now()).unwrap().encode();
    let refused = v.post_sync_sealed(unsealed, None).await.unwrap_err();
    refused.refused().expect_error(400, "seal_required");
    assert_eq!(hub.state.store.outbox_counts().await.unwrap().waiting, 0);
    let mut at_hub = hub
        .state
        .store
        .load(resident.into())
        .await
        .unwrap()
        .unwrap()
        .get_heads();
    at_hub.sort();
    assert_ne!(at_hub, v.heads(resident), "the hub stored nothing of it");
    assert!(v.pending() > 0);
    let report = v.sync().await.unwrap();
    assert_eq!(
        report.receipted,
        vec![DocId::from(resident)],
        "held at the station"
    );
    assert_eq!(v.pending(), 0);
    assert_eq!(
        stored(&w.server, resident).await,
        before,
        "the district server has nothing yet"
    );
    assert!(matches!(
        hub.cycle().await,
        Err(UpstreamError::Unreachable(_))
    ));
    // A visit to the station-B resident: the hub leaves it to the district server,
    // and the phone keeps it pending (and its copy of that file) without a refusal.
    let far_visit = v.log_visit(elsewhere, "送药");
    let report = v.sync().await.unwrap();
    assert!(report.receipted.is_empty(), "{report:?}");
    assert_eq!(report.rejections.len(), 1);
    assert_eq!(report.rejections[0].code, "not_here");
    assert_eq!(report.rejections[0].quarantine, 0);
    assert!(v.holds(elsewhere));
    assert!(v.pending() > 0);
    assert!(
        v.resident(elsewhere)
            .visits
            .iter()
            .any(|x| x.id == far_visit)
    );

    hub.welcome(&mut s).await.unwrap();
    s.sync().await.unwrap();
    assert!(
        s.resident(resident).visits.iter().any(|x| x.id == visit),
        "the station's staff see the visit through the hub"
    );
    assert_eq!(s.approve_all(&[resident]), 1);
    s.sync().await.unwrap();
    assert_eq!(hub.state.store.outbox_counts().await.unwrap().waiting, 2);
    // The station's staff open the hub's page: it says the district server is out of
    // reach and what it holds, and names no one.
    assert!(hub.cycle().await.is_err());
    let page = hub_page(&hub).await;
    assert!(
        page.contains("联系不上区服务器") && page.contains("华沙"),
        "{page}"
    );
    assert!(
        page.contains("<td id=\"waiting\">2（最早 oldest "),
        "{page}"
    );
    assert!(!page.contains("李老伯") && !page.contains("读报"), "{page}");

    // The uplink returns: the hub forwards what it holds.
    uplink.restore();
    let done = hub.cycle().await.unwrap();
    assert_eq!((done.forwarded, done.waiting), (2, 0), "{done:?}");
    let page = hub_page(&hub).await;
    assert!(page.contains("与区服务器联系正常"), "{page}");
    assert!(page.contains("<td id=\"waiting\">0</td>"), "{page}");
    assert!(page.contains("<td id=\"forwarded\">2</td>"), "{page}");
    let after = stored(&w.server, resident).await;
    assert_eq!(after.quarantined, 0);
    let central = w
        .server
        .store()
        .load(resident.into())
        .await
        .unwrap()
        .unwrap();
    let held = visits_in(w.server.store(), resident).await;
    let logged = held
        .iter()
        .find(|x| x.id == visit)
        .expect("the visit is held");
    assert_eq!(logged.volunteer, v.user);
    assert_eq!(
        logged.review.as_ref().map(|r| r.status),
        Some(ReviewStatus::Approved)
    );
    // Authorship is the phones': each new change is under its own phone's actor.
    for change in central.get_changes(&before.heads) {
        assert!(
            change.actor_id() == v.replica.actor() || change.actor_id() == s.replica.actor(),
            "a change under {} reached the district server",
            change.actor_id()
        );
    }
    // Forwarding again changes nothing: each request was taken once.
    assert_eq!(hub.cycle().await.unwrap().forwarded, 0);
    assert_eq!(visits_in(w.server.store(), resident).await.len(), 1);

    // The coordinator changes the resident's file at the district server; it reaches
    // the volunteer through the hub.
    let mut coordinator = w.coordinator_phone().await;
    coordinator.sync().await.unwrap();
    coordinator.edit(resident, |file, editor| {
        let mut profile = file.profile().unwrap();
        profile.needs = "需要助听器".into();
        file.edit_profile(editor, &profile).unwrap();
    });
    coordinator.sync().await.unwrap();
    assert!(hub.cycle().await.unwrap().pulled_docs >= 1);
    v.sync().await.unwrap();
    assert_eq!(v.resident(resident).profile.needs, "需要助听器");
    let heads = w
        .server
        .store()
        .load(resident.into())
        .await
        .unwrap()
        .unwrap()
        .get_heads();
    v.assert_converged(resident, &heads);

    // Back at the district server, the volunteer's phone hands over the station-B
    // visit it kept.
    back_at_the_district_server(&w, &mut v).await;
    let report = v.sync().await.unwrap();
    assert!(
        report.receipted.contains(&DocId::from(elsewhere)),
        "{report:?}"
    );
    assert_eq!(v.pending(), 0);
    assert_eq!(visits_in(w.server.store(), elsewhere).await.len(), 1);

    // The staff phone is revoked at the district server: at the hub's next exchange
    // it is refused there too, and told to purge.
    w.server
        .post(
            &format!("/api/v1/devices/{}/revoke", s.device.0),
            Some(&w.coordinator_token),
            &json!({}),
        )
        .await
        .expect(204);
    hub.cycle().await.unwrap();
    let refused = s.sync().await.unwrap_err().refused();
    refused.expect_error(401, "device_revoked");
    assert_eq!(refused.json()["purge"], json!(true));
    hub.welcome(&mut s)
        .await
        .unwrap_err()
        .expect_error(401, "device_revoked");

    // The hub itself is revoked at the district server: at its next exchange it stops
    // taking anything, and the volunteer's next visit stays on the phone.
    hub.welcome(&mut v).await.unwrap();
    let store = w.server.store();
    let district = store.station_district(w.station_a).await.unwrap().unwrap();
    let id = store.hubs_in(district).await.unwrap()[0].id;
    w.server
        .post(
            &format!("/api/v1/hubs/{id}/revoke"),
            Some(&w.coordinator_token),
            &json!({}),
        )
        .await
        .expect(204);
    assert!(matches!(hub.cycle().await, Err(UpstreamError::Revoked)));
    v.log_visit(resident, "中继停用后");
    let refused = v.sync().await.unwrap_err().refused();
    refused.expect_error(401, "hub_revoked");
    assert_ne!(refused.json()["purge"], json!(true), "nothing is purged");
    assert!(v.pending() > 0, "the visit waits for the district server");
    hub.welcome(&mut v)
        .await
        .unwrap_err()
        .expect_error(401, "hub_revoked");
    // Its page tells the station's staff.
    let page = hub_page(&hub).await;
    assert!(page.contains("已被区服务器停用"), "{page}");
}

/// The hub's roster lags the district server's while the uplink is down, both ways.
/// A resident newly assigned at the district server: the hub refuses the volunteer's
/// visit with nothing kept, the phone keeps it (and the file), and hands it over at
/// the district server. A resident unassigned at the district server: the hub takes
/// the visit (it does not know yet), and the district server, checking it again,
/// keeps it in quarantine under the volunteer's device for a coordinator. Nothing is
/// lost, nothing stored twice.
async fn the_hub_and_the_district_server_disagree_on_scope(t: TestStore) {
    let w = World::new(t).await;
    let staff = w.user("staff", "station_staff", &[w.station_a]).await;
    let mut s = w.phone(staff).await;
    let kept = w.resident(&mut s, w.station_a, "李老伯").await;
    let added = w.resident(&mut s, w.station_a, "王阿婆").await;
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, kept).await;
    v.sync().await.unwrap();

    let uplink = Uplink::to(&w.server.base).await;
    let hub = Hub::start(&w, &uplink, w.station_a).await;
    hub.cycle().await.unwrap();
    // The district server changes the volunteer's scope; the hub does not hear of it.
    uplink.cut();
    w.assign(v.user, added).await;
    v.sync().await.unwrap();
    assert!(v.holds(added));
    w.unassign(v.user, kept).await;
    let before_kept = stored(&w.server, kept).await;
    let before_added = stored(&w.server, added).await;

    hub.welcome(&mut v).await.unwrap();
    let on_added = v.log_visit(added, "新分配的探访");
    v.log_visit(kept, "已撤销分配后的探访");
    let report = v.sync().await.unwrap();
    assert_eq!(report.receipted, vec![DocId::from(kept)], "{report:?}");
    let refused: Vec<_> = report
        .rejections
        .iter()
        .map(|r| (r.doc, r.code.as_str(), r.quarantine))
        .collect();
    assert!(
        refused.contains(&(DocId::from(added), "out_of_scope", 0)),
        "{refused:?}"
    );
    assert!(v.holds(added), "the refused file stays on the phone");
    assert!(v.resident(added).visits.iter().any(|x| x.id == on_added));
    assert!(v.pending() > 0);
    assert_eq!(hub.state.store.outbox_counts().await.unwrap().waiting, 1);

    // The uplink returns. The visit to the unassigned resident is checked again and
    // kept in quarantine under the volunteer's device; the other was never forwarded.
    uplink.restore();
    assert_eq!(hub.cycle().await.unwrap().forwarded, 1);
    let after_kept = stored(&w.server, kept).await;
    assert_eq!(after_kept.heads, before_kept.heads);
    assert_eq!(after_kept.quarantined, before_kept.quarantined + 1);
    assert_eq!(
        w.server
            .store()
            .quarantine_open_for_doc(kept.into())
            .await
            .unwrap(),
        1,
        "kept for a coordinator"
    );
    assert_eq!(stored(&w.server, added).await.heads, before_added.heads);

    // At the district server the phone hands over what the hub left to it.
    back_at_the_district_server(&w, &mut v).await;
    let report = v.sync().await.unwrap();
    assert!(report.receipted.contains(&DocId::from(added)), "{report:?}");
    assert_eq!(visits_in(w.server.store(), added).await.len(), 1);
    let open = w.server.store().quarantine_open_for_doc(added.into()).await;
    assert_eq!(open.unwrap(), 0, "nothing of it quarantined");
    // The refusal is not part of the record, at the hub either: the hub started its
    // copy of the file again from the district server's, so a phone at the station
    // does not receive the refused visit from it, and the hub tells the volunteer's
    // phone what was refused and where it stood (the refused upload's heads).
    assert!(visits_in(&hub.state.store, kept).await.is_empty());
    hub.welcome(&mut s).await.unwrap();
    s.sync().await.unwrap();
    assert_eq!(
        s.resident(kept).visits.len(),
        0,
        "the refused visit reached the staff"
    );
    hub.welcome(&mut v).await.unwrap();
    let held = v.at_hub(&Call::get("/api/v1/hub/held")).await.unwrap();
    assert_eq!(held.status, 200);
    let held = held.json();
    let refused = &held["refused"][0];
    assert_eq!(refused["doc"], json!(kept.0), "{held}");
    assert_eq!(refused["code"], "out_of_scope", "{held}");
    assert_eq!(refused["heads"].as_array().map(Vec::len), Some(1), "{held}");
    assert!(refused["quarantine"].as_u64().unwrap() > 0, "{held}");
}

/// A resident moved to another station at the district server leaves the hub without
/// a trace at its next exchange: no phone at the hub receives the file any more, and a
/// visit the volunteer logs to it stays on the phone for the district server.
async fn a_resident_moved_away_leaves_the_hub(t: TestStore) {
    let w = World::new(t).await;
    let mut coordinator = w.coordinator_phone().await;
    let resident = w.resident(&mut coordinator, w.station_a, "孙阿婆").await;
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, resident).await;
    v.sync().await.unwrap();
    let uplink = Uplink::to(&w.server.base).await;
    let hub = Hub::start(&w, &uplink, w.station_a).await;
    hub.cycle().await.unwrap();
    assert!(
        hub.state
            .store
            .load(resident.into())
            .await
            .unwrap()
            .is_some()
    );

    coordinator.edit(resident, |file, editor| {
        file.set_station(editor, w.station_b).unwrap();
    });
    coordinator.sync().await.unwrap();
    hub.cycle().await.unwrap();
    assert!(
        hub.state
            .store
            .load(resident.into())
            .await
            .unwrap()
            .is_none(),
        "the hub forgot the file"
    );
    // Station A's staff, new at the hub, do not receive it there.
    let staff = w.user("staff", "station_staff", &[w.station_a]).await;
    let mut s = w.phone(staff).await;
    hub.cycle().await.unwrap();
    hub.welcome(&mut s).await.unwrap();
    s.sync().await.unwrap();
    assert!(!s.holds(resident));

    // The volunteer, still assigned, logs a visit at the hub: it waits on the phone.
    hub.welcome(&mut v).await.unwrap();
    let visit = v.log_visit(resident, "搬走之后的探访");
    let report = v.sync().await.unwrap();
    assert_eq!(report.rejections[0].code, "not_here", "{report:?}");
    assert!(v.holds(resident) && v.pending() > 0);
    back_at_the_district_server(&w, &mut v).await;
    assert!(
        v.sync()
            .await
            .unwrap()
            .receipted
            .contains(&DocId::from(resident))
    );
    let held = visits_in(w.server.store(), resident).await;
    assert!(held.iter().any(|x| x.id == visit));
}

/// Text that does not compress, `len` characters long.
fn noise(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,";
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(ALPHABET[usize::try_from(x % 64).unwrap()])
        })
        .collect()
}

/// The district server takes smaller requests than the hub (its operator set a lower
/// limit): a volunteer's long day of notes, held at the hub as one request, can never
/// be handed on. It must not hold up the requests behind it in the outbox, and the
/// hub hands those on in batches that fit.
async fn a_request_too_large_for_the_district_server_holds_up_nothing(t: TestStore) {
    let limits = HttpLimits {
        max_body: 128 << 10,
        ..HttpLimits::default()
    };
    let w = World::with_limits(t, limits).await;
    let staff = w.user("staff", "station_staff", &[w.station_a]).await;
    let mut s = w.phone(staff).await;
    let resident = w.resident(&mut s, w.station_a, "李老伯").await;
    let other = w.resident(&mut s, w.station_a, "王阿婆").await;
    let mut v = w.volunteer("wang").await;
    let mut u = w.volunteer("zhao").await;
    w.assign(v.user, resident).await;
    w.assign(u.user, other).await;
    v.sync().await.unwrap();
    u.sync().await.unwrap();
    let uplink = Uplink::to(&w.server.base).await;
    let mut hub = Hub::start(&w, &uplink, w.station_a).await;
    // Batches of 8 KiB: a request larger than that goes alone.
    hub.upstream = hub.upstream.clone().with_forward_bytes(8 << 10);
    hub.cycle().await.unwrap();
    uplink.cut();

    // Another volunteer's visits before and after the long day, in the outbox's order.
    hub.welcome(&mut u).await.unwrap();
    let first = u.log_visit(other, "陪聊");
    u.sync().await.unwrap();
    hub.welcome(&mut v).await.unwrap();
    for n in 0..80 {
        v.log_visit(resident, &noise(3_900, n + 1));
    }
    let big = v.replica.prepare(v.now()).unwrap().encode().len();
    assert!(
        big > 224 << 10,
        "more than the district server takes: {big}"
    );
    assert!(!v.sync().await.unwrap().receipted.is_empty());
    let second = u.log_visit(other, "读报");
    u.sync().await.unwrap();
    // More than a batch, less than the district server takes.
    let mut medium = Vec::new();
    for n in 0..6 {
        medium.push(u.log_visit(other, &noise(3_900, 100 + n)));
    }
    let size = u.replica.prepare(u.now()).unwrap().encode().len();
    assert!((8 << 10..224 << 10).contains(&size), "{size}");
    u.sync().await.unwrap();
    let third = u.log_visit(other, "量血压");
    u.sync().await.unwrap();
    assert_eq!(hub.state.store.outbox_counts().await.unwrap().waiting, 5);

    uplink.restore();
    let done = hub.cycle().await.unwrap();
    assert_eq!((done.forwarded, done.waiting), (5, 0), "{done:?}");
    // The hub told the district server what it held when it called (the
    // coordinators' hubs page shows it), and tells it again at its next call.
    let id = hub.state.hub.as_ref().unwrap().id;
    let told = w.server.store().hub(id).await.unwrap().unwrap().waiting;
    assert!(matches!(told, Some((5, Some(_)))), "{told:?}");
    hub.cycle().await.unwrap();
    let told = w.server.store().hub(id).await.unwrap().unwrap().waiting;
    assert_eq!(told, Some((0, None)));
    assert!(visits_in(w.server.store(), resident).await.is_empty());
    let ids: Vec<_> = visits_in(w.server.store(), other)
        .await
        .into_iter()
        .map(|x| x.id)
        .collect();
    let mut expected = vec![first, second];
    expected.extend(medium);
    expected.push(third);
    assert_eq!(ids, expected, "the others went through");
    // The volunteer's long day is still on the phone, for the district server.
    assert_eq!(v.resident(resident).visits.len(), 80);
}

/// The station's network is shared, so what a phone says to the hub travels sealed in
/// its session's channel, and the hub takes nothing else: no call in the clear, no
/// frame sealed with another key or changed on the way, and no frame twice (a relay
/// replaying a recorded call). A refused frame leaves the session working.
async fn only_a_sessions_sealed_calls_reach_the_hub(t: TestStore) {
    use reqwest::header::CONTENT_TYPE;
    use sync_core::protocol::channel::MEDIA_TYPE;
    let w = World::new(t).await;
    let staff = w.user("staff", "station_staff", &[w.station_a]).await;
    let mut s = w.phone(staff).await;
    let resident = w.resident(&mut s, w.station_a, "李老伯").await;
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, resident).await;
    v.sync().await.unwrap();
    let uplink = Uplink::to(&w.server.base).await;
    let hub = Hub::start(&w, &uplink, w.station_a).await;
    hub.cycle().await.unwrap();
    hub.welcome(&mut v).await.unwrap();
    v.sync().await.unwrap();
    let http = reqwest::Client::new();

    // Nothing but the handshake and the channel is served in the clear.
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/sync"),
        (reqwest::Method::GET, "/api/v1/hub/held"),
        (reqwest::Method::GET, "/api/v1/me"),
    ] {
        let answer = http
            .request(method, format!("{}{path}", hub.base))
            .bearer_auth(&v.access)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404, "{path} is served in the clear");
    }

    // A visit goes up sealed: the frame holds none of its words.
    v.log_visit(resident, "读报，量血压 135/85");
    let body = v.replica.prepare(v.now()).unwrap().encode();
    let seal = v.seal(&body);
    let call = Call::post(
        "/api/v1/sync",
        "application/vnd.linli.sync",
        body.clone(),
        Some(seal),
    );
    let words = "量血压".as_bytes();
    assert!(
        body.windows(words.len()).any(|w| w == words),
        "the test's own check"
    );
    let channel = v.channel.clone().unwrap();
    let frame = channel.seal_call(100, &call);
    assert!(!frame.windows(words.len()).any(|w| w == words));
    let post = |frame: Vec<u8>| {
        let request = http
            .post(format!("{}/api/v1/hub/channel", hub.base))
            .header(CONTENT_TYPE, MEDIA_TYPE)
            .body(frame);
        async move { crate::serving::Answer::read(request.send().await.unwrap()).await }
    };
    let answer = post(frame.clone()).await;
    answer.expect(200);
    let reply = channel.open_reply(100, &answer.body).unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    let taken = hub.state.store.outbox_counts().await.unwrap();
    assert_eq!(taken.waiting, 1);

    // Replayed, or with a number already used: refused, and nothing taken again.
    post(frame.clone())
        .await
        .expect_error(400, "channel_refused");
    post(channel.seal_call(99, &call))
        .await
        .expect_error(400, "channel_refused");
    // Changed on the way, or sealed with another key under the session's id.
    let mut changed = channel.seal_call(101, &call);
    let last = changed.len() - 1;
    changed[last] ^= 1;
    post(changed).await.expect_error(400, "channel_refused");
    let hub_id = hub.state.hub.as_ref().unwrap().id;
    let forged = Channel::new(&[0; 32], hub_id, v.device.0, &[1; 16], channel.session());
    post(forged.seal_call(102, &call))
        .await
        .expect_error(400, "channel_refused");
    post(b"LNCH not a frame".to_vec())
        .await
        .expect_error(400, "channel_refused");
    // A session that does not exist (a made-up id, or one the hub ended).
    let stranger = Channel::new(&[0; 32], hub_id, v.device.0, &[1; 16], [7; 16]);
    post(stranger.seal_call(0, &call))
        .await
        .expect_error(401, "hub_session_ended");
    assert_eq!(hub.state.store.outbox_counts().await.unwrap(), taken);

    // The session still works after all that.
    let answer = post(channel.seal_call(101, &Call::get("/api/v1/hub/held"))).await;
    answer.expect(200);
    assert_eq!(channel.open_reply(101, &answer.body).unwrap().status, 200);

    // A session is only opened with a nonce of the phone's, which its key comes from.
    let info = http
        .get(format!("{}/api/v1/hub", hub.base))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let challenge = hex::decode(info["challenge"].as_str().unwrap()).unwrap();
    let key = DeviceKeys::new(&v.export_key).unwrap().hub_key(hub_id);
    let answer = crate::serving::Answer::read(
        http.post(format!("{}/api/v1/hub/session", hub.base))
            .json(&json!({
                "device": v.device.0,
                "challenge": hex::encode(&challenge),
                "proof": hex::encode(seal::hub_proof(&key, &challenge, v.device.0)),
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    answer.expect_error(400, "bad_nonce");
}

/// Enrols at the hub behind `base` with `code`, as the phone library does: the call
/// sealed in the code's enrolment channel, named by its lookup. The opened answer, or
/// the hub's refusal in the clear.
async fn enrol_at_hub(base: &str, hub: uuid::Uuid, code: &str) -> crate::serving::Answer {
    use sync_core::protocol::channel;
    let code_hash = channel::code_hash(code);
    let session = server::auth::random_bytes::<16>().unwrap();
    let sealed_with = channel::enrolment_channel(&code_hash, hub, session);
    let call = Call::post(
        "/api/v1/enrol",
        "application/json",
        json!({ "code": "", "device_name": "李的手机" })
            .to_string()
            .into_bytes(),
        None,
    );
    let answer = crate::serving::Answer::read(
        reqwest::Client::new()
            .post(format!("{base}/api/v1/hub/enrol"))
            .header(
                channel::CODE_HEADER,
                hex::encode(channel::code_lookup(&code_hash)),
            )
            .header(reqwest::header::CONTENT_TYPE, channel::MEDIA_TYPE)
            .body(sealed_with.seal_call(0, &call))
            .send()
            .await
            .unwrap(),
    )
    .await;
    if answer.status != 200 {
        return answer;
    }
    let reply = sealed_with.open_reply(0, &answer.body).unwrap();
    crate::serving::Answer {
        status: reqwest::StatusCode::from_u16(reply.status).unwrap(),
        headers: reqwest::header::HeaderMap::new(),
        body: reply.body,
    }
}

/// Enrolling at a hub from the attacker's side: the hub takes only its own station's
/// codes, each once, and only from whoever holds the code (a lookup overheard on the
/// station's network opens nothing); the district server adopts a device only on the
/// certificate of the hub that enrolled it, unchanged, and only once.
async fn only_a_stations_code_enrols_at_its_hub_and_only_its_hub_vouches(t: TestStore) {
    let w = World::new(t).await;
    let li = w.user("li", "volunteer", &[]).await;
    let code = |station: Option<StationId>| {
        let body = match station {
            Some(s) => json!({ "user": li.0, "station": s.0 }),
            None => json!({ "user": li.0 }),
        };
        let server = &w.server;
        let token = w.coordinator_token.clone();
        async move {
            let answer = server
                .post("/api/v1/enrolment-codes", Some(&token), &body)
                .await;
            answer.expect(201);
            answer.json()["code"].as_str().unwrap().to_owned()
        }
    };
    let for_a = code(Some(w.station_a)).await;
    let for_b = code(Some(w.station_b)).await;
    let plain = code(None).await;
    let uplink = Uplink::to(&w.server.base).await;
    let hub = Hub::start(&w, &uplink, w.station_a).await;
    let hub_b = Hub::start(&w, &uplink, w.station_b).await;
    hub.cycle().await.unwrap();
    hub_b.cycle().await.unwrap();
    uplink.cut();
    let id = hub.state.hub.as_ref().unwrap().id;

    // Another station's code, or one for the district server only: unknown here.
    for other in [&for_b, &plain] {
        enrol_at_hub(&hub.base, id, other)
            .await
            .expect_error(401, "bad_credentials");
    }
    // The lookup overheard, the code not known: the frame does not open, and the code
    // is still there for its phone.
    let overheard =
        sync_core::protocol::channel::code_lookup(&sync_core::protocol::channel::code_hash(&for_a));
    let forged = sync_core::protocol::channel::enrolment_channel(&[9; 32], id, [1; 16]).seal_call(
        0,
        &Call::post("/api/v1/enrol", "application/json", b"{}".to_vec(), None),
    );
    crate::serving::Answer::read(
        reqwest::Client::new()
            .post(format!("{}/api/v1/hub/enrol", hub.base))
            .header("linli-code", hex::encode(overheard))
            .body(forged)
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect_error(400, "channel_refused");
    let enrolled = enrol_at_hub(&hub.base, id, &for_a).await;
    enrolled.expect(200);
    let credential = enrolled.json();
    assert_eq!(credential["user"]["id"], json!(li.0));
    assert_eq!(
        credential["district_url"],
        json!(uplink.base),
        "where it reaches the district server"
    );
    enrol_at_hub(&hub.base, id, &for_a)
        .await
        .expect_error(401, "bad_credentials");

    // The district server adopts only on the hub's certificate as it signed it.
    let certificate = credential["certificate"].as_str().unwrap().to_owned();
    let mut changed = certificate.clone().into_bytes();
    changed[40] = if changed[40] == b'0' { b'1' } else { b'0' };
    for bad in [
        String::from_utf8(changed).unwrap(),
        "00ff".into(),
        "not hex".into(),
    ] {
        w.server
            .post("/api/v1/enrol/adopt", None, &json!({ "certificate": bad }))
            .await
            .expect_error(400, "bad_certificate");
    }
    // Another hub cannot hand it on as its own.
    uplink.restore();
    let other = hub_b.upstream.enrolments(
        json!({ "certificates": [certificate] })
            .to_string()
            .into_bytes(),
    );
    let other: serde_json::Value = serde_json::from_slice(&other.await.unwrap()).unwrap();
    assert_eq!(other["answers"][0]["outcome"], "refused", "{other}");
    let refresh = credential["refresh_token"].as_str().unwrap().to_owned();
    let before = w
        .server
        .post("/api/v1/token", None, &json!({ "refresh_token": refresh }))
        .await;
    before.expect_error(401, "bad_credentials");
    // Twice at once (the hub's cycle and the phone's first sync can meet), then again.
    let body = json!({ "certificate": certificate });
    let adopt = || w.server.post("/api/v1/enrol/adopt", None, &body);
    let (first, second) = tokio::join!(adopt(), adopt());
    for adopted in [first, second, adopt().await] {
        adopted.expect(200);
        assert_eq!(adopted.json()["outcome"], "adopted");
    }
    // The phone's refresh token from the hub works at the district server now.
    w.server
        .post("/api/v1/token", None, &json!({ "refresh_token": refresh }))
        .await
        .expect(200);
    // And the code is spent there too.
    w.server
        .post(
            "/api/v1/enrol",
            None,
            &json!({ "code": for_a, "device_name": "x" }),
        )
        .await
        .expect_error(401, "bad_credentials");
}

conformance!(
    a_request_too_large_for_the_district_server_holds_up_nothing,
    only_a_stations_code_enrols_at_its_hub_and_only_its_hub_vouches,
    only_a_sessions_sealed_calls_reach_the_hub,
    phones_sync_at_the_hub_while_the_uplink_is_down,
    the_hub_and_the_district_server_disagree_on_scope,
    a_resident_moved_away_leaves_the_hub,
);
