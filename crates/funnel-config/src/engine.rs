//! The engine's own configuration file (`funnel.yaml`): the settings of `funnel run`
//! as nested YAML, read as dotted keys.
//!
//! ```yaml
//! pipelines:
//!   path: ./pipelines
//!   exit-on-done: true
//! db:
//!   type: redb
//!   redb:
//!     path: ./funnel.db
//! ```
//! gives `pipelines.path = ./pipelines`, `pipelines.exit-on-done = true`,
//! `db.type = redb`, `db.redb.path = ./funnel.db`. Flags and `FUNNEL_*` variables win
//! over the file.

use std::path::Path;

use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors};
use crate::location::Location;
use crate::yaml::{self, Node, Value};

/// One setting of the engine's configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSetting {
    /// The dotted key, such as `db.redb.path`.
    pub key: String,
    /// The value as text.
    pub value: String,
    /// Where the value was written.
    pub location: Location,
}

/// Reads the engine configuration file at `path` as dotted keys.
///
/// # Errors
///
/// Every problem, located: unreadable file, YAML syntax, lists where a value goes.
pub fn engine_settings(path: &Path) -> Result<Vec<EngineSetting>, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            ConfigErrorKind::Io,
            Location::whole_file(path),
            "",
            format!("cannot read the file: {e}"),
        )])
    })?;
    let (documents, yaml_errors) = yaml::parse(&text);
    let mut errors: Vec<ConfigError> = yaml_errors
        .into_iter()
        .map(|e| {
            ConfigError::new(
                ConfigErrorKind::Syntax,
                Location::new(path, e.pos.line, e.pos.column),
                "",
                e.message,
            )
        })
        .collect();
    let mut settings = Vec::new();
    for document in documents {
        if let Some(root) = &document.root {
            flatten(path, "", root, &mut settings, &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn flatten(
    path: &Path,
    prefix: &str,
    node: &Node,
    out: &mut Vec<EngineSetting>,
    errors: &mut Vec<ConfigError>,
) {
    let location = Location::new(path, node.pos.line, node.pos.column);
    match &node.value {
        Value::Scalar(_) if prefix.is_empty() => {
            if !node.is_null() {
                errors.push(ConfigError::new(
                    ConfigErrorKind::Type,
                    location,
                    "",
                    "expected a mapping of settings",
                ));
            }
        }
        Value::Scalar(s) => out.push(EngineSetting {
            key: prefix.to_owned(),
            value: s.text.clone(),
            location,
        }),
        Value::Seq(_) => errors.push(ConfigError::new(
            ConfigErrorKind::Type,
            location,
            prefix,
            "expected a value or a mapping, found a list",
        )),
        Value::Map(entries) => {
            for (key, value) in entries {
                let name = match &key.value {
                    Value::Scalar(s) => s.text.clone(),
                    _ => {
                        errors.push(ConfigError::new(
                            ConfigErrorKind::Type,
                            Location::new(path, key.pos.line, key.pos.column),
                            prefix,
                            "expected a setting name",
                        ));
                        continue;
                    }
                };
                let full = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(path, &full, value, out, errors);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_settings_read_as_dotted_keys_with_their_locations() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("funnel.yaml");
        std::fs::write(
            &file,
            "pipelines:\n  path: ./p\ndb:\n  redb:\n    path: x.db\n  type: redb\n",
        )
        .unwrap();
        let settings = engine_settings(&file).unwrap();
        let pairs: Vec<(&str, &str)> = settings
            .iter()
            .map(|s| (s.key.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("pipelines.path", "./p"),
                ("db.redb.path", "x.db"),
                ("db.type", "redb")
            ]
        );
        assert_eq!(settings[1].location.line, 5);
    }

    #[test]
    fn a_list_where_a_value_goes_is_an_error_with_its_location() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("funnel.yaml");
        std::fs::write(&file, "log:\n  level: [a, b]\n").unwrap();
        let errors = engine_settings(&file).unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert!(
            errors
                .to_string()
                .contains(":2:10: log.level: expected a value"),
            "{errors}"
        );
    }
}
