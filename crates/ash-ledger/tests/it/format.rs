//! Canonical bytes: round trips, a fixed test vector, hostile entries and bundles.

use ash_identity::encode_hex;
use ash_ledger::{BundleError, Entry, Outcome, read_bundle, write_bundle};
use pretty_assertions::assert_eq;
use proptest::prelude::*;

use crate::world::World;

/// A world with one entry of every kind.
fn every_kind() -> World {
    let mut w = World::new(2);
    w.job_done(0, 1, 6, Outcome::Accept, 6);
    let reserve = w.reserve(0, 1, 4);
    w.now += 61_000;
    let s = w.settlement(&reserve, Outcome::Timeout, 2);
    w.settle(1, &reserve, s);
    w
}

#[test]
fn every_entry_round_trips() {
    let w = every_kind();
    let kinds: std::collections::BTreeSet<&str> = w.entries.iter().map(|e| e.body.kind()).collect();
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["mint", "profile", "reserve", "settle"]);
    for entry in &w.entries {
        assert_eq!(&Entry::decode(entry.bytes()).unwrap(), entry);
    }
}

/// The authority's profile, byte for byte: the test vector in docs/ledger-format.md.
#[test]
fn profile_test_vector() {
    let w = World::new(0);
    let entry = &w.entries[0];
    assert_eq!(
        (encode_hex(entry.bytes()), entry.hash().to_string()),
        (
            concat!(
                "01",                                                               // version
                "c32597ebf724c15063fc39cf010fca2761a29032f6dd93f76fd0f7eb876b665a", // author
                "0000000000000000",                                                 // seq
                "0000000000000000000000000000000000000000000000000000000000000000", // prev
                "0000018bcfe56be8",                                                 // time
                "01",                                                               // kind: profile
                "00000032", // payload length
                "09",
                "617574686f72697479", // username "authority"
                "d4874fc3888ecbd6493e3adb4e0216f367ea32f60ff894145860c51a76851a4a", // sealing key
                "0000018bcfe56800",   // created at
                "64b822bb67e8ba7aff280b53db7387575100f83f56a672d1986e69bdb7e33fec794a3924b53ae549b7b37666ef8773722033856bb23d9f940915787a78484201", // signature
                "00", // no cosignature
            )
            .to_owned(),
            "7c183a62c374b43804f635ceb3fd7469b294ad9d6f6c4833592d7c31a118aeb1".to_owned()
        )
    );
}

#[test]
fn hostile_entries_are_refused_with_the_offset() {
    let w = every_kind();
    let settle = w.entries.iter().find(|e| e.body.kind() == "settle").unwrap().bytes().to_vec();
    // Every truncation of a settle fails cleanly.
    for len in 0..settle.len() {
        assert!(Entry::decode(&settle[..len]).is_err(), "length {len}");
    }
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    let mut trailing = settle.clone();
    trailing.push(0);
    cases.push((trailing, "1 unexpected bytes after the entry"));
    let mut version = settle;
    version[0] = 2;
    cases.push((version, "byte 0: unsupported entry version 2"));
    let mut kind = w.entries[0].bytes().to_vec();
    kind[81] = 9;
    cases.push((kind, "unknown entry kind 9"));
    let mut flag = w.entries[0].bytes().to_vec();
    let last = flag.len() - 1;
    flag[last] = 7;
    cases.push((flag, "cosignature flag must be 0 or 1, not 7"));
    let mut long_payload = w.entries[0].bytes().to_vec();
    long_payload[82..86].copy_from_slice(&u32::MAX.to_be_bytes());
    cases.push((long_payload, "byte 86: truncated: payload needs 4294967295 bytes"));
    cases.push((vec![1; 5000], "byte 0: entry of 5000 bytes is over the 4096-byte limit"));
    for (bytes, expected) in cases {
        let err = Entry::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains(expected), "{err} / {expected}");
    }
}

#[test]
fn bundles_round_trip_and_refuse_damage() {
    let w = every_kind();
    let mut bytes = Vec::new();
    write_bundle(&mut bytes, w.entries.iter()).unwrap();
    assert_eq!(read_bundle(bytes.as_slice(), 1000).unwrap(), w.entries);
    let cut = bytes.len() - 10;
    let count = w.entries.len();
    let cases: Vec<(Vec<u8>, u64, String)> = vec![
        (
            b"PK\x03\x04".to_vec(),
            1000,
            "not an ash ledger bundle: shorter than the 18-byte header".into(),
        ),
        (
            [b"ASHLEDGX".as_slice(), &bytes[8..]].concat(),
            1000,
            "not an ash ledger bundle: it does not start with `ASHLEDGR`".into(),
        ),
        (
            [&bytes[..8], &[0, 9], &bytes[10..]].concat(),
            1000,
            "not an ash ledger bundle: version 9; this ash reads version 1".into(),
        ),
        (
            bytes[..cut].to_vec(),
            1000,
            format!("bundle truncated at entry {} of {count}", count - 1),
        ),
        ([bytes.as_slice(), b"x"].concat(), 1000, format!("unexpected bytes after entry {count}")),
        (bytes.clone(), 3, format!("bundle holds {count} entries, more than the limit of 3")),
        (
            [&bytes[..18], &[0, 1, 0, 0]].concat(),
            1000,
            "entry 0: byte 0: entry of 65536 bytes is over the 4096-byte limit".into(),
        ),
    ];
    for (input, limit, expected) in cases {
        let err: BundleError = read_bundle(input.as_slice(), limit).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
}

proptest! {
    /// The decoder never panics and never accepts what it cannot re-encode identically.
    #[test]
    fn decoder_survives_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        if let Ok(entry) = Entry::decode(&bytes) {
            prop_assert_eq!(entry.bytes(), bytes.as_slice());
        }
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
