//! Discovery: the plugins of the connectors directory, by name and version, and the
//! references pipelines use to name them.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::pb::connector::v2::specifier::specify;
use crate::pb::connector::v2::specifier_plugin_client::SpecifierPluginClient;
use crate::process::{DISCOVERY_ID, HostOptions, PluginProcess, Purpose};
use crate::spec::PluginSpec;

/// Which registry a plugin reference asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefKind {
    /// `builtin:`.
    Builtin,
    /// `standalone:`.
    Standalone,
    /// No prefix (or `any:`): standalone first, then built-in.
    Any,
}

/// A plugin reference: `[builtin:|standalone:|any:]name[@version]`, split at the first
/// `:` and the first `@`, as Conduit does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginRef<'a> {
    /// The registry asked for.
    pub kind: RefKind,
    /// The plugin's name.
    pub name: &'a str,
    /// The version, if one is asked for (`latest` counts as none).
    pub version: Option<&'a str>,
}

impl<'a> PluginRef<'a> {
    /// Parses `reference`.
    ///
    /// # Errors
    ///
    /// An unknown prefix.
    pub fn parse(reference: &'a str) -> Result<Self, String> {
        let (kind, rest) = match reference.split_once(':') {
            Some(("builtin", rest)) => (RefKind::Builtin, rest),
            Some(("standalone", rest)) => (RefKind::Standalone, rest),
            Some(("any", rest)) => (RefKind::Any, rest),
            Some((other, _)) => {
                return Err(format!(
                    "unknown plugin type {other:?} (expected builtin, standalone or any)"
                ));
            }
            None => (RefKind::Any, reference),
        };
        let (name, version) = match rest.split_once('@') {
            Some((name, version)) => (name, Some(version).filter(|v| *v != "latest")),
            None => (rest, None),
        };
        Ok(Self {
            kind,
            name,
            version,
        })
    }
}

/// The plugins of a connectors directory: its entries that are not directories
/// (symbolic links followed), sorted.
///
/// # Errors
///
/// When `dir` cannot be read (`NotFound` when it is missing).
pub fn plugin_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| !p.is_dir())
        .collect();
    files.sort();
    Ok(files)
}

/// The standalone plugins found at startup, and the options every one runs with.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    plugins: Vec<Arc<PluginSpec>>,
    options: HostOptions,
}

impl Catalogue {
    /// A catalogue of `plugins` (tests), run with `options`.
    pub fn new(plugins: Vec<PluginSpec>, options: HostOptions) -> Self {
        Self {
            plugins: plugins.into_iter().map(Arc::new).collect(),
            options,
        }
    }

