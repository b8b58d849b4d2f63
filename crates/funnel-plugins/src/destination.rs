//! A destination plugin driven as a Funnel [`Destination`].
//!
//! `open` starts the plugin and runs `Configure`, `OnCreated`, `Open` and the `Run`
//! stream. `write` sends each batch as one request (never an empty one); `ack` gives
//! the plugin's acks, each checked byte for byte against the next position written.
//! `teardown` asks `Stop` with the last position written, half-closes the stream,
//! drains the acks still coming (a Python plugin flushes a batch only then), asks
//! `Teardown` and shuts the process down.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError, Settings};
use funnel_record::{Position, Record};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::lifecycle::{Answers, MAX_MESSAGE, call, call_ok, lifecycle};
use crate::pb::connector::v2::destination::{self as msg, lifecycle as life};
use crate::pb::connector::v2::destination_plugin_client::DestinationPluginClient;
use crate::process::{Diagnostics, HostOptions, PluginProcess, Purpose, lock};
use crate::record::to_wire;
use crate::spec::PluginSpec;

/// How many write requests may wait to be sent to the plugin.
const WRITE_QUEUE: usize = 64;

/// A standalone destination plugin.
pub struct PluginDestination {
    spec: Arc<PluginSpec>,
    id: String,
    settings: Settings,
    options: HostOptions,
    running: tokio::sync::Mutex<Option<Running>>,
    answers: tokio::sync::Mutex<Answers<msg::run::Response>>,
    writes: Mutex<Option<mpsc::Sender<msg::run::Request>>>,
    /// The positions written and not acked yet, in write order.
    unacked: Mutex<VecDeque<Position>>,
    diagnostics: Mutex<Option<Diagnostics>>,
    /// Set by `teardown`: a blocked call ends with an error.
    closed: tokio::sync::watch::Sender<bool>,
}

struct Running {
    process: PluginProcess,
    client: DestinationPluginClient<Channel>,
}

impl std::fmt::Debug for PluginDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginDestination")
            .field("plugin", &self.spec.full_name())
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
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
            spec,
            id: id.to_owned(),
            settings: settings.clone(),
            options: options.clone(),
            running: tokio::sync::Mutex::new(None),
            answers: tokio::sync::Mutex::new(Answers::Closed),
            writes: Mutex::new(None),
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
    ) -> Result<DestinationPluginClient<Channel>, ConnectorError> {
        let diagnostics = process.diagnostics();
        let deadline = self.options.call_timeout;
        let mut client = DestinationPluginClient::new(process.channel())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let config: std::collections::HashMap<String, String> = self
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        call_ok(
            &diagnostics,
            "could not configure destination connector plugin",
            deadline,
            client.configure(msg::configure::Request {
                config: config.clone(),
            }),
        )
        .await?;
        lifecycle(
            &diagnostics,
            "destination connector plugin OnCreated failed",
            deadline,
            client.lifecycle_on_created(life::on_created::Request { config }),
        )
        .await?;
        call_ok(
            &diagnostics,
            "could not open destination connector plugin",
            deadline,
            client.open(msg::open::Request {}),
        )
        .await?;
        let (sender, receiver) = mpsc::channel(WRITE_QUEUE);
        let mut run_client = client.clone();
        let run = tokio::spawn(async move {
            run_client
                .run(ReceiverStream::new(receiver))
                .await
                .map(tonic::Response::into_inner)
        });
        *self.answers.lock().await = Answers::Pending(run);
        *lock(&self.writes) = Some(sender);
        Ok(client)
    }

    async fn stop(&self, running: Running) -> Result<(), ConnectorError> {
        let Running {
            process,
            mut client,
        } = running;
        let diagnostics = process.diagnostics();
        let deadline = self.options.call_timeout;
        let last_position = lock(&self.unacked)
            .back()
            .map(|p| p.0.to_vec())
            .unwrap_or_default();
        if let Err(e) = call(
            &diagnostics,
            "destination connector plugin Stop failed",
            deadline,
            client.stop(msg::stop::Request { last_position }),
        )
        .await
        {
            tracing::warn!(connector_id = %self.id, "{e}");
        }
        // Half-close, then take what acks still come, until the stream ends.
        drop(lock(&self.writes).take());
        let drained = tokio::time::timeout(deadline, async {
            let mut answers = self.answers.lock().await;
            while let Ok(Some(_)) = answers.next().await {}
            *answers = Answers::Closed;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(connector_id = %self.id, "the destination plugin did not end its Run stream within {deadline:?}");
            *self.answers.lock().await = Answers::Closed;
        }
        let unacked = lock(&self.unacked).len();
        if unacked > 0 {
            tracing::warn!(connector_id = %self.id, "{unacked} records written to the plugin were never acked");
        }
        let result = call_ok(
            &diagnostics,
            "destination connector plugin Teardown failed",
            deadline,
            client.teardown(msg::teardown::Request {}),
        )
        .await
        .map(drop);
        process.shutdown().await;
        result
    }
}

#[async_trait]
impl Destination for PluginDestination {
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
                let mut client = DestinationPluginClient::new(process.channel());
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

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        if records.is_empty() {
            return Ok(());
        }
        let sender = lock(&self.writes).clone();
        let Some(sender) = sender else {
            return Err(ConnectorError::transient(
                "the destination plugin is not running",
            ));
        };
        let request = msg::run::Request {
            records: records.iter().map(to_wire).collect(),
        };
        lock(&self.unacked).extend(records.iter().map(|r| r.position.clone()));
        sender.send(request).await.map_err(|_| {
            ConnectorError::transient(
                self.diagnostics()
                    .failure("error writing record: the Run stream is closed"),
            )
        })
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        let mut closed = self.closed.subscribe();
        let torn_down = || ConnectorError::transient("the destination plugin was torn down");
        let mut answers = tokio::select! {
            answers = self.answers.lock() => answers,
            _ = closed.wait_for(|closed| *closed) => return Err(torn_down()),
        };
        loop {
            let answer = tokio::select! {
                answer = answers.next() => answer,
                _ = closed.wait_for(|closed| *closed) => return Err(torn_down()),
            };
            let answer = match answer {
                Ok(Some(answer)) => answer,
                Ok(None) => {
                    let unacked = lock(&self.unacked).len();
                    return Err(ConnectorError::transient(self.diagnostics().failure(format!(
                        "error receiving ack: the plugin ended the Run stream with {unacked} records unacked"
                    ))));
                }
                Err(status) => {
                    return Err(ConnectorError::transient(
                        self.diagnostics()
                            .failure(format!("error receiving ack: {}", status.message())),
                    ));
                }
            };
            if answer.acks.is_empty() {
                continue;
            }
            let mut unacked = lock(&self.unacked);
            let mut acks = Vec::with_capacity(answer.acks.len());
            for ack in answer.acks {
                match unacked.front() {
                    Some(expected) if expected.0 == ack.position => {}
                    expected => {
                        return Err(ConnectorError::transient(self.diagnostics().failure(
                            format!(
                                "received unexpected ack, expected position {:?} but got {:?}",
                                expected
                                    .map(|p| String::from_utf8_lossy(&p.0).into_owned())
                                    .unwrap_or_default(),
                                String::from_utf8_lossy(&ack.position)
                            ),
                        )));
                    }
                }
                let position = unacked.pop_front().unwrap_or_default();
                acks.push(if ack.error.is_empty() {
                    DestinationAck::ok(position)
                } else {
                    DestinationAck::nack(position, RecordError::new(ack.error))
                });
            }
            return Ok(acks);
        }
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
