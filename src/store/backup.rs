//! Backup and restore.
//!
//! A backup is a data directory, whichever backend the store is on: a
//! store in a database is backed up to one as well, and a backup restores
//! into a data directory or into an empty database. It can be taken while
//! daemons serve and write, because everything it copies is immutable or
//! append-only: per branch it takes the branch's write lock (a writer or a
//! prune of that branch waits; as for any writer, taking it finishes the
//! HEAD switch of a writer that crashed), reads the head once, then copies every
//! generation from the floor up to it and, after every branch, every
//! object those generations name (no gc meanwhile). Each branch in the
//! copy is therefore exactly one state the live branch had; writes that
//! land during the backup are simply not in it. Tokens and users are
//! copied under their kinds' locks, with the server key (so the copy's
//! tokens verify: keep a backup as safe as the key); the audit trail up
//! to its current end. Sessions, failed logins and temp space are not
//! copied.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::backend::{Load, Records};
use super::fsutil::{self, create_dir, fsync_dir, read_regular};
use super::layout::{self, Layout};
use super::location::{self, Location};
use super::retention::Named;
use super::{upgrade, ProjectRef, SnapshotId, Store};
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

/// Writes one new file with mode 0600. Not synced on its own: the backup
/// syncs the destination's filesystem once, at the end.
fn write(to: &Path, bytes: &[u8], report: &mut BackupReport) -> Result<()> {
    fsutil::write_new_unsynced(to, bytes)?;
    report.bytes += bytes.len() as u64;
    Ok(())
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
    /// Writes a consistent copy of the store to `dest` (new or empty), a
    /// data directory, whichever backend the store is on: everything is
    /// read through the backend. `progress` is told each project as it
    /// starts.
    pub fn backup(&self, dest: &Path, mut progress: impl FnMut(&str)) -> Result<BackupReport> {
        prepare_empty(dest)?;
        let to = Layout::new(dest);
        let mut report = BackupReport::default();
        create_dir(&to.internal_dir())?;
        // A data directory is copied in its own format (a backup being
        // restored may be of an older one); a database is of this one.
        let format = if self.on_database() {
            format!("{}\n", layout::FORMAT_LINE).into_bytes()
        } else {
            read_regular(&self.layout().format_file())?
        };
        write(&to.format_file(), &format, &mut report)?;
        // A store that never served (a copy of the example) has no key yet.
        if self.key_file().exists() {
            write(
                &to.server_key(),
                &read_regular(self.key_file())?,
                &mut report,
            )?;
        }
        // Under each kind's lock, as one state of it.
        for (kind, folder) in [
            (Records::Tokens, to.tokens_dir()),
            (Records::Users, to.users_dir()),
        ] {
            create_dir(&folder)?;
            let records = self.backend.change(kind, |records| records.list())?;
            for (key, bytes) in &records {
                write(&folder.join(format!("{key}.json")), bytes, &mut report)?;
            }
            match kind {
                Records::Tokens => report.tokens = records.len(),
                _ => report.users = records.len(),
            }
            fsync_dir(&folder)?;
        }
        let mut audit = Vec::new();
        self.backend.audit_lines(&mut |line| {
            audit.extend_from_slice(line);
            audit.push(b'\n');
        })?;
        if !audit.is_empty() {
            write(&to.audit_log(), &audit, &mut report)?;
        }
        fsync_dir(&to.internal_dir())?;

        for info in self.list_projects(None)? {
            let project = info.project_ref();
            progress(&project.to_string());
            report.projects += 1;
            self.copy_project(&project, &to, &mut report)?;
        }
        // Everything at once: data and metadata of the whole copy.
        fsutil::sync_filesystem(dest)?;
        Ok(report)
    }

    /// Copies one project: each branch as one state it had, and every
    /// object its kept versions name.
    fn copy_project(
        &self,
        project: &ProjectRef,
        to: &Layout,
        report: &mut BackupReport,
    ) -> Result<()> {
        create_dir(&to.owner_dir(&project.owner))?;
        create_dir(&to.project_dir(project))?;
        let record = self
            .backend
            .project(project)?
            .ok_or_else(|| Error::not_found("project", project))?;
        write(&to.project_file(project), &record, report)?;
        fsutil::write_new(&to.project_lock(project), b"")?;
        // No gc while this project is copied: the contents the copied
        // versions name stay until their copies are made.
        let _objects = self.objects_in_flight(project)?;
        create_dir(&to.branches_dir(project))?;
        let mut named = Named::default();
        for branch in self.branch_names(project)? {
            report.branches += 1;
            let dst = to.branch_dir(project, &branch);
            create_dir(&dst)?;
            let (floor, head) =
                self.walk_kept_versions(project, &branch, &mut named, |version, bytes| {
                    write(&to.generation_file(&dst, version), bytes, report)?;
                    report.generations += 1;
                    Ok(())
                })?;
            // A pruned branch keeps its floor: versions below it are gone.
            if floor.number() > 1 {
                fsutil::write_new_unsynced(
                    &layout::floor_file(&dst),
                    format!("{floor}\n").as_bytes(),
                )?;
            }
            fsutil::write_new_unsynced(&layout::head_file(&dst), format!("{head}\n").as_bytes())?;
            fsutil::write_new_unsynced(&layout::branch_lock(&dst), b"")?;
        }
        create_dir(&to.objects_dir(project))?;
        let objects: Vec<String> = named.all().into_iter().collect();
        for fan in objects.iter().map(|h| &h[..2]).collect::<BTreeSet<_>>() {
            create_dir(&to.objects_dir(project).join(fan))?;
        }
        // Contents on every core: reading and writing thousands of small
        // files (or rows) is waiting, not bandwidth.
        let copied = super::parallel_map(&objects, |hash| {
            let bytes = self.object_bytes(project, hash)?;
            fsutil::write_new_unsynced(&to.object_file(project, hash), &bytes)?;
            Ok::<_, Error>(bytes.len() as u64)
        });
        for bytes in copied {
            report.bytes += bytes?;
            report.objects += 1;
        }
        Ok(())
    }
}

