//! Loading trees: the `NodeSource` objects come from, parsing and checking
//! a tree object's text, and loading a whole tree (each object once, the
//! root's folders on every core).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{
    corrupt, key_cmp_bytes, Child, FileSpan, Node, GIT, HASH, MAX_DEPTH, MAX_FILES, MD5, TREE_MAGIC,
};
use crate::error::{Error, Result};
use crate::names::FilePath;

/// A source with no objects: for a version file alone (the fuzz target),
/// where a format-3 file's tree cannot be read.
pub struct NoTrees;

impl NodeSource for NoTrees {
    fn read(&self, id: &str) -> Result<(PathBuf, Vec<u8>)> {
        Err(Error::corrupt(
            std::path::Path::new(id),
            "no object folder to read trees from",
        ))
    }
}

/// Where tree objects come from when a tree is loaded (on several
/// threads: the folders under the root are loaded in parallel).
pub trait NodeSource: Sync {
    /// A node already in memory (the daemon keeps the ones it loaded).
    fn cached(&self, _id: &str) -> Option<Arc<Node>> {
        None
    }
    /// The object's bytes, and its path for error messages.
    fn read(&self, id: &str) -> Result<(PathBuf, Vec<u8>)>;
    /// Told each node loaded from the disk.
    fn keep(&self, _node: &Arc<Node>) {}
    /// Whether to check each object's bytes against its name (fsck).
    fn verify(&self) -> bool {
        false
    }
}

/// A source that remembers what one load read.
struct Memo<'a, S: NodeSource> {
    inner: &'a S,
    seen: std::sync::Mutex<std::collections::HashMap<String, Arc<Node>>>,
}

impl<S: NodeSource> NodeSource for Memo<'_, S> {
    fn cached(&self, id: &str) -> Option<Arc<Node>> {
        let seen = self.seen.lock().expect("tree memo").get(id).cloned();
        seen.or_else(|| self.inner.cached(id))
    }

    fn read(&self, id: &str) -> Result<(PathBuf, Vec<u8>)> {
        self.inner.read(id)
    }

    fn keep(&self, node: &Arc<Node>) {
        self.seen
            .lock()
            .expect("tree memo")
            .insert(node.id().to_string(), Arc::clone(node));
        self.inner.keep(node);
    }

    fn verify(&self) -> bool {
        self.inner.verify()
    }
}

/// What `Node::parse` asks for each folder line: the node of (id, file
/// count, name).
type ChildOf<'a> = dyn FnMut(&str, u64, &str) -> Result<Arc<Node>> + 'a;

/// Whether every byte is a lower-case hex digit. A 20,000-file tree
/// checks 2.7 MB of them per load: the test runs on every byte without
/// stopping early, which the compiler turns into vector compares (1.75x
/// faster here than a fold over a 256-byte table, and several times
/// faster than `all` with its early exit).
fn is_lower_hex(s: &[u8]) -> bool {
    let mut all = true;
    for &b in s {
        all &= (b.wrapping_sub(b'0') < 10) | (b.wrapping_sub(b'a') < 6);
    }
    all
}

/// A decimal size as written by `u64::to_string` (no sign, no leading
/// zero): its value and where it ends.
fn parse_size(b: &[u8]) -> Option<(u64, usize)> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && b[0] == b'0') {
        return None;
    }
    let mut n: u64 = 0;
    for &c in &b[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some((n, digits))
}

impl Node {
    /// Loads the tree `id` and every folder under it, each object once
    /// (a folder that appears several times is read once).
    pub fn load(id: &str, source: &impl NodeSource) -> Result<Arc<Node>> {
        let source = Memo {
            inner: source,
            seen: Default::default(),
        };
        let root = Node::load_at(id, &source, 0)?;
        if root.longest > 1024 {
            let (path, _) = source.read(id)?;
            return Err(corrupt(
                &path,
                "a path in this tree is longer than 1024 bytes",
            ));
        }
        Ok(root)
    }

