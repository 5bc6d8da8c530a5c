//! Diagnostics: what is wrong, where, what was expected, and a minimal valid example.
//!
//! Every problem found while loading carries all four. Loading collects them and never stops at
//! the first one. This file owns the type and its human rendering; it never decides what is wrong.

use std::fmt::{self, Write as _};
use std::ops::Range;

use ash_protocol::{DiagnosticInfo, SeverityInfo};

use crate::slots::SlotDoc;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Building or running the agent is refused until this is fixed.
    Error,
    /// Something was ignored or looks wrong; the agent still works.
    Warning,
}

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl Position {
    /// Returns the position of byte `offset` in `src`; offsets past the end clamp to the end.
    pub fn of_offset(src: &str, offset: usize) -> Self {
        let mut end = offset.min(src.len());
        while !src.is_char_boundary(end) {
            end -= 1;
        }
        let before = &src[..end];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        Self { line: saturating_u32(line), column: saturating_u32(column) }
    }
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One problem in an agent directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable kebab-case code, e.g. `toml-syntax`.
    pub code: &'static str,
    /// Path relative to the directory being loaded, `/`-separated.
    pub file: String,
    /// Where in the file, when known.
    pub position: Option<Position>,
    /// What is wrong.
    pub message: String,
    /// What the slot or field expects.
    pub expected: String,
    /// A minimal valid example of the slot.
    pub example: String,
}

impl Diagnostic {
    /// Converts to the wire shape used by `ash info --json` and `.ash/diagnostics.json`.
    pub fn to_info(&self) -> DiagnosticInfo {
        DiagnosticInfo {
            severity: match self.severity {
                Severity::Error => SeverityInfo::Error,
                Severity::Warning => SeverityInfo::Warning,
            },
            code: self.code.to_owned(),
            file: self.file.clone(),
            line: self.position.map(|p| p.line),
            column: self.position.map(|p| p.column),
            message: self.message.clone(),
            expected: self.expected.clone(),
            example: self.example.clone(),
        }
    }
}

/// Renders like a compiler: a headline, then the expectation and the example, indented.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}[{}]: {}", self.code, self.file)?;
        if let Some(pos) = self.position {
            write!(f, ":{}:{}", pos.line, pos.column)?;
        }
        writeln!(f, ": {}", self.message)?;
        writeln!(f, "  expected: {}", self.expected)?;
        writeln!(f, "  example:")?;
        let mut example = String::new();
        for line in self.example.lines() {
            let _ = writeln!(example, "    | {line}");
        }
        f.write_str(&example)
    }
}

/// Diagnostics collected while loading, plus the file they currently concern.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    /// Adds a diagnostic about `file` as a whole (no position).
    pub(crate) fn file(
        &mut self,
        severity: Severity,
        code: &'static str,
        file: &str,
        message: impl Into<String>,
        doc: &SlotDoc,
    ) {
        self.push(Diagnostic {
            severity,
            code,
            file: file.to_owned(),
            position: None,
            message: message.into(),
            expected: doc.expected.to_owned(),
            example: doc.example.to_owned(),
        });
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// How many errors have been reported so far; compare to see whether a step added any.
    pub(crate) fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// Errors first, then warnings; each group by file, position and code.
    pub(crate) fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| {
            (a.severity, &a.file, a.position, a.code, &a.message)
                .cmp(&(b.severity, &b.file, b.position, b.code, &b.message))
        });
        self.items.dedup();
        self.items
    }
}

/// A cursor over one text file: reports diagnostics with positions computed from byte spans.
pub(crate) struct FileDiag<'a> {
    pub(crate) file: &'a str,
    pub(crate) src: &'a str,
    /// Added to computed lines, for text embedded in a larger file (frontmatter).
    pub(crate) line_offset: u32,
    pub(crate) doc: &'static SlotDoc,
    pub(crate) out: &'a mut Diagnostics,
}

impl<'a> FileDiag<'a> {
    pub(crate) fn new(
        file: &'a str,
        src: &'a str,
        doc: &'static SlotDoc,
        out: &'a mut Diagnostics,
    ) -> Self {
        Self { file, src, line_offset: 0, doc, out }
    }

    pub(crate) fn position(&self, span: Option<Range<usize>>) -> Option<Position> {
        span.map(|span| {
            let mut pos = Position::of_offset(self.src, span.start);
            pos.line = pos.line.saturating_add(self.line_offset);
            pos
        })
    }

    pub(crate) fn report(
        &mut self,
        severity: Severity,
        code: &'static str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        let position = self.position(span);
        self.out.push(Diagnostic {
            severity,
            code,
            file: self.file.to_owned(),
            position,
            message: message.into(),
            expected: expected.into(),
            example: self.doc.example.to_owned(),
        });
    }

    pub(crate) fn error(
        &mut self,
        code: &'static str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.report(Severity::Error, code, span, message, expected);
    }

    pub(crate) fn warning(
        &mut self,
        code: &'static str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.report(Severity::Warning, code, span, message, expected);
    }

    /// Reports at an already-known position (e.g. from the YAML parser).
    pub(crate) fn report_at(
        &mut self,
        severity: Severity,
        code: &'static str,
        position: Option<Position>,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        let position = position.map(|mut p| {
            p.line = p.line.saturating_add(self.line_offset);
            p
        });
        self.out.push(Diagnostic {
            severity,
            code,
            file: self.file.to_owned(),
            position,
            message: message.into(),
            expected: expected.into(),
            example: self.doc.example.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Position;

    #[test]
    fn positions_count_lines_and_characters() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(Position::of_offset(src, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of_offset(src, 6), Position { line: 2, column: 1 });
        // Byte 9 is after "bé" (3 bytes): character column 3.
        assert_eq!(Position::of_offset(src, 9), Position { line: 2, column: 3 });
        // Mid-character offsets and offsets past the end do not panic.
        assert_eq!(Position::of_offset(src, 8), Position { line: 2, column: 2 });
        assert_eq!(Position::of_offset(src, 999), Position { line: 3, column: 1 });
    }
}
