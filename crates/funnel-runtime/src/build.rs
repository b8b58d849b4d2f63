//! Building a pipeline's workers from its configuration.
//!
//! One worker per source: the source, its own processors, the pipeline's processors,
//! then a branch per destination (that destination's processors, then the
//! destination). The sources of a pipeline share its destinations (each worker writes
//! through its own handle and gets its own acks back); each source has its own DLQ.

use std::sync::Arc;

use funnel_config::{ConnectorKind, PipelineConfig};
use funnel_core::component::Cleanup;
use funnel_core::{
    ComponentKind, DestinationTask, Dlq, ErrorKind, Order, ProcessorTask, Retry, Settings,
    SettingsError, SharedDestination, SourceTask, Task, Worker, WorkerConfig, WorkerStats,
};
use funnel_store::{Fence, Store, StoreCommitter};

use crate::fenced::Fenced;

use crate::registry::{self, Resolved, registry};

/// Why a pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A connector's or processor's plugin or settings are not valid (the
    /// configuration should have been validated first).
    #[error("pipeline {pipeline}: {component}: {}", join(.errors))]
    Settings {
        /// The pipeline's ID.
        pipeline: String,
        /// The component (`connector p:src`, `processor p1`).
        component: String,
        /// Every invalid setting.
        errors: Vec<SettingsError>,
    },
    /// A source could not release what it keeps outside Funnel.
    #[error("pipeline {pipeline}: connector {connector}: cleanup failed: {source}")]
    Cleanup {
        /// The pipeline's ID.
        pipeline: String,
        /// The connector's full ID.
        connector: String,
        /// What went wrong.
        source: funnel_core::ConnectorError,
    },
    /// The position store failed.
    #[error("pipeline {pipeline}: {source}")]
    Store {
        /// The pipeline's ID.
        pipeline: String,
        /// What went wrong.
        source: funnel_store::StoreError,
    },
    /// The engine refused the tasks.
    #[error("pipeline {pipeline}: {source}")]
    Engine {
        /// The pipeline's ID.
        pipeline: String,
        /// What went wrong.
        source: funnel_core::Error,
    },
}

impl BuildError {
    /// What kind of problem it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Settings { .. } => ErrorKind::Config,
            Self::Cleanup { source, .. } => source.kind(),
            Self::Store { .. } => ErrorKind::External,
            Self::Engine { source, .. } => source.kind(),
        }
    }

    /// Whether building again later can help: settings never fix themselves, a store
    /// failure may.
    pub fn retry(&self) -> Retry {
        match self {
            Self::Settings { .. } => Retry::Fatal,
            Self::Cleanup { source, .. } => source.retry(),
            Self::Store { .. } => Retry::Transient,
            Self::Engine { source, .. } => source.retry(),
        }
    }
}

/// A worker and the connector ID of its source.
pub struct SourceWorker {
    /// The source connector's ID within its pipeline.
    pub source_id: String,
    /// The worker.
    pub worker: Worker,
}

/// Builds one worker per source of `pipeline`, each resuming after the position last
/// committed in `store`.
///
/// # Errors
///
/// [`BuildError`] for invalid plugins or settings, store failures, or an order the
/// engine refuses.
pub async fn build(
    pipeline: &PipelineConfig,
    store: &Arc<dyn Store>,
    stats: &Arc<WorkerStats>,
) -> Result<Vec<SourceWorker>, BuildError> {
    build_fenced(pipeline, store, stats, None).await
}

