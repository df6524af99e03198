//! Output helpers shared by the subcommands: JSON, aligned tables,
//! confirmation prompts and argument parsing into validated names.

use std::fmt;
use std::io::{self, BufRead, IsTerminal, Write};

use cfgstore::store::{BranchName, FilePath, ProjectRef, SnapshotId};

/// An error in how the command was called (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints rows as left-aligned columns separated by two spaces. The last
/// column is not padded, so long paths or reasons do not push trailing
/// blanks.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut s = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Asks a yes/no question on the terminal. Without a terminal there is no
/// one to ask: the caller must pass `--yes`.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    if !io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "{question} — refusing without confirmation; pass --yes"
        ))
        .into());
    }
    eprint!("{question} [y/N] ");
    io::stderr().flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

pub fn project(s: &str) -> anyhow::Result<ProjectRef> {
    Ok(ProjectRef::parse(s)?)
}

pub fn branch(s: &str) -> anyhow::Result<BranchName> {
    Ok(BranchName::parse(s)?)
}

pub fn path(s: &str) -> anyhow::Result<FilePath> {
    Ok(FilePath::parse(s)?)
}

pub fn version(s: &str) -> anyhow::Result<SnapshotId> {
    Ok(SnapshotId::parse(s)?)
}

/// A human-readable byte count.
pub fn size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}
