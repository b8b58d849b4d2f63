//! A source plugin driven as a Funnel [`Source`].
//!
//! `open` starts the plugin and runs `Configure`, the lifecycle event (`OnCreated` on
//! a first run, when nothing was committed yet), `Open` with the committed position
//! and the `Run` stream. `read` gives the records the plugin sends; `ack` sends their
//! positions back, checked against the order they were read in. `teardown` asks
//! `Stop`, closes the stream, asks `Teardown` and shuts the process down.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use funnel_core::{ConnectorError, Settings, Source};
use funnel_record::{Position, Record};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::lifecycle::{Answers, MAX_MESSAGE, call, call_ok, lifecycle, now_nanos};
use crate::pb::connector::v2::source::{self as msg, lifecycle as life};
use crate::pb::connector::v2::source_plugin_client::SourcePluginClient;
use crate::process::{Diagnostics, HostOptions, PluginProcess, Purpose, lock};
use crate::record::from_wire;
use crate::spec::PluginSpec;

/// How many ack requests may wait to be sent to the plugin.
const ACK_QUEUE: usize = 1024;

/// A standalone source plugin.
pub struct PluginSource {
    spec: Arc<PluginSpec>,
    id: String,
    settings: Settings,
    resume: Option<Position>,
    options: HostOptions,
    running: tokio::sync::Mutex<Option<Running>>,
    answers: tokio::sync::Mutex<Answers<msg::run::Response>>,
    acks: Mutex<Option<mpsc::Sender<msg::run::Request>>>,
    /// The positions read and not acked yet, in read order.
    unacked: Mutex<VecDeque<Position>>,
    diagnostics: Mutex<Option<Diagnostics>>,
    /// Set by `teardown`: a blocked call ends with an error.
    closed: tokio::sync::watch::Sender<bool>,
}

struct Running {
    process: PluginProcess,
    client: SourcePluginClient<Channel>,
}

impl std::fmt::Debug for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSource")
            .field("plugin", &self.spec.full_name())
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
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
            spec,
            id: id.to_owned(),
            settings: settings.clone(),
            resume,
            options: options.clone(),
            running: tokio::sync::Mutex::new(None),
            answers: tokio::sync::Mutex::new(Answers::Closed),
            acks: Mutex::new(None),
            unacked: Mutex::new(VecDeque::new()),
            diagnostics: Mutex::new(None),
            closed: tokio::sync::watch::Sender::new(false),
        }
    }

    fn diagnostics(&self) -> Diagnostics {
        lock(&self.diagnostics)
            .clone()
            .unwrap_or_else(|| Diagnostics::new(self.spec.name.clone()))
    }

    async fn start(
        &self,
        process: &PluginProcess,
    ) -> Result<SourcePluginClient<Channel>, ConnectorError> {
        let diagnostics = process.diagnostics();
        let deadline = self.options.call_timeout;
        let mut client = SourcePluginClient::new(process.channel())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let config: std::collections::HashMap<String, String> = self
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        call_ok(
            &diagnostics,
            "could not configure source connector plugin",
            deadline,
            client.configure(msg::configure::Request {
                config: config.clone(),
            }),
        )
        .await?;
        if self.resume.is_none() {
            lifecycle(
                &diagnostics,
                "source connector plugin OnCreated failed",
                deadline,
                client.lifecycle_on_created(life::on_created::Request { config }),
            )
            .await?;
        }
        let position = self
            .resume
            .as_ref()
            .map(|p| p.0.to_vec())
            .unwrap_or_default();
        call_ok(
            &diagnostics,
            "could not open source connector plugin",
            deadline,
            client.open(msg::open::Request { position }),
        )
        .await?;
        let (sender, receiver) = mpsc::channel(ACK_QUEUE);
        let mut run_client = client.clone();
        let run = tokio::spawn(async move {
            run_client
                .run(ReceiverStream::new(receiver))
                .await
                .map(tonic::Response::into_inner)
        });
        *self.answers.lock().await = Answers::Pending(run);
        *lock(&self.acks) = Some(sender);
        Ok(client)
    }

    /// Stops the plugin: `Stop`, the stream closed, `Teardown`, the process shut down.
    async fn stop(&self, running: Running) -> Result<(), ConnectorError> {
        let Running {
            process,
            mut client,
        } = running;
        let diagnostics = process.diagnostics();
        let deadline = self.options.call_timeout;
        // Flush the acks still queued and half-close, then ask Stop while taking what
        // the plugin still sends (never acked: read again after a restart), until it
        // ends the stream. A plugin blocked on a full stream needs the reading.
        drop(lock(&self.acks).take());
        let drain = async {
            let mut answers = self.answers.lock().await;
            let ended = tokio::time::timeout(deadline, async {
                while let Ok(Some(_)) = answers.next().await {}
            })
            .await;
            *answers = Answers::Closed;
            ended.is_ok()
        };
        let stop = call(
            &diagnostics,
            "source connector plugin Stop failed",
            deadline,
            client.stop(msg::stop::Request {}),
        );
        let (stopped, ended) = tokio::join!(stop, drain);
        match stopped {
            Ok(Ok(answer)) => tracing::debug!(
                connector_id = %self.id,
                last_position = ?String::from_utf8_lossy(&answer.last_position),
                "source plugin stopped"
            ),
            Ok(Err(status)) => {
                tracing::debug!(connector_id = %self.id, "Stop failed: {}", status.message());
            }
            Err(e) => tracing::warn!(connector_id = %self.id, "{e}"),
        }
        if !ended {
            tracing::warn!(connector_id = %self.id, "the source plugin did not end its Run stream within {deadline:?} of Stop");
        }
        let mut result = Ok(());
        if let Err(e) = call_ok(
            &diagnostics,
            "source connector plugin Teardown failed",
            deadline,
            client.teardown(msg::teardown::Request {}),
        )
        .await
        {
            result = Err(e);
        }
        process.shutdown().await;
        result
    }
}

