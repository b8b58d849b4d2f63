//! NATS settings: parsing and validation (no I/O).

use std::path::PathBuf;
use std::time::Duration;

use funnel_core::typed::FromSetting;

use crate::settings::{both, parse_destination_with, parse_source_with, validated};
use crate::tls::client_pair;
use crate::{Settings, SettingsError};

/// `urls`: one or more server URLs, comma separated (`nats://user:pass@host:4222`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Urls(pub Vec<String>);

impl FromSetting for Urls {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let urls: Vec<String> = raw
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err("list at least one server URL (nats://127.0.0.1:4222)".to_owned());
        }
        for url in &urls {
            if let Err(e) = url.parse::<async_nats::ServerAddr>() {
                return Err(format!("{url:?} is not a NATS server URL: {e}"));
            }
        }
        Ok(Self(urls))
    }
}

/// `mode`: JetStream (acked, at least once) or plain core-NATS subjects (at most once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `jetstream`: a stream read with a durable consumer; publishes confirmed by the
    /// stream.
    JetStream,
    /// `pubsub`: core NATS subscribe and publish; nothing is stored or acked, so
    /// messages can be lost (at most once).
    PubSub,
}

impl FromSetting for Mode {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "jetstream" => Ok(Self::JetStream),
            "pubsub" => Ok(Self::PubSub),
            _ => Err(format!("{raw:?} value must be one of: jetstream, pubsub")),
        }
    }
}

/// `deliverPolicy`: where a new consumer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliverPolicy {
    /// `all`: from the first message of the stream.
    All,
    /// `new`: only messages published after the consumer was created.
    New,
}

impl FromSetting for DeliverPolicy {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "all" => Ok(Self::All),
            "new" => Ok(Self::New),
            _ => Err(format!("{raw:?} value must be one of: all, new")),
        }
    }
}

/// `ackPolicy`: how the source acknowledges released messages to the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckPolicy {
    /// `explicit`: every message is acked.
    Explicit,
    /// `all`: the last message of each released prefix is acked, which acks the ones
    /// before it.
    All,
    /// `none`: nothing is acked; the server forgets a message once it is delivered.
    None,
}

impl FromSetting for AckPolicy {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "explicit" => Ok(Self::Explicit),
            "all" => Ok(Self::All),
            "none" => Ok(Self::None),
            _ => Err(format!("{raw:?} value must be one of: explicit, none, all")),
        }
    }
}

/// `bufferSize`: at least 64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferSize(pub usize);

impl FromSetting for BufferSize {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Int;

    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw.parse::<usize>() {
            Ok(n) if n >= 64 => Ok(Self(n)),
            Ok(_) => Err(format!("{raw:?} must be at least 64")),
            Err(_) => Err(format!("{raw:?} is not a whole number")),
        }
    }
}

/// A parsed subject template; two are equal when their texts are.
#[derive(Clone, Debug)]
pub struct SubjectTemplate(pub funnel_template::Template);

impl PartialEq for SubjectTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.0.source() == other.0.source()
    }
}

impl FromSetting for SubjectTemplate {
    fn from_setting(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err("the subject is empty".to_owned());
        }
        funnel_template::Template::parse(raw)
            .map(Self)
            .map_err(|e| format!("{raw:?}: the subject template does not parse: {e}"))
    }
}

funnel_core::settings! {
    /// How the NATS source and destination connect (Conduit's names).
    pub struct NatsConnectionSettings {
        /// Server URLs, comma separated; user and password or a token go in the URL
        /// (nats://user:password@127.0.0.1:4222, nats://token@127.0.0.1:4222).
        pub urls: Urls = "urls",
        /// Name of the connection, shown by the server's monitoring (default: the
        /// connector ID).
        pub connection_name: Option<String> = "connectionName",
        /// Path to an NKey seed file.
        pub nkey_path: Option<PathBuf> = "nkeyPath",
        /// Path to a credentials file (JWT and NKey seed).
        pub credentials_file_path: Option<PathBuf> = "credentialsFilePath",
        /// Path to a TLS client certificate (PEM); needs tls.clientPrivateKeyPath.
        pub tls_client_cert_path: Option<PathBuf> = "tls.clientCertPath",
        /// Path to the private key of the TLS client certificate (PEM).
        pub tls_client_private_key_path: Option<PathBuf> = "tls.clientPrivateKeyPath",
        /// Path to a root CA certificate (PEM) to verify the server with; setting it
        /// requires TLS.
        pub tls_root_ca_cert_path: Option<PathBuf> = "tls.rootCACertPath",
        /// Reconnect attempts before giving up; negative: never give up.
        pub max_reconnects: i64 = "maxReconnects" (default "5"),
        /// Wait between reconnect attempts (Go duration).
        pub reconnect_wait: Duration = "reconnectWait" (default "5s"),
    }
}

