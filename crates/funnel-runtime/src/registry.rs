//! The registry: one table of every built-in component (sources, destinations and
//! processors, by their Conduit names), and the checks a configuration must pass
//! before anything starts: [`validate`] (settings, no I/O) and [`check`] (can each
//! connector reach its server).

use std::sync::LazyLock;
use std::time::Duration;

use std::sync::Arc;

use funnel_core::{
    Built, Component, ComponentKind, ConnectorError, Destination, Registry, Settings,
    SettingsError, Source,
};
use funnel_record::Position;
use funnel_store::Store;

use funnel_config::{
    ConfigError, ConfigErrorKind, ConfigErrors, ConnectorKind, Location, PipelineConfig,
    PipelineStatus,
};

pub use crate::reference::{Resolved, plugin_name, resolve};
#[cfg(feature = "standalone")]
pub use crate::reference::{set_standalone, standalone};

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry::new(components()));

/// The registry table: every built-in connector (each source and destination) and
/// every built-in processor, one entry each, as their crates declare them. Which
/// families are in it depends on the cargo features this build has.
pub fn components() -> Vec<Component> {
    let mut all = funnel_connectors::components();
    all.extend(funnel_processors::components());
    all
}

/// The registry of [`components`], built once.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

/// Builds the source connector `reference` names (a built-in or a standalone plugin)
/// for connector `id`, resuming after `resume`. No I/O: a standalone plugin's
/// settings are checked against its specification, and the plugin starts on `open`.
/// With `store`, a standalone plugin gets the lifecycle events (`OnCreated`,
/// `OnUpdated`) from the last active configuration kept there.
///
/// # Errors
///
/// An unknown plugin (about `plugin`), or every invalid setting.
pub fn source(
    reference: &str,
    id: &str,
    settings: &Settings,
    resume: Option<Position>,
    store: Option<&Arc<dyn Store>>,
) -> Built<Arc<dyn Source>> {
    #[cfg(not(feature = "standalone"))]
    let _ = store;
    match resolve(reference).map_err(|m| vec![SettingsError::new("plugin", m)])? {
        Resolved::Builtin(name) => registry().source(name, id, settings, resume),
        #[cfg(feature = "standalone")]
        Resolved::Standalone(spec) => {
            let options = host_options(&spec, true, settings)?;
            let source = funnel_plugins::PluginSource::new(spec, id, settings, resume, &options);
            Ok(Arc::new(match store {
                Some(store) => {
                    source.with_last_active(funnel_plugins::LastActive::new(Arc::clone(store), id))
                }
                None => source,
            }))
        }
    }
}

/// The options a standalone plugin runs with, once its specification accepts
/// `settings` (as a source, or a destination).
#[cfg(feature = "standalone")]
fn host_options(
    spec: &funnel_plugins::PluginSpec,
    source: bool,
    settings: &Settings,
) -> Built<funnel_plugins::HostOptions> {
    let errors = spec.validate(source, settings);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(standalone()
        .map(|c| c.options().clone())
        .unwrap_or_default())
}

/// Builds the destination connector `reference` names (a built-in or a standalone
/// plugin) for connector `id`. No I/O; `store` as for [`source`] (none for a
/// dead-letter queue, which gets no lifecycle events).
///
/// # Errors
///
/// An unknown plugin (about `plugin`), or every invalid setting.
pub fn destination(
    reference: &str,
    id: &str,
    settings: &Settings,
    store: Option<&Arc<dyn Store>>,
) -> Built<Arc<dyn Destination>> {
    #[cfg(not(feature = "standalone"))]
    let _ = store;
    match resolve(reference).map_err(|m| vec![SettingsError::new("plugin", m)])? {
        Resolved::Builtin(name) => registry().destination(name, id, settings),
        #[cfg(feature = "standalone")]
        Resolved::Standalone(spec) => {
            let options = host_options(&spec, false, settings)?;
            let destination = funnel_plugins::PluginDestination::new(spec, id, settings, &options);
            Ok(Arc::new(match store {
                Some(store) => destination
                    .with_last_active(funnel_plugins::LastActive::new(Arc::clone(store), id)),
                None => destination,
            }))
        }
    }
}

fn error(location: &Location, setting: String, message: impl Into<String>) -> ConfigError {
    ConfigError::new(ConfigErrorKind::Invalid, location.clone(), setting, message)
}

