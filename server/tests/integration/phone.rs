//! A phone over HTTP: enrols with a code, keeps its tokens, writes as the actor the
//! server registered to it, and syncs its replica through `POST /api/v1/sync`.

use crate::serving::Answer;
use reqwest::Client;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use sync_core::automerge::{ActorId, ChangeHash};
use sync_core::doc::casefile::CaseFile;
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::channel::{Call, Channel};
use sync_core::protocol::envelope::{SyncRequest, SyncResponse};
use sync_core::protocol::replica::{Replica, SyncReport};
use sync_core::protocol::seal::{self, DeviceKeys};
use sync_core::protocol::store::{MemoryReplicaStore, ReplicaStore};
use sync_core::rules::Editor;
use uuid::Uuid;

/// Why a phone's request did not give it an answer to apply.
#[derive(Debug)]
pub enum Failure {
    /// No HTTP answer at all (the server is down).
    Transport(reqwest::Error),
    /// An answer other than 200.
    Refused(Answer),
}

impl Failure {
    /// The refusal, for tests that expect one.
    #[track_caller]
    pub fn refused(self) -> Answer {
        match self {
            Failure::Refused(a) => a,
            Failure::Transport(e) => panic!("expected an HTTP refusal, got {e}"),
        }
    }
}

/// One enrolled phone.
pub struct Phone {
    /// Where the server is (tests that restart it move it).
    pub base: String,
    http: Client,
    pub device: DeviceId,
    pub user: UserId,
    pub role: Role,
    pub district: DistrictId,
    pub access: String,
    pub refresh: String,
    pub replica: Replica<MemoryReplicaStore>,
    /// How far this phone's clock runs ahead of the real one (ms; negative: behind).
    pub clock_offset: i64,
    /// The key a revoked phone seals its unsynced changes with.
    pub export_key: Vec<u8>,
    /// At a station hub: the session's channel, which every call goes sealed in
    /// (`hub_story::welcome` opens it).
    pub channel: Option<Channel>,
    /// The number of the channel's next call.
    calls: AtomicU64,
}

