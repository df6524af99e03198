//! `cfgstore serve`, `cfgstore demo`, `cfgstore config check`,
//! `cfgstore backup` and `cfgstore restore`: running the daemon and
//! looking after its data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use cfgstore::api::App;
use cfgstore::config::{Config, LogFormat, Overrides};
use cfgstore::ops;
use cfgstore::server::{Routes, ServerOptions};
use cfgstore::store::{Location, OwnerName, Store};
use clap::{Args, Subcommand};

use crate::output::print_json;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Configuration file [default: /etc/cfgstore/cfgstore.toml when present]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE (default: /etc/cfgstore/cfgstore.toml when present) with
    /// the CFGSTORE_* environment applied, and print the effective settings
    Check {
        /// The configuration file [default: /etc/cfgstore/cfgstore.toml when present]
        file: Option<PathBuf>,
        /// Print JSON (for scripts) instead of text
        #[arg(long)]
        json: bool,
    },
}

/// The global flags naming a store: `--data`, `--store`, `--server-key-file`.
#[derive(Debug, Default, Clone)]
pub struct StoreFlags {
    pub data: Option<PathBuf>,
    pub store: Option<Location>,
    pub server_key_file: Option<PathBuf>,
}

/// The effective configuration: defaults < file < `CFGSTORE_*` < flags.
pub fn load_config(
    file: Option<&Path>,
    flags: &StoreFlags,
    listen: Option<SocketAddr>,
) -> anyhow::Result<Config> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    Ok(Config::load(
        file,
        &env,
        &Overrides {
            listen,
            data_dir: flags.data.clone(),
            store: flags.store.clone(),
            server_key_file: flags.server_key_file.clone(),
        },
    )?)
}

pub fn config(flags: &StoreFlags, cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { file, json } = cmd;
    let config = load_config(file.as_deref(), flags, None)?;
    if json {
        print_json(&config)?;
    } else {
        match &config.config_file {
            Some(f) => println!("# {} is valid; effective configuration:", f.display()),
            None => println!("# no configuration file; effective configuration:"),
        }
        print!("{}", config.to_toml());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn serve(flags: &StoreFlags, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref(), flags, args.listen)?;
    init_logging(config.log_format);
    let app =
        App::from_config(&config, Arc::new(time::OffsetDateTime::now_utc)).with_context(|| {
            match &config.store {
                Some(store) => format!("cannot serve the store at {store}"),
                None => format!("cannot serve data directory {}", config.data_dir.display()),
            }
        })?;
    run_daemon(app, &config, |_| {})
}

/// Builds the example store, makes a read token for it and serves it: the
/// whole read path in one command. Without `--data` the store lives in a
/// temp dir, removed on exit, so the checkout is never touched; with
/// `--data DIR` (a new or empty directory) it is built there and kept.
/// The port is bound before anything is printed, so a busy port is the
/// only thing reported.
pub fn demo(data: Option<PathBuf>, args: DemoArgs) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Human);
    let (dir, _cleanup) = match data {
        Some(dir) => {
            let occupied = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
            if occupied {
                return Err(crate::output::UsageError(format!(
                    "demo --data wants a new or empty directory, and {} is not: \
                     to serve a store of your own, use `cfgstore --data {} serve`",
                    dir.display(),
                    dir.display()
                ))
                .into());
            }
            (dir, None)
        }
        None => {
            let dir = std::env::temp_dir().join(format!("cfgstore-demo-{}", std::process::id()));
            (dir.clone(), Some(RemoveDir(dir)))
        }
    };
    let (store, _) = Store::init(&dir)?;
    crate::example::create(&store, &crate::actor())?;
    let new = ops::tokens::NewToken {
        owner: OwnerName::parse("demo")?,
        name: "demo".into(),
        repos: Vec::new(),
        expires_at: None,
        fingerprint_required: false,
    };
    let token = ops::tokens::create(
        &store,
        &crate::actor(),
        new,
        time::OffsetDateTime::now_utc(),
    )?
    .secret;
    drop(store);
    let config = Config {
        listen: args.listen,
        data_dir: dir.clone(),
        ..Config::default()
    };
    let app = App::from_config(&config, Arc::new(time::OffsetDateTime::now_utc))?;
    let kept = if _cleanup.is_some() {
        "Ctrl-C stops the server and removes the temp store."
    } else {
        "Ctrl-C stops the server; the store stays."
    };
    run_daemon(app, &config, |addr| {
        eprintln!(
            "\ncfgstore demo: the example store, served from {dir}\n\n\
             Read token (owner demo, all its projects): {token}\n\n\
             Try:\n  \
             curl -H 'PRIVATE-TOKEN: {token}' http://{addr}/site-builder/api/erp-config/projects/b2b-cnc.erp-config/repository/branches\n  \
             curl -H 'PRIVATE-TOKEN: {token}' 'http://{addr}/site-builder/api/erp-config/projects/b2b-cnc.erp-config/repository/tree?recursive=true'\n  \
             curl -H 'PRIVATE-TOKEN: {token}' 'http://{addr}/site-builder/api/erp-config/projects/b2b-cnc.erp-config/repository/files/features%2Ffeature%20flags.json/raw?ref=main'\n\n\
             Or with python-gitlab:\n  \
             import gitlab\n  \
             gl = gitlab.Gitlab('http://{addr}/site-builder/api/erp-config', private_token='{token}')\n  \
             p = gl.projects.get('b2b-cnc.erp-config')\n  \
             print([b.name for b in p.branches.list(get_all=True)])\n\n\
             {kept}\n",
            dir = dir.display(),
        );
    })
}

