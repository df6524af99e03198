//! Several `cfgstore serve` nodes and the CLI on one PostgreSQL store (SPEC
//! §16): the real binary, a throwaway database, two or more nodes on
//! loopback ports. What one node or the CLI changes is in force for every
//! node's next request; writers racing on different nodes lose nothing;
//! a database that goes away is a 503 and comes back without a restart.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::PgServer;
use crate::util::{bin, request, send, Daemon, Login, Resp, TestDir, API};

/// A database, its server key file, and the commands and nodes on them.
struct Cluster {
    pg: PgServer,
    dir: TestDir,
    key: PathBuf,
}

impl Cluster {
    fn start(test: &str) -> Option<Cluster> {
        let pg = PgServer::start(test)?;
        let dir = TestDir::new("cluster");
        let key = dir.path().join("server.key");
        Some(Cluster { pg, dir, key })
    }

    /// `cfgstore --store URL --server-key-file KEY`.
    fn command(&self) -> Command {
        let mut command = Command::new(bin());
        command
            .args(["--store", &self.pg.url(), "--server-key-file"])
            .arg(&self.key)
            .env_remove("CFGSTORE_DATA")
            .env_remove("CFGSTORE_STORE")
            .env_remove("CFGSTORE_SERVER_KEY_FILE")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        self.run_with(args, input, &[])
    }

    fn run_with(&self, args: &[&str], input: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
        let mut command = self.command();
        command
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let Some(input) = input else {
            return command.output().unwrap();
        };
        let mut child = command.stdin(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, None)
    }

    fn ok_with(&self, args: &[&str], input: Option<&[u8]>) -> String {
        let out = self.run(args, input);
        assert!(
            out.status.success(),
            "cfgstore {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn put(&self, path: &str, bytes: &[u8]) {
        self.ok_with(&["file", "put", "demo/app.cfg", "main", path], Some(bytes));
    }

    /// The version numbers of `demo/app.cfg` main, newest first (the CLI's
    /// history).
    fn versions(&self) -> Vec<u64> {
        let history: serde_json::Value =
            serde_json::from_str(&self.ok(&["history", "list", "demo/app.cfg", "main", "--json"]))
                .unwrap();
        history
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap()[1..].parse().unwrap())
            .collect()
    }

    /// Every file of `demo/app.cfg` main, as `file ls --recursive --json`.
    fn files(&self) -> serde_json::Value {
        let out = self.ok(&[
            "file",
            "ls",
            "demo/app.cfg",
            "main",
            "--recursive",
            "--json",
        ]);
        serde_json::from_str(&out).unwrap()
    }

