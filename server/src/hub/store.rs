//! What a station hub keeps beside the ordinary store: its cursor on the district
//! server's feed, the documents the district server delivered, its phones' keys and
//! the outbox of their requests, and the copy of its roster in the identity tables.

use crate::auth::{self, secret_hash};
use crate::error::{Error, Result};
use crate::hubs::Roster;
use crate::identity::{bytes, uuid_of};
use crate::store::{SqlStore, with_pool};
use std::collections::BTreeSet;
use sync_core::automerge::ChangeHash;
use sync_core::ids::{DeviceId, DocId, Timestamp};
use sync_core::model::Role;
use sync_core::protocol::forward::ForwardResult;

const CURSOR: &str = "cursor";
/// The digest of the roster applied last.
const ROSTER: &str = "roster";

/// One phone request waiting in the outbox.
#[derive(Clone, Debug)]
pub struct OutboxItem {
    /// Its number, in the order received.
    pub id: i64,
    /// The phone.
    pub device: DeviceId,
    /// When the hub took it.
    pub received_at: Timestamp,
    /// The request, byte for byte.
    pub body: Vec<u8>,
    /// The phone's seal of it.
    pub seal: [u8; 32],
    /// How often it was forwarded without being taken whole.
    pub attempts: i64,
    /// The documents whose uploads the hub took: the district server takes only
    /// those.
    pub docs: Vec<DocId>,
}

/// How far the outbox has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Requests the district server has not taken yet.
    pub waiting: i64,
    /// Requests it answered for.
    pub forwarded: i64,
    /// When the hub took the oldest request still waiting.
    pub oldest_waiting_at: Option<Timestamp>,
}

/// A `hub_outbox` row as [`SqlStore::outbox_waiting`] selects it.
type OutboxRow = (i64, Vec<u8>, i64, Vec<u8>, Vec<u8>, i64, Vec<u8>);

