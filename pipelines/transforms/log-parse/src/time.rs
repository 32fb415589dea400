//! Timestamps: Apache's `%t` (`17/May/2015:10:05:03 +0000`), RFC 3339 for
//! the `json` format, conversion to UTC and RFC 3339 output.
//!
//! Hand-written rather than a date crate: the formats are fixed, the parse is
//! on the hot path and the component should stay small. The calendar
//! arithmetic is in [`civil`](crate::civil).

use crate::civil::{civil_from_days, days_from_civil, days_in_month};

/// A point in time in UTC, to the nanosecond, for years 0000 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanos: u32,
    /// How many fractional digits the input had (0 to 9); the output keeps
    /// the same precision so `.5` does not become `.500000000`.
    pub fraction_digits: u8,
}

/// Why a timestamp was refused: `at` is the byte offset in the timestamp
/// text, `expected` says what should have been there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError {
    pub at: usize,
    pub expected: &'static str,
    /// The text ended before the timestamp did, as in a truncated line.
    pub truncated: bool,
}

/// Parses the 26 bytes of Apache's `%t` between the brackets,
/// `dd/Mon/yyyy:HH:MM:SS +hhmm`, from the start of `s`. Bytes after those
/// 26 are not looked at.
pub fn parse_apache(s: &[u8]) -> Result<Timestamp, TimeError> {
    let day = digits(s, 0, 2, "a 2-digit day")?;
    expect(s, 2, b'/', "'/' after the day")?;
    let month = month_abbreviation(s, 3)?;
    expect(s, 6, b'/', "'/' after the month")?;
    let year = digits(s, 7, 4, "a 4-digit year")?;
    expect(s, 11, b':', "':' after the year")?;
    let (hour, minute, second) = clock(s, 12)?;
    expect(s, 20, b' ', "a space before the UTC offset")?;
    let negative = sign(s, 21)?;
    let offset_hours = digits(s, 22, 2, "a 2-digit offset hour")?;
    let offset_minutes = digits(s, 24, 2, "a 2-digit offset minute")?;
    check_offset(offset_hours, offset_minutes, 22)?;
    let date = check_date(year, month, day, 0)?;
    let offset = offset_seconds(negative, offset_hours, offset_minutes);
    to_utc(date, (hour, minute, second), offset, (0, 0))
}

/// Parses an RFC 3339 date-time, `2015-05-17T10:05:03[.123]+02:00` or
/// `...Z`; the whole of `s` must be the timestamp.
pub fn parse_rfc3339(s: &[u8]) -> Result<Timestamp, TimeError> {
    let year = digits(s, 0, 4, "a 4-digit year")?;
    expect(s, 4, b'-', "'-' after the year")?;
    let month = digits(s, 5, 2, "a 2-digit month")?;
    expect(s, 7, b'-', "'-' after the month")?;
    let day = digits(s, 8, 2, "a 2-digit day")?;
    match s.get(10) {
        Some(b'T' | b't' | b' ') => {}
        _ => expect(s, 10, b'T', "'T' between the date and the time")?,
    }
    let (hour, minute, second) = clock(s, 11)?;
    let (fraction, mut at) = fraction(s, 19)?;
    let offset = match s.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(_) | None => {
            let negative = sign(s, at)?;
            let hours = digits(s, at + 1, 2, "a 2-digit offset hour")?;
            expect(s, at + 3, b':', "':' in the UTC offset")?;
            let minutes = digits(s, at + 4, 2, "a 2-digit offset minute")?;
            check_offset(hours, minutes, at + 1)?;
            at += 6;
            offset_seconds(negative, hours, minutes)
        }
    };
    if at != s.len() {
        return Err(invalid(at, "the end of the timestamp"));
    }
    let month = check_month(month, 5)?;
    let date = check_date(year, month, day, 8)?;
    to_utc(date, (hour, minute, second), offset, fraction)
}

impl Timestamp {
    /// Longest RFC 3339 output: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
    pub const MAX_LEN: usize = 30;

    /// Writes `YYYY-MM-DDTHH:MM:SS[.fraction]Z` into `buf`; returns its length.
    pub fn write_rfc3339(&self, buf: &mut [u8; Self::MAX_LEN]) -> usize {
        let mut len = 0;
        let mut put = |value: u32, width: u32, after: u8| {
            for i in (0..width).rev() {
                buf[len] = b'0' + (value / 10u32.pow(i) % 10) as u8;
                len += 1;
            }
            buf[len] = after;
            len += 1;
        };
        put(self.year.into(), 4, b'-');
        put(self.month.into(), 2, b'-');
        put(self.day.into(), 2, b'T');
        put(self.hour.into(), 2, b':');
        put(self.minute.into(), 2, b':');
        if self.fraction_digits == 0 {
            put(self.second.into(), 2, b'Z');
        } else {
            put(self.second.into(), 2, b'.');
            let digits = u32::from(self.fraction_digits);
            put(self.nanos / 10u32.pow(9 - digits), digits, b'Z');
        }
        len
    }
}

