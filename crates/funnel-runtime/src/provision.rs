//! Provisioning from pipeline files, file by file: which pipelines the files ask for,
//! and which files cannot be used and why.
//!
//! One bad file never stops the others: a file that does not parse, breaks a rule, names
//! an unknown plugin or gives a connector a bad setting is reported with every error
//! (file, line, column, setting) and left out; so is every file defining a pipeline ID
//! that another file defines too (no file wins, as in Conduit). The pipelines of the
//! other files are provisioned. [`Supervisor::apply`](crate::Supervisor::apply) runs the
//! result, at startup and at every reload.

use std::fmt;
use std::path::{Path, PathBuf};

use funnel_config::{ConfigErrors, ConfigWarning, LoadOptions, PipelineConfig};

use crate::registry;

/// A pipeline to run and the file it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provisioned {
    /// Its configuration.
    pub config: PipelineConfig,
    /// Its pipeline file.
    pub file: PathBuf,
}

/// A pipeline file that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadFailure {
    /// The file.
    pub file: PathBuf,
    /// Every problem in it, each naming file, line, column and setting.
    pub errors: ConfigErrors,
    /// The pipelines of this file that keep running their previous configuration (the
    /// file was valid before a reload made it invalid). Filled in by
    /// [`Supervisor::apply`](crate::Supervisor::apply).
    pub kept: Vec<String>,
}

impl LoadFailure {
    /// The first error as one line, `file:line:column: setting: message`, and how many
    /// more there are.
    pub fn summary(&self) -> String {
        let first = self
            .errors
            .iter()
            .next()
            .map_or_else(|| self.file.display().to_string(), ToString::to_string);
        match self.errors.len() {
            0 | 1 => first,
            n => format!("{first} (and {} more)", n - 1),
        }
    }
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid pipeline file {}: {}",
            self.file.display(),
            self.summary()
        )?;
        if !self.kept.is_empty() {
            write!(
                f,
                "; still running the previous configuration of {}",
                self.kept.join(", ")
            )?;
        }
        Ok(())
    }
}

/// What the pipeline files ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provision {
    /// The pipelines of every usable file, in file order.
    pub pipelines: Vec<Provisioned>,
    /// The files that cannot be used, in file order.
    pub failures: Vec<LoadFailure>,
    /// Warnings of the usable files (unknown fields, deprecated ones).
    pub warnings: Vec<ConfigWarning>,
}

impl Provision {
    /// Nothing to run and nothing wrong: what a missing default pipelines directory
    /// gives.
    pub fn empty() -> Self {
        Self::default()
    }
}

/// Loads `path` (a pipeline file or a directory of them) file by file and checks each
/// usable file's plugins and connector settings ([`registry::validate`]).
///
/// # Errors
///
/// Only when `path` itself cannot be read; a bad file is a [`LoadFailure`].
pub fn provision(path: &Path, options: &LoadOptions) -> Result<Provision, ConfigErrors> {
    let mut provision = Provision::default();
    for load in funnel_config::load_each(path, options)? {
        let loaded = match load.result {
            Ok(loaded) => loaded,
            Err(errors) => {
                provision.failures.push(LoadFailure {
                    file: load.file,
                    errors,
                    kept: Vec::new(),
                });
                continue;
            }
        };
        if let Err(errors) = registry::validate(&loaded.pipelines) {
            provision.failures.push(LoadFailure {
                file: load.file,
                errors,
                kept: Vec::new(),
            });
            continue;
        }
        provision.warnings.extend(loaded.warnings);
        provision
            .pipelines
            .extend(loaded.pipelines.into_iter().map(|config| Provisioned {
                config,
                file: load.file.clone(),
            }));
    }
    Ok(provision)
}
