//! Reaching a bucket: the `object_store` client for objects, and the one request it
//! has no method for (ListObjectVersions, which shows overwrites and deletes), signed
//! by its signer. Errors name the connector and the bucket and say whose fault they are.

use std::sync::Arc;
use std::time::Duration;

use funnel_core::ConnectorError;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use quick_xml::events::Event;

use super::config::S3Connection;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request may take (a part of a multipart upload is one request).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Attempts after a failed request (5xx, connection errors), and how long retrying
/// may go on, before the error goes to the pipeline (which restarts with its own
/// backoff).
const RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// A bucket and the clients that reach it.
pub(crate) struct Bucket {
    /// Objects: get, put, multipart uploads.
    pub(crate) store: Arc<AmazonS3>,
    http: HttpClient,
    credential: AwsCredential,
    pub(crate) connection: S3Connection,
    /// Names the connector in messages (`s3 source pipe:in`).
    pub(crate) who: String,
}

/// One entry of a version listing: a version of an object or a delete marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The object key.
    pub(crate) key: String,
    /// The version ID (`null` in a bucket without versioning).
    pub(crate) version: String,
    /// Whether this is the key's current state.
    pub(crate) latest: bool,
    /// A delete marker rather than a version.
    pub(crate) deleted: bool,
    /// LastModified, Unix milliseconds.
    pub(crate) modified_ms: i64,
    /// The ETag without quotes (empty for delete markers).
    pub(crate) etag: String,
    /// Size in bytes.
    pub(crate) size: u64,
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Bucket {
    /// The clients for `connection`; `who` names the connector. No I/O.
    ///
    /// # Errors
    ///
    /// A configuration error when the settings do not make a client.
    pub(crate) fn new(connection: &S3Connection, who: &str) -> Result<Self, ConnectorError> {
        let options = ClientOptions::new()
            .with_allow_http(true)
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: RETRIES,
            retry_timeout: RETRY_TIMEOUT,
        };
        let mut builder = AmazonS3Builder::new()
            .with_access_key_id(&connection.access_key_id)
            .with_secret_access_key(&connection.secret_access_key)
            .with_region(&connection.region)
            .with_bucket_name(&connection.bucket)
            .with_virtual_hosted_style_request(!connection.path_style)
            .with_client_options(options.clone())
            .with_retry(retry);
        if let Some(endpoint) = &connection.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(token) = &connection.session_token {
            builder = builder.with_token(token);
        }
        let config_error = |e: object_store::Error| {
            ConnectorError::config(format!(
                "{who}: cannot make a client for {}: {e}",
                connection.describe()
            ))
        };
        let store = builder.build().map_err(config_error)?;
        let http = ReqwestConnector::default()
            .connect(&options)
            .map_err(config_error)?;
        Ok(Self {
            store: Arc::new(store),
            http,
            credential: AwsCredential {
                key_id: connection.access_key_id.clone(),
                secret_key: connection.secret_access_key.clone(),
                token: connection.session_token.clone(),
            },
            connection: connection.clone(),
            who: who.to_owned(),
        })
    }

    /// The error of a failed object request, naming the connector, the bucket and the
    /// key; a missing bucket or refused credentials are configuration errors.
    pub(crate) fn error(&self, what: &str, e: &object_store::Error) -> ConnectorError {
        let message = format!(
            "{}: {what} in {} failed: {e}",
            self.who,
            self.connection.describe()
        );
        let text = e.to_string();
        let refused = matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || [
            "NoSuchBucket",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
        ]
        .iter()
        .any(|code| text.contains(code));
        if refused {
            ConnectorError::config(message)
        } else {
            ConnectorError::transient(message)
        }
    }

    /// Every entry of ListObjectVersions under the prefix, in the server's order (by
    /// key, newest version first).
    ///
    /// # Errors
    ///
    /// A configuration error when the bucket does not exist or the credentials are
    /// refused; a transient one when the store cannot be reached or answers with 5xx.
    pub(crate) async fn list_versions(&self) -> Result<Vec<Entry>, ConnectorError> {
        let mut entries = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = format!("versions=&prefix={}", encode(&self.connection.prefix));
            if let Some((key, version)) = &markers {
                query.push_str(&format!(
                    "&key-marker={}&version-id-marker={}",
                    encode(key),
                    encode(version)
                ));
            }
            let body = self.signed_get(&self.url(&query)).await?;
            let page = parse_versions(&body).map_err(|e| {
                ConnectorError::transient(format!(
                    "{}: the version listing of {} does not parse: {e}",
                    self.who,
                    self.connection.describe()
                ))
            })?;
            entries.extend(page.entries);
            match page.next {
                Some(next) => markers = Some(next),
                None => return Ok(entries),
            }
        }
    }

    /// Lists one key under the prefix: fails as listing would when the bucket does
    /// not exist or the credentials are refused.
    ///
    /// # Errors
    ///
    /// As [`list_versions`](Self::list_versions).
    pub(crate) async fn check(&self) -> Result<(), ConnectorError> {
        let query = format!(
            "list-type=2&max-keys=1&prefix={}",
            encode(&self.connection.prefix)
        );
        self.signed_get(&self.url(&query)).await.map(drop)
    }

    /// The bucket's URL with `query`.
    fn url(&self, query: &str) -> String {
        let base = self.connection.bucket_url();
        if self.connection.path_style {
            format!("{base}?{query}")
        } else {
            format!("{base}/?{query}")
        }
    }

    /// GETs `url` signed with the connector's credentials; the body of a 2xx answer.
    async fn signed_get(&self, url: &str) -> Result<String, ConnectorError> {
        let describe = self.connection.describe();
        let mut request = http::Request::get(url)
            .body(HttpRequestBody::empty())
            .map_err(|e| {
                ConnectorError::config(format!("{}: {url} is not a request URL: {e}", self.who))
            })?;
        AwsAuthorizer::new(&self.credential, "s3", &self.connection.region)
            .authorize(&mut request, None);
        let response = self.http.execute(request).await.map_err(|e| {
            ConnectorError::transient(format!(
                "{}: cannot reach {describe}: {e} (is aws.endpoint right and the store up?)",
                self.who
            ))
        })?;
        let status = response.status();
        let body = response.into_body().bytes().await.map_err(|e| {
            ConnectorError::transient(format!(
                "{}: reading the answer of {describe} failed: {e}",
                self.who
            ))
        })?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            return Ok(text);
        }
        let code = element(&text, "Code").unwrap_or_default();
        let detail = element(&text, "Message").unwrap_or_default();
        let message = format!(
            "{}: listing {describe} failed with {status} {code}: {detail}",
            self.who
        );
        Err(match code.as_str() {
            "NoSuchBucket" => ConnectorError::config(format!(
                "{message} (the bucket does not exist: check aws.bucket)"
            )),
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" => {
                ConnectorError::config(format!(
                    "{message} (check aws.accessKeyId, aws.secretAccessKey and aws.region)"
                ))
            }
            _ if status.as_u16() == 401 || status.as_u16() == 403 => ConnectorError::config(
                format!("{message} (check aws.accessKeyId, aws.secretAccessKey and aws.region)"),
            ),
            _ => ConnectorError::transient(message),
        })
    }
}

