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
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            drain_timeout: Duration::from_secs(10),
            token_use_flush: Duration::from_secs(10),
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
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let app = Arc::clone(&app);
                        async move {
                            let (parts, _body) = req.into_parts();
                            let response = tokio::task::spawn_blocking(move || api::handle(&app, &parts, Some(peer)))
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
