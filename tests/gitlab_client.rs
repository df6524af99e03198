//! A real, unmodified GitLab client against the running daemon:
//! python-gitlab from PyPI, in the venv `.ci/run` creates
//! (`target/pyenv`, or the interpreter named by `CFGSTORE_TEST_PYTHON`).

use std::path::PathBuf;

use crate::util::{create_token, ok, Daemon, TestDir, API};

fn python() -> Option<PathBuf> {
    let path = std::env::var_os("CFGSTORE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python")
        });
    path.exists().then_some(path)
}

#[test]
fn python_gitlab_works_unmodified() {
    let Some(python) = python() else {
        // CI must run it; a developer without the venv is told how.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide python-gitlab (see .ci/run)"
        );
        eprintln!("SKIPPED python_gitlab_works_unmodified: run `python3 -m venv target/pyenv && target/pyenv/bin/pip install python-gitlab==8.6.0`");
        return;
    };
    let dir = TestDir::new("python-gitlab");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let (_, token) = create_token(&data, "demo", &[]);
    let daemon = Daemon::start(&data, dir.path().join("daemon.log"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/gitlab_client.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .env("BASE", format!("http://{}{API}", daemon.addr))
        .env("TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python-gitlab failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all checks passed"));
}
