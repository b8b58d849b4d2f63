//! Pipeline files to typed configuration.
//!
//! Funnel runs Conduit's pipeline files unchanged: versions 2.2, 2.1 and 2.0 (lists with
//! `id` fields) and 1.1 and 1.0 (maps keyed by id), several YAML documents per file and
//! several pipelines per document. [`load`] reads a file or a directory of `.yml` /
//! `.yaml` files, [`parse`] reads text; both return every [`PipelineConfig`] with its
//! defaults filled in, or every problem found ([`ConfigErrors`]), each naming file,
//! line, column and setting:
//!
//! ```text
//! pipelines/shop.yaml:12:9: pipelines[0].connectors[1].plugin: missing: every connector needs a plugin, such as builtin:file
//! ```
//!
//! Environment variables (`${VAR}`, `$VAR`) are expanded in every string scalar before
//! it is decoded, as Conduit does (an unset variable becomes empty);
//! [`LoadOptions::strict_env`] makes an unset variable an error instead and `$$` a
//! literal `$`. Unknown fields are warnings, not errors ([`Loaded::warnings`]).
//!
//! Whether plugins exist and whether their settings are right is not checked here: the
//! runtime does that, with the locations recorded in the model
//! ([`ConnectorConfig::setting_location`], [`ConnectorConfig::field_location`], ...).
//! `docs/configuration.md` describes the format for users.
//!
//! This crate does no I/O but reading pipeline files. It must never depend on the
//! engine (`funnel-core`), the runtime or any connector; of Funnel it uses only
//! `funnel-record`'s Go compatibility (durations).

mod decode;
mod engine;
mod env;
mod error;
mod location;
mod model;
mod validate;
mod yaml;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

pub use engine::{EngineSetting, engine_settings};
pub use error::{ConfigError, ConfigErrorKind, ConfigErrors, ConfigWarning};
pub use location::Location;
pub use model::{
    ConnectorConfig, ConnectorKind, DEFAULT_DLQ_PLUGIN, DEFAULT_DLQ_SETTINGS, DlqConfig,
    PipelineConfig, PipelineStatus, ProcessorConfig,
};
pub use validate::{MAX_CONNECTOR_LEN, MAX_DESCRIPTION_LEN, MAX_ID_LEN, MAX_NAME_LEN, validate};

/// How pipeline files are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Strict environment interpolation. Off (the default), interpolation is Conduit's:
    /// an unset variable becomes the empty string and `$$` becomes empty too. On, an
    /// unset variable (or `${}`, or a `${` without `}`) is an error naming file, line
    /// and column, and `$$` is a literal `$` (the only escape; it exists only in strict
    /// mode, since Conduit has none).
    pub strict_env: bool,
    /// The environment to interpolate from; `None` reads the process environment.
    /// Tests pass a map here.
    pub env: Option<HashMap<String, String>>,
}

impl LoadOptions {
    /// Conduit's interpolation (not strict) from the variables `env` instead of the
    /// process environment.
    #[must_use]
    pub fn with_env(env: HashMap<String, String>) -> Self {
        Self {
            strict_env: false,
            env: Some(env),
        }
    }
}

/// What loading produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loaded {
    /// Every pipeline, in file order, then document order, then the order in the file.
    pub pipelines: Vec<PipelineConfig>,
    /// Things accepted but probably not meant: unknown fields, a missing or unknown
    /// version, fields newer than the declared version, deprecated fields.
    pub warnings: Vec<ConfigWarning>,
    /// The files read, in the order they were read.
    pub files: Vec<PathBuf>,
}

/// Loads the pipelines of `path`: a file (any extension) or a directory, whose direct
/// children that are files (symlinks followed) ending in `.yml` or `.yaml` (any case)
/// are read in file-name order. Subdirectories are not searched.
///
/// All files are read, decoded and validated before anything is returned, and pipeline
/// ids and names must be unique across all of them.
///
/// # Errors
///
/// Every problem in every file, sorted by file (in load order), line and column: an
/// unreadable path, YAML syntax, an unsupported version, wrong value types, a variable
/// that is not set (strict mode), and every rule of [`validate`].
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let files = discover(path)?;
    let mut texts = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for file in &files {
        match fs::read_to_string(file) {
            Ok(text) => texts.push((file.as_path(), text)),
            Err(error) => errors.push(ConfigError::new(
                ConfigErrorKind::Io,
                Location::whole_file(file),
                "",
                format!("cannot read the file: {error}"),
            )),
        }
    }
    let sources = texts
        .iter()
        .map(|(file, text)| (*file, text.as_str()))
        .collect::<Vec<_>>();
    finish(&sources, errors, files.clone(), opts)
}

/// One pipeline file, loaded on its own by [`load_each`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLoad {
    /// The file.
    pub file: PathBuf,
    /// Its pipelines and warnings, or every problem found in it (including a pipeline
    /// id or name it shares with another file).
    pub result: Result<Loaded, ConfigErrors>,
}

