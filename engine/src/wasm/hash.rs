//! The host side of the `hash` import: SHA-256 in native code for stages
//! granted the `hash` capability.
//!
//! Hashing is the one hot loop where wasm cannot come close to native: the
//! host's `sha2` uses the CPU's SHA instructions, wasm has none, and scalar
//! SHA-256 under Cranelift runs at about a sixth of the speed. Copying the
//! data out of the guest costs a memcpy, far less than the hash.

use sha2::{Digest, Sha256};

use super::bindings::sluice::transform::hash::Host;
use super::instance::StoreState;

impl Host for StoreState {
    fn sha256(&mut self, data: Vec<u8>) -> Result<Vec<u8>, String> {
        if !self.hash_granted() {
            return Err(
                "the host's hash is not granted to this stage: add \"hash\" to its capabilities".into()
            );
        }
        Ok(Sha256::digest(&data).to_vec())
    }
}
