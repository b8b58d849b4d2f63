//! One plugin process: launch, handshake, connection, logs and shutdown.
//!
//! The process is started through a small `/bin/sh` guard in a process group of its
//! own. The guard holds the read end of a pipe whose write end only Funnel has (the
//! guard's stdin): when Funnel exits in any way, SIGKILL included, the kernel closes
//! it, the guard reads end-of-file and kills the whole group. Dropping a
//! [`PluginProcess`] does the same. So no plugin ever outlives its host.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::pb::grpc::health::v1::health_check_response::ServingStatus;
use crate::pb::grpc::health::v1::{HealthCheckRequest, health_client::HealthClient};
use crate::pb::plugin::grpc_controller_client::GrpcControllerClient;
use crate::pb::plugin::grpc_stdio_client::GrpcStdioClient;
use crate::pb::plugin::stdio_data::Channel as StdioChannel;

/// Conduit's magic cookie: a plugin started without it refuses to run.
pub const MAGIC_COOKIE: &str = "204e8e812c3a1bb73b838928c575b42a105dd2e9aa449be481bc4590486df53f";

/// The only application protocol Funnel offers (Conduit's connector protocol v2).
pub const PROTOCOL_VERSION: &str = "2";

/// The connector ID plugins get while their specification is read.
pub const DISCOVERY_ID: &str = "load-specifications";

/// How many of a plugin's last stderr lines an error message quotes.
const TAIL_LINES: usize = 12;

/// The guard: starts the plugin (`$0`, no arguments, stdin from /dev/null), kills the
/// process group when its own stdin (Funnel's pipe) reaches end-of-file, and exits
/// with the plugin's status once the plugin exits.
const GUARD: &str = r#"exec 3<&0 0</dev/null
"$0" 3<&- &
p=$!
(read -r _ <&3; kill -9 0) &
g=$!
exec 3<&-
wait "$p"
rc=$?
kill "$g" 2>/dev/null
exit "$rc"
"#;

/// The live connector tokens: the schema service accepts only these.
pub type Tokens = Arc<Mutex<HashSet<String>>>;

/// What every plugin process shares: the environment it is given and the host's
/// limits on it.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// How long a plugin may take to print its handshake line (Conduit: 60 s).
    pub handshake_timeout: Duration,
    /// How long one call (health, `Configure`, a lifecycle event, `Open`, `Stop`,
    /// `Teardown`, `Specify`) may take before the connector fails. Conduit has no
    /// such deadline; a plugin that hangs would stop its pipeline forever.
    pub call_timeout: Duration,
    /// How long a plugin has to exit after `Shutdown` before it is killed (2 s).
    pub kill_grace: Duration,
    /// `CONDUIT_CONNECTOR_LOG_LEVEL`: the level the plugin logs at.
    pub log_level: String,
    /// `CONDUIT_CONNECTOR_MAX_RECEIVE_RECORD_SIZE`: the largest gRPC message the
    /// plugin accepts.
    pub max_receive_record_size: u64,
    /// `CONDUIT_CONNECTOR_UTILITIES_GRPC_TARGET`: the schema service's address.
    pub utilities_target: String,
    /// The tokens the schema service accepts; one is added per running connector.
    pub tokens: Tokens,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(60),
            kill_grace: Duration::from_secs(2),
            log_level: "info".to_owned(),
            max_receive_record_size: 4 * 1024 * 1024,
            // A placeholder until a schema service is started: the Go SDK refuses an
            // empty target, and dials it only when a schema is used.
            utilities_target: "127.0.0.1:1".to_owned(),
            tokens: Tokens::default(),
        }
    }
}

/// Why a plugin could not be launched or driven.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

impl PluginError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Where a plugin listens, from its handshake line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `tcp|host:port` (Python plugins, Go on Windows).
    Tcp(String),
    /// `unix|/path` (Go plugins on Linux and macOS).
    Unix(PathBuf),
}

