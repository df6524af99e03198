//! Content in PostgreSQL: projects, branches (head and floor), their
//! versions' generation files and the projects' objects, in the tables of
//! schema migration 2.
//!
//! A branch's write lock is its row, locked `FOR UPDATE` in a transaction
//! the lock holds: writers on every node queue on it, and a reader never
//! waits (it reads the committed head). Publishing a version inserts its
//! generation and moves the head in that transaction and commits it: the
//! commit point. A commit whose outcome is unclear (the connection broke
//! while committing) is resolved by reading the version back on another
//! connection, never by trying again.
//!
//! A write's new objects wait in its `ObjectBatch` and are inserted in the
//! publishing transaction (immutable and named by hash, so one that is
//! there already is left as it is): the contents, the version, the head's
//! move and the audit record commit together or not at all, and a failed
//! write leaves no object behind. (A new branch or project is one
//! transaction the same way: its trees, its row, its first version.)

use std::time::Duration;

use tokio_postgres::Row;

use super::pool::Connection;
use super::Postgres;
use crate::error::{Error, Result};
use crate::names::{BranchName, OwnerName, ProjectRef, RepoId, SnapshotId};
use crate::store::backend::{BranchLock, FirstVersion, ObjectBatch, ObjectsGuard};

/// Owner, repo and branch as the tables spell them.
pub(super) fn keys(project: &ProjectRef) -> (String, String) {
    (
        project.owner.as_str().to_string(),
        project.repo.as_str().to_string(),
    )
}

fn version_of(n: i64, what: &str) -> Result<SnapshotId> {
    u64::try_from(n)
        .ok()
        .and_then(|n| SnapshotId::new(n).ok())
        .ok_or_else(|| Error::corrupt(format!("postgres {what}"), format!("holds {n}")))
}

pub(super) fn number(v: SnapshotId) -> i64 {
    v.number() as i64
}

/// `lock_timeout` for a wait of `timeout` (at least a millisecond: 0 would
/// mean no limit).
fn lock_timeout_sql(timeout: Duration) -> String {
    format!("SET LOCAL lock_timeout = {}", timeout.as_millis().max(1))
}

/// PostgreSQL's "lock not available" (the wait for a lock timed out).
fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
}

