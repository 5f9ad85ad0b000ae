//! A station hub with the real phone library (issue 15): phones enrolled at the
//! district server sync at the hub with `sync_at_hub` and nothing else configured; the
//! hub hands their visits on; the same phones sync at the district server afterwards
//! and agree with it.

use crate::world::{COORDINATOR_PASSWORD, Phone, Web, World, field, serve};
use mobile_ffi::{CancelToken, LinliError, ReviewStatus};
use serde_json::json;
use server::auth::Keys;
use server::http::{AppState, HttpLimits};
use server::hub::upstream::{self, Upstream};
use server::hub::{HubSide, cycle};
use server::store::{SqlStore, StoreOptions};
use std::sync::Arc;
use sync_core::ids::StationId;

/// A hub for the world's station, serving on a runtime of its own.
struct Hub {
    rt: tokio::runtime::Runtime,
    state: Arc<AppState>,
    upstream: Upstream,
    base: String,
    _dir: tempfile::TempDir,
}

impl Hub {
    fn start(w: &World) -> Hub {
        let (status, body) = w.server.call(
            "POST",
            "/api/v1/hub-codes",
            Some(&w.coordinator_token),
            Some(json!({ "station": w.station })),
        );
        assert_eq!(status, 201, "{body}");
        let code = body["code"].as_str().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (state, upstream, base) = rt.block_on(async {
            let credential = upstream::enrol(&w.server.base, &code, "华沙站", dir.path())
                .await
                .unwrap();
            let url = format!("sqlite://{}", dir.path().join("linli.db").display());
            let store = SqlStore::connect(&url, StoreOptions::default())
                .await
                .unwrap();
            let state = AppState::for_hub(
                store,
                Keys::new(&server::auth::random_bytes::<32>().unwrap()).unwrap(),
                HubSide::new(credential.hub, StationId(credential.station)),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(server::http::serve_router(
                listener,
                server::http::hub_app(state.clone(), HttpLimits::default()),
                std::future::pending(),
            ));
            (state, Upstream::new(dir.path(), credential), base)
        });
        Hub {
            rt,
            state,
            upstream,
            base,
            _dir: dir,
        }
    }

    /// One exchange with the district server.
    fn cycle(&self) -> server::hub::Cycle {
        self.rt
            .block_on(cycle(&self.state, &self.upstream))
            .unwrap()
    }

    fn sync(&self, phone: &Phone) -> Result<mobile_ffi::SyncOutcome, LinliError> {
        phone
            .client
            .sync_at_hub(self.base.clone(), CancelToken::new())
    }
}

/// A station with a hub, mirrored once: the coordinator's phone with one resident,
/// and a volunteer (`wang`) assigned to them, whose phone has synced at the district
/// server.
struct Station {
    w: World,
    coordinator: Phone,
    resident: String,
    wang: String,
    v: Phone,
    hub: Hub,
}

impl Station {
    fn new() -> Station {
        let w = World::new();
        let (coordinator, resident) = w.coordinator_with_resident("李老伯");
        let wang = w.volunteer("wang");
        w.assign(&wang, &resident);
        let v = w.phone(&wang);
        v.sync().unwrap();
        let hub = Hub::start(&w);
        hub.cycle();
        Station {
            w,
            coordinator,
            resident,
            wang,
            v,
            hub,
        }
    }
}

#[test]
fn phones_sync_at_a_hub_with_the_library_and_agree_with_the_district_server_after() {
    let w = World::new();
    let (coordinator, resident) = w.coordinator_with_resident("李老伯");
    let wang = w.volunteer("wang");
    w.assign(&wang, &resident);
    let v = w.phone(&wang);
    v.sync().unwrap();
    let zhao = w.volunteer("zhao");
    w.assign(&zhao, &resident);
    let z = w.phone(&zhao);
    z.sync().unwrap();

    let hub = Hub::start(&w);
    assert!(hub.cycle().pulled_docs >= 1);

    // At the station: the volunteer's visit is held at the hub.
    let visit = v.log(&resident, "读报，量血压");
    let outcome = hub.sync(&v).unwrap();
    assert_eq!(
        outcome.hub.as_deref(),
        Some(&*hub.state.hub.as_ref().unwrap().id.to_string())
    );
    assert_eq!(outcome.receipted, vec![resident.clone()], "{outcome:?}");
    assert!(outcome.complete);
    let status = v.client.sync_status().unwrap();
    assert_eq!(status.pending_changes, 0);
    assert_eq!(
        status
            .held_at_station
            .iter()
            .map(|r| r.visit_id.clone())
            .collect::<Vec<_>>(),
        vec![visit.clone()],
        "held at the station, not yet by the district server"
    );
    // Another volunteer at the station receives it from the hub.
    hub.sync(&z).unwrap();
    assert!(z.visit_ids(&resident).contains(&visit));

    // The hub hands it on; the coordinator, at the district server, sees it.
    let done = hub.cycle();
    assert_eq!((done.forwarded, done.waiting), (1, 0), "{done:?}");
    coordinator.sync().unwrap();
    assert!(coordinator.visit_ids(&resident).contains(&visit));
    // At its next contact with the hub the phone learns the district server holds it.
    let outcome = hub.sync(&v).unwrap();
    assert_eq!(outcome.held_by_district, vec![resident.clone()]);
    assert!(outcome.refused_by_district.is_empty());
    assert!(v.client.sync_status().unwrap().held_at_station.is_empty());

    // Back at the district server the phone's own cursor there still works, and a
    // second trip to the hub picks up where it left off.
    let outcome = v.sync().unwrap();
    assert_eq!(outcome.hub, None);
    assert!(outcome.complete);
    let second = v.log(&resident, "陪聊");
    assert_eq!(hub.sync(&v).unwrap().receipted, vec![resident.clone()]);
    assert_eq!(hub.cycle().forwarded, 1);
    coordinator.sync().unwrap();
    assert_eq!(
        coordinator.visit_ids(&resident),
        v.visit_ids(&resident),
        "{second}"
    );
    assert_eq!(v.sync().unwrap().rejections.len(), 0);

    // A revoked phone is refused at the hub too, once the hub has heard of it, and
    // its residents' data leaves the phone.
    w.revoke(&z.device());
    hub.cycle();
    assert!(matches!(hub.sync(&z), Err(LinliError::Revoked)));
    assert!(z.client.residents().unwrap_or_default().is_empty());
}

/// The hub takes a visit the district server will refuse: the coordinator unassigned
/// the volunteer while the hub could not hear of it (its uplink is down). The station
/// and the visit, held at the station and not yet handed on.
fn taken_after_an_unassignment() -> (Station, String) {
    let station = Station::new();
    let Station {
        w,
        resident,
        wang,
        v,
        hub,
        ..
    } = &station;
    w.unassign(wang, resident);
    let visit = v.log(resident, "查电线，换灯泡");
    assert_eq!(hub.sync(v).unwrap().receipted, vec![resident.clone()]);
    let held = v.client.sync_status().unwrap().held_at_station;
    assert_eq!(held.len(), 1, "{held:?}");
    (station, visit)
}

/// [`taken_after_an_unassignment`], then the uplink returns: the district server
/// checks the visit again and refuses it into its quarantine, under the volunteer's
/// device. The world, the coordinator's phone, the resident, the volunteer's phone,
/// the hub and the visit.
fn refused_after_the_hub_took_it() -> (World, Phone, String, Phone, Hub, String) {
    let (station, visit) = taken_after_an_unassignment();
    let Station {
        w,
        coordinator,
        resident,
        v,
        hub,
        ..
    } = station;
    assert_eq!(hub.cycle().forwarded, 1);
    (w, coordinator, resident, v, hub, visit)
}

/// The refused visit is on the phone's refused list, with the district server's
/// number and reason, and no longer held at the station nor part of the record.
fn set_aside(v: &Phone, resident: &str, visit: &str, reason: &str) -> mobile_ffi::RefusedChange {
    let refused = v.client.refused_changes().unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let r = refused[0].clone();
    assert_eq!(
        (
            r.resident_id.as_str(),
            r.resident_name.as_str(),
            r.code.as_str()
        ),
        (resident, "李老伯", "out_of_scope")
    );
    assert_eq!(r.reason, reason);
    assert_eq!(r.visits.len(), 1);
    assert_eq!(r.visits[0].visit_id, visit);
    let status = v.client.sync_status().unwrap();
    assert!(status.held_at_station.is_empty(), "{status:?}");
    assert_eq!((status.refused, status.pending_changes), (1, 0));
    assert!(
        v.client.residents().unwrap().is_empty(),
        "out of the volunteer's scope"
    );
    r
}

/// The coordinator's list holds the batch once, under the number the phone shows;
/// they accept it, the visit joins the record, and the phone's list empties.
fn accepted_once(
    w: &World,
    coordinator: &Phone,
    v: &Phone,
    number: i64,
    resident: &str,
    visit: &str,
) {
    let mut web = Web::sign_in(&w.server, "coordinator", COORDINATOR_PASSWORD);
    let (status, list) = web.get("/web/quarantine");
    assert_eq!(status, 200);
    assert_eq!(list.matches("id=\"refusal-").count(), 1, "{list}");
    let page = format!("/web/quarantine/{number}");
    let (status, html) = web.get(&page);
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("查电线，换灯泡"), "{html}");
    let csrf = field(&html, "csrf");
    let (status, _) = web.post(&format!("{page}/accept"), &[("csrf", &csrf)]);
    assert_eq!(status, 303);
    coordinator.sync().unwrap();
    assert!(coordinator.visit_ids(resident).contains(&visit.to_owned()));
    v.sync().unwrap();
    assert!(v.client.refused_changes().unwrap().is_empty());
}

