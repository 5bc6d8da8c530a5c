//! Integration tests of ash-identity: key files on disk, signatures and their one rule.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use ash_identity::{
    Domain, Identity, IdentityError, SealingKeyCert, Signature, SignatureError, SignedItem,
    invalid_signatures, verify, verify_batch,
};
use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::CompressedEdwardsY;
use pretty_assertions::assert_eq;

#[test]
fn key_file_round_trip_is_private_and_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/identity.key");
    let identity = Identity::generate().unwrap();
    identity.save(&path).unwrap();
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o600, 0o700));
    let loaded = Identity::load(&path).unwrap();
    assert_eq!(loaded.node_id(), identity.node_id());
    assert_eq!(loaded.sealing_public(), identity.sealing_public());
    // Overwriting leaves no temporary files behind.
    loaded.save(&path).unwrap();
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["identity.key"]);
    // Debug output never shows secrets.
    let debug = format!("{loaded:?} {:?}", loaded.sealing_secret());
    let text = fs::read_to_string(&path).unwrap();
    let seed_line = text.lines().find(|l| l.starts_with("ed25519 ")).unwrap();
    assert!(!debug.contains(&seed_line[8..20]), "{debug}");
}

#[test]
fn loose_permissions_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    Identity::generate().unwrap().save(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = Identity::load(&path).unwrap_err();
    assert!(matches!(err, IdentityError::Permissions { mode: 0o644, .. }));
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn hostile_key_files_name_the_line() {
    let good = "ed25519 ".to_owned() + &"11".repeat(32);
    let sealing = "x25519 ".to_owned() + &"22".repeat(32);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "line 0: the file is empty"),
        ("ssh-ed25519 AAAA\n".into(), "line 1: expected `ash-identity-v1`"),
        (format!("ash-identity-v1\n{good}\n"), "line 0: no `x25519` line"),
        (format!("ash-identity-v1\n{good}\n{good}\n"), "line 3: `ed25519` appears twice"),
        (
            format!("ash-identity-v1\ned25519 xyz\n{sealing}\n"),
            "line 2: `ed25519` needs 64 hex digits",
        ),
        (format!("ash-identity-v1\n# note\n{good}\nrsa 00\n"), "line 4: unknown key `rsa`"),
        ("ash-identity-v1\n".to_owned() + &"#".repeat(20_000), "too big for a key file"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("k{i}"));
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = Identity::load(&path).unwrap_err().to_string();
        assert!(err.ends_with(expected), "case {i}: {err}");
    }
    let path = dir.path().join("binary");
    fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Identity::load(&path).unwrap_err().to_string().ends_with("not UTF-8 text"));
    let missing = Identity::load(&dir.path().join("absent")).unwrap_err();
    assert!(matches!(missing, IdentityError::Io { .. }));
}

#[test]
fn signatures_are_bound_to_their_domain_and_bytes() {
    let alice = Identity::insecure_from_label("alice");
    let bob = Identity::insecure_from_label("bob");
    let signature = alice.sign(Domain::LedgerEntry, b"entry");
    let key = alice.public_key();
    assert_eq!(verify(key, Domain::LedgerEntry, b"entry", &signature), Ok(()));
    let mismatches = [
        verify(key, Domain::LedgerResult, b"entry", &signature),
        verify(key, Domain::LedgerEntry, b"entrx", &signature),
        verify(bob.public_key(), Domain::LedgerEntry, b"entry", &signature),
    ];
    assert_eq!(mismatches, [Err(SignatureError::Mismatch); 3]);
    // s ≥ ℓ (the top byte set) and an R that is not a point.
    let mut high_s = signature;
    high_s.0[63] = 0xff;
    assert_eq!(
        verify(key, Domain::LedgerEntry, b"entry", &high_s),
        Err(SignatureError::NonCanonicalScalar)
    );
    let mut bad_r = signature;
    bad_r.0[..32].copy_from_slice(&[2; 32]);
    bad_r.0[0] = 2;
    let r_result = verify(key, Domain::LedgerEntry, b"entry", &bad_r);
    assert!(matches!(r_result, Err(SignatureError::InvalidPoint | SignatureError::Mismatch)));
    // The same message signed by the standard algorithm, checked with ed25519-dalek itself.
    let dalek_key = ed25519_dalek::VerifyingKey::from_bytes(alice.node_id().as_bytes()).unwrap();
    let dalek_sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    assert!(dalek_key.verify_strict(&Domain::LedgerEntry.message(b"entry"), &dalek_sig).is_ok());
}

