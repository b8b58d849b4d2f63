//! Kafka settings: parsing and validation (no I/O), and the librdkafka client
//! configuration they make.

use std::time::Duration;

use funnel_core::typed::FromSetting;
use rdkafka::ClientConfig;

use crate::settings::{
    both, comma_list, non_empty_list, parse_destination_with, parse_source_with, validated,
};
use crate::tls::client_pair;
use crate::{Settings, SettingsError};

/// The client id librdkafka announces when `clientID` is not set (Conduit's).
pub const DEFAULT_CLIENT_ID: &str = "conduit-connector-kafka";

/// A comma list of `host:port` bootstrap servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Servers(pub Vec<String>);

impl FromSetting for Servers {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let servers = non_empty_list(raw, "list at least one server (host:port)")?;
        for server in &servers {
            let port = server.rsplit_once(':').map(|(_, port)| port);
            if port.is_none_or(|p| p.parse::<u16>().is_err()) {
                return Err(format!("{server:?} is not host:port"));
            }
        }
        Ok(Self(servers))
    }
}

/// A comma list of topic names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics(pub Vec<String>);

impl FromSetting for Topics {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let topics = comma_list(raw);
        for topic in &topics {
            check_topic_name(topic)?;
        }
        Ok(Self(topics))
    }
}

/// `Ok` when `name` is a valid Kafka topic name.
pub(crate) fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not a valid topic name (1 to 249 characters)"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "{name:?} is not a valid topic name (letters, digits, '.', '_' and '-' only)"
        ));
    }
    Ok(())
}

/// `saslMechanism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN`.
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The name Kafka and librdkafka use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl FromSetting for SaslMechanism {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            other => Err(format!(
                "{other:?} value must be one of: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
            )),
        }
    }
}

/// `acks`: how many replicas must have a message before the broker confirms it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// `none`: the broker does not answer; a message counts as delivered once sent.
    None,
    /// `one`: the partition leader has it.
    One,
    /// `all`: every in-sync replica has it (and the producer is idempotent).
    All,
}

impl Acks {
    fn librdkafka(self) -> &'static str {
        match self {
            Self::None => "0",
            Self::One => "1",
            Self::All => "all",
        }
    }
}

impl FromSetting for Acks {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "none" => Ok(Self::None),
            "one" => Ok(Self::One),
            "all" => Ok(Self::All),
            other => Err(format!("{other:?} value must be one of: none, one, all")),
        }
    }
}

/// `compression`: the codec of produced batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `none`.
    None,
    /// `gzip`.
    Gzip,
    /// `snappy` (the default).
    Snappy,
    /// `lz4`.
    Lz4,
    /// `zstd`.
    Zstd,
}

impl Compression {
    fn librdkafka(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

impl FromSetting for Compression {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "none" => Ok(Self::None),
            "gzip" => Ok(Self::Gzip),
            "snappy" => Ok(Self::Snappy),
            "lz4" => Ok(Self::Lz4),
            "zstd" => Ok(Self::Zstd),
            other => Err(format!(
                "{other:?} value must be one of: none, gzip, snappy, lz4, zstd"
            )),
        }
    }
}

/// A byte count of at least 1000 and at most 1e9 (librdkafka's `message.max.bytes`
/// range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchBytes(pub usize);

impl FromSetting for BatchBytes {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Int;

    fn from_setting(raw: &str) -> Result<Self, String> {
        match usize::from_setting(raw)? {
            n @ 1000..=1_000_000_000 => Ok(Self(n)),
            _ => Err("must be between 1000 and 1000000000 bytes".to_owned()),
        }
    }
}

/// Where the destination writes a record.
#[derive(Clone, Debug)]
pub enum TopicName {
    /// Always this topic.
    Literal(String),
    /// The topic named by this metadata key of the record.
    Metadata(String),
    /// Any other Go template, rendered on each record.
    Template(funnel_template::Template),
}

impl PartialEq for TopicName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Literal(a), Self::Literal(b)) | (Self::Metadata(a), Self::Metadata(b)) => a == b,
            (Self::Template(a), Self::Template(b)) => a.source() == b.source(),
            _ => false,
        }
    }
}

