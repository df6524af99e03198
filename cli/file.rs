//! `cfgstore file put | get | rm | ls` and `cfgstore import`

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use cfgstore::ops;
use cfgstore::store::{tree, FilePath, Store, WriteOutcome};
use clap::{Args, Subcommand};
use walkdir::WalkDir;

use crate::output::{self, print_json, print_table, UsageError};

#[derive(Subcommand)]
pub enum Command {
    /// Save a file as a new version; the content comes from --from or stdin
    Put {
        /// OWNER/PROJECT
        project: String,
        /// The branch, e.g. main or release/2026.1
        branch: String,
        /// Path inside the branch, e.g. config/app.json
        path: String,
        /// Read the content from this file instead of stdin
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Only write if the branch is still at this short_id
        #[arg(long, value_name = "SHORT_ID")]
        if_match: Option<String>,
        /// Store it even if it is not well-formed JSON, YAML or TOML (audited)
        #[arg(long, conflicts_with = "dry_run")]
        no_validate: bool,
        /// Check it and show the diff and the new short_id; write nothing
        /// (exit 2 when it would be refused)
        #[arg(long)]
        dry_run: bool,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Write a file's exact bytes to stdout
    Get {
        /// OWNER/PROJECT
        project: String,
        /// The branch, e.g. main or release/2026.1
        branch: String,
        /// Path of the file inside the branch, e.g. config/app.json
        path: String,
        /// Read this version instead of the live state
        #[arg(long, value_name = "vNNNN")]
        version: Option<String>,
    },
    /// Remove a file (a new version; the one before stays in the history)
    Rm {
        /// OWNER/PROJECT
        project: String,
        /// The branch, e.g. main or release/2026.1
        branch: String,
        /// Path of the file inside the branch, e.g. config/app.json
        path: String,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
    /// List files and folders of a branch
    Ls {
        /// OWNER/PROJECT
        project: String,
        /// The branch, e.g. main or release/2026.1
        branch: String,
        /// Folder to list (default: the root)
        path: Option<String>,
        /// Descend into sub-folders
        #[arg(long, short)]
        recursive: bool,
        /// List this version instead of the live state
        #[arg(long, value_name = "vNNNN")]
        version: Option<String>,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct ImportArgs {
    /// OWNER/PROJECT
    project: String,
    /// The branch to write, e.g. main
    branch: String,
    /// Directory whose files are saved, keeping their relative paths
    dir: PathBuf,
    /// Make the branch hold exactly the directory's files (others removed)
    #[arg(long)]
    replace: bool,
    /// With --replace: remove files without asking
    #[arg(long)]
    yes: bool,
    /// Store the files even if some are not well-formed JSON, YAML or TOML (audited)
    #[arg(long)]
    no_validate: bool,
    /// Print the outcome as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// OWNER/PROJECT
    project: String,
    /// The branch to read, e.g. main
    branch: String,
    /// A new or empty directory to write the files into
    dir: PathBuf,
    /// Export this version instead of the live state
    #[arg(long, value_name = "vNNNN")]
    version: Option<String>,
    /// Print the outcome as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(store: &Store, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Put {
            project,
            branch,
            path,
            from,
            if_match,
            no_validate,
            dry_run,
            json,
        } => {
            let (project, branch, path) = (
                output::project(&project)?,
                output::branch(&branch)?,
                output::path(&path)?,
            );
            let bytes = read_content(from.as_deref())?;
            let write = ops::content::FileWrite {
                project: &project,
                branch: &branch,
                path: &path,
                bytes: &bytes,
            };
            if dry_run {
                let dry = ops::content::preview_put(store, &crate::actor(), write)?;
                if json {
                    print_json(&dry)?;
                } else {
                    for error in &dry.errors {
                        eprintln!("{path}: {error}");
                    }
                    println!(
                        "dry run of {path}: {}; short_id {} -> {}",
                        if dry.valid { "valid" } else { "INVALID" },
                        dry.old_short_id,
                        dry.short_id
                    );
                    print!("{}", dry.diff);
                }
                return Ok(if dry.valid {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                });
            }
            let outcome = ops::content::put_file(
                store,
                &crate::actor(),
                write,
                if_match.as_deref(),
                validation(no_validate),
            )?;
            report_write(
                &outcome,
                &format!("saved {path} ({})", output::size(bytes.len() as u64)),
                json,
            )?;
        }
        Command::Get {
            project,
            branch,
            path,
            version,
        } => {
            let (project, branch, path) = (
                output::project(&project)?,
                output::branch(&branch)?,
                output::path(&path)?,
            );
            let bytes = match version {
                None => store.read_file(&project, &branch, &path)?,
                Some(v) => {
                    let gen = store.version(&project, &branch, output::version(&v)?)?;
                    let entry = gen
                        .file(&path)
                        .ok_or_else(|| cfgstore::Error::not_found("file", &path))?;
                    store.read_entry(&project, &entry)?
                }
            };
            let mut out = io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
        Command::Rm {
            project,
            branch,
            path,
            json,
        } => {
            let (project, branch, path) = (
                output::project(&project)?,
                output::branch(&branch)?,
                output::path(&path)?,
            );
            let outcome =
                ops::content::delete_file(store, &crate::actor(), &project, &branch, &path, None)?;
            report_write(&outcome, &format!("removed {path}"), json)?;
        }
        Command::Ls {
            project,
            branch,
            path,
            recursive,
            version,
            json,
        } => {
            let (project, branch) = (output::project(&project)?, output::branch(&branch)?);
            let under = path.as_deref().map(output::path).transpose()?;
            let gen = match version {
                None => store.live(&project, &branch)?,
                Some(v) => store.version(&project, &branch, output::version(&v)?)?,
            };
            let entries = tree::list(&gen, under.as_ref(), recursive)?;
            if json {
                print_json(&entries)?;
            } else {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|e| {
                        let size = e.size.map(output::size).unwrap_or_default();
                        let path = if e.kind == tree::Kind::Tree {
                            format!("{}/", e.path)
                        } else {
                            e.path.clone()
                        };
                        vec![format!("{:?}", e.kind).to_lowercase(), size, path]
                    })
                    .collect();
                print_table(&["TYPE", "SIZE", "PATH"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(store: &Store, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let (project, branch) = (
        output::project(&args.project)?,
        output::branch(&args.branch)?,
    );
    if !args.dir.is_dir() {
        return Err(UsageError(format!("{} is not a directory", args.dir.display())).into());
    }
    let files = collect_files(&args.dir)?;
    let count = files.len();
    if args.replace && !args.yes {
        // A replace removes what the directory lacks: say what, and ask.
        let incoming: std::collections::HashSet<&str> =
            files.iter().map(|(p, _)| p.as_str()).collect();
        let live = store.live(&project, &branch)?;
        let gone: Vec<&str> = live
            .entries()
            .iter()
            .map(|e| e.path.as_str())
            .filter(|p| !incoming.contains(p))
            .collect();
        if !gone.is_empty() {
            let shown: Vec<&str> = gone.iter().take(5).copied().collect();
            let more = if gone.len() > 5 {
                format!(" and {} more", gone.len() - 5)
            } else {
                String::new()
            };
            let question = format!(
                "Import with --replace removes {} files from {project} {branch} ({}{more})?",
                gone.len(),
                shown.join(", ")
            );
            if !output::confirm(&question)? {
                eprintln!("not imported");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    let dir = args.dir.clone();
    let progress = output::Progress::new(args.json);
    let mut read_bytes = 0u64;
    let contents = files
        .into_iter()
        .enumerate()
        .map(|(i, (path, source))| {
            let bytes = std::fs::read(&source).map_err(|e| cfgstore::Error::io(&source, e))?;
            read_bytes += bytes.len() as u64;
            if i % 500 == 0 {
                progress.update(&format!(
                    "reading {}/{count} files ({})",
                    i + 1,
                    output::size(read_bytes)
                ));
            }
            Ok((path, bytes))
        })
        .collect::<cfgstore::Result<Vec<_>>>()?;
    progress.update(&format!(
        "checking and saving {count} files ({})",
        output::size(read_bytes)
    ));
    let outcome = ops::content::import(
        store,
        &crate::actor(),
        &project,
        &branch,
        contents,
        args.replace,
        validation(args.no_validate),
    );
    progress.done();
    let outcome = outcome?;
    report_write(
        &outcome,
        &format!(
            "imported {count} files from {} ({} added, {} changed, {} removed)",
            dir.display(),
            outcome.added,
            outcome.updated,
            outcome.removed
        ),
        args.json,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `cfgstore export`: a version's files as a plain folder tree, the
/// inverse of `import` (a person can `ls`, `grep` and `diff -r` it).
pub fn export(store: &Store, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let (project, branch) = (
        output::project(&args.project)?,
        output::branch(&args.branch)?,
    );
    let gen = match &args.version {
        None => store.live(&project, &branch)?,
        Some(v) => store.version(&project, &branch, output::version(v)?)?,
    };
    let occupied = std::fs::read_dir(&args.dir).is_ok_and(|mut d| d.next().is_some());
    if occupied {
        return Err(UsageError(format!(
            "{} is not empty: export writes into a new or empty directory",
            args.dir.display()
        ))
        .into());
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut bytes_written = 0u64;
    for entry in gen.entries() {
        // A validated path: relative, no `..`, so it stays inside `dir`.
        let target = args.dir.join(entry.path.as_str());
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let content = store.read_entry(&project, entry)?;
        std::fs::write(&target, &content)
            .with_context(|| format!("cannot write {}", target.display()))?;
        bytes_written += content.len() as u64;
    }
    let summary = serde_json::json!({
        "version": gen.meta.version,
        "short_id": gen.meta.short_id,
        "files": gen.entries().len(),
        "bytes": bytes_written,
        "dir": args.dir,
    });
    if args.json {
        print_json(&summary)?;
    } else {
        println!(
            "exported {} files ({}) of {project} {branch} {} ({}) to {}",
            gen.entries().len(),
            output::size(bytes_written),
            gen.meta.version,
            gen.meta.short_id,
            args.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Every regular file under `dir` with its store path. Symlinks and special
/// files are refused rather than followed: an import must never read
/// outside the directory it was given.
fn collect_files(dir: &Path) -> anyhow::Result<Vec<(FilePath, PathBuf)>> {
    let mut files = Vec::new();
    for entry in WalkDir::new(dir).follow_links(false).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let kind = entry.file_type();
        if kind.is_dir() {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(dir)
            .expect("walkdir stays under its root");
        if !kind.is_file() {
            return Err(UsageError(format!(
                "{} is not a regular file (symlinks and special files are not imported)",
                entry.path().display()
            ))
            .into());
        }
        let text = relative
            .to_str()
            .ok_or_else(|| UsageError(format!("{} is not valid UTF-8", relative.display())))?;
        files.push((FilePath::parse(text)?, entry.into_path()));
    }
    Ok(files)
}

fn read_content(from: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match from {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        }
        None => {
            if io::stdin().is_terminal() {
                return Err(UsageError("no --from FILE given and stdin is a terminal: pipe the content in, or use --from".into()).into());
            }
            let mut bytes = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .context("cannot read stdin")?;
            Ok(bytes)
        }
    }
}

fn validation(skip: bool) -> ops::content::Validation {
    if skip {
        ops::content::Validation::Skip
    } else {
        ops::content::Validation::Check
    }
}

pub fn report_write(outcome: &WriteOutcome, what: &str, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(outcome);
    }
    if !outcome.changed {
        println!(
            "{what}: no change, still {} ({})",
            outcome.version, outcome.short_id
        );
        return Ok(());
    }
    let before = outcome.snapshot.map(|s| s.to_string()).unwrap_or_default();
    println!(
        "{what}: now {} (the state before stays in the history as {before}), short_id {} -> {}",
        outcome.version, outcome.old_short_id, outcome.short_id
    );
    Ok(())
}
