//! Publish-time checks: nothing malformed reaches an ERP, and nothing that
//! breaks the schema kept beside it (`NAME.schema.json`, JSON Schema
//! 2020-12, for `NAME.json|yaml|yml|toml` in the same folder).
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
    let files: Vec<(&FilePath, &[u8])> = files.into_iter().collect();
    // An import checks thousands of files: on every core.
    let checked = crate::store::parallel_map(&files, |(path, bytes)| check(path, bytes));
    let mut problems = Vec::new();
    for result in checked {
        if let Err(Error::Unprocessable { path, problems: p }) = result {
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

// ----- schemas --------------------------------------------------------------

/// The suffix of a schema file: `NAME.schema.json` validates `NAME.json`,
/// `NAME.yaml`, `NAME.yml` and `NAME.toml` in the same folder.
const SCHEMA_SUFFIX: &str = ".schema.json";
const VALIDATED: [&str; 4] = ["json", "yaml", "yml", "toml"];

/// The schema that governs `path`, if `path` is a config file.
fn schema_for(path: &FilePath) -> Option<FilePath> {
    let p = path.as_str();
    if p.ends_with(SCHEMA_SUFFIX) {
        return None;
    }
    let (stem, ext) = p.rsplit_once('.')?;
    if !VALIDATED.contains(&ext.to_ascii_lowercase().as_str()) {
        return None;
    }
    FilePath::parse(&format!("{stem}{SCHEMA_SUFFIX}")).ok()
}

/// The config files a schema at `path` governs.
fn governed_by(path: &FilePath) -> Vec<FilePath> {
    let Some(stem) = path.as_str().strip_suffix(SCHEMA_SUFFIX) else {
        return Vec::new();
    };
    VALIDATED
        .iter()
        .filter_map(|ext| FilePath::parse(&format!("{stem}.{ext}")).ok())
        .collect()
}

/// Checks the schemas of a write: every written config file against its
/// folder's schema, and every written schema against the files it governs.
/// `state(path)` is the content `path` will have after the write (`None`
/// if it will not exist). All problems at once: `Unprocessable`.
pub fn check_schemas(
    written: &[FilePath],
    state: &dyn Fn(&FilePath) -> Result<Option<Vec<u8>>>,
) -> Result<()> {
    let mut pairs: Vec<(FilePath, FilePath)> = Vec::new();
    for path in written {
        if let Some(schema) = schema_for(path) {
            pairs.push((schema, path.clone()));
        }
        for target in governed_by(path) {
            pairs.push((path.clone(), target));
        }
    }
    pairs.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
    pairs.dedup();
    let mut problems = Vec::new();
    for (schema_path, target) in pairs {
        let (Some(schema), Some(config)) = (state(&schema_path)?, state(&target)?) else {
            continue;
        };
        let schema: serde_json::Value = match serde_json::from_slice(&schema) {
            Ok(schema) => schema,
            Err(e) => {
                problems.push(format!("{schema_path}: not JSON: {e}"));
                continue;
            }
        };
        let validator = match jsonschema::draft202012::new(&schema) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{schema_path}: not a valid JSON Schema: {e}"));
                continue;
            }
        };
        let Some(instance) = as_json(&target, &config) else {
            continue; // malformed: `check` reports it
        };
        for error in validator.iter_errors(&instance) {
            let location = error.instance_path().to_string();
            let location = if location.is_empty() {
                "/".to_string()
            } else {
                location
            };
            problems.push(format!(
                "{target}: {location}: {error} (schema {schema_path})"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Unprocessable {
            path: format!("{} schema checks", problems.len()),
            problems,
        })
    }
}

/// A config file (JSON, YAML or TOML, by its extension) as a JSON value,
/// for its schema and for key-level comparison; `None` when it is another
/// kind of file or malformed.
pub fn as_json(path: &FilePath, bytes: &[u8]) -> Option<serde_json::Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    match Format::of(path)? {
        Format::Json => serde_json::from_str(text).ok(),
        Format::Toml => Some(toml_json(toml::Value::Table(text.parse().ok()?))),
        Format::Yaml => yaml_value(text),
    }
}

/// A TOML value as JSON; dates and times become their TOML text (serde
/// would give them as an internal `$__toml_private_datetime` object).
fn toml_json(value: toml::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(n) => Value::from(n),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_json).collect()),
        toml::Value::Table(table) => {
            Value::Object(table.into_iter().map(|(k, v)| (k, toml_json(v))).collect())
        }
    }
}

/// Most nodes a YAML document may have once its aliases are expanded: a
/// config is far smaller; a "billion laughs" stops here.
const MAX_YAML_NODES: usize = 1_000_000;

