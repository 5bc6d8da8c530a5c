//! Canonical bytes: round trips, a fixed test vector, hostile entries, checkpoints and bundles.

use ash_identity::encode_hex;
use ash_ledger::{
    Body, BundleError, Checkpoint, Credits, Entry, Hash, Outcome, Release, Terms, read_bundle,
    write_bundle,
};
use pretty_assertions::assert_eq;
use proptest::prelude::*;

use crate::world::{User, World};

/// A world with one entry of every kind.
pub(crate) fn every_kind() -> World {
    let mut w = World::new(2);
    w.job_done(0, 1, 6, Outcome::Accept);
    let r = w.reserve(0, 1, 4);
    w.cancel(&r);
    let r = w.reserve(0, 1, 4);
    w.pass_deadline(&r);
    w.append(User(0), Body::Release(Release::expired(r.id())));
    w
}

#[test]
fn every_entry_round_trips() {
    let w = every_kind();
    let kinds: std::collections::BTreeSet<&str> = w.entries.iter().map(|e| e.body.kind()).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["collect", "decide", "mint", "profile", "receipt", "receive", "release", "reserve"]
    );
    for entry in &w.entries {
        assert_eq!(&Entry::decode(&entry.bytes()).unwrap(), entry);
    }
    assert!(w.verify().is_clean());
}

/// The authority's profile, byte for byte: the test vector in docs/ledger-format.md.
#[test]
fn profile_test_vector() {
    let w = World::new(0);
    let entry = &w.entries[0];
    assert_eq!(
        (w.genesis.id().to_string(), encode_hex(&entry.bytes()), entry.id().to_string()),
        (NETWORK.to_owned(), VECTOR.concat(), ID.to_owned())
    );
}

const NETWORK: &str = "20fde28f5ebf88c9432c211f2ba283ca7a0d50346e052c88feb6f71a8db78884";
const ID: &str = "f8ef50e543fdd181a2100fc33025d5c2b87672a781bd637bdaff2c2edec16de0";
const VECTOR: &[&str] = &[
    "02",                                                               // version
    "20fde28f5ebf88c9432c211f2ba283ca7a0d50346e052c88feb6f71a8db78884", // network
    "c32597ebf724c15063fc39cf010fca2761a29032f6dd93f76fd0f7eb876b665a", // author
    "0000000000000000",                                                 // seq
    "0000000000000000000000000000000000000000000000000000000000000000", // prev
    "0000018bcfe56be8",                                                 // time
    "01",                                                               // kind: profile
    "00000032",                                                         // payload length (50)
    "09617574686f72697479",                                             // "authority"
    "d4874fc3888ecbd6493e3adb4e0216f367ea32f60ff894145860c51a76851a4a", // sealing key
    "0000018bcfe56800",                                                 // created at
    "39a577c3d9a849cc14aeee8601edb937ee165d16e410c343cca79938943a1605",
    "33f4cd09c0b5deb07ec1c525184cbfde6d7c5ccb547fea02ddf20cc899610e08", // signature
];

#[test]
fn terms_have_a_fixed_digest() {
    let terms = Terms {
        tier: "sonnet".into(),
        price: Credits::new(6),
        package: Hash([1; 32]),
        prompt: Hash([2; 32]),
        agent: "builtin".into(),
        model: "anthropic/claude-sonnet-4-5".into(),
        routed: false,
    };
    // Computed independently: SHA-256("ash/ledger/terms/v3" || 0 || the bytes above).
    assert_eq!(
        terms.digest().unwrap().to_string(),
        "1c090974b36933a191dce8722c6ba6b73cd58365ca2d08326cf612ea0a74bc14"
    );
    let changed = [
        Terms { tier: "opus".into(), ..terms.clone() },
        Terms { price: Credits::new(7), ..terms.clone() },
        Terms { package: Hash([9; 32]), ..terms.clone() },
        Terms { prompt: Hash([9; 32]), ..terms.clone() },
        Terms { agent: "claude".into(), ..terms.clone() },
        Terms { model: "anthropic/claude-opus-4-5".into(), ..terms.clone() },
        Terms { routed: true, ..terms.clone() },
        // Lengths are part of the bytes: a tier's end cannot pass for an agent's start.
        Terms { tier: "sonne".into(), agent: "tbuiltin".into(), ..terms.clone() },
    ];
    for other in changed {
        assert_ne!(other.digest(), terms.digest(), "{other:?}");
    }
    let long = Terms { tier: "x".repeat(Terms::MAX_TEXT + 1), ..terms.clone() };
    assert_eq!(long.digest(), None);
    let long = Terms { model: "x".repeat(Terms::MAX_TEXT + 1), ..terms };
    assert_eq!(long.digest(), None);
}

