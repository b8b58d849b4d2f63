//! The noop destination.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck};
use funnel_record::Record;

use super::config::NoopConfig;
use super::latency;
use crate::ack::AckQueue;

/// Records acknowledged by every noop destination of this process.
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// The number of records every noop destination of this process has acknowledged.
pub fn written_total() -> u64 {
    WRITTEN.load(Ordering::Relaxed)
}

/// A destination that drops records and acknowledges them at once (see the
/// [module docs](super)).
pub struct NoopDestination {
    acks: AckQueue,
    latency: bool,
}

impl NoopDestination {
    /// A noop destination with default settings.
    pub fn new() -> Self {
        Self::with_config(NoopConfig::default())
    }

    /// A noop destination with validated settings.
    pub fn with_config(config: NoopConfig) -> Self {
        Self {
            acks: AckQueue::new(),
            latency: config.latency,
        }
    }
}

impl Default for NoopDestination {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Destination for NoopDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        if self.latency {
            latency::record_batch(
                records.iter().map(latency::read_at_nanos),
                latency::now_nanos(),
            );
        }
        self.acks.push_ok(records);
        Ok(())
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        let acks = self.acks.next().await?;
        WRITTEN.fetch_add(acks.len() as u64, Ordering::Relaxed);
        Ok(acks)
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.acks.close("noop destination: torn down".to_owned());
        Ok(())
    }
}