/// Binds the listener, calls `on_listening` with its address (nothing is
/// printed before the port is ours), tells systemd, and serves until
/// SIGTERM or SIGINT.
fn run_daemon(
    app: App,
    config: &Config,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<ExitCode> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    // A connection whose request arrives joins the back of the queue: with
    // tokio's LIFO slot the last one woken jumps ahead of all others, which
    // widened cfgstore's response times (p99 at 4 connections 131 µs with
    // it, 101 µs without, nginx 111 µs; BENCHMARKS.md).
    #[cfg(tokio_unstable)]
    runtime.disable_lifo_slot();
    let runtime = runtime.enable_all().build()?;
    let options = ServerOptions::from(config);
    let listen = config.listen;
    runtime.block_on(async move {
        let listener = cfgstore::server::listen(listen, config.max_connections)
            .with_context(|| format!("cannot listen on {listen}"))?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some(
                cfgstore::server::listen(addr, 64)
                    .with_context(|| format!("cannot listen on {addr} (metrics_listen)"))?,
            ),
            None => None,
        };
        if let Some(addr) = metrics.as_ref().and_then(|m| m.local_addr().ok()) {
            tracing::info!(metrics_address = %addr, "serving /metrics");
        }
        let address = listener.local_addr()?;
        on_listening(address);
        tracing::info!(address = %address, data = %app.store.root().display(), "listening");
        let app = Arc::new(app);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let metrics_server = metrics.map(|listener| {
            let mut stopped = stopped.clone();
            let options = ServerOptions {
                routes: Routes::MetricsOnly,
                ..options.clone()
            };
            tokio::spawn(cfgstore::server::run_with(
                listener,
                Arc::clone(&app),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
                options,
            ))
        });
        notify_systemd(&format!("READY=1\nSTATUS=listening on {address}"));
        let shutdown = async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        };
        cfgstore::server::run_with(listener, app, shutdown, options).await?;
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
    notify_systemd("STOPPING=1");
}

/// `sd_notify` for `Type=notify`: one datagram to `$NOTIFY_SOCKET`, which
/// may be a path or an abstract name (`@...`). Without systemd, nothing.
fn notify_systemd(state: &str) {
    use std::os::unix::net::UnixDatagram;
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|socket| {
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)
        } else {
            socket.send_to(state.as_bytes(), &target)
        }
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// For commands other than `serve`: the library's warnings (a change saved
/// but not announced to a running daemon, say) reach the operator on
/// stderr as `WARN …` lines; `CFGSTORE_LOG` can ask for more.
pub fn init_command_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CFGSTORE_LOG")
        .unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CFGSTORE_LOG")
        .unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.with_ansi(ansi).try_init(),
    };
}

pub fn backup(store: &Store, dest: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let progress = crate::output::Progress::new(json);
    let report = store.backup(dest, |project| {
        progress.update(&format!("copying {project}"))
    });
    progress.done();
    let report = report?;
    let copy = Store::open(dest).context("cannot open the backup")?;
    let check = copy.fsck(false)?;
    if json {
        print_json(&serde_json::json!({ "backup": report, "fsck_clean": check.is_clean() }))?;
    } else {
        println!(
            "backed up {} projects, {} branches, {} versions, {} objects ({}) to {}; fsck of the copy: {}",
            report.projects,
            report.branches,
            report.generations,
            report.objects,
            crate::output::size(report.bytes),
            dest.display(),
            if check.is_clean() { "clean" } else { "PROBLEMS FOUND" }
        );
    }
    Ok(if check.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn restore(
    src: &Path,
    location: &Location,
    key_file: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let progress = crate::output::Progress::new(json);
    let report = cfgstore::store::backup::restore_at(src, location, key_file, |project| {
        progress.update(&format!("restoring {project}"))
    });
    progress.done();
    let report = report?;
    if json {
        print_json(&serde_json::json!({ "restored": report, "into": location.to_string() }))?;
    } else {
        println!(
            "restored {} projects, {} branches, {} versions, {} objects, {} tokens, {} users into {location}",
            report.projects,
            report.branches,
            report.generations,
            report.objects,
            report.tokens,
            report.users,
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
