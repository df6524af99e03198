//! Tests against a real PostgreSQL: a throwaway server per test (Debian's
//! `postgresql`: `initdb` and `pg_ctl` in a temp dir, on a loopback port),
//! stopped and removed when the test ends. Without PostgreSQL the tests
//! say so and pass, except under CI (`CI` set), where that is a failure:
//! `.ci/run` installs it.

mod nodes;
mod records;
mod tools;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::TestDir;

/// A PostgreSQL server of one test's own.
pub struct PgServer {
    bin: PathBuf,
    /// Who runs the server's commands: `postgres` when we are root
    /// (PostgreSQL refuses to run as root), else ourselves.
    as_postgres: bool,
    data: PathBuf,
    port: u16,
    // Last: removed after the server is stopped.
    dir: TestDir,
}

impl PgServer {
    /// Starts a fresh server, or `None` (after saying why) when PostgreSQL
    /// is not installed, except under CI.
    pub fn start(test: &str) -> Option<PgServer> {
        let Some(bin) = find_bin() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL not installed: CI must run the PostgreSQL tests (.ci/run installs Debian's postgresql)"
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: PostgreSQL not installed (apt-get install postgresql)"
            );
            return None;
        };
        let dir = TestDir::new("pg");
        let as_postgres = running_as_root();
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown postgres {}", dir.path().display());
        }
        let data = dir.path().join("data");
        let server = PgServer {
            bin,
            as_postgres,
            data,
            port: free_port(),
            dir,
        };
        server.run(
            "initdb",
            &[
                "-D",
                server.data.to_str().unwrap(),
                "-U",
                "cfgstore",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        server.start_again();
        Some(server)
    }

    /// `postgres://` URL of the server's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://cfgstore@127.0.0.1:{}/postgres", self.port)
    }

    /// `postgres://` URL of another database of the server, made now.
    pub fn new_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        format!("postgres://cfgstore@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL on a database of the server (as its superuser, over TCP);
    /// returns what psql printed, unaligned and without headers.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let url = format!("postgres://cfgstore@127.0.0.1:{}/{database}", self.port);
        // Beside the server's tools, else (a PATH of links to them) psql.
        let psql = Some(self.bin.join("psql"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("psql"));
        let out = Command::new(psql)
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                &url,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Starts the server (again, after `stop`), on the same port.
    pub fn start_again(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// Stops the server at once (`-m immediate`: as if it crashed).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// A command running one of the server's tools as the server's user,
    /// in its folder (the server's cwd must be readable by it).
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command.current_dir(self.dir.path());
        command
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}\n{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// The folder holding `initdb` and `pg_ctl`: on PATH, or Debian's
/// `/usr/lib/postgresql/{version}/bin` (newest first).
fn find_bin() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d)) {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
