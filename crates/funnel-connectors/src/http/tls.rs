//! The source's `https`: a rustls (ring) server configuration from `tls.certPath` and
//! `tls.keyPath`, and a listener whose connections are TLS streams. Handshakes run
//! in tasks of their own, so a slow or broken client never holds up the others.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use funnel_core::ConnectorError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::config::ServerTls;

/// Longest TLS handshake; a client slower than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const READY_CONNECTIONS: usize = 64;

/// The acceptor for `tls`: the certificate chain and key read now, so a missing or
/// unreadable file fails `open` with the setting and the path.
pub(super) fn acceptor(tls: &ServerTls, who: &str) -> Result<TlsAcceptor, ConnectorError> {
    let bad = |setting: &str, path: &Path, e: &dyn std::fmt::Display| {
        ConnectorError::config(format!(
            "{who}: cannot read {} (setting `{setting}`): {e}",
            path.display()
        ))
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert_path)
        .map_err(|e| bad("tls.certPath", &tls.cert_path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("tls.certPath", &tls.cert_path, &e))?;
    if certs.is_empty() {
        return Err(bad("tls.certPath", &tls.cert_path, &"no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_path)
        .map_err(|e| bad("tls.keyPath", &tls.key_path, &e))?;
    // ring rather than aws-lc (no second C build); ring has no post-quantum key
    // exchange, which is what the deprecation is about.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectorError::internal(format!("{who}: TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ConnectorError::config(format!(
                "{who}: the certificate of `tls.certPath` and the key of `tls.keyPath` do not make a TLS server: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener whose connections went through a TLS handshake: a task accepts TCP
/// connections until `stop` and hands each to a handshake task of its own.
pub(super) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener`.
    pub(super) fn new(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        stop: CancellationToken,
    ) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(READY_CONNECTIONS);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, peer)) = accepted else {
                    // Out of descriptors and the like: pause rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    // A client that does not trust the certificate, or speaks plain
                    // http, fails here and is dropped.
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Self { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // Stopped: the server's graceful shutdown ends it.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
