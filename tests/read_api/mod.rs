//! The read API over real HTTP: every endpoint on both mounts, statuses and
//! GitLab's messages, pagination, encodings, ETags, tokens and scope.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::util::{
    self, create_token, json, ok, request, run_with_input, Daemon, TestDir, TestServer, API, V4,
};

const P: &str = "b2b-cnc.erp-config";

/// The example store plus another owner's project, and a wildcard token
/// of `demo`.
fn setup(dir: &TestDir) -> (std::path::PathBuf, String) {
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    ok(
        &data,
        &["project", "create", "acme", "secret", "--type", "cfg"],
    );
    run_with_input(
        &data,
        &["file", "put", "acme/secret.cfg", "main", "x.json"],
        b"{}",
    );
    let (_, token) = create_token(&data, "demo", &[]);
    (data, token)
}

fn auth(token: &str) -> [(&str, &str); 1] {
    [("PRIVATE-TOKEN", token)]
}

#[test]
fn branches_on_both_mounts() {
    let dir = TestDir::new("branches-api");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    let cli = json(&data, &["branch", "list", &format!("demo/{P}")]);
    for mount in [API, V4] {
        let r = server.get(
            &format!("{mount}/projects/{P}/repository/branches"),
            &auth(&token),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let list = r.json();
        assert_eq!(list.as_array().unwrap().len(), 2);
        for (api, cli) in list.as_array().unwrap().iter().zip(cli.as_array().unwrap()) {
            assert_eq!(api["name"], cli["name"]);
            assert_eq!(api["commit"]["short_id"], cli["short_id"]);
            assert_eq!(api["commit"]["id"], cli["commit_id"]);
            assert_eq!(api["default"], cli["default"]);
            assert_eq!(api["protected"], false);
            assert_eq!(api["merged"], false);
        }
        let one = server.get(
            &format!("{mount}/projects/{P}/repository/branches/release%2F2026.1"),
            &auth(&token),
        );
        assert_eq!(one.status, 200);
        assert_eq!(one.json()["name"], "release/2026.1");
        let missing = server.get(
            &format!("{mount}/projects/{P}/repository/branches/nope"),
            &auth(&token),
        );
        assert_eq!(
            (missing.status, missing.message()),
            (404, "404 Branch Not Found".into())
        );
    }
    let names = |q: &str| {
        server
            .get(
                &format!("{API}/projects/{P}/repository/branches?search={q}"),
                &auth(&token),
            )
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("rel"), ["release/2026.1"]);
    assert_eq!(names("%5Emain%24"), ["main"]);
    assert_eq!(names("%5Ema"), ["main"]);
    assert_eq!(names("%5Eain"), Vec::<String>::new());
    assert_eq!(names("2026.1%24"), ["release/2026.1"]);
    assert_eq!(names("a"), ["main", "release/2026.1"]);
}

/// The whole list, which every poll asks for, is made once per state of
/// the project's branches: it is the answer the filtered path gives
/// (body, ETag, counts), and a change to any branch, or a new branch, is
/// in it at the next request.
#[test]
fn the_whole_branches_list_is_the_general_answer_and_follows_changes() {
    let dir = TestDir::new("branches-whole");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    let url = format!("{API}/projects/{P}/repository/branches");
    let check = |expect_branches: usize| {
        let whole = server.get(&url, &auth(&token));
        // `search=a` matches every branch of the fixture and takes the
        // general path.
        let general = server.get(&format!("{url}?search=a"), &auth(&token));
        assert_eq!(whole.status, 200);
        assert_eq!(whole.body, general.body);
        for h in [
            "etag",
            "x-total",
            "x-total-pages",
            "x-page",
            "x-per-page",
            "content-type",
            "cache-control",
            "vary",
        ] {
            assert_eq!(whole.header(h), general.header(h), "{h}");
        }
        assert_eq!(whole.json().as_array().unwrap().len(), expect_branches);
        let again = server.get(&url, &auth(&token));
        assert_eq!(again.body, whole.body, "made once, answered again");
        whole
    };
    let first = check(2);
    ok(
        &data,
        &[
            "branch",
            "create",
            &format!("demo/{P}"),
            "a-fix",
            "--from",
            "main",
        ],
    );
    let more = check(3);
    assert_ne!(more.header("etag"), first.header("etag"));
    let put = util::run_with_input(
        &data,
        &["file", "put", &format!("demo/{P}"), "a-fix", "extra.json"],
        b"{}",
    );
    assert!(put.status.success());
    let changed = check(3);
    assert_ne!(changed.body, more.body, "the put is in the next answer");
    // A conditional poll with the current ETag is a 304.
    let etag = changed.header("etag").unwrap().to_string();
    let r = server.get(
        &url,
        &[
            ("PRIVATE-TOKEN", token.as_str()),
            ("If-None-Match", etag.as_str()),
        ],
    );
    assert_eq!(r.status, 304);
}

#[test]
fn tree_pagination_links_repeat_the_query_and_keep_the_mount() {
    let dir = TestDir::new("tree-api");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    let all = server.get(
        &format!("{API}/projects/{P}/repository/tree?ref=main&recursive=1"),
        &auth(&token),
    );
    assert_eq!(all.status, 200);
    let all = all.json();
    let total = all.as_array().unwrap().len();
    assert!(
        total > 20,
        "without page/per_page every item comes back ({total})"
    );
    for item in all.as_array().unwrap() {
        let keys: Vec<_> = item.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["id", "mode", "name", "path", "type"]);
        assert_eq!(item["id"].as_str().unwrap().len(), 40);
        assert!(item["mode"] == "100644" || item["mode"] == "040000");
    }
    for mount in [API, V4] {
        let mut url =
            format!("{mount}/projects/{P}/repository/tree?recursive=True&ref=main&per_page=7");
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let r = server.get(&url, &auth(&token));
            assert_eq!(r.status, 200, "{url}");
            seen.extend(
                r.json()
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["path"].as_str().unwrap().to_string()),
            );
            pages += 1;
            assert_eq!(r.header("x-total"), Some(total.to_string().as_str()));
            let Some(next) = r
                .header("link")
                .and_then(|l| l.split(", ").find(|p| p.ends_with("rel=\"next\"")))
            else {
                break;
            };
            let next = next.trim_start_matches('<').split('>').next().unwrap();
            let prefix = format!("http://{}{mount}/projects/", server.addr);
            assert!(next.starts_with(&prefix), "absolute, same mount: {next}");
            assert!(
                next.contains("recursive=True")
                    && next.contains("ref=main")
                    && next.contains("per_page=7"),
                "{next}"
            );
            url = next
                .trim_start_matches(&format!("http://{}", server.addr))
                .to_string();
        }
        assert_eq!(pages, total.div_ceil(7));
        let expected: Vec<_> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(seen, expected, "pages are stable and complete");
    }
    // path, recursive=False, +-encoded spaces, and the default ref.
    let r = server.get(
        &format!("{API}/projects/{P}/repository/tree?path=config&recursive=False"),
        &auth(&token),
    );
    let names: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["bom", "machines", "pricing", "taxonomy"]);
    let spaced = server.get(
        &format!("{API}/projects/{P}/repository/tree?path=features&per_page=100&page=1"),
        &auth(&token),
    );
    assert_eq!(spaced.json()[0]["path"], "features/feature flags.json");
    assert!(spaced.header("link").unwrap().contains("rel=\"first\""));
    assert!(
        !spaced.header("link").unwrap().contains("rel=\"next\""),
        "no next on the last page"
    );
    for (q, message) in [
        ("ref=nope", "404 Tree Not Found"),
        ("path=nope", "404 Tree Not Found"),
    ] {
        let r = server.get(
            &format!("{API}/projects/{P}/repository/tree?{q}"),
            &auth(&token),
        );
        assert_eq!((r.status, r.message()), (404, message.to_string()), "{q}");
    }
    let bad = server.get(
        &format!("{API}/projects/{P}/repository/tree?recursive=maybe"),
        &auth(&token),
    );
    assert_eq!(bad.status, 400);
    let bad = server.get(
        &format!("{API}/projects/{P}/repository/tree?path=..%2Fx"),
        &auth(&token),
    );
    assert_eq!(bad.status, 400);
}

