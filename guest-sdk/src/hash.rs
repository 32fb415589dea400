//! Hashing for transforms: SHA-256 done by the host when the stage grants
//! the `hash` capability, by this crate (in wasm) when it does not.
//!
//! ```ignore
//! let digest: [u8; 32] = sluice_guest::hash::sha256(record.value());
//! ```
//!
//! The host's hash runs natively, with the CPU's SHA instructions where
//! there are any: on images, about six times the speed of the same hash
//! compiled to wasm. The result is the same either way, so a transform
//! works with or without the grant; the grant only makes it faster.

use sha2::{Digest, Sha256};

/// The SHA-256 digest of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    imp::host_sha256(data).unwrap_or_else(|| Sha256::digest(data).into())
}

/// Whether the host hashes for this instance (the stage granted `hash`).
pub fn host_granted() -> bool {
    imp::host_sha256(b"").is_some()
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::bindings::sluice::transform::hash;

    /// Cleared when the host refuses (no grant), so later calls skip it.
    static HOST_GRANTED: AtomicBool = AtomicBool::new(true);

    pub fn host_sha256(data: &[u8]) -> Option<[u8; 32]> {
        if !HOST_GRANTED.load(Ordering::Relaxed) {
            return None;
        }
        match hash::sha256(data) {
            Ok(digest) => digest.try_into().ok(),
            Err(_) => {
                HOST_GRANTED.store(false, Ordering::Relaxed);
                None
            }
        }
    }
}

/// Native builds (tests, benchmarks) hash in this process.
#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub fn host_sha256(_data: &[u8]) -> Option<[u8; 32]> {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_match_the_reference() {
        let digest = super::sha256(b"abc");
        assert_eq!(
            digest[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "SHA-256(\"abc\") starts ba7816bf (FIPS 180-2 example)"
        );
    }
}
