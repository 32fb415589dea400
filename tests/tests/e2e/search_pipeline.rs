//! The web-logs-to-search flow as users run it: log-parse → enrich (with
//! its granted lookup table) → the OpenSearch sink; `sluice test` on the
//! shipped pipeline; what happens with bad input, a crashing engine, and a
//! cluster that is down. The search side is osmem-server, an OpenSearch-API
//! emulator (no OpenSearch can be installed here), or a scripted `_bulk`
//! endpoint where the test needs OpenSearch's 503s.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use sluice_tests::broker::{free_port, read_topic};
use sluice_tests::engine::{Engine, TOKEN};
use sluice_tests::opensearch::{BulkRequests, Emulator, all_created, scripted_bulk};
use sluice_tests::{fixture, guest, read_ndjson, root, sluice};

use super::{SLUICE, run_pipeline_file, toml_path, write_pipeline};

/// The parse → enrich stages and the lookup table, as in
/// `pipelines/weblogs-to-search.toml`.
fn stages() -> String {
    format!(
        "[[stage]]\nname = \"parse\"\nmodule = {parse}\n\
         [[stage]]\nname = \"enrich\"\nmodule = {enrich}\ncapabilities = [\"lookup:geoip\"]\n\
         [stage.config]\ngeoip_table = \"geoip\"\n\
         [lookup.geoip]\nfile = {table}\nmatch = \"ip\"\n",
        parse = toml_path(&guest("log-parse")),
        enrich = toml_path(&guest("enrich")),
        table = toml_path(&root().join("pipelines/lookups/geoip-sample.csv")),
    )
}

#[test]
fn the_shipped_pipeline_passes_its_own_golden_tests() {
    let output = sluice(
        SLUICE,
        &["test", &root().join("pipelines/weblogs-to-search.toml").display().to_string()],
        None,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("6 tests, 6 passed, 0 failed"), "{stdout}");
}

#[test]
fn a_failing_test_shows_a_diff_and_the_unmet_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"192.0.2.9 - - [17/May/2015:10:05:03 +0000] "GET /a.css HTTP/1.1" 200 7 "-" "curl/8.5.0""#;
    let file = write_pipeline(
        dir.path(),
        &format!(
            "name = \"t\"\n[source]\ntype = \"file\"\npath = \"in.log\"\n{stages}\
             [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n\
             [[tests]]\nname = \"wrong on purpose\"\ninputs = ['{line}', 'garbage']\n\
             [[tests.outputs]]\nfields = {{ \"url.extension\" = \"js\", \"client.geo.city_name\" = \"Paris\" }}\nabsent = [\"user_agent.bot\"]\n\
             [[tests.dead_letters]]\ninput = 1\nkind = \"empty\"\n\
             [[tests]]\nname = \"whole document\"\nfrom = \"enrich\"\ninputs = ['{{\"a\": 1}}']\n\
             [[tests.outputs]]\nequals = '{{\"a\": 2}}'\n",
            stages = stages()
        ),
    );
    let output = sluice(SLUICE, &["test", &file.display().to_string()], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for expected in [
        "FAIL  wrong on purpose",
        "output 0: `url.extension` is \"css\", expected \"js\"",
        "output 0: `client.geo.city_name` is missing, expected \"Paris\"",
        "output 0: `user_agent.bot` should be absent, found true",
        "input 1 should be dead-lettered (kind `empty`); it failed in stage `parse` with truncated",
        "FAIL  whole document",
        "-   \"a\": 2",
        "+   \"a\": 1",
        "2 tests, 0 passed, 2 failed",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }

    // A test naming a stage that does not exist is a config error, with its position.
    let bad = std::fs::read_to_string(&file).unwrap().replace("from = \"enrich\"", "from = \"enrichh\"");
    std::fs::write(&file, bad).unwrap();
    let output = sluice(SLUICE, &["test", &file.display().to_string()], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            ":31:8: key `tests[1].from`: no stage is named `enrichh`; the stages are: parse, enrich"
        ),
        "{stderr}"
    );
}

