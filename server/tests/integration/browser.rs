//! The web pages in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, fantoccini). Signing in, filtering the visit log, the language
//! switch, a review that reaches the volunteer's phone, station staff who cannot see
//! another station's visits, an export downloaded to disk, and a roster import with a
//! bad row.
//!
//! These tests need `chromedriver` and Chromium (Debian: `chromium chromium-driver`;
//! `scripts/test` installs them). Without them they FAIL, never skip: set
//! `LINLI_CHROMEDRIVER` to the driver's path if it is not on `PATH`, and
//! `LINLI_CHROMIUM` to the browser's if chromedriver does not find it.

use crate::backends::sqlite;
use crate::web::log_world;
use crate::web_client::{STAFF_PASSWORD, staff};
use crate::web_roster::residents_of;
use crate::world::COORDINATOR_PASSWORD;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use sync_core::model::ReviewStatus;

/// A chromedriver this test started, stopped when dropped.
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<String> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}

/// Starts chromedriver on a free port and waits until it answers.
pub(crate) async fn driver() -> Driver {
    let path = std::env::var("LINLI_CHROMEDRIVER")
        .ok()
        .or_else(|| which("chromedriver"))
        .expect(
            "the browser tests need chromedriver and Chromium: run ./scripts/test (it installs \
             them), or `apt-get install chromium chromium-driver`, or set LINLI_CHROMEDRIVER",
        );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let status = format!("{}/status", driver.url);
    for _ in 0..100 {
        if reqwest::get(&status).await.is_ok_and(|r| r.status() == 200) {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver at {path} did not start");
}

/// A fresh headless Chromium (its own profile: no cookies shared between browsers).
pub(crate) async fn browser(driver: &Driver) -> Client {
    browser_with(driver, None).await
}

/// A fresh headless Chromium that saves downloads into `downloads` without asking.
async fn browser_with(driver: &Driver, downloads: Option<&Path>) -> Client {
    let mut options = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--disable-gpu", "--lang=zh-CN", "--window-size=1400,1000"],
    });
    if let Some(dir) = downloads {
        options["prefs"] = json!({
            "download.default_directory": dir.display().to_string(),
            "download.prompt_for_download": false,
            "download.directory_upgrade": true,
            "safebrowsing.enabled": false,
        });
    }
    if let Ok(binary) = std::env::var("LINLI_CHROMIUM") {
        options["binary"] = json!(binary);
    } else if std::path::Path::new("/usr/bin/chromium").is_file() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"))
}

pub(crate) async fn sign_in(c: &Client, base: &str, login: &str, password: &str) {
    c.goto(&format!("{base}/web/visits")).await.unwrap();
    // Signed out, the log sends the browser to the sign-in form.
    let field = c.wait().for_element(Locator::Id("login")).await.unwrap();
    field.send_keys(login).await.unwrap();
    type_into(c, Locator::Id("password"), password).await;
    click(c, Locator::Id("sign-in")).await;
    c.wait().for_element(Locator::Id("filters")).await.unwrap();
}

/// Clicks the element `at` finds.
pub(crate) async fn click(c: &Client, at: Locator<'_>) {
    c.find(at).await.unwrap().click().await.unwrap();
}

/// Types `text` into the element `at` finds.
pub(crate) async fn type_into(c: &Client, at: Locator<'_>, text: &str) {
    c.find(at).await.unwrap().send_keys(text).await.unwrap();
}

/// Chooses `station` in the log's station menu and applies the filters.
async fn filter_by_station(c: &Client, station: &str) {
    c.find(Locator::Id("filter-station"))
        .await
        .unwrap()
        .select_by_value(station)
        .await
        .unwrap();
    click(c, Locator::Id("apply-filters")).await;
    c.wait()
        .for_element(Locator::Css("#filter-station option[selected]"))
        .await
        .unwrap();
}

async fn rows(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for row in c
        .find_all(Locator::Css("#visit-log tr.visit"))
        .await
        .unwrap()
    {
        out.push(row.text().await.unwrap());
    }
    out
}