/// [`build`], with every position commit made under `fence` and every write to a
/// destination (the dead-letter queues' too) checked against it, when there is one:
/// the pipeline runs under a lease (see `docs/cluster.md`).
///
/// # Errors
///
/// Those of [`build`].
pub async fn build_fenced(
    pipeline: &PipelineConfig,
    store: &Arc<dyn Store>,
    stats: &Arc<WorkerStats>,
    fence: Option<&Arc<Fence>>,
) -> Result<Vec<SourceWorker>, BuildError> {
    let invalid = |component: &str| {
        let component = component.to_owned();
        move |errors| BuildError::Settings {
            pipeline: pipeline.id.clone(),
            component,
            errors,
        }
    };
    let mut destinations = Vec::new();
    for d in pipeline
        .connectors
        .iter()
        .filter(|c| c.kind == ConnectorKind::Destination)
    {
        let dest_id = format!("{}:{}", pipeline.id, d.id);
        let component = format!("connector {dest_id}");
        let connector = Fenced::wrap(
            registry::destination(&d.plugin, &dest_id, &d.settings, Some(store))
                .map_err(invalid(&component))?,
            fence,
        );
        destinations.push((dest_id, d, SharedDestination::new(connector)));
    }
    let mut workers = Vec::new();
    for source in pipeline
        .connectors
        .iter()
        .filter(|c| c.kind == ConnectorKind::Source)
    {
        let resume = store
            .position(&pipeline.id, &source.id)
            .await
            .map_err(|source| BuildError::Store {
                pipeline: pipeline.id.clone(),
                source,
            })?;
        let source_id = format!("{}:{}", pipeline.id, source.id);
        let component = format!("connector {source_id}");
        let connector = registry::source(
            &source.plugin,
            &source_id,
            &source.settings,
            resume,
            Some(store),
        )
        .map_err(invalid(&component))?;
        let mut tasks: Vec<Task> = vec![
            SourceTask::new(source_id.clone(), connector)
                .with_plugin(source.plugin.clone())
                .into(),
        ];
        // order[i]: the tasks after task i.
        let mut order = vec![Vec::new()];
        // Each processor with its parent's ID (its API ID is `parent:processor`).
        let trunk = (source.processors.iter().map(|p| (source_id.as_str(), p))).chain(
            pipeline
                .processors
                .iter()
                .map(|p| (pipeline.id.as_str(), p)),
        );
        for (parent, proc) in trunk {
            let last = tasks.len() - 1;
            order[last].push(tasks.len());
            order.push(Vec::new());
            tasks.push(processor_task(&pipeline.id, parent, proc)?);
        }
        let fan_out = tasks.len() - 1;
        for (dest_id, d, shared) in &destinations {
            let mut prev = fan_out;
            for proc in &d.processors {
                order[prev].push(tasks.len());
                prev = tasks.len();
                order.push(Vec::new());
                tasks.push(processor_task(&pipeline.id, dest_id, proc)?);
            }
            order[prev].push(tasks.len());
            order.push(Vec::new());
            tasks.push(
                DestinationTask::new(dest_id.clone(), shared.handle())
                    .with_plugin(d.plugin.clone())
                    .into(),
            );
        }
        let dlq_id = format!("dlq-{source_id}");
        let component = format!("connector {dlq_id}");
        let dlq_destination = Fenced::wrap(
            registry::destination(&pipeline.dlq.plugin, &dlq_id, &pipeline.dlq.settings, None)
                .map_err(invalid(&component))?,
            fence,
        );
        let dlq = Dlq::new(
            dlq_id,
            dlq_destination,
            pipeline.dlq.window_size,
            pipeline.dlq.window_nack_threshold,
        )
        .with_plugin(pipeline.dlq.plugin.clone());
        let config = WorkerConfig {
            pipeline_id: pipeline.id.clone(),
            pipeline_name: pipeline.name.clone(),
            committer: Some(Arc::new({
                let committer =
                    StoreCommitter::new(Arc::clone(store), pipeline.id.clone(), source.id.clone());
                match fence {
                    Some(fence) => committer.fenced(Arc::clone(fence)),
                    None => committer,
                }
            })),
            stats: Arc::clone(stats),
            ..WorkerConfig::default()
        };
        let worker = Worker::new(tasks, Order::new(order), dlq, config).map_err(|source| {
            BuildError::Engine {
                pipeline: pipeline.id.clone(),
                source,
            }
        })?;
        workers.push(SourceWorker {
            source_id: source.id.clone(),
            worker,
        });
    }
    Ok(workers)
}

/// Deletes `pipeline`: every source releases what it keeps outside Funnel (a
/// PostgreSQL replication slot and publication, say), every standalone plugin
/// connector that ever started is told (`LifecycleOnDeleted`, see
/// [`delete_connector`]), then the pipeline's positions are removed from `store`, so
/// a pipeline created again with the same ID starts from scratch. The pipeline must
/// not be running. Returns the IDs of the connectors that cleaned something up.
///
/// # Errors
///
/// The first cleanup or store failure; positions are kept when a cleanup fails, so the
/// deletion can be retried.
pub async fn delete(
    pipeline: &PipelineConfig,
    store: &Arc<dyn Store>,
) -> Result<Vec<String>, BuildError> {
    let mut cleaned = Vec::new();
    for (id, cleanup, settings) in cleanups(pipeline)? {
        (cleanup.run)(id.clone(), settings.clone())
            .await
            .map_err(|source| BuildError::Cleanup {
                pipeline: pipeline.id.clone(),
                connector: id.clone(),
                source,
            })?;
        cleaned.push(id);
    }
    for connector in &pipeline.connectors {
        if delete_connector(pipeline, connector, store).await? {
            cleaned.push(format!("{}:{}", pipeline.id, connector.id));
        }
    }
    store
        .delete_pipeline(&pipeline.id)
        .await
        .map_err(|source| BuildError::Store {
            pipeline: pipeline.id.clone(),
            source,
        })?;
    Ok(cleaned)
}

