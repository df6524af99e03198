//! Unified line diffs of two versions of a file, for `history diff`,
//! dry runs and (later) the web UI's compare view.

/// The hunks (3 lines of context) turning `old` into `new`, or a one-line
/// note when either side is not text. Empty when they are equal.
pub fn unified(old: &[u8], new: &[u8]) -> String {
    let (Ok(old), Ok(new)) = (std::str::from_utf8(old), std::str::from_utf8(new)) else {
        return format!(
            "binary files differ ({} -> {} bytes)\n",
            old.len(),
            new.len()
        );
    };
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hunks_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nD\ne\nf\ng\nh\n";
        let diff = super::unified(old.as_bytes(), new.as_bytes());
        assert!(diff.starts_with("@@ -1,7 +1,7 @@\n"), "{diff}");
        assert!(diff.contains("-d\n+D\n"), "{diff}");
        assert_eq!(super::unified(b"same\n", b"same\n"), "");
        assert_eq!(
            super::unified(b"\xff", b"x"),
            "binary files differ (1 -> 1 bytes)\n"
        );
    }
}
