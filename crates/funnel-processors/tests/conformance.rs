#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Runs Conduit's processor conformance cases (`tests/data/processors.json`, a copy of
//! the shared conformance data; its README describes the format) against Funnel's
//! built-in processors and conditions, and Funnel's own cases in the same format
//! (`tests/data/go-behaviour.json`) for the Go behaviour Conduit's tests leave open,
//! such as `fmt.Sprint` writing float64 `1e6` as `1e+06`.
//!
//! - Records are read with `Record::from_json`, which keeps the int/float distinction
//!   of the notation (`54` is an int, `54.0` a float).
//! - Outputs are compared strictly: data kinds, raw bytes, structured values with
//!   their int/float kind, metadata as maps (`null` equals `{}`).
//! - Error text: every `contains` is enforced, whether the Go test asserts it (`test`)
//!   or it is only what Conduit's code writes (`implementation`), except the entries of
//!   [`TEXT_NOT_ENFORCED`]. Settings errors are matched in Conduit's rendering,
//!   `error validating "<setting>": <message>`.
//! - `custom.javascript` cases are *pending* while that plugin is not built in.
//! - `types` paths must hold a [`Value::Time`] whose JSON form (Go's
//!   `time.Time.MarshalJSON`) is the expected text; a time anywhere else never equals
//!   the expected JSON.
//! - [`ALLOWED`] lists deliberate deviations, each with its reason (also in
//!   `docs/processors.md`); such a case is still checked, against the deviation.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use funnel_core::ProcessedRecord;
use funnel_processors::{Settings, SettingsError, build_configured};
use funnel_record::{Data, Record, Value};
use serde_json::{Map, Number, Value as Json};

/// Deliberate deviations from the conformance data: case id and reason.
const ALLOWED: &[(&str, &str)] = &[];

/// Cases whose `implementation` error text (not asserted by Conduit's test) Funnel
/// does not reproduce word for word, with the reason. Only that an error occurs (at
/// the right stage) is checked for them.
const TEXT_NOT_ENFORCED: &[(&str, &str)] = &[];

#[derive(Default)]
struct Summary {
    passed: usize,
    failed: Vec<String>,
    pending: usize,
    allowed: usize,
}

#[tokio::test]
async fn conduit_processor_conformance_cases_pass() {
    let summary = run_cases(include_str!("data/processors.json")).await;
    assert!(summary.total() >= 196, "{} cases", summary.total());
    summary.report("processor conformance");
}

/// Funnel's own cases in the same format, for Go behaviour Conduit's tests do not pin
/// down; each names the Go expression whose result it expects.
#[tokio::test]
async fn go_behaviour_cases_pass() {
    let summary = run_cases(include_str!("data/go-behaviour.json")).await;
    assert!(summary.total() >= 2, "{} cases", summary.total());
    summary.report("Go behaviour");
}

/// Runs every case of a conformance file.
async fn run_cases(data: &str) -> Summary {
    let cases: Vec<Json> = serde_json::from_str(data).unwrap();
    let mut summary = Summary::default();
    for case in &cases {
        let id = case["id"].as_str().unwrap();
        let allowed = ALLOWED.iter().any(|(a, _)| *a == id);
        match run_case(case).await {
            Outcome::Pass if allowed => summary.allowed += 1,
            Outcome::Pass => summary.passed += 1,
            Outcome::Pending => summary.pending += 1,
            Outcome::Fail(why) => summary.failed.push(format!("{id}: {why}")),
        }
    }
    summary
}

impl Summary {
    fn total(&self) -> usize {
        self.passed + self.failed.len() + self.pending + self.allowed
    }

    /// Prints the outcome and fails the test when a case failed.
    fn report(&self, what: &str) {
        for failure in &self.failed {
            eprintln!("FAILED {failure}");
        }
        for (id, reason) in ALLOWED {
            eprintln!("allowed {id}: {reason}");
        }
        println!(
            "{what}: {} passed, {} failed, {} pending (custom.javascript not built in), {} allowed",
            self.passed,
            self.failed.len(),
            self.pending,
            self.allowed
        );
        assert!(
            self.failed.is_empty(),
            "{} {what} case(s) failed",
            self.failed.len()
        );
    }
}

enum Outcome {
    Pass,
    Pending,
    Fail(String),
}

macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Outcome::Fail(format!($($arg)*));
        }
    };
}

