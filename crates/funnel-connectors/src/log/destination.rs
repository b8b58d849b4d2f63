//! The log destination.

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck};
use funnel_record::Record;
use tracing::Level;

use super::config::LogConfig;
use crate::ack::AckQueue;
use crate::format::RecordFormat;

/// A destination that logs every record (see the [module docs](super)).
pub struct LogDestination {
    id: String,
    config: LogConfig,
    /// How each record becomes the text logged.
    format: RecordFormat,
    acks: AckQueue,
}

impl LogDestination {
    /// A destination with validated settings.
    /// Records are encoded in `format` (`sdk.record.format`).
    pub fn new(id: &str, config: LogConfig, format: RecordFormat) -> Self {
        Self {
            id: id.to_owned(),
            config,
            format,
            acks: AckQueue::new(),
        }
    }
}

/// Logs one event at a level chosen at run time (tracing's macros need a constant).
macro_rules! log_at {
    ($level:expr, $($rest:tt)+) => {
        match $level {
            Level::TRACE => tracing::trace!($($rest)+),
            Level::DEBUG => tracing::debug!($($rest)+),
            Level::INFO => tracing::info!($($rest)+),
            Level::WARN => tracing::warn!($($rest)+),
            Level::ERROR => tracing::error!($($rest)+),
        }
    };
}

fn enabled(level: Level) -> bool {
    match level {
        Level::TRACE => tracing::enabled!(Level::TRACE),
        Level::DEBUG => tracing::enabled!(Level::DEBUG),
        Level::INFO => tracing::enabled!(Level::INFO),
        Level::WARN => tracing::enabled!(Level::WARN),
        Level::ERROR => tracing::enabled!(Level::ERROR),
    }
}

#[async_trait]
impl Destination for LogDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        // Encoding is skipped when nobody listens at this level (and it cannot fail).
        let enabled = enabled(self.config.level.0);
        if !enabled && self.format.infallible() {
            self.acks.push_ok(records);
            return Ok(());
        }
        let mut acks = Vec::with_capacity(records.len());
        let mut bytes = Vec::new();
        for record in records {
            bytes.clear();
            if let Err(e) = self.format.write(record, &mut bytes) {
                acks.push(DestinationAck::nack(record.position.clone(), e));
                continue;
            }
            if enabled {
                let text = String::from_utf8_lossy(&bytes);
                log_at!(
                    self.config.level.0,
                    connector = %self.id,
                    record = %text,
                    "{}",
                    self.config.message.as_deref().unwrap_or_default()
                );
            }
            acks.push(DestinationAck::ok(record.position.clone()));
        }
        self.acks.push(acks);
        Ok(())
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.acks.next().await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.acks
            .close(format!("log destination {}: torn down", self.id));
        Ok(())
    }
}
