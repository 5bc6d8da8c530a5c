//! Reads TOML slot files field by field, with a position for every problem.
//!
//! Owns the spanned walk over `toml::de::DeTable`: typed getters that report wrong types, missing
//! keys and unknown keys as diagnostics instead of stopping at the first error, the way a serde
//! derive would. Knows nothing about what the fields mean.

use std::ops::Range;

use serde_json::{Map, Number, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::FileDiag;

/// A value with the byte span it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located<T> {
    pub(crate) value: T,
    pub(crate) span: Range<usize>,
}

/// Parses `src`, reporting every syntax error; `None` when the document is unusable.
pub(crate) fn parse<'i>(src: &'i str, d: &mut FileDiag<'_>) -> Option<Spanned<DeTable<'i>>> {
    let (table, errors) = DeTable::parse_recoverable(src);
    if errors.is_empty() {
        return Some(table);
    }
    for err in errors {
        d.error(
            "toml-syntax",
            err.span(),
            format!("invalid TOML: {}", err.message().trim_end_matches('\n')),
            "a valid TOML document",
        );
    }
    None
}

/// The fields of one TOML table, tracking which keys were read.
pub(crate) struct Fields<'t, 'i> {
    table: &'t DeTable<'i>,
    span: Range<usize>,
    prefix: String,
    used: Vec<String>,
}

impl<'t, 'i> Fields<'t, 'i> {
    pub(crate) fn root(doc: &'t Spanned<DeTable<'i>>) -> Self {
        Self { table: doc.get_ref(), span: 0..0, prefix: String::new(), used: Vec::new() }
    }

    fn child(table: &'t DeTable<'i>, span: Range<usize>, prefix: String) -> Self {
        Self { table, span, prefix, used: Vec::new() }
    }

    /// The dotted name of `key` in this table, for messages.
    pub(crate) fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub(crate) fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The keys of this table, in document order of the parser (sorted).
    pub(crate) fn keys(&self) -> Vec<String> {
        self.table.iter().map(|(k, _)| k.get_ref().to_string()).collect()
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.table.iter().any(|(k, _)| k.get_ref() == key)
    }

    fn take(&mut self, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        let (_, value) = self.table.iter().find(|(k, _)| k.get_ref() == key)?;
        self.used.push(key.to_owned());
        Some(value)
    }

    fn wrong_type(
        &self,
        d: &mut FileDiag<'_>,
        key: &str,
        value: &Spanned<DeValue<'i>>,
        expected: &str,
    ) {
        d.error(
            "wrong-type",
            Some(value.span()),
            format!("`{}` is {}, expected {expected}", self.name(key), describe(value.get_ref())),
            format!("`{}`: {expected}", self.name(key)),
        );
    }

    /// Reports a missing required key at the table.
    pub(crate) fn missing(&self, d: &mut FileDiag<'_>, key: &str, expected: &str) {
        d.error(
            "missing-key",
            Some(self.span.clone()),
            format!("`{}` is required", self.name(key)),
            format!("`{}`: {expected}", self.name(key)),
        );
    }

    pub(crate) fn string(
        &mut self,
        d: &mut FileDiag<'_>,
        key: &str,
        expected: &str,
    ) -> Option<Located<String>> {
        let value = self.take(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(Located { value: s.to_string(), span: value.span() }),
            _ => {
                self.wrong_type(d, key, value, expected);
                None
            }
        }
    }

    /// A boolean.
    pub(crate) fn boolean(&mut self, d: &mut FileDiag<'_>, key: &str) -> Option<Located<bool>> {
        let value = self.take(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(Located { value: *b, span: value.span() }),
            _ => {
                self.wrong_type(d, key, value, "true or false");
                None
            }
        }
    }

    /// Whether `key` holds a string (as opposed to another type, or nothing).
    pub(crate) fn is_string(&self, key: &str) -> bool {
        self.table
            .iter()
            .any(|(k, v)| k.get_ref() == key && matches!(v.get_ref(), DeValue::String(_)))
    }

    pub(crate) fn required_string(
        &mut self,
        d: &mut FileDiag<'_>,
        key: &str,
        expected: &str,
    ) -> Option<Located<String>> {
        if !self.has(key) {
            self.missing(d, key, expected);
            return None;
        }
        self.string(d, key, expected)
    }

