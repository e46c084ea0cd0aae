//! Connections: hyper serves each one, and a layer in front of the router applies faults and
//! records the journal. A dropped connection is an error returned to hyper, which then closes
//! the socket without writing any response.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::contract::{self, Contract};
use super::error::{ApiError, code_for_status, error_json, json_response};
use super::faults::{Action, Fault, FaultBody};
use super::journal::{JournalEntry, Operation, classify, secret_set_of};
use super::stamps::format_ts;
use super::{Shared, admin, api, bearer, lock};

/// How long open connections get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest request body strict mode reads (the routes' own limit, axum's default).
const MAX_REQUEST_BODY: usize = 2 * 1024 * 1024;

/// Largest non-JSON error text turned into a JSON error body.
const MAX_ERROR_TEXT: usize = 64 * 1024;

/// The error that makes hyper drop a connection.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
pub struct ConnectionDropped;

/// The whole application: the API under `/v1` and the admin API under `/_emulator`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .nest("/v1", api::routes())
        .nest("/_emulator", admin::routes())
        .fallback(api::not_found)
        .with_state(shared)
}

/// Accepts connections until shutdown, then drains them.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to accept a connection");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let router = router.clone();
                let mut stop = shutdown.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        dispatch(shared.clone(), router.clone(), req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        result = conn.as_mut() => {
                            if let Err(e) = result {
                                tracing::debug!(error = %e, "connection closed with an error");
                            }
                        }
                        _ = stopped(&mut stop) => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

/// Resolves once shutdown is signalled (or the sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Runs the router. Every error it answers is the API's `{error, code}` JSON, axum's own
/// rejections included (a bad query string, path or body).
async fn call(router: Router, req: Request<Body>) -> Response<Body> {
    let response = match router.oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    json_errors(response).await
}

fn is_json(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// An error answer that is not JSON (axum's plain-text rejections) as `{error, code}`, with
/// its text as the message.
async fn json_errors(response: Response<Body>) -> Response<Body> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_owned()
    } else {
        text
    };
    let json = json_response(status, error_json(&message, &code_for_status(status)));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Response::from_parts(parts, json.into_body())
}

/// Strict mode: the request is checked against the contract (a violation is answered 400 and
/// not carried out), then the answer is (a violation is only recorded). Returns the answer and
/// the violation, if any, for the journal.
async fn strict_call(
    shared: &Shared,
    router: Router,
    req: Request<Body>,
) -> (Response<Body>, Option<String>) {
    let contract = Contract::get();
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REQUEST_BODY).await else {
        let error = ApiError::bad_request("request body too large or unreadable");
        let violation = format!("request: body: {error}");
        return (
            axum::response::IntoResponse::into_response(error),
            Some(violation),
        );
    };
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    // A path the contract does not know is answered as usual (404 or 405): nothing to check.
    let Some((op, params)) = contract.operation(&method, &path) else {
        return (
            call(router, Request::from_parts(parts, Body::from(bytes))).await,
            None,
        );
    };
    // An unknown key is answered 401 before anything is checked, as the API does.
    let known = bearer(&parts.headers).is_some_and(|t| shared.auth.session_org(t).is_some());
    if known {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let checked = contract.check_request(
            op,
            &params,
            &contract::Request {
                query: parts.uri.query(),
                content_type,
                body: &bytes,
            },
        );
        if let Err(v) = checked {
            let response = ApiError::bad_request(v.to_string());
            return (
                axum::response::IntoResponse::into_response(response),
                Some(format!("request: {v}")),
            );
        }
    }
    let response = call(router, Request::from_parts(parts, Body::from(bytes))).await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let violation = contract
        .check_response(op, parts.status.as_u16(), content_type, &bytes)
        .err()
        .map(|v| format!("response {} of {}: {v}", parts.status.as_u16(), op.id));
    if let Some(v) = &violation {
        tracing::warn!(method = %method, path = %path, violation = %v, "the emulator's answer breaks the contract");
    }
    (Response::from_parts(parts, Body::from(bytes)), violation)
}

