//! The web UI under `/site-builder/`: pages rendered on the server
//! (maud, which escapes every value it interpolates), forms that post and
//! redirect (Post/Redirect/Get), a stylesheet and a small script that only
//! enhance. Every change goes through the same `ops` functions as the
//! admin API and the CLI: the same authorization, audit records and errors.
//!
//! Safe by construction: each page carries a strict Content-Security-Policy
//! (no inline script or style), `nosniff`, `no-referrer` and `no-store`;
//! each form carries the session's CSRF token (checked in constant time)
//! and must come from this origin; a stored file is shown as text in a
//! `<pre>` or downloaded as an attachment, never rendered as a page.

mod assets;
mod content;
mod history;
mod manage;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use maud::{html, Markup, DOCTYPE};

use super::request::Query;
use super::route::{At, UiEndpoint};
use super::session::{self, Session};
use super::{App, Body, Request};
use crate::error::{Error, Result};
use crate::names::ProjectRef;
use crate::ops::Actor;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A page anyone may open (login, assets, `/`).
pub fn public(app: &App, req: &Request, endpoint: &UiEndpoint) -> Response<Body> {
    let result = match endpoint {
        UiEndpoint::Root => Ok(redirect("/site-builder/")),
        UiEndpoint::Asset(name) => Ok(assets::serve(name)
            .unwrap_or_else(|| page_error(None, &Error::not_found("asset", name)))),
        UiEndpoint::LoginForm => Ok(login_page(StatusCode::OK, None, req.query.get("next"))),
        UiEndpoint::Login => login(app, req),
        // The rest need a session: `admit` never lets them through here.
        _ => Err(Error::Unauthorized(
            crate::error::Unauthorized::MissingToken,
        )),
    };
    result.unwrap_or_else(|err| page_error(None, &err))
}

/// A page or form of a signed-in user.
pub fn signed_in(app: &App, req: &Request, s: &Session, endpoint: &UiEndpoint) -> Response<Body> {
    let ui = Ui::new(app, req, s);
    let ui = match ui {
        Ok(ui) => ui,
        Err(err) => return page_error(None, &err),
    };
    let result = answer(&ui, endpoint);
    result.unwrap_or_else(|err| {
        if let Error::Forbidden(_) = err {
            // Refusals are audited and counted as the API's are.
            super::authn::record_denied(app, req, &ui.actor, &err);
            super::count_refusal(app, endpoint.name(), &err);
        }
        page_error(Some(&ui), &err)
    })
}

/// One exhaustive match: each page, and each form once its origin and
/// CSRF token are checked (`Ui::checked_form`).
fn answer(ui: &Ui, endpoint: &UiEndpoint) -> Result<Response<Body>> {
    use UiEndpoint as U;
    let form = || ui.checked_form();
    match endpoint {
        U::Home => content::home(ui),
        U::Me => Ok(me(ui)),
        U::Project(p) => content::project(ui, p),
        U::Compare(p) => history::compare(ui, p),
        U::Fleet(p) => manage::fleet(ui, p),
        U::Tree(at, folder) => content::tree(ui, at, folder.as_ref()),
        U::File(at, path) => content::file(ui, at, path),
        U::Raw(at, path) => content::raw(ui, at, path),
        U::Editor(at, path) => content::editor(ui, at, path),
        U::NewFile(at) => content::new_file(ui, at),
        U::DeleteForm(at, path) => content::delete_form(ui, at, path),
        U::History(at) => history::history(ui, at),
        U::RollbackPreview(at) => history::rollback_preview(ui, at),
        U::Tokens => manage::tokens(ui, StatusCode::OK, None, None),
        U::TokenForm(id) => manage::token_form(ui, id),
        U::RevokeForm(id) => manage::revoke_form(ui, id),
        U::Audit => manage::audit(ui),
        // Signed in already: to the projects.
        U::Root | U::Asset(_) | U::LoginForm => Ok(redirect("/site-builder/")),
        U::Login => form().map(|_| redirect("/site-builder/")),
        U::Logout => form().and_then(|_| logout(ui)),
        U::CreateProject => form().and_then(|f| content::create_project(ui, &f)),
        U::CreateBranch(p) => form().and_then(|f| content::create_branch(ui, p, &f)),
        U::Save(at, path) => form().and_then(|f| content::save(ui, at, path, &f)),
        U::CreateFile(at) => form().and_then(|f| content::create_file(ui, at, &f)),
        U::Upload(at) => ui
            .checked_upload()
            .and_then(|upload| content::upload(ui, at, upload)),
        U::Delete(at, path) => form().and_then(|f| content::delete(ui, at, path, &f)),
        U::Rollback(at) => form().and_then(|f| history::rollback(ui, at, &f)),
        U::CreateToken => form().and_then(|f| manage::create_token(ui, &f)),
        U::UpdateToken(id) => form().and_then(|f| manage::update_token(ui, id, &f)),
        U::Revoke(id) => form().and_then(|_| manage::revoke(ui, id)),
        U::Rotate(id) => form().and_then(|f| manage::rotate(ui, id, &f)),
        U::Unbind(id) => form().and_then(|_| manage::unbind(ui, id)),
    }
}

