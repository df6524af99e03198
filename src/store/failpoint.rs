//! Failpoints: named places on both sides of every persistence step where
//! the fault tests make cfgstore crash or fail, reaching the windows a
//! SIGKILL at a random moment almost never hits.
//!
//! Compiled in only with the `failpoints` cargo feature (the test suite
//! builds with it); otherwise [`hit`] is an empty inline function. The
//! binary reads its configuration from the `FAILPOINTS` environment
//! variable in the `fail` crate's syntax, e.g.
//! `FAILPOINTS='fs.rename.after=2*off->return(crash)'` (the third rename):
//!
//! - `return(crash)`: the process exits on the spot with
//!   [`CRASH_EXIT_CODE`]: no destructor runs and cfgstore makes no further
//!   syscall, so the data directory is left exactly as a crash leaves it;
//! - `return` or `return(ERRNO)` (`EIO`, `ENOSPC`, `EMFILE`, …): the step
//!   fails with that error, as the kernel would have failed it;
//! - `sleep(ms)`, `pause`, `panic`: as the `fail` crate defines them.

use std::io;

/// The exit code of a process that a `return(crash)` failpoint stopped.
pub const CRASH_EXIT_CODE: i32 = 86;

/// Every failpoint, in the order a write meets them.
pub const ALL: &[&str] = &[
    // A put's content is stored and synced; the branch lock is not taken
    // yet (the window `gc.lock` guards).
    "commit.stored",
    // Under the branch lock, before anything is written.
    "commit.locked",
    // Every durable file write (objects, generations, HEAD, tokens, users,
    // sessions, project and branch metadata): temp file, fsync, rename,
    // folder fsync.
    "fs.temp.before",
    "fs.temp.written",
    "fs.temp.synced",
    "fs.rename.after",
    "fs.dirsync.before",
    "fs.dirsync.after",
    // A new folder exists; its parent is not fsynced yet.
    "fs.mkdir.after",
    // The content objects are durable; the generation is not written yet.
    "commit.objects",
    // The generation is durable (the commit point); HEAD still names the old.
    "commit.published",
    // HEAD names the new generation; the change marker is not yet replaced.
    "commit.head",
    // The change is complete; its audit record is not appended yet.
    "audit.append",
];

/// The PostgreSQL backend's failpoints: the connection lost while a
/// branch write commits, before the server committed (`…before`) or after
/// it did, with the answer lost (`…after`). Either way the writer cannot
/// tell from the connection whether its write is in force; it must read it
/// back (`BranchLock::publish`).
pub const DATABASE: &[&str] = &["postgres.commit.before", "postgres.commit.after"];

/// Passes a failpoint: `Ok` unless the test configured it to fail here.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) -> io::Result<()> {
    fail::fail_point!(name, |arg: Option<String>| {
        match arg.as_deref() {
            Some("crash") => std::process::exit(CRASH_EXIT_CODE),
            Some(errno) => Err(io::Error::from_raw_os_error(errno_named(errno))),
            None => Err(io::Error::from_raw_os_error(libc::EIO)),
        }
    });
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) -> io::Result<()> {
    Ok(())
}

/// Loads `FAILPOINTS` from the environment; the returned guard keeps them
/// configured. A no-op without the `failpoints` feature.
#[cfg(feature = "failpoints")]
pub fn setup() -> impl Drop {
    fail::FailScenario::setup()
}

#[cfg(not(feature = "failpoints"))]
pub fn setup() {}

#[cfg(feature = "failpoints")]
fn errno_named(name: &str) -> i32 {
    match name {
        "ENOSPC" => libc::ENOSPC,
        "EMFILE" => libc::EMFILE,
        "EDQUOT" => libc::EDQUOT,
        "EACCES" => libc::EACCES,
        "EROFS" => libc::EROFS,
        _ => libc::EIO,
    }
}
