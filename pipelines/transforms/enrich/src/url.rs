//! Fields derived from `url.original`, the request target as logged.

use serde_json::{Map, Value, json};

/// `extension` (ECS: without the dot, lower-cased, of the last path
/// segment) and, for an absolute target (`GET http://host:port/path`, as
/// proxies log), `scheme`, `domain` and `port`.
pub fn derived(original: &str) -> Map<String, Value> {
    let mut fields = Map::new();
    let mut path = original;
    if let Some((scheme, rest)) = original.split_once("://")
        && !scheme.is_empty()
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        let (domain, port) = match host.rsplit_once(':') {
            Some((domain, port)) if !domain.ends_with(']') || host.starts_with('[') => {
                match port.parse::<u16>() {
                    Ok(port) if !domain.contains(':') || domain.ends_with(']') => (domain, Some(port)),
                    _ => (host, None),
                }
            }
            _ => (host, None),
        };
        fields.insert("scheme".into(), json!(scheme.to_ascii_lowercase()));
        if !domain.is_empty() {
            fields.insert("domain".into(), json!(domain.trim_start_matches('[').trim_end_matches(']')));
        }
        if let Some(port) = port {
            fields.insert("port".into(), json!(port));
        }
        path = &rest[authority_end..];
    }
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let segment = path.rsplit('/').next().unwrap_or(path);
    if let Some((stem, extension)) = segment.rsplit_once('.')
        && !stem.is_empty()
        && !extension.is_empty()
        && extension.len() <= 16
        && extension.chars().all(|c| c.is_ascii_alphanumeric())
    {
        fields.insert("extension".into(), json!(extension.to_ascii_lowercase()));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_and_absolute_targets() {
        assert_eq!(Value::Object(derived("/images/logo.PNG?v=2")), json!({"extension": "png"}));
        assert_eq!(Value::Object(derived("/blog/")), json!({}));
        assert_eq!(Value::Object(derived("/.htaccess")), json!({}));
        assert_eq!(Value::Object(derived("/a.b/c")), json!({}));
        assert_eq!(
            Value::Object(derived("http://Example.com:8080/x/feed.xml#top")),
            json!({"scheme": "http", "domain": "Example.com", "port": 8080, "extension": "xml"})
        );
        assert_eq!(
            Value::Object(derived("https://[2001:db8::1]:443/")),
            json!({"scheme": "https", "domain": "2001:db8::1", "port": 443})
        );
        assert_eq!(
            Value::Object(derived("https://user@host/")),
            json!({"scheme": "https", "domain": "host"})
        );
    }
}
