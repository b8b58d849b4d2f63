//! The log destination.

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck};
use funnel_record::Record;
use tracing::Level;

use super::config::LogConfig;
use crate::ack::AckQueue;

/// A destination that logs every record (see the [module docs](super)).
pub struct LogDestination {
    id: String,
    config: LogConfig,
    acks: AckQueue,
}

impl LogDestination {
    /// A destination with validated settings.
    pub fn new(id: &str, config: LogConfig) -> Self {
        Self {
            id: id.to_owned(),
            config,
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
        // Encoding is skipped when nobody listens at this level.
        if enabled(self.config.level.0) {
            let mut json = Vec::new();
            for record in records {
                json.clear();
                record.write_json(&mut json);
                let text = String::from_utf8_lossy(&json);
                log_at!(
                    self.config.level.0,
                    connector = %self.id,
                    record = %text,
                    "{}",
                    self.config.message.as_deref().unwrap_or_default()
                );
            }
        }
        self.acks.push_ok(records);
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
