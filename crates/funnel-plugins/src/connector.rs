//! What a source and a destination plugin share: the process, the start (`Configure`,
//! the lifecycle event, `Open`, the `Run` stream), the answers of the stream, the end
//! (`Teardown`, shutdown), and `LifecycleOnDeleted` when a connector is deleted. The
//! two services differ only in their messages, which [`Side`] hides.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use funnel_core::{ConnectorError, Settings};
use funnel_record::Position;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::lifecycle::{Answers, MAX_MESSAGE, call, call_ok, lifecycle};
use crate::pb::connector::v2::destination as destination_msg;
use crate::pb::connector::v2::destination_plugin_client::DestinationPluginClient;
use crate::pb::connector::v2::source as source_msg;
use crate::pb::connector::v2::source_plugin_client::SourcePluginClient;
use crate::process::{Diagnostics, HostOptions, PluginProcess, Purpose, lock};
use crate::spec::PluginSpec;
use crate::state::LastActive;

/// A connector's configuration as the protocol carries it.
pub(crate) type Config = HashMap<String, String>;

/// One side of the connector protocol: the client of the source or the destination
/// service.
#[async_trait]
pub(crate) trait Side: Clone + Send + Sync + 'static {
    /// `source` or `destination`, as Conduit's messages name the side.
    const NAME: &'static str;
    /// What the host sends on the `Run` stream.
    type Request: Send + 'static;
    /// What the plugin sends on it.
    type Response: Send + 'static;

    /// The client over `channel`, taking messages of any size.
    fn connect(channel: Channel) -> Self;
    /// `Configure`.
    async fn configure(&mut self, config: Config) -> Result<(), Status>;
    /// `LifecycleOnCreated`.
    async fn on_created(&mut self, config: Config) -> Result<(), Status>;
    /// `LifecycleOnUpdated`.
    async fn on_updated(&mut self, before: Config, after: Config) -> Result<(), Status>;
    /// `LifecycleOnDeleted`.
    async fn on_deleted(&mut self, config: Config) -> Result<(), Status>;
    /// `Open`: a source resumes after `position` (empty on a first run); a
    /// destination takes none.
    async fn open(&mut self, position: Vec<u8>) -> Result<(), Status>;
    /// `Run`: resolves once the plugin sends its first message or its headers.
    async fn run(
        &mut self,
        requests: ReceiverStream<Self::Request>,
    ) -> Result<Streaming<Self::Response>, Status>;
    /// `Stop`: a destination is given the last position written; a source answers
    /// with the last position it sent.
    async fn stop(&mut self, last_position: Vec<u8>) -> Result<Vec<u8>, Status>;
    /// `Teardown`.
    async fn teardown(&mut self) -> Result<(), Status>;
}

/// The [`Side`] of a generated client: `$msg` is the module of its messages, and
/// `open` and `stop` (whose messages differ) are given.
macro_rules! side {
    ($client:ident, $msg:ident, $name:literal, { $($specific:tt)* }) => {
        #[async_trait]
        impl Side for $client<Channel> {
            const NAME: &'static str = $name;
            type Request = $msg::run::Request;
            type Response = $msg::run::Response;

            fn connect(channel: Channel) -> Self {
                $client::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE)
            }

            async fn configure(&mut self, config: Config) -> Result<(), Status> {
                $client::configure(self, $msg::configure::Request { config })
                    .await
                    .map(drop)
            }

            async fn on_created(&mut self, config: Config) -> Result<(), Status> {
                $client::lifecycle_on_created(self, $msg::lifecycle::on_created::Request { config })
                    .await
                    .map(drop)
            }

            async fn on_updated(&mut self, before: Config, after: Config) -> Result<(), Status> {
                $client::lifecycle_on_updated(self, $msg::lifecycle::on_updated::Request {
                    config_before: before,
                    config_after: after,
                })
                .await
                .map(drop)
            }

            async fn on_deleted(&mut self, config: Config) -> Result<(), Status> {
                $client::lifecycle_on_deleted(self, $msg::lifecycle::on_deleted::Request { config })
                    .await
                    .map(drop)
            }

            async fn run(
                &mut self,
                requests: ReceiverStream<Self::Request>,
            ) -> Result<Streaming<Self::Response>, Status> {
                $client::run(self, requests)
                    .await
                    .map(tonic::Response::into_inner)
            }

            async fn teardown(&mut self) -> Result<(), Status> {
                $client::teardown(self, $msg::teardown::Request {})
                    .await
                    .map(drop)
            }

            $($specific)*
        }
    };
}

side!(SourcePluginClient, source_msg, "source", {
    async fn open(&mut self, position: Vec<u8>) -> Result<(), Status> {
        SourcePluginClient::open(self, source_msg::open::Request { position })
            .await
            .map(drop)
    }

    async fn stop(&mut self, _last_position: Vec<u8>) -> Result<Vec<u8>, Status> {
        SourcePluginClient::stop(self, source_msg::stop::Request {})
            .await
            .map(|answer| answer.into_inner().last_position)
    }
});

