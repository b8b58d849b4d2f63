//! The `kafka` source and destination (cargo feature `kafka`, off by default),
//! compatible with Conduit's builtin kafka connector, over librdkafka (`rdkafka`). The
//! user documentation is the kafka section of `docs/connectors.md`.
//!
//! # Settings both halves share
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `servers` | — (required) | Comma list of bootstrap servers, `host:port`. |
//! | `clientID` | `conduit-connector-kafka` | Client id sent to the brokers. |
//! | `tls.enabled` | `false` | Connect with TLS. |
//! | `caCert` | system CAs | CA certificate (PEM text) of the brokers. |
//! | `clientCert`, `clientKey` | — | Client certificate and key (PEM text), for mutual TLS; both or neither. |
//! | `insecureSkipVerify` | `false` | Do not verify the brokers' certificates (testing only). |
//! | `saslMechanism` | `PLAIN` | `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`. |
//! | `saslUsername`, `saslPassword` | — | SASL credentials; setting them turns SASL on. |
//!
//! # Source
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `topics` | — (required) | Comma list of topics; `topic` is accepted as the former spelling. |
//! | `groupID` | from the resume position, else `funnel-<connector id>` | Consumer group. |
//! | `readFromBeginning` | `false` | A partition without a committed offset starts at its oldest message (else at new ones). |
//! | `commitOffsetsDelay` | `5s` | Longest time acked offsets wait before they are committed. |
//! | `commitOffsetsSize` | `1000` | Acked records that make a commit at once. |
//! | `retryGroupJoinErrors` | `true` | `false`: an error joining the group fails the read. |
//! | `groupInstanceID` | — | Static membership (Funnel extension): a restarted process with the same id gets its partitions back at once. |
//!
//! **Records.** Operation `create`; key: the message key (raw; none without one);
//! `payload.after`: the value (raw). Metadata: the message headers, then
//! `opencdc.collection` (the topic), `kafka.partition`, `kafka.offset`,
//! `opencdc.createdAt` (the message timestamp, in nanoseconds), `opencdc.readAt` and
//! `conduit.source.connector.id`.
//!
//! **Positions** are Conduit's JSON: `{"groupID":"g","topic":"t","partition":0,"offset":42}`.
//! Order is kept per partition (a batch may mix partitions).
//!
//! **Guarantee.** Offsets are committed to the group only for acked records: the
//! engine acks after the position store commit, and each ack moves the partition's
//! offset to one past the acked message; commits go every `commitOffsetsSize` acked
//! records or `commitOffsetsDelay`, whichever is first, and at teardown. A crash
//! re-reads at most what was acked since the last commit (plus what was in flight),
//! never skips. After a restart, records of the resume position's partition at or
//! before it are skipped. When partitions are revoked by a rebalance, what was acked of
//! them is committed at once and later acks of them are not committed (the new owner
//! reads them again); assigned partitions resume from the committed offset.
//!
//! **Lag.** Every second (with a [`LagReport`](funnel_core::LagReport)) the source
//! reports, per partition it owns, the high watermark minus the next offset the engine
//! is to read (see the `lag` module).
//!
//! # Destination
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `topic` | `{{ index .Metadata "opencdc.collection" }}` | A topic, or a Go template rendered per record. |
//! | `acks` | `all` | `none`, `one` or `all`; `all` makes the producer idempotent. |
//! | `compression` | `snappy` | `none`, `gzip`, `snappy`, `lz4` or `zstd`. |
//! | `batchBytes` | `1000012` | Largest message and message batch, in bytes. |
//! | `deliveryTimeout` | `0` (librdkafka's 5 minutes) | How long a message may take to be delivered. |
//!
//! The record key is the message key (raw bytes; a structured key as JSON), the
//! metadata become headers, and the value is the record in `sdk.record.format`
//! (`opencdc/json` by default, or another [`format`](crate::format)). A record is acked after its delivery report says the broker has
//! it. A record the broker or the client refuses (too large, unknown topic, invalid)
//! is nacked with the reason; a delivery that fails otherwise (timeout, broker gone)
//! fails the destination, so the pipeline restarts and writes again what was not acked.

mod config;
mod destination;
mod lag;
mod position;
mod source;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use funnel_core::ConnectorError;
use funnel_core::component::{Build, Component};
use funnel_core::typed::SettingsStruct;
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

pub use config::{
    Acks, BatchBytes, Compression, DEFAULT_CLIENT_ID, KafkaCommon, KafkaCommonSettings,
    KafkaDestinationConfig, KafkaDestinationSettings, KafkaSourceConfig, KafkaSourceSettings,
    SaslMechanism, Servers, TopicName, Topics, validate_destination, validate_source,
};
pub use destination::KafkaDestination;
pub use position::KafkaPosition;
pub use source::{KafkaSource, METADATA_OFFSET, METADATA_PARTITION};

