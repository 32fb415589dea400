//! Questions about 16 bytes at a time, answered with wasm SIMD in the
//! component and with SSE2 (part of every x86-64) natively, so both builds
//! run the same algorithm: whether a line is ASCII, where the next byte
//! that JSON must escape is, and where the next space or quote is.
//!
//! The searches are for short distances (a log field is a few to a few
//! dozen bytes): one compare of the first 16 bytes usually answers, where
//! `memchr`'s set-up for long haystacks costs more than the search.
//!
//! Besides doing 16 bytes of work per step, a loop over chunks runs a
//! sixteenth of the iterations, and in the component every loop iteration
//! also pays the sandbox's interruption check.

/// True when no byte has its high bit set.
pub fn is_ascii(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(16);
    let any_high = chunks.by_ref().fold(0u16, |seen, chunk| seen | high_bits(chunk));
    any_high == 0 && chunks.remainder().is_ascii()
}

/// One bit per byte of a 16-byte chunk: set for the bytes a JSON string
/// cannot hold as they are (control characters, `"` and `\`).
#[inline]
pub fn escape_bits(chunk: &[u8]) -> u16 {
    imp::escape_bits(chunk)
}

#[inline]
fn high_bits(chunk: &[u8]) -> u16 {
    imp::high_bits(chunk)
}

/// The position of the first `needle` in `bytes`.
#[inline]
pub fn find(bytes: &[u8], needle: u8) -> Option<usize> {
    find_by(bytes, |chunk| imp::eq_bits(chunk, needle), |b| b == needle)
}

/// The position of the first `a` or `b` in `bytes`.
#[inline]
pub fn find2(bytes: &[u8], a: u8, b: u8) -> Option<usize> {
    find_by(bytes, |chunk| imp::eq_bits(chunk, a) | imp::eq_bits(chunk, b), |x| x == a || x == b)
}

#[inline(always)]
fn find_by(bytes: &[u8], bits_of: impl Fn(&[u8]) -> u16, is_match: impl Fn(u8) -> bool) -> Option<usize> {
    if bytes.len() < 16 {
        return bytes.iter().position(|&b| is_match(b));
    }
    // The first chunk usually answers; looking at it before the loop
    // spares the component the sandbox's check at the loop's head.
    let bits = bits_of(&bytes[..16]);
    if bits != 0 {
        return Some(bits.trailing_zeros() as usize);
    }
    let mut at = 16;
    while at + 16 <= bytes.len() {
        let bits = bits_of(&bytes[at..at + 16]);
        if bits != 0 {
            return Some(at + bits.trailing_zeros() as usize);
        }
        at += 16;
    }
    if at == bytes.len() {
        return None;
    }
    // The last, partial chunk: read the final 16 bytes instead, leaving
    // out those before `at`, which were searched already.
    let start = bytes.len() - 16;
    let bits = u32::from(bits_of(&bytes[start..])) >> (at - start);
    (bits != 0).then(|| at + bits.trailing_zeros() as usize)
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::{u8x16_bitmask, u8x16_eq, u8x16_lt, u8x16_splat, v128, v128_load, v128_or};

    #[inline]
    fn load(chunk: &[u8]) -> v128 {
        assert!(chunk.len() >= 16);
        // SAFETY: `chunk` holds 16 readable bytes; wasm loads need no alignment.
        unsafe { v128_load(chunk.as_ptr().cast::<v128>()) }
    }

    #[inline]
    pub fn high_bits(chunk: &[u8]) -> u16 {
        u8x16_bitmask(load(chunk))
    }

    #[inline]
    pub fn eq_bits(chunk: &[u8], needle: u8) -> u16 {
        u8x16_bitmask(u8x16_eq(load(chunk), u8x16_splat(needle)))
    }

    #[inline]
    pub fn escape_bits(chunk: &[u8]) -> u16 {
        let v = load(chunk);
        let control = u8x16_lt(v, u8x16_splat(0x20));
        let quote = u8x16_eq(v, u8x16_splat(b'"'));
        let backslash = u8x16_eq(v, u8x16_splat(b'\\'));
        u8x16_bitmask(v128_or(control, v128_or(quote, backslash)))
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    #[inline]
    fn load(chunk: &[u8]) -> __m128i {
        assert!(chunk.len() >= 16);
        // SAFETY: SSE2 is part of x86-64; `chunk` holds 16 readable bytes
        // and the load is unaligned.
        unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) }
    }

    #[inline]
    pub fn high_bits(chunk: &[u8]) -> u16 {
        // SAFETY: SSE2 is part of x86-64.
        unsafe { _mm_movemask_epi8(load(chunk)) as u16 }
    }

    #[inline]
    pub fn eq_bits(chunk: &[u8], needle: u8) -> u16 {
        // SAFETY: SSE2 is part of x86-64.
        unsafe { _mm_movemask_epi8(_mm_cmpeq_epi8(load(chunk), _mm_set1_epi8(needle as i8))) as u16 }
    }

    #[inline]
    pub fn escape_bits(chunk: &[u8]) -> u16 {
        let v = load(chunk);
        // SAFETY: SSE2 is part of x86-64.
        unsafe {
            // SSE2 compares bytes as signed; `min(v, 0x1f) == v` is the
            // unsigned `v < 0x20`.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(control, _mm_or_si128(quote, backslash))) as u16
        }
    }
}

#[cfg(not(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64")))]
mod imp {
    pub fn high_bits(chunk: &[u8]) -> u16 {
        bits(chunk, |b| b >= 0x80)
    }

    pub fn escape_bits(chunk: &[u8]) -> u16 {
        bits(chunk, |b| b < 0x20 || b == b'"' || b == b'\\')
    }

    pub fn eq_bits(chunk: &[u8], needle: u8) -> u16 {
        bits(chunk, |b| b == needle)
    }

    fn bits(chunk: &[u8], test: impl Fn(u8) -> bool) -> u16 {
        chunk[..16].iter().enumerate().fold(0, |bits, (i, &b)| bits | (u16::from(test(b)) << i))
    }
}

#[cfg(test)]
mod tests {
    use super::{escape_bits, find, find2, is_ascii};

    #[test]
    fn finds_the_first_match_at_every_position_of_every_length() {
        for len in 0..50 {
            let plain = vec![b'a'; len];
            assert_eq!(find(&plain, b' '), None, "{len}");
            assert_eq!(find2(&plain, b'"', b'\\'), None, "{len}");
            for at in 0..len {
                let mut bytes = plain.clone();
                bytes[at] = b' ';
                // A second match later must not be the answer.
                if at + 3 < len {
                    bytes[at + 3] = b' ';
                }
                assert_eq!(find(&bytes, b' '), Some(at), "space at {at} of {len}");
                for needle in [b'"', b'\\'] {
                    let mut bytes = plain.clone();
                    bytes[at] = needle;
                    assert_eq!(find2(&bytes, b'"', b'\\'), Some(at), "{needle} at {at} of {len}");
                }
            }
        }
    }

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

    #[test]
    fn marks_exactly_the_bytes_json_escapes() {
        for b in 0..=255u8 {
            let expected = b < 0x20 || b == b'"' || b == b'\\';
            for at in 0..16 {
                let mut chunk = [b'a'; 16];
                chunk[at] = b;
                let want = if expected { 1 << at } else { 0 };
                assert_eq!(escape_bits(&chunk), want, "byte {b:#04x} at {at}");
            }
        }
    }
}
