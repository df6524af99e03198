//! Tree objects: a branch state stored as one object per folder (store
//! format 3), so a write stores only the folders on the changed path.
//!
//! A tree object is text, kept in the project's object folder under the
//! blake3 hash of its bytes like any content:
//!
//! ```text
//! cfgstore-tree 1
//! d\t<blake3 of the subfolder's tree>\t<files under it>\t<name>
//! f\t<md5>\t<blake3>\t<git blob id>\t<size>\t<name>
//! ```
//!
//! Lines are sorted the way git sorts a tree: by name, a folder's name
//! compared as if it ended in `/`. Walking the folders in that order gives
//! the files sorted bytewise by full path, the order `short_id` is defined
//! over. A folder that did not change has the same bytes, so the same
//! object: every version shares it, and a put on a 20,000-file branch
//! writes the tree of each folder on the path to the file (three small
//! objects for `area/group/file.json`), the new content and a version file
//! of a few hundred bytes.
//!
//! In memory a `Node` keeps its own text and the positions of its lines:
//! loading a tree allocates per folder, not per file, and `short_id` is
//! computed by feeding slices of that text to sha256. A `Draft` edits a
//! tree copy-on-write: only the folders on an edited path are opened.
//!
//! A CLI put or delete does not load the whole tree: `Node::load_path`
//! reads the folders on the edited path and leaves the others as
//! stand-ins (id and file count), and the new `short_id` streams the
//! stand-ins' lines straight from their objects (`ids_reading`) while the
//! new folders are fsynced. The daemon keeps whole trees in memory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::generation::{ChangeCounts, ContentId, Entry};
use crate::error::{Error, Result};
use crate::names::FilePath;

/// The first line of every tree object.
pub const TREE_MAGIC: &str = "cfgstore-tree 1";

/// Deeper than any valid path can be (paths are at most 1,024 bytes): a
/// damaged store cannot make loading recurse without bound.
const MAX_DEPTH: usize = 512;

/// More files than a branch can hold (an import of this many would not
/// fit in memory): a tree that counts more is damaged.
const MAX_FILES: u64 = 100_000_000;

const MD5: usize = 32;
const HASH: usize = 64;
const GIT: usize = 40;

/// A branch state asked about one path: a whole tree, or one with only
/// that path's folders read (`Node::load_path`), which answers for that
/// path alone.
pub struct PathOnly {
    root: Arc<Node>,
    path: FilePath,
}

impl PathOnly {
    pub fn of(root: Arc<Node>, path: &FilePath) -> PathOnly {
        PathOnly {
            root,
            path: path.clone(),
        }
    }

    /// The file at the path, if there is one.
    pub fn file(&self) -> Option<ContentId> {
        match self.root.get(self.path.as_str())? {
            Found::File(file) => Some(file.content()),
            Found::Folder(_) => None,
        }
    }

    /// `Node::check_new_file` of the path.
    pub fn check_new_file(&self) -> Result<()> {
        self.root.check_new_file(&self.path)
    }
}

/// One folder of a branch state.
pub struct Node {
    id: String,
    text: Box<str>,
    children: Vec<Child>,
    file_count: u64,
    /// The longest path under this folder, in bytes (paths are at most
    /// 1,024 bytes: checked when a version's tree is loaded).
    longest: usize,
    /// Known to be in the object folder (loaded from it, or written).
    stored: AtomicBool,
    /// The `short_id` lines of this folder's files, under the folder
    /// prefix they were made for: kept by the daemon, so a write hashes
    /// unchanged folders' lines without making them again.
    lines: std::sync::OnceLock<(Box<str>, Vec<u8>)>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({}, {} files)", self.id, self.file_count)
    }
}

enum Child {
    File(FileSpan),
    Dir { name: (u32, u32), node: Arc<Node> },
}

/// Where a file line's fields are in its node's text.
#[derive(Clone, Copy)]
struct FileSpan {
    /// Start of the md5; the blake3 and git ids follow at fixed offsets.
    at: u32,
    size_end: u32,
    end: u32,
    size: u64,
}

/// A file of a node, read in place.
#[derive(Clone, Copy)]
pub struct FileView<'a> {
    text: &'a str,
    span: FileSpan,
}

