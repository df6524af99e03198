//! The UI's pages of tokens, the audit trail and the fleet.

use hyper::{Response, StatusCode};
use maud::{html, Markup};

use super::content::{encode, project_url};
use super::history::paginate;
use super::{redirect, Ui};
use crate::api::admin::{audit_records, fleet_rows, readable};
use crate::api::request::Query;
use crate::api::route::ProjectId;
use crate::api::Body;
use crate::auth::roles::{Action, Target};
use crate::error::Result;
use crate::names::{OwnerName, ProjectRef, RepoId};
use crate::ops::tokens::{self, NewToken};
use crate::store::tokens::TokenUpdate;

/// A secret just issued, shown once.
pub(super) struct Issued {
    pub secret: String,
    pub what: String,
    pub warnings: Vec<String>,
}

/// `repos` as typed: repo ids separated by commas or spaces.
fn repo_list(text: &str) -> Result<Vec<RepoId>> {
    text.split([',', ' ', '\n', '\r', '\t'])
        .filter(|r| !r.is_empty())
        .map(RepoId::parse)
        .collect()
}

fn owner_of(ui: &Ui, q: &Query) -> Result<OwnerName> {
    let owner = match q.get("owner").filter(|o| !o.is_empty()) {
        Some(o) => OwnerName::parse(o)?,
        None => ui.session.user.name.clone(),
    };
    ui.actor
        .authorize(Action::ManageTokens, Target::Owner(&owner))?;
    Ok(owner)
}

/// The tokens of `owner` (else of `?owner=`, else the user's own), with
/// a secret just issued above them.
pub(super) fn tokens(
    ui: &Ui,
    status: StatusCode,
    issued: Option<Issued>,
    owner: Option<OwnerName>,
) -> Result<Response<Body>> {
    let owner = match owner {
        Some(owner) => owner,
        None => owner_of(ui, &ui.req.query)?,
    };
    let now = ui.app.now();
    let list: Vec<_> = ui
        .app
        .store
        .list_tokens(Some(&owner))?
        .iter()
        .map(|t| t.view(now))
        .collect();
    let done = match ui.req.query.get("done") {
        Some("revoked") => Some("Token revoked."),
        Some("updated") => Some("Token updated."),
        Some("unbound") => Some("Fingerprint binding removed: the next instance to read binds it."),
        _ => None,
    };
    let body = html! {
        h1 { "Tokens of " (owner) }
        @if let Some(done) = done { div.flash role="status" { (done) } }
        @if let Some(issued) = &issued {
            div.secret role="status" {
                span { (issued.what) " Copy it now: it is shown only this once." }
                code #secret { (issued.secret) }
                button.secondary #copy type="button" { "Copy" }
            }
            @for w in &issued.warnings { div.validation { (w) } }
        }
        div.table-wrap { table #tokens {
            thead { tr {
                th { "Name" } th { "Scope" } th { "Expires" } th { "Fingerprint" }
                th.hide-narrow { "Last used" } th { "Ends in" } th {}
            } }
            tbody {
                @for t in &list {
                    tr.token.revoked[t.revoked] {
                        td {
                            (t.name)
                            @if t.revoked { span.badge.bad { "revoked" } }
                            @else if !t.active { span.badge.bad { "expired" } }
                        }
                        td { @if t.repos.is_empty() { "all of " (t.owner) "'s projects" } @else { (t.repos.join(", ")) } }
                        td { (t.expires_at.as_deref().unwrap_or("never")) }
                        td {
                            @if t.fingerprint_required {
                                @if t.fingerprint_bound { "required, bound" } @else { "required, not bound yet" }
                            } @else { "not required" }
                        }
                        td.hide-narrow { (t.last_used_at.as_deref().unwrap_or("never")) }
                        td { code { (t.suffix) } }
                        td {
                            @if !t.revoked {
                                a.edit href=(format!("/site-builder/tokens/{}", encode(&t.id))) { "Edit" }
                                " "
                                a.revoke href=(format!("/site-builder/tokens/{}/revoke", encode(&t.id))) { "Revoke" }
                            }
                        }
                    }
                }
                @if list.is_empty() { tr { td colspan="7" { span.muted { "No tokens yet." } } } }
            }
        } }
        h2 { "New token" }
        form.card #new-token method="post" action="/site-builder/tokens" {
            (ui.csrf_field())
            input type="hidden" name="owner" value=(owner);
            label for="token-name" { "Name" }
            input #token-name type="text" name="name" required placeholder="erp-prod";
            label for="token-repos" { "Projects it may read (repo ids, comma separated; empty: all of " (owner) "'s)" }
            input #token-repos type="text" name="repos" placeholder="shop.cfg, billing.cfg";
            label for="token-expires" { "Expires at (empty: never)" }
            input #token-expires type="date" name="expires_at";
            label.inline { input type="checkbox" name="fingerprint_required" value="true"; "Require a fingerprint (X-Instance-Id): bound to the first instance that reads" }
            div.actions { button type="submit" { "Create token" } }
        }
    };
    Ok(ui.page(status, "Tokens", body))
}

