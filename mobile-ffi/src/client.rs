//! The client object apps hold: one per enrolled phone, opened on a folder and a key.
//! Every method is blocking (call it off the main thread) and never panics across the
//! FFI: each body runs under [`guarded`].

use crate::error::{LinliError, Result, guarded};
use crate::net::{Answer, ENVELOPE, Http, Refusal, Timeouts, answer_of};
use crate::store::{EXPORT_KEY, REVOKED_EXPORT, Store};
use crate::types::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use sync_core::automerge::{ActorId, Automerge, ChangeHash};
use sync_core::doc::casefile::{CaseFile, listing};
use sync_core::doc::catalog::{CatalogDoc, EntryInput};
use sync_core::doc::{DocKind, header};
use sync_core::ids::*;
use sync_core::model::{self, DueOn, LocalDay, Principal, Role, Scope, VisitDue};
use sync_core::protocol::channel::{self, Call, Channel};
use sync_core::protocol::envelope::{Hash, Rejection, SyncResponse};
use sync_core::protocol::export::Export;
use sync_core::protocol::replica::Replica;
use sync_core::protocol::seal::{self, DeviceKeys};
use sync_core::protocol::store::ReplicaStore;
use sync_core::rules::{self, Editor};

/// The most round trips one `sync` call makes before it returns (`complete: false`).
const MAX_ROUNDS: i32 = 32;
/// Which server the store's cursor belongs to (`district`, or a hub's id).
const SYNC_SERVER: &str = "sync_server";
const DISTRICT: &str = "district";
/// What station hubs hold that the district server has not confirmed yet.
const STATION_HELD: &str = "station_held";
/// The certificate of the station hub that enrolled this phone, until the district
/// server has adopted the device.
const HUB_ENROLMENT: &str = "hub_enrolment";

/// Where a sync goes.
enum Link {
    /// The district server, with the device's refreshable token.
    District,
    /// A station hub, with the session's channel and the number of its next call.
    Hub {
        id: uuid::Uuid,
        channel: Channel,
        next: u64,
    },
}
/// Refresh the access token when it has less than this left (ms).
const REFRESH_MARGIN_MS: i64 = 60_000;

/// The device credential, sealed in the store.
#[derive(Clone, Serialize, Deserialize)]
struct Credentials {
    server_url: String,
    device: uuid::Uuid,
    user: uuid::Uuid,
    display_name: String,
    role: String,
    district: uuid::Uuid,
    actor: Vec<u8>,
    refresh_token: String,
    access_token: String,
    access_expires_at: i64,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("device", &self.device)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    fn role(&self) -> Result<Role> {
        Role::from_code(&self.role)
            .ok_or_else(|| LinliError::storage(format!("unknown stored role {:?}", self.role)))
    }

    fn identity(&self) -> Result<Identity> {
        Ok(Identity {
            server_url: self.server_url.clone(),
            device_id: self.device.to_string(),
            user_id: self.user.to_string(),
            display_name: self.display_name.clone(),
            role: self.role()?.into(),
            district_id: self.district.to_string(),
        })
    }

    /// Who the phone acts as when it writes the district's catalog.
    fn catalog_principal(&self) -> Result<Principal> {
        let role = self.role()?;
        let district = DistrictId(self.district);
        let scope = match role {
            Role::Volunteer => Scope::Residents {
                district,
                residents: BTreeSet::new(),
            },
            Role::StationStaff => Scope::Stations {
                district,
                stations: BTreeSet::new(),
            },
            Role::Coordinator | Role::Admin => Scope::District(district),
        };
        Ok(Principal {
            user: UserId(self.user),
            role,
            scope,
        })
    }

    /// Who the phone acts as when it checks its own edit of a resident at `station`.
    /// The phone holds only what is in its user's scope, so the scope is that resident
    /// (or station, or district); the server checks again with the full scope.
    fn principal(&self, resident: ResidentId, station: StationId) -> Result<Principal> {
        let role = self.role()?;
        let district = DistrictId(self.district);
        let scope = match role {
            Role::Volunteer => Scope::Residents {
                district,
                residents: BTreeSet::from([resident]),
            },
            Role::StationStaff => Scope::Stations {
                district,
                stations: BTreeSet::from([station]),
            },
            Role::Coordinator | Role::Admin => Scope::District(district),
        };
        Ok(Principal {
            user: UserId(self.user),
            role,
            scope,
        })
    }
}

/// What the lists show of a document, sealed in the store's `summaries`.
#[derive(Serialize, Deserialize)]
enum Summary {
    Resident {
        profile: model::Profile,
        station: StationId,
        last_visit_at: Option<Timestamp>,
    },
    Catalog,
}

/// Cancels a sync between round trips. A request under way ends at the latest when
/// its timeout expires.
#[derive(Debug, Default, uniffi::Object)]
pub struct CancelToken(AtomicBool);

#[uniffi::export]
impl CancelToken {
    /// A token not yet cancelled.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(CancelToken::default())
    }

    /// Asks the sync using this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether `cancel` was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

struct Inner {
    replica: Replica<Store>,
    creds: Option<Credentials>,
}

/// The phone library's client: an encrypted store on this device, the offline
/// operations, and the sync.
#[derive(uniffi::Object)]
pub struct LinliClient {
    inner: Mutex<Inner>,
    timeouts: Timeouts,
    /// Added to the system clock (tests model a phone whose clock drifted).
    clock_offset: AtomicI64,
}

impl std::fmt::Debug for LinliClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinliClient").finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The actor a phone writes as before it is enrolled; nothing is written then.
fn unenrolled_actor() -> ActorId {
    ActorId::from(vec![0u8; 16])
}

fn load_creds(store: &Store) -> Result<Option<Credentials>> {
    store
        .meta("credentials")?
        .map(|b| {
            postcard::from_bytes(&b).map_err(|e| LinliError::Malformed {
                detail: format!("the stored credential does not decode: {e}"),
            })
        })
        .transpose()
}

fn save_creds(store: &Store, creds: &Credentials) -> Result<()> {
    let bytes = postcard::to_stdvec(creds).map_err(|e| LinliError::Internal {
        detail: format!("encoding the credential: {e}"),
    })?;
    Ok(store.set_meta("credentials", &bytes)?)
}

impl LinliClient {
    /// Now, by this phone's clock.
    fn now(&self) -> Timestamp {
        now_ms().saturating_add(self.clock_offset.load(Ordering::Relaxed))
    }

