//! HTTP settings: parsing and validation (no I/O).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use funnel_core::ConnectorError;
use funnel_core::typed::{FromSetting, Prefixed};
use funnel_template::Template;

use crate::settings::{parse_destination, parse_source, validated};
use crate::tls::client_pair;
use crate::{Settings, SettingsError};

/// `address`: where the source listens (`host:port`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddress(pub SocketAddr);

impl FromSetting for ListenAddress {
    fn from_setting(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse()
            .map(Self)
            .map_err(|_| format!("{raw:?} is not an address to listen on (127.0.0.1:8080)"))
    }
}

/// A size in bytes, more than 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl FromSetting for ByteSize {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(Self(n)),
            _ => Err(format!(
                "{raw:?} should be a number of bytes greater than 0"
            )),
        }
    }
}

/// A duration greater than 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Positive(pub Duration);

impl FromSetting for Positive {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match Duration::from_setting(raw)? {
            d if d.is_zero() => Err(format!("{raw:?} should be greater than 0")),
            d => Ok(Self(d)),
        }
    }
}

/// `method`: an HTTP method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method(pub reqwest::Method);

impl FromSetting for Method {
    fn from_setting(raw: &str) -> Result<Self, String> {
        reqwest::Method::from_bytes(raw.as_bytes())
            .map(Self)
            .map_err(|_| format!("{raw:?} is not an HTTP method"))
    }
}

/// A parsed Go template; two are equal when their texts are.
#[derive(Clone, Debug)]
pub struct TemplateText(pub Template);

impl PartialEq for TemplateText {
    fn eq(&self, other: &Self) -> bool {
        self.0.source() == other.0.source()
    }
}

impl FromSetting for TemplateText {
    fn from_setting(raw: &str) -> Result<Self, String> {
        Template::parse(raw)
            .map(Self)
            .map_err(|e| format!("{raw:?}: the template does not parse: {e}"))
    }
}

/// `batch.format`: how records share a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchFormat {
    /// `none`: one request per record, its body the record.
    None,
    /// `json`: one request per run of records with the same URL and headers, its body
    /// a JSON array of the records.
    Json,
    /// `ndjson`: as `json`, one record per line.
    Ndjson,
}

impl FromSetting for BatchFormat {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "none" => Ok(Self::None),
            "json" => Ok(Self::Json),
            "ndjson" => Ok(Self::Ndjson),
            _ => Err(format!("{raw:?} value must be one of: none, json, ndjson")),
        }
    }
}

funnel_core::settings! {
    /// The HTTP source's own settings.
    pub struct HttpSourceSettings {
        /// Address to listen on (host:port); loopback by default.
        pub address: ListenAddress = "address" (default "127.0.0.1:8080"),
        /// A bearer token every request must carry (Authorization: Bearer <token>).
        pub bearer_token: Option<String> = "auth.bearerToken",
        /// A secret to check HMAC-SHA256 signatures of request bodies with.
        pub hmac_secret: Option<String> = "auth.hmacSecret",
        /// Header holding the signature, as sha256=<hex> or bare hex.
        pub hmac_header: String = "auth.hmacHeader" (default "X-Signature-256"),
        /// Largest request body accepted, in bytes; a larger one is answered 413.
        pub max_body_size: ByteSize = "maxBodySize" (default "10485760"),
        /// Requests whose records wait for the pipeline at most.
        pub buffer_size: ByteSize = "bufferSize" (default "64"),
        /// How long a request waits for room in the buffer before it is answered 503
        /// with Retry-After (Go duration).
        pub backpressure_timeout: Positive = "backpressureTimeout" (default "5s"),
        /// The server's certificate chain (PEM): with tls.keyPath, the source serves
        /// https instead of http.
        pub tls_cert_path: Option<PathBuf> = "tls.certPath",
        /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of tls.certPath.
        pub tls_key_path: Option<PathBuf> = "tls.keyPath",
        /// Polling mode: the URL to GET every pollingPeriod (instead of listening).
        pub url: Option<String> = "url",
        /// Polling mode: the HTTP method (GET).
        pub method: String = "method" (default "GET"),
        /// Polling mode: request headers as Conduit writes them, Name:value pairs
        /// separated by commas.
        pub headers_list: Option<String> = "headers",
        /// Polling mode: one request header each (headers.Authorization).
        pub headers: Prefixed = "headers.*",
        /// Polling mode: query parameters added to the URL (params.since).
        pub params: Prefixed = "params.*",
        /// Polling mode: how long to wait between requests that brought nothing new
        /// (Go duration).
        pub polling_period: Positive = "pollingPeriod" (default "5m"),
        /// Polling mode: JSON pointer to the array of records in a response; unset,
        /// the whole response is one record.
        pub response_records: Option<String> = "response.records",
        /// Polling mode: JSON pointer to the cursor of the next request in a response.
        pub response_cursor: Option<String> = "response.cursor",
        /// Polling mode: the query parameter the cursor is sent in.
        pub cursor_param: String = "cursor.param" (default "cursor"),
        /// Polling mode: longest wait for a response (Go duration).
        pub timeout: Positive = "timeout" (default "30s"),
        /// Polling mode: a CA certificate (PEM) trusted for https URLs, besides the
        /// system's.
        pub ca_cert_path: Option<PathBuf> = "tls.caCertPath",
        /// Conduit's JavaScript request hook; not supported (use response.cursor).
        pub script_get_request_data: Option<String> = "script.getRequestData",
        /// Conduit's JavaScript response hook; not supported (use response.records).
        pub script_parse_response: Option<String> = "script.parseResponse",
    }
}

