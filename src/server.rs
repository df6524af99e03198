//! The daemon's HTTP server: `run(listener, app, shutdown)` is the one way
//! to start it, in `cfgstore serve` and in the tests alike.
//!
//! hyper 1.x HTTP/1.1 over tokio. A `TokioTimer` is installed, without
//! which `header_read_timeout` silently does nothing. Accept errors (such as
//! running out of file descriptors) back off instead of spinning. On
//! shutdown the listener closes, in-flight requests finish (up to a
//! deadline), and collected token uses are written.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::api::{self, App};

/// Limits and timeouts of the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// A client must send its complete request head within this time.
    pub header_read_timeout: Duration,
    /// Largest request head (bytes), roughly: hyper checks it between reads,
    /// so a head may run somewhat past it before the 431.
    pub max_header_bytes: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// How often token `last_used_at` updates are written.
    pub token_use_flush: Duration,
    /// Largest request body; a larger one is answered 413 before it is read.
    pub max_body_bytes: u64,
    /// A request body must arrive within this time.
    pub body_read_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            drain_timeout: Duration::from_secs(10),
            token_use_flush: Duration::from_secs(10),
            max_body_bytes: 10 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run_with(listener, app, shutdown, ServerOptions::default()).await
}

pub async fn run_with(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    options: ServerOptions,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes.max(8192));
    let graceful = GracefulShutdown::new();
    let flusher = tokio::spawn(flush_token_uses(Arc::clone(&app), options.token_use_flush));
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    let app = Arc::clone(&app);
                    let limits = (options.max_body_bytes, options.body_read_timeout);
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let app = Arc::clone(&app);
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = match read_body(&parts, body, limits.0, limits.1).await {
                                Ok(body) => body,
                                Err(err) => return Ok::<_, Infallible>(api::response::error(&err).map(Full::new)),
                            };
                            let response = tokio::task::spawn_blocking(move || api::handle(&app, &parts, body, Some(peer)))
                                .await
                                .unwrap_or_else(|e| {
                                    tracing::error!(error = %e, "request handler panicked");
                                    api::response::error(&crate::Error::io("handler", std::io::Error::other("panic")))
                                });
                            Ok::<_, Infallible>(response.map(Full::new))
                        }
                    });
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and friends: continuing at once would spin a
                    // core at 100 %. Wait, longer each time, and retry.
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!("drain deadline passed with connections still open");
        }
    }
    flusher.abort();
    let app_for_flush = Arc::clone(&app);
    let _ = tokio::task::spawn_blocking(move || app_for_flush.flush_token_uses()).await;
    Ok(())
}

/// Reads a request body whole, refusing (413) one whose declared length is
/// over the limit before reading a byte of it, and one that turns out
/// longer while being read. A body that trickles in too slowly is a 408.
async fn read_body(
    parts: &hyper::http::request::Parts,
    body: hyper::body::Incoming,
    limit: u64,
    timeout: Duration,
) -> crate::Result<bytes::Bytes> {
    use http_body_util::BodyExt;
    let too_large =
        || crate::Error::TooLarge(format!("request bodies are limited to {limit} bytes"));
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, limit as usize);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Ok(Err(e)) => Err(crate::Error::invalid(format!(
            "could not read the request body: {e}"
        ))),
        Err(_) => Err(crate::Error::invalid(
            "the request body did not arrive in time",
        )),
    }
}

async fn flush_token_uses(app: Arc<App>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let app = Arc::clone(&app);
        match tokio::task::spawn_blocking(move || app.flush_token_uses()).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "could not record token use"),
            Err(e) => tracing::warn!(error = %e, "token use flush panicked"),
            Ok(Ok(())) => {}
        }
    }
}
