//! Tree listings of a generation: folders are implied by file paths, as in
//! git, so a listing is computed from the manifest alone.

use std::collections::HashMap;

use serde::Serialize;

use super::generation::Generation;
use crate::error::{Error, Result};
use crate::names::FilePath;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Blob,
    Tree,
}

/// One row of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeEntry {
    /// 40 hex digits: the content id of a file, a digest of everything
    /// below a folder.
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub path: String,
    pub mode: &'static str,
    #[serde(skip)]
    pub size: Option<u64>,
}

/// Every listing of one generation, computed once (O(files × depth)) and
/// shared: the recursive listing in pre-order, where each folder's
/// descendants follow it contiguously, plus each folder's direct children.
#[derive(Debug, Default)]
pub struct TreeIndex {
    all: Vec<TreeEntry>,
    /// Folder path ("" for the root) → its span in `all` and its children.
    folders: HashMap<String, Folder>,
}

#[derive(Debug, Default)]
struct Folder {
    /// First descendant and one past the last, in `all`.
    start: usize,
    end: usize,
    children: Vec<usize>,
}

/// A listing: a slice of the index (recursive) or picked entries.
pub enum Selection<'a> {
    Slice(&'a [TreeEntry]),
    Picked(Vec<&'a TreeEntry>),
}

impl Selection<'_> {
    pub fn to_vec(&self) -> Vec<TreeEntry> {
        match self {
            Selection::Slice(s) => s.to_vec(),
            Selection::Picked(v) => v.iter().map(|e| (*e).clone()).collect(),
        }
    }
}

impl TreeIndex {
    pub fn build(gen: &Generation) -> TreeIndex {
        let mut index = TreeIndex::default();
        index.folders.insert(String::new(), Folder::default());
        // Open folders, outermost first: (path, position in `all`, digest).
        let mut open: Vec<(String, usize, blake3::Hasher)> = Vec::new();
        for entry in gen.entries() {
            let path = entry.path.as_str();
            let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
            let common = open
                .iter()
                .zip(&parents)
                .take_while(|((p, _, _), q)| p == *q)
                .count();
            while open.len() > common {
                index.close(open.pop().expect("non-empty"));
            }
            for folder in &parents[common..] {
                let parent = folder.rfind('/').map(|i| &folder[..i]).unwrap_or("");
                let position = index.push(
                    parent,
                    TreeEntry {
                        id: String::new(),
                        name: folder.rsplit('/').next().unwrap_or(folder).to_string(),
                        kind: Kind::Tree,
                        path: folder.to_string(),
                        mode: "040000",
                        size: None,
                    },
                );
                index.folders.insert(
                    folder.to_string(),
                    Folder {
                        start: position + 1,
                        ..Folder::default()
                    },
                );
                open.push((folder.to_string(), position, blake3::Hasher::new()));
            }
            for (_, _, hasher) in open.iter_mut() {
                hasher.update(path.as_bytes());
                hasher.update(b"\0");
                hasher.update(entry.hash.as_bytes());
                hasher.update(b"\n");
            }
            let parent = parents.last().copied().unwrap_or("");
            index.push(
                parent,
                TreeEntry {
                    id: entry.blob_id().to_string(),
                    name: entry.path.file_name().to_string(),
                    kind: Kind::Blob,
                    path: path.to_string(),
                    mode: "100644",
                    size: Some(entry.size),
                },
            );
        }
        while let Some(folder) = open.pop() {
            index.close(folder);
        }
        let total = index.all.len();
        index.folders.get_mut("").expect("root").end = total;
        index
    }

    /// Appends an entry to the pre-order listing and to its parent's
    /// children; returns its position.
    fn push(&mut self, parent: &str, entry: TreeEntry) -> usize {
        let position = self.all.len();
        self.folders
            .get_mut(parent)
            .expect("parent is open")
            .children
            .push(position);
        self.all.push(entry);
        position
    }

    fn close(&mut self, (path, position, hasher): (String, usize, blake3::Hasher)) {
        self.all[position].id = hasher.finalize().to_hex()[..40].to_string();
        let end = self.all.len();
        self.folders
            .get_mut(&path)
            .expect("open folder is indexed")
            .end = end;
    }

    /// The folder `under` (the root when `None`), recursively or not.
    /// Errors: `NotFound("tree")` when `under` is not a folder.
    pub fn select(&self, under: Option<&FilePath>, recursive: bool) -> Result<Selection<'_>> {
        let key = under.map(FilePath::as_str).unwrap_or("");
        let folder = self
            .folders
            .get(key)
            .ok_or_else(|| Error::not_found("tree", key))?;
        Ok(if recursive {
            Selection::Slice(&self.all[folder.start..folder.end])
        } else {
            Selection::Picked(folder.children.iter().map(|&i| &self.all[i]).collect())
        })
    }
}

/// Lists the folder `under` (the root when `None`) of `gen`, in path order
/// with each folder before its contents. `recursive` descends into
/// sub-folders. Errors: `NotFound("tree")` when `under` is not a folder.
pub fn list(gen: &Generation, under: Option<&FilePath>, recursive: bool) -> Result<Vec<TreeEntry>> {
    Ok(gen.tree().select(under, recursive)?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::SnapshotId;
    use crate::store::generation::ContentId;
    use std::collections::BTreeMap;

    fn gen(paths: &[&str]) -> Generation {
        let files: BTreeMap<_, _> = paths
            .iter()
            .map(|p| {
                let id = ContentId::of(p.as_bytes());
                let path = FilePath::parse(p).unwrap();
                (path.clone(), id.entry(path))
            })
            .collect();
        Generation::build(
            SnapshotId::new(1).unwrap(),
            "t".into(),
            "a",
            "r".into(),
            &files,
            None,
        )
    }

    fn rows(list: &[TreeEntry]) -> Vec<String> {
        list.iter()
            .map(|e| format!("{:?} {}", e.kind, e.path))
            .collect()
    }

    #[test]
    fn listings() {
        let g = gen(&[
            "a.json",
            "conf/db/x.yaml",
            "conf/db/y.yaml",
            "conf/z.json",
            "top/t",
        ]);
        assert_eq!(
            rows(&list(&g, None, false).unwrap()),
            ["Blob a.json", "Tree conf", "Tree top"]
        );
        assert_eq!(
            rows(&list(&g, None, true).unwrap()),
            [
                "Blob a.json",
                "Tree conf",
                "Tree conf/db",
                "Blob conf/db/x.yaml",
                "Blob conf/db/y.yaml",
                "Blob conf/z.json",
                "Tree top",
                "Blob top/t"
            ]
        );
        let conf = FilePath::parse("conf").unwrap();
        assert_eq!(
            rows(&list(&g, Some(&conf), false).unwrap()),
            ["Tree conf/db", "Blob conf/z.json"]
        );
        let missing = FilePath::parse("nope").unwrap();
        assert!(matches!(
            list(&g, Some(&missing), true),
            Err(Error::NotFound { what: "tree", .. })
        ));
        let file = FilePath::parse("a.json").unwrap();
        assert!(list(&g, Some(&file), false).is_err());
        assert!(list(&gen(&[]), None, true).unwrap().is_empty());
    }

    #[test]
    fn folder_ids_follow_content() {
        let a = list(&gen(&["d/x", "e/y"]), None, false).unwrap();
        let b = list(&gen(&["d/x", "e/z"]), None, false).unwrap();
        assert_eq!(a[0].id, b[0].id);
        assert_ne!(a[1].id, b[1].id);
        assert_eq!(a[0].id.len(), 40);
    }
}
