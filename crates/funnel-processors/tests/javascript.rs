//! `custom.javascript`: settings, the record as scripts see it, results, errors and
//! per-instance state.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "js")]

use std::io::Write as _;

use bytes::Bytes;
use funnel_core::{ProcessedRecord, Processor};
use funnel_processors::{SettingsError, build};
use funnel_record::{Data, Metadata, Operation, Payload, Position, Record, StructuredData, Value};

use funnel_test_utils::results::{
    error_text, fields, output, process_one, settings, single, the_only_error,
};

fn build_errors(pairs: &[(&str, &str)]) -> Vec<SettingsError> {
    let refused = build("custom.javascript", "js1", &settings(pairs)).err();
    refused.unwrap_or_else(|| panic!("settings {pairs:?} were accepted"))
}

async fn open(script: &str) -> Box<dyn Processor> {
    let mut processor = build("custom.javascript", "js1", &settings(&[("script", script)]))
        .expect("settings are valid");
    processor.open().await.expect("the script loads");
    processor
}

/// The error `open` fails with for these settings, which `build` accepts.
async fn open_error(pairs: &[(&str, &str)]) -> String {
    let mut processor =
        build("custom.javascript", "js1", &settings(pairs)).expect("build does no I/O");
    processor.open().await.unwrap_err().to_string()
}

/// A record with raw `x` as its payload, for scripts that do not look at the data.
fn any_record() -> Record {
    record_with_after(Data::raw("x"))
}

/// The error text of a script run on [`any_record`].
async fn script_error(script: &str) -> String {
    error_text(&process_one(&mut open(script).await, any_record()).await)
}

fn structured(pairs: &[(&str, Value)]) -> Data {
    Data::Structured(fields(pairs))
}

fn record_with_after(after: Data) -> Record {
    Record {
        position: Position::from("pos-1"),
        operation: Operation::Create,
        metadata: [("source", "test")].into_iter().collect(),
        key: Some(Data::raw("key-1")),
        payload: Payload {
            before: None,
            after: Some(after),
        },
    }
}

#[tokio::test]
async fn a_script_that_sets_a_field_changes_structured_data_and_keeps_the_rest() {
    let mut js = open("function process(r) { r.Payload.After.done = true; return r; }").await;
    let input = record_with_after(structured(&[("id", Value::Int(7))]));
    let out = output(&mut js, input.clone()).await;
    let mut expected = input.clone();
    expected.payload.after = Some(structured(&[
        ("done", Value::Bool(true)),
        ("id", Value::Int(7)),
    ]));
    assert_eq!(out, expected);
}

#[tokio::test]
async fn the_record_exposes_position_operation_metadata_and_key_to_the_script() {
    let mut js = open(
        r#"function process(r) {
            var out = new Record();
            out.Payload.After = new StructuredData();
            out.Payload.After.position = String.fromCharCode.apply(String, r.Position);
            out.Payload.After.operation = r.Operation;
            out.Payload.After.source = r.Metadata.source;
            out.Payload.After.key = String.fromCharCode.apply(String, r.Key);
            out.Payload.After.isArray = Array.isArray(r.Key);
            return out;
        }"#,
    )
    .await;
    let input = any_record();
    let out = output(&mut js, input).await;
    assert_eq!(
        out.payload.after,
        Some(structured(&[
            ("isArray", Value::Bool(true)),
            ("key", Value::String("key-1".into())),
            ("operation", Value::String("create".into())),
            ("position", Value::String("pos-1".into())),
            ("source", Value::String("test".into())),
        ]))
    );
    assert_eq!(
        out.operation,
        Operation::Other(0),
        "a new Record() has no operation"
    );
    assert_eq!(out.metadata, Metadata::new());
    assert!(out.position.is_empty());
    assert_eq!(out.key, None);
}

