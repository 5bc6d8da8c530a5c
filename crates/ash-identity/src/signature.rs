//! Domain-separated signatures and the one rule that says whether a signature is valid.
//!
//! Every signed message is `tag || 0x00 || bytes`, where the tag names what is being signed
//! ([`Domain`]), so a signature made for one purpose can never be replayed as another.
//!
//! Validity is the *cofactored* Ed25519 equation `[8](s·B − R − k·A) = 0` with
//! `k = SHA-512(R || A || message) mod ℓ`, a canonical `s < ℓ`, a canonical `R` encoding, and a
//! checked public key (see [`PublicKey`]). Signatures made by any standard Ed25519 signer satisfy
//! it. Because single and batch checks use the same equation, a verifier that checks entries one
//! by one and one that checks ten thousand at once always agree (the cofactorless batch check in
//! common libraries does not have this property).

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity as _, VartimeMultiscalarMul as _};
use sha2::{Digest as _, Sha512};

use crate::error::SignatureError;
use crate::hex::encode_hex;
use crate::node_id::PublicKey;

/// What a signature is for. The tag is part of every signed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// A ledger entry's signed part, signed by its author.
    LedgerEntry,
    /// An acceptor's commitment to a job result.
    LedgerResult,
    /// An acceptor's agreement to cancel a reservation.
    LedgerCancel,
    /// A witness's attestation of one identity's state (a checkpoint).
    LedgerCheckpoint,
    /// The binding of an X25519 sealing key to an identity.
    SealingKey,
    /// The header of a sealed package or diff, signed by its sender.
    SealedHeader,
}

impl Domain {
    /// The ASCII tag prefixed to every message of this domain.
    pub const fn tag(self) -> &'static str {
        match self {
            Self::LedgerEntry => "ash/ledger/entry/v2",
            Self::LedgerResult => "ash/ledger/result/v2",
            Self::LedgerCancel => "ash/ledger/cancel/v2",
            Self::LedgerCheckpoint => "ash/ledger/checkpoint/v2",
            Self::SealingKey => "ash/identity/sealing-key/v1",
            Self::SealedHeader => "ash/pack/sealed-header/v1",
        }
    }

    /// The full message that is signed: `tag || 0x00 || bytes`.
    pub fn message(self, bytes: &[u8]) -> Vec<u8> {
        let tag = self.tag().as_bytes();
        let mut message = Vec::with_capacity(tag.len() + 1 + bytes.len());
        message.extend_from_slice(tag);
        message.push(0);
        message.extend_from_slice(bytes);
        message
    }
}

/// A 64-byte Ed25519 signature (`R || s`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({}…)", encode_hex(&self.0[..8]))
    }
}

/// One signature to check: who, for what, over which bytes.
#[derive(Clone, Copy, Debug)]
pub struct SignedItem<'a> {
    /// The signer.
    pub key: &'a PublicKey,
    /// What the signature is for.
    pub domain: Domain,
    /// The bytes signed (without the domain tag).
    pub bytes: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