/// One page of a version listing.
#[derive(Debug, Default)]
struct Page {
    entries: Vec<Entry>,
    /// The key and version markers of the next page, when the listing is truncated.
    next: Option<(String, String)>,
}

/// The text of the first `<name>` element of `xml`, if any.
fn element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..end].to_owned())
}

/// The character an entity reference (`amp`, `#38`, `#x26`) stands for.
fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// Parses a `ListVersionsResult` document.
fn parse_versions(xml: &str) -> Result<Page, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut page = Page::default();
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut entry: Option<Entry> = None;
    let (mut truncated, mut next_key, mut next_version) = (false, None, None);
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                if path.len() == 1 && (name == "Version" || name == "DeleteMarker") {
                    entry = Some(Entry {
                        key: String::new(),
                        version: String::new(),
                        latest: false,
                        deleted: name == "DeleteMarker",
                        modified_ms: 0,
                        etag: String::new(),
                        size: 0,
                    });
                }
                path.push(name);
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| e.to_string())?;
                text.push(entity(&name).ok_or_else(|| format!("unknown entity &{name};"))?);
            }
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                match (path.len(), &mut entry) {
                    (1, Some(_)) => page.entries.extend(entry.take()),
                    (2, Some(e)) => match name.as_str() {
                        "Key" => e.key = std::mem::take(&mut text),
                        "VersionId" => e.version = std::mem::take(&mut text),
                        "IsLatest" => e.latest = text == "true",
                        "ETag" => e.etag = text.trim_matches('"').to_owned(),
                        "Size" => e.size = text.parse().unwrap_or(0),
                        "LastModified" => {
                            e.modified_ms = chrono::DateTime::parse_from_rfc3339(&text)
                                .map_err(|err| format!("LastModified {text:?}: {err}"))?
                                .timestamp_millis();
                        }
                        _ => {}
                    },
                    (1, None) => match name.as_str() {
                        "IsTruncated" => truncated = text == "true",
                        "NextKeyMarker" => next_key = Some(std::mem::take(&mut text)),
                        "NextVersionIdMarker" => next_version = Some(std::mem::take(&mut text)),
                        _ => {}
                    },
                    _ => {}
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if truncated {
        match next_key {
            Some(key) => page.next = Some((key, next_version.unwrap_or_default())),
            None => return Err("a truncated listing without NextKeyMarker".to_owned()),
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_listing_gives_versions_and_delete_markers_with_escaped_keys() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix>in/</Prefix><IsTruncated>true</IsTruncated>
  <NextKeyMarker>in/b&amp;c</NextKeyMarker><NextVersionIdMarker>v2</NextVersionIdMarker>
  <Version><Key>in/a</Key><VersionId>v1</VersionId><IsLatest>true</IsLatest>
    <LastModified>2026-12-05T09:17:51.250Z</LastModified><ETag>"abc"</ETag><Size>3</Size>
    <Owner><ID>x</ID></Owner></Version>
  <DeleteMarker><Key>in/b&amp;c</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest>
    <LastModified>2026-12-05T09:17:52.000Z</LastModified></DeleteMarker>
</ListVersionsResult>"#;
        let page = parse_versions(xml).unwrap();
        assert_eq!(
            page.entries,
            [
                Entry {
                    key: "in/a".into(),
                    version: "v1".into(),
                    latest: true,
                    deleted: false,
                    modified_ms: 1_796_462_271_250,
                    etag: "abc".into(),
                    size: 3,
                },
                Entry {
                    key: "in/b&c".into(),
                    version: "v2".into(),
                    latest: true,
                    deleted: true,
                    modified_ms: 1_796_462_272_000,
                    etag: String::new(),
                    size: 0,
                }
            ]
        );
        assert_eq!(page.next, Some(("in/b&c".into(), "v2".into())));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("in/a b&c~"), "in%2Fa%20b%26c~");
    }
}