#[tokio::test]
async fn raw_data_arrives_as_bytes_and_raw_data_from_a_string_goes_back_as_bytes() {
    let mut js = open(
        r#"function process(r) {
            var text = String.fromCharCode.apply(String, r.Payload.After);
            r.Payload.After = RawData(text.toUpperCase());
            r.Payload.Before = "as a string";
            r.Key = new Uint8Array([1, 2, 255]);
            return r;
        }"#,
    )
    .await;
    let out = output(&mut js, record_with_after(Data::raw("hello"))).await;
    assert_eq!(out.payload.after, Some(Data::raw("HELLO")));
    assert_eq!(out.payload.before, Some(Data::raw("as a string")));
    assert_eq!(out.key, Some(Data::Raw(Bytes::from_static(&[1, 2, 255]))));
}

#[tokio::test]
async fn structured_values_keep_their_types_through_the_script() {
    let mut js = open("function process(r) { return r; }").await;
    let after = structured(&[
        ("small", Value::Int(42)),
        ("big", Value::Int(1_747_353_650_123)),
        ("negative", Value::Int(-5)),
        ("float", Value::Float(1.5)),
        ("text", Value::String("ü".into())),
        ("null", Value::Null),
        ("flag", Value::Bool(false)),
        ("bytes", Value::Bytes(Bytes::from_static(b"\x00\x01"))),
        (
            "list",
            Value::Array(vec![Value::Int(1), Value::String("two".into())]),
        ),
        (
            "nested",
            Value::Map(StructuredData::from([("deep", Value::Float(0.25))])),
        ),
    ]);
    let input = record_with_after(after);
    let out = output(&mut js, input.clone()).await;
    assert_eq!(out, input);
}

#[tokio::test]
async fn returning_null_or_undefined_filters_the_record() {
    let mut js = open(
        r#"function process(r) {
            if (r.Metadata.drop === "null") { return null; }
            if (r.Metadata.drop === "undefined") { return; }
            return r;
        }"#,
    )
    .await;
    let mut dropped_null = record_with_after(Data::raw("a"));
    dropped_null.metadata.insert("drop", "null");
    let mut dropped_undefined = record_with_after(Data::raw("b"));
    dropped_undefined.metadata.insert("drop", "undefined");
    let kept = record_with_after(Data::raw("c"));
    let results = js
        .process(&[dropped_null, dropped_undefined, kept.clone()])
        .await;
    assert_eq!(
        results,
        vec![
            ProcessedRecord::Filter,
            ProcessedRecord::Filter,
            ProcessedRecord::Single(kept),
        ]
    );
}

#[tokio::test]
async fn an_exception_nacks_the_record_with_the_processor_id_and_the_javascript_error() {
    let text = script_error("function process(r) {\n  throw new TypeError('no good');\n}").await;
    assert!(text.contains("\"js1\""), "{text}");
    assert!(text.contains("custom.javascript"), "{text}");
    assert!(text.contains("TypeError: no good"), "{text}");
    assert!(
        text.contains("script:2"),
        "the error points at the line: {text}"
    );
}

#[tokio::test]
async fn a_thrown_value_that_is_not_an_error_is_reported_too() {
    let text = script_error("function process(r) { throw 'plain text'; }").await;
    assert!(text.contains("plain text"), "{text}");
}

#[tokio::test]
async fn a_return_value_that_is_not_a_record_nacks_the_record() {
    let text = script_error("function process(r) { return 42; }").await;
    assert!(text.contains("expected to return a record"), "{text}");
    assert!(text.contains("42"), "{text}");
}

#[tokio::test]
async fn an_unknown_operation_nacks_the_record() {
    let text = script_error("function process(r) { r.Operation = 'upsert'; return r; }").await;
    assert!(text.contains("could not unmarshal operation"), "{text}");
    assert!(text.contains("upsert"), "{text}");
}

