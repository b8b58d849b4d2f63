//! Connecting to Redis: a client from the settings, errors that name the connector
//! and the server.

use std::time::Duration;

use funnel_core::ConnectorError;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use super::config::RedisConnection;

/// How long connecting may take before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `text` with every byte that is not unreserved in a URL percent-encoded.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The client for `connection` (no I/O besides reading the TLS files).
///
/// # Errors
///
/// A configuration error when the settings do not make a Redis URL, or a TLS file
/// cannot be read.
pub(crate) fn client(
    connection: &RedisConnection,
    who: &str,
) -> Result<redis::Client, ConnectorError> {
    let auth = match (&connection.username, &connection.password) {
        (Some(user), Some(password)) => format!("{}:{}@", encode(user), encode(password)),
        (Some(user), None) => format!("{}@", encode(user)),
        (None, Some(password)) => format!(":{}@", encode(password)),
        (None, None) => String::new(),
    };
    let host = if connection.host.contains(':') {
        format!("[{}]", connection.host)
    } else {
        connection.host.clone()
    };
    let scheme = if connection.tls { "rediss" } else { "redis" };
    let url = format!(
        "{scheme}://{auth}{host}:{}/{}",
        connection.port, connection.database
    );
    let bad_address = |e: redis::RedisError| {
        ConnectorError::config(format!(
            "{who}: the settings do not make a Redis address ({}): {e}",
            connection.address()
        ))
    };
    if !connection.tls {
        return redis::Client::open(url).map_err(bad_address);
    }
    // redis-rs builds its TLS configuration with the process's default rustls provider.
    crate::util::install_default_crypto_provider();
    let read = |setting: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            ConnectorError::config(format!(
                "{who}: cannot read {setting} {}: {e}",
                path.display()
            ))
        })
    };
    let root_cert = connection
        .ca_cert
        .as_deref()
        .map(|path| read("tls.caCert", path))
        .transpose()?;
    let client_tls = match &connection.client_auth {
        Some((cert, key)) => Some(redis::ClientTlsConfig {
            client_cert: read("tls.clientCert", cert)?,
            client_key: read("tls.clientKey", key)?,
        }),
        None => None,
    };
    if root_cert.is_none() && client_tls.is_none() {
        // The system's roots.
        return redis::Client::open(url).map_err(bad_address);
    }
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| {
        ConnectorError::config(format!(
            "{who}: the TLS settings for Redis at {} do not work: {e}",
            connection.address()
        ))
    })
}

/// The registry's connection check: connects with replies allowed 5 s.
///
/// # Errors
///
/// As [`client`] and [`connect`].
pub(crate) async fn check(connection: &RedisConnection, who: &str) -> Result<(), ConnectorError> {
    let client = client(connection, who)?;
    connect(&client, connection, who, Duration::from_secs(5))
        .await
        .map(drop)
}

/// Connects, with replies allowed to take `response` (a blocking read waits longer
/// than the default half second).
///
/// # Errors
///
/// A configuration error for refused credentials, a transient one when the server
/// cannot be reached; each names `who` and the server.
pub(crate) async fn connect(
    client: &redis::Client,
    connection: &RedisConnection,
    who: &str,
    response: Duration,
) -> Result<MultiplexedConnection, ConnectorError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| error(who, connection, &e))
}

/// A connection error as a connector error naming `who` and the server.
pub(crate) fn error(
    who: &str,
    connection: &RedisConnection,
    e: &redis::RedisError,
) -> ConnectorError {
    let message = format!(
        "{who}: cannot connect to Redis at {}: {e}",
        connection.address()
    );
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.to_string().contains("WRONGPASS")
        || e.to_string().contains("NOAUTH")
    {
        ConnectorError::config(message)
    } else {
        ConnectorError::transient(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_password_are_percent_encoded_in_the_url() {
        assert_eq!(encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
        assert_eq!(encode("plain-1"), "plain-1");
    }
}
