//! A destination plugin driven as a Funnel [`Destination`].
//!
//! `open` starts the plugin and runs `Configure`, the lifecycle event (see
//! [`PluginDestination::with_last_active`]), `Open` and the `Run` stream. `write`
//! sends each batch as one request (never an empty one); `ack` gives the plugin's
//! acks, each checked byte for byte against the next position written.
//! `teardown` asks `Stop` with the last position written, half-closes the stream,
//! drains the acks still coming (a Python plugin flushes a batch only then), asks
//! `Teardown` and shuts the process down.

use std::sync::Arc;

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError, Settings};
use funnel_record::Record;
use tonic::transport::Channel;

use crate::connector::{Connector, Running};
use crate::pb::connector::v2::destination as msg;
use crate::pb::connector::v2::destination_plugin_client::DestinationPluginClient;
use crate::process::{HostOptions, lock};
use crate::record::to_wire;
use crate::spec::PluginSpec;
use crate::state::LastActive;

/// How many write requests may wait to be sent to the plugin.
const WRITE_QUEUE: usize = 64;

/// A standalone destination plugin.
#[derive(Debug)]
pub struct PluginDestination {
    inner: Connector<DestinationPluginClient<Channel>>,
}

impl PluginDestination {
    /// The destination of connector `id` run by plugin `spec` with `settings`. No I/O
    /// until `open`.
    pub fn new(
        spec: Arc<PluginSpec>,
        id: &str,
        settings: &Settings,
        options: &HostOptions,
    ) -> Self {
        Self {
            inner: Connector::new(spec, id, settings, options),
        }
    }

    /// Sends the lifecycle events Conduit sends (`OnCreated`, `OnUpdated`), from the
    /// last active configuration kept in `last_active`. Without it (a dead-letter
    /// queue), none is sent.
    #[must_use]
    pub fn with_last_active(mut self, last_active: LastActive) -> Self {
        self.inner = self.inner.with_last_active(last_active);
        self
    }

    /// `Stop` with the last position written, the stream half-closed and drained
    /// (`Teardown` follows).
    async fn stop(&self, running: &mut Running<DestinationPluginClient<Channel>>) {
        let diagnostics = running.process.diagnostics();
        let last_position = lock(&self.inner.unacked)
            .back()
            .map(|p| p.0.to_vec())
            .unwrap_or_default();
        self.inner
            .stop(&diagnostics, &mut running.client, last_position)
            .await;
        // Half-close, then take what acks still come, until the stream ends.
        self.inner.half_close();
        if !self.inner.drain().await {
            tracing::warn!(
                connector_id = %self.inner.id,
                "the destination plugin did not end its Run stream within {:?}",
                self.inner.options.call_timeout
            );
        }
        let unacked = lock(&self.inner.unacked).len();
        if unacked > 0 {
            tracing::warn!(connector_id = %self.inner.id, "{unacked} records written to the plugin were never acked");
        }
    }
}

#[async_trait]
impl Destination for PluginDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        self.inner.open(Vec::new(), WRITE_QUEUE).await
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        if records.is_empty() {
            return Ok(());
        }
        let sender = self.inner.sender()?;
        let request = msg::run::Request {
            records: records.iter().map(to_wire).collect(),
        };
        lock(&self.inner.unacked).extend(records.iter().map(|r| r.position.clone()));
        sender.send(request).await.map_err(|_| {
            ConnectorError::transient(
                self.inner
                    .diagnostics()
                    .failure("error writing record: the Run stream is closed"),
            )
        })
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        let answer = self.inner.answer(|a| !a.acks.is_empty()).await?;
        let diagnostics = self.inner.diagnostics();
        let answer = match answer {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                let unacked = lock(&self.inner.unacked).len();
                return Err(ConnectorError::transient(diagnostics.failure(format!(
                    "error receiving ack: the plugin ended the Run stream with {unacked} records unacked"
                ))));
            }
            Err(status) => {
                return Err(ConnectorError::transient(
                    diagnostics.failure(format!("error receiving ack: {}", status.message())),
                ));
            }
        };
        let mut unacked = lock(&self.inner.unacked);
        let mut acks = Vec::with_capacity(answer.acks.len());
        for ack in answer.acks {
            match unacked.front() {
                Some(expected) if expected.0 == ack.position => {}
                expected => {
                    return Err(ConnectorError::transient(diagnostics.failure(format!(
                        "received unexpected ack, expected position {:?} but got {:?}",
                        expected
                            .map(|p| String::from_utf8_lossy(&p.0).into_owned())
                            .unwrap_or_default(),
                        String::from_utf8_lossy(&ack.position)
                    ))));
                }
            }
            let position = unacked.pop_front().unwrap_or_default();
            acks.push(if ack.error.is_empty() {
                DestinationAck::ok(position)
            } else {
                DestinationAck::nack(position, RecordError::new(ack.error))
            });
        }
        Ok(acks)
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        let Some(mut running) = self.inner.take_running().await else {
            return Ok(());
        };
        self.stop(&mut running).await;
        self.inner.finish(running).await
    }
}
