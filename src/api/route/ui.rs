//! The web UI's routes, under `/site-builder/` (the API keeps
//! `/site-builder/api`), and `/`, which redirects there.
//!
//! Like the API's, every segment is decoded once and validated into a
//! name. A branch is one segment (a `/` in its name is sent as `%2F`);
//! a file path is the rest of the path.

use hyper::Method;

use super::{branch_name, decode_segment, file_path, pick, snapshot_id, Endpoint, Methods};
use super::{RouteError, Routed};
use crate::names::{BranchName, FilePath, OwnerName, ProjectRef, RepoId, SnapshotId};

/// Where the UI lives.
pub const UI_PREFIX: &str = "/site-builder";

/// A branch of a project, live or at one retained version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub project: ProjectRef,
    pub branch: BranchName,
    pub version: Option<SnapshotId>,
}

/// Every page and form of the web UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiEndpoint {
    /// `GET /`: to the UI.
    Root,
    /// A static asset by its content-hashed name.
    Asset(String),
    LoginForm,
    Login,
    Logout,
    /// The projects the user may see.
    Home,
    /// Who am I: the user, their roles and what those grant.
    Me,
    CreateProject,
    Project(ProjectRef),
    CreateBranch(ProjectRef),
    Compare(ProjectRef),
    Fleet(ProjectRef),
    /// A folder of a branch (`None`: its root).
    Tree(At, Option<FilePath>),
    File(At, FilePath),
    /// The bytes, as a download.
    Raw(At, FilePath),
    Editor(At, FilePath),
    Save(At, FilePath),
    /// A form for a new file (its path and content), and its saving.
    NewFile(At),
    CreateFile(At),
    /// A file sent from the browser (multipart), into a folder.
    Upload(At),
    DeleteForm(At, FilePath),
    Delete(At, FilePath),
    History(At),
    RollbackPreview(At),
    Rollback(At),
    Tokens,
    CreateToken,
    TokenForm(String),
    UpdateToken(String),
    RevokeForm(String),
    Revoke(String),
    Rotate(String),
    Unbind(String),
    Audit,
}

impl UiEndpoint {
    /// Pages anyone may open: the rest need a session (without one, a
    /// browser is sent to the login page).
    pub fn is_public(&self) -> bool {
        matches!(
            self,
            UiEndpoint::Root | UiEndpoint::Asset(_) | UiEndpoint::LoginForm | UiEndpoint::Login
        )
    }

    /// The route's name for logs and metrics.
    pub fn name(&self) -> &'static str {
        use UiEndpoint as U;
        match self {
            U::Root => "ui.root",
            U::Asset(_) => "ui.asset",
            U::LoginForm => "ui.login_form",
            U::Login => "ui.login",
            U::Logout => "ui.logout",
            U::Home => "ui.home",
            U::Me => "ui.me",
            U::CreateProject => "ui.project_create",
            U::Project(_) => "ui.project",
            U::CreateBranch(_) => "ui.branch_create",
            U::Compare(_) => "ui.compare",
            U::Fleet(_) => "ui.fleet",
            U::Tree(..) => "ui.tree",
            U::File(..) => "ui.file",
            U::Raw(..) => "ui.raw",
            U::Editor(..) => "ui.editor",
            U::Save(..) => "ui.save",
            U::NewFile(_) => "ui.new_file",
            U::CreateFile(_) => "ui.file_create",
            U::Upload(_) => "ui.upload",
            U::DeleteForm(..) => "ui.delete_form",
            U::Delete(..) => "ui.delete",
            U::History(_) => "ui.history",
            U::RollbackPreview(_) => "ui.rollback_preview",
            U::Rollback(_) => "ui.rollback",
            U::Tokens => "ui.tokens",
            U::CreateToken => "ui.token_create",
            U::TokenForm(_) => "ui.token_form",
            U::UpdateToken(_) => "ui.token_update",
            U::RevokeForm(_) => "ui.revoke_form",
            U::Revoke(_) => "ui.token_revoke",
            U::Rotate(_) => "ui.token_rotate",
            U::Unbind(_) => "ui.token_unbind",
            U::Audit => "ui.audit",
        }
    }
}

fn ui(method: &Method, options: &[(Methods, UiEndpoint)]) -> Routed {
    match options {
        [(m, e)] => pick(method, [(*m, Endpoint::Ui(e.clone()))]),
        [(m1, e1), (m2, e2)] => pick(
            method,
            [
                (*m1, Endpoint::Ui(e1.clone())),
                (*m2, Endpoint::Ui(e2.clone())),
            ],
        ),
        _ => Err(RouteError::NotFound),
    }
}

