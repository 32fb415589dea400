//! Whether bytes are all ASCII, 16 at a time: with wasm SIMD in the
//! component, with SSE2 (part of every x86-64) natively, so both builds
//! run the same algorithm.

/// True when no byte has its high bit set.
pub fn is_ascii(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(16);
    let any_high = chunks.by_ref().fold(0u16, |seen, chunk| seen | high_bits(chunk));
    any_high == 0 && chunks.remainder().is_ascii()
}

/// One bit per byte of a 16-byte chunk: its high bit.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn high_bits(chunk: &[u8]) -> u16 {
    use core::arch::wasm32::{u8x16_bitmask, v128, v128_load};
    debug_assert_eq!(chunk.len(), 16);
    // SAFETY: `chunk` holds 16 readable bytes; wasm loads need no alignment.
    let v = unsafe { v128_load(chunk.as_ptr().cast::<v128>()) };
    u8x16_bitmask(v)
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn high_bits(chunk: &[u8]) -> u16 {
    use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8};
    debug_assert_eq!(chunk.len(), 16);
    // SAFETY: SSE2 is part of x86-64; `chunk` holds 16 readable bytes and
    // the load is unaligned.
    unsafe { _mm_movemask_epi8(_mm_loadu_si128(chunk.as_ptr().cast::<__m128i>())) as u16 }
}

#[cfg(not(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64")))]
#[inline]
fn high_bits(chunk: &[u8]) -> u16 {
    u16::from(!chunk.is_ascii())
}

#[cfg(test)]
mod tests {
    use super::is_ascii;

    #[test]
    fn finds_a_high_byte_at_every_position_of_every_length() {
        for len in 0..40 {
            let ascii = vec![b'a'; len];
            assert!(is_ascii(&ascii), "{len}");
            for at in 0..len {
                let mut bytes = ascii.clone();
                bytes[at] = 0xc3;
                assert!(!is_ascii(&bytes), "high byte at {at} of {len}");
            }
        }
    }
}