side!(DestinationPluginClient, destination_msg, "destination", {
    async fn open(&mut self, _position: Vec<u8>) -> Result<(), Status> {
        DestinationPluginClient::open(self, destination_msg::open::Request {})
            .await
            .map(drop)
    }

    async fn stop(&mut self, last_position: Vec<u8>) -> Result<Vec<u8>, Status> {
        DestinationPluginClient::stop(self, destination_msg::stop::Request { last_position })
            .await
            .map(|_| Vec::new())
    }
});

/// A started plugin and its client.
pub(crate) struct Running<S> {
    pub(crate) process: PluginProcess,
    pub(crate) client: S,
}

/// A connector driven by a plugin: everything but what its side does with the `Run`
/// stream.
pub(crate) struct Connector<S: Side> {
    pub(crate) spec: Arc<PluginSpec>,
    pub(crate) id: String,
    settings: Settings,
    pub(crate) options: HostOptions,
    /// Where its last active configuration is kept; without it (the dead-letter
    /// queue, tests) no lifecycle event is sent.
    last_active: Option<LastActive>,
    running: tokio::sync::Mutex<Option<Running<S>>>,
    pub(crate) answers: tokio::sync::Mutex<Answers<S::Response>>,
    /// The requests of the `Run` stream; dropped to half-close it.
    pub(crate) requests: Mutex<Option<mpsc::Sender<S::Request>>>,
    /// The positions sent (read or written) and not acked yet, in order.
    pub(crate) unacked: Mutex<VecDeque<Position>>,
    diagnostics: Mutex<Option<Diagnostics>>,
    /// Set by `teardown`: a blocked call ends with an error.
    closed: tokio::sync::watch::Sender<bool>,
}