/// Loads the pipelines of `path` file by file, so that one bad file does not hide the
/// good ones: the files are found as by [`load`], each is read, decoded and validated
/// on its own, then pipeline ids and names are checked across files. A pipeline id
/// defined in several files fails every one of them (as in Conduit, no file wins); a
/// name used in several files fails the later ones.
///
/// # Errors
///
/// Only when `path` itself cannot be read (missing, or a directory that cannot be
/// listed); a problem in a file is that file's [`FileLoad::result`].
pub fn load_each(path: &Path, opts: &LoadOptions) -> Result<Vec<FileLoad>, ConfigErrors> {
    let mut loads: Vec<FileLoad> = discover(path)?
        .into_iter()
        .map(|file| {
            let result = match fs::read_to_string(&file) {
                Ok(text) => finish(&[(&file, &text)], Vec::new(), vec![file.clone()], opts),
                Err(error) => Err(ConfigErrors(vec![ConfigError::new(
                    ConfigErrorKind::Io,
                    Location::whole_file(&file),
                    "",
                    format!("cannot read the file: {error}"),
                )])),
            };
            FileLoad { file, result }
        })
        .collect();
    let all: Vec<PipelineConfig> = loads
        .iter()
        .filter_map(|l| l.result.as_ref().ok())
        .flat_map(|l| l.pipelines.iter().cloned())
        .collect();
    let mut clashes = Vec::new();
    validate::check_unique_pipelines(&all, &mut clashes);
    for clash in clashes {
        let Some(load) = loads.iter_mut().find(|l| l.file == clash.location.file) else {
            continue;
        };
        match &mut load.result {
            Ok(_) => load.result = Err(ConfigErrors(vec![clash])),
            Err(errors) => errors.0.push(clash),
        }
    }
    Ok(loads)
}

/// Parses the pipelines in `text`, read from `file` (used only in locations).
///
/// # Errors
///
/// Every problem in the text, sorted by line and column; see [`load`].
pub fn parse(text: &str, file: &Path, opts: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    finish(&[(file, text)], Vec::new(), vec![file.to_path_buf()], opts)
}

/// Decodes and validates every source, then sorts the errors.
fn finish(
    sources: &[(&Path, &str)],
    mut errors: Vec<ConfigError>,
    files: Vec<PathBuf>,
    opts: &LoadOptions,
) -> Result<Loaded, ConfigErrors> {
    let lookup = |name: &str| match &opts.env {
        Some(vars) => vars.get(name).cloned(),
        None => env::process_env(name),
    };
    let mut pipelines = Vec::new();
    let mut warnings = Vec::new();
    let mut env_failed = HashSet::new();
    for (file, text) in sources {
        let decoded = decode::decode(text, file, opts.strict_env, &lookup);
        pipelines.extend(decoded.pipelines);
        errors.extend(decoded.errors);
        warnings.extend(decoded.warnings);
        env_failed.extend(
            decoded
                .env_failed
                .into_iter()
                .map(|s| (file.to_path_buf(), s)),
        );
    }
    // A value whose variable was not set already has an error; what validation says
    // about the empty value left behind is noise.
    errors.extend(
        validate::check(&pipelines)
            .into_iter()
            .filter(|e| !env_failed.contains(&(e.location.file.clone(), e.setting.clone()))),
    );

    let rank: HashMap<&Path, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.as_path(), i))
        .collect();
    let key = |location: &Location| {
        (
            rank.get(location.file.as_path())
                .copied()
                .unwrap_or(usize::MAX),
            location.line,
            location.column,
        )
    };
    warnings.sort_by_key(|w| key(&w.location));
    if !errors.is_empty() {
        errors.sort_by_key(|e| key(&e.location));
        return Err(ConfigErrors(errors));
    }
    Ok(Loaded {
        pipelines,
        warnings,
        files,
    })
}

/// The files to read for `path`.
fn discover(path: &Path) -> Result<Vec<PathBuf>, ConfigErrors> {
    let io_error = |error: std::io::Error, what: &str| {
        ConfigErrors::from(ConfigError::new(
            ConfigErrorKind::Io,
            Location::whole_file(path),
            "",
            format!("cannot read the {what}: {error}"),
        ))
    };
    let metadata = fs::metadata(path).map_err(|e| io_error(e, "pipelines path"))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| io_error(e, "directory"))? {
        let entry = entry.map_err(|e| io_error(e, "directory"))?;
        let name = entry.file_name();
        let lower = name.to_string_lossy().to_ascii_lowercase();
        if !(lower.ends_with(".yml") || lower.ends_with(".yaml")) {
            continue;
        }
        let file = entry.path();
        // `fs::metadata` follows symlinks, as Conduit's `os.Stat` does.
        if fs::metadata(&file).is_ok_and(|m| m.is_file()) {
            files.push(file);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}