#[test]
fn raw_files_meta_blobs_and_archive() {
    let dir = TestDir::new("files-api");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    let path = "features%2Ffeature%20flags.json";
    let expected = ok(
        &data,
        &[
            "file",
            "get",
            &format!("demo/{P}"),
            "main",
            "features/feature flags.json",
        ],
    );
    for mount in [API, V4] {
        for q in ["?ref=main", "", "?ref=HEAD"] {
            let r = server.get(
                &format!("{mount}/projects/{P}/repository/files/{path}/raw{q}"),
                &auth(&token),
            );
            assert_eq!(r.status, 200, "{q}");
            assert_eq!(r.text(), expected);
            assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        }
        let head = request(
            server.addr,
            "HEAD",
            &format!("{mount}/projects/{P}/repository/files/{path}/raw?ref=main"),
            &auth(&token),
        );
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(expected.len().to_string().as_str())
        );
    }
    // Non-ASCII on a ref containing '/', and %2E for '.'.
    let r = server.get(&format!("{API}/projects/{P}/repository/files/locales%2Fde%2Fma%C3%9Feinheiten%2Eyaml/raw?ref=release%2F2026.1"), &auth(&token));
    assert_eq!(r.status, 200);
    assert!(r.text().contains("länge"));
    // Binary content is served as bytes, exactly.
    let binary: Vec<u8> = (0..=255u8).collect();
    run_with_input(
        &data,
        &["file", "put", &format!("demo/{P}"), "main", "bin/table.bin"],
        &binary,
    );
    let r = server.get(
        &format!("{API}/projects/{P}/repository/files/bin%2Ftable.bin/raw"),
        &auth(&token),
    );
    assert_eq!(r.body, binary);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));

    // Metadata JSON: ref required, GitLab's fields, base64 content.
    let meta = server.get(
        &format!("{V4}/projects/{P}/repository/files/{path}?ref=main"),
        &auth(&token),
    );
    assert_eq!(meta.status, 200);
    assert_eq!(meta.header("content-type"), Some("application/json"));
    let m = meta.json();
    assert_eq!(m["file_name"], "feature flags.json");
    assert_eq!(m["file_path"], "features/feature flags.json");
    assert_eq!(m["encoding"], "base64");
    assert_eq!(m["ref"], "main");
    assert_eq!(m["size"], expected.len());
    let branch = server
        .get(
            &format!("{API}/projects/{P}/repository/branches/main"),
            &auth(&token),
        )
        .json();
    assert_eq!(m["commit_id"], branch["commit"]["id"]);
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(expected.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(m["content_sha256"], sha);
    let no_ref = server.get(
        &format!("{API}/projects/{P}/repository/files/{path}"),
        &auth(&token),
    );
    assert_eq!(no_ref.status, 400);
    assert!(no_ref.message().contains("ref is missing"));
    let head = request(
        server.addr,
        "HEAD",
        &format!("{API}/projects/{P}/repository/files/{path}?ref=main"),
        &auth(&token),
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("x-gitlab-file-path"),
        Some("features/feature flags.json")
    );
    assert!(head.body.is_empty());

    // Blobs by the tree id.
    let blob_id = m["blob_id"].as_str().unwrap();
    let blob = server.get(
        &format!("{API}/projects/{P}/repository/blobs/{blob_id}/raw"),
        &auth(&token),
    );
    assert_eq!((blob.status, blob.text()), (200, expected.clone()));
    let blob_json = server.get(
        &format!("{API}/projects/{P}/repository/blobs/{blob_id}"),
        &auth(&token),
    );
    assert_eq!(blob_json.json()["size"], expected.len());
    let missing = server.get(
        &format!("{API}/projects/{P}/repository/blobs/{}/raw", "0".repeat(40)),
        &auth(&token),
    );
    assert_eq!(
        (missing.status, missing.message()),
        (404, "404 Blob Not Found".into())
    );

    // Missing files and refs.
    for (url, message) in [
        (
            format!("{API}/projects/{P}/repository/files/nope.json/raw?ref=main"),
            "404 File Not Found",
        ),
        (
            format!("{API}/projects/{P}/repository/files/{path}/raw?ref=nope"),
            "404 File Not Found",
        ),
        (
            format!("{API}/projects/{P}/repository/files/{path}?ref=nope"),
            "404 File Not Found",
        ),
        (
            format!("{API}/projects/nope.cfg/repository/files/{path}/raw"),
            "404 Project Not Found",
        ),
        (format!("{API}/projects/nope.cfg"), "404 Project Not Found"),
    ] {
        let r = server.get(&url, &auth(&token));
        assert_eq!((r.status, r.message()), (404, message.to_string()), "{url}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    // The archive holds every file of one state.
    for suffix in ["archive.tar.gz", "archive"] {
        let r = server.get(
            &format!("{V4}/projects/{P}/repository/{suffix}?sha=release%2F2026.1"),
            &auth(&token),
        );
        assert_eq!(r.status, 200);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(r.body.as_slice()));
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 13, "{names:?}");
        assert!(names
            .iter()
            .all(|n| n.starts_with(&format!("{P}-release-2026.1-"))));
        assert!(names
            .iter()
            .any(|n| n.ends_with("/features/feature flags.json")));
    }
    let zip = server.get(
        &format!("{API}/projects/{P}/repository/archive.zip"),
        &auth(&token),
    );
    assert_eq!(zip.status, 400);
}

