//! Accounts and access: password login, enrolment, token refresh, and the
//! administration of districts, stations, users, codes, devices and assignments.

use super::AppState;
use super::caller::{Caller, ClientAddr};
use super::extract::{Json, Path};
use super::metrics::OutcomeLabel;
use crate::auth::ACCESS_TOKEN_SECS;
use crate::error::{AuthFailure, Error, Result};
use crate::now_ms;
use axum::extract::State;
use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use sync_core::ids::{DeviceId, DistrictId, ResidentId, StationId, UserId};
use sync_core::model::Role;
use utoipa::ToSchema;
use uuid::Uuid;

/// Now, in seconds since the epoch, as access tokens count time.
pub(crate) fn now_secs() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap_or(0)
}

pub(crate) fn limited<K: Clone + std::hash::Hash + Eq>(
    limiter: &governor::DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<()> {
    limiter
        .check_key(key)
        .map_err(|not_until| Error::RateLimited {
            retry_after_secs: not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1),
        })
}

/// A user as others see it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserView {
    id: Uuid,
    login: String,
    display_name: String,
    /// volunteer, station_staff, coordinator or admin.
    role: String,
    district: Option<Uuid>,
}

impl From<&crate::identity::User> for UserView {
    fn from(u: &crate::identity::User) -> Self {
        UserView {
            id: u.id.0,
            login: u.login.clone(),
            display_name: u.display_name.clone(),
            role: u.role.code().into(),
            district: u.district.map(|d| d.0),
        }
    }
}

/// A password login.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LoginRequest {
    login: String,
    password: String,
}

/// An access token for a signed-in user.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoginResponse {
    access_token: String,
    /// Seconds the access token lives.
    expires_in: u64,
    user: UserView,
}

/// Signs in with a password (coordinators, staff, admins). Limited to 5 attempts a
/// minute per login and 60 per client address.
#[utoipa::path(post, path = "/api/v1/login", tag = "access", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse),
        (status = 401, description = "Wrong login or password (`bad_credentials`)", body = crate::error::ErrorBody),
        (status = 429, description = "Too many attempts; see Retry-After", body = crate::error::ErrorBody)))]
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    addr: ClientAddr,
    Json(request): Json<LoginRequest>,
) -> Result<Json<LoginResponse>> {
    limited(&state.rate_limits.per_address, &addr.key())?;
    limited(
        &state.rate_limits.login_per_name,
        &request.login.trim().to_lowercase(),
    )?;
    let user = state
        .store
        .check_password(&request.login, &request.password)
        .await?;
    let outcome = if user.is_some() { "ok" } else { "refused" };
    state
        .metrics
        .logins
        .get_or_create(&OutcomeLabel { outcome })
        .inc();
    let user = user.ok_or(Error::Unauthenticated(AuthFailure::BadCredentials))?;
    tracing::info!(user = %user.id, "password login");
    Ok(Json(LoginResponse {
        access_token: state.keys.issue(user.id.0, None, now_secs())?,
        expires_in: ACCESS_TOKEN_SECS,
        user: (&user).into(),
    }))
}

/// A phone enrolling with the code it scanned.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EnrolRequest {
    pub(crate) code: String,
    /// A name for people, e.g. "Wang Fang's phone".
    #[serde(default)]
    pub(crate) device_name: String,
}

/// A device credential.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeviceCredential {
    pub(crate) device_id: Uuid,
    pub(crate) user: UserView,
    /// The Automerge actor ids (hex) the device must write as; changes under any other
    /// actor are refused.
    pub(crate) actors: Vec<String>,
    /// Long-lived, rotated on every use, revocable. Keep it in the platform keystore.
    pub(crate) refresh_token: String,
    /// Short-lived bearer token for sync.
    pub(crate) access_token: String,
    /// Seconds the access token lives.
    pub(crate) expires_in: u64,
    /// Hex: the key the phone seals its unsynced changes with if the device is revoked,
    /// for `POST /api/v1/recover`. Keep it with the refresh token.
    pub(crate) export_key: String,
}

/// Exchanges a one-time enrolment code for a device credential.
#[utoipa::path(post, path = "/api/v1/enrol", tag = "access", request_body = EnrolRequest,
    responses((status = 200, body = DeviceCredential),
        (status = 401, description = "Unknown, used or expired code (`bad_credentials`)", body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody)))]
