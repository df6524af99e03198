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
    print!("{}", table(header, rows));
}

/// Widest a column other than the last may be; longer cells are cut with
/// `…` (the whole value is in `--json`). The last column is never cut.
const MAX_CELL: usize = 60;

/// The text of a table: columns padded to their widest cell (at most
/// `MAX_CELL` characters), two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let last = header.len().saturating_sub(1);
    let shown = |i: usize, cell: &str| -> String {
        if i == last || cell.chars().count() <= MAX_CELL {
            cell.to_string()
        } else {
            let mut cut: String = cell.chars().take(MAX_CELL - 1).collect();
            cut.push('…');
            cut
        }
    };
    let cells: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().cloned())
        .map(|row: Vec<String>| row.iter().enumerate().map(|(i, c)| shown(i, c)).collect())
        .collect();
    let mut widths = vec![0; header.len()];
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i != last {
                // Padded by hand: a format width is limited to 65,535.
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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

/// A one-line progress report on stderr, redrawn in place, shown only on
/// a terminal (pipes and `--json` stay quiet).
pub struct Progress {
    show: bool,
}

impl Progress {
    pub fn new(json: bool) -> Progress {
        Progress {
            show: !json && io::stderr().is_terminal(),
        }
    }

    pub fn update(&self, message: &str) {
        if self.show {
            eprint!("\r{message}\x1b[K");
        }
    }

    /// Clears the line.
    pub fn done(&self) {
        if self.show {
            eprint!("\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_value_is_cut_not_a_panic() {
        let wide = "r".repeat(70_000);
        let text = table(
            &["A", "B"],
            &[vec![wide.clone(), "x".into()], vec!["y".into(), wide]],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with(&format!("{}…  x", "r".repeat(MAX_CELL - 1))));
        assert_eq!(
            lines[2].chars().count(),
            MAX_CELL + 2 + 70_000,
            "the last column is whole"
        );
        assert_eq!(
            table(&["ID", "NAME"], &[vec!["a".into(), "b".into()]]),
            "ID  NAME\na   b\n"
        );
    }
}