/// Parses a go-plugin handshake line (`1|2|tcp|127.0.0.1:4000|grpc|`), as go-plugin's
/// `Client.Start` does, with its error texts.
///
/// # Errors
///
/// A message saying what is wrong with the line.
pub fn parse_handshake(line: &str) -> Result<Address, String> {
    let line = line.trim();
    let parts: Vec<&str> = line.split('|').collect();
    if parts.len() < 4 {
        return Err(format!(
            "Unrecognized remote plugin message: {line:?} (expected a go-plugin handshake \
             line such as \"1|2|unix|/tmp/plugin|grpc|\"; a plugin must print nothing to \
             stdout before it)"
        ));
    }
    if parts[0] != "1" {
        return Err(format!(
            "incompatible core API version with plugin: plugin version {:?}, but host requires 1",
            parts[0]
        ));
    }
    if parts[1] != PROTOCOL_VERSION {
        return Err(format!(
            "incompatible API version with plugin: plugin version {:?}, but host offers {PROTOCOL_VERSION}",
            parts[1]
        ));
    }
    match parts.get(4).copied() {
        Some("grpc") => {}
        Some(other) => {
            return Err(format!(
                "unsupported plugin protocol {other:?}: only grpc is supported"
            ));
        }
        None => return Err("unsupported plugin protocol netrpc: only grpc is supported".into()),
    }
    match parts[2] {
        "tcp" => Ok(Address::Tcp(parts[3].to_owned())),
        "unix" => Ok(Address::Unix(PathBuf::from(parts[3]))),
        other => Err(format!("unknown address type {other:?} in the handshake")),
    }
}

/// What a plugin process is started for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Reading its specification (connector ID `load-specifications`).
    Discovery,
    /// Running a connector (or validating or deleting one).
    Connector,
}

/// A running plugin process, connected.
#[derive(Debug)]
pub struct PluginProcess {
    child: Child,
    guard: Option<ChildStdin>,
    channel: Channel,
    plugin: String,
    connector_id: String,
    token: Option<String>,
    tokens: Tokens,
    tail: Arc<Mutex<VecDeque<String>>>,
    options: HostOptions,
}