#[test]
fn project_object_and_health() {
    let dir = TestDir::new("project-api");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    let p = server.get(&format!("{V4}/projects/{P}"), &auth(&token));
    assert_eq!(p.status, 200);
    assert_eq!(p.header("content-type"), Some("application/json"));
    let p = p.json();
    assert_eq!(p["id"], P);
    assert_eq!(p["default_branch"], "main");
    assert_eq!(p["path_with_namespace"], format!("demo/{P}"));
    let namespaced = server
        .get(&format!("{V4}/projects/demo%2F{P}"), &auth(&token))
        .json();
    assert_eq!(namespaced["id"], format!("demo/{P}"));
    let health = server.get(&format!("{API}/health"), &[]);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert!(health.json()["time"].as_str().unwrap().ends_with('Z'));
    // `GET /user` answers with the token's owner (python-gitlab's auth());
    // a route that does not exist is a JSON 404.
    let user = server.get(&format!("{V4}/user"), &auth(&token));
    assert_eq!(
        (user.status, user.json()["username"].as_str()),
        (200, Some("demo"))
    );
    let nope = server.get(&format!("{V4}/users"), &auth(&token));
    assert_eq!(nope.status, 404);
    assert_eq!(nope.header("content-type"), Some("application/json"));
}

#[test]
fn token_checks_in_order_and_scope() {
    let dir = TestDir::new("scope-api");
    let (data, token) = setup(&dir);
    let (_, narrow) = create_token(&data, "demo", &["--repos", "other.cfg"]);
    let (_, acme) = create_token(&data, "acme", &[]);
    let server = TestServer::start(&data);
    let url = |id: &str| format!("{API}/projects/{id}/repository/branches");
    let status = |id: &str, headers: &[(&str, &str)]| {
        let r = server.get(&url(id), headers);
        (r.status, r.message())
    };
    let unauthorized = (401, "401 Unauthorized".to_string());
    let forbidden = (403, "403 Forbidden".to_string());
    assert_eq!(status(P, &[]), unauthorized);
    assert_eq!(
        status(P, &[("PRIVATE-TOKEN", &"0".repeat(64))]),
        unauthorized
    );
    assert_eq!(status(P, &[("PRIVATE-TOKEN", "short")]), unauthorized);
    assert_eq!(
        status(P, &[("private-token", &token)]).0,
        200,
        "header names are case-insensitive"
    );
    assert_eq!(
        status(P, &[("Authorization", &format!("Bearer {token}"))]).0,
        200
    );
    assert_eq!(
        server
            .get(&format!("{}?private_token={token}", url(P)), &[])
            .status,
        200
    );
    assert_eq!(
        status(P, &[("Authorization", &format!("Basic {token}"))]),
        unauthorized
    );
    // python-gitlab sends a JSON content type even on GET: not a problem.
    assert_eq!(
        status(
            P,
            &[
                ("PRIVATE-TOKEN", &token),
                ("Content-Type", "application/json")
            ]
        )
        .0,
        200
    );
    // Allowlist: 403 outside it, whether or not the project exists.
    assert_eq!(status(P, &[("PRIVATE-TOKEN", &narrow)]), forbidden);
    assert_eq!(
        status("does-not-exist.cfg", &[("PRIVATE-TOKEN", &narrow)]),
        forbidden
    );
    // Another owner's project: 403 for both existing and missing ones.
    assert_eq!(
        status("acme%2Fsecret.cfg", &[("PRIVATE-TOKEN", &token)]),
        forbidden
    );
    assert_eq!(
        status("acme%2Fnope.cfg", &[("PRIVATE-TOKEN", &token)]),
        forbidden
    );
    assert_eq!(status("secret.cfg", &[("PRIVATE-TOKEN", &acme)]).0, 200);
    assert_eq!(
        status("secret.cfg", &[("PRIVATE-TOKEN", &token)]),
        (404, "404 Project Not Found".into()),
        "own owner, missing"
    );
    // The public area is readable with any valid token, namespaced.
    assert_eq!(
        status("public%2Funits.erp-config", &[("PRIVATE-TOKEN", &acme)]).0,
        200
    );
    assert_eq!(
        status("public%2Funits.erp-config", &[("PRIVATE-TOKEN", &narrow)]).0,
        200
    );
    // A bad token is 401 before anything else, even on a malformed id.
    assert_eq!(status("..%2F..%2Fetc", &[]), unauthorized);
    assert_eq!(status("..%2F..%2Fetc", &[("PRIVATE-TOKEN", &token)]).0, 400);
    assert_eq!(status("%2E%2E", &[("PRIVATE-TOKEN", &token)]).0, 400);
}

