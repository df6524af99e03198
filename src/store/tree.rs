//! Tree listings of a generation: folders are implied by file paths, as in
//! git, so a listing is computed from the manifest alone.

use serde::Serialize;

use super::generation::Generation;
use super::names::FilePath;
use crate::error::{Error, Result};

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

/// Lists the folder `under` (the root when `None`) of `gen`, in path order
/// with each folder before its contents. `recursive` descends into
/// sub-folders. Errors: `NotFound("tree")` when `under` is not a folder.
pub fn list(gen: &Generation, under: Option<&FilePath>, recursive: bool) -> Result<Vec<TreeEntry>> {
    let prefix = match under {
        Some(p) => format!("{}/", p.as_str()),
        None => String::new(),
    };
    let start = gen
        .entries
        .partition_point(|e| e.path.as_str().as_bytes() < prefix.as_bytes());
    let inside = gen.entries[start..]
        .iter()
        .take_while(|e| e.path.as_str().starts_with(&prefix));
    let mut out: Vec<TreeEntry> = Vec::new();
    // Folders already emitted, one per depth. Paths sharing a prefix are
    // contiguous in sorted order, so a folder's files arrive together and
    // the last folder seen at each depth is all we need to remember.
    let mut open_folders: Vec<String> = Vec::new();
    let mut any = false;
    for entry in inside {
        any = true;
        let rest = &entry.path.as_str()[prefix.len()..];
        let segments: Vec<&str> = rest.split('/').collect();
        let depth_limit = if recursive {
            segments.len() - 1
        } else {
            segments.len().min(2) - 1
        };
        for depth in 0..depth_limit {
            let folder = format!("{prefix}{}", segments[..=depth].join("/"));
            if open_folders.get(depth) != Some(&folder) {
                open_folders.truncate(depth);
                open_folders.push(folder.clone());
                out.push(TreeEntry {
                    id: folder_id(gen, &folder),
                    name: segments[depth].to_string(),
                    kind: Kind::Tree,
                    path: folder,
                    mode: "040000",
                    size: None,
                });
            }
        }
        if segments.len() == 1 || recursive {
            out.push(TreeEntry {
                id: entry.blob_id().to_string(),
                name: entry.path.file_name().to_string(),
                kind: Kind::Blob,
                path: entry.path.to_string(),
                mode: "100644",
                size: Some(entry.size),
            });
        }
    }
    if under.is_some() && !any {
        return Err(Error::not_found(
            "tree",
            under.map(|p| p.as_str()).unwrap_or(""),
        ));
    }
    Ok(out)
}

/// A digest of the files below `folder`, so a folder's id changes exactly
/// when something under it does.
fn folder_id(gen: &Generation, folder: &str) -> String {
    let prefix = format!("{folder}/");
    let start = gen
        .entries
        .partition_point(|e| e.path.as_str().as_bytes() < prefix.as_bytes());
    let mut hasher = blake3::Hasher::new();
    for e in gen.entries[start..]
        .iter()
        .take_while(|e| e.path.as_str().starts_with(&prefix))
    {
        hasher.update(e.path.as_str().as_bytes());
        hasher.update(b"\0");
        hasher.update(e.hash.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().to_hex()[..40].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::generation::{ContentId, Entry};
    use crate::store::names::SnapshotId;
    use std::collections::BTreeMap;

    fn gen(paths: &[&str]) -> Generation {
        let files: BTreeMap<_, _> = paths
            .iter()
            .map(|p| {
                let id = ContentId::of(p.as_bytes());
                let path = FilePath::parse(p).unwrap();
                (
                    path.clone(),
                    Entry {
                        path,
                        size: id.size,
                        md5: id.md5,
                        hash: id.hash,
                    },
                )
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
