//! Apache access-log lines, `common` and `combined` (nginx's default
//! `combined` format writes the same layout):
//!
//! ```text
//! LogFormat "%h %l %u %t \"%r\" %>s %b" common
//! LogFormat "%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-agent}i\"" combined
//! ```
//!
//! One left-to-right pass with a cursor and 16-byte searches; every field is a slice
//! of the line, so parsing allocates nothing unless it fails. Quoted fields
//! keep Apache's backslash escapes (see [`Escaping::Apache`]).
//!
//! A line that stops early while everything before was valid is `truncated`;
//! any other mismatch is a `parse-error` naming the field and byte offset.

use std::borrow::Cow;

use memchr::memrchr;
use sluice_guest::Error;

use crate::chunk16;
use crate::event::{Escaping, Event};
use crate::failure::{describe_byte, parse_error, truncated};
use crate::time::{self, Timestamp};

/// Which of the two layouts to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Common,
    Combined,
}

/// Parses one line (without its line terminator).
pub fn parse(line: &str, layout: Layout) -> Result<Event<'_>, Error> {
    let mut cursor = Cursor { line, pos: 0 };
    let client = cursor.word("the client address")?;
    // `%l`, the identd name: always `-` in practice and not an ECS field.
    cursor.word("the identity field")?;
    let user_name = dash_is_none(cursor.word("the user name")?);
    cursor.expect(b'[', "'[' opening the timestamp")?;
    let timestamp = cursor.timestamp()?;
    cursor.expect(b']', "']' closing the timestamp")?;
    cursor.expect(b' ', "a space after the timestamp")?;
    let request_at = cursor.pos + 1;
    let request = cursor.quoted("the request line")?;
    cursor.expect(b' ', "a space after the request line")?;
    let status = cursor.status()?;
    cursor.expect(b' ', "a space after the status code")?;
    let body_bytes = cursor.body_bytes()?;

    let mut event = Event::new(timestamp, Cow::Borrowed(client), status, Escaping::Apache);
    event.user_name = user_name.map(Cow::Borrowed);
    split_request(request, request_at, &mut event)?;
    event.body_bytes = body_bytes;
    if layout == Layout::Combined {
        if cursor.at_end() {
            return Err(truncated(format!(
                "line ends at byte {} after the response size; expected the referrer \
                 (for lines without referrer and user agent use format = \"apache_common\")",
                cursor.pos
            )));
        }
        cursor.expect(b' ', "a space after the response size")?;
        event.referrer = dash_is_none(cursor.quoted("the referrer")?).map(Cow::Borrowed);
        cursor.expect(b' ', "a space after the referrer")?;
        event.user_agent = dash_is_none(cursor.quoted("the user agent")?).map(Cow::Borrowed);
    }
    cursor.expect_end(match layout {
        Layout::Common => "the response size",
        Layout::Combined => "the user agent",
    })?;
    Ok(event)
}

fn dash_is_none(field: &str) -> Option<&str> {
    if field == "-" { None } else { Some(field) }
}

/// Splits `%r`, `METHOD TARGET PROTOCOL`, into the event. `at` is the byte
/// offset of the request line in the log line, for error messages.
///
/// The target is everything between the first and the last space, because
/// Apache logs the request line as received and clients do send unencoded
/// spaces. A line without `HTTP/…` at the end (HTTP/0.9) has no version.
fn split_request<'a>(request: &'a str, at: usize, event: &mut Event<'a>) -> Result<(), Error> {
    // Apache logs `-` when no request line was read, e.g. on a 408 timeout.
    if request == "-" {
        return Ok(());
    }
    let bytes = request.as_bytes();
    let method_len = bytes.iter().take_while(|&&b| is_token_byte(b)).count();
    match bytes.get(method_len) {
        Some(b' ') if method_len > 0 => {}
        Some(&b) => {
            return Err(parse_error(format!(
                "request line: expected an HTTP method followed by a space at byte {}, found {}",
                at + method_len,
                describe_byte(b)
            )));
        }
        None => {
            return Err(parse_error(format!(
                "request line: expected \"METHOD TARGET PROTOCOL\" at byte {at}, found no space"
            )));
        }
    }
    let rest = &request[method_len + 1..];
    let (target, version) = match memrchr(b' ', rest.as_bytes()) {
        Some(space) if rest[space + 1..].starts_with("HTTP/") => (&rest[..space], Some(&rest[space + 6..])),
        _ => (rest, None),
    };
    if target.is_empty() {
        return Err(parse_error(format!("request line: expected a target at byte {}", at + method_len + 1)));
    }
    if let Some(version) = version
        && (version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
    {
        let version_at = at + method_len + 1 + target.len() + 6;
        return Err(parse_error(format!(
            "request line: expected an HTTP version like 1.1 after \"HTTP/\" at byte {version_at}"
        )));
    }
    event.method = Some(Cow::Borrowed(&request[..method_len]));
    event.url = Some(Cow::Borrowed(target));
    event.http_version = version.map(Cow::Borrowed);
    Ok(())
}

