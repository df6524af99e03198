//! The UI's pages of projects, branches and files: the tree, a file, the
//! editor, history, compare and rollback. Reads are authorized like the
//! admin API's (`admin::readable`); every change is one `ops` call.

use hyper::header::{HeaderValue, CONTENT_DISPOSITION};
use hyper::{Response, StatusCode};
use maud::{html, Markup};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::history::diff_block;
use super::{branch_url, redirect, Ui};
use crate::api::admin::{generation, readable};
use crate::api::request::Query;
use crate::api::route::{At, ProjectId};
use crate::api::Body;
use crate::auth::roles::Action;
use crate::error::{Error, Result};
use crate::names::{BranchName, FilePath, OwnerName, ProjectRef, SnapshotId};
use crate::ops::content::{self as ops, FileWrite, Validation};
use crate::store::tree::{Kind, Selection, TreeEntry};

/// What a path segment keeps unescaped in our links.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment (or query value) as it goes into a link.
pub(super) fn encode(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A file path in a link: each segment escaped, `/` kept.
fn path_url(path: &str) -> String {
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

pub(super) fn project_url(p: &ProjectRef) -> String {
    format!(
        "/site-builder/p/{}/{}",
        encode(p.owner.as_str()),
        encode(p.repo.as_str())
    )
}

pub(super) fn readable_at(ui: &Ui, project: &ProjectRef) -> Result<ProjectRef> {
    readable(ui.app, &ui.actor, &ProjectId::Full(project.clone()))
}

/// The message of a `?done=` after a redirect: fixed texts only, so a
/// link cannot put words in the page's mouth.
pub(super) fn flash(ui: &Ui) -> Markup {
    let version = ui
        .req
        .query
        .get("v")
        .and_then(|v| SnapshotId::parse(v).ok());
    let v = version.map(|v| format!(" as {v}")).unwrap_or_default();
    let text = match ui.req.query.get("done") {
        Some("saved") => format!("Saved{v}."),
        Some("unchanged") => "Saved: the content was already this; no new version.".into(),
        Some("deleted") => format!("Deleted{v}."),
        Some("rolled_back") => format!("Rolled back{v}."),
        Some("project") => "Project created.".into(),
        Some("branch") => "Branch created.".into(),
        _ => return html! {},
    };
    html! { div.flash role="status" { (text) } }
}

// ----- projects ---------------------------------------------------------------

pub(super) fn home(ui: &Ui) -> Result<Response<Body>> {
    let projects: Vec<_> = ui
        .app
        .store
        .list_projects(None)?
        .into_iter()
        .filter(|p| ui.may(Action::Read, &p.project_ref()))
        .collect();
    let me = &ui.session.user.name;
    let body = html! {
        h1 { "Projects" }
        (flash(ui))
        @if projects.is_empty() {
            p.muted { "No project you may read yet." }
        } @else {
            div.table-wrap { table #projects {
                thead { tr { th { "Project" } th { "Type" } th.hide-narrow { "Created" } } }
                tbody {
                    @for p in &projects {
                        @let project = p.project_ref();
                        tr {
                            td { a.project href=(project_url(&project)) { (project) } }
                            td { (p.kind) }
                            td.hide-narrow.muted { (p.created_at) }
                        }
                    }
                }
            } }
        }
        h2 { "New project" }
        form.card #new-project method="post" action="/site-builder/projects" {
            (ui.csrf_field())
            label for="project-owner" { "Owner (folder)" }
            input #project-owner type="text" name="owner" value=(me) required;
            label for="project-name" { "Name" }
            input #project-name type="text" name="name" required placeholder="shop";
            label for="project-type" { "Type" }
            input #project-type type="text" name="type" value="cfg";
            div.actions { button type="submit" { "Create project" } }
        }
    };
    Ok(ui.page(StatusCode::OK, "Projects", body))
}

pub(super) fn create_project(ui: &Ui, form: &Query) -> Result<Response<Body>> {
    let owner = match form.get("owner").filter(|o| !o.is_empty()) {
        Some(o) => OwnerName::parse(o)?,
        None => ui.session.user.name.clone(),
    };
    let name = form.get("name").unwrap_or("");
    let kind = form.get("type").unwrap_or("");
    let info = ops::create_project(&ui.app.store, &ui.actor, &owner, name, kind)?;
    Ok(redirect(&format!(
        "{}?done=project",
        project_url(&info.project_ref())
    )))
}

