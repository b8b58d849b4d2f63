//! YAML nodes to the typed model: versions, layouts, types, defaults, env interpolation.
//!
//! Checks that need the raw value (a status word, a connector type, a negative number)
//! happen here; checks on the typed model are in [`crate::validate`]. Both collect
//! every problem instead of stopping at the first.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use funnel_record::go;

use crate::env::{self, EnvProblem};
use crate::error::{MAX_SHOWN, shorten};
use crate::yaml::{self, Node, Pos, ScalarKind, Value};
use crate::{
    ConfigError, ConfigErrorKind, ConfigWarning, ConnectorConfig, ConnectorKind, DlqConfig,
    Location, PipelineConfig, PipelineStatus, ProcessorConfig,
};

/// A file version Funnel reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    major: u32,
    minor: u32,
}

impl Version {
    const V1_0: Self = Self { major: 1, minor: 0 };
    const V1_1: Self = Self { major: 1, minor: 1 };
    const V2_0: Self = Self { major: 2, minor: 0 };
    const V2_1: Self = Self { major: 2, minor: 1 };
    const V2_2: Self = Self { major: 2, minor: 2 };
    const KNOWN: [Self; 5] = [Self::V1_0, Self::V1_1, Self::V2_0, Self::V2_1, Self::V2_2];
    const LATEST: Self = Self::V2_2;

    /// The latest known version with this major, if any.
    fn latest_of(major: u32) -> Option<Self> {
        Self::KNOWN.iter().rev().copied().find(|v| v.major == major)
    }

    /// Version 1.x: pipelines, connectors and processors are maps keyed by id.
    fn is_v1(self) -> bool {
        self.major == 1
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

const TOP: &[&str] = &["version", "pipelines"];
const PIPELINE_V2: &[&str] = &[
    "id",
    "status",
    "name",
    "description",
    "connectors",
    "processors",
    "dead-letter-queue",
];
/// v1 keys pipelines by their ID: the same keys but `id`.
const PIPELINE_V1: &[&str] = PIPELINE_V2.split_at(1).1;
const CONNECTOR_V2: &[&str] = &["id", "type", "plugin", "name", "settings", "processors"];
const CONNECTOR_V1: &[&str] = &["type", "plugin", "name", "settings", "processors"];
const PROCESSOR_V2: &[&str] = &[
    "id",
    "plugin",
    "type",
    "condition",
    "workers",
    "timeout",
    "settings",
];
const PROCESSOR_V1: &[&str] = &["type", "settings", "workers", "timeout"];
const DLQ: &[&str] = &["plugin", "settings", "window-size", "window-nack-threshold"];

/// What decoding one file produced.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) pipelines: Vec<PipelineConfig>,
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<ConfigWarning>,
    /// Settings whose interpolation failed (strict mode): they already have an error, so
    /// validation errors about the value they were left with (empty) are noise.
    pub(crate) env_failed: HashSet<String>,
}

/// Decodes every document of one file's text.
pub(crate) fn decode(
    text: &str,
    file: &Path,
    strict_env: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Decoded {
    let (documents, yaml_errors) = yaml::parse(text);
    let mut ctx = Ctx {
        file,
        strict_env,
        lookup,
        version: Version::LATEST,
        out: Decoded::default(),
    };
    for error in yaml_errors {
        let kind = if error.syntax {
            ConfigErrorKind::Syntax
        } else {
            ConfigErrorKind::Invalid
        };
        ctx.error(kind, error.pos, "", error.message);
    }
    for document in &documents {
        if let Some(root) = &document.root {
            ctx.document(root);
        }
    }
    ctx.out
}

/// The fields of a struct-like mapping.
struct Fields<'n> {
    /// Field name, key node, value node.
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value of `name`, unless it is absent or null.
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(n, _, v)| *n == name && !v.is_null())
            .map(|(_, _, v)| *v)
    }

    /// The key node of `name`, even when its value is null.
    fn key(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, k, _)| *k)
    }
}

/// An element of a collection of connectors or processors: its path, the key node that
/// holds its id in version 1.x, and its node.
struct Item<'n> {
    path: String,
    id_key: Option<&'n Node>,
    node: &'n Node,
}

struct Ctx<'a> {
    file: &'a Path,
    strict_env: bool,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    /// The version of the document being decoded.
    version: Version,
    out: Decoded,
}

