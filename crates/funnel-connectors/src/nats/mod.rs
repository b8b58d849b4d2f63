//! The `nats` source and destination for NATS JetStream (cargo feature `nats`, on by
//! default), with the settings of Conduit's `conduit-connector-nats-jetstream`. The
//! user documentation is the nats section of `docs/connectors.md`.
//!
//! # Connection settings (source and destination)
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `urls` | — (required) | Server URLs, comma separated; `nats://user:password@host:4222` or `nats://token@host:4222` for credentials. |
//! | `connectionName` | the connector ID | Name the server shows for the connection. |
//! | `nkeyPath` | — | NKey seed file. |
//! | `credentialsFilePath` | — | Credentials file (JWT and seed). |
//! | `tls.clientCertPath`, `tls.clientPrivateKeyPath` | — | TLS client certificate and key (PEM), both or neither. |
//! | `tls.rootCACertPath` | — | CA to verify the server with (PEM); requires TLS. |
//! | `maxReconnects` | `5` | Reconnect attempts before giving up; negative: forever. |
//! | `reconnectWait` | `5s` | Longest wait between reconnect attempts (the first waits 100 ms, then doubling). |
//!
//! # Source
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `mode` | `jetstream` | `jetstream`, or `pubsub`: a core-NATS subscription, at most once ([`NatsPubSubSource`]). |
//! | `stream` | — (required with `jetstream`) | Stream to read. |
//! | `subject` | — (required) | Filter subject of the consumer (wildcards allowed). |
//! | `durable` | `funnel-<connector ID>` | Durable pull consumer's name. |
//! | `deliverPolicy` | `all` | Where a consumer starts without a saved position: `all` or `new`. |
//! | `ackPolicy` | `explicit` | `explicit` (each message), `all` (the last of each released prefix), `none`. |
//! | `bufferSize` | `1024` | Messages pulled ahead (at least 64); the consumer's `max_ack_pending` is this plus 4096. |
//! | `deliverSubject` | — | Accepted for compatibility; a pull consumer has none. |
//!
//! **Records.** `payload.after`: the message body (raw). Key: the `Nats-Msg-Id` header,
//! when there is one. Metadata: each header (its first value), `opencdc.collection`
//! (the subject), `nats.stream`, `nats.sequence` (the stream sequence),
//! `opencdc.createdAt` (when the server stored the message, Unix nanoseconds),
//! `opencdc.readAt` (shared by the records of one batch) and
//! `conduit.source.connector.id`; these win over headers of the same names.
//!
//! **Position**: the stream sequence, in decimal. On open, the durable consumer is
//! made again to start right after the saved position (a consumer's start cannot be
//! changed); without a saved position an existing consumer restarts after its ack
//! floor, and a new one follows `deliverPolicy`. So a restart reads exactly what was
//! not committed: nothing is skipped, nothing committed comes twice.
//!
//! **Guarantee.** Messages are acked to the server in [`Source::ack`], which the engine
//! calls after the position is committed, so the consumer's ack floor never passes a
//! message Funnel has not delivered. The last ack of each call waits for the server's
//! reply, so once `ack` returns every ack it sent is on the consumer's ack floor (a
//! graceful stop leaves nothing to be sent again). `bufferSize` plus room for the engine's records in
//! flight (4096) bound the messages read and not acked (`max_ack_pending`), so the
//! server stops delivering when the pipeline is behind. A message the server delivers
//! again in the same run (its ack wait of 60 s passed while the pipeline held it) is
//! skipped by its sequence. On connection loss
//! the client reconnects with backoff and pulling goes on; when the consumer is gone
//! it is made again after the last message read.
//!
//! # Destination
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `mode` | `jetstream` | `jetstream`, or `pubsub`: core-NATS publishes acked once flushed, at most once ([`NatsPubSubDestination`]). |
//! | `subject` | `{{ index .Metadata "opencdc.collection" }}` | Subject, or a Go template rendered per record. |
//! | `retryAttempts` | `3` | Publishes again after a missing publish ack (10 s) or an error reply, this often. |
//! | `retryWait` | `5s` | Wait before publishing again. |
//!
//! Each record is published as its OpenCDC JSON (Conduit's default
//! `sdk.record.format`, or another [`format`](crate::format)), its
//! metadata as headers (keys that are not valid header names, and `Nats-*` keys, are
//! left out) and `Nats-Msg-Id` = `<connector ID>/<position>`, so the stream stores a
//! record written again after a restart once (within the stream's duplicate window,
//! 2 minutes by default). A record is acked after its JetStream publish ack: the
//! stream has stored it. Acks come in write order; when a publish stays unconfirmed
//! after the retries the destination fails and the pipeline restarts. A record whose
//! subject template fails is nacked. A literal subject must belong to a stream: `open`
//! checks it.
//!
//! [`Source::ack`]: funnel_core::Source::ack

