//! The Redis source: a stream read with XREAD from the saved entry ID, or as a
//! consumer group (XREADGROUP, XACK after delivery, XAUTOCLAIM of entries a dead
//! consumer left); or a pub/sub channel, at most once. A background task reads into a
//! bounded queue.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Source};
use funnel_record::{Data, Metadata, Position, Record, metadata};
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{Mode, RedisSourceConfig};
use super::{METADATA_ID, conn};
use crate::util::unix_nanos_now;

/// Longest wait between attempts to reconnect.
const MOST_BACKOFF: Duration = Duration::from_secs(5);

type Item = Result<Record, ConnectorError>;

/// A Redis source. No I/O until [`Source::open`].
pub struct RedisSource {
    id: String,
    who: String,
    config: RedisSourceConfig,
    consumer: String,
    resume: Option<Position>,
    queue: tokio::sync::Mutex<Option<mpsc::Receiver<Item>>>,
    pending_error: Mutex<Option<ConnectorError>>,
    /// Entry IDs read and not yet acknowledged (consumer group mode), so a claim of
    /// one of them is not read twice.
    unacked: std::sync::Arc<Mutex<HashSet<String>>>,
    running: Mutex<Option<Running>>,
}

struct Running {
    task: JoinHandle<()>,
    /// For XACK (consumer group mode).
    acks: Option<MultiplexedConnection>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RedisSource {
    /// A source for connector `id` with validated settings, resuming after `resume`.
    pub fn new(id: &str, config: RedisSourceConfig, resume: Option<Position>) -> Self {
        let consumer = config.consumer.clone().unwrap_or_else(|| id.to_owned());
        Self {
            id: id.to_owned(),
            who: format!("redis source {id}"),
            config,
            consumer,
            resume,
            queue: tokio::sync::Mutex::new(None),
            pending_error: Mutex::new(None),
            unacked: std::sync::Arc::default(),
            running: Mutex::new(None),
        }
    }
}

/// The time in an entry ID (`<ms>-<n>`), as Unix nanoseconds.
fn created_at(id: &str) -> Option<i128> {
    let ms: i128 = id.split('-').next()?.parse().ok()?;
    (ms > 0).then_some(ms * 1_000_000)
}

/// Whether `id` is a stream entry ID (`<ms>-<n>`).
fn entry_id(id: &str) -> bool {
    let mut parts = id.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(a), Some(b), None) if a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok()
    )
}

/// What the reader task needs.
struct Reader {
    who: String,
    id: String,
    config: RedisSourceConfig,
    consumer: String,
    client: redis::Client,
    unacked: std::sync::Arc<Mutex<HashSet<String>>>,
}

