//! JSON Web Tokens in compact form: strict parsing, and the claim rules every token strategy
//! shares (`iss`, `aud`, `exp`/`nbf` with leeway, `sub`, subject patterns).
//!
//! Owns what a token must look like before any key touches it and what it must say after its
//! signature holds. Pure: the current time is a parameter. Errors name the problem and never
//! echo the token or a claim's value.

use std::collections::BTreeMap;

use ash_protocol::AttributeValue;
use serde_json::{Map, Value};

use super::keys::{Alg, b64url};

/// Longest bearer token accepted, in bytes. Real access tokens are a few kilobytes.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Claims the JWT registry defines; the rest become principal attributes.
const REGISTERED: [&str; 7] = ["aud", "exp", "iat", "iss", "jti", "nbf", "sub"];

/// A parsed token whose signature is not checked yet.
#[derive(Debug)]
pub(crate) struct Token<'a> {
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a [u8],
    pub(crate) signature: Vec<u8>,
    pub(crate) alg: Alg,
    pub(crate) kid: Option<String>,
    pub(crate) claims: Map<String, Value>,
}

/// Why a token is not acceptable. The text goes to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("the bearer token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("the bearer token is not a JWT (three base64url parts joined by `.`)")]
    NotJwt,
    #[error("the bearer token's {0} is not valid base64url")]
    Encoding(&'static str),
    #[error("the bearer token's {0} is not a JSON object")]
    Json(&'static str),
    #[error("the bearer token has no `alg`")]
    NoAlg,
    #[error("the bearer token is unsigned (`alg: none` is never accepted)")]
    Unsigned,
    #[error("the bearer token's algorithm is not supported")]
    UnknownAlg,
    #[error("the bearer token has critical header extensions ash does not understand")]
    Critical,
    #[error("the bearer token's `iss` is missing or not a string")]
    NoIssuer,
    #[error("the bearer token's issuer is not accepted here")]
    UnknownIssuer,
    #[error("the bearer token is not signed by an issuer and key this agent accepts")]
    BadSignature,
    #[error("the bearer token's `aud` does not name an accepted audience")]
    Audience,
    #[error("the bearer token has no numeric `exp`")]
    NoExpiry,
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token is not valid yet (`nbf`)")]
    NotYetValid,
    #[error("the bearer token's `{0}` is not a number")]
    BadTime(&'static str),
    #[error("the bearer token's `sub` is missing or empty")]
    NoSubject,
}

/// Parses a compact JWS. Checks shape and header; the signature and claims are the caller's.
pub(crate) fn parse(token: &str) -> Result<Token<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::NotJwt);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(TokenError::NotJwt);
    }
    let header: Map<String, Value> = object(header, "header")?;
    let alg = match header.get("alg") {
        Some(Value::String(name)) if name.eq_ignore_ascii_case("none") => {
            return Err(TokenError::Unsigned);
        }
        Some(Value::String(name)) => Alg::parse(name).ok_or(TokenError::UnknownAlg)?,
        _ => return Err(TokenError::NoAlg),
    };
    // `crit` (RFC 7515 §4.1.11) lists extensions a verifier must understand; ash knows none,
    // so a token using one (such as unencoded payloads, RFC 7797) is refused.
    if header.contains_key("crit") || header.contains_key("b64") {
        return Err(TokenError::Critical);
    }
    if signature.is_empty() {
        return Err(TokenError::Unsigned);
    }
    let claims = object(payload, "payload")?;
    let signature = b64url(signature).ok_or(TokenError::Encoding("signature"))?;
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    // `jwk`, `jku`, `x5u` and `x5c` in the header are never read: keys come from the
    // configuration or the issuer's JWKS only.
    let signing_input = &token.as_bytes()[..token.len() - signature_len(token)];
    Ok(Token { signing_input, signature, alg, kid, claims })
}

/// Length of `.signature` at the end of `token`.
fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

fn object(part: &str, what: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = b64url(part).ok_or(TokenError::Encoding(what))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Json(what)),
    }
}

/// The token's `iss`, before anything is verified: it only picks the strategies to try.
pub(crate) fn issuer<'a>(token: &'a Token<'_>) -> Result<&'a str, TokenError> {
    token.claims.get("iss").and_then(Value::as_str).ok_or(TokenError::NoIssuer)
}

/// What a strategy demands of a token's claims.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    pub(crate) issuer: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) subjects: Vec<String>,
    pub(crate) clock_skew_seconds: u64,
}

impl From<&ash_spec::JwtClaims> for ClaimRules {
    fn from(c: &ash_spec::JwtClaims) -> Self {
        Self {
            issuer: c.issuer.clone(),
            audiences: c.audiences.clone(),
            subjects: c.subjects.clone(),
            clock_skew_seconds: c.clock_skew_seconds,
        }
    }
}

