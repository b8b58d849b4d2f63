//! The kafka source: a consumer group member whose offsets move only with acks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, LagReport, Source};
use funnel_record::{Data, Metadata, Operation, Payload, Position, Record, metadata};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::config::KafkaSourceConfig;
use super::position::{KafkaPosition, PositionWriter};
use super::{LastError, Reasons};
use crate::util::unix_nanos_now;

/// Metadata key holding the partition a message was read from.
pub const METADATA_PARTITION: &str = "kafka.partition";
/// Metadata key holding the offset of a message.
pub const METADATA_OFFSET: &str = "kafka.offset";

/// Batches read ahead of the engine, at most.
const READ_AHEAD: usize = 4;
/// How long one poll of the consumer waits, so the reader notices a stop promptly.
const POLL: Duration = Duration::from_millis(100);
/// How long closing the consumer (leaving the group) may take when the source stops;
/// below the 2 s that `teardown` waits for the reader.
const CLOSE: Duration = Duration::from_millis(1500);

/// A topic and partition.
pub(crate) type Partition = (String, i32);

/// What the reader thread hands to `read`: a batch and, per partition in it, the
/// offset after its last message; or the error that stopped it.
type Batch = Result<(Vec<Record>, Vec<(Partition, i64)>), ConnectorError>;

/// A Kafka source (see the [module docs](super)).
pub struct KafkaSource {
    id: String,
    who: String,
    config: KafkaSourceConfig,
    resume: Option<KafkaPosition>,
    running: Mutex<Option<Running>>,
    batches: tokio::sync::Mutex<Option<mpsc::Receiver<Batch>>>,
    closed: watch::Sender<bool>,
    /// Where the consumer lag goes, when the source runs in a worker.
    lag: Mutex<Option<LagReport>>,
}

/// The consumer and its reader thread.
struct Running {
    consumer: Arc<BaseConsumer<Group>>,
    stop: Arc<AtomicBool>,
    done: Option<std::sync::mpsc::Receiver<()>>,
}

/// Offsets acked by the engine and not yet committed to the group, and what the
/// engine read of each partition (for the lag).
pub(crate) struct Commits {
    who: String,
    size: usize,
    delay: Duration,
    state: Mutex<CommitState>,
}

#[derive(Default)]
pub(crate) struct CommitState {
    /// Partitions this member owns now.
    pub(crate) assigned: HashSet<Partition>,
    /// Next offset for the engine to read per partition: one past the last message
    /// `read` returned since the partition was assigned.
    pub(crate) handed: HashMap<Partition, i64>,
    /// The offset of the first message the reader fetched per partition since it was
    /// assigned (where the engine starts).
    pub(crate) first: HashMap<Partition, i64>,
    /// Next offset to read per partition: one past the last acked message.
    acked: HashMap<Partition, i64>,
    /// What was last sent in a commit per partition.
    sent: HashMap<Partition, i64>,
    /// Acked records since the last commit.
    since: usize,
    /// When the last commit was sent (or the source opened).
    last: Option<Instant>,
}

impl Commits {
    pub(crate) fn state(&self) -> MutexGuard<'_, CommitState> {
        // Critical sections update maps in place and stay consistent.
        crate::util::lock(&self.state)
    }

    /// The acked offsets not yet sent, of partitions this member owns (all of them
    /// when `only` is `None`), marked sent.
    fn take_due(state: &mut CommitState, only: Option<&HashSet<Partition>>) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        let CommitState {
            acked,
            sent,
            assigned,
            ..
        } = state;
        for (partition, &next) in acked.iter() {
            if !assigned.contains(partition) || only.is_some_and(|o| !o.contains(partition)) {
                continue;
            }
            if sent.get(partition).is_some_and(|&s| s >= next) {
                continue;
            }
            if list
                .add_partition_offset(&partition.0, partition.1, Offset::Offset(next))
                .is_ok()
            {
                sent.insert(partition.clone(), next);
            }
        }
        state.since = 0;
        state.last = Some(Instant::now());
        list
    }

    /// Commits acked offsets when enough records were acked or the delay passed
    /// (`force`: now, waiting for the broker's answer).
    fn commit(&self, consumer: &BaseConsumer<Group>, force: bool) {
        let list = {
            let mut state = self.state();
            let due = state.since >= self.size
                || (state.since > 0 && state.last.is_none_or(|t| t.elapsed() >= self.delay));
            if !force && !due {
                return;
            }
            Self::take_due(&mut state, None)
        };
        if list.count() == 0 {
            return;
        }
        let mode = if force {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        if let Err(e) = consumer.commit(&list, mode) {
            self.failed(&list, &e);
        }
    }

    /// A commit failed: its offsets go again with the next one.
    fn failed(&self, list: &TopicPartitionList, error: &KafkaError) {
        tracing::warn!(
            "{}: committing offsets failed ({error}); they are committed with the next acks",
            self.who
        );
        let mut state = self.state();
        for element in list.elements() {
            state
                .sent
                .remove(&(element.topic().to_owned(), element.partition()));
        }
    }
}