impl FromSetting for TopicName {
    fn from_setting(raw: &str) -> Result<Self, String> {
        if !raw.contains("{{") {
            let name = raw.trim();
            check_topic_name(name)?;
            return Ok(Self::Literal(name.to_owned()));
        }
        if let Some(key) = metadata_lookup(raw) {
            return Ok(Self::Metadata(key));
        }
        funnel_template::Template::parse(raw)
            .map(Self::Template)
            .map_err(|e| format!("{raw:?}: the topic template does not parse: {e}"))
    }
}

/// The key of a plain metadata look-up template (`{{ index .Metadata "key" }}` or
/// `{{ .Metadata.key }}`), read directly instead of rendering.
fn metadata_lookup(raw: &str) -> Option<String> {
    let inner = raw
        .trim()
        .strip_prefix("{{")?
        .strip_suffix("}}")?
        .trim()
        .trim_start_matches('-')
        .trim_end_matches('-')
        .trim();
    if inner.contains("{{") || inner.contains("}}") {
        return None;
    }
    let words: Vec<&str> = inner.split_whitespace().collect();
    match words.as_slice() {
        ["index", ".Metadata", key]
            if key.len() >= 2 && key.starts_with('"') && key.ends_with('"') =>
        {
            Some(key[1..key.len() - 1].to_owned())
        }
        [path] if path.starts_with(".Metadata.") => Some(path[".Metadata.".len()..].to_owned()),
        _ => None,
    }
}

funnel_core::settings! {
    /// The settings the kafka source and destination share.
    pub struct KafkaCommonSettings {
        /// Comma list of bootstrap servers (host:port).
        pub servers: Servers = "servers",
        /// Client id the connector announces to the brokers.
        pub client_id: String = "clientID" (default "conduit-connector-kafka"),
        /// Connect with TLS.
        pub tls_enabled: bool = "tls.enabled" (default "false"),
        /// CA certificate (PEM) that signs the brokers' certificates; default: the
        /// system's CAs.
        pub ca_cert: Option<String> = "caCert",
        /// Client certificate (PEM), for mutual TLS.
        pub client_cert: Option<String> = "clientCert",
        /// Private key (PEM) of the client certificate.
        pub client_key: Option<String> = "clientKey",
        /// Do not verify the brokers' certificates and host names (testing only).
        pub insecure_skip_verify: bool = "insecureSkipVerify" (default "false"),
        /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (used when
        /// saslUsername is set; default PLAIN).
        pub sasl_mechanism: Option<SaslMechanism> = "saslMechanism",
        /// SASL user name; setting it turns SASL on.
        pub sasl_username: Option<String> = "saslUsername",
        /// SASL password.
        pub sasl_password: Option<String> = "saslPassword",
    }
}

funnel_core::settings! {
    /// The kafka source's own settings (with the common ones and the SDK's).
    pub struct KafkaSourceSettings {
        /// Comma list of topics to read.
        pub topics: Option<Topics> = "topics",
        /// The former spelling of topics (one topic, or a comma list).
        pub topic: Option<Topics> = "topic",
        /// Consumer group id; default: the one in the resume position, else
        /// funnel-<connector id>.
        pub group_id: Option<String> = "groupID",
        /// Start at the oldest message of a partition the group has no committed
        /// offset for (default: only new messages).
        pub read_from_beginning: bool = "readFromBeginning" (default "false"),
        /// Longest time acknowledged offsets wait before they are committed to the
        /// group (Go duration).
        pub commit_offsets_delay: Duration = "commitOffsetsDelay" (default "5s"),
        /// Acknowledged records that trigger a commit of offsets at once.
        pub commit_offsets_size: usize = "commitOffsetsSize" (default "1000"),
        /// Keep retrying when joining the consumer group fails; false: the read
        /// fails (and the pipeline stops or restarts).
        pub retry_group_join_errors: bool = "retryGroupJoinErrors" (default "true"),
        /// Static group membership (Funnel extension): this member's
        /// group.instance.id, one per process of the group. A process restarted with
        /// the same id takes its partitions back at once, without a rebalance and
        /// without waiting for the group's session timeout; empty (default): dynamic
        /// membership.
        pub group_instance_id: Option<String> = "groupInstanceID",
    }
}

funnel_core::settings! {
    /// The kafka destination's own settings (with the common ones and the SDK's).
    pub struct KafkaDestinationSettings {
        /// Topic to write to: a name, or a Go template rendered per record.
        pub topic: TopicName = "topic" (default "{{ index .Metadata \"opencdc.collection\" }}"),
        /// Replicas that must have a message before it counts as delivered: none, one
        /// or all (idempotent producer).
        pub acks: Acks = "acks" (default "all"),
        /// Compression of produced batches: none, gzip, snappy, lz4 or zstd.
        pub compression: Compression = "compression" (default "snappy"),
        /// Largest message (and message batch) in bytes; a bigger record is nacked.
        pub batch_bytes: BatchBytes = "batchBytes" (default "1000012"),
        /// How long a message may take to be delivered, retries included (Go
        /// duration); 0: librdkafka's 5 minutes.
        pub delivery_timeout: Duration = "deliveryTimeout" (default "0"),
    }
}

/// The validated settings both halves share.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaCommon {
    /// `servers`.
    pub servers: Vec<String>,
    /// `clientID`.
    pub client_id: String,
    /// TLS, when `tls.enabled`.
    pub tls: Option<Tls>,
    /// SASL, when `saslUsername` is set.
    pub sasl: Option<Sasl>,
}