impl Reader {
    fn record(&self, entry: &StreamId) -> Record {
        let fields: BTreeMap<&str, String> = entry
            .map
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    redis::Value::SimpleString(s) => s.clone(),
                    redis::Value::Int(n) => n.to_string(),
                    other => format!("{other:?}"),
                };
                (k.as_str(), text)
            })
            .collect();
        let payload = serde_json::to_vec(&fields).unwrap_or_default();
        let mut meta = Metadata::new();
        meta.insert(metadata::COLLECTION, self.config.key.as_str());
        meta.insert(METADATA_ID, entry.id.as_str());
        let created = created_at(&entry.id).unwrap_or_else(|| unix_nanos_now() as i128);
        meta.insert(metadata::CREATED_AT, created.to_string());
        meta.insert(metadata::READ_AT, unix_nanos_now().to_string());
        meta.insert(metadata::SOURCE_CONNECTOR_ID, self.id.as_str());
        let mut record = Record::new(Position::from(entry.id.clone()), payload);
        record.metadata = meta;
        record.key = Some(Data::Raw(Bytes::from(self.config.key.clone())));
        record
    }

    /// A connection for blocking reads, retried with backoff until it works or the
    /// pipeline stops (`None`).
    async fn connection(&self, tx: &mpsc::Sender<Item>) -> Option<MultiplexedConnection> {
        let mut backoff = Duration::from_millis(100);
        let response = self.config.polling_period + Duration::from_secs(10);
        loop {
            match conn::connect(&self.client, &self.config.connection, &self.who, response).await {
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::warn!(connector = %self.id, error = %e, "Reconnecting to Redis.");
                    if tx.is_closed() {
                        return None;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MOST_BACKOFF);
                }
            }
        }
    }

    /// XREAD from `last` (exclusive) on.
    async fn run_stream(self, mut last: String, tx: mpsc::Sender<Item>) {
        let block = u64::try_from(self.config.polling_period.as_millis()).unwrap_or(u64::MAX);
        let Some(mut con) = self.connection(&tx).await else {
            return;
        };
        loop {
            let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(self.config.batch_size)
                .arg("BLOCK")
                .arg(block)
                .arg("STREAMS")
                .arg(&self.config.key)
                .arg(&last)
                .query_async(&mut con)
                .await;
            match reply {
                Ok(reply) => {
                    for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                        if tx.send(Ok(self.record(&entry))).await.is_err() {
                            return;
                        }
                        last = entry.id;
                    }
                }
                Err(e) => {
                    tracing::warn!(connector = %self.id, error = %e, "Reading the Redis stream failed; reconnecting.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let Some(c) = self.connection(&tx).await else {
                        return;
                    };
                    con = c;
                }
            }
        }
    }

    /// XREADGROUP: first this consumer's pending entries (delivered before, never
    /// acknowledged), then new ones; entries idle with other consumers are claimed.
    async fn run_group(self, group: String, tx: mpsc::Sender<Item>) {
        let block = u64::try_from(self.config.polling_period.as_millis()).unwrap_or(u64::MAX);
        let Some(mut con) = self.connection(&tx).await else {
            return;
        };
        // "0": from the start of this consumer's pending entries; then ">".
        let mut pending = Some("0".to_owned());
        let mut last_claim: Option<Instant> = None;
        loop {
            if let Some(idle) = self.config.claim_idle
                && last_claim.is_none_or(|t| t.elapsed() >= idle / 2)
            {
                last_claim = Some(Instant::now());
                match self.claim(&mut con, &group, idle).await {
                    Ok(entries) => {
                        for entry in entries {
                            if !self.fresh(&entry.id) {
                                continue;
                            }
                            if tx.send(Ok(self.record(&entry))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(connector = %self.id, error = %e, "Claiming idle Redis entries failed.");
                    }
                }
            }
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(self.config.batch_size);
            if pending.is_none() {
                cmd.arg("BLOCK").arg(block);
            }
            cmd.arg("STREAMS")
                .arg(&self.config.key)
                .arg(pending.as_deref().unwrap_or(">"));
            let reply: redis::RedisResult<Option<StreamReadReply>> =
                cmd.query_async(&mut con).await;
            match reply {
                Ok(reply) => {
                    let entries: Vec<StreamId> = reply
                        .into_iter()
                        .flat_map(|r| r.keys)
                        .flat_map(|k| k.ids)
                        .collect();
                    if pending.is_some() {
                        match entries.last() {
                            Some(last) => pending = Some(last.id.clone()),
                            None => pending = None,
                        }
                    }
                    for entry in entries {
                        if !self.fresh(&entry.id) {
                            continue;
                        }
                        if tx.send(Ok(self.record(&entry))).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(connector = %self.id, error = %e, "Reading the Redis stream as a group failed; reconnecting.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let Some(c) = self.connection(&tx).await else {
                        return;
                    };
                    con = c;
                    // After a reconnect (the server may have restarted), pending
                    // entries are read again first.
                    if let Err(e) = create_group(&mut con, &self.config.key, &group).await {
                        tracing::warn!(connector = %self.id, error = %e, "Creating the Redis consumer group failed.");
                    }
                    pending = Some("0".to_owned());
                }
            }
        }
    }

    /// Whether `id` is not read and unacknowledged already; marks it read.
    fn fresh(&self, id: &str) -> bool {
        lock(&self.unacked).insert(id.to_owned())
    }

    async fn claim(
        &self,
        con: &mut MultiplexedConnection,
        group: &str,
        idle: Duration,
    ) -> redis::RedisResult<Vec<StreamId>> {
        let mut cursor = "0-0".to_owned();
        let mut claimed = Vec::new();
        loop {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&self.config.key)
                .arg(group)
                .arg(&self.consumer)
                .arg(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX))
                .arg(&cursor)
                .arg("COUNT")
                .arg(self.config.batch_size)
                .query_async(con)
                .await?;
            claimed.extend(reply.claimed);
            if reply.next_stream_id == "0-0" || claimed.len() >= self.config.batch_size {
                return Ok(claimed);
            }
            cursor = reply.next_stream_id;
        }
    }

    /// SUBSCRIBE; resubscribes after a lost connection (what was published
    /// meanwhile is lost: pub/sub is at most once).
    async fn run_pubsub(self, tx: mpsc::Sender<Item>) {
        let mut backoff = Duration::from_millis(100);
        let mut n: u64 = 0;
        loop {
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&self.config.key).await?;
                Ok::<_, redis::RedisError>(pubsub)
            }
            .await;
            match subscribed {
                Ok(pubsub) => {
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        n += 1;
                        let now = unix_nanos_now();
                        let mut meta = Metadata::new();
                        meta.insert(metadata::COLLECTION, message.get_channel_name());
                        meta.insert(metadata::CREATED_AT, now.to_string());
                        meta.insert(metadata::READ_AT, now.to_string());
                        meta.insert(metadata::SOURCE_CONNECTOR_ID, self.id.as_str());
                        let mut record = Record::new(
                            Position::from(format!("{}_{now}_{n}", self.config.key)),
                            Bytes::copy_from_slice(message.get_payload_bytes()),
                        );
                        record.metadata = meta;
                        record.key = Some(Data::Raw(Bytes::from(self.config.key.clone())));
                        if tx.send(Ok(record)).await.is_err() {
                            return;
                        }
                    }
                    tracing::warn!(connector = %self.id, "The Redis subscription ended; subscribing again.");
                }
                Err(e) => {
                    tracing::warn!(connector = %self.id, error = %e, "Subscribing to the Redis channel failed; retrying.");
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MOST_BACKOFF);
        }
    }
}

