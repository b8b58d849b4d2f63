//! What the HTTP API sees of and does to `funnel run`'s pipelines: statuses, totals
//! and connection tests for `/readyz`, and Conduit's `/v1` resources.
//!
//! Pipelines come from files (read-only through the API, as in Conduit) or are
//! created through the API. Those are kept in the store as a [`Document`] (JSON) and
//! started again on the next run when they were running; their configuration is
//! checked exactly as a file's: the document is written out as a pipeline file (JSON
//! is YAML) and loaded and validated like one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use funnel_api::model::{self, ProvisionedBy};
use funnel_api::{BoxFuture, Status};
use funnel_config::{ConnectorKind, PipelineConfig};
use funnel_core::{ComponentKind, WorkerStats};
use funnel_runtime::{Overview, PipelineState, PipelineStatus, Supervisor};
use funnel_store::Store;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// A pipeline created through the API, as the store keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Document {
    id: String,
    name: String,
    description: String,
    /// Whether it was running when last started or stopped through the API: it is
    /// started again on the next run.
    running: bool,
    connectors: Vec<DocumentConnector>,
    /// Pipeline processors.
    #[serde(default)]
    processors: Vec<DocumentProcessor>,
    /// The dead-letter queue, when set through the API (otherwise the default one).
    #[serde(default)]
    dlq: Option<model::DeadLetterQueue>,
    /// Unix seconds.
    created_at: i64,
    updated_at: i64,
}

/// A processor of a [`Document`] or of one of its connectors.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DocumentProcessor {
    id: String,
    plugin: String,
    settings: BTreeMap<String, String>,
    workers: u32,
    condition: String,
}

impl DocumentProcessor {
    fn to_file(&self) -> serde_json::Value {
        let mut value = serde_json::json!({
            "id": self.id, "plugin": self.plugin, "settings": self.settings,
            "workers": self.workers.max(1),
        });
        if !self.condition.is_empty() {
            value["condition"] = self.condition.clone().into();
        }
        value
    }
}

/// A connector of a [`Document`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DocumentConnector {
    id: String,
    /// `source` or `destination`.
    #[serde(rename = "type")]
    kind: String,
    plugin: String,
    name: String,
    settings: BTreeMap<String, String>,
    #[serde(default)]
    processors: Vec<DocumentProcessor>,
}

impl DocumentConnector {
    /// A connector named `id` (its name too), without processors.
    fn new(
        id: String,
        kind: model::ConnectorType,
        plugin: String,
        settings: BTreeMap<String, String>,
    ) -> Self {
        let kind = match kind {
            model::ConnectorType::Source => "source",
            model::ConnectorType::Destination => "destination",
        };
        Self {
            name: id.clone(),
            id,
            kind: kind.to_owned(),
            plugin,
            settings,
            processors: Vec::new(),
        }
    }
}

impl Document {
    /// The processors of the pipeline (`connector` `None`) or of its connector at index
    /// `connector`.
    fn processors_mut(&mut self, connector: Option<usize>) -> &mut Vec<DocumentProcessor> {
        match connector {
            None => &mut self.processors,
            Some(c) => &mut self.connectors[c].processors,
        }
    }

    /// The document as a pipeline file: JSON, which the YAML loader reads.
    fn to_file(&self, status: &str) -> String {
        let connectors: Vec<serde_json::Value> = self
            .connectors
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id, "type": c.kind, "plugin": c.plugin, "name": c.name,
                    "settings": c.settings,
                    "processors": c.processors.iter().map(DocumentProcessor::to_file).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut pipeline = serde_json::json!({
            "id": self.id, "status": status, "name": self.name,
            "description": self.description, "connectors": connectors,
            "processors": self.processors.iter().map(DocumentProcessor::to_file).collect::<Vec<_>>(),
        });
        if let Some(dlq) = &self.dlq {
            let plugin = if dlq.plugin.is_empty() {
                "builtin:log"
            } else {
                dlq.plugin.as_str()
            };
            pipeline["dead-letter-queue"] = serde_json::json!({
                "plugin": plugin, "settings": dlq.settings, "window-size": dlq.window_size,
                "window-nack-threshold": dlq.window_nack_threshold,
            });
        }
        serde_json::json!({"version": "2.2", "pipelines": [pipeline]}).to_string()
    }

