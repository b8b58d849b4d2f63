//! The S3 destination: one object per batch, uploaded by a background task (a few at
//! once, acked in write order once each upload has completed).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Destination, DestinationAck};
use funnel_record::{Position, Record};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::mpsc;

use super::client::Bucket;
use super::config::{Compression, S3DestinationConfig};
use crate::ack::AckQueue;
use crate::format::{RecordFormat, Unencoded};
use crate::util::AbortOnDrop;

/// Objects larger than this are uploaded in parts (S3's smallest part is 5 MiB).
pub(crate) const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;

/// Size of a part of a multipart upload.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts of one multipart upload sent at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Uploads in flight at once.
const UPLOADS_IN_FLIGHT: usize = 4;

/// Encoded batches waiting for an upload slot, at most (with the uploads in flight,
/// this bounds the memory of encoded batches).
const QUEUED: usize = 2;

/// One encoded batch.
struct Job {
    name: String,
    bytes: Bytes,
    positions: Vec<Position>,
    /// The records that could not be encoded (nacked, in order with the others' acks).
    unencoded: Unencoded,
}

/// An S3 destination. No I/O until [`Destination::open`].
pub struct S3Destination {
    id: String,
    who: String,
    config: S3DestinationConfig,
    /// How each record becomes its bytes.
    format: RecordFormat,
    /// Names the objects of this run: new for each destination, so names never
    /// collide with those of an earlier run.
    run: String,
    /// Objects named so far in this run.
    seq: AtomicU64,
    acks: Arc<AckQueue>,
    running: Mutex<Option<Running>>,
}

struct Running {
    jobs: mpsc::Sender<Job>,
    task: AbortOnDrop,
}

impl S3Destination {
    /// A destination for connector `id` with validated settings.
    /// Records are encoded in `format` (`sdk.record.format`).
    pub fn new(id: &str, config: S3DestinationConfig, format: RecordFormat) -> Self {
        let run = uuid::Uuid::new_v4().simple().to_string();
        Self {
            id: id.to_owned(),
            who: format!("s3 destination {id}"),
            config,
            format,
            run: run[..12].to_owned(),
            seq: AtomicU64::new(0),
            acks: Arc::new(AckQueue::new()),
            running: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        crate::util::lock(&self.running)
    }

    /// The next object name: prefix, UTC time to the microsecond, this run's ID and a
    /// sequence number, so names sort in write order and never collide.
    fn next_name(&self) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let time = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        let extension = match self.config.compression {
            Compression::None => "json",
            Compression::Gzip => "json.gz",
        };
        format!(
            "{}{time}-{}-{seq:08}.{extension}",
            self.config.connection.prefix, self.run
        )
    }

    /// The records as lines (OpenCDC JSON, or `sdk.record.format`), compressed as
    /// configured; and the records that could not be encoded.
    fn encode(&self, records: &[Record]) -> Result<(Bytes, Unencoded), ConnectorError> {
        let size: usize = records.iter().map(|r| r.size_hint() * 4 / 3 + 256).sum();
        let mut lines = Vec::with_capacity(size);
        let unencoded = self.format.write_lines(records, &mut lines);
        Ok((self.compress(lines)?, unencoded))
    }

    /// `lines`, compressed as configured.
    fn compress(&self, lines: Vec<u8>) -> Result<Bytes, ConnectorError> {
        match self.config.compression {
            Compression::None => Ok(Bytes::from(lines)),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(lines.len() / 4),
                    flate2::Compression::fast(),
                );
                encoder
                    .write_all(&lines)
                    .and_then(|()| encoder.finish())
                    .map(Bytes::from)
                    .map_err(|e| {
                        ConnectorError::internal(format!("{}: gzip failed: {e}", self.who))
                    })
            }
        }
    }
}

