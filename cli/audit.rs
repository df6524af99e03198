//! `cfgstore audit`: read the audit trail.

use std::process::ExitCode;

use cfgstore::ops::audit::Event;
use cfgstore::store::audit::AuditFilter;
use cfgstore::store::{ProjectRef, Store};
use clap::Args;

use crate::output::{print_json, print_table, UsageError};

#[derive(Args)]
pub struct AuditArgs {
    /// From this time on: a date (YYYY-MM-DD), an RFC 3339 time, or a
    /// duration back from now (30m, 1h, 7d)
    #[arg(long, value_name = "TIME|DURATION")]
    since: Option<String>,
    /// Up to this time: a date, an RFC 3339 time, or a duration back from now
    #[arg(long, value_name = "TIME|DURATION")]
    until: Option<String>,
    /// An action (file.put) or a family (token); see the list in `--help`
    #[arg(long)]
    action: Option<String>,
    /// A user, token:{id} or cli:{unix user}
    #[arg(long)]
    actor: Option<String>,
    /// OWNER/PROJECT: records about that project and what is inside it
    #[arg(long, value_name = "OWNER/PROJECT")]
    project: Option<String>,
    /// Show at most this many records (newest first)
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print JSON (every field, details whole) instead of a table
    #[arg(long)]
    json: bool,
}

/// The longest details a table row shows; `--json` has them whole.
const DETAILS_WIDTH: usize = 80;

pub fn run(store: &Store, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let now = time::OffsetDateTime::now_utc();
    if let Some(action) = &args.action {
        if !Event::is_known_filter(action) {
            let known: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
            return Err(UsageError(format!(
                "unknown action {action:?}: use one of {}, or a family such as token",
                known.join(", ")
            ))
            .into());
        }
    }
    let project = match &args.project {
        None => None,
        Some(p) if !p.contains('/') => {
            return Err(UsageError(format!(
                "--project wants OWNER/PROJECT, e.g. demo/{p} (projects of that name: {})",
                owners_of(store, p)?
            ))
            .into())
        }
        Some(p) => Some(ProjectRef::parse(p)?.to_string()),
    };
    let filter = AuditFilter {
        action: args.action,
        actor: args.actor,
        project,
        since: args.since.map(|v| point_in_time(&v, now)).transpose()?,
        until: args.until.map(|v| point_in_time(&v, now)).transpose()?,
    };
    let mut records = store.read_audit(&filter)?;
    records.truncate(args.limit);
    if args.json {
        print_json(&records)?;
    } else {
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                let mut details = if r.details.is_null() {
                    String::new()
                } else {
                    r.details.to_string()
                };
                if details.chars().count() > DETAILS_WIDTH {
                    details = details.chars().take(DETAILS_WIDTH - 1).collect::<String>() + "…";
                }
                vec![
                    r.time.clone(),
                    r.actor.clone(),
                    r.action.clone(),
                    r.target.clone(),
                    details,
                ]
            })
            .collect();
        print_table(&["TIME", "ACTOR", "ACTION", "TARGET", "DETAILS"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-12-01`, `2026-12-01T08:00:00Z`, or a duration back from now
/// (`1h`, `7d`), as the RFC 3339 UTC text the trail is filtered by.
fn point_in_time(text: &str, now: time::OffsetDateTime) -> anyhow::Result<String> {
    if let Ok(ago) = cfgstore::auth::parse_duration(text) {
        return Ok(cfgstore::store::format_time(now - ago));
    }
    match cfgstore::auth::parse_expiry(text) {
        Ok(t) => Ok(cfgstore::store::format_time(t)),
        Err(_) => Err(UsageError(format!(
            "invalid time {text:?}: use a date (2026-12-01), an RFC 3339 time \
             (2026-12-01T08:00:00Z) or a duration back from now (30m, 1h, 7d)"
        ))
        .into()),
    }
}

/// The owners that have a project named `repo`, for the usage message.
fn owners_of(store: &Store, repo: &str) -> anyhow::Result<String> {
    let owners: Vec<String> = store
        .list_projects(None)?
        .into_iter()
        .filter(|p| p.repo.as_str() == repo)
        .map(|p| p.project_ref().to_string())
        .collect();
    Ok(if owners.is_empty() {
        "none".into()
    } else {
        owners.join(", ")
    })
}
