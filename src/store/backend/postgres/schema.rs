//! The database schema, versioned and migrated forward.
//!
//! Everything cfgstore keeps lives in the schema `cfgstore`, so it can
//! share a database with other things. `cfgstore.meta` holds the schema
//! version; each migration takes the schema from one version to the next
//! and runs in one transaction with the version's update, under an
//! advisory lock, so two nodes starting at once migrate it once.

use super::pool::Pool;
use crate::error::{Error, Result};

/// Migration `n` (0-based) takes the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: records beside the content, the audit trail, the fleet view and
    // the change marker.
    "CREATE TABLE cfgstore.records (
         kind text NOT NULL,
         key text NOT NULL,
         body bytea NOT NULL,
         PRIMARY KEY (kind, key)
     );
     CREATE TABLE cfgstore.audit (
         id bigserial PRIMARY KEY,
         line bytea NOT NULL
     );
     CREATE TABLE cfgstore.fleet (
         project text PRIMARY KEY,
         body bytea NOT NULL
     );
     CREATE TABLE cfgstore.changes (
         id int PRIMARY KEY CHECK (id = 1),
         marker bytea NOT NULL
     );
     INSERT INTO cfgstore.changes VALUES (1, '\\x');",
    // 2: content. A project's objects (contents and trees, by hash), its
    // branches (head and floor: the live and the oldest kept version) and
    // their versions' generation files.
    "CREATE TABLE cfgstore.projects (
         owner text NOT NULL,
         repo text NOT NULL,
         record bytea NOT NULL,
         PRIMARY KEY (owner, repo)
     );
     CREATE TABLE cfgstore.branches (
         owner text NOT NULL,
         repo text NOT NULL,
         name text NOT NULL,
         head bigint NOT NULL,
         floor bigint NOT NULL DEFAULT 1,
         PRIMARY KEY (owner, repo, name),
         FOREIGN KEY (owner, repo) REFERENCES cfgstore.projects
     );
     CREATE TABLE cfgstore.generations (
         owner text NOT NULL,
         repo text NOT NULL,
         branch text NOT NULL,
         version bigint NOT NULL,
         body bytea NOT NULL,
         PRIMARY KEY (owner, repo, branch, version),
         FOREIGN KEY (owner, repo, branch) REFERENCES cfgstore.branches
     );
     CREATE TABLE cfgstore.objects (
         owner text NOT NULL,
         repo text NOT NULL,
         hash text NOT NULL,
         body bytea NOT NULL,
         PRIMARY KEY (owner, repo, hash),
         FOREIGN KEY (owner, repo) REFERENCES cfgstore.projects
     );",
];

/// The schema version this build writes.
pub const CURRENT: i32 = MIGRATIONS.len() as i32;

/// Held while migrating (an advisory lock key: "cfgs" "mig").
const MIGRATION_LOCK: i64 = 0x6366_6773_006d_6967;

/// What `migrate` found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: i32,
    pub to: i32,
}

/// The schema's version: 0 when there is no cfgstore schema.
pub fn version(pool: &Pool) -> Result<i32> {
    let conn = pool.connection()?;
    conn.run(|c| async move {
        let exists = c
            .query_one("SELECT to_regclass('cfgstore.meta') IS NOT NULL", &[])
            .await?
            .get::<_, bool>(0);
        if !exists {
            return Ok(0);
        }
        let row = c
            .query_opt("SELECT value FROM cfgstore.meta WHERE key = 'schema'", &[])
            .await?;
        Ok(row.map_or(0, |r| r.get::<_, String>(0).parse().unwrap_or(-1)))
    })
}

/// Brings the schema to `CURRENT`, creating it if there is none.
/// Errors: `Invalid` if the database holds a newer schema than this build
/// knows (a newer cfgstore wrote it), `Io` if it cannot be reached.
pub fn migrate(pool: &Pool) -> Result<Migrated> {
    let conn = pool.connection()?;
    let outcome = conn.run(|c| async move {
        c.batch_execute("BEGIN").await?;
        let result = async {
            c.query_one("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            c.batch_execute(
                "CREATE SCHEMA IF NOT EXISTS cfgstore;
                 CREATE TABLE IF NOT EXISTS cfgstore.meta (
                     key text PRIMARY KEY,
                     value text NOT NULL
                 );",
            )
            .await?;
            let from = c
                .query_opt("SELECT value FROM cfgstore.meta WHERE key = 'schema'", &[])
                .await?
                .map_or(Some(0), |r| r.get::<_, String>(0).parse::<i32>().ok());
            let Some(from) = from.filter(|v| (0..=CURRENT).contains(v)) else {
                return Ok(Err(from));
            };
            for step in &MIGRATIONS[from as usize..] {
                c.batch_execute(step).await?;
            }
            c.execute(
                "INSERT INTO cfgstore.meta VALUES ('schema', $1)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&CURRENT.to_string()],
            )
            .await?;
            Ok::<_, tokio_postgres::Error>(Ok(from))
        }
        .await;
        match &result {
            Ok(Ok(_)) => c.batch_execute("COMMIT").await?,
            _ => c.batch_execute("ROLLBACK").await?,
        }
        result
    })?;
    match outcome {
        Ok(from) => Ok(Migrated { from, to: CURRENT }),
        Err(found) => Err(Error::invalid(format!(
            "the database at {} holds cfgstore schema {}, newer than this cfgstore knows ({CURRENT}): upgrade cfgstore",
            pool.place(),
            found.map_or("of an unknown version".to_string(), |v| v.to_string()),
        ))),
    }
}
