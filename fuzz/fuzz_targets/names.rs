//! Validated names (src/store/names.rs): whatever is accepted is safe as
//! a path component (I5) and round-trips exactly.
#![no_main]

use std::path::{Component, Path};

use cfgstore::store::{BranchName, FilePath, OwnerName, ProjectRef, RepoId, SnapshotId};
use libfuzzer_sys::fuzz_target;

/// One component, relative, not `.`/`..`, no NUL or separator.
fn is_plain_component(s: &str) -> bool {
    let mut components = Path::new(s).components();
    matches!(components.next(), Some(Component::Normal(c)) if c == s)
        && components.next().is_none()
        && !s.contains(['\0', '\\'])
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(owner) = OwnerName::parse(s) {
        assert_eq!(owner.as_str(), s);
        assert_eq!(owner.to_string(), s);
        assert!(is_plain_component(s), "owner {s:?}");
    }
    if let Ok(repo) = RepoId::parse(s) {
        assert_eq!(repo.as_str(), s);
        assert!(is_plain_component(s), "repo id {s:?}");
    }
    if let Ok(project) = ProjectRef::parse(s) {
        assert_eq!(project.to_string(), s);
        assert_eq!(ProjectRef::parse(&project.to_string()).unwrap(), project);
    }
    if let Ok(branch) = BranchName::parse(s) {
        assert_eq!(branch.as_str(), s);
        let folder = branch.folder_name();
        assert!(is_plain_component(&folder), "branch folder {folder:?}");
        assert!(!folder.starts_with('.'), "branch folder {folder:?}");
        assert_eq!(BranchName::from_folder_name(&folder).unwrap(), branch);
        let main = BranchName::parse("main").unwrap();
        assert_eq!(branch.conflicts_with(&main), main.conflicts_with(&branch));
        assert!(!branch.conflicts_with(&branch));
    }
    if let Ok(path) = FilePath::parse(s) {
        assert_eq!(path.as_str(), s);
        for segment in s.split('/') {
            assert!(is_plain_component(segment), "file path {s:?}");
            assert!(!segment.starts_with(".cfgstore"), "file path {s:?}");
        }
        assert!(s.ends_with(path.file_name()));
    }
    if let Ok(version) = SnapshotId::parse(s) {
        let shown = version.to_string();
        assert_eq!(SnapshotId::parse(&shown).unwrap(), version);
        assert_eq!(SnapshotId::new(version.number()).unwrap(), version);
        assert!(version.next() > version);
        assert!(version.previous().is_none_or(|p| p < version));
    }
    // `{name}\n{type}`, as project creation takes them.
    if let Some((name, kind)) = s.split_once('\n') {
        if let Ok(repo) = RepoId::from_name_and_type(name, kind) {
            assert_eq!(RepoId::parse(repo.as_str()).unwrap(), repo);
        }
    }
});
