//! Store formats, and the upgrade from the ones before.
//!
//! `.cfgstore/format` names the format of the whole store:
//! - `cfgstore-data 1` (cfgstore 0.1): each version file lists its files,
//!   without git blob ids;
//! - `cfgstore-data 2`: the same list with the git blob id of each file;
//! - `cfgstore-data 3` (this version): a version file names the root of
//!   its tree objects, one per folder (`trees.rs`, `generation.rs`).
//!
//! `Store::open` upgrades an older store in place, once, under the store's
//! lock: each version file of format 1 or 2 gets its git blob ids (read
//! from the contents, format 1), its trees are stored as objects, and the
//! file is replaced atomically by its format-3 form; the format line is
//! written last. Nothing else changes: versions, `short_id`s and commit ids
//! (md5-based), tokens, users and sessions are as they were. An upgrade cut
//! short by a crash leaves some files rewritten and the old format line,
//! and the next open finishes it. A store of a format newer than this
//! binary knows is refused, saying so.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::fsutil::{read_regular, LockGuard};
use super::generation::{git_blob_id, is_flat, Entry, Generation};
use super::layout::{self, FORMAT_LINE};
use super::Store;
use crate::error::{Error, Result};

/// The format line of cfgstore 0.1 stores.
pub const FORMAT_1: &str = "cfgstore-data 1";
/// Version files with git blob ids, no trees.
pub const FORMAT_2: &str = "cfgstore-data 2";
/// The format this binary writes.
pub const CURRENT: u32 = 3;

/// What an upgrade did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpgradeReport {
    pub from: u32,
    pub to: u32,
    /// Version files rewritten as trees.
    pub versions: u64,
    /// Contents read to compute them.
    pub contents: u64,
}

/// Gives every entry without a git blob id (a format-1 entry) the id of
/// its content, read from `object(hash)` and checked against its hash;
/// `known` remembers the ids computed so far (hash → id). Returns how many
/// contents were read. The one place format-1 entries are completed: the
/// upgrade, a generation loaded (`load_generation`) and a commit.
pub(super) fn fill_git_ids<'e>(
    entries: impl IntoIterator<Item = &'e mut Entry>,
    object: impl Fn(&str) -> Result<PathBuf>,
    known: &mut HashMap<String, String>,
) -> Result<u64> {
    let mut read = 0;
    for entry in entries.into_iter().filter(|e| e.git.is_empty()) {
        if let Some(git) = known.get(&entry.hash) {
            entry.git = git.clone();
            continue;
        }
        let path = object(&entry.hash)?;
        let bytes = read_regular(&path)?;
        if blake3::hash(&bytes).to_hex().as_str() != entry.hash {
            return Err(Error::corrupt(&path, "content does not match its hash"));
        }
        entry.git = git_blob_id(&bytes);
        known.insert(entry.hash.clone(), entry.git.clone());
        read += 1;
    }
    Ok(read)
}

/// The format a store's format line names: `Ok(1)` to `Ok(3)`, or a
/// clear refusal for anything newer or unknown.
pub(super) fn format_of(line: &str, path: &Path) -> Result<u32> {
    match line.trim_end() {
        FORMAT_1 => Ok(1),
        FORMAT_2 => Ok(2),
        FORMAT_LINE => Ok(CURRENT),
        other => match other
            .strip_prefix("cfgstore-data ")
            .and_then(|n| n.parse::<u32>().ok())
        {
            Some(n) if n > CURRENT => Err(Error::corrupt(
                path,
                format!(
                    "this store is format {n}, written by a newer cfgstore; this binary reads formats 1 to {CURRENT}: install the newer version"
                ),
            )),
            _ => Err(Error::corrupt(path, "unknown data format")),
        },
    }
}

impl Store {
    /// Upgrades a store of format `from` to the current one (see the
    /// module docs).
    pub(super) fn upgrade(&self, from: u32) -> Result<UpgradeReport> {
        let _lock = LockGuard::acquire(&self.layout().store_lock(), Duration::from_secs(60))?;
        let format_file = self.layout().format_file();
        let line = String::from_utf8_lossy(&read_regular(&format_file)?).into_owned();
        let mut report = UpgradeReport {
            from,
            to: CURRENT,
            ..Default::default()
        };
        if format_of(&line, &format_file)? == CURRENT {
            return Ok(report); // another process upgraded it meanwhile
        }
        for info in self.list_projects(None)? {
            let project = info.project_ref();
            // The trees stored below are named by no version until each
            // file is replaced: no gc meanwhile.
            let _objects = self.objects_in_flight(&project)?;
            let mut ids: HashMap<String, String> = HashMap::new();
            let mut stored = std::collections::HashSet::new();
            for branch in self.branch_names(&project)? {
                let dir = self.layout().branch_dir(&project, &branch);
                let _branch = LockGuard::acquire(&layout::branch_lock(&dir), self.lock_timeout)?;
                let mut files: Vec<_> = fs::read_dir(&dir)
                    .map_err(|e| Error::io(&dir, e))?
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name();
                        layout::parse_generation_name(name.to_str()?)
                    })
                    .collect();
                files.sort();
                let trees = super::reads::BranchTrees::new(self, &project, None, false);
                for version in files {
                    let path = self.layout().generation_file(&dir, version);
                    if !is_flat(&path)? {
                        continue;
                    }
                    let mut gen = Generation::read(&path, &trees)?;
                    report.contents += fill_git_ids(
                        gen.entries_mut(),
                        |hash| Ok(self.layout().object_file(&project, hash)),
                        &mut ids,
                    )?;
                    // Folders stored for an earlier version are not
                    // placed (and synced) again.
                    gen.root().for_each_node(&mut |node| {
                        if stored.contains(node.id()) {
                            node.mark_stored();
                        }
                    });
                    let (fresh, _) = self.store_tree(&project, gen.root())?;
                    for node in fresh {
                        node.mark_stored();
                        stored.insert(node.id().to_string());
                    }
                    // The tree must hold what the version file listed.
                    let (short_id, _) = gen.root().ids(false);
                    if gen.root().file_count() != gen.meta.file_count
                        || short_id != gen.meta.short_id
                    {
                        return Err(Error::corrupt(
                            &path,
                            "its files do not make the short_id it records: run cfgstore fsck",
                        ));
                    }
                    self.scratch()?.replace_file(&path, &gen.to_bytes())?;
                    report.versions += 1;
                }
            }
        }
        self.scratch()?
            .replace_file(&format_file, format!("{FORMAT_LINE}\n").as_bytes())?;
        tracing::info!(
            versions = report.versions,
            contents = report.contents,
            from,
            "store upgraded to format {CURRENT} (git blob ids, tree objects)"
        );
        Ok(report)
    }
}
