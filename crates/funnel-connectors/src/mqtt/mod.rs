//! The `mqtt` source and destination (cargo feature `mqtt`, on by default): MQTT 3.1.1
//! with [rumqttc](https://docs.rs/rumqttc). Conduit has no maintained MQTT connector;
//! the settings follow the conventions of the other connectors. The user
//! documentation, with what MQTT can and cannot guarantee, is the mqtt section of
//! `docs/connectors.md`.
//!
//! # Settings
//!
//! Both halves: `url` (required; `tcp://host:1883`, `mqtt://user:password@host:1883`,
//! `ssl://` or `mqtts://` for TLS), `clientId` (default `funnel-<connector id>`, and
//! `-out` for a destination), `username`, `password`, `keepAlive` (`30s`),
//! `tls.enabled` (`false`), `tls.caCert`, `tls.clientCert`, `tls.clientKey`.
//!
//! Source: `topic` (required; comma list of filters, `+` and `#` allowed), `qos` (`1`;
//! `2`; `0` is at most once), `cleanSession` (`false`: a persistent session).
//!
//! Destination: `topic` (a Go template, default `{{ index .Metadata
//! "opencdc.collection" }}`), `qos` (`1`), `retain` (`false`), `cleanSession` (`true`).
//!
//! # Records
//!
//! A message becomes a `create` record: `payload.after` is the payload (raw), no key
//! (MQTT 3.1.1 has none), metadata `opencdc.collection` (the topic), `mqtt.qos`,
//! `mqtt.retain`, `mqtt.dup`, `mqtt.packetId`, `opencdc.readAt` and
//! `conduit.source.connector.id` (MQTT 3.1.1 has neither headers nor a broker
//! timestamp). The destination publishes each record's OpenCDC JSON.
//!
//! # Positions and guarantee
//!
//! A position is `mqtt:<session>:<sequence>`; the broker's persistent session, not the
//! position, says where to resume. The source subscribes at QoS 1 with manual
//! acknowledgements: [`Source::ack`] (after the position commit) sends the PUBACKs of
//! the released messages, in order. A message not acknowledged is sent again by the
//! broker when the same client ID reconnects with `cleanSession` false (with the DUP
//! flag): at least once. What the broker keeps while Funnel is away is bounded by its
//! own limits (Mosquitto's `max_queued_messages`, default 1000: beyond it, messages
//! are dropped by the broker; `scripts/setup-services.sh` sets it to 0, no limit).
//!
//! The destination acks a record after the broker's PUBACK (QoS 1) or PUBCOMP (QoS
//! 2), in write order; a lost connection fails the acks (transient), and the restarted
//! pipeline publishes again what was not acknowledged.
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
    BrokerUrl, MqttConnectionSettings, MqttDestinationConfig, MqttPublishSettings,
    MqttSourceConfig, MqttSubscriptionSettings, Qos, TopicTemplate, Topics, validate_destination,
    validate_source,
};
pub use destination::MqttDestination;
pub use source::MqttSource;

/// Connects with a clean session and disconnects.
async fn check(
    who: &str,
    connection: &config::Connection,
) -> Result<(), funnel_core::ConnectorError> {
    let mut probe = connection.clone();
    probe.client_id = format!("{}-check", connection.client_id);
    let options = conn::options(&probe, true, who)?;
    let (client, mut events, _) = conn::connect(options, who, &connection.url.address()).await?;
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), events.poll()).await;
    Ok(())
}

/// The mqtt source in the registry: its check connects to the broker.
pub const SOURCE: Component = Component::new(
    "mqtt",
    "Subscribes to MQTT topics in a persistent session, acknowledging messages after they are delivered.",
    &[
        MqttConnectionSettings::SPEC,
        crate::tls::TlsFileSettings::SPEC,
        MqttSubscriptionSettings::SPEC,
        crate::SDK_SOURCE_SETTINGS,
    ],
    Build::Source(|id, settings, _resume| {
        let config = validate_source(id, settings)?;
        Ok(Arc::new(MqttSource::new(id, config)))
    }),
)
.with_check(|id, settings| {
    let validated = validate_source(&id, &settings);
    crate::checked(id, validated, |config, id| async move {
        check(&format!("mqtt source {id}"), &config.connection).await
    })
});

/// The mqtt destination in the registry: its check connects to the broker.
pub const DESTINATION: Component = Component::new(
    "mqtt",
    "Publishes records to an MQTT broker, acknowledged after the broker's PUBACK.",
    &[
        MqttConnectionSettings::SPEC,
        crate::tls::TlsFileSettings::SPEC,
        MqttPublishSettings::SPEC,
        crate::SDK_DESTINATION_SETTINGS,
    ],
    Build::Destination(|id, settings| {
        let config = validate_destination(id, settings)?;
        crate::formatted(settings, |format| MqttDestination::new(id, config, format))
    }),
)
.with_check(|id, settings| {
    let validated = validate_destination(&id, &settings);
    crate::checked(id, validated, |config, id| async move {
        check(&format!("mqtt destination {id}"), &config.connection).await
    })
});
