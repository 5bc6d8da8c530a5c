//! An identity's secrets (Ed25519 signing key, X25519 sealing key) and their public halves.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::Signer as _;
use zeroize::Zeroizing;

use crate::error::{IdentityError, SignatureError};
use crate::hex::{decode_hex, encode_hex};
use crate::keyfile::{KEY_FILE_HEADER, load_key_file, write_key_file};
use crate::node_id::{NodeId, PublicKey};
use crate::signature::{Domain, Signature, verify};

/// A node's secret keys. Secrets are zeroized when dropped and never printed.
pub struct Identity {
    signing: ed25519_dalek::SigningKey,
    sealing: SealingSecret,
    public: PublicKey,
}

impl Identity {
    /// A new identity from the operating system's random source.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        let mut sealing = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice())
            .and_then(|()| getrandom::fill(sealing.as_mut_slice()))
            .map_err(|e| IdentityError::Random(e.to_string()))?;
        Self::from_secrets(&seed, &sealing)
    }

    /// The identity with these secret bytes (an Ed25519 seed and an X25519 secret).
    pub fn from_secrets(ed25519_seed: &[u8; 32], x25519: &[u8; 32]) -> Result<Self, IdentityError> {
        let signing = ed25519_dalek::SigningKey::from_bytes(ed25519_seed);
        let public = NodeId::from_bytes(signing.verifying_key().to_bytes()).public_key()?;
        Ok(Self {
            signing,
            sealing: SealingSecret(x25519_dalek::StaticSecret::from(*x25519)),
            public,
        })
    }

    /// A deterministic identity derived from `label`, for tests and benchmarks only: anyone who
    /// knows the label knows the secrets.
    pub fn insecure_from_label(label: &str) -> Self {
        use sha2::{Digest as _, Sha256};
        let derive = |purpose: &str| -> [u8; 32] {
            Sha256::digest(format!("ash insecure test identity/{purpose}/{label}")).into()
        };
        let signing = ed25519_dalek::SigningKey::from_bytes(&derive("ed25519"));
        let id = NodeId::from_bytes(signing.verifying_key().to_bytes());
        // An Ed25519 key derived from a seed is never weak, so this check cannot fail.
        match id.public_key() {
            Ok(public) => Self {
                signing,
                sealing: SealingSecret(x25519_dalek::StaticSecret::from(derive("x25519"))),
                public,
            },
            Err(_) => unreachable!("seed-derived Ed25519 keys are valid"),
        }
    }

    /// The public id.
    pub const fn node_id(&self) -> NodeId {
        self.public.id()
    }

    /// The checked public key.
    pub const fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The Ed25519 seed, for the one transport that authenticates with this same key: the
    /// peer-to-peer network's Noise handshake (`ash-net` makes its libp2p key from it, so that a
    /// peer id *is* a node id). Nothing else may take the secret out.
    pub fn transport_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// Signs `bytes` for `domain`.
    pub fn sign(&self, domain: Domain, bytes: &[u8]) -> Signature {
        Signature(self.signing.sign(&domain.message(bytes)).to_bytes())
    }

    /// The X25519 key others seal packages to.
    pub fn sealing_public(&self) -> SealingPublicKey {
        SealingPublicKey(x25519_dalek::PublicKey::from(&self.sealing.0).to_bytes())
    }

    /// The X25519 secret that opens packages sealed to this identity.
    pub const fn sealing_secret(&self) -> &SealingSecret {
        &self.sealing
    }

    /// The sealing key with this identity's signature over it.
    pub fn sealing_cert(&self) -> SealingKeyCert {
        let key = self.sealing_public();
        let signature =
            self.sign(Domain::SealingKey, &SealingKeyCert::signed_bytes(self.node_id(), key));
        SealingKeyCert { node: self.node_id(), key, signature }
    }

    /// Writes the secrets to `path` (mode 0600, parent 0700, atomically).
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let seed = Zeroizing::new(encode_hex(self.signing.as_bytes()));
        let sealing = Zeroizing::new(encode_hex(self.sealing.0.as_bytes()));
        let text = Zeroizing::new(format!(
            "{KEY_FILE_HEADER}\n# ash identity {} — secret, keep mode 0600\ned25519 {}\nx25519 {}\n",
            self.node_id(),
            seed.as_str(),
            sealing.as_str()
        ));
        write_key_file(path, &text)
    }

    /// Reads secrets written by [`Identity::save`].
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text = load_key_file(path)?;
        let bad = |line: usize, message: &str| IdentityError::KeyFile {
            path: path.to_owned(),
            line,
            message: message.to_owned(),
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        match lines.next() {
            Some((_, KEY_FILE_HEADER)) => {}
            Some((n, _)) => return Err(bad(n, &format!("expected `{KEY_FILE_HEADER}`"))),
            None => return Err(bad(0, "the file is empty")),
        }
        let mut seed: Option<Zeroizing<[u8; 32]>> = None;
        let mut sealing: Option<Zeroizing<[u8; 32]>> = None;
        for (n, line) in lines {
            let (name, value) = line.split_once(' ').unwrap_or((line, ""));
            let slot = match name {
                "ed25519" => &mut seed,
                "x25519" => &mut sealing,
                _ => return Err(bad(n, &format!("unknown key `{name}`"))),
            };
            if slot.is_some() {
                return Err(bad(n, &format!("`{name}` appears twice")));
            }
            let bytes = decode_hex::<32>(value.trim())
                .ok_or_else(|| bad(n, &format!("`{name}` needs 64 hex digits")))?;
            *slot = Some(Zeroizing::new(bytes));
        }
        let seed = seed.ok_or_else(|| bad(0, "no `ed25519` line"))?;
        let sealing = sealing.ok_or_else(|| bad(0, "no `x25519` line"))?;
        Self::from_secrets(&seed, &sealing)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("node_id", &self.node_id()).finish_non_exhaustive()
    }
}

