//! Generator settings: parsing and validation (no I/O).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use funnel_record::Operation;

use funnel_core::typed::{NonNegative, Prefixed, SettingsStruct};

use funnel_core::SettingsReader;

use crate::settings::sdk_source;
use crate::{Settings, SettingsError};

/// The type of one generated field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A random non-negative integer.
    Int,
    /// A random word.
    String,
    /// The time of the read, as a timestamp (a Go `time.Time` in Conduit; RFC 3339 text
    /// with nanoseconds in OpenCDC JSON).
    Time,
    /// A random boolean.
    Bool,
    /// A random duration below one hour, as integer nanoseconds (as Go writes a
    /// `time.Duration`).
    Duration,
}

impl FieldType {
    const NAMES: &[&str] = &["int", "string", "time", "bool", "duration"];

    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "int" => Some(Self::Int),
            "string" => Some(Self::String),
            "time" => Some(Self::Time),
            "bool" => Some(Self::Bool),
            "duration" => Some(Self::Duration),
            _ => None,
        }
    }
}

/// What the payload of generated records looks like.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// Raw data: the JSON encoding of a structured map with these fields.
    Raw(Vec<(String, FieldType)>),
    /// Structured data with these fields (sorted by name).
    Structured(Vec<(String, FieldType)>),
    /// Raw data: the whole content of this file, read once when the source opens.
    File(PathBuf),
}

/// One stream of generated records: the default one (no collection) or a named
/// collection.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionConfig {
    /// The collection (`opencdc.collection`); `None` for the default stream configured
    /// by the top-level `format.*` settings.
    pub name: Option<String>,
    /// The payload format.
    pub format: Format,
    /// Operations to pick from at random (`operations`, default `create`).
    pub operations: Vec<Operation>,
}

/// Alternating sleep and generate phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Burst {
    /// `burst.sleepTime`: how long each sleep phase lasts (the source starts with one).
    pub sleep: Duration,
    /// `burst.generateTime` (default 1s): how long each generate phase lasts.
    pub generate: Duration,
}

/// The validated settings of a generator source.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// The streams to generate: the default one first (if configured), then the named
    /// collections by name. Never empty.
    pub collections: Vec<CollectionConfig>,
    /// `recordCount`: the last position to generate; `None` (`-1` or `0`) is infinite.
    pub record_count: Option<u64>,
    /// Records per second (`rate`, or `readTime` converted); 0 means unlimited.
    pub rate: f64,
    /// `burst.*`, when `burst.sleepTime` is set.
    pub burst: Option<Burst>,
    /// Maximum records per read (`sdk.batch.size`, default 1000).
    pub batch_size: usize,
}

funnel_core::settings! {
    /// What the generator generates, as given: the streams and their payloads.
    pub struct StreamSettings {
        /// Payload format of the default stream: raw, structured or file. This or
        /// one collections.*.format.type is required.
        pub format_type: Option<String> = "format.type",
        /// For raw and structured: a field name and its type (int, string, time,
        /// bool, duration). For file: format.options.path, the file whose content is
        /// the payload of every record.
        pub format_options: Prefixed = "format.options.*",
        /// Comma-separated operations picked at random per record: create,
        /// update, delete, snapshot.
        pub operations: String = "operations" (default "create"),
        /// Named collections (each sets opencdc.collection):
        /// collections.<name>.format.type, collections.<name>.format.options.* and
        /// collections.<name>.operations (default create), as the settings of the
        /// default stream.
        pub collections: Prefixed = "collections.*",
    }
}

funnel_core::settings! {
    /// How many records the generator makes, and how fast, as given.
    pub struct PaceSettings {
        /// Number of records to generate (-1 or 0: infinite); then reads report
        /// the source exhausted.
        pub record_count: i64 = "recordCount" (default "-1"),
        /// Maximum records per second (0: unlimited).
        pub rate: NonNegative = "rate" (default "0"),
        /// Deprecated: time to read one record, converted to a rate. Cannot be
        /// combined with rate.
        pub read_time: Duration = "readTime" (default "0"),
        /// Sleep between generate phases (0: no bursts). The source starts
        /// sleeping.
        pub burst_sleep: Duration = "burst.sleepTime" (default "0"),
        /// Length of each generate phase, when burst.sleepTime is set.
        pub burst_generate: Duration = "burst.generateTime" (default "1s"),
    }
}

