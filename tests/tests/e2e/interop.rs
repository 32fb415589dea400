//! Other Kafka clients and sluice understand each other: records written
//! by Python's kafka-python are consumed with their keys and headers, what
//! sluice produces is readable by kafka-python, and a Kafka dead-letter
//! topic carries the original record with the error in `sluice.*` headers.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::broker::{Tansu, read_topic};
use sluice_tests::engine::Engine;
use sluice_tests::guest;

use super::{SLUICE, toml_path, write_pipeline};

const PRODUCE: &str = r#"
import json, sys
from kafka import KafkaProducer
producer = KafkaProducer(bootstrap_servers=sys.argv[1], acks="all")
for i in range(100):
    value = b"reject" if i == 42 else json.dumps({"id": i}).encode()
    producer.send("in", key=f"k{i}".encode(), value=value, headers=[("h", f"v{i}".encode())])
producer.flush()
"#;

const CONSUME: &str = r#"
import base64, json, sys
from kafka import KafkaConsumer, TopicPartition
consumer = KafkaConsumer(bootstrap_servers=sys.argv[1], enable_auto_commit=False, consumer_timeout_ms=5000)
partitions = [TopicPartition(sys.argv[2], p) for p in consumer.partitions_for_topic(sys.argv[2])]
consumer.assign(partitions)
consumer.seek_to_beginning(*partitions)
for m in consumer:
    print(json.dumps({
        "key": m.key.decode() if m.key is not None else None,
        "value": m.value.decode(),
        "headers": {k: v.decode() for k, v in m.headers},
    }))
"#;

fn python(script: &str, args: &[&str]) -> String {
    let output = Command::new("python3").arg("-c").arg(script).args(args).output().expect("python3");
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn kafka_python_and_sluice_read_each_others_records() {
    let broker = Tansu::start();
    broker.create_topic("in", 3);
    broker.create_topic("out", 3);
    broker.create_topic("dead", 1);
    python(PRODUCE, &[&broker.bootstrap]);

    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name = \"relay\"\n[source]\ntype = \"kafka\"\ntopics = [\"in\"]\nstart_from = \"earliest\"\n\
             [batch]\nlinger_ms = 5\n[[stage]]\nname = \"guard\"\nmodule = {}\n\
             [sink]\ntype = \"kafka\"\ntopic = \"out\"\n[dead_letter]\ntype = \"kafka\"\ntopic = \"dead\"\n",
            toml_path(&guest("hostile"))
        ),
    );
    let engine = Engine::start(
        SLUICE,
        &[&pipeline],
        &["--brokers", &broker.bootstrap],
        &dir.path().join("engine.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_topic(&broker.bootstrap, "out").len() < 99 || read_topic(&broker.bootstrap, "dead").is_empty()
    {
        assert!(Instant::now() < deadline, "records did not arrive; see the engine log");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(engine);

    let out: Vec<Value> = python(CONSUME, &[&broker.bootstrap, "out"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 99);
    for record in &out {
        let id =
            serde_json::from_str::<Value>(record["value"].as_str().unwrap()).unwrap()["id"].as_u64().unwrap();
        assert_eq!(record["key"], format!("k{id}"));
        assert_eq!(record["headers"]["h"], format!("v{id}"));
    }

    let dead: Vec<Value> = python(CONSUME, &[&broker.bootstrap, "dead"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter["key"], "k42", "the original record, as it was");
    assert_eq!(letter["value"], "reject");
    let headers = &letter["headers"];
    assert_eq!(headers["h"], "v42");
    assert_eq!(headers["sluice.pipeline"], "relay");
    assert_eq!(headers["sluice.stage"], "guard");
    assert_eq!(headers["sluice.module"], "hostile.wasm");
    assert_eq!(headers["sluice.module.hash"].as_str().unwrap().len(), 64);
    assert_eq!(headers["sluice.error.kind"], "refused");
    assert_eq!(headers["sluice.error.message"], "the value was `reject`");
    assert_eq!(headers["sluice.source.topic"], "in");
    assert!(headers["sluice.source.offset"].as_str().unwrap().parse::<i64>().is_ok());
    assert!(headers["sluice.time"].as_str().unwrap().ends_with('Z'));
}
