//! `Draft`: a tree being edited, copy-on-write.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Child, Found, NewChild, Node};
use crate::error::{Error, Result};
use crate::names::FilePath;
use crate::store::generation::ContentId;

/// A tree being edited: folders on edited paths are opened (their
/// children copied out), everything else stays the shared node.
pub struct Draft {
    root: Slot,
}

enum Slot {
    Shared(Arc<Node>),
    Open(BTreeMap<String, Item>),
}

enum Item {
    File(ContentId),
    Folder(Slot),
}

impl Item {
    /// A folder without files (all removed in this draft).
    fn is_empty(&self) -> bool {
        match self {
            Item::File(_) => false,
            Item::Folder(Slot::Shared(node)) => node.file_count() == 0,
            Item::Folder(Slot::Open(items)) => items.values().all(Item::is_empty),
        }
    }
}

impl Slot {
    fn open(&mut self) -> &mut BTreeMap<String, Item> {
        if let Slot::Shared(node) = self {
            let items = node
                .children
                .iter()
                .map(|c| {
                    let name = node.child_name(c).to_string();
                    let item = match c {
                        Child::File(span) => Item::File(node.view(*span).content()),
                        Child::Dir { node, .. } => Item::Folder(Slot::Shared(Arc::clone(node))),
                    };
                    (name, item)
                })
                .collect();
            *self = Slot::Open(items);
        }
        match self {
            Slot::Open(items) => items,
            Slot::Shared(_) => unreachable!("opened above"),
        }
    }

    fn first_file(&self, prefix: &str) -> String {
        match self {
            Slot::Shared(node) => node.first_file().map(|f| format!("{prefix}/{f}")),
            Slot::Open(items) => items.iter().next().map(|(name, item)| match item {
                Item::File(_) => format!("{prefix}/{name}"),
                Item::Folder(slot) => slot.first_file(&format!("{prefix}/{name}")),
            }),
        }
        .unwrap_or_else(|| format!("{prefix}/…"))
    }

    fn finish(self) -> Option<Arc<Node>> {
        match self {
            Slot::Shared(node) => (node.file_count > 0).then_some(node),
            Slot::Open(items) => {
                let children: Vec<(String, NewChild)> = items
                    .into_iter()
                    .filter_map(|(name, item)| match item {
                        Item::File(c) => Some((name, NewChild::File(c))),
                        Item::Folder(slot) => slot.finish().map(|n| (name, NewChild::Dir(n))),
                    })
                    .collect();
                (!children.is_empty()).then(|| Node::assemble(children))
            }
        }
    }
}

impl Draft {
    pub fn new(base: Arc<Node>) -> Draft {
        Draft {
            root: Slot::Shared(base),
        }
    }

    /// Starts over from `base` (a rollback) or, with an empty tree, from
    /// nothing (an import that replaces the branch).
    pub fn reset(&mut self, base: Arc<Node>) {
        self.root = Slot::Shared(base);
    }

    /// Puts a file at `path`. A path cannot be both a file and a folder
    /// of other files: `a` and `a/b` never coexist in one branch (a tree
    /// listing, an archive and a checkout on disk could not hold both).
    /// Errors: `Conflict`.
    pub fn insert(&mut self, path: &FilePath, content: ContentId) -> Result<()> {
        let p = path.as_str();
        let mut items = self.root.open();
        let mut segments = p.split('/').peekable();
        let mut walked = 0;
        while let Some(segment) = segments.next() {
            walked += segment.len();
            if segments.peek().is_none() {
                // A folder this draft emptied is no folder any more.
                if let Some(Item::Folder(slot)) = items.get(segment).filter(|i| !i.is_empty()) {
                    return Err(Error::Conflict(format!(
                        "{p} is a folder (it holds {}), not a file",
                        slot.first_file(p)
                    )));
                }
                items.insert(segment.to_string(), Item::File(content));
                return Ok(());
            }
            let item = items
                .entry(segment.to_string())
                .or_insert_with(|| Item::Folder(Slot::Open(BTreeMap::new())));
            match item {
                Item::File(_) => {
                    return Err(Error::Conflict(format!(
                        "{} is a file, so {p} cannot be inside it",
                        &p[..walked]
                    )))
                }
                Item::Folder(slot) => items = slot.open(),
            }
            walked += 1;
        }
        Ok(())
    }

    /// Removes the file at `path`; false if there is none.
    pub fn remove(&mut self, path: &FilePath) -> bool {
        // Look before opening: a miss leaves the draft as it was.
        if !self.contains_file(path) {
            return false;
        }
        let segments: Vec<&str> = path.as_str().split('/').collect();
        let mut items = self.root.open();
        for segment in &segments[..segments.len() - 1] {
            match items.get_mut(*segment) {
                Some(Item::Folder(slot)) => items = slot.open(),
                _ => return false,
            }
        }
        items.remove(segments[segments.len() - 1]).is_some()
    }

    fn contains_file(&self, path: &FilePath) -> bool {
        let mut slot = &self.root;
        let mut segments = path.as_str().split('/').peekable();
        while let Some(segment) = segments.next() {
            match slot {
                Slot::Shared(node) => {
                    let rest: Vec<&str> = std::iter::once(segment).chain(segments).collect();
                    return matches!(node.get(&rest.join("/")), Some(Found::File(_)));
                }
                Slot::Open(items) => match items.get(segment) {
                    Some(Item::File(_)) => return segments.peek().is_none(),
                    Some(Item::Folder(s)) => slot = s,
                    None => return false,
                },
            }
        }
        false
    }

    /// The finished tree; folders left without files are dropped.
    pub fn finish(self) -> Arc<Node> {
        self.root.finish().unwrap_or_else(Node::empty)
    }
}