impl Ctx<'_> {
    fn loc(&self, pos: Pos) -> Location {
        Location::new(self.file, pos.line, pos.column)
    }

    fn error(
        &mut self,
        kind: ConfigErrorKind,
        pos: Pos,
        setting: &str,
        message: impl Into<String>,
    ) {
        let location = self.loc(pos);
        self.out
            .errors
            .push(ConfigError::new(kind, location, setting, message));
    }

    fn warn(&mut self, pos: Pos, setting: &str, message: impl Into<String>) {
        let location = self.loc(pos);
        self.out.warnings.push(ConfigWarning {
            location,
            setting: shorten(setting.to_owned(), MAX_SHOWN),
            message: shorten(message.into(), MAX_SHOWN),
        });
    }

    fn type_error(&mut self, node: &Node, setting: &str, expected: &str) {
        let message = format!("expected {expected}, found {}", node.describe());
        self.error(ConfigErrorKind::Type, node.pos, setting, message);
    }

    fn document(&mut self, root: &Node) {
        let top = self.fields(root, "", TOP, "a mapping with `version` and `pipelines`");
        let Some(version) = self.version_of(&top, root.pos) else {
            return;
        };
        self.version = version;
        let Some(pipelines) = top.get("pipelines") else {
            return;
        };
        let items = self.items(pipelines, "pipelines", "a pipeline");
        for item in items {
            let pipeline = self.pipeline(&item);
            self.out.pipelines.push(pipeline);
        }
    }

    /// The version a document is decoded with; `None` (with an error) if unsupported.
    fn version_of(&mut self, top: &Fields<'_>, doc_pos: Pos) -> Option<Version> {
        let (text, pos) = match top.get("version") {
            Some(node) => (self.string(node, "version"), node.pos),
            None => (String::new(), doc_pos),
        };
        let text = text.trim();
        if text.is_empty() {
            self.warn(
                pos,
                "version",
                format!(
                    "no version defined, falling back to parser version {}",
                    Version::LATEST
                ),
            );
            return Some(Version::LATEST);
        }
        let known = Version::KNOWN
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let Some(declared) = parse_version(text) else {
            self.error(
                ConfigErrorKind::Version,
                pos,
                "version",
                format!("invalid version {text:?}: Funnel reads versions {known}"),
            );
            return None;
        };
        if Version::KNOWN.contains(&declared) {
            return Some(declared);
        }
        match Version::latest_of(declared.major) {
            Some(fallback) => {
                self.warn(
                    pos,
                    "version",
                    format!(
                        "unrecognized version {text}, falling back to parser version {fallback}"
                    ),
                );
                Some(fallback)
            }
            None => {
                self.error(
                    ConfigErrorKind::Version,
                    pos,
                    "version",
                    format!("unsupported version {text:?}: Funnel reads versions {known}"),
                );
                None
            }
        }
    }

    /// The fields of a mapping; warns about unknown ones. A null node has no fields;
    /// anything else that is not a mapping is a type error.
    fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        known: &[&str],
        expected: &str,
    ) -> Fields<'n> {
        let mut fields = Fields {
            entries: Vec::new(),
        };
        let entries = match &node.value {
            Value::Map(entries) => entries,
            _ if node.is_null() => return fields,
            _ => {
                self.type_error(node, path, expected);
                return fields;
            }
        };
        for (key, value) in entries {
            let Value::Scalar(name) = &key.value else {
                continue;
            };
            let name = name.text.as_str();
            if known.contains(&name) {
                fields.entries.push((name, key, value));
            } else {
                let setting = join(path, name);
                self.warn(
                    key.pos,
                    &setting,
                    format!("unknown field {name:?} (version {}), ignored", self.version),
                );
            }
        }
        fields
    }

    /// The elements of a list (version 2.x) or of a map keyed by id (version 1.x). An
    /// element that is not a mapping (`what` says what it should be) is a type error and
    /// left out; a null one is an empty mapping.
    fn items<'n>(&mut self, node: &'n Node, path: &str, what: &str) -> Vec<Item<'n>> {
        let mut items = self.elements(node, path);
        items.retain(|item| {
            let ok = item.node.is_null() || matches!(item.node.value, Value::Map(_));
            if !ok {
                self.type_error(item.node, &item.path, &format!("a mapping ({what})"));
            }
            ok
        });
        items
    }

    fn elements<'n>(&mut self, node: &'n Node, path: &str) -> Vec<Item<'n>> {
        if node.is_null() {
            return Vec::new();
        }
        match (&node.value, self.version.is_v1()) {
            (Value::Seq(nodes), false) => nodes
                .iter()
                .enumerate()
                .map(|(i, node)| Item {
                    path: format!("{path}[{i}]"),
                    id_key: None,
                    node,
                })
                .collect(),
            (Value::Map(entries), true) => entries
                .iter()
                .map(|(key, node)| Item {
                    path: join(path, &key_text(key)),
                    id_key: Some(key),
                    node,
                })
                .collect(),
            (_, v1) => {
                let expected = if v1 {
                    format!("a mapping keyed by id (version {})", self.version)
                } else {
                    format!("a list (version {})", self.version)
                };
                self.type_error(node, path, &expected);
                Vec::new()
            }
        }
    }

    /// The id of an item: its map key (1.x) or its `id` field (2.x), with where it was.
    fn id(&mut self, item: &Item<'_>, fields: &Fields<'_>) -> (String, Option<Pos>) {
        let setting = join(&item.path, "id");
        match item.id_key {
            Some(key) => (self.string(key, &setting), Some(key.pos)),
            None => match fields.get("id") {
                Some(node) => (self.string(node, &setting), Some(node.pos)),
                None => (String::new(), None),
            },
        }
    }

    /// Warns when `field` is newer than the document's version (it is honoured anyway).
    fn since(&mut self, fields: &Fields<'_>, field: &str, path: &str, version: Version) {
        if self.version >= version || self.version.major != version.major {
            return;
        }
        if let Some(key) = fields.key(field) {
            let message = format!(
                "field {field} was introduced in version {version}, please update the pipeline config version (it is honoured anyway)"
            );
            self.warn(key.pos, &join(path, field), message);
        }
    }

    /// The fields of `item` (a pipeline, connector or processor: `known` are its field
    /// names in versions 1.x and 2.x), where each was written, and its id.
    fn element<'n>(
        &mut self,
        item: &Item<'n>,
        known: (&[&str], &[&str]),
        expected: &str,
    ) -> (Fields<'n>, BTreeMap<String, Location>, String) {
        let known = if self.version.is_v1() {
            known.0
        } else {
            known.1
        };
        let fields = self.fields(item.node, &item.path, known, expected);
        let mut field_locations = BTreeMap::new();
        for (name, _, value) in &fields.entries {
            field_locations.insert((*name).to_owned(), self.loc(value.pos));
        }
        let (id, id_pos) = self.id(item, &fields);
        if let Some(pos) = id_pos {
            field_locations.insert("id".to_owned(), self.loc(pos));
        }
        (fields, field_locations, id)
    }

    fn pipeline(&mut self, item: &Item<'_>) -> PipelineConfig {
        let path = item.path.as_str();
        let v1 = self.version.is_v1();
        let (fields, field_locations, id) =
            self.element(item, (PIPELINE_V1, PIPELINE_V2), "a mapping (a pipeline)");
        let location = self.loc(item.node.pos);

        let status = match fields.get("status") {
            None => PipelineStatus::Running,
            Some(node) => {
                let setting = join(path, "status");
                match self.string(node, &setting).as_str() {
                    "" | "running" => PipelineStatus::Running,
                    "stopped" => PipelineStatus::Stopped,
                    other => {
                        self.error(
                            ConfigErrorKind::Invalid,
                            node.pos,
                            &setting,
                            format!("invalid status {other:?}: use running or stopped"),
                        );
                        PipelineStatus::Running
                    }
                }
            }
        };
        let name = self.opt_string(&fields, "name", path);
        let name = if name.is_empty() { id.clone() } else { name };
        let description = self.opt_string(&fields, "description", path);

        let connectors_path = join(path, "connectors");
        let connectors = match fields.get("connectors") {
            Some(node) => self
                .items(node, &connectors_path, "a connector")
                .iter()
                .map(|item| self.connector(item))
                .collect(),
            None => Vec::new(),
        };
        let processors = self.processors(&fields, path);

        if v1 {
            self.since(&fields, "dead-letter-queue", path, Version::V1_1);
        }
        let dlq_path = join(path, "dead-letter-queue");
        let dlq = match fields.get("dead-letter-queue") {
            Some(node) => self.dlq(node, dlq_path),
            None => DlqConfig::default_at(location.clone(), dlq_path),
        };

        PipelineConfig {
            id,
            status,
            name,
            description,
            connectors,
            processors,
            dlq,
            location,
            path: path.to_owned(),
            field_locations,
        }
    }

    fn connector(&mut self, item: &Item<'_>) -> ConnectorConfig {
        let path = item.path.as_str();
        let (fields, field_locations, id) = self.element(
            item,
            (CONNECTOR_V1, CONNECTOR_V2),
            "a mapping (a connector)",
        );

        let type_setting = join(path, "type");
        let kind = match fields.get("type") {
            None => None,
            Some(node) => match self.string(node, &type_setting).as_str() {
                "source" => Some(ConnectorKind::Source),
                "destination" => Some(ConnectorKind::Destination),
                "" => None,
                other => {
                    self.error(
                        ConfigErrorKind::Invalid,
                        node.pos,
                        &type_setting,
                        format!("invalid connector type {other:?}: use source or destination"),
                    );
                    Some(ConnectorKind::Source)
                }
            },
        };
        let kind = kind.unwrap_or_else(|| {
            self.error(
                ConfigErrorKind::Invalid,
                item.node.pos,
                &type_setting,
                "missing: every connector needs a type, source or destination",
            );
            ConnectorKind::Source
        });
        let plugin = self.opt_string(&fields, "plugin", path);
        let name = self.opt_string(&fields, "name", path);
        let name = if name.is_empty() { id.clone() } else { name };
        let (settings, setting_locations) = match fields.get("settings") {
            Some(node) => self.settings(node, &join(path, "settings")),
            None => Default::default(),
        };
        let processors = self.processors(&fields, path);

        ConnectorConfig {
            id,
            kind,
            plugin,
            name,
            settings,
            setting_locations,
            processors,
            location: self.loc(item.node.pos),
            path: path.to_owned(),
            field_locations,
        }
    }

    /// The `processors` of a pipeline or connector.
    fn processors(&mut self, parent: &Fields<'_>, parent_path: &str) -> Vec<ProcessorConfig> {
        let Some(node) = parent.get("processors") else {
            return Vec::new();
        };
        let path = join(parent_path, "processors");
        let items = self.items(node, &path, "a processor");
        if self.version.is_v1() && items.len() > 1 {
            self.warn(
                node.pos,
                &path,
                format!(
                    "processors are a map in version {}, so Conduit does not define their order; Funnel runs them in file order (use version 2.2 and a list to make the order explicit)",
                    self.version
                ),
            );
        }
        items.iter().map(|item| self.processor(item)).collect()
    }

    fn processor(&mut self, item: &Item<'_>) -> ProcessorConfig {
        let path = item.path.as_str();
        let v1 = self.version.is_v1();
        let (fields, mut field_locations, id) = self.element(
            item,
            (PROCESSOR_V1, PROCESSOR_V2),
            "a mapping (a processor)",
        );

        // `type` is the plugin in 1.x, 2.0 and 2.1; 2.2 renamed it `plugin`.
        if !v1 {
            self.since(&fields, "plugin", path, Version::V2_2);
            self.since(&fields, "condition", path, Version::V2_1);
            if self.version >= Version::V2_2
                && let Some(key) = fields.key("type")
            {
                self.warn(
                    key.pos,
                    &join(path, "type"),
                    "field type is deprecated since version 2.2, use plugin instead (plugin wins when both are set)",
                );
            }
        }
        let plugin = self.opt_string(&fields, "plugin", path);
        let legacy = self.opt_string(&fields, "type", path);
        let plugin = if plugin.is_empty() {
            if let Some(node) = fields.get("type") {
                field_locations.insert("plugin".to_owned(), self.loc(node.pos));
            }
            legacy
        } else {
            plugin
        };
        let condition = Some(self.opt_string(&fields, "condition", path)).filter(|c| !c.is_empty());
        let workers = fields
            .get("workers")
            .map_or(1, |node| self.workers(node, &join(path, "workers")));
        let timeout = fields
            .get("timeout")
            .and_then(|node| self.timeout(node, &join(path, "timeout")));
        let (settings, setting_locations) = match fields.get("settings") {
            Some(node) => self.settings(node, &join(path, "settings")),
            None => Default::default(),
        };

        ProcessorConfig {
            id,
            plugin,
            condition,
            workers,
            timeout,
            settings,
            setting_locations,
            location: self.loc(item.node.pos),
            path: path.to_owned(),
            field_locations,
        }
    }

    /// A processor's `workers`: `0` (or null) means 1, a negative count is an error.
    fn workers(&mut self, node: &Node, setting: &str) -> u32 {
        match self.int(node, setting) {
            None | Some(0) => 1,
            Some(n) if n < 0 => {
                self.error(
                    ConfigErrorKind::Invalid,
                    node.pos,
                    setting,
                    format!("workers can't be negative ({n}); use 1 or more"),
                );
                1
            }
            Some(n) => u32::try_from(n).unwrap_or_else(|_| {
                self.error(
                    ConfigErrorKind::Invalid,
                    node.pos,
                    setting,
                    format!("too many workers ({n}), at most {}", u32::MAX),
                );
                1
            }),
        }
    }

    /// A processor's `timeout`, a Go duration (`30s`, `1m30s`): `None` when empty or
    /// zero (no bound); a negative or malformed duration is an error.
    fn timeout(&mut self, node: &Node, setting: &str) -> Option<Duration> {
        let text = self.string(node, setting);
        if text.is_empty() {
            return None;
        }
        let problem = match go::parse_duration(&text) {
            Ok(nanos) => match u64::try_from(nanos) {
                Ok(0) => return None,
                Ok(nanos) => return Some(Duration::from_nanos(nanos)),
                Err(_) => format!("timeout can't be negative ({text}); use 0 for no bound"),
            },
            Err(err) => format!("{err}: use a duration such as 30s, 500ms or 1m30s"),
        };
        self.error(ConfigErrorKind::Invalid, node.pos, setting, problem);
        None
    }

    fn dlq(&mut self, node: &Node, path: String) -> DlqConfig {
        let fields = self.fields(node, &path, DLQ, "a mapping (a dead-letter queue)");
        let mut field_locations = BTreeMap::new();
        for (name, _, value) in &fields.entries {
            field_locations.insert((*name).to_owned(), self.loc(value.pos));
        }
        let mut dlq = DlqConfig::default_at(self.loc(node.pos), path);
        let plugin = self.opt_string(&fields, "plugin", &dlq.path);
        if !plugin.is_empty() {
            dlq.plugin = plugin;
        }
        if let Some(settings) = fields.get("settings") {
            (dlq.settings, dlq.setting_locations) =
                self.settings(settings, &join(&dlq.path, "settings"));
        }
        for (field, target, default) in [
            ("window-size", &mut dlq.window_size, 1),
            ("window-nack-threshold", &mut dlq.window_nack_threshold, 0),
        ] {
            let Some(node) = fields.get(field) else {
                continue;
            };
            let setting = join(&dlq.path, field);
            *target = match self.int(node, &setting) {
                None => default,
                Some(n) => usize::try_from(n).unwrap_or_else(|_| {
                    self.error(
                        ConfigErrorKind::Invalid,
                        node.pos,
                        &setting,
                        format!("{field} can't be negative ({n}); use 0 or more"),
                    );
                    default
                }),
            };
        }
        dlq.field_locations = field_locations;
        dlq
    }

    /// A settings map: every scalar kept as written, strings interpolated.
    fn settings(
        &mut self,
        node: &Node,
        path: &str,
    ) -> (BTreeMap<String, String>, BTreeMap<String, Location>) {
        let mut settings = BTreeMap::new();
        let mut locations = BTreeMap::new();
        let entries = match &node.value {
            Value::Map(entries) => entries,
            _ if node.is_null() => return (settings, locations),
            _ => {
                self.type_error(node, path, "a mapping of settings");
                return (settings, locations);
            }
        };
        for (key, value) in entries {
            // A key is kept as written even when it reads as null (`null: x` is "null").
            let key = match &key.value {
                Value::Scalar(scalar) if scalar.kind == ScalarKind::Null => scalar.text.clone(),
                _ => self.string(key, path),
            };
            let setting = join(path, &key);
            let value_text = self.string(value, &setting);
            locations.insert(key.clone(), self.loc(value.pos));
            settings.insert(key, value_text);
        }
        (settings, locations)
    }

    /// An optional string field; "" when absent or null.
    fn opt_string(&mut self, fields: &Fields<'_>, name: &str, path: &str) -> String {
        match fields.get(name) {
            Some(node) => self.string(node, &join(path, name)),
            None => String::new(),
        }
    }

    /// A scalar as a string: null is "", strings are interpolated, other scalars are
    /// kept as written.
    fn string(&mut self, node: &Node, setting: &str) -> String {
        let scalar = match &node.value {
            Value::Scalar(scalar) => scalar,
            _ => {
                self.type_error(node, setting, "a string");
                return String::new();
            }
        };
        match scalar.kind {
            ScalarKind::Null => String::new(),
            ScalarKind::Str => self.interpolate(&scalar.text, node.pos, setting),
            _ => scalar.text.clone(),
        }
    }

    /// An integer field: `None` when null. A string holding an integer (after
    /// interpolation) is accepted too, so `workers: ${WORKERS}` works.
    fn int(&mut self, node: &Node, setting: &str) -> Option<i64> {
        let parsed = match &node.value {
            Value::Scalar(scalar) => match scalar.kind {
                ScalarKind::Null => return None,
                ScalarKind::Int => yaml::parse_int(&scalar.text).ok_or(node.describe()),
                ScalarKind::Str => {
                    let text = self.interpolate(&scalar.text, node.pos, setting);
                    yaml::parse_int(text.trim()).ok_or_else(|| format!("{text:?}"))
                }
                _ => Err(node.describe()),
            },
            _ => Err(node.describe()),
        };
        match parsed {
            Ok(n) => Some(n),
            Err(found) => {
                self.error(
                    ConfigErrorKind::Type,
                    node.pos,
                    setting,
                    format!("expected an integer, found {found}"),
                );
                None
            }
        }
    }

    /// Expands environment variables in a string scalar.
    fn interpolate(&mut self, text: &str, pos: Pos, setting: &str) -> String {
        match env::expand(text, self.strict_env, self.lookup) {
            Ok(text) => text,
            Err(problems) => {
                for problem in problems {
                    let message = match problem {
                        EnvProblem::Unset(name) => format!(
                            "environment variable {name} is not set (strict mode); set it, or write $$ for a literal $"
                        ),
                        EnvProblem::BadSyntax(text) => format!(
                            "invalid variable reference {text:?} (strict mode); write ${{NAME}}, or $$ for a literal $"
                        ),
                    };
                    self.error(ConfigErrorKind::Env, pos, setting, message);
                }
                self.out.env_failed.insert(setting.to_owned());
                String::new()
            }
        }
    }
}

