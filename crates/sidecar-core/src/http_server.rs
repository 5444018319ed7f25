//! Serves one listener's connections with hyper's HTTP/1, as `axum::serve` would, with one
//! difference that `axum::serve` cannot express: a bounded read buffer per connection.
//!
//! hyper grows a connection's read buffer while a large body arrives (up to about 400 KiB by
//! default) and never shrinks it; the connection keeps it for as long as it lives. The services
//! keep up to 128 connections each to their sidecar in their pools, and audit-logger's bulk
//! saves are up to 1 MiB: after a 60 s load run, buffers grown that way held about 17 MB of the
//! runner (about 340 bytes per task). With the limit below a connection holds at most a few KiB
//! however large the bodies it carried, and a body is read in pieces of that size.
//!
//! The limit is also the size of the largest request head accepted, as daprd's is: daprd serves
//! its API with Go's `net/http` and sets `MaxHeaderBytes` to its read buffer size, 4 KiB by
//! default (`pkg/api/http/server.go`, `StartNonBlocking`); Go reads up to 4 KiB more than
//! that before it answers 431. A larger head gets 431 here too.

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::io;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Bytes a connection may buffer: a request head up to this size, and a body read in pieces of
/// at most this size. 8 KiB is hyper's smallest limit and what daprd accepts by default
/// (`MaxHeaderBytes` of 4 KiB plus Go's 4 KiB of slack).
pub(crate) const READ_BUFFER_LIMIT: usize = 8 * 1024;

/// Accepts and serves connections until `shutdown` is cancelled, then lets every open connection
/// finish its request in flight and waits for them all.
pub(crate) async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let mut http = hyper::server::conn::http1::Builder::new();
    // No header read timeout (hyper's default needs a timer): the server behaves as
    // `axum::serve` did, and an idle keep-alive connection stays open for its client to reuse.
    http.max_buf_size(READ_BUFFER_LIMIT)
        .header_read_timeout(None);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    wait_after_accept_error(&e).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A connection refused, aborted or reset before it was accepted concerns that connection only.
/// Anything else (out of file descriptors, most often) is logged, and accepting pauses for a
/// second so connections can close meanwhile, instead of spinning on the same error.
async fn wait_after_accept_error(e: &io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection on the dapr API");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