    fn node(&self, name: &str) -> Daemon {
        let log = self.dir.path().join(format!("{name}.log"));
        Daemon::spawn(self.command(), &log).unwrap_or_else(|status| {
            panic!(
                "node {name} exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    /// The store as `init` and a project with two files make it, a user
    /// who may write it, and a read token. Returns the token.
    fn populate(&self) -> String {
        self.ok(&["init"]);
        self.ok(&["project", "create", "demo", "app", "--type", "cfg"]);
        self.put("app.json", b"{\"v\": 1}");
        self.put("db.yaml", b"host: a\n");
        self.ok_with(
            &[
                "user",
                "add",
                "editor",
                "--password-stdin",
                "--role",
                "ROLE_SITEBUILDER_EDITOR__ROOT",
            ],
            Some(b"password-1234\n"),
        );
        let token: serde_json::Value = serde_json::from_str(&self.ok(&[
            "token", "create", "--owner", "demo", "--name", "erp", "--json",
        ]))
        .unwrap();
        token["token"].as_str().unwrap().to_string()
    }
}

fn raw(node: &Daemon, token: &str, path: &str) -> Resp {
    node.get(
        &format!("{API}/projects/app.cfg/repository/files/{path}/raw?ref=main"),
        &[("PRIVATE-TOKEN", token)],
    )
}

fn branches(node: &Daemon, token: &str) -> serde_json::Value {
    let r = node.get(
        &format!("{API}/projects/app.cfg/repository/branches"),
        &[("PRIVATE-TOKEN", token)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Under the admin API (`Login::send` puts `/site-builder/api` before it).
const ADMIN_FILES: &str = "/projects/demo%2Fapp.cfg/branches/main/files";

/// Item 2 and 3 of scale-out: `init` makes the schema and the key file
/// (not in the database); every CLI command works on the store; a change
/// made by the CLI or by one node is in force for every node's very next
/// request; `short_id`s agree; a session made on one node works on the
/// other; a revoked token is refused everywhere at once.
#[test]
fn nodes_share_one_store_and_every_change_is_in_force_everywhere_at_once() {
    let Some(cluster) = Cluster::start(
        "postgres::nodes::nodes_share_one_store_and_every_change_is_in_force_everywhere_at_once",
    ) else {
        return;
    };
    let out = cluster.ok(&["init"]);
    assert!(out.contains("initialised"), "{out}");
    assert!(!out.contains("s3cret"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cluster.key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is the owner's alone");
    let key = std::fs::read_to_string(&cluster.key).unwrap();
    assert!(cluster.ok(&["init"]).contains("already initialised"));
    assert_eq!(
        std::fs::read_to_string(&cluster.key).unwrap(),
        key,
        "never replaced"
    );
    let token = cluster.populate();

    // Without the key file, a database store is refused, saying why.
    let mut keyless = Command::new(bin());
    let out = keyless
        .args(["--store", &cluster.pg.url(), "project", "list"])
        .env_remove("CFGSTORE_SERVER_KEY_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server-key-file"));

    let (a, b) = (cluster.node("a"), cluster.node("b"));
    for node in [&a, &b] {
        let r = raw(node, &token, "app.json");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{\"v\": 1}"[..]));
    }
    let short_id = |node: &Daemon| branches(node, &token)[0]["commit"]["short_id"].clone();
    assert_eq!(short_id(&a), short_id(&b));

    // The CLI changes a file: both nodes' next reads have it. Its audit
    // record went with its version (one transaction), once.
    let puts = || -> Vec<serde_json::Value> {
        let out = cluster.ok(&["audit", "--action", "file.put", "--json"]);
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eq!(puts().len(), 2, "the two puts of populate");
    cluster.put("app.json", b"{\"v\": 2}");
    let after = puts();
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(after[0]["target"], "demo/app.cfg@main:app.json");
    assert_eq!(after[0]["details"]["version"], "v0004");
    for node in [&a, &b] {
        assert_eq!(raw(node, &token, "app.json").body, b"{\"v\": 2}");
    }
    assert_eq!(short_id(&a), short_id(&b));

    // A write through node a's admin API: node b's next read has it. The
    // session made on a works on b.
    let login = Login::new(a.addr, "editor", "password-1234");
    let r = login.send(
        a.addr,
        "PUT",
        &format!("{ADMIN_FILES}/app.json"),
        b"{\"v\": 3}",
    );
    assert!(
        r.status == 200 || r.status == 201,
        "{}: {}",
        r.status,
        r.text()
    );
    assert_eq!(raw(&b, &token, "app.json").body, b"{\"v\": 3}");
    let r = login.send(b.addr, "GET", "/user/me", b"");
    assert_eq!(r.status, 200, "a session works on every node: {}", r.text());
    let r = login.send(b.addr, "DELETE", &format!("{ADMIN_FILES}/db.yaml"), b"");
    assert!(
        r.status == 200 || r.status == 204,
        "{}: {}",
        r.status,
        r.text()
    );
    assert_eq!(raw(&a, &token, "db.yaml").status, 404);

    // History, rollback and compare from the CLI, read back by the nodes.
    let versions = cluster.versions();
    assert_eq!(
        versions,
        [6, 5, 4, 3, 2, 1],
        "one version per write, none repeated"
    );
    cluster.ok(&["rollback", "demo/app.cfg", "main", "--to", "v0003", "--yes"]);
    for node in [&a, &b] {
        assert_eq!(raw(node, &token, "app.json").body, b"{\"v\": 1}");
        assert_eq!(raw(node, &token, "db.yaml").body, b"host: a\n");
    }

    // A long poll parked on node b is answered by a write through node a
    // (the database's notification wakes it; the marker check decides).
    let url = format!("{API}/projects/app.cfg/repository/files/app.json/raw?ref=main");
    let tag = raw(&b, &token, "app.json")
        .header("etag")
        .expect("an ETag")
        .to_string();
    let mut parked = std::net::TcpStream::connect(b.addr).unwrap();
    use std::io::{Read, Write};
    write!(
        parked,
        "GET {url}&wait=30 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: {token}\r\nIf-None-Match: {tag}\r\n\r\n"
    )
    .unwrap();
    parked
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut early = [0u8; 512];
    let got = parked.read(&mut early);
    assert!(
        got.is_err(),
        "the poll waits for a change: {:?}",
        got.map(|n| String::from_utf8_lossy(&early[..n]).into_owned())
    );
    parked
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let r = login.send(
        a.addr,
        "PUT",
        &format!("{ADMIN_FILES}/app.json"),
        b"{\"v\": 4}",
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
    let mut answer = Vec::new();
    parked.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("{\"v\": 4}"), "{answer}");

    // Revoked on the CLI: refused by both nodes from the next request.
    let tokens: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["token", "list", "--json"])).unwrap();
    let id = tokens[0]["id"].as_str().unwrap().to_string();
    cluster.ok(&["token", "revoke", &id, "--yes"]);
    for node in [&a, &b] {
        assert_eq!(raw(node, &token, "app.json").status, 401);
    }

    // Retention on the database: a prune keeps the newest two versions
    // (older ones are gone for every node), gc removes the contents no
    // kept version names, and the live state is untouched.
    let before = cluster.versions();
    cluster.ok(&[
        "history",
        "prune",
        "demo/app.cfg",
        "main",
        "--keep",
        "2",
        "--yes",
    ]);
    let kept = cluster.versions();
    assert_eq!(kept, before[..2].to_vec());
    let gone = format!("v{:04}", before[2]);
    let out = cluster.run(
        &["file", "ls", "demo/app.cfg", "main", "--version", &gone],
        None,
    );
    assert!(!out.status.success(), "{gone} was pruned");
    let gc: serde_json::Value = serde_json::from_str(&cluster.ok(&["gc", "--json"])).unwrap();
    assert!(gc["objects_removed"].as_u64().unwrap() > 0, "{gc}");
    let again: serde_json::Value = serde_json::from_str(&cluster.ok(&["gc", "--json"])).unwrap();
    assert_eq!(again["objects_removed"], 0, "{again}");
    for node in [&a, &b] {
        assert_eq!(raw(node, &token, "app.json").status, 401, "still revoked");
    }
    let files = cluster.files();
    assert_eq!(files.as_array().unwrap().len(), 2, "{files}");
    let content = cluster.ok(&["file", "get", "demo/app.cfg", "main", "app.json"]);
    assert_eq!(content, "{\"v\": 4}");

    // A dump of the database holds no secret: not the key, not the
    // token, not the password.
    let dump = Command::new("pg_dump")
        .arg(cluster.pg.url())
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("cfgstore"), "the dump holds the store");
    for secret in [key.trim(), token.as_str(), "password-1234"] {
        assert!(!dump.contains(secret), "the dump holds a secret");
    }
}

/// Writers racing on two nodes and the CLI lose nothing and never repeat
/// a version; racing first requests with different instance ids, half on
/// each node, bind exactly one; failed logins count across the nodes.
#[test]
fn racing_writers_and_binds_across_nodes() {
    let Some(cluster) = Cluster::start("postgres::nodes::racing_writers_and_binds_across_nodes")
    else {
        return;
    };
    cluster.populate();
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    let (la, lb) = (
        Login::new(a.addr, "editor", "password-1234"),
        Login::new(b.addr, "editor", "password-1234"),
    );
    std::thread::scope(|s| {
        for (name, node, login) in [("a", &a, &la), ("b", &b, &lb)] {
            s.spawn(move || {
                for i in 0..8 {
                    let path = format!("{ADMIN_FILES}/{name}-{i}.txt");
                    let r = login.send(node.addr, "PUT", &path, name.as_bytes());
                    assert!(
                        r.status == 200 || r.status == 201,
                        "{}: {}",
                        r.status,
                        r.text()
                    );
                }
            });
        }
        s.spawn(|| {
            for i in 0..8 {
                cluster.put(&format!("cli-{i}.txt"), b"cli");
            }
        });
    });
    let versions = cluster.versions();
    // create, two puts, then 24 racing writes: every one a version.
    assert_eq!(versions, (1..=27).rev().collect::<Vec<u64>>());
    let files = cluster.files();
    assert_eq!(files.as_array().unwrap().len(), 2 + 24, "{files}");

    let bound: serde_json::Value = serde_json::from_str(&cluster.ok(&[
        "token",
        "create",
        "--owner",
        "demo",
        "--name",
        "bound",
        "--fingerprint",
        "--json",
    ]))
    .unwrap();
    let secret = bound["token"].as_str().unwrap().to_string();
    let url = format!("{API}/projects/app.cfg/repository/branches");
    let barrier = std::sync::Barrier::new(40);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40)
            .map(|i| {
                let (addr, url, secret, barrier) = (
                    if i % 2 == 0 { a.addr } else { b.addr },
                    &url,
                    &secret,
                    &barrier,
                );
                s.spawn(move || {
                    let instance = format!("host-{i}");
                    barrier.wait();
                    request(
                        addr,
                        "GET",
                        url,
                        &[("PRIVATE-TOKEN", secret), ("X-Instance-Id", &instance)],
                    )
                    .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        39,
        "{statuses:?}"
    );
    // Failed logins count across nodes: five wrong passwords, alternating
    // between the nodes, and the next attempt on either is refused.
    let attempt = |node: &Daemon, password: &str| {
        let body = serde_json::json!({ "username": "editor", "password": password }).to_string();
        send(
            node.addr,
            "POST",
            "/site-builder/api/user/login",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    for i in 0..5 {
        let node = if i % 2 == 0 { &a } else { &b };
        assert_eq!(attempt(node, "wrong-password-1").status, 401);
    }
    for node in [&a, &b] {
        let r = attempt(node, "password-1234");
        assert_eq!(
            r.status,
            429,
            "the sixth attempt, on either node: {}",
            r.text()
        );
        assert!(r.header("retry-after").is_some());
    }
}

/// Faults: a node SIGKILLed while it writes leaves no half-change; with
/// the database stopped, reads and writes answer 503 with Retry-After
/// (never a stale or a half answer), and once it is back the same nodes
/// serve again, without a restart.
#[test]
fn a_killed_node_leaves_no_half_change_and_nodes_ride_out_a_database_restart() {
    let Some(cluster) = Cluster::start(
        "postgres::nodes::a_killed_node_leaves_no_half_change_and_nodes_ride_out_a_database_restart",
    ) else {
        return;
    };
    let token = cluster.populate();
    let a = cluster.node("a");
    let b = cluster.node("b");
    let login = Login::new(a.addr, "editor", "password-1234");
    // Writes to node a, killed part-way through the stream.
    let addr = a.addr;
    let writer = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for i in 0..200 {
            let body = format!("write {i}");
            let path = format!("{ADMIN_FILES}/k.txt");
            let r = std::panic::catch_unwind(|| login.send(addr, "PUT", &path, body.as_bytes()));
            match r {
                Ok(r) if r.status == 200 || r.status == 201 => acknowledged.push(body),
                _ => break,
            }
        }
        acknowledged
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    a.kill();
    let acknowledged = writer.join().unwrap();
    assert!(
        !acknowledged.is_empty(),
        "some writes went through before the kill"
    );
    // Every acknowledged write is there; the live state is whole, and
    // every kept version reads back.
    let live = raw(&b, &token, "k.txt");
    assert_eq!(live.status, 200);
    let body = String::from_utf8(live.body).unwrap();
    let last = acknowledged.last().unwrap();
    let n = |s: &str| s["write ".len()..].parse::<u32>().unwrap();
    assert!(
        n(&body) >= n(last),
        "{body} is older than the acknowledged {last}"
    );
    for v in cluster.versions() {
        let v = format!("v{v:04}");
        cluster.ok(&["file", "ls", "demo/app.cfg", "main", "--version", &v]);
    }

    // The database goes away: reads and writes are 503 with Retry-After.
    cluster.pg.stop();
    let login_b = || Login::new(b.addr, "editor", "password-1234");
    let r = raw(&b, &token, "k.txt");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let r = send(
        b.addr,
        "POST",
        "/site-builder/api/user/login",
        &[("Content-Type", "application/json")],
        br#"{"username": "editor", "password": "password-1234"}"#,
    );
    assert_eq!(r.status, 503, "{}", r.text());
    let out = cluster.run(&["project", "list"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unavailable"));
    // A load balancer's health check takes the node out meanwhile.
    let health = "/site-builder/api/erp-config/health";
    assert_eq!(b.get(health, &[]).status, 503);

    // Back: the same node serves again, reads and writes.
    cluster.pg.start_again();
    assert_eq!(b.get(health, &[]).status, 200);
    let r = raw(&b, &token, "k.txt");
    assert_eq!(r.status, 200, "{}", r.text());
    let login = login_b();
    let r = login.send(b.addr, "PUT", &format!("{ADMIN_FILES}/after.txt"), b"back");
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
    assert_eq!(raw(&b, &token, "after.txt").body, b"back");
}

/// A commit whose answer is lost with its connection is read back, never
/// tried again: lost after the server committed, the write is reported
/// done (and recorded once); lost before, it is reported failed and
/// nothing of it is in force. The next write takes the next number.
#[cfg(feature = "failpoints")]
#[test]
fn an_unclear_commit_is_read_back_not_retried() {
    let Some(cluster) =
        Cluster::start("postgres::nodes::an_unclear_commit_is_read_back_not_retried")
    else {
        return;
    };
    cluster.populate();
    let before = cluster.versions();
    let put = |path: &str, point: &str| {
        cluster.run_with(
            &["file", "put", "demo/app.cfg", "main", path],
            Some(b"{\"lost\": true}"),
            &[("FAILPOINTS", &format!("{point}=return"))],
        )
    };
    let audited = |path: &str| {
        let out = cluster.ok(&["audit", "--action", "file.put", "--json"]);
        let records: serde_json::Value = serde_json::from_str(&out).unwrap();
        let target = format!("demo/app.cfg@main:{path}");
        records
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["target"] == target.as_str())
            .count()
    };

    let out = put("after.json", "postgres.commit.after");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cluster.versions()[0], before[0] + 1, "done once");
    assert_eq!(
        cluster.ok(&["file", "get", "demo/app.cfg", "main", "after.json"]),
        "{\"lost\": true}"
    );
    assert_eq!(audited("after.json"), 1);

    let out = put("before.json", "postgres.commit.before");
    assert!(!out.status.success(), "reported failed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unavailable"));
    assert_eq!(cluster.versions()[0], before[0] + 1, "nothing in force");
    let get = cluster.run(
        &["file", "get", "demo/app.cfg", "main", "before.json"],
        None,
    );
    assert!(!get.status.success());
    assert_eq!(audited("before.json"), 0);

    cluster.put("next.json", b"{}");
    assert_eq!(cluster.versions()[0], before[0] + 2);
}
