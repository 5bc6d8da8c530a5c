//! Backoff timing: exponential with jitter, and the provider's `retry-after`.
//!
//! Owns the delay between attempts and the parsing of `retry-after-ms` / `retry-after`
//! (seconds or an HTTP date). Never decides *whether* to retry; `stream.rs` does.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use crate::config::RetryPolicy;

/// A small seeded generator for jitter (SplitMix64); shared by every call of a client.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(Arc<Mutex<u64>>);

impl Jitter {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
        });
        Self(Arc::new(Mutex::new(seed)))
    }

    /// A value in [0.5, 1.0).
    fn factor(&self) -> f64 {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        0.5 + (z >> 11) as f64 / (1u64 << 54) as f64
    }

    /// The wait before attempt `next` (2 for the first retry).
    pub(crate) fn backoff(&self, policy: &RetryPolicy, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(20);
        let base = policy.initial_backoff.saturating_mul(1 << doublings).min(policy.max_backoff);
        base.mul_f64(self.factor())
    }
}

/// `retry-after-ms` (OpenAI), else `retry-after` in seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64((ms / 1000.0).min(86_400.0)));
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).ok()?);
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    type Case<'a> = (&'a [(&'static str, &'a str)], Option<Duration>);

    #[test]
    fn retry_after_forms() {
        let cases: &[Case<'_>] = &[
            (&[], None),
            (&[("retry-after", "3")], Some(Duration::from_secs(3))),
            (&[("retry-after", "1.5")], Some(Duration::from_millis(1500))),
            (&[("retry-after-ms", "250"), ("retry-after", "9")], Some(Duration::from_millis(250))),
            (&[("retry-after", "-1")], None),
            (&[("retry-after", "soon")], None),
            (&[("retry-after", "NaN")], None),
            (&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], Some(Duration::ZERO)),
            (&[("retry-after", "99999999999")], Some(Duration::from_secs(86_400))),
        ];
        for (pairs, want) in cases {
            assert_eq!(retry_after(&headers(pairs)), *want, "{pairs:?}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stays_capped() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        let jitter = Jitter::new(Some(1));
        for (attempt, base) in [(2, 100), (3, 200), (4, 400), (5, 800), (6, 1000), (40, 1000)] {
            for _ in 0..50 {
                let wait = jitter.backoff(&policy, attempt);
                let base = Duration::from_millis(base);
                assert!(wait >= base / 2 && wait < base, "attempt {attempt}: {wait:?}");
            }
        }
    }
}
