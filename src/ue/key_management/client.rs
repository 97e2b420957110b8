//! The UE side of the Key Request function: HTTP/1.1 POSTs with Digest
//! authentication (TS 33.246 §6.2.1.3). The first request of a session goes
//! out without credentials and learns the challenge from the 401; later ones
//! answer the known nonce with the next nonce count, and a 401 (stale or not)
//! restarts with the new challenge. Every 200 must carry an
//! `Authentication-Info` whose rspauth proves the BM-SC knows the password.
//!
//! `https://` URLs go over TLS, the server verified against the CA file the
//! UE is provisioned with; plain `http://` only to a loopback address.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::path::Path;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::runtime::tls::{self, TlsConnector};

use crate::protocol::key_request::{
    AuthenticationInfo, Challenge, Credentials, KeyRequest, KeyResponse, UeSecurityAssociation,
};

/// Largest response body read.
const MAX_RESPONSE: usize = 64 * 1024;

/// Why a key management request failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyRequestError {
    #[error("key_request_url {0:?}: expected http://host:port/path or https://host:port/path")]
    BadUrl(String),
    #[error(
        "key_request_url {0:?}: plain HTTP only to a loopback address; use https:// with a ca_file"
    )]
    PlainHttpOffLoopback(String),
    #[error("key_request_url {0:?}: https:// needs a ca_file to verify the BM-SC")]
    NoCaFile(String),
    #[error("Key Request function {authority}: TLS: {reason}")]
    Tls { authority: String, reason: String },
    #[error("Key Request function {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("Key Request function: HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("Key Request function: building the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("Key Request function refused the credentials (401): {0}")]
    Unauthorized(String),
    #[error("Key Request function answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("Key Request function: bad challenge: {0}")]
    Challenge(String),
    #[error("Key Request function: Authentication-Info missing or does not prove the BM-SC")]
    ServerNotAuthenticated,
    #[error("Key Request function: response body: {0}")]
    Body(String),
}

/// An authenticated client of one Key Request function.
pub struct KeyRequestClient {
    authority: String,
    /// TLS to the function, when the URL is `https://`.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    path: String,
    sa: UeSecurityAssociation,
    challenge: Option<Challenge>,
    nc: u32,
}

impl KeyRequestClient {
    /// A client of the function at `url`; `ca_file` is the trust anchor
    /// of an `https://` URL.
    pub fn new(
        url: &str,
        sa: UeSecurityAssociation,
        ca_file: Option<&Path>,
    ) -> Result<Self, KeyRequestError> {
        let bad = || KeyRequestError::BadUrl(url.into());
        let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(bad()),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        let tls = if https {
            let ca_file = ca_file.ok_or_else(|| KeyRequestError::NoCaFile(url.into()))?;
            let config = tls::client_config(ca_file).map_err(|e| KeyRequestError::Tls {
                authority: authority.to_owned(),
                reason: format!("{e:#}"),
            })?;
            let name = ServerName::try_from(host.to_owned()).map_err(|_| bad())?;
            Some((TlsConnector::from(config), name))
        } else {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(KeyRequestError::PlainHttpOffLoopback(url.into()));
            }
            None
        };
        Ok(Self {
            authority: authority.to_owned(),
            tls,
            path: path.to_owned(),
            sa,
            challenge: None,
            nc: 0,
        })
    }

    /// Sends `request` and returns the BM-SC's per-item answer.
    pub async fn send(&mut self, request: &KeyRequest) -> Result<KeyResponse, KeyRequestError> {
        // The cached nonce first (if any); after a 401, once more with the
        // fresh challenge. A second 401 means the credentials are wrong.
        for attempt in 0..2 {
            let credentials = self.next_credentials();
            let (status, headers, body) = self.post(request, credentials.as_ref()).await?;
            if status == StatusCode::UNAUTHORIZED {
                let challenge = headers
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        KeyRequestError::Challenge("401 without WWW-Authenticate".into())
                    })
                    .and_then(|v| {
                        Challenge::parse(v).map_err(|e| KeyRequestError::Challenge(e.to_string()))
                    })?;
                self.challenge = Some(challenge);
                self.nc = 0;
                if attempt == 0 {
                    continue;
                }
                return Err(KeyRequestError::Unauthorized(body.trim().to_owned()));
            }
            if status != StatusCode::OK {
                return Err(KeyRequestError::Status { status, body });
            }
            let sent = credentials.ok_or(KeyRequestError::ServerNotAuthenticated)?;
            let proven = headers
                .get("authentication-info")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| AuthenticationInfo::parse(v).ok())
                .is_some_and(|info| info.verify(&sent, &self.sa.digest_password()));
            if !proven {
                return Err(KeyRequestError::ServerNotAuthenticated);
            }
            let media_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            return KeyResponse::parse(media_type, body.as_bytes())
                .map_err(|e| KeyRequestError::Body(e.to_string()));
        }
        Err(KeyRequestError::Unauthorized(
            "challenged repeatedly".into(),
        ))
    }

    /// Credentials for the cached challenge with the next nonce count.
    fn next_credentials(&mut self) -> Option<Credentials> {
        let challenge = self.challenge.as_ref()?;
        self.nc = self.nc.checked_add(1)?;
        let mut cnonce = [0u8; 16];
        getrandom::fill(&mut cnonce).ok()?;
        Some(Credentials::answer(
            challenge,
            &self.sa.b_tid,
            &self.sa.digest_password(),
            Method::POST.as_str(),
            &self.path,
            &hex::encode(cnonce),
            self.nc,
        ))
    }

    async fn post(
        &self,
        request: &KeyRequest,
        credentials: Option<&Credentials>,
    ) -> Result<(StatusCode, hyper::HeaderMap, String), KeyRequestError> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| KeyRequestError::Connect {
                authority: self.authority.clone(),
                source,
            })?;
        let (mut sender, driver) = match &self.tls {
            None => handshake(stream).await?,
            Some((connector, name)) => {
                let stream = connector.connect(name.clone(), stream).await.map_err(|e| {
                    KeyRequestError::Tls {
                        authority: self.authority.clone(),
                        reason: e.to_string(),
                    }
                })?;
                handshake(stream).await?
            }
        };
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(&self.path)
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, request.media_type());
        if let Some(credentials) = credentials {
            let value = credentials
                .to_header()
                .map_err(|e| KeyRequestError::Challenge(e.to_string()))?;
            builder = builder.header(
                header::AUTHORIZATION,
                HeaderValue::try_from(value).map_err(hyper::http::Error::from)?,
            );
        }
        let http_request = builder.body(Full::new(Bytes::from(request.to_xml())))?;
        let response = sender.send_request(http_request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| KeyRequestError::Body(e.to_string()))?
            .to_bytes();
        driver.abort();
        Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// An HTTP/1.1 connection over `stream`, its driver running in a task.
async fn handshake<S>(
    stream: S,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        tokio::task::JoinHandle<()>,
    ),
    KeyRequestError,
>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "Key Request connection ended with an error");
        }
    });
    Ok((sender, driver))
}