impl Postgres {
    pub(super) fn read_project(&self, project: &ProjectRef) -> Result<Option<Vec<u8>>> {
        let (owner, repo) = keys(project);
        self.pool.connection()?.run(|c| async move {
            let row = c
                .query_opt(
                    "SELECT record FROM cfgstore.projects WHERE owner = $1 AND repo = $2",
                    &[&owner, &repo],
                )
                .await?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    pub(super) fn list_projects(&self, owner: Option<&OwnerName>) -> Result<Vec<ProjectRef>> {
        let owner = owner.map(|o| o.as_str().to_string());
        let rows = self.pool.connection()?.run(|c| async move {
            // Bytewise order, as the file backend lists folders.
            c.query(
                "SELECT owner, repo FROM cfgstore.projects
                 WHERE $1::text IS NULL OR owner = $1
                 ORDER BY owner COLLATE \"C\", repo COLLATE \"C\"",
                &[&owner],
            )
            .await
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let owner = OwnerName::parse(r.get(0)).ok()?;
                Some(ProjectRef::new(owner, RepoId::parse(r.get(1)).ok()?))
            })
            .collect())
    }

    pub(super) fn insert_project(
        &self,
        project: &ProjectRef,
        record: &[u8],
        main: &BranchName,
        first: &FirstVersion<'_>,
    ) -> Result<()> {
        let (owner, repo) = keys(project);
        let record = record.to_vec();
        let name = main.as_str().to_string();
        let first = owned(first);
        let created = self.pool.connection()?.run(|c| async move {
            c.batch_execute("BEGIN").await?;
            let inserted = c
                .execute(
                    "INSERT INTO cfgstore.projects VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&owner, &repo, &record],
                )
                .await?;
            if inserted == 0 {
                c.batch_execute("ROLLBACK").await?;
                return Ok(false);
            }
            insert_first(&c, &owner, &repo, &name, &first).await?;
            c.batch_execute("COMMIT").await?;
            Ok(true)
        })?;
        match created {
            true => Ok(()),
            false => Err(Error::Conflict(format!("project {project} already exists"))),
        }
    }

    pub(super) fn names_of_branches(&self, project: &ProjectRef) -> Result<Vec<BranchName>> {
        let (owner, repo) = keys(project);
        let rows = self.pool.connection()?.run(|c| async move {
            c.query(
                "SELECT name FROM cfgstore.branches WHERE owner = $1 AND repo = $2
                 ORDER BY name COLLATE \"C\"",
                &[&owner, &repo],
            )
            .await
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| BranchName::parse(r.get(0)).ok())
            .collect())
    }

    /// A branch's row: `(head, floor)`, `None` when there is no branch.
    fn branch_row(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
    ) -> Result<Option<(SnapshotId, SnapshotId)>> {
        let (owner, repo) = keys(project);
        let name = branch.as_str().to_string();
        let row = self.pool.connection()?.run(|c| async move {
            c.query_opt(
                "SELECT head, floor FROM cfgstore.branches
                 WHERE owner = $1 AND repo = $2 AND name = $3",
                &[&owner, &repo, &name],
            )
            .await
        })?;
        row.map(|r| {
            Ok((
                version_of(r.get(0), "head")?,
                version_of(r.get(1), "floor")?,
            ))
        })
        .transpose()
    }

    pub(super) fn branch_exists(&self, project: &ProjectRef, branch: &BranchName) -> Result<bool> {
        Ok(self.branch_row(project, branch)?.is_some())
    }

    pub(super) fn head_and_floor(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
    ) -> Result<(SnapshotId, SnapshotId)> {
        self.branch_row(project, branch)?
            .ok_or_else(|| Error::not_found("branch", branch))
    }

    pub(super) fn insert_branch(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        first: &FirstVersion<'_>,
        timeout: Duration,
    ) -> Result<()> {
        let (owner, repo) = keys(project);
        let new = branch.clone();
        let first = owned(first);
        let lock = project_lock_key(project);
        // `Some(name)`: the branch that is in the way.
        let in_the_way = self.pool.connection()?.run(|c| async move {
            c.batch_execute("BEGIN").await?;
            let result = async {
                c.batch_execute(&lock_timeout_sql(timeout)).await?;
                // Branch creations of one project, one at a time: the
                // nesting check below reads what the others made.
                c.query_one("SELECT pg_advisory_xact_lock($1)", &[&lock])
                    .await?;
                let rows = c
                    .query(
                        "SELECT name FROM cfgstore.branches WHERE owner = $1 AND repo = $2",
                        &[&owner, &repo],
                    )
                    .await?;
                let names: Vec<BranchName> = rows
                    .iter()
                    .filter_map(|r| BranchName::parse(r.get(0)).ok())
                    .collect();
                if let Some(same) = names.iter().find(|b| **b == new) {
                    return Ok(Some(same.clone()));
                }
                if let Some(other) = names.iter().find(|b| b.conflicts_with(&new)) {
                    return Ok(Some(other.clone()));
                }
                insert_first(&c, &owner, &repo, new.as_str(), &first).await?;
                Ok(None)
            }
            .await;
            match &result {
                Ok(None) => c.batch_execute("COMMIT").await?,
                _ => c.batch_execute("ROLLBACK").await?,
            }
            result
        });
        match in_the_way {
            Ok(None) => Ok(()),
            Ok(Some(same)) if same == *branch => Err(Error::Conflict(format!(
                "branch {branch} already exists in {project}"
            ))),
            Ok(Some(other)) => Err(Error::Conflict(format!(
                "branch {branch} conflicts with existing branch {other}: one name cannot be both a branch and a folder of branches"
            ))),
            Err(Error::Io { source, .. }) if source.to_string().starts_with("55P03") => Err(
                Error::Busy(format!("another branch of {project} is being created")),
            ),
            Err(e) => Err(e),
        }
    }

    pub(super) fn read_generation(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
    ) -> Result<Option<Vec<u8>>> {
        let (owner, repo) = keys(project);
        let (name, v) = (branch.as_str().to_string(), number(version));
        // Versions below the floor are gone, whatever a crash left.
        let row = self.pool.connection()?.run(|c| async move {
            c.query_opt(
                "SELECT g.body FROM cfgstore.generations g
                 JOIN cfgstore.branches b USING (owner, repo)
                 WHERE g.owner = $1 AND g.repo = $2 AND g.branch = $3 AND g.version = $4
                   AND b.name = g.branch AND g.version >= b.floor",
                &[&owner, &repo, &name, &v],
            )
            .await
        })?;
        Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
    }

    pub(super) fn versions_stored(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
    ) -> Result<Vec<SnapshotId>> {
        let (owner, repo) = keys(project);
        let name = branch.as_str().to_string();
        let rows = self.pool.connection()?.run(|c| async move {
            c.query(
                "SELECT version FROM cfgstore.generations
                 WHERE owner = $1 AND repo = $2 AND branch = $3 ORDER BY version",
                &[&owner, &repo, &name],
            )
            .await
        })?;
        rows.iter()
            .map(|r| version_of(r.get::<_, i64>(0), "version"))
            .collect()
    }

    pub(super) fn lock_branch_row(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        timeout: Duration,
    ) -> Result<RowLock<'_>> {
        let conn = self.pool.connection()?;
        let (owner, repo) = keys(project);
        let name = branch.as_str().to_string();
        let locked = conn.run(|c| async move {
            c.batch_execute("BEGIN").await?;
            c.batch_execute(&lock_timeout_sql(timeout)).await?;
            c.query_opt(
                "SELECT head FROM cfgstore.branches
                 WHERE owner = $1 AND repo = $2 AND name = $3 FOR UPDATE",
                &[&owner, &repo, &name],
            )
            .await
            .map(|row| row.map(|r: Row| r.get::<_, i64>(0)))
            .or_else(|e| {
                if is_lock_timeout(&e) {
                    Ok(Some(-1))
                } else {
                    Err(e)
                }
            })
        });
        let head = match locked {
            Ok(Some(-1)) => {
                end(&conn, "ROLLBACK");
                return Err(Error::Busy(format!(
                    "branch {branch} of {project} is being written by another writer"
                )));
            }
            Ok(Some(head)) => version_of(head, "head")?,
            Ok(None) => {
                end(&conn, "ROLLBACK");
                return Err(Error::not_found("branch", branch));
            }
            Err(e) => {
                conn.discard();
                return Err(e);
            }
        };
        Ok(RowLock {
            pg: self,
            conn: Some(conn),
            project: project.clone(),
            branch: branch.clone(),
            head,
        })
    }

    pub(super) fn read_object(&self, project: &ProjectRef, hash: &str) -> Result<Option<Vec<u8>>> {
        let (owner, repo) = keys(project);
        let hash = hash.to_string();
        let row = self.pool.connection()?.run(|c| async move {
            c.query_opt(
                "SELECT body FROM cfgstore.objects WHERE owner = $1 AND repo = $2 AND hash = $3",
                &[&owner, &repo, &hash],
            )
            .await
        })?;
        Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
    }

    pub(super) fn object_with_prefix(
        &self,
        project: &ProjectRef,
        prefix: &str,
    ) -> Result<Option<(String, Vec<u8>)>> {
        let (owner, repo) = keys(project);
        let prefix = prefix.to_string();
        let row = self.pool.connection()?.run(|c| async move {
            c.query_opt(
                "SELECT hash, body FROM cfgstore.objects
                 WHERE owner = $1 AND repo = $2 AND left(hash, length($3)) = $3
                 ORDER BY hash LIMIT 1",
                &[&owner, &repo, &prefix],
            )
            .await
        })?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub(super) fn hashes(&self, project: &ProjectRef) -> Result<Vec<String>> {
        let (owner, repo) = keys(project);
        let rows = self.pool.connection()?.run(|c| async move {
            c.query(
                "SELECT hash FROM cfgstore.objects WHERE owner = $1 AND repo = $2",
                &[&owner, &repo],
            )
            .await
        })?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) fn object_totals(&self, project: &ProjectRef) -> Result<(u64, u64)> {
        let (owner, repo) = keys(project);
        let row = self.pool.connection()?.run(|c| async move {
            c.query_one(
                "SELECT count(*), coalesce(sum(length(body)), 0)::bigint FROM cfgstore.objects
                 WHERE owner = $1 AND repo = $2",
                &[&owner, &repo],
            )
            .await
        })?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }

    pub(super) fn objects_guard(
        &self,
        project: &ProjectRef,
        exclusive: bool,
        timeout: Duration,
    ) -> Result<InFlight<'_>> {
        let conn = self.pool.connection()?;
        let key = objects_lock_key(project);
        let take = if exclusive {
            "SELECT pg_advisory_lock($1)"
        } else {
            "SELECT pg_advisory_lock_shared($1)"
        };
        let millis = timeout.as_millis().max(1) as i64;
        let taken = conn.run(move |c| async move {
            c.batch_execute(&format!("SET lock_timeout = {millis}"))
                .await?;
            let taken = c.query_one(take, &[&key]).await;
            c.batch_execute("RESET lock_timeout").await?;
            match taken {
                Ok(_) => Ok(true),
                Err(e) if is_lock_timeout(&e) => Ok(false),
                Err(e) => Err(e),
            }
        });
        match taken {
            Ok(true) => Ok(InFlight {
                conn: Some(conn),
                key,
                exclusive,
            }),
            Ok(false) => Err(Error::Busy(format!(
                "the objects of {project} are being collected"
            ))),
            Err(e) => {
                conn.discard();
                Err(e)
            }
        }
    }

    pub(super) fn delete_objects(
        &self,
        project: &ProjectRef,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(u64, u64)> {
        let conn = self.pool.connection()?;
        let (owner, repo) = keys(project);
        let (o, r) = (owner.clone(), repo.clone());
        let rows = conn.run(|c| async move {
            c.query(
                "SELECT hash, length(body)::bigint FROM cfgstore.objects
                 WHERE owner = $1 AND repo = $2",
                &[&o, &r],
            )
            .await
        })?;
        let (mut gone, mut freed) = (Vec::new(), 0u64);
        for row in &rows {
            let hash: String = row.get(0);
            if !keep(&hash) {
                freed += row.get::<_, i64>(1) as u64;
                gone.push(hash);
            }
        }
        let count = gone.len() as u64;
        for chunk in gone.chunks(1000) {
            let (owner, repo, chunk) = (owner.clone(), repo.clone(), chunk.to_vec());
            conn.run(|c| async move {
                c.execute(
                    "DELETE FROM cfgstore.objects
                     WHERE owner = $1 AND repo = $2 AND hash = ANY($3)",
                    &[&owner, &repo, &chunk],
                )
                .await
            })?;
        }
        Ok((count, freed))
    }
}

/// Objects in runs of at most 1,000 rows or about 8 MiB, one statement
/// each.
fn object_chunks(
    objects: &[(String, bytes::Bytes)],
) -> impl Iterator<Item = &[(String, bytes::Bytes)]> {
    const ROWS: usize = 1000;
    const BYTES: usize = 8 << 20;
    let mut rest = objects;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (mut n, mut size) = (0, 0);
        while n < rest.len() && n < ROWS && (n == 0 || size + rest[n].1.len() <= BYTES) {
            size += rest[n].1.len();
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// A first version with owned bytes, for the database's task.
struct OwnedFirst {
    generation: Vec<u8>,
    trees: Vec<(String, Vec<u8>)>,
}

fn owned(first: &FirstVersion<'_>) -> OwnedFirst {
    let mut trees: Vec<(String, Vec<u8>)> = first
        .trees
        .iter()
        .map(|(h, b)| (h.to_string(), b.to_vec()))
        .collect();
    // By hash, as a write's objects: no two creations wait in a cycle.
    trees.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    OwnedFirst {
        generation: first.generation.to_vec(),
        trees,
    }
}

/// Inside a transaction: a new branch's trees, its row and its `v0001`.
async fn insert_first(
    c: &super::pool::Session,
    owner: &str,
    repo: &str,
    name: &str,
    first: &OwnedFirst,
) -> std::result::Result<(), tokio_postgres::Error> {
    for (hash, body) in &first.trees {
        c.execute(
            "INSERT INTO cfgstore.objects VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&owner, &repo, hash, body],
        )
        .await?;
    }
    c.execute(
        "INSERT INTO cfgstore.branches (owner, repo, name, head, floor) VALUES ($1, $2, $3, 1, 1)",
        &[&owner, &repo, &name],
    )
    .await?;
    c.execute(
        "INSERT INTO cfgstore.generations VALUES ($1, $2, $3, 1, $4)",
        &[&owner, &repo, &name, &first.generation],
    )
    .await?;
    Ok(())
}

/// Ends the transaction a connection holds; a connection that cannot is
/// not reused.
pub(super) fn end(conn: &Connection<'_>, how: &'static str) -> bool {
    conn.run(move |c| async move { c.batch_execute(how).await })
        .is_ok()
}

/// An advisory lock key per project and purpose: FNV-1a of the name.
fn key_of(purpose: &str, project: &ProjectRef) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in purpose.bytes().chain(project.to_string().bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

fn project_lock_key(project: &ProjectRef) -> i64 {
    key_of("branches:", project)
}

fn objects_lock_key(project: &ProjectRef) -> i64 {
    key_of("objects:", project)
}

/// A branch row locked `FOR UPDATE`, in the transaction this holds.
pub(super) struct RowLock<'a> {
    pg: &'a Postgres,
    /// `None` once the transaction ended and could not be begun again.
    conn: Option<Connection<'a>>,
    project: ProjectRef,
    branch: BranchName,
    head: SnapshotId,
}

impl RowLock<'_> {
    fn conn(&self) -> Result<&Connection<'_>> {
        self.conn.as_ref().ok_or_else(|| Error::Unavailable {
            place: self.pg.place().to_string(),
            detail: "the branch lock was lost with its connection".into(),
        })
    }

    /// Commits the statements run so far and takes the row again, so the
    /// lock is held until dropped. Errors when the commit fails; an unclear
    /// commit is for the caller to resolve.
    fn commit_and_relock(&mut self) -> Result<()> {
        let (owner, repo) = keys(&self.project);
        let name = self.branch.as_str().to_string();
        let result = self.conn()?.run(|c| async move {
            c.batch_execute("COMMIT").await?;
            c.batch_execute("BEGIN").await?;
            c.query_one(
                "SELECT head FROM cfgstore.branches
                 WHERE owner = $1 AND repo = $2 AND name = $3 FOR UPDATE",
                &[&owner, &repo, &name],
            )
            .await
            .map(drop)
        });
        if result.is_err() {
            if let Some(conn) = self.conn.take() {
                conn.discard();
            }
        }
        result
    }

    /// A failpoint (`failpoint::DATABASE`): the connection is lost here.
    fn lose_connection_at(&mut self, point: &str) -> Result<()> {
        match crate::store::failpoint::hit(point) {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(conn) = self.conn.take() {
                    conn.discard();
                }
                Err(Error::Unavailable {
                    place: self.pg.place().to_string(),
                    detail: format!("{point}: {e}"),
                })
            }
        }
    }

    /// After a commit that failed without a clear answer: whether `version`
    /// is in force, read on another connection.
    fn published(&self, version: SnapshotId) -> Result<bool> {
        let (head, _) = self.pg.head_and_floor(&self.project, &self.branch)?;
        Ok(head >= version
            && self
                .pg
                .read_generation(&self.project, &self.branch, version)?
                .is_some())
    }
}

impl BranchLock for RowLock<'_> {
    fn head(&self) -> SnapshotId {
        self.head
    }

