//! The PostgreSQL backend (`--store postgres://…`, SPEC §16): several
//! daemons and any number of CLI processes share one store through one
//! database, with no coordination of their own beyond it.
//!
//! - A change of records is one transaction holding a transaction-scoped
//!   advisory lock per kind (users and sessions share one), so writers on
//!   every node are serialised as the file backend's lock files serialise
//!   processes on one box, and a change is in force whole or not at all.
//! - A branch write is one transaction: its new objects, the version, the
//!   head's move (under the branch row's lock) and its audit record.
//! - The change marker is one row; a daemon reads it at the start of a
//!   request (`PgWatch`), so a change committed by any node or the CLI is
//!   in force for every node's next request.
//! - The server key is not here: it stays in a file (`server_key_file`),
//!   so a dump of the database reveals no token.
//!
//! The schema lives in `schema.rs`; connections and the bridge from
//! blocking callers to the asynchronous client in `pool.rs`.

mod content;
mod load;
pub mod pool;
pub mod schema;

use std::sync::{Arc, Condvar, Mutex};

use std::time::Duration;

use super::{
    Backend, BranchLock, ChangeWatch, Durability, FirstVersion, ObjectBatch, ObjectsGuard,
    RecordChange, Records,
};
use crate::error::{Error, Result};
use crate::names::{BranchName, OwnerName, ProjectRef, SnapshotId};
use pool::{Connection, Pool};

/// A store's records, audit trail, fleet view and change marker in a
/// PostgreSQL database.
#[derive(Debug, Clone)]
pub struct Postgres {
    pool: Arc<Pool>,
    /// Notifications of changes, once a long-poll waker asked for them.
    hints: Arc<std::sync::OnceLock<Arc<tokio::sync::Notify>>>,
}

impl Postgres {
    /// Opens the store in the database at `url`, migrating an older
    /// schema forward. Errors: `NotFound` when the database holds no
    /// store (run `cfgstore --store URL init`), `Invalid` for a bad URL or
    /// a newer schema, `Io` when the database cannot be reached.
    pub fn open(url: &str) -> Result<Postgres> {
        let pool = Arc::new(Pool::new(url)?);
        match schema::version(&pool)? {
            0 => Err(Error::NotFound {
                what: "store",
                name: format!("{} (run `cfgstore --store URL init` first)", pool.place()),
            }),
            v if v == schema::CURRENT => Ok(Postgres {
                pool,
                hints: Default::default(),
            }),
            _ => {
                let migrated = schema::migrate(&pool)?;
                tracing::info!(
                    from = migrated.from,
                    to = migrated.to,
                    "migrated the database schema"
                );
                Ok(Postgres {
                    pool,
                    hints: Default::default(),
                })
            }
        }
    }

    /// Creates the store's schema in the database at `url` (or brings an
    /// older one forward). Returns the backend and whether the schema was
    /// created. Errors as `open`.
    pub fn init(url: &str) -> Result<(Postgres, bool)> {
        let pool = Arc::new(Pool::new(url)?);
        let migrated = schema::migrate(&pool)?;
        Ok((
            Postgres {
                pool,
                hints: Default::default(),
            },
            migrated.from == 0,
        ))
    }

    /// Where the database is (no password), for messages.
    pub fn place(&self) -> &str {
        self.pool.place()
    }
}

fn kind_name(kind: Records) -> &'static str {
    match kind {
        Records::Tokens => "tokens",
        Records::Users => "users",
        Records::Sessions => "sessions",
        Records::Logins => "logins",
    }
}

/// The advisory lock a change of `kind` holds ("cfgs" and a tag), shared
/// by users and sessions as in the file backend.
fn lock_key(kind: Records) -> i64 {
    match kind {
        Records::Tokens => 0x6366_6773_0074_6f6b,
        Records::Users | Records::Sessions => 0x6366_6773_0075_7372,
        // Failed logins have a lock of their own: counting them must not
        // wait for a user's change.
        Records::Logins => 0x6366_6773_006c_6f67,
    }
}

