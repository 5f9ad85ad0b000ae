//! The transport: blocking HTTPS (ureq with rustls) with timeouts, and the server's
//! JSON errors turned into the library's error.

use crate::error::LinliError;
use std::time::Duration;

/// The media type of sync envelopes.
pub(crate) const ENVELOPE: &str = "application/vnd.linli.sync";
/// The largest answer read (the server cuts its responses well below this).
const MAX_ANSWER: u64 = 64 << 20;

/// An HTTP client for one server.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    agent: ureq::Agent,
    base: String,
}

/// A non-2xx answer: the status and the server's JSON error.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub purge: bool,
    /// A station hub's proof of itself, where it sent one with the refusal.
    pub hub_proof: Option<String>,
}

impl Refusal {
    /// The refusal a non-2xx answer with `body` (the server's JSON error) makes.
    pub(crate) fn of(status: u16, body: &[u8]) -> Refusal {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |k: &str| json[k].as_str().unwrap_or_default().to_owned();
        Refusal {
            status,
            code: text("code"),
            message: match text("message") {
                m if m.is_empty() => String::from_utf8_lossy(body).chars().take(200).collect(),
                m => m,
            },
            purge: json["purge"].as_bool().unwrap_or(false),
            hub_proof: json["hub_proof"].as_str().map(str::to_owned),
        }
    }

    /// The library's error for a refusal that is not handled specially.
    pub(crate) fn into_error(self) -> LinliError {
        if self.status >= 500 || self.status == 429 || self.status == 408 {
            return LinliError::Network {
                detail: format!("the server answered {}: {}", self.status, self.message),
            };
        }
        if self.code == "device_revoked" || self.purge {
            return LinliError::Revoked;
        }
        match self.code.as_str() {
            "bad_credentials" => LinliError::BadCredentials {
                detail: self.message,
            },
            "user_disabled" => LinliError::AccountDisabled {
                detail: self.message,
            },
            "" => LinliError::Refused {
                code: format!("http_{}", self.status),
                detail: self.message,
            },
            _ => LinliError::Refused {
                code: self.code,
                detail: self.message,
            },
        }
    }
}

/// What a request gave: the body of a 2xx, or a refusal.
pub(crate) type Answer = Result<Vec<u8>, Refusal>;

/// The answer an HTTP status and body make (a station hub's sealed reply carries
/// both).
pub(crate) fn answer_of(status: u16, body: Vec<u8>) -> Answer {
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(Refusal::of(status, &body))
    }
}

/// Timeouts: a stuck request ends, and the app gets a retryable error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub whole: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            whole: Duration::from_secs(60),
        }
    }
}

impl Http {
    pub(crate) fn new(base: &str, timeouts: Timeouts) -> Http {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeouts.connect))
            .timeout_global(Some(timeouts.whole))
            .user_agent("linli-phone/0.1")
            .build()
            .into();
        Http {
            agent,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// GETs `path`, without credentials.
    pub(crate) fn get(&self, path: &str) -> Result<Answer, LinliError> {
        self.get_with(path, None)
    }

    /// GETs `path`, with a bearer token if given.
    pub(crate) fn get_with(&self, path: &str, bearer: Option<&str>) -> Result<Answer, LinliError> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(token) = bearer {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Self::answer(request.call().map_err(transport)?)
    }

    /// POSTs `body` with `content_type`, and a bearer token if given.
    pub(crate) fn post(
        &self,
        path: &str,
        bearer: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<Answer, LinliError> {
        self.post_with(path, bearer, content_type, body, None)
    }

    /// [`Http::post`] with one more header.
    pub(crate) fn post_with_header(
        &self,
        path: &str,
        (name, value): (&str, &str),
        content_type: &str,
        body: &[u8],
    ) -> Result<Answer, LinliError> {
        let response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type)
            .header(name, value)
            .send(body)
            .map_err(transport)?;
        Self::answer(response)
    }

    /// [`Http::post`] with the body's seal (`sync_core::protocol::seal`), if given.
    pub(crate) fn post_with(
        &self,
        path: &str,
        bearer: Option<&str>,
        content_type: &str,
        body: &[u8],
        seal: Option<&str>,
    ) -> Result<Answer, LinliError> {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type);
        if let Some(token) = bearer {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(seal) = seal {
            request = request.header(sync_core::protocol::seal::HEADER, seal);
        }
        let response = request.send(body).map_err(transport)?;
        Self::answer(response)
    }

    fn answer(mut response: ureq::http::Response<ureq::Body>) -> Result<Answer, LinliError> {
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(transport)?;
        Ok(answer_of(status, bytes))
    }

    /// POSTs JSON.
    pub(crate) fn post_json(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<Answer, LinliError> {
        let bytes = serde_json::to_vec(body).map_err(|e| LinliError::Internal {
            detail: format!("encoding a request: {e}"),
        })?;
        self.post(path, bearer, "application/json", &bytes)
    }
}

fn transport(e: ureq::Error) -> LinliError {
    use ureq::Error as E;
    match e {
        // A URL the app built wrong, or an answer over the limit, will not heal by
        // waiting: these are not `Network`, which always means "try again later".
        E::BadUri(_) | E::InvalidProxyUrl => LinliError::InvalidInput {
            detail: format!("the server address is not a valid URL: {e}"),
        },
        E::BodyExceedsLimit(_) => LinliError::Malformed {
            detail: format!("the server's answer is larger than {MAX_ANSWER} bytes"),
        },
        other => LinliError::Network {
            detail: other.to_string(),
        },
    }
}