pub(super) fn project(ui: &Ui, project: &ProjectRef) -> Result<Response<Body>> {
    let project = readable_at(ui, project)?;
    let branches = ui.app.store.list_branches(&project)?;
    let writable = ui.may(Action::Write, &project);
    let base = project_url(&project);
    let body = html! {
        h1 { (project) }
        (flash(ui))
        div.actions {
            a.button.secondary #compare href=(format!("{base}/compare")) { "Compare" }
            a.button.secondary #fleet href=(format!("{base}/fleet")) { "Fleet" }
        }
        div.table-wrap { table #branches {
            thead { tr {
                th { "Branch" } th { "short_id" } th { "Version" } th { "Files" }
                th.hide-narrow { "Last change" }
            } }
            tbody {
                @for b in &branches {
                    tr.default[b.default] {
                        td {
                            a.branch href=(format!("{base}/b/{}/tree", encode(b.name.as_str()))) { (b.name) }
                            @if b.default { span.badge { "default" } }
                        }
                        td { code.short-id { (b.short_id) } }
                        td { (b.version) }
                        td { (b.file_count) }
                        td.hide-narrow {
                            (b.updated_at) br;
                            span.muted { (b.actor) ": " (b.reason) }
                        }
                    }
                }
            }
        } }
        @if writable {
            h2 { "New branch" }
            form.card #new-branch method="post" action=(format!("{base}/branches")) {
                (ui.csrf_field())
                label for="branch-name" { "Name" }
                input #branch-name type="text" name="name" required placeholder="staging";
                label for="branch-from" { "Copy of" }
                select #branch-from name="from" {
                    option value="" { "(empty)" }
                    @for b in &branches {
                        option value=(b.name) selected[b.default] { (b.name) }
                    }
                }
                div.actions { button type="submit" { "Create branch" } }
            }
        }
    };
    Ok(ui.page(StatusCode::OK, &project.to_string(), body))
}

pub(super) fn create_branch(ui: &Ui, project: &ProjectRef, form: &Query) -> Result<Response<Body>> {
    ui.actor
        .authorize(Action::Write, crate::auth::roles::Target::Project(project))?;
    let name = BranchName::parse(form.get("name").unwrap_or(""))?;
    let from = form
        .get("from")
        .filter(|f| !f.is_empty())
        .map(BranchName::parse)
        .transpose()?;
    ops::create_branch(&ui.app.store, &ui.actor, project, &name, from.as_ref())?;
    Ok(redirect(&format!(
        "{}/b/{}/tree?done=branch",
        project_url(project),
        encode(name.as_str())
    )))
}

// ----- a branch's tree and files -----------------------------------------------

pub(super) fn crumbs(at: &At, path: Option<&str>) -> Markup {
    let base = branch_url(at);
    let segments: Vec<&str> = path.map(|p| p.split('/').collect()).unwrap_or_default();
    html! {
        nav.crumbs aria-label="Path" {
            a href=(project_url(&at.project)) { (at.project) }
            " / "
            a href=(format!("{base}/tree")) {
                (at.branch)
                @if let Some(v) = at.version { "@" (v) }
            }
            @for (i, segment) in segments.iter().enumerate() {
                " / "
                @if i + 1 < segments.len() {
                    a href=(format!("{base}/tree/{}", path_url(&segments[..=i].join("/")))) { (segment) }
                } @else {
                    span { (segment) }
                }
            }
        }
    }
}