    /// Runs this phone's clock `offset_ms` ahead of the system's (negative: behind),
    /// as a phone whose clock drifted does. For tests; not in the app bindings.
    #[doc(hidden)]
    pub fn set_clock_offset_for_tests(&self, offset_ms: i64) {
        self.clock_offset.store(offset_ms, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The store is the truth and every write is a transaction, so a lock poisoned
        // by a caught panic holds nothing half-done.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the store in `dir` with per-request timeouts (tests use short ones).
    pub fn open_with_timeouts(
        dir: &Path,
        key: &[u8],
        connect: std::time::Duration,
        whole: std::time::Duration,
    ) -> Result<Arc<Self>> {
        guarded(|| {
            if key.len() != 32 {
                return Err(LinliError::BadKey { len: key.len() });
            }
            let mut store = Store::open(dir, key)?;
            store.set_summarizer(summarize);
            let creds = load_creds(&store)?;
            let actor = creds
                .as_ref()
                .map_or_else(unenrolled_actor, |c| ActorId::from(c.actor.clone()));
            Ok(Arc::new(LinliClient {
                inner: Mutex::new(Inner {
                    replica: Replica::new(store, actor),
                    creds,
                }),
                timeouts: Timeouts { connect, whole },
                clock_offset: AtomicI64::new(0),
            }))
        })
    }

    /// Runs `f` on the store, a credential required.
    fn enrolled<T>(&self, f: impl FnOnce(&mut Inner, &Credentials) -> Result<T>) -> Result<T> {
        guarded(|| {
            let mut inner = self.lock();
            let creds = inner.creds.clone().ok_or(LinliError::NotEnrolled)?;
            f(&mut inner, &creds)
        })
    }

    /// Edits a held case file as this phone's user; the rules run before the change is
    /// kept, and the document is saved durably before this returns.
    fn edit<T>(
        &self,
        resident: &str,
        write: impl FnOnce(&mut CaseFile, &Editor<'_>) -> Result<T>,
    ) -> Result<T> {
        let id: ResidentId = parse_id("resident", resident)?;
        self.enrolled(|inner, creds| {
            let mut file =
                inner
                    .replica
                    .case_file(id.into())?
                    .ok_or_else(|| LinliError::NotFound {
                        what: format!("resident {id}"),
                    })?;
            let principal = creds.principal(id, file.station()?)?;
            let editor = Editor {
                principal: &principal,
                now: self.now(),
            };
            let before = file.doc().get_heads();
            let out = write(&mut file, &editor)?;
            // A visit names only what the district's catalog holds, as the server
            // checks too (`check_catalog_refs`); nothing is kept otherwise.
            let catalog = match inner.replica.catalog(DistrictId(creds.district).into())? {
                Some(c) => Some(c.hydrate()?),
                None => None,
            };
            let new = sync_core::doc::changes_since(file.doc(), &before);
            rules::check_catalog_refs(file.doc(), &new, catalog.as_ref())
                .map_err(sync_core::Error::Rejected)?;
            // One transaction: the change, the sync state and the resident's summary.
            inner.replica.save_case_file(&file)?;
            Ok(out)
        })
    }

    fn held_summaries(inner: &mut Inner) -> Result<Vec<(DocId, Summary)>> {
        let store = inner.replica.store();
        let mut known: BTreeMap<DocId, Vec<u8>> = store.summaries()?.into_iter().collect();
        let mut out = Vec::new();
        for id in store.doc_ids()? {
            let summary = match known.remove(&id) {
                Some(bytes) => postcard::from_bytes(&bytes).ok(),
                None => None,
            };
            let summary = match summary {
                Some(s) => s,
                None => match rebuild_summary(store, id)? {
                    Some(s) => s,
                    None => continue,
                },
            };
            out.push((id, summary));
        }
        Ok(out)
    }
}

/// A document's summary, for the store to seal beside it on every write.
fn summarize(doc: &Automerge, previous: Option<crate::store::Previous<'_>>) -> Option<Vec<u8>> {
    let summary = match header(doc).ok()??.kind {
        DocKind::Catalog => Summary::Catalog,
        DocKind::Resident => {
            let l = match previous.and_then(|p| follow_on(doc, p)) {
                Some(l) => l,
                None => listing(doc).ok()?,
            };
            Summary::Resident {
                profile: l.profile,
                station: l.station,
                last_visit_at: l.last_visit_at,
            }
        }
    };
    postcard::to_stdvec(&summary).ok()
}

/// The listing after this write from the one stored before it, when the stored
/// summary is a resident's (a visit logged to a resident with a long history then
/// costs the new visit, not a read of every visit).
fn follow_on(
    doc: &Automerge,
    previous: crate::store::Previous<'_>,
) -> Option<sync_core::doc::casefile::Listing> {
    let Ok(Summary::Resident {
        profile,
        station,
        last_visit_at,
    }) = postcard::from_bytes(previous.summary)
    else {
        return None;
    };
    // The summary keeps no closure: a write that touches one reads the listing whole,
    // and the closure of what comes back is not used.
    let before = sync_core::doc::casefile::Listing {
        station,
        profile,
        last_visit_at,
        closure: None,
    };
    let changes = sync_core::doc::changes_since(doc, previous.heads);
    sync_core::doc::casefile::listing_after(doc, previous.heads, &before, &changes).ok()
}

/// Loads a held document whose summary is missing and stores one; `None` if it is not
/// held or cannot be summarised yet (a repair under way).
fn rebuild_summary(store: &Store, id: DocId) -> Result<Option<Summary>> {
    let Some(bytes) = store.load_doc(id)? else {
        return Ok(None);
    };
    let doc = Automerge::load(&bytes).map_err(|e| LinliError::Malformed {
        detail: format!("stored document {id} does not load: {e}"),
    })?;
    let Some(plain) = summarize(&doc, None) else {
        return Ok(None);
    };
    store.set_summary(id, &plain)?;
    Ok(postcard::from_bytes(&plain).ok())
}

fn summary_record(id: DocId, s: &Summary) -> Option<ResidentSummary> {
    let Summary::Resident {
        profile,
        station,
        last_visit_at,
    } = s
    else {
        return None;
    };
    let next_visit_due_at = match profile.visit_due(*last_visit_at) {
        Some(VisitDue::At(t)) => Some(t),
        _ => None,
    };
    Some(ResidentSummary {
        id: id.to_string(),
        name: profile.name.clone(),
        address: profile.address.clone(),
        station_id: station.to_string(),
        risk_level: profile.risk_level.map(Into::into),
        visit_every_days: profile.visit_every_days,
        last_visit_at: *last_visit_at,
        next_visit_due_at,
    })
}

#[uniffi::export]
impl LinliClient {
    /// Opens (or creates) the phone's store in the folder `dir` with the 32-byte `key`
    /// from the platform keystore. A wrong key is refused with `WrongKey` and changes
    /// nothing on disk. In Kotlin, Swift and Python this is the class's constructor:
    /// `LinliClient(dir, key)`.
    #[uniffi::constructor(name = "new")]
    pub fn open(dir: String, key: Vec<u8>) -> Result<Arc<Self>> {
        let t = Timeouts::default();
        Self::open_with_timeouts(Path::new(&dir), &key, t.connect, t.whole)
    }

    /// Enrols this phone with the one-time `code` (the QR code a coordinator shows)
    /// at `serverUrl` (e.g. `https://linli.example.org`).
    pub fn enrol(&self, server_url: String, code: String, device_name: String) -> Result<Identity> {
        guarded(|| {
            if self.lock().creds.is_some() {
                return Err(LinliError::AlreadyEnrolled);
            }
            let http = Http::new(&server_url, self.timeouts);
            // A station hub answers who it is; a district server has no such door.
            let hub = match http.get("/api/v1/hub")? {
                Ok(body) => serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["hub"].as_str().and_then(|h| h.parse().ok())),
                Err(refusal) if refusal.status == 404 => None,
                Err(refusal) => return Err(refusal.into_error()),
            };
            let body = match hub {
                None => http
                    .post_json(
                        "/api/v1/enrol",
                        None,
                        &serde_json::json!({ "code": code.trim(), "device_name": device_name }),
                    )?
                    .map_err(Refusal::into_error)?,
                Some(hub) => Self::enrol_sealed(&http, hub, &code, &device_name)?,
            };
            let c: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| LinliError::Malformed {
                    detail: format!("the enrolment answer is not JSON: {e}"),
                })?;
            let malformed = |what: &str| LinliError::Malformed {
                detail: format!("the enrolment answer lacks {what}"),
            };
            let text = |v: &serde_json::Value, what: &str| {
                v.as_str().map(str::to_owned).ok_or_else(|| malformed(what))
            };
            let uuid = |v: &serde_json::Value, what: &str| -> Result<uuid::Uuid> {
                text(v, what)?.parse().map_err(|_| malformed(what))
            };
            let actor = c["actors"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(|a| a.as_str())
                .and_then(|a| hex::decode(a).ok())
                .ok_or_else(|| malformed("an actor"))?;
            let expires_in = c["expires_in"].as_i64().unwrap_or(0);
            // Enrolled at a station hub: the phone syncs with the district server from
            // now on, and the hub's certificate gets the device adopted there.
            let district_url = c["district_url"].as_str().unwrap_or(&server_url).to_owned();
            let certificate = c["certificate"].as_str().map(str::to_owned);
            let creds = Credentials {
                server_url: district_url.trim_end_matches('/').to_owned(),
                device: uuid(&c["device_id"], "a device id")?,
                user: uuid(&c["user"]["id"], "a user id")?,
                display_name: text(&c["user"]["display_name"], "a display name")?,
                role: text(&c["user"]["role"], "a role")?,
                district: uuid(&c["user"]["district"], "a district")?,
                actor,
                refresh_token: text(&c["refresh_token"], "a refresh token")?,
                access_token: text(&c["access_token"], "an access token")?,
                access_expires_at: now_ms().saturating_add(expires_in.saturating_mul(1000)),
            };
            let identity = creds.identity()?;
            let mut inner = self.lock();
            if inner.creds.is_some() {
                return Err(LinliError::AlreadyEnrolled);
            }
            save_creds(inner.replica.store(), &creds)?;
            // Servers before version 2 of the sync envelope give no export key.
            if let Some(key) = c["export_key"].as_str().and_then(|k| hex::decode(k).ok()) {
                inner.replica.store().set_meta(EXPORT_KEY, &key)?;
            }
            if let Some(certificate) = certificate {
                inner
                    .replica
                    .store()
                    .set_meta(HUB_ENROLMENT, certificate.as_bytes())?;
            }
            inner.replica.set_actor(ActorId::from(creds.actor.clone()));
            inner.creds = Some(creds);
            Ok(identity)
        })
    }

    /// Signs the phone out: deletes every resident's data, the cursor and the
    /// credential, keeping the key check (the same key opens the empty store). Visits
    /// not yet synced are lost with it, and so is a revoked device's sealed export:
    /// check `syncStatus` and `revokedExport` first. For a phone whose credential the
    /// server no longer accepts, before enrolling again.
    pub fn erase(&self) -> Result<()> {
        guarded(|| {
            let mut inner = self.lock();
            inner.replica.store_mut().wipe(false)?;
            inner.creds = None;
            inner.replica.set_actor(unenrolled_actor());
            Ok(())
        })
    }

    /// Who this phone is enrolled as; null (none) before enrolment (or after a revocation).
    pub fn identity(&self) -> Result<Option<Identity>> {
        guarded(|| {
            self.lock()
                .creds
                .as_ref()
                .map(Credentials::identity)
                .transpose()
        })
    }

    /// The residents on this phone (assigned to me, or in my stations), by name.
    pub fn residents(&self) -> Result<Vec<ResidentSummary>> {
        self.enrolled(|inner, _| {
            let mut out: Vec<ResidentSummary> = Self::held_summaries(inner)?
                .iter()
                .filter_map(|(id, s)| summary_record(*id, s))
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
            Ok(out)
        })
    }

    /// Who is due or overdue for a visit today: residents with a visit frequency whose
    /// next visit falls before the end of the local day holding `nowMs`, in a time
    /// zone `utcOffsetMinutes` east of UTC (Shanghai: 480). Never-visited first,
    /// then the longest overdue.
    pub fn due_visits(&self, now_ms: i64, utc_offset_minutes: i32) -> Result<Vec<DueResident>> {
        self.enrolled(|inner, _| {
            let day = LocalDay::of(now_ms, utc_offset_minutes);
            let mut out = Vec::new();
            for (id, s) in Self::held_summaries(inner)? {
                let Summary::Resident {
                    profile,
                    last_visit_at,
                    ..
                } = &s
                else {
                    continue;
                };
                let Some((due, at)) = profile.due_on(*last_visit_at, day) else {
                    continue;
                };
                let status = match due {
                    DueOn::NeverVisited => DueStatus::NeverVisited,
                    DueOn::Overdue => DueStatus::Overdue,
                    DueOn::DueToday => DueStatus::DueToday,
                };
                let key = at.unwrap_or(i64::MIN);
                if let Some(resident) = summary_record(id, &s) {
                    out.push((key, DueResident { status, resident }));
                }
            }
            out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.resident.id.cmp(&b.1.resident.id)));
            Ok(out.into_iter().map(|(_, d)| d).collect())
        })
    }