/// XGROUP CREATE ... MKSTREAM, unless the group exists.
async fn create_group(
    con: &mut MultiplexedConnection,
    key: &str,
    group: &str,
) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(con)
        .await;
    match created {
        Err(e) if e.to_string().contains("BUSYGROUP") => Ok(()),
        other => other,
    }
}

#[async_trait]
impl Source for RedisSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let c = &self.config;
        let who = &self.who;
        let client = conn::client(&c.connection, who)?;
        let mut con = conn::connect(&client, &c.connection, who, Duration::from_secs(10)).await?;
        let mut acks = None;
        if c.mode == Mode::Stream {
            let kind: String = redis::cmd("TYPE")
                .arg(&c.key)
                .query_async(&mut con)
                .await
                .map_err(|e| conn::error(who, &c.connection, &e))?;
            if kind != "none" && kind != "stream" {
                return Err(ConnectorError::config(format!(
                    "{who}: key {} on Redis at {} holds a {kind}, not a stream",
                    c.key,
                    c.connection.address()
                )));
            }
            if let Some(group) = &c.group {
                create_group(&mut con, &c.key, group).await.map_err(|e| {
                    ConnectorError::transient(format!(
                        "{who}: cannot create consumer group {group} of stream {} on Redis at {}: {e}",
                        c.key,
                        c.connection.address()
                    ))
                })?;
                acks = Some(con);
            }
        }
        let last = match (&self.resume, c.mode, &c.group) {
            (Some(position), Mode::Stream, None) => {
                let text = String::from_utf8_lossy(position.as_bytes()).into_owned();
                if !entry_id(&text) {
                    return Err(ConnectorError::config(format!(
                        "{who}: {position} is not a position of this source (a stream entry ID)"
                    )));
                }
                text
            }
            _ => "0-0".to_owned(),
        };
        let reader = Reader {
            who: who.clone(),
            id: self.id.clone(),
            config: c.clone(),
            consumer: self.consumer.clone(),
            client,
            unacked: std::sync::Arc::clone(&self.unacked),
        };
        let (tx, rx) = mpsc::channel(c.batch_size.max(16));
        let task = match (c.mode, c.group.clone()) {
            // `keyvalue` is refused for sources by validation.
            (Mode::PubSub | Mode::KeyValue, _) => tokio::spawn(reader.run_pubsub(tx)),
            (Mode::Stream, None) => tokio::spawn(reader.run_stream(last, tx)),
            (Mode::Stream, Some(group)) => tokio::spawn(reader.run_group(group, tx)),
        };
        *self.queue.lock().await = Some(rx);
        if let Some(old) = lock(&self.running).replace(Running { task, acks }) {
            old.task.abort();
        }
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        if let Some(error) = lock(&self.pending_error).take() {
            return Err(error);
        }
        let mut guard = self.queue.lock().await;
        let Some(rx) = guard.as_mut() else {
            return Err(ConnectorError::transient(format!(
                "{}: read before open or after teardown",
                self.who
            )));
        };
        let first = rx.recv().await.ok_or_else(|| {
            ConnectorError::transient(format!("{}: the source was torn down", self.who))
        })??;
        let mut records = vec![first];
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
        Ok(Some(records))
    }

    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError> {
        let (Some(group), Mode::Stream) = (&self.config.group, self.config.mode) else {
            return Ok(());
        };
        let Some(mut con) = lock(&self.running).as_ref().and_then(|r| r.acks.clone()) else {
            return Ok(());
        };
        let ids: Vec<String> = positions
            .iter()
            .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
            .collect();
        redis::cmd("XACK")
            .arg(&self.config.key)
            .arg(group)
            .arg(&ids)
            .query_async::<i64>(&mut con)
            .await
            .map_err(|e| {
                ConnectorError::transient(format!(
                    "{}: XACK on stream {} failed: {e}",
                    self.who, self.config.key
                ))
            })?;
        let mut unacked = lock(&self.unacked);
        for id in &ids {
            unacked.remove(id);
        }
        Ok(())
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        if let Some(running) = lock(&self.running).take() {
            running.task.abort();
        }
        Ok(())
    }
}

impl Drop for RedisSource {
    fn drop(&mut self) {
        if let Some(running) = lock(&self.running).take() {
            running.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_carry_their_time() {
        assert!(entry_id("1700000000000-3"));
        assert!(!entry_id("1700000000000") && !entry_id("a-b") && !entry_id("1-2-3"));
        assert_eq!(
            created_at("1700000000000-3"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(created_at("0-1"), None);
    }
}