pub(super) fn tree(ui: &Ui, at: &At, folder: Option<&FilePath>) -> Result<Response<Body>> {
    let project = readable_at(ui, &at.project)?;
    let gen = generation(ui.app, &project, &at.branch, at.version)?;
    let prefix = folder
        .map(|f| format!("{}/", f.as_str()))
        .unwrap_or_default();
    let shown_filter = ui.req.query.get("filter").unwrap_or("").trim();
    let filter = shown_filter.to_lowercase();
    // The version's tree index (made once per version, shared with the
    // APIs' listings): with a filter, every file below whose path contains
    // it; without, this folder's own folders and files.
    let index = gen.tree();
    let below = |path: &str| -> Result<usize> {
        let folder = FilePath::parse(path)?;
        let blobs = |e: &&TreeEntry| e.kind == Kind::Blob;
        Ok(match index.select(Some(&folder), true)? {
            Selection::Slice(all) => all.iter().filter(blobs).count(),
            Selection::Picked(some) => some.into_iter().filter(blobs).count(),
        })
    };
    // Folders first, then files; 200 rows a page, a folder's file count
    // found for the rows shown only.
    let rows: Vec<TreeEntry> = if filter.is_empty() {
        let mut rows = index.select(folder, false)?.to_vec();
        rows.sort_by_key(|e| e.kind != Kind::Tree);
        rows
    } else {
        index
            .select(folder, true)?
            .to_vec()
            .into_iter()
            .filter(|e| {
                e.kind == Kind::Blob && e.path[prefix.len()..].to_lowercase().contains(&filter)
            })
            .collect()
    };
    let (page, pager) = super::history::paginate(ui, &rows, 200);
    let mut folders: Vec<(String, usize)> = Vec::new();
    let mut files: Vec<&TreeEntry> = Vec::new();
    for e in page {
        match e.kind {
            Kind::Tree => folders.push((e.name.clone(), below(&e.path)?)),
            Kind::Blob => files.push(e),
        }
    }
    let base = branch_url(at);
    let live = at.version.is_none();
    let writable = live && ui.may(Action::Write, &project);
    let here = folder.map(|f| f.as_str().to_string());
    let body = html! {
        h1 { (project) " · " (at.branch) @if let Some(v) = at.version { " at " (v) } }
        (crumbs(at, here.as_deref()))
        (flash(ui))
        dl.facts {
            dt { "short_id" } dd { code.short-id { (gen.meta.short_id) } }
            dt { "Version" } dd { (gen.meta.version) @if live { span.badge.ok { "live" } } }
            dt { "Files" } dd { (gen.meta.file_count) }
        }
        div.actions {
            form.inline-filter #filter method="get" action=(format!("{base}/tree{}", folder.map(|f| format!("/{}", path_url(f.as_str()))).unwrap_or_default())) {
                label for="filter-input" { "Filter" }
                input #filter-input type="search" name="filter" value=(shown_filter) placeholder="part of a path";
                button.secondary type="submit" { "Filter" }
            }
            a.button.secondary #history href=(format!("{}/b/{}/history", project_url(&project), encode(at.branch.as_str()))) { "History" }
            @if writable {
                a.button #new-file href=(format!("{base}/new")) { "New file" }
            }
        }
        div.table-wrap { table #tree {
            thead { tr { th { "Name" } th { "Size" } th.hide-narrow { "Blob id" } } }
            tbody {
                @for (dir, count) in &folders {
                    tr {
                        td { a.folder href=(format!("{base}/tree/{}", path_url(&format!("{prefix}{dir}")))) { (dir) "/" } }
                        td.muted { (count) " files" }
                        td.hide-narrow {}
                    }
                }
                @for e in &files {
                    tr {
                        td { a.file href=(format!("{base}/file/{}", path_url(&e.path))) { (&e.path[prefix.len()..]) } }
                        td { (e.size.unwrap_or(0)) }
                        td.hide-narrow { code { (e.id) } }
                    }
                }
                @if folders.is_empty() && files.is_empty() {
                    tr { td colspan="3" { span.muted { "No files" @if !filter.is_empty() { " match " (shown_filter) } "." } } }
                }
            }
        } }
        (pager)
        @if writable {
            form.card #upload method="post" enctype="multipart/form-data" action=(format!("{base}/upload")) {
                (ui.csrf_field())
                input type="hidden" name="short_id" value=(gen.meta.short_id);
                input type="hidden" name="folder" value=(here.as_deref().unwrap_or(""));
                label for="upload-file" { "Upload a file into " (here.as_deref().map(|h| format!("{h}/")).unwrap_or_else(|| "the branch root".into())) }
                input #upload-file type="file" name="file" required;
                div.actions { button type="submit" { "Upload" } }
            }
        }
    };
    Ok(ui.page(StatusCode::OK, &format!("{project} {}", at.branch), body))
}

/// A file of a branch (live or a version) the user may read: the
/// project, the state, the file's entry and its content.
fn read_file(
    ui: &Ui,
    at: &At,
    path: &FilePath,
) -> Result<(
    ProjectRef,
    std::sync::Arc<crate::store::Generation>,
    crate::store::Entry,
    crate::store::Content,
)> {
    let project = readable_at(ui, &at.project)?;
    let gen = generation(ui.app, &project, &at.branch, at.version)?;
    let entry = gen
        .find(path)
        .ok_or_else(|| Error::not_found("file", path))?
        .clone();
    let content = ui.app.store.read_content(&project, &entry)?;
    Ok((project, gen, entry, content))
}