    /// A resident's profile, visit timeline (newest first) and follow-ups.
    pub fn resident(&self, resident_id: String) -> Result<ResidentDetail> {
        let id: ResidentId = parse_id("resident", &resident_id)?;
        self.enrolled(|inner, _| {
            let file = inner
                .replica
                .case_file(id.into())?
                .ok_or_else(|| LinliError::NotFound {
                    what: format!("resident {id}"),
                })?;
            let unreceipted = inner.replica.unreceipted_visits(id.into())?;
            let r = file.hydrate()?;
            let mut visits: Vec<VisitInfo> = r
                .visits
                .into_iter()
                .map(|v| VisitInfo {
                    id: v.id.to_string(),
                    volunteer: v.volunteer.to_string(),
                    receipted: !unreceipted.contains(&v.id),
                    tombstoned: v.tombstoned,
                    review: v.review.map(Into::into),
                    record: v.record.into(),
                })
                .collect();
            visits.reverse();
            Ok(ResidentDetail {
                id: r.id.to_string(),
                district_id: r.district.to_string(),
                station_id: r.station.to_string(),
                profile: r.profile.into(),
                visits,
                follow_ups: r.follow_ups.into_iter().map(Into::into).collect(),
            })
        })
    }

    /// Logs a visit to a resident, offline. The rules run first (a refused visit is
    /// `NotAllowed` and nothing is kept); when this returns the visit is on disk. Gives
    /// the new visit's id.
    pub fn log_visit(&self, resident_id: String, visit: VisitInput) -> Result<String> {
        let record: model::VisitRecord = visit.try_into()?;
        self.edit(&resident_id, |file, editor| {
            let id = new_visit_id();
            file.log_visit(editor, id, &record)?;
            Ok(id.to_string())
        })
    }

    /// Amends one of my visits: only the fields that differ are written.
    pub fn amend_visit(
        &self,
        resident_id: String,
        visit_id: String,
        visit: VisitInput,
    ) -> Result<()> {
        let record: model::VisitRecord = visit.try_into()?;
        let visit: VisitId = parse_id("visit", &visit_id)?;
        self.edit(&resident_id, |file, editor| {
            file.amend_visit(editor, visit, &record)?;
            Ok(())
        })
    }

    /// Deletes one of my visits (a tombstone: a concurrent edit is not lost).
    pub fn tombstone_visit(&self, resident_id: String, visit_id: String) -> Result<()> {
        let visit: VisitId = parse_id("visit", &visit_id)?;
        self.edit(&resident_id, |file, editor| {
            file.tombstone_visit(editor, visit)?;
            Ok(())
        })
    }

    /// Reviews a visit (station staff and coordinators).
    pub fn review_visit(
        &self,
        resident_id: String,
        visit_id: String,
        status: ReviewStatus,
        comment: String,
    ) -> Result<()> {
        let visit: VisitId = parse_id("visit", &visit_id)?;
        self.edit(&resident_id, |file, editor| {
            file.review_visit(editor, visit, status.into(), &comment)?;
            Ok(())
        })
    }

