//! RabbitMQ settings: parsing and validation (no I/O).

use funnel_core::typed::FromSetting;

use crate::settings::{both, parse_destination_with, parse_source_with, validated};
use crate::tls::{TlsFileSettings, TlsFiles};
use crate::{Settings, SettingsError};

/// An AMQP URL (`amqp://user:password@host:5672/vhost`), checked for its scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpUrl(pub String);

impl FromSetting for AmqpUrl {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        match raw.parse::<lapin::uri::AMQPUri>() {
            Ok(_) => Ok(Self(raw.to_owned())),
            Err(e) => Err(format!(
                "not an AMQP URL ({e}); use amqp://user:password@host:5672/vhost"
            )),
        }
    }
}

impl AmqpUrl {
    /// `host:port` of the URL, for messages (never the credentials).
    pub fn address(&self) -> String {
        match self.0.parse::<lapin::uri::AMQPUri>() {
            Ok(uri) => format!("{}:{}", uri.authority.host, uri.authority.port),
            Err(_) => "?".to_owned(),
        }
    }

    /// The URL for a connection: `amqps` when TLS is on.
    pub(crate) fn for_connection(&self, tls: bool) -> String {
        match self.0.strip_prefix("amqp://") {
            Some(rest) if tls => format!("amqps://{rest}"),
            _ => self.0.clone(),
        }
    }
}

/// A routing key: a fixed text, or a Go template rendered on each record.
#[derive(Clone, Debug)]
pub struct RoutingKey(pub funnel_template::Template);

impl PartialEq for RoutingKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.source() == other.0.source()
    }
}

impl FromSetting for RoutingKey {
    fn from_setting(raw: &str) -> Result<Self, String> {
        funnel_template::Template::parse(raw)
            .map(Self)
            .map_err(|e| format!("{raw:?}: the template does not parse: {e}"))
    }
}

/// `delivery.deliveryMode`: 1 (transient) or 2 (persistent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryMode(pub u8);

impl FromSetting for DeliveryMode {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Int;

    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "1" => Ok(Self(1)),
            "2" => Ok(Self(2)),
            other => Err(format!("{other:?} must be 1 (transient) or 2 (persistent)")),
        }
    }
}

/// `delivery.priority`: 0 to 9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Priority(pub u8);

impl FromSetting for Priority {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Int;

    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw.trim().parse::<u8>() {
            Ok(n) if n <= 9 => Ok(Self(n)),
            _ => Err(format!("{raw:?} must be a priority from 0 to 9")),
        }
    }
}

/// `consumer.prefetchCount`: at most 65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefetch(pub u16);

impl FromSetting for Prefetch {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Int;

    fn from_setting(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse::<u16>()
            .map(Self)
            .map_err(|_| format!("{raw:?} must be a count from 0 to 65535"))
    }
}

/// `exchange.type`: direct, fanout, topic or headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeType(pub String);

impl FromSetting for ExchangeType {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            kind @ ("direct" | "fanout" | "topic" | "headers") => Ok(Self(kind.to_owned())),
            other => Err(format!(
                "{other:?} value must be one of: direct, fanout, topic, headers"
            )),
        }
    }
}

funnel_core::settings! {
    /// Connection and TLS settings shared by the source and the destination.
    pub struct RabbitmqConnectionSettings {
        /// The RabbitMQ server's URL: amqp://user:password@host:5672/vhost (the
        /// credentials and the virtual host, percent-encoded, are part of it).
        pub url: AmqpUrl = "url",
    }
}

funnel_core::settings! {
    /// How the queue is declared (source and destination).
    pub struct RabbitmqQueueSettings {
        /// Name of the queue to consume from / publish to.
        pub name: String = "queue.name",
        /// Whether the queue survives a broker restart.
        pub durable: bool = "queue.durable" (default "true"),
        /// Whether the queue is deleted when its last consumer leaves.
        pub auto_delete: bool = "queue.autoDelete" (default "false"),
        /// Whether the queue belongs to this connection only.
        pub exclusive: bool = "queue.exclusive" (default "false"),
        /// Declare the queue without waiting for the server's answer.
        pub no_wait: bool = "queue.noWait" (default "false"),
        /// Funnel extension: declare the queue (create it when missing). false: only
        /// check that it exists, and fail naming it when it does not.
        pub declare: bool = "queue.declare" (default "true"),
    }
}

