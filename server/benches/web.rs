//! Web pages benchmark: the visit log and the statistics page over 100,000 visits,
//! through the real router in this process, signed in like a browser.
//!
//! Run with `cargo bench -p server --bench web` (`-- --test` is the same run: the
//! target is asserted either way). For SQLite, and PostgreSQL too when
//! `LINLI_TEST_POSTGRES_URL` names an admin URL ending in `/postgres` (as
//! `scripts/postgres-env` exports), the bench:
//!
//! 1. makes a district of 20 stations, a coordinator, one station's staff member, 400
//!    volunteers, 2,000 residents and a catalog of seven alliances (six member units
//!    and a project each), and writes `LINLI_WEB_VISITS` (default 100,000) visits over
//!    the past year straight into the projection tables (one service each, a hazard
//!    in one in ten, seven in ten through a member unit). The pages read only those
//!    tables, and making 100,000 visits through phones would take the bench far longer
//!    than measuring; the integration tests cover the path from phone to page;
//! 2. signs in the coordinator and the staff member over HTTP;
//! 3. times `LINLI_WEB_ROUNDS` (default 20) requests of each page: the log's first
//!    page for each of them, the coordinator's log filtered by review status and
//!    hazards, one month, and the fifth page (following the keyset links); then the
//!    statistics page: its default (this month, by alliance), the last whole month by
//!    alliance, unit, project and station, a station's staff member's last month, and
//!    a whole year by month.
//!
//! The target is that the log's first page and the monthly statistics page
//! answer in under 300 ms on both backends; the bench fails when the median of one of
//! those pages misses it. The whole year is measured and printed but not held to it.

// In a benchmark an unwrap is an assertion: a panic fails the run with its message.
#![allow(clippy::unwrap_used)]

use reqwest::Client;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use server::auth::Keys;
use server::http::{AppState, HttpLimits};
use server::now_ms;
use server::store::{SqlStore, StoreOptions};
use sqlx::{Connection, QueryBuilder};
use std::time::{Duration, Instant};
use sync_core::ids::{DistrictId, StationId};
use sync_core::model::Role;
use time::OffsetDateTime;
use time::macros::offset;
use uuid::Uuid;

const PASSWORD: &str = "the bench's password";
const TARGET: Duration = Duration::from_millis(300);

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A visit row to insert.
struct Visit {
    resident: Uuid,
    id: Uuid,
    station: Uuid,
    volunteer: Uuid,
    project: Uuid,
    unit: Option<Uuid>,
    started_at: i64,
    review: &'static str,
    hazard: bool,
    service: Uuid,
}

/// Small deterministic generator.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

