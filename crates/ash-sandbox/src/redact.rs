//! Removing injected secrets from captured output: every occurrence of a secret's value becomes
//! `[redacted:NAME]`, and output cut off in the middle of a secret loses the partial value too.
//! This stops a secret from being echoed back verbatim; it cannot stop a process that encodes,
//! splits or transforms it first (see docs/sandbox.md).

use crate::policy::Secret;

/// Secrets shorter than this are not redacted: they would match ordinary text.
const MIN_SECRET: usize = 4;

/// Redacts `buf` in place; `truncated` says the output was cut at the end of `buf`.
pub(crate) fn redact(buf: &mut Vec<u8>, secrets: &[Secret], truncated: bool) {
    for secret in secrets.iter().filter(|s| s.value.len() >= MIN_SECRET) {
        let needle = secret.value.as_bytes();
        let marker = format!("[redacted:{}]", secret.name).into_bytes();
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        while i < buf.len() {
            if buf[i..].starts_with(needle) {
                out.extend_from_slice(&marker);
                i += needle.len();
            } else {
                out.push(buf[i]);
                i += 1;
            }
        }
        if truncated {
            // The output ended inside the secret: drop the visible prefix.
            let keep = (MIN_SECRET..needle.len())
                .rev()
                .find(|n| out.ends_with(&needle[..*n]))
                .map_or(out.len(), |n| out.len() - n);
            if keep < out.len() {
                out.truncate(keep);
                out.extend_from_slice(&marker);
            }
        }
        *buf = out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SecretDelivery;

    fn secret(name: &str, value: &str) -> Secret {
        Secret { name: name.into(), value: value.into(), delivery: SecretDelivery::Env }
    }

    #[test]
    fn secrets_are_replaced_wherever_they_appear() {
        let secrets = [secret("KEY", "sk-12345"), secret("SHORT", "ab")];
        let cases = [
            ("KEY=sk-12345\n", false, "KEY=[redacted:KEY]\n"),
            ("sk-12345sk-12345", false, "[redacted:KEY][redacted:KEY]"),
            ("ab is too short to redact", false, "ab is too short to redact"),
            ("cut at sk-123", true, "cut at [redacted:KEY]"),
            ("cut at sk-", true, "cut at sk-"),
            ("not cut sk-123", false, "not cut sk-123"),
        ];
        for (input, truncated, expected) in cases {
            let mut buf = input.as_bytes().to_vec();
            redact(&mut buf, &secrets, truncated);
            assert_eq!(String::from_utf8_lossy(&buf), expected, "{input}");
        }
    }
}
