//! The S3 source: a background task lists the object versions under the prefix every
//! `pollingPeriod`, fetches what is new in (LastModified, key) order and queues one
//! record per object; the engine's acks need no call to the store.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Source};
use funnel_record::{Data, Metadata, Operation, Payload, Position, Record, metadata};
use futures::StreamExt;
use object_store::{GetOptions, ObjectStore, path::Path};
use tokio::sync::mpsc;

use super::client::{Bucket, Entry};
use super::config::S3SourceConfig;
use super::position::{Cursor, Version};
use super::{METADATA_BUCKET, METADATA_ETAG, METADATA_VERSION};
use crate::util::AbortOnDrop;
use crate::util::lock;
use crate::util::unix_nanos_now;

/// Records fetched ahead of the pipeline, at most. Each holds its whole object, so
/// this bounds the memory of objects read and not yet taken by a read.
const QUEUE: usize = 64;

/// Objects fetched at once.
const FETCHES: usize = 8;

/// A record read, or the error that stopped reading.
type Item = Result<Record, ConnectorError>;

/// An S3 source. No I/O until [`Source::open`].
pub struct S3Source {
    id: String,
    who: String,
    config: S3SourceConfig,
    resume: Option<Position>,
    queue: tokio::sync::Mutex<Option<mpsc::Receiver<Item>>>,
    /// An error met after records were taken for a batch: returned by the next read.
    pending_error: Mutex<Option<ConnectorError>>,
    task: Mutex<Option<AbortOnDrop>>,
}

impl S3Source {
    /// A source for connector `id` with validated settings, resuming after `resume`
    /// (a position it emitted) or taking a snapshot first.
    pub fn new(id: &str, config: S3SourceConfig, resume: Option<Position>) -> Self {
        Self {
            id: id.to_owned(),
            who: format!("s3 source {id}"),
            config,
            resume,
            queue: tokio::sync::Mutex::new(None),
            pending_error: Mutex::new(None),
            task: Mutex::new(None),
        }
    }
}

/// The identity of an entry: LastModified, key, and the version ID (the ETag in a
/// bucket without versioning, where every version is `null`).
fn version_of(entry: &Entry) -> Version {
    let tag = if entry.version.is_empty() || entry.version == "null" {
        entry.etag.clone()
    } else {
        entry.version.clone()
    };
    (entry.modified_ms, entry.key.clone(), tag)
}

/// What the reader task needs.
struct Reader {
    bucket: Arc<Bucket>,
    id: String,
    polling: Duration,
    lookback_ms: i64,
    cursor: Cursor,
    /// Versions of the last listing (and everything queued): a version not in it is
    /// new, whatever its LastModified.
    known: HashSet<Version>,
    /// Keys of the last listing, to tell an update from a create.
    keys: HashSet<String>,
}

/// What a change holds.
enum Fetched {
    /// The object's content.
    Content(Bytes),
    /// A delete marker.
    Deleted,
    /// Gone since the listing, or a folder marker: no record.
    Gone,
    /// An object that cannot be read, and why: a record the engine nacks.
    Unreadable(String),
}

/// A change found by a listing.
struct Change {
    entry: Entry,
    version: Version,
    operation: Operation,
}

impl Reader {
    /// The changes of `entries` (one listing) not yet read, in (LastModified, key)
    /// order; the first listing of a source without a position is its snapshot.
    fn changes(&mut self, entries: Vec<Entry>, first: bool, snapshot: bool) -> Vec<Change> {
        let older: HashSet<&str> = entries
            .iter()
            .filter(|e| !e.latest && !e.deleted)
            .map(|e| e.key.as_str())
            .collect();
        let mut changes = Vec::new();
        let mut known = HashSet::with_capacity(entries.len());
        let mut keys = HashSet::with_capacity(entries.len());
        for entry in entries.iter().filter(|e| e.latest) {
            let version = version_of(entry);
            known.insert(version.clone());
            if !entry.deleted {
                keys.insert(entry.key.clone());
            }
            let new = if first {
                !(self.cursor.is_read(&version) || (snapshot && entry.deleted))
            } else {
                !self.known.contains(&version)
            };
            if !new || (entry.deleted && !first && !self.keys.contains(&entry.key)) {
                continue;
            }
            let operation = if entry.deleted {
                Operation::Delete
            } else if snapshot {
                Operation::Snapshot
            } else if older.contains(entry.key.as_str()) || self.keys.contains(&entry.key) {
                Operation::Update
            } else {
                Operation::Create
            };
            if version.0 < self.cursor.floor_ms {
                tracing::warn!(connector = %self.id, key = %entry.key, "An object appeared more than `lookback` after its LastModified time; it is read now, but a restart before it is acknowledged would skip it. Raise `lookback`.");
            }
            changes.push(Change {
                entry: entry.clone(),
                version,
                operation,
            });
        }
        self.known = known;
        self.keys = keys;
        changes.sort_by(|a, b| (a.version.0, &a.version.1).cmp(&(b.version.0, &b.version.1)));
        changes
    }

