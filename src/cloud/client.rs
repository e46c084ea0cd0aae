//! The HTTP client of Pipecat Cloud: the API key it sends ([`ApiKey`]), the rate limiter and
//! observer every request passes, a method per agent and region endpoint the operator calls (the
//! secret sets' are in `secret_sets.rs`), and errors classified by [`Error`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::Error;
use super::ratelimit::RateLimiter;
use super::types::{
    Agent, AgentList, AgentSummary, CreateAgentRequest, ErrorBody, RegionList, UpdateAgentRequest,
};
use crate::text::truncate;

/// The public Pipecat Cloud API.
pub const DEFAULT_BASE_URL: &str = "https://api.pipecat.daily.co/v1";

/// A Pipecat Cloud Private API key. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key (surrounding whitespace, e.g. a trailing newline from a file, is removed).
    pub fn new(key: impl Into<String>) -> Self {
        let key: String = key.into();
        ApiKey(key.trim().to_string())
    }

    /// The key itself, for the Authorization header only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the key is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replaces any occurrence of the key in `text` (defence in depth for error messages).
    pub fn redact(&self, text: String) -> String {
        if self.0.len() >= 4 && text.contains(&self.0) {
            text.replace(&self.0, "[redacted]")
        } else {
            text
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How to reach Pipecat Cloud.
#[derive(Clone, Debug, clap::Args)]
pub struct ClientConfig {
    /// Pipecat Cloud API base URL (including /v1); point it at `pipecat-cloud-emulator` to work offline.
    #[arg(long = "api-url", env = "PIPECAT_API_URL", default_value = DEFAULT_BASE_URL)]
    pub base_url: String,
    /// Timeout of each Pipecat Cloud request (connect + response).
    #[arg(long = "request-timeout", env = "PIPECAT_REQUEST_TIMEOUT", default_value = "30s", value_parser = crate::duration::parse)]
    pub timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        crate::flags::defaults()
    }
}

/// The operations the client performs, a bounded set for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `GET /agents`
    ListAgents,
    /// `GET /agents/{name}`
    GetAgent,
    /// `POST /agents`
    CreateAgent,
    /// `POST /agents/{name}`
    UpdateAgent,
    /// `DELETE /agents/{name}`
    DeleteAgent,
    /// `GET /secrets`
    ListSecretSets,
    /// `GET /secrets/{set}`
    GetSecretSet,
    /// `PUT /secrets/{set}`
    PutSecretSet,
    /// `DELETE /secrets/{set}`
    DeleteSecretSet,
    /// `DELETE /secrets/{set}/{key}`
    DeleteSecret,
    /// `GET /regions`
    ListRegions,
}

impl Operation {
    /// Snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ListAgents => "list_agents",
            Operation::GetAgent => "get_agent",
            Operation::CreateAgent => "create_agent",
            Operation::UpdateAgent => "update_agent",
            Operation::DeleteAgent => "delete_agent",
            Operation::ListSecretSets => "list_secret_sets",
            Operation::GetSecretSet => "get_secret_set",
            Operation::PutSecretSet => "put_secret_set",
            Operation::DeleteSecretSet => "delete_secret_set",
            Operation::DeleteSecret => "delete_secret",
            Operation::ListRegions => "list_regions",
        }
    }
}

/// Hooks called by the client (metrics).
pub trait Observer: Send + Sync {
    /// After every request: its operation, outcome (HTTP status or error) and latency.
    fn request(&self, op: Operation, outcome: Result<u16, &Error>, took: Duration);
    /// A request waited `waited` for the client-side rate limit.
    fn rate_limited(&self, waited: Duration);
}

