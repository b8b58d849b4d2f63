//! The description of one built-in component (a source, a destination or a processor):
//! everything the registry, `funnel connectors ls`, `funnel processors ls`, the docs,
//! validation, `funnel pipelines validate --check`, `/readyz` and `funnel pipelines
//! delete` need to know about it, declared once, next to its code.
//!
//! The registry is a plain list of [`Component`]s; nothing looks a plugin up by name
//! anywhere else.

use std::sync::Arc;

use funnel_record::Position;
use futures::future::BoxFuture;

use crate::error::ConnectorError;
use crate::plugin::{Destination, Processor, Source};
use crate::spec::{SettingSpec, Settings, SettingsError};

/// What a component is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    /// Reads records.
    Source,
    /// Writes records.
    Destination,
    /// Transforms, filters or splits records.
    Processor,
}

impl ComponentKind {
    /// The kind as Conduit spells it (`source`, `destination`, `processor`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
            Self::Processor => "processor",
        }
    }
}

/// What building a component gives: the component, or every invalid setting.
pub type Built<T> = Result<T, Vec<SettingsError>>;

/// The build function of one variant of [`Build`], as a picker for `lookup`.
macro_rules! pick {
    ($variant:path) => {
        |build: &Build| match build {
            $variant(build) => Some(*build),
            _ => None,
        }
    };
}

/// Builds a source: `(id, settings, resume)`, where `id` is the full connector ID
/// (`pipeline:connector`) and `resume` the last committed position. No I/O.
pub type BuildSource = fn(&str, &Settings, Option<Position>) -> Built<Arc<dyn Source>>;

/// Builds a destination: `(id, settings)`. No I/O.
pub type BuildDestination = fn(&str, &Settings) -> Built<Arc<dyn Destination>>;

/// Builds a processor: `(id, settings)`. No I/O.
pub type BuildProcessor = fn(&str, &Settings) -> Built<Box<dyn Processor>>;

/// How a component is built; its variant is the component's kind.
#[derive(Clone, Copy)]
pub enum Build {
    /// A source.
    Source(BuildSource),
    /// A destination.
    Destination(BuildDestination),
    /// A processor.
    Processor(BuildProcessor),
}

/// Whether a component can reach what it works with (its server), given its ID and
/// settings: a connection test, run by `funnel pipelines validate --check` and `/readyz`.
pub type Check = fn(String, Settings) -> BoxFuture<'static, Result<(), ConnectorError>>;

/// What a source keeps outside Funnel and releases when its pipeline is deleted
/// (Conduit's `LifecycleOnDeleted`).
#[derive(Clone, Copy)]
pub struct Cleanup {
    /// What [`run`](Self::run) would release, one line per resource, for a person to
    /// confirm first: `(id, settings)`.
    pub plan: fn(&str, &Settings) -> Result<Vec<String>, ConnectorError>,
    /// Releases it: `(id, settings)`.
    pub run: fn(String, Settings) -> BoxFuture<'static, Result<(), ConnectorError>>,
}

/// One built-in component.
#[derive(Clone, Copy)]
pub struct Component {
    /// The plugin name (`generator`, `field.set`).
    pub name: &'static str,
    /// One line about what it does.
    pub summary: &'static str,
    /// Every setting it accepts, in groups (its own, then the SDK's): what the docs
    /// and `ls` commands print, and what its settings reader accepts.
    pub settings: &'static [&'static [SettingSpec]],
    /// How to build it (and so what kind it is).
    pub build: Build,
    /// Its connection test, if it has a server to reach.
    pub check: Option<Check>,
    /// What `funnel pipelines delete` calls, if it keeps anything outside Funnel.
    pub cleanup: Option<Cleanup>,
}

