//! The Redis source: a stream read with XREAD from the saved entry ID, or as a
//! consumer group (XREADGROUP, XACK after delivery, XAUTOCLAIM of entries a dead
//! consumer left); or a pub/sub channel, at most once. A background task reads whole
//! batches (one stream read each, the next read already on its way) into a bounded
//! queue.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Source};
use funnel_record::{Data, Metadata, Position, Record, metadata};
use futures::{FutureExt, StreamExt};
use redis::Value;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::streams::{StreamAutoClaimReply, StreamId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{Mode, RedisSourceConfig};
use super::{METADATA_ID, conn};
use crate::util::AbortOnDrop;
use crate::util::lock;
use crate::util::unix_nanos_now;

/// Longest wait between attempts to reconnect.
const MOST_BACKOFF: Duration = Duration::from_secs(5);

/// A batch read by the background task (at most `sdk.batch.size` records), or the
/// error that stopped it.
type Item = Result<Vec<Record>, ConnectorError>;

/// Batches read ahead of the pipeline (each up to `sdk.batch.size` records).
const READ_AHEAD: usize = 2;

/// A Redis source. No I/O until [`Source::open`].
pub struct RedisSource {
    id: String,
    who: String,
    config: RedisSourceConfig,
    consumer: String,
    resume: Option<Position>,
    queue: tokio::sync::Mutex<Option<mpsc::Receiver<Item>>>,
    /// Entry IDs read and not yet acknowledged (consumer group mode), so a claim of
    /// one of them is not read twice.
    unacked: std::sync::Arc<Mutex<HashSet<String>>>,
    running: Mutex<Option<Running>>,
}

struct Running {
    task: AbortOnDrop,
    /// For XACK (consumer group mode).
    acks: Option<MultiplexedConnection>,
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

/// The text of a field name or value in an entry.
fn text(value: &Value) -> Cow<'_, str> {
    match value {
        // `from_utf8` checks ASCII a word at a time; `from_utf8_lossy` byte by byte.
        Value::BulkString(b) => match std::str::from_utf8(b) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(b),
        },
        Value::SimpleString(s) => Cow::Borrowed(s),
        Value::Int(n) => Cow::Owned(n.to_string()),
        other => Cow::Owned(format!("{other:?}")),
    }
}

/// Whether `bytes` are ASCII from the space on, without `"` and `\`: valid UTF-8 that
/// JSON writes as it is. Checked in one pass, whole chunks without an early exit, so
/// that the compiler compares many bytes at once.
fn plain_ascii(bytes: &[u8]) -> bool {
    bytes.chunks(64).all(|chunk| {
        chunk.iter().fold(true, |plain, &b| {
            plain & (b.wrapping_sub(0x20) < 0x60) & (b != b'"') & (b != b'\\')
        })
    })
}

/// Appends a field name or value as a JSON string, as serde_json writes its text (see
/// [`text`]); plain ASCII bytes (the usual case) are copied after a single check.
fn push_json_value(out: &mut Vec<u8>, value: &Value) {
    if let Value::BulkString(bytes) = value
        && plain_ascii(bytes)
    {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        push_json_string(out, &text(value));
    }
}

/// Appends `text` as a JSON string, as serde_json writes it. Text without a character
/// that JSON escapes (control characters, `"` and `\`: the usual case) is copied as it
/// is, which is several times faster than serde_json's byte-by-byte escaping.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Whole chunks without an early exit, so that the compiler compares many bytes at
    // once.
    let plain = bytes.chunks(64).all(|chunk| {
        chunk.iter().fold(true, |plain, &b| {
            plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
        })
    });
    if plain {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// The entries of an `XREAD`/`XREADGROUP` reply, in stream order, each as its ID and
/// its flat list of fields and values; read straight from the reply, without a map per
/// entry. A nil reply (the blocking read timed out) has none.
fn entries(reply: Value) -> Vec<(String, Vec<Value>)> {
    let streams = match reply {
        Value::Array(streams) | Value::Set(streams) => streams,
        // RESP3: a map of stream name to entries.
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            continue;
        };
        let Some(Value::Array(items)) = parts.pop() else {
            continue;
        };
        out.reserve(items.len());
        for item in items {
            let Value::Array(mut pair) = item else {
                continue;
            };
            // [id, [field, value, ...]]; the fields are nil for an entry deleted
            // while pending.
            let fields = match pair.pop() {
                Some(Value::Array(fields)) => fields,
                _ => Vec::new(),
            };
            let id = match pair.pop() {
                Some(Value::BulkString(id)) => String::from_utf8(id)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                Some(Value::SimpleString(id)) => id,
                _ => continue,
            };
            out.push((id, fields));
        }
    }
    out
}