funnel_core::settings! {
    /// The HTTP destination's own settings.
    pub struct HttpDestinationSettings {
        /// URL of the requests: a Go template rendered per record.
        pub url: TemplateText = "url",
        /// HTTP method of the requests.
        pub method: Method = "method" (default "POST"),
        /// Request headers, each a Go template rendered per record
        /// (headers.Authorization).
        pub headers: Prefixed = "headers.*",
        /// How records share a request: none (one per record), json (a JSON array) or
        /// ndjson (a record per line).
        pub batch_format: BatchFormat = "batch.format" (default "none"),
        /// Attempts after a failed request (connection error, timeout, 5xx or 429)
        /// before the destination fails.
        pub retry_max: usize = "retry.max" (default "10"),
        /// Wait before the first retry; it doubles with each retry (Go duration).
        pub retry_min_wait: Duration = "retry.minWait" (default "100ms"),
        /// Longest wait between retries, unless the server asks for longer with
        /// Retry-After (Go duration).
        pub retry_max_wait: Duration = "retry.maxWait" (default "10s"),
        /// Longest wait for one request and its response (Go duration).
        pub timeout: Positive = "timeout" (default "30s"),
        /// A CA certificate (PEM) trusted for https URLs, besides the system's.
        pub ca_cert_path: Option<PathBuf> = "tls.caCertPath",
    }
}

/// The validated settings of an HTTP source.
#[derive(Clone, Debug)]
pub struct HttpSourceConfig {
    /// `address`.
    pub address: SocketAddr,
    /// `auth.bearerToken`.
    pub bearer_token: Option<String>,
    /// `auth.hmacSecret`.
    pub hmac_secret: Option<String>,
    /// `auth.hmacHeader`.
    pub hmac_header: String,
    /// `maxBodySize`.
    pub max_body_size: usize,
    /// `bufferSize`.
    pub buffer_size: usize,
    /// `backpressureTimeout`.
    pub backpressure_timeout: Duration,
    /// `tls.certPath` and `tls.keyPath`: serve https with this certificate chain and key.
    pub tls: Option<ServerTls>,
    /// `url` and the polling settings: poll that URL instead of listening.
    pub poll: Option<PollConfig>,
    /// Records per read at most (`sdk.batch.size`, default 1000); a request is never
    /// split across reads.
    pub batch_size: usize,
}

/// The certificate and key files the source serves https with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// `tls.certPath`: the certificate chain, PEM, the server's certificate first.
    pub cert_path: PathBuf,
    /// `tls.keyPath`: its private key, PEM.
    pub key_path: PathBuf,
}

/// The settings of the source's polling mode (`url` set).
#[derive(Clone, Debug)]
pub struct PollConfig {
    /// `url` with the `params.*` added.
    pub url: reqwest::Url,
    /// `headers` and `headers.*`.
    pub headers: reqwest::header::HeaderMap,
    /// `pollingPeriod`.
    pub polling_period: Duration,
    /// `response.records`: a JSON pointer (`/data/items`).
    pub records: Option<String>,
    /// `response.cursor`: a JSON pointer (`/next`).
    pub cursor: Option<String>,
    /// `cursor.param`.
    pub cursor_param: String,
    /// `timeout` and `tls.caCertPath`.
    pub client: ClientConfig,
}

