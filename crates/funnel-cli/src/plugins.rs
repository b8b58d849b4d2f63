//! Conduit's standalone connector plugins: where they are, the limits they run with,
//! and their discovery at startup (`funnel run`, `funnel pipelines validate`,
//! `funnel pipelines delete`).

use std::path::PathBuf;
use std::time::Duration;

/// The settings of standalone connector plugins.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ConnectorsArgs {
    /// The directory of standalone connector plugins (Conduit's); each executable in
    /// it is asked for its specification at startup.
    #[arg(
        long = "connectors.path",
        env = "FUNNEL_CONNECTORS_PATH",
        default_value = "./connectors"
    )]
    pub(crate) connectors_path: PathBuf,
    /// The largest gRPC message a standalone plugin accepts, in bytes
    /// (`CONDUIT_CONNECTOR_MAX_RECEIVE_RECORD_SIZE`).
    #[arg(
        long = "connectors.max-receive-record-size",
        env = "FUNNEL_CONNECTORS_MAX_RECEIVE_RECORD_SIZE",
        default_value = "4194304"
    )]
    pub(crate) connectors_max_receive_record_size: u64,
    /// How long one call to a standalone plugin (Configure, Open, Stop, Teardown, a
    /// lifecycle event, Specify) may take before its connector fails (a Go duration).
    #[arg(
        long = "connectors.call-timeout",
        env = "FUNNEL_CONNECTORS_CALL_TIMEOUT",
        default_value = "1m",
        value_parser = crate::parse_go_duration
    )]
    pub(crate) connectors_call_timeout: Duration,
}

/// What discovery leaves running: the schema service, whose schemas go to the store
/// once it is open.
#[derive(Clone, Debug, Default)]
pub(crate) struct Host {
    #[cfg(feature = "standalone")]
    schemas: Option<funnel_runtime::funnel_plugins::schema::SchemaServer>,
}

impl Host {
    /// Keeps the schemas plugins register in `store` (those it holds are served).
    pub(crate) async fn attach(&self, store: &std::sync::Arc<dyn funnel_store::Store>) {
        #[cfg(feature = "standalone")]
        if let Some(schemas) = &self.schemas
            && let Err(e) = schemas.attach(std::sync::Arc::clone(store)).await
        {
            tracing::warn!(
                "the schemas of standalone connectors cannot be read from the store: {e}; \
                 new ones are kept in memory only"
            );
        }
        #[cfg(not(feature = "standalone"))]
        let _ = store;
    }
}

impl ConnectorsArgs {
    /// Finds the plugins of the connectors directory and makes them the ones pipelines
    /// can use. `log_level` is the level plugins log at.
    #[cfg(feature = "standalone")]
    pub(crate) async fn discover(&self, log_level: &str) -> Host {
        use funnel_runtime::funnel_plugins::schema::SchemaServer;
        use funnel_runtime::funnel_plugins::{Catalogue, HostOptions};
        let level = log_level
            .split(',')
            .find(|part| !part.contains('='))
            .unwrap_or("info")
            .to_ascii_lowercase();
        let level = match level.as_str() {
            "trace" | "debug" | "info" | "warn" | "error" => level,
            _ => "info".to_owned(),
        };
        if !holds_files(&self.connectors_path) {
            // No plugin to run: no schema service either (nor its port and task).
            funnel_runtime::registry::set_standalone(Catalogue::default());
            return Host::default();
        }
        let mut options = HostOptions {
            call_timeout: self.connectors_call_timeout,
            log_level: level,
            max_receive_record_size: self.connectors_max_receive_record_size,
            ..HostOptions::default()
        };
        // Served before discovery, as Conduit does: every plugin gets its address.
        let schemas = SchemaServer::new(options.tokens.clone());
        let served = match schemas.clone().serve().await {
            Ok(address) => {
                options.utilities_target = address.to_string();
                Some(schemas)
            }
            Err(e) => {
                tracing::warn!(
                    "cannot serve the schema service to standalone connectors: {e}; a plugin \
                     that registers schemas will fail"
                );
                None
            }
        };
        let catalogue = Catalogue::discover(&self.connectors_path, &options).await;
        funnel_runtime::registry::set_standalone(catalogue);
        Host { schemas: served }
    }

    /// Without the `standalone` feature there is nothing to find.
    #[cfg(not(feature = "standalone"))]
    pub(crate) async fn discover(&self, _log_level: &str) -> Host {
        Host::default()
    }
}

/// True unless `dir` is missing or holds nothing but directories (the files of the
/// connectors directory are its plugins). A directory that cannot be read counts as
/// holding files, so discovery reports why.
#[cfg(feature = "standalone")]
fn holds_files(dir: &std::path::Path) -> bool {
    funnel_runtime::funnel_plugins::catalogue::plugin_files(dir).map_or_else(
        |e| e.kind() != std::io::ErrorKind::NotFound,
        |files| !files.is_empty(),
    )
}

#[cfg(all(test, feature = "standalone"))]
mod tests {
    use super::*;

    #[test]
    fn a_connectors_directory_holds_plugins_only_when_it_has_a_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!holds_files(&dir.path().join("missing")));
        assert!(!holds_files(dir.path()));
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert!(!holds_files(dir.path()));
        std::fs::write(dir.path().join("plugin"), b"#!/bin/sh\n").unwrap();
        assert!(holds_files(dir.path()));
    }
}