/// The refusal comes back through the hub and joins the phone's refused list, as a
/// refusal at the district server would; nothing is quarantined twice, and the
/// coordinator's decision reaches the phone.
#[test]
fn a_refusal_at_the_district_server_reaches_the_phone_through_the_hub() {
    let (w, coordinator, resident, v, hub, visit) = refused_after_the_hub_took_it();
    let outcome = hub.sync(&v).unwrap();
    assert_eq!(outcome.refused_by_district.len(), 1, "{outcome:?}");
    assert_eq!(outcome.refused_by_district[0].code, "out_of_scope");
    let r = set_aside(
        &v,
        &resident,
        &visit,
        &outcome.refused_by_district[0].reason,
    );
    // Told again at the next contact, the phone does not set it aside twice.
    assert!(hub.sync(&v).unwrap().refused_by_district.is_empty());
    assert_eq!(v.client.refused_changes().unwrap(), vec![r.clone()]);
    // At the district server the phone hands nothing over again.
    assert!(v.sync().unwrap().rejections.is_empty());
    accepted_once(&w, &coordinator, &v, r.quarantine, &resident, &visit);
}

/// The volunteer's next contact is the district server itself, not the hub: the phone
/// asks it what it refused of what the hub took before it syncs, and sets it aside
/// before the resident leaves the phone with the volunteer's scope.
#[test]
fn a_refusal_of_what_the_hub_took_reaches_the_phone_at_the_district_server() {
    let (w, coordinator, resident, v, _hub, visit) = refused_after_the_hub_took_it();
    let outcome = v.sync().unwrap();
    assert_eq!(outcome.refused_by_district.len(), 1, "{outcome:?}");
    assert!(outcome.rejections.is_empty(), "nothing handed over twice");
    let r = set_aside(
        &v,
        &resident,
        &visit,
        &outcome.refused_by_district[0].reason,
    );
    assert!(v.sync().unwrap().refused_by_district.is_empty());
    accepted_once(&w, &coordinator, &v, r.quarantine, &resident, &visit);
}

