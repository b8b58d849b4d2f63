//! The Redis destination: XADD to a stream, PUBLISH on a channel, or SET/HSET/DEL by
//! record key; one pipeline per batch, each record acked after its replies.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError};
use funnel_record::{Data, Operation, Record, Value};
use redis::aio::MultiplexedConnection;

use super::config::{Mode, RedisDestinationConfig, ValueType};
use super::conn;
use crate::ack::AckQueue;

/// How long the replies of one batch may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The field a payload that is not a JSON object is stored under.
pub const DATA_FIELD: &str = "data";

/// A Redis destination. No I/O until [`Destination::open`].
pub struct RedisDestination {
    who: String,
    config: RedisDestinationConfig,
    acks: AckQueue,
    con: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl RedisDestination {
    /// A destination for connector `id` with validated settings.
    pub fn new(id: &str, config: RedisDestinationConfig) -> Self {
        Self {
            who: format!("redis destination {id}"),
            config,
            acks: AckQueue::new(),
            con: tokio::sync::Mutex::new(None),
        }
    }

    /// `redis.key` rendered for `record` (empty without one).
    fn key(&self, record: &Record) -> Result<String, String> {
        let Some(template) = &self.config.key else {
            return Ok(String::new());
        };
        if let Some(literal) = template.as_literal() {
            return Ok(literal.to_owned());
        }
        match template.render(record) {
            Ok(key) if key.is_empty() || key.contains("<no value>") => Err(format!(
                "{}: the key template rendered {key:?} (setting `redis.key`)",
                self.who
            )),
            Ok(key) => Ok(key),
            Err(e) => Err(format!(
                "{}: the key template failed (setting `redis.key`): {e}",
                self.who
            )),
        }
    }

    /// Adds the commands of `record` in mode keyvalue to `pipe`: the key is `prefix`
    /// and the record key; returns how many commands, or why there are none.
    fn key_value(
        &self,
        pipe: &mut redis::Pipeline,
        prefix: String,
        record: &Record,
    ) -> Result<usize, String> {
        let mut key = prefix.into_bytes();
        match &record.key {
            Some(Data::Raw(bytes)) if !bytes.is_empty() => key.extend_from_slice(bytes),
            Some(Data::Structured(map)) => key.extend(Value::Map(map.clone()).to_json()),
            _ => {
                return Err(format!(
                    "{}: the record has no key, which names the Redis key in mode keyvalue",
                    self.who
                ));
            }
        }
        match record.operation {
            Operation::Delete => {
                pipe.cmd("DEL").arg(&key);
                Ok(1)
            }
            Operation::Create | Operation::Update | Operation::Snapshot => {
                match self.config.value_type {
                    ValueType::String => {
                        pipe.cmd("SET")
                            .arg(&key)
                            .arg(payload_bytes(record).as_ref());
                        Ok(1)
                    }
                    ValueType::Hash => {
                        pipe.cmd("DEL").arg(&key);
                        let cmd = pipe.cmd("HSET").arg(&key);
                        for (field, value) in fields(record) {
                            cmd.arg(field).arg(value.as_ref());
                        }
                        Ok(2)
                    }
                }
            }
            Operation::Other(n) => Err(format!(
                "{}: operation {n} is not one mode keyvalue can write (create, update, \
                 snapshot or delete)",
                self.who
            )),
        }
    }
}

/// The raw bytes of a payload (structured data as JSON).
fn payload_bytes(record: &Record) -> Bytes {
    match &record.payload.after {
        Some(Data::Raw(bytes)) => bytes.clone(),
        Some(Data::Structured(map)) => Bytes::from(Value::Map(map.clone()).to_json()),
        None => Bytes::new(),
    }
}

/// The fields of a stream entry for `record`: the fields of a structured payload or a
/// raw JSON object (strings as they are, other values as JSON), else the payload
/// under [`DATA_FIELD`].
pub(crate) fn fields(record: &Record) -> Vec<(String, Bytes)> {
    let object = match &record.payload.after {
        Some(Data::Structured(map)) => Some(
            map.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => Bytes::copy_from_slice(s.as_bytes()),
                        other => Bytes::from(other.to_json()),
                    };
                    (k.to_string(), value)
                })
                .collect(),
        ),
        Some(Data::Raw(bytes)) if bytes.first() == Some(&b'{') => {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes)
                .ok()
                .map(|map| {
                    map.into_iter()
                        .map(|(k, v)| {
                            let value = match v {
                                serde_json::Value::String(s) => Bytes::from(s),
                                other => Bytes::from(other.to_string()),
                            };
                            (k, value)
                        })
                        .collect::<Vec<_>>()
                })
                .filter(|fields| !fields.is_empty())
        }
        _ => None,
    };
    object.unwrap_or_else(|| vec![(DATA_FIELD.to_owned(), payload_bytes(record))])
}

