//! Identifiers: time-ordered ULID-style ids for runs and events, random continuation tokens.

/// Crockford's base32 alphabet, as ULIDs use it.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A 26-character, time-ordered, random id (ULID text form of a UUIDv7).
pub(crate) fn ulid() -> String {
    crockford(u128::from_be_bytes(*uuid::Uuid::now_v7().as_bytes()))
}

/// `value` as 26 Crockford base32 characters, most significant first (the ULID text form).
pub(crate) fn crockford(value: u128) -> String {
    (0..26)
        .rev()
        .map(|i| {
            let digit = ((value >> (i * 5)) & 0x1f) as usize;
            char::from(CROCKFORD.get(digit).copied().unwrap_or(b'0'))
        })
        .collect()
}

/// `wrun_<ULID>`: a run (and session) id.
pub(crate) fn run_id() -> String {
    format!("wrun_{}", ulid())
}

/// Whether `text` is a run id this engine could have made (`wrun_` and 26 Crockford
/// characters). Ids read back from a store another process writes are checked before they
/// name a directory.
pub(crate) fn is_run_id(text: &str) -> bool {
    text.strip_prefix("wrun_")
        .is_some_and(|rest| rest.len() == 26 && rest.bytes().all(|c| CROCKFORD.contains(&c)))
}

/// `evt_<ULID>`: an event id.
pub(crate) fn event_id() -> String {
    format!("evt_{}", ulid())
}

/// `wrun_<26 Crockford characters of SHA-256>` over `domain` and each part, each part
/// length-prefixed (so no two part lists hash alike): the same run for the same parts (a
/// schedule's fire, a delegation's child).
pub(crate) fn derived_run_id(domain: &[u8], parts: &[&[u8]]) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    hash.update(domain);
    hash.update([0]);
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut value = 0u128;
    for byte in digest.iter().take(16) {
        value = (value << 8) | u128::from(*byte);
    }
    format!("wrun_{}", crockford(value))
}

/// `ash:<uuid v4>`: an unguessable continuation token.
pub(crate) fn continuation_token() -> String {
    format!("ash:{}", uuid::Uuid::new_v4())
}

/// `worker_<ULID>`: the lease owner id of one engine instance (not a network node id).
pub(crate) fn owner_id() -> String {
    format!("worker_{}", ulid())
}

/// `turn_<sequence>`.
pub(crate) fn turn_id(sequence: u32) -> String {
    format!("turn_{sequence}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ulids_are_26_crockford_characters_and_sort_by_time() {
        let a = super::ulid();
        std::thread::yield_now();
        let b = super::ulid();
        assert_eq!(a.len(), 26);
        assert!(a.bytes().all(|c| super::CROCKFORD.contains(&c)), "{a}");
        assert!(a.as_str() <= b.as_str() || a[..10] == b[..10], "{a} then {b}");
        assert!(super::continuation_token().starts_with("ash:"));
        assert!(super::is_run_id(&super::run_id()));
        assert!(super::is_run_id(&super::derived_run_id(b"x", &[b"y"])));
        for bad in [
            "wrun_../../../../etc/profile.d",
            "/etc",
            "wrun_",
            "wrun_0000000000000000000000000I",
            "r1",
        ] {
            assert!(!super::is_run_id(bad), "{bad}");
        }
    }
}