async fn run_case(case: &Json) -> Outcome {
    let id = case["id"].as_str().unwrap();
    let plugin = case["processor"].as_str().unwrap();
    let settings: Settings = case["settings"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let condition = case.get("condition").and_then(Json::as_str);
    let expect = &case["expect"];
    let kind = expect["kind"].as_str().unwrap();
    let time_paths: Vec<&str> = case
        .get("types")
        .and_then(Json::as_object)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let ignore: Vec<&str> = case
        .get("ignore")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();

    let built = build_configured(plugin, id, &settings, condition);
    // The custom.javascript plugin is pending while it is not built in.
    if plugin == "custom.javascript"
        && let Err(errors) = &built
        && errors.iter().any(|e| e.setting == "plugin")
    {
        return Outcome::Pending;
    }

    if kind == "config_error" || kind == "config_ok" {
        let stage = expect["stage"].as_str().unwrap_or("configure");
        let error = match built {
            Err(errors) => Some(render_settings_errors(&errors)),
            Ok(mut processor) if stage == "open" => {
                processor.open().await.err().map(|e| e.to_string())
            }
            Ok(_) => None,
        };
        return match (kind, error) {
            ("config_ok", None) => Outcome::Pass,
            ("config_ok", Some(error)) => Outcome::Fail(format!("refused: {error}")),
            (_, None) => Outcome::Fail(format!("accepted settings that must be refused ({stage})")),
            (_, Some(error)) => check_text(id, expect, &error),
        };
    }

    let mut processor = match built {
        Ok(p) => p,
        Err(errors) => {
            return Outcome::Fail(format!("build failed: {}", render_settings_errors(&errors)));
        }
    };
    if let Err(e) = processor.open().await {
        return Outcome::Fail(format!("open failed: {e}"));
    }
    let (inputs, expectations): (Vec<Record>, Vec<&Json>) = if kind == "batch" {
        (
            case["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(record)
                .collect(),
            expect["results"].as_array().unwrap().iter().collect(),
        )
    } else {
        (vec![record(&case["input"])], vec![expect])
    };
    // The engine's path: records processed in place. `Unchanged` means the record as
    // the processor left it; a record it failed or filtered must be left as it was.
    let mut in_place = inputs.clone();
    let results = processor.process_in_place(&mut in_place).await;
    for ((result, after), before) in results.iter().zip(&in_place).zip(&inputs) {
        check!(
            !matches!(result, ProcessedRecord::Error(_) | ProcessedRecord::Filter)
                || after == before,
            "a record answered {result:?} was changed in place: {after:?}"
        );
    }
    let results: Vec<ProcessedRecord> = results
        .into_iter()
        .zip(in_place)
        .map(|(result, record)| match result {
            ProcessedRecord::Unchanged => ProcessedRecord::Single(record),
            other => other,
        })
        .collect();
    check!(
        results.len() == expectations.len(),
        "{} results for {} records: {results:?}",
        results.len(),
        expectations.len()
    );
    for (i, (result, expected)) in results.iter().zip(expectations).enumerate() {
        let outcome = check_result(id, result, expected, &time_paths, &ignore);
        if let Outcome::Fail(why) = outcome {
            return Outcome::Fail(format!("record {i}: {why}"));
        }
    }
    Outcome::Pass
}

fn check_result(
    id: &str,
    result: &ProcessedRecord,
    expected: &Json,
    time_paths: &[&str],
    ignore: &[&str],
) -> Outcome {
    match (expected["kind"].as_str().unwrap(), result) {
        ("single", ProcessedRecord::Single(actual)) => {
            compare_records(actual, &expected["record"], time_paths, ignore)
        }
        ("single", ProcessedRecord::Multi(actual)) if actual.len() == 1 => {
            compare_records(&actual[0], &expected["record"], time_paths, ignore)
        }
        ("multi", ProcessedRecord::Multi(actual)) => {
            let records = expected["records"].as_array().unwrap();
            check!(
                actual.len() == records.len(),
                "{} records, expected {}",
                actual.len(),
                records.len()
            );
            for (a, e) in actual.iter().zip(records) {
                if let Outcome::Fail(why) = compare_records(a, e, time_paths, ignore) {
                    return Outcome::Fail(why);
                }
            }
            Outcome::Pass
        }
        ("filter", ProcessedRecord::Filter) => Outcome::Pass,
        ("filter", ProcessedRecord::Multi(actual)) if actual.is_empty() => Outcome::Pass,
        ("error", ProcessedRecord::Error(error)) => check_text(id, expected, &error.to_string()),
        (kind, other) => Outcome::Fail(format!("expected {kind}, got {other:?}")),
    }
}

/// Checks an error message against `contains` (see the module docs).
fn check_text(id: &str, expect: &Json, message: &str) -> Outcome {
    let Some(contains) = expect.get("contains").and_then(Json::as_str) else {
        return Outcome::Pass;
    };
    let from = expect.get("contains_from").and_then(Json::as_str);
    let enforced = from == Some("test") || !TEXT_NOT_ENFORCED.iter().any(|(c, _)| *c == id);
    check!(
        !enforced || message.contains(contains),
        "error text {message:?} does not contain {contains:?} ({})",
        from.unwrap_or("?")
    );
    Outcome::Pass
}

/// Settings errors as Conduit writes them: `error validating "<key>": <message>`.
fn render_settings_errors(errors: &[SettingsError]) -> String {
    errors
        .iter()
        .map(|e| format!("error validating {:?}: {}", e.setting, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A record in the conformance notation.
fn record(json: &Json) -> Record {
    Record::from_json(&serde_json::to_vec(json).unwrap()).unwrap()
}

fn compare_records(
    actual: &Record,
    expected: &Json,
    time_paths: &[&str],
    ignore: &[&str],
) -> Outcome {
    let record = actual;
    let mut actual = record_tree(record);
    let mut expected = expected.clone();
    for tree in [&mut actual, &mut expected] {
        if tree["metadata"].is_null() {
            tree["metadata"] = Json::Object(Map::new());
        }
        for path in ignore {
            remove_path(tree, path);
        }
    }
    for path in time_paths {
        // The value must be a time, written in JSON as the expected text.
        let value = value_at(record, path);
        check!(
            matches!(value, Some(Value::Time(_))),
            "expected a time at {path}, found {value:?}"
        );
        let text = value.map(|v| String::from_utf8(v.to_json()).unwrap());
        let e = get_path(&expected, path);
        let want = e.map(|e| serde_json::to_string(e).unwrap());
        check!(text == want, "time at {path}: {text:?}, expected {want:?}");
        for tree in [&mut actual, &mut expected] {
            remove_path(tree, path);
        }
    }
    check!(
        same(&actual, &expected),
        "record differs:\n  actual   {actual}\n  expected {expected}"
    );
    Outcome::Pass
}

/// The record in the conformance notation, numbers keeping their int/float kind.
fn record_tree(record: &Record) -> Json {
    let data = |d: &Option<Data>| match d {
        None => Json::Null,
        Some(Data::Raw(bytes)) => Json::String(STANDARD.encode(bytes)),
        Some(Data::Structured(map)) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), value_tree(v)))
                .collect(),
        ),
    };
    let metadata = match record.metadata.as_map() {
        None => Json::Null,
        Some(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                .collect(),
        ),
    };
    let mut payload = Map::new();
    payload.insert("before".into(), data(&record.payload.before));
    payload.insert("after".into(), data(&record.payload.after));
    let mut tree = Map::new();
    tree.insert(
        "position".into(),
        if record.position.is_empty() {
            Json::Null
        } else {
            Json::String(STANDARD.encode(record.position.as_bytes()))
        },
    );
    tree.insert(
        "operation".into(),
        Json::String(record.operation.to_string()),
    );
    tree.insert("metadata".into(), metadata);
    tree.insert("key".into(), data(&record.key));
    tree.insert("payload".into(), Json::Object(payload));
    Json::Object(tree)
}

fn value_tree(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(n) => Json::Number((*n).into()),
        Value::Uint(n) => Json::Number((*n).into()),
        Value::Float(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.to_string()),
        Value::Bytes(b) => Json::String(STANDARD.encode(b)),
        // Never equal to expected JSON: times are checked at their `types` paths only.
        Value::Time(t) => serde_json::json!({ "<time>": t.to_rfc3339() }),
        Value::Array(items) => Json::Array(items.iter().map(value_tree).collect()),
        Value::Map(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), value_tree(v)))
                .collect(),
        ),
    }
}

