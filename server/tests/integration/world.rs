//! A district with two stations and a coordinator, set up over HTTP from the first
//! start's admin, and the people and phones the stories add to it.

use crate::backends::TestStore;
use crate::phone::Phone;
use crate::serving::TestServer;
use reqwest::Method;
use serde_json::json;
use server::http::HttpLimits;
use sync_core::automerge::ChangeHash;
use sync_core::ids::*;
use sync_core::protocol::store::ServerStore;
use uuid::Uuid;

pub const COORDINATOR_PASSWORD: &str = "coordinator's password";

pub struct World {
    pub server: TestServer,
    pub admin_token: String,
    /// The first start's admin: login and one-time password.
    pub admin_login: String,
    pub admin_password: String,
    pub station_a: StationId,
    pub station_b: StationId,
    pub coordinator: UserId,
    /// The coordinator's web login.
    pub coordinator_token: String,
}

fn id_of(answer: &crate::serving::Answer) -> Uuid {
    answer.expect(201);
    answer.json()["id"].as_str().unwrap().parse().unwrap()
}

impl World {
    pub async fn new(t: TestStore) -> World {
        World::with_limits(t, HttpLimits::default()).await
    }

    pub async fn with_limits(t: TestStore, limits: HttpLimits) -> World {
        let server = TestServer::with_limits(t, limits).await;
        let bootstrap = server
            .store()
            .bootstrap_admin(server::now_ms())
            .await
            .unwrap()
            .unwrap();
        let admin_token = login(&server, &bootstrap.login, &bootstrap.password).await;
        let admin = Some(admin_token.as_str());
        let district = DistrictId(id_of(
            &server
                .post("/api/v1/districts", admin, &json!({ "name": "彭浦镇" }))
                .await,
        ));
        let station = |name: &'static str| {
            let server = &server;
            async move {
                StationId(id_of(
                    &server
                        .post(
                            "/api/v1/stations",
                            admin,
                            &json!({ "name": name, "district": district.0 }),
                        )
                        .await,
                ))
            }
        };
        let station_a = station("华沙六村党群服务站").await;
        let station_b = station("翔宇品城党群服务站").await;
        let coordinator = UserId(id_of(
            &server
                .post(
                    "/api/v1/users",
                    admin,
                    &json!({
                        "login": "coordinator", "display_name": "李协调", "role": "coordinator",
                        "district": district.0, "password": COORDINATOR_PASSWORD,
                    }),
                )
                .await,
        ));
        let coordinator_token = login(&server, "coordinator", COORDINATOR_PASSWORD).await;
        World {
            server,
            admin_token,
            admin_login: bootstrap.login,
            admin_password: bootstrap.password,
            station_a,
            station_b,
            coordinator,
            coordinator_token,
        }
    }

    /// Creates a user as the coordinator (station staff cover `stations`).
    pub async fn user(&self, login: &str, role: &str, stations: &[StationId]) -> UserId {
        let stations: Vec<Uuid> = stations.iter().map(|s| s.0).collect();
        UserId(id_of(
            &self
                .server
                .post(
                    "/api/v1/users",
                    Some(&self.coordinator_token),
                    &json!({ "login": login, "display_name": login, "role": role, "stations": stations }),
                )
                .await,
        ))
    }

    /// An enrolment code for `user`, issued by the coordinator.
    pub async fn code(&self, user: UserId) -> String {
        let answer = self
            .server
            .post(
                "/api/v1/enrolment-codes",
                Some(&self.coordinator_token),
                &json!({ "user": user.0 }),
            )
            .await;
        answer.expect(201);
        answer.json()["code"].as_str().unwrap().to_owned()
    }

    /// Enrols a phone for `user`.
    pub async fn phone(&self, user: UserId) -> Phone {
        Phone::enrol(&self.server.base, &self.code(user).await).await
    }

    /// A new volunteer and their phone.
    pub async fn volunteer(&self, login: &str) -> Phone {
        let user = self.user(login, "volunteer", &[]).await;
        self.phone(user).await
    }

    /// The coordinator's phone.
    pub async fn coordinator_phone(&self) -> Phone {
        self.phone(self.coordinator).await
    }

    /// Registers a resident at `station` from a staff phone and syncs it to the server.
    pub async fn resident(&self, staff: &mut Phone, station: StationId, name: &str) -> ResidentId {
        let id = staff.register(station, name);
        let report = staff.sync().await.unwrap();
        assert!(report.receipted.contains(&id.into()), "{report:?}");
        id
    }

    /// Ends `volunteer`'s assignment to `resident`, as the coordinator.
    pub async fn unassign(&self, volunteer: UserId, resident: ResidentId) {
        self.server
            .call(
                Method::DELETE,
                &format!(
                    "/api/v1/volunteers/{}/residents/{}",
                    volunteer.0, resident.0
                ),
                Some(&self.coordinator_token),
                None,
            )
            .await
            .expect(204);
    }

    /// Assigns `resident` to `volunteer` as the coordinator.
    pub async fn assign(&self, volunteer: UserId, resident: ResidentId) {
        self.server
            .call(
                Method::PUT,
                &format!(
                    "/api/v1/volunteers/{}/residents/{}",
                    volunteer.0, resident.0
                ),
                Some(&self.coordinator_token),
                None,
            )
            .await
            .expect(204);
    }
}

/// A password login's access token.
pub async fn login(server: &TestServer, login: &str, password: &str) -> String {
    let answer = server
        .post(
            "/api/v1/login",
            None,
            &json!({ "login": login, "password": password }),
        )
        .await;
    answer.expect(200);
    answer.json()["access_token"].as_str().unwrap().to_owned()
}

/// A district with a coordinator's phone, one resident at station A and a volunteer's
/// phone that holds it.
pub struct Scene {
    pub w: World,
    pub coordinator: Phone,
    pub resident: ResidentId,
    pub v: Phone,
}

pub async fn scene(t: TestStore) -> Scene {
    scene_with_limits(t, HttpLimits::default()).await
}

pub async fn scene_with_limits(t: TestStore, limits: HttpLimits) -> Scene {
    let w = World::with_limits(t, limits).await;
    let mut coordinator = w.coordinator_phone().await;
    let resident = w.resident(&mut coordinator, w.station_a, "李老伯").await;
    let mut v = w.volunteer("wang").await;
    w.assign(v.user, resident).await;
    v.sync().await.unwrap();
    assert!(v.holds(resident));
    Scene {
        w,
        coordinator,
        resident,
        v,
    }
}

/// What the server holds: a document's heads, the feed's head, the quarantine's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub heads: Vec<ChangeHash>,
    pub feed: u64,
    pub quarantined: usize,
}

pub async fn stored(server: &TestServer, resident: ResidentId) -> Stored {
    let store = server.store();
    let mut heads = store
        .load(resident.into())
        .await
        .unwrap()
        .map(|d| d.get_heads())
        .unwrap_or_default();
    heads.sort();
    Stored {
        heads,
        feed: store.feed_head().await.unwrap(),
        quarantined: store.quarantined(1000).await.unwrap().len(),
    }
}
