//! Plugin references: `[builtin:|standalone:|any:]NAME[@VERSION]`. Funnel has only
//! built-in plugins, so the prefix and version are accepted and ignored (a
//! `standalone:` reference is refused).

/// The bare plugin name of a reference (`builtin:file@v0.10.3` -> `file`).
///
/// # Errors
///
/// A message when the reference names a standalone plugin.
pub fn plugin_name(reference: &str) -> Result<&str, String> {
    let (prefix, rest) = match reference.split_once(':') {
        Some((prefix, rest)) => (prefix, rest),
        None => ("any", reference),
    };
    let name = rest.split('@').next().unwrap_or(rest);
    match prefix {
        "builtin" | "any" => Ok(name),
        "standalone" => Err(
            "standalone plugins are not supported; use a built-in one (funnel connectors ls)"
                .to_owned(),
        ),
        other => Err(format!(
            "unknown plugin type {other:?} (expected builtin, standalone or any)"
        )),
    }
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
}