impl PluginProcess {
    /// Starts the plugin at `path` for connector `connector_id`, reads its handshake,
    /// connects, and checks its health.
    ///
    /// # Errors
    ///
    /// When the plugin cannot be started, exits or prints garbage instead of its
    /// handshake, or cannot be reached; the message quotes its last stderr lines.
    pub async fn launch(
        path: &Path,
        connector_id: &str,
        purpose: Purpose,
        options: &HostOptions,
    ) -> Result<Self, PluginError> {
        let plugin = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(GUARD)
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .env("CONDUIT_PLUGIN_MAGIC_COOKIE", MAGIC_COOKIE)
            .env("PLUGIN_PROTOCOL_VERSIONS", PROTOCOL_VERSION)
            .env("PLUGIN_MIN_PORT", "10000")
            .env("PLUGIN_MAX_PORT", "25000")
            .env(
                "CONDUIT_CONNECTOR_UTILITIES_GRPC_TARGET",
                &options.utilities_target,
            );
        let token = match purpose {
            Purpose::Discovery => {
                command
                    .env("CONDUIT_CONNECTOR_ID", DISCOVERY_ID)
                    .env("CONDUIT_CONNECTOR_TOKEN", "irrelevant-token");
                None
            }
            Purpose::Connector => {
                let token = serde_json::json!({
                    "value": uuid::Uuid::new_v4().to_string(),
                    "connector_id": connector_id,
                })
                .to_string();
                command
                    .env("CONDUIT_CONNECTOR_ID", connector_id)
                    .env("CONDUIT_CONNECTOR_TOKEN", &token)
                    .env("CONDUIT_CONNECTOR_LOG_LEVEL", &options.log_level)
                    .env(
                        "CONDUIT_CONNECTOR_MAX_RECEIVE_RECORD_SIZE",
                        options.max_receive_record_size.to_string(),
                    );
                Some(token)
            }
        };
        let mut child = command
            .spawn()
            .map_err(|e| PluginError::new(format!("could not start {}: {e}", path.display())))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let logger = Logger {
            plugin: plugin.clone(),
            connector_id: connector_id.to_owned(),
            tail: Arc::clone(&tail),
            fatal: false,
        };
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(drain(stderr, logger.clone(), Stream::Stderr));
        }
        let guard = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            return Err(PluginError::new("the plugin's stdout is not a pipe"));
        };
        let mut process = Self {
            child,
            guard,
            channel: Endpoint::from_static("http://[::]:1").connect_lazy(),
            plugin,
            connector_id: connector_id.to_owned(),
            token: None,
            tokens: Arc::clone(&options.tokens),
            tail,
            options: options.clone(),
        };
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(options.handshake_timeout, stdout.read_line(&mut line));
        let address = match read.await {
            Err(_) => {
                return Err(process.failure(format!(
                    "timeout while waiting for the plugin to start (no handshake within {:?})",
                    options.handshake_timeout
                )));
            }
            Ok(Err(e)) => return Err(process.failure(format!("reading the handshake: {e}"))),
            Ok(Ok(0)) => {
                let status = process.exit_status().await;
                return Err(
                    process.failure(format!("plugin exited before we could connect ({status})"))
                );
            }
            Ok(Ok(_)) => parse_handshake(&line).map_err(|e| process.failure(e))?,
        };
        tokio::spawn(drain(stdout, logger.clone(), Stream::Stdout));
        process.channel = connect(&address)
            .await
            .map_err(|e| process.failure(format!("could not connect to {address:?}: {e}")))?;
        process.health().await?;
        tokio::spawn(stdio(process.channel.clone(), logger));
        if let Some(token) = token {
            lock(&process.tokens).insert(token.clone());
            process.token = Some(token);
        }
        Ok(process)
    }

    /// The connection to the plugin.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The plugin's file name.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The host options it was started with.
    pub fn options(&self) -> &HostOptions {
        &self.options
    }

    /// What error messages about this process quote, without borrowing it.
    pub fn diagnostics(&self) -> Diagnostics {
        Diagnostics {
            plugin: self.plugin.clone(),
            tail: Arc::clone(&self.tail),
        }
    }

    /// The error `message`, with how the process ended if it did, and its last stderr
    /// lines.
    pub fn failure(&mut self, message: impl std::fmt::Display) -> PluginError {
        let message = match self.child.try_wait() {
            Ok(Some(status)) => format!("{message} (the plugin process exited: {status})"),
            _ => message.to_string(),
        };
        self.diagnostics().failure(message)
    }

    /// How the process ended, waiting briefly for it.
    async fn exit_status(&mut self) -> String {
        match tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            _ => "still running".to_owned(),
        }
    }

    async fn health(&mut self) -> Result<(), PluginError> {
        let mut client = HealthClient::new(self.channel.clone());
        let request = HealthCheckRequest {
            service: "plugin".to_owned(),
        };
        match tokio::time::timeout(self.options.call_timeout, client.check(request)).await {
            Err(_) => Err(self.failure(format!(
                "no answer to the health check within {:?}",
                self.options.call_timeout
            ))),
            Ok(Ok(answer)) if answer.get_ref().status() == ServingStatus::Serving => Ok(()),
            Ok(Ok(answer)) => Err(self.failure(format!(
                "the plugin is not serving (health: {:?})",
                answer.get_ref().status()
            ))),
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => Ok(()),
            Ok(Err(status)) => {
                Err(self.failure(format!("health check failed: {}", status.message())))
            }
        }
    }

    /// Stops the plugin as go-plugin does: `Shutdown`, then up to the kill grace for it
    /// to exit, then SIGKILL to its whole process group.
    pub async fn shutdown(mut self) {
        let grace = self.options.kill_grace;
        let mut controller = GrpcControllerClient::new(self.channel.clone());
        // The answer does not matter: the process is killed below if it lingers.
        let _ = tokio::time::timeout(grace, controller.shutdown(())).await;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            tracing::debug!(
                plugin = %self.plugin,
                connector_id = %self.connector_id,
                "plugin did not exit within {grace:?} of Shutdown; killing it"
            );
        }
        self.kill().await;
    }

    /// Kills the whole process group and waits for the guard to go.
    pub async fn kill(&mut self) {
        drop(self.guard.take());
        match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(Ok(status)) if !status.success() && status.code().is_some() => {
                tracing::warn!(
                    plugin = %self.plugin,
                    connector_id = %self.connector_id,
                    "plugin process exited: {status}"
                );
            }
            Ok(_) => tracing::debug!(
                plugin = %self.plugin,
                connector_id = %self.connector_id,
                "plugin process exited"
            ),
            Err(_) => tracing::warn!(
                plugin = %self.plugin,
                connector_id = %self.connector_id,
                "plugin process group still running 5s after SIGKILL"
            ),
        }
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        // Closing the guard's stdin kills the process group (see the module docs).
        drop(self.guard.take());
        if let Some(token) = self.token.take() {
            lock(&self.tokens).remove(&token);
        }
    }
}

