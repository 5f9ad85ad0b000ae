//! A server on port 0 with a district set up over HTTP from the first start's admin,
//! and phones enrolled on it through the phone library.

use mobile_ffi::{
    CancelToken, ConditionRecord, LinliClient, LinliError, ProfileRecord, RiskLevel, SyncOutcome,
    VisitInput, Wellbeing,
};
use serde_json::{Value, json};
use server::auth::Keys;
use server::http::{AppState, HttpLimits};
use server::store::{SqlStore, StoreOptions};
use std::sync::Arc;
use tempfile::TempDir;
use tokio::sync::oneshot;

const SECRET: &[u8] = b"the linli end-to-end tests' signing key";
pub const COORDINATOR_PASSWORD: &str = "coordinator's password";

/// The real HTTP service, served by a runtime of its own.
pub struct TestServer {
    pub base: String,
    /// The database's folder, removed with the server.
    _dir: TempDir,
    rt: tokio::runtime::Runtime,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub admin_login: String,
    pub admin_password: String,
}

impl TestServer {
    pub fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("linli.db").display());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (store, admin, listener) = rt.block_on(async {
            let store = SqlStore::connect(&url, StoreOptions::default())
                .await
                .unwrap();
            let admin = store
                .bootstrap_admin(server::now_ms())
                .await
                .unwrap()
                .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            (store, admin, listener)
        });
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::new(store, Keys::new(SECRET).unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = rt.spawn(server::http::serve(
            listener,
            state,
            HttpLimits::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        TestServer {
            base,
            _dir: dir,
            rt,
            stop: Some(stop),
            task: Some(task),
            admin_login: admin.login,
            admin_password: admin.password,
        }
    }

    /// Stops serving: the port is closed afterwards.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            self.rt.block_on(task).unwrap().unwrap();
        }
    }

    /// A JSON request; the status and the body as JSON (`Null` if none).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut response = match (method, body) {
            ("GET", _) => {
                let mut r = agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call().unwrap()
            }
            ("DELETE", _) => {
                let mut r = agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call().unwrap()
            }
            (m, body) => {
                let mut r = if m == "PUT" {
                    agent.put(&url)
                } else {
                    agent.post(&url)
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                let bytes = body.map(|b| b.to_string()).unwrap_or_default();
                r.header("Content-Type", "application/json")
                    .send(bytes.as_bytes())
                    .unwrap()
            }
        };
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn created_id(answer: (u16, Value)) -> String {
    assert_eq!(answer.0, 201, "{answer:?}");
    answer.1["id"].as_str().unwrap().to_owned()
}

/// A district with one station and a coordinator.
pub struct World {
    pub server: TestServer,
    pub station: String,
    pub coordinator: String,
    pub coordinator_token: String,
}

