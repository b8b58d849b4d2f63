#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Whatever the text, loading returns pipelines or located errors; it never panics.

use std::collections::HashMap;
use std::path::Path;

use funnel_config::{LoadOptions, parse};
use proptest::prelude::*;

/// Fragments that make up pipeline-ish YAML, so the generated texts reach deep into the
/// decoder rather than failing at the first character.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("version: 2.2\n".to_owned()),
        Just("version: 1.1\n".to_owned()),
        Just("pipelines:\n".to_owned()),
        Just("  - id: p\n".to_owned()),
        Just("  p:\n".to_owned()),
        Just("    connectors:\n".to_owned()),
        Just("      - id: c\n        type: source\n        plugin: x\n".to_owned()),
        Just("    processors: [{id: a, plugin: b, workers: -1}]\n".to_owned()),
        Just("    dead-letter-queue: {window-size: 2}\n".to_owned()),
        Just("        settings: {a: ${X}, b: $$, c: &x [1], d: *x}\n".to_owned()),
        Just("---\n".to_owned()),
        "[ -~\n\t]{0,20}",
    ]
}

proptest! {
    #[test]
    fn any_text_loads_or_fails_with_located_errors(
        parts in proptest::collection::vec(fragment(), 0..12),
        strict in any::<bool>(),
    ) {
        let text = parts.concat();
        let opts = LoadOptions { strict_env: strict, env: Some(HashMap::new()) };
        if let Err(errors) = parse(&text, Path::new("fuzz.yaml"), &opts) {
            prop_assert!(!errors.is_empty());
            for error in &errors {
                prop_assert_eq!(error.location.file.as_path(), Path::new("fuzz.yaml"));
                prop_assert!(error.location.line >= 1, "{}", error);
                prop_assert!(error.location.column >= 1, "{}", error);
            }
        }
    }
}