    /// The write's new objects, the version, the head's move and the
    /// audit line: one transaction.
    fn publish(
        &mut self,
        version: SnapshotId,
        generation: &[u8],
        objects: &ObjectBatch,
        audit: Option<&[u8]>,
    ) -> Result<bool> {
        let (owner, repo) = keys(&self.project);
        let (name, v, body) = (
            self.branch.as_str().to_string(),
            number(version),
            generation.to_vec(),
        );
        let audit = audit.map(<[u8]>::to_vec);
        let audited = audit.is_some();
        let mut objects: Vec<(String, bytes::Bytes)> = objects
            .pending
            .iter()
            .map(|(hash, bytes)| (hash.clone(), bytes.clone()))
            .collect();
        // In one order for every writer: two writes storing the same new
        // contents each wait for the other's row, never in a cycle.
        objects.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let staged = self.conn()?.run(|c| async move {
            // Many rows a statement: an import's thousands of contents
            // are not thousands of round trips.
            for chunk in object_chunks(&objects) {
                let hashes: Vec<&str> = chunk.iter().map(|(h, _)| h.as_str()).collect();
                let bodies: Vec<&[u8]> = chunk.iter().map(|(_, b)| &b[..]).collect();
                c.execute(
                    "INSERT INTO cfgstore.objects (owner, repo, hash, body)
                     SELECT $1, $2, hash, body FROM unnest($3::text[], $4::bytea[]) AS o(hash, body)
                     ON CONFLICT DO NOTHING",
                    &[&owner, &repo, &hashes, &bodies],
                )
                .await?;
            }
            c.execute(
                "INSERT INTO cfgstore.generations VALUES ($1, $2, $3, $4, $5)",
                &[&owner, &repo, &name, &v, &body],
            )
            .await?;
            c.execute(
                "UPDATE cfgstore.branches SET head = $4
                 WHERE owner = $1 AND repo = $2 AND name = $3",
                &[&owner, &repo, &name, &v],
            )
            .await?;
            if let Some(line) = audit {
                c.execute("INSERT INTO cfgstore.audit (line) VALUES ($1)", &[&line])
                    .await?;
            }
            Ok(())
        });
        if let Err(e) = staged {
            if let Some(conn) = self.conn.take() {
                if !end(&conn, "ROLLBACK") {
                    conn.discard();
                }
            }
            return Err(e);
        }
        let committed = self
            .lose_connection_at("postgres.commit.before")
            .and_then(|()| self.commit_and_relock())
            .and_then(|()| self.lose_connection_at("postgres.commit.after"));
        match committed {
            Ok(()) => {}
            // The commit's answer was lost: read the version back. An
            // answer we cannot get either is reported as unavailable, and
            // nothing is retried.
            Err(e) => match self.published(version) {
                Ok(true) => {}
                Ok(false) => return Err(e),
                Err(unknown) => return Err(unknown),
            },
        }
        self.head = version;
        Ok(audited)
    }

