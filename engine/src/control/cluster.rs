//! Who is in the cluster and who reads what: every engine writes its
//! member record (`member/{id}`: address, version, start time, and per
//! pipeline the Kafka partitions it owns with their lag) every few
//! seconds, and deletes it when it stops; in a cluster these records go to
//! a topic of their own with ten minutes' retention
//! (`sluice.NAME.members`). `GET /api/cluster` reads them back. A member whose record has not been
//! refreshed for [`MEMBER_EXPIRES`] is shown as gone; its record is
//! deleted a minute later.
//!
//! Each pipeline's consumer group is also watched by one engine (the live
//! one with the lowest id): a member of the group that no live engine
//! claims, silent for longer than the group session, is removed (see
//! [`crate::kafka::group`]) and the group made to assign again. Apache
//! Kafka's coordinator would have dropped it by then; tansu 0.6 keeps it
//! and goes on assigning it partitions that nobody reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::supervisor::Supervisor;
use crate::pipeline::stats::GroupMember;

pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// How often the consumer groups are watched.
const WATCH_EVERY: Duration = Duration::from_secs(1);
pub const MEMBER_EXPIRES: Duration = Duration::from_secs(10);

/// What the consumer-group watch remembers between rounds.
#[derive(Default)]
pub(super) struct GroupWatch {
    /// Group members no engine claims, by group, and when this engine
    /// first saw each.
    unclaimed_members: Mutex<HashMap<(String, String), i64>>,
    /// Since when a pipeline's partitions have had no owner, as last seen.
    orphaned_since: Mutex<BTreeMap<String, Instant>>,
    /// When this engine last made a pipeline's group assign again.
    last_rejoin: Mutex<BTreeMap<String, Instant>>,
}

/// What an engine says of itself in the shared state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemberRecord {
    id: String,
    address: String,
    version: String,
    started_at_ms: i64,
    heartbeat_at_ms: i64,
    pipelines: BTreeMap<String, PipelineRecord>,
}

impl MemberRecord {
    /// The partitions it owns, without their lag.
    fn owned(&self) -> Vec<(String, String, i32)> {
        self.pipelines
            .iter()
            .flat_map(|(name, p)| {
                p.partitions
                    .iter()
                    .map(move |(topic, partition, _)| (name.clone(), topic.clone(), *partition))
            })
            .collect()
    }
}

/// What a member says of one pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PipelineRecord {
    /// Its membership in the pipeline's consumer group.
    group: Option<GroupMember>,
    /// The partitions it owns: (topic, partition, lag).
    partitions: Vec<(String, i32, Option<i64>)>,
}

/// Slack on top of two heartbeats before an engine's record is not current.
const REAP_GRACE: Duration = Duration::from_secs(1);

/// How long partitions may stay without an owner before the group is made
/// to assign again (a rebalance leaves them so for a moment).
const ORPHANED_FOR: Duration = Duration::from_secs(2);

/// How long a rejoin gets to take effect before another.
const REJOIN_AGAIN_AFTER: Duration = Duration::from_secs(4);

/// How long a gone member's record stays, shown as gone.
const GONE_KEPT: Duration = Duration::from_secs(60);

/// One engine of the cluster.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberView {
    pub id: String,
    /// Where its API and ingest listen.
    pub address: String,
    pub version: String,
    pub uptime_seconds: u64,
    /// Seconds since it last wrote its record.
    pub last_seen_seconds: u64,
    /// Whether it wrote its record within the last few seconds.
    pub alive: bool,
    /// This is the engine that answered.
    pub this_engine: bool,
}

