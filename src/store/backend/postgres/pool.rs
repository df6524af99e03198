//! Connections to PostgreSQL, for callers that block.
//!
//! The store is synchronous and is called from anywhere: the CLI's main
//! thread, tokio's blocking pool, and tokio's async workers (the daemon's
//! inline reads). `tokio-postgres` is asynchronous, so the backend owns a
//! small runtime of its own: every statement runs there, and the caller
//! waits on a plain channel. Nothing here enters the caller's runtime, so
//! it works the same on every one of those threads.
//!
//! Idle connections are kept for reuse; one is taken for the length of a
//! call or a transaction, so statements of two callers never interleave
//! on one connection.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use crate::error::{Error, Result};

/// Idle connections kept for reuse (more may be open while busy).
const IDLE_CONNECTIONS: usize = 16;
/// How long opening a connection may take before the call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database, reachable from blocking code.
pub struct Pool {
    config: Config,
    /// Where the database is, for errors and logs: never the password.
    place: String,
    runtime: Option<tokio::runtime::Runtime>,
    idle: Mutex<Vec<Arc<Session>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({})", self.place)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Without waiting: the pool may be dropped on an async worker,
        // where a runtime must not block to shut down.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Pool {
    /// A pool for a `postgres://` URL (or a `key=value` connection
    /// string). Connects lazily: nothing is opened until the first call.
    /// Errors: `Invalid` for a malformed URL.
    pub fn new(url: &str) -> Result<Pool> {
        let mut config: Config = url
            .parse()
            .map_err(|e| Error::invalid(format!("bad PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("cfgstore");
        }
        let place = describe(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cfgstore-postgres")
            .enable_all()
            .build()
            .map_err(|e| Error::io("postgres runtime", e))?;
        Ok(Pool {
            config,
            place,
            runtime: Some(runtime),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Where the database is (host, port, database, user; no password).
    pub fn place(&self) -> &str {
        &self.place
    }

    /// Runs `work` on the backend's runtime and waits for it.
    pub fn block_on<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the pool")
            .spawn(async move {
                let _ = tx.send(work.await);
            });
        rx.recv()
            .map_err(|_| self.unavailable("the database task ended"))
    }

    /// A connection of its own for the caller, opened if none is idle.
    /// Errors: `Io` when the database cannot be reached.
    pub fn connection(&self) -> Result<Connection<'_>> {
        loop {
            let idle = self.idle.lock().expect("pool").pop();
            match idle {
                Some(client) if client.is_closed() => continue,
                Some(client) => {
                    return Ok(Connection {
                        pool: self,
                        client: Some(client),
                        failed: Default::default(),
                    })
                }
                None => break,
            }
        }
        let config = self.config.clone();
        let opened = self.block_on(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "postgres connection ended");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        })?;
        let client = opened.map_err(|e| self.error(e))?;
        Ok(Connection {
            pool: self,
            client: Some(Arc::new(Session {
                client,
                statements: Default::default(),
            })),
            failed: Default::default(),
        })
    }

    /// Listens on `channel` on a connection of its own, for as long as the
    /// pool lives, reconnecting after a second when the connection breaks;
    /// every notification (and every reconnection, which may have missed
    /// some) wakes the returned `Notify`.
    pub fn listen(&self, channel: &'static str) -> Arc<tokio::sync::Notify> {
        let notify = Arc::new(tokio::sync::Notify::new());
        let (config, woken) = (self.config.clone(), Arc::clone(&notify));
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the pool")
            .spawn(async move {
                loop {
                    if let Err(e) = listen_once(&config, channel, &woken).await {
                        tracing::debug!(error = %e, "change notifications: connection lost");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        notify
    }

    /// A database error as the store reports it: `Unavailable` when the
    /// database cannot be reached or is shutting down, overloaded or
    /// restarting (the request may succeed shortly), `Io` for anything
    /// else it refused; either way naming where it is and what it said.
    pub fn error(&self, e: tokio_postgres::Error) -> Error {
        match e.as_db_error() {
            Some(db) => {
                let code = db.code().code();
                let detail = format!("{code}: {}", db.message());
                // Classes 08 (connection), 53 (insufficient resources), 57
                // (operator intervention: shutdown, recovery, restart).
                if ["08", "53", "57"]
                    .iter()
                    .any(|class| code.starts_with(class))
                {
                    self.unavailable(&detail)
                } else {
                    Error::Io {
                        path: PathBuf::from(&self.place),
                        source: io::Error::other(detail),
                    }
                }
            }
            // No answer from the server: not reachable, or the connection
            // broke.
            None => self.unavailable(&e.to_string()),
        }
    }

    fn unavailable(&self, detail: &str) -> Error {
        Error::Unavailable {
            place: self.place.clone(),
            detail: detail.to_string(),
        }
    }
}

/// `host:port/dbname as user`, for messages.
fn describe(config: &Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("?");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgresql://{user}@{host}:{port}/{db}")
}

/// A connection taken from the pool; back into it when dropped, unless
/// it broke.
pub struct Connection<'a> {
    pool: &'a Pool,
    client: Option<Arc<Session>>,
    /// A statement failed on it: it may be left inside an aborted
    /// transaction, so it is closed instead of going back to the pool.
    failed: std::sync::atomic::AtomicBool,
}

impl Connection<'_> {
    /// Runs `work` with this connection's client and waits for it; a
    /// database error becomes the store's.
    pub fn run<T: Send + 'static, F>(&self, work: impl FnOnce(Arc<Session>) -> F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        let client = Arc::clone(self.client.as_ref().expect("held until dropped"));
        self.pool.block_on(work(client))?.map_err(|e| {
            self.failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.pool.error(e)
        })
    }

    /// Drops the connection instead of returning it: its session state is
    /// unknown (a transaction that could not be rolled back).
    pub fn discard(mut self) {
        self.client = None;
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if *self.failed.get_mut() {
                return;
            }
            let mut idle = self.pool.idle.lock().expect("pool");
            if !client.is_closed() && idle.len() < IDLE_CONNECTIONS {
                idle.push(client);
            }
        }
    }
}

/// A connection's client and the statements prepared on it: `query`,
/// `query_one`, `query_opt` and `execute` prepare each statement once per
/// connection (a named statement, parsed and planned once) instead of on
/// every call, which costs a round trip more each time. Everything else
/// is the client's.
pub struct Session {
    client: Client,
    /// By their SQL: the program's own texts (`'static`), a bounded set.
    statements: Mutex<HashMap<&'static str, Statement>>,
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Session {
    async fn statement(
        &self,
        sql: &'static str,
    ) -> std::result::Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.lock().expect("statements").get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements
            .lock()
            .expect("statements")
            .insert(sql, statement.clone());
        Ok(statement)
    }

    /// Forgets a statement the server can no longer run as prepared (its
    /// tables changed shape, or it is gone), so the next call prepares it
    /// again.
    fn checked<T>(
        &self,
        sql: &'static str,
        result: std::result::Result<T, tokio_postgres::Error>,
    ) -> std::result::Result<T, tokio_postgres::Error> {
        use tokio_postgres::error::SqlState;
        if let Err(e) = &result {
            if matches!(
                e.code(),
                Some(&SqlState::FEATURE_NOT_SUPPORTED)
                    | Some(&SqlState::INVALID_SQL_STATEMENT_NAME)
            ) {
                self.statements.lock().expect("statements").remove(sql);
            }
        }
        result
    }

    pub async fn query(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.checked(sql, self.client.query(&statement, params).await)
    }

    pub async fn query_one(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> std::result::Result<Row, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.checked(sql, self.client.query_one(&statement, params).await)
    }

    pub async fn query_opt(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> std::result::Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.checked(sql, self.client.query_opt(&statement, params).await)
    }

    pub async fn execute(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        self.checked(sql, self.client.execute(&statement, params).await)
    }
}

impl std::ops::Deref for Session {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// One connection's worth of `LISTEN`: returns when it breaks.
async fn listen_once(
    config: &Config,
    channel: &str,
    woken: &tokio::sync::Notify,
) -> std::result::Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The connection is driven here, where its notifications arrive.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        use futures_util::StreamExt;
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {channel}")).await?;
    // Connected again: changes may have been missed meanwhile.
    woken.notify_one();
    while rx.recv().await.is_some() {
        woken.notify_one();
    }
    match driver.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}
