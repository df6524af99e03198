//! Publish-time checks: nothing malformed reaches an ERP.
//!
//! A `.json`, `.yaml`/`.yml` or `.toml` file must parse, and no mapping may
//! name a key twice (serde_json and most YAML libraries silently keep the
//! last one, so the file an editor reviewed is not the one an ERP reads).
//! A problem names its line and column. YAML goes through an event parser
//! (saphyr) that never expands aliases, so a "billion laughs" file costs
//! its own size, not more. Other files are not looked at.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::names::FilePath;

/// The kind of content a path holds, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    Toml,
}

impl Format {
    pub fn of(path: &FilePath) -> Option<Format> {
        let name = path.file_name().to_ascii_lowercase();
        let ext = name.rsplit_once('.')?.1;
        match ext {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

/// Checks one file; `Unprocessable` (422) naming the problem's line and
/// column when it is malformed.
pub fn check(path: &FilePath, bytes: &[u8]) -> Result<()> {
    let Some(format) = Format::of(path) else {
        return Ok(());
    };
    let problem = match std::str::from_utf8(bytes) {
        Err(e) => Some(format!("not UTF-8 text (byte {})", e.valid_up_to())),
        Ok(text) => match format {
            Format::Json => json_problem(text),
            Format::Yaml => yaml_problem(text),
            Format::Toml => toml_problem(text),
        },
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(Error::Unprocessable {
            path: path.to_string(),
            problems: vec![problem],
        }),
    }
}

/// Checks every file; all problems at once, in path order.
pub fn check_all<'a>(files: impl IntoIterator<Item = (&'a FilePath, &'a [u8])>) -> Result<()> {
    let mut problems = Vec::new();
    for (path, bytes) in files {
        if let Err(Error::Unprocessable { path, problems: p }) = check(path, bytes) {
            problems.extend(p.into_iter().map(|p| format!("{path}: {p}")));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Unprocessable {
            path: format!("{} files", problems.len()),
            problems,
        })
    }
}

// ----- JSON -----------------------------------------------------------------

fn json_problem(text: &str) -> Option<String> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let result = NoDuplicates.deserialize(&mut de).and_then(|()| de.end());
    result.err().map(|e| {
        format!(
            "line {}, column {}: {}",
            e.line(),
            e.column(),
            strip_position(&e.to_string())
        )
    })
}

/// serde_json's messages end with " at line L column C": the position is
/// said once, first.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Walks any JSON value, refusing an object that names a key twice.
struct NoDuplicates;

impl<'de> serde::de::DeserializeSeed<'de> for NoDuplicates {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicates {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value_seed(NoDuplicates)?;
        }
        Ok(())
    }
}

// ----- YAML -----------------------------------------------------------------

fn yaml_problem(text: &str) -> Option<String> {
    use saphyr_parser::{Event, Parser};
    enum Node {
        Mapping { keys: HashSet<String>, at_key: bool },
        Sequence,
    }
    // Every node inside a mapping flips it between key and value.
    fn entered(stack: &mut [Node]) -> bool {
        match stack.last_mut() {
            Some(Node::Mapping { at_key, .. }) => {
                let was_key = *at_key;
                *at_key = !*at_key;
                was_key
            }
            _ => false,
        }
    }
    let mut stack: Vec<Node> = Vec::new();
    for item in Parser::new_from_str(text) {
        let (event, span) = match item {
            Ok(item) => item,
            Err(e) => {
                let m = e.marker();
                return Some(format!(
                    "line {}, column {}: {}",
                    m.line(),
                    m.col() + 1,
                    e.info()
                ));
            }
        };
        let at = |what: String| {
            Some(format!(
                "line {}, column {}: {what}",
                span.start.line(),
                span.start.col() + 1
            ))
        };
        match event {
            Event::Scalar(value, ..) => {
                let is_key = entered(&mut stack);
                if is_key {
                    if let Some(Node::Mapping { keys, .. }) = stack.last_mut() {
                        if !keys.insert(value.to_string()) {
                            return at(format!("duplicate key {:?}", value.as_ref()));
                        }
                    }
                }
            }
            Event::Alias(_) => {
                entered(&mut stack);
            }
            Event::MappingStart(..) => {
                entered(&mut stack);
                stack.push(Node::Mapping {
                    keys: HashSet::new(),
                    at_key: true,
                });
            }
            Event::SequenceStart(..) => {
                entered(&mut stack);
                stack.push(Node::Sequence);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    None
}

// ----- TOML -----------------------------------------------------------------

fn toml_problem(text: &str) -> Option<String> {
    // The toml crate refuses duplicate keys and tables itself.
    let err = text.parse::<toml::Table>().err()?;
    let message = err.message().trim().to_string();
    Some(match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(path: &str, text: &str) -> Option<String> {
        match check(&FilePath::parse(path).unwrap(), text.as_bytes()) {
            Ok(()) => None,
            Err(Error::Unprocessable { problems, .. }) => Some(problems.join("; ")),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn json_names_line_column_and_duplicates() {
        assert_eq!(
            problem("a.json", "{\"a\": 1, \"b\": [1, {\"c\": null}]}"),
            None
        );
        let p = problem("a.json", "{\n  \"a\": 1,\n  \"a\": 2\n}").unwrap();
        assert!(
            p.starts_with("line 3, column ") && p.contains("duplicate key \"a\""),
            "{p}"
        );
        let p = problem("conf/x.JSON", "{\n  \"a\": 1,\n}").unwrap();
        assert!(p.starts_with("line 3, column 1: "), "{p}");
        assert!(problem("a.json", "{} {}").is_some(), "trailing data");
        // Duplicates in nested objects, not across siblings.
        assert!(problem("a.json", "{\"x\": {\"k\": 1, \"k\": 2}}").is_some());
        assert_eq!(problem("a.json", "[{\"k\": 1}, {\"k\": 2}]"), None);
        assert_eq!(
            problem("a.txt", "{{{"),
            None,
            "other files are not looked at"
        );
    }

    #[test]
    fn yaml_names_line_column_and_duplicates_without_expanding_aliases() {
        assert_eq!(problem("a.yaml", "a: 1\nb:\n  - x\n  - {c: 2}\n"), None);
        let p = problem("a.yml", "a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(p, "line 3, column 1: duplicate key \"a\"");
        assert_eq!(problem("a.yaml", "x:\n  k: 1\ny:\n  k: 2\n"), None);
        assert!(problem("a.yaml", "a: [1, 2\nb: 3\n")
            .unwrap()
            .starts_with("line "));
        // A billion laughs is its own size: aliases are never expanded.
        let mut laughs = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (i, name) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().enumerate() {
            let prev = ["a", "b", "c", "d", "e", "f", "g", "h"][i];
            laughs.push_str(&format!("{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        assert_eq!(problem("laughs.yaml", &laughs), None);
    }

    #[test]
    fn toml_names_line_column_and_duplicates() {
        assert_eq!(problem("a.toml", "a = 1\n[t]\nb = \"x\"\n"), None);
        let p = problem("a.toml", "a = 1\nb = 2\na = 3\n").unwrap();
        assert!(
            p.starts_with("line 3, column 1: ") && p.contains("duplicate key"),
            "{p}"
        );
        assert!(problem("a.toml", "a = \n")
            .unwrap()
            .starts_with("line 1, column"));
    }

    #[test]
    fn not_utf8_is_malformed_for_a_text_format() {
        let err = check(&FilePath::parse("a.json").unwrap(), b"\xff\xfe").unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