/// A validated calendar date.
#[derive(Clone, Copy)]
struct Date {
    year: u32,
    month: u32,
    day: u32,
}

fn to_utc(
    date: Date,
    (hour, minute, second): (u32, u32, u32),
    offset_seconds: i64,
    (nanos, fraction_digits): (u32, u8),
) -> Result<Timestamp, TimeError> {
    let (mut year, mut month, mut day) = (i64::from(date.year), date.month, date.day);
    let mut second_of_day = i64::from(hour * 3600 + minute * 60 + second);
    // Most servers log in UTC; skip the calendar arithmetic for them.
    if offset_seconds != 0 {
        let local = days_from_civil(year, month, day) * 86_400 + second_of_day;
        let utc = local - offset_seconds;
        (year, month, day) = civil_from_days(utc.div_euclid(86_400));
        second_of_day = utc.rem_euclid(86_400);
    }
    if !(0..=9999).contains(&year) {
        return Err(invalid(0, "a time between years 0000 and 9999 in UTC"));
    }
    Ok(Timestamp {
        year: year as u16,
        month: month as u8,
        day: day as u8,
        hour: (second_of_day / 3600) as u8,
        minute: (second_of_day / 60 % 60) as u8,
        second: (second_of_day % 60) as u8,
        nanos,
        fraction_digits,
    })
}

fn invalid(at: usize, expected: &'static str) -> TimeError {
    TimeError { at, expected, truncated: false }
}

/// The error for byte `at`: truncated when the text ends there.
fn error_at(s: &[u8], at: usize, expected: &'static str) -> TimeError {
    TimeError { at, expected, truncated: at >= s.len() }
}

fn expect(s: &[u8], at: usize, byte: u8, expected: &'static str) -> Result<(), TimeError> {
    if s.get(at) == Some(&byte) { Ok(()) } else { Err(error_at(s, at, expected)) }
}

fn digits(s: &[u8], at: usize, count: usize, expected: &'static str) -> Result<u32, TimeError> {
    let mut value = 0;
    for i in at..at + count {
        match s.get(i) {
            Some(&b) if b.is_ascii_digit() => value = value * 10 + u32::from(b - b'0'),
            // Report the field's start: "a 2-digit day at byte 5" reads better
            // than pointing at its second digit.
            _ => {
                return Err(TimeError { at, expected, truncated: i >= s.len() });
            }
        }
    }
    Ok(value)
}

/// `HH:MM:SS` at `at`.
fn clock(s: &[u8], at: usize) -> Result<(u32, u32, u32), TimeError> {
    let hour = digits(s, at, 2, "a 2-digit hour")?;
    expect(s, at + 2, b':', "':' after the hour")?;
    let minute = digits(s, at + 3, 2, "a 2-digit minute")?;
    expect(s, at + 5, b':', "':' after the minute")?;
    let second = digits(s, at + 6, 2, "a 2-digit second")?;
    if hour > 23 {
        return Err(invalid(at, "an hour from 00 to 23"));
    }
    if minute > 59 {
        return Err(invalid(at + 3, "a minute from 00 to 59"));
    }
    // No leap seconds: neither Apache nor the API server writes them, and
    // accepting :60 would need a rule for where it goes after conversion.
    if second > 59 {
        return Err(invalid(at + 6, "a second from 00 to 59"));
    }
    Ok((hour, minute, second))
}

