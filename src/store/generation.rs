//! Generations: the immutable states of a branch, and `short_id`.
//!
//! A generation file is text, readable with `less`, two lines:
//!
//! ```text
//! cfgstore-generation 3
//! {"version":"v0003","created_at":"2026-11-22T10:00:00Z","actor":"cli:root",...,"tree":"<blake3>"}
//! ```
//!
//! The metadata names the root of the state's tree objects (`trees.rs`):
//! one object per folder, shared by every version in which that folder is
//! unchanged. The metadata alone is enough for listings and history; the
//! trees are read only when files are.
//!
//! Formats 1 and 2 (cfgstore 0.1, and the release before trees) listed
//! every file in the version file itself, one line each, sorted bytewise
//! by path: `<md5>\t<blake3>\t<size>\t<path>` (format 1) or with the git
//! blob id after the blake3 (format 2). They are still read; `Store::open`
//! rewrites them as format 3 (`upgrade.rs`). Paths cannot contain tabs or
//! newlines (`FilePath` forbids control characters), so neither format
//! needs escaping.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::{BufRead, BufReader};
use std::path::Path;

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::fsutil::{hex, open_regular};
use super::trees::{Node, NodeSource};
use crate::error::{Error, Result};
use crate::names::{FilePath, SnapshotId};

const MAGIC: &str = "cfgstore-generation 3";
/// Format 2: the manifest in the version file, with git blob ids.
const MAGIC_V2: &str = "cfgstore-generation 2";
/// Generations written by cfgstore 0.1: no git blob ids.
pub(super) const MAGIC_V1: &str = "cfgstore-generation 1";

/// One file of a branch state. Content lives in the project's object store
/// under `hash` (blake3); `md5` and `size` feed `short_id`; `git` is the
/// git blob id of the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: FilePath,
    pub size: u64,
    pub md5: String,
    pub hash: String,
    /// `sha1("blob {size}\0" + bytes)`, what `git hash-object` prints: the
    /// API's blob id, so clients can compare it with their own files.
    /// Empty only in a format-1 generation not yet upgraded.
    pub git: String,
}

impl Entry {
    /// The file's blob id in the API (tree `id`, `blob_id`, `blobs/{sha}`).
    pub fn blob_id(&self) -> &str {
        &self.git
    }

    /// The content's digests, without the path.
    pub fn content(self) -> ContentId {
        ContentId {
            size: self.size,
            md5: self.md5,
            hash: self.hash,
            git: self.git,
        }
    }
}

/// The git blob id of some bytes (`git hash-object`).
pub fn git_blob_id(bytes: &[u8]) -> String {
    use sha1::Digest as _;
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    hex(&hasher.finalize())
}

/// The content digests of some bytes, computed once at write time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentId {
    pub size: u64,
    pub md5: String,
    pub hash: String,
    pub git: String,
}

impl ContentId {
    pub fn of(bytes: &[u8]) -> ContentId {
        ContentId {
            size: bytes.len() as u64,
            md5: hex(&Md5::digest(bytes)),
            hash: blake3::hash(bytes).to_hex().to_string(),
            git: git_blob_id(bytes),
        }
    }

    /// The entry of a file with this content.
    pub fn entry(self, path: FilePath) -> Entry {
        Entry {
            path,
            size: self.size,
            md5: self.md5,
            hash: self.hash,
            git: self.git,
        }
    }
}

/// What a generation records about itself and about the write that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationMeta {
    /// This generation's version. It becomes snapshot `version` once a later
    /// write supersedes it.
    pub version: SnapshotId,
    /// When the write that produced this generation happened (RFC 3339 UTC).
    pub created_at: String,
    /// Who wrote it: a user, a token id, or `cli:{unix user}`.
    pub actor: String,
    /// What the write was, e.g. `file.put config/app.json`.
    pub reason: String,
    pub file_count: u64,
    pub short_id: String,
    pub commit_id: String,
    /// The previous generation, now a snapshot; absent for a branch's first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentSummary>,
    /// What this write changed against the previous generation. Recorded
    /// since 0.2; absent in older stores, where history computes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangeCounts>,
    /// The root tree object (format 3); absent in formats 1 and 2, whose
    /// files list the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
}