/// Restores a backup into `dest` (new or empty): the backup is opened and
/// verified first, then copied the same way a backup is taken, so the
/// result is checked by construction; `fsck` on it is clean.
pub fn restore(src: &Path, dest: &Path) -> Result<BackupReport> {
    open_verified(src)?.backup(dest, |_| {})
}

/// Restores a backup into the store at `location`: a data directory (new
/// or empty) as `restore` does; a database, which must hold no store yet,
/// in one transaction, with the backup's server key written to `key_file`
/// (a new file, or one holding that same key) so its tokens verify.
/// `progress` is told each project as it starts.
pub fn restore_at(
    src: &Path,
    location: &Location,
    key_file: Option<&Path>,
    mut progress: impl FnMut(&str),
) -> Result<BackupReport> {
    if let Location::Dir(dest) = location {
        return restore(src, dest);
    }
    let backup = open_verified(src)?;
    let format = fs::read_to_string(backup.layout().format_file())
        .map_err(|e| Error::io(backup.layout().format_file(), e))?;
    if upgrade::format_of(&format, &backup.layout().format_file())? != upgrade::CURRENT {
        return Err(Error::invalid(format!(
            "{} is a backup of an older cfgstore ({}): restore it into a data directory, \
             run `cfgstore upgrade` there, back that up and restore the new backup",
            src.display(),
            format.trim_end()
        )));
    }
    let key_file = location::required_key_file(key_file)?;
    let had_key = key_file.exists();
    place_key(backup.key_file(), key_file)?;
    // Until the load commits nothing is restored: a key file made for it
    // goes if it fails.
    let forget_key = |e: Error| {
        if !had_key {
            let _ = fs::remove_file(key_file);
        }
        e
    };
    let (store, _) = Store::init_at(location, Some(key_file)).map_err(forget_key)?;
    let (load, report) = store
        .load_backup(&backup, &mut progress)
        .map_err(forget_key)?;
    // From here the store may be in force (a commit whose answer was
    // lost), so the key file stays whatever happens.
    load.finish().map_err(|e| {
        Error::invalid(format!(
            "the restore's commit failed ({e}); if the connection was lost during it, \
             the restore may have been committed: `cfgstore project list` tells"
        ))
    })?;
    // Daemons already serving this database see the store at once.
    if let Err(e) = store.note_change() {
        tracing::warn!("restored, but could not announce the change: {e}");
    }
    Ok(report)
}

