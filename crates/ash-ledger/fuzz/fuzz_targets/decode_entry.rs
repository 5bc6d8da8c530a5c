//! Fuzz target for the entry and bundle decoders: `cargo +nightly fuzz run decode_entry`
//! (from `crates/ash-ledger`). Decoding must never panic, and whatever decodes must re-encode
//! to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = ash_ledger::Entry::decode(data) {
        assert_eq!(entry.bytes(), data);
    }
    let _ = ash_ledger::read_bundle(data, 1000);
});
