//! S3 settings: parsing and validation (no I/O).

use std::time::Duration;

use funnel_core::typed::FromSetting;

use crate::settings::{both, parse_destination_with, parse_source_with, validated};
use crate::{Settings, SettingsError};

/// `aws.endpoint`: an `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint(pub String);

impl FromSetting for Endpoint {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let url = raw.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(Self(url.to_owned())),
            _ => Err(format!(
                "{raw:?} is not an endpoint URL (http://127.0.0.1:9000, https://s3.example.com)"
            )),
        }
    }
}

/// `format`: how the destination encodes a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `json`: OpenCDC JSON, one record per line.
    Json,
}

impl FromSetting for Format {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "json" => Ok(Self::Json),
            "parquet" => Err(
                "\"parquet\" is not supported by Funnel; use \"json\" (OpenCDC JSON lines)"
                    .to_owned(),
            ),
            other => Err(format!("{other:?} value must be one of: json, parquet")),
        }
    }
}

/// `compression`: how the destination compresses an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `none`.
    None,
    /// `gzip`: the object is one gzip member; its name ends in `.gz`.
    Gzip,
}

impl FromSetting for Compression {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "none" | "" => Ok(Self::None),
            "gzip" => Ok(Self::Gzip),
            other => Err(format!("{other:?} value must be one of: none, gzip")),
        }
    }
}

funnel_core::settings! {
    /// Where the objects are and how to reach them (Conduit's names, plus the endpoint
    /// and path-style switch of S3-compatible stores).
    pub struct S3ConnectionSettings {
        /// Access key ID.
        pub access_key_id: String = "aws.accessKeyId",
        /// Secret access key.
        pub secret_access_key: String = "aws.secretAccessKey",
        /// Session token of temporary credentials (a Funnel extension).
        pub session_token: Option<String> = "aws.sessionToken",
        /// Region of the bucket (us-east-1 for most S3-compatible stores).
        pub region: String = "aws.region",
        /// Name of the bucket.
        pub bucket: String = "aws.bucket",
        /// Key prefix: the source reads only objects under it, the destination writes
        /// its objects under it.
        pub prefix: String = "prefix" (default ""),
        /// URL of an S3-compatible store (a Funnel extension; default: AWS for the
        /// region). With aws.pathStyle false it must include the bucket.
        pub endpoint: Option<Endpoint> = "aws.endpoint",
        /// Address buckets by path (endpoint/bucket/key) instead of by host name
        /// (bucket.endpoint/key), as most S3-compatible stores need (a Funnel extension).
        pub path_style: bool = "aws.pathStyle" (default "false"),
    }
}

funnel_core::settings! {
    /// The S3 source's own settings.
    pub struct S3SourceSettings {
        /// How often the bucket is listed for new, changed and deleted objects (Go
        /// duration).
        pub polling_period: Duration = "pollingPeriod" (default "1s"),
        /// How long after its LastModified time an object may still appear and be read
        /// after a restart (a Funnel extension; Go duration; see the docs).
        pub lookback: Duration = "lookback" (default "30s"),
    }
}

funnel_core::settings! {
    /// The S3 destination's own settings.
    pub struct S3DestinationSettings {
        /// Encoding of the objects: json (OpenCDC JSON lines); parquet is refused.
        pub format: Format = "format" (default "json"),
        /// Compression of the objects: none or gzip (a Funnel extension).
        pub compression: Compression = "compression" (default "none"),
    }
}

/// How to reach the bucket, validated.
#[derive(Clone, Debug)]
pub struct S3Connection {
    /// `aws.accessKeyId`.
    pub access_key_id: String,
    /// `aws.secretAccessKey`.
    pub secret_access_key: String,
    /// `aws.sessionToken`.
    pub session_token: Option<String>,
    /// `aws.region`.
    pub region: String,
    /// `aws.bucket`.
    pub bucket: String,
    /// `prefix`.
    pub prefix: String,
    /// `aws.endpoint`.
    pub endpoint: Option<String>,
    /// `aws.pathStyle`.
    pub path_style: bool,
}

impl S3Connection {
    /// Where the bucket's requests go: `endpoint/bucket` (path style), the endpoint as
    /// given (host style with an endpoint: it names the bucket), or AWS's
    /// `https://bucket.s3.region.amazonaws.com`.
    pub fn bucket_url(&self) -> String {
        match (&self.endpoint, self.path_style) {
            (Some(endpoint), true) => format!("{endpoint}/{}", self.bucket),
            (Some(endpoint), false) => endpoint.clone(),
            (None, true) => format!("https://s3.{}.amazonaws.com/{}", self.region, self.bucket),
            (None, false) => format!("https://{}.s3.{}.amazonaws.com", self.bucket, self.region),
        }
    }

    /// The bucket and where it is, for messages: `bucket orders at http://...`.
    pub fn describe(&self) -> String {
        format!("bucket {} at {}", self.bucket, self.bucket_url())
    }
}

/// The validated settings of an S3 source.
#[derive(Clone, Debug)]
pub struct S3SourceConfig {
    /// The bucket.
    pub connection: S3Connection,
    /// `pollingPeriod`.
    pub polling_period: Duration,
    /// `lookback`.
    pub lookback: Duration,
    /// Records per read at most (`sdk.batch.size`, default 1000).
    pub batch_size: usize,
}

