//! The S3 test server (moto on 127.0.0.1:4566, started by `scripts/s3-server.sh`) and
//! buckets of one test: created with a unique name (optionally with versioning),
//! filled and read back with `object_store`. Buckets are left in place: moto keeps
//! them in memory until it stops.
//!
//! Without a server the tests that use it are skipped, except under `CI=true`, where a
//! missing server fails them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use funnel_record::Record;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};

/// The server's endpoint.
pub const ENDPOINT: &str = "http://127.0.0.1:4566";

/// Credentials the server accepts (moto accepts any).
pub const KEY: &str = "test";

/// The region of the test buckets.
pub const REGION: &str = "us-east-1";

/// Buckets made by this process so far (part of each name).
static MADE: AtomicU64 = AtomicU64::new(0);

/// Whether the server answers; `false` (skip) without one, and a failure under
/// `CI=true`.
///
/// # Panics
///
/// Under `CI=true` when nothing listens on the endpoint.
pub async fn available() -> bool {
    let up = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::net::TcpStream::connect("127.0.0.1:4566"),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !up {
        crate::skip_without(&format!(
            "the S3 test server is not reachable at {ENDPOINT}"
        ));
    }
    up
}

/// A bucket of its own.
pub struct TestBucket {
    /// Its name.
    pub name: String,
    /// A client for its objects.
    pub store: Arc<AmazonS3>,
    http: HttpClient,
}

impl TestBucket {
    /// Creates bucket `ft-<tag>-<pid>-<n>-<nanos>`, with versioning when `versioned`.
    ///
    /// # Panics
    ///
    /// When the server refuses.
    pub async fn new(tag: &str, versioned: bool) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let tag: String = tag
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect::<String>()
            .to_ascii_lowercase();
        let name = format!(
            "ft-{tag}-{}-{}-{nanos}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        let options = ClientOptions::new().with_allow_http(true);
        let http = ReqwestConnector::default().connect(&options).unwrap();
        let bucket = Self {
            store: Arc::new(
                AmazonS3Builder::new()
                    .with_access_key_id(KEY)
                    .with_secret_access_key(KEY)
                    .with_region(REGION)
                    .with_bucket_name(&name)
                    .with_endpoint(ENDPOINT)
                    .with_client_options(options)
                    .build()
                    .unwrap(),
            ),
            name,
            http,
        };
        bucket.request("PUT", "", Bytes::new()).await;
        if versioned {
            let body = "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                        <Status>Enabled</Status></VersioningConfiguration>";
            bucket
                .request("PUT", "?versioning", Bytes::from_static(body.as_bytes()))
                .await;
        }
        bucket
    }

    /// A signed request to the bucket (`query` starts with `?` or is empty).
    async fn request(&self, method: &str, query: &str, body: Bytes) -> String {
        let url = format!("{ENDPOINT}/{}{query}", self.name);
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .body(HttpRequestBody::from(body))
            .unwrap();
        let credential = AwsCredential {
            key_id: KEY.to_owned(),
            secret_key: KEY.to_owned(),
            token: None,
        };
        AwsAuthorizer::new(&credential, "s3", REGION).authorize(&mut request, None);
        let response = self.http.execute(request).await.unwrap();
        let status = response.status();
        let text =
            String::from_utf8_lossy(&response.into_body().bytes().await.unwrap()).into_owned();
        assert!(status.is_success(), "{method} {url}: {status} {text}");
        text
    }

    /// The connector settings for this bucket (moto's endpoint, path style) and
    /// `extra`.
    pub fn settings(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut settings: Vec<(String, String)> = [
            ("aws.accessKeyId", KEY),
            ("aws.secretAccessKey", KEY),
            ("aws.region", REGION),
            ("aws.bucket", self.name.as_str()),
            ("aws.endpoint", ENDPOINT),
            ("aws.pathStyle", "true"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (key, value) in extra {
            settings.retain(|(k, _)| k != key);
            settings.push(((*key).to_owned(), (*value).to_owned()));
        }
        settings
    }

    /// Writes object `key`.
    ///
    /// # Panics
    ///
    /// When the server refuses.
    pub async fn put(&self, key: &str, content: Bytes) {
        self.store
            .put(&Path::parse(key).unwrap(), PutPayload::from(content))
            .await
            .unwrap();
    }

    /// Deletes object `key` (a delete marker with versioning).
    ///
    /// # Panics
    ///
    /// When the server refuses.
    pub async fn delete(&self, key: &str) {
        self.store.delete(&Path::parse(key).unwrap()).await.unwrap();
    }

    /// The keys under `prefix`, sorted.
    ///
    /// # Panics
    ///
    /// When the server refuses.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let prefix = Path::parse(prefix).unwrap();
        let mut keys: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map(|meta| meta.unwrap().location.to_string())
            .collect()
            .await;
        keys.sort();
        keys
    }

    /// The content of object `key`.
    ///
    /// # Panics
    ///
    /// When it cannot be read.
    pub async fn get(&self, key: &str) -> Bytes {
        self.store
            .get(&Path::parse(key).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    }

    /// The records of every object of OpenCDC JSON lines under `prefix`, objects in key
    /// order. `decode` turns an object's content into its lines (say, gunzip).
    ///
    /// # Panics
    ///
    /// When an object cannot be read or a line is not an OpenCDC record.
    pub async fn records(&self, prefix: &str, decode: impl Fn(Bytes) -> Bytes) -> Vec<Record> {
        let mut records = Vec::new();
        for key in self.keys(prefix).await {
            let content = decode(self.get(&key).await);
            for line in content.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                records
                    .push(Record::from_json(line).unwrap_or_else(|e| {
                        panic!("object {key}: not an OpenCDC JSON line ({e})")
                    }));
            }
        }
        records
    }
}
