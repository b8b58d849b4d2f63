//! What plugins declare about their settings, and how they report a bad one. Shared by
//! the built-in connectors and processors, and read by `funnel connectors ls`,
//! `funnel processors ls` and the docs.

use std::collections::BTreeMap;

/// Plugin settings as they appear in a pipeline file: string keys to string values.
pub type Settings = BTreeMap<String, String>;

/// Settings from `(key, value)` pairs, as a pipeline file would give them.
pub fn settings_of(pairs: &[(&str, &str)]) -> Settings {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

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
    /// The kind of value it takes.
    pub kind: SettingType,
}

/// The kind of value a setting takes, as Conduit's parameter specs name them
/// (`TYPE_STRING`, `TYPE_INT`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingType {
    /// Text (and anything without a more precise kind).
    String,
    /// A whole number.
    Int,
    /// A number.
    Float,
    /// `true` or `false` (Go's spellings).
    Bool,
    /// A path.
    File,
    /// A Go duration (`250ms`, `1m30s`).
    Duration,
}

impl SettingType {
    /// Conduit's name of the kind: `string`, `int`, `float`, `bool`, `file`, `duration`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::File => "file",
            Self::Duration => "duration",
        }
    }
}

/// Reads plugin settings, remembering which keys were asked for and every error found.
///
/// This is the part every plugin crate shares: plain lookups, errors, and
/// [`finish`](Self::finish), which adds an `unrecognized parameter` error for every key
/// no getter asked for. Typed getters live with the plugins, whose error wording follows
/// their Conduit SDK (connectors and processors word them differently).
#[derive(Debug)]
pub struct SettingsReader<'a> {
    settings: &'a Settings,
    used: std::collections::BTreeSet<&'a str>,
    errors: Vec<SettingsError>,
    /// What to add to the `unrecognized parameter` error of a key, should it be one.
    hints: std::collections::BTreeMap<&'static str, &'static str>,
}

impl<'a> SettingsReader<'a> {
    /// A reader of `settings`.
    pub fn new(settings: &'a Settings) -> Self {
        Self {
            settings,
            used: std::collections::BTreeSet::new(),
            errors: Vec::new(),
            hints: std::collections::BTreeMap::new(),
        }
    }

    /// Explains `key` in case no getter asks for it: its error then reads
    /// `unrecognized parameter: <hint>` (for a setting of an older form, say, the form
    /// it takes now). Not a read: a key with a hint is still unrecognized.
    pub fn hint_unrecognized(&mut self, key: &'static str, hint: &'static str) {
        self.hints.insert(key, hint);
    }

    /// Records an error about `setting`.
    pub fn error(&mut self, setting: impl Into<String>, message: impl Into<String>) {
        self.errors.push(SettingsError::new(setting, message));
    }

    /// The value of `key`, if set and not empty (Conduit treats an empty value as
    /// unset: "use the default").
    pub fn str(&mut self, key: &str) -> Option<&'a str> {
        note_read(key);
        let (k, v) = self.settings.get_key_value(key)?;
        self.used.insert(k.as_str());
        Some(v.as_str()).filter(|v| !v.is_empty())
    }

    /// The value of a required setting; records `required parameter is not provided`
    /// when it is missing.
    pub fn required_str(&mut self, key: &str) -> Option<&'a str> {
        let value = self.str(key);
        if value.is_none() {
            self.error(key, "required parameter is not provided");
        }
        value
    }

    /// Every setting whose key starts with `prefix`, as (rest of the key, value), in key
    /// order. Marks them used.
    pub fn prefixed(&mut self, prefix: &str) -> Vec<(&'a str, &'a str)> {
        note_read(&format!("{prefix}*"));
        let settings = self.settings;
        settings
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| {
                self.used.insert(k.as_str());
                (&k[prefix.len()..], v.as_str())
            })
            .collect()
    }

    /// Ends reading: every key nobody asked for is an unrecognized parameter.
    ///
    /// # Errors
    ///
    /// Every error recorded, unknown keys last.
    pub fn finish(mut self) -> Result<(), Vec<SettingsError>> {
        for key in self.settings.keys() {
            if !self.used.contains(key.as_str()) {
                let message = match self.hints.get(key.as_str()) {
                    Some(hint) => format!("unrecognized parameter: {hint}"),
                    None => "unrecognized parameter".to_owned(),
                };
                self.errors.push(SettingsError::new(key.clone(), message));
            }
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

thread_local! {
    /// The keys asked for while [`record_reads`] runs on this thread.
    static READS: std::cell::RefCell<Option<std::collections::BTreeSet<String>>> =
        const { std::cell::RefCell::new(None) };
}

fn note_read(key: &str) {
    READS.with(|reads| {
        if let Some(reads) = reads.borrow_mut().as_mut() {
            reads.insert(key.to_owned());
        }
    });
}

/// Runs `f` and returns, with its result, every key a [`SettingsReader`] on this
/// thread asked for meanwhile, whether it was set or not (a [`prefixed`] lookup as
/// `prefix*`). This is how the registry's tests prove that the settings a component
/// declares are exactly the ones it reads.
///
/// [`prefixed`]: SettingsReader::prefixed
pub fn record_reads<T>(f: impl FnOnce() -> T) -> (T, std::collections::BTreeSet<String>) {
    let outer = READS.with(|reads| reads.replace(Some(std::collections::BTreeSet::new())));
    let result = f();
    let recorded = READS.with(|reads| reads.replace(outer)).unwrap_or_default();
    (result, recorded)
}
