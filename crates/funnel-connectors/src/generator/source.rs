//! The generator source.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Source};
use funnel_record::{
    Data, Metadata, Operation, Payload, Position, Record, SmolStr, StructuredData, Timestamp,
    Value, metadata,
};
use tokio::time::Instant;

use super::config::{Burst, FieldType, Format, GeneratorConfig};
use super::data::SplitMix64;
use crate::util::{decimal_slices, unix_nanos_now};

/// A source of generated records (see the [module docs](super)).
pub struct GeneratorSource {
    id: String,
    config: GeneratorConfig,
    resume: Option<Position>,
    state: Mutex<Option<Running>>,
}

impl GeneratorSource {
    /// A generator with validated settings, resuming after `resume` (a position it
    /// emitted before) or starting at 1. Nothing is read until [`Source::open`].
    pub fn new(id: &str, config: GeneratorConfig, resume: Option<Position>) -> Self {
        Self {
            id: id.to_owned(),
            config,
            resume,
            state: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        // Every critical section leaves `Running` consistent (state changes only after
        // a batch is fully built), so a poisoned lock is still usable.
        crate::util::lock(&self.state)
    }
}

/// The state of an open generator.
struct Running {
    /// The position number of the next record.
    next: u64,
    streams: Vec<Stream>,
    limiter: Option<TokenBucket>,
    /// When the source opened: burst phases are measured from here.
    epoch: Instant,
}

/// A collection ready to generate.
struct Stream {
    collection: Option<String>,
    operations: Vec<Operation>,
    payload: PayloadKind,
}

enum PayloadKind {
    /// The same bytes every time (cloning `Bytes` is a reference count).
    Fixed(Bytes),
    Fields {
        /// The fields in key order, every value `Null`: cloning it builds a record's map
        /// in its final shape at once, one allocation (its keys are inline or shared,
        /// never copied).
        template: StructuredData,
        /// The type of each field of `template`, in the same order.
        types: Vec<FieldType>,
        raw: bool,
    },
}

impl PayloadKind {
    fn fields(fields: &[(String, FieldType)], raw: bool) -> Self {
        // A later duplicate wins, as collecting into a map would have it.
        let by_name: std::collections::BTreeMap<&str, FieldType> =
            fields.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        Self::Fields {
            template: by_name.keys().map(|name| (*name, Value::Null)).collect(),
            types: by_name.into_values().collect(),
            raw,
        }
    }
}

/// What one call to [`Running::step`] decided.
enum Step {
    Records(Vec<Record>),
    Exhausted,
    WaitUntil(Instant),
}

#[async_trait]
impl Source for GeneratorSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let next = match &self.resume {
            None => 1,
            Some(position) => parse_position(position)?
                .checked_add(1)
                .ok_or_else(|| ConnectorError::data("generator position overflows"))?,
        };
        let mut streams = Vec::with_capacity(self.config.collections.len());
        for collection in &self.config.collections {
            let payload = match &collection.format {
                Format::File(path) => {
                    let path = path.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        std::fs::read(&path).map_err(|e| (path, e))
                    })
                    .await
                    .map_err(|e| ConnectorError::internal(e).context("generator"))?;
                    match read {
                        Ok(bytes) => PayloadKind::Fixed(Bytes::from(bytes)),
                        Err((path, e)) => {
                            let context = format!(
                                "generator: failed to read format.options.path {}",
                                path.display()
                            );
                            let error = match e.kind() {
                                std::io::ErrorKind::NotFound
                                | std::io::ErrorKind::PermissionDenied
                                | std::io::ErrorKind::IsADirectory => ConnectorError::fatal(e),
                                _ => ConnectorError::transient(e),
                            };
                            return Err(error.context(context));
                        }
                    }
                }
                Format::Raw(fields) => PayloadKind::fields(fields, true),
                Format::Structured(fields) => PayloadKind::fields(fields, false),
            };
            streams.push(Stream {
                collection: collection.name.clone(),
                operations: collection.operations.clone(),
                payload,
            });
        }
        let now = Instant::now();
        let limiter = (self.config.rate > 0.0)
            .then(|| TokenBucket::new(self.config.rate, self.config.batch_size, now));
        *self.lock() = Some(Running {
            next,
            streams,
            limiter,
            epoch: now,
        });
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        loop {
            // Cancel-safe: state changes only in the synchronous `step` that returns
            // the records; dropping this future while it sleeps loses nothing.
            let deadline = {
                let mut guard = self.lock();
                let running = guard
                    .as_mut()
                    .ok_or_else(|| ConnectorError::internal("generator: read before open"))?;
                match running.step(&self.config, &self.id, Instant::now()) {
                    Step::Records(records) => return Ok(Some(records)),
                    Step::Exhausted => return Ok(None),
                    Step::WaitUntil(deadline) => deadline,
                }
            };
            tokio::time::sleep_until(deadline).await;
        }
    }

    async fn ack(&self, _positions: &[Position]) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn backlog(&self) -> Option<u64> {
        let count = self.config.record_count?;
        let next = self.lock().as_ref()?.next;
        Some((count + 1).saturating_sub(next))
    }
}