    /// Its configuration, checked as a pipeline file's is (plugins and settings), as
    /// `running` or `stopped`.
    fn config(&self, status: &str) -> Result<PipelineConfig, Status> {
        let text = self.to_file(status);
        let file = format!("api:{}", self.id);
        let loaded = funnel_config::parse(
            &text,
            Path::new(&file),
            &funnel_config::LoadOptions::default(),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        funnel_runtime::registry::validate(&loaded.pipelines)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        loaded
            .pipelines
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("the pipeline document holds no pipeline"))
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn rfc3339(secs: i64) -> String {
    funnel_record::Timestamp::new(secs, 0)
        .unwrap_or(funnel_record::Timestamp::UNIX_EPOCH)
        .to_rfc3339()
}

/// A pipeline ID or connector name: 1 to 128 of `[A-Za-z0-9-_.]`.
/// The IDs of a pipeline's connectors or processors, as the API gives them:
/// `<pipeline>:<id>`.
fn qualified<'a>(pipeline: &str, ids: impl Iterator<Item = &'a String>) -> Vec<String> {
    ids.map(|id| format!("{pipeline}:{id}")).collect()
}

fn check_id(what: &str, id: &str) -> Result<(), Status> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{what} {id:?} must be 1 to 128 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// `funnel run`'s pipelines as the API sees and changes them: those of the files (from
/// the supervisor's overview) and those created through the API (their documents).
pub(crate) struct Control {
    supervisor: Arc<Supervisor>,
    /// This instance's part in a fleet (`--cluster.enabled`).
    cluster: Option<Arc<funnel_runtime::cluster::Cluster>>,
    overview: Arc<Overview>,
    documents: Mutex<BTreeMap<String, Document>>,
    store: Arc<dyn Store>,
    started_at: i64,
}

impl Control {
    /// Reads the pipelines created through the API from the store and starts those
    /// that were running (one whose ID a file pipeline has is skipped with a warning).
    pub(crate) async fn start(
        supervisor: Arc<Supervisor>,
        store: Arc<dyn Store>,
        cluster: Option<Arc<funnel_runtime::cluster::Cluster>>,
    ) -> Result<Arc<Self>, funnel_store::StoreError> {
        let overview = supervisor.overview();
        let mut documents = BTreeMap::new();
        for (id, bytes) in store.documents().await? {
            let document: Document = match serde_json::from_slice(&bytes) {
                Ok(d) => d,
                Err(e) => {
                    warn!(pipeline = %id, error = %e, "skipping a pipeline kept in the store: its document cannot be read");
                    continue;
                }
            };
            if overview.pipelines().iter().any(|p| p.id == id) {
                warn!(pipeline = %id, "a pipeline file has the ID of a pipeline created through the API; the file's runs");
                continue;
            }
            if document.running {
                match document.config("running") {
                    Ok(config) => {
                        supervisor.start_configured(config).await;
                    }
                    Err(e) => {
                        warn!(pipeline = %id, error = %e, "a pipeline created through the API cannot start");
                    }
                }
            }
            documents.insert(id, document);
        }
        Ok(Arc::new(Self {
            supervisor,
            cluster,
            overview,
            documents: Mutex::new(documents),
            store,
            started_at: now(),
        }))
    }

    fn documents(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Document>> {
        self.documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self, id: &str) -> Option<Arc<PipelineState>> {
        self.overview.pipelines().into_iter().find(|p| p.id == id)
    }

    fn is_active(&self, id: &str) -> bool {
        self.state(id).is_some_and(|s| !s.current().is_terminal())
    }

    /// Every pipeline's configuration, where it comes from, and when it was created
    /// and changed: the files' and then the API's.
    fn configs(&self) -> Vec<(PipelineConfig, ProvisionedBy, i64, i64)> {
        let documents = self.documents().clone();
        let mut all: Vec<_> = self
            .overview
            .pipelines()
            .iter()
            .filter(|s| !documents.contains_key(&s.id))
            .map(|s| {
                (
                    s.config().as_ref().clone(),
                    ProvisionedBy::Config,
                    self.started_at,
                    self.started_at,
                )
            })
            .collect();
        all.extend(documents.values().filter_map(|d| {
            d.config("stopped")
                .ok()
                .map(|c| (c, ProvisionedBy::Api, d.created_at, d.updated_at))
        }));
        all
    }

    /// Saves `document` in the store.
    async fn save(&self, document: &Document) -> Result<(), Status> {
        let bytes = serde_json::to_vec(document)
            .map_err(|e| Status::internal(format!("cannot encode the pipeline: {e}")))?;
        self.store
            .set_document(&document.id, &bytes)
            .await
            .map_err(|e| Status::internal(e.to_string()))
    }

    /// The document of API pipeline `id` to change: it must exist, come from the API
    /// and be stopped.
    fn editable(&self, id: &str) -> Result<Document, Status> {
        let document = self.documents().get(id).cloned();
        let Some(document) = document else {
            if self.state(id).is_some() {
                return Err(Status::failed_precondition(format!(
                    "pipeline {id:?} is provisioned from a file and read-only through the \
                     API; change its file instead"
                )));
            }
            return Err(Status::not_found(format!("pipeline {id:?} not found")));
        };
        if self.is_active(id) {
            return Err(Status::failed_precondition(format!(
                "pipeline {id:?} is running; stop it first"
            )));
        }
        Ok(document)
    }

    /// Checks a changed document (it must make a valid pipeline), saves it and puts it
    /// in place; returns its pipeline configuration.
    async fn replace_valid(&self, document: Document) -> Result<PipelineConfig, Status> {
        let config = document.config("stopped")?;
        self.replace(document).await?;
        Ok(config)
    }

    /// Saves a changed document and puts it in place.
    async fn replace(&self, mut document: Document) -> Result<(), Status> {
        document.updated_at = now();
        self.save(&document).await?;
        self.documents().insert(document.id.clone(), document);
        Ok(())
    }

    fn pipeline(&self, id: &str) -> Result<model::Pipeline, Status> {
        use funnel_api::Pipelines;
        self.pipelines()
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Status::not_found(format!("pipeline {id:?} not found")))
    }

