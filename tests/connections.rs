//! Connection abuse against the real `cfgstore serve` (I8): slow heads,
//! slow bodies, thousands of idle connections, file-descriptor exhaustion,
//! oversized heads and bodies, a body cut short. Each case asserts the
//! exact outcome, that nothing was written, and a healthy daemon after.
//! Timeouts are set short through `CFGSTORE_*` so the tests stay fast.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::util::{self, add_user, ok, Daemon, Login, TestDir, API};

const PUT_PATH: &str = "/site-builder/api/projects/b2b-cnc.erp-config/branches/main/files";

/// An example store with an admin-API user, served by the daemon with `env`.
fn daemon(dir: &TestDir, env: &[(&str, &str)]) -> (std::path::PathBuf, Daemon) {
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    add_user(&data, "demo", "demo-password", &[]);
    let daemon = Daemon::start_with(&data, dir.path().join("daemon.log"), env);
    (data, daemon)
}

fn health(daemon: &Daemon) -> u16 {
    daemon.get(&format!("{API}/health"), &[]).status
}

/// Reads until the peer closes (or `limit` passes); returns what arrived
/// and when the connection ended.
fn read_until_closed(stream: &TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut stream = stream.try_clone().unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    (got, started.elapsed())
}

/// Sends `bytes` one at a time, `gap` apart, from a thread of its own,
/// until they are all sent or the peer has closed.
fn trickle(stream: &TcpStream, bytes: Vec<u8>, gap: Duration) -> std::thread::JoinHandle<usize> {
    let mut stream = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut sent = 0;
        for b in bytes {
            if stream.write_all(&[b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(gap);
        }
        sent
    })
}

fn status_of(response: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(response).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// User + system CPU time of `pid`, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the `(comm)`; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// CPU ticks `pid` used over `span` while nothing is asked of it.
fn cpu_over(pid: u32, span: Duration) -> u64 {
    let before = cpu_ticks(pid);
    std::thread::sleep(span);
    cpu_ticks(pid) - before
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The daemon's open descriptors once the count holds still for 150 ms:
/// a connection a client just closed (the health check's) is counted
/// until the daemon has seen its end, which would skew a baseline.
fn settled_fds(pid: u32) -> usize {
    let mut last = open_fds(pid);
    let mut steady = 0;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(50));
        let now = open_fds(pid);
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
        if steady == 3 {
            break;
        }
    }
    last
}