/// A read started on its own task, stopped when dropped (with the reader task that
/// owns it).
struct ReadAhead(JoinHandle<redis::RedisResult<Value>>);

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the reader task needs.
struct Reader {
    who: String,
    id: String,
    config: RedisSourceConfig,
    consumer: String,
    client: redis::Client,
    unacked: std::sync::Arc<Mutex<HashSet<String>>>,
    /// The record key of every record: the stream name.
    key: Bytes,
}

impl Reader {
    /// The record of entry `id` with its flat `fields`, read at `read_at` (Unix
    /// nanoseconds, shared by the records of a batch). The payload is a JSON object of
    /// the fields in name order (the last value of a name given twice), as a map of them
    /// would be written.
    fn record(&self, id: String, fields: &[Value], read_at: &str) -> Record {
        let size = 2 + fields
            .iter()
            .map(|v| match v {
                Value::BulkString(b) => b.len() + 3,
                _ => 8,
            })
            .sum::<usize>();
        let mut payload = Vec::with_capacity(size + size / 8);
        payload.push(b'{');
        if let [name, value] = fields {
            // One field (the usual case): nothing to sort.
            push_json_value(&mut payload, name);
            payload.push(b':');
            push_json_value(&mut payload, value);
        } else {
            let mut pairs: Vec<(Cow<'_, str>, &Value)> = fields
                .chunks_exact(2)
                .rev()
                .map(|pair| (text(&pair[0]), &pair[1]))
                .collect();
            // Reversed, then sorted stably: the first of equal names is the last given.
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            pairs.dedup_by(|later, first| later.0 == first.0);
            for (i, (name, value)) in pairs.iter().enumerate() {
                if i > 0 {
                    payload.push(b',');
                }
                push_json_string(&mut payload, name);
                payload.push(b':');
                push_json_value(&mut payload, value);
            }
        }
        payload.push(b'}');
        // Unix nanoseconds fit an i64 until 2262, which formats faster than an i128.
        let created = created_at(&id).unwrap_or_else(|| unix_nanos_now() as i128);
        let created =
            i64::try_from(created).map_or_else(|_| created.to_string(), |n| n.to_string());
        // The metadata built in one go, not cloned from a shared map and then changed.
        let meta: Metadata = [
            (metadata::COLLECTION, self.config.key.as_str()),
            (metadata::CREATED_AT, created.as_str()),
            (metadata::READ_AT, read_at),
            (metadata::SOURCE_CONNECTOR_ID, self.id.as_str()),
            (METADATA_ID, id.as_str()),
        ]
        .into_iter()
        .collect();
        let mut record = Record::new(Position::from(id), payload);
        record.metadata = meta;
        record.key = Some(Data::Raw(self.key.clone()));
        record
    }

    /// The records of `entries`; in a consumer group, only those not read and
    /// unacknowledged already (which it marks read).
    fn records(&self, entries: Vec<(String, Vec<Value>)>, group: bool) -> Vec<Record> {
        let read_at = unix_nanos_now().to_string();
        let mut records = Vec::with_capacity(entries.len());
        let mut unacked = group.then(|| lock(&self.unacked));
        for (id, fields) in entries {
            if let Some(unacked) = unacked.as_mut()
                && !unacked.insert(id.clone())
            {
                continue;
            }
            records.push(self.record(id, &fields, &read_at));
        }
        records
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

    /// Starts `XREAD COUNT <batch> BLOCK <polling period> STREAMS <key> <last>` on its
    /// own task, so that the next batch is on its way while this one is turned into
    /// records.
    fn start_read(&self, con: &MultiplexedConnection, last: &str) -> ReadAhead {
        let block = u64::try_from(self.config.polling_period.as_millis()).unwrap_or(u64::MAX);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(self.config.batch_size)
            .arg("BLOCK")
            .arg(block)
            .arg("STREAMS")
            .arg(&self.config.key)
            .arg(last);
        let mut con = con.clone();
        // The reply as it came, without `query_async`'s walk through every value of it
        // for an error: a failed XREAD is one error reply, checked by `run_stream`.
        ReadAhead(tokio::spawn(
            async move { con.req_packed_command(&cmd).await },
        ))
    }

    /// XREAD from `last` (exclusive) on, one read ahead.
    async fn run_stream(self, mut last: String, tx: mpsc::Sender<Item>) {
        let Some(mut con) = self.connection(&tx).await else {
            return;
        };
        let mut next = self.start_read(&con, &last);
        loop {
            let reply = match (&mut next.0).await {
                Ok(Ok(Value::ServerError(e))) => Err(redis::RedisError::from(e)),
                Ok(reply) => reply,
                Err(e) => Err(redis::RedisError::from(std::io::Error::other(
                    e.to_string(),
                ))),
            };
            match reply {
                Ok(reply) => {
                    let entries = entries(reply);
                    if let Some((id, _)) = entries.last() {
                        last.clone_from(id);
                    }
                    next = self.start_read(&con, &last);
                    if entries.is_empty() {
                        continue;
                    }
                    let records = self.records(entries, false);
                    if tx.send(Ok(records)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(connector = %self.id, error = %e, "Reading the Redis stream failed; reconnecting.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let Some(c) = self.connection(&tx).await else {
                        return;
                    };
                    con = c;
                    next = self.start_read(&con, &last);
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
                    Ok(claimed) => {
                        let entries = claimed
                            .into_iter()
                            .map(|entry| {
                                let fields = entry
                                    .map
                                    .into_iter()
                                    .flat_map(|(k, v)| [Value::BulkString(k.into_bytes()), v])
                                    .collect();
                                (entry.id, fields)
                            })
                            .collect();
                        let records = self.records(entries, true);
                        if !records.is_empty() && tx.send(Ok(records)).await.is_err() {
                            return;
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
            let reply: redis::RedisResult<Value> = cmd.query_async(&mut con).await;
            match reply {
                Ok(reply) => {
                    let entries = entries(reply);
                    if pending.is_some() {
                        match entries.last() {
                            Some((id, _)) => pending = Some(id.clone()),
                            None => pending = None,
                        }
                    }
                    let records = self.records(entries, true);
                    if !records.is_empty() && tx.send(Ok(records)).await.is_err() {
                        return;
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

    /// The record of a pub/sub message, the `n`th of this run.
    fn message(&self, message: &redis::Msg, n: u64) -> Record {
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
        record.key = Some(Data::Raw(self.key.clone()));
        record
    }

    /// SUBSCRIBE; resubscribes after a lost connection (what was published
    /// meanwhile is lost: pub/sub is at most once). Messages that arrived together
    /// go out as one batch.
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
                        let mut batch = vec![self.message(&message, n)];
                        while batch.len() < self.config.batch_size {
                            match messages.next().now_or_never() {
                                Some(Some(message)) => {
                                    n += 1;
                                    batch.push(self.message(&message, n));
                                }
                                _ => break,
                            }
                        }
                        if tx.send(Ok(batch)).await.is_err() {
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
            key: Bytes::from(c.key.clone()),
        };
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let task = match (c.mode, c.group.clone()) {
            // `keyvalue` is refused for sources by validation.
            (Mode::PubSub | Mode::KeyValue, _) => tokio::spawn(reader.run_pubsub(tx)),
            (Mode::Stream, None) => tokio::spawn(reader.run_stream(last, tx)),
            (Mode::Stream, Some(group)) => tokio::spawn(reader.run_group(group, tx)),
        };
        *self.queue.lock().await = Some(rx);
        if let Some(old) = lock(&self.running).replace(Running {
            task: AbortOnDrop(task),
            acks,
        }) {
            old.task.abort();
        }
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        let mut guard = self.queue.lock().await;
        let records = crate::util::next_from(guard.as_mut(), &self.who).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_written_as_serde_json_writes_them() {
        for text in [
            "",
            "plain base64+/=",
            "quote \" and backslash \\",
            "tab\tnewline\n\u{1}",
            "unicode é ✓ \u{7f}",
            &"x".repeat(200),
            &format!("{}\"", "y".repeat(130)),
        ] {
            let mut ours = Vec::new();
            push_json_string(&mut ours, text);
            assert_eq!(ours, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }

    fn reader() -> Reader {
        let settings = funnel_core::settings_of(&[("redis.key", "events"), ("mode", "stream")]);
        let config = super::super::config::validate_source(&settings).unwrap();
        Reader {
            who: "redis source p:src".into(),
            id: "p:src".into(),
            config,
            consumer: "p:src".into(),
            client: redis::Client::open("redis://127.0.0.1:1").unwrap(),
            unacked: std::sync::Arc::default(),
            key: Bytes::from_static(b"events"),
        }
    }

    fn payload(record: &Record) -> String {
        match &record.payload.after {
            Some(Data::Raw(bytes)) => String::from_utf8(bytes.to_vec()).unwrap(),
            other => panic!("not a raw payload: {other:?}"),
        }
    }

    #[test]
    fn an_entry_becomes_a_json_object_of_its_fields_as_a_map_of_them_is_written() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reader = reader();
        let fields = [
            ("b", "2"),
            ("a", "quote \" é\n"),
            ("b", "last b"),
            ("c", "plain"),
        ];
        let values: Vec<Value> = fields
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect();
        let record = reader.record("1700000000000-3".into(), &values, "42");
        let map: std::collections::BTreeMap<&str, &str> = fields.iter().copied().collect();
        assert_eq!(payload(&record), serde_json::to_string(&map).unwrap());
        for (name, value) in [("data", "plain base64+/="), ("dätä", "\u{1}\\")] {
            let record = reader.record("1-1".into(), &[bulk(name), bulk(value)], "42");
            let map = std::collections::BTreeMap::from([(name, value)]);
            assert_eq!(payload(&record), serde_json::to_string(&map).unwrap());
        }
        let invalid = [bulk("k"), Value::BulkString(vec![b'a', 0xff])];
        let record = reader.record("1-2".into(), &invalid, "42");
        assert_eq!(payload(&record), "{\"k\":\"a\u{fffd}\"}");
    }

    #[test]
    fn an_entry_carries_its_id_times_collection_and_connector_in_its_metadata() {
        let reader = reader();
        let record = reader.record(
            "1700000000000-3".into(),
            &[Value::BulkString(b"k".to_vec()), Value::Int(7)],
            "42",
        );
        assert_eq!(record.position, Position::from("1700000000000-3"));
        assert_eq!(record.key, Some(Data::Raw(Bytes::from_static(b"events"))));
        assert_eq!(payload(&record), r#"{"k":"7"}"#);
        let meta: Vec<(&str, &str)> = record.metadata.iter().collect();
        assert_eq!(
            meta,
            [
                (metadata::SOURCE_CONNECTOR_ID, "p:src"),
                (metadata::COLLECTION, "events"),
                (metadata::CREATED_AT, "1700000000000000000"),
                (metadata::READ_AT, "42"),
                (METADATA_ID, "1700000000000-3"),
            ]
        );
    }

    #[test]
    fn plain_ascii_is_ascii_from_the_space_on_without_quote_or_backslash() {
        assert!(plain_ascii(b"") && plain_ascii("x".repeat(200).as_bytes()));
        // DEL (0x7f) is ASCII that JSON writes as it is.
        assert!(plain_ascii(b"\x7f"));
        for bad in ["\"", "\\", "\n", "\u{1f}", "é"] {
            let text = format!("{}{bad}", "y".repeat(70));
            assert!(!plain_ascii(text.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn a_reply_gives_its_entries_in_order_with_their_fields() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("events"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-1"),
                    Value::Array(vec![bulk("b"), bulk("2"), bulk("a"), bulk("1")]),
                ]),
                Value::Array(vec![bulk("1-2"), Value::Nil]),
            ]),
        ])]);
        let entries = entries(reply);
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].0.as_str(), entries[0].1.len()), ("1-1", 4));
        assert_eq!((entries[1].0.as_str(), entries[1].1.len()), ("1-2", 0));
        assert!(super::entries(Value::Nil).is_empty());
    }

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