    /// Asks every file of `dir` for its specification, all at once, as Conduit does
    /// at startup: every non-directory entry (symbolic links followed) is started
    /// and asked `Specify`. One that cannot be started, does not hand shake, or gives
    /// a specification Funnel cannot read is skipped with one warning saying why; two
    /// with the same name and version are both dropped. A missing directory is an
    /// empty catalogue.
    pub async fn discover(dir: &Path, options: &HostOptions) -> Self {
        let entries = plugin_files(dir).unwrap_or_else(|e| {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %dir.display(), "could not read the connectors directory: {e}");
            }
            Vec::new()
        });
        let specs = futures::future::join_all(entries.into_iter().map(|path| async move {
            let spec = specify(&path, options).await;
            (path, spec)
        }))
        .await;
        let mut plugins: Vec<PluginSpec> = Vec::new();
        let mut dropped: Vec<(String, String)> = Vec::new();
        for (path, spec) in specs {
            match spec {
                Ok(spec) => {
                    let key = (spec.name.clone(), spec.version.clone());
                    if dropped.contains(&key) {
                        continue;
                    }
                    if let Some(i) = plugins
                        .iter()
                        .position(|p| p.name == spec.name && p.version == spec.version)
                    {
                        tracing::warn!(
                            plugin_path = %path.display(),
                            other = %plugins[i].path.display(),
                            "plugin with the same name and version already registered: {}; both are skipped",
                            spec.full_name()
                        );
                        plugins.remove(i);
                        dropped.push(key);
                        continue;
                    }
                    tracing::info!(
                        plugin_path = %path.display(),
                        "standalone connector plugin loaded: {}",
                        spec.full_name()
                    );
                    plugins.push(spec);
                }
                Err(why) => tracing::warn!(
                    plugin_path = %path.display(),
                    "could not load standalone connector plugin: {why}"
                ),
            }
        }
        Self::new(plugins, options.clone())
    }

    /// Every plugin, by name then version.
    pub fn plugins(&self) -> &[Arc<PluginSpec>] {
        &self.plugins
    }

    /// The options plugins run with.
    pub fn options(&self) -> &HostOptions {
        &self.options
    }

    /// The plugin called `name` at `version` (the latest when `None`), or `Ok(None)`
    /// when no plugin has that name.
    ///
    /// # Errors
    ///
    /// When plugins of that name exist but none has that version (naming the versions
    /// there are).
    pub fn find(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<Arc<PluginSpec>>, String> {
        let mut named: Vec<&Arc<PluginSpec>> =
            self.plugins.iter().filter(|p| p.name == name).collect();
        if named.is_empty() {
            return Ok(None);
        }
        named.sort_by(|a, b| compare_versions(&a.version, &b.version));
        match version {
            None => Ok(named.last().map(|p| Arc::clone(p))),
            Some(version) => named
                .iter()
                .find(|p| p.version == version)
                .map(|p| Some(Arc::clone(p)))
                .ok_or_else(|| {
                    let versions: Vec<&str> = named.iter().map(|p| p.version.as_str()).collect();
                    format!(
                        "standalone connector plugin \"{name}@{version}\" not found; available versions: [{}]",
                        versions.join(" ")
                    )
                }),
        }
    }
}

/// Orders versions as Conduit does: semantic versions (a `v` prefix allowed) by
/// precedence, any semantic version above any other text, other text as text.
fn compare_versions(a: &str, b: &str) -> Ordering {
    let parse = |v: &str| semver::Version::parse(v.strip_prefix('v').unwrap_or(v)).ok();
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => a.cmp(b),
    }
}

/// Starts the plugin at `path`, asks its specification and stops it.
async fn specify(path: &Path, options: &HostOptions) -> Result<PluginSpec, String> {
    let mut process = PluginProcess::launch(path, DISCOVERY_ID, Purpose::Discovery, options)
        .await
        .map_err(|e| e.to_string())?;
    let mut client =
        SpecifierPluginClient::new(process.channel()).max_decoding_message_size(usize::MAX >> 1);
    let answer =
        tokio::time::timeout(options.call_timeout, client.specify(specify::Request {})).await;
    let result = match answer {
        Err(_) => Err(process
            .failure(format!(
                "no answer to Specify within {:?}",
                options.call_timeout
            ))
            .to_string()),
        Ok(Err(status)) => Err(process
            .failure(format!("Specify failed: {}", status.message()))
            .to_string()),
        Ok(Ok(answer)) => match answer.into_inner().specification {
            None => Err("the plugin answered Specify without a specification".to_owned()),
            Some(spec) => PluginSpec::from_wire(path.to_path_buf(), spec)
                .map_err(|e| format!("invalid specification: {e}")),
        },
    };
    process.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_first_colon_and_the_first_at() {
        let r = PluginRef::parse("standalone:mongo@v1.2.3").unwrap();
        assert_eq!(
            (r.kind, r.name, r.version),
            (RefKind::Standalone, "mongo", Some("v1.2.3"))
        );
        let r = PluginRef::parse("file").unwrap();
        assert_eq!((r.kind, r.name, r.version), (RefKind::Any, "file", None));
        let r = PluginRef::parse("builtin:log@latest").unwrap();
        assert_eq!((r.kind, r.name, r.version), (RefKind::Builtin, "log", None));
        assert!(PluginRef::parse("weird:x").is_err());
    }

    #[test]
    fn the_latest_version_is_the_highest_semantic_version() {
        let mut versions = vec!["v0.10.0", "junk", "v0.9.1", "1.0.0-rc1", "v1.0.0"];
        versions.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            versions,
            ["junk", "v0.9.1", "v0.10.0", "1.0.0-rc1", "v1.0.0"]
        );
    }
}
