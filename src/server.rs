//! The operator's HTTP endpoints: `/metrics` (Prometheus) on one port, `/healthz` and
//! `/readyz` on another, as Kubernetes probes expect.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What `/readyz` reports (starting: not ready).
#[derive(Default)]
pub struct Health {
    role: AtomicU8,
}

const STANDBY: u8 = 1;
const LEADING_SYNCING: u8 = 2;
const LEADING_SYNCED: u8 = 3;

impl Health {
    /// This instance waits for the leader lease (ready: it is a healthy standby).
    pub fn set_standby(&self) {
        self.role.store(STANDBY, Ordering::SeqCst);
    }
    /// This instance reconciles; its watches are still filling their caches.
    pub fn set_leading(&self) {
        self.role.store(LEADING_SYNCING, Ordering::SeqCst);
    }
    /// The watches have listed everything once.
    pub fn set_synced(&self) {
        self.role.store(LEADING_SYNCED, Ordering::SeqCst);
    }
    /// Ready: a known standby, or a leader whose watches are synced.
    pub fn ready(&self) -> (bool, &'static str) {
        match self.role.load(Ordering::SeqCst) {
            STANDBY => (true, "standby: waiting for the leader lease"),
            LEADING_SYNCED => (true, "leader: watches synced"),
            LEADING_SYNCING => (false, "leader: watches not synced yet"),
            _ => (false, "starting"),
        }
    }
}

/// Serves `/metrics` on `addr` until the process ends.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state((metrics, health));
    serve(addr, app).await
}

/// Serves `/healthz` and `/readyz` on `addr` until the process ends.
pub async fn serve_health(addr: SocketAddr, health: Arc<Health>) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    serve(addr, app).await
}

async fn serve(addr: SocketAddr, app: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("failed to listen on {addr}: {e}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn metrics_handler(
    State((metrics, health)): State<(Arc<Metrics>, Arc<Health>)>,
) -> impl IntoResponse {
    // `/readyz` as a gauge, read at scrape time (a scrape target stays up while not ready).
    metrics.set_operator_ready(health.ready().0);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let (ready, why) = health.ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, why)
}
