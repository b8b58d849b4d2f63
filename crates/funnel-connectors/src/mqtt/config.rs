//! MQTT settings: parsing and validation (no I/O).

use std::path::PathBuf;
use std::time::Duration;

use funnel_core::typed::{FromSetting, SettingsStruct};

use crate::settings::{both, non_empty_list, parse_destination_with, parse_source_with, validated};
use crate::tls::TlsFileSettings;
use crate::{Settings, SettingsError};

/// A broker address: `tcp://host:1883` or `mqtt://user:password@host:1883`
/// (`ssl://` / `mqtts://`: TLS, default port 8883).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The scheme asks for TLS.
    pub tls: bool,
    /// User from the URL.
    pub username: Option<String>,
    /// Password from the URL.
    pub password: Option<String>,
}

impl FromSetting for BrokerUrl {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{raw:?} is not a broker URL; use tcp://host:1883 or mqtts://user:password@host:8883"
            )
        };
        let (scheme, rest) = raw.trim().split_once("://").ok_or_else(bad)?;
        let tls = match scheme {
            "tcp" | "mqtt" => false,
            "ssl" | "tls" | "mqtts" => true,
            _ => return Err(bad()),
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((auth, hostport)) => (Some(auth), hostport),
            None => (None, rest),
        };
        let (username, password) = match auth {
            Some(auth) => match auth.split_once(':') {
                Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
                None => (Some(auth.to_owned()), None),
            },
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
            None => (hostport, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
            username,
            password,
        })
    }
}

impl BrokerUrl {
    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A quality of service: 0, 1 or 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qos(pub u8);

impl FromSetting for Qos {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Int;

    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "0" => Ok(Self(0)),
            "1" => Ok(Self(1)),
            "2" => Ok(Self(2)),
            other => Err(format!("{other:?} must be 0, 1 or 2")),
        }
    }
}

impl Qos {
    pub(crate) fn rumqttc(self) -> rumqttc::QoS {
        match self.0 {
            0 => rumqttc::QoS::AtMostOnce,
            1 => rumqttc::QoS::AtLeastOnce,
            _ => rumqttc::QoS::ExactlyOnce,
        }
    }
}

/// Topic filters: a comma list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics(pub Vec<String>);

impl FromSetting for Topics {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let topics = non_empty_list(raw, "list at least one topic filter")?;
        for t in &topics {
            let levels: Vec<&str> = t.split('/').collect();
            for (i, level) in levels.iter().enumerate() {
                let wild = level.contains('#') || level.contains('+');
                let ok = !wild || *level == "+" || (*level == "#" && i == levels.len() - 1);
                if !ok {
                    return Err(format!(
                        "{t:?}: + and # must fill a whole level, and # must be the last"
                    ));
                }
            }
        }
        Ok(Self(topics))
    }
}

/// A topic for publishing: a text or a Go template rendered per record.
#[derive(Clone, Debug)]
pub struct TopicTemplate(pub funnel_template::Template);

impl PartialEq for TopicTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.0.source() == other.0.source()
    }
}

impl FromSetting for TopicTemplate {
    fn from_setting(raw: &str) -> Result<Self, String> {
        funnel_template::Template::parse(raw)
            .map(Self)
            .map_err(|e| format!("{raw:?}: the template does not parse: {e}"))
    }
}

funnel_core::settings! {
    /// Connection settings shared by the source and the destination.
    pub struct MqttConnectionSettings {
        /// Broker URL: tcp://host:1883 or mqtt://user:password@host:1883; ssl:// or
        /// mqtts:// connect with TLS (default port 8883).
        pub url: BrokerUrl = "url",
        /// Client identifier; the broker keeps a persistent session per client ID
        /// (default: funnel- and the connector ID).
        pub client_id: Option<String> = "clientId",
        /// User name (overrides the URL's).
        pub username: Option<String> = "username",
        /// Password (overrides the URL's).
        pub password: Option<String> = "password",
        /// Keep-alive interval (Go duration).
        pub keep_alive: Duration = "keepAlive" (default "30s"),
    }
}

funnel_core::settings! {
    /// The source's subscription.
    pub struct MqttSubscriptionSettings {
        /// Topic filters to subscribe to, comma-separated; + and # wildcards allowed.
        pub topics: Topics = "topic",
        /// QoS of the subscription: 1 (at least once, the default) or 2; 0 is at most
        /// once.
        pub qos: Qos = "qos" (default "1"),
        /// Start a new session on connect. false (default): the broker keeps the
        /// subscription and unacknowledged messages while Funnel is away.
        pub clean_session: bool = "cleanSession" (default "false"),
    }
}

funnel_core::settings! {
    /// The destination's publishing.
    pub struct MqttPublishSettings {
        /// Topic to publish to: a text or a Go template rendered per record.
        pub topic: TopicTemplate = "topic" (default "{{ index .Metadata \"opencdc.collection\" }}"),
        /// QoS of published messages: 1 (acked after PUBACK, the default), 2 (after
        /// PUBCOMP) or 0 (acked once sent: at most once).
        pub qos: Qos = "qos" (default "1"),
        /// Publish with the retain flag.
        pub retain: bool = "retain" (default "false"),
        /// Start a new session on connect.
        pub clean_session: bool = "cleanSession" (default "true"),
    }
}