#[tokio::test]
async fn operations_and_positions_set_by_the_script_are_parsed() {
    let mut js = open(
        r#"function process(r) {
            r.Operation = r.Metadata.op;
            r.Position = "new-position";
            return r;
        }"#,
    )
    .await;
    let mut inputs = Vec::new();
    for op in ["update", "delete", "snapshot", "Operation(9)"] {
        let mut record = any_record();
        record.metadata.insert("op", op);
        inputs.push(record);
    }
    let results = js.process(&inputs).await;
    let operations: Vec<Operation> = results
        .iter()
        .map(|r| {
            let record = single(r);
            assert_eq!(record.position, Position::from("new-position"));
            record.operation
        })
        .collect();
    assert_eq!(
        operations,
        vec![
            Operation::Update,
            Operation::Delete,
            Operation::Snapshot,
            Operation::Other(9)
        ]
    );
}

#[tokio::test]
async fn globals_persist_across_records_and_batches_within_one_instance_only() {
    let script = r#"
        var seen = 0;
        function process(r) {
            seen++;
            r.Metadata.seen = String(seen);
            return r;
        }"#;
    let mut first = open(script).await;
    let mut second = open(script).await;
    let record = any_record();
    let seen = |results: Vec<ProcessedRecord>| -> Vec<String> {
        results
            .iter()
            .map(|r| single(r).metadata.get("seen").unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        seen(first.process(&[record.clone(), record.clone()]).await),
        ["1", "2"]
    );
    assert_eq!(
        seen(first.process(std::slice::from_ref(&record)).await),
        ["3"]
    );
    assert_eq!(
        seen(second.process(std::slice::from_ref(&record)).await),
        ["1"],
        "another instance has its own globals"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gives_one_result_per_record_in_order_and_an_error_spoils_only_its_record() {
    let mut js = open(
        r#"function process(r) {
            var n = Number(r.Metadata.n);
            if (n === 3) { throw new Error("record three"); }
            if (n % 2 === 0) { return null; }
            r.Metadata.n = String(n * 10);
            return r;
        }"#,
    )
    .await;
    let inputs: Vec<Record> = (0..200)
        .map(|n| {
            let mut record = any_record();
            record.metadata.insert("n", n.to_string());
            record
        })
        .collect();
    let results = js.process(&inputs).await;
    assert_eq!(results.len(), inputs.len());
    for (n, result) in results.into_iter().enumerate() {
        match (n, result) {
            (3, result) => assert!(error_text(&result).contains("record three")),
            (n, ProcessedRecord::Filter) if n % 2 == 0 => {}
            (n, ProcessedRecord::Single(record)) if n % 2 == 1 => {
                assert_eq!(
                    record.metadata.get("n"),
                    Some((n * 10).to_string().as_str())
                );
            }
            (n, other) => panic!("record {n}: unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_helpers_and_the_logger_are_available() {
    let mut js = open(
        r#"function process(r) {
            logger.Info().Str("id", "x").Int("n", 1).Msg("processing");
            logger.Debug().Msgf("record %s of %d", "a", 2);
            logger.Error().Err(new Error("oops")).Send();
            var out = Record();
            out.Metadata.kind = typeof StructuredData();
            out.Payload.After = RawData();
            return out;
        }"#,
    )
    .await;
    let out = output(&mut js, any_record()).await;
    assert_eq!(out.metadata.get("kind"), Some("object"));
    assert_eq!(out.payload.after, Some(Data::raw("")));
}

#[tokio::test]
async fn metadata_values_are_converted_to_strings_and_null_metadata_is_kept_null() {
    let mut js = open(
        r#"function process(r) {
            if (r.Metadata.source) { r.Metadata.count = 3; r.Metadata.flag = true; }
            return r;
        }"#,
    )
    .await;
    let out = output(&mut js, any_record()).await;
    assert_eq!(out.metadata.get("count"), Some("3"));
    assert_eq!(out.metadata.get("flag"), Some("true"));

    let mut js = open("function process(r) { r.Metadata = null; return r; }").await;
    let out = output(&mut js, any_record()).await;
    assert!(out.metadata.is_nil());
}

#[tokio::test]
async fn the_script_can_be_read_from_a_file_when_the_processor_opens() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "function process(r) {{ r.Metadata.from = 'file'; return r; }}"
    )
    .unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    let mut js = build(
        "custom.javascript",
        "js1",
        &settings(&[("script.path", &path)]),
    )
    .unwrap();
    js.open().await.unwrap();
    let out = output(&mut js, any_record()).await;
    assert_eq!(out.metadata.get("from"), Some("file"));
}

#[tokio::test]
async fn a_missing_script_file_is_not_read_on_build_but_fails_open() {
    let error = open_error(&[("script.path", "/nonexistent/funnel/script.js")]).await;
    assert!(error.contains("error reading script from path"), "{error}");
    assert!(error.contains("/nonexistent/funnel/script.js"), "{error}");
    assert!(error.contains("\"js1\""), "{error}");
}

#[tokio::test]
async fn a_syntax_error_fails_open_with_the_compile_error() {
    let error = open_error(&[("script", "function {")]).await;
    assert!(
        error.contains("failed initializing JS function: failed to compile script: SyntaxError"),
        "{error}"
    );
}

#[tokio::test]
async fn a_script_without_a_process_function_fails_open() {
    let error = open_error(&[("script", "var process = 3;")]).await;
    assert!(
        error.contains("failed to get entrypoint function \"process\""),
        "{error}"
    );
}

#[tokio::test]
async fn a_script_that_throws_while_loading_fails_open() {
    let error = open_error(&[("script", "throw new Error('at load');")]).await;
    assert!(error.contains("failed to run program"), "{error}");
    assert!(error.contains("at load"), "{error}");
}

#[test]
fn a_script_or_a_script_path_is_required() {
    let errors = build_errors(&[]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].setting, "script");
    assert!(errors[0].message.contains("one of: [script, script.path]"));
    // An empty value counts as unset.
    assert_eq!(build_errors(&[("script", "")])[0].setting, "script");
}

