//! TLS settings several connectors share: the `tls.*` PEM files of MQTT, Redis and
//! RabbitMQ ([`TlsFileSettings`]), and the rule every connector with a client
//! certificate follows, that the certificate and its key are set together
//! ([`client_pair`]).

use std::path::PathBuf;

use crate::SettingsError;

funnel_core::settings! {
    /// TLS from PEM files, read at open (MQTT, Redis, RabbitMQ). What else turns TLS
    /// on (a URL scheme) and which roots are trusted without a CA file is the
    /// connector's, in `docs/connectors.md`.
    pub struct TlsFileSettings {
        /// Connect with TLS.
        pub enabled: bool = "tls.enabled" (default "false"),
        /// Path to the CA certificate (PEM) that signed the server's certificate.
        pub ca_cert: Option<PathBuf> = "tls.caCert",
        /// Path to the client certificate (PEM), for client-certificate
        /// authentication; goes with tls.clientKey.
        pub client_cert: Option<PathBuf> = "tls.clientCert",
        /// Path to the client certificate's private key (PEM); goes with
        /// tls.clientCert.
        pub client_key: Option<PathBuf> = "tls.clientKey",
    }
}

/// Validated `tls.*` files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `tls.enabled`.
    pub enabled: bool,
    /// `tls.caCert`.
    pub ca_cert: Option<PathBuf>,
    /// `tls.clientCert` and `tls.clientKey`.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

impl TlsFileSettings {
    /// The validated files; a client certificate without its key (or the other way
    /// round) goes to `errors`.
    pub fn validate(self, errors: &mut Vec<SettingsError>) -> TlsFiles {
        TlsFiles {
            enabled: self.enabled,
            ca_cert: self.ca_cert,
            client_auth: client_pair(
                self.client_cert,
                self.client_key,
                ["tls.clientCert", "tls.clientKey"],
                errors,
            ),
        }
    }
}

/// A client certificate and its key, named by the settings `names` (certificate,
/// key): both or neither. One alone is an error of the missing one's setting, pushed to
/// `errors`, and gives `None`.
pub fn client_pair<T>(
    cert: Option<T>,
    key: Option<T>,
    names: [&str; 2],
    errors: &mut Vec<SettingsError>,
) -> Option<(T, T)> {
    let [cert_name, key_name] = names;
    match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (cert, _) => {
            errors.push(SettingsError::new(
                if cert.is_some() { key_name } else { cert_name },
                format!("{cert_name} and {key_name} go together: set both or neither"),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_without_its_key_is_an_error_of_the_key_and_the_other_way_round() {
        let mut errors = Vec::new();
        assert_eq!(client_pair(Some(1), None, ["c", "k"], &mut errors), None);
        assert_eq!(client_pair(None, Some(2), ["c", "k"], &mut errors), None);
        let settings: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(settings, ["k", "c"]);
        assert_eq!(
            errors[0].message,
            "c and k go together: set both or neither"
        );
        assert_eq!(
            client_pair(Some(1), Some(2), ["c", "k"], &mut errors),
            Some((1, 2))
        );
        assert_eq!(client_pair::<u8>(None, None, ["c", "k"], &mut errors), None);
        assert_eq!(errors.len(), 2);
    }
}