/// Builds error messages about one plugin process: its name and its last stderr lines.
#[derive(Clone, Debug)]
pub struct Diagnostics {
    plugin: String,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Diagnostics {
    /// Diagnostics of a plugin that has not started yet (no stderr lines).
    pub fn new(plugin: String) -> Self {
        Self {
            plugin,
            tail: Arc::default(),
        }
    }

    /// The error `message`, with the plugin's last stderr lines.
    pub fn failure(&self, message: impl std::fmt::Display) -> PluginError {
        let mut text = format!("plugin {}: {message}", self.plugin);
        let tail = lock(&self.tail);
        if !tail.is_empty() {
            text.push_str("; its last stderr lines: ");
            text.push_str(&tail.iter().cloned().collect::<Vec<_>>().join(" | "));
        }
        PluginError(text)
    }
}

/// Locks `mutex`, whatever a panicking holder left in it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Dials the plugin: h2c, no TLS, TCP keepalive.
async fn connect(address: &Address) -> Result<Channel, tonic::transport::Error> {
    match address {
        Address::Tcp(host_port) => {
            Endpoint::from_shared(format!("http://{host_port}"))?
                .tcp_keepalive(Some(Duration::from_secs(30)))
                .connect()
                .await
        }
        Address::Unix(path) => {
            let path = path.clone();
            Endpoint::from_static("http://[::]:1")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
        }
    }
}

/// Which of a plugin's streams a line came from.
#[derive(Clone, Copy, Debug)]
enum Stream {
    Stdout,
    Stderr,
}

/// Turns a plugin's output into log lines, as Conduit does (see [`Logger::line`]).
#[derive(Clone, Debug)]
struct Logger {
    plugin: String,
    connector_id: String,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// After a `panic: ` or `fatal error: ` line, every plain line is an error.
    fatal: bool,
}

/// A log level of a plugin's line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

impl Level {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "info" => Self::Info,
            "warn" => Self::Warn,
            "error" => Self::Error,
            "off" => Self::Off,
            _ => return None,
        })
    }
}

impl Logger {
    /// Logs one line of the plugin's stderr: a JSON object with `@message` and
    /// `@level` (other keys become `key=value` after the message), or plain text whose
    /// `[LEVEL]` prefix sets the level (`panic: ` and `fatal error: ` make it and every
    /// later plain line an error; anything else is debug).
    fn line(&mut self, line: &str) {
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        {
            let mut tail = lock(&self.tail);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        }
        let (level, message) = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(fields)) => {
                match fields
                    .get("@level")
                    .and_then(|l| l.as_str())
                    .and_then(Level::parse)
                {
                    Some(level) => {
                        let mut message = match fields.get("@message") {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                            None => String::new(),
                        };
                        for (key, value) in &fields {
                            if matches!(
                                key.as_str(),
                                "@message" | "@level" | "@timestamp" | "timestamp"
                            ) {
                                continue;
                            }
                            let value = match value {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            message.push_str(&format!(" {}={value}", key.trim_start_matches('@')));
                        }
                        (level, message)
                    }
                    None => (Level::Debug, line.to_owned()),
                }
            }
            _ => {
                let prefixed = [
                    ("[TRACE]", Level::Trace),
                    ("[DEBUG]", Level::Debug),
                    ("[INFO]", Level::Info),
                    ("[WARN]", Level::Warn),
                    ("[ERROR]", Level::Error),
                ]
                .into_iter()
                .find(|(prefix, _)| line.starts_with(prefix));
                if line.starts_with("panic: ") || line.starts_with("fatal error: ") {
                    self.fatal = true;
                }
                match prefixed {
                    Some((prefix, level)) => (level, line[prefix.len()..].trim().to_owned()),
                    None if self.fatal => (Level::Error, line.to_owned()),
                    None => (Level::Debug, line.to_owned()),
                }
            }
        };
        let (plugin, id) = (&self.plugin, &self.connector_id);
        match level {
            Level::Trace => tracing::trace!(plugin = %plugin, connector_id = %id, "{message}"),
            Level::Debug => tracing::debug!(plugin = %plugin, connector_id = %id, "{message}"),
            Level::Info => tracing::info!(plugin = %plugin, connector_id = %id, "{message}"),
            Level::Warn => tracing::warn!(plugin = %plugin, connector_id = %id, "{message}"),
            Level::Error => tracing::error!(plugin = %plugin, connector_id = %id, "{message}"),
            Level::Off => {}
        }
    }
}

