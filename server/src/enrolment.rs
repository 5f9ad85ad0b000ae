//! Enrolling a phone at a station hub while its uplink is down (issue 15). See
//! `ARCHITECTURE.md`, "Station hubs".
//!
//! - A coordinator (or the station's staff) issues a **code for a station's hub**: it
//!   lives a week ([`HUB_CODE_MS`]), not 15 minutes, so it can be issued while the
//!   uplink works and used the day it does not. The hub learns its hash, never the
//!   code, from the roster ([`SqlStore::hub_phone_codes`]), with the key it signs enrolments
//!   with ([`SqlStore::hub_enrol_key`]).
//! - At the hub, the phone enrols with the code as it would at the district server,
//!   but sealed: the code itself never crosses the station's network, and the call and
//!   its answer go in a channel keyed by the code's hash
//!   (`sync_core::protocol::channel::enrolment_channel`, `POST /api/v1/hub/enrol`). The
//!   hub takes the code once, mints the device (id, actor, export key, refresh token:
//!   [`SqlStore::mint_device`]) and answers the ordinary credential with the district
//!   server's address and a **certificate**: what it enrolled, signed with its key
//!   ([`Enrolled`]).
//! - The district server **adopts** the device on that certificate
//!   ([`SqlStore::adopt_enrolment`]), from whichever brings it first: the hub at its
//!   next cycle (before it forwards the device's requests), or the phone, whose first
//!   refresh at the district server is refused until then. Adopting is idempotent.
//! - A code the district server no longer honours (used by another phone, or expired
//!   before the hub took it) still gives the device, **revoked**: whatever the phone
//!   recorded reaches a coordinator's quarantine (as a revoked device's forwarded
//!   uploads and sealed export do), and nothing is dropped for a code's sake.
//!
//! The hub that minted a device knows its keys; the refresh token rotates at the
//! phone's first refresh at the district server, the export key does not.

use crate::auth::{self, code_hash, secret_hash};
use crate::error::{AuthFailure, Error, Result};
use crate::hubs::Hub;
use crate::identity::{User, bytes, new_id, uuid_of};
use crate::store::{SqlStore, with_pool};
use serde::{Deserialize, Serialize};
use sync_core::ids::{DeviceId, StationId, Timestamp, UserId};
use sync_core::protocol::channel::code_lookup;
use sync_core::protocol::seal::{self, DeviceKeys};
use uuid::Uuid;

/// How long a code for enrolling at a station's hub lives.
pub const HUB_CODE_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// How far ahead of the district server's clock a hub's enrolment may be dated.
const CLOCK_SLACK_MS: i64 = 10 * 60 * 1000;
/// The longest certificate read, in hex digits.
const MAX_CERTIFICATE: usize = 8 << 10;
const LABEL: &[u8] = b"linli hub enrolment v1";
const ENROL_KEY: &str = "enrol_key";

/// What a hub says it enrolled.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// The hub.
    pub hub: Uuid,
    /// The hash of the code it took.
    pub code_hash: Vec<u8>,
    /// The device it minted.
    pub device: Uuid,
    /// The user the code was for.
    pub user: Uuid,
    /// The device's name.
    pub name: String,
    /// The Automerge actor registered to it.
    pub actor: Vec<u8>,
    /// Its export key (32 bytes).
    pub export_key: Vec<u8>,
    /// The SHA-256 of the refresh token the phone holds.
    pub refresh_hash: Vec<u8>,
    /// When, by the hub's clock (ms).
    pub enrolled_at: Timestamp,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolled")
            .field("hub", &self.hub)
            .field("device", &self.device)
            .field("user", &self.user)
            .field("enrolled_at", &self.enrolled_at)
            .finish_non_exhaustive()
    }
}

