//! The hub's link to the district server: blocking HTTPS (ureq with rustls, the same
//! client the phone library uses, run on tokio's blocking pool), the hub's rotating
//! credential kept in `hub.json` in its data directory, and the four calls a hub makes.

use crate::error::{Error, Result};
use crate::hubs::Roster;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The media type of sync envelopes.
const ENVELOPE: &str = "application/vnd.linli.sync";
/// The largest answer read.
const MAX_ANSWER: u64 = 64 << 20;
/// Renew the access token this long before it expires.
const EARLY: Duration = Duration::from_secs(60);

/// What `server hub enrol` writes and every later start reads: where the district
/// server is and the hub's credential.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credential {
    /// The district server's base URL.
    pub upstream: String,
    /// The hub's id.
    pub hub: uuid::Uuid,
    /// Its station.
    pub station: uuid::Uuid,
    /// The station's district.
    pub district: uuid::Uuid,
    /// The current refresh token (rotated on every use).
    pub refresh_token: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("upstream", &self.upstream)
            .field("hub", &self.hub)
            .field("station", &self.station)
            .finish_non_exhaustive()
    }
}

/// Why a call to the district server did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No answer: the uplink is down or the server unreachable. Try again later.
    #[error("the district server is out of reach: {0}")]
    Unreachable(String),
    /// The hub was revoked: it stops forwarding and serving.
    #[error("this hub was revoked on the district server")]
    Revoked,
    /// Any other refusal.
    #[error("the district server answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its code and message.
        message: String,
    },
    /// Local trouble (the credential file, the hub's own store).
    #[error(transparent)]
    Local(#[from] Error),
}

impl From<crate::store::StoreError> for UpstreamError {
    fn from(e: crate::store::StoreError) -> Self {
        UpstreamError::Local(e.into())
    }
}

fn credential_path(data_dir: &Path) -> PathBuf {
    data_dir.join("hub.json")
}

/// Reads the hub's credential from its data directory.
pub fn load_credential(data_dir: &Path) -> Result<Credential> {
    let path = credential_path(data_dir);
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::Config(format!(
            "cannot read {} ({e}); enrol the hub first: server hub enrol --upstream URL --code CODE",
            path.display()
        ))
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Config(format!("{} is damaged: {e}", path.display())))
}

/// Writes the credential durably: a new file, synced, renamed over the old one, so a
/// crash leaves either the old token or the new one, never half of either.
pub fn save_credential(data_dir: &Path, credential: &Credential) -> Result<()> {
    use std::io::Write;
    let path = credential_path(data_dir);
    let temporary = data_dir.join("hub.json.new");
    let bytes = serde_json::to_vec_pretty(credential)
        .map_err(|e| Error::Internal(format!("encoding the hub credential: {e}")))?;
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))
}

/// The slowest uplink a hub still hands its outbox over on, in bytes a second: a
/// body's send time is allowed for at this rate (a station's first upload of a few
/// megabytes over a poor mobile link takes minutes, and must not time out forever).
const SLOW_UPLINK: u64 = 16 << 10;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_send_request(Some(Duration::from_secs(30)))
        // The district server answers within its own request timeout (60 s).
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_recv_body(Some(Duration::from_secs(600)))
        .user_agent("linli-hub/0.1")
        .build()
        .into()
}

/// How long sending `len` bytes may take over the slowest uplink a hub serves.
fn send_time(len: usize) -> Duration {
    Duration::from_secs(60 + u64::try_from(len).unwrap_or(u64::MAX) / SLOW_UPLINK)
}

