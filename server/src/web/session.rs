//! Signing in on the web: sessions in a server-side table, the cookie that names one,
//! and the CSRF token every form of the session carries.
//!
//! A table rather than a signed cookie: signing out, disabling an account or a role
//! change takes effect on the next request (the same choice as for device tokens), and
//! there is no second key to manage. Only the SHA-256 of the cookie's 256-bit token is
//! stored, so a copy of the database signs nobody in. The cookie is `HttpOnly`,
//! `SameSite=Strict` and scoped to `/web`; every POST must also carry the session's
//! CSRF token (the sign-in form a token of its own, double-submitted in a cookie).

use super::i18n::{Lang, local_path};
use super::templates::{Chrome, LoginPage};
use super::{WebError, render};
use crate::auth::{self, secret_hash};
use crate::error::{Error, Result};
use crate::http::{AppState, OutcomeLabel, limited};
use crate::identity::User;
use crate::now_ms;
use crate::store::{SqlStore, with_pool};
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::Deserialize;
use std::sync::Arc;
use sync_core::automerge::ActorId;
use sync_core::ids::{Timestamp, UserId};
use sync_core::model::Role;

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "linli_session";
/// The sign-in form's own CSRF cookie.
const LOGIN_COOKIE: &str = "linli_login";
/// A session ends this long after sign-in, whatever happens.
const SESSION_MS: i64 = 12 * 3600 * 1000;
/// … or after this long without a request.
const IDLE_MS: i64 = 2 * 3600 * 1000;
/// `last_seen_at` is written at most this often.
const TOUCH_MS: i64 = 60 * 1000;

/// A signed-in user on the web: never a volunteer (they use the phone app).
#[derive(Debug)]
pub(crate) struct WebUser {
    pub user: User,
    /// The session's CSRF token, for the forms of the page.
    pub csrf: String,
    token_hash: Vec<u8>,
}

impl WebUser {
    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, presented: &str) -> Result<()> {
        // Compare digests: equal-length inputs, and timing says nothing of the token.
        if secret_hash(presented) == secret_hash(&self.csrf) && !presented.is_empty() {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "the form's CSRF token is not this session's; reload the page".into(),
            ))
        }
    }

    /// The page chrome for this user.
    pub fn chrome(&self, lang: Lang, here: &str) -> Chrome {
        let mut chrome = Chrome::new(
            lang,
            here,
            Some((self.user.display_name.clone(), self.csrf.clone())),
        );
        chrome.admin = super::admin::administers(&self.user).is_ok();
        chrome.districts = self.user.may_create_district();
        chrome
    }
}

fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, value))
        .path("/web")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.web.secure_cookies)
        .build()
}

/// Where the browser is sent to sign in, coming back to `here` afterwards.
fn to_login(here: &str) -> Response {
    let query = serde_urlencoded::to_string([("next", local_path(here))]).unwrap_or_default();
    Redirect::to(&format!("/web/login?{query}")).into_response()
}