/// One signed-in request as the pages see it.
pub(super) struct Ui<'a> {
    pub app: &'a App,
    pub req: &'a Request<'a>,
    pub session: &'a Session,
    pub actor: Actor,
    /// The session's CSRF token, for every form on the page.
    pub csrf: String,
}

impl<'a> Ui<'a> {
    fn new(app: &'a App, req: &'a Request<'a>, session: &'a Session) -> Result<Ui<'a>> {
        Ok(Ui {
            app,
            req,
            session,
            actor: session.actor(req),
            csrf: session::csrf_token(app, &session.id)?,
        })
    }

    /// The posted form, once its CSRF token is checked.
    fn checked_form(&self) -> Result<Query> {
        let form = parse_form(self.req)?;
        session::check_csrf_value(&self.csrf, form.get("csrf").unwrap_or(""))?;
        Ok(form)
    }

    /// The posted upload (multipart), once its CSRF token is checked.
    fn checked_upload(&self) -> Result<Upload> {
        let upload = parse_upload(self.req)?;
        session::check_csrf_value(&self.csrf, upload.field("csrf").unwrap_or(""))?;
        Ok(upload)
    }

    /// A whole page: the layout around `body`.
    pub fn page(&self, status: StatusCode, title: &str, body: Markup) -> Response<Body> {
        page(status, layout(title, Some(self), body))
    }

    /// The hidden CSRF field of a form.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    pub fn may(&self, action: crate::auth::roles::Action, project: &ProjectRef) -> bool {
        self.actor
            .authorize(action, crate::auth::roles::Target::Project(project))
            .is_ok()
    }
}

/// A form's fields: `application/x-www-form-urlencoded` only (what a
/// browser's form sends; anything else is not one of our forms).
fn parse_form(req: &Request) -> Result<Query> {
    let media = req
        .parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if media.as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(Error::UnsupportedMediaType(
            "the web UI's forms are application/x-www-form-urlencoded".into(),
        ));
    }
    let text =
        std::str::from_utf8(&req.body).map_err(|_| Error::invalid("the form is not UTF-8"))?;
    Query::parse(Some(text))
}

/// An upload form's fields and its file.
pub(super) struct Upload {
    fields: Vec<(String, String)>,
    /// The file's name as the browser gave it, and its bytes.
    pub file: Option<(String, Bytes)>,
}

impl Upload {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `multipart/form-data` (the upload form) over the body already read.
fn parse_upload(req: &Request) -> Result<Upload> {
    let content_type = req
        .parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| Error::UnsupportedMediaType("an upload is multipart/form-data".into()))?;
    let body = req.body.clone();
    let stream =
        futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| Error::invalid(format!("malformed upload: {e}"));
    let read = async move {
        let mut upload = Upload {
            fields: Vec::new(),
            file: None,
        };
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or("").to_string();
            match field.file_name().map(str::to_string) {
                Some(file_name) if name == "file" => {
                    if upload.file.is_some() {
                        return Err(Error::invalid("one file per upload"));
                    }
                    upload.file = Some((file_name, field.bytes().await.map_err(bad)?));
                }
                _ => {
                    let text = field.text().await.map_err(bad)?;
                    if upload.fields.iter().any(|(k, _)| *k == name) {
                        return Err(Error::invalid(format!("{name} is given twice")));
                    }
                    upload.fields.push((name, text));
                }
            }
        }
        Ok(upload)
    };
    // The whole body is in memory: the parser never waits, and finishes
    // in one poll.
    use futures_util::FutureExt;
    read.now_or_never()
        .unwrap_or_else(|| Err(Error::invalid("malformed upload: incomplete")))
}

