//! The daemon's HTTP server: `run(listener, app, shutdown)` is the one way
//! to start it, in `cfgstore serve` and in the tests alike.
//!
//! HTTP/1.1 over tokio. A connection starts on the lean path (`lean.rs`),
//! which parses and answers plain read-API `GET`s itself (the requests ERPs
//! poll with), and moves to hyper 1.x for good at the first request that is
//! anything else (`Connection`). Either way each request is served by
//! `serve_one` in the three steps of `api` (admit, read the body, respond),
//! by one execution model: read-API GETs inline on the async workers,
//! everything else on tokio's blocking pool. The limits that hold:
//! - a `TokioTimer` is installed, without which `header_read_timeout`
//!   silently does nothing: a slow request head is cut off;
//! - the request head is capped (`max_header_bytes`, 431 beyond it);
//! - the body limit is set by admission, before a byte is read: a signed-in
//!   session may send `max_body_bytes`, everyone else 64 KiB; beyond it 413
//!   unread, and a body that trickles in too slowly is 408 (`read_body`);
//! - a connection with no traffic for `idle_timeout` is closed (`IdleIo`);
//!   one waiting for its next request, after the smaller of that and
//!   `header_read_timeout` (hyper runs its header timer then too);
//! - a client that shuts its write side after its request still gets the
//!   answer (`half_close`);
//! - at most `max_connections` are served at once; the rest wait in the
//!   kernel's backlog instead of costing memory;
//! - accept errors (such as running out of file descriptors) back off
//!   instead of spinning a core.
//!
//! On shutdown the listener closes, every connection is told (an idle one
//! closes, a busy one after its answer), in-flight requests finish (up to a
//! deadline: every connection holds a slot until it ends), and what `App`
//! keeps in memory (token uses, refusal summaries) is written.

mod io;
mod lean;
mod memo;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use io::IdleIo;

use crate::api::{self, App};
use crate::config::Config;
use crate::store::held::HeldFile;

/// Limits and timeouts of the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// A client must send its complete request head within this time.
    pub header_read_timeout: Duration,
    /// Largest request head (bytes), roughly: hyper checks it between reads,
    /// so a head may run somewhat past it before the 431.
    pub max_header_bytes: usize,
    /// Largest request body; a larger one is answered 413 before it is read.
    pub max_body_bytes: u64,
    /// A request body must arrive within this time.
    pub body_read_timeout: Duration,
    /// A connection with no bytes in either direction this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// How often token `last_used_at` updates are written (the fleet view
    /// is written every 2 s).
    pub token_use_flush: Duration,
    /// Which routes this listener answers.
    pub routes: Routes,
    /// How often long polls' keys are checked without a change seen (the
    /// backstop of the inotify watch; tests lengthen it to prove the watch).
    pub change_check: Duration,
    /// Read-API `GET`s by the lean HTTP/1.1 path (`lean.rs`); `false`
    /// leaves every request to hyper (the tests compare the two).
    pub lean: bool,
    /// Bytes of answers the lean path keeps to give again (`memo.rs`):
    /// their heads and bodies (mostly the read cache's own contents,
    /// shared). As much as the content cache's budget; 0 keeps none.
    pub answer_memo_bytes: usize,
}

/// What one listener serves: with `metrics_listen` set, the API listener
/// answers everything but `/metrics`, and the metrics listener only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    All,
    AllButMetrics,
    MetricsOnly,
}

impl Routes {
    fn serves(self, path: &str) -> bool {
        match self {
            Routes::All => true,
            Routes::AllButMetrics => path != "/metrics",
            Routes::MetricsOnly => path == "/metrics",
        }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions::from(&Config::default())
    }
}