/// A YAML document as a JSON value (YAML 1.2 core schema for plain scalars).
fn yaml_value(text: &str) -> Option<serde_json::Value> {
    use saphyr_parser::{Event, Parser, ScalarStyle};
    use serde_json::Value;
    enum Open {
        Seq(Vec<Value>, usize),
        Map(serde_json::Map<String, Value>, Option<String>, usize),
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: std::collections::HashMap<usize, Value> = Default::default();
    let mut nodes = 0usize;
    let mut root = None;
    // Places a finished node into its parent (or as the root).
    fn place(stack: &mut [Open], root: &mut Option<Value>, value: Value) -> Option<()> {
        match stack.last_mut() {
            None => *root = Some(value),
            Some(Open::Seq(items, _)) => items.push(value),
            Some(Open::Map(map, key, _)) => match key.take() {
                None => *key = Some(scalar_key(&value)?),
                Some(k) => {
                    map.insert(k, value);
                }
            },
        }
        Some(())
    }
    fn scalar_key(value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Null => Some("null".into()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None, // complex keys have no JSON form
        }
    }
    fn weight(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(weight).sum::<usize>(),
            Value::Object(map) => 1 + map.values().map(weight).sum::<usize>(),
            _ => 1,
        }
    }
    for item in Parser::new_from_str(text) {
        let (event, _) = item.ok()?;
        let value = match event {
            Event::Scalar(text, style, anchor, _) => {
                let value = if style == ScalarStyle::Plain {
                    plain(&text)
                } else {
                    Value::String(text.into_owned())
                };
                if anchor > 0 {
                    anchors.insert(anchor, value.clone());
                }
                value
            }
            Event::Alias(id) => {
                let value = anchors.get(&id)?.clone();
                nodes += weight(&value);
                if nodes > MAX_YAML_NODES {
                    return None;
                }
                value
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Open::Seq(Vec::new(), anchor));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Open::Map(Default::default(), None, anchor));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match stack.pop()? {
                    Open::Seq(items, anchor) => (Value::Array(items), anchor),
                    Open::Map(map, _, anchor) => (Value::Object(map), anchor),
                };
                if anchor > 0 {
                    anchors.insert(anchor, value.clone());
                }
                value
            }
            _ => continue,
        };
        nodes += 1;
        if nodes > MAX_YAML_NODES {
            return None;
        }
        place(&mut stack, &mut root, value)?;
    }
    Some(root.unwrap_or(serde_json::Value::Null))
}

/// A plain YAML scalar by the core schema: null, booleans, numbers, else text.
fn plain(text: &str) -> serde_json::Value {
    use serde_json::Value;
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    if text.chars().any(|c| c.is_ascii_digit()) {
        if let Ok(f) = text.parse::<f64>() {
            if f.is_finite() {
                return Value::from(f);
            }
        }
    }
    Value::String(text.to_string())
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

    fn schemas(files: &[(&str, &str)], written: &[&str]) -> Option<String> {
        let state = |p: &FilePath| -> Result<Option<Vec<u8>>> {
            Ok(files
                .iter()
                .find(|(path, _)| *path == p.as_str())
                .map(|(_, text)| text.as_bytes().to_vec()))
        };
        let written: Vec<FilePath> = written
            .iter()
            .map(|p| FilePath::parse(p).unwrap())
            .collect();
        match check_schemas(&written, &state) {
            Ok(()) => None,
            Err(Error::Unprocessable { problems, .. }) => Some(problems.join("; ")),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_schema_governs_its_files_in_every_format() {
        let schema = r#"{"type": "object", "properties": {"maxParallelJobs": {"type": "integer", "maximum": 64}}}"#;
        for (file, good, bad) in [
            (
                "ops.json",
                r#"{"maxParallelJobs": 8}"#,
                r#"{"maxParallelJobs": 500}"#,
            ),
            ("ops.yaml", "maxParallelJobs: 8\n", "maxParallelJobs: 500\n"),
            ("ops.yml", "maxParallelJobs: 8\n", "maxParallelJobs: 500\n"),
            (
                "ops.toml",
                "maxParallelJobs = 8\n",
                "maxParallelJobs = 500\n",
            ),
        ] {
            assert_eq!(
                schemas(&[("ops.schema.json", schema), (file, good)], &[file]),
                None,
                "{file}"
            );
            let p = schemas(&[("ops.schema.json", schema), (file, bad)], &[file]).unwrap();
            assert!(
                p.starts_with(&format!("{file}: /maxParallelJobs: 500")) && p.contains("64"),
                "{p}"
            );
        }
        // A new schema that a file no longer satisfies is refused too.
        let p = schemas(
            &[
                ("ops.schema.json", schema),
                ("ops.json", r#"{"maxParallelJobs": 100}"#),
            ],
            &["ops.schema.json"],
        );
        assert!(p.unwrap().contains("ops.json: /maxParallelJobs: 100"));
        // Other folders and other names are not governed.
        assert_eq!(
            schemas(
                &[
                    ("ops.schema.json", schema),
                    ("x/ops.json", "{\"maxParallelJobs\": 500}")
                ],
                &["x/ops.json"]
            ),
            None
        );
        // A schema that is no schema says so.
        let p = schemas(
            &[("ops.schema.json", r#"{"type": 12}"#), ("ops.json", "{}")],
            &["ops.json"],
        )
        .unwrap();
        assert!(p.contains("not a valid JSON Schema"), "{p}");
    }

    #[test]
    fn yaml_values_follow_the_core_schema_and_bound_aliases() {
        let v = yaml_value("a: 1\nb: true\nc: ~\nd: \"1\"\ne: [x, 2.5]\nf: &x {k: v}\ng: *x\n")
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": 1, "b": true, "c": null, "d": "1", "e": ["x", 2.5], "f": {"k": "v"}, "g": {"k": "v"}})
        );
        let mut laughs = String::from("a: &a [1,1,1,1,1,1,1,1,1,1]\n");
        for (i, name) in ["b", "c", "d", "e", "f", "g", "h"].iter().enumerate() {
            let prev = ["a", "b", "c", "d", "e", "f", "g"][i];
            laughs.push_str(&format!("{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        assert_eq!(yaml_value(&laughs), None, "expansion is bounded");
    }

    #[test]
    fn not_utf8_is_malformed_for_a_text_format() {
        let err = check(&FilePath::parse("a.json").unwrap(), b"\xff\xfe").unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