#[test]
fn etags_answer_304() {
    let dir = TestDir::new("etag-api");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    for path in [
        format!("{API}/projects/{P}/repository/branches"),
        format!("{API}/projects/{P}/repository/tree?recursive=true"),
        format!("{API}/projects/{P}/repository/files/operations.config.json/raw"),
        format!("{API}/projects/{P}/repository/files/operations.config.json?ref=main"),
        format!("{API}/projects/{P}"),
    ] {
        let first = server.get(&path, &auth(&token));
        let etag = first
            .header("etag")
            .unwrap_or_else(|| panic!("{path} has no ETag"))
            .to_string();
        let again = server.get(
            &path,
            &[("PRIVATE-TOKEN", &token), ("If-None-Match", &etag)],
        );
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
        let other = server.get(
            &path,
            &[
                ("PRIVATE-TOKEN", &token),
                ("If-None-Match", "\"something-else\""),
            ],
        );
        assert_eq!(other.status, 200);
    }
    // A change changes the branch listing's ETag.
    let before = server
        .get(
            &format!("{API}/projects/{P}/repository/branches"),
            &auth(&token),
        )
        .header("etag")
        .unwrap()
        .to_string();
    run_with_input(
        &data,
        &["file", "put", &format!("demo/{P}"), "main", "new.json"],
        b"{}",
    );
    let after = server.get(
        &format!("{API}/projects/{P}/repository/branches"),
        &[("PRIVATE-TOKEN", &token), ("If-None-Match", &before)],
    );
    assert_eq!(after.status, 200);
}

