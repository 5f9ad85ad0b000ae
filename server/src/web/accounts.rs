//! Accounts on the web (issue 12): a user's display name and, for station staff, the
//! stations they cover (moving staff between stations); disabling and enabling an
//! account; and the first start's admin, which has no district, disabling itself once
//! real accounts exist (its first-start message asks for that).
//!
//! The identity store decides (`update_user`, `set_user_disabled`: the signed-in user
//! must manage the target, else 404; nobody disables themselves but a district-less
//! admin while another manager can sign in). Each POST checks the CSRF token first.

use super::admin::{last_field, parse_id};
use super::session::WebUser;
use super::{WebError, i18n::Lang, unreadable};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::now_ms;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::Arc;
use sync_core::ids::{StationId, UserId};

/// A form's fields, repeated keys kept (a staff member's stations are checkboxes).
type Pairs = Vec<(String, String)>;

/// `POST /web/admin/users/{user}/edit`: the display name and (staff) the stations.
pub(crate) async fn edit(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(id): Path<String>,
    f: Result<Form<Pairs>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(pairs) = f.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(last_field(&pairs, "csrf"))?;
        let target = UserId(parse_id(&id)?);
        // Only a staff member's form has the stations field (`stations_shown`): an
        // empty set of checkboxes sends nothing, which must still mean "none".
        let stations: Option<Vec<StationId>> = if last_field(&pairs, "stations_shown").is_empty() {
            None
        } else {
            Some(
                pairs
                    .iter()
                    .filter(|(k, _)| k == "stations")
                    .map(|(_, v)| parse_id(v).map(StationId))
                    .collect::<Result<_>>()?,
            )
        };
        state
            .store
            .update_user(
                &user.user,
                target,
                last_field(&pairs, "display_name"),
                stations.as_deref(),
            )
            .await?;
        tracing::info!(by = %user.user.id, user = %target, "user edited on the web");
        Ok(Redirect::to(&format!("/web/admin/users/{}?saved=1", target.0)).into_response())
    }
    .await
    .map_err(|e: Error| WebError::new(lang, e))
}

/// `POST /web/admin/users/{user}/disabled`: `disabled=1` disables the account,
/// `disabled=0` enables it again.
pub(crate) async fn disabled(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(id): Path<String>,
    f: Result<Form<Pairs>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(pairs) = f.map_err(|e| unreadable(lang, e))?;
    async {
        user.check_csrf(last_field(&pairs, "csrf"))?;
        let target = UserId(parse_id(&id)?);
        let disable = match last_field(&pairs, "disabled") {
            "1" => true,
            "0" => false,
            other => {
                return Err(Error::bad_request(
                    "malformed",
                    format!("disabled is 1 or 0, not {other:?}"),
                ));
            }
        };
        state
            .store
            .set_user_disabled(&user.user, target, disable, now_ms())
            .await?;
        tracing::info!(by = %user.user.id, user = %target, disable, "account disabled or enabled on the web");
        let to = if target == user.user.id {
            // The session ends with the account.
            "/web/login".to_owned()
        } else if user.user.district.is_none() {
            "/web/admin/districts?saved=1".to_owned()
        } else {
            let notice = if disable { "disabled" } else { "enabled" };
            format!("/web/admin/users/{}?{notice}=1", target.0)
        };
        Ok(Redirect::to(&to).into_response())
    }
    .await
    .map_err(|e: Error| WebError::new(lang, e))
}
