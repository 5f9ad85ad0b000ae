//! The web tests' client: a browser without JavaScript over plain HTTP. It keeps
//! cookies, follows no redirects (the tests look at each one) and reads forms the way
//! a page's user fills them in. Every web test file uses this one client.

use crate::serving::{Answer, TestServer};
use crate::world::World;
use reqwest::header::{CONTENT_TYPE, COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Client, RequestBuilder};
use serde_json::json;
use std::collections::BTreeMap;
use sync_core::ids::{StationId, UserId};
use uuid::Uuid;

/// The password of every staff member and extra admin the web tests make.
pub const STAFF_PASSWORD: &str = "staff member's password";

/// A browser: keeps cookies, follows no redirects.
pub struct Browser {
    base: String,
    http: Client,
    /// The cookies held, by name: tests read and forge them.
    pub cookies: BTreeMap<String, String>,
}

impl Answer {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Where a redirect points.
    pub fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// Every `Set-Cookie` header, as sent.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }
}

/// The value of the form field `name` in a page: the last one, since a page's own
/// forms come after the sign-out form in the header.
pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .rfind(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// Undoes askama's HTML escaping of an attribute value (an `href`, say).
pub fn unescape(text: &str) -> String {
    text.replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

impl Browser {
    pub fn new(server: &TestServer) -> Self {
        Self::at(server.url("").trim_end_matches('/'))
    }

    /// A browser for the server at `base` (`http://host:port`).
    pub fn at(base: &str) -> Self {
        Browser {
            base: base.to_owned(),
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    /// A request to `path` on the server, for bodies the helpers below do not build.
    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// Sends `request` with the browser's cookies and keeps the ones it gets back.
    pub async fn send(&mut self, mut request: RequestBuilder) -> Answer {
        if !self.cookies.is_empty() {
            let cookies = (self.cookies.iter())
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header(COOKIE, cookies);
        }
        let answer = Answer::read(request.send().await.unwrap()).await;
        self.keep(&answer.headers);
        answer
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// Posts `form` as a browser submits a form.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let request = (self.request(reqwest::Method::POST, path))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        self.send(request).await
    }

    /// Opens the sign-in page and signs in; the answer says whether it worked.
    pub async fn sign_in(&mut self, login: &str, password: &str) -> Answer {
        let page = self.get("/web/login").await;
        page.expect(200);
        let token = field(&page.text(), "form_token");
        self.post(
            "/web/login",
            &[
                ("form_token", &token),
                ("login", login),
                ("password", password),
                ("next", "/web/visits"),
            ],
        )
        .await
    }

    /// The page at `path`, which must answer 200.
    pub async fn page(&mut self, path: &str) -> String {
        let answer = self.get(path).await;
        answer.expect(200);
        answer.text()
    }
}

/// The world's coordinator, signed in on the web.
pub async fn coordinator(w: &World) -> Browser {
    let mut b = Browser::new(&w.server);
    b.sign_in("coordinator", crate::world::COORDINATOR_PASSWORD)
        .await
        .expect(303);
    b
}

/// A staff member covering `stations`, who signs in on the web with
/// [`STAFF_PASSWORD`].
pub async fn staff(w: &World, login: &str, stations: &[StationId]) -> UserId {
    let stations: Vec<Uuid> = stations.iter().map(|s| s.0).collect();
    let answer = w
        .server
        .post(
            "/api/v1/users",
            Some(&w.coordinator_token),
            &json!({ "login": login, "display_name": login, "role": "station_staff",
                     "stations": stations, "password": STAFF_PASSWORD }),
        )
        .await;
    answer.expect(201);
    UserId(answer.json()["id"].as_str().unwrap().parse().unwrap())
}

/// Another district, made by the first start's admin; its id.
pub async fn other_district(w: &World) -> String {
    let other = w
        .server
        .post(
            "/api/v1/districts",
            Some(&w.admin_token),
            &json!({ "name": "临汾路街道" }),
        )
        .await;
    other.expect(201);
    other.json()["id"].as_str().unwrap().to_owned()
}

/// A coordinator of another district, made by the first start's admin and signed in on
/// the web with `password`: the attacker next door.
pub async fn other_district_coordinator(w: &World, login: &str, password: &str) -> Browser {
    let district = other_district(w).await;
    w.server
        .post(
            "/api/v1/users",
            Some(&w.admin_token),
            &json!({ "login": login, "display_name": "外区协调", "role": "coordinator",
                     "district": district, "password": password }),
        )
        .await
        .expect(201);
    let mut b = Browser::new(&w.server);
    b.sign_in(login, password).await.expect(303);
    b
}
