//! The emulated `/v1` routes.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::{AgentPatch, BodyKind, SecretSetBody, parse_object, valid_set_name};
use super::error::{ApiError, json_response};
use super::views::{RegionListView, SecretSetKeysView, SessionView};
use super::{Profile, Shared, bearer};

/// The caller's organization, from `Authorization: Bearer <private key>`.
pub struct Caller {
    /// Organization key.
    pub org: String,
}

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        bearer(&parts.headers)
            .and_then(|token| shared.auth.private_org(token))
            .map(|org| Caller { org })
            .ok_or(ApiError::Unauthorized)
    }
}

/// The agent a request concerned when its path does not say (create): read by the journal.
#[derive(Debug, Clone)]
pub struct JournalAgent(pub String);

/// Marks an update that asked for `forceRedeploy`: read by the journal.
#[derive(Clone, Copy)]
pub struct JournalForceRedeploy;

/// Serialises a value as the JSON answer.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_response(status, body),
        Err(e) => {
            ApiError::Internal(format!("failed to serialise the answer: {e}")).into_response()
        }
    }
}

fn ok_status() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "OK"}))
}

/// The `/v1` routes (relative to `/v1`).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/agents", get(list_agents).post(create_agent))
        .route(
            "/agents/{name}",
            get(get_agent).post(update_agent).delete(delete_agent),
        )
        .route("/public/{name}/start", post(start_session))
        .route("/regions", get(list_regions))
        .route("/secrets", get(list_secret_sets))
        .route(
            "/secrets/{set}",
            get(get_secret_set)
                .put(put_secret_set)
                .delete(delete_secret_set),
        )
        .route("/secrets/{set}/{key}", delete(delete_secret))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
}

/// 404 for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> Response {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        super::error::error_json("Method not allowed", "405"),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    include_active_deployment: Option<String>,
    region: Option<String>,
}

async fn list_agents(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Response {
    let include = query
        .include_active_deployment
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let view = shared.with_org(&caller.org, |org, _, now| {
        org.list_agents(query.region.as_deref(), include, now)
    });
    json(StatusCode::OK, &view)
}

async fn get_agent(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (view, profile) = shared.with_org(&caller.org, |org, settings, now| {
        (org.get_agent(&name, now), settings.profile)
    });
    Ok(json(StatusCode::OK, &profile.shape(&view?)))
}

/// `POST /agents`. The journal names the agent of a refused create too (when the body names
/// one), so a client that creates twice shows up as a refused create of that agent.
async fn create_agent(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch = AgentPatch::parse(&parse_object(&body)?, BodyKind::Create)?;
    let (created, profile) = shared.with_org(&caller.org, |org, settings, now| {
        (org.create_agent(&patch, settings, now), settings.profile)
    });
    let mut response = match created {
        Ok(view) => {
            shared.changed();
            tracing::info!(agent = %view.name, deployment = %view.desired_deployment_id, "created agent");
            json(StatusCode::OK, &profile.shape(&view))
        }
        Err(e) => e.into_response(),
    };
    if let Some(name) = &patch.service_name {
        response.extensions_mut().insert(JournalAgent(name.clone()));
    }
    Ok(response)
}

async fn update_agent(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch = AgentPatch::parse(&parse_object(&body)?, BodyKind::Update)?;
    let (view, profile) = shared.with_org(&caller.org, |org, settings, now| {
        (
            org.update_agent(&name, &patch, settings, now),
            settings.profile,
        )
    });
    let view = view?;
    if view.warning.is_none() {
        shared.changed();
        tracing::info!(agent = %name, deployment = %view.desired_deployment_id, "updated agent");
    }
    let mut response = json(StatusCode::OK, &profile.shape(&view));
    if patch.force_redeploy {
        response.extensions_mut().insert(JournalForceRedeploy);
    }
    Ok(response)
}

async fn delete_agent(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    shared.with_org(&caller.org, |org, _, _| org.delete_agent(&name))?;
    shared.changed();
    tracing::info!(agent = %name, "deleted agent");
    Ok(ok_status())
}

async fn start_session(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let org = bearer(&headers)
        .and_then(|token| shared.auth.session_org(token))
        .ok_or(ApiError::Unauthorized)?;
    let request = parse_object(&body)?;
    let create_room = match request.get("createDailyRoom") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("createDailyRoom must be a boolean")),
    };
    let id = shared.with_org(&org, |org, _, now| org.start_session(&name, now))?;
    shared.changed();
    let view = SessionView {
        session_id: id.to_string(),
        daily_room: create_room.then(|| format!("https://emulator.daily.co/{}", id.simple())),
        daily_token: create_room.then(|| format!("emulator-token-{}", id.simple())),
    };
    Ok(json(StatusCode::OK, &view))
}

async fn list_regions(State(shared): State<Arc<Shared>>, _caller: Caller) -> Response {
    let state = super::lock(&shared.state);
    json(
        StatusCode::OK,
        &RegionListView {
            regions: &state.settings.regions,
        },
    )
}

#[derive(Debug, Deserialize)]
struct RegionQuery {
    region: Option<String>,
}

async fn list_secret_sets(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Query(query): Query<RegionQuery>,
) -> Response {
    let view = shared.with_org(&caller.org, |org, _, now| {
        org.list_secret_sets(query.region.as_deref(), now)
    });
    json(StatusCode::OK, &view)
}

async fn get_secret_set(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(set): Path<String>,
) -> Result<Response, ApiError> {
    let (view, profile) = shared.with_org(&caller.org, |org, settings, now| {
        (org.get_secret_set(&set, now), settings.profile)
    });
    let view = view?;
    // The seed profile answers only what the CLI reads: the field names (no status; that is in
    // `GET /secrets`).
    if profile == Profile::Seed {
        return Ok(json(
            StatusCode::OK,
            &SecretSetKeysView {
                secrets: view.secrets,
            },
        ));
    }
    Ok(json(StatusCode::OK, &view))
}

async fn put_secret_set(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(set): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !valid_set_name(&set) {
        return Err(ApiError::bad_request(format!(
            "secret set name {set:?} is invalid: use 3 to 63 lowercase letters, digits, '-' or \
             '.', each dot-separated part starting and ending with a letter or digit"
        )));
    }
    let body = SecretSetBody::parse(&parse_object(&body)?)?;
    let view = shared.with_org(&caller.org, |org, settings, now| {
        org.put_secret_set(&set, body, settings, now)
    })?;
    shared.changed();
    Ok(json(StatusCode::ACCEPTED, &view))
}

async fn delete_secret_set(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(set): Path<String>,
) -> Result<Response, ApiError> {
    shared.with_org(&caller.org, |org, _, now| org.delete_secret_set(&set, now))?;
    shared.changed();
    Ok(ok_status())
}

async fn delete_secret(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path((set, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    shared.with_org(&caller.org, |org, settings, now| {
        org.delete_secret(&set, &key, settings, now)
    })?;
    shared.changed();
    Ok(ok_status())
}
