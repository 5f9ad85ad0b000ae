//! The HTTP service: `app()` builds the router over one [`AppState`]; `serve` runs it
//! until a shutdown signal, finishing the requests in flight.

mod accounts;
mod caller;
mod events;
mod extract;
mod hub_enrolment; // Enrolling a phone at a station hub (issue 15).
mod hub_side; // What a station hub serves its phones (issue 15).
mod hubs; // Station hubs on the district server (issue 15).
mod metrics;
mod ops;
mod recover; // A revoked phone's sealed export (issue 12).
mod sync;

pub use events::Changed;
pub use hub_side::hub_app;
pub use metrics::Metrics;

pub(crate) use accounts::limited;
pub(crate) use caller::ClientAddr;
pub(crate) use events::Announcing;
pub(crate) use metrics::OutcomeLabel;

use crate::auth::Keys;
use crate::store::SqlStore;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Limits the service applies to every request.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Longest a request may take.
    pub timeout: Duration,
    /// How often a live event stream re-checks its listener: a revoked device, a
    /// disabled account or a changed scope takes effect within this time.
    pub events_recheck: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body: 16 << 20,
            timeout: Duration::from_secs(60),
            events_recheck: Duration::from_secs(30),
        }
    }
}

/// Attempts allowed per key before answering 429.
#[derive(Debug)]
pub(crate) struct RateLimits {
    /// Password logins, per login name.
    pub login_per_name: DefaultKeyedRateLimiter<String>,
    /// Password logins, per client address.
    pub per_address: DefaultKeyedRateLimiter<String>,
    /// Enrolments, per client address: a whole station may enrol its phones at once
    /// behind one address, and codes carry 100 random bits, so this only stops floods.
    pub enrol_per_address: DefaultKeyedRateLimiter<String>,
}

impl RateLimits {
    fn new() -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        RateLimits {
            login_per_name: RateLimiter::keyed(per_minute(5)),
            per_address: RateLimiter::keyed(per_minute(60)),
            enrol_per_address: RateLimiter::keyed(per_minute(600)),
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Documents, feed, identity and projections.
    pub store: SqlStore,
    /// Access-token keys.
    pub keys: Keys,
    /// Counters and histograms for `/metrics`.
    pub metrics: Metrics,
    /// Changes announced to live listeners.
    pub events: broadcast::Sender<Changed>,
    /// Set when the server begins to shut down: live streams end.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Settings of the web pages.
    pub web: crate::web::WebSettings,
    pub(crate) rate_limits: RateLimits,
    /// Set when this server is a station hub (`server hub`).
    pub hub: Option<crate::hub::HubSide>,
}

impl AppState {
    /// State over an opened store, with the default web settings.
    pub fn new(store: SqlStore, keys: Keys) -> Arc<Self> {
        AppState::with_web(store, keys, crate::web::WebSettings::default())
    }

    /// State over an opened store.
    pub fn with_web(store: SqlStore, keys: Keys, web: crate::web::WebSettings) -> Arc<Self> {
        Arc::new(AppState {
            store,
            keys,
            metrics: Metrics::new(),
            events: broadcast::channel(1024).0,
            stopping: tokio::sync::watch::channel(false).0,
            web,
            rate_limits: RateLimits::new(),
            hub: None,
        })
    }

    /// State for a station hub over its own store.
    pub fn for_hub(store: SqlStore, keys: Keys, hub: crate::hub::HubSide) -> Arc<Self> {
        Arc::new(AppState {
            store,
            keys,
            metrics: Metrics::new(),
            events: broadcast::channel(1024).0,
            stopping: tokio::sync::watch::channel(false).0,
            web: crate::web::WebSettings::default(),
            rate_limits: RateLimits::new(),
            hub: Some(hub),
        })
    }
}

/// The whole HTTP API, and the web pages.
pub fn app(state: Arc<AppState>, limits: HttpLimits) -> Router {
    let forward_limit = limits
        .max_body
        .saturating_add(limits.max_body / 4 + (64 << 10));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/api/openapi.json", get(ops::openapi))
        .route("/api/v1/login", post(accounts::login))
        .route("/api/v1/enrol", post(accounts::enrol))
        .route("/api/v1/enrol/adopt", post(hub_enrolment::adopt))
        .route("/api/v1/token", post(accounts::refresh))
        .route("/api/v1/me", get(accounts::me))
        .route("/api/v1/districts", post(accounts::create_district))
        .route("/api/v1/stations", post(accounts::create_station))
        .route("/api/v1/users", post(accounts::create_user))
        .route("/api/v1/enrolment-codes", post(accounts::issue_code))
        .route("/api/v1/devices/{device}/revoke", post(accounts::revoke))
        .route(
            "/api/v1/volunteers/{volunteer}/residents/{resident}",
            put(accounts::assign).delete(accounts::unassign),
        )
        .route("/api/v1/sync", post(sync::sync))
        .route("/api/v1/sync/refused", get(sync::refused))
        .route("/api/v1/hub-codes", post(hubs::issue_code))
        .route("/api/v1/hubs/enrol", post(hubs::enrol))
        .route("/api/v1/hubs/token", post(hubs::refresh))
        .route(
            "/api/v1/hubs/forward",
            // A hub hands on phones' requests each as large as a sync may be, with a
            // little of its own around them.
            post(hubs::forward).layer(DefaultBodyLimit::max(forward_limit)),
        )
        .route("/api/v1/hubs/sync", post(hubs::pull))
        .route(
            "/api/v1/hubs/enrolments",
            post(hub_enrolment::adopt_from_hub),
        )
        .route(
            "/api/v1/hubs/roster",
            get(hubs::roster).layer(Extension(hubs::ForwardLimit(
                u64::try_from(forward_limit).unwrap_or(u64::MAX),
            ))),
        )
        .route("/api/v1/hubs/{hub}/revoke", post(hubs::revoke))
        .route("/api/v1/recover", post(recover::recover))
        .route("/api/v1/events", get(events::events))
        .layer(axum::Extension(events::Recheck(limits.events_recheck)))
        .merge(crate::web::routes())
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.timeout,
        ))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the requests in
/// flight finish.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the requests in
/// flight finish (live event streams end at once).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = app(state.clone(), limits);
    tokio::spawn(events::relay_notifications(state.clone()));
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing requests in flight");
        state.stopping.send_replace(true);
    };
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