#[test]
fn lookups_reach_only_stages_granted_them() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = |stages: &str| {
        write_pipeline(
            dir.path(),
            &format!(
                "name = \"t\"\n[source]\ntype = \"file\"\npath = \"in.log\"\n{stages}[sink]\ntype = \"file\"\npath = \"out.ndjson\"\n"
            ),
        )
    };
    let validate = |file: &std::path::Path| {
        let output = sluice(SLUICE, &["validate", &file.display().to_string()], None);
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };

    // The module asks for the table; the stage does not grant it: the deploy fails.
    let ungranted = stages().replace("capabilities = [\"lookup:geoip\"]\n", "");
    let (code, stderr) = validate(&pipeline(&ungranted));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("lookup table `geoip` is not granted to this stage: add \"lookup:geoip\" to the stage's capabilities"),
        "{stderr}"
    );

    // A grant of a table the pipeline does not declare, with its position.
    let undeclared = stages().replace("lookup:geoip", "lookup:geo");
    let (code, stderr) = validate(&pipeline(&undeclared));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(":11:16: key `stage[1].capabilities`: `lookup:geo` grants a lookup table this pipeline does not declare; did you mean `lookup:geoip`?"),
        "{stderr}"
    );

    // A table that does not load says which line and column.
    let table = dir.path().join("bad.csv");
    std::fs::write(&table, "network,as.number:int\n192.0.2.0/24,many\n").unwrap();
    let broken =
        stages().replace(&toml_path(&root().join("pipelines/lookups/geoip-sample.csv")), &toml_path(&table));
    let (code, stderr) = validate(&pipeline(&broken));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("bad.csv:2: column `as.number`: `many` is not an integer"), "{stderr}");
}

/// `user_agent.original` and `client.ip` of a document.
fn agent_and_ip(doc: &serde_json::Value) -> (String, String) {
    (
        doc["user_agent"]["original"].as_str().unwrap_or("").to_string(),
        doc["client"]["ip"].as_str().unwrap().to_string(),
    )
}

#[test]
fn every_fixture_line_is_enriched() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_pipeline(
        dir.path(),
        &format!(
            "name = \"enrich-all\"\n[source]\ntype = \"file\"\npath = {log}\n{stages}\
             [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n",
            log = toml_path(&fixture("logs/apache_combined_sample.log")),
            stages = stages()
        ),
    );
    let report = run_pipeline_file(&file).unwrap();
    assert_eq!((report.read, report.written, report.dead_lettered), (500, 500, 0));
    let docs = read_ndjson(&dir.path().join("out.ndjson"));
    assert_eq!(docs.len(), 500);

    // Visitor ids: equal exactly when address and user agent are.
    let mut by_client: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
    for doc in &docs {
        by_client
            .entry(agent_and_ip(doc))
            .or_default()
            .insert(doc["visitor"]["id"].as_str().unwrap().to_string());
    }
    assert!(by_client.values().all(|ids| ids.len() == 1));
    let distinct_ids: BTreeSet<&String> = by_client.values().flatten().collect();
    assert_eq!(distinct_ids.len(), by_client.len());

    for doc in &docs {
        let (agent, ip) = agent_and_ip(doc);
        let bot = doc["user_agent"]["bot"].as_bool();
        if agent.is_empty() || agent == "-" {
            // `-` is not a user agent: log-parse leaves it out, so nothing is derived.
            assert!(doc["user_agent"].is_null(), "{doc}");
            continue;
        }
        // Independent of the module's rules: these agents say what they are.
        let lower = agent.to_lowercase();
        if ["googlebot", "msnbot", "bingbot", "spider", "archive.org_bot"].iter().any(|w| lower.contains(w)) {
            assert_eq!(bot, Some(true), "{agent}");
        }
        if agent.starts_with("Mozilla/5.0 (") && !lower.contains("bot") && !lower.contains("compatible") {
            assert_eq!(bot, Some(false), "{agent}");
            assert!(doc["user_agent"]["name"].is_string(), "a browser is named: {doc}");
        }
        // The table's Google and Microsoft blocks, by prefix.
        let country = doc["client"]["geo"]["country_iso_code"].as_str();
        let owner = doc["client"]["as"]["organization"]["name"].as_str();
        if ip.starts_with("66.249.") {
            assert_eq!((country, owner), (Some("US"), Some("Google LLC")), "{doc}");
        } else if ip.starts_with("65.55.") {
            assert_eq!(owner, Some("Microsoft Corporation"), "{doc}");
        } else if ip.starts_with("144.76.") {
            assert_eq!(country, Some("DE"), "{doc}");
        }
        let path = doc["url"]["path"].as_str().unwrap();
        let last = path.rsplit('/').next().unwrap();
        match last.rsplit_once('.') {
            Some((stem, ext))
                if !stem.is_empty() && !ext.is_empty() && ext.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                assert_eq!(doc["url"]["extension"].as_str(), Some(ext.to_lowercase().as_str()), "{doc}")
            }
            _ => assert!(doc["url"]["extension"].is_null(), "{doc}"),
        }
    }
    let located = docs.iter().filter(|d| d["client"]["geo"].is_object()).count();
    assert!(located >= 100, "the sample table covers the fixture's crawlers and hosters: {located}");
}

