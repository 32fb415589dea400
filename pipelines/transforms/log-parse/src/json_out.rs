//! Writes an [`Event`] as an Elastic Common Schema JSON document, or the
//! document for a line that failed to parse.
//!
//! Written by hand, straight into the output buffer: the fields are known,
//! serde_json would need an intermediate value or derived structs with
//! `Option`s at every level, and this is the hot path.

use std::net::Ipv6Addr;

use sluice_guest::{Error, Sink};

use crate::chunk16;
use crate::event::{Escaping, Event, split_url};
use crate::time::Timestamp;

/// Writes the ECS document for `event`. Absent fields are left out, and so
/// are objects that would be empty.
pub fn write_event(event: &Event<'_>, out: &mut impl Sink) {
    let esc = event.escaping;
    out.put(b"{\"@timestamp\":\"");
    write_timestamp(&event.timestamp, out);
    out.put_byte(b'"');
    let client_key: &[u8] =
        if is_ip(&event.client) { b",\"client\":{\"ip\":" } else { b",\"client\":{\"domain\":" };
    write_wrapped(client_key, Some(&event.client), esc, out);
    write_wrapped(b",\"user\":{\"name\":", event.user_name.as_deref(), esc, out);
    write_http(event, out);
    if let Some(url) = &event.url {
        write_url(url, esc, out);
    }
    let agent = event.user_agent.as_deref();
    write_wrapped(b",\"user_agent\":{\"original\":", agent, esc, out);
    if let Some(nanos) = event.duration_nanos {
        out.put(b",\"event\":{\"duration\":");
        write_u64(nanos, out);
        out.put_byte(b'}');
    }
    let session = event.session_id.as_deref();
    write_wrapped(b",\"labels\":{\"session_id\":", session, esc, out);
    out.put_byte(b'}');
}

/// `,"http":{…}`: always present, since the status code always is.
fn write_http(event: &Event<'_>, out: &mut impl Sink) {
    let esc = event.escaping;
    out.put(b",\"http\":{");
    if event.method.is_some() || event.referrer.is_some() {
        out.put(b"\"request\":");
        let mut request = Object::open(out);
        request.str_field(out, "method", event.method.as_deref(), esc);
        request.str_field(out, "referrer", event.referrer.as_deref(), esc);
        request.close(out);
        out.put_byte(b',');
    }
    if let Some(version) = &event.http_version {
        out.put(b"\"version\":");
        write_str(version, esc, out);
        out.put_byte(b',');
    }
    out.put(b"\"response\":{\"status_code\":");
    write_u64(event.status.into(), out);
    if let Some(bytes) = event.body_bytes {
        out.put(b",\"body\":{\"bytes\":");
        write_u64(bytes, out);
        out.put_byte(b'}');
    }
    out.put(b"}}");
}

/// `,"url":{"original":…,"path":…,"query":…}`.
fn write_url(url: &str, esc: Escaping, out: &mut impl Sink) {
    let (path, query) = split_url(url);
    out.put(b",\"url\":");
    let mut object = Object::open(out);
    object.str_field(out, "original", Some(url), esc);
    object.str_field(out, "path", Some(path), esc);
    object.str_field(out, "query", query, esc);
    object.close(out);
}

/// Writes `prefix`, the string and a closing `}`, if the string is present:
/// for the objects that hold a single string.
fn write_wrapped(prefix: &[u8], text: Option<&str>, esc: Escaping, out: &mut impl Sink) {
    if let Some(text) = text {
        out.put(prefix);
        write_str(text, esc, out);
        out.put_byte(b'}');
    }
}

/// Writes the `on_parse_failure = "tag"` document:
/// `{"event":{"original":…},"tags":["_parse_failure"],"error":{"type":…,"message":…}}`.
/// `original` is decoded lossily (invalid UTF-8 becomes U+FFFD) and cut at
/// `max_original` bytes, so a huge line does not become a huge document.
pub fn write_failure(original: &[u8], max_original: usize, error: &Error, out: &mut impl Sink) {
    let original = &original[..original.len().min(max_original)];
    out.put(b"{\"event\":{\"original\":\"");
    for chunk in original.utf8_chunks() {
        write_str_contents(chunk.valid().as_bytes(), Escaping::None, out);
        if !chunk.invalid().is_empty() {
            out.put("\u{FFFD}".as_bytes());
        }
    }
    out.put(b"\"},\"tags\":[\"_parse_failure\"],\"error\":{\"type\":");
    write_str(error.kind(), Escaping::None, out);
    out.put(b",\"message\":");
    write_str(error.message(), Escaping::None, out);
    out.put(b"}}");
}

/// Writes comma-separated fields of one JSON object.
struct Object {
    empty: bool,
}

impl Object {
    fn open(out: &mut impl Sink) -> Object {
        out.put_byte(b'{');
        Object { empty: true }
    }