#[test]
fn a_script_and_a_script_path_together_are_refused() {
    let errors = build_errors(&[
        ("script", "function process(r) { return r; }"),
        ("script.path", "x.js"),
    ]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .message
            .contains("only one of: [script, script.path]")
    );
}

#[test]
fn an_unknown_setting_is_refused() {
    let errors = build_errors(&[
        ("script", "function process(r) { return r; }"),
        ("scrpt", "typo"),
    ]);
    assert_eq!(the_only_error(&errors).setting, "scrpt");
}

#[test]
fn the_processor_is_listed_with_its_settings() {
    let spec = funnel_processors::components()
        .into_iter()
        .find(|s| s.name == "custom.javascript")
        .expect("custom.javascript is registered");
    let names: Vec<&str> = spec.settings().map(|s| s.name).collect();
    assert!(names.contains(&"script"));
    assert!(names.contains(&"script.path"));
}

#[tokio::test]
async fn returned_data_that_cannot_be_stored_nacks_the_record_and_says_where() {
    let cases = [
        (
            "r.Payload.After = {user: {tags: [1, function () {}]}};",
            "Payload.After.user.tags[1]: cannot store a function",
        ),
        (
            "r.Key = ['a'];",
            "Key[0]: raw data must be an array of byte values",
        ),
        (
            "r.Key = [256];",
            "Key[0]: raw data must be an array of byte values",
        ),
        ("r.Payload.Before = 42;", "Payload.Before must be raw data"),
        (
            "var a = {}; a.self = a; r.Payload.After = a;",
            "nested deeper than 128 levels",
        ),
    ];
    for (change, expected) in cases {
        let text = script_error(&format!("function process(r) {{ {change} return r; }}")).await;
        assert!(text.contains(expected), "{change}: {text}");
    }
}