#[test]
fn bad_lines_are_indexed_or_dead_lettered_never_lost() {
    let emulator = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(fixture("logs/apache_combined_sample.log")).unwrap();
    let good: Vec<&str> = good.lines().take(40).collect();
    let mut input: Vec<u8> = Vec::new();
    for (i, line) in good.iter().enumerate() {
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
        match i % 8 {
            0 => input.extend_from_slice(b"this is not an access log line\n"),
            1 => input.extend_from_slice(&line.as_bytes()[..line.len() / 2]),
            2 => input.extend_from_slice(&[0xff, 0xfe, 0x00, 0x9c, 0x80]),
            3 => input.extend_from_slice(&vec![b'x'; 1 << 20]),
            4 => input.extend_from_slice(b"   "),
            _ => continue,
        }
        input.push(b'\n');
    }
    input.extend_from_slice(b"\n\n");
    std::fs::write(dir.path().join("in.log"), &input).unwrap();
    let file = write_pipeline(
        dir.path(),
        &format!(
            "name = \"bad-lines\"\n[source]\ntype = \"file\"\npath = \"in.log\"\n{stages}\
             [sink]\ntype = \"opensearch\"\nhosts = [\"{url}\"]\nindex = \"bad-lines\"\nflush_interval_ms = 100\n\
             [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            stages = stages(),
            url = emulator.url
        ),
    );
    let report = run_pipeline_file(&file).unwrap();
    let dead = read_ndjson(&dir.path().join("dead.ndjson"));
    let indexed = emulator.count("bad-lines");
    assert_eq!(report.read, report.written + report.dead_lettered, "{report:?}");
    assert_eq!(indexed, 40, "every good line is indexed once");
    assert_eq!(report.written, 40);
    assert_eq!(dead.len() as u64, report.dead_lettered);
    let kinds: BTreeSet<&str> = dead.iter().map(|d| d["error"]["kind"].as_str().unwrap()).collect();
    for kind in ["invalid-utf8", "truncated", "too-long"] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }
    assert!(dead.iter().all(|d| d["stage"] == "parse" || d["stage"] == "source"), "{dead:?}");
}

/// Lines with a unique request path each, `/item/N`.
fn numbered_lines(from: u64, count: u64) -> String {
    (from..from + count)
        .map(|n| {
            format!(
                "192.0.2.{} - - [17/May/2015:10:{:02}:{:02} +0000] \"GET /item/{n} HTTP/1.1\" 200 {n} \"-\" \"Mozilla/5.0 (X11; Linux x86_64; rv:26.0) Gecko/20100101 Firefox/26.0\"\n",
                n % 250,
                (n / 60) % 60,
                n % 60
            )
        })
        .collect()
}

fn kafka_pipeline(dir: &std::path::Path, hosts: &str) -> std::path::PathBuf {
    write_pipeline(
        dir,
        &format!(
            "name = \"weblogs-search\"\n[source]\ntype = \"kafka\"\ntopics = [\"weblogs\"]\ncommit_interval_ms = 200\n\
             [source.options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
             [batch]\nmax_records = 200\nlinger_ms = 10\n{stages}\
             [sink]\ntype = \"opensearch\"\nhosts = [{hosts}]\nindex = \"weblogs\"\nmax_docs = 300\nflush_interval_ms = 100\n\
             retry_initial_ms = 50\nretry_max_ms = 500\n\
             [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
            stages = stages()
        ),
    )
}

