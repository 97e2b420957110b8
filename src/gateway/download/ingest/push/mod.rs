//! HTTP push of download objects: one HTTP/1.1 listener for every download
//! session.
//!
//! - `PUT /sessions/{session}/objects/{content-location}`: the rest of the
//!   path is the Content-Location;
//! - `POST /sessions/{session}/objects` with a `Content-Location` header.
//!
//! `Content-Type` is passed through to the FDT. The body streams into a spool
//! file (never whole in memory) under the size limit, then waits for room in
//! the session's queue. Every refusal is a 4xx/5xx with a JSON body naming the
//! input and the reason, and a metric.

pub mod config;
pub mod spool;

pub use config::{PushConfig, PushConfigError};

use super::{IngestQueue, IngestedObject, ObjectOrigin};
use crate::protocol::flute::content_location::canonical_content_location;
use crate::runtime::http_server::{bearer_authorized, serve_connections};
use crate::runtime::metrics::{IngestMetrics, IngestRejectReason, LabelValue, PushMetrics};
use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use spool::SpoolError;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The download sessions that accept pushed objects. The session runtime
/// registers each session's queue when it starts and removes it when it
/// stops; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PushSessions {
    by_name: Arc<RwLock<HashMap<String, PushTarget>>>,
}

#[derive(Debug, Clone)]
struct PushTarget {
    queue: IngestQueue,
    metrics: IngestMetrics,
}

impl PushSessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Objects pushed to `session` go to `queue` from now on.
    pub fn register(&self, session: &str, queue: IngestQueue, metrics: IngestMetrics) {
        self.by_name
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session.to_owned(), PushTarget { queue, metrics });
    }

    /// Pushes to `session` are answered 404 from now on.
    pub fn unregister(&self, session: &str) {
        self.by_name
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(session);
    }

    fn get(&self, session: &str) -> Option<PushTarget> {
        self.by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session)
            .cloned()
    }
}

/// The running endpoint.
#[derive(Debug)]
pub struct PushServer {
    local_addr: SocketAddr,
    spool_dir: PathBuf,
    task: JoinHandle<()>,
}

impl PushServer {
    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where uploads are spooled.
    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }

    /// Waits until the server has stopped after `shutdown` completed.
    pub async fn join(self) -> anyhow::Result<()> {
        self.task.await.context("push endpoint task")
    }
}

struct State {
    sessions: PushSessions,
    token: Option<String>,
    max_object_bytes: u64,
    request_timeout: Duration,
    spool_dir: PathBuf,
    unattributed: PushMetrics,
}

/// Validates `config`, prepares the spool folder (below `state_dir` unless
/// configured), binds, and serves on a spawned task until `shutdown`
/// completes. Returns once the socket is bound.
pub async fn serve_push(
    config: &PushConfig,
    state_dir: &Path,
    sessions: PushSessions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<PushServer> {
    let token = config.load_token()?;
    let spool_dir = config.spool_dir(state_dir);
    spool::prepare(&spool_dir)
        .with_context(|| format!("push spool folder {}", spool_dir.display()))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("push.listen {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let state = Arc::new(State {
        sessions,
        token,
        max_object_bytes: config.max_object_bytes,
        request_timeout: config.request_timeout,
        spool_dir: spool_dir.clone(),
        unattributed: PushMetrics::new(),
    });
    let handler = move |request: Request<Incoming>, _peer, stop: watch::Receiver<()>| {
        let state = state.clone();
        async move { respond(&state, request, stop).await }
    };
    let task = tokio::spawn(serve_connections(
        "push", listener, None, handler, shutdown, None,
    ));
    tracing::info!(%local_addr, spool = %spool_dir.display(), "push endpoint listening");
    Ok(PushServer {
        local_addr,
        spool_dir,
        task,
    })
}

/// A refused request: status, metric reason and a message for the client.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    reason: IngestRejectReason,
    message: String,
    allow: Option<&'static str>,
}

impl Refusal {
    fn new(status: StatusCode, reason: IngestRejectReason, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            allow: None,
        }
    }

    fn malformed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            IngestRejectReason::Malformed,
            message,
        )
    }
}

/// What a push request's path addresses.
#[derive(Debug, PartialEq, Eq)]
pub enum PushResource<'a> {
    /// `/sessions/{session}/objects`
    Collection { session: &'a str },
    /// `/sessions/{session}/objects/{content-location}` (still encoded).
    Object {
        session: &'a str,
        content_location: &'a str,
    },
}