/// TLS settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Tls {
    /// `caCert` (PEM).
    pub ca_cert: Option<String>,
    /// `clientCert` and `clientKey` (PEM).
    pub client: Option<(String, String)>,
    /// `insecureSkipVerify`.
    pub insecure_skip_verify: bool,
}

/// SASL settings.
#[derive(Clone, PartialEq)]
pub struct Sasl {
    /// `saslMechanism`.
    pub mechanism: SaslMechanism,
    /// `saslUsername`.
    pub username: String,
    /// `saslPassword`.
    pub password: String,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The validated settings of a kafka source.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaSourceConfig {
    /// The shared settings.
    pub common: KafkaCommon,
    /// `topics` (or `topic`).
    pub topics: Vec<String>,
    /// `groupID`, when set.
    pub group_id: Option<String>,
    /// `readFromBeginning`.
    pub read_from_beginning: bool,
    /// `commitOffsetsDelay`.
    pub commit_offsets_delay: Duration,
    /// `commitOffsetsSize` (at least 1).
    pub commit_offsets_size: usize,
    /// `retryGroupJoinErrors`.
    pub retry_group_join_errors: bool,
    /// `groupInstanceID`, when set: static group membership.
    pub group_instance_id: Option<String>,
    /// Records per read at most (`sdk.batch.size`, default 1000).
    pub batch_size: usize,
}

/// The validated settings of a kafka destination.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaDestinationConfig {
    /// The shared settings.
    pub common: KafkaCommon,
    /// `topic`.
    pub topic: TopicName,
    /// `acks`.
    pub acks: Acks,
    /// `compression`.
    pub compression: Compression,
    /// `batchBytes`.
    pub batch_bytes: usize,
    /// `deliveryTimeout` (`None`: librdkafka's default).
    pub delivery_timeout: Option<Duration>,
}

fn common(own: KafkaCommonSettings, errors: &mut Vec<SettingsError>) -> KafkaCommon {
    let tls = own.tls_enabled.then(|| Tls {
        ca_cert: own.ca_cert,
        client: client_pair(
            own.client_cert,
            own.client_key,
            ["clientCert", "clientKey"],
            errors,
        ),
        insecure_skip_verify: own.insecure_skip_verify,
    });
    let sasl = match (own.sasl_username, own.sasl_password) {
        (Some(username), Some(password)) => Some(Sasl {
            mechanism: own.sasl_mechanism.unwrap_or(SaslMechanism::Plain),
            username,
            password,
        }),
        (Some(_), None) => {
            errors.push(SettingsError::new(
                "saslPassword",
                "saslUsername is set: set saslPassword too",
            ));
            None
        }
        (None, Some(_)) => {
            errors.push(SettingsError::new(
                "saslUsername",
                "saslPassword is set: set saslUsername too",
            ));
            None
        }
        (None, None) => None,
    };
    KafkaCommon {
        servers: own.servers.0,
        client_id: own.client_id,
        tls,
        sasl,
    }
}