const FORMAT_TYPES: &[&str] = &["raw", "structured", "file"];
/// Refuses the older list form `format.options: "id:int,name:string"` (which
/// Conduit's generator no longer reads either) with the form it takes now.
const OPTIONS_LIST: &str = "the generator takes one setting per field, \
                            `format.options.<field>: <type>` (for example \
                            `format.options.id: int`), not a list";
const NO_COLLECTION: &str = "invalid configuration, please configure at least one collection \
                             using `format.type` or `collections.*.format.type`";

/// Parses and validates generator settings. Pure: no file is touched.
///
/// # Errors
///
/// Every invalid setting, each with its key.
pub fn validate(settings: &Settings) -> Result<GeneratorConfig, Vec<SettingsError>> {
    let mut r = SettingsReader::new(settings);
    let sdk = sdk_source(&mut r);
    // Neither read fails when a value is bad: every problem is recorded in `r`, and
    // `finish` reports them all.
    let streams = StreamSettings::read(&mut r);
    let pace = PaceSettings::read(&mut r);

    r.hint_unrecognized("format.options", OPTIONS_LIST);
    let mut collections = Vec::new();
    if let Some(streams) = &streams {
        // The default stream, from the top-level settings.
        if let Some(format_type) = &streams.format_type {
            let raw = RawCollection {
                format_type: Some(format_type),
                options: pairs(&streams.format_options),
                operations: Some(&streams.operations),
            };
            if let Some(c) = raw.validate(&mut r, None, "") {
                collections.push(c);
            }
        }

        // Named collections: `collections.<name>.format.type`, `.format.options.*`
        // and `.operations`.
        let mut named: BTreeMap<&str, RawCollection<'_>> = BTreeMap::new();
        for (rest, value) in pairs(&streams.collections) {
            if let Some(i) = rest.find(".format.options.") {
                let option = &rest[i + ".format.options.".len()..];
                named
                    .entry(&rest[..i])
                    .or_default()
                    .options
                    .push((option, value));
            } else if let Some(name) = rest.strip_suffix(".format.type") {
                named.entry(name).or_default().format_type = Some(value).filter(|v| !v.is_empty());
            } else if let Some(name) = rest.strip_suffix(".operations") {
                named.entry(name).or_default().operations = Some(value).filter(|v| !v.is_empty());
            } else if rest.ends_with(".format.options") {
                r.error(
                    format!("collections.{rest}"),
                    format!("unrecognized parameter: {OPTIONS_LIST}"),
                );
            } else {
                r.error(format!("collections.{rest}"), "unrecognized parameter");
            }
        }
        for (name, raw) in named {
            if name.is_empty() {
                r.error("collections.", "the collection name is empty");
                continue;
            }
            let prefix = format!("collections.{name}.");
            if let Some(c) = raw.validate(&mut r, Some(name), &prefix) {
                collections.push(c);
            }
        }
        if streams.format_type.is_none() && streams.collections.0.is_empty() {
            r.error("format.type", NO_COLLECTION);
        }
    }

    let mut pace_config = None;
    if let Some(pace) = pace {
        let record_count = match pace.record_count {
            -1 | 0 => None,
            n if n > 0 => u64::try_from(n).ok(),
            n => {
                r.error(
                    "recordCount",
                    format!("{n} should be greater or equal to 0 (0 or -1 means infinite)"),
                );
                None
            }
        };
        let (rate, read_time) = (pace.rate.0, pace.read_time);
        if rate > 0.0 && !read_time.is_zero() {
            r.error(
                "readTime",
                "cannot specify both \"readTime\" and \"rate\", \"readTime\" is deprecated, \
                 please only specify \"rate\"",
            );
        }
        let rate = if rate == 0.0 && !read_time.is_zero() {
            1.0 / read_time.as_secs_f64()
        } else {
            rate
        };
        let (sleep, generate) = (pace.burst_sleep, pace.burst_generate);
        let burst = if sleep.is_zero() {
            None
        } else if generate.is_zero() {
            r.error("burst.generateTime", "should be greater than 0");
            None
        } else {
            Some(Burst { sleep, generate })
        };
        pace_config = Some((record_count, rate, burst));
    }

    r.finish()?;
    // `finish` fails whenever a settings struct failed to read.
    let (record_count, rate, burst) = pace_config.ok_or_else(Vec::new)?;
    Ok(GeneratorConfig {
        collections,
        record_count,
        rate,
        burst,
        batch_size: sdk.batch_size,
    })
}