#[tokio::test]
async fn integral_numbers_come_back_as_integers_and_others_as_floats() {
    let mut js = open(
        r#"function process(r) {
            r.Payload.After = {whole: 2.0 * 3, big: 2 ** 40, half: 1 / 2, huge: 1e300};
            return r;
        }"#,
    )
    .await;
    let out = output(&mut js, any_record()).await;
    assert_eq!(
        out.payload.after,
        Some(structured(&[
            ("big", Value::Int(1 << 40)),
            ("half", Value::Float(0.5)),
            ("huge", Value::Float(1e300)),
            ("whole", Value::Int(6)),
        ]))
    );
}

#[tokio::test]
async fn raw_bytes_of_every_value_round_trip_and_in_place_changes_are_seen() {
    let mut processor = open(
        r#"
        function process(r) {
            if (r.Key.length === 3) { r.Key[0] = 7; }
            r.Payload.Before = r.Position.slice();
            return r;
        }
        "#,
    )
    .await;
    let bytes: Vec<u8> = (0..=255).collect();
    let mut record = record_with_after(Data::raw(bytes.clone()));
    record.position = Position::from(bytes.clone());
    record.key = Some(Data::raw(vec![200u8, 0, 255]));
    let out = output(&mut processor, record.clone()).await;
    assert_eq!(out.position, record.position);
    assert_eq!(out.key, Some(Data::raw(vec![7u8, 0, 255])));
    assert_eq!(out.payload.before, Some(Data::raw(bytes.clone())));
    assert_eq!(out.payload.after, Some(Data::raw(bytes)));
}

#[tokio::test]
async fn a_record_kept_from_an_earlier_call_still_has_its_own_bytes() {
    let mut processor = open(
        r#"
        var first = null;
        function process(r) {
            if (first === null) { first = r; return r; }
            return first;
        }
        "#,
    )
    .await;
    let mut one = record_with_after(Data::raw("one"));
    one.key = Some(Data::raw("k1"));
    let mut two = record_with_after(Data::raw("two"));
    two.key = Some(Data::raw("k2"));
    two.position = Position::from("pos-2");
    let results = processor.process(&[one.clone(), two]).await;
    let outs: Vec<&Record> = results.iter().map(single).collect();
    assert_eq!(outs, [&one, &one]);
}

#[tokio::test]
async fn the_record_and_its_data_list_their_fields_like_plain_objects() {
    let mut js = open(
        r#"function process(r) {
            var a = r.Payload.After;
            a.added = 1;
            delete a.gone;
            var m = r.Metadata;
            r.Metadata = {
                record: Object.keys(r).join(","),
                payload: Object.keys(r.Payload).join(","),
                after: Object.keys(a).join(","),
                json: JSON.stringify(a),
                has: String("name" in a) + String("gone" in a) + String("toString" in a),
                own: String(a.hasOwnProperty("name")) + String(a.hasOwnProperty("gone")),
                metadata: Object.keys(m).join(","),
                spread: Object.keys(Object.assign({}, a)).join(",")
            };
            return r;
        }"#,
    )
    .await;
    let record = record_with_after(structured(&[
        ("name", Value::String("ann".into())),
        ("gone", Value::Int(1)),
        ("zip", Value::Bool(true)),
    ]));
    let out = output(&mut js, record).await;
    let get = |key: &str| out.metadata.get(key).unwrap_or_default().to_owned();
    assert_eq!(get("record"), "Position,Operation,Metadata,Key,Payload");
    assert_eq!(get("payload"), "Before,After");
    assert_eq!(get("after"), "name,zip,added");
    assert_eq!(get("json"), r#"{"name":"ann","zip":true,"added":1}"#);
    assert_eq!(get("has"), "truefalsetrue");
    assert_eq!(get("own"), "truefalse");
    assert_eq!(get("metadata"), "source");
    assert_eq!(get("spread"), "name,zip,added");
    assert_eq!(
        out.payload.after,
        Some(structured(&[
            ("added", Value::Int(1)),
            ("name", Value::String("ann".into())),
            ("zip", Value::Bool(true)),
        ]))
    );
}