    fn set_floor(&mut self, floor: SnapshotId) -> Result<()> {
        let (owner, repo) = keys(&self.project);
        let (name, f) = (self.branch.as_str().to_string(), number(floor));
        self.conn()?.run(|c| async move {
            c.execute(
                "UPDATE cfgstore.branches SET floor = $4
                 WHERE owner = $1 AND repo = $2 AND name = $3",
                &[&owner, &repo, &name, &f],
            )
            .await
            .map(drop)
        })?;
        self.commit_and_relock()
    }

    fn remove_below_floor(&mut self) -> Result<u64> {
        let (owner, repo) = keys(&self.project);
        let name = self.branch.as_str().to_string();
        let removed = self.conn()?.run(|c| async move {
            c.execute(
                "DELETE FROM cfgstore.generations g USING cfgstore.branches b
                 WHERE g.owner = $1 AND g.repo = $2 AND g.branch = $3
                   AND b.owner = g.owner AND b.repo = g.repo AND b.name = g.branch
                   AND g.version < b.floor",
                &[&owner, &repo, &name],
            )
            .await
        })?;
        self.commit_and_relock()?;
        Ok(removed)
    }
}

impl Drop for RowLock<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !end(&conn, "ROLLBACK") {
                conn.discard();
            }
        }
    }
}