/// Parses and validates kafka source settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_source(settings: &Settings) -> Result<KafkaSourceConfig, Vec<SettingsError>> {
    let ((shared, own), sdk) =
        parse_source_with(settings, both::<KafkaCommonSettings, KafkaSourceSettings>)?;
    validated(|errors| {
        let common = common(shared, errors);
        let topics = match (own.topics, own.topic) {
            (Some(topics), _) if !topics.0.is_empty() => topics.0,
            (_, Some(topic)) if !topic.0.is_empty() => topic.0,
            _ => {
                errors.push(SettingsError::new(
                    "topics",
                    "required: list the topics to read",
                ));
                Vec::new()
            }
        };
        if own.commit_offsets_size == 0 {
            errors.push(SettingsError::new(
                "commitOffsetsSize",
                "must be greater than 0",
            ));
        }
        KafkaSourceConfig {
            common,
            topics,
            group_id: own.group_id.filter(|g| !g.is_empty()),
            read_from_beginning: own.read_from_beginning,
            commit_offsets_delay: own.commit_offsets_delay,
            commit_offsets_size: own.commit_offsets_size,
            retry_group_join_errors: own.retry_group_join_errors,
            group_instance_id: own.group_instance_id.filter(|g| !g.is_empty()),
            batch_size: sdk.batch_size,
        }
    })
}

/// Parses and validates kafka destination settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_destination(
    settings: &Settings,
) -> Result<KafkaDestinationConfig, Vec<SettingsError>> {
    let (shared, own) = parse_destination_with(
        settings,
        both::<KafkaCommonSettings, KafkaDestinationSettings>,
    )?;
    validated(|errors| {
        let common = common(shared, errors);
        KafkaDestinationConfig {
            common,
            topic: own.topic,
            acks: own.acks,
            compression: own.compression,
            batch_bytes: own.batch_bytes.0,
            delivery_timeout: (!own.delivery_timeout.is_zero()).then_some(own.delivery_timeout),
        }
    })
}

impl KafkaCommon {
    /// The librdkafka configuration of the servers, client id, TLS and SASL.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.servers.join(","))
            .set("client.id", &self.client_id)
            // librdkafka logs through its own logger; errors reach the connector
            // through the calls and callbacks, so its log stays quiet.
            .set("log_level", "3");
        let protocol = match (&self.tls, &self.sasl) {
            (None, None) => "plaintext",
            (Some(_), None) => "ssl",
            (None, Some(_)) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca_cert {
                config.set("ssl.ca.pem", ca);
            }
            if let Some((cert, key)) = &tls.client {
                config
                    .set("ssl.certificate.pem", cert)
                    .set("ssl.key.pem", key);
            }
            if tls.insecure_skip_verify {
                config
                    .set("enable.ssl.certificate.verification", "false")
                    .set("ssl.endpoint.identification.algorithm", "none");
            }
        }
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanism", sasl.mechanism.name())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        config
    }
}

impl KafkaDestinationConfig {
    /// The librdkafka producer configuration.
    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut config = self.common.client_config();
        config
            .set("acks", self.acks.librdkafka())
            .set("enable.idempotence", (self.acks == Acks::All).to_string())
            .set("compression.type", self.compression.librdkafka())
            .set("message.max.bytes", self.batch_bytes.to_string())
            .set("batch.size", self.batch_bytes.to_string())
            .set("linger.ms", "5");
        if let Some(timeout) = self.delivery_timeout {
            config.set(
                "message.timeout.ms",
                timeout.as_millis().clamp(1, i32::MAX as u128).to_string(),
            );
        }
        config
    }
}

