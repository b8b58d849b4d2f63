//! The consumer lag of the kafka source, per partition: the partition's high watermark
//! (the offset its next message will get) minus the next offset the engine is to read
//! there, measured every [`INTERVAL`] on a thread of its own, so the figure stays true
//! while the pipeline is idle or held back.
//!
//! The next offset to read is one past the last message the engine read of the
//! partition; before it has read any since the partition was assigned, the offset of
//! the first message the reader fetched there, else the group's committed offset, else
//! where `readFromBeginning` starts (the oldest message, or the high watermark).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use funnel_core::LagReport;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::source::{Commits, Group, Partition};

/// How often the lag is measured.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);
/// How long one watermark or committed-offset request may take.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How often the thread looks at its stop flag while it waits.
const TICK: Duration = Duration::from_millis(100);

/// What the lag thread needs.
pub(crate) struct LagWatch {
    pub(crate) who: String,
    /// Weak: the consumer is closed when the source lets it go, not when this thread
    /// notices.
    pub(crate) consumer: Weak<BaseConsumer<Group>>,
    pub(crate) commits: Arc<Commits>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) report: LagReport,
    pub(crate) read_from_beginning: bool,
}

impl LagWatch {
    /// Measures and reports the lag every [`INTERVAL`] until stopped.
    pub(crate) fn run(self) {
        // Where the engine starts in each partition when it has read nothing of it
        // yet: the group's committed offset, asked once per assignment.
        let mut starts: HashMap<Partition, i64> = HashMap::new();
        let mut reported: HashSet<Partition> = HashSet::new();
        loop {
            let began = Instant::now();
            let Some(consumer) = self.consumer.upgrade() else {
                return;
            };
            self.measure(&consumer, &mut starts, &mut reported);
            drop(consumer);
            while began.elapsed() < INTERVAL {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(TICK);
            }
        }
    }

    fn measure(
        &self,
        consumer: &BaseConsumer<Group>,
        starts: &mut HashMap<Partition, i64>,
        reported: &mut HashSet<Partition>,
    ) {
        let (assigned, mut next) = {
            let state = self.commits.state();
            let next: HashMap<Partition, i64> = state
                .assigned
                .iter()
                .filter_map(|p| {
                    let at = state.handed.get(p).or_else(|| state.first.get(p))?;
                    Some((p.clone(), *at))
                })
                .collect();
            (state.assigned.clone(), next)
        };
        starts.retain(|p, _| assigned.contains(p));
        let unknown: Vec<&Partition> = assigned
            .iter()
            .filter(|p| !next.contains_key(*p) && !starts.contains_key(*p))
            .collect();
        if !unknown.is_empty() {
            self.committed(consumer, &unknown, starts);
        }
        let mut parts = Vec::with_capacity(assigned.len() + reported.len());
        for partition in &assigned {
            let (topic, id) = partition;
            let (low, high) = match consumer.fetch_watermarks(topic, *id, TIMEOUT) {
                Ok(marks) => marks,
                Err(e) => {
                    tracing::debug!("{}: no watermarks of {topic}[{id}]: {e}", self.who);
                    continue;
                }
            };
            let at = match next
                .remove(partition)
                .or_else(|| starts.get(partition).copied())
            {
                Some(at) if at >= 0 => at,
                _ if self.read_from_beginning => low,
                _ => high,
            };
            let lag = u64::try_from(high - at).unwrap_or(0);
            parts.push((labels(partition), lag));
            reported.insert(partition.clone());
        }
        // Partitions revoked since: 0 once, so their series stop counting here.
        reported.retain(|p| {
            let keep = assigned.contains(p);
            if !keep {
                parts.push((labels(p), 0));
            }
            keep
        });
        if !parts.is_empty() {
            self.report.set_records_by(&parts);
        }
    }

    /// Puts the committed offsets of `partitions` in `starts` (-1 where the group
    /// has none); nothing when the broker does not answer (asked again next time).
    fn committed(
        &self,
        consumer: &BaseConsumer<Group>,
        partitions: &[&Partition],
        starts: &mut HashMap<Partition, i64>,
    ) {
        let mut list = TopicPartitionList::new();
        for (topic, id) in partitions {
            list.add_partition(topic, *id);
        }
        match consumer.committed_offsets(list, TIMEOUT) {
            Ok(list) => {
                for e in list.elements() {
                    let at = match e.offset() {
                        Offset::Offset(at) => at,
                        _ => -1,
                    };
                    starts.insert((e.topic().to_owned(), e.partition()), at);
                }
            }
            Err(e) => tracing::debug!("{}: no committed offsets: {e}", self.who),
        }
    }
}

/// The labels of a partition's lag series.
fn labels((topic, partition): &Partition) -> [(&'static str, String); 2] {
    [
        ("topic", topic.clone()),
        ("partition", partition.to_string()),
    ]
}