/// Where and how to connect.
#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    /// Broker.
    pub url: BrokerUrl,
    /// Client ID.
    pub client_id: String,
    /// Credentials.
    pub username: Option<String>,
    /// Credentials.
    pub password: Option<String>,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// TLS on.
    pub tls: bool,
    /// CA file.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate and key files.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

/// The validated settings of an MQTT source.
#[derive(Clone, Debug, PartialEq)]
pub struct MqttSourceConfig {
    /// Broker and credentials.
    pub connection: Connection,
    /// Subscription.
    pub subscription: MqttSubscriptionSettings,
    /// Records per read at most.
    pub batch_size: usize,
}

/// The validated settings of an MQTT destination.
#[derive(Clone, Debug, PartialEq)]
pub struct MqttDestinationConfig {
    /// Broker and credentials.
    pub connection: Connection,
    /// Publishing.
    pub publish: MqttPublishSettings,
}

fn connection(
    own: MqttConnectionSettings,
    tls: TlsFileSettings,
    default_id: String,
    errors: &mut Vec<SettingsError>,
) -> Connection {
    let tls = tls.validate(errors);
    Connection {
        tls: tls.enabled || own.url.tls,
        username: own.username.or_else(|| own.url.username.clone()),
        password: own.password.or_else(|| own.url.password.clone()),
        client_id: own.client_id.unwrap_or(default_id),
        keep_alive: own.keep_alive,
        url: own.url,
        ca_cert: tls.ca_cert,
        client_auth: tls.client_auth,
    }
}

/// A client ID from a connector ID: `funnel-` and the ID, characters other than
/// letters, digits, `-` and `_` replaced by `-`.
pub(crate) fn default_client_id(id: &str, suffix: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("funnel-{clean}{suffix}")
}

/// Parses and validates source settings for the connector `id`. Pure.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_source(
    id: &str,
    settings: &Settings,
) -> Result<MqttSourceConfig, Vec<SettingsError>> {
    let (((conn, tls), subscription), sdk) = parse_source_with(settings, |reader| {
        both::<MqttConnectionSettings, TlsFileSettings>(reader)
            .zip(MqttSubscriptionSettings::read(reader))
    })?;
    validated(|errors| {
        let connection = connection(conn, tls, default_client_id(id, ""), errors);
        MqttSourceConfig {
            connection,
            subscription,
            batch_size: sdk.batch_size,
        }
    })
}

/// Parses and validates destination settings for the connector `id`. Pure.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_destination(
    id: &str,
    settings: &Settings,
) -> Result<MqttDestinationConfig, Vec<SettingsError>> {
    let ((conn, tls), publish) = parse_destination_with(settings, |reader| {
        both::<MqttConnectionSettings, TlsFileSettings>(reader)
            .zip(MqttPublishSettings::read(reader))
    })?;
    validated(|errors| {
        if let Some(topic) = publish.topic.0.as_literal()
            && (topic.is_empty() || topic.contains(['+', '#']))
        {
            errors.push(SettingsError::new(
                "topic",
                format!("{topic:?}: a topic to publish to is not empty and has no wildcards"),
            ));
        }
        let connection = connection(conn, tls, default_client_id(id, "-out"), errors);
        MqttDestinationConfig {
            connection,
            publish,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use funnel_core::settings_of as settings;

    #[test]
    fn urls_give_host_port_tls_and_credentials() {
        let u = BrokerUrl::from_setting("mqtt://u:p@127.0.0.1:1884").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.tls,
                u.username.as_deref(),
                u.password.as_deref()
            ),
            ("127.0.0.1", 1884, false, Some("u"), Some("p"))
        );
        let u = BrokerUrl::from_setting("mqtts://broker").unwrap();
        assert_eq!((u.port, u.tls), (8883, true));
        assert!(BrokerUrl::from_setting("http://x:1").is_err());
        assert!(BrokerUrl::from_setting("tcp://x:port").is_err());
    }

    #[test]
    fn source_defaults_keep_a_persistent_session_at_qos_1_named_after_the_connector() {
        let c = validate_source(
            "pipe:in",
            &settings(&[("url", "tcp://127.0.0.1:1883"), ("topic", "a/+/c, d/#")]),
        )
        .unwrap();
        assert_eq!(c.connection.client_id, "funnel-pipe-in");
        assert_eq!(c.subscription.qos, Qos(1));
        assert!(!c.subscription.clean_session);
        assert_eq!(c.subscription.topics.0, ["a/+/c", "d/#"]);
        assert_eq!(c.connection.keep_alive, Duration::from_secs(30));
    }

    #[test]
    fn bad_settings_are_reported_with_their_keys() {
        let errors = validate_source(
            "p:s",
            &settings(&[("url", "x"), ("topic", "a/b#"), ("qos", "3"), ("odd", "1")]),
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(keys, ["url", "topic", "qos", "odd"]);
        let errors = validate_destination(
            "p:d",
            &settings(&[
                ("url", "tcp://h"),
                ("topic", "a/#"),
                ("tls.clientKey", "/k"),
            ]),
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(keys, ["topic", "tls.clientCert"]);
    }
}