    /// Writes `"key":"value"` if `value` is present.
    fn str_field(&mut self, out: &mut impl Sink, key: &str, value: Option<&str>, esc: Escaping) {
        let Some(value) = value else { return };
        if !self.empty {
            out.put_byte(b',');
        }
        self.empty = false;
        out.put_byte(b'"');
        out.put(key.as_bytes());
        out.put(b"\":");
        write_str(value, esc, out);
    }

    fn close(self, out: &mut impl Sink) {
        out.put_byte(b'}');
    }
}

/// `client.ip` only holds IP addresses; anything else (a host name) goes to
/// `client.domain`, or an ECS consumer would reject the document.
fn is_ip(address: &str) -> bool {
    // IPv4 first: it is the common case, and fails at the first byte that
    // is neither a digit nor a dot, without scanning for a `:`.
    is_ipv4(address.as_bytes()) || (address.contains(':') && address.parse::<Ipv6Addr>().is_ok())
}

/// Whether `address` is a dotted-quad IPv4 address, as `Ipv4Addr`'s parser
/// accepts them (four decimal octets up to 255, no leading zeros), without
/// its generic machinery: in the component, the std parser was a twentieth
/// of a line's time. No loop runs over the bytes: in the component, each
/// turn of a loop pays the sandbox's interruption check.
fn is_ipv4(address: &[u8]) -> bool {
    let Some(mut at) = octet_end(address, 0) else { return false };
    for _ in 0..3 {
        if address.get(at) != Some(&b'.') {
            return false;
        }
        match octet_end(address, at + 1) {
            Some(end) => at = end,
            None => return false,
        }
    }
    at == address.len()
}

/// Where the decimal octet (0 to 255, no leading zero) starting at `start`
/// ends.
#[inline(always)]
fn octet_end(address: &[u8], start: usize) -> Option<usize> {
    let digit = |at: usize| address.get(at).filter(|b| b.is_ascii_digit()).map(|b| u32::from(b - b'0'));
    let first = digit(start)?;
    let Some(second) = digit(start + 1) else { return Some(start + 1) };
    if first == 0 {
        return None;
    }
    let Some(third) = digit(start + 2) else { return Some(start + 2) };
    if digit(start + 3).is_some() || first * 100 + second * 10 + third > 255 {
        return None;
    }
    Some(start + 3)
}

fn write_timestamp(timestamp: &Timestamp, out: &mut impl Sink) {
    let mut buf = [0; Timestamp::MAX_LEN];
    let len = timestamp.write_rfc3339(&mut buf);
    out.put(&buf[..len]);
}

fn write_u64(value: u64, out: &mut impl Sink) {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    // Dividing a u64 by 10 is a 128-bit multiply on wasm32, a library call,
    // so only the digits above u32 range use it; nearly every number here
    // (status, sizes, durations) has none.
    let mut high = value;
    while high > u64::from(u32::MAX) {
        start -= 1;
        buf[start] = b'0' + (high % 10) as u8;
        high /= 10;
    }
    let mut low = high as u32;
    loop {
        start -= 1;
        buf[start] = b'0' + (low % 10) as u8;
        low /= 10;
        if low == 0 {
            break;
        }
    }
    out.put(&buf[start..]);
}

/// Writes `text` as a quoted JSON string.
fn write_str(text: &str, esc: Escaping, out: &mut impl Sink) {
    out.put_byte(b'"');
    write_str_contents(text.as_bytes(), esc, out);
    out.put_byte(b'"');
}

/// What a byte becomes inside a JSON string: 0 for itself, `u` for
/// `\u00XX`, or the letter after a backslash.
static ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Writes UTF-8 `bytes` escaped for a JSON string, without the quotes.
/// Runs of bytes that need no escape are found 16 bytes at a time and
/// copied in one piece, so a field without special characters costs one
/// scan and one copy.
///
/// With [`Escaping::Apache`], `\"` and `\\` are Apache's escapes for `"`
/// and `\`, and JSON escapes those two the same way, so they are copied
/// as they are; any other backslash is a literal one.
#[inline(always)]
fn write_str_contents(bytes: &[u8], esc: Escaping, out: &mut impl Sink) {
    let mut run_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let next = match bytes.get(i..i + 16) {
            Some(chunk) => match chunk16::escape_bits(chunk) {
                0 => {
                    i += 16;
                    continue;
                }
                bits => i + bits.trailing_zeros() as usize,
            },
            None if !tail_needs_escape(bytes, i) => break,
            // The last few bytes hold an escape: find it one byte at a time.
            None => match bytes[i..].iter().position(|&b| ESCAPES[usize::from(b)] != 0) {
                Some(offset) => i + offset,
                None => break,
            },
        };
        out.put(&bytes[run_start..next]);
        i = write_escape(bytes, next, esc, out);
        run_start = i;
    }
    out.put(&bytes[run_start..]);
}