#[test]
fn hostile_entries_are_refused_with_the_offset() {
    let w = every_kind();
    let receipt = w.entries.iter().find(|e| e.body.kind() == "receipt").unwrap().bytes().to_vec();
    // Every truncation fails cleanly.
    for len in 0..receipt.len() {
        assert!(Entry::decode(&receipt[..len]).is_err(), "length {len}");
    }
    let profile = w.entries[0].bytes().to_vec();
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    let mut trailing = receipt.clone();
    trailing.push(0);
    cases.push((trailing, "1 unexpected bytes after the entry"));
    let mut version = receipt;
    version[0] = 1;
    cases.push((version, "byte 0: ledger entry version 1; this ash reads version 2"));
    let mut kind = profile.clone();
    kind[113] = 9;
    cases.push((kind, "unknown entry kind 9"));
    let mut long_payload = profile;
    long_payload[114..118].copy_from_slice(&u32::MAX.to_be_bytes());
    cases.push((long_payload, "byte 118: truncated: payload needs 4294967295 bytes"));
    let release =
        w.entries.iter().rev().find(|e| e.body.kind() == "release").unwrap().bytes().to_vec();
    let mut reason = release;
    reason[118 + 32] = 3;
    cases.push((reason, "unknown release reason 3"));
    cases.push((vec![2; 5000], "byte 0: entry of 5000 bytes is over the 1024-byte limit"));
    for (bytes, expected) in cases {
        let err = Entry::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains(expected), "{err} / {expected}");
    }
}

#[test]
fn checkpoints_round_trip_and_count_only_with_a_quorum() {
    let w = every_kind();
    let v = w.verifier();
    let mut checkpoint = v.checkpoint(w.id(0), w.now).unwrap();
    assert_eq!(
        checkpoint.check(&w.genesis).unwrap_err().to_string(),
        "0 valid witness signatures; the network needs 1"
    );
    checkpoint.sign(&w.users[1]);
    assert_eq!(
        checkpoint.check(&w.genesis).unwrap_err().to_string(),
        "0 valid witness signatures; the network needs 1"
    );
    checkpoint.sign(&w.authorities[0]);
    assert_eq!(checkpoint.check(&w.genesis), Ok(()));
    let decoded = Checkpoint::decode(&checkpoint.to_bytes()).unwrap();
    assert_eq!(decoded, checkpoint);
    assert_eq!(decoded.balance(), v.report().accounts[&w.id(0)].balance);
    // A changed state byte breaks every signature.
    let mut bytes = checkpoint.to_bytes();
    bytes[4 + 1 + 32 + 32 + 8 + 32 + 8 + 2 + 7] ^= 1;
    let tampered = Checkpoint::decode(&bytes).unwrap();
    assert!(tampered.check(&w.genesis).is_err());
}

#[test]
fn bundles_round_trip_and_refuse_damage() {
    let w = every_kind();
    let mut checkpoint = w.verifier().checkpoint(w.id(1), w.now).unwrap();
    checkpoint.sign(&w.authorities[0]);
    let mut bytes = Vec::new();
    write_bundle(&mut bytes, w.network(), w.entries.iter(), std::slice::from_ref(&checkpoint))
        .unwrap();
    let bundle = read_bundle(bytes.as_slice(), 1000).unwrap();
    assert_eq!(
        (bundle.network, &bundle.entries, &bundle.checkpoints),
        (w.network(), &w.entries, &vec![checkpoint])
    );
    let cut = bytes.len() - 10;
    let count = w.entries.len() + 1;
    let cases: Vec<(Vec<u8>, u64, String)> = vec![
        (b"PK\x03\x04".to_vec(), 1000, "not an ash ledger bundle: shorter than the 10-byte magic and version".into()),
        (
            [b"ASHLEDGX".as_slice(), &bytes[8..]].concat(),
            1000,
            "not an ash ledger bundle: it does not start with `ASHLEDGR`".into(),
        ),
        (
            [&bytes[..8], &[0, 1], &bytes[10..]].concat(),
            1000,
            "not an ash ledger bundle: bundle version 1; this ash reads version 2 (see docs/ledger-format.md)".into(),
        ),
        (bytes[..cut].to_vec(), 1000, format!("bundle truncated at record {} of {count}", count - 1)),
        ([bytes.as_slice(), b"x"].concat(), 1000, format!("unexpected bytes after record {count}")),
        (bytes.clone(), 3, format!("bundle holds {count} records, more than the limit of 3")),
        (
            [&bytes[..50], &[1, 0, 1, 0, 0]].concat(),
            1000,
            "record 0: byte 0: record of 65536 bytes is over the 1024-byte limit".into(),
        ),
        ([&bytes[..50], &[7, 0, 0, 0, 0]].concat(), 1000, "record 0: byte 0: unknown record kind 7".into()),
    ];
    for (input, limit, expected) in cases {
        let err: BundleError = read_bundle(input.as_slice(), limit).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
}

proptest! {
    /// The decoder never panics and never accepts what it cannot re-encode identically.
    #[test]
    fn decoder_survives_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(entry) = Entry::decode(&bytes) {
            prop_assert_eq!(entry.bytes(), bytes.as_slice());
        }
        let _ = Checkpoint::decode(&bytes);
    }

    #[test]
    fn decoder_survives_mutated_entries(pick in any::<prop::sample::Index>(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let w = every_kind();
        let mut bytes = w.entries[pick.index(w.entries.len())].bytes().to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(entry) = Entry::decode(&bytes) {
            prop_assert_eq!(entry.bytes(), bytes.as_slice());
        }
    }
}
