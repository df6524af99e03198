use super::*;

fn parse(path: &str) -> Routed {
    Endpoint::parse(&Method::GET, path)
}

fn own(repo: &str) -> ProjectId {
    ProjectId::Own(RepoId::parse(repo).unwrap())
}

fn read(e: ReadEndpoint) -> Routed {
    Ok(Endpoint::Read(e))
}

fn path(p: &str) -> FilePath {
    FilePath::parse(p).unwrap()
}

#[test]
fn routing_table() {
    let p = "/site-builder/api/erp-config";
    for mount in [p.to_string(), format!("{p}/api/v4"), format!("{p}//api/v4")] {
        assert_eq!(
            parse(&format!("{mount}/projects/a.b")),
            read(ReadEndpoint::Project { id: own("a.b") })
        );
        assert_eq!(
            parse(&format!("{mount}/projects/acme%2Fa.b/repository/branches")),
            read(ReadEndpoint::Branches {
                id: ProjectId::Full(ProjectRef::parse("acme/a.b").unwrap())
            })
        );
        assert_eq!(
            parse(&format!(
                "{mount}/projects/a/repository/branches/release%2F2024.1"
            )),
            read(ReadEndpoint::Branch {
                id: own("a"),
                branch: BranchName::parse("release/2024.1").unwrap()
            })
        );
        assert_eq!(
            parse(&format!("{mount}/projects/a/repository/tree")),
            read(ReadEndpoint::Tree { id: own("a") })
        );
        assert_eq!(
            parse(&format!(
                "{mount}/projects/a/repository/files/config%2Fapp%20settings%2Fcaf%C3%A9.json/raw"
            )),
            read(ReadEndpoint::FileRaw {
                id: own("a"),
                path: path("config/app settings/café.json")
            })
        );
        assert_eq!(
            parse(&format!("{mount}/projects/a/repository/files/key%2Erb")),
            read(ReadEndpoint::FileMeta {
                id: own("a"),
                path: path("key.rb")
            })
        );
        assert_eq!(
            parse(&format!("{mount}/projects/a/repository/files/a+b")),
            read(ReadEndpoint::FileMeta {
                id: own("a"),
                path: path("a+b")
            }),
            "'+' in a path is a plus, not a space"
        );
        assert_eq!(
            parse(&format!("{mount}/projects/a/repository/blobs/abc/raw")),
            read(ReadEndpoint::BlobRaw {
                id: own("a"),
                sha: "abc".into()
            })
        );
        for archive in ["archive.tar.gz", "archive"] {
            assert_eq!(
                parse(&format!("{mount}/projects/a/repository/{archive}")),
                read(ReadEndpoint::Archive { id: own("a") })
            );
        }
        assert_eq!(
            parse(&format!("{mount}/projects/a/repository/archive.zip")),
            Err(RouteError::UnsupportedArchive("zip".into()))
        );
        assert_eq!(
            parse(&format!("{mount}/projects/a/repository/nope")),
            Err(RouteError::NotFound)
        );
        assert_eq!(parse(&format!("{mount}/user")), read(ReadEndpoint::User));
        assert_eq!(
            parse(&format!("{mount}/projects")),
            read(ReadEndpoint::Projects)
        );
        assert_eq!(parse(&format!("{mount}/users")), Err(RouteError::NotFound));
    }
    assert_eq!(parse(&format!("{p}/health")), Ok(Endpoint::Health));
    assert_eq!(
        parse(&format!("{p}/api/v4/health")),
        Err(RouteError::NotFound)
    );
    assert_eq!(
        parse("/site-builder/api/erp-configX/health"),
        Err(RouteError::NotFound)
    );
    assert_eq!(parse("/health"), Err(RouteError::NotFound));
    for bad in ["%FF", "%zz", "..", "a%2F..%2Fb", "a%00b"] {
        assert!(
            matches!(
                parse(&format!("{p}/projects/{bad}")),
                Err(RouteError::Invalid(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        parse(&format!("{p}/projects/a/repository/files/..%2Fx/raw")),
        Err(RouteError::Invalid(_))
    ));
    assert_eq!(
        Endpoint::parse(&Method::POST, &format!("{p}/projects/a")),
        Err(RouteError::MethodNotAllowed(Methods::GET))
    );
    assert_eq!(
        Endpoint::parse(
            &Method::HEAD,
            &format!("{p}/projects/a/repository/files/x/raw")
        ),
        read(ReadEndpoint::FileRaw {
            id: own("a"),
            path: path("x")
        })
    );
}

#[test]
fn session_paths_answer_on_both_mounts() {
    for prefix in ["/site-builder/api", ""] {
        assert_eq!(
            Endpoint::parse(&Method::POST, &format!("{prefix}/user/login")),
            Ok(Endpoint::Login)
        );
        assert_eq!(
            Endpoint::parse(&Method::POST, &format!("{prefix}/user/logout")),
            Ok(Endpoint::Admin(AdminEndpoint::Logout))
        );
        assert_eq!(
            Endpoint::parse(&Method::GET, &format!("{prefix}/user/me")),
            Ok(Endpoint::Admin(AdminEndpoint::Me))
        );
        assert_eq!(
            Endpoint::parse(&Method::GET, &format!("{prefix}/user/login")),
            Err(RouteError::MethodNotAllowed(Methods::POST))
        );
    }
    assert_eq!(parse("/user/nope"), Err(RouteError::NotFound));
    assert_eq!(parse("/projects"), Err(RouteError::NotFound));
}

#[test]
fn a_405_names_the_methods_the_path_has() {
    let cases = [
        ("/site-builder/api/user/login", Method::GET, "POST"),
        ("/site-builder/api/user/me", Method::POST, "GET, HEAD"),
        (
            "/site-builder/api/projects",
            Method::DELETE,
            "GET, HEAD, POST",
        ),
        (
            "/site-builder/api/projects/a/branches/main/files/x",
            Method::POST,
            "GET, HEAD, PUT, DELETE",
        ),
        ("/site-builder/api/tokens/abc", Method::GET, "PATCH, DELETE"),
        ("/site-builder/api/tokens/abc/rotate", Method::GET, "POST"),
        ("/metrics", Method::PUT, "GET, HEAD"),
        (
            "/site-builder/api/erp-config/projects/a/repository/tree",
            Method::OPTIONS,
            "GET, HEAD",
        ),
    ];
    for (path, method, allow) in cases {
        match Endpoint::parse(&method, path) {
            Err(RouteError::MethodNotAllowed(methods)) => {
                assert_eq!(methods.allow_header(), allow, "{method} {path}")
            }
            other => panic!("{method} {path}: {other:?}"),
        }
    }
}

/// File paths as deep as the router keeps on the stack, one deeper,
/// and far deeper route alike (the segments move to the heap).
#[test]
fn deep_file_paths_route_like_shallow_ones() {
    let p = "/site-builder/api/erp-config";
    for depth in [1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 200] {
        let deep: Vec<String> = (0..depth).map(|i| format!("d{i}")).collect();
        let deep = deep.join("/");
        for mount in [p.to_string(), format!("{p}/api/v4")] {
            assert_eq!(
                parse(&format!("{mount}/projects/a/repository/files/{deep}/raw")),
                read(ReadEndpoint::FileRaw {
                    id: own("a"),
                    path: path(&deep)
                }),
                "{depth} under {mount}"
            );
            assert_eq!(
                parse(&format!("{mount}/projects/a/repository/files/{deep}")),
                read(ReadEndpoint::FileMeta {
                    id: own("a"),
                    path: path(&deep)
                }),
                "{depth} under {mount}"
            );
        }
    }
}