impl Enrolled {
    /// The certificate: hex of the postcard encoding and its HMAC under the hub's key.
    pub fn certificate(&self, key: &[u8; 32]) -> Result<String> {
        let mut body = postcard::to_stdvec(self)
            .map_err(|e| Error::Internal(format!("encoding an enrolment: {e}")))?;
        let mac = seal::hmac(key, &[LABEL, &body]);
        body.extend_from_slice(&mac);
        Ok(hex::encode(body))
    }

    /// What a certificate says, once its signature under `key_of(hub)` verifies.
    pub async fn verified<F, Fut>(certificate: &str, key_of: F) -> Result<Enrolled>
    where
        F: FnOnce(Uuid) -> Fut,
        Fut: std::future::Future<Output = Result<Option<[u8; 32]>>>,
    {
        let refused = || {
            Error::bad_request(
                "bad_certificate",
                "not an enrolment certificate a station hub of this district signed",
            )
        };
        let raw = certificate.trim();
        if raw.len() > MAX_CERTIFICATE {
            return Err(refused());
        }
        let raw = hex::decode(raw).map_err(|_| refused())?;
        let Some(split) = raw.len().checked_sub(32) else {
            return Err(refused());
        };
        let (body, mac) = raw.split_at(split);
        let enrolled: Enrolled = postcard::from_bytes(body).map_err(|_| refused())?;
        let key = key_of(enrolled.hub).await?.ok_or_else(refused)?;
        if !seal::verify_hmac(&key, &[LABEL, body], mac) {
            return Err(refused());
        }
        Ok(enrolled)
    }
}

/// A hub that has not had its roster from the district server yet cannot enrol.
pub(crate) fn not_linked() -> Error {
    Error::bad_request(
        "hub_not_linked",
        "this hub has not reached the district server yet; enrol there",
    )
}

/// A code the roster gives a hub: its hash, whom it is for, until when.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RosterCode {
    /// Hex SHA-256 of the code.
    pub hash: String,
    /// The user it enrols a device for.
    pub user: Uuid,
    /// When it expires (ms).
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for RosterCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RosterCode")
            .field("user", &self.user)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the district server made of a hub's enrolment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// The device is the user's, as if enrolled here.
    Adopted,
    /// The device exists, revoked: the code was not good here any more.
    Revoked,
}

impl Adoption {
    /// The word the answers carry.
    pub fn code(self) -> &'static str {
        match self {
            Adoption::Adopted => "adopted",
            Adoption::Revoked => "revoked",
        }
    }
}

/// A device a hub minted, as it answers the phone.
#[derive(Debug)]
pub struct Minted {
    /// What it enrolled.
    pub enrolled: Enrolled,
    /// Signed for the district server.
    pub certificate: String,
    /// The refresh token, for the phone only.
    pub refresh_token: String,
    /// The user.
    pub user: User,
}

impl SqlStore {
    /// Issues a one-time code for enrolling a device for `user` at the hub of `station`
    /// (or at the district server), valid [`HUB_CODE_MS`].
    pub async fn issue_hub_enrolment_code(
        &self,
        issued_by: UserId,
        user: UserId,
        station: StationId,
        now: Timestamp,
    ) -> Result<(String, Timestamp)> {
        let code = auth::new_enrolment_code()?;
        let expires_at = now + HUB_CODE_MS;
        with_pool!(self, p => sqlx::query("INSERT INTO enrolment_codes (code_hash, user_id, issued_by, issued_at, expires_at, station) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(code_hash(&code)).bind(bytes(user.0)).bind(bytes(issued_by.0)).bind(now).bind(expires_at)
            .bind(bytes(station.0))
            .execute(p).await.map(|_| ())?);
        Ok((code, expires_at))
    }

    /// The key `hub` signs its enrolments with, made at the first ask; `None` for a
    /// hub this server does not know.
    pub async fn hub_enrol_key(&self, hub: Uuid) -> Result<Option<[u8; 32]>> {
        let fresh = auth::random_bytes::<32>()?.to_vec();
        with_pool!(self, p => sqlx::query("UPDATE hubs SET enrol_key = $2 WHERE id = $1 AND enrol_key IS NULL")
            .bind(bytes(hub)).bind(fresh).execute(p).await.map(|_| ())?);
        let key: Option<Option<Vec<u8>>> = with_pool!(self, p => sqlx::query_scalar(
            "SELECT enrol_key FROM hubs WHERE id = $1")
            .bind(bytes(hub)).fetch_optional(p).await?);
        Ok(key
            .flatten()
            .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok()))
    }