/// The validated settings of an HTTP destination.
#[derive(Clone, Debug)]
pub struct HttpDestinationConfig {
    /// `url`.
    pub url: Template,
    /// `method`.
    pub method: reqwest::Method,
    /// `headers.*`: name and template.
    pub headers: Vec<(reqwest::header::HeaderName, Template)>,
    /// `batch.format`.
    pub batch_format: BatchFormat,
    /// `retry.max`.
    pub retry_max: usize,
    /// `retry.minWait`.
    pub retry_min_wait: Duration,
    /// `retry.maxWait`.
    pub retry_max_wait: Duration,
    /// `timeout` and `tls.caCertPath`.
    pub client: ClientConfig,
}

/// How the HTTP client of a destination or of a polling source is made, and how long a
/// request may take.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `timeout`: the longest wait for one request and its response.
    pub timeout: Duration,
    /// `tls.caCertPath`: a CA trusted besides the system's.
    pub ca_cert_path: Option<PathBuf>,
}

impl ClientConfig {
    /// A client trusting the system's CAs and `ca_cert_path`, if set; messages start
    /// with `who`.
    ///
    /// # Errors
    ///
    /// A configuration error when the CA certificate cannot be read or parsed, or the
    /// client cannot be made.
    pub(crate) fn client(&self, who: &str) -> Result<reqwest::Client, ConnectorError> {
        let mut builder = reqwest::Client::builder()
            .user_agent("funnel")
            .connect_timeout(self.timeout.min(Duration::from_secs(10)));
        if let Some(path) = &self.ca_cert_path {
            let pem = std::fs::read(path).map_err(|e| {
                ConnectorError::config(format!(
                    "{who}: cannot read the CA certificate {} (setting `tls.caCertPath`): {e}",
                    path.display()
                ))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                ConnectorError::config(format!(
                    "{who}: {} is not a PEM certificate (setting `tls.caCertPath`): {e}",
                    path.display()
                ))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        builder.build().map_err(|e| {
            ConnectorError::config(format!(
                "{who}: cannot make an HTTP client: {}",
                funnel_core::error_chain(&e)
            ))
        })
    }
}

/// Parses and validates HTTP source settings. Pure: nothing is bound.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_source(settings: &Settings) -> Result<HttpSourceConfig, Vec<SettingsError>> {
    let (own, sdk) = parse_source::<HttpSourceSettings>(settings)?;
    validated(|errors| {
        if own.bearer_token.as_deref() == Some("") {
            errors.push(SettingsError::new("auth.bearerToken", "the token is empty"));
        }
        if own.hmac_secret.as_deref() == Some("") {
            errors.push(SettingsError::new("auth.hmacSecret", "the secret is empty"));
        }
        if reqwest::header::HeaderName::from_bytes(own.hmac_header.as_bytes()).is_err() {
            errors.push(SettingsError::new(
                "auth.hmacHeader",
                format!("{:?} is not a header name", own.hmac_header),
            ));
        }
        let tls = client_pair(
            own.tls_cert_path.clone(),
            own.tls_key_path.clone(),
            ["tls.certPath", "tls.keyPath"],
            errors,
        )
        .map(|(cert_path, key_path)| ServerTls {
            cert_path,
            key_path,
        });
        for (key, given) in [
            ("script.getRequestData", &own.script_get_request_data),
            ("script.parseResponse", &own.script_parse_response),
        ] {
            if given.is_some() {
                errors.push(SettingsError::new(
                    key,
                    "JavaScript hooks are not supported: use response.records, response.cursor and cursor.param",
                ));
            }
        }
        let poll = match own.url.as_deref() {
            None => {
                for (key, set) in [
                    ("response.records", own.response_records.is_some()),
                    ("response.cursor", own.response_cursor.is_some()),
                    ("params.*", !own.params.0.is_empty()),
                ] {
                    if set {
                        errors.push(SettingsError::new(
                            key,
                            "only means something with url (polling)",
                        ));
                    }
                }
                None
            }
            Some(url) => poll_config(url, &own, errors),
        };
        HttpSourceConfig {
            address: own.address.0,
            bearer_token: own.bearer_token,
            hmac_secret: own.hmac_secret,
            hmac_header: own.hmac_header,
            max_body_size: own.max_body_size.0,
            buffer_size: own.buffer_size.0,
            backpressure_timeout: own.backpressure_timeout.0,
            tls,
            poll,
            batch_size: sdk.batch_size,
        }
    })
}

/// The polling settings, each error pushed with its key.
fn poll_config(
    url: &str,
    own: &HttpSourceSettings,
    errors: &mut Vec<SettingsError>,
) -> Option<PollConfig> {
    let mut parsed = match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
        Ok(u) => {
            errors.push(SettingsError::new(
                "url",
                format!(
                    "{url:?}: unsupported scheme {:?} (use http or https)",
                    u.scheme()
                ),
            ));
            None
        }
        Err(e) => {
            errors.push(SettingsError::new("url", format!("{url:?}: {e}")));
            None
        }
    };
    if !own.method.eq_ignore_ascii_case("GET") {
        errors.push(SettingsError::new(
            "method",
            format!("{:?}: the source polls with GET only", own.method),
        ));
    }
    if let Some(u) = &mut parsed
        && !own.params.0.is_empty()
    {
        let mut query = u.query_pairs_mut();
        for (name, value) in &own.params.0 {
            query.append_pair(name, value);
        }
    }
    let mut headers = reqwest::header::HeaderMap::new();
    let listed = own
        .headers_list
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.split_once(':') {
            Some((name, value)) => Ok((name.trim().to_owned(), value.trim().to_owned())),
            None => Err(pair.to_owned()),
        });
    let named = own
        .headers
        .0
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.clone())));
    for header in listed.chain(named) {
        let (name, value) = match header {
            Ok(pair) => pair,
            Err(pair) => {
                errors.push(SettingsError::new(
                    "headers",
                    format!("{pair:?} is not Name:value"),
                ));
                continue;
            }
        };
        match (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => errors.push(SettingsError::new(
                "headers",
                format!("{name:?}: {value:?} is not a header"),
            )),
        }
    }
    for (key, pointer) in [
        ("response.records", &own.response_records),
        ("response.cursor", &own.response_cursor),
    ] {
        if let Some(p) = pointer
            && !(p.is_empty() || p.starts_with('/'))
        {
            errors.push(SettingsError::new(
                key,
                format!("{p:?} is not a JSON pointer (/data/items)"),
            ));
        }
    }
    if own.cursor_param.trim().is_empty() {
        errors.push(SettingsError::new("cursor.param", "the name is empty"));
    }
    Some(PollConfig {
        url: parsed?,
        headers,
        polling_period: own.polling_period.0,
        records: own.response_records.clone(),
        cursor: own.response_cursor.clone(),
        cursor_param: own.cursor_param.clone(),
        client: ClientConfig {
            timeout: own.timeout.0,
            ca_cert_path: own.ca_cert_path.clone(),
        },
    })
}