/// The refusal of what the hub took comes after the volunteer wrote to that resident
/// again: the later visit builds on the refused one, so nothing is set aside on its
/// own, and at the district server the phone hands both over. They are refused
/// together as the batch the coordinator already has, grown: one decision, under the
/// number the phone shows, and accepting it brings both visits into the record.
#[test]
fn a_refusal_after_the_volunteer_wrote_again_is_still_one_batch() {
    let (w, coordinator, resident, v, _hub, visit) = refused_after_the_hub_took_it();
    let later = v.log(&resident, "再来陪聊天");
    let outcome = v.sync().unwrap();
    assert_eq!(outcome.rejections.len(), 1, "{outcome:?}");
    let refused = v.client.refused_changes().unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let ids: Vec<_> = refused[0]
        .visits
        .iter()
        .map(|x| x.visit_id.clone())
        .collect();
    assert!(ids.contains(&visit) && ids.contains(&later), "{ids:?}");
    let mut web = Web::sign_in(&w.server, "coordinator", COORDINATOR_PASSWORD);
    let (_, list) = web.get("/web/quarantine");
    assert_eq!(list.matches("id=\"refusal-").count(), 1, "{list}");
    let page = format!("/web/quarantine/{}", refused[0].quarantine);
    let (status, html) = web.get(&page);
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("查电线，换灯泡") && html.contains("再来陪聊天"),
        "{html}"
    );
    let csrf = field(&html, "csrf");
    let (status, _) = web.post(&format!("{page}/accept"), &[("csrf", &csrf)]);
    assert_eq!(status, 303);
    coordinator.sync().unwrap();
    let record = coordinator.visit_ids(&resident);
    assert!(
        record.contains(&visit) && record.contains(&later),
        "{record:?}"
    );
    v.sync().unwrap();
    assert!(v.client.refused_changes().unwrap().is_empty());
}