    fn load_at(id: &str, source: &impl NodeSource, depth: usize) -> Result<Arc<Node>> {
        if let Some(node) = source.cached(id) {
            return Ok(node);
        }
        let (path, bytes) = source.read(id)?;
        if depth > MAX_DEPTH {
            return Err(corrupt(&path, "folders nested deeper than any path can be"));
        }
        if source.verify() && blake3::hash(&bytes).to_hex().as_str() != id {
            return Err(corrupt(&path, "tree object does not match its hash"));
        }
        let text =
            String::from_utf8(bytes).map_err(|_| corrupt(&path, "tree object is not UTF-8"))?;
        // The root's folders on every core: a CLI write loads the whole
        // tree of a 20,000-file branch to compute its `short_id`.
        let preloaded = if depth == 0 {
            Node::load_folders(&text, source)?
        } else {
            Default::default()
        };
        let node = Node::parse(
            id.to_string(),
            text,
            &path,
            &mut |child, _, _| match preloaded.get(child) {
                Some(node) => Ok(Arc::clone(node)),
                None => Node::load_at(child, source, depth + 1),
            },
        )?;
        node.mark_stored();
        let node = Arc::new(node);
        source.keep(&node);
        Ok(node)
    }

    /// Loads the folders a tree object's text names, split over the cores
    /// (nothing when there are fewer than two). Malformed lines are left
    /// to `parse` to report.
    fn load_folders(
        text: &str,
        source: &impl NodeSource,
    ) -> Result<std::collections::HashMap<String, Arc<Node>>> {
        let ids: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("d\t")?.get(..HASH))
            .filter(|id| is_lower_hex(id.as_bytes()))
            .collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        if ids.len() < 2 || threads < 2 {
            return Ok(Default::default());
        }
        let share = ids.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = ids
                .chunks(share)
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|id| Ok((id.to_string(), Node::load_at(id, source, 1)?)))
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut loaded = std::collections::HashMap::new();
            for worker in workers {
                loaded.extend(worker.join().expect("a tree loader panicked")?);
            }
            Ok(loaded)
        })
    }

    /// The tree `id` with only the folders on `path` read; every other
    /// folder is a stand-in that knows its id and file count. Enough to
    /// check or edit `path` (`get`, `check_new_file`, a `Draft` that
    /// changes only `path`) and to store the folders such an edit makes;
    /// its `short_id` is `ids_reading`, which streams the stand-ins' lines
    /// from their objects. A folder at `path` itself is read whole.
    pub fn load_path(id: &str, path: &FilePath, source: &impl NodeSource) -> Result<Arc<Node>> {
        let segments: Vec<&str> = path.as_str().split('/').collect();
        Node::load_along(id, &segments, source, 0)
    }

    fn load_along(
        id: &str,
        path: &[&str],
        source: &impl NodeSource,
        depth: usize,
    ) -> Result<Arc<Node>> {
        let Some((next, rest)) = path.split_first() else {
            return Node::load(id, source);
        };
        let (file, bytes) = source.read(id)?;
        if depth > MAX_DEPTH {
            return Err(corrupt(&file, "folders nested deeper than any path can be"));
        }
        let text =
            String::from_utf8(bytes).map_err(|_| corrupt(&file, "tree object is not UTF-8"))?;
        let node = Node::parse(id.to_string(), text, &file, &mut |child, count, name| {
            if name == *next {
                Node::load_along(child, rest, source, depth + 1)
            } else {
                Ok(Node::stand_in(child, count))
            }
        })?;
        node.mark_stored();
        Ok(Arc::new(node))
    }

    /// A folder not read (`load_path`): its id and file count only. It
    /// has no text; every real node's starts with `TREE_MAGIC`.
    fn stand_in(id: &str, file_count: u64) -> Arc<Node> {
        Arc::new(Node {
            id: id.to_string(),
            text: Box::from(""),
            children: Vec::new(),
            file_count,
            longest: 0,
            stored: AtomicBool::new(true),
            lines: Default::default(),
        })
    }

    /// Parses a tree object's text; `child(id, file count, name)` gives
    /// the node of each folder.
    pub(super) fn parse(
        id: String,
        text: String,
        source: &std::path::Path,
        child: &mut ChildOf,
    ) -> Result<Node> {
        let body = text
            .strip_prefix(TREE_MAGIC)
            .and_then(|rest| rest.strip_prefix('\n'))
            .ok_or_else(|| corrupt(source, "not a tree object"))?;
        if !body.is_empty() && !body.ends_with('\n') {
            return Err(corrupt(source, "tree object cut short"));
        }
        let base = text.len() - body.len();
        let mut children = Vec::new();
        let mut file_count = 0u64;
        let mut longest = 0;
        let mut at = base;
        for line in body.split_terminator('\n') {
            let start = at;
            at += line.len() + 1;
            let bad = || corrupt(source, format!("bad tree line {line:?}"));
            let (kind, rest) = line.split_at_checked(2).ok_or_else(bad)?;
            let child_entry = match kind {
                "f\t" => {
                    let fields = file_fields(rest.as_bytes(), true).ok_or_else(bad)?;
                    let (size_num, digits) = (fields.size, fields.size_text.len());
                    let name = &rest[FILE_IDS + digits + 1..];
                    let md5_at = start + 2;
                    let size_end = md5_at + FILE_IDS + digits;
                    file_count += 1;
                    longest = longest.max(name.len());
                    (
                        name,
                        false,
                        Child::File(FileSpan {
                            at: md5_at as u32,
                            size_end: size_end as u32,
                            end: (size_end + 1 + name.len()) as u32,
                            size: size_num,
                        }),
                    )
                }
                "d\t" => {
                    let (node_id, rest) = rest.split_once('\t').ok_or_else(bad)?;
                    let (count, name) = rest.split_once('\t').ok_or_else(bad)?;
                    if node_id.len() != HASH || !is_lower_hex(node_id.as_bytes()) {
                        return Err(bad());
                    }
                    let count: u64 = count.parse().map_err(|_| bad())?;
                    // Folders can repeat (the same tree under two names):
                    // counts are checked, so a damaged store cannot claim
                    // more files than memory could ever list.
                    if file_count.saturating_add(count) > MAX_FILES {
                        return Err(corrupt(source, "more files than any branch holds"));
                    }
                    let node = child(node_id, count, name)?;
                    if node.file_count != count || count == 0 {
                        return Err(corrupt(
                            source,
                            format!(
                                "folder {name:?} counts {count} files, its tree holds {}",
                                node.file_count
                            ),
                        ));
                    }
                    file_count += count;
                    longest = longest.max(name.len() + 1 + node.longest);
                    let name_at = start + line.len() - name.len();
                    (
                        name,
                        true,
                        Child::Dir {
                            name: (name_at as u32, (name_at + name.len()) as u32),
                            node,
                        },
                    )
                }
                _ => return Err(bad()),
            };
            let (name, is_dir, entry) = child_entry;
            if !crate::names::is_valid_segment(name) {
                return Err(bad());
            }
            if let Some(last) = children.last() {
                let last_dir = matches!(last, Child::Dir { .. });
                let last_name = match last {
                    Child::File(span) => &text[span.size_end as usize + 1..span.end as usize],
                    Child::Dir { name, .. } => &text[name.0 as usize..name.1 as usize],
                };
                if !follows(last_name.as_bytes(), last_dir, name.as_bytes(), is_dir) {
                    return Err(corrupt(source, "tree lines not sorted or a name twice"));
                }
            }
            children.push(entry);
        }
        if text.len() > u32::MAX as usize {
            return Err(corrupt(source, "tree object too large"));
        }
        Ok(Node {
            id,
            text: text.into_boxed_str(),
            children,
            file_count,
            longest,
            stored: AtomicBool::new(false),
            lines: Default::default(),
        })
    }
}

