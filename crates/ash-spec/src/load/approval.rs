//! `approval` of a tool or sandbox: whether a call waits for a person first.

use crate::diagnostic::FileDiag;
use crate::spec::{Approval, ApprovalRule, ApprovalTest};
use crate::toml_doc::Fields;

/// Most rules in one `[approval]`.
const MAX_RULES: usize = 32;
/// Longest `matches` pattern.
const MAX_PATTERN: usize = 1024;

const EXPECTED: &str = "`\"required\"`, `\"never\"`, or a table `{ when = [{ pointer = \"/field\", \
                        equals = …, matches = \"regex\", above = N }] }`";

/// `approval`: `None` on error (reported).
pub(super) fn approval(d: &mut FileDiag<'_>, fields: &mut Fields<'_, '_>) -> Option<Approval> {
    if !fields.has("approval") {
        return Some(Approval::Never);
    }
    if fields.is_string("approval") {
        let word = fields.string(d, "approval", EXPECTED)?;
        return match word.value.as_str() {
            "required" => Some(Approval::Always),
            "never" => Some(Approval::Never),
            other => {
                d.error(
                    "invalid-value",
                    Some(word.span),
                    format!("unknown approval `{other}`"),
                    format!("`approval`: {EXPECTED}"),
                );
                None
            }
        };
    }
    let mut table = fields.table(d, "approval", EXPECTED)?;
    let present = table.has("when");
    let rules = table.tables(d, "when", "a list of rules");
    let mut ok = true;
    if rules.is_empty() {
        let example =
            "a non-empty list of rules, e.g. [{ pointer = \"/branch\", equals = \"main\" }]";
        if present {
            d.error(
                "invalid-value",
                Some(table.span()),
                "`approval.when` has no rules, so no call would ever wait",
                format!("`approval.when`: {example}; or `approval = \"never\"`"),
            );
        } else {
            table.missing(d, "when", example);
        }
        ok = false;
    }
    if rules.len() > MAX_RULES {
        d.error(
            "too-many-rules",
            Some(table.span()),
            format!("`approval.when` has {} rules; the limit is {MAX_RULES}", rules.len()),
            format!("`approval.when`: at most {MAX_RULES} rules"),
        );
        ok = false;
    }
    let mut out = Vec::new();
    for mut rule in rules {
        match one_rule(d, &mut rule) {
            Some(parsed) => out.push(parsed),
            None => ok = false,
        }
        rule.finish_strict(d, "an approval rule ash does not understand would never ask");
    }
    table.finish_strict(d, "an approval setting ash does not understand would never ask");
    ok.then_some(Approval::When(out))
}

fn one_rule(d: &mut FileDiag<'_>, rule: &mut Fields<'_, '_>) -> Option<ApprovalRule> {
    let pointer =
        rule.required_string(d, "pointer", "a JSON Pointer into the input, e.g. \"/branch\"")?;
    if !(pointer.value.is_empty() || pointer.value.starts_with('/')) {
        d.error(
            "invalid-value",
            Some(pointer.span),
            format!("`{}` is not a JSON Pointer", pointer.value),
            "`pointer`: \"\" (the whole input) or a path starting with `/`, e.g. \"/branch\"",
        );
        return None;
    }
    let tests = ["equals", "matches", "above"].into_iter().filter(|k| rule.has(k)).count();
    if tests != 1 {
        // Taken, so they are not also reported as unknown.
        for key in ["equals", "matches", "above"] {
            let _ = rule.json(d, key);
        }
        d.error(
            "invalid-value",
            Some(rule.span()),
            "an approval rule needs exactly one of `equals`, `matches` and `above`",
            "{ pointer = \"/branch\", equals = \"main\" }",
        );
        return None;
    }
    let test = if rule.has("equals") {
        ApprovalTest::Equals(rule.json(d, "equals")?.value)
    } else if rule.has("matches") {
        let pattern = rule.string(d, "matches", "a regular expression")?;
        if pattern.value.len() > MAX_PATTERN {
            d.error(
                "invalid-value",
                Some(pattern.span),
                format!("the pattern is longer than {MAX_PATTERN} bytes"),
                "`matches`: a short regular expression",
            );
            return None;
        }
        if let Err(e) = regex::Regex::new(&pattern.value) {
            d.error(
                "invalid-value",
                Some(pattern.span),
                format!("`{}` is not a regular expression: {e}", pattern.value),
                "`matches`: a regular expression such as \"^rm \"",
            );
            return None;
        }
        ApprovalTest::Matches(pattern.value)
    } else {
        ApprovalTest::Above(rule.non_negative_number(d, "above")?.value)
    };
    Some(ApprovalRule { pointer: pointer.value, test })
}