    /// Opens a follow-up ticket on a resident, optionally from a visit, for an owner and
    /// by a deadline (station staff and coordinators). Gives the ticket's id.
    pub fn open_follow_up(
        &self,
        resident_id: String,
        visit_id: Option<String>,
        title: String,
        owner: Option<String>,
        deadline: Option<i64>,
    ) -> Result<String> {
        let visit: Option<VisitId> = visit_id.map(|v| parse_id("visit", &v)).transpose()?;
        let owner: Option<UserId> = owner.map(|o| parse_id("owner", &o)).transpose()?;
        self.edit(&resident_id, |file, editor| {
            let id = FollowUpId(uuid::Uuid::now_v7());
            file.open_follow_up(editor, id, visit, &title, owner, deadline)?;
            Ok(id.to_string())
        })
    }

    /// Comments on a follow-up ticket.
    pub fn comment_follow_up(
        &self,
        resident_id: String,
        follow_up_id: String,
        text: String,
    ) -> Result<String> {
        let follow_up: FollowUpId = parse_id("follow-up", &follow_up_id)?;
        self.edit(&resident_id, |file, editor| {
            let id = CommentId(uuid::Uuid::now_v7());
            file.comment_follow_up(editor, follow_up, id, &text)?;
            Ok(id.to_string())
        })
    }

    /// Closes a follow-up ticket (its owner, station staff and coordinators).
    pub fn close_follow_up(
        &self,
        resident_id: String,
        follow_up_id: String,
        resolution: String,
    ) -> Result<()> {
        let follow_up: FollowUpId = parse_id("follow-up", &follow_up_id)?;
        self.edit(&resident_id, |file, editor| {
            file.close_follow_up(editor, follow_up, &resolution)?;
            Ok(())
        })
    }

    /// Registers a new resident at a station (station staff and coordinators). Gives
    /// the resident's id.
    pub fn register_resident(&self, station_id: String, profile: ProfileRecord) -> Result<String> {
        let station: StationId = parse_id("station", &station_id)?;
        self.enrolled(|inner, creds| {
            let id = ResidentId(uuid::Uuid::now_v7());
            let principal = creds.principal(id, station)?;
            let editor = Editor {
                principal: &principal,
                now: self.now(),
            };
            let file = CaseFile::create(
                inner.replica.actor().clone(),
                &editor,
                id,
                DistrictId(creds.district),
                station,
                &profile.into(),
            )?;
            inner.replica.save_case_file(&file)?;
            Ok(id.to_string())
        })
    }

    /// Edits a resident's profile offline: every field of `profile` that differs from
    /// the profile on the phone is written in one change, the rest left alone (so an
    /// edit screen saved unchanged writes nothing). The rules decide by role: a
    /// volunteer may update the address, phone, living situation, emergency contact and
    /// needs; name, birth year, risk level and visit frequency are for staff. Returns
    /// the keys of the fields written (`phone`, `visit_every_days`, …).
    pub fn update_profile(
        &self,
        resident_id: String,
        profile: ProfileRecord,
    ) -> Result<Vec<String>> {
        self.edit(&resident_id, |file, editor| {
            let written = file.edit_profile(editor, &profile.into())?;
            Ok(written.iter().map(|f| f.key().to_owned()).collect())
        })
    }

    /// Adds an entry (a project, service type, hazard type…) to the district's catalog
    /// (coordinators), creating the catalog if the phone holds none. Gives its id.
    pub fn add_catalog_entry(
        &self,
        kind: CatalogKind,
        name: String,
        name_en: String,
        parent: Option<String>,
    ) -> Result<String> {
        let parent: Option<uuid::Uuid> = parent.map(|p| parse_id("parent", &p)).transpose()?;
        self.enrolled(|inner, creds| {
            let district = DistrictId(creds.district);
            let principal = creds.catalog_principal()?;
            let editor = Editor {
                principal: &principal,
                now: self.now(),
            };
            let mut catalog = match inner.replica.catalog(district.into())? {
                Some(c) => c,
                None => CatalogDoc::create(inner.replica.actor().clone(), &editor, district)?,
            };
            let id = uuid::Uuid::now_v7();
            catalog.put_entries(
                &editor,
                &[EntryInput {
                    kind: kind.into(),
                    id,
                    name: &name,
                    name_en: &name_en,
                    parent,
                    archived: false,
                }],
            )?;
            inner.replica.save_catalog(&catalog)?;
            Ok(id.to_string())
        })
    }

    /// The reviews of my visits and the follow-ups that came back from coordinators.
    pub fn feedback(&self) -> Result<Feedback> {
        self.enrolled(|inner, creds| {
            let me = UserId(creds.user);
            let mut reviews = Vec::new();
            let mut follow_ups = Vec::new();
            for (id, s) in Self::held_summaries(inner)? {
                if !matches!(s, Summary::Resident { .. }) {
                    continue;
                }
                let Some(file) = inner.replica.case_file(id)? else {
                    continue;
                };
                let r = file.hydrate()?;
                for v in r.visits.iter().filter(|v| v.volunteer == me) {
                    if let Some(review) = &v.review {
                        reviews.push(ReviewFeedback {
                            resident_id: r.id.to_string(),
                            resident_name: r.profile.name.clone(),
                            visit_id: v.id.to_string(),
                            review: review.clone().into(),
                        });
                    }
                }
                for f in &r.follow_ups {
                    follow_ups.push(FollowUpFeedback {
                        resident_id: r.id.to_string(),
                        resident_name: r.profile.name.clone(),
                        follow_up: f.clone().into(),
                    });
                }
            }
            reviews.sort_by_key(|r| std::cmp::Reverse(r.review.at));
            follow_ups.sort_by_key(|f| {
                (
                    f.follow_up.status == FollowUpStatus::Closed,
                    f.follow_up.deadline.unwrap_or(i64::MAX),
                )
            });
            Ok(Feedback {
                reviews,
                follow_ups,
            })
        })
    }

    /// The sealed export a revoked device kept of what it never synced, if any: the
    /// same user's phone hands it to the server at its first sync after enrolling
    /// again (and forgets it then); until then the app may save it elsewhere. Only the
    /// server can open it.
    pub fn revoked_export(&self) -> Result<Option<Vec<u8>>> {
        guarded(|| Ok(self.lock().replica.store().meta(REVOKED_EXPORT)?))
    }

    /// The district's catalog (projects, service and hazard types…); null (none) until the
    /// first sync brings it.
    pub fn catalog(&self) -> Result<Option<CatalogInfo>> {
        self.enrolled(|inner, creds| {
            let doc = DocId::from(DistrictId(creds.district));
            match inner.replica.catalog(doc)? {
                None => Ok(None),
                Some(c) => Ok(Some(c.hydrate()?.into())),
            }
        })
    }

    /// How many changes wait to be synced, and which visits the server has not yet
    /// receipted (every other visit on the phone is held by the server).
    pub fn sync_status(&self) -> Result<SyncStatus> {
        self.enrolled(|inner, _| {
            let pending = inner.replica.pending_changes()?;
            let mut unreceipted = Vec::new();
            for doc in inner.replica.store().pending_docs()? {
                for visit in inner.replica.unreceipted_visits(doc)? {
                    unreceipted.push(VisitRef {
                        resident_id: doc.to_string(),
                        visit_id: visit.to_string(),
                    });
                }
            }
            unreceipted.sort();
            let mut at_station = Vec::new();
            for (doc, heads) in Self::station_held(inner)? {
                let waiting = inner.replica.unreceipted_visits(doc)?;
                for visit in inner.replica.visits_written_since(doc, &heads)? {
                    if !waiting.contains(&visit) {
                        at_station.push(VisitRef {
                            resident_id: doc.to_string(),
                            visit_id: visit.to_string(),
                        });
                    }
                }
            }
            at_station.sort();
            Ok(SyncStatus {
                pending_changes: count(pending),
                unreceipted_visits: unreceipted,
                held_at_station: at_station,
                refused: count(inner.replica.refused()?.len()),
            })
        })
    }

