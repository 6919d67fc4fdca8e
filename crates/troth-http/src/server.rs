//! Serving a router on a TCP listener, with the connection-level limits that
//! axum's own `serve` leaves open: a request's head must arrive within
//! [`HEADER_READ_TIMEOUT`] (a half-sent request no longer holds a connection
//! forever), and each request carries its peer's address for the per-client rate
//! limits ([`crate::limits`]).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long a client has to send a request's head (line and headers).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections (a live tracking stream, say) get to finish after a stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` until `stop` resolves, then lets open connections finish their
/// requests for [`SHUTDOWN_GRACE`].
pub async fn serve(listener: TcpListener, app: Router, stop: impl Future<Output = ()> + Send) -> std::io::Result<()> {
    serve_with(listener, app, HEADER_READ_TIMEOUT, stop).await
}

/// [`serve`] with another time allowed for a request's head (tests use a short one).
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    stop: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            tokio::pin!(connection);
            let stopping = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            tokio::select! {
                result = connection.as_mut() => return log_end(peer, result),
                () = stopping => {}
            }
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, connection).await {
                Ok(result) => log_end(peer, result),
                Err(_) => tracing::debug!(%peer, "connection closed at shutdown"),
            }
        });
        // Forget finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    let _ = stopping.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

fn log_end(peer: SocketAddr, result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        // Timeouts and clients that went away are routine; nothing to act on.
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
