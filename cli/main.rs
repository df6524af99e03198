//! The `cfgstore` command: argument parsing, output, exit codes.
//!
//! Every subcommand is a thin layer over the library: it parses its
//! arguments into validated names, calls `Store`, and prints a table for
//! people or JSON for scripts. Exit codes: 0 ok, 1 failure, 2 usage
//! (including malformed names and versions).

/// mimalloc instead of glibc's malloc: a read request allocates and frees
/// a few dozen small objects, and mimalloc does that in about half the time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` and `print!` for the whole binary: like std's, except that
/// a closed stdout (`cfgstore … | head`) ends the command quietly with
/// status 0, the way `ls | head` does, instead of a panic.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($arg)*) {
            $crate::stdout_failed(e);
        }
    }};
}

macro_rules! print {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = write!(out, $($arg)*) {
            $crate::stdout_failed(e);
        }
    }};
}

mod audit;
mod branch;
mod example;
mod file;
mod fleet;
mod history;
mod output;
mod project;
mod serve;
mod token;
mod user;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use cfgstore::store::{Location, Store};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cfgstore",
    version,
    about = "A configuration store for a single box",
    long_about = "A configuration store for a single box.\n\n\
        ERP systems poll config files over HTTP; operators manage projects, branches,\n\
        files, history and rollbacks from this command, on the same data directory,\n\
        safely, while the daemon runs. Every write makes a new version and keeps\n\
        the ones before, so any change can be rolled back.",
    after_help = "Examples:\n  \
        cfgstore --data /tmp/demo init --example\n  \
        cfgstore --data /tmp/demo branch list demo/b2b-cnc.erp-config\n  \
        echo '{\"debug\": true}' | cfgstore --data /tmp/demo file put demo/b2b-cnc.erp-config main app.json\n  \
        cfgstore --data /tmp/demo history list demo/b2b-cnc.erp-config main\n  \
        cfgstore --data /tmp/demo rollback demo/b2b-cnc.erp-config main --to v0002"
)]
struct Cli {
    /// Data directory [default: data_dir of /etc/cfgstore/cfgstore.toml, else /var/lib/cfgstore]
    #[arg(long, global = true, env = "CFGSTORE_DATA", value_name = "DIR")]
    data: Option<PathBuf>,

    /// A store in PostgreSQL instead of a data directory, shared by several
    /// daemons: postgres://USER@HOST:PORT/DATABASE (needs --server-key-file)
    #[arg(long, global = true, env = "CFGSTORE_STORE", value_name = "URL",
          value_parser = parse_store, hide_env_values = true)]
    store: Option<Location>,

    /// The server key file, when not the data directory's own; required
    /// with --store, and the same file on every node (`init` makes it)
    #[arg(
        long,
        global = true,
        env = "CFGSTORE_SERVER_KEY_FILE",
        value_name = "FILE"
    )]
    server_key_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: the read API and the admin API over the data directory
    Serve(serve::ServeArgs),
    /// Check a configuration file and print the effective configuration
    #[command(subcommand)]
    Config(serve::ConfigCommand),
    /// Copy the store (a data directory or a database) to DEST, a new or
    /// empty directory, as a data directory, while daemons keep serving;
    /// the copy holds the server key, so keep it as private as the key file
    Backup {
        /// A new or empty directory for the copy
        dest: PathBuf,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a new or empty data directory (--data), or
    /// into a database holding no store yet (--store, with
    /// --server-key-file naming where the backup's server key goes)
    Restore {
        /// The backup directory to restore from (made by `cfgstore backup`)
        src: PathBuf,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Serve the example store from a temp dir with a ready-made token
    Demo(serve::DemoArgs),
    /// Create the data directory (or complete a partial one)
    Init {
        /// Also create the example project demo/b2b-cnc.erp-config with history
        #[arg(long)]
        example: bool,
    },
    /// Create, list, update, revoke and rotate read tokens
    #[command(subcommand)]
    Token(token::Command),
    /// Add users and manage their passwords and roles (the admin API's logins)
    #[command(subcommand)]
    User(user::Command),
    /// Read the audit trail
    Audit(audit::AuditArgs),
    /// Create, list and show projects
    #[command(subcommand)]
    Project(project::Command),
    /// Create and list branches
    #[command(subcommand)]
    Branch(branch::Command),
    /// Put, get, remove and list files
    #[command(subcommand)]
    File(file::Command),
    /// Save every file under a directory as one write (one new version)
    Import(file::ImportArgs),
    /// Write a version's files into a directory as a plain folder tree
    Export(file::ExportArgs),
    /// List, show and compare the versions of a branch
    #[command(subcommand)]
    History(history::Command),
    /// Set a branch back to an earlier version (the current one stays in the history)
    Rollback(history::RollbackArgs),
    /// Compare two states of a project (branches, versions, commit ids):
    /// files added, removed and changed, the keys that changed in JSON,
    /// YAML and TOML files, and line diffs
    Compare(history::CompareArgs),
    /// Which ERP (token and X-Instance-Id) holds which state of each
    /// branch: who is current, who is behind and since when
    Fleet(fleet::FleetArgs),
    /// Print a shell completion script: source it, or install it where
    /// your shell looks (the .deb does)
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `cfgstore man | man -l -`
    Man,
    /// Remove the file contents no kept version of any branch uses (after
    /// `history prune`, or writes that failed); safe while the daemon and
    /// other commands write
    Gc {
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Bring a store written by an older cfgstore to this version's format
    /// (any command does it on first open; this one says what it did)
    Upgrade {
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Verify every version, tree and content of the store (hashes, sizes,
    /// short_ids, heads and floors), and in a data directory every
    /// folder's and file's kind and permissions
    Fsck {
        /// Repair what is safe to repair: remove versions an interrupted
        /// prune left below a branch's floor, roll HEADs forward, tighten
        /// permissions, remove temp folders of dead processes
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
}

/// A write to stdout failed: a reader that went away (a closed pipe) ends
/// the command quietly and successfully; anything else is reported.
pub fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("cfgstore: cannot write to stdout: {e}");
    std::process::exit(1);
}

fn main() -> ExitCode {
    // Only with the `failpoints` feature: the fault tests' FAILPOINTS.
    #[allow(clippy::let_unit_value)]
    let _failpoints = cfgstore::store::failpoint::setup();
    huge_pages(false);
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_) | Command::Demo(_)) {
        huge_pages(true);
    }
    match run(cli) {
        Ok(code) => code,
        // The reader of our output went away (`… | head`): done, quietly.
        Err(err) if broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cfgstore: {err:#}");
            if storage_full(&err) {
                eprintln!(
                    "cfgstore: the file system holding the data directory is full \
                     (no space or no inodes left): free some and retry"
                );
            }
            exit_code_for(&err)
        }
    }
}

/// A command that runs for milliseconds gains nothing from transparent
/// huge pages: the allocator asks for them, and the kernel then zeroes 2 MiB
/// on the first touch of each region where a few KiB are used (a fifth of
/// a put's time on a 20,000-file branch, `perf record`). Off from the
/// start (parsing the arguments allocates); the daemon turns them back on.
fn huge_pages(allowed: bool) {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes
    // nothing but this process's page-fault policy; a failure changes
    // nothing at all.
    unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            libc::c_ulong::from(!allowed),
            0,
            0,
            0,
        );
    }
}

