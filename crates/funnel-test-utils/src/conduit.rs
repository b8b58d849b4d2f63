//! Conduit standalone connectors for tests: the Python connectors in
//! `fixtures/conduit/`, written with Conduit's Python SDK, installed as executables in
//! a connectors directory.
//!
//! The SDK lives in the virtualenv `scripts/setup-services.sh` makes
//! (`~/.cache/funnel/conduit-py`); `FUNNEL_CONDUIT_PYTHON` names another interpreter.

use std::path::{Path, PathBuf};

/// The Python interpreter that has Conduit's SDK.
///
/// # Panics
///
/// When it is not there (run `scripts/setup-services.sh`).
pub fn python() -> PathBuf {
    let python = std::env::var_os("FUNNEL_CONDUIT_PYTHON").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/funnel/conduit-py/bin/python")
        },
        PathBuf::from,
    );
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-services.sh (it installs conduit-connector-sdk)",
        python.display()
    );
    python
}

/// The path of fixture `name` (`counter_source.py`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/conduit")
        .join(name)
}

/// Installs fixture `fixture` as the executable `dir/name`: a wrapper whose first line
/// is the absolute shebang of [`python`], as Conduit's SDK documents. Returns its path.
///
/// # Panics
///
/// When the file cannot be written.
pub fn install(dir: &Path, name: &str, fixture_name: &str) -> PathBuf {
    install_with_env(dir, name, fixture_name, &[])
}

/// [`install`], the wrapper setting the environment variables `env` first (the counter
/// source takes its plugin name from `COUNTER_PLUGIN_NAME`).
///
/// # Panics
///
/// When the file cannot be written.
pub fn install_with_env(
    dir: &Path,
    name: &str,
    fixture_name: &str,
    env: &[(&str, &str)],
) -> PathBuf {
    let mut script = format!("#!{}\nimport os, runpy\n", python().display());
    for (key, value) in env {
        script.push_str(&format!("os.environ[{key:?}] = {value:?}\n"));
    }
    script.push_str(&format!(
        "runpy.run_path({:?}, run_name=\"__main__\")\n",
        fixture(fixture_name).display().to_string()
    ));
    install_script(dir, name, &script)
}

/// Installs the collecting destination fixture as plugin `collect` in `connectors`,
/// its lifecycle calls (created, updated, deleted) appended to the file `calls` as JSON
/// lines. Returns its path.
///
/// # Panics
///
/// When the file cannot be written or `calls` is not UTF-8.
pub fn install_collect_destination(connectors: &Path, calls: &Path) -> PathBuf {
    let calls = calls
        .to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", calls.display()));
    install_with_env(
        connectors,
        "collect",
        "collect_destination.py",
        &[("FUNNEL_TEST_LIFECYCLE_LOG", calls)],
    )
}

/// Writes `script` as the executable `dir/name`. Returns its path.
///
/// # Panics
///
/// When the file cannot be written.
pub fn install_script(dir: &Path, name: &str, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    path
}

/// How many processes run the executable `path` (plugins a test started and that
/// should be gone), read from `/proc/*/cmdline`.
pub fn running(path: &Path) -> usize {
    let needle = path.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| {
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == needle.as_bytes())
        })
        .count()
}