/// Opens up to `n` connections from 20 threads, each attempt given up
/// after `limit`: once the daemon stops accepting and its listen backlog
/// (128) is full, the kernel drops further handshakes. Returns those made.
fn open_many(addr: SocketAddr, n: usize, limit: Duration) -> Vec<TcpStream> {
    let threads: Vec<_> = (0..20)
        .map(|t| {
            std::thread::spawn(move || {
                (t..n)
                    .step_by(20)
                    .filter_map(|_| TcpStream::connect_timeout(&addr, limit).ok())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

/// Whether the process is alive (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s[s.rfind(')').unwrap() + 2..].chars().next();
            state != Some('Z')
        })
        .unwrap_or(false)
}

/// Waits (up to `limit`) until `check` holds.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// One GET of `/health` that gives up after `limit` instead of hanging
/// (a connection may sit in the backlog): the status, if one came.
fn health_within(addr: SocketAddr, limit: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, limit).ok()?;
    stream.set_write_timeout(Some(limit)).ok()?;
    stream
        .write_all(
            format!("GET {API}/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
    let (got, _) = read_until_closed(&stream, limit);
    status_of(&got)
}

#[test]
fn a_head_trickled_byte_by_byte_is_cut_off_by_the_header_timeout() {
    let dir = TestDir::new("conn-slow-head");
    // The idle timeout is long: a byte every 100 ms keeps a connection
    // "active", so only the header deadline can end this.
    let (_, daemon) = daemon(
        &dir,
        &[
            ("CFGSTORE_HEADER_TIMEOUT", "1s"),
            ("CFGSTORE_IDLE_TIMEOUT", "60s"),
        ],
    );
    let head = format!(
        "GET {API}/health HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(100)
    );
    let stream = TcpStream::connect(daemon.addr).unwrap();
    let writer = trickle(
        &stream,
        head.clone().into_bytes(),
        Duration::from_millis(100),
    );
    let (got, took) = read_until_closed(&stream, Duration::from_secs(15));
    let sent = writer.join().unwrap();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "the slow head was cut off after {took:?}"
    );
    assert!(
        sent < head.len(),
        "the whole head went through ({sent} bytes)"
    );
    assert!(
        got.is_empty() || status_of(&got) == Some(408),
        "no request was served: {:?}",
        String::from_utf8_lossy(&got)
    );

    // A connection that sends nothing at all is cut off by the same deadline.
    let silent = TcpStream::connect(daemon.addr).unwrap();
    let (got, took) = read_until_closed(&silent, Duration::from_secs(15));
    assert!(
        took < Duration::from_secs(4),
        "a silent connection lived {took:?}"
    );
    assert!(got.is_empty() || status_of(&got) == Some(408));
    assert_eq!(health(&daemon), 200);
}

#[test]
fn a_trickled_body_is_answered_408_and_nothing_is_written() {
    let dir = TestDir::new("conn-slow-body");
    let (data, daemon) = daemon(
        &dir,
        &[
            ("CFGSTORE_BODY_TIMEOUT", "1s"),
            ("CFGSTORE_IDLE_TIMEOUT", "60s"),
        ],
    );
    let history = util::json(
        &data,
        &["history", "list", "demo/b2b-cnc.erp-config", "main"],
    );
    let login = Login::new(daemon.addr, "demo", "demo-password");
    let stream = TcpStream::connect(daemon.addr).unwrap();
    let head = format!(
        "PUT {PUT_PATH}/slow.txt HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nX-CSRF-Token: {}\r\nContent-Length: 200\r\n\r\n",
        login.cookie, login.csrf
    );
    (&stream).write_all(head.as_bytes()).unwrap();
    // 200 bytes at 20 per second would take 10 s.
    let writer = trickle(&stream, vec![b'x'; 200], Duration::from_millis(50));
    let (got, took) = read_until_closed(&stream, Duration::from_secs(15));
    let sent = writer.join().unwrap();
    assert_eq!(
        status_of(&got),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "answered after {took:?}"
    );
    assert!(sent < 200, "the whole body went through");
    let r = login.send(
        daemon.addr,
        "GET",
        "/projects/b2b-cnc.erp-config/branches/main/files/slow.txt",
        b"",
    );
    assert_eq!(r.status, 404, "nothing was written");
    assert_eq!(
        util::json(
            &data,
            &["history", "list", "demo/b2b-cnc.erp-config", "main"]
        ),
        history,
        "no snapshot was made"
    );
    assert_eq!(health(&daemon), 200);
}

#[test]
fn an_oversized_head_is_431_and_a_large_legal_one_is_served() {
    let dir = TestDir::new("conn-431");
    let (_, daemon) = daemon(&dir, &[("CFGSTORE_MAX_HEADER_BYTES", "8192")]);
    let health_path = format!("{API}/health");
    let with_header = |size: usize| {
        let value = "h".repeat(size);
        util::request(daemon.addr, "GET", &health_path, &[("X-Padding", &value)]).status
    };
    assert_eq!(with_header(4000), 200, "well under the limit");
    assert_eq!(with_header(16 * 1024), 431);
    assert_eq!(with_header(1024 * 1024), 431);
    // Many small headers add up the same way.
    let names: Vec<String> = (0..90).map(|i| format!("X-Many-{i:03}")).collect();
    let value = "v".repeat(150);
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), value.as_str())).collect();
    assert_eq!(
        util::request(daemon.addr, "GET", &health_path, &many).status,
        431
    );
    assert_eq!(health(&daemon), 200);
}

