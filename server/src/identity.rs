//! Who may do what: districts, stations, users, assignments, enrolment codes and
//! devices, in SQL tables beside the documents (never CRDT). Resolves an authenticated
//! device or user to the [`Principal`] the core's rules check against.

use crate::auth::{self, code_hash, secret_hash};
use crate::error::{AuthFailure, Error, Result};
use crate::store::{SqlStore, read_rows, with_pool};
use sqlx::Row;
use std::collections::BTreeSet;
use sync_core::automerge::ActorId;
use sync_core::doc::schema::limits;
use sync_core::ids::{DeviceId, DistrictId, ResidentId, StationId, Timestamp, UserId};
use sync_core::model::{Principal, Role, Scope};
use sync_core::protocol::seal::DeviceKeys;
use uuid::Uuid;

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The id documents record as author.
    pub id: UserId,
    /// The login name.
    pub login: String,
    /// The name shown to others.
    pub display_name: String,
    /// The role.
    pub role: Role,
    /// The district; `None` only for a bootstrap admin.
    pub district: Option<DistrictId>,
    /// Whether the account is disabled.
    pub disabled: bool,
}

impl User {
    /// Whether this user may manage `target` (issue its enrolment codes, revoke its
    /// devices): admins anyone; coordinators their district; staff the volunteers of
    /// their district; everyone themselves.
    pub fn may_manage(&self, target: &User) -> bool {
        if self.id == target.id || self.role == Role::Admin {
            return true;
        }
        let same_district = self.district.is_some() && self.district == target.district;
        match self.role {
            Role::Coordinator => same_district && target.role != Role::Admin,
            Role::StationStaff => same_district && target.role == Role::Volunteer,
            Role::Volunteer | Role::Admin => false,
        }
    }

    /// Whether this user may create districts: admins only, with or without a district
    /// of their own (the bootstrap admin has none).
    pub fn may_create_district(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this user may set up and revoke the station hubs of `district`:
    /// admins, and the district's coordinators. A hub holds a station's residents, so
    /// it is a district decision, not a station's.
    pub fn may_manage_hubs(&self, district: DistrictId) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Coordinator => self.district == Some(district),
            Role::StationStaff | Role::Volunteer => false,
        }
    }

    /// Whether this user may create a user with `role` in `district`.
    pub fn may_create(&self, role: Role, district: Option<DistrictId>) -> bool {
        let own = self.district.is_some() && self.district == district;
        match self.role {
            Role::Admin => true,
            Role::Coordinator => own && role != Role::Admin,
            Role::StationStaff => own && role == Role::Volunteer,
            Role::Volunteer => false,
        }
    }
}

/// A device and what it may write as.
#[derive(Clone, Debug)]
pub struct Device {
    /// The device.
    pub id: DeviceId,
    /// Its user.
    pub user: UserId,
    /// A name for people ("Wang's phone").
    pub name: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// When it last synced (to the minute or so).
    pub last_seen_at: Option<Timestamp>,
    /// How far its clock ran ahead (+) or behind (-) the server's at its last sync.
    pub clock_skew_ms: Option<i64>,
    /// The keys derived from its export key, which check its seals; `None` for a
    /// device enrolled before export keys existed.
    pub keys: Option<DeviceKeys>,
}

/// How far a phone's clock may be off before the devices page flags it.
pub const CLOCK_SKEW_FLAG_MS: i64 = 10 * 60 * 1000;

/// A device as the administration pages list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceListing {
    /// The device.
    pub id: DeviceId,
    /// A name for people.
    pub name: String,
    /// When it enrolled.
    pub enrolled_at: Timestamp,
    /// When it last synced (to the minute or so).
    pub last_seen_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// How far its clock ran ahead (+) or behind (-) the server's at its last sync.
    pub clock_skew_ms: Option<i64>,
    /// Its uploads the server refused (or recovered from it) that await a decision:
    /// changes the server knows of that are not in the record.
    pub awaiting: i64,
}

/// What a phone receives when it enrols.
#[derive(Debug)]
pub struct Enrolment {
    /// The new device.
    pub device: DeviceId,
    /// Its user.
    pub user: User,
    /// The Automerge actor the device must write as.
    pub actors: Vec<ActorId>,
    /// The refresh token (only its hash is kept).
    pub refresh_token: String,
    /// The key the phone seals its unsynced changes with if it is revoked
    /// (`sync_core::protocol::export`).
    pub export_key: Vec<u8>,
}

/// Who was bootstrapped on first start.
#[derive(Debug)]
pub struct Bootstrap {
    /// The admin's login.
    pub login: String,
    /// Its one-time password, shown once.
    pub password: String,
}

/// What holds a rotating refresh token.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Holder {
    /// A phone.
    Device,
    /// A station hub.
    Hub,
}

impl Holder {
    fn table(self) -> &'static str {
        match self {
            Holder::Device => "devices",
            Holder::Hub => "hubs",
        }
    }
}

pub(crate) fn uuid_of(bytes: &[u8]) -> Result<Uuid> {
    Uuid::from_slice(bytes).map_err(|_| corrupt("a stored id is not 16 bytes".into()))
}

pub(crate) fn new_id(now: Timestamp) -> Result<Uuid> {
    Ok(UserId::new_v7(now, auth::random_bytes::<10>()?).0)
}

pub(crate) fn bytes(id: Uuid) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// The `users` columns a [`UserRow`] holds.
macro_rules! user_columns {
    () => {
        "id, login, display_name, role, district, disabled_at"
    };
}

