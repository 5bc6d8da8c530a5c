//! Who a node is: Ed25519 identities, X25519 sealing keys, key files and the `NodeId`.
//!
//! Owns key generation, the key file format (0600, written by temp file + rename, secrets
//! zeroized in memory), domain-separated signing, and one signature-verification rule for all of
//! ash (cofactored Ed25519, the same for single and batch checks, so a batch verifier and an
//! incremental verifier never disagree). Never touches the network, the ledger's meaning of a
//! signature, or the environment: callers pass paths and bytes in.

mod error;
mod hex;
mod keyfile;
mod keys;
mod node_id;
mod signature;

pub use error::{IdentityError, SignatureError};
pub use hex::{decode_hex, encode_hex};
pub use keyfile::{KEY_FILE_HEADER, load_key_file, write_key_file};
pub use keys::{Identity, SealingKeyCert, SealingPublicKey, SealingSecret};
pub use node_id::{NodeId, PublicKey};
pub use signature::{Domain, Signature, SignedItem, invalid_signatures, verify, verify_batch};