/// The volunteer meets the district server before the hub could hand the refused visit
/// on: the phone hands it over itself, it is refused and set aside there; when the
/// uplink returns the hub forwards the same visit, refused again, and the coordinator
/// still has one batch to decide on, under the number the phone shows.
#[test]
fn a_visit_refused_from_the_phone_and_from_the_hub_is_one_batch() {
    let (station, visit) = taken_after_an_unassignment();
    let Station { w, v, hub, .. } = station;

    let outcome = v.sync().unwrap();
    assert_eq!(outcome.rejections.len(), 1, "{outcome:?}");
    assert_eq!(outcome.rejections[0].code, "out_of_scope");
    let refused = v.client.refused_changes().unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].visits[0].visit_id, visit);

    assert_eq!(hub.cycle().forwarded, 1);
    let mut web = Web::sign_in(&w.server, "coordinator", COORDINATOR_PASSWORD);
    let (_, list) = web.get("/web/quarantine");
    assert_eq!(list.matches("id=\"refusal-").count(), 1, "{list}");
    assert!(
        list.contains(&format!("id=\"refusal-{}\"", refused[0].quarantine)),
        "{list}"
    );
    // The hub's relayed refusal names the same batch: nothing more is set aside.
    hub.sync(&v).unwrap();
    assert_eq!(v.client.refused_changes().unwrap(), refused);
}

/// The hub takes a visit and has not handed it on when the volunteer next meets the
/// district server (its uplink is still down; or its disk died, or it was taken, and
/// it never will). The phone still holds the visit, and that sync hands it over: held
/// at the station no more. A hub that forwards it afterwards stores nothing twice.
#[test]
fn a_visit_a_hub_never_hands_on_reaches_the_district_server_from_the_phone() {
    let Station {
        w,
        coordinator,
        resident,
        v,
        hub,
        ..
    } = Station::new();
    let visit = v.log(&resident, "量血压 135/85");
    assert_eq!(hub.sync(&v).unwrap().receipted, vec![resident.clone()]);
    assert_eq!(v.client.sync_status().unwrap().held_at_station.len(), 1);

    let outcome = v.sync().unwrap();
    assert_eq!(outcome.receipted, vec![resident.clone()], "{outcome:?}");
    assert!(outcome.rejections.is_empty());
    assert!(v.client.sync_status().unwrap().held_at_station.is_empty());
    coordinator.sync().unwrap();
    assert!(coordinator.visit_ids(&resident).contains(&visit));
    // Nothing more goes up at the next sync.
    assert_eq!(v.sync().unwrap().sent_changes, 0);

    // The hub forwards it after all: taken, stored once.
    assert_eq!(hub.cycle().forwarded, 1);
    coordinator.sync().unwrap();
    assert_eq!(coordinator.visit_ids(&resident), v.visit_ids(&resident));
    let mut web = Web::sign_in(&w.server, "coordinator", COORDINATOR_PASSWORD);
    let (_, list) = web.get("/web/quarantine");
    assert_eq!(list.matches("id=\"refusal-").count(), 0, "{list}");
}