impl SqlStore {
    /// The hub's cursor on the district server's feed (0 at first).
    pub async fn hub_cursor(&self) -> Result<u64> {
        let value: Option<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar(
            "SELECT value FROM hub_state WHERE key = $1")
            .bind(CURSOR).fetch_optional(p).await?);
        Ok(value
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Records the hub's cursor and what the district server delivered or purged.
    pub async fn set_hub_mirror(
        &self,
        cursor: u64,
        delivered: &[DocId],
        purged: &[DocId],
    ) -> Result<()> {
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("INSERT INTO hub_state (key, value) VALUES ($1, $2)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(CURSOR).bind(cursor.to_be_bytes().to_vec()).execute(&mut *tx).await?;
            for doc in delivered {
                sqlx::query("INSERT INTO hub_mirrored (doc) VALUES ($1) ON CONFLICT (doc) DO NOTHING")
                    .bind(bytes(doc.0)).execute(&mut *tx).await?;
            }
            for doc in purged {
                sqlx::query("DELETE FROM hub_mirrored WHERE doc = $1")
                    .bind(bytes(doc.0)).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Starts the mirror again from the feed's beginning (the district server lost
    /// track of what the hub holds); the documents stay and merge what comes.
    pub async fn reset_hub_mirror(&self) -> Result<()> {
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM hub_state WHERE key = $1").bind(CURSOR).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM hub_mirrored").execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Drops the hub's copy of `doc` so that the next pull brings the district
    /// server's copy whole: the district server refused changes the hub had taken
    /// into it, and the hub must not hand them to its phones as part of the record.
    /// The `refused` changes are remembered: a phone whose copy holds only those
    /// beyond the hub's starts its copy again (`not_in_record`).
    /// The mirror forgets the document first, so a hub stopped half-way still asks
    /// for it again (and merely merges it into what it holds).
    pub async fn reset_hub_document(&self, doc: DocId, refused: &[ChangeHash]) -> Result<()> {
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM hub_mirrored WHERE doc = $1")
                .bind(bytes(doc.0)).execute(&mut *tx).await?;
            for hash in refused {
                sqlx::query("INSERT INTO hub_refused (doc, hash) VALUES ($1, $2) ON CONFLICT (doc, hash) DO NOTHING")
                    .bind(bytes(doc.0)).bind(hash.0.to_vec()).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(self.forget_document(doc).await?)
    }

    /// The documents the district server believes the hub holds.
    pub async fn hub_mirrored(&self) -> Result<BTreeSet<DocId>> {
        let rows: Vec<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar("SELECT doc FROM hub_mirrored")
            .fetch_all(p).await?);
        Ok(rows
            .iter()
            .map(|b| crate::store::id_of(b))
            .collect::<std::result::Result<_, _>>()?)
    }

    /// Replaces the hub's copy of identity with `roster`: its district and station,
    /// the users (staff covering the station, volunteers with their residents there),
    /// their devices and the keys they prove themselves with. A device the roster no
    /// longer lists is revoked here, as one the district server revoked.
    pub async fn apply_roster(&self, roster: &Roster, now: Timestamp) -> Result<()> {
        let district = bytes(roster.district);
        let station = bytes(roster.station);
        let mut placeholders = Vec::with_capacity(roster.devices.len());
        for _ in &roster.devices {
            // Phones never refresh at a hub: each device row gets a refresh hash that
            // no token matches.
            placeholders.push(secret_hash(&auth::new_secret()?));
        }
        let mut users = Vec::with_capacity(roster.users.len());
        for u in &roster.users {
            let role = Role::from_code(&u.role)
                .ok_or_else(|| Error::Internal(format!("the roster names a role {:?}", u.role)))?;
            users.push((u, role));
        }
        let mut keys = Vec::with_capacity(roster.devices.len());
        for d in &roster.devices {
            let key = hex::decode(&d.hub_key)
                .ok()
                .filter(|k| k.len() == 32)
                .ok_or_else(|| Error::Internal("the roster holds a malformed hub key".into()))?;
            let mut actors = Vec::with_capacity(d.actors.len());
            for a in &d.actors {
                actors.push(
                    hex::decode(a).map_err(|_| {
                        Error::Internal("the roster holds a malformed actor".into())
                    })?,
                );
            }
            keys.push((key, actors));
        }
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("INSERT INTO districts (id, name, created_at) VALUES ($1, $2, $3)
                         ON CONFLICT (id) DO UPDATE SET name = excluded.name")
                .bind(district.clone()).bind(&roster.district_name).bind(now).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO stations (id, district, name, created_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (id) DO UPDATE SET name = excluded.name")
                .bind(station.clone()).bind(district.clone()).bind(&roster.station_name).bind(now)
                .execute(&mut *tx).await?;
            for (u, role) in &users {
                sqlx::query("INSERT INTO users (id, login, display_name, role, district, disabled_at, created_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7)
                             ON CONFLICT (id) DO UPDATE SET login = excluded.login,
                               display_name = excluded.display_name, role = excluded.role,
                               district = excluded.district, disabled_at = excluded.disabled_at")
                    .bind(bytes(u.id)).bind(&u.login).bind(&u.display_name).bind(role.code())
                    .bind(district.clone()).bind(u.disabled.then_some(now)).bind(now)
                    .execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM staff_stations").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM assignments").execute(&mut *tx).await?;
            for (u, _) in &users {
                if u.covers_station {
                    sqlx::query("INSERT INTO staff_stations (user_id, station) VALUES ($1, $2)")
                        .bind(bytes(u.id)).bind(station.clone()).execute(&mut *tx).await?;
                }
                for resident in &u.residents {
                    sqlx::query("INSERT INTO assignments (user_id, resident, assigned_by, assigned_at)
                                 VALUES ($1, $2, $3, $4)")
                        .bind(bytes(u.id)).bind(bytes(*resident)).bind(station.clone()).bind(now)
                        .execute(&mut *tx).await?;
                }
            }
            // The devices this hub enrolled keep their keys until the district server
            // has answered for them; after that the roster speaks for them too.
            sqlx::query("DELETE FROM hub_device_keys
                         WHERE device NOT IN (SELECT device FROM hub_enrolments WHERE answered_at IS NULL)")
                .execute(&mut *tx).await?;
            for ((d, (key, actors)), placeholder) in roster.devices.iter().zip(&keys).zip(placeholders) {
                sqlx::query("INSERT INTO devices (id, user_id, name, enrolled_at, refresh_hash, revoked_at)
                             VALUES ($1, $2, $3, $4, $5, $6)
                             ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                               revoked_at = CASE WHEN excluded.revoked_at IS NULL THEN NULL
                                            ELSE COALESCE(devices.revoked_at, excluded.revoked_at) END")
                    .bind(bytes(d.id)).bind(bytes(d.user)).bind(&d.name).bind(now)
                    .bind(placeholder).bind(d.revoked.then_some(now))
                    .execute(&mut *tx).await?;
                for actor in actors {
                    sqlx::query("INSERT INTO device_actors (actor, device) VALUES ($1, $2)
                                 ON CONFLICT (actor) DO NOTHING")
                        .bind(actor.clone()).bind(bytes(d.id)).execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO hub_device_keys (device, key) VALUES ($1, $2)
                             ON CONFLICT (device) DO UPDATE SET key = excluded.key")
                    .bind(bytes(d.id)).bind(key.clone()).execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE devices SET revoked_at = COALESCE(revoked_at, $1)
                         WHERE id NOT IN (SELECT device FROM hub_device_keys)")
                .bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        self.apply_hub_codes(&roster.codes, &roster.enrol_key).await
    }

    /// [`SqlStore::apply_roster`], unless the roster is the one applied last (the
    /// steady state, at every exchange with the district server, writes nothing).
    pub async fn apply_roster_if_changed(&self, roster: &Roster, now: Timestamp) -> Result<()> {
        use sha2::{Digest, Sha256};
        let encoded = serde_json::to_vec(roster)
            .map_err(|e| Error::Internal(format!("encoding the roster: {e}")))?;
        let digest = Sha256::digest(&encoded).to_vec();
        let last: Option<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar(
            "SELECT value FROM hub_state WHERE key = $1")
            .bind(ROSTER).fetch_optional(p).await?);
        if last.as_deref() == Some(digest.as_slice()) {
            return Ok(());
        }
        self.apply_roster(roster, now).await?;
        with_pool!(self, p => sqlx::query("INSERT INTO hub_state (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(ROSTER).bind(digest).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// The key `device` proves itself with to this hub.
    pub async fn hub_device_key(&self, device: DeviceId) -> Result<Option<[u8; 32]>> {
        let key: Option<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar(
            "SELECT key FROM hub_device_keys WHERE device = $1")
            .bind(bytes(device.0)).fetch_optional(p).await?);
        Ok(key.and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok()))
    }

    /// Keeps a phone's request in the outbox, with the documents whose uploads the hub
    /// took; its number.
    pub async fn outbox_push(
        &self,
        device: DeviceId,
        received_at: Timestamp,
        body: &[u8],
        seal: &[u8; 32],
        docs: &[DocId],
    ) -> Result<i64> {
        let docs = postcard::to_stdvec(docs)
            .map_err(|e| Error::Internal(format!("encoding documents: {e}")))?;
        let id: i64 = with_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO hub_outbox (device, received_at, body, seal, docs) VALUES ($1, $2, $3, $4, $5) RETURNING id")
            .bind(bytes(device.0)).bind(received_at).bind(body.to_vec()).bind(seal.to_vec()).bind(docs)
            .fetch_one(p).await?);
        Ok(id)
    }

    /// The oldest requests not yet taken, at most `limit`.
    pub async fn outbox_waiting(&self, limit: i64) -> Result<Vec<OutboxItem>> {
        let rows: Vec<OutboxRow> = with_pool!(self, p => sqlx::query_as(
            "SELECT id, device, received_at, body, seal, attempts, docs FROM hub_outbox
             WHERE forwarded_at IS NULL ORDER BY id LIMIT $1")
            .bind(limit).fetch_all(p).await?);
        rows.into_iter()
            .map(|(id, device, received_at, body, seal, attempts, docs)| {
                Ok(OutboxItem {
                    id,
                    device: DeviceId(uuid_of(&device)?),
                    received_at,
                    body,
                    seal: <[u8; 32]>::try_from(seal.as_slice())
                        .map_err(|_| Error::Internal("a stored seal is not 32 bytes".into()))?,
                    attempts,
                    docs: postcard::from_bytes(&docs)
                        .map_err(|_| Error::Internal("a stored outbox entry is damaged".into()))?,
                })
            })
            .collect()
    }

    /// Records the district server's answers for a batch, in one transaction: for each
    /// request, `Some` when it is done with it (taken whole, or refused), `None` to
    /// forward it again later.
    pub async fn outbox_record(
        &self,
        answers: &[(i64, Option<&ForwardResult>)],
        now: Timestamp,
    ) -> Result<()> {
        let mut encoded = Vec::with_capacity(answers.len());
        for (id, outcome) in answers {
            let bytes = outcome
                .map(postcard::to_stdvec)
                .transpose()
                .map_err(|e| Error::Internal(format!("encoding an outcome: {e}")))?;
            encoded.push((*id, bytes));
        }
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            for (id, outcome) in &encoded {
                match outcome {
                    Some(bytes) => sqlx::query(
                        "UPDATE hub_outbox SET forwarded_at = $2, outcome = $3, attempts = attempts + 1 WHERE id = $1")
                        .bind(*id).bind(now).bind(bytes.clone()).execute(&mut *tx).await?,
                    None => sqlx::query("UPDATE hub_outbox SET attempts = attempts + 1 WHERE id = $1")
                        .bind(*id).execute(&mut *tx).await?,
                };
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// What became of `device`'s requests: how many still wait, and the district
    /// server's answers for the latest `limit` it answered, newest first.
    pub async fn outbox_of(
        &self,
        device: DeviceId,
        limit: i64,
    ) -> Result<(i64, Vec<ForwardResult>)> {
        let waiting: i64 = with_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM hub_outbox WHERE device = $1 AND forwarded_at IS NULL")
            .bind(bytes(device.0)).fetch_one(p).await?);
        let rows: Vec<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar(
            "SELECT outcome FROM hub_outbox WHERE device = $1 AND outcome IS NOT NULL
             ORDER BY id DESC LIMIT $2")
            .bind(bytes(device.0)).bind(limit).fetch_all(p).await?);
        let answers = rows
            .iter()
            .map(|r| postcard::from_bytes(r))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::Internal("a stored outbox outcome is damaged".into()))?;
        Ok((waiting, answers))
    }

    /// How far the outbox has got.
    pub async fn outbox_counts(&self) -> Result<OutboxCounts> {
        let (waiting, forwarded, oldest_waiting_at): (i64, i64, Option<i64>) = with_pool!(self, p => sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE forwarded_at IS NULL), COUNT(*) FILTER (WHERE forwarded_at IS NOT NULL),
                    MIN(received_at) FILTER (WHERE forwarded_at IS NULL) FROM hub_outbox")
            .fetch_one(p).await?);
        Ok(OutboxCounts {
            waiting,
            forwarded,
            oldest_waiting_at,
        })
    }
}
