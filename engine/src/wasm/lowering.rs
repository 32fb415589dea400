//! Lowers a call's records into the guest's memory straight from the
//! [`Record`]s.
//!
//! Wasmtime lowers a `list<u8>` from a host buffer, so a batch of records
//! used to be copied twice on its way in: once into a packed buffer, once
//! from it into the guest. Here the batch's word tables are laid out on the
//! host as before (`abi::pack_words`), and its bytes are written into the
//! buffer the guest allocates for them, from the records themselves. For a
//! stage of images that is one copy of every image fewer.
//!
//! `ComponentType` and `Lower` are traits Wasmtime marks as its own detail
//! (their items are hidden from its docs): `RecordBytes` lowers exactly as
//! Wasmtime 48 lowers a list of bytes, and an upgrade must re-check that.

use std::mem::MaybeUninit;

use wasmtime::ValRaw;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext};
use wasmtime::component::{ComponentType, Func, Lower, TypedFunc};

use super::abi;
use super::bindings::BatchOutput;
use crate::record::Record;

/// The guest's `process` export, called with a batch of records.
pub(super) type Process<'a> = TypedFunc<(RecordsBatch<'a>,), (BatchOutput,)>;

/// A `batch` of `transform.wit` whose bytes are still in its records.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(super) struct RecordsBatch<'a> {
    data: RecordBytes<'a>,
    records: &'a [u32],
    timestamps: &'a [i64],
    headers: &'a [u32],
}

impl<'a> RecordsBatch<'a> {
    /// `records`, whose word tables `abi::pack_words` laid out in `tables`
    /// (with `data_len` bytes of data).
    pub(super) fn new(records: &'a [Record], tables: &'a super::bindings::Batch, data_len: usize) -> Self {
        RecordsBatch {
            data: RecordBytes { records, len: data_len },
            records: &tables.records,
            timestamps: &tables.timestamps,
            headers: &tables.headers,
        }
    }
}

/// `process`, checked against the batch type above.
pub(super) fn process<'a>(func: Func, store: impl wasmtime::AsContext) -> wasmtime::Result<Process<'a>> {
    func.typed(store)
}

/// The `data` of a batch: the keys, values and headers of its records, in
/// the order `abi::pack_words` gave them their offsets.
pub(super) struct RecordBytes<'a> {
    records: &'a [Record],
    len: usize,
}

impl RecordBytes<'_> {
    /// Allocates the buffer in the guest and writes the bytes into it.
    fn store<T: 'static>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<usize> {
        let ptr = cx.realloc(0, 0, 1, self.len)?;
        let buffer = cx
            .as_slice_mut()
            .get_mut(ptr..ptr + self.len)
            .ok_or_else(|| wasmtime::format_err!("the guest allocated a buffer outside its memory"))?;
        abi::write_data(self.records, buffer);
        Ok(ptr)
    }
}

// SAFETY: lowered exactly as a `list<u8>` is (`Lower` is two `ValRaw`s,
// pointer and length, and the canonical ABI's pointer pair in memory),
// and typechecked as one.
unsafe impl ComponentType for RecordBytes<'_> {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[u8] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: see `ComponentType` above.
unsafe impl Lower for RecordBytes<'_> {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 2]>,
    ) -> wasmtime::Result<()> {
        let ptr = self.store(cx)?;
        // Pointers are written as 64-bit values whatever the memory's
        // width, as Wasmtime's own lowering of lists does.
        dst.write([ValRaw::i64(ptr as i64), ValRaw::i64(self.len as i64)]);
        Ok(())
    }

    // Not reached by `process`, whose batch is passed flat (8 core values,
    // under the canonical ABI's 16); the trait requires it, and it stores
    // the pointer pair as Wasmtime stores a list's.
    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let ptr = self.store(cx)?;
        *cx.get::<4>(offset) = u32::try_from(ptr)?.to_le_bytes();
        *cx.get::<4>(offset + 4) = u32::try_from(self.len)?.to_le_bytes();
        Ok(())
    }
}