pub fn login(server: &TestServer, login: &str, password: &str) -> String {
    let (status, body) = server.call(
        "POST",
        "/api/v1/login",
        None,
        Some(json!({ "login": login, "password": password })),
    );
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

impl World {
    pub fn new() -> World {
        let server = TestServer::start();
        let admin = login(&server, &server.admin_login, &server.admin_password);
        let district = created_id(server.call(
            "POST",
            "/api/v1/districts",
            Some(&admin),
            Some(json!({ "name": "彭浦镇" })),
        ));
        let station = created_id(server.call(
            "POST",
            "/api/v1/stations",
            Some(&admin),
            Some(json!({ "name": "华沙六村党群服务站", "district": district })),
        ));
        let coordinator = created_id(server.call(
            "POST",
            "/api/v1/users",
            Some(&admin),
            Some(json!({
                "login": "coordinator", "display_name": "李协调", "role": "coordinator",
                "district": district, "password": COORDINATOR_PASSWORD,
            })),
        ));
        let coordinator_token = login(&server, "coordinator", COORDINATOR_PASSWORD);
        World {
            server,
            station,
            coordinator,
            coordinator_token,
        }
    }

    /// A new volunteer's user id.
    pub fn volunteer(&self, login: &str) -> String {
        created_id(self.server.call(
            "POST",
            "/api/v1/users",
            Some(&self.coordinator_token),
            Some(json!({ "login": login, "display_name": login, "role": "volunteer", "stations": [] })),
        ))
    }

    /// A fresh enrolment code for `user`.
    pub fn code(&self, user: &str) -> String {
        let (status, body) = self.server.call(
            "POST",
            "/api/v1/enrolment-codes",
            Some(&self.coordinator_token),
            Some(json!({ "user": user })),
        );
        assert_eq!(status, 201, "{body}");
        body["code"].as_str().unwrap().to_owned()
    }

    /// An enrolment code for `user` that also works at the hub of the world's station,
    /// for a week.
    pub fn station_code(&self, user: &str) -> String {
        let (status, body) = self.server.call(
            "POST",
            "/api/v1/enrolment-codes",
            Some(&self.coordinator_token),
            Some(json!({ "user": user, "station": self.station })),
        );
        assert_eq!(status, 201, "{body}");
        body["code"].as_str().unwrap().to_owned()
    }

    /// A phone enrolled for `user`, in a folder of its own.
    pub fn phone(&self, user: &str) -> Phone {
        let phone = Phone::new();
        phone
            .client
            .enrol(
                self.server.base.clone(),
                self.code(user),
                "test phone".into(),
            )
            .unwrap();
        phone
    }

    pub fn assign(&self, volunteer: &str, resident: &str) {
        let (status, body) = self.server.call(
            "PUT",
            &format!("/api/v1/volunteers/{volunteer}/residents/{resident}"),
            Some(&self.coordinator_token),
            None,
        );
        assert_eq!(status, 204, "{body}");
    }

    pub fn unassign(&self, volunteer: &str, resident: &str) {
        let (status, body) = self.server.call(
            "DELETE",
            &format!("/api/v1/volunteers/{volunteer}/residents/{resident}"),
            Some(&self.coordinator_token),
            None,
        );
        assert_eq!(status, 204, "{body}");
    }

    pub fn revoke(&self, device: &str) {
        let (status, body) = self.server.call(
            "POST",
            &format!("/api/v1/devices/{device}/revoke"),
            Some(&self.coordinator_token),
            None,
        );
        assert_eq!(status, 204, "{body}");
    }

    /// The coordinator's phone, holding one resident registered at the station.
    pub fn coordinator_with_resident(&self, name: &str) -> (Phone, String) {
        let coordinator = self.phone(&self.coordinator);
        let resident = coordinator
            .client
            .register_resident(self.station.clone(), profile(name))
            .unwrap();
        let outcome = coordinator.sync().unwrap();
        assert!(outcome.receipted.contains(&resident), "{outcome:?}");
        (coordinator, resident)
    }
}

/// A phone: the library's client over a store in its own folder.
pub struct Phone {
    pub client: Arc<LinliClient>,
    pub dir: TempDir,
    pub key: Vec<u8>,
}

impl Phone {
    pub fn new() -> Phone {
        let dir = tempfile::tempdir().unwrap();
        let key: Vec<u8> = uuid::Uuid::now_v7()
            .as_bytes()
            .iter()
            .chain(uuid::Uuid::now_v7().as_bytes())
            .copied()
            .collect();
        let client = LinliClient::open(dir.path().display().to_string(), key.clone()).unwrap();
        Phone { client, dir, key }
    }

    pub fn key_hex(&self) -> String {
        self.key.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Opens the phone's store again (as after the app was killed).
    pub fn reopen(&mut self) {
        self.client =
            LinliClient::open(self.dir.path().display().to_string(), self.key.clone()).unwrap();
    }

    pub fn sync(&self) -> Result<SyncOutcome, LinliError> {
        self.client.sync(CancelToken::new())
    }

    pub fn device(&self) -> String {
        self.client.identity().unwrap().unwrap().device_id
    }

    /// Logs a visit naming what the phone's catalog holds, if it holds one (a visit
    /// may only name the district's catalog entries).
    pub fn log(&self, resident: &str, notes: &str) -> String {
        let mut input = visit(notes);
        if let Some(catalog) = self.client.catalog().unwrap() {
            if let Some(p) = catalog.projects.first() {
                input.project = p.id.clone();
            }
            input.services = catalog
                .service_types
                .first()
                .map(|s| vec![s.id.clone()])
                .unwrap_or_default();
        }
        self.client.log_visit(resident.into(), input).unwrap()
    }

    /// Ids of the live visits the phone holds for `resident`.
    pub fn visit_ids(&self, resident: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .client
            .resident(resident.into())
            .unwrap()
            .visits
            .into_iter()
            .filter(|v| !v.tombstoned)
            .map(|v| v.id)
            .collect();
        ids.sort();
        ids
    }
}

pub fn profile(name: &str) -> ProfileRecord {
    ProfileRecord {
        name: name.into(),
        address: "华沙六村 12 号 301".into(),
        phone: String::new(),
        birth_year: Some(1936),
        living_situation: None,
        emergency_contact: String::new(),
        needs: String::new(),
        risk_level: Some(RiskLevel::High),
        visit_every_days: Some(7),
    }
}

pub fn now_ms() -> i64 {
    server::now_ms()
}

/// A visit that ended half an hour ago.
pub fn visit(notes: &str) -> VisitInput {
    let now = now_ms();
    VisitInput {
        project: "00000000-0000-0000-0000-000000000090".into(),
        unit: None,
        started_at: now - 3_600_000,
        ended_at: now - 1_800_000,
        services: vec!["00000000-0000-0000-0000-000000000051".into()],
        condition: ConditionRecord {
            wellbeing: Wellbeing::Fair,
            systolic: Some(150),
            diastolic: Some(95),
            blood_sugar_dmmol: None,
            remarks: "头晕".into(),
        },
        hazards: vec![],
        notes: notes.into(),
        follow_up_needed: true,
    }
}

/// A coordinator's web session over plain HTTP (no redirects followed, cookies kept by
/// hand): how the end-to-end stories decide what only a page decides.
pub struct Web {
    base: String,
    agent: ureq::Agent,
    cookies: Vec<(String, String)>,
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of the last form field `name` in a page.
pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .rfind(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

impl Web {
    /// Signs in on the web pages as `login`.
    pub fn sign_in(server: &TestServer, login: &str, password: &str) -> Web {
        let mut web = Web {
            base: server.base.clone(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .into(),
            cookies: Vec::new(),
        };
        let (status, page) = web.get("/web/login");
        assert_eq!(status, 200, "{page}");
        let token = field(&page, "form_token");
        let (status, _) = web.post(
            "/web/login",
            &[
                ("form_token", &token),
                ("login", login),
                ("password", password),
                ("next", "/web/visits"),
            ],
        );
        assert_eq!(status, 303, "signed in");
        web
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, response: &ureq::http::Response<ureq::Body>) {
        for value in response.headers().get_all("set-cookie") {
            let Some((name, value)) = value
                .to_str()
                .ok()
                .and_then(|t| t.split(';').next())
                .and_then(|p| p.split_once('='))
            else {
                continue;
            };
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    /// A page: its status and text.
    pub fn get(&mut self, path: &str) -> (u16, String) {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .call()
            .unwrap();
        self.keep(&response);
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    /// Submits a form: the status and where it redirects.
    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(form_encode(form).as_bytes())
            .unwrap();
        self.keep(&response);
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (response.status().as_u16(), location)
    }
}

/// What a handler of [`serve`] answers: status line, media type, body; or nothing (the
/// connection closes unanswered).
pub type Said = Option<(String, &'static str, Vec<u8>)>;

/// A request as [`serve`] read it: method, path, its `linli-code` header if any, body.
pub type Heard<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>);

/// Serves HTTP/1.1 on a port of its own, one request per connection, answering each
/// request with `answer`: a fake server, or something else on a station's network.
/// Its address.
pub fn serve(answer: impl Fn(Heard<'_>) -> Said + Send + 'static) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut words = line.split(' ');
            let method = words.next().unwrap_or_default().to_owned();
            let path = words.next().unwrap_or_default().to_owned();
            let mut length = 0;
            let mut code = None;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                let lower = header.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if let Some(v) = lower.strip_prefix("linli-code:") {
                    code = Some(v.trim().to_owned());
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let Some((status, media, said)) = answer((&method, &path, code.as_deref(), body))
            else {
                continue;
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: {media}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                said.len()
            );
            let _ = stream.write_all(&said);
        }
    });
    base
}
