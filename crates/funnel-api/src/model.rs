//! The resources of the `/v1` API, in Conduit's JSON shape: lowerCamelCase fields,
//! enum values as strings (`STATUS_RUNNING`), every field present.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A pipeline's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PipelineStatus {
    /// Its workers run (or it is starting).
    #[serde(rename = "STATUS_RUNNING")]
    Running,
    /// Stopped by a person, by a signal, or every source is exhausted.
    #[serde(rename = "STATUS_STOPPED")]
    Stopped,
    /// Stopped by an error that needs a person.
    #[serde(rename = "STATUS_DEGRADED")]
    Degraded,
    /// Waiting to restart after a transient error.
    #[serde(rename = "STATUS_RECOVERING")]
    Recovering,
}

/// Where a pipeline's configuration comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ProvisionedBy {
    /// Created through the API; kept in the store, changed and deleted through the API.
    #[serde(rename = "PROVISIONED_BY_API")]
    Api,
    /// Read from a pipeline file; read-only through the API.
    #[serde(rename = "PROVISIONED_BY_CONFIG")]
    Config,
}

/// A pipeline's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineState {
    /// Its status.
    pub status: PipelineStatus,
    /// Why it is degraded or recovering; empty otherwise.
    pub error: String,
}

/// What a pipeline is called and described as.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct PipelineConfig {
    /// Its name: unique across pipelines.
    pub name: String,
    /// Free text.
    pub description: String,
}

/// A pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    /// Its ID.
    pub id: String,
    /// Where it is.
    pub state: PipelineState,
    /// Its name and description.
    pub config: PipelineConfig,
    /// The IDs of its connectors.
    pub connector_ids: Vec<String>,
    /// The IDs of its pipeline processors.
    pub processor_ids: Vec<String>,
    /// Where its configuration comes from (a Funnel addition).
    pub provisioned_by: ProvisionedBy,
    /// When it was created or provisioned (RFC 3339).
    pub created_at: String,
    /// When its configuration last changed (RFC 3339).
    pub updated_at: String,
    /// Records read so far (a Funnel addition).
    pub records_read: u64,
    /// Records acknowledged so far (a Funnel addition).
    pub records_acked: u64,
}

/// Whether a connector reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ConnectorType {
    /// A source.
    #[serde(rename = "TYPE_SOURCE")]
    Source,
    /// A destination.
    #[serde(rename = "TYPE_DESTINATION")]
    Destination,
}

/// A connector's name and settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectorConfig {
    /// Its name.
    pub name: String,
    /// The plugin's settings.
    pub settings: BTreeMap<String, String>,
}

/// A source's or destination's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceState {
    /// The last committed position, as text (empty before the first commit).
    pub position: String,
}

/// A connector of a pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Connector {
    /// Its ID: `<pipeline id>:<connector id>`.
    pub id: String,
    /// Source or destination.
    #[serde(rename = "type")]
    pub kind: ConnectorType,
    /// Its plugin, such as `builtin:file`.
    pub plugin: String,
    /// The pipeline it belongs to.
    pub pipeline_id: String,
    /// Its name and settings.
    pub config: ConnectorConfig,
    /// The IDs of its processors.
    pub processor_ids: Vec<String>,
    /// A source's last committed position; absent for a destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_state: Option<SourceState>,
    /// When it was created or provisioned (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// What a processor is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ParentType {
    /// A pipeline: it sees every record.
    #[serde(rename = "TYPE_PIPELINE")]
    Pipeline,
    /// A connector: it sees that connector's records.
    #[serde(rename = "TYPE_CONNECTOR")]
    Connector,
}

/// A processor's parent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorParent {
    /// A pipeline or a connector.
    #[serde(rename = "type")]
    pub kind: ParentType,
    /// Its ID.
    pub id: String,
}

/// A processor's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessorConfig {
    /// The plugin's settings.
    pub settings: BTreeMap<String, String>,
    /// How many records it processes at once.
    pub workers: u32,
}

