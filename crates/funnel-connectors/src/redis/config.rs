//! Redis settings: parsing and validation (no I/O).

use std::path::PathBuf;
use std::time::Duration;

use funnel_core::typed::{FromSetting, SettingsStruct};

use crate::settings::{both, parse_destination_with, parse_source_with, validated};
use crate::tls::TlsFileSettings;
use crate::{Settings, SettingsError};

/// `mode`: what `redis.key` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `pubsub`: a pub/sub channel (at most once).
    PubSub,
    /// `stream`: a stream.
    Stream,
    /// `keyvalue` (destination only, a Funnel extension): each record sets or deletes
    /// the Redis key named by its record key.
    KeyValue,
}

impl FromSetting for Mode {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "pubsub" => Ok(Self::PubSub),
            "stream" => Ok(Self::Stream),
            "keyvalue" => Ok(Self::KeyValue),
            _ => Err(format!(
                "{raw:?} value must be one of: pubsub, stream, keyvalue"
            )),
        }
    }
}

/// `keyvalue.valueType`: how `mode: keyvalue` stores a record's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// `string`: `SET key <payload>`.
    String,
    /// `hash`: `DEL key` then `HSET key <fields>`, the fields as a stream entry's.
    Hash,
}

impl FromSetting for ValueType {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "string" => Ok(Self::String),
            "hash" => Ok(Self::Hash),
            _ => Err(format!("{raw:?} value must be one of: string, hash")),
        }
    }
}

/// `redis.port`: a TCP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port(pub u16);

impl FromSetting for Port {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Int;

    fn from_setting(raw: &str) -> Result<Self, String> {
        raw.parse::<u16>()
            .map(Self)
            .map_err(|_| format!("{raw:?} is not a port number"))
    }
}

/// A parsed key template; two are equal when their texts are.
#[derive(Clone, Debug)]
pub struct KeyTemplate(pub funnel_template::Template);

impl PartialEq for KeyTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.0.source() == other.0.source()
    }
}

impl FromSetting for KeyTemplate {
    fn from_setting(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("the key is empty".to_owned());
        }
        funnel_template::Template::parse(raw)
            .map(Self)
            .map_err(|e| format!("{raw:?}: the key template does not parse: {e}"))
    }
}

funnel_core::settings! {
    /// How the Redis source and destination connect (Conduit's names).
    pub struct RedisConnectionSettings {
        /// Host of the Redis server.
        pub host: String = "redis.host" (default "localhost"),
        /// Port of the Redis server.
        pub port: Port = "redis.port" (default "6379"),
        /// Database number.
        pub database: i64 = "redis.database" (default "0"),
        /// User name (Redis 6 ACL; empty: the default user).
        pub username: Option<String> = "redis.username",
        /// Password.
        pub password: Option<String> = "redis.password",
        /// What redis.key names: pubsub (a channel) or stream; keyvalue (destination
        /// only): keys named by the record keys.
        pub mode: Mode = "mode" (default "pubsub"),
    }
}

funnel_core::settings! {
    /// The Redis source's own settings.
    pub struct RedisSourceSettings {
        /// The stream to read, or the channel to subscribe to.
        pub key: String = "redis.key",
        /// Longest wait of one blocking read of the stream (Go duration).
        pub polling_period: Duration = "pollingPeriod" (default "1s"),
        /// Funnel extension: read the stream as this consumer group (XREADGROUP,
        /// XACK after delivery); empty: plain XREAD from the saved ID.
        pub group: Option<String> = "stream.group",
        /// Funnel extension: consumer name in the group (default: the connector ID).
        pub consumer: Option<String> = "stream.consumer",
        /// Funnel extension: entries pending this long with another consumer of the
        /// group are claimed (XAUTOCLAIM); 0 turns claiming off.
        pub claim_idle: Duration = "stream.claimIdle" (default "30s"),
    }
}

