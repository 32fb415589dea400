//! Fencing a partition's earlier owners out of the lake.
//!
//! When a consumer group moves a partition, its old owner may not know yet:
//! an engine that was paused, cut off, or declared dead while still
//! running keeps writing its open file and would rename it into the lake
//! beside the new owner's files, duplicating records. Names are the lake's
//! only state, so the fence is a name too: an empty file
//! `{topic root}/_fences/{partition}/{generation}+w{writer}` that each owner
//! creates when the group assigns it the partition, with the group's
//! generation (which only grows). The highest (generation, writer) owns the
//! partition.
//!
//! The protocol, and why it is enough:
//! 1. A new owner raises its fence, then deletes every other writer's
//!    hidden file of the partition, then lists the committed files.
//! 2. Every owner checks that its fence still stands after closing a file
//!    and before renaming it; a fenced owner deletes its file instead, and
//!    its records stay unacknowledged (the group's owner reads them again).
//!
//! An old owner's rename either comes before the new owner's deletions,
//! and the new owner's listing sees the file; or after, and the file it
//! would rename was deleted, unless the old owner created it after the
//! fence went up, in which case its check sees the fence. Either way no
//! offset lands twice.
//!
//! Sources without a group (files, manually assigned partitions) have one
//! owner per partition and no generation: no fence is raised.

use crate::storage::{Storage, join};

/// One owner's claim on a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    dir: String,
    generation: i32,
    writer: String,
}

impl Fence {
    /// Claims `partition` for `writer` in `generation`, and removes the
    /// claims it supersedes. The claim may already be beaten by a later
    /// generation: ask [`Fence::stands`].
    pub async fn raise(
        storage: &dyn Storage,
        topic_root: &str,
        partition: i32,
        generation: i32,
        writer: &str,
    ) -> anyhow::Result<Fence> {
        // Hidden from lake readers, as Hive and Spark skip `_` names.
        let dir = join(&join(topic_root, "_fences"), &partition.to_string());
        let fence = Fence { dir, generation, writer: writer.to_string() };
        let claims = fence.claims(storage).await?;
        if claims.iter().any(|(g, w)| (*g, w.as_str()) > fence.key()) {
            return Ok(fence); // assigned in an older generation, fenced already
        }
        if !claims.iter().any(|(g, w)| (*g, w.as_str()) == fence.key()) {
            storage.create(&join(&fence.dir, &fence.name())).await?.finish().await?;
        }
        for (claim_generation, claim_writer) in claims {
            if (claim_generation, claim_writer.as_str()) < fence.key() {
                storage.delete(&join(&fence.dir, &name(claim_generation, &claim_writer))).await?;
            }
        }
        Ok(fence)
    }

    /// Whether this claim is still the partition's highest.
    pub async fn stands(&self, storage: &dyn Storage) -> anyhow::Result<bool> {
        let highest = self.claims(storage).await?.into_iter().max();
        Ok(highest.is_none_or(|(generation, writer)| (generation, writer.as_str()) <= self.key()))
    }

    /// Who holds the partition now, for messages.
    pub async fn holder(&self, storage: &dyn Storage) -> String {
        match self.claims(storage).await.ok().and_then(|claims| claims.into_iter().max()) {
            Some((generation, writer)) => format!("writer {writer} in generation {generation}"),
            None => "nobody".into(),
        }
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    fn key(&self) -> (i32, &str) {
        (self.generation, &self.writer)
    }

    fn name(&self) -> String {
        name(self.generation, &self.writer)
    }

    async fn claims(&self, storage: &dyn Storage) -> anyhow::Result<Vec<(i32, String)>> {
        Ok(storage.list(&self.dir).await?.iter().filter_map(|file| parse(file.name())).collect())
    }
}

fn name(generation: i32, writer: &str) -> String {
    format!("{generation:010}+w{writer}")
}

fn parse(name: &str) -> Option<(i32, String)> {
    let (generation, writer) = name.split_once("+w")?;
    Some((generation.parse().ok()?, writer.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_latest_generation_stands_and_earlier_claims_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let storage =
            crate::storage::open(dir.path().to_str().unwrap(), dir.path(), &Default::default()).unwrap();
        let old = Fence::raise(&*storage, "topics/t", 3, 7, "aaaa").await.unwrap();
        assert!(old.stands(&*storage).await.unwrap());
        // Raising the same claim again (a second recovery) changes nothing.
        let again = Fence::raise(&*storage, "topics/t", 3, 7, "aaaa").await.unwrap();
        assert!(again.stands(&*storage).await.unwrap());
        let new = Fence::raise(&*storage, "topics/t", 3, 8, "bbbb").await.unwrap();
        assert!(new.stands(&*storage).await.unwrap());
        assert!(!old.stands(&*storage).await.unwrap(), "generation 7 is fenced by 8");
        assert_eq!(old.holder(&*storage).await, "writer bbbb in generation 8");
        // A late recovery of the old generation does not take it back.
        let late = Fence::raise(&*storage, "topics/t", 3, 7, "aaaa").await.unwrap();
        assert!(!late.stands(&*storage).await.unwrap());
        assert!(new.stands(&*storage).await.unwrap());
        let names: Vec<String> =
            storage.list("topics/t/_fences/3").await.unwrap().iter().map(|f| f.name().to_string()).collect();
        assert_eq!(names, ["0000000008+wbbbb"]);
        // Other partitions are not affected.
        let other = Fence::raise(&*storage, "topics/t", 4, 1, "aaaa").await.unwrap();
        assert!(other.stands(&*storage).await.unwrap());
    }
}
