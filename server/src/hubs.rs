//! Station hubs on the district server: their one-time enrolment codes, their
//! rotating credentials and their revocation. A hub enrols like a phone (a code a
//! coordinator issues for one station, exchanged once for a refresh token) but is no
//! user's device: its tokens carry their own audience, so a hub's token opens no
//! user's endpoint and a user's token no hub's. See `ARCHITECTURE.md`, "Station hubs".

use crate::auth::{self, code_hash, secret_hash};
use crate::error::{AuthFailure, Error, Result};
use crate::identity::{Holder, bytes, new_id, uuid_of};
use crate::store::{SqlStore, with_pool};
use sync_core::ids::{DistrictId, StationId, Timestamp, UserId};
use sync_core::protocol::seal::DeviceKeys;
use uuid::Uuid;

/// A station hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hub {
    /// The hub.
    pub id: Uuid,
    /// The station it serves.
    pub station: StationId,
    /// The station's district.
    pub district: DistrictId,
    /// A name for people ("Huasha station's hub").
    pub name: String,
    /// When it enrolled.
    pub enrolled_at: Timestamp,
    /// When it last called (to the minute or so).
    pub last_seen_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// Phones' requests it still held for the district server at its last call, and
    /// when it took the oldest of them (none reported yet: `None`).
    pub waiting: Option<(i64, Option<Timestamp>)>,
}

/// A newly enrolled hub and its first refresh token (shown once).
#[derive(Debug)]
pub struct HubEnrolment {
    /// The hub.
    pub hub: Hub,
    /// Its refresh token.
    pub refresh_token: String,
}

/// The `hubs` columns a [`HubRow`] holds, joined with the station for its district.
const HUB_COLUMNS: &str = "h.id, h.station, s.district, h.name, h.enrolled_at, h.last_seen_at, h.revoked_at, h.waiting, h.oldest_waiting_at";

