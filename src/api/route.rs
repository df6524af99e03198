//! Routing: method and raw path → a typed [`Endpoint`], once per request.
//!
//! Routing runs on the raw, still-encoded path, so `%2F` inside an id or a
//! file path never splits a segment; each segment is decoded exactly once
//! and then validated into a name (`RepoId`, `BranchName`, `FilePath`,
//! `SnapshotId`), so a handler never sees a string that could lead outside
//! the store. A path that exists with other methods is a 405 whose `Allow`
//! names exactly the methods that path has.
//!
//! Mounts: the read API at `/site-builder/api/erp-config` and
//! `…/erp-config/api/v4`; the admin API at `/site-builder/api`; login,
//! logout and me also at `/user/…` on the host root (the seed webapp's
//! paths); `/metrics` on the root.

use hyper::Method;

use super::request::{decode_segment, decode_segment_into};

mod ui;
use crate::names::{BranchName, FilePath, OwnerName, ProjectRef, RepoId, SnapshotId};
pub use ui::{At, UiEndpoint, UI_PREFIX};

/// Where the read API lives.
pub const READ_PREFIX: &str = "/site-builder/api/erp-config";
/// Where the admin API lives.
pub const ADMIN_PREFIX: &str = "/site-builder/api";

/// A project as the client named it: `repoId` (of the caller: the token's
/// owner, the logged-in user) or `owner/repoId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectId {
    Own(RepoId),
    Full(ProjectRef),
}

impl ProjectId {
    fn parse(s: &str) -> crate::Result<ProjectId> {
        if s.contains('/') {
            ProjectRef::parse(s).map(ProjectId::Full)
        } else {
            RepoId::parse(s).map(ProjectId::Own)
        }
    }

    /// The project meant, for a caller whose own folder is `owner`
    /// (borrowed when the id names it whole: no copy per request).
    pub fn resolve(&self, owner: &OwnerName) -> std::borrow::Cow<'_, ProjectRef> {
        match self {
            ProjectId::Own(repo) => {
                std::borrow::Cow::Owned(ProjectRef::new(owner.clone(), repo.clone()))
            }
            ProjectId::Full(project) => std::borrow::Cow::Borrowed(project),
        }
    }
}

impl std::fmt::Display for ProjectId {
    /// The id as the client wrote it (decoded).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProjectId::Own(repo) => write!(f, "{repo}"),
            ProjectId::Full(project) => write!(f, "{project}"),
        }
    }
}

/// Every route the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Prometheus text; no credentials (the daemon listens on localhost).
    Metrics,
    /// Liveness; no credentials.
    Health,
    /// The read API: a token.
    Read(ReadEndpoint),
    /// Credentials in the body.
    Login,
    /// The admin API: a session cookie (and CSRF token when unsafe).
    Admin(AdminEndpoint),
    /// The web UI: pages and forms (`ui.rs`).
    Ui(UiEndpoint),
}

/// The read API (SPEC §4), GitLab v4 shaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEndpoint {
    /// The projects the token may read.
    Projects,
    /// The token's owner.
    User,
    Project {
        id: ProjectId,
    },
    Branches {
        id: ProjectId,
    },
    Branch {
        id: ProjectId,
        branch: BranchName,
    },
    Tree {
        id: ProjectId,
    },
    FileRaw {
        id: ProjectId,
        path: FilePath,
    },
    FileMeta {
        id: ProjectId,
        path: FilePath,
    },
    BlobRaw {
        id: ProjectId,
        sha: String,
    },
    Blob {
        id: ProjectId,
        sha: String,
    },
    Archive {
        id: ProjectId,
    },
}

/// The admin API (SPEC §6, §7), behind a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminEndpoint {
    Logout,
    Me,
    Projects,
    CreateProject,
    Branches {
        id: ProjectId,
    },
    CreateBranch {
        id: ProjectId,
    },
    Tree {
        id: ProjectId,
        branch: BranchName,
    },
    GetFile {
        id: ProjectId,
        branch: BranchName,
        path: FilePath,
    },
    PutFile {
        id: ProjectId,
        branch: BranchName,
        path: FilePath,
    },
    DeleteFile {
        id: ProjectId,
        branch: BranchName,
        path: FilePath,
    },
    History {
        id: ProjectId,
        branch: BranchName,
    },
    SnapshotTree {
        id: ProjectId,
        branch: BranchName,
        version: SnapshotId,
    },
    SnapshotFile {
        id: ProjectId,
        branch: BranchName,
        version: SnapshotId,
        path: FilePath,
    },
    Rollback {
        id: ProjectId,
        branch: BranchName,
    },
    Tokens,
    CreateToken,
    UpdateToken {
        token: String,
    },
    RevokeToken {
        token: String,
    },
    RotateToken {
        token: String,
    },
    Audit,
    /// Two states of a project side by side (`?from=&to=`).
    Compare {
        id: ProjectId,
    },
    /// Which client read which state of a project, and when.
    Fleet {
        id: ProjectId,
    },
}