pub(super) fn file(ui: &Ui, at: &At, path: &FilePath) -> Result<Response<Body>> {
    let (project, gen, entry, content) = read_file(ui, at, path)?;
    let base = branch_url(at);
    let live = at.version.is_none();
    let writable = live && ui.may(Action::Write, &project);
    let text = content
        .text
        .then(|| String::from_utf8_lossy(&content.bytes));
    let body = html! {
        h1 { (path) }
        (crumbs(at, Some(path.as_str())))
        (flash(ui))
        dl.facts {
            dt { "Size" } dd #size { (entry.size) " bytes" }
            dt { "Blob id" } dd #blob-id { (entry.blob_id()) }
            dt { "MD5" } dd { (entry.md5) }
            dt { "Branch state" } dd { code.short-id { (gen.meta.short_id) } " (" (gen.meta.version) ")" }
        }
        div.actions {
            @if writable && text.is_some() {
                a.button #edit href=(format!("{base}/edit/{}", path_url(path.as_str()))) { "Edit" }
            }
            a.button.secondary #download href=(format!("{base}/raw/{}", path_url(path.as_str()))) { "Download" }
            @if writable {
                a.button.secondary #delete href=(format!("{base}/delete/{}", path_url(path.as_str()))) { "Delete" }
            }
        }
        @if let Some(text) = &text {
            // A newline first: HTML drops one right after `<pre>`, and a
            // file may begin with one.
            pre #content { "\n" (text) }
        } @else {
            p.muted #binary { "A binary file: download it to see it." }
        }
    };
    Ok(ui.page(StatusCode::OK, path.as_str(), body))
}

/// What RFC 5987 leaves unencoded in an `ext-value` (`attr-char`).
const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The bytes as a download: never rendered as a page of this origin
/// (`attachment`, `octet-stream`, a sandboxing CSP).
pub(super) fn raw(ui: &Ui, at: &At, path: &FilePath) -> Result<Response<Body>> {
    let (_, _, _, content) = read_file(ui, at, path)?;
    let mut r =
        crate::api::response::with_body(StatusCode::OK, "application/octet-stream", content.bytes);
    let name = path.as_str().rsplit('/').next().unwrap_or("file");
    // RFC 6266: an ASCII name for old clients, the exact one (UTF-8,
    // percent-encoded) for the others.
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = percent_encoding::utf8_percent_encode(name, ATTR_CHAR);
    let h = r.headers_mut();
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{exact}");
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    Ok(r)
}

// ----- the editor ----------------------------------------------------------------

/// What the editor shows besides the text.
#[derive(Default)]
struct Report {
    error: Option<String>,
    problems: Vec<String>,
    /// A dry run's verdict and diff.
    checked: Option<ops::DryRun>,
    /// The path typed into the new-file form, shown again.
    typed_path: String,
}

fn editor_page(
    ui: &Ui,
    at: &At,
    path: Option<&FilePath>,
    content: &str,
    short_id: &str,
    status: StatusCode,
    report: Report,
) -> Response<Body> {
    let base = branch_url(at);
    let action = match path {
        Some(p) => format!("{base}/edit/{}", path_url(p.as_str())),
        None => format!("{base}/new"),
    };
    let title = path
        .map(|p| p.to_string())
        .unwrap_or_else(|| "New file".into());
    let body = html! {
        h1 { @if path.is_some() { "Edit " } (title) }
        (crumbs(at, path.map(|p| p.as_str())))
        @if let Some(error) = &report.error {
            div.error role="alert" { (error) }
        }
        @if !report.problems.is_empty() {
            div.validation role="alert" {
                strong { "Not saved: the content does not pass its checks." }
                ul { @for p in &report.problems { li { (p) } } }
            }
        }
        @if let Some(dry) = &report.checked {
            @if dry.valid {
                div.flash role="status" {
                    "Check passed. "
                    @if dry.changed { "Saving makes short_id " code { (dry.short_id) } "." }
                    @else { "The content is unchanged." }
                }
            } @else {
                div.validation role="alert" {
                    strong { "The check found problems:" }
                    ul { @for e in &dry.errors { li { (e) } } }
                }
            }
            @if !dry.diff.is_empty() { (diff_block(&dry.diff)) }
        }
        form #editor method="post" action=(action) {
            (ui.csrf_field())
            input type="hidden" name="short_id" value=(short_id);
            @if path.is_none() {
                label for="path" { "Path" }
                input #path type="text" name="path" value=(report.typed_path) required placeholder="config/app.json";
            }
            label for="content" { "Content" }
            // As in `<pre>`: the parser drops one newline after the tag.
            textarea #content name="content" spellcheck="false" { "\n" (content) }
            div.actions {
                button.secondary type="submit" name="action" value="check" { "Check" }
                button type="submit" name="action" value="save" { "Save" }
                span.muted { "Saves on top of " code { (short_id) } "; a change made meanwhile is reported, never overwritten." }
            }
        }
    };
    ui.page(status, &title, body)
}