type HubRow = (
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn hub_from_row(
    (id, station, district, name, enrolled_at, last_seen_at, revoked_at, waiting, oldest): HubRow,
) -> Result<Hub> {
    Ok(Hub {
        id: uuid_of(&id)?,
        station: StationId(uuid_of(&station)?),
        district: DistrictId(uuid_of(&district)?),
        name,
        enrolled_at,
        last_seen_at,
        revoked_at,
        waiting: waiting.map(|n| (n, oldest)),
    })
}

impl SqlStore {
    /// Issues a one-time code that enrols a hub for `station`, valid for 15 minutes.
    pub async fn issue_hub_code(
        &self,
        issued_by: UserId,
        station: StationId,
        now: Timestamp,
    ) -> Result<(String, Timestamp)> {
        let code = auth::new_enrolment_code()?;
        let expires_at = now + auth::ENROLMENT_CODE_MS;
        with_pool!(self, p => sqlx::query("INSERT INTO hub_codes (code_hash, station, issued_by, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(code_hash(&code)).bind(bytes(station.0)).bind(bytes(issued_by.0)).bind(now).bind(expires_at)
            .execute(p).await.map(|_| ())?);
        Ok((code, expires_at))
    }

    /// Exchanges a hub code for a new hub and its refresh token. The code works once,
    /// before it expires.
    pub async fn enrol_hub(&self, code: &str, name: &str, now: Timestamp) -> Result<HubEnrolment> {
        let id = new_id(now)?;
        let refresh_token = auth::new_secret()?;
        let name = crate::identity::device_label(name);
        let enrolled: bool = with_pool!(self, p => {
            let mut tx = p.begin().await?;
            let row: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
                "UPDATE hub_codes SET used_at = $2, hub = $3
                 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING station, issued_by")
                .bind(code_hash(code)).bind(now).bind(bytes(id))
                .fetch_optional(&mut *tx).await?;
            if let Some((station, issued_by)) = &row {
                sqlx::query("INSERT INTO hubs (id, station, name, enrolled_at, enrolled_by, refresh_hash) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(bytes(id)).bind(station.clone()).bind(&name).bind(now).bind(issued_by.clone())
                    .bind(secret_hash(&refresh_token))
                    .execute(&mut *tx).await?;
                tx.commit().await?;
            }
            row.is_some()
        });
        if !enrolled {
            return Err(Error::Unauthenticated(AuthFailure::BadCredentials));
        }
        let hub = self
            .hub(id)
            .await?
            .ok_or_else(|| Error::Internal("an enrolled hub is missing".into()))?;
        Ok(HubEnrolment { hub, refresh_token })
    }

    /// Exchanges a hub's refresh token for a new one (rotation, with one token of
    /// grace as for phones). A revoked hub gets `hub_revoked`.
    pub async fn rotate_hub_refresh(&self, token: &str) -> Result<(Hub, String)> {
        let (id, next) = self
            .rotate_secret(Holder::Hub, token, AuthFailure::HubRevoked)
            .await?;
        let hub = self
            .hub(id)
            .await?
            .ok_or(Error::Unauthenticated(AuthFailure::BadCredentials))?;
        Ok((hub, next))
    }

    /// A hub by id.
    pub async fn hub(&self, id: Uuid) -> Result<Option<Hub>> {
        let sql = format!(
            "SELECT {HUB_COLUMNS} FROM hubs h JOIN stations s ON s.id = h.station WHERE h.id = $1"
        );
        let row: Option<HubRow> = with_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(bytes(id)).fetch_optional(p).await?);
        row.map(hub_from_row).transpose()
    }

    /// The hubs of `district`'s stations, newest first.
    pub async fn hubs_in(&self, district: DistrictId) -> Result<Vec<Hub>> {
        let sql = format!(
            "SELECT {HUB_COLUMNS} FROM hubs h JOIN stations s ON s.id = h.station
             WHERE s.district = $1 ORDER BY h.enrolled_at DESC"
        );
        let rows: Vec<HubRow> = with_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(bytes(district.0)).fetch_all(p).await?);
        rows.into_iter().map(hub_from_row).collect()
    }

    /// Revokes a hub: its tokens stop working at once. Idempotent.
    pub async fn revoke_hub(&self, id: Uuid, by: UserId, now: Timestamp) -> Result<()> {
        let updated = with_pool!(self, p => sqlx::query(
            "UPDATE hubs SET revoked_at = COALESCE(revoked_at, $2), revoked_by = COALESCE(revoked_by, $3) WHERE id = $1")
            .bind(bytes(id)).bind(now).bind(bytes(by.0))
            .execute(p).await?.rows_affected());
        if updated == 0 {
            return Err(Error::NotFound(format!("no hub {id}")));
        }
        Ok(())
    }

    /// Records what a hub said it still holds for the district server.
    pub async fn record_hub_backlog(
        &self,
        hub: &Hub,
        waiting: i64,
        oldest: Option<Timestamp>,
    ) -> Result<()> {
        if hub.waiting == Some((waiting, oldest)) {
            return Ok(());
        }
        with_pool!(self, p => sqlx::query(
            "UPDATE hubs SET waiting = $2, oldest_waiting_at = $3 WHERE id = $1")
            .bind(bytes(hub.id)).bind(waiting).bind(oldest).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Notes that a hub called; written at most once a minute.
    pub async fn touch_hub(&self, hub: &Hub, now: Timestamp) -> Result<()> {
        if hub.last_seen_at.is_some_and(|seen| now - seen < 60_000) {
            return Ok(());
        }
        with_pool!(self, p => sqlx::query("UPDATE hubs SET last_seen_at = $2 WHERE id = $1")
            .bind(bytes(hub.id)).bind(now).execute(p).await.map(|_| ())?);
        Ok(())
    }
}

/// What a hub needs to know about the people who may sync with it: the station's
/// district's users with their scope narrowed to the station, and their devices with
/// the keys they prove themselves with to this hub. Relational, like identity on the
/// district server; the hub replaces its copy with each roster it fetches.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Roster {
    /// The hub's station.
    pub station: Uuid,
    /// Its name.
    pub station_name: String,
    /// The station's district.
    pub district: Uuid,
    /// Its name.
    pub district_name: String,
    /// The district's users.
    pub users: Vec<RosterUser>,
    /// Their devices that can prove themselves to a hub (enrolled with an export key).
    pub devices: Vec<RosterDevice>,
    /// The largest forward body the district server takes, in bytes (0: not said): the
    /// hub sizes its batches to it, and never sends a request it could not take.
    #[serde(default)]
    pub forward_limit: u64,
    /// The codes for enrolling a phone at this hub, unused and unexpired (hashes only).
    #[serde(default)]
    pub codes: Vec<crate::enrolment::RosterCode>,
    /// Hex: the key this hub signs the devices it enrols with.
    #[serde(default)]
    pub enrol_key: String,
}

impl std::fmt::Debug for Roster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roster")
            .field("station", &self.station)
            .field("district", &self.district)
            .field("users", &self.users)
            .field("devices", &self.devices)
            .field("forward_limit", &self.forward_limit)
            .field("codes", &self.codes)
            .finish_non_exhaustive()
    }
}