impl<'a> FileView<'a> {
    fn field(&self, from: usize, len: usize) -> &'a str {
        let at = self.span.at as usize + from;
        &self.text[at..at + len]
    }

    pub fn md5(&self) -> &'a str {
        self.field(0, MD5)
    }

    pub fn hash(&self) -> &'a str {
        self.field(MD5 + 1, HASH)
    }

    pub fn git(&self) -> &'a str {
        self.field(MD5 + HASH + 2, GIT)
    }

    pub fn size(&self) -> u64 {
        self.span.size
    }

    fn size_text(&self) -> &'a str {
        let from = self.span.at as usize + MD5 + HASH + GIT + 3;
        &self.text[from..self.span.size_end as usize]
    }

    pub fn name(&self) -> &'a str {
        &self.text[self.span.size_end as usize + 1..self.span.end as usize]
    }

    /// Appends this file's `short_id` line (`{path}|{size}|{md5}`).
    fn push_line(&self, prefix: &str, out: &mut Vec<u8>) {
        for part in [
            prefix,
            self.name(),
            "|",
            self.size_text(),
            "|",
            self.md5(),
            "\n",
        ] {
            out.extend_from_slice(part.as_bytes());
        }
    }

    pub fn content(&self) -> ContentId {
        ContentId {
            size: self.size(),
            md5: self.md5().to_string(),
            hash: self.hash().to_string(),
            git: self.git().to_string(),
        }
    }
}

/// What `Node::get` finds at a path.
pub enum Found<'a> {
    File(FileView<'a>),
    Folder(&'a Node),
}

fn corrupt(source: &std::path::Path, why: impl Into<String>) -> Error {
    Error::corrupt(source, why.into())
}

/// Git's tree order: names compared with a `/` after folder names.
fn key_cmp(a: &str, a_dir: bool, b: &str, b_dir: bool) -> std::cmp::Ordering {
    key_cmp_bytes(a.as_bytes(), a_dir, b.as_bytes(), b_dir)
}

/// `key_cmp` of names as bytes.
fn key_cmp_bytes(a: &[u8], a_dir: bool, b: &[u8], b_dir: bool) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    match a[..n].cmp(&b[..n]) {
        // Names hold no '/': past the common part one side has ended, and
        // a folder's name continues with '/'.
        std::cmp::Ordering::Equal => {
            let next = |s: &[u8], dir: bool| s.get(n).copied().or(dir.then_some(b'/'));
            next(a, a_dir).cmp(&next(b, b_dir))
        }
        other => other,
    }
}

impl Node {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn file_count(&self) -> u64 {
        self.file_count
    }

    /// The object's bytes.
    pub fn text(&self) -> &[u8] {
        self.text.as_bytes()
    }

    pub(super) fn is_stored(&self) -> bool {
        self.stored.load(Ordering::Acquire)
    }

    pub(super) fn mark_stored(&self) {
        self.stored.store(true, Ordering::Release);
    }

    fn child_name(&self, child: &Child) -> &str {
        match child {
            Child::File(span) => FileView {
                text: &self.text,
                span: *span,
            }
            .name(),
            Child::Dir { name, .. } => &self.text[name.0 as usize..name.1 as usize],
        }
    }

    /// The tree of a folder with no files: a branch with no files.
    pub fn empty() -> Arc<Node> {
        Node::assemble(Vec::new())
    }

    /// Builds a node from its children (names valid segments, unique).
    fn assemble(mut items: Vec<(String, NewChild)>) -> Arc<Node> {
        items.sort_by(|(a, ca), (b, cb)| {
            key_cmp(
                a,
                matches!(ca, NewChild::Dir(_)),
                b,
                matches!(cb, NewChild::Dir(_)),
            )
        });
        let mut text = String::with_capacity(32 + items.len() * 160);
        text.push_str(TREE_MAGIC);
        text.push('\n');
        let mut dirs = BTreeMap::new();
        for (name, child) in &items {
            match child {
                NewChild::File(c) => {
                    text.push_str("f\t");
                    for part in [&c.md5, &c.hash, &c.git] {
                        text.push_str(part);
                        text.push('\t');
                    }
                    text.push_str(&c.size.to_string());
                }
                NewChild::Dir(node) => {
                    text.push_str("d\t");
                    text.push_str(&node.id);
                    text.push('\t');
                    text.push_str(&node.file_count.to_string());
                    dirs.insert(node.id.clone(), Arc::clone(node));
                }
            }
            text.push('\t');
            text.push_str(name);
            text.push('\n');
        }
        let id = blake3::hash(text.as_bytes()).to_hex().to_string();
        let node = Node::parse(
            id,
            text,
            std::path::Path::new("a new tree"),
            &mut |id, _, _| Ok(Arc::clone(dirs.get(id).expect("a folder of this node"))),
        )
        .expect("a tree built from valid names parses");
        Arc::new(node)
    }