    fn connector(&self, id: &str) -> Result<model::Connector, Status> {
        use funnel_api::Pipelines;
        self.connectors()
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Status::not_found(format!("connector {id:?} not found")))
    }

    /// The API pipeline holding connector `id` (`<pipeline>:<connector>`), stopped.
    fn connector_owner(&self, id: &str) -> Result<(Document, usize), Status> {
        let pipeline = self.connector(id)?.pipeline_id;
        let document = self.editable(&pipeline)?;
        let index = document
            .connectors
            .iter()
            .position(|c| format!("{pipeline}:{}", c.id) == id)
            .ok_or_else(|| Status::not_found(format!("connector {id:?} not found")))?;
        Ok((document, index))
    }
}

impl Control {
    /// Tells the standalone plugin running connector `connector` of the API pipeline
    /// `document` that it is deleted, when it ever started (`LifecycleOnDeleted` with
    /// its last active configuration, which is then forgotten).
    async fn delete_plugin_connector(
        &self,
        document: &Document,
        connector: &str,
    ) -> Result<(), Status> {
        // A document that no longer checks (a plugin gone) has nothing to tell.
        let Ok(config) = document.config("stopped") else {
            return Ok(());
        };
        let Some(found) = config.connectors.iter().find(|c| c.id == connector) else {
            return Ok(());
        };
        funnel_runtime::build::delete_connector(&config, found, &self.store)
            .await
            .map(drop)
            .map_err(|e| Status::internal(e.to_string()))
    }

    /// The API pipeline holding processor `id` (`<pipeline>:<processor>` or
    /// `<pipeline>:<connector>:<processor>`), stopped: the document, the index of the
    /// connector (none for a pipeline processor) and of the processor.
    fn processor_owner(&self, id: &str) -> Result<(Document, Option<usize>, usize), Status> {
        use funnel_api::Pipelines;
        let processor = self
            .processors()
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Status::not_found(format!("processor {id:?} not found")))?;
        let pipeline = match processor.parent.kind {
            model::ParentType::Pipeline => processor.parent.id.clone(),
            model::ParentType::Connector => self.connector(&processor.parent.id)?.pipeline_id,
        };
        let document = self.editable(&pipeline)?;
        let found = |list: &[DocumentProcessor], parent: &str| {
            list.iter().position(|p| format!("{parent}:{}", p.id) == id)
        };
        if let Some(index) = found(&document.processors, &document.id) {
            return Ok((document, None, index));
        }
        for (c, connector) in document.connectors.iter().enumerate() {
            if let Some(index) = found(
                &connector.processors,
                &format!("{pipeline}:{}", connector.id),
            ) {
                return Ok((document, Some(c), index));
            }
        }
        Err(Status::not_found(format!("processor {id:?} not found")))
    }

    fn processor(&self, id: &str) -> Result<model::Processor, Status> {
        use funnel_api::Pipelines;
        self.processors()
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| Status::not_found(format!("processor {id:?} not found")))
    }
}

/// The connector plugins of this process, in the API's shape: those built in, then the
/// standalone plugins found in the connectors directory.
pub(crate) fn connector_plugins() -> Vec<model::ConnectorPlugin> {
    let plugins = builtin_connector_plugins();
    #[cfg(feature = "standalone")]
    let plugins = [plugins, standalone_connector_plugins()].concat();
    plugins
}