#[async_trait]
impl Source for PluginSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let process =
            PluginProcess::launch(&self.spec.path, &self.id, Purpose::Connector, &self.options)
                .await
                .map_err(ConnectorError::transient)?;
        *lock(&self.diagnostics) = Some(process.diagnostics());
        match self.start(&process).await {
            Ok(client) => {
                *self.running.lock().await = Some(Running { process, client });
                Ok(())
            }
            Err(e) => {
                let mut client = SourcePluginClient::new(process.channel());
                let _ = tokio::time::timeout(
                    self.options.call_timeout,
                    client.teardown(msg::teardown::Request {}),
                )
                .await;
                process.shutdown().await;
                Err(e)
            }
        }
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        let mut closed = self.closed.subscribe();
        let torn_down = || ConnectorError::transient("the source plugin was torn down");
        let mut answers = tokio::select! {
            answers = self.answers.lock() => answers,
            _ = closed.wait_for(|closed| *closed) => return Err(torn_down()),
        };
        loop {
            let answer = tokio::select! {
                answer = answers.next() => answer,
                _ = closed.wait_for(|closed| *closed) => return Err(torn_down()),
            };
            match answer {
                Ok(Some(answer)) => {
                    if answer.records.is_empty() {
                        continue;
                    }
                    let read_at = now_nanos();
                    let records: Vec<Record> = answer
                        .records
                        .into_iter()
                        .map(|r| from_wire(r, &self.id, &read_at))
                        .collect();
                    let mut unacked = lock(&self.unacked);
                    for record in &records {
                        if record.position.is_empty() {
                            return Err(ConnectorError::transient(
                                self.diagnostics()
                                    .failure("the plugin sent a record without a position"),
                            ));
                        }
                        unacked.push_back(record.position.clone());
                    }
                    return Ok(Some(records));
                }
                Ok(None) => {
                    return Err(ConnectorError::transient(self.diagnostics().failure(
                        "source stream was stopped unexpectedly (the plugin ended Run)",
                    )));
                }
                Err(status) => {
                    return Err(ConnectorError::transient(self.diagnostics().failure(
                        format!("error reading from source: {}", status.message()),
                    )));
                }
            }
        }
    }

    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError> {
        if positions.is_empty() {
            return Ok(());
        }
        {
            let mut unacked = lock(&self.unacked);
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
        let sender = lock(&self.acks).clone();
        let Some(sender) = sender else {
            return Err(ConnectorError::transient(
                "the source plugin is not running",
            ));
        };
        let request = msg::run::Request {
            ack_positions: positions.iter().map(|p| p.0.to_vec()).collect(),
        };
        sender.send(request).await.map_err(|_| {
            ConnectorError::transient(
                self.diagnostics()
                    .failure("could not send acks: the Run stream is closed"),
            )
        })
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.closed.send_replace(true);
        let running = self.running.lock().await.take();
        match running {
            Some(running) => self.stop(running).await,
            None => Ok(()),
        }
    }
}