/// `major[.minor[.anything]]`, digits only in major and minor.
fn parse_version(text: &str) -> Option<Version> {
    let mut parts = text.splitn(3, '.');
    let number = |part: Option<&str>| -> Option<u32> {
        let part = part?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let major = number(parts.next())?;
    let minor = match parts.next() {
        None => 0,
        minor => number(minor)?,
    };
    Some(Version { major, minor })
}

/// The text of a key, for configuration paths.
fn key_text(key: &Node) -> String {
    match &key.value {
        Value::Scalar(scalar) => scalar.text.clone(),
        _ => "?".to_owned(),
    }
}

/// `path.name`, or `name` at the top.
fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_or_without_a_minor() {
        assert_eq!(parse_version("2.2"), Some(Version::V2_2));
        assert_eq!(parse_version("2"), Some(Version::V2_0));
        assert_eq!(
            parse_version("2.12"),
            Some(Version {
                major: 2,
                minor: 12
            })
        );
        assert_eq!(parse_version("2.2.0"), Some(Version::V2_2));
        assert_eq!(parse_version("v2"), None);
        assert_eq!(parse_version("2."), None);
        assert_eq!(parse_version("two"), None);
    }

    #[test]
    fn the_fallback_for_an_unknown_minor_is_the_latest_of_its_major() {
        assert_eq!(Version::latest_of(1), Some(Version::V1_1));
        assert_eq!(Version::latest_of(2), Some(Version::V2_2));
        assert_eq!(Version::latest_of(3), None);
    }
}