/// Why a request is not an endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// The path exists, with these methods only.
    MethodNotAllowed(Methods),
    /// A segment that does not decode (bad escape, not UTF-8), or a name
    /// that is not valid.
    Invalid(String),
    /// An archive format other than tar.gz.
    UnsupportedArchive(String),
}

impl From<crate::Error> for RouteError {
    fn from(e: crate::Error) -> RouteError {
        RouteError::Invalid(e.to_string())
    }
}

type Routed = std::result::Result<Endpoint, RouteError>;

/// A set of methods, for `Allow`. `GET` includes `HEAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods(u8);

impl Methods {
    pub const GET: Methods = Methods(1);
    pub const POST: Methods = Methods(2);
    pub const PUT: Methods = Methods(4);
    pub const PATCH: Methods = Methods(8);
    pub const DELETE: Methods = Methods(16);

    fn of(method: &Method) -> Methods {
        match *method {
            Method::GET | Method::HEAD => Methods::GET,
            Method::POST => Methods::POST,
            Method::PUT => Methods::PUT,
            Method::PATCH => Methods::PATCH,
            Method::DELETE => Methods::DELETE,
            _ => Methods(0),
        }
    }

    /// The `Allow` header's value.
    pub fn allow_header(self) -> String {
        let names = [
            (Methods::GET, "GET, HEAD"),
            (Methods::POST, "POST"),
            (Methods::PUT, "PUT"),
            (Methods::PATCH, "PATCH"),
            (Methods::DELETE, "DELETE"),
        ];
        names
            .iter()
            .filter(|(m, _)| self.0 & m.0 != 0)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The endpoint among `options` (method, endpoint) for `method`; a 405
/// naming every option's method when none matches.
fn pick<const N: usize>(method: &Method, options: [(Methods, Endpoint); N]) -> Routed {
    let asked = Methods::of(method);
    let allowed = Methods(options.iter().fold(0, |all, (m, _)| all | m.0));
    options
        .into_iter()
        .find(|(m, _)| asked.0 != 0 && *m == asked)
        .map(|(_, e)| e)
        .ok_or(RouteError::MethodNotAllowed(allowed))
}

fn get(method: &Method, endpoint: Endpoint) -> Routed {
    pick(method, [(Methods::GET, endpoint)])
}

fn post(method: &Method, endpoint: Endpoint) -> Routed {
    pick(method, [(Methods::POST, endpoint)])
}

impl Endpoint {
    /// Routes on the raw path. Repeated slashes are tolerated (a client
    /// configured with a trailing slash sends `//api/v4`).
    pub fn parse(method: &Method, raw_path: &str) -> Routed {
        if raw_path == "/metrics" {
            return get(method, Endpoint::Metrics);
        }
        if let Some(rest) = raw_path.strip_prefix(READ_PREFIX) {
            if rest.is_empty() || rest.starts_with('/') {
                return parse_read(method, rest);
            }
        }
        if let Some(rest) = raw_path.strip_prefix(ADMIN_PREFIX) {
            if rest.starts_with('/') {
                return parse_admin(method, rest);
            }
        }
        if raw_path == "/" {
            return get(method, Endpoint::Ui(UiEndpoint::Root));
        }
        if let Some(rest) = raw_path.strip_prefix(UI_PREFIX) {
            if rest.is_empty() || rest.starts_with('/') {
                return ui::parse_ui(method, rest);
            }
        }
        // The seed webapp's session paths, on the host root.
        let segments: Vec<&str> = raw_path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            ["user", ..] => parse_session(method, &segments),
            _ => Err(RouteError::NotFound),
        }
    }

    /// The route's name for logs and metrics: no ids, no paths, no secrets.
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::Metrics => "metrics",
            Endpoint::Health => "health",
            Endpoint::Login => "admin.login",
            Endpoint::Ui(ui) => ui.name(),
            Endpoint::Read(read) => match read {
                ReadEndpoint::Projects => "projects",
                ReadEndpoint::User => "user",
                ReadEndpoint::Project { .. } => "project",
                ReadEndpoint::Branches { .. } => "branches",
                ReadEndpoint::Branch { .. } => "branch",
                ReadEndpoint::Tree { .. } => "tree",
                ReadEndpoint::FileRaw { .. } => "file_raw",
                ReadEndpoint::FileMeta { .. } => "file_meta",
                ReadEndpoint::BlobRaw { .. } => "blob_raw",
                ReadEndpoint::Blob { .. } => "blob",
                ReadEndpoint::Archive { .. } => "archive",
            },
            Endpoint::Admin(admin) => match admin {
                AdminEndpoint::Logout => "admin.logout",
                AdminEndpoint::Me => "admin.me",
                AdminEndpoint::Projects => "admin.projects",
                AdminEndpoint::CreateProject => "admin.project_create",
                AdminEndpoint::Branches { .. } => "admin.branches",
                AdminEndpoint::CreateBranch { .. } => "admin.branch_create",
                AdminEndpoint::Tree { .. } => "admin.tree",
                AdminEndpoint::GetFile { .. } => "admin.file_get",
                AdminEndpoint::PutFile { .. } => "admin.file_put",
                AdminEndpoint::DeleteFile { .. } => "admin.file_delete",
                AdminEndpoint::History { .. } => "admin.history",
                AdminEndpoint::SnapshotTree { .. } => "admin.snapshot_tree",
                AdminEndpoint::SnapshotFile { .. } => "admin.snapshot_file",
                AdminEndpoint::Rollback { .. } => "admin.rollback",
                AdminEndpoint::Tokens => "admin.tokens",
                AdminEndpoint::CreateToken => "admin.token_create",
                AdminEndpoint::UpdateToken { .. } => "admin.token_update",
                AdminEndpoint::RevokeToken { .. } => "admin.token_revoke",
                AdminEndpoint::RotateToken { .. } => "admin.token_rotate",
                AdminEndpoint::Audit => "admin.audit",
                AdminEndpoint::Compare { .. } => "admin.compare",
                AdminEndpoint::Fleet { .. } => "admin.fleet",
            },
        }
    }

    /// Whether the answer is for one session only (`Cache-Control:
    /// no-store`): the admin API and login.
    pub fn is_admin(&self) -> bool {
        matches!(self, Endpoint::Admin(_) | Endpoint::Login)
    }
}