impl From<&Config> for ServerOptions {
    fn from(c: &Config) -> Self {
        ServerOptions {
            header_read_timeout: c.header_timeout,
            max_header_bytes: c.max_header_bytes,
            max_body_bytes: c.max_body_bytes,
            body_read_timeout: c.body_timeout,
            idle_timeout: c.idle_timeout,
            max_connections: c.max_connections,
            drain_timeout: c.drain_timeout,
            token_use_flush: Duration::from_secs(10),
            change_check: Duration::from_secs(1),
            lean: true,
            answer_memo_bytes: usize::try_from(c.content_cache_bytes).unwrap_or(usize::MAX),
            routes: if c.metrics_listen.is_some() {
                Routes::AllButMetrics
            } else {
                Routes::All
            },
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

/// Binds the daemon's listening socket with room in the kernel's accept
/// queue for `max_connections` clients (tokio's `bind` leaves 128), so a
/// burst beyond what is being served waits its turn instead of being
/// dropped and retried seconds later. The kernel caps it at
/// `net.core.somaxconn`.
pub fn listen(addr: std::net::SocketAddr, max_connections: usize) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(max_connections.clamp(128, 65_535) as u32)
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
        // A client may shut its write side once the request is sent (legal
        // in TCP; probes and scripts do it): it still gets its answer,
        // instead of the connection closing while the request runs.
        .half_close(true)
        .max_buf_size(options.max_header_bytes.max(8192));
    let flusher = tokio::spawn(flush_periodically(
        Arc::clone(&app),
        options.token_use_flush,
    ));
    // Long polls are read-API requests: the metrics-only listener has none.
    let watcher = (options.routes != Routes::MetricsOnly)
        .then(|| tokio::spawn(watch_changes(Arc::clone(&app), options.change_check)));
    let connections = options.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(tokio::sync::Semaphore::new(connections));
    // Tells every connection the server is closing: an idle one closes, a
    // busy one after its answer.
    let (closing, closing_seen) = watch::channel(false);
    // Answers to give again (`memo.rs`): not for a store in a database,
    // whose change check may wait on the network (reads run off the async
    // workers there).
    let memo = (!app.store.on_database() && options.answer_memo_bytes > 0)
        .then(|| Arc::new(memo::Memo::new(options.answer_memo_bytes)));
    let sweeper = tokio::spawn(sweep_periodically(Arc::clone(&app), memo.clone()));
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        // Wait for a free slot before accepting: beyond the cap, clients
        // queue in the kernel's backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let _ = stream.set_nodelay(true);
                app.metrics.connection_opened();
                let connection = Connection {
                    app: Arc::clone(&app),
                    peer,
                    options: options.clone(),
                    hyper: builder.clone(),
                    closing: closing_seen.clone(),
                    memo: memo.clone(),
                };
                tokio::spawn(async move {
                    let app = Arc::clone(&connection.app);
                    connection.serve(stream).await;
                    app.metrics.connection_closed();
                    drop(slot);
                });
            }
            Err(e) => {
                drop(slot);
                // EMFILE and friends: continuing at once would spin a core
                // at 100 %. Wait, longer each time, and retry.
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drop(listener);
    // Parked long polls answer now (304) instead of holding the drain.
    app.changes.close();
    let _ = closing.send(true);
    // Every connection holds a slot until it ends.
    tokio::select! {
        _ = slots.acquire_many(connections as u32) => {}
        _ = tokio::time::sleep(options.drain_timeout) => {
            tracing::warn!("drain deadline passed with connections still open");
        }
    }
    flusher.abort();
    sweeper.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    let app_for_flush = Arc::clone(&app);
    let _ = tokio::task::spawn_blocking(move || app_for_flush.flush(true)).await;
    Ok(())
}

/// One accepted connection: served by the lean path (`lean.rs`) as long
/// as its requests are plain read-API `GET`s, by hyper from the first one
/// that is not (and for good).
struct Connection {
    app: Arc<App>,
    peer: SocketAddr,
    options: ServerOptions,
    hyper: http1::Builder,
    closing: watch::Receiver<bool>,
    /// Answers to give again (`memo.rs`); `None`: every request in full.
    memo: Option<Arc<memo::Memo>>,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream) {
        let idle = self.options.idle_timeout;
        let mut buf = BytesMut::new();
        if !self.options.lean || self.options.routes == Routes::MetricsOnly {
            return self.serve_hyper(IdleIo::new(stream, idle), buf).await;
        }
        // hyper's header timer also runs while a connection waits for its
        // next request, so the lean path closes a connection silent for the
        // smaller of the two, as hyper would.
        let mut io = IdleIo::new(stream, idle.min(self.options.header_read_timeout));
        if self.serve_lean(&mut io, &mut buf).await {
            io.set_timeout(idle);
            self.serve_hyper(io, buf).await;
        }
    }

    /// Serves requests by the lean path until one is not for it (`true`:
    /// hyper takes over, `buf` holding what was read of it) or the
    /// connection ends (`false`).
    async fn serve_lean(&mut self, io: &mut IdleIo, buf: &mut BytesMut) -> bool {
        use tokio::io::AsyncReadExt;
        let mut fields = Vec::new();
        let mut out = Vec::new();
        let limits = (self.options.max_body_bytes, self.options.body_read_timeout);
        // Made once: a connection waiting for its next request stays
        // registered for the closing signal instead of joining and leaving
        // its list on every request.
        let mut signal = self.closing.clone();
        let closed = async move { signal.wait_for(|closing| *closing).await.is_ok() };
        tokio::pin!(closed);
        loop {
            if buf.is_empty() {
                buf.reserve(4096);
                let read = tokio::select! {
                    biased;
                    read = io.read_buf(buf) => read,
                    _ = &mut closed => return false,
                };
                match read {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                }
            }
            let head = match lean::parse(buf, self.options.max_header_bytes, fields) {
                lean::Next::Serve(head) => head,
                lean::Next::HandOff => return true,
            };
            let kept = self.memo.as_ref().and_then(|memo| {
                let kept = memo.find(self.peer.ip(), &buf[..head.len])?;
                kept.replay.again(&self.app).then_some(kept)
            });
            if let Some(kept) = kept {
                buf.advance(head.len);
                fields = head.into_fields();
                out.clear();
                out.extend_from_slice(&kept.head);
                lean::end_head(&mut out, kept.dated);
                if !self.send(io, &out, &kept.body, kept.file.as_deref()).await {
                    return false;
                }
                continue;
            }
            // Split off and frozen: the request's parts share its memory.
            let bytes = buf.split_to(head.len).freeze();
            let Some(parts) = head.parts(&bytes) else {
                // hyper refuses it in its own words: give the head back.
                let mut whole = BytesMut::from(&bytes[..]);
                whole.extend_from_slice(buf);
                *buf = whole;
                return true;
            };
            let method = parts.method.clone();
            fields = head.into_fields();
            let app = Arc::clone(&self.app);
            let replay = self.memo.is_some();
            let (response, replay) =
                serve_one(app, parts, None, Some(self.peer), limits, replay).await;
            let answer = lean::encode(&method, response, &mut out);
            if let (Some(memo), Some(replay)) = (&self.memo, replay) {
                memo.keep(self.peer.ip(), &bytes, replay, &out, &answer);
            }
            lean::end_head(&mut out, answer.dated);
            if !self
                .send(io, &out, &answer.body, answer.file.as_deref())
                .await
            {
                return false;
            }
        }
    }

    /// Sends one answer on the lean path; `false`: the connection ends
    /// (it failed, or the server is closing and this answer was its last).
    async fn send(
        &self,
        io: &mut IdleIo,
        head: &[u8],
        body: &[u8],
        file: Option<&HeldFile>,
    ) -> bool {
        let closing = self.closing.has_changed().unwrap_or(true);
        lean::send(io, head, body, file).await.is_ok() && !closing
    }

    /// hyper serves the rest of the connection, starting with `read`.
    async fn serve_hyper(self, mut io: IdleIo, read: BytesMut) {
        let Connection {
            app,
            peer,
            options,
            hyper,
            mut closing,
            memo: _,
        } = self;
        let limits = (options.max_body_bytes, options.body_read_timeout);
        let routes = options.routes;
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let app = Arc::clone(&app);
            async move {
                if !routes.serves(req.uri().path()) {
                    return Ok(api::response::route_not_found().map(Full::new));
                }
                let (parts, body) = req.into_parts();
                let (response, _) =
                    serve_one(app, parts, Some(body), Some(peer), limits, false).await;
                Ok::<_, Infallible>(response.map(Full::new))
            }
        });
        io.read_back(read.freeze());
        let io = TokioIo::new(io);
        let connection = hyper.serve_connection(io, service);
        tokio::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            _ = async { closing.wait_for(|closing| *closing).await.map(drop) } => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

/// One request, by the execution model of `api`: admission (routing and
/// authentication), the body within the limit admission set, the answer.
/// Read-API GETs run inline on this async worker; the rest go to the
/// blocking pool, since they read session files or write. With `replay`,
/// also how to give the answer again, when it may be (`api::replay`).
async fn serve_one(
    app: Arc<App>,
    mut parts: hyper::http::request::Parts,
    body: Option<hyper::body::Incoming>,
    peer: Option<SocketAddr>,
    (max_body, body_timeout): (u64, Duration),
    replay: bool,
) -> (hyper::Response<api::Body>, Option<api::Replay>) {
    // A store in a database may wait on the network for any read (the
    // change marker is read per request): off the async workers.
    let inline = api::is_fast_read(&parts) && !app.store.on_database();
    let admission = if inline {
        api::admit(&app, &mut parts, peer)
    } else {
        let app = Arc::clone(&app);
        let admitted = tokio::task::spawn_blocking(move || {
            let admission = api::admit(&app, &mut parts, peer);
            (parts, admission)
        })
        .await;
        match admitted {
            Ok((returned, admission)) => {
                parts = returned;
                admission
            }
            Err(e) => return (handler_panicked(e), None),
        }
    };
    let mut admitted = match admission {
        api::Admission::Answered(response) => return (response, None),
        api::Admission::Admitted(admitted) => *admitted,
    };
    let limit = admitted.body_limit(max_body);
    let body = match read_body(&parts, body, limit, body_timeout).await {
        Ok(body) => body,
        Err(err) => return (api::refuse_body(&app, &parts, admitted, &err), None),
    };
    if let Some(poll) = admitted.long_poll().cloned() {
        // Boxed: its state (held for the whole wait) then costs only
        // the polls that wait, not every connection's task.
        let answer = Box::pin(long_poll(&app, &parts, peer, admitted, body, poll)).await;
        return (answer, None);
    }
    if replay {
        admitted.offer_replay();
    }
    if inline {
        return api::respond(&app, &parts, peer, admitted, body);
    }
    let handler_app = Arc::clone(&app);
    tokio::task::spawn_blocking(move || api::respond(&handler_app, &parts, peer, admitted, body))
        .await
        .unwrap_or_else(|e| (handler_panicked(e), None))
}

/// A read held until its answer differs from what the client holds
/// (`api::poll`): answered at once when it already does, else after the
/// change that makes it differ, else 304 when the wait ends or the
/// daemon shuts down. Subscribed before the first answer, so a change
/// that lands in between is not missed.
async fn long_poll(
    app: &Arc<App>,
    parts: &hyper::http::request::Parts,
    peer: Option<std::net::SocketAddr>,
    mut admitted: api::Admitted,
    body: bytes::Bytes,
    poll: api::poll::LongPoll,
) -> hyper::Response<api::Body> {
    // On a store in a database every step below may wait on the network:
    // the worker steps aside for it (`api::blocking`).
    let store_call = |f: &mut dyn FnMut()| match app.store.on_database() {
        true => api::blocking(f),
        false => f(),
    };
    let changes = &app.changes;
    let mut closing = changes.closing();
    let mut state = None;
    store_call(&mut || state = Some(changes.subscribe(&app.store, &poll.key)));
    let mut state = state.expect("subscribed");
    let deadline = Instant::now() + poll.wait;
    let parked = changes.park(&admitted.poll_client(parts));
    loop {
        let started = std::time::Instant::now();
        let mut answered = None;
        store_call(&mut || {
            answered = Some(api::answer(app, parts, peer, &mut admitted, body.clone()))
        });
        let response = answered.expect("answered");
        let took = started.elapsed();
        if response.status() != hyper::StatusCode::NOT_MODIFIED || *closing.borrow() {
            return admitted.finish(app, parts, took, response);
        }
        let woken = tokio::select! {
            changed = state.changed() => changed.is_ok(),
            _ = tokio::time::sleep_until(deadline) => false,
            _ = closing.changed() => false,
            _ = parked.released() => false,
        };
        if !woken {
            return admitted.finish(app, parts, took, response);
        }
        // What the change wrote is in force for the next answer, and the
        // token must still allow it.
        let mut refused = None;
        store_call(&mut || {
            if let Err(e) = app.store.revalidate() {
                tracing::warn!(error = %e, "long poll: could not check the store for changes");
            }
            refused = admitted.reauthenticate(app, parts, peer);
        });
        if let Some(refused) = refused {
            return admitted.finish(app, parts, Duration::ZERO, refused);
        }
    }
}

/// Wakes long polls (`api::poll`): watches the store's change marker (a
/// data directory's with inotify; a database's by its notifications), and
/// checks once a second regardless, which also covers a kernel without
/// inotify or a notification lost with its connection; then lets
/// `Changes::refresh` notify the keys whose state moved. Runs as long as
/// the server does.
async fn watch_changes(app: Arc<App>, every: Duration) {
    use inotify::{EventMask, Inotify, WatchMask};
    use tokio::io::unix::AsyncFd;
    // A store in a database notifies its changes (a hint: the marker
    // check that follows decides).
    let hints = app.store.backend().change_hints();
    let hinted = || async {
        match &hints {
            Some(hints) => hints.notified().await,
            None => std::future::pending().await,
        }
    };
    let marker = app.store.layout().changes_file();
    let name = marker.file_name().map(|n| n.to_os_string());
    let folder = marker.parent().filter(|_| hints.is_none());
    let mut watch = folder.and_then(|folder| {
        let inotify = Inotify::init().ok()?;
        inotify
            .watches()
            .add(
                folder,
                WatchMask::MOVED_TO | WatchMask::CREATE | WatchMask::CLOSE_WRITE,
            )
            .ok()?;
        // `AsyncFd::new` is deprecated because it cannot check that its
        // value keeps one open descriptor for as long as it is registered
        // (the safe-by-contract `register` is `unsafe`, which this crate
        // forbids). An `Inotify` owns its descriptor and closes it only
        // when dropped, which is that contract; the inotify crate's own
        // event stream registers it the same way.
        #[allow(deprecated)]
        AsyncFd::new(inotify).ok()
    });
    if watch.is_none() && hints.is_none() {
        tracing::warn!(
            "no inotify watch on the change marker: long polls wake within a second of a change"
        );
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buffer = [0u8; 4096];
    loop {
        let changed = match watch.as_mut() {
            Some(fd) => tokio::select! {
                ready = fd.readable_mut() => {
                    let mut relevant = false;
                    match ready {
                        Ok(mut guard) => loop {
                            match guard.get_inner_mut().read_events(&mut buffer) {
                                Ok(events) => {
                                    let mut any = false;
                                    for event in events {
                                        any = true;
                                        relevant |= event.mask.contains(EventMask::Q_OVERFLOW)
                                            || event.name.map(|n| n.to_os_string()) == name;
                                    }
                                    if !any {
                                        break;
                                    }
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                    guard.clear_ready();
                                    break;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "inotify failed: long polls wake within a second of a change");
                                    relevant = true;
                                    break;
                                }
                            }
                        },
                        Err(_) => relevant = true,
                    }
                    relevant
                }
                _ = tick.tick() => true,
            },
            None => tokio::select! {
                _ = tick.tick() => true,
                _ = hinted() => true,
            },
        };
        if changed && app.changes.any_watched() {
            let app = Arc::clone(&app);
            let _ = tokio::task::spawn_blocking(move || app.changes.refresh(&app.store)).await;
        }
    }
}

fn handler_panicked(e: tokio::task::JoinError) -> hyper::Response<api::Body> {
    tracing::error!(error = %e, "request handler panicked");
    api::response::error(&crate::Error::io("handler", std::io::Error::other("panic")))
}

fn too_large(limit: u64) -> crate::Error {
    crate::Error::TooLarge(format!("request bodies are limited to {limit} bytes"))
}

fn declared_length(parts: &hyper::http::request::Parts) -> Option<u64> {
    parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads a request body whole, refusing one whose declared length is over
/// the limit before reading a byte of it, and one that turns out longer
/// while being read (413). A body that trickles in too slowly is a 408.
async fn read_body(
    parts: &hyper::http::request::Parts,
    body: Option<hyper::body::Incoming>,
    limit: u64,
    timeout: Duration,
) -> crate::Result<bytes::Bytes> {
    // The lean path serves requests without a body only.
    let Some(body) = body else {
        return Ok(bytes::Bytes::new());
    };
    let over = || too_large(limit);
    use http_body_util::BodyExt;
    let declared = declared_length(parts);
    if declared.is_some_and(|n| n > limit) {
        return Err(over());
    }
    let limited = http_body_util::Limited::new(body, limit as usize);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(over())
        }
        Ok(Err(e)) if caused_by_timeout(e.as_ref()) => Err(crate::Error::TimedOut(
            "the connection went idle while sending the body".into(),
        )),
        Ok(Err(e)) => Err(crate::Error::invalid(format!(
            "could not read the request body: {e}"
        ))),
        Err(_) => Err(crate::Error::TimedOut(format!(
            "the request body did not arrive within {} s",
            timeout.as_secs()
        ))),
    }
}