/// Reads a position the generator emitted: a decimal record number.
fn parse_position(position: &Position) -> Result<u64, ConnectorError> {
    std::str::from_utf8(position.as_bytes())
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| {
            ConnectorError::data(format!(
                "generator: invalid position {position}: expected a record number (1, 2, ...)"
            ))
        })
}

impl Running {
    /// Generates the next batch, or says why not.
    fn step(&mut self, config: &GeneratorConfig, id: &str, now: Instant) -> Step {
        let mut n = config.batch_size.max(1) as u64;
        if let Some(count) = config.record_count {
            let remaining = (count + 1).saturating_sub(self.next);
            if remaining == 0 {
                return Step::Exhausted;
            }
            n = n.min(remaining);
        }
        if let Some(burst) = config.burst
            && let Some(wake) = burst_wait(burst, self.epoch, now)
        {
            return Step::WaitUntil(wake);
        }
        if let Some(limiter) = &mut self.limiter {
            let available = limiter.available(now);
            if available == 0 {
                return Step::WaitUntil(limiter.next_token_at(now));
            }
            n = n.min(available);
            limiter.take(n);
        }
        let records = self.generate(n, id);
        self.next += n;
        Step::Records(records)
    }

    /// Builds records `next .. next + n`.
    fn generate(&self, n: u64, id: &str) -> Vec<Record> {
        let now_nanos = unix_nanos_now();
        let now_text = now_nanos.to_string();
        // The read time as a timestamp (a Go `time.Time` in Conduit's generator), copied
        // into each record; the clock is within i64 range until 2262.
        let time = Timestamp::from_unix_nanos(i64::try_from(now_nanos).unwrap_or(i64::MAX));

        // One metadata map per stream, cloned into each record.
        let templates: Vec<Metadata> = self
            .streams
            .iter()
            .map(|stream| {
                let mut m = Metadata::new();
                m.insert(metadata::READ_AT, now_text.clone());
                m.insert(metadata::CREATED_AT, now_text.clone());
                m.insert(metadata::SOURCE_CONNECTOR_ID, id);
                if let Some(collection) = &stream.collection {
                    m.insert(metadata::COLLECTION, collection.clone());
                }
                m
            })
            .collect();

        let mut records = Vec::with_capacity(n as usize);
        let numbers = self.next..self.next + n;
        let positions = decimal_slices(numbers.clone(), n as usize);
        for (number, position) in numbers.zip(positions) {
            let mut rng = SplitMix64::new(number);
            let index = if self.streams.len() > 1 {
                rng.index(self.streams.len())
            } else {
                0
            };
            let stream = &self.streams[index];
            let operation = if stream.operations.len() > 1 {
                stream.operations[rng.index(stream.operations.len())]
            } else {
                stream.operations[0]
            };
            let key = Data::Raw(Bytes::from_static(rng.word().as_bytes()));
            let mut data = || stream.payload.data(&mut rng, time);
            let payload = match operation {
                Operation::Update => Payload {
                    before: Some(data()),
                    after: Some(data()),
                },
                Operation::Delete => Payload {
                    before: Some(data()),
                    after: None,
                },
                Operation::Create | Operation::Snapshot | Operation::Other(_) => Payload {
                    before: None,
                    after: Some(data()),
                },
            };
            records.push(Record {
                position: Position(position),
                operation,
                metadata: templates[index].clone(),
                key: Some(key),
                payload,
            });
        }
        records
    }
}