fn get_record(conn: &Connection<'_>, kind: Records, key: &str) -> Result<Option<Vec<u8>>> {
    let key = key.to_string();
    conn.run(|c| async move {
        let row = c
            .query_opt(
                "SELECT body FROM cfgstore.records WHERE kind = $1 AND key = $2",
                &[&kind_name(kind), &key],
            )
            .await?;
        Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
    })
}

fn list_records(conn: &Connection<'_>, kind: Records) -> Result<Vec<(String, Vec<u8>)>> {
    conn.run(|c| async move {
        let rows = c
            .query(
                "SELECT key, body FROM cfgstore.records WHERE kind = $1",
                &[&kind_name(kind)],
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    })
}

/// A change of records in progress: statements of one open transaction.
struct PgChange<'c, 'p> {
    conn: &'c Connection<'p>,
    kind: Records,
}

impl RecordChange for PgChange<'_, '_> {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        get_record(self.conn, self.kind, key)
    }

    fn list(&mut self) -> Result<Vec<(String, Vec<u8>)>> {
        list_records(self.conn, self.kind)
    }

    /// Every write is durable once the transaction commits: `Lazy` costs
    /// nothing here that would be worth saving.
    fn put(&mut self, key: &str, bytes: &[u8], _durability: Durability) -> Result<()> {
        let (kind, key, body) = (kind_name(self.kind), key.to_string(), bytes.to_vec());
        self.conn.run(|c| async move {
            c.execute(
                "INSERT INTO cfgstore.records (kind, key, body) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, key) DO UPDATE SET body = EXCLUDED.body",
                &[&kind, &key, &body],
            )
            .await
            .map(drop)
        })
    }

    fn remove(&mut self, key: &str) -> Result<()> {
        let (kind, key) = (kind_name(self.kind), key.to_string());
        self.conn.run(|c| async move {
            c.execute(
                "DELETE FROM cfgstore.records WHERE kind = $1 AND key = $2",
                &[&kind, &key],
            )
            .await
            .map(drop)
        })
    }
}

impl Backend for Postgres {
    fn project(&self, project: &ProjectRef) -> Result<Option<Vec<u8>>> {
        self.read_project(project)
    }

    fn projects(&self, owner: Option<&OwnerName>) -> Result<Vec<ProjectRef>> {
        self.list_projects(owner)
    }

    /// One transaction: the project, its `main`, its first version.
    fn create_project(
        &self,
        project: &ProjectRef,
        record: &[u8],
        main: &BranchName,
        first: &FirstVersion<'_>,
        _timeout: Duration,
    ) -> Result<()> {
        self.insert_project(project, record, main, first)
    }

    fn branch_names(&self, project: &ProjectRef) -> Result<Vec<BranchName>> {
        self.names_of_branches(project)
    }

    fn has_branch(&self, project: &ProjectRef, branch: &BranchName) -> Result<bool> {
        self.branch_exists(project, branch)
    }

    fn create_branch(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        first: &FirstVersion<'_>,
        timeout: Duration,
    ) -> Result<()> {
        self.insert_branch(project, branch, first, timeout)
    }

    fn head(&self, project: &ProjectRef, branch: &BranchName) -> Result<SnapshotId> {
        Ok(self.head_and_floor(project, branch)?.0)
    }

    fn floor(&self, project: &ProjectRef, branch: &BranchName) -> Result<SnapshotId> {
        Ok(self.head_and_floor(project, branch)?.1)
    }

    fn generation(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
    ) -> Result<Option<Vec<u8>>> {
        self.read_generation(project, branch, version)
    }

    /// The whole file: generations of this backend are small (metadata
    /// and a tree id).
    fn generation_start(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
    ) -> Result<Option<Vec<u8>>> {
        self.read_generation(project, branch, version)
    }

    fn stored_versions(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
    ) -> Result<Vec<SnapshotId>> {
        self.versions_stored(project, branch)
    }

