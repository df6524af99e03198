//! `cfgstore branch create | list`

use std::process::ExitCode;

use cfgstore::ops;
use cfgstore::store::{BranchInfo, Store};
use clap::Subcommand;

use crate::output::{self, print_json, print_table};

#[derive(Subcommand)]
pub enum Command {
    /// Create a branch, empty or as a copy of another branch's files
    Create {
        /// OWNER/PROJECT
        project: String,
        /// Branch name (git rules; `/` allowed, e.g. release/2026.1)
        name: String,
        /// Start from this branch's current files
        #[arg(long)]
        from: Option<String>,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
    /// List branches with their short_id (the poll token) and default flag
    List {
        /// OWNER/PROJECT
        project: String,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
}

/// A branch as `--json` prints it: the GitLab-style ids plus our version.
#[derive(serde::Serialize)]
struct BranchJson<'a> {
    name: &'a str,
    short_id: &'a str,
    commit_id: &'a str,
    default: bool,
    version: String,
    file_count: u64,
    updated_at: &'a str,
}

pub fn run(store: &Store, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Create {
            project,
            name,
            from,
            json,
        } => {
            let project = output::project(&project)?;
            let name = output::branch(&name)?;
            let from = from.as_deref().map(output::branch).transpose()?;
            let info = ops::content::create_branch(
                store,
                &crate::actor(),
                &project,
                &name,
                from.as_ref(),
            )?;
            if json {
                print_json(&to_json(&info))?;
            } else {
                match from {
                    Some(from) => println!(
                        "created branch {name} in {project} from {from} ({} files)",
                        info.file_count
                    ),
                    None => println!("created empty branch {name} in {project}"),
                }
            }
        }
        Command::List { project, json } => {
            let project = output::project(&project)?;
            let branches = store.list_branches(&project)?;
            if json {
                print_json(&branches.iter().map(to_json).collect::<Vec<_>>())?;
            } else {
                print_branches(&branches);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn to_json(b: &BranchInfo) -> BranchJson<'_> {
    BranchJson {
        name: b.name.as_str(),
        short_id: &b.short_id,
        commit_id: &b.commit_id,
        default: b.default,
        version: b.version.to_string(),
        file_count: b.file_count,
        updated_at: &b.updated_at,
    }
}

pub fn print_branches(branches: &[BranchInfo]) {
    let rows: Vec<Vec<String>> = branches
        .iter()
        .map(|b| {
            vec![
                format!("{}{}", b.name, if b.default { " *" } else { "" }),
                b.short_id.clone(),
                b.version.to_string(),
                b.file_count.to_string(),
                b.updated_at.clone(),
            ]
        })
        .collect();
    print_table(
        &["BRANCH", "SHORT_ID", "VERSION", "FILES", "UPDATED"],
        &rows,
    );
    if branches.iter().any(|b| b.default) {
        println!("(* = default branch)");
    }
}