#[tokio::test]
async fn fields_a_script_does_not_touch_come_back_exactly_as_they_came() {
    // A time has no JavaScript form of its own (a script reads it as text), and an
    // unsigned integer beyond 2^53 none at all: untouched, both come back as they were.
    let time = Value::Time(funnel_record::Timestamp::from_unix_nanos(
        1_747_353_650_123_456_789,
    ));
    let big = Value::Uint(u64::MAX);
    let mut js = open(
        r#"function process(r) {
            r.Payload.After.note = r.Payload.After.name + "!";
            r.Metadata.extra = "yes";
            return r;
        }"#,
    )
    .await;
    let mut record = record_with_after(structured(&[
        ("name", Value::String("ann".into())),
        ("at", time.clone()),
        ("big", big.clone()),
    ]));
    record.payload.before = Some(structured(&[("at", time.clone())]));
    record.key = Some(structured(&[("id", big.clone())]));
    let out = output(&mut js, record.clone()).await;
    assert_eq!(out.position, record.position);
    assert_eq!(out.key, record.key);
    assert_eq!(out.payload.before, record.payload.before);
    assert_eq!(
        out.payload.after,
        Some(structured(&[
            ("at", time),
            ("big", big),
            ("name", Value::String("ann".into())),
            ("note", Value::String("ann!".into())),
        ]))
    );
    assert_eq!(out.metadata.get("source"), Some("test"));
    assert_eq!(out.metadata.get("extra"), Some("yes"));
}

#[tokio::test]
async fn nested_data_changed_in_place_and_deleted_keys_are_seen() {
    let mut js = open(
        r#"function process(r) {
            r.Payload.After.user.tags.push("new");
            r.Payload.After.user.name = "bob";
            delete r.Payload.After.drop;
            delete r.Metadata.source;
            r.Metadata.kept = String(r.Payload.After.keep);
            return r;
        }"#,
    )
    .await;
    let user = Value::Map(fields(&[
        ("name", Value::String("ann".into())),
        ("tags", Value::Array(vec![Value::String("a".into())])),
    ]));
    let record = record_with_after(structured(&[
        ("user", user),
        ("drop", Value::Int(1)),
        ("keep", Value::Int(2)),
    ]));
    let out = output(&mut js, record).await;
    assert_eq!(
        out.payload.after,
        Some(structured(&[
            (
                "user",
                Value::Map(fields(&[
                    ("name", Value::String("bob".into())),
                    (
                        "tags",
                        Value::Array(vec![Value::String("a".into()), Value::String("new".into())])
                    ),
                ]))
            ),
            ("keep", Value::Int(2)),
        ]))
    );
    assert_eq!(out.metadata.get("source"), None);
    assert_eq!(out.metadata.get("kept"), Some("2"));
}

#[tokio::test]
async fn a_record_kept_from_an_earlier_batch_still_reads_its_own_structured_data() {
    let mut js = open(
        r#"
        var first = null;
        function process(r) {
            if (first === null) { first = r; return r; }
            r.Metadata.first = String(first.Payload.After.name) + "," +
                Object.keys(first.Metadata).join("|") + "," + first.Operation;
            return r;
        }
        "#,
    )
    .await;
    let one = record_with_after(structured(&[("name", Value::String("one".into()))]));
    let mut two = record_with_after(structured(&[("name", Value::String("two".into()))]));
    two.operation = Operation::Update;
    js.process(std::slice::from_ref(&one)).await;
    let out = output(&mut js, two).await;
    assert_eq!(out.metadata.get("first"), Some("one,source,create"));
}

