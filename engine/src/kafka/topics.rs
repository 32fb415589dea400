//! Creating the topics sluice itself keeps things in (cluster state,
//! module bytes, dead letters), with the settings they need.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

/// A topic to create if it does not exist.
pub struct TopicSpec<'a> {
    pub name: &'a str,
    pub partitions: i32,
    /// Topic configs, e.g. `cleanup.policy = compact`.
    pub config: &'a [(&'a str, &'a str)],
}

/// Creates the topics that do not exist yet, each replicated to as many
/// brokers as there are, up to three. Blocking.
pub fn ensure_topics(bootstrap: &str, topics: &[TopicSpec<'_>]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("cannot create an admin client")?;
    let brokers = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| format!("cannot reach the brokers at {bootstrap}"))?
        .brokers()
        .len()
        .clamp(1, 3) as i32;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|spec| {
            spec.config.iter().fold(
                NewTopic::new(spec.name, spec.partitions, TopicReplication::Fixed(brokers)),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    let results =
        futures_executor::block_on(admin.create_topics(&new, &options)).context("cannot create topics")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("cannot create topic `{topic}`: {code}"),
        }
    }
    Ok(())
}
