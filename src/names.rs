//! Validated names: the only way a caller's string reaches the filesystem.
//!
//! Each type is built by `parse` and is valid by construction, so code that
//! holds an `OwnerName`, `RepoId`, `BranchName`, `FilePath` or `SnapshotId`
//! cannot produce a path that escapes the data directory or collides with
//! a name the store uses for itself. The rules are those of SPEC §1.

use std::cmp::Ordering;
use std::fmt;

use crate::error::{Error, Result};

/// Segment prefix the store keeps for itself inside file paths.
const RESERVED_SEGMENT_PREFIX: &str = ".cfgstore";

/// A local user name owning projects: `[a-z0-9][a-z0-9._-]{0,63}`.
/// The owner `public` is the public area.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerName(String);

impl OwnerName {
    pub const PUBLIC: &'static str = "public";

    pub fn parse(s: &str) -> Result<OwnerName> {
        let bytes = s.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 64
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes.iter().all(|&b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if ok {
            Ok(OwnerName(s.to_string()))
        } else {
            Err(Error::invalid(format!(
                "invalid owner {s:?}: use 1-64 of a-z 0-9 . _ - starting with a letter or digit"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_public(&self) -> bool {
        self.0 == Self::PUBLIC
    }
}

/// A project id, `{name}.{type}` (or just `{name}`): ASCII letters, digits,
/// `.`, `-`, `_`, not starting with `.`, at most 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoId(String);

impl RepoId {
    pub fn parse(s: &str) -> Result<RepoId> {
        let bytes = s.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 128
            && bytes[0] != b'.'
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if ok {
            Ok(RepoId(s.to_string()))
        } else {
            Err(Error::invalid(format!(
                "invalid project id {s:?}: use 1-128 of A-Z a-z 0-9 . - _ not starting with '.'"
            )))
        }
    }

    /// Builds the id of a project created from `{name, type}`.
    pub fn from_name_and_type(name: &str, kind: &str) -> Result<RepoId> {
        if name.is_empty() {
            return Err(Error::invalid("project name must not be empty"));
        }
        if kind.starts_with('.') || kind.ends_with('.') {
            return Err(Error::invalid(format!("invalid project type {kind:?}")));
        }
        if kind.is_empty() {
            RepoId::parse(name)
        } else {
            RepoId::parse(&format!("{name}.{kind}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A project addressed by owner and id, written `owner/repoId`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectRef {
    pub owner: OwnerName,
    pub repo: RepoId,
}

impl ProjectRef {
    pub fn new(owner: OwnerName, repo: RepoId) -> ProjectRef {
        ProjectRef { owner, repo }
    }

    /// Parses `owner/repoId`, the form the CLI and namespaced API ids use.
    pub fn parse(s: &str) -> Result<ProjectRef> {
        match s.split_once('/') {
            Some((owner, repo)) => Ok(ProjectRef {
                owner: OwnerName::parse(owner)?,
                repo: RepoId::parse(repo)?,
            }),
            None => Err(Error::invalid(format!("expected OWNER/PROJECT, got {s:?}"))),
        }
    }
}

impl fmt::Display for ProjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.repo)
    }
}

/// A branch name: what `git check-ref-format --branch` accepts, restricted
/// to ASCII `A-Z a-z 0-9 . _ - /`, at most 100 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchName(String);

impl BranchName {
    pub fn parse(s: &str) -> Result<BranchName> {
        match branch_name_problem(s) {
            None => Ok(BranchName(s.to_string())),
            Some(why) => Err(Error::invalid(format!("invalid branch name {s:?}: {why}"))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The branch's folder name: `/` becomes `%2F`. `%` cannot occur in a
    /// branch name, so the mapping is one-to-one and no folder name can be
    /// mistaken for another branch's.
    pub fn folder_name(&self) -> String {
        self.0.replace('/', "%2F")
    }

    /// The inverse of `folder_name`, for listing the branches on disk.
    pub fn from_folder_name(folder: &str) -> Result<BranchName> {
        BranchName::parse(&folder.replace("%2F", "/"))
    }

    /// True when one name is a path prefix of the other (`a` and `a/b`),
    /// which git forbids and so do we.
    pub fn conflicts_with(&self, other: &BranchName) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        let nested = |short: &str, long: &str| {
            long.len() > short.len()
                && long.starts_with(short)
                && long.as_bytes()[short.len()] == b'/'
        };
        nested(a, b) || nested(b, a)
    }
}

fn branch_name_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("empty");
    }
    if s.len() > 100 {
        return Some("longer than 100 bytes");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    {
        return Some("only A-Z a-z 0-9 . _ - / are allowed");
    }
    if s.starts_with('-') {
        return Some("must not start with '-'");
    }
    if s == "HEAD" {
        return Some("HEAD is reserved");
    }
    if s.starts_with('/') || s.ends_with('/') {
        return Some("must not start or end with '/'");
    }
    if s.contains("//") {
        return Some("must not contain '//'");
    }
    if s.contains("..") {
        return Some("must not contain '..'");
    }
    if s.ends_with('.') {
        return Some("must not end with '.'");
    }
    for segment in s.split('/') {
        if segment.starts_with('.') {
            return Some("no segment may start with '.'");
        }
        if segment.ends_with(".lock") {
            return Some("no segment may end with '.lock'");
        }
    }
    None
}

/// A file path relative to the branch root, `/`-separated. Every segment is
/// non-empty, not `.` or `..`, free of NUL, `\` and control characters, at
/// most 255 bytes; the whole path at most 1024 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FilePath(String);

impl FilePath {
    pub fn parse(s: &str) -> Result<FilePath> {
        match file_path_problem(s) {
            None => Ok(FilePath(s.to_string())),
            Some(why) => Err(Error::invalid(format!("invalid file path {s:?}: {why}"))),
        }
    }

    /// A path joined from segments that were each checked with
    /// `is_valid_segment`, at most 1,024 bytes in all (a stored tree).
    pub(crate) fn trusted(s: String) -> FilePath {
        debug_assert!(file_path_problem(&s).is_none(), "{s:?}");
        FilePath(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

/// Paths order bytewise, the order `short_id` is defined over.
impl Ord for FilePath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.as_bytes().cmp(other.0.as_bytes())
    }
}

impl PartialOrd for FilePath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Whether `name` is a valid single segment of a file path (a file or
/// folder name in a stored tree).
pub fn is_valid_segment(name: &str) -> bool {
    // Printable ASCII without '/' and '\\' (nearly every name) is checked
    // in one pass over the bytes: a 20,000-file tree is loaded per write.
    let plain = name
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'/' && b != b'\\');
    if plain {
        return !name.is_empty()
            && name.len() <= 255
            && name != "."
            && name != ".."
            && !name.starts_with(RESERVED_SEGMENT_PREFIX);
    }
    !name.contains('/') && name.len() <= 255 && file_path_problem(name).is_none()
}

fn file_path_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("empty");
    }
    if s.len() > 1024 {
        return Some("longer than 1024 bytes");
    }
    for segment in s.split('/') {
        if segment.is_empty() {
            return Some("empty segment (leading, trailing or double '/')");
        }
        if segment == "." || segment == ".." {
            return Some("'.' and '..' segments are not allowed");
        }
        if segment.len() > 255 {
            return Some("a segment is longer than 255 bytes");
        }
        // One pass over the characters: this runs on every read request.
        let forbidden = |c: char| c == '\\' || c.is_control() || is_invisible_control(c);
        if let Some(c) = segment.chars().find(|c| forbidden(*c)) {
            return Some(if is_invisible_control(c) {
                "invisible direction and line controls (U+200B-U+200F, U+202A-U+202E, U+2028/2029, U+2066-U+2069) are not allowed"
            } else {
                "NUL, '\\' and control characters are not allowed"
            });
        }
        if segment.starts_with(RESERVED_SEGMENT_PREFIX) {
            return Some("names starting with '.cfgstore' are reserved");
        }
    }
    None
}

/// Characters that change how text around them is shown without being
/// seen themselves: zero-width spaces and joiners, direction marks,
/// embeddings, overrides and isolates, line and paragraph separators. In a
/// name they let one thing pass for another in the audit trail and in CLI
/// output (`invoice\u{202E}nosj.exe`), so names and paths refuse them.
pub fn is_invisible_control(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2028}' | '\u{2029}' | '\u{2066}'..='\u{2069}')
}

/// A snapshot version, `v0001`, `v0002`, ..., `v9999`, `v10000`, ...
/// Ordered by number, displayed with at least four digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotId(u64);

impl SnapshotId {
    /// Largest version we accept; far beyond any real history, small enough
    /// that `+ 1` never overflows.
    const MAX: u64 = 999_999_999;

    pub fn new(number: u64) -> Result<SnapshotId> {
        if (1..=Self::MAX).contains(&number) {
            Ok(SnapshotId(number))
        } else {
            Err(Error::invalid(format!(
                "version number {number} out of range"
            )))
        }
    }

    /// Accepts `vN` with 1-9 digits (`v1`, `v0001` and `v00001` are the same).
    pub fn parse(s: &str) -> Result<SnapshotId> {
        let digits = s.strip_prefix('v').unwrap_or("");
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid(format!(
                "invalid version {s:?}: expected vNNNN, e.g. v0003"
            )));
        }
        let number: u64 = digits
            .parse()
            .map_err(|_| Error::invalid(format!("invalid version {s:?}")))?;
        SnapshotId::new(number)
    }

    pub fn number(self) -> u64 {
        self.0
    }

    pub fn next(self) -> SnapshotId {
        SnapshotId(self.0 + 1)
    }

    pub fn previous(self) -> Option<SnapshotId> {
        (self.0 > 1).then(|| SnapshotId(self.0 - 1))
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{:04}", self.0)
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
display_as_str!(OwnerName, RepoId, BranchName, FilePath);

macro_rules! serialize_as_str {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
serialize_as_str!(OwnerName, RepoId, BranchName, FilePath, ProjectRef);

macro_rules! deserialize_by_parse {
    ($($t:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_by_parse!(OwnerName, RepoId, BranchName, FilePath);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn owners() {
        for ok in ["demo", "a", "public", "team-a.ops_1", &"a".repeat(64)] {
            assert!(OwnerName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Demo",
            ".a",
            "-a",
            "a/b",
            "a b",
            "..",
            &"a".repeat(65),
            "é",
            "a\0",
        ] {
            assert!(OwnerName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repo_ids() {
        for ok in ["b2b-cnc.erp-config", "x", "A_b-c.d", &"r".repeat(128)] {
            assert!(RepoId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "a%2Fb",
            "a b",
            "a\\b",
            &"r".repeat(129),
            "ü",
            "a\0b",
        ] {
            assert!(RepoId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            RepoId::from_name_and_type("b2b-cnc", "erp-config")
                .unwrap()
                .as_str(),
            "b2b-cnc.erp-config"
        );
        assert_eq!(
            RepoId::from_name_and_type("plain", "").unwrap().as_str(),
            "plain"
        );
        assert!(RepoId::from_name_and_type("", "x").is_err());
        assert!(RepoId::from_name_and_type("a", ".x").is_err());
    }

    #[test]
    fn project_refs() {
        let p = ProjectRef::parse("demo/b2b-cnc.erp-config").unwrap();
        assert_eq!(p.to_string(), "demo/b2b-cnc.erp-config");
        assert!(ProjectRef::parse("demo").is_err());
        assert!(ProjectRef::parse("demo/a/b").is_err());
        assert!(ProjectRef::parse("../x").is_err());
    }

    #[test]
    fn branches_follow_git_rules() {
        for ok in [
            "main",
            "release/2026.1",
            "feature/a-b_c",
            "v1.2",
            "a/b/c",
            "x.lockx",
        ] {
            assert!(BranchName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "..",
            "a..b",
            "a//b",
            "/a",
            "a/",
            ".a",
            "a/.b",
            "a.lock",
            "a/b.lock/c",
            "a.",
            "-a",
            "HEAD",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "a@{1}",
            "é",
            "a\0",
            "a%2Fb",
            &"b".repeat(101),
        ] {
            assert!(BranchName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(BranchName::parse(&"b".repeat(100)).is_ok());
    }

    #[test]
    fn branch_folders_are_one_to_one() {
        let b = BranchName::parse("release/2026.1").unwrap();
        assert_eq!(b.folder_name(), "release%2F2026.1");
        assert_eq!(BranchName::from_folder_name(&b.folder_name()).unwrap(), b);
    }

    #[test]
    fn nested_branches_conflict() {
        let a = BranchName::parse("a").unwrap();
        let ab = BranchName::parse("a/b").unwrap();
        let abc = BranchName::parse("ab").unwrap();
        assert!(a.conflicts_with(&ab));
        assert!(ab.conflicts_with(&a));
        assert!(!a.conflicts_with(&abc));
        assert!(!a.conflicts_with(&a));
    }

    #[test]
    fn file_paths() {
        for ok in [
            "a",
            "config/app settings/v1.2/feature flags.json",
            "config/unicode/café menü.txt",
            "..a",
            "a..",
            ".env",
            "a/.b",
        ] {
            assert!(FilePath::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            ".",
            "..",
            "a/../b",
            "./a",
            "a/./b",
            "a\\b",
            "a\0b",
            "a\nb",
            "a\tb",
            "a\u{7f}",
            "a\u{85}",
            "invoice\u{202E}nosj.exe",
            "a\u{200B}b",
            "a\u{200F}",
            "a\u{202A}",
            "a\u{2028}b",
            "a\u{2029}",
            "a\u{2066}b/c",
            "dir\u{2069}/x",
            ".cfgstore",
            "x/.cfgstore-tmp-1",
            &"s".repeat(256),
            &format!(
                "{}/{}/{}/{}/{}",
                "s".repeat(250),
                "s".repeat(250),
                "s".repeat(250),
                "s".repeat(250),
                "s".repeat(30)
            ),
        ] {
            assert!(FilePath::parse(bad).is_err(), "{bad:?}");
        }
        assert!(FilePath::parse(&"s".repeat(255)).is_ok());
        assert_eq!(FilePath::parse("a/b/c.json").unwrap().file_name(), "c.json");
    }

    #[test]
    fn snapshot_ids_sort_numerically() {
        let v = |s| SnapshotId::parse(s).unwrap();
        assert_eq!(v("v0001").to_string(), "v0001");
        assert_eq!(v("v1"), v("v0001"));
        assert_eq!(v("v10000").to_string(), "v10000");
        assert!(v("v9999") < v("v10000"));
        for bad in [
            "",
            "v",
            "0001",
            "v0",
            "v0000",
            "v-1",
            "v1a",
            "V0001",
            "v 1",
            "v1234567890",
            "v٣",
        ] {
            assert!(SnapshotId::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn valid_file_paths_never_escape(s in "\\PC{0,64}") {
            if let Ok(p) = FilePath::parse(&s) {
                for seg in p.as_str().split('/') {
                    prop_assert!(!seg.is_empty() && seg != "." && seg != "..");
                    prop_assert!(!seg.contains('\\') && !seg.contains('\0'));
                }
            }
        }

        #[test]
        fn file_paths_reject_any_dot_dot_segment(prefix in "[a-z/]{0,8}", suffix in "[a-z/]{0,8}") {
            let s = format!("{prefix}/../{suffix}");
            prop_assert!(FilePath::parse(&s).is_err());
        }

        #[test]
        fn valid_branch_folders_round_trip(s in "[A-Za-z0-9._/-]{1,40}") {
            if let Ok(b) = BranchName::parse(&s) {
                let folder = b.folder_name();
                prop_assert!(!folder.contains('/'));
                prop_assert!(!folder.starts_with('.'));
                prop_assert_eq!(BranchName::from_folder_name(&folder).unwrap(), b);
            }
        }

        #[test]
        fn branch_names_with_other_bytes_are_rejected(s in "[A-Za-z0-9._/-]{0,10}[^A-Za-z0-9._/-][A-Za-z0-9._/-]{0,10}") {
            prop_assert!(BranchName::parse(&s).is_err());
        }

        #[test]
        fn repo_ids_never_contain_separators(s in "\\PC{0,40}") {
            if let Ok(r) = RepoId::parse(&s) {
                prop_assert!(!r.as_str().contains('/') && !r.as_str().starts_with('.'));
            }
        }

        #[test]
        fn snapshot_ids_round_trip(n in 1u64..=999_999_999) {
            let id = SnapshotId::new(n).unwrap();
            prop_assert_eq!(SnapshotId::parse(&id.to_string()).unwrap(), id);
        }
    }
}