/// A blocking call: the status and body, or no answer at all.
fn call(
    agent: &ureq::Agent,
    url: &str,
    bearer: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> std::result::Result<(u16, Vec<u8>), UpstreamError> {
    let unreachable = |e: ureq::Error| UpstreamError::Unreachable(e.to_string());
    let mut response = match body {
        Some((content_type, bytes)) => {
            let mut request = agent
                .post(url)
                .config()
                .timeout_send_body(Some(send_time(bytes.len())))
                .build()
                .header("Content-Type", content_type);
            if let Some(token) = bearer {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            request.send(&bytes[..]).map_err(unreachable)?
        }
        None => {
            let mut request = agent.get(url);
            if let Some(token) = bearer {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            request.call().map_err(unreachable)?
        }
    };
    let status = response.status().as_u16();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(unreachable)?;
    Ok((status, bytes))
}

fn refusal(status: u16, bytes: &[u8]) -> UpstreamError {
    let json: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let code = json["code"].as_str().unwrap_or_default();
    if code == "hub_revoked" {
        return UpstreamError::Revoked;
    }
    if status >= 500 || status == 429 || status == 408 {
        return UpstreamError::Unreachable(format!("the district server answered {status}"));
    }
    UpstreamError::Refused {
        status,
        message: format!("{code}: {}", json["message"].as_str().unwrap_or_default()),
    }
}

/// Enrols a hub with a code from the district server's station page and writes its
/// credential into `data_dir`.
pub async fn enrol(upstream: &str, code: &str, name: &str, data_dir: &Path) -> Result<Credential> {
    let upstream = upstream.trim_end_matches('/').to_owned();
    let url = format!("{upstream}/api/v1/hubs/enrol");
    let body = serde_json::json!({ "code": code, "name": name }).to_string();
    let answer = tokio::task::spawn_blocking(move || {
        call(
            &agent(),
            &url,
            None,
            Some(("application/json", body.into_bytes())),
        )
    })
    .await
    .map_err(|e| Error::Internal(format!("enrolling: {e}")))?;
    let (status, bytes) = answer.map_err(|e| Error::Config(e.to_string()))?;
    if status != 200 {
        return Err(Error::Config(format!(
            "the district server refused the code: {}",
            refusal(status, &bytes)
        )));
    }
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Config(format!("the enrolment answer is not JSON: {e}")))?;
    let id = |k: &str| {
        json[k]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Config(format!("the enrolment answer lacks {k}")))
    };
    let credential = Credential {
        upstream,
        hub: id("hub_id")?,
        station: id("station")?,
        district: id("district")?,
        refresh_token: json["refresh_token"]
            .as_str()
            .ok_or_else(|| Error::Config("the enrolment answer lacks a token".into()))?
            .to_owned(),
    };
    std::fs::create_dir_all(data_dir)
        .map_err(|e| Error::Config(format!("cannot create {}: {e}", data_dir.display())))?;
    save_credential(data_dir, &credential)?;
    Ok(credential)
}

struct Session {
    credential: Credential,
    access: Option<(String, Instant)>,
}

/// The bytes of phones' requests one forwarded batch carries at most (a single larger
/// request goes alone): small enough to cross a poor uplink well within its timeout.
pub const FORWARD_BYTES: usize = 1 << 20;

/// The hub's client for the district server. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    agent: ureq::Agent,
    data_dir: PathBuf,
    session: Arc<Mutex<Session>>,
    forward_bytes: usize,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upstream")
    }
}

impl Upstream {
    /// A client with the credential kept in `data_dir`.
    pub fn new(data_dir: &Path, credential: Credential) -> Upstream {
        Upstream {
            agent: agent(),
            data_dir: data_dir.to_owned(),
            session: Arc::new(Mutex::new(Session {
                credential,
                access: None,
            })),
            forward_bytes: FORWARD_BYTES,
        }
    }

    /// The same client, forwarding batches of at most `bytes` of phones' requests.
    #[must_use]
    pub fn with_forward_bytes(mut self, bytes: usize) -> Upstream {
        self.forward_bytes = bytes;
        self
    }

