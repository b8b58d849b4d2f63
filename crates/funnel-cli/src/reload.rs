//! Loading pipeline files for `funnel run`, and noticing when they change.
//!
//! Files are loaded one by one ([`funnel_runtime::provision`]): a bad file is logged
//! with every error and left out, and the others run. `SIGHUP` reloads them at any
//! time; with `--pipelines.watch` the pipelines path is also polled every
//! [`WATCH_INTERVAL`] for files that appear, disappear or change (their size or
//! modification time), and a change is applied once the path has stayed the same for
//! one more interval, so a file caught half-written is not loaded. Polling needs no
//! platform notification API and costs one `stat` per file per second.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use funnel_runtime::Provision;
use tracing::{error, warn};

/// How often `--pipelines.watch` looks at the pipelines path.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The default pipelines path: missing is fine (nothing to run).
const DEFAULT_PATH: &str = "./pipelines";

/// Loads every pipeline file of `path`, logging warnings and the files that cannot be
/// used (every error, with file, line and column).
///
/// # Errors
///
/// When `path` itself cannot be read; at startup a missing default `./pipelines` gives
/// nothing to run instead (at a reload it is an error: nothing is stopped for it).
pub(crate) fn load(path: &Path, strict_env: bool, startup: bool) -> Result<Provision, String> {
    if startup && !path.exists() && path == Path::new(DEFAULT_PATH) {
        warn!(path = %path.display(), "no pipelines directory; nothing to run");
        return Ok(Provision::empty());
    }
    let options = funnel_config::LoadOptions {
        strict_env,
        ..funnel_config::LoadOptions::default()
    };
    let provision = funnel_runtime::provision(path, &options).map_err(|e| e.to_string())?;
    for warning in &provision.warnings {
        warn!("{warning}");
    }
    for failure in &provision.failures {
        error!(
            file = %failure.file.display(),
            "pipeline file skipped, the other files run: {}",
            failure.errors
        );
    }
    Ok(provision)
}

/// What the pipelines path looks like: each file's name, size and modification time.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn fingerprint(path: &Path) -> Fingerprint {
    let stat = |file: PathBuf| {
        let meta = std::fs::metadata(&file).ok();
        let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
        let modified = meta.and_then(|m| m.modified().ok());
        (file, len, modified)
    };
    if !path.is_dir() {
        return vec![stat(path.to_path_buf())];
    }
    let mut files: Fingerprint = std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| {
                    let name = f.to_string_lossy().to_ascii_lowercase();
                    name.ends_with(".yml") || name.ends_with(".yaml")
                })
                .map(stat)
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Polls the pipelines path for changes.
pub(crate) struct Watch {
    path: PathBuf,
    /// What was loaded last.
    loaded: Fingerprint,
    /// What the previous poll saw.
    seen: Fingerprint,
}

impl Watch {
    /// Starts watching `path` as it is now (what was just loaded).
    pub(crate) fn new(path: &Path) -> Self {
        let now = fingerprint(path);
        Self {
            path: path.to_path_buf(),
            loaded: now.clone(),
            seen: now,
        }
    }

    /// True when the path changed since it was last loaded and has stayed the same
    /// since the previous poll: time to reload.
    pub(crate) fn poll(&mut self) -> bool {
        let now = fingerprint(&self.path);
        let settled = now == self.seen;
        self.seen = now;
        settled && self.seen != self.loaded
    }

    /// Notes that the path was just loaded (by this watch or by `SIGHUP`).
    pub(crate) fn loaded(&mut self) {
        self.loaded = fingerprint(&self.path);
        self.seen = self.loaded.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_reported_once_the_path_has_settled_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, "a").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let mut watch = Watch::new(dir.path());
        assert!(!watch.poll());
        std::fs::write(&file, "ab").unwrap();
        assert!(
            !watch.poll(),
            "changed since the previous poll: not settled yet"
        );
        assert!(watch.poll(), "settled");
        watch.loaded();
        assert!(!watch.poll());
        // Other files do not count; new and removed pipeline files do.
        std::fs::write(dir.path().join("notes.txt"), "xy").unwrap();
        assert!(!watch.poll() && !watch.poll());
        std::fs::write(dir.path().join("q.yml"), "q").unwrap();
        assert!(!watch.poll());
        assert!(watch.poll());
        watch.loaded();
        std::fs::remove_file(&file).unwrap();
        assert!(!watch.poll());
        assert!(watch.poll());
    }
}
