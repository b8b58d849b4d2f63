//! What Funnel keeps for a plugin connector between runs: its last active
//! configuration, the one its last lifecycle event was sent with. Conduit compares it
//! with the configuration of each start to send `LifecycleOnCreated` (there is none),
//! `LifecycleOnUpdated` (it differs) or nothing, and sends it with
//! `LifecycleOnDeleted` when the connector is deleted.

use std::sync::Arc;

use funnel_core::ConnectorError;
use funnel_store::Store;
use tonic::transport::Channel;

use crate::connector::{Config, delete};
use crate::pb::connector::v2::destination_plugin_client::DestinationPluginClient;
use crate::pb::connector::v2::source_plugin_client::SourcePluginClient;
use crate::process::HostOptions;
use crate::spec::PluginSpec;

/// Which side of its plugin a connector runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A source.
    Source,
    /// A destination.
    Destination,
}

/// The store kind of the last active configurations: connector ID
/// (`<pipeline>:<connector>`) to the configuration as a JSON object.
pub const LAST_ACTIVE: &str = "plugins.lastActive";

/// The last active configuration of one connector, in a store.
#[derive(Clone)]
pub struct LastActive {
    store: Arc<dyn Store>,
    connector_id: String,
}

impl std::fmt::Debug for LastActive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastActive")
            .field("connector_id", &self.connector_id)
            .finish_non_exhaustive()
    }
}

impl LastActive {
    /// The last active configuration of connector `connector_id`
    /// (`<pipeline>:<connector>`) in `store`.
    pub fn new(store: Arc<dyn Store>, connector_id: &str) -> Self {
        Self {
            store,
            connector_id: connector_id.to_owned(),
        }
    }

    /// Tells the plugin `spec` that runs this connector as `role` that the connector
    /// is deleted, when it has a last active configuration: the plugin is started
    /// and given `LifecycleOnDeleted` with it (no `Configure`, no `Open`, as in
    /// Conduit), then `Teardown`, and the configuration is forgotten. Returns whether
    /// the plugin was told.
    ///
    /// # Errors
    ///
    /// When the plugin cannot be started or fails `OnDeleted` (the configuration is
    /// kept, so the deletion can be retried), or the store fails.
    pub async fn delete(
        &self,
        spec: &PluginSpec,
        role: Role,
        options: &HostOptions,
    ) -> Result<bool, ConnectorError> {
        match role {
            Role::Source => delete::<SourcePluginClient<Channel>>(spec, self, options).await,
            Role::Destination => {
                delete::<DestinationPluginClient<Channel>>(spec, self, options).await
            }
        }
    }

    /// The connector's ID.
    pub(crate) fn connector_id(&self) -> &str {
        &self.connector_id
    }

    /// The configuration, or `None` when the connector never started (which differs
    /// from an empty configuration).
    ///
    /// # Errors
    ///
    /// When the store cannot be read or holds something that is not a configuration.
    pub(crate) async fn get(&self) -> Result<Option<Config>, ConnectorError> {
        let stored = self
            .store
            .entry(LAST_ACTIVE, &self.connector_id)
            .await
            .map_err(ConnectorError::transient)?;
        stored
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| {
                    ConnectorError::internal(format!(
                        "the last active configuration of connector {} in the store is not a \
                         JSON object of strings: {e}",
                        self.connector_id
                    ))
                })
            })
            .transpose()
    }

    /// Records `config` as the last active configuration.
    pub(crate) async fn set(&self, config: &Config) -> Result<(), ConnectorError> {
        let sorted: std::collections::BTreeMap<&String, &String> = config.iter().collect();
        let bytes = serde_json::to_vec(&sorted).map_err(ConnectorError::internal)?;
        self.store
            .set_entry(LAST_ACTIVE, &self.connector_id, &bytes)
            .await
            .map_err(ConnectorError::transient)
    }

    /// Forgets it: the connector is deleted.
    pub(crate) async fn forget(&self) -> Result<(), ConnectorError> {
        self.store
            .delete_entry(LAST_ACTIVE, &self.connector_id)
            .await
            .map_err(ConnectorError::transient)
    }
}
