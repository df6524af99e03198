//! `fsck`: verifies a whole store against what it promises, and
//! optionally repairs what can be repaired safely.
//!
//! Checked on every store, through its backend: every kept version parses,
//! each of its tree objects exists and hashes to its name, and its
//! `short_id`, `commit_id`, file count, change counts and parent summary
//! recompute; every content a tree (or a format-1 or -2 manifest) names
//! exists and hashes to its name, size, md5 and git blob id; version
//! numbers run without gaps from the floor to the head, and the head names
//! the newest version; versions below the floor (an interrupted prune's)
//! are reported. On a data directory also: contents are regular files; no
//! symlinks, hard links, FIFOs or other special files; no temp leftovers;
//! files 0600 and folders 0700. On a database the head and its version
//! commit together, so a head behind is damage, not a crash.
//!
//! Repairs (`--repair`): versions below the floor removed, HEAD rolled
//! forward, permissions tightened, abandoned scratch folders removed.
//! Nothing else that holds data is deleted: unreferenced objects are
//! reported, not collected (that is `gc`), because a concurrent writer may
//! be about to reference them.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};
use serde::Serialize;
use walkdir::WalkDir;

use super::backend::files::{read_floor, remove_below};
use super::fsutil::{self, hex, LockGuard};
use super::generation::{compute_ids, Generation};
use super::layout::{self, FLOOR_FILE, HEAD_FILE, LOCK_FILE};
use super::{read_head, BranchName, ProjectRef, SnapshotId, Store};
use crate::error::{Error, Result};

/// One thing fsck found wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub detail: String,
    pub repaired: bool,
}

/// What fsck looked at and what it found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub projects: usize,
    pub branches: usize,
    pub generations: usize,
    pub objects_verified: usize,
    pub unreferenced_objects: usize,
    pub problems: Vec<Problem>,
}

impl Report {
    /// True when nothing is wrong that was not repaired.
    pub fn is_clean(&self) -> bool {
        self.problems.iter().all(|p| p.repaired)
    }

    fn problem(&mut self, path: impl Into<PathBuf>, detail: impl Into<String>, repaired: bool) {
        self.problems.push(Problem {
            path: path.into(),
            detail: detail.into(),
            repaired,
        });
    }
}

impl Store {
    /// Verifies every version, tree and content against what the store
    /// promises, and on a data directory every folder and file. With
    /// `repair`, fixes what is safe to fix (see the module docs).
    pub fn fsck(&self, repair: bool) -> Result<Report> {
        let mut report = Report::default();
        if !self.on_database() {
            self.check_entries(repair, &mut report)?;
        }
        for project in self.list_projects(None)? {
            report.projects += 1;
            self.check_project(&project.project_ref(), repair, &mut report)?;
        }
        Ok(report)
    }