mod config;
mod conn;
mod core;
mod destination;
mod source;

use std::sync::Arc;

use funnel_core::component::{Build, Component};
use funnel_core::typed::SettingsStruct;

pub use config::{
    AckPolicy, BufferSize, DeliverPolicy, Mode, NatsConnection, NatsConnectionSettings,
    NatsDestinationConfig, NatsDestinationSettings, NatsSourceConfig, NatsSourceSettings,
    SubjectTemplate, Urls, validate_destination, validate_source,
};
pub use core::{NatsPubSubDestination, NatsPubSubSource};
pub use destination::NatsDestination;
pub use source::NatsSource;

/// Metadata key holding the stream sequence of a message.
pub const METADATA_SEQUENCE: &str = "nats.sequence";

/// Metadata key holding the stream a message was read from.
pub const METADATA_STREAM: &str = "nats.stream";

/// The NATS JetStream source in the registry: its check connects and opens the
/// stream.
pub const SOURCE: Component = Component::new(
    "nats",
    "Reads a NATS JetStream stream with a durable pull consumer, acking after delivery.",
    &[
        NatsConnectionSettings::SPEC,
        NatsSourceSettings::SPEC,
        crate::SDK_SOURCE_SETTINGS,
    ],
    Build::Source(|id, settings, resume| {
        let config = validate_source(settings)?;
        Ok(match config.mode {
            Mode::JetStream => Arc::new(NatsSource::new(id, config, resume)),
            Mode::PubSub => Arc::new(NatsPubSubSource::new(id, config)),
        })
    }),
)
.with_check(|id, settings| {
    let validated = validate_source(&settings);
    crate::checked(id, validated, |config, id| async move {
        let who = format!("nats source {id}");
        let client = conn::connect(&config.connection, &who, &id).await?;
        if config.mode == Mode::PubSub {
            return Ok(());
        }
        async_nats::jetstream::new(client)
            .get_stream(&config.stream)
            .await
            .map(drop)
            .map_err(|e| {
                funnel_core::ConnectorError::config(format!(
                    "{who}: cannot open stream {} on {}: {e}",
                    config.stream,
                    conn::servers(&config.connection)
                ))
            })
    })
});

/// The NATS JetStream destination in the registry: its check connects.
pub const DESTINATION: Component = Component::new(
    "nats",
    "Publishes records to NATS JetStream, acking each after its publish ack.",
    &[
        NatsConnectionSettings::SPEC,
        NatsDestinationSettings::SPEC,
        crate::SDK_DESTINATION_SETTINGS,
    ],
    Build::Destination(|id, settings| {
        let config = validate_destination(settings)?;
        let format = crate::RecordFormat::from_settings(settings)?;
        let destination: Arc<dyn funnel_core::Destination> = match config.mode {
            Mode::JetStream => Arc::new(NatsDestination::new(id, config, format)),
            Mode::PubSub => Arc::new(NatsPubSubDestination::new(id, config, format)),
        };
        Ok(crate::paced(settings, destination))
    }),
)
.with_check(|id, settings| {
    let validated = validate_destination(&settings);
    crate::checked(id, validated, |config, id| async move {
        conn::connect(&config.connection, &format!("nats destination {id}"), &id)
            .await
            .map(drop)
    })
});