funnel_core::settings! {
    /// The NATS JetStream source's own settings.
    pub struct NatsSourceSettings {
        /// jetstream (a stream, acked after delivery) or pubsub (core NATS
        /// subscribe, at most once).
        pub mode: Mode = "mode" (default "jetstream"),
        /// Subject filter of the consumer, or the subject to subscribe to (wildcards
        /// allowed); with jetstream it must be in the stream.
        pub subject: String = "subject",
        /// Name of the stream to read (required with mode jetstream).
        pub stream: Option<String> = "stream",
        /// Name of the durable pull consumer (default: funnel- and the connector ID).
        pub durable: Option<String> = "durable",
        /// Accepted for compatibility: the source uses a pull consumer, which has no
        /// deliver subject.
        pub deliver_subject: Option<String> = "deliverSubject",
        /// Where a new consumer starts without a saved position: all or new.
        pub deliver_policy: DeliverPolicy = "deliverPolicy" (default "all"),
        /// How released messages are acked: explicit (each), all (the last of each
        /// released prefix) or none.
        pub ack_policy: AckPolicy = "ackPolicy" (default "explicit"),
        /// Messages pulled ahead of the pipeline (at least 64); the consumer's
        /// max_ack_pending is this plus 4096.
        pub buffer_size: BufferSize = "bufferSize" (default "1024"),
    }
}

funnel_core::settings! {
    /// The NATS JetStream destination's own settings.
    pub struct NatsDestinationSettings {
        /// jetstream (acked after the stream stored the message) or pubsub (core
        /// NATS publish, acked once sent: at most once).
        pub mode: Mode = "mode" (default "jetstream"),
        /// Subject to publish to: a name, or a Go template rendered per record.
        pub subject: SubjectTemplate = "subject" (default "{{ index .Metadata \"opencdc.collection\" }}"),
        /// Publish attempts after a failed one (no publish ack in time).
        pub retry_attempts: usize = "retryAttempts" (default "3"),
        /// Wait before publishing again after a failure (Go duration).
        pub retry_wait: Duration = "retryWait" (default "5s"),
    }
}

/// How to connect, validated.
#[derive(Clone, Debug)]
pub struct NatsConnection {
    /// `urls`.
    pub urls: Vec<String>,
    /// `connectionName` (default: the connector ID, filled in by the connector).
    pub name: Option<String>,
    /// `nkeyPath`.
    pub nkey_path: Option<PathBuf>,
    /// `credentialsFilePath`.
    pub credentials_file: Option<PathBuf>,
    /// `tls.clientCertPath` and `tls.clientPrivateKeyPath`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `tls.rootCACertPath`.
    pub root_ca: Option<PathBuf>,
    /// `maxReconnects` (`None`: forever).
    pub max_reconnects: Option<usize>,
    /// `reconnectWait`.
    pub reconnect_wait: Duration,
}

/// The validated settings of a NATS JetStream source.
#[derive(Clone, Debug)]
pub struct NatsSourceConfig {
    /// The connection.
    pub connection: NatsConnection,
    /// `mode`.
    pub mode: Mode,
    /// `subject`: the consumer's filter subject, or the subject subscribed to.
    pub subject: String,
    /// `stream` (empty with mode pubsub).
    pub stream: String,
    /// `durable` (default `funnel-<connector ID>`, filled in by the connector).
    pub durable: Option<String>,
    /// `deliverPolicy`.
    pub deliver_policy: DeliverPolicy,
    /// `ackPolicy`.
    pub ack_policy: AckPolicy,
    /// `bufferSize`.
    pub buffer_size: usize,
    /// Records per read at most (`sdk.batch.size`, default 1000).
    pub batch_size: usize,
}

/// The validated settings of a NATS JetStream destination.
#[derive(Clone, Debug)]
pub struct NatsDestinationConfig {
    /// The connection.
    pub connection: NatsConnection,
    /// `mode`.
    pub mode: Mode,
    /// `subject`.
    pub subject: funnel_template::Template,
    /// `retryAttempts`.
    pub retry_attempts: usize,
    /// `retryWait`.
    pub retry_wait: Duration,
}

fn connection(own: NatsConnectionSettings, errors: &mut Vec<SettingsError>) -> NatsConnection {
    let client_cert = client_pair(
        own.tls_client_cert_path,
        own.tls_client_private_key_path,
        ["tls.clientCertPath", "tls.clientPrivateKeyPath"],
        errors,
    );
    NatsConnection {
        urls: own.urls.0,
        name: own.connection_name.filter(|n| !n.is_empty()),
        nkey_path: own.nkey_path,
        credentials_file: own.credentials_file_path,
        client_cert,
        root_ca: own.tls_root_ca_cert_path,
        max_reconnects: usize::try_from(own.max_reconnects).ok().filter(|n| *n > 0),
        reconnect_wait: own.reconnect_wait,
    }
}