/// Files added, changed and removed by one write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCounts {
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
}

impl ChangeCounts {
    /// Compares two sorted manifests in one pass.
    pub fn between(before: &[Entry], after: &[Entry]) -> ChangeCounts {
        let mut counts = ChangeCounts::default();
        let (mut i, mut j) = (0, 0);
        while i < before.len() || j < after.len() {
            match (before.get(i), after.get(j)) {
                (Some(b), Some(a)) => match b.path.cmp(&a.path) {
                    std::cmp::Ordering::Less => {
                        counts.removed += 1;
                        i += 1;
                    }
                    std::cmp::Ordering::Greater => {
                        counts.added += 1;
                        j += 1;
                    }
                    std::cmp::Ordering::Equal => {
                        if b.hash != a.hash {
                            counts.changed += 1;
                        }
                        i += 1;
                        j += 1;
                    }
                },
                (Some(_), None) => {
                    counts.removed += 1;
                    i += 1;
                }
                (None, Some(_)) => {
                    counts.added += 1;
                    j += 1;
                }
                (None, None) => break,
            }
        }
        counts
    }
}

/// Enough of the previous generation to list it as a snapshot without
/// opening its file: history reads one header per entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentSummary {
    pub version: SnapshotId,
    pub file_count: u64,
    pub short_id: String,
}

/// A complete branch state: metadata plus its files, as a tree (what
/// writes edit and store) and as the sorted manifest (what reads search).
/// Either is made from the other when first asked for.
#[derive(Debug)]
pub struct Generation {
    pub meta: GenerationMeta,
    root: std::sync::OnceLock<std::sync::Arc<Node>>,
    entries: std::sync::OnceLock<Vec<Entry>>,
    /// Its listings, built on first use and kept as long as it is.
    tree: std::sync::OnceLock<std::sync::Arc<super::tree::TreeIndex>>,
    /// Lookup by path, built on the first `find` in a large manifest.
    paths: std::sync::OnceLock<PathIndex>,
    /// Lookup by git blob id, built on the first `find_blob`.
    blobs: std::sync::OnceLock<HashMap<String, usize>>,
    /// Whether anything has asked for its files (`entries`), as reads
    /// do; `prepare_reads` does not count.
    asked: std::sync::atomic::AtomicBool,
}

/// A copy starts without the lazily built indexes: they describe
/// `entries`, which a copy is free to change.
impl Clone for Generation {
    fn clone(&self) -> Generation {
        Generation {
            meta: self.meta.clone(),
            root: self.root.clone(),
            entries: self.entries.clone(),
            tree: Default::default(),
            paths: Default::default(),
            blobs: Default::default(),
            asked: Default::default(),
        }
    }
}

/// Below this many files a binary search over the entries is as fast.
const INDEXED_FROM: usize = 256;

/// Every path's hash with its entry's position: a lookup hashes the path,
/// finds its slot in one probe or two and compares one path, where a
/// binary search over the entries follows a pointer to a path string at
/// each of its 15 steps (a cache miss each, at 20,000 files). Two paths
/// with one 64-bit hash (keyed, so about 2^-64 per pair) turn the index
/// off for that generation: `find` is then the binary search again.
struct PathIndex {
    hasher: std::hash::RandomState,
    /// `None` after a collision.
    slots: Option<HashMap<u64, u32, BuildHasherDefault<Prehashed>>>,
}

/// The `Hasher` of keys that are already hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else still hashes correctly.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl std::fmt::Debug for PathIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PathIndex({:?} paths)",
            self.slots.as_ref().map(HashMap::len)
        )
    }
}

impl PathIndex {
    fn build(entries: &[Entry]) -> PathIndex {
        let hasher = std::hash::RandomState::new();
        let mut slots = HashMap::with_capacity_and_hasher(entries.len(), Default::default());
        for (i, e) in entries.iter().enumerate() {
            if slots
                .insert(hasher.hash_one(e.path.as_str()), i as u32)
                .is_some()
            {
                return PathIndex {
                    hasher,
                    slots: None,
                };
            }
        }
        PathIndex {
            hasher,
            slots: Some(slots),
        }
    }
}