funnel_core::settings! {
    /// The Redis destination's own settings.
    pub struct RedisDestinationSettings {
        /// Stream to add to, or channel to publish on: a name, or a Go template
        /// rendered per record; with mode keyvalue, an optional prefix of every key.
        pub key: Option<KeyTemplate> = "redis.key",
        /// Funnel extension, mode keyvalue: string (SET the payload) or hash (HSET
        /// its fields).
        pub value_type: ValueType = "keyvalue.valueType" (default "string"),
        /// Funnel extension: trim the stream to about this many entries on each add
        /// (XADD MAXLEN ~); 0 keeps every entry.
        pub max_len: usize = "stream.maxLen" (default "0"),
    }
}

/// How to connect, validated.
#[derive(Clone, Debug)]
pub struct RedisConnection {
    /// `redis.host`.
    pub host: String,
    /// `redis.port`.
    pub port: u16,
    /// `redis.database`.
    pub database: i64,
    /// `redis.username`.
    pub username: Option<String>,
    /// `redis.password`.
    pub password: Option<String>,
    /// `tls.enabled`.
    pub tls: bool,
    /// `tls.caCert`.
    pub ca_cert: Option<PathBuf>,
    /// `tls.clientCert` and `tls.clientKey`.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

impl RedisConnection {
    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The validated settings of a Redis source.
#[derive(Clone, Debug)]
pub struct RedisSourceConfig {
    /// The connection.
    pub connection: RedisConnection,
    /// `mode`.
    pub mode: Mode,
    /// `redis.key`.
    pub key: String,
    /// `pollingPeriod`.
    pub polling_period: Duration,
    /// `stream.group`.
    pub group: Option<String>,
    /// `stream.consumer`.
    pub consumer: Option<String>,
    /// `stream.claimIdle` (`None`: no claiming).
    pub claim_idle: Option<Duration>,
    /// Records per read at most (`sdk.batch.size`, default 1000).
    pub batch_size: usize,
}

/// The validated settings of a Redis destination.
#[derive(Clone, Debug)]
pub struct RedisDestinationConfig {
    /// The connection.
    pub connection: RedisConnection,
    /// `mode`.
    pub mode: Mode,
    /// `redis.key` (only `None` with mode keyvalue: no prefix).
    pub key: Option<funnel_template::Template>,
    /// `stream.maxLen` (0: no trimming).
    pub max_len: usize,
    /// `keyvalue.valueType`.
    pub value_type: ValueType,
}

/// The validated connection; the TLS settings' mistakes go to `errors`.
fn connection(
    c: RedisConnectionSettings,
    tls: TlsFileSettings,
    errors: &mut Vec<SettingsError>,
) -> RedisConnection {
    let tls = tls.validate(errors);
    if !tls.enabled {
        for (key, set) in [
            ("tls.caCert", tls.ca_cert.is_some()),
            ("tls.clientCert", tls.client_auth.is_some()),
        ] {
            if set {
                errors.push(SettingsError::new(key, "needs tls.enabled: true"));
            }
        }
    }
    RedisConnection {
        host: c.host,
        port: c.port.0,
        database: c.database,
        username: c.username.filter(|u| !u.is_empty()),
        password: c.password.filter(|p| !p.is_empty()),
        tls: tls.enabled,
        ca_cert: tls.ca_cert,
        client_auth: tls.client_auth,
    }
}

/// Parses and validates Redis source settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_source(settings: &Settings) -> Result<RedisSourceConfig, Vec<SettingsError>> {
    let (((conn, tls), own), sdk) = parse_source_with(settings, |reader| {
        both::<RedisConnectionSettings, TlsFileSettings>(reader)
            .zip(RedisSourceSettings::read(reader))
    })?;
    let mode = conn.mode;
    validated(|errors| {
        let connection = connection(conn, tls, errors);
        if own.key.is_empty() {
            errors.push(SettingsError::new("redis.key", "the key is empty"));
        }
        if own.polling_period.is_zero() {
            errors.push(SettingsError::new("pollingPeriod", "must be longer than 0"));
        }
        if mode == Mode::KeyValue {
            errors.push(SettingsError::new(
                "mode",
                "keyvalue is for the destination only; a source reads a stream or a channel",
            ));
        }
        if mode == Mode::PubSub && own.group.as_deref().is_some_and(|g| !g.is_empty()) {
            errors.push(SettingsError::new(
                "stream.group",
                "a consumer group needs mode: stream",
            ));
        }
        RedisSourceConfig {
            connection,
            mode,
            key: own.key,
            polling_period: own.polling_period,
            group: own.group.filter(|g| !g.is_empty()),
            consumer: own.consumer.filter(|c| !c.is_empty()),
            claim_idle: Some(own.claim_idle).filter(|d| !d.is_zero()),
            batch_size: sdk.batch_size,
        }
    })
}

/// Parses and validates Redis destination settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_destination(
    settings: &Settings,
) -> Result<RedisDestinationConfig, Vec<SettingsError>> {
    let ((conn, tls), own) = parse_destination_with(settings, |reader| {
        both::<RedisConnectionSettings, TlsFileSettings>(reader)
            .zip(RedisDestinationSettings::read(reader))
    })?;
    let mode = conn.mode;
    validated(|errors| {
        let connection = connection(conn, tls, errors);
        if mode != Mode::KeyValue && own.key.is_none() {
            errors.push(SettingsError::new(
                "redis.key",
                "is required with mode stream or pubsub",
            ));
        }
        RedisDestinationConfig {
            mode,
            connection,
            key: own.key.map(|k| k.0),
            max_len: own.max_len,
            value_type: own.value_type,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use funnel_core::settings_of as settings;

    #[test]
    fn defaults_follow_conduit() {
        let c = validate_source(&settings(&[("redis.key", "events")])).unwrap();
        assert_eq!(c.connection.address(), "localhost:6379");
        assert_eq!(c.connection.database, 0);
        assert_eq!(c.mode, Mode::PubSub);
        assert_eq!(c.polling_period, Duration::from_secs(1));
        assert_eq!(c.group, None);
        assert_eq!(c.claim_idle, Some(Duration::from_secs(30)));
    }

    #[test]
    fn bad_settings_are_all_reported_with_their_keys() {
        let errors = validate_source(&settings(&[
            ("redis.port", "high"),
            ("mode", "list"),
            ("pollingPeriod", "soon"),
            ("surprise", "1"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(
            keys,
            [
                "redis.port",
                "mode",
                "redis.key",
                "pollingPeriod",
                "surprise"
            ]
        );
        let errors = validate_source(&settings(&[("redis.key", "events"), ("stream.group", "g")]))
            .unwrap_err();
        assert_eq!(errors[0].setting, "stream.group");
    }

    #[test]
    fn the_destination_key_may_be_a_template() {
        let c = validate_destination(&settings(&[
            ("redis.key", "out:{{ .Metadata.table }}"),
            ("mode", "stream"),
            ("stream.maxLen", "1000"),
        ]))
        .unwrap();
        assert_eq!(c.key.unwrap().as_literal(), None);
        assert_eq!(c.max_len, 1000);
    }

    #[test]
    fn tls_files_need_tls_enabled_and_the_client_certificate_needs_its_key() {
        let c = validate_source(&settings(&[
            ("redis.key", "k"),
            ("tls.enabled", "true"),
            ("tls.caCert", "/ca.pem"),
            ("tls.clientCert", "/c.pem"),
            ("tls.clientKey", "/c.key"),
        ]))
        .unwrap();
        assert!(c.connection.tls);
        assert_eq!(c.connection.ca_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(
            c.connection.client_auth,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/c.key")))
        );
        let errors = validate_destination(&settings(&[
            ("redis.key", "k"),
            ("tls.caCert", "/ca.pem"),
            ("tls.clientCert", "/c.pem"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(keys, ["tls.clientKey", "tls.caCert"]);
    }

    #[test]
    fn keyvalue_is_for_destinations_and_needs_no_key() {
        let c = validate_destination(&settings(&[
            ("mode", "keyvalue"),
            ("keyvalue.valueType", "hash"),
        ]))
        .unwrap();
        assert!(c.key.is_none());
        assert_eq!(c.value_type, ValueType::Hash);
        let errors = validate_destination(&settings(&[("mode", "stream")])).unwrap_err();
        assert_eq!(errors[0].setting, "redis.key");
        let errors =
            validate_source(&settings(&[("redis.key", "k"), ("mode", "keyvalue")])).unwrap_err();
        assert_eq!(errors[0].setting, "mode");
    }
}