    /// The bytes of phones' requests one forwarded batch carries at most.
    pub fn forward_bytes(&self) -> usize {
        self.forward_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The district server's base URL.
    pub fn base(&self) -> String {
        self.lock().credential.upstream.clone()
    }

    /// A valid access token, refreshed (and the new refresh token saved) when needed.
    fn access(&self, renew: bool) -> std::result::Result<String, UpstreamError> {
        let mut session = self.lock();
        if !renew
            && let Some((token, until)) = &session.access
            && Instant::now() + EARLY < *until
        {
            return Ok(token.clone());
        }
        let url = format!("{}/api/v1/hubs/token", session.credential.upstream);
        let body = serde_json::json!({ "refresh_token": session.credential.refresh_token });
        let (status, bytes) = call(
            &self.agent,
            &url,
            None,
            Some(("application/json", body.to_string().into_bytes())),
        )?;
        if status != 200 {
            return Err(refusal(status, &bytes));
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let (Some(access), Some(refresh)) = (
            json["access_token"].as_str(),
            json["refresh_token"].as_str(),
        ) else {
            return Err(UpstreamError::Unreachable(
                "a malformed token answer".into(),
            ));
        };
        // The new refresh token is on disk before it is used: a crash now leaves the
        // new one, which works; the old one still works once too.
        session.credential.refresh_token = refresh.to_owned();
        save_credential(&self.data_dir, &session.credential)?;
        let lives = Duration::from_secs(json["expires_in"].as_u64().unwrap_or(60));
        session.access = Some((access.to_owned(), Instant::now() + lives));
        Ok(access.to_owned())
    }

    /// An authenticated call, renewing the token once if the server says it expired.
    fn authed(
        &self,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> std::result::Result<Vec<u8>, UpstreamError> {
        self.authed_as(path, body, ENVELOPE)
    }

    /// [`Upstream::authed`] with a body of media type `media`.
    fn authed_as(
        &self,
        path: &str,
        body: Option<Vec<u8>>,
        media: &str,
    ) -> std::result::Result<Vec<u8>, UpstreamError> {
        let url = format!("{}{path}", self.base());
        let mut renew = false;
        loop {
            let token = self.access(renew)?;
            let (status, bytes) = call(
                &self.agent,
                &url,
                Some(&token),
                body.clone().map(|b| (media, b)),
            )?;
            if status == 200 {
                return Ok(bytes);
            }
            if status == 401 && !renew {
                renew = true;
                continue;
            }
            return Err(refusal(status, &bytes));
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(Upstream) -> std::result::Result<T, UpstreamError> + Send + 'static,
    ) -> std::result::Result<T, UpstreamError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(this))
            .await
            .map_err(|e| UpstreamError::Local(Error::Internal(format!("an upstream call: {e}"))))?
    }

    /// The station's roster, telling the district server what the outbox holds.
    pub async fn roster(
        &self,
        outbox: crate::hub::store::OutboxCounts,
    ) -> std::result::Result<Roster, UpstreamError> {
        let mut path = format!("/api/v1/hubs/roster?waiting={}", outbox.waiting);
        if let Some(oldest) = outbox.oldest_waiting_at {
            path.push_str(&format!("&oldest={oldest}"));
        }
        let bytes = self.blocking(move |u| u.authed(&path, None)).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| UpstreamError::Unreachable(format!("a malformed roster: {e}")))
    }

    /// One round of the hub's own sync (an encoded request without uploads); the
    /// encoded response.
    pub async fn pull(&self, request: Vec<u8>) -> std::result::Result<Vec<u8>, UpstreamError> {
        self.blocking(move |u| u.authed("/api/v1/hubs/sync", Some(request)))
            .await
    }

    /// Hands on the devices this hub enrolled (JSON certificates); the JSON answer.
    pub async fn enrolments(&self, body: Vec<u8>) -> std::result::Result<Vec<u8>, UpstreamError> {
        self.blocking(move |u| {
            u.authed_as("/api/v1/hubs/enrolments", Some(body), "application/json")
        })
        .await
    }

    /// Forwards a batch (an encoded forward request); the encoded answer.
    pub async fn forward(&self, batch: Vec<u8>) -> std::result::Result<Vec<u8>, UpstreamError> {
        self.blocking(move |u| u.authed("/api/v1/hubs/forward", Some(batch)))
            .await
    }
}
