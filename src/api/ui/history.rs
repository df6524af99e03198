//! The UI's pages of a branch's past: its history, compare (two states,
//! of one branch or two), and rollback with a preview of what it changes.

use hyper::{Response, StatusCode};
use maud::{html, Markup};

use super::content::{crumbs, encode, flash, project_url, readable_at, writable_live};
use super::{branch_url, redirect, Ui};
use crate::api::request::Query;
use crate::api::route::At;
use crate::api::Body;
use crate::auth::roles::Action;
use crate::error::{Error, Result};
use crate::names::{ProjectRef, SnapshotId};
use crate::ops::content as ops;

pub(super) fn history(ui: &Ui, at: &At) -> Result<Response<Body>> {
    let project = readable_at(ui, &at.project)?;
    let versions = ui.app.store.history(&project, &at.branch)?;
    let writable = ui.may(Action::Write, &project);
    let (page, pager) = paginate(ui, &versions, 50);
    // Each version's predecessor still kept (after a prune, the oldest
    // kept version has none).
    let before: std::collections::HashMap<SnapshotId, SnapshotId> = versions
        .windows(2)
        .map(|w| (w[0].version, w[1].version))
        .collect();
    let base = branch_url(at);
    let compare = format!("{}/compare", project_url(&project));
    let b = at.branch.as_str();
    let body = html! {
        h1 { "History of " (at.branch) }
        (crumbs(at, None))
        (flash(ui))
        div.table-wrap { table #history {
            thead { tr {
                th { "Version" } th { "When" } th { "Who" } th { "What" } th { "Changes" } th { "short_id" } th {}
            } }
            tbody {
                @for v in page {
                    tr.version {
                        td {
                            a href=(format!("{base}/v/{}/tree", v.version)) { (v.version) }
                            @if v.live { span.badge.ok { "live" } }
                        }
                        td { (v.created_at) }
                        td { (v.actor) }
                        td { (v.action) }
                        td.mono { "+" (v.added) " ~" (v.changed) " −" (v.removed) }
                        td { code.short-id { (v.short_id) } }
                        td {
                            @if let Some(prev) = before.get(&v.version) {
                                a.compare href=(format!("{compare}?from={}&to={}",
                                    encode(&format!("{b}@{prev}")),
                                    encode(&format!("{b}@{}", v.version)))) { "Changes" }
                                " "
                            }
                            @if writable && !v.live {
                                a.rollback href=(format!("{base}/rollback?to={}", v.version)) { "Roll back to this" }
                            }
                        }
                    }
                }
            }
        } }
        (pager)
    };
    Ok(ui.page(StatusCode::OK, &format!("History of {}", at.branch), body))
}

/// A page of `items` (`?page=`, from 1) and the links to the others.
pub(super) fn paginate<'a, T>(ui: &Ui, items: &'a [T], per_page: usize) -> (&'a [T], Markup) {
    let pages = items.len().div_ceil(per_page).max(1);
    let page = ui
        .req
        .query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let start = (page - 1) * per_page;
    let slice = &items[start.min(items.len())..(start + per_page).min(items.len())];
    // The query as sent, but for its page (as the API's `Link` headers).
    let link = |n: usize| {
        format!(
            "{}?{}",
            ui.req.parts.uri.path(),
            ui.req.query.with_page(n as u64)
        )
    };
    let pager = html! {
        @if pages > 1 {
            nav.pager {
                @if page > 1 { a rel="prev" href=(link(page - 1)) { "← Newer" } }
                span.muted { "Page " (page) " of " (pages) " (" (items.len()) ")" }
                @if page < pages { a rel="next" href=(link(page + 1)) { "Older →" } }
            }
        }
    };
    (slice, pager)
}

pub(super) fn diff_block(diff: &str) -> Markup {
    html! {
        pre.diff {
            @for line in diff.lines() {
                @let class = if line.starts_with("+++") || line.starts_with("---") {
                    "head"
                } else if line.starts_with('+') {
                    "add"
                } else if line.starts_with('-') {
                    "del"
                } else {
                    "ctx"
                };
                span class=(class) { (line) } "\n"
            }
        }
    }
}

