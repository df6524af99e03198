//! Read-token authentication (SPEC §4), and the record of every refusal.
//!
//! The checks run in order: a token must be present, known, not revoked,
//! not expired (401); then the fingerprint (401). Scope (403) is checked
//! per project by the handlers (`read.rs`), before existence.

use std::sync::Arc;

use hyper::header::HeaderName;

use super::{App, Request};
use crate::auth::{self, FingerprintCheck, TokenRecord};
use crate::error::{Error, Result, Unauthorized};
use crate::ops::audit::Event;
use crate::ops::{self, Actor};
use crate::store::tokens::BindOutcome;

const PRIVATE_TOKEN: HeaderName = HeaderName::from_static("private-token");
pub(super) const X_INSTANCE_ID: HeaderName = HeaderName::from_static("x-instance-id");

/// The token of a read request, checked; a refusal is recorded.
pub(super) fn token(app: &App, req: &Request) -> Result<Arc<TokenRecord>> {
    check_token(app, req).inspect_err(|err| {
        record_denied(app, req, &req.actor(Actor::anonymous()), err);
    })
}

fn check_token(app: &App, req: &Request) -> Result<Arc<TokenRecord>> {
    let parts = &req.parts;
    let secret = presented_token(req)?.ok_or(Error::Unauthorized(Unauthorized::MissingToken))?;
    let record = app
        .store
        .token_by_secret(secret)?
        .ok_or(Error::Unauthorized(Unauthorized::UnknownToken))?;
    let now = app.now();
    record.check_valid(now)?;
    // Only a token that requires a fingerprint looks at the header: for
    // the others it is optional and may hold anything.
    let mismatch = || Error::Unauthorized(Unauthorized::FingerprintMismatch);
    let instance_id = match parts.headers.get(&X_INSTANCE_ID) {
        Some(v) if record.fingerprint_required => {
            // Two ids in one request could bind or match either: refuse.
            if parts.headers.get_all(&X_INSTANCE_ID).iter().count() > 1 {
                return Err(mismatch());
            }
            Some(v.to_str().map_err(|_| mismatch())?)
        }
        _ => None,
    };
    let key = app.store.server_key()?;
    if let FingerprintCheck::Bind(mac) = auth::check_fingerprint(key, &record, instance_id)? {
        // Binding takes the tokens lock and fsyncs; read requests run on the
        // async workers, so step off them for it.
        match blocking(|| app.store.bind_fingerprint(&record.mac, &mac))? {
            BindOutcome::Bound => {
                tracing::info!(token = %record.id, "fingerprint bound");
                let actor = req.actor(Actor::token(record.id.clone()));
                blocking(|| {
                    ops::audit::change(
                        &app.store,
                        &actor,
                        Event::FingerprintBind,
                        &record.id,
                        serde_json::Value::Null,
                    )
                });
            }
            BindOutcome::AlreadyBound => {}
            BindOutcome::Mismatch => return Err(mismatch()),
        }
    }
    note_use(app, &record, now);
    Ok(record)
}

/// A read admitted with `record`: its `last_used_at` and the metrics.
pub(super) fn note_use(app: &App, record: &TokenRecord, now: time::OffsetDateTime) {
    app.note_token_use(&record.mac, now);
    app.metrics.token_use();
}

/// Records a refused request (401, 403) in the audit trail, within the
/// per-address allowance (`ops::audit::DeniedLimiter`).
pub(super) fn record_denied(app: &App, req: &Request, actor: &Actor, err: &Error) {
    let event = match err {
        Error::Unauthorized(Unauthorized::FingerprintMismatch) => Event::FingerprintMismatch,
        Error::Unauthorized(_) | Error::Forbidden(_) => Event::AuthDenied,
        _ => return,
    };
    let path = req.parts.uri.path();
    let details = serde_json::json!({ "reason": err.to_string() });
    app.denied.record(&app.store, actor, event, path, details);
}

/// Runs blocking work from a request handler: on a multi-threaded tokio
/// worker it tells tokio first (`block_in_place`), so other connections
/// move to another worker; anywhere else it just runs.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// `PRIVATE-TOKEN`, `Authorization: Bearer` or `?private_token=`. Header
/// names are case-insensitive (hyper lowercases them). Credentials that
/// disagree (a repeated header, a header and a query parameter naming
/// different tokens) fail closed: which one a proxy or a client meant is
/// not ours to guess.
fn presented_token<'a>(req: &'a Request<'_>) -> Result<Option<&'a str>> {
    let bad = || Error::Unauthorized(Unauthorized::UnknownToken);
    let mut found: Option<&str> = None;
    // Records a token; a different one than seen before is an error.
    fn present<'a>(found: &mut Option<&'a str>, token: &'a str) -> Result<()> {
        match *found {
            Some(seen) if seen != token => Err(Error::Unauthorized(Unauthorized::UnknownToken)),
            _ => {
                *found = Some(token);
                Ok(())
            }
        }
    }
    for v in req.parts.headers.get_all(&PRIVATE_TOKEN) {
        present(&mut found, v.to_str().map_err(|_| bad())?.trim())?;
    }
    for v in req.parts.headers.get_all(hyper::header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| bad())?;
        let (scheme, token) = v.split_once(' ').ok_or_else(bad)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(bad());
        }
        present(&mut found, token.trim())?;
    }
    for token in req.query.get_all("private_token") {
        present(&mut found, token)?;
    }
    Ok(found)
}