impl<'a> PushResource<'a> {
    /// The resource `path` names, if it names one.
    pub fn parse(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix("/sessions/")?;
        let (session, rest) = rest.split_once('/')?;
        if session.is_empty() {
            return None;
        }
        match rest.strip_prefix("objects")? {
            "" => Some(Self::Collection { session }),
            objects => objects
                .strip_prefix('/')
                .map(|content_location| Self::Object {
                    session,
                    content_location,
                }),
        }
    }

    pub fn session(&self) -> &'a str {
        match self {
            Self::Collection { session } | Self::Object { session, .. } => session,
        }
    }
}

async fn respond(
    state: &State,
    request: Request<Incoming>,
    stop: watch::Receiver<()>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let resource = PushResource::parse(&path);
    let target = resource
        .as_ref()
        .and_then(|r| state.sessions.get(r.session()));
    match accept(state, request, resource.as_ref(), target.as_ref(), stop).await {
        Ok(accepted) => json(StatusCode::CREATED, &accepted),
        Err(refusal) => {
            match &target {
                Some(target) => target.metrics.rejected(refusal.reason),
                None => state.unattributed.rejected(refusal.reason),
            }
            tracing::info!(
                status = refusal.status.as_u16(),
                reason = refusal.reason.as_str(),
                message = refusal.message,
                "push refused"
            );
            let mut response = json(
                refusal.status,
                &serde_json::json!({ "error": refusal.message }),
            );
            let headers = response.headers_mut();
            if refusal.status == StatusCode::UNAUTHORIZED {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            if let Some(allow) = refusal.allow {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            response
        }
    }
}

/// Checks the request, spools its body and queues the object.
async fn accept(
    state: &State,
    request: Request<Incoming>,
    resource: Option<&PushResource<'_>>,
    target: Option<&PushTarget>,
    mut stop: watch::Receiver<()>,
) -> Result<serde_json::Value, Refusal> {
    if let Some(token) = &state.token
        && !bearer_authorized(request.headers(), token)
    {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            IngestRejectReason::Unauthorized,
            "missing or wrong bearer token (Authorization: Bearer <token>)",
        ));
    }
    let Some(resource) = resource else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            IngestRejectReason::Malformed,
            format!(
                "no resource at `{}`: use PUT /sessions/{{session}}/objects/{{content-location}} or POST /sessions/{{session}}/objects",
                request.uri().path()
            ),
        ));
    };
    let session = resource.session();
    let Some(target) = target else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            IngestRejectReason::UnknownSession,
            format!("unknown download session `{session}`"),
        ));
    };
    let (allowed, raw_location) = match resource {
        PushResource::Collection { .. } => ("POST", None),
        PushResource::Object {
            content_location, ..
        } => ("PUT", Some(*content_location)),
    };
    if request.method().as_str() != allowed {
        let mut refusal = Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            IngestRejectReason::Malformed,
            format!(
                "method {} not allowed on `{}`: use {allowed}",
                request.method(),
                request.uri().path()
            ),
        );
        refusal.allow = Some(allowed);
        return Err(refusal);
    }
    if let Some(query) = request.uri().query() {
        return Err(Refusal::malformed(format!(
            "query string `?{query}` not allowed: the Content-Location is the path after objects/"
        )));
    }
    let headers = request.headers();
    let raw_location = match raw_location {
        Some(location) => location,
        None => header_text(headers, header::CONTENT_LOCATION)?.ok_or_else(|| {
            Refusal::malformed("POST without a Content-Location header naming the object")
        })?,
    };
    let content_location = canonical_content_location(raw_location).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            IngestRejectReason::BadContentLocation,
            format!("Content-Location `{raw_location}`: {e}"),
        )
    })?;
    let content_type = header_text(headers, header::CONTENT_TYPE)?
        .map(|value| {
            if is_media_type(value) {
                Ok(value.to_owned())
            } else {
                Err(Refusal::malformed(format!(
                    "Content-Type `{value}` is not a media type (type/subtype[; parameters])"
                )))
            }
        })
        .transpose()?;
    check_length(headers, state.max_object_bytes)?;

    let body = request.into_body();
    let spooled = tokio::time::timeout(
        state.request_timeout,
        spool::spool_body(&state.spool_dir, body, state.max_object_bytes),
    )
    .await
    .map_err(|_| {
        Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            IngestRejectReason::Malformed,
            format!(
                "body of `{content_location}` not received within {:?}",
                state.request_timeout
            ),
        )
    })?;
    let (spooled, bytes) = spooled.map_err(|e| match e {
        SpoolError::TooLarge { limit } => too_large(&content_location, limit),
        SpoolError::Body(e) => {
            Refusal::malformed(format!("body of `{content_location}` incomplete: {e}"))
        }
        SpoolError::Io { .. } => {
            tracing::error!(error = %e, "push spool write failed");
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                IngestRejectReason::Unreadable,
                format!("`{content_location}` could not be stored: {e}"),
            )
        }
    })?;

    let closed = || {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            IngestRejectReason::QueueClosed,
            format!("download session `{session}` is not accepting objects (stopping)"),
        )
    };
    let permit = tokio::select! {
        permit = target.queue.reserve() => permit.map_err(|_| closed())?,
        _ = stop.changed() => return Err(closed()),
    };
    permit.send(IngestedObject {
        content_location: content_location.clone(),
        content_type: content_type.clone(),
        path: spooled.keep(),
        origin: ObjectOrigin::Push,
        spooled: true,
    });
    target.metrics.ingested(ObjectOrigin::Push, bytes);
    Ok(serde_json::json!({
        "session": session,
        "content_location": content_location,
        "content_type": content_type,
        "bytes": bytes,
    }))
}