/// The X25519 secret half of a sealing key; zeroized on drop, never printed.
pub struct SealingSecret(x25519_dalek::StaticSecret);

impl SealingSecret {
    /// The secret bytes, for an HPKE implementation to open with.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }
}

impl fmt::Debug for SealingSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingSecret(..)")
    }
}

/// An X25519 public key that packages are sealed to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealingPublicKey(pub [u8; 32]);

impl fmt::Display for SealingPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_hex(&self.0))
    }
}

impl fmt::Debug for SealingPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingPublicKey({})", encode_hex(&self.0[..6]))
    }
}

/// A sealing key signed by the identity it belongs to.
///
/// Text form (one line): `ash-sealing-key-v1 <node id hex> <x25519 key hex> <signature hex>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealingKeyCert {
    /// The identity.
    pub node: NodeId,
    /// Its sealing key.
    pub key: SealingPublicKey,
    /// The identity's signature over `node || key` in domain [`Domain::SealingKey`].
    pub signature: Signature,
}

impl SealingKeyCert {
    const PREFIX: &'static str = "ash-sealing-key-v1";

    /// The bytes signed: `node id (32) || sealing key (32)`.
    pub fn signed_bytes(node: NodeId, key: SealingPublicKey) -> [u8; 64] {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(node.as_bytes());
        bytes[32..].copy_from_slice(&key.0);
        bytes
    }

    /// Checks the identity's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        let key = self.node.public_key().map_err(|_| SignatureError::InvalidPoint)?;
        verify(&key, Domain::SealingKey, &Self::signed_bytes(self.node, self.key), &self.signature)
    }
}

impl fmt::Display for SealingKeyCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {}", Self::PREFIX, self.node, self.key, encode_hex(&self.signature.0))
    }
}

impl FromStr for SealingKeyCert {
    type Err = IdentityError;

    /// Parses the text form and checks the signature.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid =
            |reason| IdentityError::NodeId { input: text.chars().take(80).collect(), reason };
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [prefix, node, key, signature] = parts.as_slice() else {
            return Err(invalid("a sealing key is `ash-sealing-key-v1 NODE KEY SIGNATURE`"));
        };
        if *prefix != Self::PREFIX {
            return Err(invalid("a sealing key starts with `ash-sealing-key-v1`"));
        }
        let cert = Self {
            node: node.parse()?,
            key: SealingPublicKey(
                decode_hex(key).ok_or_else(|| invalid("the key needs 64 hex digits"))?,
            ),
            signature: Signature(
                decode_hex(signature)
                    .ok_or_else(|| invalid("the signature needs 128 hex digits"))?,
            ),
        };
        cert.verify().map_err(|_| invalid("the signature does not match the node id"))?;
        Ok(cert)
    }
}
