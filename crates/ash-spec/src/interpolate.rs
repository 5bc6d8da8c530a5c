//! `${VAR}` interpolation and the secret-holding string types.
//!
//! Owns the template syntax (`${NAME}`, `$$` for a literal `$`) and the rule that a missing or
//! empty variable is an error, never an empty value. Resolved values live in [`Secret`], which
//! never prints its content. The environment itself is handed in by the caller; this crate never
//! reads the process environment.

use std::collections::BTreeMap;
use std::fmt;

use zeroize::Zeroize as _;

use crate::names::is_env_name;

/// A string that must not reach logs, errors or manifests. Zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it (an auth check, an outgoing header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A value written in an agent file, possibly with `${VAR}` references, and its resolution.
#[derive(Clone, PartialEq, Eq)]
pub struct Interpolated {
    template: String,
    value: Secret,
    /// The value of each `${VAR}` the template references, in order.
    vars: Vec<Secret>,
}

impl Interpolated {
    /// A value with no references (programmatic authoring).
    pub fn literal(value: impl Into<String>) -> Self {
        let value = value.into();
        Self { template: value.replace('$', "$$"), value: Secret::new(value), vars: Vec::new() }
    }

    /// The text as written, e.g. `${ASH_BASIC_PASSWORD}`. Safe to show.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The resolved value. Treat as secret.
    pub fn expose(&self) -> &str {
        self.value.expose()
    }

    /// The value of each `${VAR}` the template references: what must be redacted wherever the
    /// resolved value (or a part of it, such as a URL's query) might be shown.
    pub fn env_values(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(Secret::expose)
    }

    /// Whether the value comes wholly from the environment: the template is nothing but
    /// `${VAR}` references, so it holds no secret text of its own.
    pub fn uses_env(&self) -> bool {
        let mut rest = self.template.as_str();
        if rest.is_empty() {
            return false;
        }
        while !rest.is_empty() {
            let Some(tail) = rest.strip_prefix("${") else { return false };
            let Some(close) = tail.find('}') else { return false };
            if !is_env_name(&tail[..close]) {
                return false;
            }
            rest = &tail[close + 1..];
        }
        true
    }

    /// What may be shown for a secret field: the template when it is only `${VAR}` references,
    /// otherwise `<redacted>` (literal text around a reference may be part of the secret).
    pub fn display_secret(&self) -> String {
        if self.uses_env() { self.template.clone() } else { REDACTED.to_owned() }
    }
}

/// Shown in place of a secret written literally in an agent file.
pub const REDACTED: &str = "<redacted>";

impl fmt::Debug for Interpolated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interpolated({:?})", self.display_secret())
    }
}

/// Why a template could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InterpolateError {
    #[error("environment variable `{0}` is not set")]
    Missing(String),
    #[error("environment variable `{0}` is set but empty")]
    Empty(String),
    #[error("`${{` at byte {0} is not closed by `}}`")]
    Unclosed(usize),
    #[error(
        "`${{{0}}}` is not a valid variable name (letters, digits and `_`, not starting with a digit)"
    )]
    BadName(String),
}

/// Resolves every `${NAME}` in `template` from `env`; `$$` stands for a literal `$`.
pub(crate) fn resolve(
    template: &str,
    env: &BTreeMap<String, String>,
) -> Result<Interpolated, InterpolateError> {
    let mut out = String::with_capacity(template.len());
    let mut vars = Vec::new();
    let mut rest = template;
    while let Some(idx) = rest.find('$') {
        out.push_str(&rest[..idx]);
        let after = &rest[idx + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(close) = tail.find('}') else {
                return Err(InterpolateError::Unclosed(template.len() - rest.len() + idx));
            };
            let name = &tail[..close];
            if !is_env_name(name) {
                return Err(InterpolateError::BadName(name.to_owned()));
            }
            match env.get(name) {
                None => return Err(InterpolateError::Missing(name.to_owned())),
                Some(value) if value.is_empty() => {
                    return Err(InterpolateError::Empty(name.to_owned()));
                }
                Some(value) => {
                    out.push_str(value);
                    vars.push(Secret::new(value.clone()));
                }
            }
            rest = &tail[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Interpolated { template: template.to_owned(), value: Secret::new(out), vars })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("PASS".to_owned(), "s3cret".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ])
    }

    #[test]
    fn resolves_and_escapes() {
        let got = resolve("a-${PASS}-$$-$x", &env()).unwrap();
        assert_eq!(got.expose(), "a-s3cret-$-$x");
        assert_eq!(got.template(), "a-${PASS}-$$-$x");
        assert!(!got.uses_env(), "literal text around the reference");
        assert_eq!(format!("{got:?}"), "Interpolated(\"<redacted>\")");
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("${MISSING}", InterpolateError::Missing("MISSING".into())),
            ("${EMPTY}", InterpolateError::Empty("EMPTY".into())),
            ("x${PASS", InterpolateError::Unclosed(1)),
            ("${1BAD}", InterpolateError::BadName("1BAD".into())),
            ("${}", InterpolateError::BadName(String::new())),
        ];
        for (input, want) in cases {
            assert_eq!(resolve(input, &env()).unwrap_err(), want, "{input}");
        }
    }

    #[test]
    fn only_pure_references_count_as_from_the_environment() {
        let cases = [
            ("${PASS}", true),
            ("${PASS}${PASS}", true),
            ("hunter2${PASS}", false),
            ("${PASS}-x", false),
            ("abc$${x}", false),
            ("$${PASS}", false),
            ("plain", false),
        ];
        for (template, want) in cases {
            let resolved = resolve(template, &env()).unwrap();
            assert_eq!(resolved.uses_env(), want, "{template}");
            let shown = resolved.display_secret();
            assert_eq!(shown == template, want, "{template} shows {shown}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let literal = Interpolated::literal("hunter2");
        assert_eq!(literal.display_secret(), REDACTED);
        assert!(!format!("{literal:?}").contains("hunter2"));
        assert!(!format!("{:?}", Secret::new("hunter2")).contains("hunter2"));
    }
}
