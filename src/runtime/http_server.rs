//! The HTTP/1.1 server loop shared by the endpoints (the gateway's admin
//! and push endpoints, the BM-SC's Key Request function): one task per
//! connection, TLS when configured, a header read timeout against idle
//! clients, and on shutdown a graceful close of every connection with a
//! bounded drain.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// A client that has not sent its request head by then is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// After shutdown, open connections get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Work the endpoint does between requests (e.g. draining histograms).
pub(crate) struct Upkeep {
    pub period: Duration,
    pub run: Box<dyn Fn() + Send>,
}

/// Serves `listener` (over TLS with `tls`) until `shutdown` completes.
/// `handler` answers each request, given the peer's address; its
/// `watch::Receiver` changes when the endpoint stops, so a request that
/// waits (for queue room, say) can give up.
pub(crate) async fn serve_connections<H, F>(
    endpoint: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
    shutdown: impl Future<Output = ()>,
    upkeep: Option<Upkeep>,
) where
    H: Fn(Request<Incoming>, SocketAddr, watch::Receiver<()>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(());
    let mut connections = JoinSet::new();
    // Without upkeep the timer still exists but its ticks do nothing.
    let period = upkeep
        .as_ref()
        .map_or(Duration::from_secs(3600), |u| u.period);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticks.tick() => {
                if let Some(upkeep) = &upkeep {
                    (upkeep.run)();
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (handler, stop) = (handler.clone(), stop_rx.clone());
                    let tls = tls.clone();
                    connections.spawn(async move {
                        let Some(tls) = tls else {
                            return serve_connection(endpoint, stream, peer, handler, stop).await;
                        };
                        // The handshake gets the time a request head gets.
                        match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await {
                            Ok(Ok(stream)) => serve_connection(endpoint, stream, peer, handler, stop).await,
                            Ok(Err(e)) => tracing::info!(endpoint, %peer, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::info!(endpoint, %peer, "TLS handshake timed out"),
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off rather than spin.
                    tracing::warn!(endpoint, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    drop(stop_tx);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    tracing::info!(endpoint, "endpoint stopped");
}

async fn serve_connection<S, H, F>(
    endpoint: &'static str,
    stream: S,
    peer: SocketAddr,
    handler: H,
    stop: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, SocketAddr, watch::Receiver<()>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut stopping = stop.clone();
    let service = service_fn(move |request| {
        let response = handler(request, peer, stop.clone());
        async move { Ok::<_, Infallible>(response.await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopping.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(endpoint, error = %e, "connection ended with an error");
    }
}

/// `Authorization: Bearer <token>` (scheme case-insensitive, RFC 7235 §2.1),
/// compared in constant time.
pub(crate) fn bearer_authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let Some((scheme, presented)) = value.to_str().ok().and_then(|v| v.split_once(' ')) else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && bool::from(presented.trim().as_bytes().ct_eq(token.as_bytes()))
}
