//! A source plugin driven as a Funnel [`Source`].
//!
//! `open` starts the plugin and runs `Configure`, the lifecycle event (see
//! [`PluginSource::with_last_active`]), `Open` with the committed position and the
//! `Run` stream. `read` gives the records the plugin sends; `ack` sends their
//! positions back, checked against the order they were read in. `teardown` asks
//! `Stop`, closes the stream, asks `Teardown` and shuts the process down.

use std::sync::Arc;

use async_trait::async_trait;
use funnel_core::{ConnectorError, Settings, Source};
use funnel_record::{Position, Record};
use tonic::transport::Channel;

use crate::connector::{Connector, Running};
use crate::lifecycle::now_nanos;
use crate::pb::connector::v2::source as msg;
use crate::pb::connector::v2::source_plugin_client::SourcePluginClient;
use crate::process::{HostOptions, lock};
use crate::record::from_wire;
use crate::spec::PluginSpec;
use crate::state::LastActive;

/// How many ack requests may wait to be sent to the plugin.
const ACK_QUEUE: usize = 1024;

/// A standalone source plugin.
#[derive(Debug)]
pub struct PluginSource {
    inner: Connector<SourcePluginClient<Channel>>,
    resume: Option<Position>,
}

impl PluginSource {
    /// The source of connector `id` run by plugin `spec` with `settings`, resuming
    /// after `resume`. No I/O until `open`.
    pub fn new(
        spec: Arc<PluginSpec>,
        id: &str,
        settings: &Settings,
        resume: Option<Position>,
        options: &HostOptions,
    ) -> Self {
        Self {
            inner: Connector::new(spec, id, settings, options),
            resume,
        }
    }

    /// Sends the lifecycle events Conduit sends (`OnCreated`, `OnUpdated`), from the
    /// last active configuration kept in `last_active`. Without it, none is sent.
    #[must_use]
    pub fn with_last_active(mut self, last_active: LastActive) -> Self {
        self.inner = self.inner.with_last_active(last_active);
        self
    }

    /// Stops the plugin: `Stop`, the stream closed (`Teardown` follows).
    async fn stop(&self, running: &mut Running<SourcePluginClient<Channel>>) {
        let diagnostics = running.process.diagnostics();
        // Flush the acks still queued and half-close, then ask Stop while taking what
        // the plugin still sends (never acked: read again after a restart), until it
        // ends the stream. A plugin blocked on a full stream needs the reading.
        self.inner.half_close();
        let stop = self
            .inner
            .stop(&diagnostics, &mut running.client, Vec::new());
        let (stopped, ended) = tokio::join!(stop, self.inner.drain());
        if let Some(last_position) = stopped {
            tracing::debug!(
                connector_id = %self.inner.id,
                last_position = ?String::from_utf8_lossy(&last_position),
                "source plugin stopped"
            );
        }
        if !ended {
            tracing::warn!(
                connector_id = %self.inner.id,
                "the source plugin did not end its Run stream within {:?} of Stop",
                self.inner.options.call_timeout
            );
        }
    }
}

#[async_trait]
impl Source for PluginSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let position = self
            .resume
            .as_ref()
            .map(|p| p.0.to_vec())
            .unwrap_or_default();
        self.inner.open(position, ACK_QUEUE).await
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        let answer = self.inner.answer(|a| !a.records.is_empty()).await?;
        let diagnostics = self.inner.diagnostics();
        match answer {
            Ok(Some(answer)) => {
                let read_at = now_nanos();
                let records: Vec<Record> = answer
                    .records
                    .into_iter()
                    .map(|r| from_wire(r, &self.inner.id, &read_at))
                    .collect();
                let mut unacked = lock(&self.inner.unacked);
                for record in &records {
                    if record.position.is_empty() {
                        return Err(ConnectorError::transient(
                            diagnostics.failure("the plugin sent a record without a position"),
                        ));
                    }
                    unacked.push_back(record.position.clone());
                }
                Ok(Some(records))
            }
            Ok(None) => Err(ConnectorError::transient(diagnostics.failure(
                "source stream was stopped unexpectedly (the plugin ended Run)",
            ))),
            Err(status) => Err(ConnectorError::transient(
                diagnostics.failure(format!("error reading from source: {}", status.message())),
            )),
        }
    }

    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError> {
        if positions.is_empty() {
            return Ok(());
        }
        {
            let mut unacked = lock(&self.inner.unacked);
            for position in positions {
                match unacked.pop_front() {
                    Some(expected) if expected == *position => {}
                    expected => {
                        return Err(ConnectorError::internal(format!(
                            "ack out of order: expected position {:?}, got {:?}",
                            expected.map(|p| String::from_utf8_lossy(&p.0).into_owned()),
                            String::from_utf8_lossy(&position.0)
                        )));
                    }
                }
            }
        }
        let sender = self.inner.sender()?;
        let request = msg::run::Request {
            ack_positions: positions.iter().map(|p| p.0.to_vec()).collect(),
        };
        sender.send(request).await.map_err(|_| {
            ConnectorError::transient(
                self.inner
                    .diagnostics()
                    .failure("could not send acks: the Run stream is closed"),
            )
        })
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        let Some(mut running) = self.inner.take_running().await else {
            return Ok(());
        };
        self.stop(&mut running).await;
        self.inner.finish(running).await
    }
}