/// Uploads `bytes` as object `name`: in one request, or in parts when large.
async fn upload(bucket: &Bucket, name: &str, bytes: Bytes) -> Result<(), ConnectorError> {
    let path = Path::parse(name).map_err(|e| {
        ConnectorError::config(format!(
            "{}: {name} is not an object name (setting `prefix`): {e}",
            bucket.who
        ))
    })?;
    let what = format!("uploading object {name} ({} bytes)", bytes.len());
    if bytes.len() <= MULTIPART_THRESHOLD {
        return bucket
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(|e| bucket.error(&what, &e));
    }
    let upload = bucket
        .store
        .put_multipart(&path)
        .await
        .map_err(|e| bucket.error(&what, &e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let mut rest = bytes;
    while !rest.is_empty() {
        writer
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(|e| bucket.error(&what, &e))?;
        let part = rest.split_to(rest.len().min(PART_SIZE));
        writer.put(part);
    }
    writer
        .finish()
        .await
        .map(drop)
        .map_err(|e| bucket.error(&what, &e))
}

/// Uploads the jobs, several at once, and queues their acks in write order; the first
/// failed upload fails the queue.
async fn uploads(bucket: Arc<Bucket>, mut jobs: mpsc::Receiver<Job>, acks: Arc<AckQueue>) {
    let mut in_flight = FuturesOrdered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            biased;
            Some((positions, unencoded, result)) = in_flight.next(), if !in_flight.is_empty() => {
                let positions: Vec<Position> = positions;
                let unencoded: Unencoded = unencoded;
                match result {
                    Ok(()) => acks.push(unencoded.acks(positions)),
                    Err(e) => {
                        let e: ConnectorError = e;
                        acks.fail(e.to_string());
                        return;
                    }
                }
            }
            job = jobs.recv(), if open && in_flight.len() < UPLOADS_IN_FLIGHT => match job {
                Some(Job { name, bytes, positions, unencoded }) => {
                    let bucket = Arc::clone(&bucket);
                    in_flight.push_back(async move {
                        let result = upload(&bucket, &name, bytes).await;
                        if result.is_ok() {
                            tracing::debug!(connector = %bucket.who, object = %name, records = positions.len(), "Uploaded an object.");
                        }
                        (positions, unencoded, result)
                    });
                }
                None => open = false,
            },
        }
    }
}

#[async_trait]
impl Destination for S3Destination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let bucket = Bucket::new(&self.config.connection, &self.who)?;
        // A listing of the prefix: a missing bucket or refused credentials fail `open`.
        bucket.check().await?;
        let (jobs, receiver) = mpsc::channel(QUEUED);
        let task = tokio::spawn(uploads(Arc::new(bucket), receiver, Arc::clone(&self.acks)));
        if let Some(old) = self.lock().replace(Running {
            jobs,
            task: AbortOnDrop(task),
        }) {
            old.task.abort();
        }
        tracing::info!(connector = %self.id, bucket = %self.config.connection.bucket, prefix = %self.config.connection.prefix, run = %self.run, "Writing to S3.");
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        let jobs = match &*self.lock() {
            Some(running) => running.jobs.clone(),
            None => {
                return Err(crate::util::not_open(&self.who, "write"));
            }
        };
        self.acks.check()?;
        if records.is_empty() {
            return Ok(());
        }
        let (bytes, unencoded) = self.encode(records)?;
        let job = Job {
            name: self.next_name(),
            bytes,
            positions: records.iter().map(|r| r.position.clone()).collect(),
            unencoded,
        };
        jobs.send(job).await.map_err(|_| {
            ConnectorError::transient(match self.acks.failure() {
                Some(failure) => failure,
                None => format!("{}: the destination was torn down", self.who),
            })
        })
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.acks.next().await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        let running = self.lock().take();
        self.acks.close_torn_down(&self.who);
        if let Some(running) = running {
            running.task.abort();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use funnel_core::settings_of as settings;

    fn destination(extra: &[(&str, &str)]) -> S3Destination {
        let mut s = vec![
            ("aws.accessKeyId", "k"),
            ("aws.secretAccessKey", "s"),
            ("aws.region", "us-east-1"),
            ("aws.bucket", "b"),
            ("prefix", "out/"),
        ];
        s.extend_from_slice(extra);
        let config = super::super::validate_destination(&settings(&s)).unwrap();
        S3Destination::new("p:out", config, RecordFormat::OpenCdcJson)
    }

    #[test]
    fn object_names_sort_in_write_order_and_differ_between_runs() {
        let one = destination(&[]);
        let (a, b) = (one.next_name(), one.next_name());
        assert!(
            a.starts_with("out/") && a.ends_with("-00000000.json"),
            "{a}"
        );
        assert!(a < b, "{a} {b}");
        let other = destination(&[("compression", "gzip")]);
        let c = other.next_name();
        assert!(c.ends_with("-00000000.json.gz"), "{c}");
        assert_ne!(a[a.len() - 27..], c[c.len() - 30..c.len() - 3]);
    }

    #[test]
    fn a_gzip_object_holds_the_json_lines() {
        use std::io::Read;
        let records = [Record::new("1", "a"), Record::new("2", "b")];
        let plain = destination(&[]).encode(&records).unwrap().0;
        let zipped = destination(&[("compression", "gzip")])
            .encode(&records)
            .unwrap()
            .0;
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain);
        assert_eq!(plain.iter().filter(|b| **b == b'\n').count(), 2);
    }
}