/// The Kafka client library the connectors use, for tools and tests that talk to the
/// cluster directly.
pub use rdkafka;

/// How long `open` and the connection checks wait for the cluster's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// At most how many queued events (error events, log lines) [`deliver_events`] hands
/// to a consumer's context.
const QUEUED_EVENTS: usize = 4096;

/// The last error librdkafka reported about a connection (a TLS handshake or a SASL
/// authentication that failed, say), kept by a client's context: a request that only
/// fails with "timed out" is reported with it.
///
/// A refusal (TLS or authentication) is kept apart from other connection errors and
/// preferred to them: a client tries every address of a name in turn, and a
/// "connection refused" of one it does not listen on (`::1` for `localhost`, say)
/// must not hide the certificate the other refused.
#[derive(Default)]
pub(crate) struct LastError(Mutex<Errors>);

#[derive(Default)]
struct Errors {
    refusal: Option<String>,
    last: Option<String>,
}

impl LastError {
    /// Keeps `error` with librdkafka's `reason`, unless it only says that every broker
    /// is down: that follows the error that says why, which is kept.
    pub(crate) fn set(&self, error: &KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            return;
        }
        let text = if reason.is_empty() {
            error.to_string()
        } else {
            reason.to_owned()
        };
        let refusal = matches!(
            code,
            Some(
                RDKafkaErrorCode::SSL
                    | RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
            )
        );
        let mut errors = crate::util::lock(&self.0);
        if refusal {
            errors.refusal = Some(text);
        } else {
            errors.last = Some(text);
        }
    }

    fn get(&self) -> Option<String> {
        let errors = crate::util::lock(&self.0);
        errors.refusal.clone().or_else(|| errors.last.clone())
    }
}

/// A client context that keeps the [`LastError`] of its connections.
pub(crate) trait Reasons: ClientContext {
    /// The last connection error.
    fn last_error(&self) -> &LastError;
}

/// The context of the clients that only check the settings (the registry's checks).
#[derive(Default)]
pub(crate) struct Check(LastError);

impl ClientContext for Check {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.set(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for Check {}

impl Reasons for Check {
    fn last_error(&self) -> &LastError {
        &self.0
    }
}

/// Makes a client of `common`'s settings that only checks them, and runs `check` with
/// it, what hands its queued events to its context ([`deliver_events`]) and `who` (the
/// connector, for messages) on a blocking thread: librdkafka's metadata requests block.
async fn with_check_client(
    common: &KafkaCommon,
    who: String,
    check: impl FnOnce(&Client<Check>, &dyn Fn(), &str) -> Result<(), ConnectorError> + Send + 'static,
) -> Result<(), ConnectorError> {
    let client_config = common.client_config();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer<Check> = client_config
            .create_with_context(Check::default())
            .map_err(|e| client_error(&who, &e))?;
        check(client.client(), &|| deliver_events(&client), &who)
    })
    .await
    .map_err(|e| ConnectorError::internal(e.to_string()))?
}

/// A client could not be made from the settings: the error names the setting when
/// librdkafka names its own key for it (a certificate that is not PEM, say).
pub(crate) fn client_error(who: &str, error: &KafkaError) -> ConnectorError {
    let text = error.to_string();
    let setting = [
        ("ssl.ca", "caCert"),
        ("ssl.certificate", "clientCert"),
        ("ssl.key", "clientKey"),
        ("sasl.", "saslMechanism, saslUsername, saslPassword"),
    ]
    .into_iter()
    .find(|(key, _)| text.contains(key))
    .map(|(_, setting)| format!(" (setting `{setting}`)"))
    .unwrap_or_default();
    ConnectorError::config(format!("{who}: {text}{setting}"))
}

/// Hands the events waiting in `consumer`'s queue (librdkafka's error events and log
/// lines) to its context. They wait there until the consumer is polled, and nothing
/// polls it while `open` waits for the metadata: without this, a refused TLS handshake
/// would never reach the [`LastError`]. Call it before the consumer subscribes (a poll
/// would take its messages).
pub(crate) fn deliver_events<C: ConsumerContext>(consumer: &BaseConsumer<C>) {
    // A zero-timeout poll handles one event at most and answers `None` both for an
    // empty queue and for an event it handled itself (a log line), so the loop cannot
    // stop at the first `None`; polling an empty queue costs microseconds.
    for _ in 0..QUEUED_EVENTS {
        let _ = consumer.poll(Duration::ZERO);
    }
}