    /// The codes for enrolling at `station`'s hub, unused and unexpired.
    pub async fn hub_phone_codes(
        &self,
        station: StationId,
        now: Timestamp,
    ) -> Result<Vec<RosterCode>> {
        let rows: Vec<(Vec<u8>, Vec<u8>, i64)> = with_pool!(self, p => sqlx::query_as(
            "SELECT code_hash, user_id, expires_at FROM enrolment_codes
             WHERE station = $1 AND used_at IS NULL AND expires_at > $2 ORDER BY code_hash")
            .bind(bytes(station.0)).bind(now).fetch_all(p).await?);
        rows.into_iter()
            .map(|(hash, user, expires_at)| {
                Ok(RosterCode {
                    hash: hex::encode(hash),
                    user: uuid_of(&user)?,
                    expires_at,
                })
            })
            .collect()
    }

    /// Adopts a device `hub` enrolled (the certificate verified): the device becomes
    /// the user's, revoked if the code is no longer good here. Asking again answers
    /// the same.
    pub async fn adopt_enrolment(
        &self,
        hub: &Hub,
        enrolled: &Enrolled,
        now: Timestamp,
    ) -> Result<Adoption> {
        let malformed = |what: &str| Error::bad_request("bad_certificate", what.to_owned());
        if enrolled.hub != hub.id {
            return Err(malformed("another hub's enrolment"));
        }
        if enrolled.export_key.len() != 32
            || enrolled.refresh_hash.len() != 32
            || !(16..=32).contains(&enrolled.actor.len())
            || enrolled.enrolled_at > now + CLOCK_SLACK_MS
        {
            return Err(malformed("the enrolment is malformed"));
        }
        let user = self
            .user(UserId(enrolled.user))
            .await?
            .filter(|u| u.district == Some(hub.district))
            .ok_or_else(|| malformed("the enrolment names no user of the hub's district"))?;
        let device = DeviceId(enrolled.device);
        if let Some(known) = self.adoption_of(device, user.id).await? {
            return Ok(known);
        }
        let name = crate::identity::device_label(&enrolled.name);
        let adopted: Option<bool> = with_pool!(self, p => {
            let mut tx = p.begin().await?;
            let taken = sqlx::query(
                "UPDATE enrolment_codes SET used_at = $2, device = $3
                 WHERE code_hash = $1 AND station = $4 AND user_id = $5 AND used_at IS NULL
                   AND expires_at > $6")
                .bind(enrolled.code_hash.clone()).bind(now).bind(bytes(device.0))
                .bind(bytes(hub.station.0)).bind(bytes(user.id.0)).bind(enrolled.enrolled_at)
                .execute(&mut *tx).await?.rows_affected() == 1;
            // The hub and the phone may bring the same certificate at once: the one
            // that inserts second leaves everything as the first made it.
            let inserted = sqlx::query("INSERT INTO devices (id, user_id, name, enrolled_at, refresh_hash, export_key, enrolled_at_hub, revoked_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING")
                .bind(bytes(device.0)).bind(bytes(user.id.0)).bind(&name).bind(enrolled.enrolled_at.min(now))
                .bind(enrolled.refresh_hash.clone()).bind(enrolled.export_key.clone()).bind(bytes(hub.id))
                .bind((!taken).then_some(now))
                .execute(&mut *tx).await?.rows_affected() == 1;
            if inserted {
                sqlx::query("INSERT INTO device_actors (actor, device) VALUES ($1, $2) ON CONFLICT (actor) DO NOTHING")
                    .bind(enrolled.actor.clone()).bind(bytes(device.0))
                    .execute(&mut *tx).await?;
                tx.commit().await?;
            }
            inserted.then_some(taken)
        });
        let Some(adopted) = adopted else {
            return self
                .adoption_of(device, user.id)
                .await?
                .ok_or_else(|| Error::Conflict(format!("device {device} could not be adopted")));
        };
        tracing::info!(%device, user = %user.id, hub = %hub.id, adopted, "a device enrolled at a hub was adopted");
        Ok(if adopted {
            Adoption::Adopted
        } else {
            Adoption::Revoked
        })
    }

    /// What adopting `device` for `user` gave already, if it is known here; a conflict
    /// if it is another user's.
    async fn adoption_of(&self, device: DeviceId, user: UserId) -> Result<Option<Adoption>> {
        let Some(known) = self.device(device).await? else {
            return Ok(None);
        };
        if known.user != user {
            return Err(Error::Conflict(format!(
                "device {device} is someone else's"
            )));
        }
        Ok(Some(if known.revoked_at.is_some() {
            Adoption::Revoked
        } else {
            Adoption::Adopted
        }))
    }

    /// On a hub: the codes and signing key the roster gave. Codes the hub took stay
    /// taken; codes the roster no longer lists (used or withdrawn at the district
    /// server, expired) are forgotten.
    pub(crate) async fn apply_hub_codes(&self, codes: &[RosterCode], key: &str) -> Result<()> {
        let mut rows = Vec::with_capacity(codes.len());
        for code in codes {
            let hash = hex::decode(&code.hash)
                .map_err(|_| Error::Internal("the roster holds a malformed code".into()))?;
            rows.push((hash, bytes(code.user), code.expires_at));
        }
        let key = hex::decode(key).unwrap_or_default();
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM hub_phone_codes WHERE used_at IS NULL").execute(&mut *tx).await?;
            for (hash, user, expires_at) in &rows {
                sqlx::query("INSERT INTO hub_phone_codes (code_hash, user_id, expires_at) VALUES ($1, $2, $3)
                             ON CONFLICT (code_hash) DO NOTHING")
                    .bind(hash.clone()).bind(user.clone()).bind(*expires_at).execute(&mut *tx).await?;
            }
            if key.len() == 32 {
                sqlx::query("INSERT INTO hub_state (key, value) VALUES ($1, $2)
                             ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                    .bind(ENROL_KEY).bind(key).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// On a hub: the hash of the unused code whose [`code_lookup`] is `lookup`.
    pub async fn hub_code_by_lookup(&self, lookup: &[u8]) -> Result<Option<[u8; 32]>> {
        let hashes: Vec<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar(
            "SELECT code_hash FROM hub_phone_codes WHERE used_at IS NULL")
            .fetch_all(p).await?);
        Ok(hashes
            .iter()
            .filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
            .find(|h| code_lookup(h).as_slice() == lookup))
    }

    /// On hub `hub`: takes the code whose hash is `code_hash` once and mints a device for its user, with everything
    /// the district server needs to adopt it. `bad_credentials` for a code the hub does
    /// not hold, took already, or that expired.
    pub async fn mint_device(
        &self,
        hub: Uuid,
        code_hash: &[u8; 32],
        device_name: &str,
        now: Timestamp,
    ) -> Result<Minted> {
        let key: Option<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar(
            "SELECT value FROM hub_state WHERE key = $1")
            .bind(ENROL_KEY).fetch_optional(p).await?);
        let key = key
            .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
            .ok_or_else(not_linked)?;
        let device = new_id(now)?;
        let export_key = auth::random_bytes::<32>()?.to_vec();
        let refresh_token = auth::new_secret()?;
        let hub_key = DeviceKeys::new(&export_key)
            .map_err(|e| Error::Internal(e.to_string()))?
            .hub_key(hub);
        let name = crate::identity::device_label(device_name);
        let mut enrolled = Enrolled {
            hub,
            code_hash: code_hash.to_vec(),
            device,
            user: Uuid::nil(),
            name: name.clone(),
            actor: auth::random_bytes::<16>()?.to_vec(),
            export_key,
            refresh_hash: secret_hash(&refresh_token),
            enrolled_at: now,
        };
        let user: Option<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar(
            "SELECT c.user_id FROM hub_phone_codes c JOIN users u ON u.id = c.user_id
             WHERE c.code_hash = $1 AND c.used_at IS NULL AND c.expires_at > $2
               AND u.disabled_at IS NULL")
            .bind(enrolled.code_hash.clone()).bind(now).fetch_optional(p).await?);
        let user = user.ok_or(Error::Unauthenticated(AuthFailure::BadCredentials))?;
        enrolled.user = uuid_of(&user)?;
        let certificate = enrolled.certificate(&key)?;
        // Phones never refresh at a hub: the hub's own row gets a hash no token matches.
        let placeholder = secret_hash(&auth::new_secret()?);
        let taken = with_pool!(self, p => {
            let mut tx = p.begin().await?;
            let taken = sqlx::query("UPDATE hub_phone_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL")
                .bind(enrolled.code_hash.clone()).bind(now).execute(&mut *tx).await?.rows_affected() == 1;
            if taken {
                sqlx::query("INSERT INTO devices (id, user_id, name, enrolled_at, refresh_hash) VALUES ($1, $2, $3, $4, $5)")
                    .bind(bytes(device)).bind(user.clone()).bind(&name).bind(now).bind(placeholder)
                    .execute(&mut *tx).await?;
                sqlx::query("INSERT INTO device_actors (actor, device) VALUES ($1, $2)")
                    .bind(enrolled.actor.clone()).bind(bytes(device)).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO hub_device_keys (device, key) VALUES ($1, $2)")
                    .bind(bytes(device)).bind(hub_key.to_vec()).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO hub_enrolments (device, certificate, enrolled_at) VALUES ($1, $2, $3)")
                    .bind(bytes(device)).bind(certificate.clone().into_bytes()).bind(now).execute(&mut *tx).await?;
                tx.commit().await?;
            }
            taken
        });
        if !taken {
            // Another phone took the same code a moment before.
            return Err(Error::Unauthenticated(AuthFailure::BadCredentials));
        }
        let user = self
            .user(UserId(enrolled.user))
            .await?
            .ok_or(Error::Unauthenticated(AuthFailure::BadCredentials))?;
        tracing::info!(%device, user = %user.id, "a device enrolled at this hub");
        Ok(Minted {
            enrolled,
            certificate,
            refresh_token,
            user,
        })
    }

    /// On a hub: the certificates of devices it enrolled that the district server has
    /// not answered for.
    pub(crate) async fn hub_enrolments_waiting(&self) -> Result<Vec<(DeviceId, String)>> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = with_pool!(self, p => sqlx::query_as(
            "SELECT device, certificate FROM hub_enrolments WHERE answered_at IS NULL ORDER BY enrolled_at")
            .fetch_all(p).await?);
        rows.into_iter()
            .map(|(d, c)| {
                Ok((
                    DeviceId(uuid_of(&d)?),
                    String::from_utf8_lossy(&c).into_owned(),
                ))
            })
            .collect()
    }

    /// On a hub: records the district server's answer for a device it enrolled.
    pub(crate) async fn hub_enrolment_answered(
        &self,
        device: DeviceId,
        answer: &str,
        now: Timestamp,
    ) -> Result<()> {
        with_pool!(self, p => sqlx::query("UPDATE hub_enrolments SET answered_at = $2, answer = $3 WHERE device = $1")
            .bind(bytes(device.0)).bind(now).bind(answer).execute(p).await.map(|_| ())?);
        Ok(())
    }
}
