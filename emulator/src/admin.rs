//! The admin API under `/_emulator/`: faults, journal, reset, run-time config, out-of-band
//! edits (drift) and sessions. No auth; routes about one organization take its API key from
//! `Authorization: Bearer <key>` or the `key` query parameter.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Deserializer, Serialize};

use super::api::json;
use super::assumptions::Profile;
use super::body::{AgentPatch, BodyKind, parse_object};
use super::error::ApiError;
use super::faults::Fault;
use super::journal::JournalFilter;
use super::pattern::Pattern;
use super::settings::Settings;
use super::{Shared, bearer, lock};

/// Delays and failure patterns in force (`GET`/`PUT /_emulator/config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// Deployment readiness delay, milliseconds.
    pub ready_delay_ms: u64,
    /// Reconciliation delay, milliseconds.
    pub reconcile_delay_ms: u64,
    /// Secret set provisioning delay, milliseconds.
    pub secret_ready_delay_ms: u64,
    /// Images whose deployments crash.
    pub crash_image_pattern: Option<String>,
    /// Images whose deployments fail to pull.
    pub pull_fail_image_pattern: Option<String>,
    /// Secret set names whose provisioning fails.
    pub secret_fail_pattern: Option<String>,
    /// How agent reads and writes answer.
    #[serde(default)]
    pub profile: Profile,
    /// Latency added to every `/v1` request, milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Strict mode: requests and answers are checked against the official contract.
    #[serde(default)]
    pub strict: bool,
}

fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A change of the run-time config: absent fields stay, `null` patterns are cleared. Applies
/// to deployments and secret set changes made afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigUpdate {
    /// New readiness delay, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_delay_ms: Option<u64>,
    /// New reconciliation delay, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_delay_ms: Option<u64>,
    /// New secret set provisioning delay, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ready_delay_ms: Option<u64>,
    /// `Some(None)` clears the pattern.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub crash_image_pattern: Option<Option<String>>,
    /// `Some(None)` clears the pattern.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub pull_fail_image_pattern: Option<Option<String>>,
    /// `Some(None)` clears the pattern.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret_fail_pattern: Option<Option<String>>,
    /// New response profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// New latency added to every `/v1` request, milliseconds (from the next request on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Strict mode on or off (from the next request on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// What `POST /_emulator/reset` clears besides the journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetOptions {
    /// Also remove every fault.
    #[serde(default)]
    pub faults: bool,
    /// Also forget every organization (agents, secret sets, sessions).
    #[serde(default)]
    pub state: bool,
}

/// A live session (`GET /_emulator/agents/{name}/sessions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// Session id.
    pub session_id: String,
    /// Start time.
    pub started_at: String,
}

/// Totals (`GET /_emulator/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Organizations seen.
    pub organizations: usize,
    /// Agents over all organizations.
    pub agents: usize,
    /// Secret sets over all organizations.
    pub secret_sets: usize,
    /// Live sessions over all organizations.
    pub sessions: usize,
    /// Active faults.
    pub faults: usize,
    /// Journal entries kept.
    pub journal_entries: usize,
}

/// Largest fault definition accepted (custom bodies included).
const MAX_FAULT_BODY: usize = 64 * 1024 * 1024;

/// The admin routes (relative to `/_emulator`).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route(
            "/faults",
            get(list_faults)
                .post(add_fault)
                .delete(clear_faults)
                // Custom fault bodies may be huge on purpose (oversized-response tests).
                .layer(axum::extract::DefaultBodyLimit::max(MAX_FAULT_BODY)),
        )
        .route("/journal", get(journal))
        .route("/journal/counts", get(counts))
        .route("/violations", get(violations))
        .route("/reset", post(reset))
        .route("/config", get(get_config).put(put_config))
        .route("/agents/{name}", get(stored_agent).patch(drift))
        .route(
            "/agents/{name}/sessions",
            get(list_sessions).delete(end_agent_sessions),
        )
        .route("/sessions/{id}", delete(end_session))
        .fallback(super::api::not_found)
}

#[derive(Debug, Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// The organization named by the bearer header or `?key=`.
fn org_of(shared: &Shared, headers: &HeaderMap, query: &KeyQuery) -> Result<String, ApiError> {
    bearer(headers)
        .or(query.key.as_deref())
        .and_then(|token| shared.auth.private_org(token))
        .ok_or(ApiError::Unauthorized)
}

async fn health() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let mut stats = Stats::default();
    {
        let mut state = lock(&shared.state);
        let now = state.now();
        for org in state.orgs() {
            stats.organizations += 1;
            stats.agents += org.agent_count();
            stats.secret_sets += org.secret_set_count();
            stats.sessions += org.session_count(now);
        }
    }
    stats.faults = lock(&shared.faults).len();
    stats.journal_entries = lock(&shared.journal).len();
    json(StatusCode::OK, &stats)
}

async fn list_faults(State(shared): State<Arc<Shared>>) -> Response {
    let faults = lock(&shared.faults).list();
    json(StatusCode::OK, &serde_json::json!({ "faults": faults }))
}

async fn add_fault(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    let fault: Fault = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid fault: {e}")))?;
    let mut faults = lock(&shared.faults);
    let active = faults.add(fault).map_err(ApiError::BadRequest)?;
    shared.fault_count.store(faults.len(), Ordering::Release);
    tracing::info!(id = active.id, path = %active.fault.path, kind = active.fault.kind(), "fault injected");
    Ok(json(StatusCode::CREATED, &active))
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    let mut faults = lock(&shared.faults);
    let cleared = faults.clear();
    shared.fault_count.store(0, Ordering::Release);
    json(StatusCode::OK, &serde_json::json!({ "cleared": cleared }))
}

