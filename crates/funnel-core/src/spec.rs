//! What plugins declare about their settings, and how they report a bad one. Shared by
//! the built-in connectors and processors, and read by `funnel connectors ls`,
//! `funnel processors ls` and the docs.

use std::collections::BTreeMap;

/// Plugin settings as they appear in a pipeline file: string keys to string values.
pub type Settings = BTreeMap<String, String>;

/// One invalid setting: which one, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct SettingsError {
    /// The setting's key (`path`, `collections.users.format.type`), or `plugin` when
    /// the plugin name itself is wrong.
    pub setting: String,
    /// What is wrong with it.
    pub message: String,
}

impl SettingsError {
    /// An error about `setting`.
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

/// The description of one setting a plugin accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    /// The key; `*` stands for a name the user chooses (`format.options.*`).
    pub name: &'static str,
    /// The default value, if any.
    pub default: Option<&'static str>,
    /// True when the setting must be given.
    pub required: bool,
    /// What the setting does.
    pub description: &'static str,
}
