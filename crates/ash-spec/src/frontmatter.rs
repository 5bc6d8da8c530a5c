//! YAML frontmatter of markdown slots (skills, schedules).
//!
//! Owns splitting `---` fenced YAML from the markdown body and reading its fields with positions.
//! Knows nothing about what the fields mean.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_saphyr::Spanned;

use crate::diagnostic::{FileDiag, Position, Severity};

/// Parsed frontmatter and the body after it.
#[derive(Debug, Default)]
pub(crate) struct Frontmatter {
    fields: BTreeMap<String, Spanned<Value>>,
    used: Vec<String>,
    /// The markdown after the closing fence (the whole text when there is no frontmatter).
    pub(crate) body: String,
    /// Whether the text started with a frontmatter fence.
    pub(crate) present: bool,
}

/// Splits and parses; YAML errors are reported and leave the fields empty.
pub(crate) fn parse(text: &str, d: &mut FileDiag<'_>) -> Frontmatter {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = text.strip_prefix("---\n").or_else(|| text.strip_prefix("---\r\n")) else {
        return Frontmatter { body: text.to_owned(), ..Frontmatter::default() };
    };
    let mut offset = 0;
    let mut end = None;
    for line in rest.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare == "..." {
            end = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let Some((yaml_end, body_start)) = end else {
        d.error(
            "frontmatter-unclosed",
            Some(0..3),
            "the frontmatter opened with `---` is never closed",
            "YAML frontmatter between two `---` lines, then the markdown body",
        );
        return Frontmatter { present: true, ..Frontmatter::default() };
    };
    let yaml = &rest[..yaml_end];
    let body = rest[body_start..].to_owned();
    let mut out = Frontmatter { body, present: true, ..Frontmatter::default() };
    if yaml.trim().is_empty() {
        return out;
    }
    // Line 1 of the YAML is line 2 of the file.
    let saved = d.line_offset;
    d.line_offset = saved + 1;
    match serde_saphyr::from_str::<Spanned<Value>>(yaml) {
        Ok(root) => match root.value {
            Value::Object(_) => {
                match serde_saphyr::from_str::<BTreeMap<String, Spanned<Value>>>(yaml) {
                    Ok(fields) => out.fields = fields,
                    Err(err) => report_yaml(d, &err),
                }
            }
            Value::Null => {}
            _ => d.report_at(
                Severity::Error,
                "frontmatter-shape",
                Some(position(&root.referenced)),
                "the frontmatter must be a mapping of keys to values",
                "`key: value` lines between the `---` fences",
            ),
        },
        Err(err) => report_yaml(d, &err),
    }
    d.line_offset = saved;
    out
}

fn report_yaml(d: &mut FileDiag<'_>, err: &serde_saphyr::Error) {
    let position = err.location().map(|loc| position(&loc));
    let message = err.without_snippet().to_string();
    let message = message.lines().next().unwrap_or("invalid YAML").trim().to_owned();
    d.report_at(
        Severity::Error,
        "yaml-syntax",
        position,
        format!("invalid YAML frontmatter: {message}"),
        "valid YAML `key: value` lines between the `---` fences",
    );
}

fn position(loc: &serde_saphyr::Location) -> Position {
    Position {
        line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
        column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
    }
}

impl Frontmatter {
    fn take(&mut self, key: &str) -> Option<&Spanned<Value>> {
        let value = self.fields.get(key)?;
        self.used.push(key.to_owned());
        Some(value)
    }

    /// The position of a value in the file: YAML line 1 is file line 2 (after `---`).
    fn at(value: &Spanned<Value>) -> Option<Position> {
        let mut pos = position(&value.referenced);
        pos.line = pos.line.saturating_add(1);
        Some(pos)
    }

    /// A string field; numbers and booleans are not silently converted.
    pub(crate) fn string(
        &mut self,
        d: &mut FileDiag<'_>,
        key: &str,
        expected: &str,
    ) -> Option<(String, Option<Position>)> {
        let value = self.take(key)?.clone();
        let at = Self::at(&value);
        match value.value {
            Value::String(s) => Some((s, at)),
            other => {
                d.report_at(
                    Severity::Error,
                    "wrong-type",
                    at,
                    format!("`{key}` is {}, expected {expected}", describe(&other)),
                    format!("`{key}`: {expected}"),
                );
                None
            }
        }
    }

    /// A mapping of strings to strings.
    pub(crate) fn string_map(
        &mut self,
        d: &mut FileDiag<'_>,
        key: &str,
    ) -> BTreeMap<String, String> {
        let Some(value) = self.take(key).cloned() else { return BTreeMap::new() };
        let at = Self::at(&value);
        let mut out = BTreeMap::new();
        match value.value {
            Value::Object(map) => {
                for (k, v) in map {
                    match v {
                        Value::String(s) => {
                            out.insert(k, s);
                        }
                        other => d.report_at(
                            Severity::Error,
                            "wrong-type",
                            at,
                            format!("`{key}.{k}` is {}, expected a string", describe(&other)),
                            format!("`{key}`: a mapping of strings to strings"),
                        ),
                    }
                }
            }
            other => d.report_at(
                Severity::Error,
                "wrong-type",
                at,
                format!("`{key}` is {}, expected a mapping", describe(&other)),
                format!("`{key}`: a mapping of strings to strings"),
            ),
        }
        out
    }

    /// Marks keys as known without reading them.
    pub(crate) fn accept(&mut self, keys: &[&str]) {
        self.used.extend(keys.iter().map(|k| (*k).to_owned()));
    }

    /// Warns about keys nobody asked for.
    pub(crate) fn finish(self, d: &mut FileDiag<'_>) {
        for (key, value) in &self.fields {
            if !self.used.iter().any(|u| u == key) {
                let at = Self::at(value);
                d.report_at(
                    Severity::Warning,
                    "unknown-key",
                    at,
                    format!("unknown frontmatter key `{key}`; it is ignored"),
                    d.doc.expected,
                );
            }
        }
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