/// The validated settings of an S3 destination.
#[derive(Clone, Debug)]
pub struct S3DestinationConfig {
    /// The bucket.
    pub connection: S3Connection,
    /// `format`.
    pub format: Format,
    /// `compression`.
    pub compression: Compression,
}

fn connection(own: S3ConnectionSettings, errors: &mut Vec<SettingsError>) -> S3Connection {
    for (key, value) in [
        ("aws.accessKeyId", &own.access_key_id),
        ("aws.secretAccessKey", &own.secret_access_key),
        ("aws.region", &own.region),
        ("aws.bucket", &own.bucket),
    ] {
        if value.trim().is_empty() {
            errors.push(SettingsError::new(key, "is empty"));
        }
    }
    if own.bucket.contains('/') {
        errors.push(SettingsError::new(
            "aws.bucket",
            "a bucket name has no '/' (put a key prefix in `prefix`)",
        ));
    }
    if own.prefix.starts_with('/') {
        errors.push(SettingsError::new(
            "prefix",
            "object keys do not start with '/'; leave it out",
        ));
    }
    S3Connection {
        access_key_id: own.access_key_id,
        secret_access_key: own.secret_access_key,
        session_token: own.session_token.filter(|t| !t.is_empty()),
        region: own.region,
        bucket: own.bucket,
        prefix: own.prefix,
        endpoint: own.endpoint.map(|e| e.0),
        path_style: own.path_style,
    }
}

/// Parses and validates S3 source settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_source(settings: &Settings) -> Result<S3SourceConfig, Vec<SettingsError>> {
    let ((conn, own), sdk) =
        parse_source_with(settings, both::<S3ConnectionSettings, S3SourceSettings>)?;
    validated(|errors| {
        let connection = connection(conn, errors);
        if own.polling_period.is_zero() {
            errors.push(SettingsError::new(
                "pollingPeriod",
                "must be longer than 0 (every listing costs a request per 1000 objects)",
            ));
        }
        S3SourceConfig {
            connection,
            polling_period: own.polling_period,
            lookback: own.lookback,
            batch_size: sdk.batch_size,
        }
    })
}

/// Parses and validates S3 destination settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_destination(
    settings: &Settings,
) -> Result<S3DestinationConfig, Vec<SettingsError>> {
    let (conn, own) = parse_destination_with(
        settings,
        both::<S3ConnectionSettings, S3DestinationSettings>,
    )?;
    validated(|errors| {
        let connection = connection(conn, errors);
        S3DestinationConfig {
            connection,
            format: own.format,
            compression: own.compression,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use funnel_core::settings_of as settings;

    const REQUIRED: [(&str, &str); 4] = [
        ("aws.accessKeyId", "AKIA"),
        ("aws.secretAccessKey", "secret"),
        ("aws.region", "eu-west-1"),
        ("aws.bucket", "orders"),
    ];

    #[test]
    fn source_defaults_follow_conduit_and_the_bucket_url_is_aws_by_host_name() {
        let c = validate_source(&settings(&REQUIRED)).unwrap();
        assert_eq!(c.polling_period, Duration::from_secs(1));
        assert_eq!(c.lookback, Duration::from_secs(30));
        assert_eq!(c.connection.prefix, "");
        assert_eq!(
            c.connection.bucket_url(),
            "https://orders.s3.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn an_endpoint_with_path_style_puts_the_bucket_in_the_path() {
        let mut s = REQUIRED.to_vec();
        s.extend([
            ("aws.endpoint", "http://127.0.0.1:4566/"),
            ("aws.pathStyle", "true"),
            ("compression", "gzip"),
        ]);
        let c = validate_destination(&settings(&s)).unwrap();
        assert_eq!(c.connection.bucket_url(), "http://127.0.0.1:4566/orders");
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.format, Format::Json);
    }

    #[test]
    fn bad_settings_are_all_reported_with_their_keys() {
        let errors = validate_source(&settings(&[
            ("aws.accessKeyId", ""),
            ("aws.bucket", "a/b"),
            ("aws.endpoint", "ftp://x"),
            ("pollingPeriod", "0s"),
            ("surprise", "1"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(
            keys,
            [
                "aws.accessKeyId",
                "aws.secretAccessKey",
                "aws.region",
                "aws.endpoint",
                "surprise"
            ]
        );
        let mut s = REQUIRED.to_vec();
        s.extend([("aws.bucket", "a/b"), ("pollingPeriod", "0s")]);
        let errors = validate_source(&settings(&s)).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(keys, ["aws.bucket", "pollingPeriod"]);
    }

    #[test]
    fn parquet_is_refused_with_the_reason() {
        let mut s = REQUIRED.to_vec();
        s.push(("format", "parquet"));
        let errors = validate_destination(&settings(&s)).unwrap_err();
        assert_eq!(errors[0].setting, "format");
        assert!(
            errors[0].to_string().contains("not supported"),
            "{errors:?}"
        );
    }
}