    /// Walks every entry under the root: kinds, links, permissions, strays.
    fn check_entries(&self, repair: bool, report: &mut Report) -> Result<()> {
        let root = self.root();
        let scratch_parent = self.layout().scratch_parent();
        for leftover in fsutil::Scratch::sweep_abandoned(&scratch_parent, repair)? {
            report.problem(leftover, "leftover temp space of a dead process", repair);
        }
        let mut walker = WalkDir::new(root).follow_links(false).into_iter();
        while let Some(item) = walker.next() {
            let entry = match item {
                Ok(entry) => entry,
                Err(e) => {
                    let path = e
                        .path()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| root.to_path_buf());
                    report.problem(path, format!("cannot read: {e}"), false);
                    continue;
                }
            };
            let path = entry.path();
            if path == scratch_parent {
                // Temp space of live processes: theirs, not ours to judge.
                walker.skip_current_dir();
                continue;
            }
            let meta = entry.metadata().map_err(|e| Error::io(path, e.into()))?;
            let kind = meta.file_type();
            if kind.is_symlink() {
                report.problem(path, "unexpected symbolic link", false);
                continue;
            }
            if !kind.is_file() && !kind.is_dir() {
                report.problem(
                    path,
                    "unexpected special file (FIFO, socket or device)",
                    false,
                );
                continue;
            }
            if kind.is_file() && meta.nlink() > 1 {
                report.problem(
                    path,
                    format!(
                        "file has {} hard links; the store never makes any",
                        meta.nlink()
                    ),
                    false,
                );
            }
            let want = if kind.is_dir() {
                fsutil::DIR_MODE
            } else {
                fsutil::FILE_MODE
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                if repair {
                    fs::set_permissions(path, fs::Permissions::from_mode(want))
                        .map_err(|e| Error::io(path, e))?;
                }
                report.problem(
                    path,
                    format!("permissions {mode:o}, expected {want:o}"),
                    repair,
                );
            }
        }
        Ok(())
    }

    fn check_project(&self, project: &ProjectRef, repair: bool, report: &mut Report) -> Result<()> {
        let mut seen = Seen::default();
        for branch in self.branches_to_check(project, report)? {
            report.branches += 1;
            let (floor, versions) = if self.on_database() {
                self.check_branch_rows(project, &branch, repair, report)?
            } else {
                self.check_branch_folder(project, &branch, repair, report)?
            };
            // Every tree object is read once and checked against its name.
            let trees = super::reads::BranchTrees::new(self, project, None, true).remembering();
            let dir = self.layout().branch_dir(project, &branch);
            self.check_versions(
                (&trees, &dir),
                project,
                &branch,
                (floor, &versions),
                report,
                &mut seen,
            )?;
        }
        let checked = super::parallel_map(&seen.pending, |p| {
            let bytes = self.backend.object(project, &p.hash);
            verify_object(bytes, p)
                .map_err(|detail| (self.layout().object_file(project, &p.hash), detail))
        });
        for (p, result) in seen.pending.iter().zip(checked) {
            match result {
                Ok(()) => report.objects_verified += 1,
                Err((object, detail)) => {
                    report.problem(&object, format!("{detail} ({})", p.seen_as), false)
                }
            }
        }
        for hash in self.backend.object_hashes(project)? {
            if !seen.referenced.contains(&hash) {
                report.unreferenced_objects += 1;
            }
        }
        Ok(())
    }

    /// The branches of a project; on a data directory, every folder under
    /// `branches/` whose name is not a branch's is reported.
    fn branches_to_check(
        &self,
        project: &ProjectRef,
        report: &mut Report,
    ) -> Result<Vec<BranchName>> {
        if self.on_database() {
            return self.backend.branch_names(project);
        }
        let branches_dir = self.layout().branches_dir(project);
        let mut branches = Vec::new();
        for name in super::sorted_names(&branches_dir, |n| Some(n.to_string()))? {
            match BranchName::from_folder_name(&name) {
                Ok(branch) if branch.folder_name() == name => branches.push(branch),
                _ => {
                    report.branches += 1;
                    report.problem(
                        branches_dir.join(&name),
                        "folder name is not a valid branch",
                        false,
                    );
                }
            }
        }
        Ok(branches)
    }

    /// A branch in a database: its stored versions against its floor and
    /// head. Returns the floor and the versions to check (those from the
    /// floor up).
    fn check_branch_rows(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        repair: bool,
        report: &mut Report,
    ) -> Result<(SnapshotId, BTreeSet<SnapshotId>)> {
        let dir = self.layout().branch_dir(project, branch);
        // Read under the branch's lock, so that no write or prune moves
        // them between the reads. With the lock busy (a writer at work),
        // versions past the head read are that writer's, and the head is
        // not judged.
        let mut lock = match self.backend.lock_branch(project, branch, QUIET) {
            Ok(lock) => Some(lock),
            Err(Error::Busy(_)) => None,
            Err(e) => return Err(e),
        };
        let head = match &lock {
            Some(lock) => lock.head(),
            None => self.backend.head(project, branch)?,
        };
        let floor = self.backend.floor(project, branch)?;
        let mut stored: BTreeSet<SnapshotId> = self
            .backend
            .stored_versions(project, branch)?
            .into_iter()
            .collect();
        if lock.is_none() {
            stored.retain(|v| *v <= head);
        }
        let versions = below_floor(&dir, stored, floor, report, || {
            repair
                && lock
                    .as_mut()
                    .is_some_and(|lock| lock.remove_below_floor().is_ok())
        });
        // A version and the head that names it commit together: a head
        // elsewhere than the newest version is damage, not a crash.
        match versions.iter().next_back() {
            Some(&newest) if lock.is_some() && newest != head => report.problem(
                &dir,
                format!("head names {head} but {newest} is the newest stored version"),
                false,
            ),
            _ => {}
        }
        Ok((floor, versions))
    }

    /// A branch folder: its entries, floor and HEAD. Returns the floor and
    /// the versions to check (those from the floor up).
    fn check_branch_folder(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        repair: bool,
        report: &mut Report,
    ) -> Result<(SnapshotId, BTreeSet<SnapshotId>)> {
        let dir = self.layout().branch_dir(project, branch);
        let mut versions = BTreeSet::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match layout::parse_generation_name(&name) {
                Some(v) => {
                    versions.insert(v);
                }
                None if name == HEAD_FILE || name == LOCK_FILE || name == FLOOR_FILE => {}
                None => report.problem(entry.path(), "unexpected entry in a branch folder", false),
            }
        }
        // Versions below the floor are what an interrupted prune left.
        let floor = match read_floor(&dir) {
            Ok(floor) => floor,
            Err(e) => {
                report.problem(layout::floor_file(&dir), e.to_string(), false);
                SnapshotId::new(1).expect("v0001")
            }
        };
        let versions = below_floor(&dir, versions, floor, report, || {
            let quiet = LockGuard::try_acquire(&layout::branch_lock(&dir))
                .ok()
                .flatten();
            repair && quiet.is_some() && remove_below(&dir, floor).is_ok()
        });
        let Some(&newest) = versions.iter().next_back() else {
            return Ok((floor, versions));
        };
        // A writer between its commit rename and its HEAD update holds the
        // lock; only a HEAD behind with the lock free is a problem.
        let quiet = LockGuard::try_acquire(&layout::branch_lock(&dir))?;
        match read_head(&dir) {
            Ok(head) if head == newest => {}
            _ if quiet.is_none() => {}
            other => {
                let what = match other {
                    Ok(head) => {
                        format!("HEAD names {head} but {newest} is the newest complete version")
                    }
                    Err(e) => format!("HEAD unreadable ({e})"),
                };
                let mut repaired = false;
                if repair {
                    self.files().recover_branch(&dir)?;
                    repaired = true;
                }
                report.problem(layout::head_file(&dir), what, repaired);
            }
        }
        Ok((floor, versions))
    }

    /// Checks a branch's versions from its floor up, read through the
    /// backend (`trees` for their tree objects): each parses, its ids,
    /// change counts and parent summary recompute, and every content it
    /// names is queued in `seen` to be read and hashed.
    fn check_versions(
        &self,
        (trees, dir): (&super::reads::BranchTrees<'_>, &Path),
        project: &ProjectRef,
        branch: &BranchName,
        (floor, versions): (SnapshotId, &BTreeSet<SnapshotId>),
        report: &mut Report,
        seen: &mut Seen,
    ) -> Result<()> {
        let Some(newest) = versions.iter().next_back() else {
            report.problem(dir, "branch has no versions", false);
            return Ok(());
        };
        // Every version from the floor to the newest (all are at or above
        // the floor by now).
        if versions.len() as u64 != newest.number() - floor.number() + 1 {
            report.problem(dir, "version numbers have gaps", false);
        }
        let mut previous: Option<Generation> = None;
        let mut walked_trees = HashSet::new();
        for &version in versions {
            report.generations += 1;
            let path = self.layout().generation_file(dir, version);
            let bytes = match self.backend.generation(project, branch, version) {
                Ok(Some(bytes)) => Ok(bytes),
                // Pruned since the versions were listed: gone, not damaged.
                Ok(None) if self.backend.floor(project, branch)? > version => {
                    report.generations -= 1;
                    previous = None;
                    continue;
                }
                Ok(None) => Err(Error::corrupt(&path, "version missing")),
                Err(e) => Err(e),
            };
            let gen = match bytes.and_then(|bytes| Generation::parse(&path, &bytes, trees)) {
                Ok(gen) => gen,
                Err(e) => {
                    report.problem(&path, e.to_string(), false);
                    previous = None;
                    continue;
                }
            };
            if gen.meta.version != version {
                report.problem(
                    &path,
                    format!("file says it is {}", gen.meta.version),
                    false,
                );
            }
            let (short_id, commit_id) = match gen.meta.tree {
                Some(_) => gen.root().ids(false),
                None => compute_ids(gen.entries()),
            };
            if short_id != gen.meta.short_id || commit_id != gen.meta.commit_id {
                report.problem(
                    &path,
                    format!(
                        "short_id recomputes to {short_id}, recorded {}",
                        gen.meta.short_id
                    ),
                    false,
                );
            }
            // Change counts (recorded since 0.2; older versions have none)
            // must be what the manifests say.
            if let Some(recorded) = gen.meta.changes {
                let before = match (&gen.meta.parent, &previous) {
                    (None, _) => Some(None),
                    (Some(_), Some(prev)) => Some(Some(prev)),
                    (Some(_), None) => None, // the previous one is unreadable: reported above
                };
                if let Some(before) = before {
                    let counted = match before {
                        // Two versions with trees: compared folder by folder.
                        Some(prev) if prev.meta.tree.is_some() && gen.meta.tree.is_some() => {
                            super::trees::Node::changes(prev.root(), gen.root())
                        }
                        // A version of format 1 or 2 on either side (whose
                        // entries may lack git ids): compared by manifest.
                        Some(prev) => super::ChangeCounts::between(prev.entries(), gen.entries()),
                        None => super::ChangeCounts::between(&[], gen.entries()),
                    };
                    if counted != recorded {
                        report.problem(
                            &path,
                            format!(
                                "change counts recompute to {counted:?}, recorded {recorded:?}"
                            ),
                            false,
                        );
                    }
                }
            }
            if let (Some(prev), Some(parent)) = (&previous, &gen.meta.parent) {
                if parent.version != prev.meta.version
                    || parent.short_id != prev.meta.short_id
                    || parent.file_count != prev.meta.file_count
                {
                    report.problem(
                        &path,
                        "parent summary does not match the previous version",
                        false,
                    );
                }
            }
            // Each content is read and hashed once, on every core, by
            // `check_project` once every branch is walked.
            let mut check = |path: String, hash: &str, git: &str, size: u64, md5: &str| {
                seen.referenced.insert(hash.to_string());
                if seen.verified.insert(hash.to_string()) {
                    seen.pending.push(Pending {
                        hash: hash.to_string(),
                        git: git.to_string(),
                        size,
                        md5: md5.to_string(),
                        seen_as: format!("file {path} in {version}"),
                    });
                }
            };
            if gen.meta.tree.is_some() {
                let mut files = Vec::new();
                gen.root().walk_objects(
                    &mut String::new(),
                    &mut |tree| walked_trees.insert(tree.to_string()),
                    &mut |prefix, file| files.push((format!("{prefix}{}", file.name()), file)),
                );
                for (path, file) in files {
                    check(path, file.hash(), file.git(), file.size(), file.md5());
                }
                trees.keep_only(&gen);
            } else {
                for e in gen.entries() {
                    check(e.path.to_string(), &e.hash, &e.git, e.size, &e.md5);
                }
            }
            previous = Some(gen);
        }
        seen.referenced.extend(walked_trees);
        Ok(())
    }
}