/// A user as a hub sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RosterUser {
    /// The user.
    pub id: Uuid,
    /// The login name.
    pub login: String,
    /// The name shown to others.
    pub display_name: String,
    /// The role's code.
    pub role: String,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// Station staff: whether they cover the hub's station.
    pub covers_station: bool,
    /// Volunteers: their residents at the hub's station.
    pub residents: Vec<Uuid>,
}

/// A device as a hub sees it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RosterDevice {
    /// The device.
    pub id: Uuid,
    /// Its user.
    pub user: Uuid,
    /// A name for people.
    pub name: String,
    /// The Automerge actors registered to it, hex.
    pub actors: Vec<String>,
    /// Hex: the key it proves itself with to this hub
    /// (`sync_core::protocol::seal::DeviceKeys::hub_key`).
    pub hub_key: String,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl std::fmt::Debug for RosterDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RosterDevice")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// A device as the roster selects it: id, user, name, revoked at, export key.
type DeviceRow = (Vec<u8>, Vec<u8>, String, Option<i64>, Option<Vec<u8>>);

impl SqlStore {
    /// The roster of `hub`'s station.
    pub async fn hub_roster(&self, hub: &Hub) -> Result<Roster> {
        let district = bytes(hub.district.0);
        let station = bytes(hub.station.0);
        let names: Option<(String, String)> = with_pool!(self, p => sqlx::query_as(
            "SELECT s.name, d.name FROM stations s JOIN districts d ON d.id = s.district WHERE s.id = $1")
            .bind(station.clone()).fetch_optional(p).await?);
        let (station_name, district_name) =
            names.ok_or_else(|| Error::NotFound(format!("no station {}", hub.station)))?;
        let covering: Vec<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar(
            "SELECT user_id FROM staff_stations WHERE station = $1")
            .bind(station.clone()).fetch_all(p).await?);
        let assigned: Vec<(Vec<u8>, Vec<u8>)> = with_pool!(self, p => sqlx::query_as(
            "SELECT a.user_id, a.resident FROM assignments a JOIN documents d ON d.id = a.resident
             WHERE d.station = $1")
            .bind(station.clone()).fetch_all(p).await?);
        let mut users = Vec::new();
        for user in self.users_in(hub.district).await? {
            let id = bytes(user.id.0);
            users.push(RosterUser {
                id: user.id.0,
                login: user.login,
                display_name: user.display_name,
                role: user.role.code().to_owned(),
                disabled: user.disabled,
                covers_station: covering.contains(&id),
                residents: assigned
                    .iter()
                    .filter(|(u, _)| *u == id)
                    .map(|(_, r)| uuid_of(r))
                    .collect::<Result<_>>()?,
            });
        }
        let rows: Vec<DeviceRow> = with_pool!(self, p => sqlx::query_as(
            "SELECT d.id, d.user_id, d.name, d.revoked_at, d.export_key FROM devices d
             JOIN users u ON u.id = d.user_id WHERE u.district = $1 AND d.export_key IS NOT NULL
             ORDER BY d.id")
            .bind(district.clone()).fetch_all(p).await?);
        let actors: Vec<(Vec<u8>, Vec<u8>)> = with_pool!(self, p => sqlx::query_as(
            "SELECT da.device, da.actor FROM device_actors da JOIN devices d ON d.id = da.device
             JOIN users u ON u.id = d.user_id WHERE u.district = $1")
            .bind(district).fetch_all(p).await?);
        let mut devices = Vec::with_capacity(rows.len());
        for (id, user, name, revoked_at, export_key) in rows {
            let Some(keys) = export_key.and_then(|k| DeviceKeys::new(&k).ok()) else {
                continue;
            };
            devices.push(RosterDevice {
                id: uuid_of(&id)?,
                user: uuid_of(&user)?,
                name,
                actors: actors
                    .iter()
                    .filter(|(d, _)| *d == id)
                    .map(|(_, a)| hex::encode(a))
                    .collect(),
                hub_key: hex::encode(keys.hub_key(hub.id)),
                revoked: revoked_at.is_some(),
            });
        }
        Ok(Roster {
            station: hub.station.0,
            station_name,
            district: hub.district.0,
            district_name,
            users,
            devices,
            forward_limit: 0,
            codes: self.hub_phone_codes(hub.station, crate::now_ms()).await?,
            enrol_key: hex::encode(self.hub_enrol_key(hub.id).await?.unwrap_or_default()),
        })
    }
}
