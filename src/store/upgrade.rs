//! Store formats, and the upgrade from the ones before.
//!
//! `.cfgstore/format` names the format of the whole store:
//! - `cfgstore-data 1` (cfgstore 0.1): version files without git blob ids;
//! - `cfgstore-data 2` (this version): every version file lists the git
//!   blob id of each file (`generation.rs`).
//!
//! `Store::open` upgrades a format-1 store in place, once, under the
//! store's lock: each version file is rewritten with the git blob ids of
//! its files (read from their contents) and replaced atomically; the
//! format line is written last. Nothing else changes: versions, `short_id`s
//! and commit ids (md5-based), tokens, users and sessions are as they were.
//! An upgrade cut short by a crash leaves some files rewritten and the old
//! format line, and the next open finishes it. A store of a format newer
//! than this binary knows is refused, saying so.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::fsutil::{read_regular, LockGuard};
use super::generation::{git_blob_id, is_format_1, Entry, Generation};
use super::layout::{self, FORMAT_LINE};
use super::Store;
use crate::error::{Error, Result};

/// The format line of cfgstore 0.1 stores.
pub const FORMAT_1: &str = "cfgstore-data 1";

/// What an upgrade did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpgradeReport {
    pub from: u32,
    pub to: u32,
    /// Version files rewritten with git blob ids.
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

/// The format a store's format line names: `Ok(1)`, `Ok(2)`, or a clear
/// refusal for anything newer or unknown.
pub(super) fn format_of(line: &str, path: &Path) -> Result<u32> {
    match line.trim_end() {
        FORMAT_1 => Ok(1),
        FORMAT_LINE => Ok(2),
        other => match other
            .strip_prefix("cfgstore-data ")
            .and_then(|n| n.parse::<u32>().ok())
        {
            Some(n) if n > 2 => Err(Error::corrupt(
                path,
                format!(
                    "this store is format {n}, written by a newer cfgstore; this binary reads formats 1 and 2: install the newer version"
                ),
            )),
            _ => Err(Error::corrupt(path, "unknown data format")),
        },
    }
}

impl Store {
    /// Upgrades a format-1 store to format 2 (see the module docs).
    pub(super) fn upgrade_from_1(&self) -> Result<UpgradeReport> {
        let _lock = LockGuard::acquire(&self.layout.store_lock(), Duration::from_secs(60))?;
        let format_file = self.layout.format_file();
        let line = String::from_utf8_lossy(&read_regular(&format_file)?).into_owned();
        let mut report = UpgradeReport {
            from: 1,
            to: 2,
            ..Default::default()
        };
        if format_of(&line, &format_file)? == 2 {
            return Ok(report); // another process upgraded it meanwhile
        }
        for info in self.list_projects(None)? {
            let project = info.project_ref();
            let mut ids: HashMap<String, String> = HashMap::new();
            for branch in self.branch_names(&project)? {
                let dir = self.layout.branch_dir(&project, &branch);
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
                for version in files {
                    let path = self.layout.generation_file(&dir, version);
                    if !is_format_1(&path)? {
                        continue;
                    }
                    let mut gen = Generation::read(&path)?;
                    report.contents += fill_git_ids(
                        &mut gen.entries,
                        |hash| Ok(self.layout.object_file(&project, hash)),
                        &mut ids,
                    )?;
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
            "store upgraded from format 1 to 2 (git blob ids)"
        );
        Ok(report)
    }
}
