//! Connecting to NATS: options from the settings, errors that name the connector and
//! the server.

use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions};
use funnel_core::ConnectorError;

use super::config::NatsConnection;

/// How long connecting may take before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The first wait before reconnecting; it doubles up to `reconnectWait`.
const FIRST_RECONNECT_WAIT: Duration = Duration::from_millis(100);

/// The servers, for messages: the URLs without user, password or token.
pub(crate) fn servers(connection: &NatsConnection) -> String {
    connection
        .urls
        .iter()
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}{}", &url[..scheme + 3], &url[at + 1..])
            }
            _ => url.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Connects; `who` names the connector in errors and logs (`nats source pipe:in`).
///
/// # Errors
///
/// A configuration error for bad credentials or TLS files, a transient one when the
/// server cannot be reached; each names `who` and the servers.
pub(crate) async fn connect(
    connection: &NatsConnection,
    who: &str,
    default_name: &str,
) -> Result<async_nats::Client, ConnectorError> {
    connect_with(connection, who, default_name, |options| options).await
}

/// How long connection attempt `attempts` waits first. async-nats counts from 1 at
/// the first attempt, both when it connects and after a connection is lost, and starts
/// again from 1 once connected: the first attempt is made at once, the second after
/// [`FIRST_RECONNECT_WAIT`], each next one after twice as long, up to `most`.
fn reconnect_delay(attempts: usize, most: Duration) -> Duration {
    let Some(retries) = attempts.checked_sub(2) else {
        return Duration::ZERO;
    };
    let shift = u32::try_from(retries.min(16)).unwrap_or(16);
    (FIRST_RECONNECT_WAIT * 2u32.pow(shift)).min(most)
}

/// [`connect`] with the client options changed by `more` (a subscription's buffer).
pub(crate) async fn connect_with(
    connection: &NatsConnection,
    who: &str,
    default_name: &str,
    more: impl FnOnce(ConnectOptions) -> ConnectOptions,
) -> Result<async_nats::Client, ConnectorError> {
    let servers = servers(connection);
    let mut options = ConnectOptions::new()
        .name(connection.name.as_deref().unwrap_or(default_name))
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(connection.max_reconnects)
        .reconnect_delay_callback({
            let most = connection.reconnect_wait;
            move |attempts| reconnect_delay(attempts, most)
        })
        .event_callback({
            let who = who.to_owned();
            let servers = servers.clone();
            move |event| {
                let (who, servers) = (who.clone(), servers.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(connector = %who, %servers, "Connected to NATS.");
                        }
                        async_nats::Event::Closed => {
                            tracing::debug!(connector = %who, %servers, "Closed the NATS connection.");
                        }
                        other => {
                            tracing::warn!(connector = %who, %servers, event = %other, "NATS connection event.");
                        }
                    }
                }
            }
        });
    if let Some(path) = &connection.credentials_file {
        options = options.credentials_file(path).await.map_err(|e| {
            ConnectorError::config(format!(
                "{who}: cannot read the credentials file {} (setting credentialsFilePath): {e}",
                path.display()
            ))
        })?;
    }
    if let Some(path) = &connection.nkey_path {
        let seed = std::fs::read_to_string(path).map_err(|e| {
            ConnectorError::config(format!(
                "{who}: cannot read the NKey seed {} (setting nkeyPath): {e}",
                path.display()
            ))
        })?;
        let seed = seed
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with('S') && !line.is_empty())
            .unwrap_or_default()
            .to_owned();
        options = options.nkey(seed);
    }
    if let Some(ca) = &connection.root_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &connection.client_cert {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    let addresses: Vec<async_nats::ServerAddr> = connection
        .urls
        .iter()
        .filter_map(|url| url.parse().ok())
        .collect();
    // The client does not read credentials from the URL itself: user and password
    // (or a token alone) of the first URL that has them.
    if connection.credentials_file.is_none()
        && connection.nkey_path.is_none()
        && let Some((user, password)) = addresses
            .iter()
            .find_map(|a| a.username().map(|user| (user, a.password())))
    {
        options = match password {
            Some(password) => {
                options.user_and_password(percent_decoded(user), percent_decoded(password))
            }
            None => options.token(percent_decoded(user)),
        };
    }
    // async-nats builds its TLS configuration with the process's default rustls provider.
    crate::util::install_default_crypto_provider();
    more(options).connect(addresses).await.map_err(|e| {
        let message = format!("{who}: cannot connect to NATS at {servers}: {e}");
        match e.kind() {
            ConnectErrorKind::Authentication
            | ConnectErrorKind::AuthorizationViolation
            | ConnectErrorKind::Tls
            | ConnectErrorKind::ServerParse => ConnectorError::config(message),
            _ => ConnectorError::transient(message),
        }
    })
}

/// `text` with each `%XX` escape of a URL replaced by its byte.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_connection_attempt_waits_for_nothing_and_retries_double_from_100_ms_up_to_reconnect_wait()
     {
        let most = Duration::from_secs(5);
        let waits: Vec<u128> = (1..=9)
            .map(|attempt| reconnect_delay(attempt, most).as_millis())
            .collect();
        assert_eq!(waits, [0, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(reconnect_delay(1000, most), most);
    }

    #[test]
    fn url_credentials_are_percent_decoded() {
        assert_eq!(percent_decoded("p%40ss%3Aword"), "p@ss:word");
        assert_eq!(percent_decoded("plain%"), "plain%");
    }

    #[test]
    fn server_names_in_messages_leave_out_credentials() {
        let connection = NatsConnection {
            urls: vec![
                "nats://user:secret@127.0.0.1:4222".into(),
                "nats://token@10.0.0.1:4222".into(),
                "127.0.0.1:4223".into(),
            ],
            name: None,
            nkey_path: None,
            credentials_file: None,
            client_cert: None,
            root_ca: None,
            max_reconnects: None,
            reconnect_wait: Duration::from_secs(5),
        };
        assert_eq!(
            servers(&connection),
            "nats://127.0.0.1:4222,nats://10.0.0.1:4222,127.0.0.1:4223"
        );
    }
}
