//! `cfgstore serve` and `cfgstore demo`: the daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use cfgstore::api::App;
use cfgstore::store::{OwnerName, Store};
use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(
        long,
        env = "CFGSTORE_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    listen: SocketAddr,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
}

pub fn serve(data: &Path, args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let store = Store::open(data)
        .with_context(|| format!("cannot open data directory {}", data.display()))?;
    store
        .server_key()
        .context("the daemon needs the server key")?;
    run_daemon(store, args.listen, None)
}

/// Builds the example store in a temp dir, makes a read token for it and
/// serves it: the whole read path in one command, without touching the
/// checkout. The temp dir is removed on exit.
pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let dir = std::env::temp_dir().join(format!("cfgstore-demo-{}", std::process::id()));
    let _cleanup = RemoveDir(dir.clone());
    let (store, _) = Store::init(&dir)?;
    crate::example::create(&store, &crate::actor())?;
    let demo = OwnerName::parse("demo")?;
    let (_, token) = store.create_token(&demo, "demo", Vec::new(), None, false)?;
    let banner = format!(
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
         Ctrl-C stops the server and removes the temp store.\n",
        dir = dir.display(),
        addr = args.listen,
    );
    eprintln!("{banner}");
    run_daemon(store, args.listen, None)
}

fn run_daemon(
    store: Store,
    listen: SocketAddr,
    _config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(address = %listener.local_addr()?, data = %store.root().display(), "listening");
        let app = Arc::new(App::new(Arc::new(store)));
        cfgstore::server::run(listener, app, shutdown_signal()).await?;
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
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CFGSTORE_LOG")
        .unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
