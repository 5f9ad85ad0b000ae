//! The web pages in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, fantoccini). Signing in, filtering the visit log, the language
//! switch, a review, and station staff who cannot see another station's visits.
//!
//! These tests need `chromedriver` and Chromium (Debian: `chromium chromium-driver`;
//! `scripts/test` installs them). Without them they FAIL, never skip: set
//! `LINLI_CHROMEDRIVER` to the driver's path if it is not on `PATH`, and
//! `LINLI_CHROMIUM` to the browser's if chromedriver does not find it.

use crate::backends::sqlite;
use crate::web::log_world;
use crate::web_client::{STAFF_PASSWORD, staff};
use crate::world::COORDINATOR_PASSWORD;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A chromedriver this test started, stopped when dropped.
struct Driver {
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
async fn driver() -> Driver {
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
async fn browser(driver: &Driver) -> Client {
    let mut options = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--disable-gpu", "--lang=zh-CN", "--window-size=1400,1000"],
    });
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

async fn sign_in(c: &Client, base: &str, login: &str, password: &str) {
    c.goto(&format!("{base}/web/visits")).await.unwrap();
    // Signed out, the log sends the browser to the sign-in form.
    let field = c.wait().for_element(Locator::Id("login")).await.unwrap();
    field.send_keys(login).await.unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    c.find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Id("filters")).await.unwrap();
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
    let log = log_world(sqlite().await).await;
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
    c.find(Locator::Id("filter-station"))
        .await
        .unwrap()
        .select_by_value(&w.station_b.0.to_string())
        .await
        .unwrap();
    c.find(Locator::Id("apply-filters"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#filter-station option[selected]"))
        .await
        .unwrap();
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
    c.find(Locator::Id("lang-switch"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let heading = c.wait().for_element(Locator::Css("main h1")).await.unwrap();
    assert_eq!(heading.text().await.unwrap(), "Visit log");
    assert_eq!(rows(&c).await.len(), 1, "the filter survives the switch");
    c.find(Locator::Id("lang-switch"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
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

    // Sign out: the log asks for a sign-in again.
    c.find(Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
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