funnel_core::settings! {
    /// The source's consumer.
    pub struct RabbitmqConsumerSettings {
        /// The consumer tag (empty: the server makes one).
        pub name: Option<String> = "consumer.name",
        /// Let the server count messages as acknowledged once delivered (at most once:
        /// a crash loses what was delivered and not yet written).
        pub auto_ack: bool = "consumer.autoAck" (default "false"),
        /// Ask to be the queue's only consumer.
        pub exclusive: bool = "consumer.exclusive" (default "false"),
        /// Do not receive messages published on this connection.
        pub no_local: bool = "consumer.noLocal" (default "false"),
        /// Start the consumer without waiting for the server's answer.
        pub no_wait: bool = "consumer.noWait" (default "false"),
        /// Funnel extension: unacknowledged messages the server sends ahead (basic.qos
        /// prefetch). 0: the engine's credit window, 2048 records plus one batch.
        pub prefetch: Prefetch = "consumer.prefetchCount" (default "0"),
    }
}

funnel_core::settings! {
    /// The destination's exchange, routing key and message properties.
    pub struct RabbitmqPublishSettings {
        /// Exchange to publish to (empty: the default exchange, which routes by queue
        /// name). When set, it is declared and the queue bound to it with the routing key.
        pub exchange: Option<String> = "exchange.name",
        /// Type of the exchange: direct, fanout, topic or headers.
        pub exchange_type: ExchangeType = "exchange.type" (default "direct"),
        /// Whether the exchange survives a broker restart.
        pub exchange_durable: bool = "exchange.durable" (default "true"),
        /// Whether the exchange is deleted when its last queue is unbound.
        pub exchange_auto_delete: bool = "exchange.autoDelete" (default "false"),
        /// Whether the exchange is internal (only other exchanges publish to it).
        pub exchange_internal: bool = "exchange.internal" (default "false"),
        /// Declare the exchange without waiting for the server's answer.
        pub exchange_no_wait: bool = "exchange.noWait" (default "false"),
        /// Routing key: a text or a Go template rendered per record (empty: the queue
        /// name).
        pub routing_key: Option<RoutingKey> = "routingKey",
        /// MIME type of the message body.
        pub content_type: String = "delivery.contentType" (default "application/json"),
        /// Encoding of the message body.
        pub content_encoding: Option<String> = "delivery.contentEncoding",
        /// 1 (transient) or 2 (persistent: written to disk before it is confirmed).
        pub delivery_mode: DeliveryMode = "delivery.deliveryMode" (default "2"),
        /// Message priority, 0 to 9.
        pub priority: Priority = "delivery.priority" (default "0"),
        /// Correlation ID property.
        pub correlation_id: Option<String> = "delivery.correlationID",
        /// Reply-to property.
        pub reply_to: Option<String> = "delivery.replyTo",
        /// Expiration property (milliseconds, as text).
        pub expiration: Option<String> = "delivery.expiration",
        /// Message type property.
        pub message_type: Option<String> = "delivery.messageTypeName",
        /// User ID property (RabbitMQ checks it against the connection's user).
        pub user_id: Option<String> = "delivery.userID",
        /// Application ID property.
        pub app_id: Option<String> = "delivery.appID",
        /// Ask the server to return a message no queue takes; it is then nacked.
        pub mandatory: bool = "delivery.mandatory" (default "false"),
        /// AMQP's immediate flag; RabbitMQ does not implement it, so only false is valid.
        pub immediate: bool = "delivery.immediate" (default "false"),
    }
}

/// Where to connect.
#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    /// `url`.
    pub url: AmqpUrl,
    /// `tls.*`, read at open.
    pub tls: TlsFiles,
}

/// The validated settings of a RabbitMQ source.
#[derive(Clone, Debug, PartialEq)]
pub struct RabbitmqSourceConfig {
    /// Server and TLS.
    pub connection: Connection,
    /// The queue.
    pub queue: RabbitmqQueueSettings,
    /// The consumer.
    pub consumer: RabbitmqConsumerSettings,
    /// Records per read at most (`sdk.batch.size`).
    pub batch_size: usize,
}

impl RabbitmqSourceConfig {
    /// The basic.qos prefetch count: the setting, or the engine's credit window.
    pub fn prefetch(&self) -> u16 {
        match self.consumer.prefetch.0 {
            0 => u16::try_from(2048 + self.batch_size).unwrap_or(u16::MAX),
            n => n,
        }
    }
}