#[async_trait]
impl Destination for RedisDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let c = &self.config;
        let client = conn::client(&c.connection, &self.who)?;
        let mut con = conn::connect(&client, &c.connection, &self.who, RESPONSE_TIMEOUT).await?;
        if let (Mode::Stream, Some(key)) = (c.mode, c.key.as_ref().and_then(|k| k.as_literal())) {
            let kind: String = redis::cmd("TYPE")
                .arg(key)
                .query_async(&mut con)
                .await
                .map_err(|e| conn::error(&self.who, &c.connection, &e))?;
            if kind != "none" && kind != "stream" {
                return Err(ConnectorError::config(format!(
                    "{}: key {key} on Redis at {} holds a {kind}, not a stream",
                    self.who,
                    c.connection.address()
                )));
            }
        }
        *self.con.lock().await = Some(con);
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        let Some(mut con) = self.con.lock().await.clone() else {
            return Err(crate::util::not_open(&self.who, "write"));
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        // Per record: how many commands it has in the pipeline, or why it has none.
        let mut plan: Vec<Result<usize, String>> = Vec::with_capacity(records.len());
        for record in records {
            match self.key(record) {
                Ok(key) if self.config.mode == Mode::KeyValue => {
                    plan.push(self.key_value(&mut pipe, key, record));
                }
                Ok(key) => {
                    match self.config.mode {
                        Mode::Stream => {
                            let cmd = pipe.cmd("XADD").arg(&key);
                            if self.config.max_len > 0 {
                                cmd.arg("MAXLEN").arg("~").arg(self.config.max_len);
                            }
                            cmd.arg("*");
                            for (field, value) in fields(record) {
                                cmd.arg(field).arg(value.as_ref());
                            }
                        }
                        Mode::PubSub | Mode::KeyValue => {
                            pipe.cmd("PUBLISH")
                                .arg(&key)
                                .arg(payload_bytes(record).as_ref());
                        }
                    }
                    plan.push(Ok(1));
                }
                Err(message) => plan.push(Err(message)),
            }
        }
        let replies: Vec<redis::RedisResult<redis::Value>> = if plan.iter().any(Result::is_ok) {
            pipe.query_async(&mut con).await.map_err(|e| {
                ConnectorError::transient(format!(
                    "{}: writing to Redis at {} failed: {e}",
                    self.who,
                    self.config.connection.address()
                ))
            })?
        } else {
            Vec::new()
        };
        let mut replies = replies.into_iter();
        let mut acks = Vec::with_capacity(records.len());
        for (record, planned) in records.iter().zip(plan) {
            let position = record.position.clone();
            match planned {
                Err(message) => {
                    acks.push(DestinationAck::nack(position, RecordError::msg(message)))
                }
                Ok(commands) => {
                    let mut refused = None;
                    for _ in 0..commands {
                        match replies.next() {
                            Some(Ok(_)) => {}
                            Some(Err(e)) => refused = refused.or(Some(e)),
                            None => {
                                return Err(ConnectorError::transient(format!(
                                    "{}: Redis sent fewer replies than commands",
                                    self.who
                                )));
                            }
                        }
                    }
                    acks.push(match refused {
                        None => DestinationAck::ok(position),
                        Some(e) => DestinationAck::nack(
                            position,
                            RecordError::msg(format!(
                                "{}: Redis refused the record: {e}",
                                self.who
                            )),
                        ),
                    });
                }
            }
        }
        self.acks.push(acks);
        Ok(())
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.acks.next().await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.con.lock().await.take();
        self.acks.close_torn_down(&self.who);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use funnel_record::Position;

    fn record(after: Data) -> Record {
        let mut r = Record::new(Position::from("1"), Bytes::new());
        r.payload.after = Some(after);
        r
    }

    #[test]
    fn a_json_object_becomes_fields_and_anything_else_the_data_field() {
        let fields_of = |r: &Record| -> Vec<(String, String)> {
            fields(r)
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8(v.to_vec()).unwrap()))
                .collect()
        };
        assert_eq!(
            fields_of(&record(Data::raw(&b"{\"a\":\"x\",\"n\":1}"[..]))),
            [("a".into(), "x".into()), ("n".into(), "1".into())]
        );
        assert_eq!(
            fields_of(&record(Data::raw(&b"plain"[..]))),
            [("data".into(), "plain".into())]
        );
        let mut map = funnel_record::StructuredData::new();
        map.insert("id", Value::Int(7));
        assert_eq!(
            fields_of(&record(Data::Structured(map))),
            [("id".into(), "7".into())]
        );
    }
}