impl<S: Side> std::fmt::Debug for Connector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(S::NAME)
            .field("plugin", &self.spec.full_name())
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<S: Side> Connector<S> {
    pub(crate) fn new(
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
            last_active: None,
            running: tokio::sync::Mutex::new(None),
            answers: tokio::sync::Mutex::new(Answers::Closed),
            requests: Mutex::new(None),
            unacked: Mutex::new(VecDeque::new()),
            diagnostics: Mutex::new(None),
            closed: tokio::sync::watch::Sender::new(false),
        }
    }

    pub(crate) fn with_last_active(mut self, last_active: LastActive) -> Self {
        self.last_active = Some(last_active);
        self
    }

    pub(crate) fn diagnostics(&self) -> Diagnostics {
        lock(&self.diagnostics)
            .clone()
            .unwrap_or_else(|| Diagnostics::new(self.spec.name.clone()))
    }

    /// `what failed`, as Conduit words it: `could not {verb} source connector plugin`.
    fn could_not(verb: &str) -> String {
        format!("could not {verb} {} connector plugin", S::NAME)
    }

    /// Starts the plugin: launch, then [`start`](Self::start); on failure `Teardown`
    /// and shutdown. `queue` bounds the requests waiting to go on the `Run` stream.
    pub(crate) async fn open(&self, position: Vec<u8>, queue: usize) -> Result<(), ConnectorError> {
        let process =
            PluginProcess::launch(&self.spec.path, &self.id, Purpose::Connector, &self.options)
                .await
                .map_err(ConnectorError::transient)?;
        *lock(&self.diagnostics) = Some(process.diagnostics());
        let mut client = S::connect(process.channel());
        match self.start(&process, &mut client, position, queue).await {
            Ok(()) => {
                *self.running.lock().await = Some(Running { process, client });
                Ok(())
            }
            Err(e) => {
                let _ = tokio::time::timeout(self.options.call_timeout, client.teardown()).await;
                process.shutdown().await;
                Err(e)
            }
        }
    }

    async fn start(
        &self,
        process: &PluginProcess,
        client: &mut S,
        position: Vec<u8>,
        queue: usize,
    ) -> Result<(), ConnectorError> {
        let diagnostics = process.diagnostics();
        let deadline = self.options.call_timeout;
        let config: Config = self
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        call_ok(
            &diagnostics,
            &Self::could_not("configure"),
            deadline,
            client.configure(config.clone()),
        )
        .await?;
        self.lifecycle_event(&diagnostics, client, config).await?;
        call_ok(
            &diagnostics,
            &Self::could_not("open"),
            deadline,
            client.open(position),
        )
        .await?;
        let (sender, receiver) = mpsc::channel(queue);
        let mut run_client = client.clone();
        let run = tokio::spawn(async move { run_client.run(ReceiverStream::new(receiver)).await });
        *self.answers.lock().await = Answers::Pending(run);
        *lock(&self.requests) = Some(sender);
        Ok(())
    }

    /// The lifecycle event Conduit sends, from the last active configuration:
    /// `OnCreated` when there is none, `OnUpdated` when it differs from `config`,
    /// nothing when they are equal. Once the plugin took it (or does not implement
    /// it), `config` becomes the last active one.
    async fn lifecycle_event(
        &self,
        diagnostics: &Diagnostics,
        client: &mut S,
        config: Config,
    ) -> Result<(), ConnectorError> {
        let Some(last_active) = &self.last_active else {
            return Ok(());
        };
        let before = last_active.get().await?;
        let (event, sent) = match before {
            None => ("OnCreated", client.on_created(config.clone())),
            Some(before) if before != config => {
                ("OnUpdated", client.on_updated(before, config.clone()))
            }
            Some(_) => return Ok(()),
        };
        let what = format!("{} connector plugin {event} failed", S::NAME);
        lifecycle(diagnostics, &what, self.options.call_timeout, sent).await?;
        last_active.set(&config).await
    }

    /// The next answer of the `Run` stream that `keep` takes (the others are
    /// skipped), unless the connector is torn down first.
    pub(crate) async fn answer(
        &self,
        keep: impl Fn(&S::Response) -> bool,
    ) -> Result<Result<Option<S::Response>, Status>, ConnectorError> {
        let mut closed = self.closed.subscribe();
        let torn_down =
            || ConnectorError::transient(format!("the {} plugin was torn down", S::NAME));
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
                Ok(Some(answer)) if !keep(&answer) => {}
                answer => return Ok(answer),
            }
        }
    }

    /// A sender of requests on the `Run` stream.
    pub(crate) fn sender(&self) -> Result<mpsc::Sender<S::Request>, ConnectorError> {
        lock(&self.requests).clone().ok_or_else(|| {
            ConnectorError::transient(format!("the {} plugin is not running", S::NAME))
        })
    }

    /// Half-closes the `Run` stream: the requests still queued go first.
    pub(crate) fn half_close(&self) {
        drop(lock(&self.requests).take());
    }

    /// `Stop` with `last_position`; its answer, or `None` (logged) when it failed.
    pub(crate) async fn stop(
        &self,
        diagnostics: &Diagnostics,
        client: &mut S,
        last_position: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let what = format!("{} connector plugin Stop failed", S::NAME);
        match call(
            diagnostics,
            &what,
            self.options.call_timeout,
            client.stop(last_position),
        )
        .await
        {
            Ok(Ok(last_position)) => Some(last_position),
            Ok(Err(status)) => {
                tracing::debug!(connector_id = %self.id, "{what}: {}", status.message());
                None
            }
            Err(e) => {
                tracing::warn!(connector_id = %self.id, "{e}");
                None
            }
        }
    }

    /// Takes what the plugin still sends until it ends the stream, within the call
    /// timeout; false when it did not end it in time.
    pub(crate) async fn drain(&self) -> bool {
        let mut answers = self.answers.lock().await;
        let ended = tokio::time::timeout(self.options.call_timeout, async {
            while let Ok(Some(_)) = answers.next().await {}
        })
        .await;
        *answers = Answers::Closed;
        ended.is_ok()
    }

    /// Starts tearing the connector down: blocked calls end, and the running plugin
    /// (if any) is handed over for its side to stop, then to [`finish`](Self::finish).
    pub(crate) async fn take_running(&self) -> Option<Running<S>> {
        self.closed.send_replace(true);
        self.running.lock().await.take()
    }

    /// `Teardown`, then the process's shutdown.
    pub(crate) async fn finish(&self, running: Running<S>) -> Result<(), ConnectorError> {
        let Running {
            process,
            mut client,
        } = running;
        let what = format!("{} connector plugin Teardown failed", S::NAME);
        let result = call_ok(
            &process.diagnostics(),
            &what,
            self.options.call_timeout,
            client.teardown(),
        )
        .await;
        process.shutdown().await;
        result
    }
}

/// Deletes the connector of `last_active` (see [`LastActive::delete`]).
pub(crate) async fn delete<S: Side>(
    spec: &PluginSpec,
    last_active: &LastActive,
    options: &HostOptions,
) -> Result<bool, ConnectorError> {
    let Some(config) = last_active.get().await? else {
        return Ok(false);
    };
    let id = last_active.connector_id();
    let process = PluginProcess::launch(&spec.path, id, Purpose::Connector, options)
        .await
        .map_err(ConnectorError::transient)?;
    let diagnostics = process.diagnostics();
    let mut client = S::connect(process.channel());
    let what = format!("{} connector plugin OnDeleted failed", S::NAME);
    let deleted = lifecycle(
        &diagnostics,
        &what,
        options.call_timeout,
        client.on_deleted(config),
    )
    .await;
    if let Ok(Err(status)) = tokio::time::timeout(options.call_timeout, client.teardown()).await {
        tracing::debug!(connector_id = %id, "Teardown after OnDeleted failed: {}", status.message());
    }
    process.shutdown().await;
    deleted?;
    last_active.forget().await?;
    Ok(true)
}