/// Checks what the configuration alone cannot: that every plugin exists and every
/// connector's settings are valid (no I/O), and that every running pipeline has a
/// source and a destination.
///
/// # Errors
///
/// Every problem found, each with its file, line, column and setting.
pub fn validate(pipelines: &[PipelineConfig]) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    for p in pipelines {
        let base = p.path.clone();
        let mut sources = 0;
        let mut destinations = 0;
        for c in &p.connectors {
            let path = c.path.clone();
            match c.kind {
                ConnectorKind::Source => sources += 1,
                ConnectorKind::Destination => destinations += 1,
            }
            let full_id = format!("{}:{}", p.id, c.id);
            let built = match c.kind {
                ConnectorKind::Source => {
                    source(&c.plugin, &full_id, &c.settings, None, None).map(drop)
                }
                ConnectorKind::Destination => {
                    destination(&c.plugin, &full_id, &c.settings, None).map(drop)
                }
            };
            if let Err(problems) = built {
                for problem in problems {
                    let (setting, location) = if problem.setting == "plugin" {
                        (format!("{path}.plugin"), c.field_location("plugin").clone())
                    } else {
                        (
                            format!("{path}.settings.{}", problem.setting),
                            c.setting_locations
                                .get(&problem.setting)
                                .cloned()
                                .unwrap_or_else(|| c.location.clone()),
                        )
                    };
                    errors.push(error(&location, setting, problem.message));
                }
            }
            for proc in &c.processors {
                check_processor(proc, &mut errors);
            }
        }
        for proc in &p.processors {
            check_processor(proc, &mut errors);
        }
        if let Err(problems) = destination(
            &p.dlq.plugin,
            &format!("{}-dlq", p.id),
            &p.dlq.settings,
            None,
        ) {
            for problem in problems {
                if problem.setting == "plugin" {
                    errors.push(error(
                        &p.dlq.location,
                        format!("{}.plugin", p.dlq.path),
                        problem.message,
                    ));
                    continue;
                }
                let location = p
                    .dlq
                    .setting_locations
                    .get(&problem.setting)
                    .unwrap_or(&p.dlq.location);
                errors.push(error(
                    location,
                    format!("{}.settings.{}", p.dlq.path, problem.setting),
                    problem.message,
                ));
            }
        }
        if p.status == PipelineStatus::Running {
            if sources == 0 {
                errors.push(error(
                    &p.location,
                    format!("{base}.connectors"),
                    "can't build pipeline without any source connectors",
                ));
            }
            if destinations == 0 {
                errors.push(error(
                    &p.location,
                    format!("{base}.connectors"),
                    "can't build pipeline without any destination connectors",
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Builds `proc` (no I/O) and turns every problem into a located error.
fn check_processor(proc: &funnel_config::ProcessorConfig, errors: &mut Vec<ConfigError>) {
    let Err(problems) = crate::processors::build(registry(), proc) else {
        return;
    };
    for problem in problems {
        let (setting, location) = match problem.setting.as_str() {
            field @ ("plugin" | "condition" | "workers") => {
                (format!("{}.{field}", proc.path), proc.field_location(field))
            }
            setting => (
                format!("{}.settings.{setting}", proc.path),
                proc.setting_location(setting),
            ),
        };
        errors.push(error(
            location,
            setting,
            format!("processor {:?}: {}", proc.id, problem.message),
        ));
    }
}

/// A connector that failed its connection test.
#[derive(Debug)]
pub struct CheckFailure {
    /// The pipeline's ID.
    pub pipeline: String,
    /// The connector's ID within the pipeline (`dlq` for the dead-letter queue).
    pub connector: String,
    /// Why it failed.
    pub error: ConnectorError,
}

impl std::fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pipeline {}: connector {}: {}",
            self.pipeline, self.connector, self.error
        )
    }
}

/// How long one connection test may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the connection test of every connector of `pipelines` that has one (the
/// postgres connectors reach their server, the file destination finds its
/// directory), all at once, each within [`CHECK_TIMEOUT`]. Connectors whose plugin is
/// unknown are skipped: [`validate`] reports them.
pub async fn check(pipelines: &[PipelineConfig]) -> Vec<CheckFailure> {
    let mut checks = Vec::new();
    for p in pipelines {
        let connectors = p.connectors.iter().map(|c| {
            let kind = match c.kind {
                ConnectorKind::Source => ComponentKind::Source,
                ConnectorKind::Destination => ComponentKind::Destination,
            };
            (c.id.as_str(), c.plugin.as_str(), kind, &c.settings)
        });
        let dlq = std::iter::once((
            "dlq",
            p.dlq.plugin.as_str(),
            ComponentKind::Destination,
            &p.dlq.settings,
        ));
        for (id, plugin, kind, settings) in connectors.chain(dlq) {
            let Some(check) = resolve(plugin)
                .ok()
                .and_then(|resolved| match resolved {
                    Resolved::Builtin(name) => registry().find(name, kind).ok(),
                    #[cfg(feature = "standalone")]
                    Resolved::Standalone(_) => None,
                })
                .and_then(|component| component.check)
            else {
                continue;
            };
            let (pipeline, connector) = (p.id.clone(), id.to_owned());
            let run = check(format!("{pipeline}:{connector}"), settings.clone());
            checks.push(async move {
                let error = match tokio::time::timeout(CHECK_TIMEOUT, run).await {
                    Ok(Ok(())) => return None,
                    Ok(Err(error)) => error,
                    Err(_) => ConnectorError::transient(format!(
                        "the connection test did not finish within {CHECK_TIMEOUT:?}"
                    )),
                };
                Some(CheckFailure {
                    pipeline,
                    connector,
                    error,
                })
            });
        }
    }
    futures::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}
