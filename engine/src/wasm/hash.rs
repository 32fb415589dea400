//! The host side of the `hash` import: SHA-256 in native code for stages
//! granted the `hash` capability.
//!
//! Hashing is the one hot loop where wasm cannot come close to native: the
//! host's `sha2` uses the CPU's SHA instructions, wasm has none, and scalar
//! SHA-256 under Cranelift runs at about a sixth of the speed.
//!
//! The import is linked by hand rather than through the generated bindings,
//! which would copy `data` out of the guest into a `Vec` first: here the
//! host hashes the guest's bytes where they lie in its memory.

use sha2::{Digest, Sha256};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList};

use super::instance::StoreState;

/// The instance the WIT world's `import hash` names.
const INTERFACE: &str = "sluice:transform/hash@0.1.0";

/// Defines `sha256` for every instance `linker` makes.
pub(super) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker
        .instance(INTERFACE)?
        .func_wrap("sha256", |store: StoreContextMut<'_, StoreState>, (data,): (WasmList<u8>,)| {
            Ok((sha256(store, &data),))
        })
}

fn sha256(store: StoreContextMut<'_, StoreState>, data: &WasmList<u8>) -> Result<Vec<u8>, String> {
    if !store.data().hash_granted() {
        return Err("the host's hash is not granted to this stage: add \"hash\" to its capabilities".into());
    }
    Ok(Sha256::digest(data.as_le_slice(store)).to_vec())
}