/// The validated settings of a RabbitMQ destination.
#[derive(Clone, Debug, PartialEq)]
pub struct RabbitmqDestinationConfig {
    /// Server and TLS.
    pub connection: Connection,
    /// The queue.
    pub queue: RabbitmqQueueSettings,
    /// Exchange, routing key and properties.
    pub publish: RabbitmqPublishSettings,
}

fn connection(
    own: RabbitmqConnectionSettings,
    tls: TlsFileSettings,
    errors: &mut Vec<SettingsError>,
) -> Connection {
    Connection {
        url: own.url,
        tls: tls.validate(errors),
    }
}

/// Parses and validates source settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_source(settings: &Settings) -> Result<RabbitmqSourceConfig, Vec<SettingsError>> {
    let (((conn, tls), (queue, consumer)), sdk) = parse_source_with(settings, |reader| {
        both::<RabbitmqConnectionSettings, TlsFileSettings>(reader)
            .zip(both::<RabbitmqQueueSettings, RabbitmqConsumerSettings>(
                reader,
            ))
    })?;
    validated(|errors| {
        let connection = connection(conn, tls, errors);
        RabbitmqSourceConfig {
            connection,
            queue,
            consumer,
            batch_size: sdk.batch_size,
        }
    })
}

/// Parses and validates destination settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_destination(
    settings: &Settings,
) -> Result<RabbitmqDestinationConfig, Vec<SettingsError>> {
    let ((conn, tls), (queue, publish)) = parse_destination_with(settings, |reader| {
        both::<RabbitmqConnectionSettings, TlsFileSettings>(reader)
            .zip(both::<RabbitmqQueueSettings, RabbitmqPublishSettings>(
                reader,
            ))
    })?;
    validated(|errors| {
        let connection = connection(conn, tls, errors);
        if publish.immediate {
            errors.push(SettingsError::new(
                "delivery.immediate",
                "RabbitMQ does not implement the immediate flag; leave it false",
            ));
        }
        RabbitmqDestinationConfig {
            connection,
            queue,
            publish,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use funnel_core::settings_of as settings;

    const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    #[test]
    fn defaults_follow_conduit_and_the_prefetch_follows_the_credit_window() {
        let c = validate_source(&settings(&[("url", URL), ("queue.name", "q")])).unwrap();
        assert!(c.queue.durable && c.queue.declare && !c.queue.exclusive);
        assert!(!c.consumer.auto_ack);
        assert_eq!(c.batch_size, 1000);
        assert_eq!(c.prefetch(), 3048);
        assert_eq!(c.connection.url.address(), "127.0.0.1:5672");
        let d = validate_destination(&settings(&[("url", URL), ("queue.name", "q")])).unwrap();
        assert_eq!(d.publish.delivery_mode, DeliveryMode(2));
        assert_eq!(d.publish.content_type, "application/json");
        assert_eq!(d.publish.exchange_type, ExchangeType("direct".into()));
        assert_eq!(d.publish.routing_key, None);
        let c = validate_source(&settings(&[
            ("url", URL),
            ("queue.name", "q"),
            ("consumer.prefetchCount", "50"),
        ]))
        .unwrap();
        assert_eq!(c.prefetch(), 50);
    }

    #[test]
    fn every_bad_setting_is_reported_with_its_key() {
        let errors = validate_destination(&settings(&[
            ("url", "http://x"),
            ("delivery.deliveryMode", "3"),
            ("delivery.priority", "10"),
            ("exchange.type", "x-delayed"),
            ("routingKey", "{{ .Metadata"),
            ("surprise", "1"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(
            keys,
            [
                "url",
                "queue.name",
                "exchange.type",
                "routingKey",
                "delivery.deliveryMode",
                "delivery.priority",
                "surprise"
            ]
        );
    }

    #[test]
    fn immediate_and_a_lone_client_certificate_are_refused() {
        let errors = validate_destination(&settings(&[
            ("url", URL),
            ("queue.name", "q"),
            ("delivery.immediate", "true"),
            ("tls.clientCert", "/tmp/c.pem"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(keys, ["tls.clientKey", "delivery.immediate"]);
    }

    #[test]
    fn tls_turns_the_scheme_to_amqps() {
        let url = AmqpUrl::from_setting(URL).unwrap();
        assert_eq!(
            url.for_connection(true),
            "amqps://guest:guest@127.0.0.1:5672/%2f"
        );
        assert_eq!(url.for_connection(false), URL);
    }
}
