//! The typed configuration: what a pipeline file says, with defaults filled in.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::Location;

/// The plugin a dead-letter queue uses when the file names none.
pub const DEFAULT_DLQ_PLUGIN: &str = "builtin:log";

/// The settings a dead-letter queue gets when the file gives none (even when the file
/// names another plugin, as Conduit does).
pub const DEFAULT_DLQ_SETTINGS: [(&str, &str); 2] =
    [("level", "warn"), ("message", "record delivery failed")];

/// One pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// `id`: mandatory, at most 128 characters of `[A-Za-z0-9-_:.]`, unique across every
    /// loaded file. In version 1.x files it is the key of the pipeline's map entry.
    pub id: String,
    /// `status`: whether the pipeline runs at startup. Default [`PipelineStatus::Running`].
    pub status: PipelineStatus,
    /// `name`: at most 128 characters, unique across pipelines (it labels metrics).
    /// Default: the id.
    pub name: String,
    /// `description`: free text of at most 8192 characters. Default empty.
    pub description: String,
    /// `connectors`: sources and destinations, in file order.
    pub connectors: Vec<ConnectorConfig>,
    /// `processors`: pipeline processors, run in file order after the source processors
    /// and before the destination processors.
    pub processors: Vec<ProcessorConfig>,
    /// `dead-letter-queue`: where nacked records go. Defaults in [`DlqConfig`].
    pub dlq: DlqConfig,
    /// Where the pipeline was written (its mapping in the file).
    pub location: Location,
    /// Its configuration path, such as `pipelines[0]` or `pipelines.shop-sync`; error
    /// messages about it start with this.
    pub path: String,
    /// Where each field written in the file was (the value's location), keyed by the
    /// field name as written (`id`, `status`, `name`, ...). In version 1.x files `id` is
    /// the map key.
    pub field_locations: BTreeMap<String, Location>,
}

impl PipelineConfig {
    /// The source connectors, in file order.
    pub fn sources(&self) -> impl Iterator<Item = &ConnectorConfig> {
        self.connectors
            .iter()
            .filter(|c| c.kind == ConnectorKind::Source)
    }

    /// The destination connectors, in file order.
    pub fn destinations(&self) -> impl Iterator<Item = &ConnectorConfig> {
        self.connectors
            .iter()
            .filter(|c| c.kind == ConnectorKind::Destination)
    }

    /// Where `field` was written, or where the pipeline was when the field was not.
    pub fn field_location(&self, field: &str) -> &Location {
        self.field_locations.get(field).unwrap_or(&self.location)
    }

    /// Whether `other` configures the same pipeline: equal in everything but where it
    /// was written (locations and configuration paths), so moving a pipeline within its
    /// file, or editing a comment above it, is no change.
    pub fn same_settings(&self, other: &Self) -> bool {
        self.without_places() == other.without_places()
    }

    fn without_places(&self) -> Self {
        fn processor(p: &ProcessorConfig) -> ProcessorConfig {
            ProcessorConfig {
                setting_locations: BTreeMap::new(),
                location: Location::default(),
                path: String::new(),
                field_locations: BTreeMap::new(),
                ..p.clone()
            }
        }
        Self {
            connectors: self
                .connectors
                .iter()
                .map(|c| ConnectorConfig {
                    setting_locations: BTreeMap::new(),
                    processors: c.processors.iter().map(processor).collect(),
                    location: Location::default(),
                    path: String::new(),
                    field_locations: BTreeMap::new(),
                    ..c.clone()
                })
                .collect(),
            processors: self.processors.iter().map(processor).collect(),
            dlq: DlqConfig {
                setting_locations: BTreeMap::new(),
                location: Location::default(),
                path: String::new(),
                field_locations: BTreeMap::new(),
                ..self.dlq.clone()
            },
            location: Location::default(),
            path: String::new(),
            field_locations: BTreeMap::new(),
            ..self.clone()
        }
    }
}

/// Whether a pipeline runs at startup (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PipelineStatus {
    /// `running`: started at startup. The default (Conduit's code default; its docs say
    /// `stopped`).
    #[default]
    Running,
    /// `stopped`: provisioned but not started.
    Stopped,
}

impl PipelineStatus {
    /// The word used in files: `running` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }
}

impl fmt::Display for PipelineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A source or destination of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorConfig {
    /// `id`: mandatory, unique within its pipeline, characters `[A-Za-z0-9-_:.]`, and
    /// `<pipeline id>:<id>` at most 256 characters. In version 1.x files it is the key of
    /// the connector's map entry.
    pub id: String,
    /// `type`: mandatory, `source` or `destination`.
    pub kind: ConnectorKind,
    /// `plugin`: mandatory plugin reference such as `builtin:file` or `standalone:foo`.
    /// Whether the plugin exists is not checked here.
    pub plugin: String,
    /// `name`: at most 256 characters. Default: the id.
    pub name: String,
    /// `settings`: plugin settings. YAML scalars of any type are kept as written
    /// (`5` is `"5"`, `true` is `"true"`), `null` and an empty value become `""`.
    /// The plugin checks them when the pipeline starts.
    pub settings: BTreeMap<String, String>,
    /// Where each setting's value was written, by setting name.
    pub setting_locations: BTreeMap<String, Location>,
    /// `processors`: source processors on a source, destination processors on a
    /// destination, in file order.
    pub processors: Vec<ProcessorConfig>,
    /// Where the connector was written (its mapping in the file).
    pub location: Location,
    /// Its configuration path, such as `pipelines[0].connectors[1]`.
    pub path: String,
    /// Where each field written in the file was, by field name (`id`, `type`, `plugin`, ...).
    pub field_locations: BTreeMap<String, Location>,
}

