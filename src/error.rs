//! The one error type of the library.
//!
//! Variants say what happened from the caller's point of view, not where in
//! the code it happened. Only `api::response` maps them to HTTP statuses and
//! only `cli/` turns them into exit codes, each in one exhaustive `match`, so
//! a new variant forces a decision in both places.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Every failure the library reports.
#[derive(Debug)]
pub enum Error {
    /// A named thing does not exist. `what` is a noun such as "project",
    /// "branch", "file", "version", "token"; `name` is what was asked for.
    NotFound { what: &'static str, name: String },
    /// A `ref` that names no branch and no retained version of the
    /// project; `branches` are the ones that exist, for the hint.
    UnknownRef {
        what: &'static str,
        reference: String,
        branches: Vec<String>,
    },
    /// The caller sent something malformed: a bad name, path, version, body.
    Invalid(String),
    /// The caller is not authenticated (missing, unknown, expired token...).
    Unauthorized(Unauthorized),
    /// The caller is authenticated but not allowed to do this.
    Forbidden(String),
    /// The request conflicts with the current state (exists already,
    /// `a` vs `a/b` branches, a stale `If-Match`).
    Conflict(String),
    /// Another writer holds the branch lock longer than we are willing to wait.
    Busy(String),
    /// Too many failed attempts; try again after this many seconds.
    TooManyRequests { retry_after: u64 },
    /// A file whose content is malformed for its type (JSON, YAML, TOML):
    /// each problem names its line and column. Nothing was written.
    Unprocessable { path: String, problems: Vec<String> },
    /// A request body over the configured limit.
    TooLarge(String),
    /// A request body of a kind this endpoint does not take.
    UnsupportedMediaType(String),
    /// The client took too long to send its request.
    TimedOut(String),
    /// Something on disk is not what the store wrote: a manifest that does
    /// not parse, an object with the wrong size, a planted special file.
    Corrupt { path: PathBuf, detail: String },
    /// The operating system refused an I/O operation.
    Io { path: PathBuf, source: io::Error },
    /// The store's database cannot be reached (down, restarting, the
    /// network): nothing was changed, and the same request may succeed
    /// shortly. `place` says where it is (never a password).
    Unavailable { place: String, detail: String },
}

/// Why a request was not authenticated. The API answers all of these with
/// 401; the distinction exists for the audit trail and for the one message
/// clients switch on (`401 FINGERPRINT_MISMATCH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    MissingToken,
    UnknownToken,
    Expired,
    FingerprintMissing,
    FingerprintMismatch,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn not_found(what: &'static str, name: impl fmt::Display) -> Error {
        Error::NotFound {
            what,
            name: name.to_string(),
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Error {
        Error::Invalid(msg.into())
    }

    pub fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// Whether this is the file system saying it is full: no space left
    /// (`ENOSPC`, also what running out of inodes reports) or a quota hit
    /// (`EDQUOT`). Nothing the caller sent is wrong, and retrying helps only
    /// once space is freed, so it is reported apart from other I/O errors.
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            }
            _ => false,
        }
    }

    /// Wraps an `io::Error` with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { what, name } => write!(f, "{what} not found: {name}"),
            Error::UnknownRef {
                what,
                reference,
                branches,
            } => {
                write!(f, "{what} not found: no branch or version {reference:?}")?;
                match branches.as_slice() {
                    [] => write!(f, " (the project has no branches)"),
                    _ => write!(f, " (branches: {})", branches.join(", ")),
                }
            }
            Error::Invalid(msg) => write!(f, "{msg}"),
            Error::Unauthorized(reason) => write!(f, "unauthorized: {reason}"),
            Error::Forbidden(msg) => write!(f, "forbidden: {msg}"),
            Error::Conflict(msg) => write!(f, "conflict: {msg}"),
            Error::Busy(msg) => write!(f, "busy: {msg}"),
            Error::TooManyRequests { retry_after } => {
                write!(f, "too many attempts; retry in {retry_after} s")
            }
            Error::Unprocessable { path, problems } => {
                write!(f, "{path} is not valid: {}", problems.join("; "))
            }
            Error::TooLarge(msg) => write!(f, "too large: {msg}"),
            Error::UnsupportedMediaType(msg) => write!(f, "unsupported media type: {msg}"),
            Error::TimedOut(msg) => write!(f, "timed out: {msg}"),
            Error::Corrupt { path, detail } => {
                write!(f, "store corrupt at {}: {detail}", path.display())
            }
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Unavailable { place, detail } => {
                write!(
                    f,
                    "the store's database at {place} is unavailable: {detail}"
                )
            }
        }
    }
}

impl fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unauthorized::MissingToken => "no token given",
            Unauthorized::UnknownToken => "unknown or revoked token",
            Unauthorized::Expired => "token expired",
            Unauthorized::FingerprintMissing => "X-Instance-Id required by this token",
            Unauthorized::FingerprintMismatch => {
                "X-Instance-Id does not match the bound fingerprint"
            }
        })
    }
}

// No `source()`: `Display` already ends with the I/O error, and a source
// would make error-chain printers (anyhow's `{:#}`) say it twice.
impl std::error::Error for Error {}