    /// The uploads the server refused, kept on this phone until a person decides:
    /// what they held (the resident, the visits) and why they were refused. Nothing
    /// written on the phone is deleted without a person's decision: a refused visit
    /// stays here until a coordinator accepts it (it then reaches the record, and
    /// leaves this list at the next sync) or dismisses it (`dismissed` carries their
    /// note until the volunteer calls `acknowledgeRefused`).
    pub fn refused_changes(&self) -> Result<Vec<RefusedChange>> {
        self.enrolled(|inner, _| {
            let mut out = Vec::new();
            for refused in inner.replica.refused()? {
                let (doc, what) = inner.replica.refused_contents(&refused)?;
                let (name, visits) = match CaseFile::from_doc(doc).and_then(|f| f.hydrate()) {
                    Ok(r) => (
                        r.profile.name,
                        r.visits
                            .into_iter()
                            .filter(|v| what.visits.contains(&v.id))
                            .map(|v| RefusedVisit {
                                visit_id: v.id.to_string(),
                                started_at: v.started_at,
                                notes: v.record.notes,
                            })
                            .collect(),
                    ),
                    // A catalog, or a case file this build cannot read: still listed.
                    Err(_) => (String::new(), Vec::new()),
                };
                let other = what.profile.len() + what.follow_ups.len() + what.other;
                out.push(RefusedChange {
                    quarantine: i64::try_from(refused.quarantine).unwrap_or(i64::MAX),
                    resident_id: refused.doc.to_string(),
                    resident_name: name,
                    visits,
                    other_changes: count(other),
                    code: refused.code,
                    reason: refused.message,
                    dismissed: refused.dismissed.map(|d| d.note),
                });
            }
            Ok(out)
        })
    }

    /// The volunteer has read a coordinator's dismissal of a refused upload: the phone
    /// forgets it. One still awaiting a decision is `AwaitingDecision`: only a person's
    /// decision lets it go.
    pub fn acknowledge_refused(&self, quarantine: i64) -> Result<()> {
        let quarantine = u64::try_from(quarantine)
            .map_err(|_| LinliError::invalid(format!("no refused upload {quarantine}")))?;
        self.enrolled(|inner, _| {
            if inner.replica.acknowledge_dismissal(quarantine)? {
                return Ok(());
            }
            if inner
                .replica
                .refused()?
                .iter()
                .any(|r| r.quarantine == quarantine)
            {
                return Err(LinliError::AwaitingDecision);
            }
            Err(LinliError::NotFound {
                what: format!("refused upload {quarantine}"),
            })
        })
    }

    /// Syncs with the server: uploads what waits, takes in receipts, other phones' and
    /// coordinators' changes and purges, round after round until nothing is left (at
    /// most 32 round trips). `Network` when the server cannot be reached:
    /// nothing is lost, sync again later. `Revoked` when the device was revoked: every
    /// resident's data has been deleted. `Cancelled` when `cancel` fired between round
    /// trips: what was exchanged is kept.
    pub fn sync(&self, cancel: Arc<CancelToken>) -> Result<SyncOutcome> {
        guarded(|| self.sync_rounds(&cancel))
    }

    /// Syncs with the station hub at `address` (what the app found on the station's
    /// network, e.g. `http://192.168.1.20:8080`) instead of the district server, when
    /// the station's uplink is slow or down. The same exchange as `sync`: the phone
    /// proves which device it is with its key for this hub (nothing to configure), and
    /// keeps a cursor of its own for it. Receipts from a hub mean the visit is held at
    /// the station (`SyncOutcome.hub` names it); the hub hands it on to the district
    /// server when it can. A resident the hub does not hold (another station's) stays
    /// pending on the phone for the district server. `Revoked` as with `sync`.
    pub fn sync_at_hub(&self, address: String, cancel: Arc<CancelToken>) -> Result<SyncOutcome> {
        guarded(|| self.hub_rounds(&address, &cancel))
    }
}

impl LinliClient {
    /// Enrols at the station hub `hub` behind `http` with `code`, sealed in the code's
    /// enrolment channel (`sync_core::protocol::channel::enrolment_channel`): the code
    /// never crosses the station's network, nor the device's keys in the clear, and
    /// only the district's hub of the code's station can answer. The credential's JSON.
    fn enrol_sealed(
        http: &Http,
        hub: uuid::Uuid,
        code: &str,
        device_name: &str,
    ) -> Result<Vec<u8>> {
        let code_hash = channel::code_hash(code);
        let mut session = [0u8; channel::SESSION];
        getrandom::fill(&mut session).map_err(|e| LinliError::Internal {
            detail: format!("no randomness to enrol: {e}"),
        })?;
        let sealed_with = channel::enrolment_channel(&code_hash, hub, session);
        let request = serde_json::json!({ "code": "", "device_name": device_name });
        let call = Call::post(
            "/api/v1/enrol",
            "application/json",
            request.to_string().into_bytes(),
            None,
        );
        let frame = sealed_with.seal_call(0, &call);
        let lookup = hex::encode(channel::code_lookup(&code_hash));
        let sealed = http
            .post_with_header(
                "/api/v1/hub/enrol",
                (channel::CODE_HEADER, &lookup),
                channel::MEDIA_TYPE,
                &frame,
            )?
            .map_err(Refusal::into_error)?;
        let reply = sealed_with
            .open_reply(0, &sealed)
            .map_err(|_| not_genuine())?;
        answer_of(reply.status, reply.body).map_err(Refusal::into_error)
    }

    fn creds(&self) -> Result<Credentials> {
        self.lock().creds.clone().ok_or(LinliError::NotEnrolled)
    }

    /// The device was revoked: seal what it never synced for the server (see
    /// `revokedExport`), then delete everything else and forget the credential. If the
    /// export cannot be sealed nothing is deleted, and the next contact tries again.
    fn purge_everything(&self) -> LinliError {
        let mut inner = self.lock();
        if let Err(e) = Self::seal_export(&mut inner, self.now()) {
            return e;
        }
        if let Err(e) = inner.replica.store_mut().wipe(true) {
            return LinliError::storage(format!(
                "the device was revoked but its data could not be deleted: {e}"
            ));
        }
        inner.creds = None;
        inner.replica.set_actor(unenrolled_actor());
        LinliError::Revoked
    }