/// The standalone connector plugins found in the connectors directory, by name then
/// version, with the parameters their specifications declare.
#[cfg(feature = "standalone")]
fn standalone_connector_plugins() -> Vec<model::ConnectorPlugin> {
    use funnel_runtime::funnel_plugins::spec::{Check, Param};
    let parameters = |params: &Option<BTreeMap<String, Param>>| {
        params
            .iter()
            .flatten()
            .map(|(name, p)| {
                let validations = p
                    .checks
                    .iter()
                    .map(|check| {
                        let (kind, value) = match check {
                            Check::Required => ("TYPE_REQUIRED", String::new()),
                            Check::GreaterThan(bound) => ("TYPE_GREATER_THAN", bound.to_string()),
                            Check::LessThan(bound) => ("TYPE_LESS_THAN", bound.to_string()),
                            Check::Inclusion(list) => ("TYPE_INCLUSION", list.join(",")),
                            Check::Exclusion(list) => ("TYPE_EXCLUSION", list.join(",")),
                            Check::Regex(regex) => ("TYPE_REGEX", regex.as_str().to_owned()),
                        };
                        model::Validation {
                            kind: kind.to_owned(),
                            value,
                        }
                    })
                    .collect();
                let kind = parameter_type(p.kind);
                let parameter = model::Parameter {
                    description: p.description.clone(),
                    default: p.default.clone(),
                    kind,
                    validations,
                };
                (name.clone(), parameter)
            })
            .collect()
    };
    funnel_runtime::registry::standalone()
        .map(|catalogue| catalogue.plugins())
        .unwrap_or_default()
        .iter()
        .map(|spec| model::ConnectorPlugin {
            name: spec.full_name(),
            summary: spec.summary.clone(),
            description: spec.description.clone(),
            version: spec.version.clone(),
            author: spec.author.clone(),
            source_params: parameters(&spec.source_params),
            destination_params: parameters(&spec.destination_params),
        })
        .collect()
}

/// The connector plugins built into this binary, in the API's shape.
fn builtin_connector_plugins() -> Vec<model::ConnectorPlugin> {
    let mut plugins: BTreeMap<String, model::ConnectorPlugin> = BTreeMap::new();
    for c in funnel_runtime::registry::registry().components() {
        let params = match c.kind() {
            ComponentKind::Processor => continue,
            _ => parameters(c.settings()),
        };
        let name = format!("builtin:{}", c.name);
        let plugin = plugins
            .entry(name.clone())
            .or_insert_with(|| model::ConnectorPlugin {
                name,
                summary: c.summary.to_owned(),
                description: c.summary.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                author: "Funnel".to_owned(),
                source_params: BTreeMap::new(),
                destination_params: BTreeMap::new(),
            });
        if c.kind() == ComponentKind::Source {
            plugin.source_params = params;
        } else {
            plugin.destination_params = params;
        }
    }
    plugins.into_values().collect()
}

/// The processor plugins built into this binary, in the API's shape.
pub(crate) fn processor_plugins() -> Vec<model::ProcessorPlugin> {
    funnel_runtime::registry::registry()
        .components()
        .iter()
        .filter(|c| c.kind() == ComponentKind::Processor)
        .map(|c| model::ProcessorPlugin {
            name: format!("builtin:{}", c.name),
            summary: c.summary.to_owned(),
            description: c.summary.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            author: "Funnel".to_owned(),
            parameters: parameters(c.settings()),
        })
        .collect()
}

fn dlq_of(dlq: &funnel_config::DlqConfig) -> model::DeadLetterQueue {
    model::DeadLetterQueue {
        plugin: dlq.plugin.clone(),
        settings: dlq.settings.clone(),
        window_size: dlq.window_size as u64,
        window_nack_threshold: dlq.window_nack_threshold as u64,
    }
}

fn status_of(state: Option<&Arc<PipelineState>>) -> model::PipelineState {
    let (status, error) = match state.map(|s| s.current()) {
        None | Some(PipelineStatus::Stopped | PipelineStatus::Finished) => {
            (model::PipelineStatus::Stopped, String::new())
        }
        Some(PipelineStatus::Starting | PipelineStatus::Running) => {
            (model::PipelineStatus::Running, String::new())
        }
        Some(PipelineStatus::Recovering) => (
            model::PipelineStatus::Recovering,
            state
                .and_then(|s| s.recovery())
                .map(|r| r.describe())
                .unwrap_or_default(),
        ),
        Some(PipelineStatus::Degraded(e)) => (model::PipelineStatus::Degraded, e.to_string()),
    };
    model::PipelineState { status, error }
}