fn parse_read(method: &Method, rest: &str) -> Routed {
    // The segments of the paths ERPs poll fit on the stack; deeper ones
    // (up to 512 in a 1 KB file path) go to the heap.
    const ON_STACK: usize = 32;
    let mut stack = [""; ON_STACK];
    let mut heap = Vec::new();
    let mut count = 0;
    for segment in rest.split('/').filter(|s| !s.is_empty()) {
        if count < ON_STACK {
            stack[count] = segment;
        } else {
            if heap.is_empty() {
                heap.extend_from_slice(&stack);
            }
            heap.push(segment);
        }
        count += 1;
    }
    let all: &[&str] = if count <= ON_STACK {
        &stack[..count]
    } else {
        &heap
    };
    let mounted_v4 = all.len() >= 2 && all[0] == "api" && all[1] == "v4";
    let segments = if mounted_v4 { &all[2..] } else { all };
    let endpoint = match segments {
        ["health"] if !mounted_v4 => return get(method, Endpoint::Health),
        ["projects"] => ReadEndpoint::Projects,
        ["user"] => ReadEndpoint::User,
        ["projects", id] => ReadEndpoint::Project {
            id: project_id(id)?,
        },
        ["projects", id, "repository", rest @ ..] => {
            let id = project_id(id)?;
            match rest {
                ["branches"] => ReadEndpoint::Branches { id },
                ["branches", branch] => ReadEndpoint::Branch {
                    id,
                    branch: branch_name(branch)?,
                },
                ["tree"] => ReadEndpoint::Tree { id },
                ["files", path @ .., "raw"] if !path.is_empty() => ReadEndpoint::FileRaw {
                    id,
                    path: file_path(path)?,
                },
                ["files", path @ ..] if !path.is_empty() => ReadEndpoint::FileMeta {
                    id,
                    path: file_path(path)?,
                },
                ["blobs", sha, "raw"] => ReadEndpoint::BlobRaw {
                    id,
                    sha: decode_segment(sha)?,
                },
                ["blobs", sha] => ReadEndpoint::Blob {
                    id,
                    sha: decode_segment(sha)?,
                },
                ["archive"] | ["archive.tar.gz"] | ["archive.tgz"] => ReadEndpoint::Archive { id },
                [other] if other.starts_with("archive.") => {
                    return Err(RouteError::UnsupportedArchive(
                        other.trim_start_matches("archive.").to_string(),
                    ))
                }
                _ => return Err(RouteError::NotFound),
            }
        }
        _ => return Err(RouteError::NotFound),
    };
    get(method, Endpoint::Read(endpoint))
}