impl Component {
    /// A component without a connection test or a cleanup.
    pub const fn new(
        name: &'static str,
        summary: &'static str,
        settings: &'static [&'static [SettingSpec]],
        build: Build,
    ) -> Self {
        Self {
            name,
            summary,
            settings,
            build,
            check: None,
            cleanup: None,
        }
    }

    /// The same component with a connection test.
    #[must_use]
    pub const fn with_check(mut self, check: Check) -> Self {
        self.check = Some(check);
        self
    }

    /// The same component with a cleanup.
    #[must_use]
    pub const fn with_cleanup(mut self, cleanup: Cleanup) -> Self {
        self.cleanup = Some(cleanup);
        self
    }

    /// Every setting it accepts, its own first.
    pub fn settings(&self) -> impl Iterator<Item = &'static SettingSpec> + use<> {
        self.settings.iter().flat_map(|group| group.iter())
    }

    /// What it is.
    pub fn kind(&self) -> ComponentKind {
        match self.build {
            Build::Source(_) => ComponentKind::Source,
            Build::Destination(_) => ComponentKind::Destination,
            Build::Processor(_) => ComponentKind::Processor,
        }
    }
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Component")
            .field("name", &self.name)
            .field("kind", &self.kind())
            .field("settings", &self.settings().count())
            .field("check", &self.check.is_some())
            .field("cleanup", &self.cleanup.is_some())
            .finish()
    }
}

/// Looks up components by name and kind in a registry table.
#[derive(Clone, Debug)]
pub struct Registry {
    components: Vec<Component>,
}

impl Registry {
    /// A registry of `components`.
    pub fn new(components: Vec<Component>) -> Self {
        Self { components }
    }

    /// Every component, in table order.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The component called `name` of `kind`.
    ///
    /// # Errors
    ///
    /// One error about the setting `plugin` when no component of `kind` has that name
    /// (naming the ones that exist).
    pub fn find(&self, name: &str, kind: ComponentKind) -> Result<&Component, SettingsError> {
        self.components
            .iter()
            .find(|c| c.name == name && c.kind() == kind)
            .ok_or_else(|| self.not_found(name, kind))
    }

    /// The part of `build` that `pick` wants, of the component called `name`.
    fn lookup<T>(
        &self,
        name: &str,
        kind: ComponentKind,
        pick: impl Fn(&Build) -> Option<T>,
    ) -> Built<T> {
        self.components
            .iter()
            .filter(|c| c.name == name)
            .find_map(|c| pick(&c.build))
            .ok_or_else(|| vec![self.not_found(name, kind)])
    }

    fn not_found(&self, name: &str, kind: ComponentKind) -> SettingsError {
        let with_kind: Vec<&str> = self
            .components
            .iter()
            .filter(|c| c.kind() == kind)
            .map(|c| c.name)
            .collect();
        let what = match kind {
            ComponentKind::Processor => "processor",
            ComponentKind::Source | ComponentKind::Destination => "connector",
        };
        let kind = kind.name();
        let message = if self.components.iter().any(|c| c.name == name) {
            format!(
                "the builtin {what} {name:?} has no {kind} (builtin {kind}s: {})",
                with_kind.join(", ")
            )
        } else if what == kind {
            format!(
                "unknown builtin {kind} {name:?} (builtin {kind}s: {})",
                with_kind.join(", ")
            )
        } else {
            format!(
                "unknown builtin {kind} {what} {name:?} (builtin {kind}s: {})",
                with_kind.join(", ")
            )
        };
        SettingsError::new("plugin", message)
    }

    /// Builds source `name`.
    ///
    /// # Errors
    ///
    /// An unknown plugin (about `plugin`), or every invalid setting.
    pub fn source(
        &self,
        name: &str,
        id: &str,
        settings: &Settings,
        resume: Option<Position>,
    ) -> Built<Arc<dyn Source>> {
        let build = self.lookup(name, ComponentKind::Source, pick!(Build::Source))?;
        build(id, settings, resume)
    }
}

/// The [`Registry`] methods that build a component of one kind from its ID and
/// settings alone (destinations and processors; a source also takes where to resume).
macro_rules! build_from_settings {
    ($($(#[$doc:meta])* $method:ident: $kind:ident -> $built:ty;)*) => {
        impl Registry {
            $(
                $(#[$doc])*
                ///
                /// # Errors
                ///
                /// An unknown plugin (about `plugin`), or every invalid setting.
                pub fn $method(&self, name: &str, id: &str, settings: &Settings) -> Built<$built> {
                    let build = self.lookup(name, ComponentKind::$kind, pick!(Build::$kind))?;
                    build(id, settings)
                }
            )*
        }
    };
}

build_from_settings! {
    /// Builds destination `name`.
    destination: Destination -> Arc<dyn Destination>;
    /// Builds processor `name`.
    processor: Processor -> Box<dyn Processor>;
}