/// A Pipecat Cloud management API client. Cheap to clone; the key is passed per call because
/// each resource may use its own.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    observer: Option<Arc<dyn Observer>>,
    limiter: Option<Arc<RateLimiter>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    /// Builds a client.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let base = config.base_url.trim_end_matches('/').to_string();
        reqwest::Url::parse(&base)
            .map_err(|e| Error::Config(format!("base URL {base:?} is not a URL: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("pipecat-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("failed to build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            observer: None,
            limiter: None,
        })
    }

    /// Installs hooks called around every request (used for metrics).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Shares a rate limiter among all requests of this client (and its clones).
    pub fn with_rate_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Requests per second periodic refreshes may make on average (the rate limit times its
    /// background share); `None` when the client is not rate limited.
    pub fn background_rate(&self) -> Option<f64> {
        self.limiter.as_ref().and_then(|l| l.background_rate())
    }

    /// Occupies `lane` until the guard is dropped: lower lanes yield to every request made
    /// meanwhile, the second as well as the first (no-op without a rate limiter; see
    /// [`RateLimiter::occupy`]).
    pub fn occupy(&self, lane: super::Lane) -> Option<super::Occupied<'_>> {
        self.limiter.as_ref().map(|l| l.occupy(lane))
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /agents/{name}`.
    pub async fn get_agent(&self, key: &ApiKey, name: &str) -> Result<Agent, Error> {
        let path = format!("/agents/{}", encode(name));
        self.call(Operation::GetAgent, Method::GET, &path, key, None::<&()>)
            .await
            .and_then(named)
    }

    /// `GET /agents`.
    pub async fn list_agents(&self, key: &ApiKey) -> Result<Vec<AgentSummary>, Error> {
        let list: AgentList = self
            .call(
                Operation::ListAgents,
                Method::GET,
                "/agents",
                key,
                None::<&()>,
            )
            .await?;
        Ok(list.services)
    }

    /// `GET /regions`: the region codes the key's organization may use.
    pub async fn list_regions(&self, key: &ApiKey) -> Result<Vec<String>, Error> {
        let list: RegionList = self
            .call(
                Operation::ListRegions,
                Method::GET,
                "/regions",
                key,
                None::<&()>,
            )
            .await?;
        Ok(list.regions.into_iter().map(|r| r.code).collect())
    }

    /// `POST /agents`.
    pub async fn create_agent(
        &self,
        key: &ApiKey,
        req: &CreateAgentRequest,
    ) -> Result<Agent, Error> {
        self.call(
            Operation::CreateAgent,
            Method::POST,
            "/agents",
            key,
            Some(req),
        )
        .await
        .and_then(named)
    }

    /// `POST /agents/{name}`: the whole desired body every time.
    pub async fn update_agent(
        &self,
        key: &ApiKey,
        name: &str,
        req: &UpdateAgentRequest,
    ) -> Result<Agent, Error> {
        let path = format!("/agents/{}", encode(name));
        self.call(Operation::UpdateAgent, Method::POST, &path, key, Some(req))
            .await
            .and_then(named)
    }

    /// `DELETE /agents/{name}`. A missing agent is an [`Error::NotFound`]; callers that only
    /// want it gone treat that as success.
    pub async fn delete_agent(&self, key: &ApiKey, name: &str) -> Result<(), Error> {
        let path = format!("/agents/{}", encode(name));
        let _: serde_json::Value = self
            .call(
                Operation::DeleteAgent,
                Method::DELETE,
                &path,
                key,
                None::<&()>,
            )
            .await?;
        Ok(())
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        op: Operation,
        method: Method,
        path: &str,
        key: &ApiKey,
        body: Option<&B>,
    ) -> Result<T, Error> {
        self.call_redacting(op, method, path, &Redactor::key(key), body)
            .await
    }

    /// [`Client::call`] for requests that carry secret values: `redactor` removes them (and the
    /// key) from any text of the answer before it can become part of an error.
    pub(super) async fn call_redacting<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        op: Operation,
        method: Method,
        path: &str,
        redactor: &Redactor<'_>,
        body: Option<&B>,
    ) -> Result<T, Error> {
        if let Some(limiter) = &self.limiter {
            // A write is a change whatever the pass's lane (it promotes the pass).
            let waited = if method == Method::GET {
                limiter.acquire().await
            } else {
                limiter.acquire_write().await
            };
            if let (Some(observer), true) = (&self.observer, waited > Duration::ZERO) {
                observer.rate_limited(waited);
            }
        }
        let started = std::time::Instant::now();
        let result = self.send(method, path, redactor, body).await;
        let result = result.map_err(|e| redact_error(e, redactor));
        if let Some(limiter) = &self.limiter {
            limiter.on_response(match &result {
                Err(Error::RateLimited { retry_after }) => Some(*retry_after),
                _ => None,
            });
        }
        if let Some(observer) = &self.observer {
            observer.request(
                op,
                result.as_ref().map(|(status, _)| *status),
                started.elapsed(),
            );
        }
        result.map(|(_, value)| value)
    }

    async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        redactor: &Redactor<'_>,
        body: Option<&B>,
    ) -> Result<(u16, T), Error> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(redactor.key.expose())
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = read_capped(resp, MAX_RESPONSE_BYTES).await?;
        // Any text quoted from a body is redacted first, then cut: a cut must never leave a
        // partial key (or value) behind.
        let redacted = || redactor.redact(String::from_utf8_lossy(&bytes).into_owned());
        if status.is_success() {
            let value = if bytes.is_empty() {
                serde_json::from_slice(b"null")
            } else {
                serde_json::from_slice(&bytes)
            };
            return value
                .map(|v| (status.as_u16(), v))
                .map_err(|e| Error::Malformed {
                    message: format!(
                        "HTTP {} body is not the expected JSON ({}); body starts with {:?}",
                        status.as_u16(),
                        truncate(redactor.redact(e.to_string()), 200),
                        snippet(redacted().as_bytes())
                    ),
                });
        }
        Err(classify(status, redacted().as_bytes(), retry_after))
    }
}

/// Largest response body accepted: agent details are a few KiB, a list of 10,000 agents a few
/// MiB; anything bigger is not the Pipecat API talking.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > cap {
            return Err(Error::Malformed {
                message: format!("response body larger than {} MiB", cap / (1024 * 1024)),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An agent answer must at least name the agent (`{}` is not an agent).
fn named(agent: Agent) -> Result<Agent, Error> {
    if agent.name.is_empty() {
        Err(Error::Malformed {
            message: "the agent answer has no name".into(),
        })
    } else {
        Ok(agent)
    }
}

/// Maps an error response to an [`Error`].
pub fn classify(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Error {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|b| b.code.clone())
        .unwrap_or_else(|| status.as_u16().to_string());
    let message = match parsed.and_then(|b| b.error) {
        Some(m) if !m.is_empty() => m,
        _ if body.is_empty() => format!("HTTP {} with an empty body", status.as_u16()),
        _ => format!(
            "HTTP {} with a non-JSON body starting with {:?}",
            status.as_u16(),
            snippet(body)
        ),
    };
    match status.as_u16() {
        404 => Error::NotFound { message },
        401 | 403 => Error::Unauthorized {
            status: status.as_u16(),
            message,
        },
        409 => Error::Conflict { message },
        429 => Error::RateLimited { retry_after },
        400 if message.to_ascii_lowercase().contains("already exists") => {
            Error::AlreadyExists { message }
        }
        s if s >= 500 => Error::Transient {
            status: Some(s),
            message: format!("HTTP {s}: {message}"),
            retry_after,
        },
        408 => Error::Transient {
            status: Some(408),
            message,
            retry_after,
        },
        s => Error::InvalidRequest {
            status: s,
            code,
            message,
        },
    }
}

fn transport_error(e: reqwest::Error) -> Error {
    let message = if e.is_timeout() {
        "request timed out".to_string()
    } else if e.is_connect() {
        format!("could not connect: {}", root_cause(&e))
    } else if e.is_decode() || e.is_body() {
        format!("failed to read the response: {}", root_cause(&e))
    } else {
        format!("request failed: {}", root_cause(&e))
    };
    Error::Transient {
        status: None,
        message,
        retry_after: None,
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Longest text quoted from a remote answer in an error (it reaches logs, events, conditions).
pub const MAX_ERROR_TEXT: usize = 300;

/// Redacts the key (and any secret value) from every message of `e`, then bounds its length.
fn redact_error(mut e: Error, redactor: &Redactor<'_>) -> Error {
    for text in e.texts_mut() {
        *text = truncate(redactor.redact(std::mem::take(text)), MAX_ERROR_TEXT);
    }
    e
}

/// Shortest secret value replaced where it occurs in a remote text; a shorter one cannot be
/// told apart from ordinary words, so a text quoting it as a word of its own is withheld
/// whole.
const MIN_REPLACED_VALUE: usize = 4;

/// What the texts of an answer must not carry: the API key, and the secret values a request
/// sent (as sent, and as a JSON string would escape them).
pub(super) struct Redactor<'a> {
    key: &'a ApiKey,
    values: Vec<String>,
}

impl<'a> Redactor<'a> {
    /// Only the key.
    pub(super) fn key(key: &'a ApiKey) -> Self {
        Redactor {
            key,
            values: Vec::new(),
        }
    }

    /// The key and these values.
    pub(super) fn with_values<'v>(
        key: &'a ApiKey,
        values: impl IntoIterator<Item = &'v str>,
    ) -> Self {
        let mut all: Vec<String> = Vec::new();
        // A JSON string escapes quotes and backslashes; a body quoting a JSON request inside
        // a message escapes them twice.
        fn escape(v: &str) -> String {
            let quoted = serde_json::to_string(v).unwrap_or_default();
            quoted[1..quoted.len().saturating_sub(1).max(1)].to_string()
        }
        for v in values.into_iter().filter(|v| !v.is_empty()) {
            let once = escape(v);
            let twice = escape(&once);
            all.extend([v.to_string(), once, twice]);
        }
        // Longest first: a value that contains another is replaced whole.
        all.sort_by_key(|v| std::cmp::Reverse(v.len()));
        all.dedup();
        Redactor { key, values: all }
    }

    /// `text` without the key or any value.
    pub(super) fn redact(&self, text: String) -> String {
        let mut text = self.key.redact(text);
        for v in &self.values {
            if v.len() >= MIN_REPLACED_VALUE && text.contains(v.as_str()) {
                text = text.replace(v.as_str(), "[redacted]");
            }
        }
        if self
            .values
            .iter()
            .any(|v| v.len() < MIN_REPLACED_VALUE && quotes_token(&text, v))
        {
            return "[withheld: the text may quote a secret value]".to_string();
        }
        text
    }
}

/// True when `value` occurs in `text` as a whole token (not inside a longer word or number):
/// a short value such as `1` or `on` is only a quote when it stands alone.
fn quotes_token(text: &str, value: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    text.match_indices(value).any(|(i, _)| {
        !word(text[..i].chars().next_back()) && !word(text[i + value.len()..].chars().next())
    })
}

/// Parses `Retry-After` in seconds (HTTP dates are rare for APIs and ignored).
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The first bytes of a body, printable, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    text.chars().filter(|c| !c.is_control()).collect()
}

/// Percent-encodes a path segment (agent names are `[a-z0-9-]`, but be safe).
pub(super) fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_is_never_printed() {
        let key = ApiKey::new("pk_live_SECRET123\n");
        assert_eq!(key.expose(), "pk_live_SECRET123");
        assert!(!format!("{key:?} {key}").contains("SECRET"));
        assert_eq!(
            key.redact("echo pk_live_SECRET123 back".into()),
            "echo [redacted] back"
        );
    }

    #[test]
    fn classifies_error_statuses() {
        let body = br#"{"error":"Not found","code":"NOT_FOUND"}"#;
        assert_eq!(
            classify(StatusCode::NOT_FOUND, body, None).kind().as_str(),
            "NotFound"
        );
        let exists = br#"{"error":"Service already exists","code":"GENERIC_BAD_REQUEST"}"#;
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, exists, None)
                .kind()
                .as_str(),
            "AlreadyExists"
        );
        let bad = br#"{"error":"Invalid agent name","code":"GENERIC_BAD_REQUEST"}"#;
        match classify(StatusCode::BAD_REQUEST, bad, None) {
            Error::InvalidRequest {
                status,
                code,
                message,
            } => {
                assert_eq!(
                    (status, code.as_str(), message.as_str()),
                    (400, "GENERIC_BAD_REQUEST", "Invalid agent name")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, b"", None)
                .kind()
                .as_str(),
            "Unauthorized"
        );
        assert_eq!(
            classify(StatusCode::FORBIDDEN, b"", None).kind().as_str(),
            "Unauthorized"
        );
        assert_eq!(
            classify(StatusCode::CONFLICT, b"{}", None).kind().as_str(),
            "Conflict"
        );
        let limited = classify(
            StatusCode::TOO_MANY_REQUESTS,
            b"",
            Some(Duration::from_secs(7)),
        );
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
        assert!(limited.kind().is_retryable());
        let html = b"<html><body>502 Bad Gateway</body></html>";
        let e = classify(StatusCode::BAD_GATEWAY, html, None);
        assert_eq!(e.kind().as_str(), "Transient");
        assert!(e.to_string().contains("non-JSON"), "{e}");
        assert!(
            !classify(StatusCode::UNPROCESSABLE_ENTITY, b"{}", None)
                .kind()
                .is_retryable()
        );
    }

    #[test]
    fn numeric_error_codes_are_accepted() {
        match classify(
            StatusCode::BAD_REQUEST,
            br#"{"error":"bad","code":401}"#,
            None,
        ) {
            Error::InvalidRequest { code, .. } => assert_eq!(code, "401"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("voice-starter"), "voice-starter");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
