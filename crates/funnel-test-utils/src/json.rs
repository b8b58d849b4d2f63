//! Reading the JSON a test gets back from `funnel --json` or the API.

use serde_json::Value;

/// The string `key` of each object of the JSON array `list`, in order.
///
/// # Panics
///
/// When `list` is not an array or an object in it has no string `key`.
pub fn strings_of<'a>(list: &'a Value, key: &str) -> Vec<&'a str> {
    let Some(objects) = list.as_array() else {
        panic!("expected a JSON array, got {list}");
    };
    objects
        .iter()
        .map(|object| {
            object[key]
                .as_str()
                .unwrap_or_else(|| panic!("no string {key:?} in {object}"))
        })
        .collect()
}
