//! `jq`: settings, input and output data, filtering, splitting and errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "jq")]

use bytes::Bytes;
use funnel_core::{ProcessedRecord, Processor};
use funnel_processors::{SettingsError, build};
use funnel_record::{Data, Operation, Payload, Position, Record, Value};

use funnel_test_utils::results::{error_text, fields, output, settings, single, the_only_error};

fn jq(pairs: &[(&str, &str)]) -> Box<dyn Processor> {
    build("jq", "jq1", &settings(pairs)).expect("settings are valid")
}

fn build_errors(pairs: &[(&str, &str)]) -> Vec<SettingsError> {
    let refused = build("jq", "jq1", &settings(pairs)).err();
    refused.unwrap_or_else(|| panic!("settings {pairs:?} were accepted"))
}

fn record(after: Option<Data>) -> Record {
    Record {
        position: Position::from("p1"),
        operation: Operation::Update,
        metadata: [("m", "v")].into_iter().collect(),
        key: Some(Data::raw("k1")),
        payload: Payload {
            before: None,
            after,
        },
    }
}

#[tokio::test]
async fn one_result_replaces_the_structured_payload_and_keeps_the_rest_of_the_record() {
    let mut p = jq(&[("filter", "{name: .name | ascii_upcase, total: (.a + .b)}")]);
    let input = record(Some(Data::Structured(fields(&[
        ("name", Value::String("bob".into())),
        ("a", Value::Int(2)),
        ("b", Value::Float(0.5)),
    ]))));
    let out = output(&mut p, input.clone()).await;
    let mut expected = input.clone();
    expected.payload.after = Some(Data::Structured(fields(&[
        ("name", Value::String("BOB".into())),
        ("total", Value::Float(2.5)),
    ])));
    assert_eq!(out, expected);
}

#[tokio::test]
async fn values_keep_their_types_through_an_identity_program() {
    let mut p = jq(&[("filter", ".")]);
    let after = Data::Structured(fields(&[
        ("int", Value::Int(-3)),
        ("big", Value::Int(1_747_353_650_123)),
        ("huge", Value::Uint(u64::MAX)),
        ("float", Value::Float(4.0)),
        ("text", Value::String("ü".into())),
        ("bytes", Value::Bytes(Bytes::from_static(b"\x00\xff"))),
        ("null", Value::Null),
        ("flag", Value::Bool(true)),
        ("list", Value::Array(vec![Value::Int(1), Value::Null])),
        ("nested", Value::Map(fields(&[("x", Value::Int(1))]))),
    ]));
    let input = record(Some(after));
    let out = output(&mut p, input.clone()).await;
    assert_eq!(out, input);
}