/// The consumer context: rebalances and commit results.
pub(crate) struct Group(Arc<Commits>, LastError);

impl ClientContext for Group {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::warn!("{}: librdkafka {fac}: {message}", self.0.who);
            }
            _ => tracing::debug!("{}: librdkafka {fac}: {message}", self.0.who),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("{}: {error}: {reason}", self.0.who);
        self.1.set(&error, reason);
    }
}

impl Reasons for Group {
    fn last_error(&self) -> &LastError {
        &self.1
    }
}

impl ConsumerContext for Group {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        // Partitions taken away: commit what was acked of them, then forget them, so
        // that nothing acked later is committed for a partition another member reads.
        let revoked: HashSet<Partition> = list
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let due = Commits::take_due(&mut self.0.state(), Some(&revoked));
        if due.count() > 0
            && let Err(e) = consumer.commit(&due, CommitMode::Sync)
        {
            tracing::warn!(
                "{}: committing the offsets of revoked partitions failed ({e}); their \
                 acked records will be read again by the next owner",
                self.0.who
            );
        }
        let mut state = self.0.state();
        for partition in &revoked {
            state.assigned.remove(partition);
            state.acked.remove(partition);
            state.sent.remove(partition);
            state.handed.remove(partition);
            state.first.remove(partition);
        }
        tracing::info!(
            "{}: partitions revoked: {}",
            self.0.who,
            describe(revoked.iter())
        );
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let assigned: Vec<Partition> = list
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            tracing::info!(
                "{}: partitions assigned: {}",
                self.0.who,
                describe(assigned.iter())
            );
            let mut state = self.0.state();
            for partition in &assigned {
                // Read again from the committed offset: what was read before counts
                // for nothing.
                state.handed.remove(partition);
                state.first.remove(partition);
            }
            state.assigned.extend(assigned);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            self.0.failed(offsets, &e);
        }
    }
}

fn describe<'a>(partitions: impl Iterator<Item = &'a Partition>) -> String {
    let mut names: Vec<String> = partitions.map(|(t, p)| format!("{t}[{p}]")).collect();
    names.sort();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Whether `error` is about joining the consumer group.
fn is_group_error(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::GroupAuthorizationFailed
                | C::InvalidGroupId
                | C::GroupMaxSizeReached
                | C::InconsistentGroupProtocol
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::UnknownMemberId
                | C::IllegalGeneration
                | C::InvalidSessionTimeout
                | C::FencedInstanceId
        )
    )
}

impl KafkaSource {
    /// A source with validated settings, resuming after `resume` (a position it
    /// wrote) or from the group's committed offsets. Nothing is connected until
    /// [`Source::open`].
    pub fn new(id: &str, config: KafkaSourceConfig, resume: Option<Position>) -> Self {
        let who = format!("kafka source {id}");
        let resume = resume.and_then(|p| match KafkaPosition::parse(p.as_bytes()) {
            Ok(position) => Some(position),
            Err(e) => {
                tracing::warn!("{who}: ignoring the saved position: {e}");
                None
            }
        });
        Self {
            id: id.to_owned(),
            who,
            config,
            resume,
            running: Mutex::new(None),
            batches: tokio::sync::Mutex::new(None),
            closed: watch::channel(false).0,
            lag: Mutex::new(None),
        }
    }

