//! Every path inside the data directory is built here, and only here.
//!
//! ```text
//! DATA/
//!   .cfgstore/                 the store's own state (no owner can be named so)
//!     format                   "cfgstore-data 3" (`upgrade.rs`)
//!     lock                     serialises project creation
//!     server.key               HMAC key for token and fingerprint hashes (0600)
//!     changes                  a random value, replaced after every change
//!     tokens/                  one JSON record per read token
//!     tokens.lock              serialises token changes
//!     users/, sessions/        one JSON record per user and per session
//!     users.lock               serialises user and session changes
//!     audit.log, audit.lock    the audit trail (append-only) and its lock
//!     fleet/{owner}/{repoId}.json  which read clients hold which state (the
//!                              fleet view; telemetry, rewritten by the daemon)
//!     tmp/{pid}.{random}/      one scratch folder per open Store; temp files
//!                              are born here and renamed into place
//!   {owner}/{repoId}/
//!     project.json             name, type, created_at
//!     lock                     serialises branch creation in this project
//!     gc.lock                  writers hold it shared from their first new
//!                              object to their commit; `gc` exclusively
//!     objects/{ab}/{blake3}    file contents and tree objects (one per
//!                              folder of a version), immutable, shared by
//!                              every branch and snapshot of the project
//!     branches/{folder}/       one folder per branch ('/' written as %2F)
//!       lock                   serialises writers of this branch (flock)
//!       HEAD                   the live version, e.g. "v0007"
//!       FLOOR                  the oldest version kept, once a prune
//!                              dropped the ones before (absent: v0001)
//!       v0001 ... v0007        immutable generations: metadata and the
//!                              root of their tree objects (in objects/)
//! ```
//!
//! Callers hand in validated names (`crate::names`), so every path built
//! here stays inside the data directory.

use std::path::{Path, PathBuf};

use crate::names::{BranchName, OwnerName, ProjectRef, SnapshotId};

pub const INTERNAL_DIR: &str = ".cfgstore";
pub const FORMAT_FILE: &str = "format";
/// The store format this version writes (`upgrade.rs` reads the ones before).
pub const FORMAT_LINE: &str = "cfgstore-data 3";
pub const HEAD_FILE: &str = "HEAD";
pub const FLOOR_FILE: &str = "FLOOR";
pub const GC_LOCK_FILE: &str = "gc.lock";
pub const LOCK_FILE: &str = "lock";
pub const PROJECT_FILE: &str = "project.json";
pub const OBJECTS_DIR: &str = "objects";
pub const BRANCHES_DIR: &str = "branches";

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn internal_dir(&self) -> PathBuf {
        self.root.join(INTERNAL_DIR)
    }

    pub fn format_file(&self) -> PathBuf {
        self.internal_dir().join(FORMAT_FILE)
    }

    pub fn store_lock(&self) -> PathBuf {
        self.internal_dir().join(LOCK_FILE)
    }

    pub fn server_key(&self) -> PathBuf {
        self.internal_dir().join("server.key")
    }

    /// Replaced after every committed change; see `cache.rs`.
    pub fn changes_file(&self) -> PathBuf {
        self.internal_dir().join("changes")
    }

    pub fn tokens_dir(&self) -> PathBuf {
        self.internal_dir().join("tokens")
    }

    pub fn tokens_lock(&self) -> PathBuf {
        self.internal_dir().join("tokens.lock")
    }

    pub fn users_dir(&self) -> PathBuf {
        self.internal_dir().join("users")
    }

    pub fn sessions_dir(&self) -> PathBuf {
        self.internal_dir().join("sessions")
    }

    pub fn users_lock(&self) -> PathBuf {
        self.internal_dir().join("users.lock")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.internal_dir().join("audit.log")
    }

    pub fn audit_lock(&self) -> PathBuf {
        self.internal_dir().join("audit.lock")
    }

    /// The daemon's record of who read which state of a project.
    pub fn fleet_file(&self, project: &ProjectRef) -> PathBuf {
        self.internal_dir()
            .join("fleet")
            .join(project.owner.as_str())
            .join(format!("{}.json", project.repo))
    }

    pub fn scratch_parent(&self) -> PathBuf {
        self.internal_dir().join("tmp")
    }

    pub fn owner_dir(&self, owner: &OwnerName) -> PathBuf {
        self.root.join(owner.as_str())
    }

    pub fn project_dir(&self, project: &ProjectRef) -> PathBuf {
        self.owner_dir(&project.owner).join(project.repo.as_str())
    }

    pub fn project_file(&self, project: &ProjectRef) -> PathBuf {
        self.project_dir(project).join(PROJECT_FILE)
    }

    pub fn project_lock(&self, project: &ProjectRef) -> PathBuf {
        self.project_dir(project).join(LOCK_FILE)
    }

    /// Shared by writers while their new objects are not yet referenced
    /// by a committed version; exclusive for `gc`.
    pub fn gc_lock(&self, project: &ProjectRef) -> PathBuf {
        self.project_dir(project).join(GC_LOCK_FILE)
    }

    pub fn objects_dir(&self, project: &ProjectRef) -> PathBuf {
        self.project_dir(project).join(OBJECTS_DIR)
    }

    /// Objects fan out over 256 folders by the first two hex digits.
    pub fn object_file(&self, project: &ProjectRef, hash: &str) -> PathBuf {
        object_in(&self.objects_dir(project), hash)
    }

    pub fn branches_dir(&self, project: &ProjectRef) -> PathBuf {
        self.project_dir(project).join(BRANCHES_DIR)
    }

    pub fn branch_dir(&self, project: &ProjectRef, branch: &BranchName) -> PathBuf {
        self.branches_dir(project).join(branch.folder_name())
    }

    pub fn generation_file(&self, branch_dir: &Path, version: SnapshotId) -> PathBuf {
        branch_dir.join(version.to_string())
    }
}

/// A branch's writer lock, in its folder.
pub fn branch_lock(branch_dir: &Path) -> PathBuf {
    branch_dir.join(LOCK_FILE)
}

/// An object of the project a branch folder belongs to (its folder is
/// `{project}/branches/{branch}`).
pub fn object_of_branch(branch_dir: &Path, hash: &str) -> Option<PathBuf> {
    Some(
        objects_of_branch(branch_dir)?
            .join(hash.get(..2)?)
            .join(hash),
    )
}

/// An object in an object folder: `{ab}/{hash}` (a hash is 64 hex digits).
pub fn object_in(objects: &Path, hash: &str) -> PathBuf {
    objects.join(hash.get(..2).unwrap_or(hash)).join(hash)
}

/// The object folder of the project a branch folder belongs to.
pub fn objects_of_branch(branch_dir: &Path) -> Option<PathBuf> {
    Some(branch_dir.parent()?.parent()?.join(OBJECTS_DIR))
}

/// A branch's HEAD, in its folder.
/// The oldest version a branch keeps (`history prune`).
pub fn floor_file(branch_dir: &Path) -> PathBuf {
    branch_dir.join(FLOOR_FILE)
}

pub fn head_file(branch_dir: &Path) -> PathBuf {
    branch_dir.join(HEAD_FILE)
}

/// Reads a generation file name (`v0001`) back into its version, for
/// listings of a branch folder. Anything else is `None`.
pub fn parse_generation_name(name: &str) -> Option<SnapshotId> {
    let id = SnapshotId::parse(name).ok()?;
    // Only the canonical spelling is ours: `v1` next to `v0001` is not.
    (id.to_string() == name).then_some(id)
}
