//! The registry: every built-in plugin by its Conduit name.
//!
//! A plugin reference is `[builtin:|standalone:|any:]NAME[@VERSION]`; Funnel has only
//! built-in plugins, so the prefix and version are accepted and ignored (a
//! `standalone:` reference is refused).

use funnel_config::{
    ConfigError, ConfigErrorKind, ConfigErrors, ConnectorKind, Location, PipelineConfig,
    PipelineStatus,
};

/// The bare plugin name of a reference (`builtin:file@v0.10.3` -> `file`).
///
/// # Errors
///
/// A message when the reference names a standalone plugin.
pub fn plugin_name(reference: &str) -> Result<&str, String> {
    let (prefix, rest) = match reference.split_once(':') {
        Some((prefix, rest)) => (prefix, rest),
        None => ("any", reference),
    };
    let name = rest.split('@').next().unwrap_or(rest);
    match prefix {
        "builtin" | "any" => Ok(name),
        "standalone" => Err(
            "standalone plugins are not supported; use a built-in one (funnel connectors ls)"
                .to_owned(),
        ),
        other => Err(format!(
            "unknown plugin type {other:?} (expected builtin, standalone or any)"
        )),
    }
}

/// Names of the built-in processors.
pub fn processors() -> Vec<&'static str> {
    crate::processors::names()
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
            let name = match plugin_name(&c.plugin) {
                Ok(name) => name,
                Err(message) => {
                    errors.push(error(
                        c.field_location("plugin"),
                        format!("{path}.plugin"),
                        message,
                    ));
                    continue;
                }
            };
            let full_id = format!("{}:{}", p.id, c.id);
            let built = match c.kind {
                ConnectorKind::Source => {
                    funnel_connectors::source(name, &full_id, &c.settings, None).map(drop)
                }
                ConnectorKind::Destination => {
                    funnel_connectors::destination(name, &full_id, &c.settings).map(drop)
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
        match plugin_name(&p.dlq.plugin) {
            Ok(name) => {
                if let Err(problems) =
                    funnel_connectors::destination(name, &format!("{}-dlq", p.id), &p.dlq.settings)
                {
                    for problem in problems {
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
            }
            Err(message) => errors.push(error(
                &p.dlq.location,
                format!("{}.plugin", p.dlq.path),
                message,
            )),
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
    let Err(problems) = crate::processors::build(proc) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_references_keep_only_the_name() {
        assert_eq!(plugin_name("builtin:file@v0.10.3"), Ok("file"));
        assert_eq!(plugin_name("generator"), Ok("generator"));
        assert_eq!(plugin_name("any:log"), Ok("log"));
        assert!(plugin_name("standalone:foo").is_err());
        assert!(plugin_name("weird:foo").is_err());
    }
}