/// The width of a file line's ids after its `f\t`: `md5 \t content id \t
/// git id \t`.
const FILE_IDS: usize = MD5 + HASH + GIT + 3;

/// The fields of a file line after its `f\t` (`md5 \t content id \t git id
/// \t size \t name`), as `Node::parse` and `stream_lines` read them: the
/// ids at their fixed widths, lower-case hex (the content and git ids only
/// with `all_ids`: no `short_id` line holds them), the size as
/// `u64::to_string` writes it. `None` when malformed; the name is the
/// caller's to check.
struct FileFields<'a> {
    md5: &'a [u8],
    size: u64,
    size_text: &'a [u8],
    name: &'a [u8],
}

fn file_fields(rest: &[u8], all_ids: bool) -> Option<FileFields<'_>> {
    let ids = rest.get(..FILE_IDS)?;
    let seps = [MD5, MD5 + HASH + 1, MD5 + HASH + GIT + 2];
    if !seps.iter().all(|&i| ids[i] == b'\t') || !is_lower_hex(&ids[..MD5]) {
        return None;
    }
    if all_ids
        && (!is_lower_hex(&ids[MD5 + 1..MD5 + 1 + HASH])
            || !is_lower_hex(&ids[MD5 + HASH + 2..MD5 + HASH + 2 + GIT]))
    {
        return None;
    }
    let (size, digits) = parse_size(&rest[FILE_IDS..])?;
    if rest.get(FILE_IDS + digits) != Some(&b'\t') {
        return None;
    }
    Some(FileFields {
        md5: &ids[..MD5],
        size,
        size_text: &rest[FILE_IDS..FILE_IDS + digits],
        name: &rest[FILE_IDS + digits + 1..],
    })
}

