//! Hostile cases of the read API: paths, refs, repo ids, headers, tokens.

use super::*;

#[test]
fn read_api_paths_refs_and_repo_ids() {
    let fx = Fixture::new("hostile-read-paths", false);
    let t = fx.tokens.demo.clone();
    let h: &[(&str, &str)] = &[("PRIVATE-TOKEN", &t)];
    let long_segment = "a".repeat(256);
    let long_path = vec!["a"; 513].join("%2F"); // 1025 bytes decoded
    let max_segment = "a".repeat(255);
    let long_ref = "r".repeat(101);
    let long_repo = "p".repeat(129);
    let cases = vec![
        // file paths
        get("encoded ../", file_raw("..%2Fconfig.json"), h, 400),
        get(
            "encoded ../ deep",
            file_raw("..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
            h,
            400,
        ),
        get(
            "encoded dots %2E%2E",
            file_raw("%2E%2E%2Fconfig.json"),
            h,
            400,
        ),
        get(
            "lowercase encoded dots",
            file_raw("%2e%2e%2fconfig.json"),
            h,
            400,
        ),
        get(
            "double-encoded ../ is a literal name",
            file_raw("%252E%252E%252Fconfig.json"),
            h,
            404,
        ),
        get(
            "overlong UTF-8 dot (lowercase)",
            file_raw("%c0%ae%c0%ae%2Fconfig.json"),
            h,
            400,
        ),
        get(
            "overlong UTF-8 slash",
            file_raw("..%c0%afconfig.json"),
            h,
            400,
        ),
        get(
            "3-byte overlong dot",
            file_raw("%e0%80%ae%e0%80%ae%2Fconfig.json"),
            h,
            400,
        ),
        get("NUL after the name", file_raw("config.json%00"), h, 400),
        get(
            "NUL before an extension",
            file_raw("config.json%00.png"),
            h,
            400,
        ),
        get(
            "backslash traversal",
            file_raw("dir%5C..%5Cconfig.json"),
            h,
            400,
        ),
        get("'.' segment encoded", file_raw(".%2Fconfig.json"), h, 400),
        get(
            "empty segment encoded",
            file_raw("dir%2F%2Fnested.json"),
            h,
            400,
        ),
        get("trailing slash encoded", file_raw("dir%2F"), h, 400),
        get(
            "literal .. segment",
            format!("{API}/projects/{APP}/repository/files/dir/../config.json/raw"),
            h,
            400,
        ),
        get(
            "literal . segment",
            format!("{API}/projects/{APP}/repository/files/./config.json/raw"),
            h,
            400,
        ),
        get("reserved name", file_raw(".cfgstore"), h, 400),
        get(
            "reserved folder",
            file_raw(".cfgstore%2Fserver.key"),
            h,
            400,
        ),
        get("reserved prefix", file_raw("dir%2F.cfgstore-x"), h, 400),
        get("segment of 256 bytes", file_raw(&long_segment), h, 400),
        get("path over 1024 bytes", file_raw(&long_path), h, 400),
        get(
            "segment of 255 bytes is valid (missing)",
            file_raw(&max_segment),
            h,
            404,
        ),
        get("newline in a name", file_raw("a%0Ab"), h, 400),
        get("DEL in a name", file_raw("a%7Fb"), h, 400),
        get("C1 control in a name", file_raw("a%C2%85b"), h, 400),
        get("bad escape", file_raw("%zz"), h, 400),
        get("truncated escape", file_raw("a%2"), h, 400),
        get("absolute path", file_raw("%2Fetc%2Fpasswd"), h, 400),
        get(
            "meta endpoint, traversal",
            format!("{API}/projects/{APP}/repository/files/..%2Fx?ref=main"),
            h,
            400,
        ),
        // refs
        get(
            "ref traversal",
            format!("{}?ref=..%2Fmain", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref with NUL",
            format!("{}?ref=main%00", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref hidden segment",
            format!("{}?ref=.git", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref ending .lock",
            format!("{}?ref=main.lock", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref with //",
            format!("{}?ref=release%2F%2F2026.1", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref with leading /",
            format!("{}?ref=%2Fmain", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref with leading -",
            format!("{}?ref=-main", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref of 101 bytes",
            format!("{}?ref={long_ref}", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "double-encoded ref",
            format!("{}?ref=%252E%252E", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref with backslash",
            format!("{}?ref=main%5C", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref with a space",
            format!("{}?ref=ma+in", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref not UTF-8",
            format!("{}?ref=%C0%AE", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "unknown ref",
            format!("{}?ref=nope", file_raw("config.json")),
            h,
            404,
        ),
        get(
            "branch endpoint, literal ..",
            format!("{API}/projects/{APP}/repository/branches/.."),
            h,
            400,
        ),
        get(
            "branch endpoint, encoded traversal",
            format!("{API}/projects/{APP}/repository/branches/main%2F..%2F..%2Fx"),
            h,
            400,
        ),
        get(
            "branch endpoint, reserved HEAD",
            format!("{API}/projects/{APP}/repository/branches/HEAD"),
            h,
            400,
        ),
        get(
            "archive, ref traversal",
            format!("{API}/projects/{APP}/repository/archive.tar.gz?sha=..%2Fmain"),
            h,
            400,
        ),
        get(
            "tree, ref with NUL",
            format!("{API}/projects/{APP}/repository/tree?ref=%00"),
            h,
            400,
        ),
        // tree paths
        get(
            "tree path ..",
            format!("{API}/projects/{APP}/repository/tree?path=.."),
            h,
            400,
        ),
        get(
            "tree path absolute",
            format!("{API}/projects/{APP}/repository/tree?path=%2Fetc"),
            h,
            400,
        ),
        get(
            "tree path reserved",
            format!("{API}/projects/{APP}/repository/tree?path=.cfgstore"),
            h,
            400,
        ),
        get(
            "tree path climbing",
            format!("{API}/projects/{APP}/repository/tree?path=dir%2F..%2F.."),
            h,
            400,
        ),
        get(
            "tree path of a file",
            format!("{API}/projects/{APP}/repository/tree?path=nope"),
            h,
            404,
        ),
        // repoIds
        get(
            "repoId traversal",
            format!("{API}/projects/..%2F..%2Fetc/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId ..",
            format!("{API}/projects/%2E%2E/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId .",
            format!("{API}/projects/./repository/tree"),
            h,
            400,
        ),
        get(
            "owner .cfgstore",
            format!("{API}/projects/.cfgstore%2Ftokens/repository/tree"),
            h,
            400,
        ),
        get(
            "repo .cfgstore",
            format!("{API}/projects/demo%2F.cfgstore/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId with two slashes",
            format!("{API}/projects/demo%2Fapp.cfg%2Fx/repository/tree"),
            h,
            400,
        ),
        get(
            "double-encoded namespace",
            format!("{API}/projects/demo%252Fapp.cfg/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId with NUL",
            format!("{API}/projects/app.cfg%00/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId of 129 bytes",
            format!("{API}/projects/{long_repo}/repository/tree"),
            h,
            400,
        ),
        get(
            "uppercase owner",
            format!("{API}/projects/DEMO%2Fapp.cfg/repository/tree"),
            h,
            400,
        ),
        get(
            "public area then traversal",
            format!("{API}/projects/public%2F..%2Fbob%2Fsecret.cfg/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId with backslash",
            format!("{API}/projects/app.cfg%5C..%5C..%5Cbob/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId overlong UTF-8",
            format!("{API}/projects/%C0%AE%C0%AE/repository/tree"),
            h,
            400,
        ),
        get(
            "empty namespace",
            format!("{API}/projects/%2Fapp.cfg/repository/tree"),
            h,
            400,
        ),
        get(
            "blob id traversal",
            format!(
                "{API}/projects/{APP}/repository/blobs/..%2F..%2F..%2F.cfgstore%2Fserver.key/raw"
            ),
            h,
            404,
        ),
        get(
            "blob id uppercase",
            format!(
                "{API}/projects/{APP}/repository/blobs/{}/raw",
                "A".repeat(40)
            ),
            h,
            404,
        ),
        // query abuse
        get(
            "page=-1",
            format!("{API}/projects/{APP}/repository/tree?page=-1"),
            h,
            400,
        ),
        get(
            "page=abc",
            format!("{API}/projects/{APP}/repository/tree?page=abc"),
            h,
            400,
        ),
        get(
            "page beyond u64",
            format!("{API}/projects/{APP}/repository/tree?page=99999999999999999999"),
            h,
            400,
        ),
        get(
            "page=u64::MAX is an empty page",
            format!("{API}/projects/{APP}/repository/tree?page=18446744073709551615&per_page=100"),
            h,
            200,
        ),
        get(
            "per_page=999999 is capped",
            format!("{API}/projects/{APP}/repository/tree?per_page=999999"),
            h,
            200,
        ),
        get(
            "per_page=-5",
            format!("{API}/projects/{APP}/repository/branches?per_page=-5"),
            h,
            400,
        ),
        get(
            "page with NUL",
            format!("{API}/projects/{APP}/repository/tree?page=%00"),
            h,
            400,
        ),
        get(
            "recursive=maybe",
            format!("{API}/projects/{APP}/repository/tree?recursive=maybe"),
            h,
            400,
        ),
        get(
            "query with a bad escape",
            format!("{API}/projects/{APP}/repository/tree?%zz=1"),
            h,
            400,
        ),
        // methods and routes
        case(
            "POST on a read route",
            "POST",
            format!("{API}/projects/{APP}/repository/branches"),
            h,
            b"{}",
            405,
        ),
        case(
            "PUT on a read file",
            "PUT",
            file_raw("config.json"),
            h,
            b"x",
            405,
        ),
        case(
            "DELETE on a read file",
            "DELETE",
            file_raw("config.json"),
            h,
            b"",
            405,
        ),
        case(
            "PATCH on a project",
            "PATCH",
            format!("{V4}/projects/{APP}"),
            h,
            b"{}",
            405,
        ),
        case(
            "TRACE on a read route",
            "TRACE",
            format!("{API}/projects/{APP}"),
            h,
            b"",
            405,
        ),
        case(
            "OPTIONS on a read route",
            "OPTIONS",
            format!("{API}/projects/{APP}"),
            h,
            b"",
            405,
        ),
        case(
            "unknown method",
            "FOO",
            format!("{API}/projects/{APP}"),
            h,
            b"",
            405,
        ),
        case("TRACE on an unknown route", "TRACE", "/nope", h, b"", 404),
        case("POST to /metrics", "POST", "/metrics", &[], b"", 405),
        get("health under /api/v4", format!("{V4}/health"), &[], 404),
        get(
            "a near-miss mount",
            "/site-builder/api/erp-configs/health",
            &[],
            404,
        ),
        get(
            "unknown repository route",
            format!("{API}/projects/{APP}/repository/commits"),
            h,
            404,
        ),
        get(
            "traversal in the route",
            format!("{API}/projects/{APP}/../../../.cfgstore/server.key"),
            h,
            404,
        ),
        get(
            "trailing slash on a list is tolerated",
            format!("{API}/projects/{APP}/repository/branches/"),
            h,
            200,
        ),
        get(
            "extra segments after raw",
            format!("{API}/projects/{APP}/repository/files/config.json/raw/x"),
            h,
            400,
        ),
        get(
            "files without a path",
            format!("{API}/projects/{APP}/repository/files//raw"),
            h,
            400,
        ),
        get(
            "archive format zip",
            format!("{API}/projects/{APP}/repository/archive.zip"),
            h,
            400,
        ),
        get(
            "archive format ../",
            format!("{API}/projects/{APP}/repository/archive...%2F..%2Fx"),
            h,
            400,
        ),
        raw(
            "asterisk request target",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            404,
        ),
    ];
    fx.run("read paths", cases);
}

#[test]
fn read_api_headers_and_tokens() {
    let fx = Fixture::new("hostile-read-tokens", false);
    let tk = &fx.tokens;
    let tree = format!("{API}/projects/{APP}/repository/tree");
    let truncated = &tk.demo[..63];
    let upper = tk.demo.to_uppercase();
    let longer = format!("{}0", tk.demo);
    let bearer = format!("Bearer {}", tk.demo);
    let bearer_extra = format!("Bearer {} extra", tk.demo);
    let basic = format!("Basic {}", tk.demo);
    let huge = "a".repeat(16 * 1024);
    let too_big = "a".repeat(64 * 1024);
    let other = "0".repeat(64);
    let cases = vec![
        get("no token", &tree, &[], 401),
        get("wrong token", &tree, &[("PRIVATE-TOKEN", &other)], 401),
        get("truncated token", &tree, &[("PRIVATE-TOKEN", truncated)], 401),
        get("uppercase hex token", &tree, &[("PRIVATE-TOKEN", &upper)], 401),
        get("token plus a digit", &tree, &[("PRIVATE-TOKEN", &longer)], 401),
        get("revoked token", &tree, &[("PRIVATE-TOKEN", &tk.revoked)], 401),
        get("expired token", &tree, &[("PRIVATE-TOKEN", &tk.expired)], 401),
        get("empty token", &tree, &[("PRIVATE-TOKEN", "")], 401),
        get("token of 16 KiB", &tree, &[("PRIVATE-TOKEN", &huge)], 401),
        get("token of 64 KiB: head too large", &tree, &[("PRIVATE-TOKEN", &too_big)], 431),
        get(
            "duplicate PRIVATE-TOKEN, valid first",
            &tree,
            &[("PRIVATE-TOKEN", &tk.demo), ("PRIVATE-TOKEN", &other)],
            401,
        ),
        get(
            "duplicate PRIVATE-TOKEN, valid second",
            &tree,
            &[("PRIVATE-TOKEN", &other), ("PRIVATE-TOKEN", &tk.demo)],
            401,
        ),
        get(
            "PRIVATE-TOKEN and a different Bearer",
            &tree,
            &[("PRIVATE-TOKEN", &tk.demo), ("Authorization", &format!("Bearer {}", tk.bob))],
            401,
        ),
        get(
            "duplicate Authorization",
            &tree,
            &[("Authorization", &bearer), ("Authorization", "Bearer x")],
            401,
        ),
        get(
            "header token and a different query token",
            format!("{tree}?private_token={other}"),
            &[("PRIVATE-TOKEN", &tk.demo)],
            401,
        ),
        get(
            "two query tokens",
            format!("{tree}?private_token={}&private_token={other}", tk.demo),
            &[],
            401,
        ),
        get("Bearer without a token", &tree, &[("Authorization", "Bearer")], 401),
        get("Bearer with blanks", &tree, &[("Authorization", "Bearer    ")], 401),
        get("Bearer token with trailing words", &tree, &[("Authorization", &bearer_extra)], 401),
        get("Basic scheme", &tree, &[("Authorization", &basic)], 401),
        get("scheme only garbage", &tree, &[("Authorization", "garbage")], 401),
        get("revoked token as Bearer", &tree, &[("Authorization", &format!("Bearer {}", tk.revoked))], 401),
        raw(
            "token with non-ASCII bytes",
            [
                format!("GET {tree} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: ").as_bytes(),
                &[0xc3, 0xa9, 0xff][..],
                b"\r\n\r\n",
            ]
            .concat(),
            401,
        ),
        raw(
            "control byte in a header value",
            format!("GET {tree} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: ab\x01cd\r\n\r\n"),
            400,
        ),
        raw(
            "NUL in a header value",
            format!("GET {tree} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: {}\x00\r\n\r\n", tk.demo),
            400,
        ),
        raw(
            "space in a header name",
            format!("GET {tree} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE TOKEN: {}\r\n\r\n", tk.demo),
            400,
        ),
        raw(
            "header folded over two lines",
            format!("GET {tree} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: \r\n {}\r\n\r\n", tk.demo),
            400,
        ),
        // fingerprints
        get("fingerprint token without X-Instance-Id", &tree, &[("PRIVATE-TOKEN", &tk.fingerprint)], 401),
        get(
            "fingerprint token, other host",
            &tree,
            &[("PRIVATE-TOKEN", &tk.fingerprint), ("X-Instance-Id", "host-2")],
            401,
        ),
        get(
            "fingerprint token, empty X-Instance-Id",
            &tree,
            &[("PRIVATE-TOKEN", &tk.fingerprint), ("X-Instance-Id", "")],
            401,
        ),
        get(
            "fingerprint token, 16 KiB X-Instance-Id",
            &tree,
            &[("PRIVATE-TOKEN", &tk.fingerprint), ("X-Instance-Id", &huge)],
            401,
        ),
        get(
            "fingerprint token, bound id with a suffix",
            &tree,
            &[("PRIVATE-TOKEN", &tk.fingerprint), ("X-Instance-Id", "host-1x")],
            401,
        ),
        get(
            "fingerprint token, two X-Instance-Id headers",
            &tree,
            &[
                ("PRIVATE-TOKEN", &tk.fingerprint),
                ("X-Instance-Id", "host-1"),
                ("X-Instance-Id", "host-2"),
            ],
            401,
        ),
        raw(
            "fingerprint token, non-ASCII X-Instance-Id",
            [
                format!(
                    "GET {tree} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: {}\r\nX-Instance-Id: host-1",
                    tk.fingerprint
                )
                .as_bytes(),
                &[0xff][..],
                b"\r\n\r\n",
            ]
            .concat(),
            401,
        ),
        get(
            "revoked token with a fingerprint header",
            &tree,
            &[("PRIVATE-TOKEN", &tk.revoked), ("X-Instance-Id", "host-1")],
            401,
        ),
        // scope: other owners, allowlists, prefix near-misses
        get("another owner's project", format!("{API}/projects/bob%2Fsecret.cfg/repository/tree"), &[("PRIVATE-TOKEN", &tk.demo)], 403),
        get(
            "another owner's missing project",
            format!("{API}/projects/bob%2Fnope.cfg/repository/tree"),
            &[("PRIVATE-TOKEN", &tk.demo)],
            403,
        ),
        get(
            "another owner's token on demo's project",
            format!("{API}/projects/demo%2Fapp.cfg/repository/files/config.json/raw"),
            &[("PRIVATE-TOKEN", &tk.bob)],
            403,
        ),
        get("team-a token on team-ab", format!("{API}/projects/team-ab.cfg/repository/tree"), &[("PRIVATE-TOKEN", &tk.team_a)], 403),
        get("team-a token on team-a (no type)", format!("{API}/projects/team-a/repository/tree"), &[("PRIVATE-TOKEN", &tk.team_a)], 403),
        get("team-a token on team-a.cfg.x", format!("{API}/projects/team-a.cfg.x/repository/tree"), &[("PRIVATE-TOKEN", &tk.team_a)], 403),
        get("team-a token on TEAM-A.cfg", format!("{API}/projects/TEAM-A.cfg/repository/tree"), &[("PRIVATE-TOKEN", &tk.team_a)], 403),
        get("team-a token on app.cfg", format!("{API}/projects/{APP}/repository/tree"), &[("PRIVATE-TOKEN", &tk.team_a)], 403),
        get(
            "team-a token on bob's team-a",
            format!("{API}/projects/bob%2Fteam-a.cfg/repository/tree"),
            &[("PRIVATE-TOKEN", &tk.team_a)],
            403,
        ),
        get(
            "team-a token, archive of team-ab",
            format!("{API}/projects/team-ab.cfg/repository/archive.tar.gz"),
            &[("PRIVATE-TOKEN", &tk.team_a)],
            403,
        ),
        get(
            "Link header ignores an untrusted X-Forwarded-Host",
            format!("{API}/projects/{APP}/repository/tree?per_page=1"),
            &[("PRIVATE-TOKEN", &tk.demo), ("X-Forwarded-Host", "evil.example")],
            200,
        ),
    ];
    fx.run("read tokens", cases);
    // The forwarded host never reaches a Link header.
    let r = fx.server.get(
        &format!("{API}/projects/{APP}/repository/tree?per_page=1"),
        &[
            ("PRIVATE-TOKEN", &tk.demo),
            ("X-Forwarded-Host", "evil.example"),
        ],
    );
    assert!(!r.header("link").unwrap_or("").contains("evil"));
}

// ----- admin API --------------------------------------------------------------