/// One request: admin requests go straight to the router; `/v1` requests may meet a fault and
/// are journaled.
async fn dispatch(
    shared: Arc<Shared>,
    router: Router,
    req: Request<Incoming>,
) -> Result<Response<Body>, ConnectionDropped> {
    let req = req.map(Body::new);
    let path = req.uri().path();
    if path != "/v1" && !path.starts_with("/v1/") {
        return Ok(call(router, req).await);
    }
    let method = req.method().clone();
    let path = path.to_owned();
    let arrived = format_ts(jiff::Timestamp::now());
    let (operation, agent) = classify(&method, &path);
    let set = secret_set_of(&path);
    let fault = take_fault(&shared, &method, &path);
    let latency = shared.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // Recorded when the answer is ready, or on drop when the client gave up first (its entry
    // then has no status, like a dropped connection).
    let mut pending = PendingEntry {
        shared: shared.clone(),
        operation,
        entry: Some(JournalEntry {
            seq: 0,
            method: method.as_str().to_owned(),
            path,
            status: None,
            timestamp: arrived,
            operation: String::new(),
            agent,
            fault: fault.as_ref().map(|f| f.kind().to_owned()),
            force_redeploy: false,
            secret_set: set,
            violation: None,
        }),
    };

    // Answers made by injected faults are exempt from strict mode.
    let result = match &fault {
        None if shared.strict() => {
            let (response, violation) = strict_call(&shared, router, req).await;
            if let Some(entry) = pending.entry.as_mut() {
                entry.violation = violation;
            }
            Ok(response)
        }
        None => Ok(call(router, req).await),
        Some(fault) => apply_fault(fault, router, req).await,
    };
    if let Some(entry) = pending.entry.as_mut() {
        entry.status = result.as_ref().ok().map(|r| r.status().as_u16());
        if entry.agent.is_none() {
            entry.agent = result
                .as_ref()
                .ok()
                .and_then(|r| r.extensions().get::<api::JournalAgent>())
                .map(|a| a.0.clone());
        }
        entry.force_redeploy = result
            .as_ref()
            .is_ok_and(|r| r.extensions().get::<api::JournalForceRedeploy>().is_some());
        tracing::debug!(method = %entry.method, path = %entry.path, status = entry.status, "request");
    }
    drop(pending);
    result
}

/// A journal entry written when dropped (answered or abandoned).
struct PendingEntry {
    shared: Arc<Shared>,
    operation: Operation,
    entry: Option<JournalEntry>,
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            lock(&self.shared.journal).record(self.operation, entry);
        }
    }
}

fn take_fault(shared: &Shared, method: &Method, path: &str) -> Option<Fault> {
    if shared.fault_count.load(Ordering::Acquire) == 0 {
        return None;
    }
    let mut faults = lock(&shared.faults);
    let fault = faults.take(method, path);
    shared.fault_count.store(faults.len(), Ordering::Release);
    fault
}

async fn apply_fault(
    fault: &Fault,
    router: Router,
    req: Request<Body>,
) -> Result<Response<Body>, ConnectionDropped> {
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut response = match fault.action() {
        Action::Drop => return Err(ConnectionDropped),
        Action::PassThrough => return Ok(call(router, req).await),
        Action::Truncate { status } => {
            let response = call(router, req).await;
            let (mut parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let cut = bytes.slice(..bytes.len() / 2);
            if let Some(status) = status.and_then(|s| StatusCode::from_u16(s).ok()) {
                parts.status = status;
            }
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            Response::from_parts(parts, Body::from(cut))
        }
        Action::Respond { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            fault_response(status, body)
        }
    };
    if let Some(seconds) = fault.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    Ok(response)
}

fn fault_response(status: StatusCode, body: Option<FaultBody>) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let error = error_json(reason, &code_for_status(status));
    let (content_type, bytes): (&'static str, Vec<u8>) = match body {
        None => ("application/json; charset=utf-8", error),
        Some(FaultBody::Malformed) => (
            "application/json; charset=utf-8",
            error[..error.len() / 2].to_vec(),
        ),
        Some(FaultBody::NonJson) => (
            "text/html",
            format!(
                "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center>\
                 <h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n\
                 </html>\r\n",
                code = status.as_u16()
            )
            .into_bytes(),
        ),
        Some(FaultBody::Custom(text)) => {
            let content_type = if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
                "application/json; charset=utf-8"
            } else {
                "text/plain; charset=utf-8"
            };
            (content_type, text.into_bytes())
        }
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