    /// What `entry` (the listed version) holds.
    async fn fetch(bucket: &Bucket, entry: &Entry) -> Result<Fetched, ConnectorError> {
        if entry.deleted {
            return Ok(Fetched::Deleted);
        }
        // A "folder" made by a console: no content, nothing to read.
        if entry.key.ends_with('/') && entry.size == 0 {
            return Ok(Fetched::Gone);
        }
        let path = match Path::parse(&entry.key) {
            Ok(path) if path.as_ref() == entry.key => path,
            _ => {
                return Ok(Fetched::Unreadable(format!(
                    "{}: object {} in {} has a key the client cannot address (empty, \".\" \
                     or \"..\" segments, or a leading or trailing '/'); it is not read",
                    bucket.who,
                    entry.key,
                    bucket.connection.describe()
                )));
            }
        };
        let options = GetOptions {
            version: (!entry.version.is_empty() && entry.version != "null")
                .then(|| entry.version.clone()),
            ..GetOptions::default()
        };
        let result = match bucket.store.get_opts(&path, options).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(bytes) => Ok(Fetched::Content(bytes)),
            // Deleted since the listing: the next listing shows it.
            Err(object_store::Error::NotFound { .. }) => Ok(Fetched::Gone),
            Err(e) => Err(bucket.error(&format!("reading object {}", entry.key), &e)),
        }
    }

    /// The record of a change, at the position after it.
    fn record(&mut self, change: &Change, fetched: Fetched) -> Record {
        self.cursor.advance(&change.version, self.lookback_ms);
        let position = self.cursor.position(&change.version);
        let entry = &change.entry;
        let mut meta = Metadata::new();
        let content = match fetched {
            Fetched::Content(bytes) => Some(bytes),
            Fetched::Unreadable(error) => {
                meta.insert(metadata::READ_ERROR, error);
                None
            }
            Fetched::Deleted | Fetched::Gone => None,
        };
        meta.insert(METADATA_BUCKET, self.bucket.connection.bucket.as_str());
        if !entry.etag.is_empty() {
            meta.insert(METADATA_ETAG, entry.etag.as_str());
        }
        if !entry.version.is_empty() && entry.version != "null" {
            meta.insert(METADATA_VERSION, entry.version.as_str());
        }
        let created = i128::from(entry.modified_ms) * 1_000_000;
        meta.insert(metadata::CREATED_AT, created.to_string());
        meta.insert(metadata::READ_AT, unix_nanos_now().to_string());
        meta.insert(metadata::SOURCE_CONNECTOR_ID, self.id.as_str());
        Record {
            position,
            operation: change.operation,
            metadata: meta,
            key: Some(Data::Raw(Bytes::from(entry.key.clone().into_bytes()))),
            payload: Payload {
                before: None,
                after: content.map(Data::Raw),
            },
        }
    }

    /// Fetches `changes` (several at once) and queues their records in order; false
    /// when reading stopped (the pipeline has gone, or an error was queued).
    async fn emit(&mut self, changes: Vec<Change>, tx: &mpsc::Sender<Item>) -> bool {
        let bucket = Arc::clone(&self.bucket);
        let mut fetched = futures::stream::iter(changes.into_iter().map(move |change| {
            let bucket = Arc::clone(&bucket);
            async move {
                let content = Self::fetch(&bucket, &change.entry).await;
                (change, content)
            }
        }))
        .buffered(FETCHES);
        while let Some((change, content)) = fetched.next().await {
            let item = match content {
                // Gone since the listing: nothing to read; the next listing shows
                // what became of it.
                Ok(Fetched::Gone) => {
                    self.known.remove(&change.version);
                    continue;
                }
                Ok(fetched) => Ok(self.record(&change, fetched)),
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return false;
            }
        }
        true
    }

    /// Lists, then queues what changed, every polling period until the pipeline stops.
    async fn run(mut self, first: Vec<Entry>, snapshot: bool, tx: mpsc::Sender<Item>) {
        let changes = self.changes(first, true, snapshot);
        if !self.emit(changes, &tx).await {
            return;
        }
        loop {
            tokio::time::sleep(self.polling).await;
            match self.bucket.list_versions().await {
                Ok(entries) => {
                    let changes = self.changes(entries, false, false);
                    if !self.emit(changes, &tx).await {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }
}

#[async_trait]
impl Source for S3Source {
    async fn open(&self) -> Result<(), ConnectorError> {
        let cursor = match &self.resume {
            Some(position) => Cursor::parse(&self.who, position)?,
            None => Cursor::default(),
        };
        let bucket = Bucket::new(&self.config.connection, &self.who)?;
        // The first listing here: a missing bucket or refused credentials fail `open`.
        let first = bucket.list_versions().await?;
        tracing::info!(connector = %self.id, bucket = %self.config.connection.bucket, prefix = %self.config.connection.prefix, objects = first.iter().filter(|e| e.latest && !e.deleted).count(), resume = self.resume.is_some(), "Reading from S3.");
        let reader = Reader {
            bucket: Arc::new(bucket),
            id: self.id.clone(),
            polling: self.config.polling_period,
            lookback_ms: i64::try_from(self.config.lookback.as_millis()).unwrap_or(i64::MAX),
            cursor,
            known: HashSet::new(),
            keys: HashSet::new(),
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(reader.run(first, self.resume.is_none(), tx));
        *self.queue.lock().await = Some(rx);
        if let Some(old) = lock(&self.task).replace(AbortOnDrop(task)) {
            old.abort();
        }
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        if let Some(error) = lock(&self.pending_error).take() {
            return Err(error);
        }
        let mut guard = self.queue.lock().await;
        let first = crate::util::next_from(guard.as_mut(), &self.who).await?;
        let mut records = vec![first];
        // The rest of the batch: what the task has sent already (`next_from` found
        // the queue, so it is there).
        if let Some(rx) = guard.as_mut() {
            while records.len() < self.config.batch_size {
                match rx.try_recv() {
                    Ok(Ok(record)) => records.push(record),
                    Ok(Err(e)) => {
                        *lock(&self.pending_error) = Some(e);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        Ok(Some(records))
    }

    async fn ack(&self, _positions: &[Position]) -> Result<(), ConnectorError> {
        // Nothing to tell the store: the committed position is the whole state.
        Ok(())
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        Ok(())
    }
}