/// A processor of a pipeline or connector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Processor {
    /// Its ID: `<parent id>:<processor id>`.
    pub id: String,
    /// Its plugin, such as `builtin:field.set`.
    pub plugin: String,
    /// What it is attached to.
    pub parent: ProcessorParent,
    /// Its settings.
    pub config: ProcessorConfig,
    /// The condition a record must meet to be processed (empty: every record).
    pub condition: String,
    /// When it was created or provisioned (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// The type of a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ParameterType {
    /// Text.
    #[serde(rename = "TYPE_STRING")]
    String,
    /// A whole number.
    #[serde(rename = "TYPE_INT")]
    Int,
    /// A number.
    #[serde(rename = "TYPE_FLOAT")]
    Float,
    /// `true` or `false`.
    #[serde(rename = "TYPE_BOOL")]
    Bool,
    /// A path.
    #[serde(rename = "TYPE_FILE")]
    File,
    /// A Go duration (`90s`).
    #[serde(rename = "TYPE_DURATION")]
    Duration,
}

/// A check a parameter's value must pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    /// `TYPE_REQUIRED`, `TYPE_GREATER_THAN`, `TYPE_LESS_THAN`, `TYPE_INCLUSION`,
    /// `TYPE_EXCLUSION` or `TYPE_REGEX`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The bound, list or pattern (empty for `TYPE_REQUIRED`).
    pub value: String,
}

/// A plugin parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Parameter {
    /// What it does.
    pub description: String,
    /// Its default (empty when it has none).
    pub default: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ParameterType,
    /// What its value must pass.
    pub validations: Vec<Validation>,
}

/// A connector plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorPlugin {
    /// Its reference, such as `builtin:file`.
    pub name: String,
    /// One line on what it does.
    pub summary: String,
    /// What it does.
    pub description: String,
    /// Its version.
    pub version: String,
    /// Who wrote it.
    pub author: String,
    /// Its parameters as a source (empty when it is no source).
    pub source_params: BTreeMap<String, Parameter>,
    /// Its parameters as a destination (empty when it is no destination).
    pub destination_params: BTreeMap<String, Parameter>,
}

/// A processor plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorPlugin {
    /// Its reference, such as `builtin:field.set`.
    pub name: String,
    /// One line on what it does.
    pub summary: String,
    /// What it does.
    pub description: String,
    /// Its version.
    pub version: String,
    /// Who wrote it.
    pub author: String,
    /// Its parameters.
    pub parameters: BTreeMap<String, Parameter>,
}

/// `POST /v1/pipelines/{id}/stop`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct StopRequest {
    /// Stop at once, without delivering the records in flight (they are read again
    /// after the next start).
    pub force: bool,
}

/// `POST /v1/pipelines` and `PUT /v1/pipelines/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct PipelineRequest {
    /// Its name and description.
    pub config: PipelineConfig,
}

/// `POST /v1/connectors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateConnectorRequest {
    /// Source or destination.
    #[serde(rename = "type")]
    pub kind: ConnectorType,
    /// Its plugin, such as `builtin:file`.
    pub plugin: String,
    /// The pipeline to add it to.
    pub pipeline_id: String,
    /// Its name (also its ID within the pipeline) and settings.
    #[serde(default)]
    pub config: ConnectorConfig,
}

/// `PUT /v1/connectors/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct UpdateConnectorRequest {
    /// Its new name and settings.
    pub config: ConnectorConfig,
    /// Its new plugin; empty keeps the plugin.
    pub plugin: String,
}

/// `GET /info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// Funnel's version.
    pub version: String,
    /// The operating system (`linux`).
    pub os: String,
    /// The processor architecture (`x86_64`).
    pub arch: String,
}

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `SERVING`.
    pub status: String,
}

/// `GET /v1/pipelines`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineList {
    /// The pipelines, by ID.
    pub pipelines: Vec<Pipeline>,
    /// The pipeline files that could not be used, each with its first error (a Funnel
    /// addition).
    #[serde(default)]
    pub invalid_files: Vec<InvalidFile>,
}