impl Phone {
    /// Enrols with `code` at `base`.
    pub async fn enrol(base: &str, code: &str) -> Phone {
        let http = Client::new();
        let answer = Answer::read(
            http.post(format!("{base}/api/v1/enrol"))
                .json(&json!({ "code": code, "device_name": "test phone" }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        answer.expect(200);
        let c = answer.json();
        let uuid = |v: &Value| v.as_str().unwrap().parse::<Uuid>().unwrap();
        let actors = c["actors"].as_array().unwrap();
        assert_eq!(actors.len(), 1, "one actor per device: {c}");
        let actor = ActorId::from(hex::decode(actors[0].as_str().unwrap()).unwrap());
        Phone {
            base: base.to_owned(),
            http,
            device: DeviceId(uuid(&c["device_id"])),
            user: UserId(uuid(&c["user"]["id"])),
            role: Role::from_code(c["user"]["role"].as_str().unwrap()).unwrap(),
            district: DistrictId(uuid(&c["user"]["district"])),
            access: c["access_token"].as_str().unwrap().to_owned(),
            refresh: c["refresh_token"].as_str().unwrap().to_owned(),
            replica: Replica::new(MemoryReplicaStore::new(), actor),
            clock_offset: 0,
            export_key: hex::decode(c["export_key"].as_str().unwrap()).unwrap(),
            channel: None,
            calls: AtomicU64::new(0),
        }
    }

    /// POSTs a sealed export to `/api/v1/recover` as this device.
    pub async fn recover(&self, export: Vec<u8>) -> Answer {
        Answer::read(
            self.http
                .post(format!("{}/api/v1/recover", self.base))
                .bearer_auth(&self.access)
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(export)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Now, by this phone's clock.
    pub fn now(&self) -> i64 {
        server::now_ms() + self.clock_offset
    }

    /// Who the phone acts as, for its own check of an edit to `resident` before it
    /// commits (the server checks again with the real scope).
    pub fn principal(&self, resident: ResidentId, station: StationId) -> Principal {
        let scope = match self.role {
            Role::Volunteer => Scope::Residents {
                district: self.district,
                residents: BTreeSet::from([resident]),
            },
            Role::StationStaff => Scope::Stations {
                district: self.district,
                stations: BTreeSet::from([station]),
            },
            Role::Coordinator | Role::Admin => Scope::District(self.district),
        };
        Principal {
            user: self.user,
            role: self.role,
            scope,
        }
    }

    /// Registers a new resident (staff phones).
    pub fn register(&mut self, station: StationId, name: &str) -> ResidentId {
        let id = ResidentId(Uuid::now_v7());
        let principal = self.principal(id, station);
        let editor = Editor {
            principal: &principal,
            now: self.now(),
        };
        let file = CaseFile::create(
            self.replica.actor().clone(),
            &editor,
            id,
            self.district,
            station,
            &profile(name),
        )
        .unwrap();
        self.replica.save_case_file(&file).unwrap();
        id
    }

    /// Edits a held case file as this phone's user, and saves it.
    pub fn edit<T>(
        &mut self,
        resident: ResidentId,
        write: impl FnOnce(&mut CaseFile, &Editor<'_>) -> T,
    ) -> T {
        let mut file = self.case_file(resident);
        let principal = self.principal(resident, file.station().unwrap());
        let editor = Editor {
            principal: &principal,
            now: self.now(),
        };
        let out = write(&mut file, &editor);
        self.replica.save_case_file(&file).unwrap();
        out
    }

    /// Approves every visit to `residents` this phone holds that nobody has reviewed
    /// (station staff at the end of a day); how many.
    pub fn approve_all(&mut self, residents: &[ResidentId]) -> usize {
        let mut approved = 0;
        for r in residents {
            let Some(file) = self.replica.case_file((*r).into()).unwrap() else {
                continue;
            };
            let pending: Vec<VisitId> = (file.hydrate().unwrap().visits.iter())
                .filter(|v| v.review.is_none() && !v.tombstoned)
                .map(|v| v.id)
                .collect();
            for v in &pending {
                self.edit(*r, |f, e| {
                    f.review_visit(e, *v, ReviewStatus::Approved, "好")
                })
                .unwrap();
            }
            approved += pending.len();
        }
        approved
    }

    /// Asserts the phone holds `resident`'s case file exactly as the server does (the
    /// same heads) with nothing of it waiting for a receipt.
    #[track_caller]
    pub fn assert_converged(&self, resident: ResidentId, server_heads: &[ChangeHash]) {
        assert!(
            self.replica
                .unreceipted_visits(resident.into())
                .unwrap()
                .is_empty(),
            "{:?} {} has unreceipted visits to {resident}",
            self.role,
            self.user
        );
        let mut heads = self.case_file(resident).doc().get_heads();
        let mut want = server_heads.to_vec();
        heads.sort();
        want.sort();
        assert_eq!(
            heads, want,
            "{:?} {} converged on {resident}",
            self.role, self.user
        );
    }

    /// Sends through `http` from now on (a client with other timeouts or no pooling).
    pub fn set_client(&mut self, http: Client) {
        self.http = http;
    }

    /// Logs a visit to `resident` and returns its id.
    pub fn log_visit(&mut self, resident: ResidentId, notes: &str) -> VisitId {
        let id = VisitId(Uuid::now_v7());
        let record = record_at(notes, self.now());
        self.edit(resident, |file, editor| {
            file.log_visit(editor, id, &record).unwrap();
        });
        id
    }

    pub fn case_file(&self, resident: ResidentId) -> CaseFile {
        self.replica
            .case_file(resident.into())
            .unwrap()
            .unwrap_or_else(|| panic!("the phone holds no case file {resident}"))
    }

    pub fn holds(&self, doc: impl Into<DocId>) -> bool {
        self.replica.doc_ids().unwrap().contains(&doc.into())
    }

    pub fn resident(&self, resident: ResidentId) -> Resident {
        self.case_file(resident).hydrate().unwrap()
    }

    /// The heads of a held document, sorted.
    pub fn heads(&self, resident: ResidentId) -> Vec<ChangeHash> {
        let mut heads = self.case_file(resident).doc().get_heads();
        heads.sort();
        heads
    }

    /// Local changes the server has not receipted.
    pub fn pending(&self) -> usize {
        self.replica.pending_changes().unwrap()
    }

    /// This device's seal of `body`, as the phone library sends it.
    pub fn seal(&self, body: &[u8]) -> String {
        let keys = DeviceKeys::new(&self.export_key).unwrap();
        seal::to_header(&keys.seal(body))
    }

    /// POSTs raw bytes to the sync endpoint, sealed as the phone library seals them.
    pub async fn post_sync(&self, body: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let seal = self.seal(&body);
        self.post_sync_sealed(body, Some(&seal)).await
    }

    /// POSTs raw bytes to the sync endpoint with any seal header, or none.
    pub async fn post_sync_sealed(
        &self,
        body: Vec<u8>,
        seal: Option<&str>,
    ) -> Result<Vec<u8>, Failure> {
        if self.channel.is_some() {
            let call = Call::post(
                "/api/v1/sync",
                "application/vnd.linli.sync",
                body,
                seal.map(str::to_owned),
            );
            let answer = self.at_hub(&call).await?;
            if answer.status != 200 {
                return Err(Failure::Refused(answer));
            }
            return Ok(answer.body);
        }
        let mut request = self
            .http
            .post(format!("{}/api/v1/sync", self.base))
            .bearer_auth(&self.access)
            .header(CONTENT_TYPE, "application/vnd.linli.sync");
        if let Some(seal) = seal {
            request = request.header(seal::HEADER, seal);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(Failure::Transport)?;
        if response.status() != 200 {
            return Err(Failure::Refused(Answer::read(response).await));
        }
        Ok(response.bytes().await.map_err(Failure::Transport)?.to_vec())
    }

    /// Makes `call` at the station hub in the session's channel: the hub's answer,
    /// opened (a refusal of the frame itself, in the clear, is a `Failure`).
    pub async fn at_hub(&self, call: &Call) -> Result<Answer, Failure> {
        let channel = self.channel.as_ref().expect("the phone is at a hub");
        let seq = self.calls.fetch_add(1, Ordering::SeqCst);
        let response = self
            .http
            .post(format!("{}/api/v1/hub/channel", self.base))
            .header(CONTENT_TYPE, sync_core::protocol::channel::MEDIA_TYPE)
            .body(channel.seal_call(seq, call))
            .send()
            .await
            .map_err(Failure::Transport)?;
        if response.status() != 200 {
            return Err(Failure::Refused(Answer::read(response).await));
        }
        let sealed = response.bytes().await.map_err(Failure::Transport)?;
        let reply = channel
            .open_reply(seq, &sealed)
            .expect("the hub's reply opens with the session's key");
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(media) = reply.content_type.as_deref() {
            headers.insert(CONTENT_TYPE, media.parse().unwrap());
        }
        Ok(Answer {
            status: reqwest::StatusCode::from_u16(reply.status).unwrap(),
            headers,
            body: reply.body,
        })
    }

    /// Opens a session's channel at a station hub: calls go there from now on.
    pub fn enter_hub(&mut self, base: &str, channel: Channel) {
        self.base = base.to_owned();
        self.channel = Some(channel);
        self.calls = AtomicU64::new(0);
    }

    /// Sends one request and applies the answer.
    pub async fn send(&mut self, request: &SyncRequest) -> Result<SyncReport, Failure> {
        let bytes = self.post_sync(request.encode()).await?;
        let response = SyncResponse::decode(&bytes).unwrap();
        Ok(self.replica.apply(&response).unwrap())
    }

    /// Syncs until nothing is pending and the server has nothing more; the reports of
    /// every round, merged.
    pub async fn sync(&mut self) -> Result<SyncReport, Failure> {
        let mut total = SyncReport::default();
        // What was refused with nothing kept (a station hub leaves it to the district
        // server) stays pending; asking again would not change that.
        let mut parked = BTreeSet::new();
        for _ in 0..32 {
            let request = self.replica.prepare(self.now()).unwrap();
            let report = self.send(&request).await?;
            total.sent_changes += report.sent_changes;
            total.received_changes += report.received_changes;
            total.receipted.extend(report.receipted);
            total.rejections.extend(report.rejections.clone());
            total.purged.extend(report.purged);
            total.repairing.extend(report.repairing);
            total.more = report.more;
            parked.extend(
                report
                    .rejections
                    .iter()
                    .filter(|r| r.quarantine == 0 && r.code != "busy")
                    .map(|r| r.doc),
            );
            let waiting = self.replica.store().pending_docs().unwrap();
            let quiet = !report.more
                && !self.replica.store().need_held().unwrap()
                && waiting.iter().all(|d| parked.contains(d));
            if quiet {
                return Ok(total);
            }
        }
        panic!("the phone did not settle in 32 rounds: {total:?}");
    }

    /// Exchanges the refresh token for new tokens.
    pub async fn refresh(&mut self) -> Result<(), Failure> {
        let answer = self.post_token(&self.refresh.clone()).await?;
        if answer.status != 200 {
            return Err(Failure::Refused(answer));
        }
        let body = answer.json();
        self.access = body["access_token"].as_str().unwrap().to_owned();
        self.refresh = body["refresh_token"].as_str().unwrap().to_owned();
        Ok(())
    }

    /// `POST /api/v1/token` with any refresh token.
    pub async fn post_token(&self, refresh: &str) -> Result<Answer, Failure> {
        let response = self
            .http
            .post(format!("{}/api/v1/token", self.base))
            .json(&json!({ "refresh_token": refresh }))
            .send()
            .await
            .map_err(Failure::Transport)?;
        Ok(Answer::read(response).await)
    }
}

pub fn profile(name: &str) -> Profile {
    Profile {
        name: name.into(),
        address: "华沙六村 12 号 301".into(),
        phone: String::new(),
        birth_year: Some(1936),
        living_situation: Some(LivingSituation::Alone),
        emergency_contact: String::new(),
        needs: String::new(),
        risk_level: Some(RiskLevel::High),
        visit_every_days: Some(7),
    }
}

/// A district catalog holding every id the server tests' visits name (project 0x90,
/// unit 0x80, service types 0x51 and 0x52, hazard types 0x61 and 0x62): a visit may
/// only name what its district's catalog holds.
pub fn test_catalog(
    actor: sync_core::automerge::ActorId,
    editor: &Editor<'_>,
    district: DistrictId,
) -> sync_core::doc::catalog::CatalogDoc {
    use sync_core::doc::catalog::{CatalogDoc, EntryInput};
    let mut catalog = CatalogDoc::create(actor, editor, district).unwrap();
    let entry = |kind, n: u128, name: &'static str| EntryInput {
        kind,
        id: Uuid::from_u128(n),
        name,
        name_en: name,
        parent: None,
        archived: false,
    };
    catalog
        .put_entries(
            editor,
            &[
                entry(CatalogKind::Project, 0x90, "安守晚晴天"),
                entry(CatalogKind::Unit, 0x80, "消防救援站"),
                entry(CatalogKind::ServiceType, 0x51, "读报"),
                entry(CatalogKind::ServiceType, 0x52, "检查电线"),
                entry(CatalogKind::HazardType, 0x61, "老化插线板"),
                entry(CatalogKind::HazardType, 0x62, "燃气灶"),
            ],
        )
        .unwrap();
    catalog
}

/// A visit that ended half an hour ago.
pub fn record(notes: &str) -> VisitRecord {
    record_at(notes, server::now_ms())
}

/// A visit that ended half an hour before `now`.
pub fn record_at(notes: &str, now: i64) -> VisitRecord {
    VisitRecord {
        project: ProjectId(Uuid::from_u128(0x90)),
        unit: None,
        started_at: now - 3_600_000,
        ended_at: now - 1_800_000,
        services: vec![ServiceTypeId(Uuid::from_u128(0x51))],
        condition: Condition {
            wellbeing: Wellbeing::Fair,
            systolic: Some(150),
            diastolic: Some(95),
            blood_sugar_dmmol: None,
            remarks: "头晕".into(),
        },
        hazards: vec![],
        notes: notes.into(),
        follow_up_needed: true,
    }
}