    fn lock_branch<'a>(
        &'a self,
        project: &ProjectRef,
        branch: &BranchName,
        timeout: Duration,
    ) -> Result<Box<dyn BranchLock + 'a>> {
        Ok(Box::new(self.lock_branch_row(project, branch, timeout)?))
    }

    fn object(&self, project: &ProjectRef, hash: &str) -> Result<Option<Vec<u8>>> {
        self.read_object(project, hash)
    }

    /// Pending in the batch, stored by `publish` in the transaction of the
    /// version that names it (unless it is there already): a write that
    /// fails leaves no object behind. Whether it is new is known only then.
    fn put_object(
        &self,
        _project: &ProjectRef,
        hash: &str,
        bytes: &[u8],
        batch: &mut ObjectBatch,
    ) -> Result<bool> {
        if !batch.pending.contains_key(hash) {
            let bytes = bytes::Bytes::copy_from_slice(bytes);
            batch.pending.insert(hash.to_string(), bytes);
        }
        Ok(false)
    }

    fn sync_objects(&self, _project: &ProjectRef, _batch: &ObjectBatch) -> Result<()> {
        Ok(())
    }

    fn object_by_prefix(
        &self,
        project: &ProjectRef,
        prefix: &str,
    ) -> Result<Option<(String, Vec<u8>)>> {
        self.object_with_prefix(project, prefix)
    }

    fn object_hashes(&self, project: &ProjectRef) -> Result<Vec<String>> {
        self.hashes(project)
    }

    fn count_objects(&self, project: &ProjectRef) -> Result<(u64, u64)> {
        self.object_totals(project)
    }

    fn objects_in_flight<'a>(
        &'a self,
        project: &ProjectRef,
        exclusive: bool,
        timeout: Duration,
    ) -> Result<Box<dyn ObjectsGuard + 'a>> {
        Ok(Box::new(self.objects_guard(project, exclusive, timeout)?))
    }

    fn collect_objects(
        &self,
        project: &ProjectRef,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(u64, u64)> {
        self.delete_objects(project, keep)
    }

    fn load(&self) -> Result<Option<Box<dyn super::Load + '_>>> {
        Ok(Some(Box::new(self.begin_load()?)))
    }

    fn record(&self, kind: Records, key: &str) -> Result<Option<Vec<u8>>> {
        get_record(&self.pool.connection()?, kind, key)
    }

    fn records(&self, kind: Records) -> Result<Vec<(String, Vec<u8>)>> {
        list_records(&self.pool.connection()?, kind)
    }

    fn change_records(
        &self,
        kind: Records,
        change: &mut dyn FnMut(&mut dyn RecordChange) -> Result<()>,
    ) -> Result<()> {
        let conn = self.pool.connection()?;
        let lock = lock_key(kind);
        if let Err(e) = conn.run(|c| async move {
            c.batch_execute("BEGIN").await?;
            c.query_one("SELECT pg_advisory_xact_lock($1)", &[&lock])
                .await
                .map(drop)
        }) {
            conn.discard();
            return Err(e);
        }
        let result = change(&mut PgChange { conn: &conn, kind });
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        match conn.run(|c| async move { c.batch_execute(end).await }) {
            Ok(()) => result,
            Err(e) => {
                conn.discard();
                result.and(Err(e))
            }
        }
    }

    fn append_audit(&self, line: &[u8], durable: bool) -> Result<()> {
        let line = line.to_vec();
        self.pool.connection()?.run(|c| async move {
            let insert = "INSERT INTO cfgstore.audit (line) VALUES ($1)";
            if durable {
                return c.execute(insert, &[&line]).await.map(drop);
            }
            // Denied requests: not worth a flush each (see `audit.rs`).
            c.batch_execute("BEGIN; SET LOCAL synchronous_commit TO OFF")
                .await?;
            c.execute(insert, &[&line]).await?;
            c.batch_execute("COMMIT").await
        })
    }

    fn audit_lines(&self, each: &mut dyn FnMut(&[u8])) -> Result<()> {
        let lines = self.pool.connection()?.run(|c| async move {
            let rows = c
                .query("SELECT line FROM cfgstore.audit ORDER BY id", &[])
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| r.get::<_, Vec<u8>>(0))
                .collect::<Vec<_>>())
        })?;
        lines.iter().for_each(|line| each(line));
        Ok(())
    }

    fn fleet(&self, project: &ProjectRef) -> Result<Option<Vec<u8>>> {
        let project = project.to_string();
        self.pool.connection()?.run(|c| async move {
            let row = c
                .query_opt(
                    "SELECT body FROM cfgstore.fleet WHERE project = $1",
                    &[&project],
                )
                .await?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn put_fleet(&self, project: &ProjectRef, bytes: &[u8]) -> Result<()> {
        let (project, body) = (project.to_string(), bytes.to_vec());
        self.pool.connection()?.run(|c| async move {
            c.execute(
                "INSERT INTO cfgstore.fleet (project, body) VALUES ($1, $2)
                 ON CONFLICT (project) DO UPDATE SET body = EXCLUDED.body",
                &[&project, &body],
            )
            .await
            .map(drop)
        })
    }

    /// The marker row, and a notification to every listening node (a
    /// hint for their long polls) in the same statement.
    fn announce_change(&self, marker: &[u8]) -> Result<()> {
        let marker = marker.to_vec();
        self.pool.connection()?.run(|c| async move {
            c.query(
                "WITH changed AS (UPDATE cfgstore.changes SET marker = $1 WHERE id = 1 RETURNING 1)
                 SELECT pg_notify('cfgstore_changes', '') FROM changed",
                &[&marker],
            )
            .await
            .map(drop)
        })
    }

    fn change_hints(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(Arc::clone(
            self.hints
                .get_or_init(|| self.pool.listen("cfgstore_changes")),
        ))
    }

    fn watch_changes(&self) -> Box<dyn ChangeWatch> {
        Box::new(PgWatch {
            pool: Arc::clone(&self.pool),
            state: Mutex::default(),
            done: Condvar::new(),
        })
    }
}

/// A daemon's watch of the change marker: a read of its row, shared by
/// the requests that arrive while it is under way. A request may use only
/// a read that began after it arrived (one that began before could miss a
/// change committed just before the request was sent), so reads run one at
/// a time, and every request that arrived during one shares the next.
#[derive(Debug)]
struct PgWatch {
    pool: Arc<Pool>,
    state: Mutex<WatchState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct WatchState {
    /// Reads begun and finished so far (they run one at a time, so the
    /// read numbered `finished` is the last one done).
    begun: u64,
    finished: u64,
    running: bool,
    /// What the last finished read found.
    last: Option<std::result::Result<Vec<u8>, String>>,
}

impl PgWatch {
    fn read_marker(&self) -> Result<Vec<u8>> {
        self.pool.connection()?.run(|c| async move {
            let row = c
                .query_one("SELECT marker FROM cfgstore.changes WHERE id = 1", &[])
                .await?;
            Ok(row.get::<_, Vec<u8>>(0))
        })
    }
}

impl ChangeWatch for PgWatch {
    /// Always hands the marker on: the read cache compares it with the one
    /// it holds (so a request never relies on another's comparison).
    fn check(&self, changed: &mut dyn FnMut(&[u8])) -> Result<()> {
        let mut state = self.state.lock().expect("watch");
        let arrived = state.begun;
        while state.finished <= arrived {
            if state.running {
                state = self.done.wait(state).expect("watch");
                continue;
            }
            state.running = true;
            state.begun += 1;
            let number = state.begun;
            drop(state);
            let read = self.read_marker().map_err(|e| e.to_string());
            state = self.state.lock().expect("watch");
            state.running = false;
            state.finished = number;
            state.last = Some(read);
            self.done.notify_all();
        }
        match state.last.clone().expect("a read finished") {
            Ok(marker) => {
                drop(state);
                changed(&marker);
                Ok(())
            }
            Err(detail) => Err(Error::Unavailable {
                place: self.pool.place().to_string(),
                detail,
            }),
        }
    }
}