/// A partition of a pipeline's source and who reads it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartitionView {
    pub topic: String,
    pub partition: i32,
    pub member: String,
    /// Records behind the end of the partition, when known.
    pub lag: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PipelinePartitions {
    pub pipeline: String,
    pub partitions: Vec<PartitionView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterView {
    /// The cluster's name; none for an engine running on its own.
    pub cluster: Option<String>,
    pub members: Vec<MemberView>,
    pub pipelines: Vec<PipelinePartitions>,
}

impl Supervisor {
    /// Writes this engine's member record now and every
    /// [`HEARTBEAT_EVERY`] until the engine stops, then deletes it.
    pub fn announce(self: &Arc<Self>, address: String) {
        if self.store.cluster().is_none() {
            *self.address.lock().unwrap_or_else(|e| e.into_inner()) = address;
            return;
        }
        *self.address.lock().unwrap_or_else(|e| e.into_inner()) = address;
        let supervisor = Arc::downgrade(self);
        let stop = self.shutdown.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(WATCH_EVERY);
            let mut last_written: Option<tokio::time::Instant> = None;
            let mut last_owned = Vec::new();
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop.cancelled() => break,
                }
                let Some(this) = supervisor.upgrade() else { return };
                let record = this.member_record();
                // A new assignment is published at once: the group watch
                // must not take partitions in flux for partitions unowned.
                let owned = record.owned();
                if owned != last_owned
                    || last_written.is_none_or(|at| at.elapsed() >= HEARTBEAT_EVERY - WATCH_EVERY / 2)
                {
                    let store = this.store.clone();
                    let key = format!("member/{}", record.id);
                    match tokio::task::spawn_blocking(move || store.put(&key, &record)).await {
                        Ok(Ok(())) => {
                            last_written = Some(tokio::time::Instant::now());
                            last_owned = owned;
                        }
                        Ok(Err(error)) => {
                            tracing::warn!("cannot write this engine's member record: {error:#}")
                        }
                        Err(_) => {}
                    }
                }
                // Only while this engine's own record was read back lately:
                // then it reads the shared state up to about now, and
                // others' silence is real, not this engine lagging behind.
                if last_written.is_some_and(|at| at.elapsed() <= HEARTBEAT_EVERY + WATCH_EVERY) {
                    let watcher = this.clone();
                    let _ = tokio::task::spawn_blocking(move || watcher.watch_groups()).await;
                }
            }
            if let Some(this) = supervisor.upgrade() {
                let store = this.store.clone();
                let key = format!("member/{}", crate::identity::engine_id());
                let _ = tokio::task::spawn_blocking(move || store.delete(&key)).await;
            }
        });
    }

    /// Watches each pipeline's consumer group (see the module's doc):
    /// removes members whose engines are gone, makes the group assign
    /// partitions left without an owner, and forgets records gone long
    /// enough.
    fn watch_groups(&self) {
        let now = crate::record::now_millis();
        let records: Vec<(String, MemberRecord)> = self.store.scan::<MemberRecord>("member/");
        for (key, record) in &records {
            if now - record.heartbeat_at_ms > GONE_KEPT.as_millis() as i64 {
                let _ = self.store.delete(key);
            }
        }
        let Some(bootstrap) = self.env.bootstrap.clone() else { return };
        let this = self.member_record();
        let records: Vec<MemberRecord> =
            records.into_iter().map(|(_, r)| r).filter(|r| r.id != this.id).chain([this.clone()]).collect();
        for (pipeline, own) in &this.pipelines {
            let Some(GroupMember { group, member_id: own_member, session_timeout_ms }) = &own.group else {
                continue;
            };
            let session = *session_timeout_ms as i64;
            // One engine acts for the group: the lowest id among those whose
            // record is current and who run the pipeline.
            let current = (2 * HEARTBEAT_EVERY + REAP_GRACE).as_millis() as i64;
            let actor = records
                .iter()
                .filter(|r| now - r.heartbeat_at_ms <= current)
                .filter(|r| r.pipelines.get(pipeline).is_some_and(|p| p.group.is_some()))
                .map(|r| &r.id)
                .min();
            if actor != Some(&this.id) {
                continue;
            }
            let members = match crate::kafka::group::members(&bootstrap, group) {
                Ok(members) => members,
                Err(error) => {
                    tracing::debug!(group = %group, "cannot list the group's members: {error:#}");
                    continue;
                }
            };
            tracing::debug!(pipeline = %pipeline, group = %group, ?members, "watching the group");
            self.group_watch
                .unclaimed_members
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(g, member), _| g != group || members.contains(member));
            let mut removed = 0;
            for member in members.iter().filter(|m| *m != own_member) {
                let published = records.iter().find(|r| {
                    r.pipelines
                        .get(pipeline)
                        .and_then(|p| p.group.as_ref())
                        .is_some_and(|g| &g.member_id == member)
                });
                let silent = match published {
                    // Its engine stopped writing its record.
                    Some(record) => now - record.heartbeat_at_ms,
                    // No engine claims it (e.g. an earlier run of a restarted
                    // engine): silent since this engine first saw it.
                    None => {
                        let mut unclaimed =
                            self.group_watch.unclaimed_members.lock().unwrap_or_else(|e| e.into_inner());
                        now - *unclaimed.entry((group.clone(), member.clone())).or_insert(now)
                    }
                };
                // Measured from its engine's last record, written up to a
                // heartbeat before it died: the session has ended by then.
                if silent <= session {
                    continue;
                }
                match crate::kafka::group::remove_member(&bootstrap, group, member) {
                    Ok(_) => {
                        removed += 1;
                        let engine = published.map_or("none", |r| r.id.as_str());
                        tracing::warn!(pipeline = %pipeline, group = %group, member = %member, engine = %engine, "a group member whose engine is gone: removed it, so its partitions move on");
                    }
                    Err(error) => tracing::debug!(group = %group, "cannot remove a gone member: {error:#}"),
                }
            }
            // The coordinator may not rebalance after a removal, and may
            // assign partitions to a member it then drops (tansu 0.6 does
            // both): rejoining makes it assign every partition again.
            let owned: BTreeSet<(String, i32)> = records
                .iter()
                .filter(|r| now - r.heartbeat_at_ms <= current)
                .filter_map(|r| r.pipelines.get(pipeline))
                .flat_map(|p| p.partitions.iter().map(|(topic, partition, _)| (topic.clone(), *partition)))
                .collect();
            let unowned = self
                .get(pipeline)
                .map(|m| {
                    m.stats
                        .known_partitions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .difference(&owned)
                        .count()
                })
                .unwrap_or(0);
            let orphaned_for = {
                let mut since = self.group_watch.orphaned_since.lock().unwrap_or_else(|e| e.into_inner());
                match unowned {
                    0 => {
                        since.remove(pipeline);
                        Duration::ZERO
                    }
                    _ => since.entry(pipeline.clone()).or_insert_with(std::time::Instant::now).elapsed(),
                }
            };
            if (removed > 0 || orphaned_for >= ORPHANED_FOR) && self.rejoin(pipeline) {
                tracing::warn!(pipeline = %pipeline, group = %group, unowned, removed, "making the group assign every partition again");
            }
        }
    }

    /// Has this engine's consumer of `pipeline` leave and rejoin its group,
    /// at most once per [`REJOIN_AGAIN_AFTER`]. Returns whether it asked.
    fn rejoin(&self, pipeline: &str) -> bool {
        let mut last = self.group_watch.last_rejoin.lock().unwrap_or_else(|e| e.into_inner());
        if last.get(pipeline).is_some_and(|at| at.elapsed() < REJOIN_AGAIN_AFTER) {
            return false;
        }
        let Some(managed) = self.get(pipeline) else { return false };
        managed.stats.rejoin_requested.store(true, std::sync::atomic::Ordering::Relaxed);
        last.insert(pipeline.to_string(), Instant::now());
        // What the new assignment leaves unowned is timed afresh.
        self.group_watch.orphaned_since.lock().unwrap_or_else(|e| e.into_inner()).remove(pipeline);
        true
    }

    fn member_record(&self) -> MemberRecord {
        let now = crate::record::now_millis();
        MemberRecord {
            id: crate::identity::engine_id().to_string(),
            address: self.address.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at_ms: self.started_at_ms,
            heartbeat_at_ms: now,
            pipelines: self
                .list()
                .into_iter()
                .map(|m| {
                    let group = m.stats.group_member.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    (m.name.clone(), PipelineRecord { group, partitions: m.stats.owned_partitions() })
                })
                .filter(|(_, record)| record.group.is_some() || !record.partitions.is_empty())
                .collect(),
        }
    }

    /// The cluster this engine belongs to, if any.
    pub fn cluster_name(&self) -> Option<&str> {
        self.store.cluster()
    }

    /// The members and who owns which partitions, as the shared state says
    /// (this engine's own record is fresh).
    pub fn cluster_view(&self) -> ClusterView {
        let now = crate::record::now_millis();
        let this = self.member_record();
        let mut records: Vec<MemberRecord> = self
            .store
            .scan::<MemberRecord>("member/")
            .into_iter()
            .map(|(_, record)| record)
            .filter(|record| record.id != this.id)
            .collect();
        records.push(this.clone());
        records.sort_by(|a, b| a.id.cmp(&b.id));
        let seconds = |ms: i64| (ms.max(0) / 1000) as u64;
        let members = records
            .iter()
            .map(|r| {
                let since = now - r.heartbeat_at_ms;
                MemberView {
                    id: r.id.clone(),
                    address: r.address.clone(),
                    version: r.version.clone(),
                    uptime_seconds: seconds(now - r.started_at_ms),
                    last_seen_seconds: seconds(since),
                    alive: since <= MEMBER_EXPIRES.as_millis() as i64,
                    this_engine: r.id == this.id,
                }
            })
            .collect();
        let mut pipelines: BTreeMap<String, Vec<PartitionView>> =
            self.list().into_iter().map(|m| (m.name.clone(), Vec::new())).collect();
        for record in records.iter().filter(|r| now - r.heartbeat_at_ms <= MEMBER_EXPIRES.as_millis() as i64)
        {
            for (pipeline, pipeline_record) in &record.pipelines {
                pipelines.entry(pipeline.clone()).or_default().extend(pipeline_record.partitions.iter().map(
                    |(topic, partition, lag)| PartitionView {
                        topic: topic.clone(),
                        partition: *partition,
                        member: record.id.clone(),
                        lag: *lag,
                    },
                ));
            }
        }
        ClusterView {
            cluster: self.store.cluster().map(str::to_string),
            members,
            pipelines: pipelines
                .into_iter()
                .map(|(pipeline, mut partitions)| {
                    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                    PipelinePartitions { pipeline, partitions }
                })
                .collect(),
        }
    }
}
