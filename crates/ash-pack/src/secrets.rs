//! What never leaves the machine: secret files by name, and likely secrets by content.
//!
//! [`secret_name`] is the always-excluded list (documented in `docs/package-format.md`);
//! [`Scanner`] finds tokens and keys in text so a user can confirm or exclude them before a
//! package is sent. Findings carry a redacted preview only; the secret itself is never copied.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use serde::Serialize;

/// Why a path is always excluded, if it is.
///
/// `name` is the last component; `is_dir` tells directories from files. The harness hides the
/// same names from agent tools.
pub fn secret_name(name: &str, is_dir: bool) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if lower == ".git" {
        return Some("git metadata");
    }
    if is_dir {
        return match lower.as_str() {
            ".ssh" | ".gnupg" => Some("key directory"),
            ".aws" | ".azure" => Some("cloud credentials directory"),
            _ => None,
        };
    }
    if lower == ".env" || lower.starts_with(".env.") {
        return Some("environment file");
    }
    const KEY_NAMES: &[&str] =
        &["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk"];
    const KEY_SUFFIXES: &[&str] =
        &[".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".ppk", ".kdbx", ".gpg"];
    if KEY_NAMES.contains(&lower.as_str()) || KEY_SUFFIXES.iter().any(|s| lower.ends_with(s)) {
        return Some("private key");
    }
    const CREDENTIAL_NAMES: &[&str] = &[
        ".netrc",
        "_netrc",
        ".git-credentials",
        ".pgpass",
        ".pypirc",
        ".htpasswd",
        ".dockercfg",
        "credentials.json",
        "credentials",
        "secrets.json",
        "terraform.tfstate",
        "terraform.tfstate.backup",
    ];
    if CREDENTIAL_NAMES.contains(&lower.as_str()) {
        return Some("credentials file");
    }
    None
}

/// One likely secret in an included file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file, relative to the tree's root.
    pub path: String,
    /// 1-based line number.
    pub line: u64,
    /// What it looks like: `github-token`, `private-key`, ….
    pub rule: &'static str,
    /// The start of the match with the rest hidden (`ghp_…`), safe to print.
    pub preview: String,
}

/// A token rule: a literal prefix at the start of a word, then at least `min` characters from
/// `tail`; with `closing = (end, after)`, that run must end with `end` and be followed by `after`.
struct Rule {
    name: &'static str,
    prefixes: &'static [&'static str],
    tail: fn(u8) -> bool,
    min: usize,
    closing: Option<(&'static [u8], &'static [u8])>,
}

impl Rule {
    const fn new(
        name: &'static str,
        prefixes: &'static [&'static str],
        tail: fn(u8) -> bool,
        min: usize,
    ) -> Self {
        Self { name, prefixes, tail, min, closing: None }
    }
}

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}
fn token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}
fn upper_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}
fn key_label(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' '
}