/// The whole path a coordinator and a station's staff take through the pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_and_staff_in_a_browser() {
    let driver = driver().await;
    let mut log = log_world(sqlite().await).await;
    let w = &log.w;
    let base = w.server.base.clone();
    let c = browser(&driver).await;

    // The coordinator signs in and sees the district's two visits.
    sign_in(&c, &base, "coordinator", COORDINATOR_PASSWORD).await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/web/visits")
    );
    let all = rows(&c).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().any(|r| r.contains("王阿婆")) && all.iter().any(|r| r.contains("李老伯")));

    // Filters with the menus: station B's visits only.
    filter_by_station(&c, &w.station_b.0.to_string()).await;
    let only_b = rows(&c).await;
    assert_eq!(only_b.len(), 1, "{only_b:?}");
    assert!(only_b[0].contains("李老伯"));
    assert!(
        c.current_url()
            .await
            .unwrap()
            .query()
            .unwrap_or_default()
            .contains("station=")
    );

    // English, and back.
    click(&c, Locator::Id("lang-switch")).await;
    let heading = c.wait().for_element(Locator::Css("main h1")).await.unwrap();
    assert_eq!(heading.text().await.unwrap(), "Visit log");
    assert_eq!(rows(&c).await.len(), 1, "the filter survives the switch");
    click(&c, Locator::Id("lang-switch")).await;
    let heading = c.wait().for_element(Locator::Css("main h1")).await.unwrap();
    assert_eq!(heading.text().await.unwrap(), "走访记录");

    // A review from the resident's page.
    c.goto(&format!("{base}/web/residents/{}", log.resident_a.0))
        .await
        .unwrap();
    let form = c
        .wait()
        .for_element(Locator::Css(&format!(
            "#visit-{} form.review-form",
            log.visit_a.0
        )))
        .await
        .unwrap();
    form.find(Locator::Css("input[name=comment]"))
        .await
        .unwrap()
        .send_keys("请联系社区医生")
        .await
        .unwrap();
    form.find(Locator::Css("button[value=needs_attention]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = c.wait().for_element(Locator::Id("notice")).await.unwrap();
    assert!(notice.text().await.unwrap().contains("同步"));
    let review = c
        .find(Locator::Css(&format!("#visit-{} q.comment", log.visit_a.0)))
        .await
        .unwrap();
    assert_eq!(review.text().await.unwrap(), "请联系社区医生");

    // The volunteer's phone receives the review at its next sync.
    log.volunteer_a.sync().await.unwrap();
    let on_phone = log
        .volunteer_a
        .resident(log.resident_a)
        .visits
        .into_iter()
        .find(|v| v.id == log.visit_a)
        .and_then(|v| v.review)
        .expect("the review reached the phone");
    assert_eq!(on_phone.status, ReviewStatus::NeedsAttention);
    assert_eq!(on_phone.comment, "请联系社区医生");
    assert_eq!(on_phone.reviewer, w.coordinator);

    // Sign out: the log asks for a sign-in again.
    click(&c, Locator::Id("logout")).await;
    c.wait().for_element(Locator::Id("login")).await.unwrap();
    c.goto(&format!("{base}/web/visits")).await.unwrap();
    c.wait().for_element(Locator::Id("login")).await.unwrap();
    c.close().await.unwrap();

    // Station A's staff, in another browser: A's visit only, whatever they ask for.
    staff(w, "staff_a", &[w.station_a]).await;
    let s = browser(&driver).await;
    sign_in(&s, &base, "staff_a", STAFF_PASSWORD).await;
    let theirs = rows(&s).await;
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert!(theirs[0].contains("王阿婆"));
    let menu = s.find(Locator::Id("filter-station")).await.unwrap();
    let options = menu.text().await.unwrap();
    assert!(!options.contains("翔宇品城"), "B is not offered: {options}");
    // A crafted URL naming station B shows nothing of it.
    s.goto(&format!("{base}/web/visits?station={}", w.station_b.0))
        .await
        .unwrap();
    s.wait()
        .for_element(Locator::Id("no-visits"))
        .await
        .unwrap();
    assert!(!s.source().await.unwrap().contains("李老伯"));
    // B's resident page does not exist for them.
    s.goto(&format!("{base}/web/residents/{}", log.resident_b.0))
        .await
        .unwrap();
    let message = s
        .wait()
        .for_element(Locator::Id("error-message"))
        .await
        .unwrap();
    assert!(message.text().await.unwrap().contains("找不到"));
    assert!(!s.source().await.unwrap().contains("李老伯"));
    s.close().await.unwrap();
}

/// Waits until one finished file whose name starts with `prefix` is in `dir` (Chromium
/// writes `*.crdownload` until a download completes), and returns its path.
async fn downloaded(dir: &Path, prefix: &str) -> PathBuf {
    for _ in 0..200 {
        let done: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with(prefix) && !name.ends_with(".crdownload")
            })
            .collect();
        if let [one] = done.as_slice() {
            return one.clone();
        }
        assert!(done.len() < 2, "more than one download: {done:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no download starting with {prefix} arrived in {}",
        dir.display()
    );
}