#[tokio::test]
async fn raw_data_holding_json_is_parsed_first() {
    let mut p = jq(&[("filter", ".user")]);
    let input = record(Some(Data::raw(r#"{"user": {"id": 5, "tags": ["a"]}}"#)));
    let out = output(&mut p, input).await;
    assert_eq!(
        out.payload.after,
        Some(Data::Structured(fields(&[
            ("id", Value::Int(5)),
            ("tags", Value::Array(vec![Value::String("a".into())])),
        ])))
    );
}

#[tokio::test]
async fn raw_data_that_is_not_json_nacks_the_record() {
    let mut p = jq(&[("filter", ".")]);
    let results = p.process(&[record(Some(Data::raw("not json")))]).await;
    let text = error_text(&results[0]);
    assert!(text.contains("\"jq1\""), "{text}");
    assert!(text.contains("not JSON"), "{text}");
}

#[tokio::test]
async fn a_string_result_becomes_raw_text_and_other_scalars_raw_json() {
    let mut p = jq(&[("filter", ".[\"kind\"]")]);
    let input = record(Some(Data::Structured(fields(&[(
        "kind",
        Value::String("order".into()),
    )]))));
    let out = output(&mut p, input).await;
    assert_eq!(out.payload.after, Some(Data::raw("order")));

    let mut p = jq(&[("filter", "[.a, .a * 2]")]);
    let input = record(Some(Data::Structured(fields(&[("a", Value::Int(21))]))));
    let out = output(&mut p, input).await;
    assert_eq!(out.payload.after, Some(Data::raw("[21,42]")));
}

#[tokio::test]
async fn a_null_result_or_no_result_filters_the_record() {
    let input = record(Some(Data::Structured(fields(&[(
        "keep",
        Value::Bool(false),
    )]))));
    for filter in ["null", "empty", "select(.keep)", ".missing"] {
        let mut p = jq(&[("filter", filter)]);
        assert_eq!(
            p.process(std::slice::from_ref(&input)).await,
            vec![ProcessedRecord::Filter],
            "filter {filter}"
        );
    }
}

#[tokio::test]
async fn several_results_split_the_record_in_order() {
    let mut p = jq(&[("filter", ".items[] | {item: .}")]);
    let input = record(Some(Data::Structured(fields(&[(
        "items",
        Value::Array(vec![Value::Int(1), Value::Null, Value::Int(3)]),
    )]))));
    let results = p.process(std::slice::from_ref(&input)).await;
    let ProcessedRecord::Multi(pieces) = &results[0] else {
        panic!("expected a split, got {results:?}");
    };
    let items: Vec<Option<Data>> = pieces.iter().map(|r| r.payload.after.clone()).collect();
    assert_eq!(
        items,
        vec![
            Some(Data::Structured(fields(&[("item", Value::Int(1))]))),
            Some(Data::Structured(fields(&[("item", Value::Null)]))),
            Some(Data::Structured(fields(&[("item", Value::Int(3))]))),
        ]
    );
    for piece in pieces {
        assert_eq!(piece.position, input.position);
        assert_eq!(piece.key, input.key);
        assert_eq!(piece.metadata, input.metadata);
    }
}

#[tokio::test]
async fn null_results_are_dropped_from_a_split() {
    let mut p = jq(&[("filter", ".[]")]);
    let input = record(Some(Data::raw(r#"[{"a":1}, null, {"a":2}]"#)));
    let results = p.process(&[input]).await;
    let ProcessedRecord::Multi(pieces) = &results[0] else {
        panic!("expected a split, got {results:?}");
    };
    assert_eq!(pieces.len(), 2);
}

#[tokio::test]
async fn a_jq_error_nacks_the_record_with_a_clear_message() {
    let mut p = jq(&[(
        "filter",
        r#"if .ok then . else error("not ok: \(.id)") end"#,
    )]);
    let bad = record(Some(Data::Structured(fields(&[
        ("ok", Value::Bool(false)),
        ("id", Value::Int(9)),
    ]))));
    let good = record(Some(Data::Structured(fields(&[("ok", Value::Bool(true))]))));
    let results = p.process(&[bad, good.clone()]).await;
    let text = error_text(&results[0]);
    assert!(text.contains("processor \"jq1\" (jq)"), "{text}");
    assert!(text.contains("not ok: 9"), "{text}");
    assert_eq!(results[1], ProcessedRecord::Single(good));
}

#[tokio::test]
async fn a_type_error_nacks_the_record() {
    let mut p = jq(&[("filter", ".a + 1")]);
    let input = record(Some(Data::Structured(fields(&[(
        "a",
        Value::String("x".into()),
    )]))));
    let results = p.process(&[input]).await;
    assert!(matches!(results[0], ProcessedRecord::Error(_)));
}

#[tokio::test]
async fn halt_nacks_the_record_instead_of_stopping_the_process() {
    let mut p = jq(&[("filter", "halt")]);
    let results = p.process(&[record(None)]).await;
    assert!(error_text(&results[0]).contains("halted"));
}

#[tokio::test]
async fn a_nested_field_is_the_input_and_takes_the_result() {
    let mut p = jq(&[
        ("field", ".Payload.After.user"),
        ("filter", ".name |= ascii_downcase"),
    ]);
    let input = record(Some(Data::raw(r#"{"user": {"name": "ANN"}, "other": 1}"#)));
    let out = output(&mut p, input).await;
    assert_eq!(
        out.payload.after,
        Some(Data::Structured(fields(&[
            ("other", Value::Int(1)),
            (
                "user",
                Value::Map(fields(&[("name", Value::String("ann".into()))]))
            ),
        ])))
    );
}

#[tokio::test]
async fn the_key_can_be_the_field() {
    let mut p = jq(&[("field", ".Key"), ("filter", "{id: .}")]);
    let mut input = record(None);
    input.key = Some(Data::raw("12"));
    let out = output(&mut p, input).await;
    assert_eq!(
        out.key,
        Some(Data::Structured(fields(&[("id", Value::Int(12))])))
    );
}

#[tokio::test]
async fn no_data_is_null_to_the_program() {
    let mut p = jq(&[("filter", "{was_null: (. == null)}")]);
    let out = output(&mut p, record(None)).await;
    assert_eq!(
        out.payload.after,
        Some(Data::Structured(fields(&[("was_null", Value::Bool(true))])))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gives_one_result_per_record_in_order() {
    let mut p = jq(&[("filter", "select(.n % 3 != 0) | .n *= 10")]);
    let inputs: Vec<Record> = (0..100)
        .map(|n| record(Some(Data::Structured(fields(&[("n", Value::Int(n))])))))
        .collect();
    let results = p.process(&inputs).await;
    assert_eq!(results.len(), inputs.len());
    for (n, result) in (0_i64..).zip(results) {
        if n % 3 == 0 {
            assert_eq!(result, ProcessedRecord::Filter, "record {n}");
        } else {
            assert_eq!(
                single(&result).payload.after,
                Some(Data::Structured(fields(&[("n", Value::Int(n * 10))])))
            );
        }
    }
}

#[test]
fn a_program_that_does_not_parse_is_a_settings_error_on_filter_with_its_location() {
    let errors = build_errors(&[("filter", ".a |\n  {b: }")]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].setting, "filter");
    let message = &errors[0].message;
    assert!(message.contains("does not parse"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn an_undefined_function_is_a_settings_error_on_filter_naming_it() {
    let errors = build_errors(&[("filter", "nosuchthing(1)")]);
    assert_eq!(errors[0].setting, "filter");
    let message = &errors[0].message;
    assert!(
        message.contains("undefined filter nosuchthing/1"),
        "{message}"
    );
}

#[test]
fn the_filter_is_required() {
    assert_eq!(the_only_error(&build_errors(&[])).setting, "filter");
}

#[test]
fn a_field_outside_the_key_and_payload_is_refused() {
    assert_eq!(
        the_only_error(&build_errors(&[("filter", "."), ("field", ".Metadata.x")])).setting,
        "field"
    );
    let errors = build_errors(&[("filter", "."), ("field", ".Payload")]);
    assert_eq!(errors[0].setting, "field");
}

#[test]
fn an_unknown_setting_is_refused() {
    assert_eq!(
        the_only_error(&build_errors(&[("filter", "."), ("program", ".")])).setting,
        "program"
    );
}

#[test]
fn the_processor_is_listed_with_its_settings() {
    let spec = funnel_processors::components()
        .into_iter()
        .find(|s| s.name == "jq")
        .expect("jq is registered");
    let field = spec.settings().find(|s| s.name == "field").unwrap();
    assert_eq!(field.default, Some(".Payload.After"));
    assert!(spec.settings().any(|s| s.name == "filter" && s.required));
}