fn checkbox(form: &Query, name: &str) -> bool {
    matches!(form.get(name), Some("true" | "on" | "1"))
}

fn blank_to_none(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

pub(super) fn create_token(ui: &Ui, form: &Query) -> Result<Response<Body>> {
    let owner = owner_of(ui, form)?;
    let new = NewToken {
        owner,
        name: form.get("name").unwrap_or("").trim().to_string(),
        repos: repo_list(form.get("repos").unwrap_or(""))?,
        expires_at: blank_to_none(form.get("expires_at")),
        fingerprint_required: checkbox(form, "fingerprint_required"),
    };
    let issued = tokens::create(&ui.app.store, &ui.actor, new, ui.app.now())?;
    let owner = issued.record.owner.clone();
    let shown = Issued {
        what: format!("Token {} created.", issued.record.name),
        secret: issued.secret,
        warnings: issued
            .missing_repos
            .iter()
            .map(|r| format!("No project {r} yet: the token will read it once it exists."))
            .collect(),
    };
    // The secret is in this answer only (no-store), never in a URL.
    tokens(ui, StatusCode::CREATED, Some(shown), Some(owner))
}

pub(super) fn token_form(ui: &Ui, id: &str) -> Result<Response<Body>> {
    let record = tokens::manageable(&ui.app.store, &ui.actor, id)?;
    let t = record.view(ui.app.now());
    let expires = t.expires_at.as_deref().map(expiry_date).unwrap_or("");
    let base = format!("/site-builder/tokens/{}", encode(&t.id));
    let body = html! {
        h1 { "Token " (t.name) }
        dl.facts {
            dt { "Owner" } dd { (t.owner) }
            dt { "Ends in" } dd { (t.suffix) }
            dt { "Created" } dd { (t.created_at) }
            dt { "Last used" } dd { (t.last_used_at.as_deref().unwrap_or("never")) }
        }
        form.card #edit-token method="post" action=(base) {
            (ui.csrf_field())
            label for="token-name" { "Name" }
            input #token-name type="text" name="name" value=(t.name) required;
            label for="token-repos" { "Projects it may read (empty: all)" }
            input #token-repos type="text" name="repos" value=(t.repos.join(", "));
            label for="token-expires" { "Expires at (empty: never)" }
            input #token-expires type="date" name="expires_at" value=(expires);
            label.inline { input type="checkbox" name="fingerprint_required" value="true" checked[t.fingerprint_required]; "Require a fingerprint" }
            div.actions { button type="submit" { "Save" } }
        }
        div.actions {
            @if t.fingerprint_bound {
                form #unbind method="post" action=(format!("{base}/unbind")) {
                    (ui.csrf_field())
                    button.secondary type="submit" { "Unbind the fingerprint" }
                }
            }
            form #rotate method="post" action=(format!("{base}/rotate")) {
                (ui.csrf_field())
                label.inline { "Old token keeps working for " input type="text" name="grace" value="24h" size="6"; }
                button.secondary type="submit" { "Rotate" }
            }
            a.button.danger href=(format!("{base}/revoke")) { "Revoke…" }
        }
    };
    Ok(ui.page(StatusCode::OK, "Token", body))
}

pub(super) fn update_token(ui: &Ui, id: &str, form: &Query) -> Result<Response<Body>> {
    let record = tokens::manageable(&ui.app.store, &ui.actor, id)?;
    // The form shows the expiry's date: the same date sent back leaves the
    // expiry as it is (a rotation's grace ends at an hour, not at midnight).
    let shown = record.expires_at.as_deref().map(expiry_date);
    let given = blank_to_none(form.get("expires_at"));
    let expires_at = match (&given, shown) {
        (Some(g), Some(s)) if g == s => None,
        _ => Some(given),
    };
    let update = TokenUpdate {
        name: blank_to_none(form.get("name")),
        repos: Some(repo_list(form.get("repos").unwrap_or(""))?),
        expires_at,
        fingerprint_required: Some(checkbox(form, "fingerprint_required")),
    };
    tokens::update(&ui.app.store, &ui.actor, id, update)?;
    Ok(redirect(&done_url(&record.owner, "updated")))
}

/// The date part of an RFC 3339 expiry, as a date input shows it.
fn expiry_date(expires_at: &str) -> &str {
    expires_at.get(..10).unwrap_or(expires_at)
}

/// The tokens page of `owner` after a change.
fn done_url(owner: &OwnerName, done: &str) -> String {
    format!(
        "/site-builder/tokens?owner={}&done={done}",
        encode(owner.as_str())
    )
}

pub(super) fn revoke_form(ui: &Ui, id: &str) -> Result<Response<Body>> {
    let record = tokens::manageable(&ui.app.store, &ui.actor, id)?;
    let t = record.view(ui.app.now());
    let body = html! {
        h1 { "Revoke token " (t.name) "?" }
        p { "Every client using it (" (t.suffix) ") is refused from its next request on. This cannot be undone." }
        form.card #revoke method="post" action=(format!("/site-builder/tokens/{}/revoke", encode(&t.id))) {
            (ui.csrf_field())
            div.actions {
                button.danger type="submit" { "Revoke" }
                a.button.secondary href="/site-builder/tokens" { "Cancel" }
            }
        }
    };
    Ok(ui.page(StatusCode::OK, "Revoke token", body))
}

