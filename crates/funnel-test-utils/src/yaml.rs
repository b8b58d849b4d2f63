//! Pipeline files for tests, written by code in Conduit's version 2.2 layout, so every
//! test that needs one shares the same shape (and the same line numbers for the same
//! content):
//!
//! ```
//! use funnel_test_utils::yaml;
//!
//! let file = yaml::file(&[yaml::pipeline(
//!     "p",
//!     &[],
//!     &[
//!         yaml::connector("gen", "source", "builtin:generator", &[("recordCount", "10")]),
//!         yaml::connector("out", "destination", "builtin:log", &[]),
//!     ],
//!     &[],
//! )]);
//! assert_eq!(file.lines().nth(8), Some("          recordCount: \"10\""));
//! ```
//!
//! Plain fields (`status`, `workers`, `timeout`) are written as they are; settings are
//! always double-quoted strings, as Conduit reads every setting as a string.

use std::fmt::Write as _;

/// A file of `pipelines` (each from [`pipeline`]).
pub fn file(pipelines: &[String]) -> String {
    format!("version: \"2.2\"\npipelines:\n{}", pipelines.concat())
}

/// One pipeline of a [`file`]: its `id`, its plain `fields` (`status`, ...), its
/// `connectors` and pipeline `processors` (each from [`connector`] or [`processor`]).
/// An empty list is left out.
pub fn pipeline(
    id: &str,
    fields: &[(&str, &str)],
    connectors: &[String],
    processors: &[String],
) -> String {
    let mut yaml = format!("  - id: {id}\n");
    for (name, value) in fields {
        let _ = writeln!(yaml, "    {name}: {value}");
    }
    for (name, items) in [("connectors", connectors), ("processors", processors)] {
        if !items.is_empty() {
            let _ = writeln!(yaml, "    {name}:");
            yaml.push_str(&items.concat());
        }
    }
    yaml
}

/// One connector of a [`pipeline`]: `kind` is `source` or `destination`, `plugin` as
/// the file names it (`builtin:file`).
pub fn connector(id: &str, kind: &str, plugin: &str, settings: &[(&str, &str)]) -> String {
    item(id, &[("type", kind), ("plugin", plugin)], settings)
}

/// A generator source `id` of raw records with an integer `id` field, positioned 1, 2,
/// ...: `count` records (`-1`: without end) at `rate` per second (`0`: as fast as it
/// can).
pub fn generator(id: &str, count: i64, rate: u64) -> String {
    let (count, rate) = (count.to_string(), rate.to_string());
    connector(
        id,
        "source",
        "builtin:generator",
        &[
            ("format.type", "raw"),
            ("format.options.id", "int"),
            ("recordCount", &count),
            ("rate", &rate),
        ],
    )
}

/// A file destination `id` writing OpenCDC JSON lines to `path`.
pub fn file_destination(id: &str, path: &str) -> String {
    connector(id, "destination", "builtin:file", &[("path", path)])
}

/// One pipeline processor of a [`pipeline`], with its plain `fields` (`condition`,
/// `workers`, `timeout`).
pub fn processor(
    id: &str,
    plugin: &str,
    fields: &[(&str, &str)],
    settings: &[(&str, &str)],
) -> String {
    let mut all = vec![("plugin", plugin)];
    all.extend_from_slice(fields);
    item(id, &all, settings)
}

/// One element of a pipeline's list: `id`, plain `fields`, then `settings`.
fn item(id: &str, fields: &[(&str, &str)], settings: &[(&str, &str)]) -> String {
    let mut yaml = format!("      - id: {id}\n");
    for (name, value) in fields {
        let _ = writeln!(yaml, "        {name}: {value}");
    }
    if !settings.is_empty() {
        yaml.push_str("        settings:\n");
    }
    for (key, value) in settings {
        let _ = writeln!(yaml, "          {key}: {value:?}");
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_file_has_the_version_2_2_layout() {
        let text = file(&[pipeline(
            "p",
            &[("status", "stopped")],
            &[connector("out", "destination", "builtin:log", &[])],
            &[processor(
                "slow",
                "custom.javascript",
                &[("timeout", "1s")],
                &[("script", "function process(r) { return r; }")],
            )],
        )]);
        assert_eq!(
            text,
            "version: \"2.2\"\npipelines:\n  - id: p\n    status: stopped\n    connectors:\n      \
             - id: out\n        type: destination\n        plugin: builtin:log\n    processors:\n      \
             - id: slow\n        plugin: custom.javascript\n        timeout: 1s\n        settings:\n          \
             script: \"function process(r) { return r; }\"\n"
        );
    }
}
