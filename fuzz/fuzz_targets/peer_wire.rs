//! Bodies of the peer protocol as a peer or an index receives them: decoding never panics, and a
//! resource that claims to be consistent has a chunk list that matches its size.
#![no_main]

use hostrole_proto::peer::{Catalog, Found, Registration, valid_address, valid_hash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(registration) = serde_json::from_slice::<Registration>(body) {
        let _ = valid_address(&registration.address);
        for resource in &registration.resources {
            if resource.consistent() {
                assert!(valid_hash(&resource.hash));
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
});
