//! Plugin references: `[builtin:|standalone:|any:]NAME[@VERSION]`, split at the first
//! `:` and the first `@`. Built-in plugins have one version each, so a version is
//! accepted and ignored for them. A `standalone:` reference, or a bare name that a
//! standalone plugin has, names a plugin of the connectors directory (see
//! [`resolve`]); processors are built-in only.

#[cfg(feature = "standalone")]
use std::sync::{Arc, OnceLock};

/// The bare plugin name of a built-in reference (`builtin:file@v0.10.3` -> `file`).
///
/// # Errors
///
/// A message when the reference names a standalone plugin or an unknown type.
pub fn plugin_name(reference: &str) -> Result<&str, String> {
    let (prefix, rest) = match reference.split_once(':') {
        Some((prefix, rest)) => (prefix, rest),
        None => ("any", reference),
    };
    let name = rest.split('@').next().unwrap_or(rest);
    match prefix {
        "builtin" | "any" => Ok(name),
        "standalone" => Err(
            "standalone plugins are not supported here; use a built-in one (funnel connectors ls)"
                .to_owned(),
        ),
        other => Err(format!(
            "unknown plugin type {other:?} (expected builtin, standalone or any)"
        )),
    }
}

/// What a connector reference names.
#[derive(Clone, Debug)]
pub enum Resolved<'a> {
    /// A built-in connector, by name.
    Builtin(&'a str),
    /// A standalone plugin of the connectors directory.
    #[cfg(feature = "standalone")]
    Standalone(Arc<funnel_plugins::PluginSpec>),
}

#[cfg(feature = "standalone")]
static CATALOGUE: OnceLock<funnel_plugins::Catalogue> = OnceLock::new();

/// Sets the standalone plugins this process knows (found once, at startup). Returns
/// false when they were already set.
#[cfg(feature = "standalone")]
pub fn set_standalone(catalogue: funnel_plugins::Catalogue) -> bool {
    CATALOGUE.set(catalogue).is_ok()
}

/// The standalone plugins this process knows, if they were set.
#[cfg(feature = "standalone")]
pub fn standalone() -> Option<&'static funnel_plugins::Catalogue> {
    CATALOGUE.get()
}

/// What the connector reference `reference` names: a standalone plugin for
/// `standalone:name[@version]`, and for a bare `name[@version]` when a standalone plugin
/// has that name and version (Conduit tries standalone first); a built-in otherwise.
///
/// # Errors
///
/// An unknown prefix, or a standalone plugin that is not there (naming its versions
/// when only the version is wrong).
#[cfg(feature = "standalone")]
pub fn resolve(reference: &str) -> Result<Resolved<'_>, String> {
    use funnel_plugins::catalogue::RefKind;
    let parsed = funnel_plugins::PluginRef::parse(reference)?;
    let found = |catalogue: Option<&funnel_plugins::Catalogue>| match catalogue {
        Some(c) => c.find(parsed.name, parsed.version),
        None => Ok(None),
    };
    match parsed.kind {
        RefKind::Builtin => Ok(Resolved::Builtin(parsed.name)),
        RefKind::Standalone => match found(standalone())? {
            Some(spec) => Ok(Resolved::Standalone(spec)),
            None => Err(format!(
                "standalone connector plugin {:?} not found (no plugin of that name in the \
                 connectors directory, --connectors.path)",
                parsed.name
            )),
        },
        RefKind::Any => match found(standalone()) {
            Ok(Some(spec)) => Ok(Resolved::Standalone(spec)),
            _ => Ok(Resolved::Builtin(parsed.name)),
        },
    }
}

/// What the connector reference `reference` names: always a built-in in a build
/// without the `standalone` feature.
///
/// # Errors
///
/// A `standalone:` reference, or an unknown prefix.
#[cfg(not(feature = "standalone"))]
pub fn resolve(reference: &str) -> Result<Resolved<'_>, String> {
    if reference.starts_with("standalone:") {
        return Err(
            "standalone plugins are not supported by this build of funnel (built without the \
             `standalone` feature)"
                .to_owned(),
        );
    }
    plugin_name(reference).map(Resolved::Builtin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_references_keep_only_the_name() {
        assert_eq!(plugin_name("builtin:file@v0.10.3"), Ok("file"));
        assert_eq!(plugin_name("generator"), Ok("generator"));
        assert_eq!(plugin_name("any:log"), Ok("log"));
        assert!(plugin_name("standalone:foo").is_err());
        assert!(plugin_name("weird:foo").is_err());
    }

    #[test]
    fn a_bare_name_no_standalone_plugin_has_is_a_builtin() {
        assert!(matches!(resolve("file@v1"), Ok(Resolved::Builtin("file"))));
        assert!(resolve("standalone:nothing-here").is_err());
        assert!(resolve("weird:foo").is_err());
    }
}