/// A reviewer at the station approves a visit the hub holds, then meets the district
/// server before the hub has handed either on. The review builds on a visit only its
/// author's phone (or the hub) may hand over: nothing is refused or quarantined, and
/// once the hub forwards, the visit and its review are in the record and reach the
/// volunteer.
#[test]
fn a_review_made_at_the_hub_reaches_the_district_server_once_the_visit_does() {
    let Station {
        w,
        coordinator: reviewer,
        resident,
        v,
        hub,
        ..
    } = Station::new();
    let visit = v.log(&resident, "读报");
    hub.sync(&v).unwrap();
    hub.sync(&reviewer).unwrap();
    reviewer
        .client
        .review_visit(
            resident.clone(),
            visit.clone(),
            ReviewStatus::Approved,
            "很好".into(),
        )
        .unwrap();
    assert_eq!(
        hub.sync(&reviewer).unwrap().receipted,
        vec![resident.clone()]
    );

    let outcome = reviewer.sync().unwrap();
    assert!(outcome.complete && outcome.rounds <= 3, "{outcome:?}");
    assert!(
        outcome.rejections.iter().all(|r| r.code == "needs_others"),
        "{outcome:?}"
    );
    // The review still waits on the phone, for the district server.
    let status = reviewer.client.sync_status().unwrap();
    assert_eq!(status.pending_changes, 1, "{status:?}");
    let mut web = Web::sign_in(&w.server, "coordinator", COORDINATOR_PASSWORD);
    let (_, list) = web.get("/web/quarantine");
    assert_eq!(list.matches("id=\"refusal-").count(), 0, "{list}");

    assert_eq!(hub.cycle().forwarded, 2);
    let outcome = reviewer.sync().unwrap();
    assert!(
        outcome.complete && outcome.rejections.is_empty(),
        "{outcome:?}"
    );
    let status = reviewer.client.sync_status().unwrap();
    assert!(
        status.held_at_station.is_empty() && status.pending_changes == 0,
        "{status:?}"
    );
    v.sync().unwrap();
    let feedback = v.client.feedback().unwrap();
    assert_eq!(feedback.reviews.len(), 1, "{feedback:?}");
    assert_eq!(feedback.reviews[0].review.status, ReviewStatus::Approved);
}

/// Something on the station's network posing as the hub at the address the app found:
/// it knows the real hub's id (anyone can ask the hub), but not the key the district
/// shares with the real hub for this phone. It answers the session with a made-up
/// proof, or claims the phone was revoked. How many sync requests reached it.
fn impostor(hub: uuid::Uuid, claim_revoked: bool) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let syncs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = syncs.clone();
    let base = serve(move |(_, path, _, _)| {
        let (status, answer) = match path {
            "/api/v1/hub" => (
                "200 OK",
                json!({ "hub": hub, "station": hub, "challenge": "00112233445566778899aabbccddeeff" }),
            ),
            "/api/v1/hub/session" if claim_revoked => (
                "401 Unauthorized",
                json!({ "code": "device_revoked", "message": "revoked", "purge": true }),
            ),
            "/api/v1/hub/session" => (
                "200 OK",
                json!({ "expires_in": 900, "hub_proof": "00".repeat(32) }),
            ),
            _ => {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (
                    "404 Not Found",
                    json!({ "code": "not_found", "message": "" }),
                )
            }
        };
        Some((
            status.into(),
            "application/json",
            answer.to_string().into_bytes(),
        ))
    });
    (base, syncs)
}