/// Opens a backup as it is (a restore never changes it: an older backup
/// is copied in its own format, and upgraded when the restored store is
/// opened) and verifies it whole.
fn open_verified(src: &Path) -> Result<Store> {
    let backup = Store::open_as_is(src).map_err(|e| match e {
        Error::NotFound { what: "store", .. } => Error::not_found(
            "backup",
            format!("{} (a directory made by `cfgstore backup`)", src.display()),
        ),
        other => other,
    })?;
    let check = backup.fsck(false)?;
    if let Some(first) = check.problems.first() {
        return Err(Error::corrupt(
            &first.path,
            format!("the backup does not verify: {}", first.detail),
        ));
    }
    Ok(backup)
}

/// Writes the backup's server key to `key_file` unless that holds it
/// already. A key file holding another key is refused: the backup's
/// tokens would not verify under it.
fn place_key(backup_key: &Path, key_file: &Path) -> Result<()> {
    if !backup_key.exists() {
        return Ok(()); // a store that never served: `init` makes one
    }
    let key = read_regular(backup_key)?;
    match read_regular(key_file) {
        Ok(present) if present == key => Ok(()),
        Ok(_) => Err(Error::Conflict(format!(
            "{} holds another server key: the backup's tokens would not verify under it; \
             name a new file with --server-key-file and restore writes the backup's key there",
            key_file.display()
        ))),
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            location::write_key_file(key_file, &key)
        }
        Err(e) => Err(e),
    }
}

impl Store {
    /// Loads a verified backup into this store through its backend's
    /// `Load`: records, the audit trail (lines a crash tore are left
    /// out), then project by project its record, objects, branches and
    /// versions; in force all together when the `Load` returned finishes.
    fn load_backup(
        &self,
        backup: &Store,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(Box<dyn Load + '_>, BackupReport)> {
        let mut load = self.backend.load()?.ok_or_else(|| {
            Error::invalid("a data directory is restored by copying (cfgstore restore with --data)")
        })?;
        let mut report = BackupReport::default();
        for kind in [Records::Tokens, Records::Users] {
            let records = backup.backend.records(kind)?;
            for (key, bytes) in &records {
                load.record(kind, key, bytes)?;
                report.bytes += bytes.len() as u64;
            }
            match kind {
                Records::Tokens => report.tokens = records.len(),
                _ => report.users = records.len(),
            }
        }
        let mut lines = Vec::new();
        backup.backend.audit_lines(&mut |line| {
            if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok() {
                lines.push(line.to_vec())
            }
        })?;
        for line in &lines {
            load.audit(line)?;
        }
        for info in backup.list_projects(None)? {
            let project = info.project_ref();
            progress(&project.to_string());
            report.projects += 1;
            let record = backup
                .backend
                .project(&project)?
                .ok_or_else(|| Error::not_found("project", &project))?;
            load.project(&project, &record)?;
            for hash in backup.backend.object_hashes(&project)? {
                let bytes = backup.object_bytes(&project, &hash)?;
                load.object(&project, &hash, &bytes)?;
                report.objects += 1;
                report.bytes += bytes.len() as u64;
            }
            for branch in backup.branch_names(&project)? {
                report.branches += 1;
                let at = backup.branch_at(&project, &branch);
                let floor = backup.floor(&at)?;
                let head = backup.backend.head(&project, &branch)?;
                load.branch(&project, &branch, floor, head)?;
                for n in floor.number()..=head.number() {
                    let version = SnapshotId::new(n)?;
                    let bytes = backup.generation_bytes(&at, version)?;
                    load.generation(&project, &branch, version, &bytes)?;
                    report.generations += 1;
                    report.bytes += bytes.len() as u64;
                }
            }
        }
        Ok((load, report))
    }
}
