//! Client options, TLS, connecting, and error messages naming connector and broker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use funnel_core::ConnectorError;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet,
    TlsConfiguration, Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinHandle;

use super::config::Connection;
use crate::util::lock;

/// Largest packet in either direction (MQTT's own limit is 256 MiB).
const MAX_PACKET: usize = 256 * 1024 * 1024;

/// Client options for `config`.
pub(crate) fn options(
    config: &Connection,
    clean_session: bool,
    who: &str,
) -> Result<MqttOptions, ConnectorError> {
    let url = &config.url;
    let mut options = MqttOptions::new(config.client_id.clone(), url.host.clone(), url.port);
    options
        .set_clean_session(clean_session)
        .set_keep_alive(config.keep_alive.max(std::time::Duration::from_secs(5)))
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_manual_acks(true)
        .set_inflight(500)
        .set_request_channel_capacity(1024);
    if let Some(user) = &config.username {
        options.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
    }
    if config.tls {
        options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(
            tls_config(config, who)?,
        ))));
    }
    Ok(options)
}

/// A rustls client configuration with the ring provider: the CA file (or the Mozilla
/// roots of the system store are not used: a CA file is needed for a private broker),
/// and the client certificate when set.
fn tls_config(config: &Connection, who: &str) -> Result<rustls::ClientConfig, ConnectorError> {
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        ConnectorError::config(format!("{who}: cannot read {what} {}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &config.ca_cert {
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad("tls.caCert", path, &e))?;
        for cert in certs {
            let cert = cert.map_err(|e| bad("tls.caCert", path, &e))?;
            roots.add(cert).map_err(|e| bad("tls.caCert", path, &e))?;
        }
    }
    // ring rather than aws-lc (no second C build); ring has no post-quantum key
    // exchange, which is what the deprecation is about.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectorError::internal(format!("{who}: TLS setup: {e}")))?
        .with_root_certificates(roots);
    match &config.client_auth {
        Some((cert_path, key_path)) => {
            let certs = CertificateDer::pem_file_iter(cert_path)
                .map_err(|e| bad("tls.clientCert", cert_path, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("tls.clientCert", cert_path, &e))?;
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| bad("tls.clientKey", key_path, &e))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                ConnectorError::config(format!("{who}: tls.clientCert/tls.clientKey: {e}"))
            })
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Connects: polls the event loop until the broker's CONNACK.
///
/// # Errors
///
/// A refused connection (credentials, client ID) is a configuration error; an
/// unreachable broker a transient one. Both name the connector and the broker.
pub(crate) async fn connect(
    options: MqttOptions,
    who: &str,
    server: &str,
) -> Result<(AsyncClient, EventLoop, bool), ConnectorError> {
    let (client, mut events) = AsyncClient::new(options, 1024);
    // Acknowledgements are a few bytes each. With Nagle's algorithm on (rumqttc's
    // default), a small write waits until the broker ACKs what went before, and a
    // broker that has nothing to send delays its ACK (40 ms on Linux): the source's
    // PUBACKs and its UNSUBSCRIBE barrier waited for that once per release, which
    // capped it at a few thousand messages a second per 1,000 in flight.
    let mut network = events.network_options();
    network.set_tcp_nodelay(true);
    events.set_network_options(network);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                return Ok((client, events, ack.session_present));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(error(
                    &e,
                    who,
                    &format!("cannot connect to the MQTT broker at {server}"),
                ));
            }
        }
    }
}

/// A connection error as a connector error: refusals are configuration errors.
pub(crate) fn error(e: &ConnectionError, who: &str, what: &str) -> ConnectorError {
    let message = format!("{who}: {what}: {e}");
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword
            | ConnectReturnCode::NotAuthorized
            | ConnectReturnCode::BadClientId
            | ConnectReturnCode::RefusedProtocolVersion,
        ) => ConnectorError::config(message),
        _ => ConnectorError::transient(message),
    }
}

/// How long closing waits for the DISCONNECT to go out.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The task that polls a connection's event loop; aborted when dropped.
pub(crate) struct EventTask(Mutex<Option<JoinHandle<()>>>);

impl EventTask {
    /// Owns `task`.
    pub(crate) fn new(task: JoinHandle<()>) -> Self {
        Self(Mutex::new(Some(task)))
    }

    /// Disconnects `client` and waits for the task to see the connection end: at
    /// most [`CLOSE_TIMEOUT`] and half a second, after which it is aborted.
    pub(crate) async fn close(&self, client: &AsyncClient) {
        let _ = client.try_disconnect();
        let task = lock(&self.0).take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_millis(500), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for EventTask {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.0).take() {
            task.abort();
        }
    }
}