/// Deletes `connector` of `pipeline` when a standalone plugin runs it and it ever
/// started (it has a last active configuration in `store`): the plugin is started and
/// given `LifecycleOnDeleted` with that configuration, as Conduit does, and the
/// configuration is forgotten. Returns whether the plugin was told. Built-in
/// connectors have nothing to do here.
///
/// # Errors
///
/// An unknown plugin, or the plugin or the store failing (the configuration is kept,
/// so the deletion can be retried).
pub async fn delete_connector(
    pipeline: &PipelineConfig,
    connector: &funnel_config::ConnectorConfig,
    store: &Arc<dyn Store>,
) -> Result<bool, BuildError> {
    #[cfg(feature = "standalone")]
    {
        use funnel_plugins::{LastActive, Role};
        let id = format!("{}:{}", pipeline.id, connector.id);
        let spec = match registry::resolve(&connector.plugin) {
            Ok(Resolved::Standalone(spec)) => spec,
            Ok(Resolved::Builtin(_)) => return Ok(false),
            Err(message) => {
                return Err(BuildError::Settings {
                    pipeline: pipeline.id.clone(),
                    component: format!("connector {id}"),
                    errors: vec![SettingsError::new("plugin", message)],
                });
            }
        };
        let options = registry::standalone()
            .map(|c| c.options().clone())
            .unwrap_or_default();
        let last_active = LastActive::new(Arc::clone(store), &id);
        let role = match connector.kind {
            ConnectorKind::Source => Role::Source,
            ConnectorKind::Destination => Role::Destination,
        };
        last_active
            .delete(&spec, role, &options)
            .await
            .map_err(|source| BuildError::Cleanup {
                pipeline: pipeline.id.clone(),
                connector: id,
                source,
            })
    }
    #[cfg(not(feature = "standalone"))]
    {
        let _ = (pipeline, connector, store);
        Ok(false)
    }
}

/// What [`delete`] tells standalone plugins, one line per connector that ever started,
/// for a person to confirm first.
///
/// # Errors
///
/// When the store cannot be read.
pub async fn delete_plan_plugins(
    pipeline: &PipelineConfig,
    store: &Arc<dyn Store>,
) -> Result<Vec<String>, BuildError> {
    #[cfg(feature = "standalone")]
    {
        let mut plan = Vec::new();
        for connector in &pipeline.connectors {
            let id = format!("{}:{}", pipeline.id, connector.id);
            let started = store
                .entry(funnel_plugins::state::LAST_ACTIVE, &id)
                .await
                .map_err(|source| BuildError::Store {
                    pipeline: pipeline.id.clone(),
                    source,
                })?
                .is_some();
            if started {
                plan.push(format!(
                    "{id}: tell its plugin {} it is deleted (LifecycleOnDeleted) and forget \
                     its last active configuration",
                    connector.plugin
                ));
            }
        }
        Ok(plan)
    }
    #[cfg(not(feature = "standalone"))]
    {
        let _ = (pipeline, store);
        Ok(Vec::new())
    }
}

/// What [`delete`] would release outside Funnel, one line per resource, for a person
/// to confirm first.
///
/// # Errors
///
/// [`BuildError::Settings`] for an unknown plugin, [`BuildError::Cleanup`] for settings
/// the cleanup cannot work with.
pub fn delete_plan(pipeline: &PipelineConfig) -> Result<Vec<String>, BuildError> {
    let mut plan = Vec::new();
    for (id, cleanup, settings) in cleanups(pipeline)? {
        plan.extend(
            (cleanup.plan)(&id, settings).map_err(|source| BuildError::Cleanup {
                pipeline: pipeline.id.clone(),
                connector: id.clone(),
                source,
            })?,
        );
    }
    Ok(plan)
}

/// The sources of `pipeline` that keep something outside Funnel: their full IDs, their
/// cleanups and their settings.
fn cleanups(pipeline: &PipelineConfig) -> Result<Vec<(String, Cleanup, &Settings)>, BuildError> {
    let mut found = Vec::new();
    for source in pipeline.sources() {
        let id = format!("{}:{}", pipeline.id, source.id);
        let component = registry::resolve(&source.plugin)
            .map_err(|m| SettingsError::new("plugin", m))
            .and_then(|resolved| match resolved {
                Resolved::Builtin(name) => registry().find(name, ComponentKind::Source).map(Some),
                // A standalone plugin's is `delete_connector`.
                #[cfg(feature = "standalone")]
                Resolved::Standalone(_) => Ok(None),
            })
            .map_err(|e| BuildError::Settings {
                pipeline: pipeline.id.clone(),
                component: format!("connector {id}"),
                errors: vec![e],
            })?;
        if let Some(cleanup) = component.and_then(|c| c.cleanup) {
            found.push((id, cleanup, &source.settings));
        }
    }
    Ok(found)
}

/// The task running processor `proc` of pipeline `pipeline`, each call bounded by the
/// processor's `timeout` when it has one, inspected as `parent:processor` (its API ID).
fn processor_task(
    pipeline: &str,
    parent: &str,
    proc: &funnel_config::ProcessorConfig,
) -> Result<Task, BuildError> {
    let processor =
        crate::processors::build(registry(), proc).map_err(|errors| BuildError::Settings {
            pipeline: pipeline.to_owned(),
            component: format!("processor {}", proc.id),
            errors,
        })?;
    Ok(ProcessorTask::new(proc.id.clone(), processor)
        .with_timeout(proc.timeout)
        .with_plugin(proc.plugin.clone())
        .with_inspect_id(&format!("{parent}:{}", proc.id))
        .into())
}

/// `errors` joined with `; `.
fn join(errors: &[SettingsError]) -> String {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    list.join("; ")
}
