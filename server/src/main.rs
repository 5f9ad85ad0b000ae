//! `server`: the Linli sync service, and the operator commands beside it.

use clap::Parser;
use server::auth::Keys;
use server::config::{Cli, Command, Config, HubAction, LogFormat};
use server::error::{Error, Result};
use server::http::{AppState, HttpLimits};
use server::now_ms;
use server::store::{SqlStore, StoreOptions};
use std::process::ExitCode;
use sync_core::ids::{DeviceId, StationId};
use sync_core::model::Role;

/// mimalloc, not glibc's malloc: see BENCHMARKS.md (issue 14) for what it saved.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn open(config: &Config) -> Result<SqlStore> {
    let url = config.database_url();
    if url.expose().starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::Config(format!(
                "cannot create the data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
    }
    let options = StoreOptions {
        cache_docs: config.cache_docs,
        max_connections: config.db_connections.max(1),
        ..StoreOptions::default()
    };
    SqlStore::connect(url.expose(), options)
        .await
        .map_err(|e| Error::Config(format!("cannot open the database: {e}")))
}

async fn run(cli: Cli) -> Result<()> {
    let config = cli.config;
    tracing::debug!(?config, "configuration");
    if let Some(Command::Hub { action, every_secs }) = cli.command {
        return hub(&config, action, every_secs).await;
    }
    let store = open(&config).await?;
    let now = now_ms();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&config, store).await,
        command => {
            let outcome = operate(&store, command, now).await;
            store.close().await;
            outcome
        }
    }
}

