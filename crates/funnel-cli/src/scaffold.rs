//! The commands that need no running instance: `funnel init`, `funnel pipelines init
//! --source/--destination`, `funnel config` and `funnel version`.

use std::path::Path;

use clap::{ArgMatches, Command};
use funnel_core::{ComponentKind, SettingSpec};
use serde_json::{Value, json};

use crate::output::{Done, Failure, Outcome, View};

/// The settings `command` (`run` or `config`) takes, in order: (key, help), without
/// the hidden ones (Conduit's that mean nothing here).
fn settings(command: &Command) -> impl Iterator<Item = (&str, &clap::Arg)> {
    command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !["help", "version", "json"].contains(&a.get_id().as_str()))
        .filter_map(|a| a.get_long().map(|long| (long, a)))
}

/// `funnel config`: every setting of `run` as resolved from the flags, the variables
/// and the configuration files; a token is shown as `<set>`.
pub(crate) fn config(command: &Command, matches: &ArgMatches) -> Outcome {
    let mut resolved = serde_json::Map::new();
    for (key, arg) in settings(command) {
        let value = matches
            .get_raw(arg.get_id().as_str())
            .map(|values| {
                values
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .map_or(Value::Null, |v| {
                if key == "api.auth.token" && !v.is_empty() {
                    Value::from("<set>")
                } else {
                    Value::from(v)
                }
            });
        resolved.insert(key.to_owned(), value);
    }
    let count = resolved.len();
    Ok(Done::new(
        format!(
            "{count} settings resolved (flags, FUNNEL_*, funnel.yaml, CONDUIT_*, conduit.yaml, defaults)"
        ),
        Value::Object(resolved),
        View::Tree,
    ))
}

/// `funnel version`.
pub(crate) fn version() -> Outcome {
    let version = env!("CARGO_PKG_VERSION");
    Ok(Done::new(
        format!("funnel {version}"),
        json!({"version": version, "os": std::env::consts::OS, "arch": std::env::consts::ARCH}),
        View::Summary,
    ))
}

/// A YAML double-quoted scalar (a JSON string is one).
fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// Writes `text` to `file` unless it exists.
fn write_new(file: &Path, text: &str) -> Result<(), Failure> {
    if file.exists() {
        return Err(Failure::runtime(format!(
            "{} already exists; not overwritten",
            file.display()
        )));
    }
    std::fs::write(file, text)
        .map_err(|e| Failure::environment(format!("cannot write {}: {e}", file.display())))
}

fn create_dir(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::environment(format!("cannot create {}: {e}", dir.display())))
}

/// `funnel init [--path DIR]`: `funnel.yaml` with every setting of `run` at its
/// default, and the `pipelines/` and `connectors/` folders.
pub(crate) fn init(run: &Command, dir: &Path) -> Outcome {
    // Nested by the dots of the keys: `pipelines.path` under `pipelines:`.
    let mut lines = vec![
        "# Funnel's settings, each at its default (`funnel run --help` says more).".to_owned(),
        "# Flags and FUNNEL_* variables win over this file.".to_owned(),
    ];
    let mut open: Vec<&str> = Vec::new();
    let mut keys: Vec<(&str, &clap::Arg)> = settings(run)
        .filter(|(_, a)| !a.get_default_values().is_empty())
        .collect();
    keys.sort_by_key(|(k, _)| *k);
    for (key, arg) in &keys {
        let parts: Vec<&str> = key.split('.').collect();
        let (leaf, parents) = parts.split_last().unwrap_or((key, &[]));
        let shared = open.iter().zip(parents).take_while(|(a, b)| a == b).count();
        open.truncate(shared);
        for parent in &parents[shared..] {
            lines.push(format!("{}{parent}:", "  ".repeat(open.len())));
            open.push(parent);
        }
        let indent = "  ".repeat(open.len());
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        lines.push(format!("{indent}# {help}"));
        let default: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        lines.push(format!("{indent}{leaf}: {}", quoted(&default.join(","))));
    }
    create_dir(dir)?;
    let file = dir.join("funnel.yaml");
    write_new(&file, &(lines.join("\n") + "\n"))?;
    let mut made = vec![file.display().to_string()];
    for folder in ["pipelines", "connectors"] {
        let folder = dir.join(folder);
        create_dir(&folder)?;
        made.push(folder.display().to_string());
    }
    Ok(Done::new(
        format!(
            "wrote {} with {} settings; created {} and {}",
            made[0],
            keys.len(),
            made[1],
            made[2]
        ),
        json!({"files": made, "settings": keys.len()}),
        View::Summary,
    ))
}

/// Values `pipelines init` writes for settings whose type alone gives no value that
/// loads: those optional one by one of which a plugin needs some (the generator needs
/// a format), and server addresses (an example to replace): (plugin, setting, value);
/// for a family (`format.options.*`) the value is `name=value`.
const STARTERS: &[(&str, &str, &str)] = &[
    ("generator", "format.type", "structured"),
    ("generator", "format.options.*", "id=int"),
    ("generator", "format.options.*", "name=string"),
    ("mqtt", "url", "tcp://localhost:1883"),
    ("mysql", "dsn", "user:password@tcp(localhost:3306)/database"),
    (
        "postgres",
        "url",
        "postgres://user:password@localhost:5432/database",
    ),
    ("rabbitmq", "url", "amqp://guest:guest@localhost:5672/%2f"),
];

/// A value a required setting without a default is written with, so that the file
/// loads: a person replaces it.
fn placeholder(spec: &SettingSpec, pipeline: &str) -> String {
    match spec.kind {
        funnel_core::SettingType::Int | funnel_core::SettingType::Float => "1".to_owned(),
        funnel_core::SettingType::Bool => "false".to_owned(),
        funnel_core::SettingType::Duration => "1s".to_owned(),
        funnel_core::SettingType::File => format!("./{pipeline}.out"),
        funnel_core::SettingType::String => format!("change-me-{}", spec.name),
    }
}

/// One connector of a pipeline file, with every setting of its plugin.
fn connector_yaml(
    pipeline: &str,
    id: &str,
    kind: ComponentKind,
    plugin: &str,
) -> Result<(String, String), Failure> {
    let name = plugin.strip_prefix("builtin:").unwrap_or(plugin);
    let registry = funnel_runtime::registry::registry();
    let component = registry
        .components()
        .iter()
        .find(|c| c.name == name && c.kind() == kind)
        .ok_or_else(|| {
            let known: Vec<String> = registry
                .components()
                .iter()
                .filter(|c| c.kind() == kind)
                .map(|c| format!("builtin:{}", c.name))
                .collect();
            Failure::validation(format!(
                "no {} plugin {plugin:?}; there are {}",
                kind.name(),
                known.join(", ")
            ))
        })?;
    let mut yaml = format!(
        "      - id: {id}\n        type: {}\n        plugin: builtin:{name}\n        settings:\n",
        kind.name()
    );
    for spec in component.settings() {
        let required = if spec.required { ", required" } else { "" };
        yaml.push_str(&format!("          # {}\n", spec.description));
        yaml.push_str(&format!(
            "          # type: {}{required}\n",
            spec.kind.name()
        ));
        let starters: Vec<&(&str, &str, &str)> = STARTERS
            .iter()
            .filter(|(plugin, setting, _)| *plugin == name && *setting == spec.name)
            .collect();
        if !starters.is_empty() {
            // A setting the plugin needs one of (`format.type`, `format.options.*`).
            for (_, setting, value) in starters {
                let key = setting.replace('*', value.split_once('=').map_or("", |(k, _)| k));
                let value = value.split_once('=').map_or(*value, |(_, v)| v);
                yaml.push_str(&format!("          {key}: {}\n", quoted(value)));
            }
            continue;
        }
        let value = match spec.default {
            Some(default) if !spec.name.ends_with('*') => default.to_owned(),
            None if spec.required && !spec.name.ends_with('*') => placeholder(spec, pipeline),
            _ => {
                // Optional, or a family of keys the user names (`collections.*`).
                yaml.push_str(&format!("          # {}: \"\"\n", spec.name));
                continue;
            }
        };
        yaml.push_str(&format!("          {}: {}\n", spec.name, quoted(&value)));
    }
    Ok((yaml, format!("builtin:{name}")))
}

/// `funnel pipelines init NAME --source X --destination Y`: a pipeline file with every
/// setting of both plugins, each with its description, type and whether it is
/// required as comments; checked as `funnel pipelines validate` would.
pub(crate) fn pipeline_init(
    name: &str,
    dir: &Path,
    source: Option<&str>,
    destination: Option<&str>,
) -> Outcome {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(Failure::validation(format!(
            "pipeline name {name:?} may only hold letters, digits, '-', '_' and '.'"
        )));
    }
    let (source, source_plugin) = connector_yaml(
        name,
        "source",
        ComponentKind::Source,
        source.unwrap_or("generator"),
    )?;
    let (destination, destination_plugin) = connector_yaml(
        name,
        "destination",
        ComponentKind::Destination,
        destination.unwrap_or("log"),
    )?;
    let text = format!(
        "version: \"2.2\"\npipelines:\n  - id: {name}\n    status: running\n    \
         description: {}\n    connectors:\n{source}{destination}",
        quoted(&format!("{source_plugin} to {destination_plugin}"))
    );
    create_dir(dir)?;
    let file = dir.join(format!("{name}.yaml"));
    // Checked before it is written: what is written loads.
    let errors = funnel_config::parse(&text, &file, &funnel_config::LoadOptions::default())
        .map_err(|e| e.to_string())
        .and_then(|loaded| {
            funnel_runtime::registry::validate(&loaded.pipelines).map_err(|e| e.to_string())
        })
        .err();
    write_new(&file, &text)?;
    let result = json!({
        "file": file.display().to_string(),
        "source": source_plugin,
        "destination": destination_plugin,
        "valid": errors.is_none(),
        "errors": errors,
    });
    let summary = match &errors {
        None => format!(
            "wrote {}; run it with: funnel run --pipelines.path {}",
            file.display(),
            dir.display()
        ),
        Some(errors) => format!(
            "wrote {}; fill in the settings marked required before running it:\n{errors}",
            file.display()
        ),
    };
    Ok(Done::new(summary, result, View::Summary))
}