/// The coordinator filters the log to one station and downloads the CSV and the XLSX
/// from the page's links: the files on disk hold exactly the filtered visit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_downloads_what_is_filtered() {
    let driver = driver().await;
    let log = log_world(sqlite().await).await;
    let base = log.w.server.base.clone();
    let dir = tempfile::tempdir().unwrap();
    let c = browser_with(&driver, Some(dir.path())).await;
    sign_in(&c, &base, "coordinator", COORDINATOR_PASSWORD).await;
    filter_by_station(&c, &log.w.station_b.0.to_string()).await;
    assert_eq!(rows(&c).await.len(), 1);

    click(&c, Locator::Id("export-csv")).await;
    let file = downloaded(dir.path(), "linli-visits-").await;
    assert_eq!(file.extension().unwrap(), "csv");
    let bytes = std::fs::read(&file).unwrap();
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 1, "only station B's visit: {records:?}");
    let row: Vec<&str> = records[0].iter().collect();
    assert!(row.contains(&log.visit_b.0.to_string().as_str()), "{row:?}");
    assert!(row.contains(&"李老伯"), "{row:?}");
    assert!(!String::from_utf8_lossy(&bytes).contains("王阿婆"));
    std::fs::remove_file(&file).unwrap();

    click(&c, Locator::Id("export-xlsx")).await;
    let file = downloaded(dir.path(), "linli-visits-").await;
    assert_eq!(file.extension().unwrap(), "xlsx");
    let mut book: calamine::Xlsx<_> = calamine::open_workbook(&file).unwrap();
    let sheet = calamine::Reader::worksheet_range_at(&mut book, 0)
        .unwrap()
        .unwrap();
    let cells: Vec<Vec<String>> = sheet
        .rows()
        .map(|r| r.iter().map(ToString::to_string).collect())
        .collect();
    assert_eq!(cells.len(), 2, "a header and station B's visit: {cells:?}");
    assert!(cells[1].contains(&log.visit_b.0.to_string()), "{cells:?}");
    assert!(cells[1].contains(&"李老伯".to_owned()), "{cells:?}");
    c.close().await.unwrap();
}

/// Station staff upload a roster with one bad row through the page's file input: the
/// preview lists that row's error, offers no confirmation, and nothing is imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_with_a_bad_row_imports_nothing() {
    let driver = driver().await;
    let log = log_world(sqlite().await).await;
    let w = &log.w;
    let base = w.server.base.clone();
    staff(w, "staff_a", &[w.station_a]).await;
    let dir = tempfile::tempdir().unwrap();
    let roster = dir.path().join("名册.csv");
    std::fs::write(
        &roster,
        "姓名,地址,出生年份\n陈阿姨,华沙六村 9 号,1941\n周老伯,华沙六村 12 号,1700\n",
    )
    .unwrap();
    let before = residents_of(w, w.station_a).await;
    assert_eq!(before.len(), 1, "station A has 王阿婆 only");

    let c = browser(&driver).await;
    sign_in(&c, &base, "staff_a", STAFF_PASSWORD).await;
    c.goto(&format!("{base}/web/residents/import"))
        .await
        .unwrap();
    let form = c
        .wait()
        .for_element(Locator::Id("import-form"))
        .await
        .unwrap();
    form.find(Locator::Css("input[type=file]"))
        .await
        .unwrap()
        .send_keys(&roster.display().to_string())
        .await
        .unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let errors = c
        .wait()
        .for_element(Locator::Id("import-errors"))
        .await
        .unwrap();
    let lines = errors
        .find_all(Locator::Css("tr.import-error"))
        .await
        .unwrap();
    assert_eq!(lines.len(), 1, "one bad row");
    let line = lines[0].text().await.unwrap();
    assert!(line.contains('3') && line.contains("1700"), "{line}");
    // The good row is previewed, the bad one marked; nothing can be confirmed.
    assert_eq!(
        c.find_all(Locator::Css("#import-rows tr.bad"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(c.find_all(Locator::Id("confirm")).await.unwrap().is_empty());
    c.close().await.unwrap();

    // Nobody was imported, not even the good row.
    let after = residents_of(w, w.station_a).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
}