async fn serve(config: &Config, store: SqlStore) -> Result<()> {
    survive_file_size_limits();
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Error::Config(format!(
            "cannot create the data directory {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let keys = Keys::load_or_create(
        config.signing_key.as_ref().map(|k| k.expose()),
        &config.data_dir,
    )?;
    let bootstrap = store.bootstrap_admin(now_ms()).await?;
    if config.demo {
        match server::demo::seed(&store, now_ms()).await? {
            Some(s) => println!(
                "Demo: seeded {} with {} stations, {} volunteers, {} residents, {} visits and {} follow-ups",
                server::demo::DISTRICT,
                s.stations,
                s.volunteers,
                s.residents,
                s.visits,
                s.follow_ups
            ),
            None => println!("Demo: {} is already seeded", server::demo::DISTRICT),
        }
        println!(
            "Demo: sign in as {:?} (coordinator) or demo-staff-1 … demo-staff-8 (station staff), password {:?}",
            server::demo::COORDINATOR,
            server::demo::PASSWORD
        );
    }
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", config.bind)))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("no local address: {e}")))?;
    // Printed, never logged: the one time this password is shown.
    println!(
        "Linli server listening on http://{address} ({})",
        store.backend()
    );
    if let Some(admin) = bootstrap {
        println!(
            "First start: sign in as {:?} with the one-time password {}\n\
             (it is not shown again; create your own accounts, then disable this one)",
            admin.login, admin.password
        );
    }
    tracing::info!(%address, backend = store.backend(), "listening");
    let web = server::web::WebSettings {
        secure_cookies: config.secure_cookies,
    };
    let state = AppState::with_web(store, keys, web);
    let limits = HttpLimits {
        max_body: config.max_body,
        timeout: config.request_timeout(),
        ..HttpLimits::default()
    };
    server::http::serve(listener, state.clone(), limits, shutdown_signal())
        .await
        .map_err(|e| Error::Internal(format!("serving: {e}")))?;
    // Requests in flight have finished; wait for their writes to reach the disk.
    state.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// `server hub`: enrols the hub, or serves the station's phones and keeps the link to
/// the district server.
async fn hub(config: &Config, action: Option<HubAction>, every_secs: u64) -> Result<()> {
    use server::hub::upstream;
    if let Some(HubAction::Enrol {
        upstream: address,
        code,
        name,
    }) = action
    {
        let credential = upstream::enrol(&address, code.expose(), &name, &config.data_dir).await?;
        println!(
            "Enrolled hub {} for station {} of {}; start it with: server hub --data-dir {}",
            credential.hub,
            credential.station,
            credential.upstream,
            config.data_dir.display()
        );
        return Ok(());
    }
    survive_file_size_limits();
    let credential = upstream::load_credential(&config.data_dir)?;
    let store = open(config).await?;
    let keys = Keys::load_or_create(
        config.signing_key.as_ref().map(|k| k.expose()),
        &config.data_dir,
    )?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", config.bind)))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("no local address: {e}")))?;
    let side = server::hub::HubSide::new(credential.hub, StationId(credential.station));
    let upstream = upstream::Upstream::new(&config.data_dir, credential.clone());
    let state = AppState::for_hub(store, keys, side);
    println!(
        "Linli station hub {} listening on http://{address}, forwarding to {}",
        credential.hub, credential.upstream
    );
    let link = tokio::spawn(server::hub::keep_linked(
        state.clone(),
        upstream,
        std::time::Duration::from_secs(every_secs),
        state.stopping.subscribe(),
    ));
    let limits = HttpLimits {
        max_body: config.max_body,
        timeout: config.request_timeout(),
        ..HttpLimits::default()
    };
    let router = server::http::hub_app(state.clone(), limits);
    let stopping = state.clone();
    server::http::serve_router(listener, router, async move {
        shutdown_signal().await;
        stopping.stopping.send_replace(true);
    })
    .await
    .map_err(|e| Error::Internal(format!("serving: {e}")))?;
    let _ = link.await;
    state.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// A write past the process's file size limit (`ulimit -f`, a quota) sends SIGXFSZ,
/// whose default action ends the process. Handling it instead makes such a write fail
/// with EFBIG like any full disk: the append is refused with 503 and nothing is lost.
fn survive_file_size_limits() {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ)) {
        Ok(mut signals) => {
            tokio::spawn(async move {
                while signals.recv().await.is_some() {
                    tracing::error!("a write went past the file size limit; it failed");
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGXFSZ"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

async fn operate(store: &SqlStore, command: Command, now: i64) -> Result<()> {
    match command {
        Command::Serve | Command::Hub { .. } => {}
        Command::CreateDistrict { name } => {
            let id = store.create_district(&name, now).await?;
            println!("district {name:?}: {id}");
        }
        Command::CreateStation { district, name } => {
            let district = store.district_named(&district).await?;
            let id = store.create_station(district, &name, now).await?;
            println!("station {name:?}: {id}");
        }
        Command::CreateUser {
            login,
            display_name,
            role,
            district,
            stations,
        } => {
            let role = Role::from_code(&role).ok_or_else(|| {
                Error::Config(format!(
                    "unknown role {role:?}: volunteer, station_staff, coordinator or admin"
                ))
            })?;
            let district = match district {
                Some(name) => Some(store.district_named(&name).await?),
                None => None,
            };
            let mut station_ids: Vec<StationId> = Vec::new();
            for name in &stations {
                let d = district.ok_or_else(|| Error::Config("stations need --district".into()))?;
                station_ids.push(store.station_named(d, name).await?);
            }
            let password = if matches!(role, Role::Coordinator | Role::Admin | Role::StationStaff) {
                Some(server::auth::new_enrolment_code()?)
            } else {
                None
            };
            let id = store
                .create_user(
                    &login,
                    display_name.as_deref().unwrap_or(&login),
                    role,
                    district,
                    &station_ids,
                    password.as_deref(),
                    now,
                )
                .await?;
            println!("user {login:?} ({role}): {id}");
            if let Some(p) = password {
                println!("one-time password (shown once): {p}");
            }
        }
        Command::IssueEnrolmentCode { login } => {
            let user = store
                .user_by_login(&login)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no user {login:?}")))?;
            let (code, expires_at) = store.issue_enrolment_code(user.id, user.id, now).await?;
            println!(
                "enrolment code for {login:?}: {code} (valid {} minutes)",
                (expires_at - now) / 60_000
            );
        }
        Command::RevokeDevice { device } => {
            store.revoke_device(DeviceId(device), None, now).await?;
            println!("device {device} revoked: it will be told to purge at its next request");
        }
        Command::Retention {
            closed_days,
            dry_run,
        } => {
            let cutoff = now - i64::from(closed_days) * 86_400_000;
            let due = store.closed_before(cutoff).await?;
            let mut visits_kept = 0;
            for (resident, district) in &due {
                if dry_run {
                    println!("would erase case file {resident}");
                    continue;
                }
                if let Some(erased) = store
                    .erase_resident(
                        *resident,
                        *district,
                        None,
                        server::store::erasure::ErasureReason::Retention,
                        now,
                    )
                    .await?
                {
                    visits_kept += erased.visits_kept;
                    tracing::warn!(%resident, "closed case file erased by the retention rule");
                }
            }
            println!(
                "{} case files closed more than {closed_days} days ago {}; {visits_kept} visits kept anonymised",
                due.len(),
                if dry_run { "would be erased" } else { "erased" }
            );
        }
        Command::RebuildProjections => {
            let r = store.rebuild_projections().await?;
            println!(
                "rebuilt {} residents: {} visits, {} services, {} hazards, {} follow-ups; {} orphan rows removed",
                r.residents, r.visits, r.services, r.hazards, r.follow_ups, r.orphans_removed
            );
            if !r.busy.is_empty() {
                return Err(Error::Conflict(format!(
                    "{} case files changed during every attempt; run the rebuild again",
                    r.busy.len()
                )));
            }
        }
        Command::Check => {
            let report = store.check().await?;
            println!("{report}");
            if !report.ok() {
                return Err(Error::Internal("the database check found problems".into()));
            }
        }
    }
    Ok(())
}
