//! [`DestinationTask`]: writes to a destination and matches its acks.

use std::sync::Arc;
use std::time::Instant;

use funnel_record::{Position, Record};
use tracing::debug;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::plugin::{Destination, DestinationAck};
use crate::telemetry::Binding;

use super::Connector;

/// Writes batches to a [`Destination`] and matches its acks.
pub struct DestinationTask {
    pub(crate) connector: Connector,
    destination: Arc<dyn Destination>,
}

impl DestinationTask {
    /// A task writing to `destination`.
    pub fn new(id: impl Into<String>, destination: Arc<dyn Destination>) -> Self {
        Self {
            connector: Connector::new(id.into()),
            destination,
        }
    }

    /// Names the destination's plugin (Conduit's `plugin` metric label).
    #[must_use]
    pub fn with_plugin(mut self, plugin: impl Into<String>) -> Self {
        self.connector.plugin = plugin.into();
        self
    }

    /// The plugin name given with [`with_plugin`](Self::with_plugin).
    pub fn plugin(&self) -> &str {
        &self.connector.plugin
    }

    pub(crate) fn bind_pipeline(&mut self, to: Binding<'_>) {
        self.connector.bind_pipeline(to, "destination");
    }

    /// The task's ID (the destination connector's ID).
    pub fn id(&self) -> &str {
        &self.connector.id
    }

    /// The destination.
    pub fn destination(&self) -> &Arc<dyn Destination> {
        &self.destination
    }

    /// Opens the destination.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] when the destination fails to open.
    pub async fn open(&self) -> Result<()> {
        debug!(connector_id = %self.connector.id, "opening destination");
        self.destination
            .open()
            .await
            .map_err(|source| Error::Open {
                task: self.connector.id.clone(),
                source,
            })?;
        debug!(connector_id = %self.connector.id, "destination open");
        Ok(())
    }

    /// Tears the destination down.
    ///
    /// # Errors
    ///
    /// [`Error::Close`] when tearing down fails.
    pub async fn close(&self) -> Result<()> {
        let torn_down = self.destination.teardown().await;
        torn_down.map_err(|source| Error::Teardown {
            task: self.connector.id.clone(),
            source,
        })
    }

    /// Writes `records` (no ack is awaited).
    ///
    /// # Errors
    ///
    /// [`Error::Write`] when the destination refuses the write.
    pub async fn write(&self, records: &[Record]) -> Result<()> {
        self.connector.tap.send(records);
        self.destination
            .write(records)
            .await
            .map_err(|source| Error::Write {
                task: self.connector.id.clone(),
                count: records.len(),
                source,
            })
    }

    /// Waits for the next acks while `waiting` records wait for one.
    ///
    /// # Errors
    ///
    /// [`Error::ReceiveAcks`] when acks cannot be received.
    pub async fn next_acks(&self, waiting: usize) -> Result<Vec<DestinationAck>> {
        self.destination
            .ack()
            .await
            .map_err(|source| Error::ReceiveAcks {
                task: self.connector.id.clone(),
                count: waiting,
                source,
            })
    }

    /// Writes the batch's active records and waits for all their acks (the seed's
    /// `Do`): records acked with an error are nacked with it.
    ///
    /// # Errors
    ///
    /// Write and ack failures, and acks that do not match the written records (out of
    /// order, too many, an empty ack list).
    pub async fn process(&self, batch: &mut Batch) -> Result<()> {
        let active = batch.active_indices();
        if active.is_empty() {
            return Ok(());
        }
        let records = batch.active_records().into_owned();
        self.write(&records).await?;
        let mut cursor = 0;
        while cursor < records.len() {
            let started = Instant::now();
            let acks = self.next_acks(records.len() - cursor).await?;
            let expected = records[cursor..].iter().map(|r| &r.position);
            check_acks(&self.connector.id, &acks, expected)?;
            let bytes = records[cursor..cursor + acks.len()]
                .iter()
                .map(Record::size_hint)
                .sum();
            self.connector.metrics.observe(started, acks.len(), bytes);
            let received = acks.len();
            // End to start: a nack may spread over a split record's pieces.
            for (k, ack) in acks.into_iter().enumerate().rev() {
                if let Some(error) = ack.error {
                    batch.nack_at(active[cursor + k], error);
                }
            }
            cursor += received;
        }
        Ok(())
    }
}

/// Checks a chunk of acks against the positions still expected, in write order.
///
/// # Errors
///
/// [`Error::AckProtocol`] for an empty chunk, more acks than expected, or a position
/// that is not the next one expected.
pub(crate) fn check_acks<'a>(
    task: &str,
    acks: &[DestinationAck],
    mut expected: impl ExactSizeIterator<Item = &'a Position>,
) -> Result<()> {
    let waiting = expected.len();
    let protocol = |message: String| Error::AckProtocol {
        task: task.to_owned(),
        message,
    };
    if acks.is_empty() {
        return Err(protocol(format!(
            "received 0 acks, but {waiting} records are waiting; a destination's ack() must \
             wait until it has acknowledgements"
        )));
    }
    if acks.len() > waiting {
        return Err(protocol(format!(
            "received {} acks, but expected at most {waiting}",
            acks.len()
        )));
    }
    for ack in acks {
        match expected.next() {
            Some(want) if *want == ack.position => {}
            Some(want) => {
                return Err(protocol(format!(
                    "received unexpected ack, expected position \"{want}\" but got \"{}\"",
                    ack.position
                )));
            }
            None => unreachable!("length checked above"),
        }
    }
    Ok(())
}