macro_rules! seed_rows {
    ($pool:expr, $district:expr, $stations:expr, $volunteers:expr, $visits:expr) => {{
        let pool = $pool;
        let district: Vec<u8> = $district.as_bytes().to_vec();
        let mut dice = Dice(0x5eed_cafe_f00d_d00d);
        let now = now_ms();
        let residents: Vec<(Uuid, Uuid)> = (0..2_000)
            .map(|i| (Uuid::now_v7(), $stations[i % $stations.len()]))
            .collect();
        let mut tx = pool.begin().await.unwrap();
        for chunk in residents.chunks(500) {
            let mut q = QueryBuilder::new(
                "INSERT INTO resident_rows (id, district, station, name, address, phone, birth_year, \
                 living_situation, emergency_contact, needs, risk_level, visit_every_days, last_visit_at, \
                 live_visits, open_follow_ups, heads) ",
            );
            q.push_values(chunk, |mut b, (id, station)| {
                b.push_bind(id.as_bytes().to_vec())
                    .push_bind(district.clone())
                    .push_bind(station.as_bytes().to_vec())
                    .push_bind(format!("居民{}", &id.simple().to_string()[24..]))
                    .push_bind("梧桐路 1 号")
                    .push_bind("")
                    .push_bind(1940_i64)
                    .push_bind("alone")
                    .push_bind("")
                    .push_bind("")
                    .push_bind("medium")
                    .push_bind(14_i64)
                    .push_bind(now)
                    .push_bind(50_i64)
                    .push_bind(0_i64)
                    .push_bind(Vec::<u8>::new());
            });
            q.build().execute(&mut *tx).await.unwrap();
        }
        // The catalog as the statistics read it: seven alliances, each with six
        // member units and a project.
        let alliances: Vec<Uuid> = (0..7).map(|_| Uuid::now_v7()).collect();
        let units: Vec<(Uuid, Uuid)> = (0..42).map(|i| (Uuid::now_v7(), alliances[i % 7])).collect();
        let projects: Vec<(Uuid, Uuid)> = alliances.iter().map(|a| (Uuid::now_v7(), *a)).collect();
        let entries: Vec<(&str, Uuid, Option<Uuid>)> = (alliances.iter().map(|a| ("alliances", *a, None)))
            .chain(units.iter().map(|(u, a)| ("units", *u, Some(*a))))
            .chain(projects.iter().map(|(p, a)| ("projects", *p, Some(*a))))
            .collect();
        let mut q = QueryBuilder::new(
            "INSERT INTO catalog_rows (district, kind, id, name, name_en, parent, archived) ",
        );
        q.push_values(&entries, |mut b, (kind, id, parent)| {
            let short = id.simple().to_string()[24..].to_owned();
            b.push_bind(district.clone())
                .push_bind(*kind)
                .push_bind(id.as_bytes().to_vec())
                .push_bind(format!("{kind}{short}"))
                .push_bind(format!("{kind} {short}"))
                .push_bind(parent.map(|p| p.as_bytes().to_vec()))
                .push_bind(false);
        });
        q.build().execute(&mut *tx).await.unwrap();
        let services: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
        let year = 365 * 86_400_000_i64;
        let visits: Vec<Visit> = (0..$visits)
            .map(|_| {
                let (resident, station) = residents[dice.below(residents.len())];
                Visit {
                    resident,
                    id: Uuid::now_v7(),
                    station,
                    volunteer: $volunteers[dice.below($volunteers.len())],
                    project: projects[dice.below(projects.len())].0,
                    // Most volunteers come through a member unit.
                    unit: (dice.below(10) < 7).then(|| units[dice.below(units.len())].0),
                    started_at: now - (dice.next() % year as u64) as i64,
                    review: ["pending", "approved", "approved", "needs_attention"][dice.below(4)],
                    hazard: dice.below(10) == 0,
                    service: services[dice.below(services.len())],
                }
            })
            .collect();
        for chunk in visits.chunks(1_000) {
            let mut q = QueryBuilder::new(
                "INSERT INTO visit_rows (resident, id, district, station, volunteer, project, unit, \
                 started_at, ended_at, duration_minutes, wellbeing, systolic, diastolic, blood_sugar_dmmol, \
                 remarks, notes, follow_up_needed, tombstoned, review_status, reviewer, reviewed_at, \
                 review_comment, hazards_found, hazards_fixed) ",
            );
            q.push_values(chunk, |mut b, v| {
                b.push_bind(v.resident.as_bytes().to_vec())
                    .push_bind(v.id.as_bytes().to_vec())
                    .push_bind(district.clone())
                    .push_bind(v.station.as_bytes().to_vec())
                    .push_bind(v.volunteer.as_bytes().to_vec())
                    .push_bind(v.project.as_bytes().to_vec())
                    .push_bind(v.unit.map(|u| u.as_bytes().to_vec()))
                    .push_bind(v.started_at)
                    .push_bind(v.started_at + 1_800_000)
                    .push_bind(30_i64)
                    .push_bind("good")
                    .push_bind(Some(130_i64))
                    .push_bind(Some(80_i64))
                    .push_bind(None::<i64>)
                    .push_bind("")
                    .push_bind("读报聊天，检查电线。")
                    .push_bind(v.hazard)
                    .push_bind(false)
                    .push_bind(v.review)
                    .push_bind(None::<Vec<u8>>)
                    .push_bind(None::<i64>)
                    .push_bind(None::<String>)
                    .push_bind(i64::from(v.hazard))
                    .push_bind(0_i64);
            });
            q.build().execute(&mut *tx).await.unwrap();
            let mut q = QueryBuilder::new(
                "INSERT INTO visit_services (resident, visit, position, service_type) ",
            );
            q.push_values(chunk, |mut b, v| {
                b.push_bind(v.resident.as_bytes().to_vec())
                    .push_bind(v.id.as_bytes().to_vec())
                    .push_bind(0_i64)
                    .push_bind(v.service.as_bytes().to_vec());
            });
            q.build().execute(&mut *tx).await.unwrap();
            let hazards: Vec<&Visit> = chunk.iter().filter(|v| v.hazard).collect();
            if !hazards.is_empty() {
                let mut q = QueryBuilder::new(
                    "INSERT INTO visit_hazards (resident, visit, position, hazard_type, severity, \
                     fixed_on_spot, note) ",
                );
                q.push_values(hazards, |mut b, v| {
                    b.push_bind(v.resident.as_bytes().to_vec())
                        .push_bind(v.id.as_bytes().to_vec())
                        .push_bind(0_i64)
                        .push_bind(v.service.as_bytes().to_vec())
                        .push_bind("medium")
                        .push_bind(false)
                        .push_bind("");
                });
                q.build().execute(&mut *tx).await.unwrap();
            }
        }
        tx.commit().await.unwrap();
        // Fresh statistics, as a deployment's would be.
        sqlx::raw_sql("ANALYZE").execute(&pool).await.unwrap();
        pool.close().await;
    }};
}