    /// An integer in `min..=max`.
    pub(crate) fn integer(
        &mut self,
        d: &mut FileDiag<'_>,
        key: &str,
        min: u64,
        max: u64,
    ) -> Option<Located<u64>> {
        let expected = format!("an integer from {min} to {max}");
        let value = self.take(key)?;
        let DeValue::Integer(int) = value.get_ref() else {
            self.wrong_type(d, key, value, &expected);
            return None;
        };
        match u64::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if (min..=max).contains(&n) => Some(Located { value: n, span: value.span() }),
            _ => {
                d.error(
                    "out-of-range",
                    Some(value.span()),
                    format!("`{}` = {int} is out of range", self.name(key)),
                    format!("`{}`: {expected}", self.name(key)),
                );
                None
            }
        }
    }

    /// A finite, non-negative number (integer or float).
    pub(crate) fn non_negative_number(
        &mut self,
        d: &mut FileDiag<'_>,
        key: &str,
    ) -> Option<Located<f64>> {
        let expected = "a non-negative number";
        let value = self.take(key)?;
        let number = match value.get_ref() {
            DeValue::Integer(int) => i64::from_str_radix(int.as_str(), int.radix()).ok().map(|n| {
                #[expect(clippy::cast_precision_loss, reason = "budgets are far below 2^52")]
                let n = n as f64;
                n
            }),
            DeValue::Float(float) => float.as_str().parse::<f64>().ok(),
            _ => {
                self.wrong_type(d, key, value, expected);
                return None;
            }
        };
        match number {
            Some(n) if n.is_finite() && n >= 0.0 => Some(Located { value: n, span: value.span() }),
            _ => {
                d.error(
                    "out-of-range",
                    Some(value.span()),
                    format!("`{}` must be a finite number of at least 0", self.name(key)),
                    format!("`{}`: {expected}", self.name(key)),
                );
                None
            }
        }
    }

    /// A list of strings.
    pub(crate) fn strings(
        &mut self,
        d: &mut FileDiag<'_>,
        key: &str,
        expected: &str,
    ) -> Option<Vec<Located<String>>> {
        let value = self.take(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(d, key, value, expected);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (idx, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Located { value: s.to_string(), span: item.span() }),
                other => {
                    ok = false;
                    d.error(
                        "wrong-type",
                        Some(item.span()),
                        format!(
                            "`{}[{idx}]` is {}, expected a string",
                            self.name(key),
                            describe(other)
                        ),
                        format!("`{}`: {expected}", self.name(key)),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    /// A sub-table.
    pub(crate) fn table(
        &mut self,
        d: &mut FileDiag<'_>,
        key: &str,
        expected: &str,
    ) -> Option<Fields<'t, 'i>> {
        let value = self.take(key)?;
        match value.get_ref() {
            DeValue::Table(table) => {
                Some(Fields::child(table, value.span(), format!("{}.", self.name(key))))
            }
            _ => {
                self.wrong_type(d, key, value, expected);
                None
            }
        }
    }

    /// An array of tables (`[[key]]`).
    pub(crate) fn tables(
        &mut self,
        d: &mut FileDiag<'_>,
        key: &str,
        expected: &str,
    ) -> Vec<Fields<'t, 'i>> {
        let Some(value) = self.take(key) else { return Vec::new() };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(d, key, value, expected);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (idx, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::Table(table) => out.push(Fields::child(
                    table,
                    item.span(),
                    format!("{}[{idx}].", self.name(key)),
                )),
                other => d.error(
                    "wrong-type",
                    Some(item.span()),
                    format!("`{}[{idx}]` is {}, expected a table", self.name(key), describe(other)),
                    format!("`{}`: {expected}", self.name(key)),
                ),
            }
        }
        out
    }

    /// A table of strings (`[metadata]`, `[headers]`).
    pub(crate) fn string_map(
        &mut self,
        d: &mut FileDiag<'_>,
        key: &str,
    ) -> Vec<(Located<String>, Located<String>)> {
        let Some(mut table) = self.table(d, key, "a table of strings") else { return Vec::new() };
        let keys = table.keys();
        let mut out = Vec::new();
        for k in keys {
            let span = table.key_span(&k);
            if let Some(v) = table.string(d, &k, "a string") {
                out.push((Located { value: k, span }, v));
            }
        }
        out
    }

    fn key_span(&self, key: &str) -> Range<usize> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map_or(self.span.clone(), |(k, _)| k.span())
    }

    /// Any value, converted to JSON (for embedded JSON Schema).
    pub(crate) fn json(&mut self, d: &mut FileDiag<'_>, key: &str) -> Option<Located<Value>> {
        let value = self.take(key)?;
        let name = self.name(key);
        to_json(value, d, &name).map(|json| Located { value: json, span: value.span() })
    }

    /// Warns about every key that no getter asked for.
    pub(crate) fn finish(self, d: &mut FileDiag<'_>) {
        for (key, _) in self.table.iter() {
            if !self.used.iter().any(|u| u == key.get_ref()) {
                d.warning(
                    "unknown-key",
                    Some(key.span()),
                    format!("unknown key `{}`; it is ignored", self.name(key.get_ref())),
                    d.doc.expected,
                );
            }
        }
    }

    /// Like [`Fields::finish`], but an unknown key is an error, for tables where a misspelt key
    /// silently ignored could leave the agent open; `why` says so in the message.
    pub(crate) fn finish_strict(self, d: &mut FileDiag<'_>, why: &str) {
        for (key, _) in self.table.iter() {
            if !self.used.iter().any(|u| u == key.get_ref()) {
                d.error(
                    "unknown-key",
                    Some(key.span()),
                    format!("unknown key `{}`; {why}", self.name(key.get_ref())),
                    d.doc.expected,
                );
            }
        }
    }
}

fn to_json(value: &Spanned<DeValue<'_>>, d: &mut FileDiag<'_>, name: &str) -> Option<Value> {
    Some(match value.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(int) => match i64::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) => Value::Number(Number::from(n)),
            Err(_) => {
                d.error(
                    "out-of-range",
                    Some(value.span()),
                    format!("integer in `{name}` does not fit in 64 bits"),
                    "integers from -2^63 to 2^63-1",
                );
                return None;
            }
        },
        DeValue::Float(float) => {
            match float.as_str().parse::<f64>().ok().and_then(Number::from_f64) {
                Some(n) => Value::Number(n),
                None => {
                    d.error(
                        "wrong-type",
                        Some(value.span()),
                        format!("`{name}` holds {float}, which JSON cannot represent"),
                        "finite numbers",
                    );
                    return None;
                }
            }
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(dt) => Value::String(dt.to_string()),
        DeValue::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items.iter() {
                out.push(to_json(item, d, name)?);
            }
            Value::Array(out)
        }
        DeValue::Table(table) => {
            let mut out = Map::new();
            for (k, v) in table.iter() {
                out.insert(k.get_ref().to_string(), to_json(v, d, name)?);
            }
            Value::Object(out)
        }
    })
}

fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}