/// Parses and validates NATS JetStream source settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_source(settings: &Settings) -> Result<NatsSourceConfig, Vec<SettingsError>> {
    let ((conn, own), sdk) =
        parse_source_with(settings, both::<NatsConnectionSettings, NatsSourceSettings>)?;
    validated(|errors| {
        let connection = connection(conn, errors);
        if own.subject.trim().is_empty() {
            errors.push(SettingsError::new("subject", "the subject is empty"));
        }
        let stream = own.stream.unwrap_or_default();
        if own.mode == Mode::JetStream && stream.trim().is_empty() {
            errors.push(SettingsError::new(
                "stream",
                "is required with mode jetstream (the stream to read)",
            ));
        }
        NatsSourceConfig {
            connection,
            mode: own.mode,
            subject: own.subject,
            stream,
            durable: own.durable.filter(|d| !d.is_empty()),
            deliver_policy: own.deliver_policy,
            ack_policy: own.ack_policy,
            buffer_size: own.buffer_size.0,
            batch_size: sdk.batch_size,
        }
    })
}

/// Parses and validates NATS JetStream destination settings. Pure: nothing is
/// connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_destination(
    settings: &Settings,
) -> Result<NatsDestinationConfig, Vec<SettingsError>> {
    let (conn, own) = parse_destination_with(
        settings,
        both::<NatsConnectionSettings, NatsDestinationSettings>,
    )?;
    validated(|errors| {
        let connection = connection(conn, errors);
        NatsDestinationConfig {
            connection,
            mode: own.mode,
            subject: own.subject.0,
            retry_attempts: own.retry_attempts,
            retry_wait: own.retry_wait,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use funnel_core::settings_of as settings;

    #[test]
    fn source_defaults_follow_conduit() {
        let c = validate_source(&settings(&[
            ("urls", "nats://127.0.0.1:4222"),
            ("subject", "orders.>"),
            ("stream", "ORDERS"),
        ]))
        .unwrap();
        assert_eq!(c.connection.urls, ["nats://127.0.0.1:4222"]);
        assert_eq!(c.deliver_policy, DeliverPolicy::All);
        assert_eq!(c.ack_policy, AckPolicy::Explicit);
        assert_eq!(c.buffer_size, 1024);
        assert_eq!(c.connection.max_reconnects, Some(5));
        assert_eq!(c.connection.reconnect_wait, Duration::from_secs(5));
        assert_eq!(c.durable, None);
    }

    #[test]
    fn bad_source_settings_are_all_reported_with_their_keys() {
        let errors = validate_source(&settings(&[
            ("urls", "http://[::1"),
            ("deliverPolicy", "sometimes"),
            ("ackPolicy", "maybe"),
            ("bufferSize", "10"),
            ("surprise", "1"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(
            keys,
            [
                "urls",
                "subject",
                "deliverPolicy",
                "ackPolicy",
                "bufferSize",
                "surprise"
            ]
        );
    }

    #[test]
    fn a_stream_is_required_with_jetstream_and_not_with_pubsub() {
        let errors = validate_source(&settings(&[
            ("urls", "nats://127.0.0.1:4222"),
            ("subject", "orders.>"),
        ]))
        .unwrap_err();
        assert_eq!(errors[0].setting, "stream");
        let c = validate_source(&settings(&[
            ("urls", "nats://127.0.0.1:4222"),
            ("subject", "orders.>"),
            ("mode", "pubsub"),
        ]))
        .unwrap();
        assert_eq!(c.mode, Mode::PubSub);
        let errors = validate_destination(&settings(&[
            ("urls", "nats://127.0.0.1:4222"),
            ("mode", "core"),
        ]))
        .unwrap_err();
        assert_eq!(errors[0].setting, "mode");
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_a_negative_reconnect_limit_means_forever() {
        let errors = validate_destination(&settings(&[
            ("urls", "nats://a:4222,nats://b:4222"),
            ("tls.clientCertPath", "/c.pem"),
        ]))
        .unwrap_err();
        assert_eq!(errors[0].setting, "tls.clientPrivateKeyPath");
        let c = validate_destination(&settings(&[
            ("urls", "nats://a:4222, nats://b:4222"),
            ("maxReconnects", "-1"),
            ("subject", "out.{{ .Metadata.table }}"),
        ]))
        .unwrap();
        assert_eq!(c.connection.urls.len(), 2);
        assert_eq!(c.connection.max_reconnects, None);
        assert_eq!(c.subject.as_literal(), None);
    }
}