pub(super) fn revoke(ui: &Ui, id: &str) -> Result<Response<Body>> {
    let record = tokens::revoke(&ui.app.store, &ui.actor, id)?;
    Ok(redirect(&done_url(&record.owner, "revoked")))
}

pub(super) fn unbind(ui: &Ui, id: &str) -> Result<Response<Body>> {
    let record = tokens::unbind(&ui.app.store, &ui.actor, id)?;
    Ok(redirect(&done_url(&record.owner, "unbound")))
}

pub(super) fn rotate(ui: &Ui, id: &str, form: &Query) -> Result<Response<Body>> {
    tokens::manageable(&ui.app.store, &ui.actor, id)?;
    let grace = match form.get("grace").map(str::trim).filter(|g| !g.is_empty()) {
        Some(g) => crate::auth::parse_duration(g)?,
        None => time::Duration::ZERO,
    };
    let rotated = tokens::rotate(&ui.app.store, &ui.actor, id, grace, ui.app.now())?;
    let owner = rotated.successor.record.owner.clone();
    let shown = Issued {
        what: format!(
            "Token {} rotated; the old one works until {}.",
            rotated.successor.record.name,
            rotated
                .previous
                .expires_at
                .as_deref()
                .unwrap_or("it is revoked")
        ),
        secret: rotated.successor.secret,
        warnings: Vec::new(),
    };
    tokens(ui, StatusCode::CREATED, Some(shown), Some(owner))
}

// ----- audit and fleet ---------------------------------------------------------

pub(super) fn audit(ui: &Ui) -> Result<Response<Body>> {
    let q = &ui.req.query;
    // Newest first (as the store answers), as a person reads a trail.
    let records = audit_records(ui.app, q, &ui.actor)?;
    let (page, pager) = paginate(ui, &records, 50);
    let field = |k: &str| q.get(k).unwrap_or("").to_string();
    let body = html! {
        h1 { "Audit trail" }
        form.card.inline-filter #audit-filter method="get" action="/site-builder/audit" {
            label { "Action " input type="text" name="action" value=(field("action")) placeholder="file.put or token"; }
            label { "Actor " input type="text" name="actor" value=(field("actor")); }
            label { "Project " input type="text" name="project" value=(field("project")) placeholder="owner/repo"; }
            label { "Since " input type="date" name="since" value=(field("since")); }
            label { "Until " input type="date" name="until" value=(field("until")); }
            button type="submit" { "Filter" }
        }
        div.table-wrap { table #audit {
            thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th.hide-narrow { "Details" } } }
            tbody {
                @for r in page {
                    tr.record {
                        td { (r.time) }
                        td { (r.actor) @if let Some(ip) = &r.ip { br; span.muted { (ip) } } }
                        td { code { (r.action) } }
                        td { (r.target) }
                        td.hide-narrow.mono { @if !r.details.is_null() { (r.details.to_string()) } }
                    }
                }
                @if records.is_empty() { tr { td colspan="5" { span.muted { "No records." } } } }
            }
        } }
        (pager)
    };
    Ok(ui.page(StatusCode::OK, "Audit", body))
}

fn yes_no(current: bool) -> Markup {
    html! {
        @if current { span.badge.ok { "current" } } @else { span.badge.bad { "behind" } }
    }
}

pub(super) fn fleet(ui: &Ui, project: &ProjectRef) -> Result<Response<Body>> {
    let project = readable(ui.app, &ui.actor, &ProjectId::Full(project.clone()))?;
    let rows = fleet_rows(ui.app, &ui.actor, &project)?;
    let behind = rows.iter().filter(|r| !r.current).count();
    let (shown, pager) = paginate(ui, &rows, 100);
    let body = html! {
        h1 { "Fleet · " (project) }
        p #fleet-summary {
            (rows.len()) " client states; "
            @if behind == 0 { "every client is current." } @else { strong { (behind) " behind." } }
        }
        div.table-wrap { table #fleet {
            thead { tr {
                th { "Branch" } th { "Token" } th { "Instance" } th { "Has" } th { "Live" } th { "Since" } th.hide-narrow { "Last seen" }
            } }
            tbody {
                @for r in shown {
                    tr.client.behind[!r.current] {
                        td { (r.branch) }
                        td { (r.token_name.as_deref().unwrap_or(&r.token_id)) }
                        td { (r.instance_id.as_deref().unwrap_or("—")) }
                        td { code { (r.short_id) } " " (yes_no(r.current)) }
                        td { code { (r.live_short_id.as_deref().unwrap_or("(branch gone)")) } }
                        td { (r.behind_since.as_deref().unwrap_or("")) }
                        td.hide-narrow { (r.last_seen) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="7" { span.muted { "No client has read this project yet." } } } }
            }
        } }
        (pager)
        p { a href=(project_url(&project)) { "Back to " (project) } }
    };
    Ok(ui.page(StatusCode::OK, "Fleet", body))
}
