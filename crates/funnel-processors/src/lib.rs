//! Funnel's built-in processors, compatible with Conduit's builtin processors of the
//! same names (see `docs/processors.md` for every processor and its settings).
//!
//! The registry is plain functions, like the connectors': [`specs`] lists every
//! built-in with its settings (for `funnel processors ls` and the docs), [`build`]
//! validates settings and builds one processor by its plugin name. Building does no
//! I/O; a processor that needs any (compiling a script file, say) does it in
//! [`Processor::open`].
//!
//! Settings follow Conduit: values are strings, an unknown key is an error, and every
//! error is reported at once with the key it is about.

use funnel_core::Processor;

pub use funnel_core::{SettingSpec, Settings, SettingsError};

/// The description of one built-in processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorSpec {
    /// The plugin name (`field.set`, `filter`, ...).
    pub name: &'static str,
    /// One line about what it does.
    pub summary: &'static str,
    /// The settings it accepts.
    pub settings: &'static [SettingSpec],
}

/// Every built-in processor, sorted by name.
pub fn specs() -> Vec<ProcessorSpec> {
    let mut specs: Vec<ProcessorSpec> = Vec::new();
    specs.sort_by_key(|s| s.name);
    specs
}

/// Builds processor `id` (its ID in the pipeline file, used in error messages) of the
/// built-in `plugin` from its settings. No I/O happens here, only validation.
///
/// # Errors
///
/// Every invalid setting; an unknown plugin is one error about the setting `plugin`.
pub fn build(
    plugin: &str,
    id: &str,
    settings: &Settings,
) -> Result<Box<dyn Processor>, Vec<SettingsError>> {
    let _ = (id, settings);
    Err(vec![unknown_plugin(plugin)])
}

/// The error for a plugin name no built-in has.
fn unknown_plugin(plugin: &str) -> SettingsError {
    let names: Vec<&str> = specs().iter().map(|s| s.name).collect();
    SettingsError::new(
        "plugin",
        format!(
            "unknown builtin processor {plugin:?} (builtin processors: {})",
            names.join(", ")
        ),
    )
}