#[test]
fn a_hundred_racing_first_requests_bind_exactly_one_fingerprint() {
    let dir = TestDir::new("fingerprint-race");
    let (data, _) = setup(&dir);
    let (id, token) = create_token(&data, "demo", &["--fingerprint"]);
    let server = TestServer::start(&data);
    let url = format!("{API}/projects/{P}/repository/branches");
    let barrier = Arc::new(std::sync::Barrier::new(100));
    let results: Vec<(usize, u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let (barrier, url, token, addr) = (
                    Arc::clone(&barrier),
                    url.clone(),
                    token.clone(),
                    server.addr,
                );
                s.spawn(move || {
                    let instance = format!("host-{i}");
                    barrier.wait();
                    let r = request(
                        addr,
                        "GET",
                        &url,
                        &[("PRIVATE-TOKEN", &token), ("X-Instance-Id", &instance)],
                    );
                    (
                        i,
                        r.status,
                        if r.status == 200 {
                            String::new()
                        } else {
                            r.message()
                        },
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<_> = results.iter().filter(|r| r.1 == 200).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.1 != 200) {
        assert_eq!((r.1, r.2.as_str()), (401, "401 FINGERPRINT_MISMATCH"));
    }
    // Only the winner keeps working; a missing header is 401 too.
    let winner = format!("host-{}", winners[0].0);
    for (instance, want) in [(winner.as_str(), 200), ("host-x", 401)] {
        assert_eq!(
            server
                .get(
                    &url,
                    &[("PRIVATE-TOKEN", &token), ("X-Instance-Id", instance)]
                )
                .status,
            want
        );
    }
    assert_eq!(server.get(&url, &[("PRIVATE-TOKEN", &token)]).status, 401);
    // Moving host: unbind, and the next request binds the new id.
    ok(&data, &["token", "unbind", &id]);
    assert_eq!(
        server
            .get(
                &url,
                &[("PRIVATE-TOKEN", &token), ("X-Instance-Id", "new-host")]
            )
            .status,
        200
    );
    assert_eq!(
        server
            .get(
                &url,
                &[("PRIVATE-TOKEN", &token), ("X-Instance-Id", &winner)]
            )
            .status,
        401
    );
    // Turning the requirement off clears the binding.
    ok(&data, &["token", "update", &id, "--fingerprint", "false"]);
    assert_eq!(server.get(&url, &[("PRIVATE-TOKEN", &token)]).status, 200);
}

#[test]
fn expiry_at_the_boundary_with_an_injected_clock() {
    let dir = TestDir::new("expiry");
    let (data, _) = setup(&dir);
    let (_, by_date) = create_token(&data, "demo", &["--expires", "2027-03-01"]);
    let (_, by_instant) = create_token(&data, "demo", &["--expires", "2027-03-01T12:00:00+02:00"]);
    let now = Arc::new(AtomicI64::new(0));
    let clock_now = Arc::clone(&now);
    let clock: cfgstore::api::Clock = Arc::new(move || {
        time::OffsetDateTime::from_unix_timestamp(clock_now.load(Ordering::SeqCst)).unwrap()
    });
    let server = TestServer::start_with_clock(&data, clock);
    let url = format!("{API}/projects/{P}/repository/branches");
    let at = |rfc: &str| {
        time::OffsetDateTime::parse(rfc, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    };
    for (token, last_ok, first_expired) in [
        (&by_date, "2027-02-28T23:59:59Z", "2027-03-01T00:00:00Z"),
        (&by_instant, "2027-03-01T09:59:59Z", "2027-03-01T10:00:00Z"),
    ] {
        now.store(at(last_ok), Ordering::SeqCst);
        assert_eq!(server.get(&url, &auth(token)).status, 200, "{last_ok}");
        now.store(at(first_expired), Ordering::SeqCst);
        let r = server.get(&url, &auth(token));
        assert_eq!(
            (r.status, r.message()),
            (401, "401 Unauthorized".into()),
            "{first_expired}"
        );
    }
}

#[test]
fn hostile_requests_get_exact_4xx() {
    let dir = TestDir::new("hostile-api");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    let h = auth(&token);
    for (path, status) in [
        (
            format!("{API}/projects/{P}/repository/files/..%2F..%2F..%2Fetc%2Fpasswd/raw"),
            400,
        ),
        (
            format!("{API}/projects/{P}/repository/files/%2Fetc%2Fpasswd/raw"),
            400,
        ),
        (
            format!("{API}/projects/{P}/repository/files/a%00b/raw"),
            400,
        ),
        (
            format!("{API}/projects/{P}/repository/files/a%5Cb/raw"),
            400,
        ),
        (
            format!("{API}/projects/{P}/repository/files/%C0%AE%C0%AE%2Fx/raw"),
            400,
        ),
        (format!("{API}/projects/{P}/repository/files/%/raw"), 400),
        (
            format!(
                "{API}/projects/{P}/repository/files/operations.config.json/raw?ref=..%2F..%2Fx"
            ),
            400,
        ),
        (
            format!("{API}/projects/{P}/repository/files/operations.config.json/raw?ref=%FF"),
            400,
        ),
        (
            format!("{API}/projects/{P}/repository/branches/..%2Fmain"),
            400,
        ),
        (
            format!("{API}/projects/{P}/repository/tree?path=%2E%2E"),
            400,
        ),
        (
            format!("{API}/projects/{P}/repository/tree?page=-1&per_page=x"),
            400,
        ),
        (
            format!("{API}/projects/{P}/repository/blobs/..%2F..%2Fserver.key/raw"),
            404,
        ),
        (format!("{API}/projects/{P}/repository/nothing"), 404),
        (format!("{API}/../../etc/passwd"), 404),
        // Outside the APIs and the web UI (`/` itself leads to the UI:
        // `ui_http.rs`).
        ("/nothing/here".to_string(), 404),
    ] {
        let r = server.get(&path, &h);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        assert!(r.json()["message"].is_string());
    }
    let post = request(
        server.addr,
        "POST",
        &format!("{API}/projects/{P}/repository/branches"),
        &h,
    );
    assert_eq!(post.status, 405);
    // Non-UTF-8 header bytes: a 401, not a panic.
    let raw = format!("GET {API}/projects/{P}/repository/branches HTTP/1.1\r\nHost: x\r\nPRIVATE-TOKEN: \u{ff}\u{fe}\r\nConnection: close\r\n\r\n");
    assert_eq!(util::raw_request(server.addr, raw.as_bytes()).status, 401);
    // Oversized headers: 431.
    let big = "a".repeat(1_000_000);
    let r = request(
        server.addr,
        "GET",
        &format!("{API}/health"),
        &[("X-Big", &big)],
    );
    assert_eq!(r.status, 431);
    // Too many headers (hyper allows 100): 431 too.
    let names: Vec<String> = (0..150).map(|i| format!("X-Many-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    assert_eq!(
        request(server.addr, "GET", &format!("{API}/health"), &many).status,
        431
    );
    // And the server is still healthy.
    assert_eq!(server.get(&format!("{API}/health"), &[]).status, 200);
}

mod freshness;
mod long_poll;
mod pinned;