    /// Seals the unsynced changes under the device's export key, if it has one and
    /// there are any, and keeps the export in the store.
    fn seal_export(inner: &mut Inner, now: Timestamp) -> Result<()> {
        let Some(creds) = inner.creds.clone() else {
            return Ok(());
        };
        let Some(key) = inner.replica.store().meta(EXPORT_KEY)? else {
            return Ok(());
        };
        // What only a station hub holds is not the district server's yet: a hub that
        // never hands it on must not be where it ends.
        for (doc, heads) in Self::station_held(inner)? {
            inner.replica.hand_over_beyond(doc, &heads)?;
        }
        let batches = inner.replica.unsynced()?;
        if batches.is_empty() {
            return Ok(());
        }
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| LinliError::Internal {
            detail: format!("no random source to seal the export: {e}"),
        })?;
        let sealed = Export {
            device: DeviceId(creds.device),
            user: UserId(creds.user),
            made_at: now,
            batches,
        }
        .seal(&key, nonce)
        .map_err(|e| LinliError::Internal {
            detail: format!("sealing the export: {e}"),
        })?;
        Ok(inner.replica.store().set_meta(REVOKED_EXPORT, &sealed)?)
    }

    /// Hands a revoked device's export, kept in this store, to the server through this
    /// (newly enrolled) device; forgets it once the server has it. Returns how many
    /// documents' changes the server kept for a coordinator's decision.
    fn hand_over_export(&self, http: &Http) -> Result<i64> {
        let Some(export) = self.lock().replica.store().meta(REVOKED_EXPORT)? else {
            return Ok(0);
        };
        let token = self.access_token(http, false)?;
        match http.post(
            "/api/v1/recover",
            Some(&token),
            "application/octet-stream",
            &export,
        )? {
            Ok(body) => {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                self.lock().replica.store().delete_meta(REVOKED_EXPORT)?;
                Ok(json["kept"].as_i64().unwrap_or(0))
            }
            // The server has it already.
            Err(refusal) if refusal.status == 409 => {
                self.lock().replica.store().delete_meta(REVOKED_EXPORT)?;
                Ok(0)
            }
            // Another user's phone, or a server that cannot open it: keep it for the
            // app to hand to a coordinator (`revoked_export`).
            Err(refusal) if refusal.status < 500 && refusal.status != 429 => Ok(0),
            Err(refusal) => Err(refusal.into_error()),
        }
    }

    /// Makes `call` at the server behind `http`: at the district server with the
    /// device's token (refreshed and tried once more if it had expired), at a hub
    /// sealed in the session's channel (in a new session and once more if the hub
    /// ended it). A hub's answer counts only if it opens with the session's key: what
    /// does not, or comes unsealed, is never taken for a revocation.
    fn call(&self, http: &Http, link: &mut Link, call: &Call) -> Result<Answer> {
        let (id, channel, next) = match link {
            Link::District => {
                let send = |token: &str| match call.method.as_str() {
                    "GET" => http.get_with(&call.path, Some(token)),
                    _ => http.post_with(
                        &call.path,
                        Some(token),
                        call.content_type.as_deref().unwrap_or_default(),
                        &call.body,
                        call.seal.as_deref(),
                    ),
                };
                let answer = send(&self.access_token(http, false)?)?;
                return match answer {
                    Err(r) if r.status == 401 && token_ended(&r.code) => {
                        send(&self.access_token(http, true)?)
                    }
                    answer => Ok(answer),
                };
            }
            Link::Hub { id, channel, next } => (id, channel, next),
        };
        let mut renewed = false;
        loop {
            let seq = *next;
            *next = next.saturating_add(1);
            let frame = channel.seal_call(seq, call);
            let ended = match http.post("/api/v1/hub/channel", None, channel::MEDIA_TYPE, &frame)? {
                Ok(sealed) => {
                    let reply = channel
                        .open_reply(seq, &sealed)
                        .map_err(|_| not_genuine())?;
                    match answer_of(reply.status, reply.body) {
                        Err(refusal) if refusal.status == 401 && token_ended(&refusal.code) => {
                            refusal
                        }
                        answer => return Ok(answer),
                    }
                }
                Err(refusal) if refusal.status == 401 && refusal.code == "hub_session_ended" => {
                    refusal
                }
                // Unsealed: anything on the station's network could have said it.
                Err(refusal) if refusal.purge || refusal.code == "device_revoked" => {
                    return Err(not_genuine());
                }
                Err(refusal) => return Err(refusal.into_error()),
            };
            if renewed {
                return Ok(Err(ended));
            }
            renewed = true;
            let (hub, fresh) = self.hub_session(http)?;
            if hub != *id {
                return Err(LinliError::Refused {
                    code: "another_hub".into(),
                    detail: "a different station hub answered at this address; sync again".into(),
                });
            }
            *channel = fresh;
            *next = 0;
        }
    }

    /// A fresh access token, refreshing it first if it is about to expire (or `force`).
    fn access_token(&self, http: &Http, force: bool) -> Result<String> {
        let creds = self.creds()?;
        if !force && creds.access_expires_at - REFRESH_MARGIN_MS > now_ms() {
            return Ok(creds.access_token);
        }
        let refresh = || {
            http.post_json(
                "/api/v1/token",
                None,
                &serde_json::json!({ "refresh_token": creds.refresh_token }),
            )
        };
        let mut answer = refresh()?;
        let certificate = self.lock().replica.store().meta(HUB_ENROLMENT)?;
        if let (Err(refusal), Some(certificate)) = (&answer, &certificate)
            && refusal.code == "bad_credentials"
        {
            // Enrolled at a station hub that has not handed the device on yet: the
            // phone brings the hub's certificate itself, then refreshes again.
            let certificate = String::from_utf8_lossy(certificate);
            http.post_json(
                "/api/v1/enrol/adopt",
                None,
                &serde_json::json!({ "certificate": certificate }),
            )?
            .map_err(Refusal::into_error)?;
            answer = refresh()?;
        }
        let body = match answer {
            Ok(body) => {
                if certificate.is_some() {
                    // The district server knows the device now.
                    self.lock().replica.store().delete_meta(HUB_ENROLMENT)?;
                }
                body
            }
            Err(refusal) => {
                let error = refusal.into_error();
                return Err(match error {
                    LinliError::Revoked => self.purge_everything(),
                    other => other,
                });
            }
        };
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| LinliError::Malformed {
                detail: format!("the token answer is not JSON: {e}"),
            })?;
        let (Some(access), Some(refresh)) = (
            json["access_token"].as_str(),
            json["refresh_token"].as_str(),
        ) else {
            return Err(LinliError::Malformed {
                detail: "the token answer lacks its tokens".into(),
            });
        };
        let mut updated = creds;
        updated.access_token = access.to_owned();
        updated.refresh_token = refresh.to_owned();
        updated.access_expires_at = now_ms().saturating_add(
            json["expires_in"]
                .as_i64()
                .unwrap_or(0)
                .saturating_mul(1000),
        );
        // Keep the rotated refresh token before anything else can fail.
        let mut inner = self.lock();
        save_creds(inner.replica.store(), &updated)?;
        inner.creds = Some(updated);
        drop(inner);
        Ok(access.to_owned())
    }

    fn sync_rounds(&self, cancel: &CancelToken) -> Result<SyncOutcome> {
        let creds = self.creds()?;
        let http = Http::new(&creds.server_url, self.timeouts);
        let recovered = match self.hand_over_export(&http) {
            Ok(n) => n,
            Err(LinliError::Revoked) => return Err(self.purge_everything()),
            Err(e) => return Err(e),
        };
        let mut link = Link::District;
        let refused = if Self::station_held(&self.lock())?.is_empty() {
            Vec::new()
        } else {
            // Visits left at a station hub that the district server refused after the
            // hub took them: set aside before the rounds could reset or purge their
            // files.
            let answer = match self.call(&http, &mut link, &Call::get("/api/v1/sync/refused"))? {
                Ok(body) => serde_json::from_slice(&body).unwrap_or_default(),
                // A district server older than this library: nothing to set aside.
                Err(refusal) if refusal.status == 404 => serde_json::Value::Null,
                Err(refusal) => return Err(refusal.into_error()),
            };
            let mut inner = self.lock();
            let mut markers = Self::station_held(&inner)?;
            let refused = Self::take_relayed(&mut inner, &mut markers, &answer)?;
            Self::save_station_held(&inner, &markers)?;
            // The rest goes up again: a hub that never forwards (its disk died, it
            // was revoked or taken) must not be the only way a visit reaches the
            // record. What the hub did forward is stored once.
            for (doc, heads) in &markers {
                inner.replica.hand_over_beyond(*doc, heads)?;
            }
            refused
        };
        let mut outcome = self.rounds(&http, &mut link, recovered, cancel)?;
        outcome.refused_by_district = refused;
        Ok(outcome)
    }

    fn hub_rounds(&self, address: &str, cancel: &CancelToken) -> Result<SyncOutcome> {
        self.creds()?;
        let http = Http::new(address, self.timeouts);
        let (hub, channel) = self.hub_session(&http)?;
        let mut link = Link::Hub {
            id: hub,
            channel,
            next: 0,
        };
        // First what the district server answered for what this hub took earlier, so
        // that a refused upload is set aside before the hub's answers could reset or
        // purge the file that holds it.
        let (confirmed, refused) = self.take_held(&http, &mut link)?;
        let mut outcome = self.rounds(&http, &mut link, 0, cancel)?;
        outcome.held_by_district = confirmed;
        outcome.refused_by_district = refused;
        Ok(outcome)
    }

    /// Asks the hub behind `http` what the district server answered for this device's
    /// requests it handed on (`GET /api/v1/hub/held`): "held at the station" becomes
    /// "held by the district server" for what it receipted, and what it refused into
    /// its quarantine is set aside here as any refusal is (`refusedChanges`), with the
    /// district server's number and reason. The residents now confirmed, and the
    /// refusals of uploads this phone still counted as held at the station.
    fn take_held(&self, http: &Http, link: &mut Link) -> Result<(Vec<String>, Vec<RejectionInfo>)> {
        let held = match self.call(http, link, &Call::get("/api/v1/hub/held"))? {
            Ok(body) => serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
            Err(refusal) => return Err(refusal.into_error()),
        };
        let mut inner = self.lock();
        let mut markers = Self::station_held(&inner)?;
        for receipt in held["receipts"].as_array().into_iter().flatten() {
            if let Some(marker) = doc_of(receipt).and_then(|doc| markers.get_mut(&doc)) {
                marker.extend(heads_of(receipt));
            }
        }
        let refused = Self::take_relayed(&mut inner, &mut markers, &held)?;
        let mut confirmed = Vec::new();
        for (doc, marker) in &markers {
            if inner.replica.receipted_within(*doc, marker)? {
                confirmed.push(*doc);
            }
        }
        for doc in &confirmed {
            markers.remove(doc);
        }
        Self::save_station_held(&inner, &markers)?;
        Ok((confirmed.iter().map(ToString::to_string).collect(), refused))
    }

    /// Sets aside what the district server refused (`answer["refused"]`, from the
    /// hub's `/hub/held` or the district server's `/sync/refused`) of uploads a hub
    /// took, for documents this phone still counts as held at a station; those it set
    /// aside are held at the station no more. The refusals of such documents.
    fn take_relayed(
        inner: &mut Inner,
        markers: &mut BTreeMap<DocId, Vec<ChangeHash>>,
        answer: &serde_json::Value,
    ) -> Result<Vec<RejectionInfo>> {
        let mut refused = Vec::new();
        for r in answer["refused"].as_array().into_iter().flatten() {
            let Some(doc) = doc_of(r) else {
                continue;
            };
            let Some(marker) = markers.get(&doc).cloned() else {
                continue;
            };
            let rejection = Rejection {
                doc,
                code: r["code"].as_str().unwrap_or_default().to_owned(),
                message: r["message"].as_str().unwrap_or_default().to_owned(),
                heads: heads_of(r).into_iter().map(|h| Hash(h.0)).collect(),
                quarantine: r["quarantine"].as_u64().unwrap_or(0),
            };
            if inner.replica.take_relayed_refusal(&rejection, &marker)? {
                markers.remove(&doc);
            }
            refused.push(RejectionInfo {
                doc_id: doc.to_string(),
                code: rejection.code,
                reason: rejection.message,
            });
        }
        Ok(refused)
    }

    /// Per document, the heads a station hub holds that the district server has not
    /// confirmed: what it is known to hold, plus the final receipts relayed since.
    fn station_held(inner: &Inner) -> Result<BTreeMap<DocId, Vec<ChangeHash>>> {
        let Some(bytes) = inner.replica.store().meta(STATION_HELD)? else {
            return Ok(BTreeMap::new());
        };
        let stored: Vec<([u8; 16], Vec<[u8; 32]>)> =
            postcard::from_bytes(&bytes).map_err(|_| LinliError::Storage {
                detail: "the record of what stations hold is damaged".into(),
            })?;
        Ok(stored
            .into_iter()
            .map(|(d, hs)| {
                (
                    DocId(uuid::Uuid::from_bytes(d)),
                    hs.into_iter().map(ChangeHash).collect(),
                )
            })
            .collect())
    }

    fn save_station_held(inner: &Inner, markers: &BTreeMap<DocId, Vec<ChangeHash>>) -> Result<()> {
        let stored: Vec<([u8; 16], Vec<[u8; 32]>)> = markers
            .iter()
            .map(|(d, hs)| (*d.0.as_bytes(), hs.iter().map(|h| h.0).collect()))
            .collect();
        let bytes = postcard::to_stdvec(&stored).map_err(|e| LinliError::Internal {
            detail: format!("encoding what stations hold: {e}"),
        })?;
        Ok(inner.replica.store().set_meta(STATION_HELD, &bytes)?)
    }

    /// Proves this device to the hub behind `http` with its key for that hub: the
    /// hub's id and a session token.
    fn hub_session(&self, http: &Http) -> Result<(uuid::Uuid, Channel)> {
        let creds = self.creds()?;
        let keys = self
            .lock()
            .replica
            .store()
            .meta(EXPORT_KEY)?
            .and_then(|key| DeviceKeys::new(&key).ok())
            .ok_or_else(|| LinliError::Refused {
                code: "no_export_key".into(),
                detail: "this phone was enrolled before station hubs; sync at the district \
                         server, or enrol it again"
                    .into(),
            })?;
        let malformed = |what: &str| LinliError::Malformed {
            detail: format!("the hub's answer lacks {what}"),
        };
        // Only a hub that proved itself may tell the phone it was revoked.
        let info = http.get("/api/v1/hub")?.map_err(|r| match r.into_error() {
            LinliError::Revoked => not_genuine(),
            other => other,
        })?;
        let info: serde_json::Value = serde_json::from_slice(&info).unwrap_or_default();
        let hub: uuid::Uuid = info["hub"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| malformed("its id"))?;
        let challenge = info["challenge"]
            .as_str()
            .and_then(|c| hex::decode(c).ok())
            .ok_or_else(|| malformed("a challenge"))?;
        let key = keys.hub_key(hub);
        let proof = seal::hub_proof(&key, &challenge, creds.device);
        // The hub proves itself in turn, over a nonce of ours, before anything of this
        // phone's is sent to it.
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| LinliError::Internal {
            detail: format!("no randomness for the hub's proof: {e}"),
        })?;
        let answer = http.post_json(
            "/api/v1/hub/session",
            None,
            &serde_json::json!({
                "device": creds.device,
                "challenge": hex::encode(&challenge),
                "proof": hex::encode(proof),
                "nonce": hex::encode(nonce),
            }),
        )?;
        let genuine = |proof: Option<&str>| {
            proof.and_then(|p| hex::decode(p).ok()).is_some_and(|p| {
                seal::verify_hub_answer(&key, hub, creds.device, &nonce, &challenge, &p)
            })
        };
        let body = match answer {
            Ok(body) => body,
            Err(refusal) => {
                let proved = genuine(refusal.hub_proof.as_deref());
                return Err(match refusal.into_error() {
                    LinliError::Revoked if proved => self.purge_everything(),
                    LinliError::Revoked => not_genuine(),
                    other => other,
                });
            }
        };
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if !genuine(json["hub_proof"].as_str()) {
            return Err(not_genuine());
        }
        let session = <[u8; channel::SESSION]>::try_from(challenge.as_slice())
            .map_err(|_| malformed("a challenge of 16 bytes"))?;
        Ok((hub, Channel::new(&key, hub, creds.device, &nonce, session)))
    }

    /// Keeps one cursor (and held-list flag) per server: the district server's feed
    /// numbers mean nothing to a hub, nor a hub's to it.
    fn use_cursor_of(&self, server: &str) -> Result<()> {
        let mut inner = self.lock();
        let store = inner.replica.store_mut();
        let current = store.meta(SYNC_SERVER)?.map_or_else(
            || DISTRICT.to_owned(),
            |b| String::from_utf8_lossy(&b).into_owned(),
        );
        if current == server {
            return Ok(());
        }
        let cursor = store.cursor()?;
        let need_held = store.need_held()?;
        store.set_meta(&format!("cursor@{current}"), &cursor.to_le_bytes())?;
        store.set_meta(&format!("need_held@{current}"), &[u8::from(need_held)])?;
        let cursor = store
            .meta(&format!("cursor@{server}"))?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_le_bytes);
        // A server met for the first time gets the full list of what the phone holds.
        let need_held = store
            .meta(&format!("need_held@{server}"))?
            .is_none_or(|b| b.first() == Some(&1));
        store.set_cursor(cursor)?;
        store.set_need_held(need_held)?;
        store.set_meta(SYNC_SERVER, server.as_bytes())?;
        Ok(())
    }

    fn rounds(
        &self,
        http: &Http,
        link: &mut Link,
        recovered: i64,
        cancel: &CancelToken,
    ) -> Result<SyncOutcome> {
        let at_hub = matches!(link, Link::Hub { .. });
        let server = match &link {
            Link::District => DISTRICT.to_owned(),
            Link::Hub { id, .. } => id.to_string(),
        };
        self.use_cursor_of(&server)?;
        // Residents refused with nothing kept (a hub leaves them to the district
        // server): they stay pending.
        let mut parked = BTreeSet::new();
        // Every request goes up sealed under the device's upload key, so that a
        // station hub can hand it on and the district server still knows the phone
        // wrote it. A device enrolled before export keys existed sends none.
        let keys = self
            .lock()
            .replica
            .store()
            .meta(EXPORT_KEY)?
            .and_then(|key| DeviceKeys::new(&key).ok());
        let mut outcome = SyncOutcome {
            sent_changes: 0,
            received_changes: 0,
            receipted: Vec::new(),
            rejections: Vec::new(),
            purged: Vec::new(),
            rounds: 0,
            bytes_sent: 0,
            bytes_received: 0,
            complete: false,
            recovered,
            hub: match &link {
                Link::District => None,
                Link::Hub { id, .. } => Some(id.to_string()),
            },
            held_by_district: Vec::new(),
            refused_by_district: Vec::new(),
        };
        while outcome.rounds < MAX_ROUNDS {
            if cancel.is_cancelled() {
                return Err(LinliError::Cancelled);
            }
            let (body, sent, acked_before) = {
                let inner = self.lock();
                let request = inner.replica.prepare_within(
                    self.now(),
                    sync_core::protocol::replica::UPLOAD_BUDGET,
                    &parked,
                )?;
                let sent: usize = request.uploads.iter().map(|u| u.changes.len()).sum();
                // What the server of record held of each uploaded document before this
                // round: a hub's receipt marks what lies beyond it as held at the
                // station only.
                let mut before = BTreeMap::new();
                for upload in &request.uploads {
                    let acked = inner.replica.store().sync_state(upload.doc)?;
                    before.insert(upload.doc, acked.map(|s| s.acked).unwrap_or_default());
                }
                (request.encode(), sent, before)
            };
            let seal = keys.as_ref().map(|k| seal::to_header(&k.seal(&body)));
            let sent_bytes = body.len();
            let answer = self.call(
                http,
                link,
                &Call::post("/api/v1/sync", ENVELOPE, body, seal),
            )?;
            let bytes = match answer {
                Ok(bytes) => bytes,
                Err(refusal) => {
                    return Err(match refusal.into_error() {
                        LinliError::Revoked => self.purge_everything(),
                        other => other,
                    });
                }
            };
            outcome.rounds += 1;
            outcome.bytes_sent += count(sent_bytes);
            outcome.bytes_received += count(bytes.len());
            outcome.sent_changes += count(sent);
            let mut inner = self.lock();
            let response = SyncResponse::decode(&bytes).map_err(|e| LinliError::Malformed {
                detail: format!("the sync answer does not decode: {e}"),
            })?;
            // The whole answer is applied in one transaction (one fsync, and all of
            // it or none). Automerge applies the server's bytes; a panic in there must
            // not cross the FFI (the server guards its applies the same way).
            inner.replica.store_mut().begin_batch()?;
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                inner.replica.apply(&response)
            }));
            let ok = matches!(applied, Ok(Ok(_)));
            inner.replica.store_mut().end_batch(ok)?;
            let report = applied.map_err(|_| LinliError::Malformed {
                detail: "Automerge could not apply what the server sent".into(),
            })??;
            if !report.receipted.is_empty() {
                let mut markers = Self::station_held(&inner)?;
                for doc in &report.receipted {
                    if at_hub {
                        let known = acked_before.get(doc).cloned().unwrap_or_default();
                        markers.entry(*doc).or_insert(known);
                    } else {
                        markers.remove(doc);
                    }
                }
                Self::save_station_held(&inner, &markers)?;
            }
            outcome.received_changes += count(report.received_changes);
            outcome
                .receipted
                .extend(report.receipted.iter().map(ToString::to_string));
            outcome
                .rejections
                .extend(report.rejections.iter().map(|r| RejectionInfo {
                    doc_id: r.doc.to_string(),
                    code: r.code.clone(),
                    reason: r.message.clone(),
                }));
            outcome
                .purged
                .extend(report.purged.iter().map(ToString::to_string));
            // Refused with nothing kept (a hub leaves it to the district server, or the
            // device's quarantine is full): asking again in this sync changes nothing.
            parked.extend(
                report
                    .rejections
                    .iter()
                    .filter(|r| {
                        r.quarantine == 0 && r.code != sync_core::protocol::server::codes::BUSY
                    })
                    .map(|r| r.doc),
            );
            let store = inner.replica.store();
            let waiting = store.pending_docs()?;
            let quiet =
                !report.more && !store.need_held()? && waiting.iter().all(|d| parked.contains(d));
            if quiet {
                outcome.complete = true;
                break;
            }
        }
        if !at_hub {
            // What the district server now holds whole (receipted, repaired or
            // delivered) is held at a station no more.
            let inner = self.lock();
            let mut markers = Self::station_held(&inner)?;
            let before = markers.len();
            let store = inner.replica.store();
            let mut settled = Vec::new();
            for doc in markers.keys() {
                if store
                    .sync_state(*doc)?
                    .is_none_or(|s| !s.pending && s.fallback.is_none())
                {
                    settled.push(*doc);
                }
            }
            for doc in settled {
                markers.remove(&doc);
            }
            if markers.len() != before {
                Self::save_station_held(&inner, &markers)?;
            }
        }
        Ok(outcome)
    }
}

/// Whether a 401's `code` says only that the token has ended (get another and call
/// again), not that the device may no longer call.
fn token_ended(code: &str) -> bool {
    matches!(code, "token_expired" | "invalid_token")
}

/// Something at a station hub's address that could not prove it is the district's hub.
fn not_genuine() -> LinliError {
    LinliError::Refused {
        code: "hub_not_genuine".into(),
        detail: "what answered at the station hub's address could not prove it is the \
                 district's hub: nothing it said was believed, and nothing readable was sent \
                 to it"
            .into(),
    }
}

/// The `doc` of a JSON answer's entry.
fn doc_of(v: &serde_json::Value) -> Option<DocId> {
    v["doc"].as_str().and_then(|d| d.parse().ok()).map(DocId)
}

/// The `heads` (hex change hashes) of a JSON answer's entry; malformed ones are left
/// out.
fn heads_of(v: &serde_json::Value) -> Vec<ChangeHash> {
    v["heads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().and_then(|h| hex::decode(h).ok()))
        .filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
        .map(ChangeHash)
        .collect()
}