/// POSTs `body` as text lines until the engine acknowledges it.
fn post_lines(http: &reqwest::blocking::Client, url: &str, body: String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent =
            http.post(url).bearer_auth(TOKEN).header("content-type", "text/plain").body(body.clone()).send();
        if matches!(&sent, Ok(r) if r.status() == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "ingest never accepted the lines: {sent:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_mid_stream_leaves_each_line_in_the_index_once() {
    let emulator = Emulator::start();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("weblogs", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = kafka_pipeline(dir.path(), &format!("\"{}\"", emulator.url));
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("engine.log");
    let args = ["--brokers", bootstrap.as_str()];
    let start = || Engine::start_on(SLUICE, &listen, &[&pipeline], &args, &log);

    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicUsize::new(0));
    let url = format!("http://{listen}/ingest/weblogs");
    let client = {
        let (stop, posted) = (stop.clone(), posted.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
            let mut next = 0;
            while !stop.load(Ordering::Relaxed) {
                post_lines(&http, &url, numbered_lines(next, 50));
                next += 50;
                posted.store(next as usize, Ordering::Relaxed);
                // A steady stream, not a flood: the check below reads the
                // whole index back in one search (at most 10,000 hits).
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    let mut engine = start();
    for pause in [700, 1100, 500, 900] {
        std::thread::sleep(Duration::from_millis(pause));
        assert!(!engine.signal("KILL").success());
        engine = start();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();

    // A request retried after a crash may put its lines in the topic
    // twice, at other offsets: those are two records. Each record of the
    // topic must be in the index exactly once.
    let in_topic = read_topic(&bootstrap, "weblogs");
    assert!(in_topic.len() >= posted.load(Ordering::Relaxed), "acknowledged lines are in the topic");
    let deadline = Instant::now() + Duration::from_secs(90);
    while emulator.count("weblogs") < in_topic.len() as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(engine.signal("TERM").success());
    assert_eq!(emulator.count("weblogs"), in_topic.len() as u64, "each record of the topic indexed once");
    let found = emulator.get(&format!("/weblogs/_search?size={}", in_topic.len()));
    let ids: BTreeSet<String> = found["hits"]["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("unexpected search response: {found}"))
        .iter()
        .map(|hit| hit["_id"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> =
        in_topic.iter().map(|r| format!("weblogs-{}-{}", r.partition, r.offset)).collect();
    assert_eq!(ids, expected, "document ids are the records' topic-partition-offset");
    println!("{} records indexed once across 4 SIGKILLs", in_topic.len());
}

#[test]
fn a_cluster_that_is_down_pauses_the_pipeline_and_nothing_is_dropped() {
    let (url, seen, down) = switchable_bulk_server();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("weblogs", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = kafka_pipeline(dir.path(), &format!("\"{url}\""));
    let log = dir.path().join("engine.log");
    let engine = Engine::start(SLUICE, &[&pipeline], &["--brokers", bootstrap.as_str()], &log);
    let http = reqwest::blocking::Client::new();
    let ingest = format!("{}/ingest/weblogs", engine.url);

    down.store(true, Ordering::Relaxed);
    for chunk in 0..20 {
        post_lines(&http, &ingest, numbered_lines(chunk * 100, 100));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().is_empty() {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(Instant::now() < deadline, "no _bulk request within 30 s; engine log:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let during: Vec<Vec<String>> = seen.lock().unwrap().clone();
    assert!(
        during.len() >= 2,
        "the sink keeps retrying while the cluster is down: {} requests",
        during.len()
    );
    // The failing requests (at most max_in_flight = 2) are retried as they
    // were; the sink takes nothing new meanwhile, so the pipeline stops
    // reading (the Kafka consumer pauses behind the bounded channels)
    // instead of buffering the topic.
    let distinct: BTreeSet<&Vec<String>> = during.iter().collect();
    assert!(
        distinct.len() <= 2,
        "while the cluster is down only the requests in flight are retried: {} different ones",
        distinct.len()
    );
    for request in &distinct {
        assert!(request.len() < 300 + 200, "one flush: under max_docs + one batch ({})", request.len());
    }
    // Pending documents: those of the requests being retried and any
    // buffered behind them; never more than were sent.
    let pending = engine.metric("sluice_sink_pending_items", &[]);
    assert!((1.0..=2000.0).contains(&pending), "pending documents during the outage: {pending}");

    down.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    let indexed = loop {
        let indexed: BTreeSet<String> =
            seen.lock().unwrap().iter().skip(during.len()).flatten().cloned().collect();
        if indexed.len() >= 2000 || Instant::now() > deadline {
            break indexed;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(indexed.len(), 2000, "every line arrives once the cluster is back");
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.metric("sluice_sink_pending_items", &[]) != 0.0 {
        let pending = engine.metric("sluice_sink_pending_items", &[]);
        assert!(
            Instant::now() < deadline,
            "documents still counted pending after all were indexed: {pending}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(engine.signal("TERM").success());
    assert!(!dir.path().join("dead.ndjson").exists(), "nothing was dead-lettered for an outage");
}

/// A `_bulk` endpoint answering 503 while `down` is set, and accepting
/// every document otherwise.
fn switchable_bulk_server() -> (String, BulkRequests, Arc<AtomicBool>) {
    let down = Arc::new(AtomicBool::new(false));
    let is_down = down.clone();
    let (url, requests) = scripted_bulk(move |_, ids| {
        if is_down.load(Ordering::Relaxed) {
            let blocked = r#"{"error":{"type":"cluster_block_exception","reason":"blocked by: [SERVICE_UNAVAILABLE/1/state not recovered]"},"status":503}"#;
            return (503, blocked.to_string());
        }
        (200, all_created(ids))
    });
    (url, requests, down)
}
