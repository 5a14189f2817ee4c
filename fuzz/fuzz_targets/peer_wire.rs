//! What a peer or an index receives from the network: the JSON bodies of the peer protocol and
//! the signed envelope's headers (`Authorization: HostRole-Ed25519 …`, `X-Hostrole-Reply`).
//! Decoding never panics; a resource that claims to be consistent has a chunk list that matches
//! its size and the protocol's chunk size; a header that parses writes back to one that parses
//! to the same value, and its peer id names a key.
#![no_main]

use hostrole_proto::envelope::{ReplyAuth, RequestAuth, key_of_peer_id};
use hostrole_proto::peer::{
    CHUNK_SIZE, Catalog, Found, Registration, valid_address, valid_hash, valid_resource_name,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(registration) = serde_json::from_slice::<Registration>(body) {
        if valid_address(&registration.address) {
            assert!(!registration.address.contains(['/', '?', '#', '@', ' ']));
        }
        for resource in &registration.resources {
            if resource.consistent() {
                assert!(valid_hash(&resource.hash));
                assert!(valid_resource_name(&resource.name));
                assert_eq!(resource.chunk_size, CHUNK_SIZE);
                let chunks = resource.chunks.len() as u64;
                assert_eq!(chunks, resource.size.div_ceil(resource.chunk_size));
                if chunks > 0 {
                    assert!(resource.chunk_len(chunks - 1) <= resource.chunk_size);
                }
            }
        }
    }
    let _ = serde_json::from_slice::<Catalog>(body);
    let _ = serde_json::from_slice::<Vec<Found>>(body);
    if let Ok(text) = std::str::from_utf8(body) {
        if let Ok(auth) = RequestAuth::parse(text) {
            assert!(key_of_peer_id(&auth.peer).is_some());
            assert_eq!(RequestAuth::parse(&auth.header()), Ok(auth));
        }
        if let Ok(reply) = ReplyAuth::parse(text) {
            assert_eq!(reply.peer.is_some(), reply.sig.is_some());
            assert_eq!(ReplyAuth::parse(&reply.header()), Ok(reply));
        }
    }
});