/// Parses and validates HTTP destination settings. Pure: nothing is connected.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate_destination(
    settings: &Settings,
) -> Result<HttpDestinationConfig, Vec<SettingsError>> {
    let own = parse_destination::<HttpDestinationSettings>(settings)?;
    validated(|errors| {
        if let Some(url) = own.url.0.as_literal() {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(u) => errors.push(SettingsError::new(
                    "url",
                    format!(
                        "{url:?}: unsupported scheme {:?} (use http or https)",
                        u.scheme()
                    ),
                )),
                Err(e) => errors.push(SettingsError::new("url", format!("{url:?}: {e}"))),
            }
        }
        let mut headers = Vec::new();
        for (name, value) in own.headers.0 {
            let key = format!("headers.{name}");
            match (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                Template::parse(&value),
            ) {
                (Ok(name), Ok(template)) => headers.push((name, template)),
                (Err(_), _) => errors.push(SettingsError::new(
                    key,
                    format!("{name:?} is not a header name"),
                )),
                (_, Err(e)) => errors.push(SettingsError::new(
                    key,
                    format!("{value:?}: the template does not parse: {e}"),
                )),
            }
        }
        if own.retry_min_wait > own.retry_max_wait {
            errors.push(SettingsError::new(
                "retry.minWait",
                "is longer than retry.maxWait",
            ));
        }
        HttpDestinationConfig {
            url: own.url.0,
            method: own.method.0,
            headers,
            batch_format: own.batch_format,
            retry_max: own.retry_max,
            retry_min_wait: own.retry_min_wait,
            retry_max_wait: own.retry_max_wait,
            client: ClientConfig {
                timeout: own.timeout.0,
                ca_cert_path: own.ca_cert_path,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use funnel_core::settings_of as settings;

    #[test]
    fn the_source_listens_on_loopback_by_default() {
        let c = validate_source(&settings(&[])).unwrap();
        assert_eq!(c.address.to_string(), "127.0.0.1:8080");
        assert_eq!(c.max_body_size, 10 * 1024 * 1024);
        assert_eq!(c.hmac_header, "X-Signature-256");
        assert_eq!(c.backpressure_timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_source_settings_are_all_reported_with_their_keys() {
        let errors = validate_source(&settings(&[
            ("address", "everywhere"),
            ("maxBodySize", "0"),
            ("backpressureTimeout", "0s"),
            ("surprise", "1"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(
            keys,
            ["address", "maxBodySize", "backpressureTimeout", "surprise"]
        );
    }

    #[test]
    fn a_certificate_without_its_key_is_refused_and_both_turn_tls_on() {
        let errors = validate_source(&settings(&[("tls.certPath", "/c.pem")])).unwrap_err();
        assert_eq!(errors[0].setting, "tls.keyPath");
        let errors = validate_source(&settings(&[("tls.keyPath", "/k.pem")])).unwrap_err();
        assert_eq!(errors[0].setting, "tls.certPath");
        let c = validate_source(&settings(&[
            ("tls.certPath", "/c.pem"),
            ("tls.keyPath", "/k.pem"),
        ]))
        .unwrap();
        assert_eq!(
            c.tls,
            Some(ServerTls {
                cert_path: "/c.pem".into(),
                key_path: "/k.pem".into(),
            })
        );
        assert_eq!(validate_source(&settings(&[])).unwrap().tls, None);
    }

    #[test]
    fn a_url_turns_on_polling_with_params_and_headers_in_both_forms() {
        let c = validate_source(&settings(&[
            ("url", "http://127.0.0.1:9/items?fixed=1"),
            ("params.since", "2024-01-01"),
            ("headers", "X-One: 1, X-Two:2"),
            ("headers.Authorization", "Bearer t"),
            ("pollingPeriod", "2s"),
            ("response.records", "/items"),
            ("response.cursor", "/next"),
            ("cursor.param", "after"),
        ]))
        .unwrap();
        let poll = c.poll.unwrap();
        assert_eq!(
            poll.url.as_str(),
            "http://127.0.0.1:9/items?fixed=1&since=2024-01-01"
        );
        assert_eq!(poll.headers["x-one"], "1");
        assert_eq!(poll.headers["x-two"], "2");
        assert_eq!(poll.headers["authorization"], "Bearer t");
        assert_eq!(poll.polling_period, Duration::from_secs(2));
        assert_eq!(poll.records.as_deref(), Some("/items"));
        assert_eq!(poll.cursor.as_deref(), Some("/next"));
        assert_eq!(poll.cursor_param, "after");
        let defaults = validate_source(&settings(&[("url", "https://api.example.com/")]))
            .unwrap()
            .poll
            .unwrap();
        assert_eq!(defaults.polling_period, Duration::from_secs(300));
        assert_eq!(defaults.cursor_param, "cursor");
        assert_eq!(defaults.client.timeout, Duration::from_secs(30));
        assert!(validate_source(&settings(&[])).unwrap().poll.is_none());
    }

    #[test]
    fn bad_polling_settings_and_conduits_javascript_hooks_are_refused_with_their_keys() {
        let errors = validate_source(&settings(&[
            ("url", "ftp://x/"),
            ("method", "POST"),
            ("headers", "no-colon"),
            ("response.cursor", "next"),
            ("script.parseResponse", "parse.js"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(
            keys,
            [
                "script.parseResponse",
                "url",
                "method",
                "headers",
                "response.cursor"
            ]
        );
        let errors = validate_source(&settings(&[("response.cursor", "/next")])).unwrap_err();
        assert_eq!(errors[0].setting, "response.cursor");
        assert!(errors[0].message.contains("url"), "{errors:?}");
    }

    #[test]
    fn the_destination_needs_a_url_and_checks_a_literal_one() {
        let errors = validate_destination(&settings(&[])).unwrap_err();
        assert_eq!(errors[0].setting, "url");
        let errors = validate_destination(&settings(&[("url", "ftp://x/")])).unwrap_err();
        assert!(
            errors[0].message.contains("unsupported scheme"),
            "{errors:?}"
        );
        let errors = validate_destination(&settings(&[
            ("url", "http://127.0.0.1/{{ .Key }}"),
            ("headers.Bad Name", "x"),
            ("retry.minWait", "1m"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(keys, ["headers.Bad Name", "retry.minWait"]);
    }

    #[test]
    fn destination_defaults_post_one_record_per_request() {
        let c = validate_destination(&settings(&[("url", "https://example.com/in")])).unwrap();
        assert_eq!(c.method, reqwest::Method::POST);
        assert_eq!(c.batch_format, BatchFormat::None);
        assert_eq!(c.retry_max, 10);
        assert_eq!(c.client.timeout, Duration::from_secs(30));
    }
}