/// Asks the cluster for its metadata: `Err` naming the servers when they cannot be
/// reached (or refuse the credentials). `deliver` hands the client's queued events to
/// its context (see [`deliver_events`]) before the error is made.
pub(crate) fn check_reachable<C: Reasons>(
    client: &Client<C>,
    deliver: &dyn Fn(),
    who: &str,
) -> Result<(), ConnectorError> {
    client
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map(drop)
        .map_err(|e| unreachable(client, deliver, who, &e))
}

fn unreachable<C: Reasons>(
    client: &Client<C>,
    deliver: &dyn Fn(),
    who: &str,
    error: &KafkaError,
) -> ConnectorError {
    deliver();
    let last = client.context().last_error().get();
    let reason = last
        .as_deref()
        .map(|r| format!("; the last connection error: {r}{}", hint(r)))
        .unwrap_or_default();
    ConnectorError::transient(format!(
        "{who}: cannot get the cluster's metadata from the servers within {}s: {error}{reason} \
         (check `servers`, TLS and SASL settings, and that the brokers are up)",
        METADATA_TIMEOUT.as_secs()
    ))
}

/// The settings to look at for a connection error of librdkafka's.
fn hint(reason: &str) -> &'static str {
    if reason.contains("certificate verify failed") {
        " (the brokers' certificate is not signed by a CA the client trusts: set `caCert` \
         to the CA that signed it, or `insecureSkipVerify` for testing)"
    } else {
        ""
    }
}

/// Checks that the servers answer and that every one of `topics` exists; `deliver`
/// as for [`check_reachable`].
pub(crate) fn check_topics<C: Reasons>(
    client: &Client<C>,
    deliver: &dyn Fn(),
    who: &str,
    topics: &[String],
) -> Result<(), ConnectorError> {
    let metadata = client
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|e| unreachable(client, deliver, who, &e))?;
    let known: Vec<&str> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name())
        .collect();
    let missing: Vec<&str> = topics
        .iter()
        .map(String::as_str)
        .filter(|t| !known.contains(t))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ConnectorError::config(format!(
            "{who}: topic {} does not exist on the cluster (setting `topics`; create it, \
             the source does not)",
            missing.join(", ")
        )))
    }
}

/// Creates `topic` with `partitions` partitions (replication factor 1) on the cluster
/// at `servers` (comma list); a topic that already exists is left as it is.
///
/// # Errors
///
/// When the cluster cannot be reached or refuses the topic.
pub async fn create_topic(
    servers: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), ConnectorError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let who = format!("creating kafka topic {topic}");
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .map_err(|e| ConnectorError::config(format!("{who}: {e}")))?;
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .map_err(|e| ConnectorError::transient(format!("{who}: {e}")))?;
    for result in results {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(ConnectorError::transient(format!("{who}: {code}")));
            }
        }
    }
    Ok(())
}

/// The kafka source in the registry: its check reaches the servers and finds the
/// topics.
pub const SOURCE: Component = Component::new(
    "kafka",
    "Reads Kafka topics as a consumer group member; offsets are committed after acks.",
    &[
        KafkaCommonSettings::SPEC,
        KafkaSourceSettings::SPEC,
        crate::SDK_SOURCE_SETTINGS,
    ],
    Build::Source(|id, settings, resume| {
        let config = validate_source(settings)?;
        Ok(Arc::new(KafkaSource::new(id, config, resume)))
    }),
)
.with_check(|id, settings| {
    crate::checked(id, validate_source(&settings), |config, id| async move {
        let topics = config.topics;
        with_check_client(
            &config.common,
            format!("kafka source {id}"),
            move |client, deliver, who| check_topics(client, deliver, who, &topics),
        )
        .await
    })
});

/// The kafka destination in the registry: its check reaches the servers.
pub const DESTINATION: Component = Component::new(
    "kafka",
    "Writes records to Kafka topics with an idempotent producer; acks after delivery.",
    &[
        KafkaCommonSettings::SPEC,
        KafkaDestinationSettings::SPEC,
        crate::SDK_DESTINATION_SETTINGS,
    ],
    Build::Destination(|id, settings| {
        let config = validate_destination(settings)?;
        crate::formatted(settings, |format| KafkaDestination::new(id, config, format))
    }),
)
.with_check(|id, settings| {
    crate::checked(
        id,
        validate_destination(&settings),
        |config, id| async move {
            with_check_client(
                &config.common,
                format!("kafka destination {id}"),
                check_reachable,
            )
            .await
        },
    )
});