    /// The consumer group: `groupID`, else the one of the resume position, else one
    /// made of the connector id.
    pub fn group_id(&self) -> String {
        if let Some(group) = &self.config.group_id {
            return group.clone();
        }
        match &self.resume {
            Some(position) if !position.group_id.is_empty() => position.group_id.clone(),
            _ => format!("funnel-{}", self.id),
        }
    }

    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        crate::util::lock(&self.running)
    }

    /// Notes that the engine has read up to `next` (per partition), for the lag.
    fn handed(&self, next: &[(Partition, i64)]) {
        let running = self.running();
        let Some(running) = running.as_ref() else {
            return;
        };
        let mut state = running.consumer.context().0.state();
        for (partition, at) in next {
            // A batch read before its partition was revoked counts for nothing.
            if state.assigned.contains(partition) {
                state.handed.insert(partition.clone(), *at);
            }
        }
    }

    fn stopped(&self) -> ConnectorError {
        ConnectorError::transient(format!("{}: the source is not open", self.who))
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // Abandoned without teardown: the reader thread stops and closes the consumer.
        if let Some(running) = self.running().take() {
            running.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// What the reader thread needs.
struct Reader {
    who: String,
    consumer: Arc<BaseConsumer<Group>>,
    commits: Arc<Commits>,
    stop: Arc<AtomicBool>,
    batches: mpsc::Sender<Batch>,
    batch_size: usize,
    positions: PositionWriter,
    id: String,
    resume: Option<KafkaPosition>,
    retry_group_join_errors: bool,
}

impl Reader {
    fn run(self) {
        while !self.stop.load(Ordering::Relaxed) && !self.batches.is_closed() {
            self.commits.commit(&self.consumer, false);
            let Some(first) = self.consumer.poll(POLL) else {
                continue;
            };
            let mut messages = Vec::new();
            match first {
                Ok(message) => messages.push(message),
                Err(error) => {
                    if self.error(error) {
                        break;
                    }
                    continue;
                }
            }
            while messages.len() < self.batch_size {
                match self.consumer.poll(Duration::ZERO) {
                    Some(Ok(message)) => messages.push(message),
                    Some(Err(error)) => {
                        if self.error(error) {
                            return self.finish();
                        }
                        break;
                    }
                    None => break,
                }
            }
            let next = self.next_offsets(&messages);
            let records = self.records(&messages);
            drop(messages);
            if records.is_empty() {
                continue;
            }
            if self.batches.blocking_send(Ok((records, next))).is_err() {
                break;
            }
        }
        self.finish();
    }

    /// Per partition in `messages`, the offset after its last one; notes the first
    /// offset fetched of a partition since it was assigned.
    fn next_offsets(&self, messages: &[BorrowedMessage<'_>]) -> Vec<(Partition, i64)> {
        let mut next: Vec<(Partition, i64)> = Vec::new();
        for m in messages {
            match next
                .iter_mut()
                .find(|((t, p), _)| *p == m.partition() && t == m.topic())
            {
                Some((_, at)) => *at = m.offset() + 1,
                None => next.push(((m.topic().to_owned(), m.partition()), m.offset() + 1)),
            }
        }
        let mut state = self.commits.state();
        for (partition, _) in &next {
            if !state.first.contains_key(partition) && state.assigned.contains(partition) {
                let first = messages
                    .iter()
                    .find(|m| m.partition() == partition.1 && m.topic() == partition.0)
                    .map_or(0, Message::offset);
                state.first.insert(partition.clone(), first);
            }
        }
        next
    }

    /// Commits what was acked and closes the consumer (leaving the group).
    fn finish(self) {
        self.commits.commit(&self.consumer, true);
        // Leave the group here, before `teardown` returns, not when the last handle
        // of the consumer goes: the lag thread may hold one then, and the process
        // may have exited. A member that does not leave keeps its partitions until
        // its session times out, and whoever comes next (this pipeline restarted,
        // say) waits that long for them.
        if self.consumer.close_queue().is_ok() {
            let deadline = Instant::now() + CLOSE;
            while !self.consumer.closed() && Instant::now() < deadline {
                // Serves the revocation (pre_rebalance); messages fetched now are
                // dropped, unacked, and read again by the partitions' next owner.
                let _ = self.consumer.poll(POLL);
            }
        }
    }

    /// Handles a consumer error; `true` when reading must stop.
    fn error(&self, error: KafkaError) -> bool {
        if !self.retry_group_join_errors && is_group_error(&error) {
            let message = format!(
                "{}: joining the consumer group failed: {error} (retryGroupJoinErrors is false)",
                self.who
            );
            let _ = self
                .batches
                .blocking_send(Err(ConnectorError::fatal(message)));
            return true;
        }
        tracing::warn!("{}: {error}; retrying", self.who);
        false
    }

    /// The records of `messages`; keys and values share one buffer per batch.
    fn records(&self, messages: &[BorrowedMessage<'_>]) -> Vec<Record> {
        let total: usize = messages
            .iter()
            .map(|m| m.payload_len() + m.key().map_or(0, <[u8]>::len))
            .sum();
        let mut buffer = Vec::with_capacity(total);
        for m in messages {
            buffer.extend_from_slice(m.key().unwrap_or_default());
            buffer.extend_from_slice(m.payload().unwrap_or_default());
        }
        let buffer = Bytes::from(buffer);
        let read_at = unix_nanos_now().to_string();
        let mut start = 0;
        let mut records = Vec::with_capacity(messages.len());
        for m in messages {
            let key_len = m.key().map(<[u8]>::len);
            let key = key_len.map(|n| buffer.slice(start..start + n));
            start += key_len.unwrap_or(0);
            let value_len = m.payload_len();
            let value = buffer.slice(start..start + value_len);
            start += value_len;
            if let Some(resume) = &self.resume
                && resume.partition == m.partition()
                && m.offset() <= resume.offset
                && resume.topic == m.topic()
            {
                // Acked before a restart whose group commit was not made.
                continue;
            }
            let mut meta = Metadata::new();
            if let Some(headers) = m.headers() {
                for header in headers.iter() {
                    let value = header
                        .value
                        .map_or_else(String::new, |v| String::from_utf8_lossy(v).into_owned());
                    meta.insert(header.key, value);
                }
            }
            meta.insert(metadata::COLLECTION, m.topic());
            meta.insert(METADATA_PARTITION, m.partition().to_string());
            meta.insert(METADATA_OFFSET, m.offset().to_string());
            if let Some(ms) = m.timestamp().to_millis() {
                meta.insert(
                    metadata::CREATED_AT,
                    (i128::from(ms) * 1_000_000).to_string(),
                );
            }
            meta.insert(metadata::READ_AT, read_at.clone());
            meta.insert(metadata::SOURCE_CONNECTOR_ID, self.id.clone());
            records.push(Record {
                position: self
                    .positions
                    .position(m.topic(), m.partition(), m.offset()),
                operation: Operation::Create,
                metadata: meta,
                key: key.map(Data::Raw),
                payload: Payload {
                    before: None,
                    after: Some(Data::Raw(value)),
                },
            });
        }
        records
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let group = self.group_id();
        let commits = Arc::new(Commits {
            who: self.who.clone(),
            size: self.config.commit_offsets_size,
            delay: self.config.commit_offsets_delay,
            // The delay runs from the start: the first acks wait for it too.
            state: Mutex::new(CommitState {
                last: Some(Instant::now()),
                ..CommitState::default()
            }),
        });
        let consumer: BaseConsumer<Group> = self
            .config
            .consumer_config(&group)
            .create_with_context(Group(Arc::clone(&commits), LastError::default()))
            .map_err(|e| super::client_error(&self.who, &e))?;
        let consumer = Arc::new(consumer);
        let checked = {
            let consumer = Arc::clone(&consumer);
            let who = self.who.clone();
            let topics = self.config.topics.clone();
            tokio::task::spawn_blocking(move || {
                super::check_topics(
                    consumer.client(),
                    &|| super::deliver_events(&consumer),
                    &who,
                    &topics,
                )
            })
        };
        match checked.await {
            Ok(result) => result?,
            Err(e) => return Err(ConnectorError::internal(format!("{}: {e}", self.who))),
        }
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| {
            ConnectorError::config(format!("{}: subscribing failed: {e}", self.who))
        })?;
        let (sender, receiver) = mpsc::channel(READ_AHEAD);
        let stop = Arc::new(AtomicBool::new(false));
        let (done_sender, done) = std::sync::mpsc::channel();
        let reader = Reader {
            who: self.who.clone(),
            consumer: Arc::clone(&consumer),
            commits,
            stop: Arc::clone(&stop),
            batches: sender,
            batch_size: self.config.batch_size,
            positions: PositionWriter::new(&group),
            id: self.id.clone(),
            resume: self.resume.clone(),
            retry_group_join_errors: self.config.retry_group_join_errors,
        };
        let lag = crate::util::lock(&self.lag).clone();
        if let Some(report) = lag {
            let watch = super::lag::LagWatch {
                who: self.who.clone(),
                consumer: Arc::downgrade(&consumer),
                commits: Arc::clone(&reader.commits),
                stop: Arc::clone(&stop),
                report,
                read_from_beginning: self.config.read_from_beginning,
            };
            std::thread::Builder::new()
                .name("kafka-lag".to_owned())
                .spawn(move || watch.run())
                .map_err(|e| {
                    ConnectorError::internal(format!(
                        "{}: cannot start the lag measurement: {e}",
                        self.who
                    ))
                })?;
        }
        std::thread::Builder::new()
            .name("kafka-source".to_owned())
            .spawn(move || {
                reader.run();
                let _ = done_sender.send(());
            })
            .map_err(|e| {
                ConnectorError::internal(format!("{}: cannot start the reader: {e}", self.who))
            })?;
        *self.batches.lock().await = Some(receiver);
        *self.running() = Some(Running {
            consumer,
            stop,
            done: Some(done),
        });
        tracing::info!(
            "{}: reading {} as group {group}",
            self.who,
            self.config.topics.join(", ")
        );
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        let mut closed = self.closed.subscribe();
        if *closed.borrow_and_update() {
            return Err(self.stopped());
        }
        let mut batches = tokio::select! {
            biased;
            _ = closed.changed() => return Err(self.stopped()),
            guard = self.batches.lock() => guard,
        };
        let Some(receiver) = batches.as_mut() else {
            return Err(self.stopped());
        };
        tokio::select! {
            biased;
            _ = closed.changed() => Err(self.stopped()),
            batch = receiver.recv() => match batch {
                Some(Ok((records, next))) => {
                    self.handed(&next);
                    Ok(Some(records))
                }
                Some(Err(error)) => Err(error),
                None => Err(ConnectorError::transient(format!("{}: the reader stopped", self.who))),
            },
        }
    }

    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError> {
        let consumer = {
            let running = self.running();
            let Some(running) = running.as_ref() else {
                return Err(self.stopped());
            };
            Arc::clone(&running.consumer)
        };
        let commits = &consumer.context().0;
        {
            let mut state = commits.state();
            for position in positions {
                let Some((topic, partition, offset)) =
                    KafkaPosition::parse_fast(position.as_bytes())
                else {
                    return Err(ConnectorError::internal(format!(
                        "{}: acked position {position} is not one this source wrote",
                        self.who
                    )));
                };
                // A partition revoked since the read is not committed here: its
                // new owner reads the record again.
                if !state.assigned.contains(&(topic.to_owned(), partition)) {
                    continue;
                }
                let next = state
                    .acked
                    .entry((topic.to_owned(), partition))
                    .or_insert(0);
                *next = (*next).max(offset + 1);
            }
            state.since += positions.len();
        }
        if commits.state().since >= commits.size {
            commits.commit(&consumer, false);
        }
        Ok(())
    }

    fn report_lag(&self, lag: LagReport) {
        *crate::util::lock(&self.lag) = Some(lag);
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.closed.send_replace(true);
        let running = self.running().take();
        // The receiver goes: a reader blocked on a full queue wakes up and stops.
        *self.batches.lock().await = None;
        let Some(mut running) = running else {
            return Ok(());
        };
        running.stop.store(true, Ordering::Relaxed);
        drop(running.consumer);
        if let Some(done) = running.done.take() {
            // The reader commits what was acked and closes the consumer; a broker that
            // does not answer must not hold the pipeline's stop for long.
            let waited = tokio::task::spawn_blocking(move || {
                let _ = done.recv_timeout(Duration::from_secs(2));
            });
            let _ = waited.await;
        }
        Ok(())
    }
}