fn parse_store(value: &str) -> Result<Location, String> {
    Location::parse_store(value).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.data.is_some() && cli.store.is_some() {
        return Err(output::UsageError(
            "--data and --store (or CFGSTORE_DATA and CFGSTORE_STORE) name two stores: give one"
                .into(),
        )
        .into());
    }
    let flags = serve::StoreFlags {
        data: cli.data,
        store: cli.store,
        server_key_file: cli.server_key_file,
    };
    // Commands on the store: the one the flags name, else the daemon's
    // (from its config file), with the library's warnings on stderr.
    let target = |flags: &serve::StoreFlags| -> anyhow::Result<(Location, Option<PathBuf>)> {
        serve::init_command_logging();
        if let Some(data) = &flags.data {
            return Ok((Location::Dir(data.clone()), flags.server_key_file.clone()));
        }
        let config = serve::load_config(None, flags, None)?;
        let location = config
            .store
            .clone()
            .unwrap_or_else(|| Location::Dir(config.data_dir.clone()));
        Ok((location, config.server_key_file))
    };
    let store = |flags: &serve::StoreFlags| -> anyhow::Result<Store> {
        let (location, key_file) = target(flags)?;
        open(&location, key_file.as_deref())
    };
    match cli.command {
        Command::Serve(args) => serve::serve(&flags, args),
        Command::Config(cmd) => serve::config(&flags, cmd),
        Command::Demo(args) => serve::demo(data_only(&flags)?, args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Built whole first: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "cfgstore", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            std::io::Write::write_all(&mut std::io::stdout(), &page)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { example } => {
            let (location, key_file) = target(&flags)?;
            init(&location, key_file.as_deref(), example)
        }
        Command::Restore { src, json } => {
            let (location, key_file) = target(&flags)?;
            serve::restore(&src, &location, key_file.as_deref(), json)
        }
        Command::Backup { dest, json } => serve::backup(&store(&flags)?, &dest, json),
        Command::Token(cmd) => token::run(&store(&flags)?, cmd),
        Command::User(cmd) => user::run(&store(&flags)?, cmd),
        Command::Audit(args) => audit::run(&store(&flags)?, args),
        Command::Project(cmd) => project::run(&store(&flags)?, cmd),
        Command::Branch(cmd) => branch::run(&store(&flags)?, cmd),
        Command::File(cmd) => file::run(&store(&flags)?, cmd),
        Command::Import(args) => file::import(&store(&flags)?, args),
        Command::Export(args) => file::export(&store(&flags)?, args),
        Command::History(cmd) => history::run(&store(&flags)?, cmd),
        Command::Rollback(args) => history::rollback(&store(&flags)?, args),
        Command::Compare(args) => history::compare(&store(&flags)?, args),
        Command::Fleet(args) => fleet::run(&store(&flags)?, args),
        // As it is: fsck reports what could stop an upgrade instead of
        // failing on it.
        Command::Fsck { repair, json } => match target(&flags)? {
            (Location::Dir(data), _) => {
                let store = Store::open_as_is(&data)
                    .with_context(|| format!("cannot open data directory {}", data.display()))?;
                fsck(&store, repair, json)
            }
            (location, key_file) => fsck(&open(&location, key_file.as_deref())?, repair, json),
        },
        Command::Gc { json } => gc(&store(&flags)?, json),
        Command::Upgrade { json } => upgrade(&store(&flags)?, json),
    }
}

/// `demo` builds a throwaway data directory: never a database.
fn data_only(flags: &serve::StoreFlags) -> anyhow::Result<Option<PathBuf>> {
    if flags.store.is_some() {
        return Err(output::UsageError(
            "cfgstore demo builds a data directory of its own; it does not take --store".into(),
        )
        .into());
    }
    Ok(flags.data.clone())
}

fn open(location: &Location, key_file: Option<&Path>) -> anyhow::Result<Store> {
    Store::open_at(location, key_file).with_context(|| match location {
        Location::Dir(dir) => format!("cannot open data directory {}", dir.display()),
        Location::Postgres(_) => format!("cannot open the store at {location}"),
    })
}

fn init(location: &Location, key_file: Option<&Path>, example: bool) -> anyhow::Result<ExitCode> {
    let (store, created) = Store::init_at(location, key_file)?;
    if created {
        println!("initialised {location}");
    } else {
        println!("{location} is already initialised");
    }
    if let (true, Some(file)) = (location.is_database(), key_file) {
        println!(
            "server key: {} (copy it to every node; keep it out of the database's backups)",
            file.display()
        );
    }
    if example {
        example::create(&store, &actor())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `cfgstore upgrade`: opening the store upgraded it (or it was current).
fn upgrade(store: &Store, json: bool) -> anyhow::Result<ExitCode> {
    match (store.upgraded(), json) {
        (Some(report), true) => output::print_json(report)?,
        (None, true) => output::print_json(&serde_json::json!({ "upgraded": false }))?,
        (Some(r), false) => println!(
            "upgraded the store from format {} to {}: {} versions rewritten as folder trees with git blob ids ({} contents read for their ids)",
            r.from, r.to, r.versions, r.contents
        ),
        (None, false) => println!("the store is already in this version's format"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `cfgstore gc`: collects project by project, naming each on a terminal.
fn gc(store: &Store, json: bool) -> anyhow::Result<ExitCode> {
    let progress = output::Progress::new(json);
    let report = cfgstore::ops::retention::gc(store, &actor(), |project| {
        progress.update(&format!("collecting {project}"))
    });
    progress.done();
    let report = report?;
    if json {
        output::print_json(&report)?;
    } else {
        println!(
            "removed {} unused contents ({}) from {} projects; {} contents in use kept",
            report.objects_removed,
            output::size(report.bytes_freed),
            report.projects,
            report.objects_kept
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn fsck(store: &Store, repair: bool, json: bool) -> anyhow::Result<ExitCode> {
    let report = store.fsck(repair)?;
    if json {
        output::print_json(&report)?;
    } else {
        for p in &report.problems {
            let tag = if p.repaired { "repaired" } else { "PROBLEM" };
            println!("{tag}: {}: {}", p.path.display(), p.detail);
        }
        println!(
            "checked {} projects, {} branches, {} versions, {} objects ({} unreferenced): {}",
            report.projects,
            report.branches,
            report.generations,
            report.objects_verified,
            report.unreferenced_objects,
            if report.is_clean() {
                "clean"
            } else {
                "PROBLEMS FOUND"
            }
        );
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Who this process acts as: the operator, by Unix user (`cli:{user}` in
/// the audit trail).
pub fn actor() -> cfgstore::ops::Actor {
    cfgstore::ops::Actor::operator(unix_user())
}

fn unix_user() -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self").map(|m| m.uid()) {
        Ok(uid) => cfgstore::store::user_name(uid).unwrap_or_else(|| format!("uid{uid}")),
        Err(_) => std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
    }
}

fn broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|e| e.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether the failure is the data directory's file system being full.
fn storage_full(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<cfgstore::Error>()
            .is_some_and(cfgstore::Error::is_storage_full)
    })
}

/// Malformed input is a usage error (2); everything else a failure (1).
fn exit_code_for(err: &anyhow::Error) -> ExitCode {
    use cfgstore::Error;
    let usage = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<Error>(),
            Some(Error::Invalid(_) | Error::Unprocessable { .. })
        ) || cause.downcast_ref::<output::UsageError>().is_some()
    });
    if usage {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `--help` teaches: every subcommand says what it does, and every
    /// argument and flag what it is for.
    #[test]
    fn every_command_argument_and_flag_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in command.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "cfgstore", &mut missing);
        assert!(
            missing.is_empty(),
            "no help text for:\n{}",
            missing.join("\n")
        );
    }
}
