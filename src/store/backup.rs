//! Backup and restore.
//!
//! A backup is a data directory. It can be taken while the daemon serves
//! and writes, because everything it copies is immutable or append-only:
//! per branch it reads `HEAD` once, then copies every generation up to it
//! and every object those generations name. Each branch in the copy is
//! therefore exactly one state the live branch had; writes that land
//! during the backup are simply not in it. Tokens, users and the server
//! key are copied under their locks; the audit trail up to its current
//! end. Sessions and temp space are not copied.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::fsutil::{self, create_dir, fsync_dir, read_regular, LockGuard};
use super::layout::{self, Layout};
use super::{read_head, Generation, SnapshotId, Store};
use crate::error::{Error, Result};

/// What a backup copied.
#[derive(Debug, Default, Serialize)]
pub struct BackupReport {
    pub projects: usize,
    pub branches: usize,
    pub generations: usize,
    pub objects: usize,
    pub bytes: u64,
    pub tokens: usize,
    pub users: usize,
}

/// Copies one file with mode 0600 (contents are read whole: config files
/// and manifests are small). Not synced on its own: the backup syncs the
/// destination's filesystem once, at the end.
fn copy_file(from: &Path, to: &Path, report: &mut BackupReport) -> Result<()> {
    report.bytes += copy_unsynced(from, to)?;
    Ok(())
}

fn copy_unsynced(from: &Path, to: &Path) -> Result<u64> {
    let bytes = read_regular(from)?;
    fsutil::write_new_unsynced(to, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Refuses a destination that holds anything: a backup or restore never
/// mixes with other files.
fn prepare_empty(dest: &Path) -> Result<()> {
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::Conflict(format!("{} is not empty", dest.display())));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dest, fs::Permissions::from_mode(fsutil::DIR_MODE))
                .map_err(|e| Error::io(dest, e))
        }
        Err(e) => Err(Error::io(dest, e)),
    }
}

