//! A restore into the database: a whole store loaded in one transaction,
//! so a restore that fails part-way leaves the database as it was.

use super::content::{end, keys, number};
use super::pool::Connection;
use super::{kind_name, Postgres};
use crate::error::{Error, Result};
use crate::names::{BranchName, ProjectRef, SnapshotId};
use crate::store::backend::{Load, Records};

/// The transaction a restore loads into.
pub(super) struct PgLoad<'a> {
    conn: Option<Connection<'a>>,
}

impl Postgres {
    /// Begins a restore: takes the tables a restore fills (other writers
    /// wait until it ends) and checks that they hold no store yet.
    pub(super) fn begin_load(&self) -> Result<PgLoad<'_>> {
        let conn = self.pool.connection()?;
        let (tokens, users) = (kind_name(Records::Tokens), kind_name(Records::Users));
        let found = conn.run(move |c| async move {
            c.batch_execute(
                "BEGIN;
                 LOCK TABLE cfgstore.projects, cfgstore.records IN SHARE ROW EXCLUSIVE MODE",
            )
            .await?;
            let row = c
                .query_one(
                    "SELECT (SELECT count(*) FROM cfgstore.projects),
                            (SELECT count(*) FROM cfgstore.records WHERE kind IN ($1, $2))",
                    &[&tokens, &users],
                )
                .await?;
            Ok((row.get::<_, i64>(0), row.get::<_, i64>(1)))
        });
        match found {
            Ok((0, 0)) => Ok(PgLoad { conn: Some(conn) }),
            Ok((projects, records)) => {
                end(&conn, "ROLLBACK");
                Err(Error::Conflict(format!(
                    "the database at {} already holds a store ({projects} projects, {records} tokens and users): \
                     a backup is restored into an empty one (a new database, made ready by `cfgstore init`)",
                    self.place()
                )))
            }
            Err(e) => {
                conn.discard();
                Err(e)
            }
        }
    }
}

impl PgLoad<'_> {
    fn execute(
        &self,
        sql: &'static str,
        args: impl FnOnce() -> Vec<Box<dyn tokio_postgres::types::ToSql + Send + Sync>>,
    ) -> Result<()> {
        let conn = self.conn.as_ref().expect("a load in progress");
        let args = args();
        conn.run(move |c| async move {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
                .iter()
                .map(|a| a.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            c.execute(sql, &refs).await.map(drop)
        })
    }
}

/// Boxes one statement argument.
fn arg<T: tokio_postgres::types::ToSql + Send + Sync + 'static>(
    value: T,
) -> Box<dyn tokio_postgres::types::ToSql + Send + Sync> {
    Box::new(value)
}

impl Load for PgLoad<'_> {
    fn project(&mut self, project: &ProjectRef, record: &[u8]) -> Result<()> {
        let (owner, repo) = keys(project);
        self.execute("INSERT INTO cfgstore.projects VALUES ($1, $2, $3)", || {
            vec![arg(owner), arg(repo), arg(record.to_vec())]
        })
    }

    fn object(&mut self, project: &ProjectRef, hash: &str, bytes: &[u8]) -> Result<()> {
        let (owner, repo) = keys(project);
        self.execute(
            "INSERT INTO cfgstore.objects VALUES ($1, $2, $3, $4)",
            || {
                vec![
                    arg(owner),
                    arg(repo),
                    arg(hash.to_string()),
                    arg(bytes.to_vec()),
                ]
            },
        )
    }

    fn branch(
        &mut self,
        project: &ProjectRef,
        branch: &BranchName,
        floor: SnapshotId,
        head: SnapshotId,
    ) -> Result<()> {
        let (owner, repo) = keys(project);
        self.execute(
            "INSERT INTO cfgstore.branches (owner, repo, name, head, floor)
             VALUES ($1, $2, $3, $4, $5)",
            || {
                vec![
                    arg(owner),
                    arg(repo),
                    arg(branch.as_str().to_string()),
                    arg(number(head)),
                    arg(number(floor)),
                ]
            },
        )
    }

    fn generation(
        &mut self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
        bytes: &[u8],
    ) -> Result<()> {
        let (owner, repo) = keys(project);
        self.execute(
            "INSERT INTO cfgstore.generations VALUES ($1, $2, $3, $4, $5)",
            || {
                vec![
                    arg(owner),
                    arg(repo),
                    arg(branch.as_str().to_string()),
                    arg(number(version)),
                    arg(bytes.to_vec()),
                ]
            },
        )
    }

    fn record(&mut self, kind: Records, key: &str, bytes: &[u8]) -> Result<()> {
        self.execute(
            "INSERT INTO cfgstore.records (kind, key, body) VALUES ($1, $2, $3)",
            || {
                vec![
                    arg(kind_name(kind)),
                    arg(key.to_string()),
                    arg(bytes.to_vec()),
                ]
            },
        )
    }

    fn audit(&mut self, line: &[u8]) -> Result<()> {
        self.execute("INSERT INTO cfgstore.audit (line) VALUES ($1)", || {
            vec![arg(line.to_vec())]
        })
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let conn = self.conn.take().expect("a load in progress");
        let committed = conn.run(|c| async move { c.batch_execute("COMMIT").await });
        if committed.is_err() {
            conn.discard();
        }
        committed
    }
}

impl Drop for PgLoad<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !end(&conn, "ROLLBACK") {
                conn.discard();
            }
        }
    }
}
