//! The `http` source (a webhook receiver) and destination (cargo feature `http`, on by
//! default). The user documentation is the http section of `docs/connectors.md`.
//!
//! # Source
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `address` | `127.0.0.1:8080` | Address to listen on. |
//! | `auth.bearerToken` | — | Token every request must carry as `Authorization: Bearer <token>`; else 401. |
//! | `auth.hmacSecret` | — | Secret of the HMAC-SHA256 signature of each body; a missing or wrong signature gets 401. |
//! | `auth.hmacHeader` | `X-Signature-256` | Header holding the signature: `sha256=<hex>` or bare hex. |
//! | `maxBodySize` | `10485760` | Largest body in bytes; a larger one gets 413. |
//! | `bufferSize` | `64` | Requests whose records wait for the pipeline at most. |
//! | `backpressureTimeout` | `5s` | How long a request waits for room before it gets 503 with `Retry-After: 1`. |
//! | `tls.certPath` | — | Certificate chain (PEM) to serve `https` with; needs `tls.keyPath`. |
//! | `tls.keyPath` | — | Its private key (PEM: PKCS#8, PKCS#1 or SEC1). |
//!
//! With `tls.certPath` and `tls.keyPath` set the source serves `https` only.
//!
//! Requests are `POST`s to any path. **The content type decides the records**:
//! `application/json` (or `application/*+json`): the body is one JSON document, one
//! record; `application/x-ndjson` (`application/ndjson`, `application/jsonl`): one
//! record per non-empty line, each a JSON document; anything else: one record holding
//! the body as it is. Invalid JSON gets 400 and nothing of the request is read.
//! `payload.after` is the raw bytes of the document, line or body; metadata
//! `http.path` (the request path), `opencdc.readAt` and `conduit.source.connector.id`.
//!
//! **Guarantee.** A request is answered `200` (`{"records":N}`) only after every
//! record in it was released by the pipeline: written by every destination, or put in
//! the dead-letter queue, and its position committed. When the pipeline stops first
//! (a failure, a stop, a restart) the request gets `503` with `Retry-After`, and a
//! sender that sends again what did not get a 2xx has every record delivered at least
//! once. Requests answered 2xx are never read again; a request that got no answer
//! (the process was killed) may have been delivered and is sent again: at least once.
//!
//! **Position**: `<run>-<sequence>`; the source keeps nothing across restarts (the
//! senders hold what was not answered 2xx), so a resume position is ignored.
//!
//! # Source, polling mode
//!
//! With `url` set the source does not listen: it sends `GET url` (plus `params.*`)
//! and makes records of the response, as Conduit's http connector does.
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `url` | — | URL to poll; `http` or `https`. |
//! | `method` | `GET` | Only `GET`. |
//! | `headers` | — | Request headers as Conduit writes them: `Name:value` pairs separated by commas. |
//! | `headers.*` | — | One request header each (`headers.Authorization`). |
//! | `params.*` | — | Query parameters added to the URL (`params.since`). |
//! | `pollingPeriod` | `5m` | Wait between requests that brought nothing new. |
//! | `response.records` | — | JSON pointer to the array of records in a response (`/data`); unset, the whole response is one record. |
//! | `response.cursor` | — | JSON pointer to the cursor of the next request in a response (`/next`); a string or number. |
//! | `cursor.param` | `cursor` | Query parameter the cursor is sent in. |
//! | `timeout` | `30s` | Longest wait for a response. |
//! | `tls.caCertPath` | — | A CA certificate (PEM) trusted for `https`, besides the system's. |
//!
//! Conduit's `script.getRequestData` and `script.parseResponse` (JavaScript) are
//! refused: `response.records`, `response.cursor` and `cursor.param` do their common
//! job. See [`HttpPollSource`] for the position.
//!
//! # Destination
//!
//! | Setting | Default | Meaning |
//! |---|---|---|
//! | `url` | — (required) | URL, a Go template rendered per record; `http` or `https`. |
//! | `method` | `POST` | HTTP method. |
//! | `headers.*` | `Content-Type: application/json` | Request headers, each a Go template (`headers.Authorization`). |
//! | `batch.format` | `none` | `none`: a request per record, its body the record as OpenCDC JSON; `json`: a JSON array of records per request; `ndjson`: a record per line. |
//! | `retry.max` | `10` | Retries of a request after a connection error, timeout, 5xx or 429 before the destination fails. |
//! | `retry.minWait` | `100ms` | Wait before the first retry; doubling after each. |
//! | `retry.maxWait` | `10s` | Longest wait between retries, unless `Retry-After` asks for more (up to 5 minutes). |
//! | `timeout` | `30s` | Longest wait for one request and its response. |
//! | `tls.caCertPath` | — | A CA certificate (PEM) trusted for `https`, besides the system's. |
//!
//! With `batch.format` `json` or `ndjson`, each write sends one request per run of
//! records whose URL and headers render the same. Requests are sent one after the
//! other, in order, and their records acked after the 2xx. A `4xx` other than 429 (or
//! any other non-2xx status) nacks the records of the request with the status and the
//! response text; a template that fails nacks its record. When the retries are used up
//! the destination fails and the pipeline restarts; nothing is acked that did not get
//! a 2xx.

mod config;
mod destination;
mod poll;
mod signature;
mod source;
mod tls;

use std::sync::Arc;

use funnel_core::component::{Build, Component};
use funnel_core::typed::SettingsStruct;

pub use config::{
    BatchFormat, ClientConfig, HttpDestinationConfig, HttpDestinationSettings, HttpSourceConfig,
    HttpSourceSettings, PollConfig, ServerTls, validate_destination, validate_source,
};
pub use destination::HttpDestination;
pub use poll::{HttpPollSource, METADATA_URL};
pub use signature::sign;
pub use source::HttpSource;

/// Metadata key holding the path a record was posted to.
pub const METADATA_PATH: &str = "http.path";

/// The HTTP source in the registry.
pub const SOURCE: Component = Component::new(
    "http",
    "Receives records in HTTP POST requests, answering each after its records are delivered; or polls a URL.",
    &[HttpSourceSettings::SPEC, crate::SDK_SOURCE_SETTINGS],
    Build::Source(|id, settings, resume| {
        let config = validate_source(settings)?;
        Ok(match config.poll.clone() {
            Some(poll) => Arc::new(HttpPollSource::new(
                id,
                poll,
                config.batch_size,
                resume.as_ref(),
            )),
            None => Arc::new(HttpSource::new(id, config)),
        })
    }),
);

/// The HTTP destination in the registry.
pub const DESTINATION: Component = Component::new(
    "http",
    "Sends records in HTTP requests, acking each after a 2xx answer.",
    &[
        HttpDestinationSettings::SPEC,
        crate::SDK_DESTINATION_SETTINGS,
    ],
    Build::Destination(|id, settings| {
        let config = validate_destination(settings)?;
        crate::formatted(settings, |format| HttpDestination::new(id, config, format))
    }),
);
