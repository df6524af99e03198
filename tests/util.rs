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
