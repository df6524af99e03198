//! Pointers past their age limit, checked instead of dropped.
//!
//! The read cache lets no pointer live longer than a second without a look
//! at the store, so a writer that committed but could not replace the
//! change marker is in force within a second. Dropping the pointers for
//! that look also moves the epoch, which ends every answer made from them
//! (the server's kept answers too): once a second every client's next
//! request would be served in full again. So when the pointers are few,
//! they are checked against the store instead (`Store::pointers_hold`: one
//! small read each, a project's record, its branch names, a branch's HEAD,
//! a token's record). Unchanged, they are kept and the epoch stays; one
//! that differs or cannot be read, or a pointer replaced by another value
//! within the epoch (two readers saw two states: a change without a
//! marker), drops them all, as before. A project's answers
//! (`Store::project_answer`) are made from these same pointers, so they
//! hold when the pointers do.

use super::*;

/// Pointers checked at most; more are dropped, as before (checking them
/// would cost more than reading them again when asked).
/// (Requests wait while one request checks: a few dozen small reads.)
const MOST_CHECKED: usize = 64;

/// The pointers to check against the store, as the cache holds them.
pub(crate) struct Held {
    pub projects: Vec<(ProjectRef, Option<Arc<ProjectInfo>>)>,
    pub branch_names: Vec<(ProjectRef, Arc<Vec<BranchName>>)>,
    /// A branch and the version its live generation is.
    pub live: Vec<(ProjectRef, BranchName, SnapshotId)>,
    pub tokens: Vec<([u8; 32], Option<Arc<TokenRecord>>)>,
}

impl Pointers {
    /// Past the age limit (or never looked at).
    fn due(&self) -> bool {
        let now = crate::coarse::monotonic();
        self.cleared_at
            .is_none_or(|t| now.saturating_sub(t) >= POINTER_MAX_AGE)
    }

    /// What to check, unless the pointers are too many or one was
    /// replaced within the epoch.
    fn held(&self) -> Option<Held> {
        let live: usize = self.live.values().map(|branches| branches.len()).sum();
        let count = self.projects.len() + self.branch_names.len() + live + self.tokens.len();
        if self.replaced || count > MOST_CHECKED {
            return None;
        }
        fn pairs<V: Clone>(map: &HashMap<ProjectRef, V>) -> Vec<(ProjectRef, V)> {
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        Some(Held {
            projects: pairs(&self.projects),
            branch_names: pairs(&self.branch_names),
            live: self
                .live
                .iter()
                .flat_map(|(project, branches)| {
                    branches
                        .iter()
                        .map(|(branch, gen)| (project.clone(), branch.clone(), gen.meta.version))
                })
                .collect(),
            tokens: self.tokens.iter().map(|(k, v)| (*k, v.clone())).collect(),
        })
    }
}

impl ReadCache {
    /// Pointers past their age limit: kept when `hold` says the store
    /// still says the same, else dropped. One check at a time: a request
    /// that finds one running waits for its outcome, so none is answered
    /// from pointers older than the limit without a look at the store.
    /// Returns the epoch after it.
    pub(super) fn check_old_pointers(&self, hold: &dyn Fn(&Held) -> bool) -> u64 {
        {
            let p = self.pointers.lock().expect("cache");
            if !p.due() {
                return p.epoch;
            }
        }
        let _checking = self.checking.lock().expect("cache");
        let started = crate::coarse::monotonic();
        let (held, epoch) = {
            let mut p = self.pointers.lock().expect("cache");
            if !p.due() {
                return p.epoch;
            }
            match p.held() {
                Some(held) => (held, p.epoch),
                None => {
                    p.clear();
                    return p.epoch;
                }
            }
        };
        let holds = hold(&held);
        let mut p = self.pointers.lock().expect("cache");
        if p.epoch != epoch {
            // Dropped meanwhile: a change was seen.
        } else if holds && !p.replaced {
            // As old as the check's first read; a value read before the
            // check and stored after it is refused (`Epoch::checks`).
            p.cleared_at = Some(started);
            p.checks += 1;
        } else {
            p.clear();
        }
        p.epoch
    }
}