/// Something on the station's network between the phone and the real hub: it relays
/// every request (so the hub's proof of itself passes through), keeps a copy of all it
/// carries, and, if `claim_revoked`, answers the first call in the session's channel
/// itself, in the clear, that the phone was revoked. What it carried.
fn relay(hub: &str, claim_revoked: bool) -> (String, Arc<std::sync::Mutex<Vec<u8>>>) {
    let carried = Arc::new(std::sync::Mutex::new(Vec::new()));
    let copy = carried.clone();
    let hub = hub.to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let base = serve(move |(method, path, code, body)| {
        copy.lock().unwrap().extend_from_slice(&body);
        if claim_revoked && path == "/api/v1/hub/channel" {
            let revoked = json!({ "code": "device_revoked", "message": "revoked", "purge": true });
            return Some((
                "401 Unauthorized".into(),
                "application/json",
                revoked.to_string().into_bytes(),
            ));
        }
        let url = format!("{hub}{path}");
        let mut answer = if method == "GET" {
            agent.get(&url).call().unwrap()
        } else {
            let media = if path == "/api/v1/hub/session" {
                "application/json"
            } else {
                "application/vnd.linli.channel"
            };
            let mut request = agent.post(&url).header("content-type", media);
            if let Some(code) = code {
                request = request.header("linli-code", code);
            }
            request.send(&body[..]).unwrap()
        };
        let status = match answer.status().as_u16() {
            200 => "200 OK",
            400 => "400 Bad Request",
            401 => "401 Unauthorized",
            _ => "500 Internal Server Error",
        };
        let said = answer.body_mut().read_to_vec().unwrap();
        copy.lock().unwrap().extend_from_slice(&said);
        Some((status.into(), "application/json", said))
    });
    (base, carried)
}

/// A relay between the phone and the real hub on the station's network reads none of
/// the records that pass, and its own claim, in the hub's name, that the phone was
/// revoked deletes nothing: the phone believes only what opens with its session's key.
#[test]
fn a_relay_on_the_station_network_reads_nothing_and_wipes_nothing() {
    let Station {
        resident, v, hub, ..
    } = Station::new();
    let visit = v.log(&resident, "检查燃气灶");

    let (base, _) = relay(&hub.base, true);
    let refused = v.client.sync_at_hub(base, CancelToken::new()).unwrap_err();
    assert!(
        matches!(&refused, LinliError::Refused { code, .. } if code == "hub_not_genuine"),
        "{refused:?}"
    );
    assert_eq!(v.client.sync_status().unwrap().pending_changes, 1);
    assert!(v.visit_ids(&resident).contains(&visit), "nothing deleted");

    let (base, carried) = relay(&hub.base, false);
    let outcome = v.client.sync_at_hub(base, CancelToken::new()).unwrap();
    assert_eq!(outcome.receipted, vec![resident.clone()]);
    let carried = carried.lock().unwrap();
    let holds = |words: &str| carried.windows(words.len()).any(|w| w == words.as_bytes());
    assert!(holds("challenge"), "the relay carried the handshake");
    assert!(!holds("检查燃气灶"), "the relay read the visit");
    assert!(!holds(&visit), "the relay read the visit's id");
}