/// A page answer with the headers every page carries.
pub(super) fn page(status: StatusCode, markup: Markup) -> Response<Body> {
    let mut r = super::response::with_body(
        status,
        "text/html; charset=utf-8",
        Bytes::from(markup.into_string()),
    );
    secure_headers(&mut r);
    r
}

fn secure_headers(r: &mut Response<Body>) {
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `303 See Other` to `location` (a path of ours).
pub(super) fn redirect(location: &str) -> Response<Body> {
    let mut r = super::status_only(StatusCode::SEE_OTHER);
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut r);
    r
}

/// A UI request refused at admission: without a session, to the login
/// page; anything else (a form from another site), an error page.
pub fn refused(parts: &hyper::http::request::Parts, err: &Error) -> Response<Body> {
    match err {
        // After the login, a page: back to the one asked for, but not to
        // a form's target (its GET is a 405).
        Error::Unauthorized(_) if parts.method == hyper::Method::GET => to_login(parts.uri.path()),
        Error::Unauthorized(_) => redirect("/site-builder/login"),
        _ => page_error(None, err),
    }
}

/// Whether `path` is the UI's (not the API's under it).
pub fn is_ui_path(path: &str) -> bool {
    path == "/"
        || path == super::route::UI_PREFIX
        || (path.starts_with("/site-builder/") && !path.starts_with("/site-builder/api/"))
}

/// A path of the UI that routes nowhere: a page saying so, 404 or 405
/// (with `Allow`).
pub fn route_error(err: super::RouteError) -> Response<Body> {
    use super::RouteError as R;
    match err {
        R::NotFound => page_error(None, &Error::not_found("page", "")),
        R::Invalid(what) | R::UnsupportedArchive(what) => page_error(None, &Error::Invalid(what)),
        R::MethodNotAllowed(methods) => {
            let allow = methods.allow_header();
            let body = html! {
                h1 { "405 Method Not Allowed" }
                div.error role="alert" { "This address takes " (allow) " only." }
                p { a href="/site-builder/" { "Back to the projects" } }
            };
            let mut r = page(StatusCode::METHOD_NOT_ALLOWED, layout("Error", None, body));
            if let Ok(v) = HeaderValue::from_str(&allow) {
                r.headers_mut().insert(header::ALLOW, v);
            }
            r
        }
    }
}

/// Where a browser without a session goes: the login page, then back to
/// the page it asked for (a path of the UI only: no open redirect).
pub fn to_login(req_path: &str) -> Response<Body> {
    let next = safe_next(Some(req_path));
    let location = match next {
        Some(next) if next != "/site-builder/" => {
            format!("/site-builder/login?next={}", content::encode(next))
        }
        _ => "/site-builder/login".to_string(),
    };
    redirect(&location)
}

/// `next` if it is a page of the UI (not `//elsewhere`, not the API).
fn safe_next(next: Option<&str>) -> Option<&str> {
    next.filter(|n| {
        n.starts_with("/site-builder/")
            && !n.starts_with("/site-builder/api")
            && !n.contains("//")
            && !n.contains('\\')
    })
}