#[test]
fn an_oversized_body_is_413_before_it_is_sent() {
    let dir = TestDir::new("conn-413");
    let (data, daemon) = daemon(&dir, &[("CFGSTORE_MAX_BODY_BYTES", "1000")]);
    let login = Login::new(daemon.addr, "demo", "demo-password");
    let history_len = || {
        util::json(
            &data,
            &["history", "list", "demo/b2b-cnc.erp-config", "main"],
        )
        .as_array()
        .unwrap()
        .len()
    };
    let before = history_len();

    // Declared too large: answered at once, without waiting for a byte of it.
    let stream = TcpStream::connect(daemon.addr).unwrap();
    let head = format!(
        "PUT {PUT_PATH}/big.bin HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nX-CSRF-Token: {}\r\nContent-Length: 1001\r\n\r\n",
        login.cookie, login.csrf
    );
    (&stream).write_all(head.as_bytes()).unwrap();
    let (got, took) = read_until_closed(&stream, Duration::from_secs(10));
    assert_eq!(
        status_of(&got),
        Some(413),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");

    // Chunked, so the size is only known while reading: 413 too.
    let got = send_chunked(
        daemon.addr,
        &format!(
            "Cookie: {}\r\nX-CSRF-Token: {}\r\n",
            login.cookie, login.csrf
        ),
        0x200,
        3,
    );
    assert_eq!(
        status_of(&got),
        Some(413),
        "{:?}",
        String::from_utf8_lossy(&got)
    );

    let r = login.send(
        daemon.addr,
        "GET",
        "/projects/b2b-cnc.erp-config/branches/main/files/big.bin",
        b"",
    );
    assert_eq!(r.status, 404, "nothing was written");
    assert_eq!(history_len(), before, "no snapshot was made");

    // Exactly at the limit is fine.
    let r = login.send(
        daemon.addr,
        "PUT",
        "/projects/b2b-cnc.erp-config/branches/main/files/big.bin",
        &[b'z'; 1000],
    );
    assert!(
        r.status == 200 || r.status == 201,
        "{}: {}",
        r.status,
        r.text()
    );
    assert_eq!(history_len(), before + 1);
}

#[test]
fn a_body_shorter_than_its_content_length_writes_nothing() {
    let dir = TestDir::new("conn-short-body");
    let (data, daemon) = daemon(&dir, &[]);
    let login = Login::new(daemon.addr, "demo", "demo-password");
    let history = util::json(
        &data,
        &["history", "list", "demo/b2b-cnc.erp-config", "main"],
    );
    let stream = TcpStream::connect(daemon.addr).unwrap();
    let head = format!(
        "PUT {PUT_PATH}/short.txt HTTP/1.1\r\nHost: x\r\nCookie: {}\r\nX-CSRF-Token: {}\r\nContent-Length: 100\r\n\r\nonly ten b",
        login.cookie, login.csrf
    );
    (&stream).write_all(head.as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let (got, took) = read_until_closed(&stream, Duration::from_secs(10));
    assert!(took < Duration::from_secs(3), "ended after {took:?}");
    // The client can still read after closing its half: the answer is a
    // 400 (an incomplete body), never a success.
    assert_eq!(
        status_of(&got),
        Some(400),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let r = login.send(
        daemon.addr,
        "GET",
        "/projects/b2b-cnc.erp-config/branches/main/files/short.txt",
        b"",
    );
    assert_eq!(r.status, 404, "nothing was written");
    assert_eq!(
        util::json(
            &data,
            &["history", "list", "demo/b2b-cnc.erp-config", "main"]
        ),
        history
    );
    assert_eq!(health(&daemon), 200);
}

#[test]
fn two_thousand_idle_connections_cost_little_and_block_no_one() {
    let dir = TestDir::new("conn-idle");
    let (_, daemon) = daemon(
        &dir,
        &[
            ("CFGSTORE_MAX_CONNECTIONS", "3000"),
            ("CFGSTORE_HEADER_TIMEOUT", "30s"),
            ("CFGSTORE_IDLE_TIMEOUT", "30s"),
        ],
    );
    let pid = daemon.pid();
    assert_eq!(health(&daemon), 200);
    let fds_before = settled_fds(pid);
    let rss_before = rss_kib(pid);
    let idle = open_many(daemon.addr, 2000, Duration::from_secs(5));
    assert_eq!(idle.len(), 2000, "every connection was made");
    assert!(
        eventually(Duration::from_secs(10), || open_fds(pid)
            >= fds_before + 2000),
        "the daemon accepted only {} of them",
        open_fds(pid) - fds_before
    );
    // A fresh client is served at once.
    let started = Instant::now();
    assert_eq!(
        health_within(daemon.addr, Duration::from_secs(5)),
        Some(200)
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Nothing spins while they sit there, and they cost little memory.
    let ticks = cpu_over(pid, Duration::from_secs(1));
    assert!(
        ticks <= 10,
        "{ticks} ticks of CPU in 1 s with idle connections"
    );
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "2000 idle connections cost {grown} KiB");
    drop(idle);
    assert!(
        eventually(Duration::from_secs(10), || open_fds(pid) <= fds_before + 5),
        "closed connections were not released: {} fds open",
        open_fds(pid)
    );
    assert_eq!(health(&daemon), 200);
}

#[test]
fn beyond_the_connection_cap_clients_wait_without_cost_until_idle_ones_are_reaped() {
    let dir = TestDir::new("conn-cap");
    let (_, daemon) = daemon(
        &dir,
        &[
            ("CFGSTORE_MAX_CONNECTIONS", "50"),
            ("CFGSTORE_HEADER_TIMEOUT", "2s"),
            ("CFGSTORE_IDLE_TIMEOUT", "2s"),
        ],
    );
    let pid = daemon.pid();
    let fds_before = settled_fds(pid);
    // 50 served, 128 in the backlog, the rest dropped by the kernel.
    let idle = open_many(daemon.addr, 300, Duration::from_millis(500));
    assert!(idle.len() >= 170, "only {} connections made", idle.len());
    std::thread::sleep(Duration::from_millis(300));
    let fds = open_fds(pid);
    assert!(
        fds <= fds_before + 50,
        "the cap of 50 was not kept: {} connections open",
        fds - fds_before
    );
    assert_eq!(
        cpu_over(pid, Duration::from_millis(500)) / 5,
        0,
        "spinning at the cap"
    );
    // The queue drains 50 at a time, 2 s each: a fresh client behind 300
    // silent ones is answered within about 6 x 2 s, not never.
    let started = Instant::now();
    assert_eq!(
        health_within(daemon.addr, Duration::from_secs(20)),
        Some(200)
    );
    assert!(
        started.elapsed() < Duration::from_secs(16),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    assert_eq!(health(&daemon), 200);
}

#[test]
fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let dir = TestDir::new("conn-emfile");
    let (data, daemon) = daemon(
        &dir,
        &[
            ("CFGSTORE_HEADER_TIMEOUT", "60s"),
            ("CFGSTORE_IDLE_TIMEOUT", "60s"),
        ],
    );
    let pid = daemon.pid();
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=128:128"])
        .status()
        .unwrap();
    assert!(limited.success(), "prlimit failed");
    let (_, token) = util::create_token(&data, "demo", &[]);
    let branches = format!("{API}/projects/b2b-cnc.erp-config/repository/branches");
    assert_eq!(
        daemon.get(&branches, &[("PRIVATE-TOKEN", &token)]).status,
        200
    );

    // About 120 accepted, 128 more in the listen backlog, the rest
    // dropped by the kernel.
    let held = open_many(daemon.addr, 300, Duration::from_millis(500));
    assert!(held.len() >= 200, "only {} connections made", held.len());
    assert!(
        eventually(Duration::from_secs(5), || open_fds(pid) >= 120),
        "the daemon never reached its limit: {} fds",
        open_fds(pid)
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(
        log().contains("accept failed"),
        "the daemon never hit EMFILE"
    );
    // Out of descriptors: alive, and backing off instead of spinning.
    let ticks = cpu_over(pid, Duration::from_secs(2));
    assert!(alive(pid), "the daemon died");
    assert!(ticks <= 20, "{ticks} ticks of CPU in 2 s while out of fds");

    drop(held);
    // Once the connections are gone, it serves again, files and all.
    assert!(
        eventually(Duration::from_secs(10), || health_within(
            daemon.addr,
            Duration::from_secs(2)
        ) == Some(200)),
        "not serving after the connections closed"
    );
    assert_eq!(
        daemon.get(&branches, &[("PRIVATE-TOKEN", &token)]).status,
        200
    );
    assert!(alive(pid));
    assert!(daemon.stop().success(), "SIGTERM still drains and exits 0");
}

/// Sends a request head declaring `length` body bytes (and none of them);
/// returns the status and how long the answer took.
/// Sends a chunked PUT of `chunks` chunks of `size` bytes, with `headers`
/// (each ending in CRLF) besides Host and Transfer-Encoding, and returns
/// everything the daemon answered before closing. The daemon may answer
/// and close before all of it is sent, so a failed write is expected.
fn send_chunked(addr: SocketAddr, headers: &str, size: usize, chunks: usize) -> Vec<u8> {
    let stream = TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "PUT {PUT_PATH}/big.bin HTTP/1.1\r\nHost: x\r\n{headers}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..chunks {
        request.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        request.extend_from_slice(&vec![b'y'; size]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let _ = (&stream).write_all(&request);
    read_until_closed(&stream, Duration::from_secs(10)).0
}

fn declare_body(addr: SocketAddr, head: &str, length: u64) -> (Option<u16>, Duration) {
    let stream = TcpStream::connect(addr).unwrap();
    let head = format!("{head}Host: x\r\nContent-Length: {length}\r\n\r\n");
    (&stream).write_all(head.as_bytes()).unwrap();
    let (got, took) = read_until_closed(&stream, Duration::from_secs(10));
    (status_of(&got), took)
}

/// Only a signed-in admin session may send a large body: anyone else is
/// answered before a byte of it is read (401 where the session is what is
/// missing, 413 otherwise), so anonymous clients cannot make the daemon
/// buffer `max_body_bytes` per connection.
#[test]
fn an_anonymous_client_cannot_make_the_daemon_buffer_a_large_body() {
    let dir = TestDir::new("conn-anon-body");
    let (data, daemon) = daemon(&dir, &[("CFGSTORE_MAX_BODY_BYTES", "10000000")]);
    let history = util::json(
        &data,
        &["history", "list", "demo/b2b-cnc.erp-config", "main"],
    );
    let addr = daemon.addr;
    for (what, head, want) in [
        ("no session", format!("PUT {PUT_PATH}/big.bin HTTP/1.1\r\n"), 401),
        (
            "a made-up session",
            format!("PUT {PUT_PATH}/big.bin HTTP/1.1\r\nCookie: cfgstore_session=0123456789abcdef\r\nX-CSRF-Token: x\r\n"),
            401,
        ),
        ("a login", "POST /site-builder/api/user/login HTTP/1.1\r\nContent-Type: application/json\r\n".to_string(), 413),
        // Credentials are checked before the body: a read without a token
        // is refused for that, unread.
        (
            "a read",
            format!("GET {API}/projects/demo%2Fb2b-cnc.erp-config/repository/branches HTTP/1.1\r\n"),
            401,
        ),
    ] {
        let (status, took) = declare_body(addr, &head, 5_000_000);
        assert_eq!(status, Some(want), "{what}");
        assert!(took < Duration::from_secs(2), "{what}: answered after {took:?}");
    }
    // A chunked anonymous body is cut off once past the anonymous allowance.
    let got = send_chunked(addr, "", 0x1000, 40);
    assert_eq!(
        status_of(&got),
        Some(401),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(
        util::json(
            &data,
            &["history", "list", "demo/b2b-cnc.erp-config", "main"]
        ),
        history,
        "nothing was written"
    );
    // A signed-in editor still sends a large file.
    let login = Login::new(addr, "demo", "demo-password");
    let big = vec![b'q'; 3_000_000];
    let r = login.send(
        addr,
        "PUT",
        "/projects/b2b-cnc.erp-config/branches/main/files/big.bin",
        &big,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(health(&daemon), 200);
}
