//! The recent dead letters of a pipeline that the API can browse and
//! replay without reading the dead-letter destination back.
//!
//! Bounded twice: at most [`DEAD_LETTERS_KEPT`] letters and
//! [`DEAD_LETTER_BYTES_KEPT`] bytes of records; the oldest go first. A
//! record too large to keep whole is kept cut, with `truncated` set, and
//! cannot be replayed from here (the destination has it whole).
//!
//! With a file, the log survives restarts: each letter is appended as one
//! JSON line, replays as a line listing ids, and the file is rewritten from
//! what is kept when it grows to twice the cap. A torn last line (a crash
//! mid-write) is skipped when the file is read back.
//!
//! In a cluster the log is shared instead: letters and replays are
//! published to a [`DeadLetterJournal`] (a Kafka topic every engine reads)
//! and come back to every engine's log through [`DeadLetterLog::apply`],
//! ids included, so any engine lists and replays any pipeline's letters.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use futures_util::future::{BoxFuture, FutureExt as _, try_join_all};
use serde::Serialize;

use super::dead_letter::{DeadLetter, ModuleRef};
use crate::record::{Origin, Record};
use crate::wasm::FailureKind;

/// Dead letters kept per pipeline for the API and dashboard to browse.
pub const DEAD_LETTERS_KEPT: usize = 1000;
/// Bytes of records kept per pipeline.
pub const DEAD_LETTER_BYTES_KEPT: usize = 32 << 20;
/// A record larger than this is kept cut to [`TRUNCATED_TO`].
const LARGEST_KEPT_WHOLE: usize = DEAD_LETTER_BYTES_KEPT / 16;
const TRUNCATED_TO: usize = 64 << 10;

/// A dead letter as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedDeadLetter {
    /// Unique within the pipeline, increasing (across restarts too).
    pub id: u64,
    pub replayed: bool,
    /// The record's value was too large to keep whole.
    pub truncated: bool,
    #[serde(flatten)]
    pub envelope: serde_json::Value,
    #[serde(skip)]
    pub letter: DeadLetter,
}

#[derive(Default)]
pub struct DeadLetterLog {
    inner: Mutex<Inner>,
    /// Kept but not yet replayed.
    pending: AtomicU64,
    /// Where a shared log publishes (none: this engine's own log).
    journal: Option<Arc<dyn DeadLetterJournal>>,
}

/// Where a shared log's changes go; every engine's log gets them back
/// through [`DeadLetterLog::apply`], each letter with its id.
pub trait DeadLetterJournal: Send + Sync {
    /// Publishes `entry`, a letter or a `{"replayed": [ids]}` mark.
    fn publish(&self, pipeline: &str, entry: serde_json::Value) -> Published;
}

/// A publish in flight: done once the journal holds the entry for good.
pub type Published = BoxFuture<'static, anyhow::Result<()>>;

#[derive(Default)]
struct Inner {
    recent: VecDeque<LoggedDeadLetter>,
    bytes: usize,
    next_id: u64,
    pipeline: String,
    file: Option<LogFile>,
}

struct LogFile {
    path: PathBuf,
    writer: std::fs::File,
    written: usize,
}

impl DeadLetterLog {
    /// A log kept in memory only.
    pub fn in_memory(pipeline: &str) -> Self {
        let log = DeadLetterLog::default();
        log.lock().pipeline = pipeline.to_string();
        log
    }

    /// A log shared through `journal`; filled by [`DeadLetterLog::apply`].
    pub fn shared(pipeline: &str, journal: Arc<dyn DeadLetterJournal>) -> Self {
        let mut log = DeadLetterLog::in_memory(pipeline);
        log.journal = Some(journal);
        log
    }

