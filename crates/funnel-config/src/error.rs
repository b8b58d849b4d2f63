//! Errors and warnings, each with the file, line, column and setting it is about.

use std::fmt;

use crate::Location;

/// What kind of problem a [`ConfigError`] reports.
///
/// Every configuration error is the user's to fix in the file and none is worth
/// retrying: loading the same file again gives the same error. The kind lets a caller
/// pick an exit code or group messages; it never changes how the error is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file or directory could not be read.
    Io,
    /// The file is not valid YAML.
    Syntax,
    /// The `version` is not one Funnel reads.
    Version,
    /// A value has the wrong type, such as `workers: abc` or a list where a string goes.
    Type,
    /// Environment-variable interpolation failed (strict mode only).
    Env,
    /// A value breaks a rule: missing, too long, not unique, not allowed.
    Invalid,
}

/// One problem in a pipeline file.
///
/// Displays as `{file}:{line}:{column}: {setting}: {message}`; the `setting: ` part is
/// left out when the error is not about one setting (a YAML syntax error or an
/// unreadable file), and `:{line}:{column}` when it is about the whole file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {}{message}", SettingPrefix(.setting))]
pub struct ConfigError {
    /// Where the offending value (or, for a missing one, its parent) was written.
    pub location: Location,
    /// The configuration path of the setting, such as `pipelines[0].connectors[1].plugin`
    /// (version 2.x) or `pipelines.p1.connectors.c1.plugin` (version 1.x). Empty when
    /// the error is not about one setting.
    pub setting: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
    /// The kind of problem.
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    /// A new error. A setting or message longer than 1 KiB (one that
    /// quotes a huge value) is shortened in the middle, so errors stay readable.
    pub fn new(
        kind: ConfigErrorKind,
        location: Location,
        setting: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let setting = setting.into();
        let message = message.into();
        Self {
            location,
            setting: shorten(setting, MAX_SHOWN),
            message: shorten(message, MAX_SHOWN),
            kind,
        }
    }
}

/// The longest setting or message an error holds whole, in bytes.
pub(crate) const MAX_SHOWN: usize = 1024;
/// The longest value quoted whole in a message, in bytes.
const MAX_QUOTED: usize = 80;

/// `text` itself when it has at most `max` bytes, else its start and end around a note
/// of how many bytes were left out.
pub(crate) fn shorten(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let head = text.floor_char_boundary(max * 2 / 3);
    let tail = text.ceil_char_boundary(text.len() - max / 4);
    format!(
        "{}…[{} bytes left out]…{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

/// A value for a message: itself when short, else shortened (see [`shorten`]).
pub(crate) fn elide(text: &str) -> String {
    if text.len() <= MAX_QUOTED {
        return text.to_owned();
    }
    let head = text.floor_char_boundary(MAX_QUOTED / 2);
    format!("{}…[{} bytes in all]", &text[..head], text.len())
}

/// A string value for a message, quoted: `"text"`, or its start and length when long.
pub(crate) fn shown(text: &str) -> String {
    if text.len() <= MAX_QUOTED {
        return format!("{text:?}");
    }
    let head = text.floor_char_boundary(MAX_QUOTED / 2);
    format!("{:?}…[{} bytes in all]", &text[..head], text.len())
}

/// Every error found while loading, in file order and then line order.
///
/// Displays one error per line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Something in a pipeline file that Funnel accepts but that is probably not what was
/// meant: an unknown field, a missing `version`, a field newer than the declared
/// version, a deprecated field.
///
/// Displays like [`ConfigError`]: `{file}:{line}:{column}: {setting}: {message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Where it was written.
    pub location: Location,
    /// The configuration path of the setting; may be empty.
    pub setting: String,
    /// What Funnel did about it.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}{}",
            self.location,
            SettingPrefix(&self.setting),
            self.message
        )
    }
}

/// Displays `setting: `, or nothing for an empty setting.
struct SettingPrefix<'a>(&'a str);

impl fmt::Display for SettingPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "{}: ", self.0)
        }
    }
}