/// An optional `.digits` at `at`: (nanoseconds, digit count) and where it ends.
fn fraction(s: &[u8], at: usize) -> Result<((u32, u8), usize), TimeError> {
    if s.get(at) != Some(&b'.') {
        return Ok(((0, 0), at));
    }
    let count = s[at + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
    if count == 0 || count > 9 {
        return Err(error_at(s, at + 1, "1 to 9 fractional-second digits"));
    }
    let value = digits(s, at + 1, count, "fractional-second digits")?;
    Ok(((value * 10u32.pow(9 - count as u32), count as u8), at + 1 + count))
}

/// `+` or `-` at `at`; true for `-`.
fn sign(s: &[u8], at: usize) -> Result<bool, TimeError> {
    match s.get(at) {
        Some(b'+') => Ok(false),
        Some(b'-') => Ok(true),
        _ => Err(error_at(s, at, "'+' or '-' starting the UTC offset")),
    }
}

fn check_offset(hours: u32, minutes: u32, at: usize) -> Result<(), TimeError> {
    if hours > 23 || minutes > 59 {
        return Err(invalid(at, "a UTC offset of at most 23 hours 59 minutes"));
    }
    Ok(())
}

fn offset_seconds(negative: bool, hours: u32, minutes: u32) -> i64 {
    let seconds = i64::from(hours * 3600 + minutes * 60);
    if negative { -seconds } else { seconds }
}

const MONTHS: [&[u8; 3]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

/// Apache writes English abbreviations whatever the locale.
fn month_abbreviation(s: &[u8], at: usize) -> Result<u32, TimeError> {
    let expected = "a month abbreviation from Jan to Dec";
    let Some(name) = s.get(at..at + 3) else {
        let prefix = &s[at.min(s.len())..];
        let truncated = MONTHS.iter().any(|m| m.starts_with(prefix));
        return Err(TimeError { at, expected, truncated });
    };
    match MONTHS.iter().position(|m| &m[..] == name) {
        Some(index) => Ok(index as u32 + 1),
        None => Err(invalid(at, expected)),
    }
}

fn check_month(month: u32, at: usize) -> Result<u32, TimeError> {
    if (1..=12).contains(&month) { Ok(month) } else { Err(invalid(at, "a month from 01 to 12")) }
}

fn check_date(year: u32, month: u32, day: u32, day_at: usize) -> Result<Date, TimeError> {
    if day == 0 || day > days_in_month(year, month) {
        return Err(invalid(day_at, "a day that exists in that month"));
    }
    Ok(Date { year, month, day })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc3339(ts: &Timestamp) -> String {
        let mut buf = [0; Timestamp::MAX_LEN];
        let len = ts.write_rfc3339(&mut buf);
        String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    #[test]
    fn apache_offsets_convert_to_utc_across_day_month_and_year() {
        let cases = [
            ("17/May/2015:10:05:03 +0000", "2015-05-17T10:05:03Z"),
            ("31/Dec/2015:20:30:00 -0700", "2016-01-01T03:30:00Z"),
            ("01/Mar/2016:01:00:00 +0130", "2016-02-29T23:30:00Z"),
            ("01/Jan/2000:00:00:00 +1400", "1999-12-31T10:00:00Z"),
        ];
        for (input, expected) in cases {
            let ts = parse_apache(input.as_bytes()).unwrap_or_else(|e| panic!("{input}: {e:?}"));
            assert_eq!(rfc3339(&ts), expected, "{input}");
        }
    }

    #[test]
    fn apache_errors_point_at_the_field() {
        let err = |s: &str| parse_apache(s.as_bytes()).unwrap_err();
        assert_eq!(err("17/Mai/2015:10:05:03 +0000"), invalid(3, "a month abbreviation from Jan to Dec"));
        assert_eq!(err("31/Apr/2015:10:05:03 +0000"), invalid(0, "a day that exists in that month"));
        assert_eq!(err("29/Feb/1900:10:05:03 +0000").at, 0);
        assert!(parse_apache(b"29/Feb/2000:10:05:03 +0000").is_ok());
        assert_eq!(err("17/May/2015:24:05:03 +0000"), invalid(12, "an hour from 00 to 23"));
        assert_eq!(err("17/May/2015:10:05:03 0000"), invalid(21, "'+' or '-' starting the UTC offset"));
        let cut = err("17/May/2015:10:0");
        assert!(cut.truncated && cut.at == 15, "{cut:?}");
        assert!(err("17/Ma").truncated);
        assert!(!err("17/Mx").truncated);
        assert!(err("01/Jan/0000:00:00:00 +0100").expected.contains("years 0000 and 9999"));
    }

    #[test]
    fn rfc3339_keeps_the_fraction_and_converts_the_offset() {
        let cases = [
            ("2015-05-17T10:05:03+00:00", "2015-05-17T10:05:03Z"),
            ("2015-05-17T10:05:03Z", "2015-05-17T10:05:03Z"),
            ("2015-05-17 23:59:59.5-00:30", "2015-05-18T00:29:59.5Z"),
            ("2015-05-17T10:05:03.123456789+02:00", "2015-05-17T08:05:03.123456789Z"),
        ];
        for (input, expected) in cases {
            let ts = parse_rfc3339(input.as_bytes()).unwrap_or_else(|e| panic!("{input}: {e:?}"));
            assert_eq!(rfc3339(&ts), expected, "{input}");
        }
        let err = |s: &str| parse_rfc3339(s.as_bytes()).unwrap_err();
        assert_eq!(err("2015-13-17T10:05:03Z").at, 5);
        assert_eq!(err("2015-05-17T10:05:03").expected, "'+' or '-' starting the UTC offset");
        assert_eq!(err("2015-05-17T10:05:03Z trailing").at, 20);
        assert_eq!(err("2015-05-17T10:05:03.Z").at, 20);
    }
}
