//! Conduit conformance of the OpenCDC JSON codec.
//!
//! Runs every case of `tests/data/opencdc-json.json`, a copy of the shared conformance
//! file `conformance/opencdc-json.json` (its README describes the format and the
//! comparing rules). Every case runs inside one test, which reports all failures at once
//! with their case ids.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use funnel_record::{
    Data, JsonOptions, Metadata, Operation, Payload, Position, Record, StructuredData, Value,
};
use serde_json::Value as Json;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/opencdc-json.json");
const SHARED_CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/opencdc-json.json"
);

/// The cases, or why they cannot be loaded.
fn load_cases() -> Result<Vec<Json>, String> {
    let text = std::fs::read_to_string(CASES).map_err(|e| {
        format!(
            "cannot read the conformance cases at {CASES}: {e}; copy the shared \
             conformance/opencdc-json.json there"
        )
    })?;
    let cases: Json =
        serde_json::from_str(&text).map_err(|e| format!("{CASES} is not JSON: {e}"))?;
    match cases {
        Json::Array(cases) if !cases.is_empty() => Ok(cases),
        _ => Err(format!("{CASES} is not a non-empty array of cases")),
    }
}

#[test]
fn opencdc_json_matches_conduit_for_every_conformance_case() {
    let cases = load_cases().unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for case in &cases {
        let id = case["id"].as_str().unwrap_or("<no id>");
        let outcome = match case["kind"].as_str() {
            Some("serialize") => run_serialize(case),
            Some("deserialize") => run_deserialize(case),
            other => Err(format!("unknown case kind {other:?}")),
        };
        if let Err(why) = outcome {
            failures.push(format!("{id}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} conformance cases failed:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

#[test]
fn vendored_cases_match_the_shared_conformance_file_when_it_is_present() {
    // In a fresh clone the shared folder is absent; then there is nothing to compare.
    let Ok(shared) = std::fs::read(SHARED_CASES) else {
        return;
    };
    let vendored = std::fs::read(CASES).expect("the vendored cases exist");
    assert!(
        shared == vendored,
        "{CASES} differs from {SHARED_CASES}; copy the shared file again"
    );
}

fn run_serialize(case: &Json) -> Result<(), String> {
    let record = record_from_notation(&case["record"])?;
    let raw_as_string = case["options"]["raw_data_as_string"]
        .as_bool()
        .unwrap_or(false);
    let options = JsonOptions::new().with_raw_data_as_string(raw_as_string);
    let expected = case["record_json"].as_str().ok_or("no record_json")?;
    let actual = String::from_utf8_lossy(&record.to_json_with(options)).into_owned();
    if actual != expected {
        return Err(format!(
            "serialized\n    {actual}\n  expected\n    {expected}"
        ));
    }
    Ok(())
}

fn run_deserialize(case: &Json) -> Result<(), String> {
    let input = case["input_json"].as_str().ok_or("no input_json")?;
    let expect = &case["expect"];
    let result = Record::from_json(input.as_bytes());

    if expect["ok"].as_bool() != Some(true) {
        if expect["conduit_behaviour"].as_str() == Some("panic") {
            // Conduit crashes on a missing data member; Funnel documents that it reads
            // the member as null (docs/opencdc.md).
            let record = result.map_err(|e| format!("expected Ok with no data, got {e}"))?;
            if record.key.is_some() {
                return Err(format!("expected no key, got {:?}", record.key));
            }
            return Ok(());
        }
        let contains = expect["contains"].as_str().ok_or("no expect.contains")?;
        return match result {
            Ok(record) => Err(format!(
                "expected an error containing {contains:?}, got {record:?}"
            )),
            Err(e) if e.to_string().contains(contains) => Ok(()),
            Err(e) => Err(format!(
                "error {:?} does not contain {contains:?}",
                e.to_string()
            )),
        };
    }

    let record = result.map_err(|e| format!("expected Ok, got {e}"))?;
    let expected = record_from_notation(&expect["record"])?;
    compare_records(&record, &expected)?;
    check_data_kinds(&record, &expect["data_kinds"])?;

    let reserialized = String::from_utf8_lossy(&record.to_json()).into_owned();
    let want = expect["reserialized"]
        .as_str()
        .ok_or("no expect.reserialized")?;
    if reserialized != want {
        return Err(format!(
            "reserialized\n    {reserialized}\n  expected\n    {want}"
        ));
    }
    Ok(())
}

/// Conduit's data kinds, as Funnel decodes them: `structured (null)` (Conduit's nil
/// structured map for JSON `null`) is no data in Funnel.
fn check_data_kinds(record: &Record, kinds: &Json) -> Result<(), String> {
    let Some(kinds) = kinds.as_object() else {
        return Ok(());
    };
    for (field, kind) in kinds {
        let data = match field.as_str() {
            "key" => &record.key,
            "payload.before" => &record.payload.before,
            "payload.after" => &record.payload.after,
            other => return Err(format!("unknown data_kinds field {other:?}")),
        };
        let ok = match kind.as_str() {
            Some("raw") => matches!(data, Some(Data::Raw(_))),
            Some("structured") => matches!(data, Some(Data::Structured(_))),
            Some("structured (null)") => data.is_none(),
            other => return Err(format!("unknown data kind {other:?}")),
        };
        if !ok {
            return Err(format!("{field}: expected kind {kind}, got {data:?}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Building records from the README's notation, independently of the codec under test.
// ---------------------------------------------------------------------------------------

fn record_from_notation(json: &Json) -> Result<Record, String> {
    let position = match &json["position"] {
        Json::Null => Position::default(),
        Json::String(b64) => Position::from(decode_base64(b64)?),
        other => return Err(format!("bad position {other}")),
    };
    let operation = match json["operation"].as_str().ok_or("no operation")? {
        "create" => Operation::Create,
        "update" => Operation::Update,
        "delete" => Operation::Delete,
        "snapshot" => Operation::Snapshot,
        other => {
            let n = other
                .strip_prefix("Operation(")
                .and_then(|s| s.strip_suffix(')'))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad operation {other:?}"))?;
            Operation::from_code(n)
        }
    };
    let metadata = match &json["metadata"] {
        Json::Null => Metadata::none(),
        Json::Object(map) => {
            let mut metadata = Metadata::new();
            for (k, v) in map {
                metadata.insert(k.clone(), v.as_str().ok_or("metadata value not a string")?);
            }
            metadata
        }
        other => return Err(format!("bad metadata {other}")),
    };
    Ok(Record {
        position,
        operation,
        metadata,
        key: data_from_notation(&json["key"])?,
        payload: Payload {
            before: data_from_notation(&json["payload"]["before"])?,
            after: data_from_notation(&json["payload"]["after"])?,
        },
    })
}

fn data_from_notation(json: &Json) -> Result<Option<Data>, String> {
    Ok(match json {
        Json::Null => None,
        Json::String(b64) => Some(Data::raw(decode_base64(b64)?)),
        Json::Object(map) => Some(Data::Structured(
            map.iter()
                .map(|(k, v)| (k.clone(), value_from_notation(v)))
                .collect(),
        )),
        other => return Err(format!("bad data {other}")),
    })
}

/// Keeps the literal's int/float kind, as the README asks.
fn value_from_notation(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i),
            (None, Some(u), _) => Value::Uint(u),
            (None, None, Some(f)) => Value::Float(f),
            _ => Value::Null,
        },
        Json::String(s) => Value::String(s.clone().into()),
        Json::Array(items) => Value::Array(items.iter().map(value_from_notation).collect()),
        Json::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| (k.clone(), value_from_notation(v)))
                .collect(),
        ),
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|e| format!("bad base64 {text:?}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Comparing per the README: metadata null == {}, numbers by value.
// ---------------------------------------------------------------------------------------

fn compare_records(actual: &Record, expected: &Record) -> Result<(), String> {
    let mut diffs = Vec::new();
    if actual.position != expected.position {
        diffs.push(format!(
            "position {:?} != {:?}",
            actual.position, expected.position
        ));
    }
    if actual.operation.to_string() != expected.operation.to_string() {
        diffs.push(format!(
            "operation {} != {}",
            actual.operation, expected.operation
        ));
    }
    if actual.metadata != expected.metadata {
        diffs.push(format!(
            "metadata {:?} != {:?}",
            actual.metadata, expected.metadata
        ));
    }
    for (name, a, e) in [
        ("key", &actual.key, &expected.key),
        (
            "payload.before",
            &actual.payload.before,
            &expected.payload.before,
        ),
        (
            "payload.after",
            &actual.payload.after,
            &expected.payload.after,
        ),
    ] {
        let same = match (a, e) {
            (None, None) => true,
            (Some(Data::Raw(a)), Some(Data::Raw(e))) => a == e,
            (Some(Data::Structured(a)), Some(Data::Structured(e))) => maps_equivalent(a, e),
            _ => false,
        };
        if !same {
            diffs.push(format!("{name} {a:?} != {e:?}"));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

fn maps_equivalent(a: &StructuredData, e: &StructuredData) -> bool {
    a.len() == e.len()
        && a.iter()
            .zip(e)
            .all(|((ak, av), (ek, ev))| ak == ek && values_equivalent(av, ev))
}

fn values_equivalent(a: &Value, e: &Value) -> bool {
    match (a, e) {
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(a, e)| values_equivalent(a, e))
        }
        (Value::Map(a), Value::Map(e)) => maps_equivalent(a, e),
        _ => match (number(a), number(e)) {
            (Some(a), Some(e)) => a == e,
            _ => a == e,
        },
    }
}

fn number(value: &Value) -> Option<f64> {
    // The cases hold small numbers, exact as f64.
    match value {
        Value::Int(i) => Some(*i as f64),
        Value::Uint(u) => Some(*u as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}