impl Serialize for SnapshotId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SnapshotId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SnapshotId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `short_id` and `commit_id` of a set of files, exactly per SPEC §3:
/// sha256 over `"{path}|{size}|{md5}\n"` for each file sorted bytewise by
/// path; the first 8 and 40 hex digits. Metadata only, never content.
pub fn compute_ids<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> (String, String) {
    let mut hasher = Sha256::new();
    for e in entries {
        hasher.update(e.path.as_str().as_bytes());
        hasher.update(b"|");
        hasher.update(e.size.to_string().as_bytes());
        hasher.update(b"|");
        hasher.update(e.md5.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hex(&hasher.finalize());
    (digest[..8].to_string(), digest[..40].to_string())
}

impl Generation {
    /// Builds a generation from a path-keyed file set (already sorted).
    pub fn build(
        version: SnapshotId,
        created_at: String,
        actor: &str,
        reason: String,
        files: &BTreeMap<FilePath, Entry>,
        parent: Option<ParentSummary>,
    ) -> Generation {
        let entries: Vec<Entry> = files.values().cloned().collect();
        let root = Node::from_entries(&entries);
        let ids = root.ids(false);
        let gen = Generation::of_tree(version, created_at, actor, reason, root, parent, ids);
        gen.entries.set(entries).expect("a new generation");
        gen
    }

    /// A generation of the files in the tree `root`, whose `(short_id,
    /// commit id)` are `ids` (`Node::ids`, made by the caller: a commit
    /// hashes them beside its fsyncs).
    pub fn of_tree(
        version: SnapshotId,
        created_at: String,
        actor: &str,
        reason: String,
        root: std::sync::Arc<Node>,
        parent: Option<ParentSummary>,
        (short_id, commit_id): (String, String),
    ) -> Generation {
        let meta = GenerationMeta {
            version,
            created_at,
            actor: actor.to_string(),
            reason,
            file_count: root.file_count(),
            short_id,
            commit_id,
            parent,
            changes: None,
            tree: Some(root.id().to_string()),
        };
        Generation::with(meta, Some(root), None)
    }

    fn with(
        meta: GenerationMeta,
        root: Option<std::sync::Arc<Node>>,
        entries: Option<Vec<Entry>>,
    ) -> Generation {
        Generation {
            meta,
            root: root.map(std::sync::OnceLock::from).unwrap_or_default(),
            entries: entries.map(std::sync::OnceLock::from).unwrap_or_default(),
            tree: Default::default(),
            paths: Default::default(),
            blobs: Default::default(),
            asked: Default::default(),
        }
    }

    /// Every object this version names: `tree(id)` for each of its trees,
    /// which answers whether the tree is new (one seen before is not
    /// walked again), and `content(hash)` for each file of a new tree; for
    /// a version of format 1 or 2, every file of its manifest (never
    /// through a tree made from it: its entries may lack git ids).
    pub fn named_objects(
        &self,
        tree: &mut impl FnMut(&str) -> bool,
        content: &mut impl FnMut(&str),
    ) {
        if self.meta.tree.is_some() {
            self.root()
                .walk_objects(&mut String::new(), tree, &mut |_, file| {
                    content(file.hash())
                });
        } else {
            self.entries().iter().for_each(|e| content(&e.hash));
        }
    }

    /// Makes what reads of this state search: the file list and, for a
    /// large one, its path index.
    pub fn prepare_reads(&self) {
        let entries = self.flat();
        if entries.len() >= INDEXED_FROM && entries.len() <= u32::MAX as usize {
            self.paths.get_or_init(|| PathIndex::build(entries));
        }
    }

    /// Whether anything but `prepare_reads` asked for the files (a read
    /// did): the next version of the branch will be read too.
    pub fn was_read(&self) -> bool {
        self.asked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The files, sorted bytewise by path.
    pub fn entries(&self) -> &[Entry] {
        if !self.asked.load(std::sync::atomic::Ordering::Relaxed) {
            self.asked.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.flat()
    }

    /// `entries`, not counted as asked for.
    fn flat(&self) -> &[Entry] {
        self.entries.get_or_init(|| self.root().flatten())
    }

    /// The files as a tree (built from the manifest of a format-1 or -2
    /// version; such a tree is not in the object folder yet).
    pub fn root(&self) -> &std::sync::Arc<Node> {
        self.root.get_or_init(|| Node::from_entries(self.entries()))
    }

    /// The files, to change in place (completing format-1 entries); the
    /// tree and every index are made again from them when next needed.
    pub fn entries_mut(&mut self) -> &mut Vec<Entry> {
        self.entries();
        self.root = Default::default();
        self.tree = Default::default();
        self.paths = Default::default();
        self.blobs = Default::default();
        self.meta.tree = None;
        self.entries.get_mut().expect("made above")
    }

    /// The version file (format 3): its tree objects must be stored first.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut meta = self.meta.clone();
        meta.tree = Some(self.root().id().to_string());
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(MAGIC.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&serde_json::to_vec(&meta).expect("metadata serialises"));
        out.push(b'\n');
        out
    }

    /// Reads and checks a whole generation file; its trees come from
    /// `nodes`.
    pub fn read(path: &Path, nodes: &impl NodeSource) -> Result<Generation> {
        Generation::parse(path, &super::fsutil::read_regular(path)?, nodes)
    }

    /// Parses and checks the bytes of a generation file; `source` only
    /// names it in errors. Public for the fuzz targets (`fuzz/`): any
    /// bytes give a generation or an error, never a panic.
    pub fn parse(source: &Path, bytes: &[u8], nodes: &impl NodeSource) -> Result<Generation> {
        let mut reader = bytes;
        let (meta, format) = read_header_format(&mut reader, source)?;
        if format == 3 {
            if !reader.is_empty() {
                return Err(Error::corrupt(source, "text after the metadata"));
            }
            let root = meta.load_root(source, |id| Node::load(id, nodes))?;
            return Ok(Generation::with(meta, Some(root), None));
        }
        let rest = std::str::from_utf8(reader)
            .map_err(|_| Error::corrupt(source, "manifest is not UTF-8"))?;
        // The header's count is not trusted to size memory (a corrupt one
        // could ask for exabytes): every manifest line is over 100 bytes.
        let mut entries = Vec::with_capacity((meta.file_count as usize).min(rest.len() / 100));
        for line in rest.lines() {
            entries
                .push(parse_entry(line, format).ok_or_else(|| {
                    Error::corrupt(source, format!("bad manifest line {line:?}"))
                })?);
        }
        if entries.windows(2).any(|w| w[0].path >= w[1].path) {
            return Err(Error::corrupt(
                source,
                "manifest not sorted by path or has duplicates",
            ));
        }
        if entries.len() as u64 != meta.file_count {
            return Err(Error::corrupt(
                source,
                "file count does not match the manifest",
            ));
        }
        // Writes never let a file sit inside another file's path; a
        // manifest that has one is damaged (and has no tree).
        let is_file = |p: &str| {
            entries
                .binary_search_by(|e| e.path.as_str().as_bytes().cmp(p.as_bytes()))
                .is_ok()
        };
        for e in &entries {
            let p = e.path.as_str();
            if p.match_indices('/').any(|(i, _)| is_file(&p[..i])) {
                return Err(Error::corrupt(
                    source,
                    format!("{p} is inside another file's path"),
                ));
            }
        }
        // The manifest is the truth of a flat version, whatever its
        // metadata says.
        let mut meta = meta;
        meta.tree = None;
        Ok(Generation::with(meta, None, Some(entries)))
    }

    /// The metadata line of a generation file, from its start (at least
    /// its first two lines): enough for listings and history. A flat
    /// version (format 1 or 2) names no tree, whatever its metadata says:
    /// its manifest is the truth. `source` names it in errors.
    pub fn parse_meta(source: &Path, start: &[u8]) -> Result<GenerationMeta> {
        let mut reader = start;
        let (mut meta, format) = read_header_format(&mut reader, source)?;
        if format != 3 {
            meta.tree = None;
        }
        Ok(meta)
    }

    /// The files as a path-keyed map.
    pub fn file_map(&self) -> BTreeMap<FilePath, Entry> {
        self.entries()
            .iter()
            .map(|e| (e.path.clone(), e.clone()))
            .collect()
    }

    /// The listings of this state (built once, then shared).
    pub fn tree(&self) -> &super::tree::TreeIndex {
        self.tree
            .get_or_init(|| std::sync::Arc::new(super::tree::TreeIndex::build(self)))
    }

    /// A file whose content has this git blob id (`blobs/{sha}`).
    pub fn find_blob(&self, git: &str) -> Option<&Entry> {
        let index = self.blobs.get_or_init(|| {
            self.entries()
                .iter()
                .enumerate()
                .map(|(i, e)| (e.git.clone(), i))
                .collect()
        });
        index.get(git).map(|&i| &self.entries()[i])
    }

    /// A file by path, as `find`, without making the manifest of a
    /// generation that has none yet (a CLI write looks up a file or two
    /// in a 20,000-file tree: it walks one folder per segment instead).
    pub fn file(&self, path: &FilePath) -> Option<Entry> {
        if self.entries.get().is_some() {
            return self.find(path).cloned();
        }
        match self.root().get(path.as_str())? {
            super::trees::Found::File(f) => Some(f.content().entry(path.clone())),
            super::trees::Found::Folder(_) => None,
        }
    }

    /// Looks a file up by path (binary search over the sorted manifest).
    pub fn find(&self, path: &FilePath) -> Option<&Entry> {
        let entries = self.entries();
        let search = || {
            entries
                .binary_search_by(|e| e.path.cmp(path))
                .ok()
                .map(|i| &entries[i])
        };
        // Positions are u32: a manifest beyond that (never) is searched.
        if entries.len() < INDEXED_FROM || entries.len() > u32::MAX as usize {
            return search();
        }
        let index = self.paths.get_or_init(|| PathIndex::build(entries));
        let Some(slots) = &index.slots else {
            return search();
        };
        let i = *slots.get(&index.hasher.hash_one(path.as_str()))?;
        let entry = &entries[i as usize];
        (entry.path == *path).then_some(entry)
    }
}

/// The metadata and the format (1, 2 or 3) of a generation file.
fn read_header_format(reader: &mut impl BufRead, path: &Path) -> Result<(GenerationMeta, u8)> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| Error::io(path, e))?;
    let format = match line.trim_end() {
        MAGIC => 3,
        MAGIC_V2 => 2,
        MAGIC_V1 => 1,
        _ => return Err(Error::corrupt(path, "not a version file")),
    };
    line.clear();
    reader
        .read_line(&mut line)
        .map_err(|e| Error::io(path, e))?;
    let meta = serde_json::from_str(line.trim_end())
        .map_err(|e| Error::corrupt(path, format!("bad metadata: {e}")))?;
    Ok((meta, format))
}

impl GenerationMeta {
    /// The root tree of a format-3 version (whose file is `source`), by
    /// `load` (the whole tree, or the folders on one path), checked: the
    /// named id is a tree id and the tree holds the files the metadata
    /// counts.
    pub(super) fn load_root(
        &self,
        source: &Path,
        load: impl FnOnce(&str) -> Result<std::sync::Arc<Node>>,
    ) -> Result<std::sync::Arc<Node>> {
        let id = self
            .tree
            .as_deref()
            .filter(|id| {
                id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
            .ok_or_else(|| Error::corrupt(source, "no tree named"))?;
        let root = load(id)?;
        if root.file_count() != self.file_count {
            return Err(Error::corrupt(source, "file count does not match the tree"));
        }
        Ok(root)
    }
}

/// Whether a generation file lists its manifest itself (format 1 or 2,
/// from its first line), for the upgrade.
pub(super) fn is_flat(path: &Path) -> Result<bool> {
    let mut reader = BufReader::with_capacity(64, open_regular(path)?);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| Error::io(path, e))?;
    Ok(matches!(line.trim_end(), MAGIC_V1 | MAGIC_V2))
}

fn parse_entry(line: &str, format: u8) -> Option<Entry> {
    let mut parts = line.splitn(if format == 1 { 4 } else { 5 }, '\t');
    let md5 = parts.next()?;
    let hash = parts.next()?;
    let git = if format == 1 { "" } else { parts.next()? };
    let size = parts.next()?.parse().ok()?;
    let path = FilePath::parse(parts.next()?).ok()?;
    let is_hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !is_hex(md5, 32) || !is_hex(hash, 64) || (format == 2 && !is_hex(git, 40)) {
        return None;
    }
    Some(Entry {
        path,
        size,
        md5: md5.to_string(),
        hash: hash.to_string(),
        git: git.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::trees::testing::stored;
    use crate::store::trees::NoTrees;

    fn entry(path: &str, bytes: &[u8]) -> Entry {
        ContentId::of(bytes).entry(FilePath::parse(path).unwrap())
    }

    #[test]
    fn git_blob_ids_are_what_git_hash_object_prints() {
        // printf 'hello\n' | git hash-object --stdin; printf '' | git hash-object --stdin
        assert_eq!(
            git_blob_id(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(git_blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn short_id_of_empty_branch_is_sha256_of_nothing() {
        let (short, commit) = compute_ids(&[]);
        // printf '' | sha256sum
        assert_eq!(short, "e3b0c442");
        assert_eq!(commit, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4");
    }

    #[test]
    fn short_id_matches_an_independent_computation() {
        // Vector computed outside the code, in a shell:
        //   a=$(printf 'hello\n' | md5sum | cut -d' ' -f1)   # b1946ac92492d2347c6235b4d2611184
        //   b=$(printf '{"x":1}' | md5sum | cut -d' ' -f1)    # ac3ef48caa08fa3ed5e025da69edc645
        //   printf 'a.txt|6|%s\nconf/b.json|7|%s\n' "$a" "$b" | sha256sum
        // The expected values below are the literal output of those lines.
        let entries = [
            entry("a.txt", b"hello\n"),
            entry("conf/b.json", b"{\"x\":1}"),
        ];
        assert_eq!(entries[0].md5, "b1946ac92492d2347c6235b4d2611184");
        assert_eq!(entries[1].md5, EXPECTED_MD5_B);
        let (short, commit) = compute_ids(&entries);
        assert_eq!(short, &EXPECTED_DIGEST[..8]);
        assert_eq!(commit, &EXPECTED_DIGEST[..40]);
    }

    /// Large manifests are searched through the hash index, small ones by
    /// binary search: both find every path, and only those, also paths
    /// that differ from a stored one in a byte or in case, and a copy
    /// whose entries change answers for its own entries.
    #[test]
    fn find_answers_exactly_the_stored_paths_in_small_and_large_manifests() {
        for count in [3, INDEXED_FROM - 1, INDEXED_FROM, 5000] {
            let files: BTreeMap<FilePath, Entry> = (0..count)
                .map(|i| {
                    let e = entry(&format!("area{}/conf-{i:05}.json", i % 7), b"x");
                    (e.path.clone(), e)
                })
                .collect();
            let gen = Generation::build(
                SnapshotId::new(1).unwrap(),
                "2026-01-01T00:00:00Z".into(),
                "test",
                "test".into(),
                &files,
                None,
            );
            for path in files.keys() {
                assert_eq!(
                    gen.find(path).map(|e| &e.path),
                    Some(path),
                    "{count}: {path}"
                );
            }
            for missing in [
                "area0/conf-00000.jsonx",
                "area0/Conf-00000.json",
                "area1/conf-00000.json",
                "conf-00000.json",
                "area0",
            ] {
                let missing = FilePath::parse(missing).unwrap();
                assert!(gen.find(&missing).is_none(), "{count}: {missing}");
            }
            // After a hash collision the index is off: the search answers.
            let fallback = gen.clone();
            fallback
                .paths
                .set(PathIndex {
                    hasher: std::hash::RandomState::new(),
                    slots: None,
                })
                .unwrap();
            for path in files.keys() {
                assert_eq!(
                    fallback.find(path).map(|e| &e.path),
                    Some(path),
                    "{count}: {path}"
                );
            }
            let mut copy = gen.clone();
            let moved = FilePath::parse("zz/moved.json").unwrap();
            copy.entries_mut().push(entry(moved.as_str(), b"y"));
            assert!(copy.find(&moved).is_some(), "{count}");
            assert!(gen.find(&moved).is_none(), "{count}");
        }
    }

    const EXPECTED_MD5_B: &str = "ac3ef48caa08fa3ed5e025da69edc645";
    const EXPECTED_DIGEST: &str =
        "cbb97f031803a34adb3f8c8a4ad53ebc2289cf723d58992dca5ecc688abc4c82";

    /// A corrupt header must not size an allocation: a `file_count` of
    /// 2^62 was handed to `Vec::with_capacity` and panicked ("capacity
    /// overflow") instead of reporting a corrupt file.
    #[test]
    fn a_huge_file_count_is_a_corrupt_file_not_a_panic() {
        let header = format!(
            "{MAGIC_V2}\n{{\"version\":\"v0001\",\"created_at\":\"2026-01-01T00:00:00Z\",\"actor\":\"x\",\"reason\":\"x\",\"file_count\":{},\"short_id\":\"e3b0c442\",\"commit_id\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4\"}}\n",
            1u64 << 62
        );
        let got = Generation::parse(Path::new("test"), header.as_bytes(), &NoTrees);
        assert!(
            matches!(got, Err(Error::Corrupt { .. })),
            "{:?}",
            got.map(|g| g.meta)
        );
    }

    #[test]
    fn sort_order_is_bytewise() {
        // 'B' (0x42) sorts before 'a' (0x61); '.' (0x2e) before '/' (0x2f).
        let mut paths = vec!["a/b", "a.b", "B", "a"];
        paths.sort_by(|x, y| {
            FilePath::parse(x)
                .unwrap()
                .cmp(&FilePath::parse(y).unwrap())
        });
        assert_eq!(paths, ["B", "a", "a.b", "a/b"]);
    }

    #[test]
    fn generation_round_trips_through_its_file() {
        let dir = std::env::temp_dir().join(format!("cfgstore-gen-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files: BTreeMap<_, _> = [entry("x/y z.json", b"{}"), entry("café.txt", b"bonjour")]
            .into_iter()
            .map(|e| (e.path.clone(), e))
            .collect();
        let gen = Generation::build(
            SnapshotId::new(3).unwrap(),
            "2026-01-01T00:00:00Z".into(),
            "cli:t",
            "test".into(),
            &files,
            None,
        );
        let path = dir.join("v0003");
        std::fs::write(&path, gen.to_bytes()).unwrap();
        let back = Generation::read(&path, &stored(gen.root())).unwrap();
        assert_eq!(back.meta, gen.meta);
        assert_eq!(back.entries(), gen.entries());
        assert!(
            Generation::read(&path, &NoTrees).is_err(),
            "a version without its trees is an error"
        );
        assert_eq!(
            Generation::parse_meta(&path, &std::fs::read(&path).unwrap()).unwrap(),
            gen.meta
        );
        assert!(back.find(&FilePath::parse("café.txt").unwrap()).is_some());
        assert!(back.find(&FilePath::parse("nope").unwrap()).is_none());
        std::fs::write(&path, b"cfgstore-generation 1\n{}\n").unwrap();
        assert!(matches!(
            Generation::read(&path, &NoTrees),
            Err(Error::Corrupt { .. })
        ));
        // A version file of format 2 (the manifest in the file) still reads.
        let line =
            |e: &Entry| format!("{}\t{}\t{}\t{}\t{}\n", e.md5, e.hash, e.git, e.size, e.path);
        let mut meta = gen.meta.clone();
        meta.tree = None;
        let flat = format!(
            "{MAGIC_V2}\n{}\n{}",
            serde_json::to_string(&meta).unwrap(),
            gen.entries().iter().map(line).collect::<String>()
        );
        std::fs::write(&path, flat).unwrap();
        let old = Generation::read(&path, &NoTrees).unwrap();
        assert_eq!(old.entries(), gen.entries());
        assert_eq!(
            old.root().id(),
            gen.root().id(),
            "the same tree as the new format"
        );
        // A file inside another file's path: a damaged manifest.
        let nested = [entry("a", b"1"), entry("a.b", b"2"), entry("a/c", b"3")];
        meta.file_count = 3;
        let flat = format!(
            "{MAGIC_V2}\n{}\n{}",
            serde_json::to_string(&meta).unwrap(),
            nested.iter().map(line).collect::<String>()
        );
        std::fs::write(&path, flat).unwrap();
        assert!(matches!(
            Generation::read(&path, &NoTrees),
            Err(Error::Corrupt { detail, .. }) if detail.contains("a/c is inside another file's path")
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
