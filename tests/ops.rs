//! Running it in production: configuration, limits and timeouts, graceful
//! stop, systemd notification, metrics, backup and restore, ownership, and
//! the unit file's hardening.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cfgstore::server::ServerOptions;

use crate::util::{
    self, add_user, create_token, json, ok, run, run_with_input, Daemon, Login, TestDir,
    TestServer, API,
};

#[test]
fn config_check_shows_precedence_and_names_bad_keys() {
    let dir = TestDir::new("config");
    let file = dir.path().join("cfgstore.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1111\"\nmax_body_bytes = 100\nbody_timeout = \"5s\"\n",
    )
    .unwrap();
    let check = |env: &[(&str, &str)], extra: &[&str]| {
        let mut cmd = std::process::Command::new(util::bin());
        cmd.env_remove("CFGSTORE_DATA").args(extra).args([
            "config",
            "check",
            file.to_str().unwrap(),
            "--json",
        ]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let c = check(&[], &[]);
    assert_eq!(
        (
            c["listen"].as_str(),
            c["max_body_bytes"].as_u64(),
            c["body_timeout"].as_str()
        ),
        (Some("127.0.0.1:1111"), Some(100), Some("5s"))
    );
    assert_eq!(c["header_timeout"], "10s", "defaults fill the rest");
    assert_eq!(c["data_dir"], "/var/lib/cfgstore");
    let c = check(
        &[
            ("CFGSTORE_MAX_BODY_BYTES", "200"),
            ("CFGSTORE_DATA", "/srv/env"),
        ],
        &[],
    );
    assert_eq!(
        (c["max_body_bytes"].as_u64(), c["data_dir"].as_str()),
        (Some(200), Some("/srv/env")),
        "environment over file"
    );
    let c = check(&[("CFGSTORE_DATA", "/srv/env")], &["--data", "/srv/flag"]);
    assert_eq!(c["data_dir"], "/srv/flag", "flags over environment");

    std::fs::write(&file, "listen = \"127.0.0.1:1\"\nmax_body_byts = 5\n").unwrap();
    let out = std::process::Command::new(util::bin())
        .args(["config", "check", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_body_byts"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(util::bin())
        .args(["config", "check", "/nonexistent/cfgstore.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn the_daemon_reads_its_config_file() {
    let dir = TestDir::new("serve-config");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let file = dir.path().join("cfgstore.toml");
    std::fs::write(&file, format!("data_dir = \"{}\"\nmax_body_bytes = 1000\nlog_format = \"json\"\nexternal_url = \"https://cfg.example.com\"\n", data.display())).unwrap();
    let log = dir.path().join("daemon.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(util::bin())
        .env_remove("CFGSTORE_DATA")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            file.to_str().unwrap(),
        ])
        .stderr(log_file)
        .spawn()
        .unwrap();
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("listening")) {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON log lines");
            break v["fields"]["address"]
                .as_str()
                .unwrap()
                .parse::<std::net::SocketAddr>()
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (_, token) = create_token(&data, "demo", &[]);
    let r = util::request(
        addr,
        "GET",
        &format!("{API}/projects/b2b-cnc.erp-config/repository/tree?recursive=1&per_page=2"),
        &[("PRIVATE-TOKEN", &token)],
    );
    assert!(
        r.header("link")
            .unwrap()
            .contains("<https://cfg.example.com/site-builder/api/erp-config/projects/"),
        "external_url starts Link headers"
    );
    add_user(&data, "demo", "demo-password", &[]);
    let login = Login::new(addr, "demo", "demo-password");
    let r = login.send(
        addr,
        "PUT",
        "/projects/b2b-cnc.erp-config/branches/main/files/x.bin",
        &[b'x'; 1001],
    );
    assert_eq!(r.status, 413, "max_body_bytes from the file");
    let _ = child.kill();
    let _ = child.wait();
}

fn options() -> ServerOptions {
    ServerOptions {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(10),
        ..ServerOptions::default()
    }
}

/// Reads until the peer closes; returns what arrived and how long it took.
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    (got, started.elapsed())
}

#[test]
fn slow_clients_and_idle_connections_are_cut_off() {
    let dir = TestDir::new("timeouts");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    add_user(&data, "demo", "demo-password", &[]);
    let server = TestServer::start_with_options(&data, options());

    // A head that never ends.
    let mut slow_head = TcpStream::connect(server.addr).unwrap();
    slow_head
        .write_all(b"GET /site-builder/api/erp-config/health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (_, took) = read_until_closed(&mut slow_head);
    assert!(
        took < Duration::from_secs(5),
        "slow head cut off after {took:?}"
    );

    // A body that never arrives: 408.
    let login = Login::new(server.addr, "demo", "demo-password");
    let mut slow_body = TcpStream::connect(server.addr).unwrap();
    let head = format!(
        "PUT /site-builder/api/projects/b2b-cnc.erp-config/branches/main/files/slow.txt HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nX-CSRF-Token: {}\r\nContent-Length: 100\r\n\r\nonly ten b",
        login.cookie, login.csrf
    );
    slow_body.write_all(head.as_bytes()).unwrap();
    let (got, took) = read_until_closed(&mut slow_body);
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(took < Duration::from_secs(5));
    assert_eq!(
        login
            .send(
                server.addr,
                "GET",
                "/projects/b2b-cnc.erp-config/branches/main/files/slow.txt",
                b""
            )
            .status,
        404,
        "nothing was written"
    );

    // A kept-alive connection that goes quiet. (hyper's header timer also
    // runs between requests, so this server gets a long one.)
    let quiet = TestServer::start_with_options(
        &data,
        ServerOptions {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(1),
            ..ServerOptions::default()
        },
    );
    let mut idle = TcpStream::connect(quiet.addr).unwrap();
    idle.write_all(b"GET /site-builder/api/erp-config/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (got, took) = read_until_closed(&mut idle);
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "idle connection closed after {took:?}"
    );

    // The server is still fine.
    assert_eq!(server.get(&format!("{API}/health"), &[]).status, 200);
}

#[test]
fn connections_beyond_the_cap_wait_their_turn() {
    let dir = TestDir::new("cap");
    let data = dir.data();
    ok(&data, &["init"]);
    let server = TestServer::start_with_options(
        &data,
        ServerOptions {
            max_connections: 2,
            idle_timeout: Duration::from_secs(2),
            ..ServerOptions::default()
        },
    );
    // Two idle connections take both slots...
    let _a = TcpStream::connect(server.addr).unwrap();
    let _b = TcpStream::connect(server.addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // ...so a third is served only once the idle ones are reaped.
    let started = Instant::now();
    let r = server.get(&format!("{API}/health"), &[]);
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "served after {:?}",
        started.elapsed()
    );
}

#[test]
fn sigterm_finishes_the_request_in_flight_and_tells_systemd() {
    let dir = TestDir::new("sigterm");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    add_user(&data, "demo", "demo-password", &[]);
    let socket_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let daemon = Daemon::start_with(
        &data,
        dir.path().join("daemon.log"),
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("READY=1"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    let login = Login::new(daemon.addr, "demo", "demo-password");
    let mut upload = TcpStream::connect(daemon.addr).unwrap();
    let head = format!(
        "PUT /site-builder/api/projects/b2b-cnc.erp-config/branches/main/files/inflight.txt HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nX-CSRF-Token: {}\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhalf ",
        login.cookie, login.csrf
    );
    upload.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    daemon.terminate();
    let n = notify.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    // New connections are refused once draining...
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        TcpStream::connect(daemon.addr).is_err(),
        "the listener is closed"
    );
    // ...but the upload in flight completes.
    upload.write_all(b"done!").unwrap();
    let (got, _) = read_until_closed(&mut upload);
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(daemon.wait().success(), "exit 0 after draining");
    assert_eq!(
        ok(
            &data,
            &[
                "file",
                "get",
                "demo/b2b-cnc.erp-config",
                "main",
                "inflight.txt"
            ]
        ),
        "half done!"
    );
}

#[test]
fn metrics_count_what_happened() {
    let dir = TestDir::new("metrics");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    add_user(&data, "demo", "demo-password", &[]);
    let (_, token) = create_token(&data, "demo", &[]);
    let server = TestServer::start(&data);
    for _ in 0..3 {
        assert_eq!(
            server
                .get(
                    &format!("{API}/projects/b2b-cnc.erp-config/repository/tree"),
                    &[("PRIVATE-TOKEN", &token)]
                )
                .status,
            200
        );
    }
    assert_eq!(
        server
            .get(
                &format!("{API}/projects/b2b-cnc.erp-config/repository/tree"),
                &[("PRIVATE-TOKEN", &"0".repeat(64))]
            )
            .status,
        401
    );
    let login = Login::new(server.addr, "demo", "demo-password");
    login.send(
        server.addr,
        "PUT",
        "/projects/b2b-cnc.erp-config/branches/main/files/m.txt",
        b"m",
    );
    login.send(
        server.addr,
        "POST",
        "/projects/b2b-cnc.erp-config/branches/main/rollback?to=v0007",
        b"",
    );

    let r = server.get("/metrics", &[]);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let mut samples = std::collections::HashMap::new();
    for line in r.text().lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(name.starts_with("cfgstore_"), "{line}");
        samples.insert(name.to_string(), value);
    }
    assert_eq!(
        samples["cfgstore_requests_total{route=\"tree\",status=\"200\"}"],
        3.0
    );
    assert_eq!(
        samples["cfgstore_requests_total{route=\"tree\",status=\"401\"}"],
        1.0
    );
    assert_eq!(
        samples["cfgstore_auth_failures_total{reason=\"unknown_token\"}"],
        1.0
    );
    assert_eq!(samples["cfgstore_writes_total"], 1.0);
    assert_eq!(samples["cfgstore_rollbacks_total"], 1.0);
    assert_eq!(samples["cfgstore_snapshots_total"], 2.0);
    assert_eq!(samples["cfgstore_token_uses_total"], 3.0);
    assert_eq!(samples["cfgstore_store_projects"], 2.0);
    assert_eq!(samples["cfgstore_store_branches"], 3.0);
    assert!(samples["cfgstore_store_object_bytes"] > 1000.0);
    let count = samples["cfgstore_request_duration_seconds_count"];
    assert_eq!(
        samples["cfgstore_request_duration_seconds_bucket{le=\"+Inf\"}"],
        count
    );
    assert!(count >= 7.0);
}

/// `metrics_listen` moves `/metrics` to an address of its own: served
/// there and nowhere else, and nothing but `/metrics` is served there.
#[test]
fn metrics_listen_serves_metrics_apart() {
    let dir = TestDir::new("metrics-listen");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let daemon = Daemon::start_with(
        &data,
        dir.path().join("daemon.log"),
        &[("CFGSTORE_METRICS_LISTEN", "127.0.0.1:0")],
    );
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    let metrics: std::net::SocketAddr = log
        .split("metrics_address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics address in the log: {log}"))
        .parse()
        .unwrap();
    assert_ne!(metrics, daemon.addr);
    let on_metrics = util::request(metrics, "GET", "/metrics", &[]);
    assert_eq!(on_metrics.status, 200);
    assert!(on_metrics.text().contains("cfgstore_store_projects 2"));
    assert_eq!(
        util::request(daemon.addr, "GET", "/metrics", &[]).status,
        404
    );
    let health = format!("{API}/health");
    assert_eq!(util::request(daemon.addr, "GET", &health, &[]).status, 200);
    assert_eq!(util::request(metrics, "GET", &health, &[]).status, 404);
}

#[test]
fn backup_under_concurrent_writes_then_restore() {
    let dir = TestDir::new("backup");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    add_user(&data, "demo", "demo-password", &[]);
    let (_, token) = create_token(&data, "demo", &[]);
    let dest = dir.path().join("backup");
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..30 {
                let out = run_with_input(
                    &data,
                    &[
                        "file",
                        "put",
                        "demo/b2b-cnc.erp-config",
                        "main",
                        &format!("during/{i}.txt"),
                    ],
                    i.to_string().as_bytes(),
                );
                assert!(out.status.success());
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        let out = run(&data, &["backup", dest.to_str().unwrap(), "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["fsck_clean"], true);
        assert_eq!(report["backup"]["projects"], 2);
        writer.join().unwrap();
    });
    // The backup is a store of its own: every branch is a state the live one had.
    assert!(ok(&dest, &["fsck"]).contains("clean"));
    let backed_up = json(
        &dest,
        &["history", "list", "demo/b2b-cnc.erp-config", "main"],
    );
    let live = json(
        &data,
        &["history", "list", "demo/b2b-cnc.erp-config", "main"],
    );
    let live_ids: Vec<_> = live
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["short_id"].clone())
        .collect();
    for h in backed_up.as_array().unwrap() {
        assert!(
            live_ids.contains(&h["short_id"]),
            "backup snapshot {} is a live snapshot",
            h["version"]
        );
    }
    // A non-empty destination is refused.
    assert_eq!(
        run(&data, &["backup", dest.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );

    // Restore into a new data directory, then serve it with the same token.
    let restored = dir.path().join("restored");
    let out = util::cfgstore(&restored)
        .args(["restore", dest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ok(&restored, &["fsck"]).contains("clean"));
    let server = TestServer::start(&restored);
    let r = server.get(
        &format!("{API}/projects/b2b-cnc.erp-config/repository/files/operations.config.json/raw"),
        &[("PRIVATE-TOKEN", &token)],
    );
    assert_eq!(r.status, 200, "tokens and the server key came along");
    Login::new(server.addr, "demo", "demo-password");
    assert_eq!(
        util::cfgstore(&restored)
            .args(["restore", dest.to_str().unwrap()])
            .output()
            .unwrap()
            .status
            .code(),
        Some(1),
        "restore never overwrites"
    );
}

#[test]
fn another_user_is_told_how_to_run_the_cli() {
    let dir = TestDir::new("owner");
    let data = dir.data();
    ok(&data, &["init"]);
    let me = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    if me != 0 {
        eprintln!("SKIPPED another_user_is_told_how_to_run_the_cli: needs root to give the data directory away");
        return;
    }
    // Give the data directory to `nobody`; root running the CLI must refuse
    // rather than leave root-owned files the daemon could not read.
    let status = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
    let out = run(&data, &["project", "create", "demo", "x"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sudo -u"), "{stderr}");
    let created: Vec<_> = walkdir::WalkDir::new(&data)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| std::os::unix::fs::MetadataExt::uid(&e.metadata().unwrap()) == 0)
        .collect();
    assert!(
        created.is_empty(),
        "root left files: {:?}",
        created
            .iter()
            .map(|e| e.path().to_path_buf())
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_unit_is_hardened() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/cfgstore.service");
    let text = std::fs::read_to_string(unit).unwrap();
    for directive in [
        "Type=notify",
        "User=cfgstore",
        "StateDirectory=cfgstore",
        "UMask=0077",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == directive),
            "{directive} missing"
        );
    }
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", unit])
        .output()
    else {
        eprintln!("SKIPPED the exposure score: systemd-analyze is not installed");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for cfgstore.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no score in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(score <= 2.0, "exposure {score} > 2.0");
}

/// The listening socket's accept queue has room for `max_connections`
/// clients (the `Send-Q` that `ss` shows for a listener is its backlog).
#[test]
fn the_listen_backlog_follows_max_connections() {
    if std::process::Command::new("ss").arg("-V").output().is_err() {
        eprintln!("SKIPPED: `ss` (iproute2) is not installed");
        return;
    }
    let dir = TestDir::new("backlog");
    let data = dir.data();
    ok(&data, &["init"]);
    let daemon = Daemon::start_with(
        &data,
        dir.path().join("daemon.log"),
        &[("CFGSTORE_MAX_CONNECTIONS", "1000")],
    );
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{}", daemon.addr.port())])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // State Recv-Q Send-Q Local Peer
    let backlog: u32 = text
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no listener in {text:?}"));
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(4096);
    assert_eq!(backlog, 1000.min(somaxconn));
}