/// How long `--repair` waits for a branch's writer before leaving what it
/// found for the next run.
const QUIET: Duration = Duration::from_millis(200);

/// Reports the versions below `floor` (what an interrupted prune left),
/// removed if `repair` says it did so; returns the rest.
fn below_floor(
    dir: &Path,
    mut versions: BTreeSet<SnapshotId>,
    floor: SnapshotId,
    report: &mut Report,
    repair: impl FnOnce() -> bool,
) -> BTreeSet<SnapshotId> {
    let leftovers = versions.iter().filter(|v| **v < floor).count();
    if leftovers > 0 {
        report.problem(
            dir,
            format!("{leftovers} version(s) below FLOOR {floor}, left by an interrupted prune"),
            repair(),
        );
        versions.retain(|v| *v >= floor);
    }
    versions
}

/// What a project's versions name, gathered branch by branch.
#[derive(Default)]
struct Seen {
    /// Every object named (contents and trees).
    referenced: HashSet<String>,
    /// Contents queued once each.
    verified: HashSet<String>,
    pending: Vec<Pending>,
}

/// A content to read and check against its manifest record.
struct Pending {
    hash: String,
    /// The git blob id the manifest records (empty in format 1).
    git: String,
    size: u64,
    md5: String,
    /// Where a manifest names it, for the report.
    seen_as: String,
}

/// Checks an object, as the backend read it, against the manifest's record.
fn verify_object(read: Result<Option<Vec<u8>>>, p: &Pending) -> std::result::Result<(), String> {
    let (hash, size, md5) = (p.hash.as_str(), p.size, p.md5.as_str());
    let bytes = read
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "content missing".to_string())?;
    if bytes.len() as u64 != size {
        return Err(format!("size {} but the manifest says {size}", bytes.len()));
    }
    if blake3::hash(&bytes).to_hex().as_str() != hash {
        return Err("content does not match its hash".into());
    }
    if hex(&Md5::digest(&bytes)) != md5 {
        return Err("content does not match its md5".into());
    }
    if !p.git.is_empty() && super::generation::git_blob_id(&bytes) != p.git {
        return Err("content does not match its git blob id".into());
    }
    Ok(())
}
