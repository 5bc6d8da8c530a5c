//! `NodeId`: the public half of an identity, as bytes and as text.

use std::fmt;
use std::str::FromStr;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};

use crate::error::IdentityError;
use crate::hex::{decode_hex, encode_hex};

/// A node's identity: its 32-byte Ed25519 public key.
///
/// The full text form is 64 lowercase hex digits (the seed's "pubkey"); [`NodeId::short`] gives
/// the first 12 for people. Parsing text checks that the key is a usable Ed25519 key; building
/// from bytes does not (the ledger checks when it verifies a signature).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId([u8; 32]);

impl NodeId {
    /// Number of hex digits in [`NodeId::short`].
    pub const SHORT_LEN: usize = 12;

    /// Wraps raw key bytes without checking them.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first [`NodeId::SHORT_LEN`] hex digits, for display to people.
    pub fn short(&self) -> String {
        let mut text = encode_hex(&self.0[..Self::SHORT_LEN / 2]);
        text.truncate(Self::SHORT_LEN);
        text
    }

    /// Checks the key and prepares it for verification.
    pub fn public_key(&self) -> Result<PublicKey, IdentityError> {
        PublicKey::new(*self)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_hex(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let bytes = decode_hex::<32>(trimmed).ok_or_else(|| IdentityError::NodeId {
            input: trimmed.chars().take(80).collect(),
            reason: "expected 64 hex digits",
        })?;
        let id = Self(bytes);
        id.public_key()?;
        Ok(id)
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A checked Ed25519 public key: canonical encoding, on the curve, not of small order.
#[derive(Clone, Copy, Debug)]
pub struct PublicKey {
    id: NodeId,
    pub(crate) point: EdwardsPoint,
}

impl PublicKey {
    fn new(id: NodeId) -> Result<Self, IdentityError> {
        let invalid = |reason| IdentityError::NodeId { input: id.to_string(), reason };
        let point = CompressedEdwardsY(id.0)
            .decompress()
            .ok_or_else(|| invalid("not a point on Ed25519"))?;
        if point.compress().0 != id.0 {
            return Err(invalid("not a canonical Ed25519 encoding"));
        }
        if point.is_small_order() {
            return Err(invalid("a weak (small-order) Ed25519 key"));
        }
        Ok(Self { id, point })
    }

    /// The id this key belongs to.
    pub const fn id(&self) -> NodeId {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_and_hostile_ids() {
        // The Ed25519 base point: a valid key.
        let text = "5866666666666666666666666666666666666666666666666666666666666666";
        let id: NodeId = text.parse().unwrap();
        assert_eq!((id.to_string().as_str(), id.short().as_str()), (text, "586666666666"));
        let cases = [
            ("", "expected 64 hex digits"),
            ("58666666", "expected 64 hex digits"),
            (&"zz".repeat(32), "expected 64 hex digits"),
            // The identity point: small order.
            (
                "0100000000000000000000000000000000000000000000000000000000000000",
                "a weak (small-order) Ed25519 key",
            ),
            // y = p (non-canonical encoding of 0); decompresses to a small-order point.
            (
                "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
                "not a canonical Ed25519 encoding",
            ),
            // y = 2 is not on the curve.
            (
                "0200000000000000000000000000000000000000000000000000000000000000",
                "not a point on Ed25519",
            ),
        ];
        for (input, reason) in cases {
            match input.parse::<NodeId>() {
                Err(IdentityError::NodeId { reason: got, .. }) => {
                    assert_eq!(got, reason, "{input}")
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }
}
