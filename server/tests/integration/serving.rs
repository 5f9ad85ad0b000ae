//! The real HTTP service on 127.0.0.1:0, served in this process over a test store, and
//! a small client for its JSON API.

use crate::backends::TestStore;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use server::auth::Keys;
use server::http::{AppState, HttpLimits};
use server::store::{SqlStore, StoreOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The key test servers sign access tokens with, so tests can sign their own.
pub const SECRET: &[u8] = b"the linli integration tests' signing key";

/// A running server.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The test's database, through a second handle: what another process would see.
    pub t: TestStore,
    /// A client for the tests.
    pub http: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// An HTTP answer, kept whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> Answer {
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap().to_vec(),
        }
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The error code of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    /// Whether this is the server's JSON error: a `code` and a `message` for people.
    pub fn is_json_error(&self) -> bool {
        let is_json = self
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = self.json();
        is_json
            && !self.code().is_empty()
            && body["message"].as_str().is_some_and(|m| !m.is_empty())
    }

    /// Asserts the status, with the body in the message when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    /// Asserts an error: its status, code and JSON shape.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        assert!(self.is_json_error(), "not a JSON error: {self:?}");
        assert_eq!(self.code(), code);
        self
    }
}

impl TestServer {
    /// Serves the API over `t`'s database with the default limits.
    pub async fn start(t: TestStore) -> TestServer {
        TestServer::with_limits(t, HttpLimits::default()).await
    }

    /// Serves the API over `t`'s database with `limits`.
    pub async fn with_limits(t: TestStore, limits: HttpLimits) -> TestServer {
        let store = SqlStore::connect(&t.url, StoreOptions::default())
            .await
            .unwrap();
        let state = AppState::new(store, Keys::new(SECRET).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::http::serve(listener, state, limits, async move {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            t,
            http: Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The test's own handle on the database.
    pub fn store(&self) -> &SqlStore {
        &self.t.store
    }

    /// The keys the server signs with.
    pub fn keys(&self) -> Keys {
        Keys::new(SECRET).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        Answer::read(request.send().await.unwrap()).await
    }

    /// A request with a raw body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, self.url(path))
            .header(CONTENT_TYPE, content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Answer::read(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// `/metrics`, as text.
    pub async fn metrics(&self) -> String {
        let answer = self.get("/metrics", None).await;
        answer.expect(200);
        String::from_utf8(answer.body).unwrap()
    }

    /// Stops serving, letting requests in flight finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// The value of one sample in a Prometheus text exposition (`name{labels}`), 0 if absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