/// Checks the claims of a token whose signature holds, at `now` (seconds since the epoch).
/// Returns the subject. Subject patterns are checked separately ([`ClaimRules::allows`]),
/// because failing them is "forbidden", not "unauthenticated".
pub(crate) fn check_claims<'a>(
    claims: &'a Map<String, Value>,
    rules: &ClaimRules,
    now: i64,
) -> Result<&'a str, TokenError> {
    if claims.get("iss").and_then(Value::as_str) != Some(rules.issuer.as_str()) {
        return Err(TokenError::UnknownIssuer);
    }
    let accepted =
        |aud: &Value| aud.as_str().is_some_and(|a| rules.audiences.iter().any(|r| r == a));
    let audience_ok = match claims.get("aud") {
        Some(Value::String(_)) => claims.get("aud").is_some_and(accepted),
        Some(Value::Array(list)) => list.iter().any(accepted),
        _ => false,
    };
    if !audience_ok {
        return Err(TokenError::Audience);
    }
    let skew = i64::try_from(rules.clock_skew_seconds).unwrap_or(i64::MAX);
    let exp = match claims.get("exp") {
        None => return Err(TokenError::NoExpiry),
        Some(value) => numeric_date(value).ok_or(TokenError::BadTime("exp"))?,
    };
    if now >= exp.saturating_add(skew) {
        return Err(TokenError::Expired);
    }
    if let Some(value) = claims.get("nbf") {
        let nbf = numeric_date(value).ok_or(TokenError::BadTime("nbf"))?;
        if now.saturating_add(skew) < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() => Ok(sub),
        _ => Err(TokenError::NoSubject),
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, fractions dropped.
fn numeric_date(value: &Value) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    #[expect(clippy::cast_possible_truncation, reason = "range checked just before")]
    (f.is_finite() && f.abs() < 1e15).then(|| f.floor() as i64)
}

impl ClaimRules {
    /// Whether `subject` matches one of the patterns (or no patterns are set).
    pub(crate) fn allows(&self, subject: &str) -> bool {
        self.subjects.is_empty() || self.subjects.iter().any(|p| wildcard_match(p, subject))
    }
}