fn comparison_view(c: &crate::compare::Comparison) -> Markup {
    html! {
        p #summary {
            code { (c.from.reference) } " (" (c.from.short_id) ") → "
            code { (c.to.reference) } " (" (c.to.short_id) "): "
            (c.added) " added, " (c.modified) " changed, " (c.removed) " removed."
        }
        @for f in &c.files {
            section.card.file-change {
                h2 { (f.path) " " span.badge { (format!("{:?}", f.status).to_lowercase()) } }
                @if f.diff.is_empty() {
                    p.muted { "No text diff (a binary file)." }
                } @else {
                    (diff_block(&f.diff))
                }
            }
        }
    }
}

pub(super) fn compare(ui: &Ui, project: &ProjectRef) -> Result<Response<Body>> {
    let project = readable_at(ui, project)?;
    let from = ui.req.query.get("from").unwrap_or("").trim();
    let to = ui.req.query.get("to").unwrap_or("").trim();
    let comparison = if !from.is_empty() && !to.is_empty() {
        Some(crate::compare::compare(&ui.app.store, &project, from, to)?)
    } else {
        None
    };
    let body = html! {
        h1 { "Compare · " (project) }
        form.card.inline-filter #compare-form method="get" action=(format!("{}/compare", project_url(&project))) {
            label { "From " input type="text" name="from" value=(from) placeholder="main@v0001" required; }
            label { "To " input type="text" name="to" value=(to) placeholder="main" required; }
            button type="submit" { "Compare" }
        }
        p.muted { "A side is a branch (its live state), branch@vNNNN, or a commit id." }
        @if let Some(c) = &comparison { (comparison_view(c)) }
    };
    Ok(ui.page(StatusCode::OK, "Compare", body))
}

fn rollback_target(q: &Query) -> Result<SnapshotId> {
    SnapshotId::parse(
        q.get("to")
            .ok_or_else(|| Error::invalid("to is missing (a version such as v0003)"))?,
    )
}

pub(super) fn rollback_preview(ui: &Ui, at: &At) -> Result<Response<Body>> {
    let (project, gen) = writable_live(ui, at)?;
    let to = rollback_target(&ui.req.query)?;
    let b = at.branch.as_str();
    let c = crate::compare::compare(&ui.app.store, &project, b, &format!("{b}@{to}"))?;
    let body = html! {
        h1 { "Roll " (at.branch) " back to " (to) "?" }
        (crumbs(at, None))
        p { "A new version is made with the files of " (to) "; every version stays in the history. What changes against the live state:" }
        (comparison_view(&c))
        form.card #rollback method="post" action=(format!("{}/rollback", branch_url(at))) {
            (ui.csrf_field())
            input type="hidden" name="to" value=(to);
            input type="hidden" name="short_id" value=(gen.meta.short_id);
            div.actions {
                button.danger type="submit" { "Roll back to " (to) }
                a.button.secondary href=(format!("{}/history", branch_url(at))) { "Cancel" }
            }
        }
    };
    Ok(ui.page(StatusCode::OK, "Roll back", body))
}

pub(super) fn rollback(ui: &Ui, at: &At, form: &Query) -> Result<Response<Body>> {
    let (project, gen) = writable_live(ui, at)?;
    let to = rollback_target(form)?;
    // The preview was of the state then: a change since is reported.
    if let Some(seen) = form.get("short_id").filter(|s| !s.is_empty()) {
        if seen != gen.meta.short_id {
            return Err(Error::Conflict(format!(
                "branch {} is at {} now, not {seen}: look at the preview again",
                at.branch, gen.meta.short_id
            )));
        }
    }
    let outcome = ops::rollback(&ui.app.store, &ui.actor, &project, &at.branch, to)?;
    ui.app.metrics.rollback();
    Ok(redirect(&format!(
        "{}/history?done=rolled_back&v={}",
        branch_url(at),
        outcome.version
    )))
}
