//! 5-field cron expressions evaluated in UTC.
//!
//! Owns parsing (`minute hour day-of-month month day-of-week`, no seconds or years) and the next
//! fire time. Wraps `croner`; no other file touches it.

use std::fmt;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron expression.
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    cron: Cron,
}

impl CronExpr {
    /// Parses a 5-field expression. Names (`MON`, `JAN`), ranges, lists, steps and the
    /// `@hourly`/`@daily`/`@weekly`/`@monthly`/`@yearly` nicknames are accepted.
    pub fn parse(input: &str) -> Result<Self, String> {
        let text = input.trim();
        if text.is_empty() {
            return Err("the cron expression is empty".to_owned());
        }
        if !text.starts_with('@') {
            let n_fields = text.split_whitespace().count();
            if n_fields != 5 {
                return Err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), found {n_fields}"
                ));
            }
        }
        let parser =
            CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
        let cron = match parser.parse(text) {
            Ok(cron) => cron,
            Err(err) => {
                return Err(err.to_string().trim_end_matches('.').to_lowercase());
            }
        };
        let expr = Self { text: text.to_owned(), cron };
        // An expression that can never fire (e.g. 30 February) is a mistake, not a schedule.
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        if expr.next_after(epoch).is_none() {
            return Err("the expression never fires".to_owned());
        }
        Ok(expr)
    }

    /// The expression as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first fire time strictly after `after`, or `None` when there is none.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// The last fire time at or before `at`, or `None` when there is none.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&at, true).ok()
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronExpr {}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap()
    }

    #[test]
    fn next_fire_times() {
        let now = at(2026, 11, 21, 11, 16);
        let cases = [
            ("0 * * * *", at(2026, 11, 21, 12, 0)),
            ("*/15 * * * *", at(2026, 11, 21, 11, 30)),
            ("0 9 * * 1-5", at(2026, 11, 23, 9, 0)),
            ("0 0 1 1 *", at(2027, 1, 1, 0, 0)),
            ("@daily", at(2026, 11, 22, 0, 0)),
            ("30 2 29 2 *", at(2028, 2, 29, 2, 30)),
        ];
        for (expr, want) in cases {
            let got = CronExpr::parse(expr).unwrap().next_after(now);
            assert_eq!(got, Some(want), "{expr}");
        }
    }

    #[test]
    fn bad_expressions_say_why() {
        let cases = [
            ("", "the cron expression is empty"),
            ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), found 4"),
            (
                "0 * * * * *",
                "expected 5 fields (minute hour day-of-month month day-of-week), found 6",
            ),
            ("0 0 30 2 *", "the expression never fires"),
        ];
        for (expr, want) in cases {
            assert_eq!(CronExpr::parse(expr).unwrap_err(), want, "{expr:?}");
        }
        assert!(CronExpr::parse("61 * * * *").is_err());
        assert!(CronExpr::parse("* * * * funday").is_err());
    }

    #[test]
    fn fire_times_strictly_increase() {
        let expr = CronExpr::parse("7,37 */3 * * 1,3,5").unwrap();
        let mut t = at(2026, 1, 1, 0, 0);
        for _ in 0..500 {
            let next = expr.next_after(t).unwrap();
            assert!(next > t);
            t = next;
        }
    }
}
