//! User-agent parsing (Woothee's rules) and bot detection.

use std::cell::RefCell;
use std::collections::HashMap;

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

/// How many distinct user agents [`Parser`] remembers. Web traffic repeats
/// a small set of agents, and Woothee's rules (dozens of substring searches
/// an agent) cost far more than a lookup; Logstash's `useragent` filter
/// caches for the same reason. When full, the cache starts over, which
/// bounds its memory (a few hundred KB) without bookkeeping per hit.
const CACHE_ENTRIES: usize = 1024;

pub struct Parser {
    woothee: woothee::parser::Parser,
    cache: RefCell<HashMap<String, Map<String, Value>>>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    pub fn new() -> Parser {
        Parser { woothee: woothee::parser::Parser::new(), cache: RefCell::default() }
    }

    /// The `user_agent.*` fields for `original`: `name`, `version`,
    /// `os.name`, `os.version`, `device.name` when known, and `bot`.
    pub fn parse(&self, original: &str) -> Map<String, Value> {
        if let Some(fields) = self.cache.borrow().get(original) {
            return fields.clone();
        }
        let fields = self.parse_uncached(original);
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(original.to_owned(), fields.clone());
        fields
    }

    fn parse_uncached(&self, original: &str) -> Map<String, Value> {
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
                known(result.version).filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
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

    #[test]
    fn cached_answers_match_fresh_ones_and_the_cache_stays_bounded() {
        let parser = Parser::new();
        let agents: Vec<String> = (0..CACHE_ENTRIES * 2 + 7).map(|i| format!("curl/{i}.0")).collect();
        for round in 0..2 {
            for agent in &agents {
                assert_eq!(parser.parse(agent), parser.parse_uncached(agent), "{agent}, round {round}");
                assert!(parser.cache.borrow().len() <= CACHE_ENTRIES);
            }
        }
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        assert_eq!(parser.parse(chrome), parser.parse(chrome));
        assert_eq!(parser.parse(chrome)["name"], json!("Chrome"));
    }
}