/// Decimal digits to a number; `None` if empty, not all digits or too big.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    // Up to 19 digits cannot overflow, so the common case needs no checked
    // multiply (on wasm32 that is a 128-bit multiply, a library call).
    const SAFE_DIGITS: usize = 19;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let (head, tail) = digits.split_at(digits.len().min(SAFE_DIGITS));
    let value = head.iter().fold(0u64, |value, &b| value * 10 + u64::from(b - b'0'));
    tail.iter().try_fold(value, |value, &b| value.checked_mul(10)?.checked_add(u64::from(b - b'0')))
}

/// RFC 9110 `tchar`: what an HTTP method may be made of. A `match`, not
/// `contains` on the list: every line asks this of the space after its
/// method, and in the component `contains` is a call into `memchr`'s
/// word-at-a-time loop (1.4 % of log-parse's time in wasm).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A position in the line being parsed.
struct Cursor<'a> {
    line: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn rest(&self) -> &'a [u8] {
        &self.line.as_bytes()[self.pos..]
    }

    #[inline(always)]
    fn at_end(&self) -> bool {
        self.pos == self.line.len()
    }

    /// Consumes `byte`, described as `what` if it is missing.
    #[inline(always)]
    fn expect(&mut self, byte: u8, what: &str) -> Result<(), Error> {
        if self.rest().first() == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.missing(what))
        }
    }

    // The error paths are kept out of line, so the hot methods stay small
    // enough to inline. That matters most in the component, where every
    // call pays a stack check, an epoch check and a frame on the guest's
    // own stack.
    #[cold]
    #[inline(never)]
    fn missing(&self, what: &str) -> Error {
        match self.rest().first() {
            Some(&b) => {
                parse_error(format!("expected {what} at byte {}, found {}", self.pos, describe_byte(b)))
            }
            None => truncated(format!("line ends at byte {}; expected {what}", self.pos)),
        }
    }

    fn expect_end(&self, last_field: &str) -> Result<(), Error> {
        match self.rest().first() {
            None => Ok(()),
            Some(_) => Err(parse_error(format!(
                "expected the end of the line after {last_field} at byte {}",
                self.pos
            ))),
        }
    }

    /// A non-empty field ending at the next space, which is consumed.
    #[inline(always)]
    fn word(&mut self, field: &str) -> Result<&'a str, Error> {
        let start = self.pos;
        match chunk16::find(self.rest(), b' ') {
            Some(len) if len > 0 => {
                self.pos += len + 1;
                Ok(&self.line[start..start + len])
            }
            found => Err(self.bad_word(field, found)),
        }
    }

    #[cold]
    #[inline(never)]
    fn bad_word(&self, field: &str, space: Option<usize>) -> Error {
        let start = self.pos;
        match space {
            Some(_) => parse_error(format!("expected {field} at byte {start}, found a space")),
            None if self.at_end() => truncated(format!("line ends at byte {start}; expected {field}")),
            None => truncated(format!(
                "line ends at byte {} inside {field} (starting at byte {start})",
                self.line.len()
            )),
        }
    }

    /// The text of a double-quoted field, escapes intact; consumes the quotes.
    #[inline(always)]
    fn quoted(&mut self, field: &str) -> Result<&'a str, Error> {
        if self.rest().first() != Some(&b'"') {
            return Err(self.missing_quote(field));
        }
        let bytes = self.line.as_bytes();
        let start = self.pos + 1;
        let mut i = start;
        while i < bytes.len() {
            match chunk16::find2(&bytes[i..], b'"', b'\\') {
                Some(offset) if bytes[i + offset] == b'"' => {
                    self.pos = i + offset + 1;
                    return Ok(&self.line[start..i + offset]);
                }
                // A backslash escapes the next byte, which may be a quote.
                Some(offset) => i += offset + 2,
                None => break,
            }
        }
        Err(self.unclosed_quote(field, start - 1))
    }

    #[cold]
    #[inline(never)]
    fn missing_quote(&self, field: &str) -> Error {
        match self.rest().first() {
            Some(&b) => parse_error(format!(
                "expected '\"' opening {field} at byte {}, found {}",
                self.pos,
                describe_byte(b)
            )),
            None => truncated(format!("line ends at byte {}; expected {field}", self.pos)),
        }
    }

    #[cold]
    #[inline(never)]
    fn unclosed_quote(&self, field: &str, opened_at: usize) -> Error {
        truncated(format!(
            "line ends at byte {} inside {field} (opened at byte {opened_at})",
            self.line.len()
        ))
    }

    fn timestamp(&mut self) -> Result<Timestamp, Error> {
        // `%t` is fixed-width: `dd/Mon/yyyy:HH:MM:SS +hhmm`.
        const LEN: usize = 26;
        let start = self.pos;
        let timestamp = time::parse_apache(self.rest()).map_err(|e| {
            if e.truncated {
                truncated(format!(
                    "line ends at byte {} inside the timestamp; expected {} at byte {}",
                    self.line.len(),
                    e.expected,
                    start + e.at
                ))
            } else {
                parse_error(format!("timestamp: expected {} at byte {}", e.expected, start + e.at))
            }
        })?;
        self.pos += LEN;
        Ok(timestamp)
    }

    /// `%>s`: three digits.
    #[inline(always)]
    fn status(&mut self) -> Result<u16, Error> {
        let start = self.pos;
        let field = self.until_space();
        match field {
            [a, b, c] if field.iter().all(u8::is_ascii_digit) => {
                Ok(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
            }
            _ => Err(self.bad_status(start, field)),
        }
    }

    #[cold]
    #[inline(never)]
    fn bad_status(&self, start: usize, field: &[u8]) -> Error {
        if self.at_end() && field.len() < 3 && field.iter().all(u8::is_ascii_digit) {
            truncated(format!("line ends at byte {} inside the status code", self.pos))
        } else {
            parse_error(format!("expected a 3-digit status code at byte {start}"))
        }
    }

    /// `%b`: a byte count, or `-` for none.
    #[inline(always)]
    fn body_bytes(&mut self) -> Result<Option<u64>, Error> {
        let start = self.pos;
        let field = self.until_space();
        if field == b"-" {
            return Ok(None);
        }
        match parse_u64(field) {
            Some(value) => Ok(Some(value)),
            None => Err(self.bad_body_bytes(start, field)),
        }
    }

    #[cold]
    #[inline(never)]
    fn bad_body_bytes(&self, start: usize, field: &[u8]) -> Error {
        if field.is_empty() && self.at_end() {
            truncated(format!("line ends at byte {start}; expected the response size"))
        } else {
            parse_error(format!(
                "expected the response size (an unsigned 64-bit number or '-') at byte {start}"
            ))
        }
    }

    /// Consumes and returns the bytes up to the next space or the end.
    #[inline(always)]
    fn until_space(&mut self) -> &'a [u8] {
        let rest = self.rest();
        let len = chunk16::find(rest, b' ').unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bytes_are_rfc_9110s_tchar() {
        const TCHAR_SYMBOLS: &[u8] = b"!#$%&'*+-.^_`|~";
        for b in 0..=u8::MAX {
            let expected = b.is_ascii_alphanumeric() || TCHAR_SYMBOLS.contains(&b);
            assert_eq!(is_token_byte(b), expected, "byte {b:#04x}");
        }
    }
}