    /// The tree of a sorted file list (a version file of format 1 or 2,
    /// a new branch).
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Arc<Node> {
        let mut draft = Draft::new(Node::empty());
        for e in entries {
            // Entries of one state never nest (every write checks it).
            let _ = draft.insert(
                &e.path,
                ContentId {
                    size: e.size,
                    md5: e.md5.clone(),
                    hash: e.hash.clone(),
                    git: e.git.clone(),
                },
            );
        }
        draft.finish()
    }

    fn view(&self, span: FileSpan) -> FileView<'_> {
        FileView {
            text: &self.text,
            span,
        }
    }

    /// Every file in path order: `f(folder prefix, file)`; the prefix ends
    /// in `/` unless empty.
    pub fn for_each_file<'a>(
        &'a self,
        prefix: &mut String,
        f: &mut impl FnMut(&str, FileView<'a>),
    ) {
        for child in &self.children {
            match child {
                Child::File(span) => f(prefix, self.view(*span)),
                Child::Dir { name, node } => {
                    let len = prefix.len();
                    prefix.push_str(&self.text[name.0 as usize..name.1 as usize]);
                    prefix.push('/');
                    node.for_each_file(prefix, f);
                    prefix.truncate(len);
                }
            }
        }
    }

    /// Every file as an `Entry`, sorted by path.
    pub fn flatten(&self) -> Vec<Entry> {
        let mut out = Vec::with_capacity((self.file_count as usize).min(1 << 20));
        self.for_each_file(&mut String::new(), &mut |prefix, file| {
            out.push(Entry {
                path: FilePath::trusted(format!("{prefix}{}", file.name())),
                size: file.size(),
                md5: file.md5().to_string(),
                hash: file.hash().to_string(),
                git: file.git().to_string(),
            })
        });
        out
    }

    /// `short_id` and `commit_id` (SPEC §3), streamed from the tree's text:
    /// the same as `generation::compute_ids` over the flattened files. With
    /// `keep`, every folder without subfolders keeps its lines
    /// (`Node::lines`) for the next version's computation: the files of a
    /// branch are kept once, and a put makes the lines of one folder.
    /// For a tree with every folder read (not `load_path`'s).
    pub fn ids(&self, keep: bool) -> (String, String) {
        self.ids_reading(keep, &NoTrees)
            .expect("a tree with every folder read needs no objects")
    }

    /// `ids`, where the folders `load_path` did not read have their lines
    /// streamed from their objects in `source`.
    pub fn ids_reading(&self, keep: bool, source: &dyn NodeSource) -> Result<(String, String)> {
        let mut hasher = Sha256::new();
        let mut buffer = Vec::with_capacity(1 << 16);
        let mut feed = |bytes: &[u8]| {
            // Lines are gathered and hashed 64 KiB at a time: several
            // small `update`s per file cost more than the hashing itself.
            // In order: what is buffered goes before these bytes.
            if bytes.len() > 1 << 15 || buffer.len() + bytes.len() > 1 << 16 {
                hasher.update(&buffer);
                buffer.clear();
            }
            if bytes.len() > 1 << 15 {
                hasher.update(bytes);
            } else {
                buffer.extend_from_slice(bytes);
            }
        };
        self.hash_lines(&mut String::new(), keep, source, &mut feed)?;
        hasher.update(&buffer);
        let digest = super::fsutil::hex(&hasher.finalize());
        Ok((digest[..8].to_string(), digest[..40].to_string()))
    }

    /// Feeds this folder's `short_id` lines (its files' and its folders',
    /// in path order) to `out`; with `keep`, each subfolder's lines are
    /// kept and reused.
    fn hash_lines(
        &self,
        prefix: &mut String,
        keep: bool,
        source: &dyn NodeSource,
        out: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        let mut own = Vec::new();
        for child in &self.children {
            match child {
                Child::File(span) => self.view(*span).push_line(prefix, &mut own),
                Child::Dir { name, node } => {
                    let len = prefix.len();
                    prefix.push_str(&self.text[name.0 as usize..name.1 as usize]);
                    prefix.push('/');
                    out(&own);
                    own.clear();
                    node.dir_lines(prefix, keep, source, out)?;
                    prefix.truncate(len);
                }
            }
            if own.len() >= 1 << 15 {
                out(&own);
                own.clear();
            }
        }
        out(&own);
        Ok(())
    }

    /// The lines of this folder at `prefix` (ending in `/`): streamed
    /// from its object if it is a stand-in, kept (with `keep`) if it has
    /// files only, else made child by child.
    fn dir_lines(
        &self,
        prefix: &mut String,
        keep: bool,
        source: &dyn NodeSource,
        out: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        if self.is_stand_in() {
            return load::stream_lines(self.id(), self.file_count, prefix, source, 0, out);
        }
        if keep && self.is_leaf() {
            let kept = self
                .lines
                .get_or_init(|| (prefix.as_str().into(), self.leaf_lines(prefix)));
            if *kept.0 == *prefix.as_str() {
                out(&kept.1);
            } else {
                // The same folder at another path (rare): its lines are
                // made again for this one.
                out(&self.leaf_lines(prefix));
            }
            return Ok(());
        }
        self.hash_lines(prefix, keep, source, out)
    }

    /// The lines of a folder with files only, under `prefix`.
    fn leaf_lines(&self, prefix: &str) -> Vec<u8> {
        let mut lines = Vec::new();
        for child in &self.children {
            if let Child::File(span) = child {
                self.view(*span).push_line(prefix, &mut lines);
            }
        }
        lines
    }

    /// A folder with files only (read: a stand-in's children are unknown).
    fn is_leaf(&self) -> bool {
        !self.is_stand_in() && self.children.iter().all(|c| matches!(c, Child::File(_)))
    }

    /// A folder `load_path` did not read.
    fn is_stand_in(&self) -> bool {
        self.text.is_empty()
    }

    /// The child named `name`, if any.
    fn child(&self, name: &str) -> Option<&Child> {
        for is_dir in [false, true] {
            let found = self.children.binary_search_by(|c| {
                key_cmp(
                    self.child_name(c),
                    matches!(c, Child::Dir { .. }),
                    name,
                    is_dir,
                )
            });
            if let Ok(i) = found {
                return Some(&self.children[i]);
            }
        }
        None
    }

    /// What is at `path` (a file or a folder), walking one folder per
    /// segment.
    pub fn get(&self, path: &str) -> Option<Found<'_>> {
        let mut node = self;
        let mut segments = path.split('/').peekable();
        while let Some(segment) = segments.next() {
            match node.child(segment)? {
                Child::File(span) => {
                    return segments
                        .peek()
                        .is_none()
                        .then(|| Found::File(node.view(*span)))
                }
                Child::Dir { node: next, .. } => node = next,
            }
        }
        Some(Found::Folder(node))
    }

    /// Whether a file can be put at `path`: a path cannot be both a file
    /// and a folder of other files (`Draft::insert`). Errors: `Conflict`.
    pub fn check_new_file(&self, path: &FilePath) -> Result<()> {
        let p = path.as_str();
        let mut node = self;
        let mut walked = 0;
        let mut segments = p.split('/').peekable();
        while let Some(segment) = segments.next() {
            walked += segment.len();
            let last = segments.peek().is_none();
            match node.child(segment) {
                None => return Ok(()),
                Some(Child::File(_)) if last => return Ok(()),
                Some(Child::File(_)) => {
                    return Err(Error::Conflict(format!(
                        "{} is a file, so {p} cannot be inside it",
                        &p[..walked]
                    )))
                }
                Some(Child::Dir { node: folder, .. }) if last => {
                    return Err(Error::Conflict(format!(
                        "{p} is a folder (it holds {p}/{}), not a file",
                        folder.first_file().unwrap_or_default()
                    )))
                }
                Some(Child::Dir { node: folder, .. }) => node = folder,
            }
            walked += 1;
        }
        Ok(())
    }

    /// The first file under this folder, by path (for messages).
    fn first_file(&self) -> Option<String> {
        let mut first = None;
        self.for_each_file(&mut String::new(), &mut |prefix, file| {
            if first.is_none() {
                first = Some(format!("{prefix}{}", file.name()));
            }
        });
        first
    }

    /// This tree's ids and its files: `tree(id)` for each folder, which
    /// answers whether it is new (a folder seen before, in this version or
    /// an earlier one, is not walked again), and `file(folder prefix,
    /// file)` for each file of a new folder.
    pub fn walk_objects<'a>(
        &'a self,
        prefix: &mut String,
        tree: &mut impl FnMut(&str) -> bool,
        file: &mut impl FnMut(&str, FileView<'a>),
    ) {
        if !tree(&self.id) {
            return;
        }
        for child in &self.children {
            match child {
                Child::File(span) => file(prefix, self.view(*span)),
                Child::Dir { name, node } => {
                    let len = prefix.len();
                    prefix.push_str(&self.text[name.0 as usize..name.1 as usize]);
                    prefix.push('/');
                    node.walk_objects(prefix, tree, file);
                    prefix.truncate(len);
                }
            }
        }
    }

    /// Every node of this tree, each once.
    pub fn for_each_node(self: &Arc<Node>, f: &mut impl FnMut(&Arc<Node>)) {
        f(self);
        for child in &self.children {
            if let Child::Dir { node, .. } = child {
                node.for_each_node(f);
            }
        }
    }

    /// The nodes of this tree not yet in the object folder, children
    /// before their parents. A stored node's folders are stored too.
    pub(super) fn unstored(self: &Arc<Node>, out: &mut Vec<Arc<Node>>) {
        if self.is_stored() {
            return;
        }
        for child in &self.children {
            if let Child::Dir { node, .. } = child {
                node.unstored(out);
            }
        }
        out.push(Arc::clone(self));
    }

    /// Files added, changed and removed from `before` to `after`, opening
    /// only the folders whose trees differ.
    pub fn changes(before: &Node, after: &Node) -> ChangeCounts {
        let mut counts = ChangeCounts::default();
        diff(before, after, &mut counts);
        counts
    }
}