impl PayloadKind {
    fn data(&self, rng: &mut SplitMix64, time: Timestamp) -> Data {
        match self {
            Self::Fixed(bytes) => Data::Raw(bytes.clone()),
            Self::Fields {
                template,
                types,
                raw,
            } => {
                let mut map = template.clone();
                for (value, field_type) in map.values_mut().zip(types) {
                    *value = match field_type {
                        FieldType::Int => Value::Int((rng.next_u64() >> 1) as i64),
                        // The words are static: no copy, no allocation.
                        FieldType::String => Value::String(SmolStr::new_static(rng.word())),
                        FieldType::Time => Value::Time(time),
                        FieldType::Bool => Value::Bool(rng.next_u64() & 1 == 1),
                        FieldType::Duration => Value::Int(rng.below(3_600_000_000_000) as i64),
                    };
                }
                if *raw {
                    Data::Raw(Bytes::from(Value::Map(map).to_json()))
                } else {
                    Data::Structured(map)
                }
            }
        }
    }
}

/// When the source is in a sleep phase, the end of that phase. Phases repeat from
/// `epoch`: sleep first, then generate.
fn burst_wait(burst: Burst, epoch: Instant, now: Instant) -> Option<Instant> {
    let cycle = (burst.sleep + burst.generate).as_nanos();
    let into_cycle = now.saturating_duration_since(epoch).as_nanos() % cycle;
    let sleep = burst.sleep.as_nanos();
    (into_cycle < sleep).then(|| {
        // The rest of a sleep phase is shorter than `burst.sleep`, so it fits a u64.
        now + Duration::from_nanos((sleep - into_cycle) as u64)
    })
}

/// A token bucket: `rate` tokens a second, holding at most a tenth of a second's worth
/// (at least one token, at most one batch).
struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, batch_size: usize, now: Instant) -> Self {
        Self {
            rate,
            capacity: (rate / 10.0).clamp(1.0, batch_size.max(1) as f64),
            tokens: 1.0,
            last: now,
        }
    }

    /// Whole tokens available at `now`.
    fn available(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
        // The epsilon absorbs rounding when waking exactly at `next_token_at`.
        (self.tokens + 1e-9).floor() as u64
    }

    /// When the next whole token is there (call after `available` returned 0).
    fn next_token_at(&self, now: Instant) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0) / self.rate;
        now + Duration::from_nanos(((missing * 1e9).ceil() as u64).max(1))
    }

    fn take(&mut self, n: u64) {
        self.tokens -= n as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refills_at_its_rate_up_to_its_capacity() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 1000, start);
        assert_eq!(bucket.available(start), 1);
        bucket.take(1);
        assert_eq!(bucket.available(start), 0);
        assert_eq!(
            bucket.next_token_at(start),
            start + Duration::from_millis(10)
        );
        assert_eq!(bucket.available(start + Duration::from_millis(55)), 5);
        // A tenth of a second's worth at most.
        assert_eq!(bucket.available(start + Duration::from_secs(60)), 10);
    }

    #[test]
    fn bursts_start_with_a_sleep_phase() {
        let epoch = Instant::now();
        let burst = Burst {
            sleep: Duration::from_secs(2),
            generate: Duration::from_secs(1),
        };
        assert_eq!(
            burst_wait(burst, epoch, epoch),
            Some(epoch + Duration::from_secs(2))
        );
        assert_eq!(
            burst_wait(burst, epoch, epoch + Duration::from_millis(2500)),
            None
        );
        assert_eq!(
            burst_wait(burst, epoch, epoch + Duration::from_secs(3)),
            Some(epoch + Duration::from_secs(5))
        );
    }
}