    /// Takes an entry read back from the journal: a letter, which gets `id`,
    /// or a replay mark.
    pub fn apply(&self, mut entry: serde_json::Value, id: u64) {
        let mut inner = self.lock();
        if let Some(ids) = entry.get("replayed").and_then(|r| r.as_array()) {
            let ids: Vec<u64> = ids.iter().filter_map(|i| i.as_u64()).collect();
            let marked = inner.mark(&ids);
            self.pending.fetch_sub(marked.len() as u64, Ordering::Relaxed);
            return;
        }
        entry["id"] = id.into();
        entry["replayed"] = false.into();
        let Some(logged) = decode(&entry, &inner.pipeline.clone()) else {
            tracing::warn!(pipeline = %inner.pipeline, id, "an unreadable shared dead letter: skipped");
            return;
        };
        inner.next_id = inner.next_id.max(id + 1);
        self.pending.fetch_add(1, Ordering::Relaxed);
        let dropped = inner.keep(logged);
        self.pending.fetch_sub(dropped, Ordering::Relaxed);
    }

    /// A log kept in `path`, with what an earlier run left there.
    pub fn open(pipeline: &str, path: &Path) -> anyhow::Result<Self> {
        let log = DeadLetterLog::in_memory(pipeline);
        if let Ok(text) = std::fs::read_to_string(path) {
            let mut inner = log.lock();
            for line in text.lines() {
                // A torn last line (a crash mid-write) is not valid JSON.
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                if let Some(ids) = entry.get("replayed").and_then(|r| r.as_array()) {
                    let ids: Vec<u64> = ids.iter().filter_map(|i| i.as_u64()).collect();
                    inner.recent.iter_mut().filter(|l| ids.contains(&l.id)).for_each(|l| l.replayed = true);
                } else if let Some(logged) = decode(&entry, pipeline) {
                    inner.next_id = inner.next_id.max(logged.id + 1);
                    inner.keep(logged);
                }
            }
            let pending = inner.recent.iter().filter(|l| !l.replayed).count() as u64;
            log.pending.store(pending, Ordering::Relaxed);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        log.lock().rewrite(path)?;
        Ok(log)
    }

    /// Keeps `letters`. A shared log is done when the journal holds them:
    /// the caller acknowledges the records only after that, so a letter
    /// an engine took cannot vanish from the cluster's list in a crash.
    pub(crate) fn push_all(&self, letters: &[DeadLetter]) -> Published {
        if let Some(journal) = &self.journal {
            let pipeline = self.lock().pipeline.clone();
            let mut published = Vec::with_capacity(letters.len());
            for letter in letters {
                let (letter, truncated) = cut_if_huge(letter);
                let logged = LoggedDeadLetter {
                    id: 0,
                    replayed: false,
                    truncated,
                    envelope: serde_json::Value::Null,
                    letter,
                };
                let mut entry = encode(&logged);
                if let Some(fields) = entry.as_object_mut() {
                    fields.remove("id");
                    fields.remove("replayed");
                }
                published.push(journal.publish(&pipeline, entry));
            }
            return try_join_all(published).map(|done| done.map(drop)).boxed();
        }
        let mut inner = self.lock();
        let mut lines = Vec::new();
        for letter in letters {
            let id = inner.next_id.max(1);
            inner.next_id = id + 1;
            let (letter, truncated) = cut_if_huge(letter);
            let logged = LoggedDeadLetter {
                id,
                replayed: false,
                truncated,
                envelope: letter.envelope(&inner.pipeline),
                letter,
            };
            if inner.file.is_some() {
                lines.extend(serde_json::to_vec(&encode(&logged)).unwrap_or_default());
                lines.push(b'\n');
            }
            self.pending.fetch_add(1, Ordering::Relaxed);
            let dropped = inner.keep(logged);
            self.pending.fetch_sub(dropped, Ordering::Relaxed);
        }
        inner.append(&lines);
        futures_util::future::ready(Ok(())).boxed()
    }

    /// Newest first, at most `limit`, optionally only ids below `before`.
    pub fn list(&self, limit: usize, before: Option<u64>) -> Vec<LoggedDeadLetter> {
        self.lock()
            .recent
            .iter()
            .rev()
            .filter(|l| before.is_none_or(|b| l.id < b))
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn get(&self, id: u64) -> Option<LoggedDeadLetter> {
        self.lock().recent.iter().find(|l| l.id == id).cloned()
    }

    /// Marks letters replayed, so they stop counting as pending; a shared
    /// log is done when the other engines can read the mark.
    pub fn mark_replayed(&self, ids: &[u64]) -> Published {
        let mut inner = self.lock();
        let marked = inner.mark(ids);
        self.pending.fetch_sub(marked.len() as u64, Ordering::Relaxed);
        if let Some(journal) = self.journal.as_ref().filter(|_| !marked.is_empty()) {
            // Marked here at once; the other engines when they read it. The
            // lock is released first: reading our own mark back takes it.
            let pipeline = inner.pipeline.clone();
            drop(inner);
            return journal.publish(&pipeline, serde_json::json!({ "replayed": marked }));
        } else if !marked.is_empty() && inner.file.is_some() {
            let mut line = serde_json::to_vec(&serde_json::json!({ "replayed": marked })).unwrap_or_default();
            line.push(b'\n');
            inner.append(&line);
        }
        futures_util::future::ready(Ok(())).boxed()
    }

    /// Kept dead letters not replayed yet: the dashboard's "DLQ depth".
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Bytes of records kept.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Marks the letters of `ids` not replayed yet; returns their ids.
    fn mark(&mut self, ids: &[u64]) -> Vec<u64> {
        let mut marked = Vec::new();
        for letter in self.recent.iter_mut().filter(|l| ids.contains(&l.id) && !l.replayed) {
            letter.replayed = true;
            marked.push(letter.id);
        }
        marked
    }

    /// Keeps `logged`, letting the oldest go past the caps; returns how
    /// many of those that went were still pending.
    fn keep(&mut self, logged: LoggedDeadLetter) -> u64 {
        self.bytes += logged.letter.record.size();
        self.recent.push_back(logged);
        let mut dropped_pending = 0;
        while self.recent.len() > DEAD_LETTERS_KEPT
            || (self.bytes > DEAD_LETTER_BYTES_KEPT && self.recent.len() > 1)
        {
            let Some(oldest) = self.recent.pop_front() else { break };
            self.bytes -= oldest.letter.record.size();
            dropped_pending += u64::from(!oldest.replayed);
        }
        dropped_pending
    }

    fn append(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let Some(file) = &mut self.file else { return };
        if let Err(error) = file.writer.write_all(bytes) {
            tracing::warn!(file = %file.path.display(), "cannot keep dead letters on disk: {error}");
            return;
        }
        file.written += bytes.len();
        if file.written > 2 * DEAD_LETTER_BYTES_KEPT.max(self.bytes) {
            let path = file.path.clone();
            if let Err(error) = self.rewrite(&path) {
                tracing::warn!(file = %path.display(), "cannot compact the dead-letter log: {error:#}");
            }
        }
    }

    /// Writes what is kept to a new file and puts it in place of `path`.
    fn rewrite(&mut self, path: &Path) -> anyhow::Result<()> {
        let temporary = path.with_extension("ndjson.tmp");
        let mut text = Vec::new();
        for logged in &self.recent {
            text.extend(serde_json::to_vec(&encode(logged))?);
            text.push(b'\n');
        }
        std::fs::write(&temporary, &text).with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))?;
        let writer = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        self.file = Some(LogFile { path: path.to_path_buf(), writer, written: text.len() });
        Ok(())
    }
}