/// A browser's cookie jar, enough for one session.
struct Session {
    http: Client,
    base: String,
    cookie: String,
}

impl Session {
    async fn sign_in(base: &str, login: &str) -> Session {
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let form = http.get(format!("{base}/web/login")).send().await.unwrap();
        let login_cookie = form
            .headers()
            .get(SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let html = form.text().await.unwrap();
        let marker = "name=\"form_token\" value=\"";
        let start = html.find(marker).unwrap() + marker.len();
        let token = html[start..].split('"').next().unwrap().to_owned();
        let answer = http
            .post(format!("{base}/web/login"))
            .header(COOKIE, login_cookie)
            .form(&[
                ("form_token", token.as_str()),
                ("login", login),
                ("password", PASSWORD),
                ("next", "/web/visits"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 303, "{login} did not sign in");
        let cookie = answer
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find(|c| c.starts_with("linli_session="))
            .unwrap();
        Session {
            http,
            base: base.to_owned(),
            cookie,
        }
    }

    async fn get(&self, path: &str) -> (Duration, String) {
        let started = Instant::now();
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        assert!(answer.headers().get(LOCATION).is_none());
        let body = answer.text().await.unwrap();
        (started.elapsed(), body)
    }
}

fn next_link(html: &str) -> String {
    let at = html.find("id=\"next-page\"").expect("a next page");
    let start = html[..at].rfind("href=\"").unwrap() + 6;
    html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

async fn bench(url: &str, backend: &str, visits: usize, rounds: usize) -> bool {
    let store = SqlStore::connect(url, StoreOptions::default())
        .await
        .unwrap();
    let t0 = now_ms();
    let district: DistrictId = store.create_district("基准街道", t0).await.unwrap();
    let mut stations: Vec<StationId> = Vec::new();
    for i in 0..20 {
        stations.push(
            store
                .create_station(district, &format!("服务站{i}"), t0)
                .await
                .unwrap(),
        );
    }
    store
        .create_user(
            "coordinator",
            "协调员",
            Role::Coordinator,
            Some(district),
            &[],
            Some(PASSWORD),
            t0,
        )
        .await
        .unwrap();
    store
        .create_user(
            "staff",
            "工作人员",
            Role::StationStaff,
            Some(district),
            &[stations[0]],
            Some(PASSWORD),
            t0,
        )
        .await
        .unwrap();
    let mut volunteers = Vec::new();
    for i in 0..400 {
        volunteers.push(
            store
                .create_user(
                    &format!("v{i}"),
                    &format!("志愿者{i}"),
                    Role::Volunteer,
                    Some(district),
                    &[],
                    None,
                    t0,
                )
                .await
                .unwrap()
                .0,
        );
    }
    let station_ids: Vec<Uuid> = stations.iter().map(|s| s.0).collect();
    let seeding = Instant::now();
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        seed_rows!(pool, district.0, station_ids, volunteers, visits);
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        seed_rows!(pool, district.0, station_ids, volunteers, visits);
    }
    println!(
        "{backend}: {visits} visits written in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    let state = AppState::new(
        store,
        Keys::new(b"the web benchmark signing key, 32 bytes or more").unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::http::serve(
        listener,
        state,
        HttpLimits::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let coordinator = Session::sign_in(&base, "coordinator").await;
    let staff = Session::sign_in(&base, "staff").await;

    let (_, first) = coordinator.get("/web/visits").await;
    let mut fifth = "/web/visits".to_owned();
    let mut page = first;
    for _ in 0..4 {
        fifth = next_link(&page);
        page = coordinator.get(&fifth).await.1;
    }
    let month_start = {
        let (_, html) = coordinator.get("/web/visits").await;
        // The newest visit's day, from the first row, and the month before it.
        let at = html.find("<td>").unwrap() + 4;
        html[at..at + 7].to_owned()
    };
    // The last whole calendar month (Shanghai), where the seeded year has about a
    // twelfth of its visits; the current month has barely begun.
    let (last_month_from, last_month_to) = {
        let today = OffsetDateTime::now_utc().to_offset(offset!(+8)).date();
        let to = today.replace_day(1).unwrap().previous_day().unwrap();
        (to.replace_day(1).unwrap(), to)
    };
    let last_month = format!("from={last_month_from}&to={last_month_to}");
    let year = format!(
        "from={}&to={last_month_to}",
        last_month_from
            .replace_year(last_month_from.year() - 1)
            .unwrap()
            .next_day()
            .unwrap()
    );
    const LOG_ROW: &str = "class=\"visit\"";
    const STATS_ROW: &str = "class=\"group\"";
    let cases: Vec<(String, &Session, String, bool, &str)> = vec![
        (
            "coordinator, first page".into(),
            &coordinator,
            "/web/visits".into(),
            true,
            LOG_ROW,
        ),
        (
            "staff, first page".into(),
            &staff,
            "/web/visits".into(),
            true,
            LOG_ROW,
        ),
        (
            "coordinator, needs attention + hazards".into(),
            &coordinator,
            "/web/visits?review=needs_attention&hazards=yes".into(),
            false,
            LOG_ROW,
        ),
        (
            "coordinator, one month".into(),
            &coordinator,
            format!("/web/visits?from={month_start}-01&to={month_start}-28"),
            false,
            LOG_ROW,
        ),
        (
            "coordinator, fifth page".into(),
            &coordinator,
            fifth,
            false,
            LOG_ROW,
        ),
        // The monthly statistics page: its default (this month, by alliance), last
        // month by each grouping, and a station's staff; then a whole year by month,
        // which the target does not cover.
        (
            "stats: coordinator, this month".into(),
            &coordinator,
            "/web/stats".into(),
            true,
            "id=\"figures\"",
        ),
    ];
    let mut cases = cases;
    for by in ["alliance", "unit", "project", "station"] {
        cases.push((
            format!("stats: coordinator, last month by {by}"),
            &coordinator,
            format!("/web/stats?{last_month}&by={by}"),
            true,
            STATS_ROW,
        ));
    }
    cases.push((
        "stats: staff, last month by unit".into(),
        &staff,
        format!("/web/stats?{last_month}&by=unit"),
        true,
        STATS_ROW,
    ));
    cases.push((
        "stats: coordinator, a year by month".into(),
        &coordinator,
        format!("/web/stats?{year}&by=month"),
        false,
        STATS_ROW,
    ));
    let mut ok = true;
    println!("{backend}: page | median ms | p90 ms | max ms | rows");
    for (name, session, path, target, marker) in cases {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..rounds {
            let (took, body) = session.get(&path).await;
            rows = body.matches(marker).count();
            times.push(took);
        }
        times.sort();
        let median = times[times.len() / 2];
        let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
        let max = times[times.len() - 1];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let missed = target && median > TARGET;
        println!(
            "{backend}: {name} | {:.1} | {:.1} | {:.1} | {rows}{}",
            ms(median),
            ms(p90),
            ms(max),
            if missed {
                "  ← over the 300 ms target"
            } else {
                ""
            }
        );
        assert!(rows > 0, "{name}: no rows");
        ok &= !missed;
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    ok
}

fn main() {
    let visits = env_number("LINLI_WEB_VISITS", 100_000);
    let rounds = env_number("LINLI_WEB_ROUNDS", 20).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("web.db").display());
        let mut ok = bench(&url, "sqlite", visits, rounds).await;
        if let Ok(admin) = std::env::var("LINLI_TEST_POSTGRES_URL") {
            // Named like the tests' databases so scripts/test cleans it up if we die.
            let name = format!("linli_test_{}_web", std::process::id());
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            for sql in [
                format!("DROP DATABASE IF EXISTS {name}"),
                format!("CREATE DATABASE {name}"),
            ] {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            ok &= bench(&format!("{base}/{name}"), "postgres", visits, rounds).await;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
        } else {
            println!("postgres: skipped here (LINLI_TEST_POSTGRES_URL is not set; CI sets it)");
        }
        ok
    });
    if !ok {
        eprintln!("a first page or a monthly statistics page missed the 300 ms target");
        std::process::exit(1);
    }
}
