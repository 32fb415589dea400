//! The original API server's JSON lines:
//!
//! ```json
//! {"ip": "83.149.9.216", "datetime": "2015-05-17T10:05:03+00:00", "method": "GET",
//!  "url": "/a?b=c", "responseCode": 200, "responseTime": 852, "sessionID": "e7d5…"}
//! ```
//!
//! `responseTime` (milliseconds) and `sessionID` may be missing or null; the
//! other fields are required. Unknown keys are ignored, so a server that adds
//! fields does not break the pipeline.
//!
//! serde_json does the parsing, through a hand-written visitor rather than
//! a derive: strings are borrowed when they have no escapes, and an error
//! inside a value names its field (serde_json adds the column).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use sluice_guest::Error;

use crate::event::{Escaping, Event};
use crate::failure::{parse_error, truncated};
use crate::time::{self, Timestamp};

pub fn parse(line: &str) -> Result<Event<'_>, Error> {
    let field = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(line);
    let result = deserializer.deserialize_map(ApiLineVisitor { field: &field }).and_then(|event| {
        deserializer.end()?;
        Ok(event)
    });
    result.map_err(|e| match (e.is_eof(), field.get()) {
        // A line cut short ends inside some value; which one says little.
        (true, _) => truncated(e.to_string()),
        // Naming the field makes "invalid type: string, expected u16"
        // actionable; serde_json's message already carries the column.
        (false, Some(name)) => parse_error(format!("field `{name}`: {e}")),
        (false, None) => parse_error(e.to_string()),
    })
}

/// Reads the top-level object; `field` names the value being read while it
/// is read, for error messages.
struct ApiLineVisitor<'f> {
    field: &'f Cell<Option<&'static str>>,
}

impl<'de> Visitor<'de> for ApiLineVisitor<'_> {
    type Value = Event<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with ip, datetime, method, url and responseCode")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event<'de>, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let name = key.name();
            if key != Key::Other && fields.seen & key.bit() != 0 {
                return Err(de::Error::custom(format_args!("duplicate field `{name}`")));
            }
            fields.seen |= key.bit();
            self.field.set((key != Key::Other).then_some(name));
            match key {
                Key::Ip => fields.ip = Some(map.next_value::<Text>()?.0),
                Key::Datetime => fields.datetime = Some(map.next_value::<Rfc3339>()?.0),
                Key::Method => fields.method = Some(map.next_value::<Text>()?.0),
                Key::Url => fields.url = Some(map.next_value::<Text>()?.0),
                Key::ResponseCode => fields.status = Some(map.next_value::<Status>()?.0),
                Key::ResponseTime => fields.duration = map.next_value::<Option<Millis>>()?.map(|m| m.0),
                Key::SessionId => fields.session = map.next_value::<Option<Text>>()?.map(|t| t.0),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            self.field.set(None);
        }
        fields.into_event()
    }
}

#[derive(Default)]
struct Fields<'a> {
    /// One bit per [`Key`], to refuse duplicates.
    seen: u8,
    ip: Option<Cow<'a, str>>,
    datetime: Option<Timestamp>,
    method: Option<Cow<'a, str>>,
    url: Option<Cow<'a, str>>,
    status: Option<u16>,
    duration: Option<u64>,
    session: Option<Cow<'a, str>>,
}

impl<'a> Fields<'a> {
    fn into_event<E: de::Error>(self) -> Result<Event<'a>, E> {
        let missing = |name| E::custom(format_args!("missing field `{name}`"));
        let mut event = Event::new(
            self.datetime.ok_or_else(|| missing("datetime"))?,
            self.ip.ok_or_else(|| missing("ip"))?,
            self.status.ok_or_else(|| missing("responseCode"))?,
            Escaping::None,
        );
        event.method = Some(self.method.ok_or_else(|| missing("method"))?);
        event.url = Some(self.url.ok_or_else(|| missing("url"))?);
        event.duration_nanos = self.duration;
        event.session_id = self.session;
        Ok(event)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Ip,
    Datetime,
    Method,
    Url,
    ResponseCode,
    ResponseTime,
    SessionId,
    Other,
}

impl Key {
    const ALL: [(Key, &str); 7] = [
        (Key::Ip, "ip"),
        (Key::Datetime, "datetime"),
        (Key::Method, "method"),
        (Key::Url, "url"),
        (Key::ResponseCode, "responseCode"),
        (Key::ResponseTime, "responseTime"),
        (Key::SessionId, "sessionID"),
    ];

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(k, _)| *k == self).map_or("", |(_, name)| name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
                Ok(Key::ALL.iter().find(|(_, n)| *n == name).map_or(Key::Other, |(k, _)| *k))
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A string, borrowed from the line unless it had JSON escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// `datetime`: an RFC 3339 timestamp, converted to UTC.
struct Rfc3339(Timestamp);

impl<'de> Deserialize<'de> for Rfc3339 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Text::deserialize(deserializer)?.0;
        time::parse_rfc3339(text.as_bytes()).map(Rfc3339).map_err(|e| {
            de::Error::custom(format_args!(
                "expected {} at byte {} of {text:?} (an RFC 3339 timestamp)",
                e.expected, e.at
            ))
        })
    }
}

/// `responseCode`: an HTTP status, 0 to 999 like the Apache formats' three digits.
struct Status(u16);

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = u16::deserialize(deserializer)?;
        if code > 999 {
            return Err(de::Error::custom(format_args!("{code} is not a 3-digit status code")));
        }
        Ok(Status(code))
    }
}

/// `responseTime`: non-negative milliseconds, integer or fractional, as
/// nanoseconds (ECS `event.duration` is in nanoseconds).
struct Millis(u64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MillisVisitor;
        impl Visitor<'_> for MillisVisitor {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative number of milliseconds")
            }
            fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Millis, E> {
                ms.checked_mul(1_000_000).map(Millis).ok_or_else(|| E::custom("too large"))
            }
            fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Millis, E> {
                u64::try_from(ms)
                    .map_err(|_| E::custom("must not be negative"))
                    .and_then(|ms| self.visit_u64(ms))
            }
            fn visit_f64<E: de::Error>(self, ms: f64) -> Result<Millis, E> {
                let nanos = (ms * 1e6).round();
                // `u64::MAX as f64` rounds up to 2^64, so `<` keeps the cast exact.
                if (0.0..u64::MAX as f64).contains(&nanos) {
                    Ok(Millis(nanos as u64))
                } else {
                    // Not echoing the value keeps float formatting out of the component.
                    Err(E::custom("must be a non-negative number of milliseconds below 2^64 ns"))
                }
            }
        }
        deserializer.deserialize_any(MillisVisitor)
    }
}