/// The live state of a branch the user may write.
pub(super) fn writable_live(
    ui: &Ui,
    at: &At,
) -> Result<(ProjectRef, std::sync::Arc<crate::store::Generation>)> {
    let project = readable_at(ui, &at.project)?;
    ui.actor
        .authorize(Action::Write, crate::auth::roles::Target::Project(&project))?;
    let gen = ui.app.store.live(&project, &at.branch)?;
    Ok((project, gen))
}

pub(super) fn editor(ui: &Ui, at: &At, path: &FilePath) -> Result<Response<Body>> {
    let (project, gen) = writable_live(ui, at)?;
    let entry = gen
        .find(path)
        .ok_or_else(|| Error::not_found("file", path))?;
    let content = ui.app.store.read_content(&project, entry)?;
    if !content.text {
        return Err(Error::invalid("a binary file cannot be edited as text"));
    }
    let text = String::from_utf8_lossy(&content.bytes);
    Ok(editor_page(
        ui,
        at,
        Some(path),
        &text,
        &gen.meta.short_id,
        StatusCode::OK,
        Report::default(),
    ))
}

pub(super) fn new_file(ui: &Ui, at: &At) -> Result<Response<Body>> {
    let (_, gen) = writable_live(ui, at)?;
    Ok(editor_page(
        ui,
        at,
        None,
        "",
        &gen.meta.short_id,
        StatusCode::OK,
        Report::default(),
    ))
}

/// The textarea's text as the user meant it: a browser sends its lines
/// with CRLF; a file that had none gets none.
fn posted_content(form: &Query, original: Option<&[u8]>) -> String {
    let text = form.get("content").unwrap_or("");
    let had_cr = original.is_some_and(|o| o.contains(&b'\r'));
    if had_cr {
        text.to_string()
    } else {
        text.replace("\r\n", "\n")
    }
}

pub(super) fn save(ui: &Ui, at: &At, path: &FilePath, form: &Query) -> Result<Response<Body>> {
    let (project, gen) = writable_live(ui, at)?;
    let original = match gen.find(path) {
        Some(entry) => Some(ui.app.store.read_content(&project, entry)?.bytes),
        None => None,
    };
    let content = posted_content(form, original.as_deref());
    write(ui, at, &project, path, content, form, false)
}

pub(super) fn create_file(ui: &Ui, at: &At, form: &Query) -> Result<Response<Body>> {
    let (project, gen) = writable_live(ui, at)?;
    let content = posted_content(form, None);
    let short_id = form.get("short_id").unwrap_or(&gen.meta.short_id);
    // The form again, with what was typed and why it was not saved.
    let refuse = |status, error: String| {
        let report = Report {
            error: Some(error),
            typed_path: form.get("path").unwrap_or("").to_string(),
            ..Report::default()
        };
        Ok(editor_page(
            ui, at, None, &content, short_id, status, report,
        ))
    };
    let path = match FilePath::parse(form.get("path").unwrap_or("").trim()) {
        Ok(path) => path,
        Err(err) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                crate::api::response::describe(&err).1,
            )
        }
    };
    if gen.find(&path).is_some() {
        return refuse(
            StatusCode::CONFLICT,
            format!("{path} exists already: open it to edit it."),
        );
    }
    write(ui, at, &project, &path, content, form, true)
}