/// Rules, in no particular order; the longest prefix at a position wins.
const RULES: &[Rule] = &[
    Rule::new("aws-access-key-id", &["AKIA", "ASIA"], upper_digit, 16),
    Rule::new("github-token", &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"], alnum, 36),
    Rule::new("github-token", &["github_pat_"], token, 22),
    Rule::new("anthropic-api-key", &["sk-ant-"], token, 20),
    Rule::new("openai-api-key", &["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-"], token, 20),
    Rule::new("slack-token", &["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-"], token, 10),
    Rule::new("stripe-secret-key", &["sk_live_", "rk_live_"], alnum, 20),
    Rule::new("google-api-key", &["AIza"], token, 35),
    Rule::new("gitlab-token", &["glpat-"], token, 20),
    Rule::new("npm-token", &["npm_"], alnum, 36),
    Rule::new("huggingface-token", &["hf_"], alnum, 30),
    Rule {
        name: "private-key",
        prefixes: &["-----BEGIN "],
        tail: key_label,
        min: 0,
        closing: Some((b"PRIVATE KEY", b"-----")),
    },
    Rule::new("private-key", &["PuTTY-User-Key-File-"], alnum, 1),
    Rule::new("ash-identity-key", &[ash_identity::KEY_FILE_HEADER], |_| true, 0),
];

/// The longest a match can be and still be found across a read boundary.
const MAX_MATCH: usize = 512;

struct Compiled {
    automaton: AhoCorasick,
    /// For each automaton pattern: (rule index, prefix).
    patterns: Vec<(usize, &'static str)>,
}

static COMPILED: LazyLock<Option<Compiled>> = LazyLock::new(|| {
    let patterns: Vec<(usize, &'static str)> = RULES
        .iter()
        .enumerate()
        .flat_map(|(i, rule)| rule.prefixes.iter().map(move |p| (i, *p)))
        .collect();
    let automaton = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(patterns.iter().map(|(_, p)| p))
        .ok()?;
    Some(Compiled { automaton, patterns })
});

/// Scans one file's bytes, which may arrive in pieces.
pub(crate) struct Scanner<'a> {
    path: &'a str,
    /// Unscanned tail of the previous piece (a match may continue into the next one).
    carry: Vec<u8>,
    /// Lines before `carry`.
    line: u64,
    binary: bool,
    started: bool,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(path: &'a str) -> Self {
        Self { path, carry: Vec::new(), line: 1, binary: false, started: false }
    }

    /// Scans the next piece; `last` when it ends the file. Binary files (a NUL byte in the
    /// first piece) are skipped.
    pub(crate) fn feed(&mut self, piece: &[u8], last: bool, findings: &mut Vec<Finding>) {
        if !self.started {
            self.started = true;
            self.binary = piece[..piece.len().min(8192)].contains(&0);
        }
        if self.binary {
            return;
        }
        let Some(compiled) = COMPILED.as_ref() else { return };
        let joined;
        let buf: &[u8] = if self.carry.is_empty() {
            piece
        } else {
            self.carry.extend_from_slice(piece);
            joined = std::mem::take(&mut self.carry);
            &joined
        };
        // Matches starting at or after `limit` are found again with the next piece.
        let limit = if last { buf.len() } else { buf.len().saturating_sub(MAX_MATCH) };
        let mut counted = 0;
        for m in compiled.automaton.find_iter(buf) {
            if m.start() >= limit {
                break;
            }
            let (rule_index, prefix) = compiled.patterns[m.pattern().as_usize()];
            let rule = &RULES[rule_index];
            if !matches(rule, buf, m.start(), m.end()) {
                continue;
            }
            self.line += count_lines(&buf[counted..m.start()]);
            counted = m.start();
            findings.push(Finding {
                path: self.path.to_owned(),
                line: self.line,
                rule: rule.name,
                preview: format!("{prefix}…"),
            });
        }
        self.line += count_lines(&buf[counted..limit]);
        self.carry = buf[limit..].to_vec();
    }
}

/// Whether the text after a prefix completes the rule, and the match starts a word.
fn matches(rule: &Rule, buf: &[u8], start: usize, end: usize) -> bool {
    let starts_word = start == 0 || !token(buf[start - 1]) || rule.prefixes[0].starts_with('-');
    let run = buf[end..].iter().take(MAX_MATCH).take_while(|&&b| (rule.tail)(b)).count();
    let closed = rule.closing.is_none_or(|(last, after)| {
        buf[end..end + run].ends_with(last) && buf[end + run..].starts_with(after)
    });
    starts_word && closed && run >= rule.min
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str, piece: usize) -> Vec<(u64, &'static str, String)> {
        let mut findings = Vec::new();
        let mut scanner = Scanner::new("f");
        let bytes = text.as_bytes();
        let pieces: Vec<&[u8]> = bytes.chunks(piece.max(1)).collect();
        for (i, p) in pieces.iter().enumerate() {
            scanner.feed(p, i + 1 == pieces.len(), &mut findings);
        }
        findings.into_iter().map(|f| (f.line, f.rule, f.preview)).collect()
    }

    #[test]
    fn finds_tokens_and_keys_with_lines() {
        let text = format!(
            "one\nkey = \"sk-ant-api03-{a}\"\ntask-something-long-enough-to-matter\n\
             -----BEGIN OPENSSH PRIVATE KEY-----\nAKIA{b}\nghp_{c}\nnot ghp_short\n",
            a = "x".repeat(40),
            b = "ABCDEFGHIJKLMNOP",
            c = "a".repeat(36),
        );
        let expected = vec![
            (2, "anthropic-api-key", "sk-ant-…".to_owned()),
            (4, "private-key", "-----BEGIN …".to_owned()),
            (5, "aws-access-key-id", "AKIA…".to_owned()),
            (6, "github-token", "ghp_…".to_owned()),
        ];
        assert_eq!(scan(&text, text.len()), expected);
        // The same findings however the file is cut into pieces.
        for piece in [1, 7, 600, 1000] {
            assert_eq!(scan(&text, piece), expected, "piece size {piece}");
        }
    }

    #[test]
    fn skips_binary_and_ordinary_text() {
        assert_eq!(scan("\0binary sk-ant-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 100), vec![]);
        assert_eq!(scan("desk-lamp risk-free AKIA lowercase akia0000000000000000", 100), vec![]);
    }

    #[test]
    fn names_that_never_leave() {
        for (name, is_dir, want) in [
            (".git", true, Some("git metadata")),
            (".env", false, Some("environment file")),
            (".env.local", false, Some("environment file")),
            (".envrc", false, None),
            ("id_ed25519", false, Some("private key")),
            ("id_ed25519.pub", false, None),
            ("server.PEM", false, Some("private key")),
            (".ssh", true, Some("key directory")),
            (".ssh", false, None),
            ("credentials.json", false, Some("credentials file")),
            ("main.rs", false, None),
        ] {
            assert_eq!(secret_name(name, is_dir), want, "{name}");
        }
    }
}
