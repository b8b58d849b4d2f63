//! Pipeline files: YAML, environment interpolation, Conduit's decoding and validation.
//! The first byte picks strict or lenient interpolation; the rest is the file.

#![no_main]

use std::collections::HashMap;
use std::path::Path;

use funnel_config::{LoadOptions, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let opts = LoadOptions {
        strict_env: mode & 1 == 1,
        env: Some(HashMap::from([("HOST".to_owned(), "db:5432".to_owned())])),
    };
    if let Err(errors) = parse(text, Path::new("fuzz.yaml"), &opts) {
        for error in errors.iter() {
            // Every error must render, and stay short however big the input is.
            let message = error.to_string();
            assert!(
                message.len() <= 4096 + 2 * text.len().min(512),
                "an error message of {} bytes",
                message.len()
            );
        }
    }
});