impl ConnectorConfig {
    /// Where setting `key` was written, or where the connector was when it was not.
    pub fn setting_location(&self, key: &str) -> &Location {
        self.setting_locations.get(key).unwrap_or(&self.location)
    }

    /// Where `field` was written, or where the connector was when it was not.
    pub fn field_location(&self, field: &str) -> &Location {
        self.field_locations.get(field).unwrap_or(&self.location)
    }
}

/// Whether a connector reads or writes (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectorKind {
    /// `source`: reads records.
    Source,
    /// `destination`: writes records.
    Destination,
}

impl ConnectorKind {
    /// The word used in files: `source` or `destination`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }
}

impl fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A processor: of a pipeline, of a source or of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorConfig {
    /// `id`: mandatory, unique within its list. No character rules (as in Conduit). In
    /// version 1.x files it is the key of the processor's map entry.
    pub id: String,
    /// `plugin` (or `type` in versions 1.x, 2.0 and 2.1; `plugin` wins when both are
    /// set): mandatory processor name such as `field.set`. Whether it exists is not
    /// checked here.
    pub plugin: String,
    /// `condition`: a Go template; the processor runs on a record only when it renders
    /// `true`. `None` (absent or empty) means always.
    pub condition: Option<String>,
    /// `workers`: how many records are processed in parallel (output order is kept).
    /// Default 1; `0` also means 1.
    pub workers: u32,
    /// `timeout` (a Funnel extension, a Go duration such as `30s`): the longest one call
    /// of the processor may take; a call that takes longer fails the run (a transient
    /// error: the pipeline restarts) and the processor is abandoned to it. `None`
    /// (absent, empty or `0`, the default): no bound.
    pub timeout: Option<Duration>,
    /// `settings`: plugin settings, scalars kept as written (see
    /// [`ConnectorConfig::settings`]).
    pub settings: BTreeMap<String, String>,
    /// Where each setting's value was written, by setting name.
    pub setting_locations: BTreeMap<String, Location>,
    /// Where the processor was written (its mapping in the file).
    pub location: Location,
    /// Its configuration path, such as `pipelines[0].processors[2]`.
    pub path: String,
    /// Where each field written in the file was, by field name.
    pub field_locations: BTreeMap<String, Location>,
}

impl ProcessorConfig {
    /// Where setting `key` was written, or where the processor was when it was not.
    pub fn setting_location(&self, key: &str) -> &Location {
        self.setting_locations.get(key).unwrap_or(&self.location)
    }

    /// Where `field` was written, or where the processor was when it was not.
    pub fn field_location(&self, field: &str) -> &Location {
        self.field_locations.get(field).unwrap_or(&self.location)
    }
}

/// The dead-letter queue of a pipeline (`dead-letter-queue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqConfig {
    /// `plugin`: any destination plugin. Default [`DEFAULT_DLQ_PLUGIN`] (`builtin:log`).
    pub plugin: String,
    /// `settings`: the plugin's settings. When `settings` is absent or `null` it is
    /// [`DEFAULT_DLQ_SETTINGS`] (`{level: warn, message: "record delivery failed"}`),
    /// whatever the plugin; an explicit `settings: {}` stays empty.
    pub settings: BTreeMap<String, String>,
    /// Where each setting's value was written (empty for the default settings).
    pub setting_locations: BTreeMap<String, Location>,
    /// `window-size`: how many of the last acks and nacks are looked at. Default 1;
    /// 0 turns the window off, so every nack goes to the DLQ and none stops the pipeline.
    pub window_size: usize,
    /// `window-nack-threshold`: how many nacks the window tolerates; one more stops the
    /// pipeline. Default 0.
    pub window_nack_threshold: usize,
    /// Where the queue was written, or where its pipeline was when it was not.
    pub location: Location,
    /// Its configuration path, such as `pipelines[0].dead-letter-queue`.
    pub path: String,
    /// Where each field written in the file was, by field name.
    pub field_locations: BTreeMap<String, Location>,
}

impl DlqConfig {
    /// The queue of a pipeline whose file says nothing about it.
    pub fn default_at(location: Location, path: impl Into<String>) -> Self {
        Self {
            plugin: DEFAULT_DLQ_PLUGIN.to_owned(),
            settings: default_dlq_settings(),
            setting_locations: BTreeMap::new(),
            window_size: 1,
            window_nack_threshold: 0,
            location,
            path: path.into(),
            field_locations: BTreeMap::new(),
        }
    }

    /// Where setting `key` was written, or where the queue was when it was not.
    pub fn setting_location(&self, key: &str) -> &Location {
        self.setting_locations.get(key).unwrap_or(&self.location)
    }

    /// Where `field` was written, or where the queue was when it was not.
    pub fn field_location(&self, field: &str) -> &Location {
        self.field_locations.get(field).unwrap_or(&self.location)
    }
}

/// [`DEFAULT_DLQ_SETTINGS`] as a map.
pub(crate) fn default_dlq_settings() -> BTreeMap<String, String> {
    DEFAULT_DLQ_SETTINGS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
