//! Rules on the typed model: mandatory fields, characters, lengths, uniqueness.
//!
//! Pure: no I/O, every error collected, each with its location and configuration path.

use std::collections::HashMap;

use crate::{
    ConfigError, ConfigErrorKind, ConfigErrors, Location, PipelineConfig, ProcessorConfig,
};

/// Longest pipeline id, in characters.
pub const MAX_ID_LEN: usize = 128;
/// Longest pipeline name, in characters.
pub const MAX_NAME_LEN: usize = 128;
/// Longest pipeline description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 8192;
/// Longest connector name, and longest full connector id (`<pipeline id>:<connector id>`).
pub const MAX_CONNECTOR_LEN: usize = 256;

/// Checks the rules a pipeline file must follow once it is decoded and its defaults are
/// filled in, across all the given pipelines:
///
/// * pipeline ids: mandatory, at most 128 characters of `[A-Za-z0-9-_:.]`, unique;
/// * pipeline names: at most 128 characters, unique; descriptions: at most 8192;
/// * connector ids: mandatory, characters `[A-Za-z0-9-_:.]`, unique within their
///   pipeline, `<pipeline id>:<connector id>` at most 256 characters; names at most 256;
///   plugin mandatory;
/// * processor ids: mandatory, unique within their list; plugin mandatory.
///
/// [`load`](crate::load) and [`parse`](crate::parse) call it; it is public for
/// pipelines built in code. Checks that need the raw text (status words, connector
/// types, negative numbers, value types) are made while decoding.
///
/// # Errors
///
/// Every broken rule, sorted by file, line and column.
pub fn validate(pipelines: &[PipelineConfig]) -> Result<(), ConfigErrors> {
    let mut errors = check(pipelines);
    if errors.is_empty() {
        Ok(())
    } else {
        errors.sort_by(|a, b| a.location.cmp(&b.location));
        Err(ConfigErrors(errors))
    }
}

/// Every broken rule, in pipeline order.
pub(crate) fn check(pipelines: &[PipelineConfig]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for pipeline in pipelines {
        check_pipeline(pipeline, &mut errors);
    }
    check_unique_pipelines(pipelines, &mut errors);
    errors
}

fn invalid(location: &Location, setting: String, message: String) -> ConfigError {
    ConfigError::new(ConfigErrorKind::Invalid, location.clone(), setting, message)
}

/// Whether `id` uses only `[A-Za-z0-9-_:.]`.
fn valid_id_chars(id: &str) -> bool {
    id.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'))
}

/// Where `other` is, said from `here`: `line 3, column 7` in the same file, the full
/// location otherwise.
fn place(other: &Location, here: &Location) -> String {
    if other.file == here.file {
        format!("line {}, column {}", other.line, other.column)
    } else {
        other.to_string()
    }
}

fn check_length(
    errors: &mut Vec<ConfigError>,
    value: &str,
    limit: usize,
    location: &Location,
    setting: String,
) {
    let len = value.chars().count();
    if len > limit {
        errors.push(invalid(
            location,
            setting,
            format!("too long: {len} characters, at most {limit} are allowed"),
        ));
    }
}

fn check_id_chars(errors: &mut Vec<ConfigError>, id: &str, location: &Location, setting: String) {
    if !id.is_empty() && !valid_id_chars(id) {
        errors.push(invalid(
            location,
            setting,
            format!("invalid id {id:?}: use only letters, digits and the characters - _ : ."),
        ));
    }
}