fn layout(title: &str, ui: Option<&Ui>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · cfgstore" }
                link rel="stylesheet" href=(assets::css());
                script src=(assets::js()) defer {}
            }
            body {
                header.top {
                    a.brand href="/site-builder/" { "cfgstore" }
                    @if let Some(ui) = ui {
                        nav {
                            a #nav-projects href="/site-builder/" { "Projects" }
                            a #nav-tokens href="/site-builder/tokens" { "Tokens" }
                            a #nav-audit href="/site-builder/audit" { "Audit" }
                            span.who { "Signed in as " a #me href="/site-builder/me" { strong { (ui.session.user.name) } } }
                            form #logout method="post" action="/site-builder/logout" {
                                (ui.csrf_field())
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error as a page, next to the navigation: the same status and
/// message the API gives. A lost session goes to the login page.
pub(super) fn page_error(ui: Option<&Ui>, err: &Error) -> Response<Body> {
    if let (Error::Unauthorized(_), Some(ui)) = (err, ui) {
        return refused(ui.req.parts, err);
    }
    let (status, message, _) = super::response::describe(err);
    let detail = match err {
        Error::Unprocessable { problems, .. } => problems.clone(),
        Error::UnknownRef { branches, .. } if !branches.is_empty() => {
            vec![format!("the branches are: {}", branches.join(", "))]
        }
        _ => Vec::new(),
    };
    let body = html! {
        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
        div.error role="alert" {
            (message)
            @if !detail.is_empty() {
                ul { @for d in &detail { li { (d) } } }
            }
        }
        p { a href="/site-builder/" { "Back to the projects" } }
    };
    page(status, layout("Error", ui, body))
}

// ----- login and logout -----------------------------------------------------

fn login_page(status: StatusCode, error: Option<&str>, next: Option<&str>) -> Response<Body> {
    let next = safe_next(next);
    let body = html! {
        h1 { "Sign in" }
        @if let Some(error) = error {
            div.error role="alert" { (error) }
        }
        form.card #login method="post" action="/site-builder/login" {
            @if let Some(next) = next {
                input type="hidden" name="next" value=(next);
            }
            label for="username" { "User name" }
            input #username type="text" name="username" autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="current-password" required;
            div.actions { button type="submit" { "Sign in" } }
        }
    };
    page(status, layout("Sign in", None, body))
}

fn login(app: &App, req: &Request) -> Result<Response<Body>> {
    session::same_origin(
        app,
        req.parts,
        req.peer,
        "a login from another site is refused",
    )?;
    let form = parse_form(req)?;
    let field = |k: &str| form.get(k).unwrap_or("");
    let next = safe_next(form.get("next")).map(str::to_string);
    match session::sign_in(app, req, field("username"), field("password")) {
        Ok((id, _user)) => {
            let mut r = redirect(next.as_deref().unwrap_or("/site-builder/"));
            r.headers_mut()
                .insert(header::SET_COOKIE, session::session_cookie_header(app, &id));
            Ok(r)
        }
        Err(Error::Unauthorized(_)) => Ok(login_page(
            StatusCode::UNAUTHORIZED,
            Some("Wrong user name or password."),
            next.as_deref(),
        )),
        Err(err @ Error::TooManyRequests { .. }) => Ok(login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "{} Wait a few minutes and try again.",
                super::response::describe(&err).1
            )),
            next.as_deref(),
        )),
        Err(err) => Err(err),
    }
}

/// Who am I: the signed-in user, their roles, and what those grant.
fn me(ui: &Ui) -> Response<Body> {
    use crate::auth::roles::Role;
    let user = &ui.session.user;
    let grants = |role: &Role| match role {
        Role::User => "read and write your own folder".to_string(),
        Role::UserPrefix(prefix) => format!(
            "read and write projects {prefix} and {prefix}.{{type}} in other users' folders"
        ),
        Role::EditorPublic => "write in the public area".to_string(),
        Role::EditorReadonly => "read every project, and the whole audit trail".to_string(),
        Role::EditorRoot => "everything, every owner's tokens included".to_string(),
    };
    let body = html! {
        h1 { "Signed in as " (user.name) }
        dl.facts {
            dt { "Your folder" } dd { (user.name) "/ (yours to read and write, no role needed)" }
            dt { "Account since" } dd { (user.created_at) }
        }
        h2 { "Roles" }
        @if user.roles.is_empty() {
            p.muted #roles { "None: your own folder and the public area (to read)." }
        } @else {
            div.table-wrap { table #roles {
                thead { tr { th { "Role" } th { "Grants" } } }
                tbody {
                    @for role in &user.roles {
                        tr { td { code { (role) } } td { (grants(role)) } }
                    }
                }
            } }
        }
        p.muted { "Roles are given with " code { "cfgstore user grant" } " on the server." }
    };
    ui.page(StatusCode::OK, "Who am I", body)
}

fn logout(ui: &Ui) -> Result<Response<Body>> {
    crate::ops::users::end_session(
        &ui.app.store,
        &ui.actor,
        &ui.session.user.name,
        &ui.session.id,
    )?;
    let mut r = redirect("/site-builder/login");
    r.headers_mut()
        .insert(header::SET_COOKIE, session::cleared_cookie_header());
    Ok(r)
}

/// `at`'s branch pages' common prefix: `/site-builder/p/{o}/{r}/b/{branch}`
/// (and `/v/{version}` for a retained version).
pub(super) fn branch_url(at: &At) -> String {
    let mut url = format!(
        "{}/b/{}",
        content::project_url(&at.project),
        content::encode(at.branch.as_str())
    );
    if let Some(v) = at.version {
        url.push_str(&format!("/v/{v}"));
    }
    url
}
