//! TLS for the postgres connector, as libpq's `sslmode` and `sslrootcert` in the URL
//! say: the URL is split into what tokio-postgres parses and the TLS settings, and the
//! connection gets a rustls (ring) configuration verifying as the mode asks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use funnel_core::ConnectorError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// `disable`: no TLS.
    Disable,
    /// `prefer`: TLS when the server offers it, without verifying the certificate.
    Prefer,
    /// `require`: TLS, without verifying the certificate (with `sslrootcert`, as
    /// `verify-ca`, like libpq).
    Require,
    /// `verify-ca`: TLS with a certificate signed by a trusted CA.
    VerifyCa,
    /// `verify-full`: as `verify-ca`, and the certificate names the host.
    VerifyFull,
}

/// The TLS settings of a connection URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// `sslmode` (default `disable`).
    pub mode: SslMode,
    /// `sslrootcert`: the CA certificates (PEM) to verify the server with.
    pub root_cert: Option<PathBuf>,
}

impl Tls {
    /// What tokio-postgres is told: whether to ask for TLS and whether to insist.
    pub(crate) fn tokio_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as T;
        match self.mode {
            SslMode::Disable => T::Disable,
            SslMode::Prefer => T::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => T::Require,
        }
    }

    /// Whether the server's certificate is checked against `sslrootcert`.
    fn verifies(&self) -> bool {
        match self.mode {
            SslMode::Disable | SslMode::Prefer => false,
            SslMode::Require => self.root_cert.is_some(),
            SslMode::VerifyCa | SslMode::VerifyFull => true,
        }
    }

    /// The replication stream's TLS settings for a connection to `host`. Its client
    /// cannot check a certificate's name against an IP address: with `verify-full` to
    /// an IP address the stream checks the chain only (the query connection checks the
    /// name as well).
    pub(crate) fn replication(&self, host: &str) -> pgwire_replication::TlsConfig {
        use pgwire_replication::TlsConfig;
        let by_ip = host.parse::<std::net::IpAddr>().is_ok();
        let mut config = match self.mode {
            SslMode::Disable => TlsConfig::disabled(),
            SslMode::Prefer | SslMode::Require if !self.verifies() => TlsConfig::require(),
            SslMode::VerifyFull if !by_ip => TlsConfig::verify_full(self.root_cert.clone()),
            _ => TlsConfig::verify_ca(self.root_cert.clone()),
        };
        if self.mode == SslMode::Prefer {
            config.mode = pgwire_replication::SslMode::Prefer;
        }
        config
    }

    /// The rustls configuration of a connection; reads `sslrootcert`.
    ///
    /// # Errors
    ///
    /// A configuration error when the CA file cannot be read or holds no certificate.
    pub(crate) fn client_config(&self, who: &str) -> Result<ClientConfig, ConnectorError> {
        // ring rather than aws-lc (no second C build), as the other connectors; ring
        // has no post-quantum key exchange, which is what the deprecation is about.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectorError::internal(format!("{who}: TLS setup: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.verifies() {
            let path = self.root_cert.clone().unwrap_or_else(default_root_cert);
            let roots = Arc::new(roots(&path, who)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| {
                    ConnectorError::config(format!(
                        "{who}: no usable CA certificate in {} (sslrootcert): {e}",
                        path.display()
                    ))
                })?;
            if self.mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(Lenient {
                    chain: Some(webpki),
                    provider,
                })
            }
        } else {
            Arc::new(Lenient {
                chain: None,
                provider,
            })
        };
        Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth())
    }
}

/// libpq's default `sslrootcert`: `~/.postgresql/root.crt`.
fn default_root_cert() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".postgresql/root.crt")
}

fn roots(path: &Path, who: &str) -> Result<RootCertStore, ConnectorError> {
    let pem = std::fs::read(path).map_err(|e| {
        ConnectorError::config(format!(
            "{who}: cannot read the CA certificates {} (sslrootcert in the URL): {e}",
            path.display()
        ))
    })?;
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            ConnectorError::config(format!("{who}: {} is not PEM: {e}", path.display()))
        })?;
        store.add(cert).map_err(|e| {
            ConnectorError::config(format!(
                "{who}: a certificate in {} is not usable: {e}",
                path.display()
            ))
        })?;
    }
    Ok(store)
}

/// Splits `raw` (a URL or a key=value string) into what tokio-postgres parses and the
/// TLS settings (`sslmode`, `sslrootcert`), which are taken out.
///
/// # Errors
///
/// An unknown `sslmode`.
pub(crate) fn split(raw: &str) -> Result<(String, Tls), String> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => {
                mode = Some(match value {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        ));
                    }
                });
                Ok(true)
            }
            "sslrootcert" => {
                root_cert = Some(PathBuf::from(value));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if raw.contains("://") {
        match raw.split_once('?') {
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(key, &percent_decode(value))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => raw.to_owned(),
        }
    } else {
        let mut kept = Vec::new();
        for pair in raw.split_whitespace() {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key.trim(), value.trim().trim_matches('\''))? {
                kept.push(pair);
            }
        }
        kept.join(" ")
    };
    let tls = Tls {
        mode: mode.unwrap_or(SslMode::Disable),
        root_cert,
    };
    Ok((rest, tls))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(
                    u8::try_from(hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)).unwrap_or(b'?'),
                );
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `verify-ca` (with `chain`: the chain must lead to a trusted CA; the name is not
/// checked), and `prefer` and `require` without `sslrootcert` (without `chain`:
/// encrypted, the certificate taken as it is, as libpq does). The handshake signatures
/// are checked either way.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_a_url_and_the_rest_kept() {
        let (rest, tls) = split(
            "postgres://u:p@127.0.0.1:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@127.0.0.1:5432/db?application_name=x");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/tmp/ca.pem")));
        let (rest, tls) = split("host=h user=u sslmode=require dbname=d").unwrap();
        assert_eq!(rest, "host=h user=u dbname=d");
        assert_eq!(tls.mode, SslMode::Require);
        let (rest, tls) = split("postgres://h/db").unwrap();
        assert_eq!(
            (rest.as_str(), tls.mode),
            ("postgres://h/db", SslMode::Disable)
        );
        assert!(split("postgres://h/db?sslmode=sometimes").is_err());
    }

    #[test]
    fn require_with_a_root_certificate_verifies_like_verify_ca() {
        let tls = |mode, root: Option<&str>| Tls {
            mode,
            root_cert: root.map(PathBuf::from),
        };
        assert!(!tls(SslMode::Require, None).verifies());
        assert!(tls(SslMode::Require, Some("/ca.pem")).verifies());
        assert!(tls(SslMode::VerifyCa, None).verifies());
        assert!(!tls(SslMode::Prefer, Some("/ca.pem")).verifies());
    }
}
