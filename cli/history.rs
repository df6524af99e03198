//! `cfgstore history list | show | diff` and `cfgstore rollback`

use std::process::ExitCode;

use cfgstore::compare::{self, FileChange, KeyChange, Status};
use cfgstore::names::SnapshotId;
use cfgstore::ops;
use cfgstore::store::retention::{Keep, PruneRun};
use cfgstore::store::{Generation, ProjectRef, Store, VersionInfo};
use clap::{Args, Subcommand};

use crate::output::{self, print_json, print_table};

#[derive(Subcommand)]
pub enum Command {
    /// List a branch's versions, the live one first: who made each, when,
    /// what it did and how many files it added, changed and removed
    List {
        /// OWNER/PROJECT
        project: String,
        /// The branch, e.g. main or release/2026.1
        branch: String,
        /// Print JSON (one object per version) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one version (the live one too): who made it, and its files
    Show {
        /// OWNER/PROJECT
        project: String,
        /// The branch, e.g. main
        branch: String,
        /// The version, vNNNN
        version: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Compare two versions: files added, removed, changed, with line diffs
    Diff {
        /// OWNER/PROJECT
        project: String,
        /// The branch, e.g. main
        branch: String,
        /// The older version, vNNNN
        from: String,
        /// The newer version, vNNNN (the live version number works too)
        to: String,
        /// Print JSON (paths only) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Drop old versions of a branch (never the live one); `cfgstore gc`
    /// then frees the contents only they used
    #[command(group(clap::ArgGroup::new("which").required(true).args(["keep", "older_than"])))]
    Prune {
        /// OWNER/PROJECT
        project: String,
        /// The branch, e.g. main
        branch: String,
        /// Keep the newest N versions, the live one included
        #[arg(long, value_name = "N")]
        keep: Option<u64>,
        /// Drop the versions replaced more than this long ago (90d, 12h);
        /// the versions live within that time stay
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
        /// Print the outcome as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct RollbackArgs {
    /// OWNER/PROJECT
    project: String,
    /// The branch, e.g. main
    branch: String,
    /// The version to set the branch back to (see `history list`)
    #[arg(long, value_name = "vNNNN")]
    to: String,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    /// Print the outcome as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Store, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::List {
            project,
            branch,
            json,
        } => {
            let (project, branch) = (output::project(&project)?, output::branch(&branch)?);
            let history = store.history(&project, &branch)?;
            if json {
                print_json(&history)?;
            } else {
                let rows: Vec<Vec<String>> = history.iter().map(version_row).collect();
                print_table(
                    &[
                        "VERSION", "WHEN", "BY", "FILES", "+ ~ -", "SHORT_ID", "WHAT",
                    ],
                    &rows,
                );
            }
        }
        Command::Show {
            project,
            branch,
            version,
            json,
        } => {
            let (project, branch, version) = (
                output::project(&project)?,
                output::branch(&branch)?,
                output::version(&version)?,
            );
            let gen = store.version(&project, &branch, version)?;
            let info = store
                .history(&project, &branch)?
                .into_iter()
                .find(|s| s.version == version);
            if json {
                let files: Vec<_> = gen
                    .entries()
                    .iter()
                    .map(|e| serde_json::json!({ "path": e.path, "size": e.size, "md5": e.md5 }))
                    .collect();
                print_json(&serde_json::json!({ "version": info, "files": files }))?;
            } else {
                let live = if info.as_ref().is_some_and(|i| i.live) {
                    " (live)"
                } else {
                    ""
                };
                println!("version   {version}{live} of {project} {branch}");
                if let Some(info) = &info {
                    println!(
                        "made      {} by {}: {}",
                        info.created_at, info.actor, info.action
                    );
                    println!(
                        "changes   {} added, {} changed, {} removed",
                        info.added, info.changed, info.removed
                    );
                }
                println!("short_id  {}", gen.meta.short_id);
                println!("files     {}", gen.meta.file_count);
                println!();
                let rows: Vec<Vec<String>> = gen
                    .entries()
                    .iter()
                    .map(|e| vec![output::size(e.size), e.md5.clone(), e.path.to_string()])
                    .collect();
                print_table(&["SIZE", "MD5", "PATH"], &rows);
            }
        }
        Command::Diff {
            project,
            branch,
            from,
            to,
            json,
        } => {
            let (project, branch) = (output::project(&project)?, output::branch(&branch)?);
            let old = store.version(&project, &branch, output::version(&from)?)?;
            let new = store.version(&project, &branch, output::version(&to)?)?;
            diff(store, &project, &old, &new, json)?;
        }
        Command::Prune {
            project,
            branch,
            keep,
            older_than,
            yes,
            json,
        } => return prune(store, &project, &branch, keep, older_than, yes, json),
    }
    Ok(ExitCode::SUCCESS)
}

/// A history row: the live version marked, counts as `+added ~changed -removed`.
fn version_row(v: &VersionInfo) -> Vec<String> {
    let version = if v.live {
        format!("{} (live)", v.version)
    } else {
        v.version.to_string()
    };
    vec![
        version,
        v.created_at.clone(),
        v.actor.clone(),
        v.file_count.to_string(),
        format!("+{} ~{} -{}", v.added, v.changed, v.removed),
        v.short_id.clone(),
        v.action.clone(),
    ]
}

pub fn rollback(store: &Store, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let (project, branch, to) = (
        output::project(&args.project)?,
        output::branch(&args.branch)?,
        output::version(&args.to)?,
    );
    // Fail on an unknown version before asking anything.
    let target = store.version(&project, &branch, to)?;
    let live = store.branch(&project, &branch)?;
    if !args.yes && target.meta.short_id != live.short_id {
        let question = format!(
            "Roll back {project} {branch} from {} ({} files) to {to} ({} files)? The current state stays in the history as {}.",
            live.version, live.file_count, target.meta.file_count, live.version
        );
        if !output::confirm(&question)? {
            eprintln!("not rolled back");
            return Ok(ExitCode::FAILURE);
        }
    }
    let outcome = ops::content::rollback(store, &crate::actor(), &project, &branch, to)?;
    crate::file::report_write(&outcome, &format!("rolled back to {to}"), args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// `history prune`: says what it will drop, asks, drops.
fn prune(
    store: &Store,
    project: &str,
    branch: &str,
    keep: Option<u64>,
    older_than: Option<String>,
    yes: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (project, branch) = (output::project(project)?, output::branch(branch)?);
    let keep = match (keep, older_than) {
        (Some(0), _) => return Err(output::UsageError("--keep must be at least 1".into()).into()),
        (Some(n), _) => Keep::Newest(n),
        (None, Some(text)) => {
            let age = cfgstore::auth::parse_duration(&text)
                .map_err(|e| output::UsageError(format!("--older-than: {e}")))?;
            let cutoff = time::OffsetDateTime::now_utc()
                .checked_sub(age)
                .ok_or_else(|| {
                    output::UsageError(format!("--older-than {text} reaches before any date"))
                })?;
            Keep::LiveSince(cutoff)
        }
        (None, None) => {
            return Err(output::UsageError("give --keep N or --older-than DURATION".into()).into())
        }
    };
    let plan = store.prune_history(&project, &branch, keep, PruneRun::Plan)?;
    if plan.removed == 0 {
        if json {
            print_json(&plan)?;
        } else {
            println!(
                "nothing to drop: {project} {branch} keeps {}..{}",
                plan.floor, plan.live
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        let question = format!(
            "Drop {} version(s) of {project} {branch} ({}..{}), keeping {}..{} (live)? \
             A dropped version cannot be read or rolled back to.",
            plan.removed,
            plan.floor_before,
            SnapshotId::new(plan.floor.number() - 1).expect("a version below the floor"),
            plan.floor,
            plan.live
        );
        if !output::confirm(&question)? {
            eprintln!("nothing dropped");
            return Ok(ExitCode::FAILURE);
        }
    }
    let outcome = ops::retention::prune(store, &crate::actor(), &project, &branch, keep)?;
    if json {
        print_json(&outcome)?;
    } else {
        println!(
            "dropped {} version(s) of {project} {branch}; kept {}..{}. `cfgstore gc` frees the contents only they used.",
            outcome.removed, outcome.floor, outcome.live
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize)]
struct DiffJson {
    from: String,
    to: String,
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
    /// The changed keys of each modified JSON, YAML or TOML file, by path.
    keys: std::collections::BTreeMap<String, Vec<KeyChange>>,
}

fn diff(
    store: &Store,
    project: &ProjectRef,
    old: &Generation,
    new: &Generation,
    json: bool,
) -> anyhow::Result<()> {
    let files = compare::files(store, project, old, new)?;
    let (from, to) = (old.meta.version.to_string(), new.meta.version.to_string());
    if !json {
        println!("{from} -> {to}: {}", counts(&files));
        print_files(&files, &from, &to);
        return Ok(());
    }
    let paths = |status: Status| {
        files
            .iter()
            .filter(|f| f.status == status)
            .map(|f| f.path.clone())
            .collect()
    };
    print_json(&DiffJson {
        added: paths(Status::Added),
        removed: paths(Status::Removed),
        changed: paths(Status::Modified),
        keys: files
            .iter()
            .filter_map(|f| Some((f.path.clone(), f.keys.clone()?)))
            .collect(),
        from,
        to,
    })
}

#[derive(Args)]
pub struct CompareArgs {
    /// OWNER/PROJECT
    project: String,
    /// The older state: a branch (its live state), BRANCH@vNNNN, or a
    /// commit id or short_id
    from: String,
    /// The newer state, named the same ways (it may be on another branch)
    to: String,
    /// Print JSON: both states, and per file its status, diff and changed keys
    #[arg(long)]
    json: bool,
}

/// `cfgstore compare`: two states of a project, as the admin API's
/// `compare` shows them.
pub fn compare(store: &Store, args: CompareArgs) -> anyhow::Result<ExitCode> {
    let project = output::project(&args.project)?;
    let comparison = compare::compare(store, &project, &args.from, &args.to)?;
    if args.json {
        print_json(&comparison)?;
        return Ok(ExitCode::SUCCESS);
    }
    let label = |s: &compare::State| {
        let pinned = format!("{}@{}", s.branch, s.version);
        if s.reference == s.branch {
            format!("{} ({}, {})", s.branch, s.version, s.short_id)
        } else if s.reference == pinned {
            format!("{pinned} ({})", s.short_id)
        } else {
            format!("{} ({pinned})", s.reference)
        }
    };
    println!(
        "{} -> {}: {}",
        label(&comparison.from),
        label(&comparison.to),
        counts(&comparison.files)
    );
    print_files(
        &comparison.files,
        &comparison.from.reference,
        &comparison.to.reference,
    );
    Ok(ExitCode::SUCCESS)
}

fn counts(files: &[FileChange]) -> String {
    let count = |s: Status| files.iter().filter(|f| f.status == s).count();
    format!(
        "{} added, {} removed, {} changed",
        count(Status::Added),
        count(Status::Removed),
        count(Status::Modified)
    )
}

/// One line per file (the changed keys of config files under it), then
/// the line diffs of the changed files.
fn print_files(files: &[FileChange], from: &str, to: &str) {
    for f in files {
        let status = match f.status {
            Status::Added => "added  ",
            Status::Removed => "removed",
            Status::Modified => "changed",
        };
        println!("  {status}  {}", f.path);
        match &f.keys {
            Some(keys) if keys.is_empty() => {
                println!("             (formatting only: no key changed)")
            }
            Some(keys) => {
                for key in keys {
                    println!("             {key}");
                }
            }
            None => {}
        }
    }
    for f in files.iter().filter(|f| f.status == Status::Modified) {
        println!("\n--- {} ({from})\n+++ {} ({to})", f.path, f.path);
        print!("{}", f.diff);
    }
}