async fn journal(
    State(shared): State<Arc<Shared>>,
    Query(filter): Query<JournalFilter>,
) -> Response {
    let entries = lock(&shared.journal).query(&filter);
    json(StatusCode::OK, &serde_json::json!({ "entries": entries }))
}

/// Strict mode's findings: `{count, violations: [journal entries]}` (`count` includes
/// entries the journal no longer keeps).
async fn violations(State(shared): State<Arc<Shared>>) -> Response {
    let journal = lock(&shared.journal);
    let entries = journal.query(&JournalFilter {
        violations: true,
        ..JournalFilter::default()
    });
    let count = journal.counts().violations;
    drop(journal);
    json(
        StatusCode::OK,
        &serde_json::json!({ "count": count, "violations": entries }),
    )
}

async fn counts(State(shared): State<Arc<Shared>>) -> Response {
    let counts = lock(&shared.journal).counts();
    json(StatusCode::OK, &counts)
}

async fn reset(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    let options: ResetOptions = if body.iter().all(u8::is_ascii_whitespace) {
        ResetOptions::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid reset options: {e}")))?
    };
    lock(&shared.journal).clear();
    if options.faults {
        lock(&shared.faults).clear();
        shared.fault_count.store(0, Ordering::Release);
    }
    if options.state {
        lock(&shared.state).clear();
        shared.changed();
    }
    Ok(json(StatusCode::OK, &options))
}

fn config_view(settings: &Settings, latency: Duration, strict: bool) -> RuntimeConfig {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    RuntimeConfig {
        ready_delay_ms: ms(settings.ready_delay),
        reconcile_delay_ms: ms(settings.reconcile_delay),
        secret_ready_delay_ms: ms(settings.secret_ready_delay),
        crash_image_pattern: settings.crash_image.as_ref().map(|p| p.as_str().to_owned()),
        pull_fail_image_pattern: settings
            .pull_fail_image
            .as_ref()
            .map(|p| p.as_str().to_owned()),
        secret_fail_pattern: settings.secret_fail.as_ref().map(|p| p.as_str().to_owned()),
        profile: settings.profile,
        latency_ms: ms(latency),
        strict,
    }
}

async fn get_config(State(shared): State<Arc<Shared>>) -> Response {
    let view = config_view(
        &lock(&shared.state).settings,
        shared.latency(),
        shared.strict(),
    );
    json(StatusCode::OK, &view)
}

fn compile(pattern: Option<Option<String>>) -> Result<Option<Option<Pattern>>, ApiError> {
    match pattern {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(p)) => Pattern::image(&p)
            .map(|p| Some(Some(p)))
            .map_err(|e| ApiError::BadRequest(e.to_string())),
    }
}

async fn put_config(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    let update: ConfigUpdate = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid config: {e}")))?;
    let crash = compile(update.crash_image_pattern)?;
    let pull = compile(update.pull_fail_image_pattern)?;
    let secret = compile(update.secret_fail_pattern)?;
    let mut state = lock(&shared.state);
    let s = &mut state.settings;
    if let Some(ms) = update.ready_delay_ms {
        s.ready_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = update.reconcile_delay_ms {
        s.reconcile_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = update.secret_ready_delay_ms {
        s.secret_ready_delay = Duration::from_millis(ms);
    }
    if let Some(p) = crash {
        s.crash_image = p;
    }
    if let Some(p) = pull {
        s.pull_fail_image = p;
    }
    if let Some(p) = secret {
        s.secret_fail = p;
    }
    if let Some(profile) = update.profile {
        s.profile = profile;
    }
    if let Some(ms) = update.latency_ms {
        shared.set_latency(Duration::from_millis(ms));
    }
    if let Some(strict) = update.strict {
        shared.set_strict(strict);
    }
    let view = config_view(s, shared.latency(), shared.strict());
    drop(state);
    tracing::info!(?view, "emulator config changed");
    Ok(json(StatusCode::OK, &view))
}

/// The agent as stored, with every field, whatever the response profile.
async fn stored_agent(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let org = org_of(&shared, &headers, &query)?;
    let view = shared.with_org(&org, |org, _, now| org.get_agent(&name, now))?;
    Ok(json(StatusCode::OK, &view))
}

async fn drift(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let org = org_of(&shared, &headers, &query)?;
    let patch = AgentPatch::parse(&parse_object(&body)?, BodyKind::Update)?;
    let view = shared.with_org(&org, |org, settings, now| {
        org.update_agent(&name, &patch, settings, now)
    })?;
    shared.changed();
    tracing::info!(agent = %name, deployment = %view.desired_deployment_id, "agent changed out of band");
    Ok(json(StatusCode::OK, &view))
}

async fn list_sessions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let org = org_of(&shared, &headers, &query)?;
    let sessions = shared.with_org(&org, |org, _, now| org.sessions(&name, now))?;
    let sessions: Vec<SessionInfo> = sessions
        .into_iter()
        .map(|(session_id, started_at)| SessionInfo {
            session_id,
            started_at,
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "sessions": sessions }),
    ))
}

async fn end_agent_sessions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let org = org_of(&shared, &headers, &query)?;
    let ended = shared.with_org(&org, |org, _, now| org.end_sessions(&name, now))?;
    shared.changed();
    Ok(json(StatusCode::OK, &serde_json::json!({ "ended": ended })))
}

async fn end_session(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<KeyQuery>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let org = org_of(&shared, &headers, &query)?;
    if !shared.with_org(&org, |org, _, _| org.end_session(&id)) {
        return Err(ApiError::NotFound(format!("session {id:?} not found")));
    }
    shared.changed();
    Ok(json(StatusCode::OK, &serde_json::json!({ "ended": 1 })))
}
