//! Test helpers: a temp data directory per test, and running the real
//! `cfgstore` binary against it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("cfgstore-test-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data directory inside this test dir (not created).
    pub fn data(&self) -> PathBuf {
        self.path.join("data")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cfgstore")
}

/// A `cfgstore --data DIR` command ready for more arguments.
pub fn cfgstore(data: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--data")
        .arg(data)
        .env_remove("CFGSTORE_DATA")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cfgstore --data DIR args...` with `stdin` piped in.
pub fn run_with_input(data: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = cfgstore(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cfgstore");
    // The command may fail before it reads its input (a usage error):
    // a broken pipe here is then expected, not a test failure.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

pub fn run(data: &Path, args: &[&str]) -> Output {
    cfgstore(data).args(args).output().expect("run cfgstore")
}

/// Runs and asserts success; returns stdout.
pub fn ok(data: &Path, args: &[&str]) -> String {
    let out = run(data, args);
    assert!(
        out.status.success(),
        "cfgstore {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs with `--json` appended and parses stdout.
pub fn json(data: &Path, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&ok(data, &args)).expect("valid JSON")
}

/// A data directory with `demo/app.cfg` (branch `main`) created.
pub fn store_with_project(dir: &TestDir) -> PathBuf {
    let data = dir.data();
    ok(&data, &["init"]);
    ok(
        &data,
        &["project", "create", "demo", "app", "--type", "cfg"],
    );
    data
}

pub const PROJECT: &str = "demo/app.cfg";

/// How many versions `PROJECT` main has (the live one included).
pub fn history_len(data: &Path) -> usize {
    json(data, &["history", "list", PROJECT, "main"])
        .as_array()
        .unwrap()
        .len()
}

/// `cfgstore file put PROJECT main PATH` with `bytes` on stdin; asserts success.
pub fn put(data: &Path, path: &str, bytes: &[u8]) {
    let out = run_with_input(data, &["file", "put", PROJECT, "main", path], bytes);
    assert!(
        out.status.success(),
        "put {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-verifying body: `writer:seq:padding` then `#sha256=<hex>` of
/// everything before it, so a reader can tell a whole body from a torn one.
pub fn verifiable_body(writer: &str, seq: usize, padding: usize) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let head = format!("{writer}:{seq}:{}\n", "x".repeat(padding));
    let digest = Sha256::digest(head.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{head}#sha256={hex}\n").into_bytes()
}

/// Checks a self-verifying body; returns its (writer, seq) when whole.
pub fn check_body(body: &[u8]) -> Option<(String, usize)> {
    use sha2::{Digest, Sha256};
    let text = std::str::from_utf8(body).ok()?;
    let (head, tail) = text.split_at(text.find("#sha256=")?);
    let hex: String = Sha256::digest(head.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if tail.trim_end() != format!("#sha256={hex}") {
        return None;
    }
    let mut parts = head.splitn(3, ':');
    Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
}

/// The real server (`cfgstore::server::run`) on 127.0.0.1:0 in a thread of
/// its own; stopped and joined when dropped.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(data: &Path) -> TestServer {
        TestServer::start_with_clock(data, std::sync::Arc::new(time::OffsetDateTime::now_utc))
    }

    pub fn start_with_clock(data: &Path, clock: cfgstore::api::Clock) -> TestServer {
        TestServer::start_with(data, clock, cfgstore::server::ServerOptions::default())
    }

    pub fn start_with_options(data: &Path, options: cfgstore::server::ServerOptions) -> TestServer {
        TestServer::start_with(
            data,
            std::sync::Arc::new(time::OffsetDateTime::now_utc),
            options,
        )
    }

    fn start_with(
        data: &Path,
        clock: cfgstore::api::Clock,
        options: cfgstore::server::ServerOptions,
    ) -> TestServer {
        let config = cfgstore::config::Config {
            data_dir: data.to_path_buf(),
            ..Default::default()
        };
        let app = std::sync::Arc::new(
            cfgstore::api::App::from_config(&config, clock).expect("open store"),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                cfgstore::server::run_with(
                    listener,
                    app,
                    async {
                        let _ = stopped.await;
                    },
                    options,
                )
                .await
                .unwrap();
            });
        });
        TestServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        request(self.addr, "GET", path, headers)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `cfgstore serve` binary as operators run it, on 127.0.0.1:0, with
/// its log captured to a file. Killed when dropped.
pub struct Daemon {
    pub addr: std::net::SocketAddr,
    child: std::process::Child,
}

impl Daemon {
    pub fn start(data: &Path, log: PathBuf) -> Daemon {
        Daemon::start_with(data, log, &[])
    }