/// The `(rest of the key, value)` pairs of a prefix setting, borrowed.
fn pairs(prefixed: &Prefixed) -> Vec<(&str, &str)> {
    prefixed
        .0
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The settings of one stream, before validation.
#[derive(Default)]
struct RawCollection<'a> {
    format_type: Option<&'a str>,
    options: Vec<(&'a str, &'a str)>,
    operations: Option<&'a str>,
}

impl RawCollection<'_> {
    /// Validates one stream; `prefix` is prepended to setting names in errors.
    fn validate(
        self,
        r: &mut SettingsReader<'_>,
        name: Option<&str>,
        prefix: &str,
    ) -> Option<CollectionConfig> {
        let operations = parse_operations(r, self.operations, prefix);
        let format = match self.format_type {
            None => {
                r.error(
                    format!("{prefix}format.type"),
                    "required parameter is not provided (one of raw, structured, file)",
                );
                None
            }
            Some("file") => {
                let path = self
                    .options
                    .iter()
                    .find(|(k, _)| *k == "path")
                    .map(|(_, v)| *v)
                    .filter(|v| !v.is_empty());
                match path {
                    Some(path) => Some(Format::File(PathBuf::from(path))),
                    None => {
                        r.error(
                            format!("{prefix}format.options.path"),
                            "file path not specified (required when format.type is file)",
                        );
                        None
                    }
                }
            }
            Some(t @ ("raw" | "structured")) => {
                let mut fields = Vec::with_capacity(self.options.len());
                let mut ok = true;
                for (field, type_name) in &self.options {
                    let setting = format!("{prefix}format.options.{field}");
                    if field.trim().is_empty() {
                        r.error(setting, "got empty field name");
                        ok = false;
                    } else if let Some(field_type) = FieldType::parse(type_name) {
                        fields.push(((*field).to_owned(), field_type));
                    } else {
                        r.error(
                            setting,
                            format!(
                                "unknown data type {type_name:?} (known: {})",
                                FieldType::NAMES.join(", ")
                            ),
                        );
                        ok = false;
                    }
                }
                match (ok, t) {
                    (false, _) => None,
                    (true, "raw") => Some(Format::Raw(fields)),
                    (true, _) => Some(Format::Structured(fields)),
                }
            }
            Some(other) => {
                r.error(
                    format!("{prefix}format.type"),
                    format!(
                        "{other:?} value must be one of: {}",
                        FORMAT_TYPES.join(", ")
                    ),
                );
                None
            }
        };
        Some(CollectionConfig {
            name: name.map(str::to_owned),
            format: format?,
            operations: operations?,
        })
    }
}

/// Parses a comma-separated list of operations (default `create`).
fn parse_operations(
    r: &mut SettingsReader<'_>,
    raw: Option<&str>,
    prefix: &str,
) -> Option<Vec<Operation>> {
    let Some(raw) = raw else {
        return Some(vec![Operation::Create]);
    };
    let mut operations = Vec::new();
    let mut ok = true;
    for part in raw.split(',').map(str::trim) {
        match part {
            "create" => operations.push(Operation::Create),
            "update" => operations.push(Operation::Update),
            "delete" => operations.push(Operation::Delete),
            "snapshot" => operations.push(Operation::Snapshot),
            other => {
                r.error(
                    format!("{prefix}operations"),
                    format!(
                        "failed parsing operation: unknown operation {other:?} \
                         (known: create, update, delete, snapshot)"
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(operations)
}