fn parameters<'a>(
    specs: impl Iterator<Item = &'a funnel_core::SettingSpec>,
) -> BTreeMap<String, model::Parameter> {
    specs
        .map(|s| {
            let validations = if s.required {
                vec![model::Validation {
                    kind: "TYPE_REQUIRED".to_owned(),
                    value: String::new(),
                }]
            } else {
                Vec::new()
            };
            (
                s.name.to_owned(),
                model::Parameter {
                    description: s.description.to_owned(),
                    default: s.default.unwrap_or_default().to_owned(),
                    kind: parameter_type(s.kind),
                    validations,
                },
            )
        })
        .collect()
}

/// The API's name of a setting's kind.
fn parameter_type(kind: funnel_core::SettingType) -> model::ParameterType {
    match kind {
        funnel_core::SettingType::String => model::ParameterType::String,
        funnel_core::SettingType::Int => model::ParameterType::Int,
        funnel_core::SettingType::Float => model::ParameterType::Float,
        funnel_core::SettingType::Bool => model::ParameterType::Bool,
        funnel_core::SettingType::File => model::ParameterType::File,
        funnel_core::SettingType::Duration => model::ParameterType::Duration,
    }
}

impl funnel_api::Pipelines for Control {
    fn inspect(
        &self,
        id: &str,
        point: funnel_api::InspectPoint,
    ) -> Result<Box<dyn funnel_api::Inspection>, Status> {
        crate::inspect::open(self, id, point)
    }

    fn views(&self) -> Vec<funnel_api::PipelineView> {
        let pipelines = self.overview.pipelines().into_iter().map(|p| {
            let phase = match p.current() {
                PipelineStatus::Running => funnel_api::Phase::Running,
                PipelineStatus::Finished | PipelineStatus::Stopped => funnel_api::Phase::Done,
                PipelineStatus::Recovering => funnel_api::Phase::NotReady(match p.recovery() {
                    Some(r) => format!("recovering, {}", r.describe()),
                    None => "recovering".to_owned(),
                }),
                PipelineStatus::Degraded(e) => funnel_api::Phase::Degraded(e.to_string()),
                other => funnel_api::Phase::NotReady(other.name().to_owned()),
            };
            funnel_api::PipelineView {
                id: p.id.clone(),
                phase,
                read: WorkerStats::get(&p.stats.read),
                acked: WorkerStats::get(&p.stats.acked),
            }
        });
        pipelines.collect()
    }

    fn invalid_files(&self) -> Vec<model::InvalidFile> {
        self.overview
            .failures()
            .into_iter()
            .map(|f| {
                let at = f.errors.iter().next().map(|e| e.location.clone());
                model::InvalidFile {
                    file: f.file.display().to_string(),
                    line: at.as_ref().map_or(0, |l| l.line as u64),
                    column: at.as_ref().map_or(0, |l| l.column as u64),
                    error: f.to_string(),
                    kept_pipelines: f.kept.clone(),
                }
            })
            .collect()
    }

    fn cluster(&self) -> Option<model::Cluster> {
        let view = self.cluster.as_ref()?.view();
        Some(model::Cluster {
            instance: view.instance,
            instances: view.instances,
            pipelines: view
                .leases
                .into_iter()
                .map(|l| model::ClusterPipeline {
                    id: l.pipeline,
                    instance: l.owner.unwrap_or_default(),
                    epoch: l.epoch,
                })
                .collect(),
        })
    }

