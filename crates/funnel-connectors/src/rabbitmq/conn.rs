//! Connecting to RabbitMQ, declaring the queue, and error messages that name the
//! connector, the server and the resource.

use funnel_core::ConnectorError;
use lapin::options::QueueDeclareOptions;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

use super::config::{self, RabbitmqQueueSettings};

/// Opens a connection. `who` names the connector (`rabbitmq source pipe:src`).
///
/// # Errors
///
/// An unreadable TLS file is a configuration error; refused credentials are fatal (a
/// configuration error), an unreachable server transient.
pub(crate) async fn connect(
    config: &config::Connection,
    who: &str,
) -> Result<Connection, ConnectorError> {
    let server = config.url.address();
    let tls = tls_config(config, who)?;
    let url = config.url.for_connection(config.tls.enabled);
    let runtime = lapin::runtime::default_runtime()
        .map_err(|e| ConnectorError::internal(format!("{who}: no tokio runtime for lapin: {e}")))?;
    let properties = ConnectionProperties::default().with_connection_name(who.to_owned().into());
    Connection::connect_with_config(&url, properties, tls, runtime)
        .await
        .map_err(|e| {
            classify(
                &e,
                format!("{who}: cannot connect to RabbitMQ at {server}: {e}"),
            )
        })
}

/// Reads the `tls.*` files.
fn tls_config(config: &config::Connection, who: &str) -> Result<OwnedTLSConfig, ConnectorError> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            ConnectorError::config(format!("{who}: cannot read {key} {}: {e}", path.display()))
        })
    };
    let files = &config.tls;
    let cert_chain = match &files.ca_cert {
        Some(path) => Some(String::from_utf8(read("tls.caCert", path)?).map_err(|_| {
            ConnectorError::config(format!(
                "{who}: tls.caCert {} is not a PEM file",
                path.display()
            ))
        })?),
        None => None,
    };
    let identity = match &files.client_auth {
        Some((cert, key)) => Some(OwnedIdentity::PKCS8 {
            pem: read("tls.clientCert", cert)?,
            key: read("tls.clientKey", key)?,
        }),
        None => None,
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

/// Declares the queue (or, with `queue.declare` false, checks that it exists).
///
/// # Errors
///
/// A refused declaration (the queue is missing, or exists with other properties) is a
/// configuration error naming the queue and the server.
pub(crate) async fn declare_queue(
    channel: &Channel,
    queue: &RabbitmqQueueSettings,
    who: &str,
    server: &str,
) -> Result<(), ConnectorError> {
    let options = QueueDeclareOptions {
        passive: !queue.declare,
        durable: queue.durable,
        exclusive: queue.exclusive,
        auto_delete: queue.auto_delete,
        nowait: queue.no_wait,
    };
    let name = short(&queue.name, "queue.name", who)?;
    channel
        .queue_declare(name, options, FieldTable::default())
        .await
        .map(drop)
        .map_err(|e| {
            let what = if queue.declare {
                "cannot declare"
            } else {
                "cannot find"
            };
            classify(
                &e,
                format!("{who}: {what} queue {:?} on {server}: {e}", queue.name),
            )
        })
}

/// A short string (at most 255 bytes), or a configuration error naming `key`.
pub(crate) fn short(
    text: &str,
    key: &str,
    who: &str,
) -> Result<lapin::types::ShortString, ConnectorError> {
    lapin::types::ShortString::try_new(text).map_err(|_| {
        ConnectorError::config(format!(
            "{who}: {key} is {} bytes long; AMQP allows 255",
            text.len()
        ))
    })
}

/// Opens a channel on `connection` (to `server`, for messages).
///
/// # Errors
///
/// As [`classify`] says.
pub(crate) async fn channel(
    connection: &Connection,
    who: &str,
    server: &str,
) -> Result<Channel, ConnectorError> {
    connection
        .create_channel()
        .await
        .map_err(|e| classify(&e, format!("{who}: cannot open a channel on {server}: {e}")))
}

/// The class of a lapin error: a protocol error the server sent because of what we
/// asked (access refused, not found, precondition failed, not allowed) is a
/// configuration error, everything else (I/O, a closed connection) transient.
pub(crate) fn classify(e: &lapin::Error, message: String) -> ConnectorError {
    use lapin::ErrorKind;
    match e.kind() {
        ErrorKind::ProtocolError(amqp) if is_permanent(amqp) => ConnectorError::config(message),
        _ => ConnectorError::transient(message),
    }
}

fn is_permanent(error: &lapin::protocol::AMQPError) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
    matches!(
        error.kind(),
        AMQPErrorKind::Soft(
            AMQPSoftError::ACCESSREFUSED
                | AMQPSoftError::NOTFOUND
                | AMQPSoftError::PRECONDITIONFAILED
                | AMQPSoftError::RESOURCELOCKED
        ) | AMQPErrorKind::Hard(
            AMQPHardError::NOTALLOWED
                | AMQPHardError::INVALIDPATH
                | AMQPHardError::NOTIMPLEMENTED
                | AMQPHardError::COMMANDINVALID
        )
    )
}