/// Reads `reader` line by line until it ends: stderr lines are logged (see
/// [`Logger::line`]); stdout (nothing should come after the handshake) at debug.
async fn drain(reader: impl AsyncRead + Unpin, mut logger: Logger, stream: Stream) {
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match stream {
            Stream::Stderr => logger.line(&line),
            Stream::Stdout => tracing::debug!(
                plugin = %logger.plugin,
                connector_id = %logger.connector_id,
                "stdout: {line}"
            ),
        }
    }
}

/// Reads go-plugin's stdio stream (a Go plugin's own stdout and stderr, which block
/// when nobody reads them) and logs it like stderr. Plugins without it (Python) answer
/// UNIMPLEMENTED.
async fn stdio(channel: Channel, mut logger: Logger) {
    let mut client = GrpcStdioClient::new(channel);
    let Ok(response) = client.stream_stdio(()).await else {
        return;
    };
    let mut stream = response.into_inner();
    let mut pending = String::new();
    while let Ok(Some(chunk)) = stream.message().await {
        let text = String::from_utf8_lossy(&chunk.data);
        match chunk.channel() {
            StdioChannel::Stderr => {
                pending.push_str(&text);
                while let Some(end) = pending.find('\n') {
                    let line: String = pending.drain(..=end).collect();
                    logger.line(&line);
                }
            }
            _ => tracing::debug!(
                plugin = %logger.plugin,
                connector_id = %logger.connector_id,
                "stdout: {}",
                text.trim_end()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_lines_of_python_and_go_plugins_are_understood() {
        assert_eq!(
            parse_handshake("1|2|tcp|127.0.0.1:45785|grpc|\n"),
            Ok(Address::Tcp("127.0.0.1:45785".into()))
        );
        assert_eq!(
            parse_handshake("1|2|unix|/tmp/plugin1234|grpc|"),
            Ok(Address::Unix("/tmp/plugin1234".into()))
        );
    }

    #[test]
    fn bad_handshake_lines_are_refused_with_go_plugins_words() {
        let garbage = parse_handshake("hello world").unwrap_err();
        assert!(
            garbage.starts_with("Unrecognized remote plugin message"),
            "{garbage}"
        );
        let version = parse_handshake("1|1|tcp|127.0.0.1:1|grpc|").unwrap_err();
        assert!(version.starts_with("incompatible API version"), "{version}");
        let netrpc = parse_handshake("1|2|tcp|127.0.0.1:1").unwrap_err();
        assert!(netrpc.contains("netrpc"), "{netrpc}");
    }

    #[test]
    fn json_log_lines_keep_their_fields_and_plain_lines_after_a_panic_are_errors() {
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let mut logger = Logger {
            plugin: "p".into(),
            connector_id: "c".into(),
            tail: Arc::clone(&tail),
            fatal: false,
        };
        logger.line(r#"{"@level":"info","@message":7,"k":"v"}"#);
        logger.line("panic: boom");
        assert!(logger.fatal);
        assert_eq!(lock(&tail).len(), 2);
    }
}
