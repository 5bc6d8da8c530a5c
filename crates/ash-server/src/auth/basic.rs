//! `Authorization: Basic`: decoding and the constant-time credential check.
//!
//! Owns the RFC 7617 credential format: base64 of `user:password`, split at the first colon,
//! compared byte for byte (no normalisation) through SHA-256 digests, so neither the lengths
//! nor the contents of the configured secrets show in the time an answer takes.

use aws_lc_rs::digest;
use base64::Engine as _;

use super::keys::same_bytes;

/// One configured user.
pub(crate) struct BasicUser {
    pub(crate) username: String,
    password_digest: digest::Digest,
    username_digest: digest::Digest,
}

impl BasicUser {
    pub(crate) fn new(username: &str, password: &str) -> Self {
        Self {
            username: username.to_owned(),
            username_digest: digest::digest(&digest::SHA256, username.as_bytes()),
            password_digest: digest::digest(&digest::SHA256, password.as_bytes()),
        }
    }

    /// Whether `user`/`password` are this user's. Both halves are always compared.
    fn matches(&self, user: &str, password: &str) -> bool {
        let user_ok = same_bytes(
            digest::digest(&digest::SHA256, user.as_bytes()).as_ref(),
            self.username_digest.as_ref(),
        );
        let password_ok = same_bytes(
            digest::digest(&digest::SHA256, password.as_bytes()).as_ref(),
            self.password_digest.as_ref(),
        );
        user_ok & password_ok
    }
}

/// Why Basic credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BasicError {
    #[error("the Basic credentials are not valid base64")]
    Encoding,
    #[error("the Basic credentials are not UTF-8")]
    Utf8,
    #[error("the Basic credentials have no `:` between user name and password")]
    NoColon,
    #[error("wrong user name or password")]
    Wrong,
}

/// Decodes `credentials` (the part after `Basic `) and finds the user they belong to.
pub(crate) fn check<'u>(credentials: &str, users: &'u [BasicUser]) -> Result<&'u str, BasicError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .map_err(|_| BasicError::Encoding)?;
    let text = String::from_utf8(bytes).map_err(|_| BasicError::Utf8)?;
    let (user, password) = text.split_once(':').ok_or(BasicError::NoColon)?;
    // Every configured user is compared, so the answer's timing does not say which one matched.
    let mut found = None;
    for candidate in users {
        if candidate.matches(user, password) && found.is_none() {
            found = Some(candidate.username.as_str());
        }
    }
    found.ok_or(BasicError::Wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(text: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn credentials_split_at_the_first_colon_and_compare_exactly() {
        let users = [BasicUser::new("ops", "pa:ss"), BasicUser::new("ci", "x")];
        let cases: Vec<(String, Result<&str, BasicError>)> = vec![
            (encode(b"ops:pa:ss"), Ok("ops")),
            (encode(b"ci:x"), Ok("ci")),
            (format!("  {}  ", encode(b"ci:x")), Ok("ci")),
            (encode(b"ops:pa:s"), Err(BasicError::Wrong)),
            (encode(b"OPS:pa:ss"), Err(BasicError::Wrong)),
            (encode(b"ops:pa:ss "), Err(BasicError::Wrong)),
            (encode(b"ops:"), Err(BasicError::Wrong)),
            (encode(b":"), Err(BasicError::Wrong)),
            (encode(b"ci:x:"), Err(BasicError::Wrong)),
            (encode(b"opspa"), Err(BasicError::NoColon)),
            (encode(b""), Err(BasicError::NoColon)),
            (encode(&[0xff, b':', b'x']), Err(BasicError::Utf8)),
            ("!!!".to_owned(), Err(BasicError::Encoding)),
            ("b3BzOnBhOnNz=".to_owned(), Err(BasicError::Encoding)),
        ];
        for (input, want) in cases {
            assert_eq!(check(&input, &users), want, "{input}");
        }
    }
}