/// A letter whose record is too large to keep whole, cut.
fn cut_if_huge(letter: &DeadLetter) -> (DeadLetter, bool) {
    let mut letter = letter.clone();
    if letter.record.size() <= LARGEST_KEPT_WHOLE {
        return (letter, false);
    }
    letter.record.value = letter.record.value.slice(..letter.record.value.len().min(TRUNCATED_TO));
    letter.record.key = letter.record.key.map(|k| k.slice(..k.len().min(TRUNCATED_TO)));
    letter.record.headers.retain(|h| h.value.len() <= TRUNCATED_TO);
    (letter, true)
}

fn encode(logged: &LoggedDeadLetter) -> serde_json::Value {
    let letter = &logged.letter;
    serde_json::json!({
        "id": logged.id,
        "replayed": logged.replayed,
        "truncated": logged.truncated,
        "stage": letter.stage,
        "module": letter.module.as_ref().map(|m| serde_json::json!({ "name": m.name, "hash": m.hash })),
        "kind": letter.kind.name(),
        "message": letter.message,
        "time_ms": letter.time_ms,
        "origin": letter.record.origin,
        "record": letter.record.to_json(),
    })
}

fn decode(entry: &serde_json::Value, pipeline: &str) -> Option<LoggedDeadLetter> {
    let origin = entry.get("origin")?;
    let origin = Origin {
        source: origin.get("source")?.as_str()?.into(),
        partition: i32::try_from(origin.get("partition")?.as_i64()?).ok()?,
        offset: origin.get("offset")?.as_i64()?,
    };
    let record = Record::from_json(entry.get("record")?, origin)?;
    let module = entry.get("module").and_then(|m| {
        Some(ModuleRef {
            name: m.get("name")?.as_str()?.to_string(),
            hash: m.get("hash")?.as_str()?.to_string(),
        })
    });
    let letter = DeadLetter {
        record,
        stage: entry.get("stage")?.as_str()?.to_string(),
        module,
        kind: FailureKind::from_name(entry.get("kind")?.as_str()?),
        message: entry.get("message")?.as_str()?.to_string(),
        time_ms: entry.get("time_ms")?.as_i64()?,
    };
    Some(LoggedDeadLetter {
        id: entry.get("id")?.as_u64()?,
        replayed: entry.get("replayed")?.as_bool()?,
        truncated: entry.get("truncated").and_then(|t| t.as_bool()).unwrap_or(false),
        envelope: letter.envelope(pipeline),
        letter,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn done(published: Published) {
        futures_executor::block_on(published).expect("kept");
    }

    fn letter(offset: i64, value: Vec<u8>) -> DeadLetter {
        let origin = Origin { source: "t".into(), partition: 0, offset };
        DeadLetter::new(Record::new(value, origin), "parse", FailureKind::Rejected("bad".into()), "nope")
    }

    #[test]
    fn keeps_the_newest_and_counts_pending() {
        let log = DeadLetterLog::in_memory("p");
        for offset in 0..(DEAD_LETTERS_KEPT as i64 + 5) {
            done(log.push_all(&[letter(offset, b"x".to_vec())]));
        }
        assert_eq!(log.pending(), DEAD_LETTERS_KEPT as u64);
        let newest = log.list(2, None);
        assert_eq!(newest[0].letter.record.origin.offset, DEAD_LETTERS_KEPT as i64 + 4);
        assert!(newest[0].id > newest[1].id);
        done(log.mark_replayed(&[newest[0].id, newest[0].id]));
        assert_eq!(log.pending(), DEAD_LETTERS_KEPT as u64 - 1);
        assert!(log.get(newest[0].id).unwrap().replayed);
        assert_eq!(log.list(10, Some(newest[1].id))[0].id, newest[1].id - 1);
    }

    #[test]
    fn the_bytes_kept_stay_under_the_cap_and_huge_records_are_cut() {
        let log = DeadLetterLog::in_memory("p");
        for offset in 0..40 {
            done(log.push_all(&[letter(offset, vec![b'i'; 1 << 20])]));
        }
        assert!(log.bytes() <= DEAD_LETTER_BYTES_KEPT, "{}", log.bytes());
        assert_eq!(log.pending(), log.list(1000, None).len() as u64);
        done(log.push_all(&[letter(99, vec![b'h'; 8 << 20])]));
        let huge = &log.list(1, None)[0];
        assert!(huge.truncated);
        assert_eq!(huge.letter.record.value.len(), TRUNCATED_TO);
    }

    #[test]
    fn survives_a_restart_with_replays_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.ndjson");
        {
            let log = DeadLetterLog::open("p", &path).unwrap();
            let mut binary = letter(1, vec![0xff, 0x00, 0x10]);
            binary.record.key = Some(Bytes::from_static(b"k"));
            done(log.push_all(&[letter(0, b"a".to_vec()), binary]));
            let first = log.list(10, None)[1].id;
            done(log.mark_replayed(&[first]));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\": 9, \"torn")
            .unwrap();
        let log = DeadLetterLog::open("p", &path).unwrap();
        let kept = log.list(10, None);
        assert_eq!(kept.len(), 2);
        assert_eq!(log.pending(), 1);
        assert!(kept[1].replayed);
        assert_eq!(kept[0].letter.record.value.as_ref(), [0xff, 0x00, 0x10]);
        assert_eq!(kept[0].letter.record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(kept[0].letter.kind, FailureKind::Rejected("bad".into()));
        // Ids go on from where they were.
        done(log.push_all(&[letter(2, b"c".to_vec())]));
        assert!(log.list(1, None)[0].id > kept[0].id);
    }

    /// A journal that hands every entry to each engine's log, as the
    /// cluster's topic does, with the next offset as id.
    #[derive(Default)]
    struct Loopback {
        logs: Mutex<Vec<std::sync::Weak<DeadLetterLog>>>,
        next: AtomicU64,
    }

    impl DeadLetterJournal for Loopback {
        fn publish(&self, _pipeline: &str, entry: serde_json::Value) -> Published {
            let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
            for log in self.logs.lock().unwrap().iter().filter_map(|l| l.upgrade()) {
                log.apply(entry.clone(), id);
            }
            futures_util::future::ready(Ok(())).boxed()
        }
    }

    #[test]
    fn a_shared_log_shows_every_engines_letters_and_replays() {
        let topic = Arc::new(Loopback::default());
        let a = Arc::new(DeadLetterLog::shared("p", topic.clone()));
        let b = Arc::new(DeadLetterLog::shared("p", topic.clone()));
        topic.logs.lock().unwrap().extend([Arc::downgrade(&a), Arc::downgrade(&b)]);
        done(a.push_all(&[letter(7, b"from a".to_vec())]));
        done(b.push_all(&[letter(8, b"from b".to_vec()), letter(9, vec![b'h'; 4 << 20])]));
        for log in [&a, &b] {
            let ids: Vec<u64> = log.list(10, None).iter().map(|l| l.id).collect();
            assert_eq!(ids, [3, 2, 1]);
            assert_eq!(log.pending(), 3);
            assert_eq!(log.get(1).unwrap().letter.record.value.as_ref(), b"from a");
            assert!(log.get(3).unwrap().truncated);
        }
        // Replayed through b: marked on a as well, and only once.
        done(b.mark_replayed(&[1, 1, 42]));
        done(b.mark_replayed(&[1]));
        for log in [&a, &b] {
            assert!(log.get(1).unwrap().replayed);
            assert_eq!(log.pending(), 2);
        }
    }

    /// A journal whose broker answers when the test says so.
    #[derive(Default)]
    struct Slow {
        answers: Mutex<Vec<tokio::sync::oneshot::Sender<anyhow::Result<()>>>>,
    }

    impl DeadLetterJournal for Slow {
        fn publish(&self, _pipeline: &str, _entry: serde_json::Value) -> Published {
            let (answer, answered) = tokio::sync::oneshot::channel();
            self.answers.lock().unwrap().push(answer);
            answered.map(|answer| answer.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer")))).boxed()
        }
    }

    #[test]
    fn a_shared_log_keeps_letters_only_once_the_journal_holds_them() {
        let journal = Arc::new(Slow::default());
        let log = DeadLetterLog::shared("p", journal.clone());
        let mut kept = log.push_all(&[letter(1, b"a".to_vec()), letter(2, b"b".to_vec())]);
        let waker = futures_util::task::noop_waker();
        let mut context = std::task::Context::from_waker(&waker);
        assert!(kept.poll_unpin(&mut context).is_pending());
        let mut answers = std::mem::take(&mut *journal.answers.lock().unwrap());
        assert_eq!(answers.len(), 2);
        answers.remove(0).send(Ok(())).unwrap();
        assert!(kept.poll_unpin(&mut context).is_pending(), "one of two letters is not held yet");
        answers.remove(0).send(Err(anyhow::anyhow!("broker down"))).unwrap();
        let std::task::Poll::Ready(Err(error)) = kept.poll_unpin(&mut context) else {
            panic!("a letter the journal refused must fail the push")
        };
        assert!(error.to_string().contains("broker down"), "{error}");
    }
}
