//! Hostile sessions and logins, raw HTTP framing, and files planted in
//! the data directory.

use super::*;

#[test]
fn admin_api_cookies_csrf_and_login() {
    let fx = Fixture::new("hostile-cookies", true);
    let s = fx.sessions();
    let demo_id = s.demo.cookie.split_once('=').unwrap().1;
    let me = format!("{ADMIN}/user/me");
    let put = format!("{ADMIN}/projects/{APP}/branches/main/files/x");
    let logout = format!("{ADMIN}/user/logout");
    let login = format!("{ADMIN}/user/login");
    let cookie = |v: &str| format!("cfgstore_session={v}");
    let upper = cookie(&demo_id.to_uppercase());
    let truncated = cookie(&demo_id[..63]);
    let unknown = cookie(&"0".repeat(64));
    let both_bad_first = format!("cfgstore_session=garbage; {}", s.demo.cookie);
    let both_good_first = format!("{}; cfgstore_session=garbage", s.demo.cookie);
    let two_sessions = format!("{}; {}", s.demo.cookie, s.alice.cookie);
    let csrf_upper = s.demo.csrf.to_uppercase();
    let csrf_short = &s.demo.csrf[..s.demo.csrf.len() - 1];
    let huge_cookie = cookie(&"a".repeat(16 * 1024));
    let json = ("Content-Type", "application/json");
    let cases = vec![
        get("no cookie", &me, &[], 401),
        get("garbage session cookie", &me, &[("Cookie", "cfgstore_session=garbage")], 401),
        get("traversal in the session cookie", &me, &[("Cookie", "cfgstore_session=..%2F..%2F.cfgstore%2Fserver.key")], 401),
        get("unknown 64-hex session", &me, &[("Cookie", &unknown)], 401),
        get("uppercase session id", &me, &[("Cookie", &upper)], 401),
        get("truncated session id", &me, &[("Cookie", &truncated)], 401),
        get("16 KiB session cookie", &me, &[("Cookie", &huge_cookie)], 401),
        get("empty session cookie", &me, &[("Cookie", "cfgstore_session=")], 401),
        get("cookie name near-miss", &me, &[("Cookie", &format!("cfgstore_sessionx={demo_id}"))], 401),
        get("session id as a Bearer token", &me, &[("Authorization", &format!("Bearer {demo_id}"))], 401),
        get("duplicate cookie, garbage first", &me, &[("Cookie", &both_bad_first)], 401),
        get("duplicate cookie, valid first", &me, &[("Cookie", &both_good_first)], 401),
        get("two valid sessions in one header", &me, &[("Cookie", &two_sessions)], 401),
        get(
            "two Cookie headers",
            &me,
            &[("Cookie", &s.demo.cookie), ("Cookie", &s.alice.cookie)],
            401,
        ),
        get("read token instead of a session", &me, &[("PRIVATE-TOKEN", &fx.tokens.demo)], 401),
        raw(
            "non-ASCII cookie",
            [
                format!("GET {me} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: cfgstore_session=").as_bytes(),
                &[0xff, 0xfe][..],
                b"\r\n\r\n",
            ]
            .concat(),
            401,
        ),
        // CSRF
        case("PUT without CSRF", "PUT", &put, &[("Cookie", &s.demo.cookie)], b"x", 403),
        case("PUT with an empty CSRF", "PUT", &put, &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", "")], b"x", 403),
        case("PUT with alice's CSRF", "PUT", &put, &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", &s.alice.csrf)], b"x", 403),
        case("PUT with the CSRF uppercased", "PUT", &put, &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", &csrf_upper)], b"x", 403),
        case("PUT with the CSRF truncated", "PUT", &put, &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", csrf_short)], b"x", 403),
        case("PUT with the session id as CSRF", "PUT", &put, &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", demo_id)], b"x", 403),
        case(
            "PUT with two CSRF headers",
            "PUT",
            &put,
            &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", "x"), ("X-CSRF-Token", &s.demo.csrf)],
            b"x",
            403,
        ),
        case("PUT with CSRF but no cookie", "PUT", &put, &[("X-CSRF-Token", &s.demo.csrf)], b"x", 401),
        case("DELETE without CSRF", "DELETE", format!("{ADMIN}/projects/{APP}/branches/main/files/config.json"), &[("Cookie", &s.demo.cookie)], b"", 403),
        case("rollback without CSRF", "POST", format!("{ADMIN}/projects/{APP}/branches/main/rollback?to=v0001"), &[("Cookie", &s.demo.cookie)], b"", 403),
        case("token create without CSRF", "POST", format!("{ADMIN}/tokens"), &[("Cookie", &s.demo.cookie), json], br#"{"name":"x"}"#, 403),
        case("logout without CSRF", "POST", &logout, &[("Cookie", &s.demo.cookie)], b"", 403),
        case("logout with alice's CSRF", "POST", &logout, &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", &s.alice.csrf)], b"", 403),
        raw(
            "non-ASCII CSRF",
            [
                format!("PUT {put} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\nCookie: {}\r\nX-CSRF-Token: ", s.demo.cookie).as_bytes(),
                &[0xff][..],
                b"\r\n\r\nx",
            ]
            .concat(),
            403,
        ),
        // login
        case("login: invalid JSON", "POST", &login, &[json], b"{", 400),
        case("login: missing password", "POST", &login, &[json], br#"{"username":"demo"}"#, 400),
        case("login: password a number", "POST", &login, &[json], br#"{"username":"demo","password":1}"#, 400),
        case("login: array bomb", "POST", &login, &[json], "[".repeat(60_000).as_bytes(), 400),
        // Past what an anonymous client may send (api::ANONYMOUS_BODY_LIMIT):
        // refused before the body is read.
        case("login: 100 KB array bomb", "POST", &login, &[json], "[".repeat(100_000).as_bytes(), 413),
        case("login: form not UTF-8", "POST", &login, &[("Content-Type", "application/x-www-form-urlencoded")], b"username=\xff&password=x", 400),
        case("login: form bad escape", "POST", &login, &[("Content-Type", "application/x-www-form-urlencoded")], b"username=%zz&password=x", 400),
        case("login: form missing password", "POST", &login, &[("Content-Type", "application/x-www-form-urlencoded")], b"username=demo", 400),
        case("login: traversal user", "POST", &login, &[json], br#"{"username":"../../.cfgstore/server","password":"x"}"#, 401),
        case("login: NUL in user", "POST", &login, &[json], b"{\"username\":\"demo\\u0000\",\"password\":\"demo-secret-pw-1\"}", 401),
        case("login: uppercase user", "POST", &login, &[json], br#"{"username":"DEMO","password":"demo-secret-pw-1"}"#, 401),
        case("login: wrong password", "POST", &login, &[json], br#"{"username":"alice","password":"demo-secret-pw-1"}"#, 401),
    ];
    fx.run("cookies", cases);
}

// ----- HTTP framing -------------------------------------------------------------

#[test]
fn raw_http_framing_on_both_apis() {
    let fx = Fixture::new("hostile-framing", true);
    let s = fx.sessions();
    let put = format!("{ADMIN}/projects/{APP}/branches/main/files/framed.txt");
    let head = |extra: &str| {
        format!(
            "PUT {put} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {}\r\nX-CSRF-Token: {}\r\n{extra}\r\n",
            s.demo.cookie, s.demo.csrf
        )
    };
    let read = format!("{API}/projects/{APP}/repository/files/config.json/raw");
    let read_head = |extra: &str| {
        format!(
            "GET {read} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: {}\r\n{extra}\r\n",
            fx.tokens.demo
        )
    };
    let cases = vec![
        half_closed("body shorter than Content-Length", format!("{}abc", head("Content-Length: 10\r\n")), 400),
        raw("two different Content-Lengths", format!("{}abc", head("Content-Length: 3\r\nContent-Length: 4\r\n")), 400),
        raw("negative Content-Length", format!("{}abc", head("Content-Length: -1\r\n")), 400),
        raw("Content-Length not a number", format!("{}abc", head("Content-Length: abc\r\n")), 400),
        raw("Content-Length with a plus", format!("{}abc", head("Content-Length: +3\r\n")), 400),
        raw("Content-Length over u64", format!("{}abc", head("Content-Length: 99999999999999999999999\r\n")), 400),
        raw("Content-Length over the limit", head("Content-Length: 10485761\r\n"), 413),
        // Both framings: hyper reads the body by Transfer-Encoding alone
        // (RFC 9112 §6.3) and drops Content-Length before we see it.
        raw(
            "Content-Length and chunked: chunked wins",
            format!("{}0\r\n\r\n", read_head("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n")),
            200,
        ),
        raw(
            "Content-Length and a malformed chunked body",
            format!("{}zz\r\nabc\r\n0\r\n\r\n", head("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n")),
            400,
        ),
        raw("chunk size not hex", format!("{}zz\r\nabc\r\n0\r\n\r\n", head("Transfer-Encoding: chunked\r\n")), 400),
        raw(
            "chunk size overflowing",
            format!("{}ffffffffffffffffff\r\nabc\r\n0\r\n\r\n", head("Transfer-Encoding: chunked\r\n")),
            400,
        ),
        half_closed("chunked without the last chunk", format!("{}3\r\nabc\r\n", head("Transfer-Encoding: chunked\r\n")), 400),
        half_closed("chunk shorter than its size", format!("{}a\r\nabc", head("Transfer-Encoding: chunked\r\n")), 400),
        raw(
            "chunked over the limit",
            format!("{}A00001\r\n{}\r\n0\r\n\r\n", head("Transfer-Encoding: chunked\r\n"), "x".repeat(0xA00001)),
            413,
        ),
        raw("unknown transfer coding", format!("{}abc", head("Transfer-Encoding: gzip\r\n")), 400),
        raw("chunked not last", format!("{}3\r\nabc\r\n0\r\n\r\n", head("Transfer-Encoding: chunked, gzip\r\n")), 400),
        raw("HTTP/1.0 with chunked", format!("PUT {put} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 400),
        raw("bare LF line endings", format!("GET {read} HTTP/1.1\nHost: x\nConnection: close\nPRIVATE-TOKEN: {}\n\n", fx.tokens.revoked), 401),
        raw("garbage request line", "GARBAGE\r\n\r\n", 400),
        // An HTTP/2 client could not read an HTTP/1 answer: hyper closes.
        raw("HTTP/2 preface on HTTP/1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", NO_RESPONSE),
        raw("unknown HTTP version", format!("GET {read} HTTP/9.9\r\nHost: x\r\n\r\n"), 400),
        raw("space in the request target", format!("GET {API}/projects/{APP} x HTTP/1.1\r\nHost: x\r\n\r\n"), 400),
        raw("NUL in the request target", format!("GET {API}/projects/\x00 HTTP/1.1\r\nHost: x\r\n\r\n"), 400),
        raw("non-ASCII in the request target", [format!("GET {API}/projects/").as_bytes(), &[0xc3, 0xa9][..], format!(" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: {}\r\n\r\n", fx.tokens.demo).as_bytes()].concat(), 400),
        raw("150 headers", format!("GET {API}/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n", (0..150).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()), 431),
        raw("GET with a body: the body is ignored", format!("{}abc", read_head("Content-Length: 3\r\n")), 200),
        half_closed("GET with a short body", format!("{}abc", read_head("Content-Length: 9\r\n")), 400),
    ];
    fx.run("framing", cases);
}

// ----- planted links and special files (I5) -----------------------------------------

fn object_path(data: &Path, project: &str, bytes: &[u8]) -> PathBuf {
    let hash = blake3::hash(bytes).to_hex().to_string();
    data.join(project)
        .join("objects")
        .join(&hash[..2])
        .join(&hash)
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
}

#[test]
fn planted_symlinks_hardlinks_and_fifos() {
    let mut fx = Fixture::new("hostile-planted", true);
    let sessions = fx.sessions.take().unwrap();
    let s = &sessions;
    let outside = fx._dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // Same size as the real content, other bytes: whoever reads through a
    // planted link serves these.
    let decoy = b"{\"X\":9}\n";
    assert_eq!(decoy.len(), CONFIG.len());
    let t = fx.tokens.demo.clone();
    let h: &[(&str, &str)] = &[("PRIVATE-TOKEN", &t)];
    let d = [
        ("Cookie", s.demo.cookie.as_str()),
        ("X-CSRF-Token", s.demo.csrf.as_str()),
    ];

    // 1. An object replaced by a symlink to a file outside.
    let nested = object_path(&fx.data, "demo/app.cfg", b"{}");
    std::fs::write(outside.join("decoy2"), b"XX").unwrap();
    std::fs::remove_file(&nested).unwrap();
    std::os::unix::fs::symlink(outside.join("decoy2"), &nested).unwrap();
    // 2. bob's object replaced by a hard link to a file outside.
    let secret = object_path(&fx.data, "bob/secret.cfg", b"bob's");
    std::fs::write(outside.join("decoy5"), b"HARD!").unwrap();
    std::fs::remove_file(&secret).unwrap();
    std::fs::hard_link(outside.join("decoy5"), &secret).unwrap();
    // 3. team-ab's object replaced by a FIFO.
    let fifo_object = object_path(&fx.data, "bob/team-ab.cfg", b"x");
    std::fs::remove_file(&fifo_object).unwrap();
    mkfifo(&fifo_object);
    // 5. A branch folder that is a symlink to a copy outside.
    let copy = outside.join("branch-copy");
    std::fs::create_dir_all(&copy).unwrap();
    for name in ["HEAD", "v0001", "v0002", "v0003"] {
        std::fs::copy(
            fx.data.join("demo/app.cfg/branches/main").join(name),
            copy.join(name),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink(&copy, fx.data.join("demo/app.cfg/branches/evil")).unwrap();
    // 6. A project folder that is a symlink to a project outside.
    let project_copy = outside.join("project-copy");
    copy_tree(&fx.data.join("demo/team-a.cfg"), &project_copy);
    std::os::unix::fs::symlink(&project_copy, fx.data.join("demo/linked.cfg")).unwrap();
    // 7. The object fan-out folder of content about to be written, a
    //    symlink to a folder outside.
    let planted_write = b"written through a planted link\n";
    let target = object_path(&fx.data, "demo/app.cfg", planted_write);
    let fan_outside = outside.join("fan");
    std::fs::create_dir_all(&fan_outside).unwrap();
    std::os::unix::fs::symlink(&fan_outside, target.parent().unwrap()).unwrap();
    // 8. An owner folder that is a symlink to a folder outside: alice's
    //    new projects would be created there.
    let owner_outside = outside.join("owner");
    std::fs::create_dir_all(&owner_outside).unwrap();
    std::os::unix::fs::symlink(&owner_outside, fx.data.join("alice")).unwrap();
    let alice = [
        ("Cookie", s.alice.cookie.as_str()),
        ("X-CSRF-Token", s.alice.csrf.as_str()),
        ("Content-Type", "application/json"),
    ];

    // The daemon trusts its read cache until a writer announces a change;
    // things planted behind its back are met by a fresh daemon.
    fx.server = TestServer::start(&fx.data);
    // 4. A FIFO where a branch's HEAD should be, planted after the start
    //    (whose recovery would replace a broken HEAD) and before any read.
    let release = fx.data.join("demo/app.cfg/branches/release%2F2026.1");
    std::fs::remove_file(release.join("HEAD")).unwrap();
    mkfifo(&release.join("HEAD"));
    let cases = vec![
        get(
            "object is a symlink",
            format!("{API}/projects/{APP}/repository/files/dir%2Fnested.json/raw"),
            h,
            500,
        ),
        get(
            "object is a hard link",
            format!("{API}/projects/bob%2Fsecret.cfg/repository/files/secret.json/raw"),
            &[("PRIVATE-TOKEN", &fx.tokens.bob)],
            500,
        ),
        get(
            "object is a FIFO",
            format!("{API}/projects/bob%2Fteam-ab.cfg/repository/files/x.json/raw"),
            &[("PRIVATE-TOKEN", &fx.tokens.bob)],
            500,
        ),
        get(
            "archive over a symlinked object",
            format!("{API}/projects/{APP}/repository/archive.tar.gz"),
            h,
            500,
        ),
        get(
            "blob that is a hard link",
            format!(
                "{API}/projects/bob%2Fsecret.cfg/repository/blobs/{}/raw",
                &blake3::hash(b"bob's").to_hex()[..40]
            ),
            &[("PRIVATE-TOKEN", &fx.tokens.bob)],
            500,
        ),
        get(
            "HEAD is a FIFO",
            format!("{API}/projects/{APP}/repository/files/config.json/raw?ref=release%2F2026.1"),
            h,
            500,
        ),
        get(
            "branch folder is a symlink: not a branch",
            format!("{API}/projects/{APP}/repository/files/config.json/raw?ref=evil"),
            h,
            404,
        ),
        get(
            "branch folder is a symlink: not listed",
            format!("{API}/projects/{APP}/repository/branches/evil"),
            h,
            404,
        ),
        case(
            "PUT into a symlinked branch folder",
            "PUT",
            format!("{ADMIN}/projects/{APP}/branches/evil/files/x"),
            &d,
            b"x",
            404,
        ),
        get(
            "project folder is a symlink: not a project",
            format!("{API}/projects/linked.cfg/repository/tree"),
            h,
            404,
        ),
        case(
            "PUT into a symlinked project folder",
            "PUT",
            format!("{ADMIN}/projects/linked.cfg/branches/main/files/x"),
            &d,
            b"x",
            404,
        ),
        case(
            "PUT through a symlinked object folder",
            "PUT",
            format!("{ADMIN}/projects/{APP}/branches/main/files/planted.txt"),
            &d,
            planted_write,
            500,
        ),
        case(
            "project created under a symlinked owner folder",
            "POST",
            format!("{ADMIN}/projects"),
            &alice,
            br#"{"name":"new","type":"cfg"}"#,
            500,
        ),
    ];
    fx.run_watching("planted", cases, &[&outside]);
    // Nothing was read from outside either: the decoys never showed up.
    for (path, headers) in [
        (
            format!("{API}/projects/{APP}/repository/files/dir%2Fnested.json/raw"),
            h,
        ),
        (
            format!("{API}/projects/bob%2Fsecret.cfg/repository/files/secret.json/raw"),
            &[("PRIVATE-TOKEN", fx.tokens.bob.as_str())][..],
        ),
    ] {
        let r = fx.server.get(&path, headers);
        assert!(
            !contains(&r.body, b"XX") && !contains(&r.body, b"HARD!"),
            "{path}: {}",
            r.text()
        );
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