/// A pipeline file that could not be used: its pipelines do not run (or keep running
/// their previous configuration, after a reload).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvalidFile {
    /// The file.
    pub file: String,
    /// The line of its first error (1-based; 0 for the whole file).
    pub line: u64,
    /// The column of its first error (1-based; 0 for the whole file).
    pub column: u64,
    /// Its first error, `file:line:column: setting: message`, and how many more.
    pub error: String,
    /// Its pipelines that keep running their previous configuration.
    pub kept_pipelines: Vec<String>,
}

/// `GET /readyz`: Conduit's newer shape, with what is not ready.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// `ready` (HTTP 200) or `not_ready` (HTTP 503).
    pub status: String,
    /// The pipelines.
    pub pipelines: ReadyPipelines,
    /// Every reason it is not ready, one line each: a pipeline starting, recovering,
    /// degraded or stalled, a pipeline file that could not be used, a connector failing
    /// its connection test (a Funnel addition).
    pub not_ready: Vec<String>,
    /// With `--cluster.enabled`: the live instances and which runs which pipeline
    /// (a Funnel addition).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cluster: Option<Cluster>,
}

/// The pipeline counts of [`Readiness`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadyPipelines {
    /// Every pipeline.
    pub total: u64,
    /// Those running.
    pub running: u64,
    /// Those degraded.
    pub degraded: u64,
    /// The IDs of those degraded.
    pub degraded_pipelines: Vec<String>,
    /// The pipeline files that could not be used (a Funnel addition).
    pub invalid_files: Vec<InvalidFile>,
}

/// A pipeline's dead-letter queue: where records that fail are written, and how many
/// failures stop the pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct DeadLetterQueue {
    /// A destination plugin, such as `builtin:log` (empty: `builtin:log`).
    pub plugin: String,
    /// Its settings.
    pub settings: BTreeMap<String, String>,
    /// How many of the last acks and nacks are looked at (0: every nack goes to the
    /// queue and none stops the pipeline).
    pub window_size: u64,
    /// How many nacks the window tolerates; one more stops the pipeline.
    pub window_nack_threshold: u64,
}

/// `POST /v1/connectors/validate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidateConnectorRequest {
    /// Source or destination.
    #[serde(rename = "type")]
    pub kind: ConnectorType,
    /// Its plugin, such as `builtin:file`.
    pub plugin: String,
    /// Its name and settings.
    #[serde(default)]
    pub config: ConnectorConfig,
}

/// `POST /v1/processors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateProcessorRequest {
    /// Its plugin, such as `field.set` or `builtin:field.set`.
    pub plugin: String,
    /// The pipeline or connector to attach it to.
    pub parent: ProcessorParent,
    /// Its settings.
    #[serde(default)]
    pub config: ProcessorConfig,
    /// The condition a record must meet to be processed (empty: every record).
    #[serde(default)]
    pub condition: String,
}

/// `PUT /v1/processors/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct UpdateProcessorRequest {
    /// Its new settings.
    pub config: ProcessorConfig,
    /// Its new condition (empty: every record).
    pub condition: String,
}

/// `GET /v1/connectors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorList {
    /// The connectors.
    pub connectors: Vec<Connector>,
}

/// `GET /v1/processors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorList {
    /// The processors.
    pub processors: Vec<Processor>,
}

/// `GET /v1/connectors/plugins`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorPluginList {
    /// The plugins.
    pub plugins: Vec<ConnectorPlugin>,
}

/// `GET /v1/processors/plugins`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorPluginList {
    /// The plugins.
    pub plugins: Vec<ProcessorPlugin>,
}

/// An answer with nothing to say (`{}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Empty {}

/// `GET /v1/cluster`: who runs what in a fleet of instances sharing one store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// This instance.
    pub instance: String,
    /// Every live instance, sorted.
    pub instances: Vec<String>,
    /// Every pipeline of the fleet, by ID.
    pub pipelines: Vec<ClusterPipeline>,
}

/// One pipeline of a [`Cluster`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPipeline {
    /// The pipeline's ID.
    pub id: String,
    /// The instance running it; empty when none holds its lease.
    pub instance: String,
    /// How many times its lease was claimed.
    pub epoch: i64,
}
