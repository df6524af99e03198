//! `cfgstore project create | list | show`

use std::process::ExitCode;

use cfgstore::ops;
use cfgstore::store::{OwnerName, Store};
use clap::Subcommand;

use crate::output::{self, print_json, print_table};

#[derive(Subcommand)]
pub enum Command {
    /// Create project NAME.TYPE of OWNER, with an empty `main` branch
    Create {
        /// Owning user (`public` for the public area)
        owner: String,
        /// Project name; the project id is NAME.TYPE
        name: String,
        /// Project type, e.g. erp-config
        #[arg(long = "type", default_value = "")]
        kind: String,
        /// Print the created project as JSON
        #[arg(long)]
        json: bool,
    },
    /// List projects
    List {
        /// Only this owner's projects
        #[arg(long)]
        owner: Option<String>,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Show one project and its branches
    Show {
        /// OWNER/PROJECT
        project: String,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
}

pub fn run(store: &Store, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Create {
            owner,
            name,
            kind,
            json,
        } => {
            let owner = OwnerName::parse(&owner)?;
            let info = ops::content::create_project(store, &crate::actor(), &owner, &name, &kind)?;
            if json {
                print_json(&info)?;
            } else {
                println!("created project {} with branch main", info.project_ref());
            }
        }
        Command::List { owner, json } => {
            let owner = owner.map(|o| OwnerName::parse(&o)).transpose()?;
            let projects = store.list_projects(owner.as_ref())?;
            if json {
                print_json(&projects)?;
            } else {
                let rows: Vec<Vec<String>> = projects
                    .iter()
                    .map(|p| {
                        vec![
                            p.owner.to_string(),
                            p.repo.to_string(),
                            p.kind.clone(),
                            p.created_at.clone(),
                        ]
                    })
                    .collect();
                print_table(&["OWNER", "PROJECT", "TYPE", "CREATED"], &rows);
            }
        }
        Command::Show { project, json } => {
            let project = output::project(&project)?;
            let info = store.project(&project)?;
            let branches = store.list_branches(&project)?;
            if json {
                print_json(&serde_json::json!({ "project": info, "branches": branches }))?;
            } else {
                println!("project  {project}");
                println!("name     {}", info.name);
                println!("type     {}", info.kind);
                println!("created  {}", info.created_at);
                println!();
                crate::branch::print_branches(&branches);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