#[test]
fn batch_and_single_checks_agree_even_on_torsion_tricks() {
    let signers: Vec<Identity> =
        (0..40).map(|i| Identity::insecure_from_label(&format!("n{i}"))).collect();
    let messages: Vec<Vec<u8>> = (0..40u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let mut signatures: Vec<Signature> =
        signers.iter().zip(&messages).map(|(s, m)| s.sign(Domain::LedgerEntry, m)).collect();
    // Signature 7: made by a malicious signer with an 8-torsion point added to R. The
    // cofactorless equation (and so ed25519-dalek's `verify_strict`) rejects it; ash's cofactored
    // rule accepts it. What matters is that single and batch checks give the same answer.
    signatures[7] = torsion_signature(&signers[7], &messages[7]);
    let strict_key =
        ed25519_dalek::VerifyingKey::from_bytes(signers[7].node_id().as_bytes()).unwrap();
    let strict = strict_key.verify_strict(
        &Domain::LedgerEntry.message(&messages[7]),
        &ed25519_dalek::Signature::from_bytes(&signatures[7].0),
    );
    assert!(strict.is_err());
    // Signature 11: a valid signature with R tweaked after the fact: invalid everywhere.
    let r = CompressedEdwardsY(signatures[11].0[..32].try_into().unwrap()).decompress().unwrap();
    signatures[11].0[..32].copy_from_slice((r + EIGHT_TORSION[1]).compress().as_bytes());
    // Signature 23: wrong message.
    signatures[23] = signers[23].sign(Domain::LedgerEntry, b"other");
    let items: Vec<SignedItem<'_>> = signers
        .iter()
        .zip(&messages)
        .zip(&signatures)
        .map(|((s, m), sig)| SignedItem {
            key: s.public_key(),
            domain: Domain::LedgerEntry,
            bytes: m,
            signature: sig,
        })
        .collect();
    let single: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, it)| verify(it.key, it.domain, it.bytes, it.signature).is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(single, [11, 23]);
    assert_eq!(invalid_signatures(&items), single);
    assert!(verify_batch(&items).is_err());
    // A big valid batch takes the parallel path and passes.
    let many: Vec<Signature> =
        (0..600).map(|i| signers[i % 40].sign(Domain::LedgerEntry, &messages[i % 40])).collect();
    let items: Vec<SignedItem<'_>> = (0..600)
        .map(|i| SignedItem {
            key: signers[i % 40].public_key(),
            domain: Domain::LedgerEntry,
            bytes: &messages[i % 40],
            signature: &many[i],
        })
        .collect();
    assert_eq!(verify_batch(&items), Ok(()));
    assert_eq!(invalid_signatures(&items), Vec::<usize>::new());
}

/// A signature whose R carries an 8-torsion component, made with the secret scalar.
fn torsion_signature(signer: &Identity, message: &[u8]) -> Signature {
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest as _, Sha512};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    signer.save(&path).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let seed_hex = text.lines().find_map(|l| l.strip_prefix("ed25519 ")).unwrap();
    let seed: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let a = Scalar::from_bytes_mod_order(
        ed25519_dalek::SigningKey::from_bytes(&seed).to_scalar_bytes(),
    );
    let r = Scalar::from_bytes_mod_order([7; 32]);
    let big_r =
        (curve25519_dalek::constants::ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[1]).compress();
    let mut hash = Sha512::new();
    hash.update(big_r.as_bytes());
    hash.update(signer.node_id().as_bytes());
    hash.update(Domain::LedgerEntry.message(message));
    let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    let s = r + k * a;
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(big_r.as_bytes());
    bytes[32..].copy_from_slice(s.as_bytes());
    Signature(bytes)
}

#[test]
fn sealing_key_cert_round_trips_and_rejects_forgery() {
    let alice = Identity::insecure_from_label("alice");
    let cert = alice.sealing_cert();
    let text = cert.to_string();
    assert_eq!(text.parse::<SealingKeyCert>().unwrap(), cert);
    // Swap in mallory's sealing key under alice's id and signature.
    let mallory = Identity::insecure_from_label("mallory");
    let forged = SealingKeyCert { key: mallory.sealing_public(), ..cert };
    let err = forged.to_string().parse::<SealingKeyCert>().unwrap_err().to_string();
    assert!(err.contains("the signature does not match the node id"), "{err}");
    for bad in ["", "ash-sealing-key-v1 00", "ssh-rsa a b c"] {
        assert!(bad.parse::<SealingKeyCert>().is_err(), "{bad}");
    }
}