/// The phone syncs only with a hub that proves it is the district's: to an impostor it
/// sends nothing of its records, and an impostor's claim that the phone was revoked
/// deletes nothing. The genuine hub then takes the visit.
#[test]
fn an_impostor_on_the_station_network_gets_nothing_and_wipes_nothing() {
    let Station {
        resident, v, hub, ..
    } = Station::new();
    let id = hub.state.hub.as_ref().unwrap().id;
    let visit = v.log(&resident, "检查燃气灶");

    for claim_revoked in [false, true] {
        let (base, syncs) = impostor(id, claim_revoked);
        let refused = v.client.sync_at_hub(base, CancelToken::new()).unwrap_err();
        assert!(
            matches!(&refused, LinliError::Refused { code, .. } if code == "hub_not_genuine"),
            "{refused:?}"
        );
        assert_eq!(syncs.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(v.client.sync_status().unwrap().pending_changes, 1);
        assert!(v.visit_ids(&resident).contains(&visit), "nothing deleted");
    }

    assert_eq!(hub.sync(&v).unwrap().receipted, vec![resident.clone()]);
}

/// A station whose hub learned, while its uplink still worked, a week-long code for a
/// newcomer, `li`, assigned to the station's resident. No cycle runs after this unless
/// a test runs one. The station, li's id and the code.
fn a_newcomer_with_a_station_code() -> (Station, String, String) {
    let station = Station::new();
    let li = station.w.volunteer("li");
    station.w.assign(&li, &station.resident);
    let code = station.w.station_code(&li);
    station.hub.cycle();
    (station, li, code)
}

/// A phone enrolled at the station's hub with a station code: the code never crosses the
/// station's network, the phone syncs at the hub at once, and when the uplink returns
/// the district server adopts the device from the hub and takes its visit as the
/// phone's. The same code works once.
#[test]
fn a_phone_enrols_at_the_hub_while_the_uplink_is_down() {
    // The hub learned the code (its hash) while the uplink still worked; now it fails.
    let (
        Station {
            w: _server,
            coordinator,
            resident,
            hub,
            ..
        },
        li,
        code,
    ) = a_newcomer_with_a_station_code();

    let (through, carried) = relay(&hub.base, false);
    let p = Phone::new();
    let identity = p
        .client
        .enrol(through, code.clone(), "李的手机".into())
        .unwrap();
    assert_eq!(identity.user_id, li);
    let carried = carried.lock().unwrap().clone();
    assert!(
        !carried.windows(code.len()).any(|w| w == code.as_bytes()),
        "the code crossed the station's network"
    );
    hub.sync(&p).unwrap();
    let visit = p.log(&resident, "量血压 128/80");
    let outcome = hub.sync(&p).unwrap();
    assert_eq!(outcome.receipted, vec![resident.clone()]);
    let status = p.client.sync_status().unwrap();
    assert_eq!(status.held_at_station.len(), 1, "{status:?}");

    let again = Phone::new()
        .client
        .enrol(hub.base.clone(), code, "x".into());
    assert!(
        matches!(again, Err(LinliError::BadCredentials { .. })),
        "{again:?}"
    );

    // The uplink returns: the device is adopted before its visit is handed on.
    assert_eq!(hub.cycle().forwarded, 1);
    coordinator.sync().unwrap();
    assert!(coordinator.visit_ids(&resident).contains(&visit));
    // The phone goes on at the district server with nothing more to configure.
    let outcome = p.sync().unwrap();
    assert!(
        outcome.complete && outcome.rejections.is_empty(),
        "{outcome:?}"
    );
    let status = p.client.sync_status().unwrap();
    assert!(status.held_at_station.is_empty(), "{status:?}");
    assert!(p.visit_ids(&resident).contains(&visit));
}

/// A phone enrolled at a hub that never hands anything on (its disk died) brings the
/// hub's certificate to the district server itself: the device is adopted there and
/// its visit reaches the record.
#[test]
fn a_phone_enrolled_at_a_hub_that_never_hands_it_on_is_adopted_on_its_own_word() {
    let (
        Station {
            w: _server,
            coordinator,
            resident,
            hub,
            ..
        },
        _,
        code,
    ) = a_newcomer_with_a_station_code();
    let p = Phone::new();
    p.client
        .enrol(hub.base.clone(), code, "李的手机".into())
        .unwrap();
    hub.sync(&p).unwrap();
    let visit = p.log(&resident, "陪聊天");
    hub.sync(&p).unwrap();

    let outcome = p.sync().unwrap();
    assert!(outcome.complete, "{outcome:?}");
    assert!(outcome.receipted.contains(&resident), "{outcome:?}");
    coordinator.sync().unwrap();
    assert!(coordinator.visit_ids(&resident).contains(&visit));
}

/// A station code used at the district server by one phone and, meanwhile, at the hub by
/// another: the district server still takes the hub's device, revoked, so what it
/// recorded waits in the quarantine for a coordinator instead of being dropped, and the
/// phone seals what it holds for the coordinator as any revoked phone does.
#[test]
fn a_code_used_twice_loses_no_visit() {
    let (
        Station {
            w, resident, hub, ..
        },
        li,
        code,
    ) = a_newcomer_with_a_station_code();
    Phone::new()
        .client
        .enrol(w.server.base.clone(), code.clone(), "另一部".into())
        .unwrap();

    let p = Phone::new();
    p.client
        .enrol(hub.base.clone(), code, "李的手机".into())
        .unwrap();
    hub.sync(&p).unwrap();
    let visit = p.log(&resident, "检查电线");
    hub.sync(&p).unwrap();

    hub.cycle();
    let mut web = Web::sign_in(&w.server, "coordinator", COORDINATOR_PASSWORD);
    let (_, list) = web.get("/web/quarantine");
    assert_eq!(list.matches("id=\"refusal-").count(), 1, "{list}");
    // Revoked, the phone seals what the district server holds only in quarantine too,
    // and hands it over once enrolled again: the same batch, kept once.
    assert!(matches!(p.sync(), Err(LinliError::Revoked)));
    assert!(
        p.client.revoked_export().unwrap().is_some(),
        "the visit {visit} is sealed for the coordinator"
    );
    p.client
        .enrol(w.server.base.clone(), w.code(&li), "李的手机".into())
        .unwrap();
    p.sync().unwrap();
    let (_, list) = web.get("/web/quarantine");
    assert_eq!(list.matches("id=\"refusal-").count(), 1, "{list}");
}

/// Another phone at the station received the visit from the hub before the district
/// server refused it. When it next meets the hub it is told its copy holds, beyond the
/// record, only that refused visit of another device's, and starts its copy again from
/// the record: no endless repair, no visit the record lacks, nothing of its own lost.
/// The coordinator's decision brings the visit back to it.
#[test]
fn a_phone_that_received_a_visit_refused_later_starts_again_from_the_record() {
    let (station, visit) = taken_after_an_unassignment();
    let Station {
        w,
        coordinator,
        resident,
        v,
        hub,
        ..
    } = station;
    hub.sync(&coordinator).unwrap();
    assert!(coordinator.visit_ids(&resident).contains(&visit));
    assert_eq!(hub.cycle().forwarded, 1);

    let outcome = hub.sync(&coordinator).unwrap();
    assert!(outcome.complete && outcome.rounds <= 4, "{outcome:?}");
    assert!(
        outcome.rejections.iter().all(|r| r.code == "not_in_record"),
        "{outcome:?}"
    );
    assert!(!coordinator.visit_ids(&resident).contains(&visit));
    assert_eq!(coordinator.client.sync_status().unwrap().pending_changes, 0);
    let again = coordinator.sync().unwrap();
    assert!(again.complete && again.rounds <= 2, "{again:?}");
    assert!(hub.sync(&coordinator).unwrap().rejections.is_empty());

    // The volunteer's phone sets the visit aside; the coordinator accepts it, and it
    // reaches the other phone as part of the record.
    let r = set_aside(
        &v,
        &resident,
        &visit,
        &hub.sync(&v).unwrap().refused_by_district[0].reason,
    );
    accepted_once(&w, &coordinator, &v, r.quarantine, &resident, &visit);
}

/// A reviewer approved, at the hub, a visit the district server refused when the hub
/// handed it on; a coordinator then dismissed the visit. The approval can never join
/// the record as it is: at the reviewer's next sync it goes to the quarantine for a
/// coordinator (`builds_on_dismissed`), and the reviewer's phone sets it aside, rather
/// than waiting for the dismissed visit for ever.
#[test]
fn an_approval_of_a_dismissed_visit_reaches_a_coordinator() {
    let (station, visit) = taken_after_an_unassignment();
    let Station {
        w,
        coordinator: reviewer,
        resident,
        hub,
        ..
    } = station;
    hub.sync(&reviewer).unwrap();
    reviewer
        .client
        .review_visit(
            resident.clone(),
            visit.clone(),
            ReviewStatus::Approved,
            "很好".into(),
        )
        .unwrap();
    assert_eq!(hub.cycle().forwarded, 1);
    let mut web = Web::sign_in(&w.server, "coordinator", COORDINATOR_PASSWORD);
    let (_, list) = web.get("/web/quarantine");
    assert_eq!(list.matches("id=\"refusal-").count(), 1, "{list}");
    let (_, html) = web.get("/web/quarantine/1");
    let csrf = field(&html, "csrf");
    let (status, _) = web.post(
        "/web/quarantine/1/dismiss",
        &[("csrf", &csrf), ("note", "不是该志愿者的居民")],
    );
    assert_eq!(status, 303);

    let outcome = reviewer.sync().unwrap();
    assert!(
        outcome
            .rejections
            .iter()
            .any(|r| r.code == "builds_on_dismissed"),
        "{outcome:?}"
    );
    let refused = reviewer.client.refused_changes().unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].code, "builds_on_dismissed");
    let (_, list) = web.get("/web/quarantine");
    assert_eq!(list.matches("id=\"refusal-").count(), 1, "{list}");
    assert!(list.contains("builds_on_dismissed"), "{list}");
    assert!(!reviewer.visit_ids(&resident).contains(&visit));
    assert_eq!(reviewer.client.sync_status().unwrap().pending_changes, 0);
}
