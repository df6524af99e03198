//! `cfgstore audit`: read the audit trail.

use std::process::ExitCode;

use cfgstore::store::audit::AuditFilter;
use cfgstore::store::Store;
use clap::Args;

use crate::output::{print_json, print_table};

#[derive(Args)]
pub struct AuditArgs {
    /// From this time on (YYYY-MM-DD or RFC 3339)
    #[arg(long)]
    since: Option<String>,
    /// Up to this time (YYYY-MM-DD or RFC 3339)
    #[arg(long)]
    until: Option<String>,
    /// An action (file.put) or a family (token)
    #[arg(long)]
    action: Option<String>,
    /// A user, token:{id} or cli:{unix user}
    #[arg(long)]
    actor: Option<String>,
    /// OWNER/PROJECT
    #[arg(long)]
    project: Option<String>,
    /// Show at most this many records (newest first)
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Store, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let time = |v: Option<String>| -> anyhow::Result<Option<String>> {
        Ok(
            v.map(|v| cfgstore::auth::parse_expiry(&v).map(cfgstore::store::format_time))
                .transpose()?,
        )
    };
    let filter = AuditFilter {
        action: args.action,
        actor: args.actor,
        project: args.project,
        since: time(args.since)?,
        until: time(args.until)?,
    };
    let mut records = store.read_audit(&filter)?;
    records.truncate(args.limit);
    if args.json {
        print_json(&records)?;
    } else {
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                let details = if r.details.is_null() {
                    String::new()
                } else {
                    r.details.to_string()
                };
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