fn check_pipeline(p: &PipelineConfig, errors: &mut Vec<ConfigError>) {
    let id_setting = format!("{}.id", p.path);
    if p.id.is_empty() {
        errors.push(invalid(
            &p.location,
            id_setting,
            "missing: every pipeline needs an id".to_owned(),
        ));
    } else {
        let at = p.field_location("id");
        check_length(errors, &p.id, MAX_ID_LEN, at, id_setting.clone());
        check_id_chars(errors, &p.id, at, id_setting);
    }
    // A name defaulted from the id is checked with the id.
    if p.name != p.id {
        check_length(
            errors,
            &p.name,
            MAX_NAME_LEN,
            p.field_location("name"),
            format!("{}.name", p.path),
        );
    }
    check_length(
        errors,
        &p.description,
        MAX_DESCRIPTION_LEN,
        p.field_location("description"),
        format!("{}.description", p.path),
    );

    let mut seen: HashMap<&str, &Location> = HashMap::new();
    for c in &p.connectors {
        let id_setting = format!("{}.id", c.path);
        let at = c.field_location("id");
        if c.id.is_empty() {
            errors.push(invalid(
                &c.location,
                id_setting,
                "missing: every connector needs an id".to_owned(),
            ));
        } else {
            check_id_chars(errors, &c.id, at, id_setting.clone());
            let full = format!("{}:{}", p.id, c.id);
            let len = full.chars().count();
            if len > MAX_CONNECTOR_LEN {
                errors.push(invalid(
                    at,
                    id_setting.clone(),
                    format!(
                        "too long: the full connector id {full:?} has {len} characters, at most {MAX_CONNECTOR_LEN} are allowed"
                    ),
                ));
            }
            if let Some(first) = seen.get(c.id.as_str()) {
                errors.push(duplicate_id(
                    ("connector", "a pipeline"),
                    &c.id,
                    first,
                    at,
                    id_setting,
                ));
            } else {
                seen.insert(&c.id, at);
            }
        }
        check_length(
            errors,
            &c.name,
            MAX_CONNECTOR_LEN,
            c.field_location("name"),
            format!("{}.name", c.path),
        );
        if c.plugin.is_empty() {
            errors.push(invalid(
                &c.location,
                format!("{}.plugin", c.path),
                "missing: every connector needs a plugin, such as builtin:file".to_owned(),
            ));
        }
        check_processors(&c.processors, errors);
    }
    check_processors(&p.processors, errors);
}

/// The error about `id` of `setting`, written at `at` and already used at `first`:
/// ids of a `kind` (connector, processor) must be unique within their `scope`.
fn duplicate_id(
    (kind, scope): (&str, &str),
    id: &str,
    first: &Location,
    at: &Location,
    setting: String,
) -> ConfigError {
    invalid(
        at,
        setting,
        format!(
            "duplicate {kind} id {id:?}: already used at {}; {kind} ids must be unique within {scope}",
            place(first, at)
        ),
    )
}

fn check_processors(processors: &[ProcessorConfig], errors: &mut Vec<ConfigError>) {
    let mut seen: HashMap<&str, &Location> = HashMap::new();
    for proc in processors {
        let id_setting = format!("{}.id", proc.path);
        let at = proc.field_location("id");
        if proc.id.is_empty() {
            errors.push(invalid(
                &proc.location,
                id_setting,
                "missing: every processor needs an id".to_owned(),
            ));
        } else if let Some(first) = seen.get(proc.id.as_str()) {
            let what = ("processor", "their list");
            errors.push(duplicate_id(what, &proc.id, first, at, id_setting));
        } else {
            seen.insert(&proc.id, at);
        }
        if proc.plugin.is_empty() {
            errors.push(invalid(
                &proc.location,
                format!("{}.plugin", proc.path),
                "missing: every processor needs a plugin (field plugin, or type before version 2.2), such as field.set".to_owned(),
            ));
        }
    }
}

/// Pipeline ids are unique across every loaded file (each pipeline sharing an id gets an
/// error), and so are names (the later ones get an error).
pub(crate) fn check_unique_pipelines(pipelines: &[PipelineConfig], errors: &mut Vec<ConfigError>) {
    let mut by_id: HashMap<&str, Vec<&PipelineConfig>> = HashMap::new();
    for p in pipelines.iter().filter(|p| !p.id.is_empty()) {
        by_id.entry(&p.id).or_default().push(p);
    }
    for p in pipelines {
        let Some(group) = by_id.get(p.id.as_str()).filter(|g| g.len() > 1) else {
            continue;
        };
        let at = p.field_location("id");
        let others = group
            .iter()
            .filter(|other| !std::ptr::eq(**other, p))
            .map(|other| place(other.field_location("id"), at))
            .collect::<Vec<_>>()
            .join(" and ");
        errors.push(invalid(
            at,
            format!("{}.id", p.path),
            format!(
                "duplicate pipeline id {:?}: also defined at {others}; pipeline ids must be unique across all pipeline files",
                p.id
            ),
        ));
    }

    // Pipelines with a duplicate id already have an error (and would clash on their
    // default names too).
    let mut names: HashMap<&str, &PipelineConfig> = HashMap::new();
    for p in pipelines {
        if p.name.is_empty() || by_id.get(p.id.as_str()).is_some_and(|g| g.len() > 1) {
            continue;
        }
        match names.get(p.name.as_str()) {
            Some(first) => {
                let at = p.field_location("name");
                errors.push(invalid(
                    at,
                    format!("{}.name", p.path),
                    format!(
                        "duplicate pipeline name {:?}: pipeline {:?} at {} has it already; names must be unique (they label metrics)",
                        p.name,
                        first.id,
                        place(first.field_location("name"), at)
                    ),
                ));
            }
            None => {
                names.insert(&p.name, p);
            }
        }
    }
}