#[tokio::test]
async fn the_record_parts_keep_their_identity_and_answer_in_delete_and_symbols_like_objects() {
    let mut js = open(
        r#"function process(r) {
            var a = r.Payload.After, tag = Symbol("tag");
            a[tag] = 1;
            var same = String(r.Payload === r.Payload) + String(a === r.Payload.After) +
                String(r.Metadata === r.Metadata);
            delete r.Position;
            a.name = "bob";
            delete a.name;
            a.name = "eve";
            r.Metadata = {
                same: same,
                position: String("Position" in r) + String(r.Position),
                keys: Object.keys(r).join(","),
                after: Object.keys(a).join(","),
                symbol: String(a[tag]) + String(Object.keys(a).length),
                entries: JSON.stringify(Object.entries(a)),
                proto: String(Object.getPrototypeOf(Object.getPrototypeOf(a)) === Object.prototype),
                forin: (function () { var k = []; for (var n in a) { k.push(n); } return k.join(","); })()
            };
            return r;
        }"#,
    )
    .await;
    let record = record_with_after(structured(&[
        ("id", Value::Int(1)),
        ("name", Value::String("ann".into())),
    ]));
    let out = output(&mut js, record).await;
    let get = |key: &str| out.metadata.get(key).unwrap_or_default().to_owned();
    assert_eq!(get("same"), "truetruetrue");
    assert_eq!(get("position"), "falseundefined");
    assert_eq!(get("keys"), "Operation,Metadata,Key,Payload");
    assert_eq!(get("after"), "id,name");
    assert_eq!(get("symbol"), "12");
    assert_eq!(get("entries"), r#"[["id",1],["name","eve"]]"#);
    assert_eq!(get("proto"), "true");
    assert_eq!(get("forin"), "id,name");
    assert_eq!(out.position, Position::default());
    assert_eq!(
        out.payload.after,
        Some(structured(&[
            ("id", Value::Int(1)),
            ("name", Value::String("eve".into())),
        ]))
    );
}

#[tokio::test]
async fn strings_and_objects_assigned_over_many_batches_are_kept_and_freed_cleanly() {
    // Every assigned string and object is held by the runtime exactly as long as the
    // record needs it: a reference counted twice or never would crash here or when the
    // processor tears down (QuickJS checks that nothing is left).
    let mut js = open(
        r#"var kept = [];
        function process(r) {
            var a = r.Payload.After;
            a.text = "t" + a.id;
            a.nested = { list: [a.id, "x"], bytes: new Uint8Array([1, 2]) };
            r.Metadata.label = "m" + a.id;
            r.Key = { id: "k" + a.id };
            if (a.id % 10 === 0) { kept.push(r); }
            if (kept.length > 3) { kept.shift(); }
            return a.id % 7 === 0 ? null : r;
        }"#,
    )
    .await;
    for batch in 0..5_i64 {
        let records: Vec<Record> = (0..50_i64)
            .map(|i| record_with_after(structured(&[("id", Value::Int(batch * 50 + i))])))
            .collect();
        let results = js.process(&records).await;
        assert_eq!(results.len(), 50);
        for (i, result) in (0_i64..).zip(&results) {
            let id = batch * 50 + i;
            if id % 7 == 0 {
                assert!(
                    matches!(result, ProcessedRecord::Filter),
                    "{id}: {result:?}"
                );
                continue;
            }
            let out = single(result);
            assert_eq!(out.metadata.get("label"), Some(format!("m{id}").as_str()));
            let Some(Data::Structured(after)) = &out.payload.after else {
                panic!("{id}: {out:?}");
            };
            assert_eq!(
                after.get("text"),
                Some(&Value::String(format!("t{id}").into()))
            );
            assert_eq!(
                out.key,
                Some(structured(&[(
                    "id",
                    Value::String(format!("k{id}").into())
                )]))
            );
        }
    }
    js.teardown().await.expect("the runtime is freed");
}

#[tokio::test]
async fn defining_or_freezing_a_part_of_the_record_is_refused_with_a_type_error() {
    for change in [
        "Object.defineProperty(r.Payload.After, 'x', { value: 1 });",
        "Object.freeze(r.Metadata);",
    ] {
        let mut js = open(&format!("function process(r) {{ {change} return r; }}")).await;
        let input = record_with_after(structured(&[("id", Value::Int(1))]));
        let text = error_text(&process_one(&mut js, input).await);
        assert!(text.contains("TypeError"), "{change}: {text}");
    }
}