impl FromRequestParts<Arc<AppState>> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let lang = Lang::from_request_parts(parts, state)
            .await
            .unwrap_or_default();
        // Back to this page after signing in; a form's target cannot be opened again
        // with GET, so a sign-in interrupting a POST returns to the visit log.
        let here = match parts.method {
            axum::http::Method::GET => parts
                .uri
                .path_and_query()
                .map_or("/web/visits", |p| p.as_str())
                .to_owned(),
            _ => "/web/visits".to_owned(),
        };
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(token) = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
            return Err(to_login(&here));
        };
        let token_hash = secret_hash(&token);
        let now = now_ms();
        let found = state
            .store
            .web_session(&token_hash, now)
            .await
            .map_err(|e| WebError::new(lang, e).into_response())?;
        let Some((user_id, csrf)) = found else {
            return Err(to_login(&here));
        };
        let user = state
            .store
            .user(user_id)
            .await
            .map_err(|e| WebError::new(lang, e).into_response())?;
        match user {
            Some(user) if !user.disabled && user.role != Role::Volunteer => Ok(WebUser {
                user,
                csrf,
                token_hash,
            }),
            _ => {
                // Disabled, gone or now a volunteer: the session ends here.
                let _ = state.store.end_web_session(&token_hash).await;
                Err(to_login(&here))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// A fresh sign-in form, with a new form token in its cookie.
fn login_form(
    state: &AppState,
    jar: CookieJar,
    lang: Lang,
    status: StatusCode,
    error: Option<&'static str>,
    login: String,
    next: &str,
) -> Result<Response> {
    let form_token = auth::new_secret()?;
    let cookie = Cookie::build((LOGIN_COOKIE, form_token.clone()))
        .path("/web/login")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.web.secure_cookies)
        .build();
    let page = LoginPage {
        c: Chrome::new(lang, "/web/login", None),
        error,
        login,
        form_token,
        next: local_path(next).to_owned(),
    };
    Ok((status, jar.add(cookie), render(&page)?).into_response())
}

/// `GET /web/login`.
pub(crate) async fn login_page(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    jar: CookieJar,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    let Query(query) = query.map_err(|e| super::unreadable(lang, e))?;
    login_form(
        &state,
        jar,
        lang,
        StatusCode::OK,
        None,
        String::new(),
        &query.next,
    )
    .map_err(|e| WebError::new(lang, e))
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    next: String,
}

/// `POST /web/login`: the API's password check and rate limits, then a session.
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    addr: crate::http::ClientAddr,
    jar: CookieJar,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| super::unreadable(lang, e))?;
    let again = |jar, status, message, login: &str| {
        login_form(
            &state,
            jar,
            lang,
            status,
            Some(message),
            login.to_owned(),
            &form.next,
        )
        .map_err(|e| WebError::new(lang, e))
    };
    let t = lang.msgs();
    let expected = jar.get(LOGIN_COOKIE).map(|c| c.value().to_owned());
    if expected.is_none_or(|e| form.form_token.is_empty() || e != form.form_token) {
        return again(jar, StatusCode::BAD_REQUEST, t.login_expired_form, "");
    }
    let limits = limited(&state.rate_limits.per_address, &addr.key()).and_then(|()| {
        limited(
            &state.rate_limits.login_per_name,
            &form.login.trim().to_lowercase(),
        )
    });
    if limits.is_err() {
        return again(
            jar,
            StatusCode::TOO_MANY_REQUESTS,
            t.login_rate_limited,
            &form.login,
        );
    }
    let user = state
        .store
        .check_password(&form.login, &form.password)
        .await
        .map_err(|e| WebError::new(lang, e))?;
    let outcome = if user.is_some() { "ok" } else { "refused" };
    state
        .metrics
        .logins
        .get_or_create(&OutcomeLabel { outcome })
        .inc();
    let Some(user) = user else {
        return again(jar, StatusCode::UNAUTHORIZED, t.login_failed, &form.login);
    };
    if user.role == Role::Volunteer {
        return again(jar, StatusCode::FORBIDDEN, t.login_volunteer, &form.login);
    }
    let token = state
        .store
        .start_web_session(user.id, now_ms())
        .await
        .map_err(|e| WebError::new(lang, e))?;
    tracing::info!(user = %user.id, "web sign-in");
    let jar = jar
        .remove(Cookie::build(LOGIN_COOKIE).path("/web/login"))
        .add(session_cookie(&state, token));
    Ok((jar, Redirect::to(local_path(&form.next))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /web/logout`: ends the session in the table, not only in the browser.
pub(crate) async fn logout(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    jar: CookieJar,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| super::unreadable(lang, e))?;
    user.check_csrf(&form.csrf)
        .map_err(|e| WebError::new(lang, e))?;
    state
        .store
        .end_web_session(&user.token_hash)
        .await
        .map_err(|e| WebError::new(lang, e))?;
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/web"));
    Ok((jar, Redirect::to("/web/login")).into_response())
}

fn bytes(id: UserId) -> Vec<u8> {
    id.0.as_bytes().to_vec()
}

impl SqlStore {
    /// Starts a session for `user`; returns the cookie's token (only its hash is kept).
    pub async fn start_web_session(&self, user: UserId, now: Timestamp) -> Result<String> {
        let token = auth::new_secret()?;
        let csrf = auth::new_secret()?;
        with_pool!(self, p => {
            // Sign-in is a good moment to forget this user's expired sessions.
            sqlx::query("DELETE FROM web_sessions WHERE user_id = $1 AND expires_at < $2")
                .bind(bytes(user)).bind(now).execute(p).await?;
            sqlx::query("INSERT INTO web_sessions (token_hash, user_id, csrf, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $4, $5)")
                .bind(secret_hash(&token)).bind(bytes(user)).bind(csrf).bind(now).bind(now + SESSION_MS)
                .execute(p).await?;
        });
        Ok(token)
    }

    /// The user and CSRF token of a live session, noting the request; `None` for an
    /// unknown, expired or idle session.
    pub async fn web_session(
        &self,
        token_hash: &[u8],
        now: Timestamp,
    ) -> Result<Option<(UserId, String)>> {
        let row: Option<(Vec<u8>, String, i64, i64)> = with_pool!(self, p => sqlx::query_as(
            "SELECT user_id, csrf, expires_at, last_seen_at FROM web_sessions WHERE token_hash = $1")
            .bind(token_hash.to_vec()).fetch_optional(p).await?);
        let Some((user, csrf, expires_at, last_seen_at)) = row else {
            return Ok(None);
        };
        if now >= expires_at || now - last_seen_at >= IDLE_MS {
            self.end_web_session(token_hash).await?;
            return Ok(None);
        }
        if now - last_seen_at >= TOUCH_MS {
            with_pool!(self, p => sqlx::query("UPDATE web_sessions SET last_seen_at = $2 WHERE token_hash = $1")
                .bind(token_hash.to_vec()).bind(now).execute(p).await.map(|_| ())?);
        }
        let user = uuid::Uuid::from_slice(&user)
            .map_err(|_| Error::Internal("a stored user id is not 16 bytes".into()))?;
        Ok(Some((UserId(user), csrf)))
    }

    /// Ends a session. Idempotent.
    pub async fn end_web_session(&self, token_hash: &[u8]) -> Result<()> {
        with_pool!(self, p => sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
            .bind(token_hash.to_vec()).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// The Automerge actor the server writes as for `user`'s edits on the web, made on
    /// first use. Like a device's, it is 16 random bytes chosen by the server.
    pub async fn web_actor(&self, user: UserId) -> Result<ActorId> {
        let select = "SELECT actor FROM web_actors WHERE user_id = $1";
        let found: Option<Vec<u8>> = with_pool!(self, p => sqlx::query_scalar(select)
            .bind(bytes(user)).fetch_optional(p).await?);
        if let Some(actor) = found {
            return Ok(ActorId::from(actor.as_slice()));
        }
        let actor = auth::random_bytes::<16>()?.to_vec();
        // Two first reviews at once: one insert wins, both read the winner.
        with_pool!(self, p => sqlx::query("INSERT INTO web_actors (user_id, actor) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING")
            .bind(bytes(user)).bind(actor).execute(p).await.map(|_| ())?);
        let stored: Vec<u8> = with_pool!(self, p => sqlx::query_scalar(select)
            .bind(bytes(user)).fetch_one(p).await?);
        Ok(ActorId::from(stored.as_slice()))
    }
}