/// A project's objects lock (session-level advisory), held.
pub(super) struct InFlight<'a> {
    conn: Option<Connection<'a>>,
    key: i64,
    exclusive: bool,
}

impl ObjectsGuard for InFlight<'_> {}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let (key, release) = (
                self.key,
                if self.exclusive {
                    "SELECT pg_advisory_unlock($1)"
                } else {
                    "SELECT pg_advisory_unlock_shared($1)"
                },
            );
            let released = conn.run(move |c| async move { c.query_one(release, &[&key]).await });
            // A connection still holding the lock must not go back to the
            // pool: closing it releases the lock.
            if released.is_err() {
                conn.discard();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::object_chunks;

    #[test]
    fn objects_go_in_runs_bounded_by_rows_and_bytes() {
        let object = |size: usize| (format!("h{size}"), bytes::Bytes::from(vec![0u8; size]));
        let sizes = |objects: &[(String, bytes::Bytes)]| -> Vec<usize> {
            object_chunks(objects).map(|c| c.len()).collect()
        };
        assert!(sizes(&[]).is_empty());
        // 2,500 small ones: runs of 1,000.
        let small: Vec<_> = (0..2500).map(|_| object(10)).collect();
        assert_eq!(sizes(&small), vec![1000, 1000, 500]);
        // 3 MiB each: two fit in 8 MiB; one over the limit goes alone.
        let big: Vec<_> = [3 << 20, 3 << 20, 3 << 20, 9 << 20, 1]
            .into_iter()
            .map(object)
            .collect();
        assert_eq!(sizes(&big), vec![2, 1, 1, 1]);
        let all: usize = object_chunks(&big).map(|c| c.len()).sum();
        assert_eq!(all, big.len(), "every object in exactly one run");
    }
}