#[tokio::test]
async fn the_prototype_of_a_part_of_the_record_cannot_be_replaced() {
    let mut js =
        open("function process(r) { Object.setPrototypeOf(r.Payload.After, { x: 1 }); return r; }")
            .await;
    let input = record_with_after(structured(&[("id", Value::Int(1))]));
    let text = error_text(&process_one(&mut js, input).await);
    assert!(text.contains("TypeError"), "{text}");
}

#[tokio::test]
async fn symbol_keys_of_a_part_of_the_record_are_set_read_and_deleted_like_an_objects() {
    let mut js = open(
        r#"function process(r) {
            var a = r.Payload.After, tag = Symbol("id"), other = Symbol("id");
            a[tag] = { n: 1 };
            var seen = [String(tag in a), String(other in a), String(a[tag].n),
                String(a[other]), String(Object.getOwnPropertyDescriptor(a, tag).value.n)];
            a[other] = 2;
            var symbols = Object.getOwnPropertySymbols(a);
            seen.push(String(symbols.length), String(symbols[0] === tag), String(symbols[1] === other),
                Object.keys(a).join("|"), String(Reflect.ownKeys(a).length));
            delete a[tag];
            delete a[other];
            seen.push(String(tag in a), String(a[tag]), String(a.id),
                String(Object.getOwnPropertySymbols(a).length));
            r.Metadata.seen = seen.join(",");
            return r;
        }"#,
    )
    .await;
    let input = record_with_after(structured(&[("id", Value::Int(1))]));
    let out = output(&mut js, input).await;
    assert_eq!(
        out.metadata.get("seen"),
        Some("true,false,1,undefined,1,2,true,true,id,3,false,undefined,1,0")
    );
}

#[tokio::test]
async fn objects_a_script_replaces_deletes_and_sets_again_come_back_as_last_set_in_every_batch() {
    let mut js = open(
        r#"
        var kept = null;
        function process(r) {
            var a = r.Payload.After;
            a.obj = { n: 1 };
            a.obj = 2;
            a.list = [1, 2];
            delete a.list;
            a.list = { m: [3] };
            a.nested = a.nested;
            a.nested.seen = true;
            if (kept === null) {
                kept = r;
                kept.Payload.After.mine = { from: "first" };
            } else {
                a.kept = JSON.stringify(kept.Payload.After.mine) + kept.Payload.After.name;
            }
            return r;
        }
        "#,
    )
    .await;
    let record = |name: &str| {
        record_with_after(structured(&[
            ("name", Value::String(name.into())),
            ("nested", Value::Map(fields(&[("x", Value::Int(1))]))),
        ]))
    };
    let expected = |name: &str, kept: Option<&str>| {
        let mut pairs = vec![
            (
                "list",
                Value::Map(fields(&[("m", Value::Array(vec![Value::Int(3)]))])),
            ),
            ("name", Value::String(name.into())),
            (
                "nested",
                Value::Map(fields(&[("seen", Value::Bool(true)), ("x", Value::Int(1))])),
            ),
            ("obj", Value::Int(2)),
        ];
        if let Some(kept) = kept {
            pairs.push(("kept", Value::String(kept.into())));
        } else {
            pairs.push((
                "mine",
                Value::Map(fields(&[("from", Value::String("first".into()))])),
            ));
        }
        Some(structured(&pairs))
    };
    let first = output(&mut js, record("one")).await;
    assert_eq!(first.payload.after, expected("one", None));
    for name in ["two", "three"] {
        let out = output(&mut js, record(name)).await;
        assert_eq!(
            out.payload.after,
            expected(name, Some(r#"{"from":"first"}one"#)),
            "record {name}"
        );
    }
}
