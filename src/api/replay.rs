//! Answers given again. An ERP polls the same few reads all day, and
//! between two changes of the store each is answered with the same bytes.
//! The lean path (`server::memo`) keeps such an answer by the bytes of its
//! request head and the client's address; when the same client sends the
//! same head again, this module says whether the kept answer is still the
//! one the full path would give and, if so, does what the full path does
//! besides answering — by the same functions:
//!
//! - the store's change check (`Store::revalidate`): a change by any
//!   process since the answer was made moves the read cache's epoch, and an
//!   answer of another epoch is not given again (the epoch also moves when
//!   the pointers, checked against the store once a second whatever the
//!   marker says, no longer hold: `store/cache/renew.rs`);
//! - the token: unchanged while the epoch holds (revocation, rotation,
//!   binding and scope are store changes), so only its expiry is checked
//!   again, with the app's clock;
//! - its use noted (`last_used_at`), the fleet view noted as the handler
//!   noted it, the metrics and the log line (`count_and_log`).
//!
//! Only a read admitted with a token, answered `200` or `304` from the read
//! cache's pointers alone (`from_pointers`; no pinned version), is kept:
//! refusals record their own audit lines and are answered in full every
//! time. A long poll and an answer made while the store moved are never
//! kept.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};

use super::{authn, count_and_log, Access, Admitted, App, Body, ReadEndpoint, TokenWho};
use crate::auth::TokenRecord;
use crate::names::ProjectRef;

/// What giving a kept answer again must check and do.
pub struct Replay {
    epoch: u64,
    method: Method,
    route: &'static str,
    status: StatusCode,
    token: Arc<TokenRecord>,
    noted: Vec<Noted>,
}

/// A visit a read handler noted in the fleet view (`read::served`), kept
/// to be noted again.
pub(crate) struct Noted {
    project: ProjectRef,
    instance_id: String,
    user_agent: Option<String>,
    address: Option<IpAddr>,
    states: Vec<(String, String)>,
}

impl Noted {
    pub(super) fn of(
        project: &ProjectRef,
        visit: &crate::fleet::Visit,
        states: &[(&str, &str)],
    ) -> Noted {
        Noted {
            project: project.clone(),
            instance_id: visit.instance_id.to_string(),
            user_agent: visit.user_agent.map(str::to_string),
            address: visit.address,
            states: states
                .iter()
                .map(|(b, s)| (b.to_string(), s.to_string()))
                .collect(),
        }
    }

    fn size(&self) -> usize {
        let states: usize = self
            .states
            .iter()
            .map(|(b, s)| b.len() + s.len() + 48)
            .sum();
        let project = self.project.owner.as_str().len() + self.project.repo.as_str().len();
        let agent = self.user_agent.as_ref().map_or(0, String::len);
        project + self.instance_id.len() + agent + states + 128
    }

    fn note_again(&self, app: &App, token_id: &str) {
        let visit = crate::fleet::Visit {
            token_id,
            instance_id: &self.instance_id,
            address: self.address,
            user_agent: self.user_agent.as_deref(),
            now: crate::coarse::unix_seconds() as i64,
        };
        app.fleet
            .note(&app.store, &self.project, &visit, &self.states);
    }
}

/// The reads answered from the read cache's pointers alone (a project's
/// record and branches, a branch's live version, the token): the store
/// state `Store::revalidate` checks. The projects list, blobs (found in
/// old versions too) and archives read more, and are answered in full.
fn from_pointers(endpoint: &ReadEndpoint) -> bool {
    use ReadEndpoint as R;
    match endpoint {
        R::User | R::Project { .. } | R::Branches { .. } | R::Branch { .. } => true,
        R::Tree { .. } | R::FileRaw { .. } | R::FileMeta { .. } => true,
        R::Projects | R::BlobRaw { .. } | R::Blob { .. } | R::Archive { .. } => false,
    }
}

impl Replay {
    /// The replay of an answer just given, if it was offered for that
    /// (`Admitted::offer_replay`) and may be given again.
    pub(super) fn of(
        app: &App,
        parts: &Parts,
        admitted: Admitted,
        response: &Response<Body>,
    ) -> Option<Replay> {
        let Admitted {
            route,
            access,
            long_poll,
            noting,
            epoch,
            ..
        } = admitted;
        let (noted, epoch) = (noting?, epoch?);
        let token = match access {
            Access::Read(token, endpoint) if from_pointers(&endpoint) => token,
            _ => return None,
        };
        let status = response.status();
        let kept = matches!(status, StatusCode::OK | StatusCode::NOT_MODIFIED)
            && long_poll.is_none()
            // Nothing moved while it was answered.
            && app.store.read_epoch() == Some(epoch);
        kept.then(|| Replay {
            epoch,
            method: parts.method.clone(),
            route,
            status,
            token,
            noted,
        })
    }

    /// A replay of a `GET` made in `epoch`, for the memo's own tests.
    #[cfg(test)]
    pub(crate) fn for_tests(epoch: u64) -> Replay {
        let token = TokenRecord {
            id: "t".into(),
            owner: crate::names::OwnerName::parse("acme").expect("a name"),
            name: "t".into(),
            repos: vec![],
            expires_at: None,
            fingerprint_required: false,
            fingerprint: None,
            created_at: String::new(),
            last_used_at: None,
            suffix: String::new(),
            mac: String::new(),
            revoked_at: None,
            rotated_to: None,
        };
        Replay {
            epoch,
            method: Method::GET,
            route: "test",
            status: StatusCode::OK,
            token: Arc::new(token),
            noted: vec![],
        }
    }

    /// The read cache's epoch the answer was made in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Bytes of its own it holds (the fleet visits' names), roughly.
    pub fn size(&self) -> usize {
        self.noted.iter().map(Noted::size).sum()
    }

    /// Whether the kept answer is the one the full path would give now;
    /// if so, what serving it does besides answering is done (the token's
    /// use, the fleet view, the metrics, the log line). `false`: serve the
    /// request in full (a change, an expired token, a store that cannot
    /// be checked — the full path then answers in its own words).
    pub fn again(&self, app: &App) -> bool {
        let started = Instant::now();
        let token = &self.token;
        if !matches!(app.store.revalidate(), Ok(Some(epoch)) if epoch == self.epoch) {
            return false;
        }
        let now = app.now();
        if token.check_valid(now).is_err() {
            return false;
        }
        authn::note_use(app, token, now);
        for noted in &self.noted {
            noted.note_again(app, &token.id);
        }
        let who = TokenWho(token);
        count_and_log(app, &self.method, self.route, self.status, started, who);
        true
    }
}