    /// With extra environment variables (`CFGSTORE_*` settings, `NOTIFY_SOCKET`).
    pub fn start_with(data: &Path, log: PathBuf, env: &[(&str, &str)]) -> Daemon {
        Daemon::try_start_with(data, &log, env).unwrap_or_else(|status| {
            panic!(
                "daemon exited ({status}) before it was ready: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    /// Like `start_with`, but a daemon that exits before it is ready (a
    /// failpoint at startup) is reported, not a panic.
    pub fn try_start_with(
        data: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Result<Daemon, std::process::ExitStatus> {
        let mut command = cfgstore(data);
        command.envs(env.iter().copied());
        Daemon::spawn(command, log)
    }

    /// `command` (a `cfgstore` with its global flags) made to `serve` on
    /// 127.0.0.1:0, its log in `log`, once it listens; `Err` when it exits
    /// before it is ready.
    pub fn spawn(mut command: Command, log: &Path) -> Result<Daemon, std::process::ExitStatus> {
        let log_file = std::fs::File::create(log).unwrap();
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("CFGSTORE_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn cfgstore serve");
        // Ready when the log names the address it listens on.
        for _ in 0..1000 {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("listening")) {
                // `address=ADDR` in human logs, `"address":"ADDR"` in JSON.
                let addr = line
                    .split("address=")
                    .nth(1)
                    .or_else(|| line.split("\"address\":\"").nth(1))
                    .unwrap()
                    .split(|c: char| c.is_whitespace() || c == '"')
                    .next()
                    .unwrap();
                return Ok(Daemon {
                    addr: addr.parse().unwrap(),
                    child,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                return Err(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "daemon did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        request(self.addr, "GET", path, headers)
    }

    /// The daemon's process id (to attach a tracer, read `/proc/PID/...`,
    /// `prlimit --pid`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait: the daemon must drain and exit 0.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate();
        self.child.wait().unwrap()
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// The exit status, if the daemon has exited (waiting up to `patience`).
    pub fn exited(&mut self, patience: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// One HTTP/1.1 request on a fresh connection, path sent byte for byte as
/// given (no client-side normalisation: tests need `%2F`, `//`, `..`).
pub fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Resp {
    raw_request(
        addr,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{}\r\n",
            headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\r\n"))
                .collect::<String>()
        )
        .as_bytes(),
    )
}

/// Sends raw bytes and parses the response (Content-Length or to EOF).
pub fn raw_request(addr: std::net::SocketAddr, bytes: &[u8]) -> Resp {
    try_raw_request(addr, bytes)
        .unwrap_or_else(|raw| panic!("no response head: {:?}", String::from_utf8_lossy(&raw)))
}

/// Status 0 in the `Resp` of `raw_exchange` when the server closed the
/// connection without answering.
pub const NO_RESPONSE: u16 = 0;

/// Sends raw bytes (then closes the sending side with `half_close`) and
/// parses the response; a connection closed without any answer is a
/// `Resp` with status `NO_RESPONSE`.
pub fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8], half_close: bool) -> Resp {
    match exchange(addr, bytes, half_close) {
        Ok(r) => r,
        Err(raw) if raw.is_empty() => Resp {
            status: NO_RESPONSE,
            headers: Vec::new(),
            body: Vec::new(),
        },
        Err(raw) => panic!("no response head: {:?}", String::from_utf8_lossy(&raw)),
    }
}

/// Like `raw_request`, but a connection that ends without a response (the
/// server died) is `Err` with whatever bytes did arrive.
pub fn try_raw_request(addr: std::net::SocketAddr, bytes: &[u8]) -> Result<Resp, Vec<u8>> {
    exchange(addr, bytes, false)
}

fn exchange(addr: std::net::SocketAddr, bytes: &[u8], half_close: bool) -> Result<Resp, Vec<u8>> {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return Err(Vec::new());
    };
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // A server may answer (413) and close before taking the whole request:
    // the response is still there to read.
    let _ = stream.write_all(bytes);
    if half_close {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(raw);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// The `short_id` of branch `name` in a branch list (CLI or API JSON).
pub fn short_id_in(branches: &serde_json::Value, name: &str) -> String {
    let branch = branches
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no branch {name} in {branches}"));
    branch["short_id"].as_str().unwrap().to_string()
}

/// `token create --owner OWNER --name NAME` and `extra`: the arguments of
/// a CLI token creation.
pub fn token_create<'a>(owner: &'a str, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["token", "create", "--owner", owner, "--name", name];
    args.extend_from_slice(extra);
    args
}

/// A token for `owner` made through the CLI, as an operator would.
pub fn create_token(data: &Path, owner: &str, extra: &[&str]) -> (String, String) {
    let v = json(data, &token_create(owner, "test", extra));
    (
        v["id"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    )
}

pub const API: &str = "/site-builder/api/erp-config";
pub const V4: &str = "/site-builder/api/erp-config/api/v4";

/// A request with a body (Content-Length set).
pub fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let head = Head {
        method,
        path,
        headers,
        length: true,
    };
    raw_request(addr, &head.with_body(addr, body))
}

/// A request head as tests write it: `Host`, `Connection: close`, the
/// given headers, and `Content-Length` when `length` is set.
pub struct Head<'a, H: AsRef<str>> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(H, H)],
    pub length: bool,
}

impl<H: AsRef<str>> Head<'_, H> {
    /// The head and `body`, as bytes for the wire.
    pub fn with_body(&self, addr: std::net::SocketAddr, body: &[u8]) -> Vec<u8> {
        let (method, path) = (self.method, self.path);
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if self.length {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (k, v) in self.headers {
            head.push_str(&format!("{}: {}\r\n", k.as_ref(), v.as_ref()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }
}

/// A user added through the CLI, as operators do.
pub fn add_user(data: &Path, name: &str, password: &str, roles: &[&str]) {
    let mut args = vec!["user", "add", name, "--password-stdin"];
    for r in roles {
        args.push("--role");
        args.push(r);
    }
    let out = run_with_input(data, &args, format!("{password}\n").as_bytes());
    assert!(
        out.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `name=value` of a login answer's `Set-Cookie`, to send back.
pub fn session_cookie(r: &Resp) -> String {
    let set = r.header("set-cookie").expect("a session cookie");
    set.split(';').next().unwrap().to_string()
}

/// A logged-in admin session: the cookie header and the CSRF token.
pub struct Login {
    pub cookie: String,
    pub csrf: String,
}

impl Login {
    pub fn new(addr: std::net::SocketAddr, user: &str, password: &str) -> Login {
        let body = serde_json::json!({ "username": user, "password": password }).to_string();
        let r = send(
            addr,
            "POST",
            "/site-builder/api/user/login",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "login {user}: {}", r.text());
        Login {
            cookie: session_cookie(&r),
            csrf: r.json()["csrf_token"].as_str().unwrap().to_string(),
        }
    }

    /// Sends with the cookie, and the CSRF header on unsafe methods.
    pub fn send(&self, addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> Resp {
        let mut headers = vec![("Cookie", self.cookie.as_str())];
        if method != "GET" && method != "HEAD" {
            headers.push(("X-CSRF-Token", self.csrf.as_str()));
        }
        send(
            addr,
            method,
            &format!("/site-builder/api{path}"),
            &headers,
            body,
        )
    }
}

/// One request on a fresh connection; `None` if the daemon died first.
pub fn try_send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Resp> {
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        bytes.push_str(&format!("{k}: {v}\r\n"));
    }
    bytes.push_str("\r\n");
    let mut bytes = bytes.into_bytes();
    bytes.extend_from_slice(body);
    try_raw_request(addr, &bytes).ok()
}

/// Runs a shell script in its own process group, so that it and every
/// process it starts can be SIGKILLed at once (`kill_group`).
pub fn spawn_group(script: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILLs the process group `spawn_group` started; whether `kill` worked.
pub fn kill_group(child: &std::process::Child) -> bool {
    Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits for a killed group's shell and for every other member to be gone.
pub fn reap_group(child: &mut std::process::Child) {
    child.wait().unwrap();
    wait_until_group_gone(child.id());
}

/// SIGKILL is delivered at once but a process dies (and drops its locks)
/// a moment later; the children of the killed shell are not ours to wait
/// for, so watch /proc until no live member of the group is left.
pub fn wait_until_group_gone(pgid: u32) {
    for _ in 0..500 {
        let alive = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // Fields after the parenthesised command: state, ppid, pgrp.
                let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
                let fields: Vec<&str> = rest.split(' ').collect();
                fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
            });
        if !alive {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("process group {pgid} did not die");
}

/// A small deterministic generator, so a failing round or cycle can be replayed.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// A copy of a committed store under `tests/fixtures/` at `dest`: tests
/// never touch the checkout's own files.
pub fn copy_fixture(name: &str, dest: &Path) {
    let status = Command::new("cp")
        .arg("-r")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .arg(dest)
        .status()
        .unwrap();
    assert!(status.success(), "copy fixture {name}");
}