    fn failing_checks(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let running: Vec<PipelineConfig> = self
                .overview
                .pipelines()
                .iter()
                .filter(|s| s.current() == PipelineStatus::Running)
                .map(|s| s.config().as_ref().clone())
                .collect();
            funnel_runtime::registry::check(&running)
                .await
                .iter()
                .map(ToString::to_string)
                .collect()
        })
    }

    fn pipelines(&self) -> Vec<model::Pipeline> {
        let documents = self.documents().clone();
        let states = self.overview.pipelines();
        let mut all: Vec<model::Pipeline> = Vec::new();
        let totals = |s: Option<&Arc<PipelineState>>| {
            s.map_or((0, 0), |s| {
                (
                    WorkerStats::get(&s.stats.read),
                    WorkerStats::get(&s.stats.acked),
                )
            })
        };
        for s in &states {
            if documents.contains_key(&s.id) {
                continue;
            }
            let config = s.config();
            let (read, acked) = totals(Some(s));
            all.push(model::Pipeline {
                id: s.id.clone(),
                state: status_of(Some(s)),
                config: model::PipelineConfig {
                    name: config.name.clone(),
                    description: config.description.clone(),
                },
                connector_ids: qualified(&s.id, config.connectors.iter().map(|c| &c.id)),
                processor_ids: qualified(&s.id, config.processors.iter().map(|p| &p.id)),
                provisioned_by: ProvisionedBy::Config,
                created_at: rfc3339(self.started_at),
                updated_at: rfc3339(self.started_at),
                records_read: read,
                records_acked: acked,
            });
        }
        for d in documents.values() {
            let state = states.iter().find(|s| s.id == d.id);
            let (read, acked) = totals(state);
            all.push(model::Pipeline {
                id: d.id.clone(),
                state: status_of(state),
                config: model::PipelineConfig {
                    name: d.name.clone(),
                    description: d.description.clone(),
                },
                connector_ids: qualified(&d.id, d.connectors.iter().map(|c| &c.id)),
                processor_ids: qualified(&d.id, d.processors.iter().map(|p| &p.id)),
                provisioned_by: ProvisionedBy::Api,
                created_at: rfc3339(d.created_at),
                updated_at: rfc3339(d.updated_at),
                records_read: read,
                records_acked: acked,
            });
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    fn connectors(&self) -> Vec<model::Connector> {
        let mut all = Vec::new();
        for (config, _, created, updated) in self.configs() {
            for c in &config.connectors {
                all.push(model::Connector {
                    id: format!("{}:{}", config.id, c.id),
                    kind: match c.kind {
                        ConnectorKind::Source => model::ConnectorType::Source,
                        ConnectorKind::Destination => model::ConnectorType::Destination,
                    },
                    plugin: c.plugin.clone(),
                    pipeline_id: config.id.clone(),
                    config: model::ConnectorConfig {
                        name: c.name.clone(),
                        settings: c.settings.clone(),
                    },
                    processor_ids: c
                        .processors
                        .iter()
                        .map(|p| format!("{}:{}:{}", config.id, c.id, p.id))
                        .collect(),
                    source_state: None,
                    created_at: rfc3339(created),
                    updated_at: rfc3339(updated),
                });
            }
        }
        // A document whose settings no longer validate still lists its connectors.
        for d in self.documents().values() {
            if d.config("stopped").is_ok() {
                continue;
            }
            for c in &d.connectors {
                all.push(model::Connector {
                    id: format!("{}:{}", d.id, c.id),
                    kind: if c.kind == "source" {
                        model::ConnectorType::Source
                    } else {
                        model::ConnectorType::Destination
                    },
                    plugin: c.plugin.clone(),
                    pipeline_id: d.id.clone(),
                    config: model::ConnectorConfig {
                        name: c.name.clone(),
                        settings: c.settings.clone(),
                    },
                    processor_ids: Vec::new(),
                    source_state: None,
                    created_at: rfc3339(d.created_at),
                    updated_at: rfc3339(d.updated_at),
                });
            }
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    fn processors(&self) -> Vec<model::Processor> {
        let mut all = Vec::new();
        for (config, _, created, updated) in self.configs() {
            let mut add = |parent: model::ProcessorParent, p: &funnel_config::ProcessorConfig| {
                all.push(model::Processor {
                    id: format!("{}:{}", parent.id, p.id),
                    plugin: p.plugin.clone(),
                    config: model::ProcessorConfig {
                        settings: p.settings.clone(),
                        workers: p.workers,
                    },
                    condition: p.condition.clone().unwrap_or_default(),
                    parent,
                    created_at: rfc3339(created),
                    updated_at: rfc3339(updated),
                });
            };
            for p in &config.processors {
                add(
                    model::ProcessorParent {
                        kind: model::ParentType::Pipeline,
                        id: config.id.clone(),
                    },
                    p,
                );
            }
            for c in &config.connectors {
                for p in &c.processors {
                    add(
                        model::ProcessorParent {
                            kind: model::ParentType::Connector,
                            id: format!("{}:{}", config.id, c.id),
                        },
                        p,
                    );
                }
            }
        }
        all
    }

    fn connector_plugins(&self) -> Vec<model::ConnectorPlugin> {
        connector_plugins()
    }

    fn processor_plugins(&self) -> Vec<model::ProcessorPlugin> {
        processor_plugins()
    }

    fn dead_letter_queue(&self, id: &str) -> Result<model::DeadLetterQueue, Status> {
        self.configs()
            .into_iter()
            .find(|(c, ..)| c.id == id)
            .map(|(c, ..)| dlq_of(&c.dlq))
            .ok_or_else(|| Status::not_found(format!("pipeline {id:?} not found")))
    }

    fn update_dead_letter_queue<'a>(
        &'a self,
        id: &'a str,
        dlq: model::DeadLetterQueue,
    ) -> BoxFuture<'a, Result<model::DeadLetterQueue, Status>> {
        Box::pin(async move {
            let mut document = self.editable(id)?;
            document.dlq = Some(dlq);
            let config = self.replace_valid(document).await?;
            Ok(dlq_of(&config.dlq))
        })
    }

    fn validate_connector(
        &self,
        request: model::ValidateConnectorRequest,
    ) -> BoxFuture<'_, Result<(), Status>> {
        Box::pin(async move {
            let name = if request.config.name.is_empty() {
                "connector".to_owned()
            } else {
                request.config.name
            };
            check_id("the connector name", &name)?;
            let document = Document {
                id: "validate".to_owned(),
                name: "validate".to_owned(),
                description: String::new(),
                running: false,
                connectors: vec![DocumentConnector::new(
                    name,
                    request.kind,
                    request.plugin,
                    request.config.settings,
                )],
                processors: Vec::new(),
                dlq: None,
                created_at: 0,
                updated_at: 0,
            };
            // The settings as the plugin reads them, then its connection test.
            let config = document.config("stopped")?;
            let failures = funnel_runtime::registry::check(std::slice::from_ref(&config)).await;
            match failures.into_iter().find(|f| f.connector != "dlq") {
                None => Ok(()),
                Some(failure) => Err(Status::failed_precondition(format!(
                    "connector {}: the connection test failed: {}",
                    failure.connector, failure.error
                ))),
            }
        })
    }

    fn create_processor(
        &self,
        request: model::CreateProcessorRequest,
    ) -> BoxFuture<'_, Result<model::Processor, Status>> {
        Box::pin(async move {
            let parent = request.parent.id.clone();
            let (mut document, connector) = match request.parent.kind {
                model::ParentType::Pipeline => (self.editable(&parent)?, None),
                model::ParentType::Connector => {
                    let (document, index) = self.connector_owner(&parent)?;
                    (document, Some(index))
                }
            };
            let list = document.processors_mut(connector);
            // Its ID within its parent: the plugin's name, numbered when taken.
            let base = request.plugin.trim_start_matches("builtin:").replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.',
                "-",
            );
            let id = (1..)
                .map(|n| {
                    if n == 1 {
                        base.clone()
                    } else {
                        format!("{base}-{n}")
                    }
                })
                .find(|id| !list.iter().any(|p| &p.id == id))
                .unwrap_or_default();
            list.push(DocumentProcessor {
                id: id.clone(),
                plugin: request.plugin,
                settings: request.config.settings,
                workers: request.config.workers,
                condition: request.condition,
            });
            self.replace_valid(document).await?;
            self.processor(&format!("{parent}:{id}"))
        })
    }

    fn update_processor<'a>(
        &'a self,
        id: &'a str,
        request: model::UpdateProcessorRequest,
    ) -> BoxFuture<'a, Result<model::Processor, Status>> {
        Box::pin(async move {
            let (mut document, connector, index) = self.processor_owner(id)?;
            let processor = &mut document.processors_mut(connector)[index];
            processor.settings = request.config.settings;
            processor.workers = request.config.workers;
            processor.condition = request.condition;
            self.replace_valid(document).await?;
            self.processor(id)
        })
    }

    fn delete_processor<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            let (mut document, connector, index) = self.processor_owner(id)?;
            document.processors_mut(connector).remove(index);
            self.replace(document).await
        })
    }

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            if self.is_active(id) {
                return Err(Status::failed_precondition(format!(
                    "pipeline {id:?} is already running"
                )));
            }
            let document = self.documents().get(id).cloned();
            let started = match &document {
                Some(d) => self.supervisor.start_configured(d.config("running")?).await,
                None if self.state(id).is_some() => self.supervisor.start_pipeline(id).await,
                None => return Err(Status::not_found(format!("pipeline {id:?} not found"))),
            };
            if !started {
                return Err(Status::failed_precondition(format!(
                    "pipeline {id:?} is already running"
                )));
            }
            if let Some(mut document) = document {
                document.running = true;
                self.replace(document).await?;
            }
            info!(pipeline = %id, "pipeline started through the API");
            Ok(())
        })
    }

    fn stop<'a>(&'a self, id: &'a str, force: bool) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            if self.state(id).is_none() && !self.documents().contains_key(id) {
                return Err(Status::not_found(format!("pipeline {id:?} not found")));
            }
            if !self.is_active(id) {
                return Err(Status::failed_precondition(format!(
                    "pipeline {id:?} is not running"
                )));
            }
            if force {
                self.supervisor.abort_pipeline(id).await;
            } else {
                self.supervisor.stop_pipeline(id).await;
            }
            let document = self.documents().get(id).cloned();
            if let Some(mut document) = document {
                document.running = false;
                self.replace(document).await?;
            }
            info!(pipeline = %id, force, "pipeline stopped through the API");
            Ok(())
        })
    }

    fn create_pipeline(
        &self,
        config: model::PipelineConfig,
    ) -> BoxFuture<'_, Result<model::Pipeline, Status>> {
        Box::pin(async move {
            check_id("the pipeline name", &config.name)?;
            let id = config.name.clone();
            {
                if self
                    .pipelines()
                    .iter()
                    .any(|p| p.id == id || p.config.name == id)
                {
                    return Err(Status::already_exists(format!(
                        "a pipeline named {id:?} exists"
                    )));
                }
            }
            let at = now();
            let document = Document {
                id: id.clone(),
                name: config.name,
                description: config.description,
                running: false,
                connectors: Vec::new(),
                processors: Vec::new(),
                dlq: None,
                created_at: at,
                updated_at: at,
            };
            self.save(&document).await?;
            self.documents().insert(id.clone(), document);
            info!(pipeline = %id, "pipeline created through the API");
            self.pipeline(&id)
        })
    }

    fn update_pipeline<'a>(
        &'a self,
        id: &'a str,
        config: model::PipelineConfig,
    ) -> BoxFuture<'a, Result<model::Pipeline, Status>> {
        Box::pin(async move {
            let mut document = self.editable(id)?;
            if config.name.is_empty() {
                return Err(Status::invalid_argument(
                    "the pipeline name must not be empty",
                ));
            }
            let taken = {
                self.pipelines()
                    .iter()
                    .any(|p| p.id != id && p.config.name == config.name)
            };
            if taken {
                return Err(Status::already_exists(format!(
                    "a pipeline named {:?} exists",
                    config.name
                )));
            }
            document.name = config.name;
            document.description = config.description;
            self.replace(document).await?;
            self.pipeline(id)
        })
    }

    fn delete_pipeline<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            let document = self.editable(id)?;
            for connector in &document.connectors {
                self.delete_plugin_connector(&document, &connector.id)
                    .await?;
            }
            self.store
                .delete_document(id)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            self.store
                .delete_pipeline(id)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            self.supervisor.remove_pipeline(id).await;
            self.documents().remove(id);
            info!(pipeline = %id, "pipeline deleted through the API");
            Ok(())
        })
    }

    fn create_connector(
        &self,
        request: model::CreateConnectorRequest,
    ) -> BoxFuture<'_, Result<model::Connector, Status>> {
        Box::pin(async move {
            let mut document = self.editable(&request.pipeline_id)?;
            check_id("the connector name", &request.config.name)?;
            let id = request.config.name.clone();
            if document.connectors.iter().any(|c| c.id == id) {
                return Err(Status::already_exists(format!(
                    "pipeline {:?} has a connector {id:?}",
                    document.id
                )));
            }
            document.connectors.push(DocumentConnector::new(
                id.clone(),
                request.kind,
                request.plugin,
                request.config.settings,
            ));
            let pipeline = document.id.clone();
            self.replace_valid(document).await?;
            self.connector(&format!("{pipeline}:{id}"))
        })
    }

    fn update_connector<'a>(
        &'a self,
        id: &'a str,
        request: model::UpdateConnectorRequest,
    ) -> BoxFuture<'a, Result<model::Connector, Status>> {
        Box::pin(async move {
            let (mut document, index) = self.connector_owner(id)?;
            let connector = &mut document.connectors[index];
            connector.settings = request.config.settings;
            if !request.config.name.is_empty() {
                connector.name = request.config.name;
            }
            if !request.plugin.is_empty() {
                connector.plugin = request.plugin;
            }
            self.replace_valid(document).await?;
            self.connector(id)
        })
    }

    fn delete_connector<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            let (mut document, index) = self.connector_owner(id)?;
            let connector = document.connectors[index].id.clone();
            self.delete_plugin_connector(&document, &connector).await?;
            document.connectors.remove(index);
            self.replace(document).await
        })
    }
}