/// Strict equality: objects by key, arrays in order, numbers by value *and* by
/// int/float kind.
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            if x.is_f64() != y.is_f64() {
                return false;
            }
            if x.is_f64() {
                x.as_f64() == y.as_f64()
            } else {
                x.as_i128() == y.as_i128()
            }
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            let x: BTreeMap<_, _> = x.iter().collect();
            let y: BTreeMap<_, _> = y.iter().collect();
            x.len() == y.len()
                && x.iter()
                    .zip(&y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

/// The names of a path such as `$.key.id` or `$.metadata["opencdc.readAt"]`.
fn path_names(path: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = path.strip_prefix('$').unwrap();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("[\"") {
            let end = after.find("\"]").unwrap();
            names.push(after[..end].to_owned());
            rest = &after[end + 2..];
        } else {
            let after = rest.strip_prefix('.').unwrap();
            let end = after.find(['.', '[']).unwrap_or(after.len());
            names.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    names
}

/// The structured value at a path such as `$.key.id` or `$.payload.after.createdAt`.
fn value_at<'a>(record: &'a Record, path: &str) -> Option<&'a Value> {
    let names = path_names(path);
    let (data, fields) = match names.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["key", ..] => (record.key.as_ref()?, &names[1..]),
        ["payload", "before", ..] => (record.payload.before.as_ref()?, &names[2..]),
        ["payload", "after", ..] => (record.payload.after.as_ref()?, &names[2..]),
        _ => return None,
    };
    let Data::Structured(map) = data else {
        return None;
    };
    let (first, rest) = fields.split_first()?;
    rest.iter()
        .try_fold(map.get(first)?, |node, name| match node {
            Value::Map(m) => m.get(name),
            _ => None,
        })
}

