//! A node id is an Ed25519 public key; a libp2p peer id is (for such keys) the same key in an
//! identity multihash. These turn one into the other, exactly.

use ash_identity::NodeId;
use libp2p::PeerId;
use libp2p::identity::{self, ed25519};

/// The peer id of `node`, or `None` if its bytes are not an Ed25519 key.
pub(crate) fn peer_of(node: NodeId) -> Option<PeerId> {
    let key = ed25519::PublicKey::try_from_bytes(node.as_bytes()).ok()?;
    Some(PeerId::from_public_key(&identity::PublicKey::from(key)))
}

/// The node id inside `peer`, or `None` if it is not an inlined Ed25519 key.
pub(crate) fn node_of(peer: &PeerId) -> Option<NodeId> {
    let hash = peer.as_ref();
    // 0x00: the identity multihash, which inlines the protobuf-encoded public key.
    if hash.code() != 0 {
        return None;
    }
    let key = identity::PublicKey::try_decode_protobuf(hash.digest()).ok()?;
    Some(NodeId::from_bytes(key.try_into_ed25519().ok()?.to_bytes()))
}

/// The libp2p keypair of an identity's transport secret.
pub(crate) fn keypair(secret: &mut [u8; 32]) -> Option<identity::Keypair> {
    let secret = ed25519::SecretKey::try_from_bytes(secret).ok()?;
    Some(identity::Keypair::from(ed25519::Keypair::from(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_and_peer_ids_are_one() {
        let me = ash_identity::Identity::insecure_from_label("peer id");
        let mut secret = *me.transport_secret();
        let pair = keypair(&mut secret).expect("a valid seed");
        let peer = pair.public().to_peer_id();
        assert_eq!(peer_of(me.node_id()), Some(peer));
        assert_eq!(node_of(&peer), Some(me.node_id()));
        // A peer id that hashes its key (not Ed25519) has no node id.
        assert_eq!(node_of(&PeerId::random()), None);
    }
}