fn diff(before: &Node, after: &Node, counts: &mut ChangeCounts) {
    if before.id == after.id {
        return;
    }
    let (mut i, mut j) = (0, 0);
    while i < before.children.len() || j < after.children.len() {
        let b = before.children.get(i);
        let a = after.children.get(j);
        let order = match (b, a) {
            (Some(b), Some(a)) => key_cmp(
                before.child_name(b),
                matches!(b, Child::Dir { .. }),
                after.child_name(a),
                matches!(a, Child::Dir { .. }),
            ),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        match order {
            std::cmp::Ordering::Less => {
                counts.removed += files_in(b.expect("present"));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                counts.added += files_in(a.expect("present"));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                match (b.expect("present"), a.expect("present")) {
                    (Child::File(x), Child::File(y)) => {
                        if before.view(*x).hash() != after.view(*y).hash() {
                            counts.changed += 1;
                        }
                    }
                    (Child::Dir { node: x, .. }, Child::Dir { node: y, .. }) => diff(x, y, counts),
                    _ => unreachable!("equal keys are the same kind"),
                }
                i += 1;
                j += 1;
            }
        }
    }
}

fn files_in(child: &Child) -> u64 {
    match child {
        Child::File(_) => 1,
        Child::Dir { node, .. } => node.file_count,
    }
}

enum NewChild {
    File(ContentId),
    Dir(Arc<Node>),
}

mod draft;
mod load;
pub use draft::Draft;
pub use load::{NoTrees, NodeSource};

/// Tree objects kept in memory: for tests and the fuzz targets, which
/// check the formats without a data directory.
pub mod testing {
    use super::*;

    /// Objects by id; the flag says whether loading checks their hashes.
    pub struct Memory(pub std::collections::HashMap<String, Vec<u8>>, pub bool);

    impl NodeSource for Memory {
        fn read(&self, id: &str) -> Result<(PathBuf, Vec<u8>)> {
            let bytes = self
                .0
                .get(id)
                .cloned()
                .ok_or_else(|| Error::corrupt(std::path::Path::new(id), "no such tree"))?;
            Ok((PathBuf::from(id), bytes))
        }
        fn verify(&self) -> bool {
            self.1
        }
    }

    /// The objects of every folder of `root`.
    pub fn stored(root: &Arc<Node>) -> Memory {
        let mut nodes = Vec::new();
        root.for_each_node(&mut |n| nodes.push(Arc::clone(n)));
        Memory(
            nodes
                .iter()
                .map(|n| (n.id.clone(), n.text().to_vec()))
                .collect(),
            true,
        )
    }
}

#[cfg(test)]
mod tests;
