//! The `redis` source and destination: Redis Streams and pub/sub channels (cargo
//! feature `redis`, on by default), with the settings of Conduit's
//! `conduit-connector-redis`. The user documentation is the redis section of
//! `docs/connectors.md`.
//!
//! # Connection settings (source and destination)
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `redis.host` | `localhost` | Server host. |
//! | `redis.port` | `6379` | Server port. |
//! | `redis.database` | `0` | Database number. |
//! | `redis.username`, `redis.password` | — | Credentials (ACL user, or the password alone). |
//! | `mode` | `pubsub` | What `redis.key` names: `pubsub` (a channel) or `stream`. |
//! | `tls.enabled` | `false` | Funnel extension: connect with TLS (`rediss://`). |
//! | `tls.caCert` | — | Funnel extension: the CA (PEM) that signed the server's certificate; default: the system's roots. |
//! | `tls.clientCert`, `tls.clientKey` | — | Funnel extension: a client certificate and its key (PEM). |
//!
//! # Source
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `redis.key` | — (required) | Stream to read, or channel to subscribe to. |
//! | `pollingPeriod` | `1s` | Longest wait of one blocking stream read. |
//! | `stream.group` | — | Funnel extension: read as this consumer group. |
//! | `stream.consumer` | the connector ID | Funnel extension: consumer name in the group. |
//! | `stream.claimIdle` | `30s` | Funnel extension: claim entries pending this long with another consumer; `0`: never. |
//!
//! **Stream records.** Position: the entry ID. `payload.after`: the entry's fields as
//! a JSON object (raw bytes, keys sorted, as Conduit writes them); key: the stream
//! name; metadata `opencdc.collection` (the stream), `redis.id`, `opencdc.createdAt`
//! (the time in the entry ID), `opencdc.readAt`, `conduit.source.connector.id`.
//!
//! **Guarantees.** Without a group, the source reads with `XREAD` after the saved entry
//! ID: a restart reads exactly what was not committed. With `stream.group`, it reads
//! with `XREADGROUP`: first the consumer's own pending entries (delivered before and
//! never acknowledged), then new ones, and `XACK`s an entry only in [`Source::ack`],
//! after the engine committed its position; a crash between the commit and the `XACK`
//! reads those entries again (at least once). Entries pending longer than
//! `stream.claimIdle` with another consumer (one that died) are claimed with
//! `XAUTOCLAIM`. Pub/sub (`mode: pubsub`) is at most once: what is published while
//! the source is not subscribed is lost.
//!
//! # Destination
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `redis.key` | — (required) | Stream (or channel): a name or a Go template rendered per record. |
//! | `stream.maxLen` | `0` | Funnel extension: `XADD ... MAXLEN ~ n`; `0`: no trimming. |
//! | `keyvalue.valueType` | `string` | Funnel extension, `mode: keyvalue`: `string` (`SET`) or `hash` (`DEL` + `HSET`). |
//!
//! With `mode: keyvalue` (destination only) each record writes the Redis key made of
//! the `redis.key` prefix (optional) and its record key: `SET`/`HSET` for create,
//! update and snapshot, `DEL` for delete, in the same per-batch pipeline.
//!
//! Each batch is one pipeline of `XADD <key> * <fields>` (or `PUBLISH`); each record is
//! acked after its reply. The fields are those of a structured payload or of a raw
//! payload that is a JSON object; any other payload is stored under the field `data`.
//! A record the server refuses (wrong key type) or whose key template fails is nacked.
//! A write the server does not answer fails, nothing of it is acked, and the restarted
//! pipeline writes it again (at least once).
//!
//! [`Source::ack`]: funnel_core::Source::ack

mod config;
mod conn;
mod destination;
mod source;

use std::sync::Arc;

use funnel_core::component::{Build, Component};
use funnel_core::typed::SettingsStruct;

pub use config::{
    KeyTemplate, Mode, Port, RedisConnection, RedisConnectionSettings, RedisDestinationConfig,
    RedisDestinationSettings, RedisSourceConfig, RedisSourceSettings, ValueType,
    validate_destination, validate_source,
};
pub use destination::{DATA_FIELD, RedisDestination};
pub use source::RedisSource;

/// Metadata key holding the ID of a stream entry.
pub const METADATA_ID: &str = "redis.id";

/// The Redis source in the registry: its check connects.
pub const SOURCE: Component = Component::new(
    "redis",
    "Reads a Redis stream (XREAD, or a consumer group acked after delivery) or a pub/sub channel.",
    &[
        RedisConnectionSettings::SPEC,
        crate::tls::TlsFileSettings::SPEC,
        RedisSourceSettings::SPEC,
        crate::SDK_SOURCE_SETTINGS,
    ],
    Build::Source(|id, settings, resume| {
        let config = validate_source(settings)?;
        Ok(Arc::new(RedisSource::new(id, config, resume)))
    }),
)
.with_check(|id, settings| {
    crate::checked(id, validate_source(&settings), |config, id| async move {
        conn::check(&config.connection, &format!("redis source {id}")).await
    })
});

/// The Redis destination in the registry: its check connects.
pub const DESTINATION: Component = Component::new(
    "redis",
    "Adds records to a Redis stream (XADD) or publishes them on a channel, acked after the reply.",
    &[
        RedisConnectionSettings::SPEC,
        crate::tls::TlsFileSettings::SPEC,
        RedisDestinationSettings::SPEC,
        crate::SDK_DESTINATION_SETTINGS,
    ],
    Build::Destination(|id, settings| {
        let config = validate_destination(settings)?;
        Ok(crate::paced(
            settings,
            Arc::new(RedisDestination::new(id, config)),
        ))
    }),
)
.with_check(|id, settings| {
    crate::checked(
        id,
        validate_destination(&settings),
        |config, id| async move {
            conn::check(&config.connection, &format!("redis destination {id}")).await
        },
    )
});