/// Whether any of the last bytes of `bytes`, from `from` on (fewer than
/// 16), needs an escape, without a loop over them: most strings are short
/// or end in a partial chunk, and a byte-by-byte loop there cost more than
/// the chunks before it.
#[inline]
fn tail_needs_escape(bytes: &[u8], from: usize) -> bool {
    let rest = bytes.len() - from;
    debug_assert!(rest < 16);
    if bytes.len() >= 16 {
        // The last 16 bytes; those before `from` were checked already.
        chunk16::escape_bits(&bytes[bytes.len() - 16..]) >> (16 - rest) != 0
    } else if rest >= 8 {
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        word_needs_escape(word(from)) || word_needs_escape(word(bytes.len() - 8))
    } else {
        bytes[from..].iter().any(|&b| ESCAPES[usize::from(b)] != 0)
    }
}

/// Whether any byte of `word` is a control character, `"` or `\`. The
/// bit tricks ("determine if a word has a byte less than n", Sean Anderson's
/// Bit Twiddling Hacks) are exact for "any byte", which is all this asks.
#[inline]
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    below_space | quote | backslash != 0
}

/// Writes the escape for the byte at `at`, which needs one; returns the
/// position after the bytes it covered.
fn write_escape(bytes: &[u8], at: usize, esc: Escaping, out: &mut impl Sink) -> usize {
    let escape = ESCAPES[usize::from(bytes[at])];
    if escape == b'\\' && esc == Escaping::Apache && matches!(bytes.get(at + 1), Some(b'"' | b'\\')) {
        out.put(&bytes[at..at + 2]);
        at + 2
    } else if escape == b'u' {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let b = bytes[at];
        out.put(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        at + 1
    } else {
        out.put(&[b'\\', escape]);
        at + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_are_told_from_host_names_as_std_does() {
        let mut cases: Vec<String> = [
            "1.2.3.4",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "0.0.0.0",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4 ",
            "1234.1.1.1",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
            "2001:db8:::1",
            "example.com",
            "cafe.be",
            "",
            "1.2.3.-4",
            "1.2.3.+4",
            "0x1.2.3.4",
            "00.0.0.0",
            "10.000.0.1",
            "fe80::1%eth0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every octet value and a few lengths around them, in each position.
        for value in ["0", "9", "10", "99", "100", "199", "249", "250", "255", "256", "300", "999", "007"] {
            for position in 0..4 {
                let mut octets = ["1"; 4];
                octets[position] = value;
                cases.push(octets.join("."));
            }
        }
        for case in &cases {
            assert_eq!(is_ip(case), case.parse::<std::net::IpAddr>().is_ok(), "{case:?}");
        }
    }

    fn escaped(text: &str, esc: Escaping) -> String {
        let mut out = Vec::new();
        write_str(text, esc, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_for_json() {
        assert_eq!(escaped("plain /a?b=c", Escaping::None), r#""plain /a?b=c""#);
        assert_eq!(escaped("a\"b\\c\n\t\x01é", Escaping::None), r#""a\"b\\c\n\t\u0001é""#);
        // Apache's \" and \\ stay; its \x.. escapes and a lone backslash are literal text.
        assert_eq!(escaped(r#"say \"hi\" \\ \x16 end\"#, Escaping::Apache), r#""say \"hi\" \\ \\x16 end\\""#);
    }

    #[test]
    fn every_special_byte_is_escaped_at_every_position_and_length() {
        // Lengths around the 16-byte chunks and the byte-by-byte tail.
        for len in 1..40 {
            for position in 0..len {
                for special in (0..0x20u8).chain([b'"', b'\\', 0x7f, b'a']) {
                    let mut text = vec![b'x'; len];
                    text[position] = special;
                    let text = String::from_utf8(text).unwrap();
                    let json = escaped(&text, Escaping::None);
                    assert_eq!(
                        serde_json::from_str::<String>(&json).unwrap(),
                        text,
                        "{special:#x} at {position} of {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn escaped_strings_parse_back_to_the_text() {
        let text = "\u{0}\u{1f}\"\\/\u{7f}\u{2028}日本";
        let json = escaped(text, Escaping::None);
        assert_eq!(serde_json::from_str::<String>(&json).unwrap(), text);
    }

    #[test]
    fn numbers_and_host_names() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 4_294_967_295, 4_294_967_296, 18_446_744_073_709_551_615] {
            write_u64(n, &mut out);
            out.push(b' ');
        }
        assert_eq!(out, b"0 7 10 4294967295 4294967296 18446744073709551615 ");
        assert!(is_ip("83.149.9.216") && is_ip("2001:db8::1") && is_ip("::ffff:10.0.0.1"));
        assert!(!is_ip("crawl-66-249-73-135.googlebot.com") && !is_ip("cafe") && !is_ip("1.2.3"));
    }
}