fn caused_by_timeout(mut err: &(dyn std::error::Error + 'static)) -> bool {
    loop {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        match err.source() {
            Some(source) => err = source,
            None => return false,
        }
    }
}

/// How often the fleet view is written (a small file per project read
/// since): often, so `cfgstore fleet` is seconds behind the daemon.
const FLEET_FLUSH: Duration = Duration::from_secs(2);

/// Every two seconds, off the request path: the memo's answers of past
/// epochs dropped (after the store's change check, so a change is seen
/// even when no request comes); every thirty, the held object files that
/// garbage collection removed let go.
async fn sweep_periodically(app: Arc<App>, memo: Option<Arc<memo::Memo>>) {
    const EVERY: Duration = Duration::from_secs(2);
    const FILES_EVERY: u32 = 15;
    let mut tick = tokio::time::interval(EVERY);
    for round in 1u32.. {
        tick.tick().await;
        let (app, memo) = (Arc::clone(&app), memo.clone());
        let swept = tokio::task::spawn_blocking(move || {
            if let Some(memo) = memo {
                match app.store.revalidate() {
                    Ok(epoch) => drop(memo.sweep(epoch)),
                    Err(e) => tracing::debug!(error = %e, "change check failed while sweeping"),
                }
            }
            if round % FILES_EVERY == 0 {
                app.store.release_unlinked_files();
            }
        });
        if let Err(e) = swept.await {
            tracing::warn!(error = %e, "sweep panicked");
        }
    }
}

/// Writes what `App` keeps in memory: the fleet view every `FLEET_FLUSH`,
/// token uses and refusal summaries every `every` (one file per token
/// used, so less often).
async fn flush_periodically(app: Arc<App>, every: Duration) {
    let mut tick = tokio::time::interval(FLEET_FLUSH.min(every));
    tick.tick().await;
    let mut last_full = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let full = last_full.elapsed() >= every;
        if full {
            last_full = tokio::time::Instant::now();
        }
        let app = Arc::clone(&app);
        let flushed = tokio::task::spawn_blocking(move || {
            if full {
                app.flush(false)
            } else {
                app.fleet.flush(&app.store)
            }
        });
        match flushed.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "could not record token use or the fleet"),
            Err(e) => tracing::warn!(error = %e, "flush panicked"),
            Ok(Ok(())) => {}
        }
    }
}