/// The `devices` columns a [`Device`] is read from: `user_id, name, revoked_at,
/// last_seen_at, clock_skew_ms, export_key`.
type DeviceFields = (
    Vec<u8>,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
);

fn device_from_row(
    id: DeviceId,
    (user, name, revoked_at, last_seen_at, clock_skew_ms, export_key): DeviceFields,
) -> Result<Device> {
    Ok(Device {
        id,
        user: UserId(uuid_of(&user)?),
        name,
        revoked_at,
        last_seen_at,
        clock_skew_ms,
        keys: export_key.and_then(|k| DeviceKeys::new(&k).ok()),
    })
}

/// A `users` row as selected by `user_columns!()`.
type UserRow = (
    Vec<u8>,
    String,
    String,
    String,
    Option<Vec<u8>>,
    Option<i64>,
);

/// A password hash and a [`UserRow`], flattened.
type PasswordRow = (
    Option<String>,
    Vec<u8>,
    String,
    String,
    String,
    Option<Vec<u8>>,
    Option<i64>,
);

/// The shortest password a new account may have.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// A new account's password: none (phones enrol with codes), or at least
/// [`MIN_PASSWORD_CHARS`] characters (400 `weak_password`).
pub fn check_new_password(password: Option<&str>) -> Result<()> {
    if password.is_some_and(|p| p.chars().count() < MIN_PASSWORD_CHARS) {
        return Err(Error::bad_request(
            "weak_password",
            format!("a password has at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A name a person gives (a district's, a station's, a user's display name), trimmed:
/// not empty (400 `empty_name`), at most `limits::SHORT_TEXT` characters (400
/// `name_too_long`), like a catalog name, and without control characters (400
/// `control_character`: PostgreSQL would refuse a NUL, and no name needs a tab).
pub fn checked_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::bad_request("empty_name", "the name is empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "control_character",
            "a name holds no control characters",
        ));
    }
    if name.chars().count() > limits::SHORT_TEXT {
        return Err(Error::bad_request(
            "name_too_long",
            format!("a name has at most {} characters", limits::SHORT_TEXT),
        ));
    }
    Ok(name)
}

/// A district as the district list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistrictListing {
    /// The district.
    pub id: DistrictId,
    /// Its name.
    pub name: String,
    /// How many stations it has.
    pub stations: i64,
    /// How many users belong to it.
    pub users: i64,
}

/// Whether a user could have `login`: none has a NUL, which PostgreSQL would refuse
/// to look up (an error, where the answer is "no such user").
fn could_be_login(login: &str) -> bool {
    !login.contains('\0')
}

/// A phone's or hub's name as it enrols (its model, or what its owner typed), as the
/// admin pages list it: trimmed, without control characters (PostgreSQL refuses a
/// NUL), at most 100 characters. Never refused: a device is not kept from enrolling by
/// its name.
pub(crate) fn device_label(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(100)
        .collect()
}

fn corrupt(message: String) -> Error {
    Error::Store(crate::store::StoreError::Corrupt(message))
}

fn user_from_row((id, login, display_name, role, district, disabled_at): UserRow) -> Result<User> {
    Ok(User {
        id: UserId(uuid_of(&id)?),
        login,
        display_name,
        role: Role::from_code(&role).ok_or_else(|| corrupt(format!("unknown role {role:?}")))?,
        district: district.map(|d| uuid_of(&d).map(DistrictId)).transpose()?,
        disabled: disabled_at.is_some(),
    })
}

impl SqlStore {
    /// Creates a district; its name must pass [`checked_name`] and be free (409).
    pub async fn create_district(&self, name: &str, now: Timestamp) -> Result<DistrictId> {
        let name = checked_name(name)?;
        let id = new_id(now)?;
        with_pool!(self, p => sqlx::query("INSERT INTO districts (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(bytes(id)).bind(name).bind(now).execute(p).await.map(|_| ()))
            .map_err(|e| unique_or(e, || format!("a district named {name:?} exists")))?;
        Ok(DistrictId(id))
    }

    /// Every district with its numbers of stations and users, by name.
    pub async fn districts(&self) -> Result<Vec<DistrictListing>> {
        let rows: Vec<(Vec<u8>, String, i64, i64)> = with_pool!(self, p => sqlx::query_as(
            "SELECT d.id, d.name,
                    (SELECT COUNT(*) FROM stations s WHERE s.district = d.id),
                    (SELECT COUNT(*) FROM users u WHERE u.district = d.id)
             FROM districts d ORDER BY d.name, d.id")
            .fetch_all(p).await?);
        rows.into_iter()
            .map(|(id, name, stations, users)| {
                Ok(DistrictListing {
                    id: DistrictId(uuid_of(&id)?),
                    name,
                    stations,
                    users,
                })
            })
            .collect()
    }

    /// A district by name.
    pub async fn district_named(&self, name: &str) -> Result<DistrictId> {
        let row: Option<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar("SELECT id FROM districts WHERE name = $1")
            .bind(name.trim()).fetch_optional(p).await?);
        row.map(|b| uuid_of(&b).map(DistrictId))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("no district named {name:?}")))
    }

    /// Refuses a district that does not exist with a 400 `unknown_district` (rather
    /// than the database's foreign-key failure, which a client cannot tell from an
    /// outage).
    async fn known_district(&self, district: DistrictId) -> Result<()> {
        let found: i64 = with_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM districts WHERE id = $1")
            .bind(bytes(district.0)).fetch_one(p).await?);
        match found {
            1 => Ok(()),
            _ => Err(Error::bad_request(
                "unknown_district",
                format!("there is no district {district}"),
            )),
        }
    }

    /// Creates a station in `district`.
    pub async fn create_station(
        &self,
        district: DistrictId,
        name: &str,
        now: Timestamp,
    ) -> Result<StationId> {
        let name = checked_name(name)?;
        self.known_district(district).await?;
        let id = new_id(now)?;
        with_pool!(self, p => sqlx::query("INSERT INTO stations (id, district, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(bytes(id)).bind(bytes(district.0)).bind(name).bind(now).execute(p).await.map(|_| ()))
            .map_err(|e| unique_or(e, || format!("a station named {name:?} exists in this district")))?;
        Ok(StationId(id))
    }

    /// A station by district and name.
    pub async fn station_named(&self, district: DistrictId, name: &str) -> Result<StationId> {
        let row: Option<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar("SELECT id FROM stations WHERE district = $1 AND name = $2")
            .bind(bytes(district.0)).bind(name.trim()).fetch_optional(p).await?);
        row.map(|b| uuid_of(&b).map(StationId))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("no station named {name:?} in this district")))
    }

    /// Renames a station of `district`; a station elsewhere is not found.
    pub async fn rename_station(
        &self,
        district: DistrictId,
        station: StationId,
        name: &str,
    ) -> Result<()> {
        let updated = with_pool!(self, p => sqlx::query("UPDATE stations SET name = $3 WHERE id = $1 AND district = $2")
            .bind(bytes(station.0)).bind(bytes(district.0)).bind(name.trim()).execute(p).await
            .map(|r| r.rows_affected()))
            .map_err(|e| unique_or(e, || format!("a station named {name:?} exists in this district")))?;
        if updated == 0 {
            return Err(Error::NotFound(format!(
                "no station {station} in this district"
            )));
        }
        Ok(())
    }

    /// A station's name.
    pub async fn station_name(&self, station: StationId) -> Result<Option<String>> {
        Ok(
            with_pool!(self, p => sqlx::query_scalar("SELECT name FROM stations WHERE id = $1")
            .bind(bytes(station.0)).fetch_optional(p).await?),
        )
    }

    /// The district a station belongs to.
    pub async fn station_district(&self, station: StationId) -> Result<Option<DistrictId>> {
        let row: Option<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar("SELECT district FROM stations WHERE id = $1")
            .bind(bytes(station.0)).fetch_optional(p).await?);
        row.map(|b| uuid_of(&b).map(DistrictId)).transpose()
    }

    /// Creates a user. Staff get their `stations` (which must lie in `district`); a
    /// password must pass [`check_new_password`].
    #[allow(clippy::too_many_arguments)]
    pub async fn create_user(
        &self,
        login: &str,
        display_name: &str,
        role: Role,
        district: Option<DistrictId>,
        stations: &[StationId],
        password: Option<&str>,
        now: Timestamp,
    ) -> Result<UserId> {
        let login = login.trim();
        if login.is_empty() || login.len() > 64 || login.chars().any(char::is_control) {
            return Err(Error::bad_request(
                "invalid_login",
                "a login has 1 to 64 characters, none of them a control character",
            ));
        }
        let display_name = checked_name(display_name)?;
        if district.is_none() && role != Role::Admin {
            return Err(Error::bad_request(
                "district_required",
                "every role but admin belongs to a district",
            ));
        }
        if let Some(d) = district {
            self.known_district(d).await?;
        }
        if !stations.is_empty() && role != Role::StationStaff {
            return Err(Error::bad_request(
                "stations_for_staff",
                "only station staff cover stations",
            ));
        }
        for s in stations {
            if self.station_district(*s).await? != district || district.is_none() {
                return Err(Error::bad_request(
                    "unknown_station",
                    format!("station {s} is not in this district"),
                ));
            }
        }
        check_new_password(password)?;
        let hash = password.map(auth::hash_password).transpose()?;
        let id = new_id(now)?;
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("INSERT INTO users (id, login, display_name, role, district, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(bytes(id)).bind(login).bind(display_name).bind(role.code())
                .bind(district.map(|d| bytes(d.0))).bind(hash).bind(now)
                .execute(&mut *tx).await
                .map_err(|e| unique_or(e, || format!("the login {login:?} is taken")))?;
            for s in stations {
                sqlx::query("INSERT INTO staff_stations (user_id, station) VALUES ($1, $2)")
                    .bind(bytes(id)).bind(bytes(s.0)).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(UserId(id))
    }

    /// Changes a user's display name and, for station staff, the stations they cover
    /// (all of them in the user's district). `by` must manage the user (else 404).
    /// Staff moved off a station stop receiving its residents at their phones' next
    /// sync; their web pages follow at once.
    pub async fn update_user(
        &self,
        by: &User,
        target: UserId,
        display_name: &str,
        stations: Option<&[StationId]>,
    ) -> Result<()> {
        let user = self.managed_user(by, target).await?;
        let display_name = checked_name(display_name)?;
        if let Some(stations) = stations {
            if user.role != Role::StationStaff {
                return Err(Error::bad_request(
                    "stations_for_staff",
                    "only station staff cover stations",
                ));
            }
            for s in stations {
                if user.district.is_none() || self.station_district(*s).await? != user.district {
                    return Err(Error::bad_request(
                        "unknown_station",
                        format!("station {s} is not in this district"),
                    ));
                }
            }
        }
        let id = bytes(target.0);
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("UPDATE users SET display_name = $2 WHERE id = $1")
                .bind(id.clone()).bind(display_name).execute(&mut *tx).await?;
            if let Some(stations) = stations {
                sqlx::query("DELETE FROM staff_stations WHERE user_id = $1")
                    .bind(id.clone()).execute(&mut *tx).await?;
                for s in stations {
                    sqlx::query("INSERT INTO staff_stations (user_id, station) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                        .bind(id.clone()).bind(bytes(s.0)).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Disables (or enables again) an account: a disabled user's sessions, tokens and
    /// devices stop working at their next request; nothing they recorded is touched.
    /// `by` must manage the user (else 404). Nobody disables their own account, except
    /// the first start's admin (no district), which asks to be disabled once real
    /// accounts exist, and may be while another admin or coordinator can still sign in.
    pub async fn set_user_disabled(
        &self,
        by: &User,
        target: UserId,
        disabled: bool,
        now: Timestamp,
    ) -> Result<()> {
        let user = self.managed_user(by, target).await?;
        if user.id == by.id {
            if !disabled {
                return Err(Error::bad_request(
                    "self_disable",
                    "an account cannot enable itself",
                ));
            }
            if user.district.is_some() {
                return Err(Error::bad_request(
                    "self_disable",
                    "only the first start's admin may disable its own account",
                ));
            }
            let others: i64 = with_pool!(self, p => sqlx::query_scalar(
                "SELECT COUNT(*) FROM users WHERE id <> $1 AND disabled_at IS NULL
                 AND role IN ('admin', 'coordinator') AND password_hash IS NOT NULL")
                .bind(bytes(user.id.0)).fetch_one(p).await?);
            if others == 0 {
                return Err(Error::bad_request(
                    "last_manager",
                    "create a coordinator or another admin first: nobody else could sign in",
                ));
            }
        }
        with_pool!(self, p => sqlx::query(
            "UPDATE users SET disabled_at = CASE WHEN $2 THEN COALESCE(disabled_at, $3) ELSE NULL END WHERE id = $1")
            .bind(bytes(target.0)).bind(disabled).bind(now).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// The user `target`, if `by` manages them; otherwise 404.
    async fn managed_user(&self, by: &User, target: UserId) -> Result<User> {
        self.user(target)
            .await?
            .filter(|u| by.may_manage(u))
            .ok_or_else(|| Error::NotFound(format!("no user {target} you manage")))
    }

    /// The accounts of no district: the first start's admin, and any made like it.
    pub async fn districtless_admins(&self) -> Result<Vec<User>> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE district IS NULL ORDER BY login"
        );
        let rows: Vec<UserRow> = with_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?);
        rows.into_iter().map(user_from_row).collect()
    }

    /// Creates the first admin if there are no users at all.
    pub async fn bootstrap_admin(&self, now: Timestamp) -> Result<Option<Bootstrap>> {
        let users: i64 = with_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(p).await?);
        if users > 0 {
            return Ok(None);
        }
        let password = auth::new_enrolment_code()?;
        match self
            .create_user(
                "admin",
                "Administrator",
                Role::Admin,
                None,
                &[],
                Some(&password),
                now,
            )
            .await
        {
            Ok(_) => Ok(Some(Bootstrap {
                login: "admin".into(),
                password,
            })),
            // Another process bootstrapped at the same moment.
            Err(Error::Conflict(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A user by id.
    pub async fn user(&self, id: UserId) -> Result<Option<User>> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        let rows: Vec<UserRow> = read_rows!(self, sql, [bytes(id.0)], |r| (
            r.col(0)?,
            r.col(1)?,
            r.col(2)?,
            r.col(3)?,
            r.col(4)?,
            r.col(5)?
        ))?;
        rows.into_iter().next().map(user_from_row).transpose()
    }

    /// A user by login.
    pub async fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        if !could_be_login(login) {
            return Ok(None);
        }
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE login = $1");
        let row: Option<UserRow> =
            with_pool!(self, p => sqlx::query_as(sql).bind(login.trim()).fetch_optional(p).await?);
        row.map(user_from_row).transpose()
    }

    /// The user whose login and password match, if any. Runs argon2 off the async
    /// threads; always hashes, so a wrong login takes as long as a wrong password.
    pub async fn check_password(&self, login: &str, password: &str) -> Result<Option<User>> {
        let sql = concat!(
            "SELECT password_hash, ",
            user_columns!(),
            " FROM users WHERE login = $1"
        );
        let row: Option<PasswordRow> = if could_be_login(login) {
            with_pool!(self, p => sqlx::query_as(sql).bind(login.trim()).fetch_optional(p).await?)
        } else {
            None
        };
        let found = row
            .map(|(hash, id, login, name, role, district, disabled)| {
                Ok::<_, Error>((
                    user_from_row((id, login, name, role, district, disabled))?,
                    hash,
                ))
            })
            .transpose()?;
        // A fixed hash to verify against when there is no user, so timing says nothing.
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$WQbZf0RVjx7Ss1bWB4mZcXnj3Fr3sLHFCrkgkK6qXks";
        let (user, hash) = match found {
            Some((user, Some(hash))) => (Some(user), hash),
            _ => (None, DUMMY.to_owned()),
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
            .await
            .map_err(|e| Error::Internal(format!("password check: {e}")))?;
        Ok(user.filter(|u| ok && !u.disabled))
    }

    /// The role and scope `user` acts with; `None` when the user has no district.
    pub async fn principal(&self, user: &User) -> Result<Option<Principal>> {
        let Some(district) = user.district else {
            return Ok(None);
        };
        let scope = match user.role {
            Role::Volunteer => {
                let rows: Vec<Vec<u8>> = read_rows!(
                    self,
                    "SELECT resident FROM assignments WHERE user_id = $1",
                    [bytes(user.id.0)],
                    |r| r.col(0)?
                )?;
                Scope::Residents {
                    district,
                    residents: rows
                        .iter()
                        .map(|b| uuid_of(b).map(ResidentId))
                        .collect::<Result<BTreeSet<_>>>()?,
                }
            }
            Role::StationStaff => {
                let rows: Vec<Vec<u8>> = read_rows!(
                    self,
                    "SELECT station FROM staff_stations WHERE user_id = $1",
                    [bytes(user.id.0)],
                    |r| r.col(0)?
                )?;
                Scope::Stations {
                    district,
                    stations: rows
                        .iter()
                        .map(|b| uuid_of(b).map(StationId))
                        .collect::<Result<BTreeSet<_>>>()?,
                }
            }
            Role::Coordinator | Role::Admin => Scope::District(district),
        };
        Ok(Some(Principal {
            user: user.id,
            role: user.role,
            scope,
        }))
    }

    /// Assigns `resident` to `volunteer`. The resident's case file must be stored and
    /// within `by`'s scope; the volunteer must be in the same district.
    pub async fn assign(
        &self,
        by: &Principal,
        volunteer: UserId,
        resident: ResidentId,
        now: Timestamp,
    ) -> Result<()> {
        self.check_assignment(by, volunteer, resident).await?;
        with_pool!(self, p => sqlx::query("INSERT INTO assignments (user_id, resident, assigned_by, assigned_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(bytes(volunteer.0)).bind(bytes(resident.0)).bind(bytes(by.user.0)).bind(now)
            .execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// The volunteers assigned to `resident`.
    pub async fn assigned_volunteers(
        &self,
        resident: ResidentId,
    ) -> Result<std::collections::BTreeSet<UserId>> {
        let rows: Vec<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar("SELECT user_id FROM assignments WHERE resident = $1")
            .bind(bytes(resident.0)).fetch_all(p).await?);
        rows.iter().map(|b| uuid_of(b).map(UserId)).collect()
    }

    /// Ends an assignment: the volunteer's phones purge the case file at their next sync.
    pub async fn unassign(
        &self,
        by: &Principal,
        volunteer: UserId,
        resident: ResidentId,
    ) -> Result<()> {
        self.check_assignment(by, volunteer, resident).await?;
        with_pool!(self, p => sqlx::query("DELETE FROM assignments WHERE user_id = $1 AND resident = $2")
            .bind(bytes(volunteer.0)).bind(bytes(resident.0)).execute(p).await.map(|_| ())?);
        Ok(())
    }

    async fn check_assignment(
        &self,
        by: &Principal,
        volunteer: UserId,
        resident: ResidentId,
    ) -> Result<()> {
        if !by.role.is_staff() {
            return Err(Error::Forbidden("only staff assign residents".into()));
        }
        let target = self
            .user(volunteer)
            .await?
            .filter(|u| u.district == Some(by.scope.district()))
            .ok_or_else(|| Error::NotFound(format!("no user {volunteer} in your district")))?;
        if target.role != Role::Volunteer {
            return Err(Error::bad_request(
                "not_a_volunteer",
                "residents are assigned to volunteers",
            ));
        }
        let row = with_pool!(self, p => sqlx::query("SELECT district, station FROM documents WHERE id = $1 AND station IS NOT NULL")
            .bind(bytes(resident.0)).fetch_optional(p).await?
            .map(|r| Ok::<_, sqlx::Error>((r.try_get::<Vec<u8>, _>("district")?, r.try_get::<Vec<u8>, _>("station")?)))
            .transpose()?);
        let covered = match row {
            Some((d, s)) => {
                by.scope
                    .covers(resident, DistrictId(uuid_of(&d)?), StationId(uuid_of(&s)?))
            }
            None => false,
        };
        if !covered {
            return Err(Error::NotFound(format!(
                "no resident {resident} in your scope"
            )));
        }
        Ok(())
    }

    /// Issues a one-time enrolment code for `user`, valid for 15 minutes.
    pub async fn issue_enrolment_code(
        &self,
        issued_by: UserId,
        user: UserId,
        now: Timestamp,
    ) -> Result<(String, Timestamp)> {
        let code = auth::new_enrolment_code()?;
        let expires_at = now + auth::ENROLMENT_CODE_MS;
        with_pool!(self, p => sqlx::query("INSERT INTO enrolment_codes (code_hash, user_id, issued_by, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(code_hash(&code)).bind(bytes(user.0)).bind(bytes(issued_by.0)).bind(now).bind(expires_at)
            .execute(p).await.map(|_| ())?);
        Ok((code, expires_at))
    }

    /// Exchanges an enrolment code for a new device: its id, one registered Automerge
    /// actor and a refresh token. The code works once, before it expires.
    pub async fn enrol(&self, code: &str, device_name: &str, now: Timestamp) -> Result<Enrolment> {
        let device = DeviceId(new_id(now)?);
        let actor = ActorId::from(auth::random_bytes::<16>()?.as_slice());
        let refresh_token = auth::new_secret()?;
        let export_key = auth::random_bytes::<32>()?.to_vec();
        let name = device_label(device_name);
        let user_id: Option<Vec<u8>> = with_pool!(self, p => {
            let mut tx = p.begin().await?;
            let user: Option<Vec<u8>> = sqlx::query_scalar(
                "UPDATE enrolment_codes SET used_at = $2, device = $3
                 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING user_id")
                .bind(code_hash(code)).bind(now).bind(bytes(device.0))
                .fetch_optional(&mut *tx).await?;
            if let Some(user) = &user {
                sqlx::query("INSERT INTO devices (id, user_id, name, enrolled_at, refresh_hash, export_key) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(bytes(device.0)).bind(user.clone()).bind(&name).bind(now).bind(secret_hash(&refresh_token))
                    .bind(export_key.clone())
                    .execute(&mut *tx).await?;
                sqlx::query("INSERT INTO device_actors (actor, device) VALUES ($1, $2)")
                    .bind(actor.to_bytes().to_vec()).bind(bytes(device.0))
                    .execute(&mut *tx).await?;
                tx.commit().await?;
            }
            user
        });
        let user_id = user_id.ok_or(Error::Unauthenticated(AuthFailure::BadCredentials))?;
        let user = self
            .user(UserId(uuid_of(&user_id)?))
            .await?
            .ok_or(Error::Unauthenticated(AuthFailure::BadCredentials))?;
        Ok(Enrolment {
            device,
            user,
            actors: vec![actor],
            refresh_token,
            export_key,
        })
    }

    /// A device's export key and whether its export was recovered already.
    pub async fn device_export_key(&self, device: DeviceId) -> Result<Option<(Vec<u8>, bool)>> {
        let row: Option<(Option<Vec<u8>>, Option<i64>)> = with_pool!(self, p => sqlx::query_as(
            "SELECT export_key, export_recovered_at FROM devices WHERE id = $1")
            .bind(bytes(device.0)).fetch_optional(p).await?);
        Ok(row.and_then(|(key, recovered)| key.map(|k| (k, recovered.is_some()))))
    }

    /// Records that a device's export was recovered; `false` if it was already.
    pub async fn mark_export_recovered(&self, device: DeviceId, now: Timestamp) -> Result<bool> {
        let updated = with_pool!(self, p => sqlx::query(
            "UPDATE devices SET export_recovered_at = $2 WHERE id = $1 AND export_recovered_at IS NULL")
            .bind(bytes(device.0)).bind(now).execute(p).await?.rows_affected());
        Ok(updated == 1)
    }

    /// Exchanges a refresh token for a new one (rotation) and names the device. The
    /// token before the current one also works until the current one is first used,
    /// so a phone whose last refresh response was lost is not locked out.
    pub async fn rotate_refresh(&self, token: &str) -> Result<(Device, String)> {
        let (id, next) = self
            .rotate_secret(Holder::Device, token, AuthFailure::Revoked)
            .await?;
        let device = self
            .device(DeviceId(id))
            .await?
            .ok_or(Error::Unauthenticated(AuthFailure::BadCredentials))?;
        Ok((device, next))
    }

    /// Rotates the refresh token of a device or a hub: the holder's id and the new
    /// token. A revoked holder gets `revoked`.
    pub(crate) async fn rotate_secret(
        &self,
        holder: Holder,
        token: &str,
        revoked: AuthFailure,
    ) -> Result<(Uuid, String)> {
        let table = holder.table();
        let presented = secret_hash(token);
        let select = format!(
            "SELECT id, refresh_hash, revoked_at FROM {table} WHERE refresh_hash = $1 OR previous_refresh_hash = $1"
        );
        let row = with_pool!(self, p => sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
            .bind(presented.clone()).fetch_optional(p).await?
            .map(|r| Ok::<_, sqlx::Error>((r.try_get::<Vec<u8>, _>("id")?, r.try_get::<Vec<u8>, _>("refresh_hash")?, r.try_get::<Option<i64>, _>("revoked_at")?)))
            .transpose()?);
        let Some((id, current, revoked_at)) = row else {
            return Err(Error::Unauthenticated(AuthFailure::BadCredentials));
        };
        if revoked_at.is_some() {
            return Err(Error::Unauthenticated(revoked));
        }
        let next = auth::new_secret()?;
        let update = if current == presented {
            format!(
                "UPDATE {table} SET previous_refresh_hash = refresh_hash, refresh_hash = $2 WHERE id = $1 AND refresh_hash = $3"
            )
        } else {
            format!(
                "UPDATE {table} SET refresh_hash = $2 WHERE id = $1 AND previous_refresh_hash = $3"
            )
        };
        let updated = with_pool!(self, p => sqlx::query(sqlx::AssertSqlSafe(update.as_str()))
            .bind(id.clone()).bind(secret_hash(&next)).bind(presented)
            .execute(p).await?.rows_affected());
        if updated != 1 {
            // A concurrent refresh with the same token won.
            return Err(Error::Unauthenticated(AuthFailure::BadCredentials));
        }
        Ok((uuid_of(&id)?, next))
    }

    /// A device by id.
    pub async fn device(&self, id: DeviceId) -> Result<Option<Device>> {
        let rows: Vec<DeviceFields> = read_rows!(
            self,
            "SELECT user_id, name, revoked_at, last_seen_at, clock_skew_ms, export_key FROM devices WHERE id = $1",
            [bytes(id.0)],
            |r| (
                r.col(0)?,
                r.col(1)?,
                r.col(2)?,
                r.col(3)?,
                r.col(4)?,
                r.col(5)?
            )
        )?;
        rows.into_iter()
            .next()
            .map(|row| device_from_row(id, row))
            .transpose()
    }

    /// A device with its user and the actors registered to it, in one read: every
    /// request of a phone needs all three (its token names the device and the user;
    /// its sync writes as the actors).
    pub async fn device_with_user(
        &self,
        id: DeviceId,
    ) -> Result<Option<(Device, User, Vec<ActorId>)>> {
        let rows: Vec<(DeviceFields, UserRow, Option<Vec<u8>>)> = read_rows!(
            self,
            "SELECT d.user_id, d.name, d.revoked_at, d.last_seen_at, d.clock_skew_ms, d.export_key,
                    u.id, u.login, u.display_name, u.role, u.district, u.disabled_at, a.actor
             FROM devices d JOIN users u ON u.id = d.user_id
             LEFT JOIN device_actors a ON a.device = d.id
             WHERE d.id = $1 ORDER BY a.actor",
            [bytes(id.0)],
            |r| (
                (
                    r.col(0)?,
                    r.col(1)?,
                    r.col(2)?,
                    r.col(3)?,
                    r.col(4)?,
                    r.col(5)?
                ),
                (
                    r.col(6)?,
                    r.col(7)?,
                    r.col(8)?,
                    r.col(9)?,
                    r.col(10)?,
                    r.col(11)?
                ),
                r.col(12)?
            )
        )?;
        let actors = rows
            .iter()
            .filter_map(|row| row.2.as_deref().map(ActorId::from))
            .collect();
        let Some((device, user, _)) = rows.into_iter().next() else {
            return Ok(None);
        };
        let device = device_from_row(id, device)?;
        Ok(Some((device, user_from_row(user)?, actors)))
    }

    /// The actors registered to a device.
    pub async fn device_actors(&self, id: DeviceId) -> Result<Vec<ActorId>> {
        let rows: Vec<Vec<u8>> = read_rows!(
            self,
            "SELECT actor FROM device_actors WHERE device = $1 ORDER BY actor",
            [bytes(id.0)],
            |r| r.col(0)?
        )?;
        Ok(rows.iter().map(|b| ActorId::from(b.as_slice())).collect())
    }

    /// Notes that a device synced, and how far its clock was off (`None`: the phone
    /// did not say). Written at most once every five minutes, unless the skew moved by
    /// more than a minute: the steady state of a phone syncing often writes nothing.
    pub async fn touch_device(
        &self,
        device: &Device,
        now: Timestamp,
        skew: Option<i64>,
    ) -> Result<()> {
        const EVERY_MS: i64 = 5 * 60 * 1000;
        const SKEW_MOVED_MS: i64 = 60 * 1000;
        let seen_lately = device.last_seen_at.is_some_and(|t| now - t < EVERY_MS);
        let skew_moved = match (skew, device.clock_skew_ms) {
            (Some(new), Some(old)) => (new - old).abs() > SKEW_MOVED_MS,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if seen_lately && !skew_moved {
            return Ok(());
        }
        with_pool!(self, p => sqlx::query(
            "UPDATE devices SET last_seen_at = $2, clock_skew_ms = COALESCE($3, clock_skew_ms) WHERE id = $1")
            .bind(bytes(device.id.0)).bind(now).bind(skew).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Revokes a device: its tokens stop working and it is told to purge. Idempotent.
    pub async fn revoke_device(
        &self,
        id: DeviceId,
        by: Option<UserId>,
        now: Timestamp,
    ) -> Result<()> {
        let updated = with_pool!(self, p => sqlx::query(
            "UPDATE devices SET revoked_at = COALESCE(revoked_at, $2), revoked_by = COALESCE(revoked_by, $3) WHERE id = $1")
            .bind(bytes(id.0)).bind(now).bind(by.map(|u| bytes(u.0)))
            .execute(p).await?.rows_affected());
        if updated == 0 {
            return Err(Error::NotFound(format!("no device {id}")));
        }
        Ok(())
    }
}

/// A `devices` row as [`SqlStore::devices_of`] selects it.
type DeviceRow = (
    Vec<u8>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
);

/// The administration pages' reads: a district's users, stations and staff stations,
/// and a user's devices. Each is limited to the district or user it names.
impl SqlStore {
    /// The users of `district`, by name.
    pub async fn users_in(&self, district: DistrictId) -> Result<Vec<User>> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE district = $1 ORDER BY display_name, login"
        );
        let rows: Vec<UserRow> = with_pool!(self, p => sqlx::query_as(sql)
            .bind(bytes(district.0)).fetch_all(p).await?);
        rows.into_iter().map(user_from_row).collect()
    }

    /// The stations of `district` and their names, by name.
    pub async fn stations_in(&self, district: DistrictId) -> Result<Vec<(StationId, String)>> {
        let rows: Vec<(Vec<u8>, String)> = with_pool!(self, p => sqlx::query_as(
            "SELECT id, name FROM stations WHERE district = $1 ORDER BY name")
            .bind(bytes(district.0)).fetch_all(p).await?);
        rows.into_iter()
            .map(|(id, name)| Ok((StationId(uuid_of(&id)?), name)))
            .collect()
    }

    /// Which staff member covers which station, for the stations of `district`.
    pub async fn staff_stations_in(
        &self,
        district: DistrictId,
    ) -> Result<Vec<(UserId, StationId)>> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = with_pool!(self, p => sqlx::query_as(
            "SELECT ss.user_id, ss.station FROM staff_stations ss
             JOIN stations s ON s.id = ss.station WHERE s.district = $1")
            .bind(bytes(district.0)).fetch_all(p).await?);
        rows.into_iter()
            .map(|(u, s)| Ok((UserId(uuid_of(&u)?), StationId(uuid_of(&s)?))))
            .collect()
    }

    /// The devices of `user`, newest first.
    pub async fn devices_of(&self, user: UserId) -> Result<Vec<DeviceListing>> {
        let rows: Vec<DeviceRow> = with_pool!(self, p => sqlx::query_as(
            "SELECT id, name, enrolled_at, last_seen_at, revoked_at, clock_skew_ms,
                    (SELECT COUNT(*) FROM quarantine q WHERE q.device = devices.id AND q.decision IS NULL)
             FROM devices WHERE user_id = $1 ORDER BY enrolled_at DESC, id")
            .bind(bytes(user.0)).fetch_all(p).await?);
        rows.into_iter()
            .map(
                |(id, name, enrolled_at, last_seen_at, revoked_at, clock_skew_ms, awaiting)| {
                    Ok(DeviceListing {
                        id: DeviceId(uuid_of(&id)?),
                        name,
                        enrolled_at,
                        last_seen_at,
                        revoked_at,
                        clock_skew_ms,
                        awaiting,
                    })
                },
            )
            .collect()
    }
}

/// A unique violation becomes a 409 with `message`; anything else stays a store error.
fn unique_or(e: sqlx::Error, message: impl FnOnce() -> String) -> Error {
    if e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
    {
        Error::Conflict(message())
    } else {
        Error::from(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u128, role: Role, district: Option<u128>) -> User {
        User {
            id: UserId(Uuid::from_u128(n)),
            login: format!("u{n}"),
            display_name: String::new(),
            role,
            district: district.map(|d| DistrictId(Uuid::from_u128(d))),
            disabled: false,
        }
    }

    #[test]
    fn who_manages_whom() {
        let admin = user(1, Role::Admin, None);
        let coordinator = user(2, Role::Coordinator, Some(7));
        let staff = user(3, Role::StationStaff, Some(7));
        let volunteer = user(4, Role::Volunteer, Some(7));
        let elsewhere = user(5, Role::Volunteer, Some(8));
        let other_staff = user(6, Role::StationStaff, Some(7));

        assert!(admin.may_manage(&elsewhere) && admin.may_manage(&coordinator));
        assert!(coordinator.may_manage(&staff) && coordinator.may_manage(&volunteer));
        assert!(!coordinator.may_manage(&elsewhere) && !coordinator.may_manage(&admin));
        assert!(staff.may_manage(&volunteer) && !staff.may_manage(&other_staff));
        assert!(!staff.may_manage(&elsewhere) && !staff.may_manage(&coordinator));
        assert!(volunteer.may_manage(&volunteer) && !volunteer.may_manage(&elsewhere));
        // A user without a district manages no one in "no district".
        let lost = user(9, Role::Coordinator, None);
        assert!(!lost.may_manage(&user(10, Role::Volunteer, None)));
    }

    #[test]
    fn only_admins_create_districts() {
        assert!(user(1, Role::Admin, None).may_create_district());
        assert!(user(1, Role::Admin, Some(7)).may_create_district());
        for role in [Role::Coordinator, Role::StationStaff, Role::Volunteer] {
            assert!(!user(2, role, Some(7)).may_create_district(), "{role}");
        }
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert_eq!(checked_name("  大宁路街道 ").unwrap(), "大宁路街道");
        let code = |r: Result<&str>| match r {
            Err(Error::BadRequest { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(checked_name(" ")), "empty_name");
        assert_eq!(
            code(checked_name(&"长".repeat(limits::SHORT_TEXT + 1))),
            "name_too_long"
        );
        assert!(checked_name(&"长".repeat(limits::SHORT_TEXT)).is_ok());
        assert_eq!(code(checked_name("大宁\0路")), "control_character");
        assert_eq!(code(checked_name("大宁\t路")), "control_character");
        // A device's name is cleaned, never refused.
        assert_eq!(device_label(" 小王的\0手机\u{7} "), "小王的手机");
        assert_eq!(device_label(&"机".repeat(150)).chars().count(), 100);
        assert!(check_new_password(None).is_ok());
        assert!(check_new_password(Some("0123456789")).is_ok());
        assert!(matches!(
            check_new_password(Some("012345678")),
            Err(Error::BadRequest {
                code: "weak_password",
                ..
            })
        ));
    }

    #[test]
    fn who_creates_whom() {
        let d = Some(DistrictId(Uuid::from_u128(7)));
        let other = Some(DistrictId(Uuid::from_u128(8)));
        let coordinator = user(2, Role::Coordinator, Some(7));
        let staff = user(3, Role::StationStaff, Some(7));
        assert!(user(1, Role::Admin, None).may_create(Role::Admin, None));
        assert!(coordinator.may_create(Role::StationStaff, d));
        assert!(
            !coordinator.may_create(Role::Admin, d)
                && !coordinator.may_create(Role::Volunteer, other)
        );
        assert!(staff.may_create(Role::Volunteer, d) && !staff.may_create(Role::StationStaff, d));
        assert!(!user(4, Role::Volunteer, Some(7)).may_create(Role::Volunteer, d));
    }
}