impl KafkaSourceConfig {
    /// The librdkafka consumer configuration for `group`.
    pub(crate) fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.common.client_config();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "auto.offset.reset",
                if self.read_from_beginning {
                    "earliest"
                } else {
                    "latest"
                },
            );
        if let Some(instance) = &self.group_instance_id {
            config.set("group.instance.id", instance);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use funnel_core::settings_of as settings;

    #[test]
    fn source_defaults_follow_conduit() {
        let c = validate_source(&settings(&[
            ("servers", "localhost:9092"),
            ("topics", "a, b"),
        ]))
        .unwrap();
        assert_eq!(c.topics, ["a", "b"]);
        assert_eq!(c.common.client_id, DEFAULT_CLIENT_ID);
        assert_eq!(c.common.tls, None);
        assert_eq!(c.common.sasl, None);
        assert!(!c.read_from_beginning);
        assert_eq!(c.commit_offsets_delay, Duration::from_secs(5));
        assert_eq!(c.commit_offsets_size, 1000);
        assert!(c.retry_group_join_errors);
        assert_eq!(c.group_id, None);
        assert_eq!(c.group_instance_id, None);
        assert_eq!(c.batch_size, 1000);
    }

    #[test]
    fn group_instance_id_makes_the_consumer_a_static_member_and_empty_means_dynamic() {
        let group = |pairs: &[(&str, &str)]| {
            let mut all = vec![("servers", "h:1"), ("topics", "t")];
            all.extend_from_slice(pairs);
            validate_source(&settings(&all))
                .unwrap()
                .consumer_config("g")
                .get("group.instance.id")
                .map(str::to_owned)
        };
        assert_eq!(
            group(&[("groupInstanceID", "node-1")]).as_deref(),
            Some("node-1")
        );
        assert_eq!(group(&[("groupInstanceID", "")]), None);
        assert_eq!(group(&[]), None);
    }

    #[test]
    fn the_old_topic_spelling_is_accepted_by_the_source() {
        let c = validate_source(&settings(&[("servers", "h:1"), ("topic", "t")])).unwrap();
        assert_eq!(c.topics, ["t"]);
    }

    #[test]
    fn a_source_without_topics_or_servers_is_refused_with_each_key() {
        let errors = validate_source(&settings(&[("servers", "nohost")])).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(keys, ["servers"]);
        let errors = validate_source(&settings(&[("servers", "h:1")])).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(keys, ["topics"]);
    }

    #[test]
    fn destination_defaults_follow_conduit() {
        let c = validate_destination(&settings(&[("servers", "localhost:9092")])).unwrap();
        assert_eq!(c.topic, TopicName::Metadata("opencdc.collection".into()));
        assert_eq!(c.acks, Acks::All);
        assert_eq!(c.compression, Compression::Snappy);
        assert_eq!(c.batch_bytes, 1_000_012);
        assert_eq!(c.delivery_timeout, None);
    }

    #[test]
    fn the_topic_is_a_name_a_metadata_lookup_or_a_template() {
        assert_eq!(
            TopicName::from_setting("orders"),
            Ok(TopicName::Literal("orders".into()))
        );
        assert_eq!(
            TopicName::from_setting("{{ .Metadata.route }}"),
            Ok(TopicName::Metadata("route".into()))
        );
        assert!(matches!(
            TopicName::from_setting(
                "{{ printf \"%s-copy\" (index .Metadata \"opencdc.collection\") }}"
            ),
            Ok(TopicName::Template(_))
        ));
        assert!(TopicName::from_setting("bad topic").is_err());
        assert!(TopicName::from_setting("{{ printf ").is_err());
    }

    #[test]
    fn sasl_needs_both_user_and_password_and_defaults_to_plain() {
        let c = validate_destination(&settings(&[
            ("servers", "h:1"),
            ("saslUsername", "u"),
            ("saslPassword", "p"),
        ]))
        .unwrap();
        assert_eq!(c.common.sasl.unwrap().mechanism, SaslMechanism::Plain);
        let errors = validate_destination(&settings(&[("servers", "h:1"), ("saslUsername", "u")]))
            .unwrap_err();
        assert_eq!(errors[0].setting, "saslPassword");
    }

    #[test]
    fn bad_destination_values_are_reported_with_their_keys() {
        let errors = validate_destination(&settings(&[
            ("servers", "h:1"),
            ("acks", "most"),
            ("compression", "brotli"),
            ("batchBytes", "10"),
            ("saslMechanism", "GSSAPI"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(keys, ["saslMechanism", "acks", "compression", "batchBytes"]);
    }
}