/// `user/login`, `user/logout`, `user/me`: under the admin prefix and on
/// the host root alike.
fn parse_session(method: &Method, segments: &[&str]) -> Routed {
    match segments {
        ["user", "login"] => post(method, Endpoint::Login),
        ["user", "logout"] => post(method, Endpoint::Admin(AdminEndpoint::Logout)),
        ["user", "me"] => get(method, Endpoint::Admin(AdminEndpoint::Me)),
        _ => Err(RouteError::NotFound),
    }
}

fn parse_admin(method: &Method, rest: &str) -> Routed {
    use AdminEndpoint as A;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let admin = Endpoint::Admin;
    match segments.as_slice() {
        ["user", ..] => parse_session(method, &segments),
        ["projects"] => pick(
            method,
            [
                (Methods::GET, admin(A::Projects)),
                (Methods::POST, admin(A::CreateProject)),
            ],
        ),
        ["projects", id, "compare"] => get(
            method,
            admin(A::Compare {
                id: project_id(id)?,
            }),
        ),
        ["projects", id, "fleet"] => get(
            method,
            admin(A::Fleet {
                id: project_id(id)?,
            }),
        ),
        ["projects", id, "branches"] => {
            let id = project_id(id)?;
            pick(
                method,
                [
                    (Methods::GET, admin(A::Branches { id: id.clone() })),
                    (Methods::POST, admin(A::CreateBranch { id })),
                ],
            )
        }
        ["projects", id, "branches", branch, tail @ ..] => {
            let (id, branch) = (project_id(id)?, branch_name(branch)?);
            match tail {
                ["tree"] => get(method, admin(A::Tree { id, branch })),
                ["history"] => get(method, admin(A::History { id, branch })),
                ["rollback"] => post(method, admin(A::Rollback { id, branch })),
                ["files", path @ ..] if !path.is_empty() => {
                    let path = file_path(path)?;
                    let (i, b, p) = (id.clone(), branch.clone(), path.clone());
                    let (i2, b2, p2) = (id.clone(), branch.clone(), path.clone());
                    pick(
                        method,
                        [
                            (
                                Methods::GET,
                                admin(A::GetFile {
                                    id: i,
                                    branch: b,
                                    path: p,
                                }),
                            ),
                            (
                                Methods::PUT,
                                admin(A::PutFile {
                                    id: i2,
                                    branch: b2,
                                    path: p2,
                                }),
                            ),
                            (Methods::DELETE, admin(A::DeleteFile { id, branch, path })),
                        ],
                    )
                }
                ["snapshots", version, "tree"] => {
                    let version = snapshot_id(version)?;
                    get(
                        method,
                        admin(A::SnapshotTree {
                            id,
                            branch,
                            version,
                        }),
                    )
                }
                ["snapshots", version, "files", path @ ..] if !path.is_empty() => {
                    let (version, path) = (snapshot_id(version)?, file_path(path)?);
                    get(
                        method,
                        admin(A::SnapshotFile {
                            id,
                            branch,
                            version,
                            path,
                        }),
                    )
                }
                _ => Err(RouteError::NotFound),
            }
        }
        ["tokens"] => pick(
            method,
            [
                (Methods::GET, admin(A::Tokens)),
                (Methods::POST, admin(A::CreateToken)),
            ],
        ),
        ["tokens", token] => {
            let token = decode_segment(token)?;
            pick(
                method,
                [
                    (
                        Methods::PATCH,
                        admin(A::UpdateToken {
                            token: token.clone(),
                        }),
                    ),
                    (Methods::DELETE, admin(A::RevokeToken { token })),
                ],
            )
        }
        ["tokens", token, "rotate"] => post(
            method,
            admin(A::RotateToken {
                token: decode_segment(token)?,
            }),
        ),
        ["audit"] => get(method, admin(A::Audit)),
        _ => Err(RouteError::NotFound),
    }
}

fn project_id(raw: &str) -> std::result::Result<ProjectId, RouteError> {
    Ok(ProjectId::parse(&decode_segment(raw)?)?)
}

fn branch_name(raw: &str) -> std::result::Result<BranchName, RouteError> {
    Ok(BranchName::parse(&decode_segment(raw)?)?)
}

fn snapshot_id(raw: &str) -> std::result::Result<SnapshotId, RouteError> {
    Ok(SnapshotId::parse(&decode_segment(raw)?)?)
}

/// A file path given as one encoded segment (`a%2Fb.json`, as clients
/// send it) or as several literal segments.
fn file_path(segments: &[&str]) -> std::result::Result<FilePath, RouteError> {
    let mut path = String::with_capacity(segments.iter().map(|s| s.len() + 1).sum());
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            path.push('/');
        }
        path = decode_segment_into(segment, path)?;
    }
    Ok(FilePath::parse(&path)?)
}

#[cfg(test)]
mod tests;
