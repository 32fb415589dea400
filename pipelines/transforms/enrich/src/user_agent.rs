//! User-agent parsing (Woothee's rules) and bot detection.

use serde_json::{Map, Value, json};

/// Words that, in a user agent, mean software rather than a person.
/// Woothee knows the big crawlers; these catch the long tail (feed readers,
/// archivers, SEO tools, scripted clients).
const BOT_WORDS: &[&str] = &[
    "bot",
    "spider",
    "crawl",
    "slurp",
    "archiver",
    "feedparser",
    "feedfetcher",
    "rss",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "java/",
    "libwww",
    "httpclient",
    "headless",
];

pub struct Parser {
    woothee: woothee::parser::Parser,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    pub fn new() -> Parser {
        Parser { woothee: woothee::parser::Parser::new() }
    }

    /// The `user_agent.*` fields for `original`: `name`, `version`,
    /// `os.name`, `os.version`, `device.name` when known, and `bot`.
    pub fn parse(&self, original: &str) -> Map<String, Value> {
        let mut fields = Map::new();
        let mut crawler = false;
        if let Some(result) = self.woothee.parse(original) {
            crawler = result.category == "crawler";
            if let Some(name) = known(result.name) {
                fields.insert("name".into(), json!(name));
            }
            // Woothee puts a product name there for some libraries
            // ("curl"); a version starts with a digit.
            if let Some(version) =
                known(&result.version).filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
            {
                fields.insert("version".into(), json!(version));
            }
            let mut os = Map::new();
            if let Some(name) = known(result.os) {
                os.insert("name".into(), json!(name));
            }
            if let Some(version) = known(&result.os_version) {
                os.insert("version".into(), json!(version));
            }
            if !os.is_empty() {
                fields.insert("os".into(), Value::Object(os));
            }
            if let Some(device) = device(result.category) {
                fields.insert("device".into(), json!({ "name": device }));
            }
        }
        fields.insert("bot".into(), json!(crawler || looks_automated(original)));
        fields
    }
}

fn known(value: &str) -> Option<&str> {
    (!value.is_empty() && value != "UNKNOWN").then_some(value)
}

fn device(category: &str) -> Option<&'static str> {
    Some(match category {
        "pc" => "Desktop",
        "smartphone" => "Smartphone",
        "mobilephone" => "Mobile phone",
        "appliance" => "Appliance",
        "crawler" => "Spider",
        _ => return None,
    })
}

fn looks_automated(original: &str) -> bool {
    let lower = original.to_ascii_lowercase();
    BOT_WORDS.iter().any(|word| lower.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_oses_and_bots() {
        let parser = Parser::new();
        let chrome = parser.parse(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36",
        );
        assert_eq!(
            Value::Object(chrome),
            json!({"name": "Chrome", "version": "32.0.1700.77", "os": {"name": "Mac OSX", "version": "10.9.1"}, "device": {"name": "Desktop"}, "bot": false})
        );
        let google = parser.parse("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
        assert_eq!(google["bot"], json!(true));
        assert_eq!(google["device"]["name"], json!("Spider"));
        // Not in Woothee's crawler list, still not a person.
        assert_eq!(
            parser.parse("UniversalFeedParser/4.2-pre-314-svn +http://feedparser.org/")["bot"],
            json!(true)
        );
        assert_eq!(parser.parse("curl/8.5.0")["bot"], json!(true));
        assert_eq!(parser.parse("-")["bot"], json!(false));
    }
}