impl Store {
    /// Writes a consistent copy of the store to `dest` (new or empty).
    /// `progress` is told each project as it starts.
    pub fn backup(&self, dest: &Path, mut progress: impl FnMut(&str)) -> Result<BackupReport> {
        prepare_empty(dest)?;
        let to = Layout::new(dest);
        let from = self.layout();
        let mut report = BackupReport::default();
        create_dir(&to.internal_dir())?;
        copy_file(&from.format_file(), &to.format_file(), &mut report)?;
        // A store that never served (a copy of the example) has no key yet.
        if from.server_key().exists() {
            copy_file(&from.server_key(), &to.server_key(), &mut report)?;
        }
        {
            let _lock = LockGuard::acquire(&from.tokens_lock(), Duration::from_secs(30))?;
            report.tokens = copy_dir_files(&from.tokens_dir(), &to.tokens_dir(), &mut report)?;
        }
        {
            let _lock = LockGuard::acquire(&from.users_lock(), Duration::from_secs(30))?;
            let (src, dst) = (from.users_dir(), to.users_dir());
            report.users = copy_dir_files(&src, &dst, &mut report)?;
        }
        {
            let _lock = LockGuard::acquire(&from.audit_lock(), Duration::from_secs(30))?;
            let (src, dst) = (from.audit_log(), to.audit_log());
            if src.exists() {
                copy_file(&src, &dst, &mut report)?;
            }
        }
        fsync_dir(&to.internal_dir())?;

        for info in self.list_projects(None)? {
            let project = info.project_ref();
            progress(&project.to_string());
            report.projects += 1;
            create_dir(&to.owner_dir(&project.owner))?;
            create_dir(&to.project_dir(&project))?;
            copy_file(
                &from.project_file(&project),
                &to.project_file(&project),
                &mut report,
            )?;
            fsutil::write_new(&to.project_lock(&project), b"")?;
            // No gc while this project is copied: the contents the copied
            // versions name stay until their copies are made.
            let _objects = self.objects_in_flight(&project)?;
            create_dir(&to.branches_dir(&project))?;
            let mut objects = BTreeSet::new();
            let mut tree_ids = BTreeSet::new();
            for branch in self.branch_names(&project)? {
                report.branches += 1;
                let src = from.branch_dir(&project, &branch);
                let dst = to.branch_dir(&project, &branch);
                create_dir(&dst)?;
                // A prune waits until this branch's versions are copied.
                let _branch = LockGuard::acquire(&layout::branch_lock(&src), self.lock_timeout)?;
                let head = read_head(&src)?;
                // A pruned branch keeps its floor: versions below it are gone.
                let floor = super::backend::files::read_floor(&src)?;
                if floor.number() > 1 {
                    fsutil::write_new_unsynced(
                        &layout::floor_file(&dst),
                        format!("{floor}\n").as_bytes(),
                    )?;
                }
                let trees =
                    super::reads::BranchTrees::new(self, &project, None, false).remembering();
                for n in floor.number()..=head.number() {
                    let version = SnapshotId::new(n)?;
                    let gen_src = from.generation_file(&src, version);
                    let gen = Generation::read(&gen_src, &trees)?;
                    // Trees in their own set: a content whose bytes are a
                    // tree's is the same object, and must not stop that
                    // tree's files from being walked (as in gc).
                    gen.named_objects(&mut |tree| tree_ids.insert(tree.to_string()), &mut |hash| {
                        if !objects.contains(hash) {
                            objects.insert(hash.to_string());
                        }
                    });
                    trees.keep_only(&gen);
                    copy_file(&gen_src, &to.generation_file(&dst, version), &mut report)?;
                    report.generations += 1;
                }
                fsutil::write_new_unsynced(
                    &layout::head_file(&dst),
                    format!("{head}\n").as_bytes(),
                )?;
                fsutil::write_new_unsynced(&layout::branch_lock(&dst), b"")?;
            }
            create_dir(&to.objects_dir(&project))?;
            objects.extend(tree_ids);
            let objects: Vec<String> = objects.into_iter().collect();
            for fan in objects.iter().map(|h| &h[..2]).collect::<BTreeSet<_>>() {
                create_dir(&to.objects_dir(&project).join(fan))?;
            }
            // Contents on every core: reading and writing thousands of
            // small files is system calls, not disk bandwidth.
            let copied = super::parallel_map(&objects, |hash| {
                copy_unsynced(
                    &from.object_file(&project, hash),
                    &to.object_file(&project, hash),
                )
            });
            for bytes in copied {
                report.bytes += bytes?;
                report.objects += 1;
            }
        }
        // Everything at once: data and metadata of the whole copy.
        fsutil::sync_filesystem(dest)?;
        Ok(report)
    }
}

/// Copies the regular files of one folder (not recursive).
fn copy_dir_files(src: &Path, dst: &Path, report: &mut BackupReport) -> Result<usize> {
    create_dir(dst)?;
    let entries = match fs::read_dir(src) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(src, e)),
    };
    let mut n = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(src, e))?;
        if entry.file_type().map_err(|e| Error::io(src, e))?.is_file() {
            copy_file(&entry.path(), &dst.join(entry.file_name()), report)?;
            n += 1;
        }
    }
    fsync_dir(dst)?;
    Ok(n)
}

/// Restores a backup into `dest` (new or empty): the backup is opened and
/// verified first, then copied the same way a backup is taken, so the
/// result is checked by construction; `fsck` on it is clean.
pub fn restore(src: &Path, dest: &Path) -> Result<BackupReport> {
    // As it is: a restore never changes the backup (a 0.1 backup is
    // copied as format 1, and upgraded when the restored store is opened).
    let backup = Store::open_as_is(src)?;
    let check = backup.fsck(false)?;
    if !check.is_clean() {
        let first = &check.problems[0];
        return Err(Error::corrupt(
            &first.path,
            format!("the backup does not verify: {}", first.detail),
        ));
    }
    backup.backup(dest, |_| {})
}
