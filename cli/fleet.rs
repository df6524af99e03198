//! `cfgstore fleet OWNER/REPO`: which read client holds which state.

use std::process::ExitCode;

use cfgstore::store::Store;
use clap::Args;

use crate::output::{self, print_json, print_table};

#[derive(Args)]
pub struct FleetArgs {
    /// OWNER/PROJECT
    project: String,
    /// Only the ERP that sends this X-Instance-Id (the fleet shows
    /// instances by label, never by their id); from the environment, it
    /// stays out of the process list and the shell history
    #[arg(
        long,
        value_name = "ID",
        env = "CFGSTORE_INSTANCE_ID",
        hide_env_values = true
    )]
    instance: Option<String>,
    /// Print JSON (one object per client and branch) instead of a table
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Store, args: FleetArgs) -> anyhow::Result<ExitCode> {
    let project = output::project(&args.project)?;
    store.require_project(&project)?;
    // The daemon writes what it saw every few seconds and at shutdown.
    let clients = store.read_fleet(&project);
    let mut rows = cfgstore::fleet::view(store, &project, &clients)?;
    if let Some(id) = &args.instance {
        let label = cfgstore::fleet::label_of(store, id)?;
        rows.retain(|r| r.instance_id.as_deref() == Some(label.as_str()));
    }
    if args.json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!(
            "no read client has read {project} yet (the daemon records reads every few seconds)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let state = match (&r.live_short_id, r.current, &r.behind_since) {
                (None, _, _) => "branch gone".to_string(),
                (Some(_), true, _) => "current".to_string(),
                (Some(live), false, Some(since)) => format!("behind {live} since {since}"),
                (Some(live), false, None) => format!("behind {live}"),
            };
            vec![
                r.branch.clone(),
                r.short_id.clone(),
                state,
                r.token_name
                    .clone()
                    .unwrap_or_else(|| format!("({})", r.token_id)),
                r.instance_id.clone().unwrap_or_else(|| "-".into()),
                r.last_seen.clone(),
                r.address.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &[
            "BRANCH",
            "SHORT_ID",
            "STATE",
            "TOKEN",
            "INSTANCE",
            "LAST READ",
            "ADDRESS",
        ],
        &table,
    );
    Ok(ExitCode::SUCCESS)
}