fn get_path<'a>(tree: &'a Json, path: &str) -> Option<&'a Json> {
    path_names(path)
        .iter()
        .try_fold(tree, |node, name| node.get(name.as_str()))
}

fn remove_path(tree: &mut Json, path: &str) {
    let names = path_names(path);
    let Some((last, parents)) = names.split_last() else {
        return;
    };
    let mut node = tree;
    for name in parents {
        match node.get_mut(name.as_str()) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
}

#[test]
fn the_notation_keeps_the_int_float_distinction() {
    let r = record(&serde_json::json!({
        "position": null, "operation": "create", "metadata": null,
        "key": {"i": 54, "f": 54.0, "e": 1e+19},
        "payload": {"before": null, "after": null}
    }));
    let Some(Data::Structured(key)) = r.key else {
        panic!()
    };
    assert_eq!(key["i"], Value::Int(54));
    assert_eq!(key["f"], Value::Float(54.0));
    assert_eq!(key["e"], Value::Float(1e19));
}

#[test]
fn strict_comparison_tells_ints_from_floats() {
    assert!(!same(&serde_json::json!(54), &serde_json::json!(54.0)));
    assert!(same(
        &serde_json::json!({"a": [1, 2.5]}),
        &serde_json::json!({"a": [1, 2.5]})
    ));
    assert_eq!(
        path_names(r#"$.metadata["opencdc.readAt"]"#),
        ["metadata", "opencdc.readAt"]
    );
}

#[test]
fn types_paths_require_a_time_written_as_the_expected_text() {
    let expected = serde_json::json!({
        "position": null, "operation": "create", "metadata": null,
        "key": {"id": "2021-01-21T18:40:12.345678999Z"},
        "payload": {"before": null, "after": null}
    });
    let with_key = |value: Value| {
        let mut r = record(&expected);
        r.key = Some(Data::Structured([("id".to_owned(), value)].into()));
        r
    };
    let time = Value::Time(funnel_record::Timestamp::from_unix_nanos(
        1_611_254_412_345_678_999,
    ));
    let paths = ["$.key.id"];
    assert!(matches!(
        compare_records(&with_key(time.clone()), &expected, &paths, &[]),
        Outcome::Pass
    ));
    // The same text as a string is not a time.
    let text = Value::String("2021-01-21T18:40:12.345678999Z".into());
    assert!(matches!(
        compare_records(&with_key(text), &expected, &paths, &[]),
        Outcome::Fail(_)
    ));
    // A time where no `types` path says so never equals the expected string.
    assert!(matches!(
        compare_records(&with_key(time), &expected, &[], &[]),
        Outcome::Fail(_)
    ));
}
