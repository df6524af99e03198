//! Projects: creation (with its `main` branch, all or nothing: the
//! backend's `create_project`), lookup, listing, and the size counters
//! behind `/metrics`.

use std::sync::Arc;

use super::*;
use crate::error::{Error, Result};

impl Store {
    /// Creates project `{name}.{type}` of `owner` with an empty `main`.
    /// Errors: `Invalid` for a bad name or type, `Conflict` if it exists.
    pub fn create_project(
        &self,
        owner: &OwnerName,
        name: &str,
        kind: &str,
        actor: &str,
    ) -> Result<ProjectInfo> {
        let repo = RepoId::from_name_and_type(name, kind)?;
        let project = ProjectRef::new(owner.clone(), repo);
        let now = now_rfc3339();
        let info = ProjectFile {
            name: name.to_string(),
            kind: kind.to_string(),
            created_at: now.clone(),
        };
        let record = serde_json::to_vec_pretty(&info).expect("project file serialises");
        let main = BranchName::parse("main").expect("main is a valid branch name");
        let first = self.first_version(
            super::trees::Node::empty(),
            &now,
            actor,
            "project.create".into(),
        );
        self.backend.create_project(
            &project,
            &record,
            &main,
            &first.as_first(),
            self.lock_timeout,
        )?;
        first.stored();
        self.count(|size| {
            size.projects += 1;
            size.branches += 1;
        });
        self.announce_change();
        Ok(ProjectInfo {
            owner: owner.clone(),
            repo: project.repo,
            name: info.name,
            kind: info.kind,
            created_at: now,
        })
    }

    /// One project. Errors: `NotFound`.
    pub fn project(&self, project: &ProjectRef) -> Result<ProjectInfo> {
        Ok(self.shared_project(project)?.as_ref().clone())
    }

    /// `project` without copying its record: for checks of existence.
    pub fn require_project(&self, project: &ProjectRef) -> Result<()> {
        self.shared_project(project).map(drop)
    }

    /// The project's record, shared with the cache; "no such project" is
    /// cached too (every request for a missing project would read the disk).
    pub(super) fn shared_project(&self, project: &ProjectRef) -> Result<Arc<ProjectInfo>> {
        let found = self.cached(
            |c| c.project(project),
            || match self.read_project(project) {
                Ok(info) => Ok(Some(Arc::new(info))),
                Err(Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            },
            |c, epoch, found| c.put_project(epoch, project.clone(), found),
        )?;
        found.ok_or_else(|| Error::not_found("project", project))
    }

    pub(super) fn read_project(&self, project: &ProjectRef) -> Result<ProjectInfo> {
        let bytes = self
            .backend
            .project(project)?
            .ok_or_else(|| Error::not_found("project", project))?;
        let file: ProjectFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(self.layout().project_file(project), e.to_string()))?;
        Ok(ProjectInfo {
            owner: project.owner.clone(),
            repo: project.repo.clone(),
            name: file.name,
            kind: file.kind,
            created_at: file.created_at,
        })
    }

    /// Every project, or one owner's, sorted by owner then id.
    pub fn list_projects(&self, owner: Option<&OwnerName>) -> Result<Vec<ProjectInfo>> {
        self.backend
            .projects(owner)?
            .iter()
            .map(|project| self.project(project))
            .collect()
    }

    /// How much the store holds, for `/metrics`. With the read cache (the
    /// daemon) it is counted once and then kept by this process's writes;
    /// it is counted again only after another process changed the store
    /// (or every ten minutes), never per scrape. Without the cache, a walk.
    pub fn size(&self) -> Result<crate::metrics::StoreSize> {
        let Some(cache) = &self.cache else {
            return self.count_size();
        };
        if let Some(size) = cache.counted_size() {
            return Ok(size);
        }
        let marker = cache.marker();
        let size = self.count_size()?;
        cache.put_counted_size(marker, size.clone());
        Ok(size)
    }

    /// Walks the store: counts folders, never reads file contents.
    fn count_size(&self) -> Result<crate::metrics::StoreSize> {
        let mut size = crate::metrics::StoreSize::default();
        for project in self.list_projects(None)? {
            let project = project.project_ref();
            size.projects += 1;
            size.branches += self.branch_names(&project)?.len() as u64;
            let (objects, bytes) = self.backend.count_objects(&project)?;
            size.objects += objects;
            size.object_bytes += bytes;
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn temp_store(name: &str) -> (std::path::PathBuf, Store) {
        let dir = std::env::temp_dir().join(format!("cfgstore-size-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (store, _) = Store::init(&dir).unwrap();
        (dir, store)
    }

    /// The daemon's size is counted once and kept by its writes: a scrape
    /// does not walk the store. Another process's change makes it count again.
    #[test]
    fn size_is_kept_by_writes_and_recounted_after_others_change() {
        let (dir, mut store) = temp_store("kept");
        store.enable_read_cache();
        store.revalidate().unwrap();
        let owner = OwnerName::parse("acme").unwrap();
        store.create_project(&owner, "a", "cfg", "t").unwrap();
        let first = store.size().unwrap();
        // One object: the tree of the empty main branch.
        assert_eq!((first.projects, first.branches, first.objects), (1, 1, 1));
        let project = ProjectRef::parse("acme/a.cfg").unwrap();
        let main = BranchName::parse("main").unwrap();
        let path = FilePath::parse("x.json").unwrap();
        store
            .put_file(&project, &main, &path, b"12345", "t".into(), None)
            .unwrap();
        store
            .create_branch(
                &project,
                &BranchName::parse("dev").unwrap(),
                Some(&main),
                "t",
            )
            .unwrap();
        let kept = store.size().unwrap();
        assert_eq!(
            (
                kept.projects,
                kept.branches,
                kept.objects,
                kept.object_bytes
            ),
            (1, 2, 3, 16 + 5 + 166),
            "counted by the writes: the empty tree, the content and the tree holding it"
        );
        assert_eq!(
            Store::open(&dir).unwrap().size().unwrap().object_bytes,
            kept.object_bytes,
            "what a walk counts"
        );
        // Remove the object behind the store's back: a walk would see it
        // gone, the kept count does not.
        let objects = store.layout().objects_dir(&project);
        for fan in fs::read_dir(&objects).unwrap() {
            fs::remove_dir_all(fan.unwrap().path()).unwrap();
        }
        assert_eq!(store.size().unwrap().objects, 3, "no walk per scrape");
        // Another process changes the store: the next scrape counts again.
        let other = Store::open(&dir).unwrap();
        other.create_project(&owner, "b", "cfg", "t").unwrap();
        store.revalidate().unwrap();
        let recounted = store.size().unwrap();
        assert_eq!(
            (recounted.projects, recounted.objects),
            (2, 1),
            "b's empty tree"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