/// A header as text, or 400 when it is not visible ASCII.
fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<&str>, Refusal> {
    headers
        .get(&name)
        .map(|v| {
            v.to_str()
                .map_err(|_| Refusal::malformed(format!("{name} header is not visible ASCII")))
        })
        .transpose()
}

/// `type "/" subtype` of tokens, optionally followed by `;` parameters
/// (RFC 9110 §8.3.1); the FDT carries it as the object's Content-Type.
pub fn is_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    let is_token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    essence
        .split_once('/')
        .is_some_and(|(kind, subtype)| is_token(kind) && is_token(subtype))
}

/// A body must be delimited (RFC 9112 §6.3: no length and no chunking would
/// mean an empty body, almost always a client mistake) and, when its length
/// is declared, within the limit before a byte is read.
fn check_length(headers: &HeaderMap, limit: u64) -> Result<(), Refusal> {
    match headers.get(header::CONTENT_LENGTH) {
        Some(value) => {
            let length: u64 = value
                .to_str()
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Refusal::malformed("Content-Length is not a number"))?;
            if length > limit {
                return Err(too_large_declared(length, limit));
            }
            Ok(())
        }
        None if headers.contains_key(header::TRANSFER_ENCODING) => Ok(()),
        None => Err(Refusal::new(
            StatusCode::LENGTH_REQUIRED,
            IngestRejectReason::Malformed,
            "request without Content-Length or chunked Transfer-Encoding",
        )),
    }
}

fn too_large(content_location: &str, limit: u64) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        IngestRejectReason::TooLarge,
        format!("`{content_location}` exceeds the {limit}-byte object limit"),
    )
}

fn too_large_declared(length: u64, limit: u64) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        IngestRejectReason::TooLarge,
        format!("Content-Length {length} exceeds the {limit}-byte object limit"),
    )
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut text = body.to_string();
    text.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        for ok in [
            "video/mp4",
            "application/dash+xml",
            "text/plain; charset=utf-8",
            "video/iso.segment",
        ] {
            assert!(is_media_type(ok), "{ok}");
        }
        for bad in ["", "mp4", "video/", "/mp4", "video/mp4/x", "a b/c", "<x>/y"] {
            assert!(!is_media_type(bad), "{bad}");
        }
    }

    #[test]
    fn resources() {
        assert_eq!(
            PushResource::parse("/sessions/files/objects"),
            Some(PushResource::Collection { session: "files" })
        );
        assert_eq!(
            PushResource::parse("/sessions/files/objects/live/seg%201.m4s"),
            Some(PushResource::Object {
                session: "files",
                content_location: "live/seg%201.m4s"
            })
        );
        assert_eq!(
            PushResource::parse("/sessions/files/objects/"),
            Some(PushResource::Object {
                session: "files",
                content_location: ""
            })
        );
        for other in [
            "/",
            "/sessions",
            "/sessions/",
            "/sessions//objects",
            "/sessions/files",
            "/sessions/files/object",
            "/sessions/files/objectsx",
            "/session/files/objects",
        ] {
            assert_eq!(PushResource::parse(other), None, "{other}");
        }
    }
}
