//! `cfgstore token create | list | show | update | revoke | rotate | unbind`

use std::process::ExitCode;

use cfgstore::auth::{self, TokenRecord};
use cfgstore::ops;
use cfgstore::store::tokens::TokenUpdate;
use cfgstore::store::{OwnerName, RepoId, Store};
use clap::Subcommand;

use crate::output::{self, print_json, print_table, UsageError};

#[derive(Subcommand)]
pub enum Command {
    /// Create a read token; the secret is printed once and never again
    Create {
        /// Owner whose projects the token reads
        #[arg(long)]
        owner: String,
        /// A name to recognise the token by, e.g. the ERP host
        #[arg(long)]
        name: String,
        /// Comma-separated project ids it may read (default: all of the owner's)
        #[arg(long, value_delimiter = ',')]
        repos: Vec<String>,
        /// Expiry: YYYY-MM-DD (00:00 UTC that day) or an RFC 3339 time
        #[arg(long, value_name = "DATE|RFC3339")]
        expires: Option<String>,
        /// Require X-Instance-Id; the first request binds it
        #[arg(long)]
        fingerprint: bool,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets)
    List {
        /// Only the tokens of this owner
        #[arg(long)]
        owner: Option<String>,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Show one token
    Show {
        /// The token id (see `token list`)
        id: String,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Change a token; in force for the daemon's next request
    Update {
        /// The token id (see `token list`)
        id: String,
        /// A new name for the token
        #[arg(long)]
        name: Option<String>,
        /// Comma-separated project ids (replaces the list)
        #[arg(long, value_delimiter = ',', conflicts_with = "all_repos")]
        repos: Option<Vec<String>>,
        /// Allow every project of the owner
        #[arg(long)]
        all_repos: bool,
        /// New expiry: YYYY-MM-DD (00:00 UTC that day) or an RFC 3339 time
        #[arg(long, value_name = "DATE|RFC3339", conflicts_with = "no_expiry")]
        expires: Option<String>,
        /// Remove the expiry: the token never expires
        #[arg(long)]
        no_expiry: bool,
        /// Require X-Instance-Id (true) or not (false, which also unbinds)
        #[arg(long, value_name = "true|false")]
        fingerprint: Option<bool>,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: refused from the next request on
    Revoke {
        /// The token id (see `token list`)
        id: String,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
    /// Issue a successor with the same scope; the old one expires after the grace period
    Rotate {
        /// The token id (see `token list`)
        id: String,
        /// How long the old token keeps working, e.g. 30m, 24h, 7d (default: stops at once)
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Forget the bound fingerprint so the next request binds again (an ERP moved host)
    Unbind {
        /// The token id (see `token list`)
        id: String,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
}

fn repos(list: Vec<String>) -> anyhow::Result<Vec<RepoId>> {
    list.iter()
        .filter(|r| !r.is_empty())
        .map(|r| Ok(RepoId::parse(r)?))
        .collect()
}

pub fn run(store: &Store, cmd: Command) -> anyhow::Result<ExitCode> {
    let now = time::OffsetDateTime::now_utc();
    match cmd {
        Command::Create {
            owner,
            name,
            repos: list,
            expires,
            fingerprint,
            json,
        } => {
            let owner = OwnerName::parse(&owner)?;
            let new = ops::tokens::NewToken {
                owner,
                name,
                repos: repos(list)?,
                expires_at: expires,
                fingerprint_required: fingerprint,
            };
            let ops::tokens::Issued {
                record,
                secret,
                missing_repos,
            } = ops::tokens::create(store, &crate::actor(), new, now)?;
            for repo in &missing_repos {
                eprintln!(
                    "warning: {} has no project {repo} (yet): the token will read it once it exists",
                    record.owner
                );
            }
            if json {
                let mut value = serde_json::to_value(record.view(now))?;
                value["token"] = secret.into();
                print_json(&value)?;
            } else {
                println!(
                    "created token {} ({}) for {}",
                    record.id, record.name, record.owner
                );
                println!("token: {secret}");
                println!("This is the only time the token is shown. Store it now.");
            }
        }
        Command::List { owner, json } => {
            let owner = owner.map(|o| OwnerName::parse(&o)).transpose()?;
            let tokens = store.list_tokens(owner.as_ref())?;
            if json {
                print_json(&tokens.iter().map(|t| t.view(now)).collect::<Vec<_>>())?;
            } else {
                let rows: Vec<Vec<String>> = tokens.iter().map(|t| row(t, now)).collect();
                print_table(&COLUMNS, &rows);
            }
        }
        Command::Show { id, json } => show(&store.token(&id)?, now, json)?,
        Command::Update {
            id,
            name,
            repos: list,
            all_repos,
            expires,
            no_expiry,
            fingerprint,
            json,
        } => {
            let update = TokenUpdate {
                name,
                repos: if all_repos {
                    Some(Vec::new())
                } else {
                    list.map(repos).transpose()?
                },
                expires_at: if no_expiry {
                    Some(None)
                } else {
                    expires.map(Some)
                },
                fingerprint_required: fingerprint,
            };
            if update.name.is_none()
                && update.repos.is_none()
                && update.expires_at.is_none()
                && update.fingerprint_required.is_none()
            {
                return Err(UsageError("nothing to update: give --name, --repos, --all-repos, --expires, --no-expiry or --fingerprint".into()).into());
            }
            let record = ops::tokens::update(store, &crate::actor(), &id, update)?;
            show(&record, now, json)?;
        }
        Command::Revoke { id, yes } => {
            let record = store.token(&id)?;
            if !yes
                && !output::confirm(&format!(
                    "Revoke token {} ({}) of {}?",
                    record.id, record.name, record.owner
                ))?
            {
                eprintln!("not revoked");
                return Ok(ExitCode::FAILURE);
            }
            ops::tokens::revoke(store, &crate::actor(), &id)?;
            println!("revoked token {id}");
        }
        Command::Rotate { id, grace, json } => {
            let grace = grace
                .as_deref()
                .map(auth::parse_duration)
                .transpose()?
                .unwrap_or(time::Duration::ZERO);
            let rotated = ops::tokens::rotate(store, &crate::actor(), &id, grace, now)?;
            let (successor, secret, old) = (
                rotated.successor.record,
                rotated.successor.secret,
                rotated.previous,
            );
            if json {
                let mut value = serde_json::to_value(successor.view(now))?;
                value["token"] = secret.into();
                value["previous"] = serde_json::to_value(old.view(now))?;
                print_json(&value)?;
            } else {
                println!(
                    "created token {} ({}) replacing {}",
                    successor.id, successor.name, old.id
                );
                println!("token: {secret}");
                match (&old.revoked_at, &old.expires_at) {
                    (Some(_), _) => println!("the old token {} stopped working now", old.id),
                    (None, Some(until)) => {
                        println!("the old token {} keeps working until {until}", old.id)
                    }
                    (None, None) => {}
                }
                println!("This is the only time the token is shown. Store it now.");
            }
        }
        Command::Unbind { id, json } => {
            let record = ops::tokens::unbind(store, &crate::actor(), &id)?;
            show(&record, now, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The columns of `row`, for the list table and the `show` layout.
const COLUMNS: [&str; 9] = [
    "ID",
    "OWNER",
    "NAME",
    "TOKEN",
    "REPOS",
    "EXPIRES",
    "FINGERPRINT",
    "LAST USED",
    "STATE",
];

fn row(t: &TokenRecord, now: time::OffsetDateTime) -> Vec<String> {
    let v = t.view(now);
    vec![
        v.id,
        v.owner,
        v.name,
        v.suffix,
        if v.repos.is_empty() {
            "(all)".into()
        } else {
            v.repos.join(",")
        },
        v.expires_at.unwrap_or_else(|| "never".into()),
        match (v.fingerprint_required, v.fingerprint_bound) {
            (false, _) => "-".into(),
            (true, false) => "required, unbound".into(),
            (true, true) => "bound".into(),
        },
        v.last_used_at.unwrap_or_else(|| "never".into()),
        if v.revoked {
            "revoked".into()
        } else if v.active {
            "active".into()
        } else {
            "expired".into()
        },
    ]
}

fn show(t: &TokenRecord, now: time::OffsetDateTime, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&t.view(now));
    }
    for (k, v) in COLUMNS.iter().zip(row(t, now)) {
        println!("{:<12} {v}", k.to_lowercase());
    }
    Ok(())
}