fn get(method: &Method, e: UiEndpoint) -> Routed {
    ui(method, &[(Methods::GET, e)])
}

fn post(method: &Method, e: UiEndpoint) -> Routed {
    ui(method, &[(Methods::POST, e)])
}

fn form(method: &Method, page: UiEndpoint, action: UiEndpoint) -> Routed {
    ui(method, &[(Methods::GET, page), (Methods::POST, action)])
}

/// `rest`: the path after `/site-builder` (empty or starting with `/`).
pub(super) fn parse_ui(method: &Method, rest: &str) -> Routed {
    use UiEndpoint as U;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [] => get(method, U::Home),
        ["static", name] => get(method, U::Asset(decode_segment(name)?)),
        ["login"] => form(method, U::LoginForm, U::Login),
        ["logout"] => post(method, U::Logout),
        ["me"] => get(method, U::Me),
        ["projects"] => post(method, U::CreateProject),
        ["tokens"] => form(method, U::Tokens, U::CreateToken),
        ["tokens", id] => form(method, U::TokenForm(token(id)?), U::UpdateToken(token(id)?)),
        ["tokens", id, "revoke"] => form(method, U::RevokeForm(token(id)?), U::Revoke(token(id)?)),
        ["tokens", id, "rotate"] => post(method, U::Rotate(token(id)?)),
        ["tokens", id, "unbind"] => post(method, U::Unbind(token(id)?)),
        ["audit"] => get(method, U::Audit),
        ["p", owner, repo, tail @ ..] => {
            let project = ProjectRef::new(
                OwnerName::parse(&decode_segment(owner)?)?,
                RepoId::parse(&decode_segment(repo)?)?,
            );
            parse_project(method, project, tail)
        }
        _ => Err(RouteError::NotFound),
    }
}

fn parse_project(method: &Method, project: ProjectRef, tail: &[&str]) -> Routed {
    use UiEndpoint as U;
    match tail {
        [] => get(method, U::Project(project)),
        ["branches"] => post(method, U::CreateBranch(project)),
        ["compare"] => get(method, U::Compare(project)),
        ["fleet"] => get(method, U::Fleet(project)),
        ["b", branch, rest @ ..] => {
            let at = At {
                project,
                branch: branch_name(branch)?,
                version: None,
            };
            match rest {
                ["v", version, rest @ ..] => {
                    let at = At {
                        version: Some(snapshot_id(version)?),
                        ..at
                    };
                    parse_branch(method, at, rest, true)
                }
                _ => parse_branch(method, at, rest, false),
            }
        }
        _ => Err(RouteError::NotFound),
    }
}

/// The pages of a branch; a retained version (`pinned`) has only those
/// that read.
fn parse_branch(method: &Method, at: At, rest: &[&str], pinned: bool) -> Routed {
    use UiEndpoint as U;
    let read = |method, e| get(method, e);
    match (rest, pinned) {
        (["tree"], _) => read(method, U::Tree(at, None)),
        (["tree", path @ ..], _) => read(method, U::Tree(at, Some(file_path(path)?))),
        (["file", path @ ..], _) if !path.is_empty() => read(method, U::File(at, file_path(path)?)),
        (["raw", path @ ..], _) if !path.is_empty() => read(method, U::Raw(at, file_path(path)?)),
        (["edit", path @ ..], false) if !path.is_empty() => {
            let path = file_path(path)?;
            form(
                method,
                U::Editor(at.clone(), path.clone()),
                U::Save(at, path),
            )
        }
        (["new"], false) => form(method, U::NewFile(at.clone()), U::CreateFile(at)),
        (["upload"], false) => post(method, U::Upload(at)),
        (["delete", path @ ..], false) if !path.is_empty() => {
            let path = file_path(path)?;
            form(
                method,
                U::DeleteForm(at.clone(), path.clone()),
                U::Delete(at, path),
            )
        }
        (["history"], false) => get(method, U::History(at)),
        (["rollback"], false) => form(method, U::RollbackPreview(at.clone()), U::Rollback(at)),
        _ => Err(RouteError::NotFound),
    }
}

/// A token id as the UI links it: letters, digits, `-` and `_`.
fn token(raw: &str) -> std::result::Result<String, RouteError> {
    let id = decode_segment(raw)?;
    let valid = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(id)
    } else {
        Err(RouteError::Invalid(format!("{id:?} is not a token id")))
    }
}
