//! The Key Request function over HTTP/1.1 (TS 33.246 §6.2.1.3, §6.3.2.1A,
//! §6.3.2.1B, §6.3.2.2.1): `POST` to [`KEY_REQUEST_PATH`] with one of the key
//! management media types. Every request needs HTTP Digest with the B-TID as
//! username: none, a wrong one, an unknown user or a used nonce count get 401
//! with a fresh `WWW-Authenticate`; an accepted one gets the answer body with
//! `Authentication-Info` (rspauth).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::distribution::Distribution;
use crate::protocol::key_request::{
    Algorithm, AuthenticationInfo, Challenge, Credentials, KeyRequest, KeyResponse, NonceBook,
    NonceError,
};
use crate::runtime::http_server::serve_connections;
use crate::runtime::tls::TlsAcceptor;

/// Where the Key Request function listens.
pub const KEY_REQUEST_PATH: &str = "/keymanagement";
/// Largest request body read (a request lists at most 64 items).
const MAX_BODY: usize = 64 * 1024;
/// Live nonces kept at most.
const NONCE_CAPACITY: usize = 4096;

/// A UE's Digest password, wiped when dropped.
type Password = zeroize::Zeroizing<String>;

/// What the HTTP side shares between connections.
pub(super) struct KeyRequestFunction {
    pub(super) distribution: Arc<Distribution>,
    realm: String,
    algorithm: Algorithm,
    nonces: Mutex<NonceBook>,
    epoch: Instant,
}

impl KeyRequestFunction {
    pub(super) fn new(
        distribution: Arc<Distribution>,
        realm: String,
        algorithm: Algorithm,
        nonce_lifetime: Duration,
    ) -> Self {
        Self {
            distribution,
            realm,
            algorithm,
            nonces: Mutex::new(NonceBook::new(nonce_lifetime, NONCE_CAPACITY)),
            epoch: Instant::now(),
        }
    }

    fn nonces(&self) -> std::sync::MutexGuard<'_, NonceBook> {
        self.nonces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn challenge(&self, stale: bool, why: &str) -> Response<Full<Bytes>> {
        let mut random = [0u8; 16];
        if getrandom::fill(&mut random).is_err() {
            return text(StatusCode::SERVICE_UNAVAILABLE, "no random source\n");
        }
        let nonce = self.nonces().issue(random, self.epoch.elapsed());
        let challenge = Challenge {
            realm: self.realm.clone(),
            nonce,
            opaque: None,
            algorithm: self.algorithm,
            stale,
        };
        let mut response = text(StatusCode::UNAUTHORIZED, &format!("{why}\n"));
        match challenge.to_header().map(HeaderValue::try_from) {
            Ok(Ok(value)) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            _ => return text(StatusCode::INTERNAL_SERVER_ERROR, "realm not quotable\n"),
        }
        response
    }

    /// Authenticates the request; `Err` is the 401 to send.
    fn authenticate(
        &self,
        request: &Request<Incoming>,
    ) -> Result<(Credentials, Password), Box<Response<Full<Bytes>>>> {
        let deny = |stale: bool, why: &str| Err(Box::new(self.challenge(stale, why)));
        let Some(value) = request.headers().get(header::AUTHORIZATION) else {
            return deny(false, "authorization required");
        };
        let Ok(value) = value.to_str() else {
            return deny(false, "Authorization header is not ASCII");
        };
        let credentials = match Credentials::parse(value) {
            Ok(c) => c,
            Err(e) => return deny(false, &e.to_string()),
        };
        if credentials.realm != self.realm || credentials.algorithm != self.algorithm {
            return deny(false, "wrong realm or algorithm");
        }
        let target = request
            .uri()
            .path_and_query()
            .map_or(request.uri().path(), |p| p.as_str());
        if credentials.uri != target {
            return deny(false, "Digest uri differs from the request target");
        }
        let Some(password) = self.distribution.password(&credentials.username) else {
            return deny(false, "unknown user");
        };
        if !credentials.verify(&password, request.method().as_str()) {
            return deny(false, "wrong digest");
        }
        let accepted =
            self.nonces()
                .accept(&credentials.nonce, credentials.nc, self.epoch.elapsed());
        match accepted {
            Ok(()) => Ok((credentials, password)),
            Err(NonceError::Stale) => deny(true, "nonce expired"),
            Err(e) => deny(false, &e.to_string()),
        }
    }

    async fn respond(&self, peer: SocketAddr, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() != KEY_REQUEST_PATH {
            return text(StatusCode::NOT_FOUND, "not found\n");
        }
        if request.method() != Method::POST {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let (credentials, password) = match self.authenticate(&request) {
            Ok(ok) => ok,
            Err(denied) => return *denied,
        };
        let media_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("request body: {e}\n")),
        };
        let parsed = match KeyRequest::parse(&media_type, &body) {
            Ok(parsed) => parsed,
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
        };
        let b_tid = credentials.username.as_str();
        let distribution = &self.distribution;
        let answer = match &parsed {
            KeyRequest::Register { service_ids } => KeyResponse::Registration(
                distribution.register(b_tid, peer.ip(), service_ids).await,
            ),
            KeyRequest::Deregister { service_ids } => KeyResponse::Registration(
                distribution.deregister(b_tid, peer.ip(), service_ids).await,
            ),
            KeyRequest::Msk { keys } => {
                KeyResponse::Msk(distribution.msk_request(b_tid, peer.ip(), keys).await)
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(answer.to_xml())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(answer.media_type()),
        );
        let info = AuthenticationInfo::for_credentials(&credentials, &password);
        if let Ok(Ok(value)) = info.to_header().map(HeaderValue::try_from) {
            response.headers_mut().insert(
                header::HeaderName::from_static("authentication-info"),
                value,
            );
        }
        response
    }
}

/// Serves until `stop` changes, then drains open connections.
/// Serves the function on `listener` (HTTPS with `tls`) until `stop` turns
/// true.
pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    function: Arc<KeyRequestFunction>,
    mut stop: watch::Receiver<bool>,
) {
    let handler = move |request, peer, _stop| {
        let function = Arc::clone(&function);
        async move { function.respond(peer, request).await }
    };
    let shutdown = async move {
        let _ = stop.wait_for(|&s| s).await;
    };
    serve_connections("key request", listener, tls, handler, shutdown, None).await;
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