/// A check (dry run) or a save of the editor's content.
fn write(
    ui: &Ui,
    at: &At,
    project: &ProjectRef,
    path: &FilePath,
    content: String,
    form: &Query,
    new: bool,
) -> Result<Response<Body>> {
    let short_id = form.get("short_id").unwrap_or("").to_string();
    if short_id.is_empty() {
        // The editor always sends the state it was opened on: a save
        // without one could overwrite a change it never saw.
        return Err(Error::invalid("short_id is missing: open the editor again"));
    }
    let shown_path = (!new).then_some(path);
    let typed_path = if new { path.to_string() } else { String::new() };
    let write = FileWrite {
        project,
        branch: &at.branch,
        path,
        bytes: content.as_bytes(),
    };
    if form.get("action") == Some("check") {
        let checked = ops::preview_put(&ui.app.store, &ui.actor, write)?;
        let report = Report {
            checked: Some(checked),
            typed_path,
            ..Report::default()
        };
        return Ok(editor_page(
            ui,
            at,
            shown_path,
            &content,
            &short_id,
            StatusCode::OK,
            report,
        ));
    }
    let expected = Some(short_id.as_str());
    // The editor again, with the user's text and what stopped the save.
    let again = |status, report| {
        Ok(editor_page(
            ui, at, shown_path, &content, &short_id, status, report,
        ))
    };
    match ops::put_file(&ui.app.store, &ui.actor, write, expected, Validation::Check) {
        Ok(outcome) => Ok(saved(ui, at, path, &outcome)),
        Err(Error::Conflict(msg)) => again(
            StatusCode::CONFLICT,
            Report {
                error: Some(format!(
                    "Not saved: the branch changed since you opened the editor ({msg}). \
                     Your text is below; open the file again to see the change."
                )),
                typed_path,
                ..Report::default()
            },
        ),
        Err(Error::Unprocessable { problems, .. }) => again(
            StatusCode::UNPROCESSABLE_ENTITY,
            Report {
                problems,
                typed_path,
                ..Report::default()
            },
        ),
        Err(err) => Err(err),
    }
}

pub(super) fn delete_form(ui: &Ui, at: &At, path: &FilePath) -> Result<Response<Body>> {
    let (_, gen) = writable_live(ui, at)?;
    gen.find(path)
        .ok_or_else(|| Error::not_found("file", path))?;
    let body = html! {
        h1 { "Delete " (path) "?" }
        (crumbs(at, Some(path.as_str())))
        p { "This makes a new version of " strong { (at.branch) } " without the file; the versions before keep it." }
        form.card #delete-file method="post" action=(format!("{}/delete/{}", branch_url(at), path_url(path.as_str()))) {
            (ui.csrf_field())
            input type="hidden" name="short_id" value=(gen.meta.short_id);
            div.actions {
                button.danger type="submit" { "Delete" }
                a.button.secondary href=(format!("{}/file/{}", branch_url(at), path_url(path.as_str()))) { "Cancel" }
            }
        }
    };
    Ok(ui.page(StatusCode::OK, "Delete", body))
}

pub(super) fn delete(ui: &Ui, at: &At, path: &FilePath, form: &Query) -> Result<Response<Body>> {
    let (project, _) = writable_live(ui, at)?;
    let expected = Some(
        form.get("short_id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::invalid("short_id is missing: open the page again"))?,
    );
    let outcome = ops::delete_file(
        &ui.app.store,
        &ui.actor,
        &project,
        &at.branch,
        path,
        expected,
    )?;
    ui.app.metrics.write(outcome.changed);
    Ok(redirect(&format!(
        "{}/tree?done=deleted&v={}",
        branch_url(at),
        outcome.version
    )))
}

/// A file from the browser, saved into the folder it was sent from,
/// checked like any write and conditional on the state the page showed.
pub(super) fn upload(ui: &Ui, at: &At, upload: super::Upload) -> Result<Response<Body>> {
    let (project, _) = writable_live(ui, at)?;
    let (name, bytes) = upload
        .file
        .as_ref()
        .ok_or_else(|| Error::invalid("no file was sent"))?;
    // Only the name: some browsers send the whole local path.
    let name = name.rsplit(['/', '\\']).next().unwrap_or("");
    let folder = upload.field("folder").unwrap_or("").trim_matches('/');
    let target = if folder.is_empty() {
        name.to_string()
    } else {
        format!("{folder}/{name}")
    };
    let path = FilePath::parse(&target)?;
    let expected = Some(
        upload
            .field("short_id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::invalid("short_id is missing: open the page again"))?,
    );
    let write = FileWrite {
        project: &project,
        branch: &at.branch,
        path: &path,
        bytes,
    };
    let outcome = ops::put_file(&ui.app.store, &ui.actor, write, expected, Validation::Check)?;
    Ok(saved(ui, at, &path, &outcome))
}

/// After a put from the editor or an upload: counted, and to the file's
/// page saying what happened.
fn saved(
    ui: &Ui,
    at: &At,
    path: &FilePath,
    outcome: &crate::store::WriteOutcome,
) -> Response<Body> {
    ui.app.metrics.write(outcome.changed);
    let done = if outcome.changed {
        "saved"
    } else {
        "unchanged"
    };
    redirect(&format!(
        "{}/file/{}?done={done}&v={}",
        branch_url(at),
        path_url(path.as_str()),
        outcome.version
    ))
}
