//! TLS with a CA made in the test (feature `tls`): a self-signed CA, a server
//! certificate it signs for `localhost` and `127.0.0.1` and a client certificate
//! ([`TestCa`]), the same as PEM files for a server the test starts ([`PemFiles`]), and
//! an axum router served over rustls with them on 127.0.0.1 ([`HttpsServer`]). Clients
//! trust the CA through its PEM file.

// Test setup: a failure to make a key or a certificate fails the test at once.
#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A test CA, and a server and a client certificate it signed.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server's certificate and then the CA's, PEM (a `tls.certPath` file).
    pub server_chain_pem: String,
    /// The server's private key, PKCS #8 PEM (a `tls.keyPath` file).
    pub server_key_pem: String,
    /// A client certificate (common name `funnel`), PEM, for servers that ask for one.
    pub client_pem: String,
    /// The client certificate's private key, PKCS #8 PEM.
    pub client_key_pem: String,
    /// The server's certificate chain (DER).
    chain: Vec<CertificateDer<'static>>,
    /// The server's key (PKCS #8 DER).
    key: Vec<u8>,
}

impl TestCa {
    /// A new CA, a certificate for `localhost` and `127.0.0.1` and a client
    /// certificate, both signed by it.
    ///
    /// # Panics
    ///
    /// When key generation fails.
    pub fn new() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Funnel test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("a CA key"))
            .expect("a self-signed CA");
        let server_key = KeyPair::generate().expect("a server key");
        let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server parameters")
            .signed_by(&server_key, &ca)
            .expect("a server certificate");
        let client_key = KeyPair::generate().expect("a client key");
        let mut client = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        client.distinguished_name.push(DnType::CommonName, "funnel");
        let client = client
            .signed_by(&client_key, &ca)
            .expect("a client certificate");
        Self {
            ca_pem: ca.pem(),
            server_chain_pem: format!("{}{}", server.pem(), ca.pem()),
            server_key_pem: server_key.serialize_pem(),
            client_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
            chain: vec![server.der().clone(), ca.der().clone()],
            key: server_key.serialize_der(),
        }
    }

    /// The server side: a rustls configuration (ring) with the server certificate.
    ///
    /// # Panics
    ///
    /// When rustls refuses the certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        // ring, as the connectors use (its deprecation is about post-quantum exchange).
        #[allow(deprecated)]
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(self.chain.clone(), key)
        .expect("the server certificate");
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A [`TestCa`] as PEM files in a directory of their own (removed when dropped), for a
/// server the test starts and for the connector's `tls.*` settings.
pub struct PemFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server's certificate and then the CA's.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// The client certificate.
    pub client_cert: PathBuf,
    /// The client certificate's private key.
    pub client_key: PathBuf,
    dir: tempfile::TempDir,
}

impl PemFiles {
    /// A new [`TestCa`] written to `ca.pem`, `server.pem`, `server.key`, `client.pem` and
    /// `client.key`.
    ///
    /// # Panics
    ///
    /// When a key cannot be made or a file cannot be written.
    pub fn new() -> Self {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("a directory for the certificates");
        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("a PEM file");
            path
        };
        Self {
            ca: write("ca.pem", &ca.ca_pem),
            server_cert: write("server.pem", &ca.server_chain_pem),
            server_key: write("server.key", &ca.server_key_pem),
            client_cert: write("client.pem", &ca.client_pem),
            client_key: write("client.key", &ca.client_key_pem),
            dir,
        }
    }

    /// The directory the files are in (a server may keep its own files there too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for PemFiles {
    fn default() -> Self {
        Self::new()
    }
}

/// An axum router served over `https` on 127.0.0.1, with the CA's PEM in a file.
pub struct HttpsServer {
    /// Where it listens.
    pub address: SocketAddr,
    /// The PEM file of the CA that signed its certificate.
    pub ca_path: PathBuf,
    _dir: tempfile::TempDir,
    task: JoinHandle<()>,
}

impl HttpsServer {
    /// Serves `router` over `https` with a new [`TestCa`].
    ///
    /// # Panics
    ///
    /// When the server cannot listen or the CA file cannot be written.
    pub async fn start(router: axum::Router) -> Self {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("a directory for the CA");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &ca.ca_pem).expect("the CA file");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("the address");
        let tls = TlsListener {
            listener,
            acceptor: TlsAcceptor::from(ca.server_config()),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(tls, router).await;
        });
        Self {
            address,
            ca_path,
            _dir: dir,
            task,
        }
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.address)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port on 127.0.0.1 that answers every connection with a TLS handshake (the
/// [`TestCa`]'s server certificate for `localhost` and `127.0.0.1`) and then closes it:
/// for tests of what a client says about a certificate it refuses, before any protocol
/// of its own is spoken.
pub struct TlsPort {
    /// Where it listens.
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsPort {
    /// Listens with `ca`'s server certificate.
    ///
    /// # Panics
    ///
    /// When it cannot listen.
    pub async fn start(ca: &TestCa) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("the address");
        let acceptor = TlsAcceptor::from(ca.server_config());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(stream).await;
                });
            }
        });
        Self { address, task }
    }
}

impl Drop for TlsPort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP listener whose connections go through a TLS handshake first; a failed
/// handshake (a client that does not trust the CA) is dropped.
struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, peer)) = self.listener.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