/// Whole-string match where `*` stands for any run of characters, including none, and every
/// other character is literal.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and how much of the text it had taken, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The claims worth keeping on a principal: every non-registered claim whose value is a string
/// or a list of strings.
pub(crate) fn attributes(claims: &Map<String, Value>) -> BTreeMap<String, AttributeValue> {
    claims
        .iter()
        .filter(|(name, _)| !REGISTERED.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            let kept = match value {
                Value::String(s) => AttributeValue::One(s.clone()),
                Value::Array(items) => AttributeValue::Many(
                    items.iter().map(|i| i.as_str().map(str::to_owned)).collect::<Option<_>>()?,
                ),
                _ => return None,
            };
            Some((name.clone(), kept))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    fn b64(value: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn token(header: &Value, claims: &Value) -> String {
        format!("{}.{}.c2ln", b64(header), b64(claims))
    }

    #[test]
    fn malformed_tokens_have_exact_reasons() {
        let claims = json!({"iss": "i"});
        let ok_header = json!({"alg": "HS256"});
        let cases: Vec<(String, TokenError)> = vec![
            ("".into(), TokenError::NotJwt),
            ("abc".into(), TokenError::NotJwt),
            ("a.b".into(), TokenError::NotJwt),
            ("a.b.c.d".into(), TokenError::NotJwt),
            (".b.c".into(), TokenError::NotJwt),
            ("***.e30.c2ln".into(), TokenError::Encoding("header")),
            (format!("{}.e30=.c2ln", b64(&ok_header)), TokenError::Encoding("payload")),
            (
                format!("{}.{}.***", b64(&ok_header), b64(&claims)),
                TokenError::Encoding("signature"),
            ),
            (token(&json!([1]), &claims), TokenError::Json("header")),
            (token(&ok_header, &json!("x")), TokenError::Json("payload")),
            (token(&json!({}), &claims), TokenError::NoAlg),
            (token(&json!({"alg": 1}), &claims), TokenError::NoAlg),
            (token(&json!({"alg": "none"}), &claims), TokenError::Unsigned),
            (token(&json!({"alg": "NoNe"}), &claims), TokenError::Unsigned),
            (format!("{}.{}.", b64(&ok_header), b64(&claims)), TokenError::Unsigned),
            (token(&json!({"alg": "HS1"}), &claims), TokenError::UnknownAlg),
            (
                token(&json!({"alg": "HS256", "crit": ["b64"], "b64": false}), &claims),
                TokenError::Critical,
            ),
            ("a".repeat(MAX_TOKEN_BYTES + 1), TokenError::TooLong),
        ];
        for (input, want) in cases {
            assert_eq!(parse(&input).unwrap_err(), want, "{input:.80}");
        }
    }

    #[test]
    fn a_good_token_parses_and_keys_in_headers_are_ignored() {
        let header = json!({"alg": "ES256", "kid": "k1", "jwk": {"kty": "EC"}, "jku": "http://x", "x5u": "http://y"});
        let text = token(&header, &json!({"iss": "i", "sub": "s"}));
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.alg, Alg::Es256);
        assert_eq!(parsed.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.signature, b"sig");
        assert_eq!(parsed.signing_input, text.rsplit_once('.').unwrap().0.as_bytes());
        assert_eq!(issuer(&parsed), Ok("i"));
    }

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: "https://issuer".into(),
            audiences: vec!["api".into(), "other".into()],
            subjects: vec!["worker:*".into(), "svc-?".into()],
            clock_skew_seconds: 60,
        }
    }

    #[test]
    fn claims_are_checked_in_a_fixed_order_with_leeway() {
        let now = 1_000_000;
        let base =
            json!({"iss": "https://issuer", "aud": "api", "exp": now + 10, "sub": "worker:1"});
        let with = |patch: Value| {
            let mut v = base.clone();
            for (k, val) in patch.as_object().unwrap() {
                if val.is_null() {
                    v.as_object_mut().unwrap().remove(k);
                } else {
                    v[k] = val.clone();
                }
            }
            v.as_object().unwrap().clone()
        };
        let cases: Vec<(Value, Result<&str, TokenError>)> = vec![
            (json!({}), Ok("worker:1")),
            (json!({"aud": ["x", "other"]}), Ok("worker:1")),
            (json!({"exp": now - 59}), Ok("worker:1")),
            (json!({"exp": (now - 59) as f64 + 0.5}), Ok("worker:1")),
            (json!({"nbf": now + 59}), Ok("worker:1")),
            (json!({"iss": "https://issuer/"}), Err(TokenError::UnknownIssuer)),
            (json!({"aud": null}), Err(TokenError::Audience)),
            (json!({"aud": "API"}), Err(TokenError::Audience)),
            (json!({"aud": [1, "x"]}), Err(TokenError::Audience)),
            (json!({"aud": []}), Err(TokenError::Audience)),
            (json!({"exp": null}), Err(TokenError::NoExpiry)),
            (json!({"exp": "soon"}), Err(TokenError::BadTime("exp"))),
            (json!({"exp": now - 60}), Err(TokenError::Expired)),
            (json!({"nbf": now + 61}), Err(TokenError::NotYetValid)),
            (json!({"nbf": true}), Err(TokenError::BadTime("nbf"))),
            (json!({"sub": null}), Err(TokenError::NoSubject)),
            (json!({"sub": ""}), Err(TokenError::NoSubject)),
            (json!({"sub": 7}), Err(TokenError::NoSubject)),
        ];
        for (patch, want) in cases {
            let claims = with(patch.clone());
            assert_eq!(check_claims(&claims, &rules(), now), want, "{patch}");
        }
    }

    #[test]
    fn subject_patterns_match_whole_strings_with_star_only() {
        let cases = [
            ("worker:*", "worker:", true),
            ("worker:*", "worker:a:b", true),
            ("worker:*", "xworker:a", false),
            ("*", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYYcd", false),
            ("a*a", "a", false),
            ("svc-?", "svc-1", false),
            ("svc-?", "svc-?", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("**", "anything", true),
            ("ünï*", "ünïcode", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(wildcard_match(pattern, text), want, "{pattern} vs {text}");
        }
        assert!(rules().allows("worker:9"));
        assert!(!rules().allows("admin"));
        assert!(ClaimRules { subjects: vec![], ..rules() }.allows("anyone"));
    }

    #[test]
    fn attributes_keep_string_claims_only() {
        let claims = json!({
            "iss": "i", "sub": "s", "aud": "a", "exp": 1, "nbf": 1, "iat": 1, "jti": "j",
            "scope": "read write", "groups": ["a", "b"], "mixed": ["a", 1], "n": 3, "o": {"k": "v"}
        });
        let got = attributes(claims.as_object().unwrap());
        assert_eq!(
            got,
            BTreeMap::from([
                ("groups".to_owned(), AttributeValue::Many(vec!["a".into(), "b".into()])),
                ("scope".to_owned(), AttributeValue::One("read write".into())),
            ])
        );
    }
}