pub(crate) async fn enrol(
    State(state): State<Arc<AppState>>,
    addr: ClientAddr,
    Json(request): Json<EnrolRequest>,
) -> Result<Json<DeviceCredential>> {
    limited(&state.rate_limits.enrol_per_address, &addr.key())?;
    let enrolled = state
        .store
        .enrol(&request.code, &request.device_name, now_ms())
        .await?;
    tracing::info!(device = %enrolled.device, user = %enrolled.user.id, "device enrolled");
    Ok(Json(DeviceCredential {
        device_id: enrolled.device.0,
        access_token: state
            .keys
            .issue(enrolled.user.id.0, Some(enrolled.device.0), now_secs())?,
        user: (&enrolled.user).into(),
        actors: enrolled.actors.iter().map(|a| a.to_hex_string()).collect(),
        refresh_token: enrolled.refresh_token,
        expires_in: ACCESS_TOKEN_SECS,
        export_key: hex::encode(&enrolled.export_key),
    }))
}

/// A device refreshing its access token.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RefreshRequest {
    refresh_token: String,
}

/// New tokens: keep the new refresh token, forget the old.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RefreshResponse {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

/// Rotates a device's refresh token and issues an access token. A revoked device gets
/// 401 `device_revoked` with `purge: true`.
#[utoipa::path(post, path = "/api/v1/token", tag = "access", request_body = RefreshRequest,
    responses((status = 200, body = RefreshResponse),
        (status = 401, description = "Unknown token (`bad_credentials`) or revoked device (`device_revoked`, `purge: true`)", body = crate::error::ErrorBody)))]
pub(crate) async fn refresh(
    State(state): State<Arc<AppState>>,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<RefreshResponse>> {
    let (device, refresh_token) = state.store.rotate_refresh(&request.refresh_token).await?;
    let user = state
        .store
        .user(device.user)
        .await?
        .ok_or(Error::Unauthenticated(AuthFailure::BadCredentials))?;
    if user.disabled {
        return Err(Error::Unauthenticated(AuthFailure::UserDisabled));
    }
    Ok(Json(RefreshResponse {
        access_token: state.keys.issue(user.id.0, Some(device.id.0), now_secs())?,
        refresh_token,
        expires_in: ACCESS_TOKEN_SECS,
    }))
}

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MeResponse {
    user: UserView,
    device: Option<Uuid>,
}

/// The caller's account (and device).
#[utoipa::path(get, path = "/api/v1/me", tag = "access", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn me(caller: Caller) -> Json<MeResponse> {
    Json(MeResponse {
        user: (&caller.user).into(),
        device: caller.device.map(|d| d.id.0),
    })
}

/// A name.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NameRequest {
    name: String,
}

/// A created thing's id.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Created {
    id: Uuid,
}

/// Creates a district (admins).
#[utoipa::path(post, path = "/api/v1/districts", tag = "admin", security(("bearer" = [])),
    request_body = NameRequest,
    responses((status = 201, body = Created),
        (status = 400, description = "Empty (`empty_name`), too long (`name_too_long`) or holding a control character (`control_character`) name", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn create_district(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(request): Json<NameRequest>,
) -> Result<(StatusCode, Json<Created>)> {
    if !caller.user.may_create_district() {
        return Err(Error::Forbidden("only admins create districts".into()));
    }
    // The name is checked (empty, too long) by `create_district`, for the web too.
    let id = state.store.create_district(&request.name, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(Created { id: id.0 })))
}

/// Creates a station in the caller's district (coordinators), or any (admins, who name
/// the district).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct StationRequest {
    name: String,
    district: Option<Uuid>,
}

/// Creates a community service station.
#[utoipa::path(post, path = "/api/v1/stations", tag = "admin", security(("bearer" = [])),
    request_body = StationRequest,
    responses((status = 201, body = Created), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn create_station(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(request): Json<StationRequest>,
) -> Result<(StatusCode, Json<Created>)> {
    let district = request
        .district
        .map(DistrictId)
        .or(caller.user.district)
        .ok_or_else(|| Error::bad_request("district_required", "name the district"))?;
    let allowed = match caller.user.role {
        Role::Admin => true,
        Role::Coordinator => caller.user.district == Some(district),
        _ => false,
    };
    if !allowed {
        return Err(Error::Forbidden(
            "only coordinators (in their district) and admins create stations".into(),
        ));
    }
    let id = state
        .store
        .create_station(district, &request.name, now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(Created { id: id.0 })))
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct UserRequest {
    login: String,
    display_name: String,
    /// volunteer, station_staff, coordinator or admin.
    role: String,
    /// Defaults to the caller's district.
    district: Option<Uuid>,
    /// For station staff: the stations covered.
    #[serde(default)]
    stations: Vec<Uuid>,
    /// For people who sign in on the web; volunteers enrol phones with codes instead.
    password: Option<String>,
}

/// Creates a user: admins anyone, coordinators in their district, staff volunteers.
#[utoipa::path(post, path = "/api/v1/users", tag = "admin", security(("bearer" = [])),
    request_body = UserRequest,
    responses((status = 201, body = Created), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn create_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(request): Json<UserRequest>,
) -> Result<(StatusCode, Json<Created>)> {
    let role = Role::from_code(&request.role).ok_or_else(|| {
        Error::bad_request(
            "unknown_role",
            "role is volunteer, station_staff, coordinator or admin",
        )
    })?;
    let district = request.district.map(DistrictId).or(caller.user.district);
    if !caller.user.may_create(role, district) {
        return Err(Error::Forbidden(format!(
            "a {} cannot create a {} there",
            caller.user.role, role
        )));
    }
    // The login, the district, the stations and the password are checked by
    // `create_user` itself, for the web pages too.
    let stations: Vec<StationId> = request.stations.into_iter().map(StationId).collect();
    let id = state
        .store
        .create_user(
            &request.login,
            &request.display_name,
            role,
            district,
            &stations,
            request.password.as_deref(),
            now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(Created { id: id.0 })))
}

