//! The `rabbitmq` source and destination (cargo feature `rabbitmq`, on by default):
//! AMQP 0-9-1 with [lapin](https://docs.rs/lapin), setting for setting compatible with
//! Conduit's `conduit-connector-rabbitmq`. The user documentation is the rabbitmq
//! section of `docs/connectors.md`.
//!
//! # Settings
//!
//! Both halves: `url` (required; `amqp://user:password@host:5672/vhost`), `queue.name`
//! (required), `queue.durable` (`true`), `queue.autoDelete`, `queue.exclusive`,
//! `queue.noWait` (`false`), `queue.declare` (`true`; Funnel extension: `false` only
//! checks that the queue exists), `tls.enabled` (`false`), `tls.caCert`,
//! `tls.clientCert`, `tls.clientKey` (PEM paths).
//!
//! Source: `consumer.name`, `consumer.autoAck` (`false`), `consumer.exclusive`,
//! `consumer.noLocal`, `consumer.noWait` (`false`), `consumer.prefetchCount` (`0`: the
//! engine's credit window, 2048 + `sdk.batch.size`; Funnel extension).
//!
//! Destination: `exchange.name` (empty: the default exchange), `exchange.type`
//! (`direct`), `exchange.durable` (`true`), `exchange.autoDelete`,
//! `exchange.internal`, `exchange.noWait` (`false`), `routingKey` (a Go template;
//! empty: the queue name), `delivery.contentType` (`application/json`),
//! `delivery.contentEncoding`, `delivery.deliveryMode` (`2`, persistent),
//! `delivery.priority` (`0`), `delivery.correlationID`, `delivery.replyTo`,
//! `delivery.expiration`, `delivery.messageTypeName`, `delivery.userID`,
//! `delivery.appID`, `delivery.mandatory` (`false`), `delivery.immediate` (only
//! `false`: RabbitMQ does not implement it).
//!
//! # Records
//!
//! A delivery becomes a `create` record: `payload.after` is the body (raw), the key is
//! the `message-id` property when there is one, and the metadata holds the message's
//! headers under their own names, `rabbitmq.*` for the properties and delivery fields
//! (Conduit's names: `rabbitmq.contentType`, `rabbitmq.deliveryTag`,
//! `rabbitmq.redelivered`, `rabbitmq.exchange`, `rabbitmq.routingKey`, ...),
//! `opencdc.collection` (the queue), `opencdc.createdAt` (from the `timestamp`
//! property), `opencdc.readAt` and `conduit.source.connector.id`.
//!
//! The destination publishes each record as its OpenCDC JSON (Conduit's default
//! `sdk.record.format`, or another [`format`](crate::format)), with the record's metadata as headers, its position as the
//! `message-id` and `opencdc.createdAt` as the `timestamp`.
//!
//! # Positions and guarantee
//!
//! A position is `amqp:<session>:<delivery tag>`: the broker, not the position, says
//! where to resume, since it keeps every message that was not acknowledged. The source
//! consumes with manual acknowledgements and a prefetch window; [`Source::ack`], which
//! the engine calls after the position is committed, sends one `basic.ack` with
//! `multiple` for the last position, so the broker forgets only released messages.
//! After a crash or a restart the broker delivers every unacknowledged message again,
//! in queue order, with `rabbitmq.redelivered = true`: at least once, never a gap. With
//! `consumer.autoAck` the broker forgets a message once it is sent: at most once.
//!
//! The destination's channel is in confirm mode: a record is acked after the broker's
//! `basic.ack` for its message (a persistent message on a durable queue is then on
//! disk). A `basic.nack`, or a message returned under `delivery.mandatory`, nacks the
//! record. A lost connection fails the writes and acks as transient errors: the
//! pipeline restarts and writes again what was not confirmed (at least once).
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
    AmqpUrl, DeliveryMode, ExchangeType, Prefetch, Priority, RabbitmqConnectionSettings,
    RabbitmqConsumerSettings, RabbitmqDestinationConfig, RabbitmqPublishSettings,
    RabbitmqQueueSettings, RabbitmqSourceConfig, RoutingKey, validate_destination, validate_source,
};
pub use destination::RabbitmqDestination;
pub use source::RabbitmqSource;

/// Connects, and with `queue.declare` false checks that the queue exists.
async fn check(
    who: &str,
    connection: &config::Connection,
    queue: &RabbitmqQueueSettings,
) -> Result<(), funnel_core::ConnectorError> {
    let server = connection.url.address();
    let conn = conn::connect(connection, who).await?;
    if !queue.declare {
        let channel = conn::channel(&conn, who, &server).await?;
        conn::declare_queue(&channel, queue, who, &server).await?;
    }
    let _ = conn.close(200, "check".into()).await;
    Ok(())
}

/// The rabbitmq source in the registry: its check connects to the server.
pub const SOURCE: Component = Component::new(
    "rabbitmq",
    "Consumes a RabbitMQ queue (AMQP 0-9-1), acknowledging messages after they are delivered.",
    &[
        RabbitmqConnectionSettings::SPEC,
        crate::tls::TlsFileSettings::SPEC,
        RabbitmqQueueSettings::SPEC,
        RabbitmqConsumerSettings::SPEC,
        crate::SDK_SOURCE_SETTINGS,
    ],
    Build::Source(|id, settings, _resume| {
        let config = validate_source(settings)?;
        Ok(Arc::new(RabbitmqSource::new(id, config)))
    }),
)
.with_check(|id, settings| {
    crate::checked(id, validate_source(&settings), |config, id| async move {
        check(
            &format!("rabbitmq source {id}"),
            &config.connection,
            &config.queue,
        )
        .await
    })
});

/// The rabbitmq destination in the registry: its check connects to the server.
pub const DESTINATION: Component = Component::new(
    "rabbitmq",
    "Publishes records to RabbitMQ (AMQP 0-9-1) with publisher confirms.",
    &[
        RabbitmqConnectionSettings::SPEC,
        crate::tls::TlsFileSettings::SPEC,
        RabbitmqQueueSettings::SPEC,
        RabbitmqPublishSettings::SPEC,
        crate::SDK_DESTINATION_SETTINGS,
    ],
    Build::Destination(|id, settings| {
        let config = validate_destination(settings)?;
        crate::formatted(settings, |format| {
            RabbitmqDestination::new(id, config, format)
        })
    }),
)
.with_check(|id, settings| {
    crate::checked(
        id,
        validate_destination(&settings),
        |config, id| async move {
            check(
                &format!("rabbitmq destination {id}"),
                &config.connection,
                &config.queue,
            )
            .await
        },
    )
});