/// Checks one signature.
pub fn verify(
    key: &PublicKey,
    domain: Domain,
    bytes: &[u8],
    signature: &Signature,
) -> Result<(), SignatureError> {
    let item = SignedItem { key, domain, bytes, signature };
    let prepared = Prepared::new(&item)?;
    // [8](R + k·A − s·B) = 0
    let check =
        EdwardsPoint::vartime_double_scalar_mul_basepoint(&prepared.k, &key.point, &-prepared.s)
            + prepared.r;
    if check.mul_by_cofactor().is_identity() { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// Checks many signatures at once; `Ok` only if every one is valid. Uses both cores for large
/// batches. Same answer as calling [`verify`] on each (up to a 2⁻¹²⁸ chance of a false accept).
pub fn verify_batch(items: &[SignedItem<'_>]) -> Result<(), SignatureError> {
    // Multi-scalar multiplications stay cache-friendly up to a few thousand points; bigger
    // batches are cut into pieces of this size and the pieces shared out between cores.
    const PIECE: usize = 4096;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(8);
    let pieces: Vec<&[SignedItem<'_>]> =
        items.chunks(PIECE.min(items.len().div_ceil(threads)).max(256)).collect();
    if pieces.len() < 2 || threads < 2 {
        return pieces.into_iter().try_for_each(verify_chunk);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(pieces.len()))
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        match pieces.get(i) {
                            Some(piece) => verify_chunk(piece)?,
                            None => return Ok(()),
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or(Err(SignatureError::Mismatch)))
            .collect::<Result<Vec<()>, _>>()
            .map(drop)
    })
}

/// The indices of the invalid signatures among `items` (empty when all are valid), ascending.
///
/// Checks the whole set as one batch first. When that fails, each core scans its share in
/// pieces of 64: a piece is checked as a batch, and a piece that fails is checked one
/// signature at a time, as is every piece after it until one comes out clean. A set full of bad
/// signatures therefore costs about one batch check plus one single check per signature, never
/// the repeated batch checks of a bisection.
pub fn invalid_signatures(items: &[SignedItem<'_>]) -> Vec<usize> {
    if items.is_empty() || verify_batch(items).is_ok() {
        return Vec::new();
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(8);
    let share = items.len().div_ceil(threads).max(PIECE);
    if items.len() <= share {
        return scan(items, 0);
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(share)
            .enumerate()
            .map(|(i, chunk)| scope.spawn(move || scan(chunk, i * share)))
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    })
}

/// Signatures checked together by [`invalid_signatures`] before it falls back to single checks.
const PIECE: usize = 64;

fn scan(items: &[SignedItem<'_>], offset: usize) -> Vec<usize> {
    let mut invalid = Vec::new();
    let mut one_by_one = false;
    for (n, piece) in items.chunks(PIECE).enumerate() {
        if !one_by_one && verify_batch(piece).is_ok() {
            continue;
        }
        let before = invalid.len();
        for (i, item) in piece.iter().enumerate() {
            if verify(item.key, item.domain, item.bytes, item.signature).is_err() {
                invalid.push(offset + n * PIECE + i);
            }
        }
        one_by_one = invalid.len() > before;
    }
    invalid
}

struct Prepared {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
    k_bytes: [u8; 32],
}

impl Prepared {
    fn new(item: &SignedItem<'_>) -> Result<Self, SignatureError> {
        let (r_half, s_half) = item.signature.0.split_at(32);
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(r_half);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(s_half);
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
            .ok_or(SignatureError::NonCanonicalScalar)?;
        if !canonical_field_element(&r_bytes) {
            return Err(SignatureError::InvalidPoint);
        }
        let r = CompressedEdwardsY(r_bytes).decompress().ok_or(SignatureError::InvalidPoint)?;
        let mut hash = Sha512::new();
        hash.update(r_bytes);
        hash.update(item.key.id().as_bytes());
        hash.update(item.domain.tag().as_bytes());
        hash.update([0u8]);
        hash.update(item.bytes);
        let wide: [u8; 64] = hash.finalize().into();
        let k = Scalar::from_bytes_mod_order_wide(&wide);
        Ok(Self { r, s, k, k_bytes: k.to_bytes() })
    }
}

/// `true` when the y coordinate in `bytes` (sign bit cleared) is below p = 2²⁵⁵ − 19.
fn canonical_field_element(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    // p = 0x7fff…ffed little-endian: ed ff … ff 7f.
    let p_low = 0xed;
    if y[31] != 0x7f || y[1..31].iter().any(|&b| b != 0xff) {
        return true;
    }
    y[0] < p_low
}

fn verify_chunk(items: &[SignedItem<'_>]) -> Result<(), SignatureError> {
    let prepared = items.iter().map(Prepared::new).collect::<Result<Vec<_>, _>>()?;
    // Random 128-bit weights, derived from everything being checked (Fiat–Shamir), so no input
    // can be chosen after the weights are known.
    let mut transcript = Sha512::new();
    transcript.update(b"ash/batch-verify/v1");
    for (item, p) in items.iter().zip(&prepared) {
        transcript.update(p.k_bytes);
        transcript.update(&item.signature.0[32..]);
    }
    let seed: [u8; 64] = transcript.finalize().into();
    let weights: Vec<Scalar> = (0..prepared.len() as u64)
        .map(|i| {
            let mut hash = Sha512::new();
            hash.update(seed);
            hash.update(i.to_le_bytes());
            let wide: [u8; 64] = hash.finalize().into();
            let mut short = [0u8; 32];
            short[..16].copy_from_slice(&wide[..16]);
            Scalar::from_bytes_mod_order(short)
        })
        .collect();
    let b_coefficient: Scalar = prepared.iter().zip(&weights).map(|(p, z)| z * p.s).sum();
    // Signatures by the same key share one point: Σ zᵢkᵢ·A becomes (Σ zᵢkᵢ)·A, which keeps the
    // multi-scalar multiplication close to one point per signature instead of two.
    let mut by_key: Vec<(Scalar, EdwardsPoint)> = Vec::new();
    let mut slot_of: std::collections::HashMap<[u8; 32], usize> = std::collections::HashMap::new();
    for (item, (p, z)) in items.iter().zip(prepared.iter().zip(&weights)) {
        let slot = *slot_of.entry(*item.key.id().as_bytes()).or_insert_with(|| {
            by_key.push((Scalar::ZERO, item.key.point));
            by_key.len() - 1
        });
        by_key[slot].0 += z * p.k;
    }
    let scalars = std::iter::once(-b_coefficient)
        .chain(weights.iter().copied())
        .chain(by_key.iter().map(|(scalar, _)| *scalar));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(prepared.iter().map(|p| p.r))
        .chain(by_key.iter().map(|(_, point)| *point));
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    if sum.mul_by_cofactor().is_identity() { Ok(()) } else { Err(SignatureError::Mismatch) }
}