/// For whom to issue an enrolment code.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CodeRequest {
    user: Uuid,
    /// A station of the user's district: the code also works at that station's hub
    /// while its uplink is down, and lives a week instead of 15 minutes.
    #[serde(default)]
    station: Option<Uuid>,
}

/// A one-time enrolment code, for a QR code.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CodeResponse {
    code: String,
    /// Milliseconds since the epoch.
    expires_at: i64,
}

/// Issues a one-time enrolment code, valid 15 minutes, for a user the caller manages;
/// with a `station`, valid a week and also at that station's hub. Only from a password
/// sign-in (a web session), never with a device's token.
#[utoipa::path(post, path = "/api/v1/enrolment-codes", tag = "access", security(("bearer" = [])),
    request_body = CodeRequest,
    responses((status = 201, body = CodeResponse), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn issue_code(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(request): Json<CodeRequest>,
) -> Result<(StatusCode, Json<CodeResponse>)> {
    if caller.device.is_some() {
        // A code makes a new device. Asking for a password here means a stolen phone or
        // a leaked device token cannot mint more devices.
        return Err(Error::Forbidden(
            "enrolment codes are issued from a password sign-in, not from a device".into(),
        ));
    }
    let target = state
        .store
        .user(UserId(request.user))
        .await?
        .filter(|t| caller.user.may_manage(t))
        .ok_or_else(|| Error::NotFound(format!("no user {} you manage", request.user)))?;
    let (code, expires_at) = match request.station.map(StationId) {
        None => {
            state
                .store
                .issue_enrolment_code(caller.user.id, target.id, now_ms())
                .await?
        }
        Some(station) => {
            if state.store.station_district(station).await? != target.district {
                return Err(Error::NotFound(format!(
                    "no station {} in the user's district",
                    station.0
                )));
            }
            state
                .store
                .issue_hub_enrolment_code(caller.user.id, target.id, station, now_ms())
                .await?
        }
    };
    tracing::info!(by = %caller.user.id, user = %target.id, station = ?request.station, "enrolment code issued");
    Ok((StatusCode::CREATED, Json(CodeResponse { code, expires_at })))
}

/// Revokes a device of a user the caller manages. The device's next request is refused
/// with `device_revoked` and told to purge.
#[utoipa::path(post, path = "/api/v1/devices/{device}/revoke", tag = "access", security(("bearer" = [])),
    params(("device" = Uuid, Path, description = "The device id")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(device): Path<Uuid>,
) -> Result<StatusCode> {
    let not_found = || Error::NotFound(format!("no device {device} you manage"));
    let found = state
        .store
        .device(DeviceId(device))
        .await?
        .ok_or_else(not_found)?;
    let owner = state.store.user(found.user).await?.ok_or_else(not_found)?;
    if !caller.user.may_manage(&owner) {
        return Err(not_found());
    }
    state
        .store
        .revoke_device(found.id, Some(caller.user.id), now_ms())
        .await?;
    tracing::info!(by = %caller.user.id, device = %found.id, "device revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Assigns a resident to a volunteer (staff whose scope holds the resident).
#[utoipa::path(put, path = "/api/v1/volunteers/{volunteer}/residents/{resident}", tag = "admin",
    security(("bearer" = [])),
    params(("volunteer" = Uuid, Path), ("resident" = Uuid, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn assign(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((volunteer, resident)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode> {
    let by = caller.principal(&state).await?;
    state
        .store
        .assign(&by, UserId(volunteer), ResidentId(resident), now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends an assignment; the volunteer's phones purge the case file at their next sync.
#[utoipa::path(delete, path = "/api/v1/volunteers/{volunteer}/residents/{resident}", tag = "admin",
    security(("bearer" = [])),
    params(("volunteer" = Uuid, Path), ("resident" = Uuid, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn unassign(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((volunteer, resident)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode> {
    let by = caller.principal(&state).await?;
    state
        .store
        .unassign(&by, UserId(volunteer), ResidentId(resident))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