/// Whether a line named `name` (`dir`: a folder's) may follow the line
/// named `last` in a tree object: after it in git's order, not the same.
fn follows(last: &[u8], last_dir: bool, name: &[u8], dir: bool) -> bool {
    key_cmp_bytes(last, last_dir, name, dir) == std::cmp::Ordering::Less && last != name
}

/// Feeds the `short_id` lines of the folder `id` and every folder under
/// it, read from their objects without building nodes: a folder a
/// one-path edit did not touch (`Node::load_path`), which its parent says
/// holds `files` files. What a line puts into the hash is checked as
/// `Node::parse` checks it (md5, size, order; a name is one path segment),
/// folder ids before they name a file, and the counts: a folder holds
/// exactly the files its parent's line says, so a damaged store cannot
/// make this stream more lines than the branch counts. The content and
/// git ids, which no line holds, are left to loading the version (`fsck`
/// checks them all).
pub(super) fn stream_lines(
    id: &str,
    files: u64,
    prefix: &mut String,
    source: &dyn NodeSource,
    depth: usize,
    out: &mut dyn FnMut(&[u8]),
) -> Result<()> {
    let (path, bytes) = source.read(id)?;
    if depth > MAX_DEPTH {
        return Err(corrupt(&path, "folders nested deeper than any path can be"));
    }
    let body = bytes
        .strip_prefix(TREE_MAGIC.as_bytes())
        .and_then(|rest| rest.strip_prefix(b"\n"))
        .ok_or_else(|| corrupt(&path, "not a tree object"))?;
    // No line at all (a folder without files: only an empty branch's
    // root), or lines each ending in a newline.
    let lines = match body {
        [] => None,
        [lines @ .., b'\n'] => Some(lines),
        _ => return Err(corrupt(&path, "tree object cut short")),
    };
    let mut own = Vec::with_capacity(body.len() / 2);
    let mut streamed = 0u64;
    let mut last: Option<(&[u8], bool)> = None;
    // Lines are walked by their fixed-width fields: only a size (or a
    // count) and a name are searched, never the ids.
    let mut next = lines.map(|_| 0);
    while let (Some(lines), Some(at)) = (lines, next) {
        let line_at = at;
        let end = memchr::memchr(b'\n', &lines[at..]).map(|n| at + n);
        let line = &lines[at..end.unwrap_or(lines.len())];
        next = end.map(|end| end + 1);
        let bad = || {
            corrupt(
                &path,
                format!(
                    "bad tree line {:?} at byte {line_at}",
                    String::from_utf8_lossy(line)
                ),
            )
        };
        // A name is one path segment (no `/`, not `.` or `..`, not empty),
        // so each line's path is the file's. Loading the version checks
        // the rest of what a name may hold. (Short: a plain loop.)
        let one_segment = |name: &[u8]| {
            !matches!(name, b"" | b"." | b"..") && !name.iter().any(|&b| b == b'/' || b == 0)
        };
        let entry = match line.get(..2) {
            Some(b"f\t") => {
                let fields = file_fields(&line[2..], false).ok_or_else(bad)?;
                let (md5, size, name) = (fields.md5, fields.size_text, fields.name);
                if !one_segment(name) {
                    return Err(bad());
                }
                streamed += 1;
                if streamed > files {
                    return Err(corrupt(&path, "more files than its folder line says"));
                }
                for part in [prefix.as_bytes(), name, b"|", size, b"|", md5, b"\n"] {
                    own.extend_from_slice(part);
                }
                (name, false)
            }
            Some(b"d\t") => {
                let child = line.get(2..2 + HASH).filter(|id| is_lower_hex(id));
                let child = child.ok_or_else(bad)?;
                if line.get(2 + HASH) != Some(&b'\t') {
                    return Err(bad());
                }
                let tail = &line[3 + HASH..];
                let tab = tail.iter().position(|&b| b == b'\t').ok_or_else(bad)?;
                let (count, name) = (&tail[..tab], &tail[tab + 1..]);
                if !one_segment(name) {
                    return Err(bad());
                }
                let count = match parse_size(count) {
                    Some((n, digits)) if digits == count.len() && n > 0 => n,
                    _ => return Err(bad()),
                };
                streamed = streamed.saturating_add(count);
                if streamed > files {
                    return Err(corrupt(&path, "more files than its folder line says"));
                }
                let folder = std::str::from_utf8(name).map_err(|_| bad())?;
                if !crate::names::is_valid_segment(folder) {
                    return Err(bad());
                }
                out(&own);
                own.clear();
                let len = prefix.len();
                prefix.push_str(folder);
                prefix.push('/');
                let child = std::str::from_utf8(child).expect("hex is ASCII");
                stream_lines(child, count, prefix, source, depth + 1, out)?;
                prefix.truncate(len);
                (name, true)
            }
            _ => return Err(bad()),
        };
        if let Some((last_name, last_dir)) = last {
            if !follows(last_name, last_dir, entry.0, entry.1) {
                return Err(corrupt(&path, "tree lines not sorted or a name twice"));
            }
        }
        last = Some(entry);
    }
    if streamed != files {
        return Err(corrupt(
            &path,
            format!("its folder line counts {files} files, it holds {streamed}"),
        ));
    }
    out(&own);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_hex_is_exactly_0_to_9_and_a_to_f() {
        for b in 0..=255u8 {
            let hex = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            assert_eq!(super::is_lower_hex(&[b]), hex, "byte {b:#04x}");
            // Anywhere in a long run (the vectorised body and its tail).
            for at in [0, 31, 32, 63, 100] {
                let mut run = vec![b'7'; 101];
                run[at] = b;
                assert_eq!(super::is_lower_hex(&run), hex, "byte {b:#04x} at {at}");
            }
        }
        assert!(super::is_lower_hex(b""));
    }
}
