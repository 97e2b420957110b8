//! The admin HTTP endpoint: `/metrics` (Prometheus text exposition),
//! `/healthz` (200 while the process serves requests and its data path
//! runs), `/readyz` (200, or 503 with a JSON body naming the failing
//! checks; `/healthz` answers in the same form) and `/sessions/NAME/sdp`
//! (the SDP of a streaming session, `application/sdp`). HTTP/1.1 only, GET
//! and HEAD only; a bearer token guards every path when configured.

pub mod config;
pub mod descriptions;
pub mod readiness;

pub use config::{AdminConfig, AdminConfigError};
pub use descriptions::SessionDescriptions;
pub use readiness::{Readiness, ReadinessReport};

use super::http_server::{Upkeep, bearer_authorized, serve_connections};
use super::metrics::Metrics;
use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Histogram samples are drained into buckets at least this often, so memory
/// stays bounded when nobody scrapes.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);
/// RFC 4566 §8.1.
const SDP_CONTENT_TYPE: &str = "application/sdp";
/// The Prometheus text exposition format, version 0.0.4.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The running endpoint.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has stopped after `shutdown` completed.
    pub async fn join(self) -> anyhow::Result<()> {
        self.task.await.context("admin endpoint task")
    }
}

/// What the endpoint shows.
#[derive(Clone)]
pub struct AdminViews {
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub descriptions: SessionDescriptions,
}

impl AdminViews {
    /// `metrics` and `readiness`, with no session descriptions yet.
    pub fn new(metrics: Metrics, readiness: Readiness) -> Self {
        Self {
            metrics,
            readiness,
            descriptions: SessionDescriptions::new(),
        }
    }
}

struct State {
    views: AdminViews,
    token: Option<String>,
}

/// Validates `config`, binds, and serves on a spawned task until `shutdown`
/// completes. Returns once the socket is bound.
pub async fn serve_admin(
    config: &AdminConfig,
    views: AdminViews,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<AdminServer> {
    let token = config.load_token()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("admin.listen {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let state = Arc::new(State { views, token });
    let upkeep = Upkeep {
        period: UPKEEP_PERIOD,
        run: Box::new({
            let metrics = state.views.metrics.clone();
            move || metrics.run_upkeep()
        }),
    };
    let handler = move |request: Request<Incoming>, _peer, _stop: watch::Receiver<()>| {
        let response = respond(&state, &request);
        async move { response }
    };
    let task = tokio::spawn(serve_connections(
        "admin",
        listener,
        None,
        handler,
        shutdown,
        Some(upkeep),
    ));
    tracing::info!(%local_addr, "admin endpoint listening");
    Ok(AdminServer { local_addr, task })
}

fn respond(state: &State, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(token) = &state.token
        && !bearer_authorized(request.headers(), token)
    {
        let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let views = &state.views;
    let path = request.uri().path();
    match path {
        "/metrics" => with_type(
            StatusCode::OK,
            METRICS_CONTENT_TYPE,
            views.metrics.render().into(),
        ),
        "/healthz" => report(&views.readiness.liveness()),
        "/readyz" => report(&views.readiness.report()),
        _ => match session_of_sdp_path(path) {
            Some(name) => description(name, views.descriptions.get(name)),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    }
}

/// `NAME` of `/sessions/NAME/sdp`.
fn session_of_sdp_path(path: &str) -> Option<&str> {
    let name = path.strip_prefix("/sessions/")?.strip_suffix("/sdp")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// 200 with the SDP, or 404 saying why there is none.
fn description(name: &str, sdp: Option<Result<String, String>>) -> Response<Full<Bytes>> {
    match sdp {
        Some(Ok(sdp)) => with_type(StatusCode::OK, SDP_CONTENT_TYPE, sdp.into()),
        Some(Err(reason)) => text(
            StatusCode::NOT_FOUND,
            &format!("session {name} has no description: {reason}\n"),
        ),
        None => text(
            StatusCode::NOT_FOUND,
            &format!("no streaming session {name} is running\n"),
        ),
    }
}

/// 200 or 503, with the report as JSON.
fn report(report: &ReadinessReport) -> Response<Full<Bytes>> {
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    match serde_json::to_vec(report) {
        Ok(body) => with_type(status, "application/json", body.into()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    with_type(
        status,
        "text/plain; charset=utf-8",
        Bytes::copy_from_slice(body.as_bytes()),
    )
}

fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
