#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Behaviour of templates and conditions on records, checked against Go's text/template
//! and sprig semantics.

use bytes::Bytes;
use funnel_record::{Data, Metadata, Operation, Position, Record, Value};
use funnel_template::{Condition, Template};
use funnel_test_utils::results::fields;

fn record() -> Record {
    let mut r = Record::new("pos-1", "");
    r.operation = Operation::Update;
    r.metadata = Metadata::new();
    r.metadata.insert("key", "val");
    r.metadata.insert("opencdc.collection", "orders");
    r.metadata.insert("table", "tmp_users");
    r.key = Some(Data::Raw(Bytes::from_static(b"hi")));
    r.payload.before = None;
    r.payload.after = Some(Data::Structured(fields(&[
        ("foo", Value::String("bar".into())),
        ("n", Value::Int(42)),
        ("f", Value::Float(4.0)),
        ("big", Value::Float(1e21)),
        ("small", Value::Float(1.5e-7)),
        ("t", Value::Bool(true)),
        ("null", Value::Null),
        (
            "list",
            Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
        ),
        (
            "user",
            Value::Map(fields(&[
                ("name", Value::String("ann".into())),
                ("age", Value::Int(7)),
            ])),
        ),
        ("json", Value::String(r#"{"a":1,"b":[true,null]}"#.into())),
        ("empty", Value::String(funnel_record::SmolStr::default())),
    ])));
    r
}

fn render(t: &str) -> String {
    Template::parse(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .render(&record())
        .unwrap_or_else(|e| panic!("{t}: {e}"))
}

fn render_err(t: &str) -> String {
    Template::parse(t)
        .unwrap()
        .render(&record())
        .unwrap_err()
        .to_string()
}

fn parse_err(t: &str) -> String {
    Template::parse(t).unwrap_err().to_string()
}

fn cases(list: &[(&str, &str)]) {
    for (t, want) in list {
        assert_eq!(render(t), *want, "template {t}");
    }
}

#[test]
fn plain_text_is_a_literal() {
    let t = Template::parse("hello {{/* a comment */}}").unwrap();
    assert_eq!(t.render(&record()).unwrap(), "hello ");
    assert_eq!(
        Template::parse("plain").unwrap().as_literal(),
        Some("plain")
    );
    assert_eq!(Template::parse("").unwrap().as_literal(), Some(""));
    assert_eq!(Template::parse("{{ .Key }}").unwrap().as_literal(), None);
}

#[test]
fn record_fields_print_like_go() {
    cases(&[
        ("{{ .Position }}", "pos-1"),
        ("{{ .Position.String }}", "pos-1"),
        ("{{ .Operation }}", "update"),
        ("{{ .Operation.String }}", "update"),
        ("{{ .Metadata.key }}", "val"),
        (
            "{{ .Metadata }}",
            "map[key:val opencdc.collection:orders table:tmp_users]",
        ),
        ("{{ .Key }}", "[104 105]"),
        ("{{ .Key.Bytes | printf \"%s\" }}", "hi"),
        ("{{ .Payload.Before }}", "<nil>"),
        ("{{ .Payload.After.foo }}", "bar"),
        ("{{ .Payload.After.user.name }}", "ann"),
        ("{{ .Payload.After.user }}", "map[age:7 name:ann]"),
        ("{{ .Payload.After.list }}", "[1 2 3]"),
    ]);
}

#[test]
fn missing_metadata_key_prints_no_value() {
    cases(&[
        ("{{ .Metadata.nope }}", "<no value>"),
        ("{{ .Payload.After.nope }}", "<no value>"),
        ("{{ .Payload.After.nope.deeper }}", "<no value>"),
        ("{{ index .Metadata \"nope\" }}", ""),
        ("{{ index .Payload.After \"nope\" }}", "<no value>"),
    ]);
}

#[test]
fn with_missingkey_error_a_missing_key_fails_the_render_as_go_reports_it() {
    let strict = |t: &str| Template::parse_strict(t).unwrap().render(&record());
    for (t, at) in [
        (
            "{{ .Metadata.nope }}",
            "1:3: executing \"\" at <.Metadata.nope>",
        ),
        (
            "x={{ .Payload.After.nope }}",
            "1:5: executing \"\" at <.Payload.After.nope>",
        ),
        (
            "{{ .Payload.After.user.nope }}",
            "1:3: executing \"\" at <.Payload.After.user.nope>",
        ),
    ] {
        assert_eq!(
            strict(t).unwrap_err().to_string(),
            format!("template: :{at}: map has no entry for key \"nope\""),
            "template {t}"
        );
    }
    // As an argument too (the position is the command's, see the crate docs).
    for t in [
        "{{ upper .Metadata.nope }}",
        "{{ eq .Metadata.nope \"x\" }}",
    ] {
        let e = strict(t).unwrap_err().to_string();
        assert!(e.ends_with("map has no entry for key \"nope\""), "{t}: {e}");
    }
    // Keys that exist, methods, and `index` (which Go's option does not affect).
    for (t, want) in [
        (
            "{{ .Metadata.key }}/{{ .Payload.After.user.name }}",
            "val/ann",
        ),
        (
            "{{ printf \"%s\" .Key }} {{ .Operation }} {{ .Position.String }}",
            "hi update pos-1",
        ),
        ("{{ .Key.Bytes }}", "[104 105]"),
        ("[{{ index .Metadata \"nope\" }}]", "[]"),
    ] {
        assert_eq!(strict(t).unwrap(), want, "template {t}");
    }
    // Without the option the same lookups give no value.
    assert_eq!(render("{{ .Metadata.nope }}"), "<no value>");
}

#[test]
fn printf_s_writes_bytes_as_text_with_invalid_utf8_replaced_and_pads_by_characters() {
    let mut r = record();
    r.payload.after = Some(Data::Raw(Bytes::from_static(b"h\xffi \xc3\xa9")));
    let render_on = |t: &str| Template::parse(t).unwrap().render(&r).unwrap();
    assert_eq!(
        render_on(r#"{{ printf "%s" .Payload.After }}"#),
        "h\u{fffd}i \u{e9}"
    );
    assert_eq!(render_on(r#"[{{ printf "%6s" .Key }}]"#), "[    hi]");
    assert_eq!(
        render_on(r#"[{{ printf "%-4s|%.1s" .Key .Key }}]"#),
        "[hi  |h]"
    );
    assert_eq!(render_on(r#"{{ printf "%s" .Metadata.key }}"#), "val");
}

#[test]
fn json_null_prints_no_value_in_an_action_and_nil_in_print() {
    cases(&[
        ("{{ .Payload.After.null }}", "<no value>"),
        ("{{ print .Payload.After.null }}", "<nil>"),
    ]);
}

#[test]
fn values_print_like_go_fmt() {
    cases(&[
        ("{{ .Payload.After.n }}", "42"),
        ("{{ .Payload.After.f }}", "4"),
        ("{{ .Payload.After.big }}", "1e+21"),
        ("{{ .Payload.After.small }}", "1.5e-07"),
        ("{{ 1000000.0 }}", "1e+06"),
        ("{{ 123456.0 }}", "123456"),
        ("{{ 0.5 }}", "0.5"),
        ("{{ .Payload.After.t }}", "true"),
        ("{{ nil | print }}", "<nil>"),
        ("{{ 'a' }}", "97"),
        ("{{ 0x1F }}", "31"),
        ("{{ 1_000 }}", "1000"),
        ("{{ -3 }}", "-3"),
        ("{{ \"a\\tb\" }}", "a\tb"),
        ("{{ `raw\\n` }}", "raw\\n"),
    ]);
}

#[test]
fn field_access_on_raw_data_is_an_error() {
    let e = render_err("{{ .Key.foo }}");
    assert!(
        e.contains("can't evaluate field foo in type opencdc.Data"),
        "{e}"
    );
    assert!(
        e.starts_with("template: :1:3: executing \"\" at <.Key.foo>"),
        "{e}"
    );
    let e = render_err("{{ .Payload.Before.foo }}");
    assert!(e.contains("nil pointer evaluating opencdc.Data.foo"), "{e}");
    let e = render_err("{{ .Nope }}");
    assert!(
        e.contains("can't evaluate field Nope in type opencdc.Record"),
        "{e}"
    );
}

#[test]
fn trim_markers_remove_surrounding_whitespace() {
    cases(&[
        ("a  {{- .Metadata.key -}}  \n b", "avalb"),
        ("a {{- /* c */ -}} b", "ab"),
        ("a {{ .Metadata.key }} b", "a val b"),
    ]);
}

#[test]
fn pipelines_pass_the_value_as_the_last_argument() {
    cases(&[
        ("{{ .Metadata.key | upper }}", "VAL"),
        (
            "{{ .Metadata.table | trimPrefix \"tmp_\" | upper }}",
            "USERS",
        ),
        (
            "{{ (index .Metadata \"opencdc.collection\") | printf \"%s!\" }}",
            "orders!",
        ),
        ("{{ (.Payload.After.user).name }}", "ann"),
    ]);
}

#[test]
fn variables_declare_assign_and_scope() {
    cases(&[
        ("{{ $x := .Metadata.key }}{{ $x }}", "val"),
        ("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", "2"),
        (
            "{{ $x := 1 }}{{ if true }}{{ $x = 3 }}{{ end }}{{ $x }}",
            "3",
        ),
        (
            "{{ with .Payload.After.user }}{{ $.Metadata.key }}-{{ .name }}{{ end }}",
            "val-ann",
        ),
        ("{{ $u := .Payload.After.user }}{{ $u.name }}", "ann"),
    ]);
    assert!(
        parse_err("{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}")
            .contains("undefined variable \"$x\"")
    );
}

#[test]
fn if_else_if_else_chooses_by_truth() {
    cases(&[
        ("{{ if .Metadata.key }}yes{{ else }}no{{ end }}", "yes"),
        ("{{ if .Metadata.nope }}yes{{ else }}no{{ end }}", "no"),
        (
            "{{ if eq .Metadata.key \"x\" }}x{{ else if eq .Metadata.key \"val\" }}val{{ else }}other{{ end }}",
            "val",
        ),
        ("{{ if .Payload.After.empty }}y{{ else }}n{{ end }}", "n"),
        ("{{ if .Payload.Before }}y{{ else }}n{{ end }}", "n"),
        ("{{ if and .Metadata.key .Payload.After.t }}y{{ end }}", "y"),
        ("{{ if or .Metadata.nope 0 }}y{{ else }}n{{ end }}", "n"),
        ("{{ if not .Metadata.nope }}y{{ end }}", "y"),
        ("{{ and 1 0 2 }} {{ or 0 \"\" 3 }} {{ and 1 2 }}", "0 3 2"),
    ]);
}

#[test]
fn range_iterates_lists_maps_and_integers() {
    cases(&[
        ("{{ range .Payload.After.list }}{{ . }},{{ end }}", "1,2,3,"),
        (
            "{{ range $i, $v := .Payload.After.list }}{{ $i }}={{ $v }} {{ end }}",
            "0=1 1=2 2=3 ",
        ),
        (
            "{{ range $k, $v := .Payload.After.user }}{{ $k }}:{{ $v }};{{ end }}",
            "age:7;name:ann;",
        ),
        (
            "{{ range $k, $v := .Metadata }}{{ $k }},{{ end }}",
            "key,opencdc.collection,table,",
        ),
        (
            "{{ range .Payload.After.nope }}x{{ else }}empty{{ end }}",
            "empty",
        ),
        (
            "{{ range $v := .Payload.After.list }}{{ if eq $v 2 }}{{ break }}{{ end }}{{ $v }}{{ end }}",
            "1",
        ),
        (
            "{{ range .Payload.After.list }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}",
            "13",
        ),
        ("{{ range 3 }}{{ . }}{{ end }}", "012"),
        ("{{ range list \"a\" \"b\" }}{{ . }}{{ end }}", "ab"),
    ]);
    assert!(parse_err("{{ break }}").contains("{{break}} outside {{range}}"));
}

#[test]
fn with_sets_dot_and_has_else() {
    cases(&[
        ("{{ with .Payload.After.user }}{{ .name }}{{ end }}", "ann"),
        ("{{ with .Metadata.nope }}x{{ else }}none{{ end }}", "none"),
        (
            "{{ with .Metadata.nope }}x{{ else with .Metadata.key }}{{ . }}{{ end }}",
            "val",
        ),
    ]);
}

#[test]
fn comparisons_follow_go() {
    cases(&[
        ("{{ eq .Metadata.key \"val\" }}", "true"),
        ("{{ eq .Metadata.key \"a\" \"val\" }}", "true"),
        ("{{ ne .Metadata.key \"val\" }}", "false"),
        ("{{ eq .Payload.After.n 42 }}", "true"),
        ("{{ eq .Operation 2 }}", "true"),
        ("{{ eq .Metadata.nope \"x\" }}", "false"),
        ("{{ eq .Payload.Before nil }}", "true"),
        (
            "{{ lt 1 2 }} {{ le 2 2 }} {{ gt 3 2 }} {{ ge 1 2 }}",
            "true true true false",
        ),
        ("{{ lt \"a\" \"b\" }}", "true"),
        ("{{ lt 1.5 2.5 }}", "true"),
    ]);
    assert!(
        render_err("{{ eq 1 1.0 }}")
            .contains("error calling eq: incompatible types for comparison")
    );
    assert!(render_err("{{ lt true false }}").contains("invalid type for comparison"));
    assert!(render_err("{{ eq .Payload.After.n \"42\" }}").contains("incompatible types"));
}

#[test]
fn index_len_slice_work_on_maps_lists_and_strings() {
    cases(&[
        ("{{ index .Metadata \"opencdc.collection\" }}", "orders"),
        ("{{ index .Payload.After.list 1 }}", "2"),
        ("{{ index .Payload.After \"user\" \"name\" }}", "ann"),
        (
            "{{ len .Payload.After.list }} {{ len .Metadata.key }} {{ len .Metadata }}",
            "3 3 3",
        ),
        ("{{ slice \"hello\" 1 3 }}", "el"),
        ("{{ slice .Payload.After.list 1 }}", "[2 3]"),
    ]);
    assert!(
        render_err("{{ index .Payload.After.list 5 }}")
            .contains("error calling index: index out of range: 5")
    );
}

#[test]
fn print_functions_format_like_fmt() {
    cases(&[
        ("{{ print 1 2 \"a\" \"b\" 3 }}", "1 2ab3"),
        ("{{ println 1 \"a\" }}", "1 a\n"),
        (
            "{{ printf \"%d-%s-%v-%q\" 5 \"x\" .Payload.After.user \"y\" }}",
            "5-x-map[age:7 name:ann]-\"y\"",
        ),
        (
            "{{ printf \"%05.2f|%-4d|%4s|%x|%X|%t\" 3.14159 7 \"ab\" 255 \"hi\" true }}",
            "03.14|7   |  ab|ff|6869|true",
        ),
        (
            "{{ printf \"%#x|%#X|%#o|%O|%b|%x|%+d|%c|%U\" 255 255 8 8 5 -255 3 65 65 }}",
            "0xff|0XFF|010|0o10|101|-ff|+3|A|U+0041",
        ),
        (
            "{{ printf \"%e %g %.3g\" 1234.5678 0.000012 1234.5678 }}",
            "1.234568e+03 1.2e-05 1.23e+03",
        ),
        ("{{ printf \"%d\" \"x\" }}", "%!d(string=x)"),
        ("{{ printf \"%d %d\" 1 }}", "1 %!d(MISSING)"),
        ("{{ printf \"%d\" 1 2 }}", "1%!(EXTRA int=2)"),
        (
            "{{ printf \"%T %T %v\" 1 .Metadata.key nil }}",
            "int string <nil>",
        ),
        ("{{ printf \"100%%\" }}", "100%"),
        (
            "{{ html \"<a href='x'>&</a>\" }}",
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;",
        ),
        ("{{ js \"it's <b>\" }}", "it\\'s \\u003Cb\\u003E"),
        ("{{ urlquery \"a b&c=d/é\" }}", "a+b%26c%3Dd%2F%C3%A9"),
    ]);
}

#[test]
fn sprig_string_functions_use_sprig_argument_order() {
    cases(&[
        (
            "{{ upper \"abc\" }} {{ lower \"ABC\" }} {{ title \"hello wORLD-x\" }}",
            "ABC abc Hello WORLD-X",
        ),
        (
            "{{ trim \"  x \" }}|{{ trimAll \"$\" \"$$5$\" }}|{{ nospace \" a b \" }}",
            "x|5|ab",
        ),
        (
            "{{ trimPrefix \"tmp_\" .Metadata.table }} {{ trimSuffix \"_users\" .Metadata.table }}",
            "users tmp",
        ),
        (
            "{{ contains \"ab\" \"xaby\" }} {{ hasPrefix \"tmp_\" .Metadata.table }} {{ hasSuffix \"x\" \"ab\" }}",
            "true true false",
        ),
        ("{{ replace \"a\" \"b\" \"banana\" }}", "bbnbnb"),
        (
            "{{ repeat 3 \"ab\" }} {{ substr 1 3 \"hello\" }} {{ trunc 2 \"hello\" }} {{ trunc -2 \"hello\" }}",
            "ababab el he lo",
        ),
        (
            "{{ quote \"a\" 1 }} {{ squote \"a\" }} {{ cat \"a\" 1 nil \"b\" }}",
            "\"a\" \"1\" 'a' a 1 b",
        ),
        (
            "{{ splitList \",\" \"a,b,,c\" }} {{ join \"-\" (list \"a\" 1 nil \"b\") }}",
            "[a b  c] a-1-b",
        ),
        ("{{ \"a,b\" | splitList \",\" | join \"+\" }}", "a+b"),
    ]);
}

#[test]
fn sprig_default_empty_coalesce_and_conversions() {
    cases(&[
        (
            "{{ default \"d\" .Metadata.nope }} {{ default \"d\" .Metadata.key }} {{ .Payload.After.empty | default \"e\" }}",
            "d val e",
        ),
        (
            "{{ empty .Metadata.nope }} {{ empty 0 }} {{ empty .Payload.After.list }}",
            "true true false",
        ),
        (
            "{{ coalesce .Metadata.nope \"\" \"c\" }} {{ coalesce nil }}",
            "c <no value>",
        ),
        ("{{ ternary \"y\" \"n\" true }}", "y"),
        (
            "{{ int \"42\" }} {{ int 3.9 }} {{ int \"x\" }} {{ int64 \"7.00\" }} {{ float64 \"1.5\" }} {{ float64 2 }}",
            "42 3 0 7 1.5 2",
        ),
        (
            "{{ toString 42 }} {{ toString .Operation }} {{ toString .Key }}",
            "42 update hi",
        ),
    ]);
}

#[test]
fn sprig_json_functions_match_go_encoding() {
    cases(&[
        (
            "{{ toJson .Payload.After.user }}",
            r#"{"age":7,"name":"ann"}"#,
        ),
        (
            "{{ toJson .Payload.After.big }} {{ toJson .Payload.After.small }} {{ toJson .Payload.After.f }}",
            "1e+21 1.5e-7 4",
        ),
        ("{{ toJson \"<&>\" }}", r#""\u003c\u0026\u003e""#),
        (
            "{{ toJson .Key }} {{ toJson .Metadata.nope }}",
            r#""aGk=" null"#,
        ),
        (
            "{{ toJson (dict \"a\" 1 \"b\" (list 1 \"x\")) }}",
            r#"{"a":1,"b":[1,"x"]}"#,
        ),
        ("{{ toPrettyJson (dict \"a\" 1) }}", "{\n  \"a\": 1\n}"),
        (
            "{{ (fromJson .Payload.After.json).a }} {{ (fromJson .Payload.After.json).b }}",
            "1 [true <nil>]",
        ),
        ("{{ fromJson \"nope\" }}", "<no value>"),
    ]);
    let r = render("{{ toJson . }}");
    assert!(
        r.starts_with(r#"{"position":"cG9zLTE=","operation":"update","metadata":{"key":"val""#),
        "{r}"
    );
}

#[test]
fn sprig_encoding_and_hash_functions() {
    cases(&[
        (
            "{{ b64enc \"hello\" }} {{ b64dec \"aGVsbG8=\" }}",
            "aGVsbG8= hello",
        ),
        ("{{ b64dec \"!!\" }}", "illegal base64 data at input byte 0"),
        (
            "{{ sha256sum \"abc\" }}",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            "{{ sha256sum \"\" }}",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
    ]);
    let u = render("{{ uuidv4 }}");
    assert_eq!(u.len(), 36);
    assert_eq!(&u[14..15], "4", "version 4: {u}");
    assert!(
        matches!(&u[19..20], "8" | "9" | "a" | "b"),
        "RFC 4122 variant: {u}"
    );
    assert!(
        u.chars()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
            }),
        "{u}"
    );
    assert_ne!(u, render("{{ uuidv4 }}"));
}

#[test]
fn sprig_date_formats_go_layouts() {
    cases(&[
        (
            "{{ date \"2006-01-02 15:04:05\" 0 }}",
            "1970-01-01 00:00:00",
        ),
        (
            "{{ date \"Mon Jan _2 3:04PM 06 MST Z07:00 -0700\" 1700000000 }}",
            "Tue Nov 14 10:13PM 23 UTC Z +0000",
        ),
        (
            "{{ date \"January 2, 2006 .000 002\" 951782400 }}",
            "February 29, 2000 .000 060",
        ),
    ]);
    let year = render("{{ now | date \"2006\" }}");
    assert!(year.parse::<i32>().unwrap() >= 2024);
    assert_eq!(render("{{ unixEpoch (now) | len }}"), "10");
}

/// Found by the `template` fuzz target: a layout repeating more than nine fractional
/// digits panicked; Go prints nine.
#[test]
fn a_fractional_second_layout_longer_than_nine_digits_prints_nine_not_a_panic() {
    cases(&[
        ("{{ date \"05.000000000000\" 1 }}", "01.000000000"),
        ("{{ date \"05,99999999999\" 1 }}", "01"),
    ]);
}

/// Found by the `template` fuzz target: a width or precision too long for a number
/// overflowed (a panic in debug builds, a huge allocation otherwise), and a float
/// precision over 65535 made Rust's formatter panic. As in Go, a number beyond a million
/// swallows the rest of the format, and any smaller precision is printed.
#[test]
fn a_printf_width_or_precision_of_any_size_prints_as_go_does_never_a_panic() {
    let huge = format!("%.{}2f", "8".repeat(60));
    assert!(
        render(&format!("{{{{ 4 | printf \"{huge}\" }}}}")).starts_with("%!(NOVERB)"),
        "precision"
    );
    assert!(
        render("{{ printf \"%99999999d!\" 1 }}").starts_with("%!(NOVERB)"),
        "width"
    );
    assert_eq!(render("{{ printf \"%5d|\" 1 }}"), "    1|");
    // A precision Go accepts but Rust's formatter does not (over 65535) panicked.
    let wide = render("{{ printf \"%.520062f|%.70000e|%.70000g\" 0.25 0.25 0.25 }}");
    let (f, rest) = wide.split_once('|').unwrap();
    assert_eq!((f.len(), &f[..5]), (520_064, "0.250"));
    assert!(f[4..].bytes().all(|b| b == b'0'));
    let (e, g) = rest.split_once('|').unwrap();
    assert_eq!(
        (e.len(), &e[..4], &e[e.len() - 4..]),
        (70_006, "2.50", "e-01")
    );
    assert_eq!(g, "0.25");
}

/// Found by the `template` fuzz target: the error message cut the escape in the middle
/// of the character after the backslash, and panicked.
#[test]
fn a_backslash_before_a_multibyte_character_is_a_parse_error_not_a_panic() {
    assert_eq!(
        parse_err("{{ \"\\\u{63f}\" }}"),
        "template: :1: invalid syntax in quoted string \"\\\u{63f}"
    );
    assert!(parse_err("{{ \"ab\\\u{1F600}").contains("quoted string"));
}

#[test]
fn parse_errors_read_like_go() {
    assert_eq!(
        parse_err("{{ invalid }}"),
        "template: :1: function \"invalid\" not defined"
    );
    assert!(parse_err("{{ Im not a valid template }}").contains("function \"Im\" not defined"));
    assert_eq!(
        parse_err("{{.Payload.After.my-key}}"),
        "template: :1: bad character U+002D '-'"
    );
    assert_eq!(parse_err("a\n{{ .x "), "template: :2: unclosed action");
    assert_eq!(parse_err("{{ end }}"), "template: :1: unexpected {{end}}");
    assert_eq!(parse_err("{{ if true }}"), "template: :1: unexpected EOF");
    assert_eq!(
        parse_err("{{ }}"),
        "template: :1: missing value for command"
    );
    assert_eq!(
        parse_err("{{ $x }}"),
        "template: :1: undefined variable \"$x\""
    );
    assert_eq!(
        parse_err("{{ \"a\" | \"b\" }}"),
        "template: :1: non executable command in pipeline stage 2"
    );
    assert_eq!(
        parse_err("{{ .x ) }}"),
        "template: :1: unexpected right paren"
    );
    assert_eq!(parse_err("{{ (.x }}"), "template: :1: unclosed left paren");
    assert_eq!(
        parse_err("{{ \"abc }}"),
        "template: :1: unterminated quoted string"
    );
    assert_eq!(
        parse_err("{{ 3x }}"),
        "template: :1: bad number syntax: \"3x\""
    );
    assert!(parse_err("{{ define \"x\" }}{{ end }}").contains("not supported"));
    assert_eq!(
        parse_err("{{/* x */ .y }}"),
        "template: :1: comment ends before closing delimiter"
    );
}

#[test]
fn execution_errors_name_the_function_and_position() {
    let e = render_err("x\n  {{ upper .Payload.After.n }}");
    assert_eq!(
        e,
        "template: :2:5: executing \"\" at <upper .Payload.After.n>: wrong type for value; expected string; got int"
    );
    let e = render_err("{{ upper .Metadata.nope }}");
    assert!(e.ends_with("invalid value; expected string"), "{e}");
    let e = render_err("{{ eq 1 }}");
    assert!(
        e.ends_with("error calling eq: missing argument for comparison"),
        "{e}"
    );
    let e = render_err("{{ upper }}");
    assert!(
        e.ends_with("wrong number of args for upper: want 1 got 0"),
        "{e}"
    );
    let e = render_err("{{ .Metadata.key 1 }}");
    assert!(e.ends_with("key is not a method but has arguments"), "{e}");
}

#[test]
fn empty_condition_means_always() {
    assert!(Condition::parse("").unwrap().is_none());
    assert!(Condition::parse("  \n\t").unwrap().is_none());
}

#[test]
fn conditions_evaluate_to_booleans() {
    let r = record();
    let yes = |c: &str| Condition::parse(c).unwrap().unwrap().evaluate(&r).unwrap();
    assert!(yes("{{ eq .Metadata.key \"val\" }}"));
    assert!(!yes("{{ eq .Metadata.key \"wrongVal\" }}"));
    assert!(yes(
        "{{ eq (index .Metadata \"opencdc.collection\") \"orders\" }}"
    ));
    assert!(yes("{{ eq .Operation.String \"update\" }}"));
    assert!(yes("{{ hasPrefix \"tmp_\" .Metadata.table }}"));
    assert!(yes("T"));
    assert!(!yes("{{ if .Metadata.nope }}true{{ else }}0{{ end }}"));
    assert!(yes("{{ .Payload.After.t }}"));
}

#[test]
fn non_boolean_condition_output_is_an_error_like_conduits() {
    let r = record();
    let e = Condition::parse("junk")
        .unwrap()
        .unwrap()
        .evaluate(&r)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "error converting the condition go-template output to boolean, strconv.ParseBool: parsing \"junk\": invalid syntax: strconv.ParseBool: parsing \"junk\": invalid syntax"
    );
    let e = Condition::parse("{{ printf \"hi\" }}")
        .unwrap()
        .unwrap()
        .evaluate(&r)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("error converting the condition go-template output to boolean"),
        "{e}"
    );
    let e = Condition::parse("{{ .Metadata.nope }}")
        .unwrap()
        .unwrap()
        .evaluate(&r)
        .unwrap_err()
        .to_string();
    assert!(e.contains("parsing \"<no value>\""), "{e}");
}

#[test]
fn invalid_condition_fails_to_parse() {
    let e = Condition::parse("{{ Im not a valid template }}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("function \"Im\" not defined"), "{e}");
}

#[test]
fn templates_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_send_sync::<Template>();
    assert_send_sync::<Condition>();
    let t = Template::parse("{{ .Metadata.key }}").unwrap();
    let r = record();
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(t.render(&r).unwrap(), "val"));
    });
}

#[test]
fn render_into_appends_and_keeps_partial_output_on_error() {
    let r = record();
    let mut out = String::from(">");
    Template::parse("{{ .Metadata.key }}")
        .unwrap()
        .render_into(&r, &mut out)
        .unwrap();
    assert_eq!(out, ">val");
    let mut out = String::new();
    assert!(
        Template::parse("a{{ .Key.x }}b")
            .unwrap()
            .render_into(&r, &mut out)
            .is_err()
    );
    assert_eq!(out, "a");
}

#[test]
fn position_prints_nil_when_unset() {
    let mut r = record();
    r.position = Position::default();
    assert_eq!(
        Template::parse("{{ .Position }}")
            .unwrap()
            .render(&r)
            .unwrap(),
        "<nil>"
    );
}

/// A record whose payload holds times (`field.convert` to `time` makes them).
fn record_with_times() -> Record {
    let at = |nanos| Value::Time(funnel_record::Timestamp::from_unix_nanos(nanos));
    let mut r = Record::new("pos-1", "");
    r.payload.after = Some(Data::Structured(fields(&[
        ("ts", at(1_611_254_412_345_678_999)),
        ("same", at(1_611_254_412_345_678_999)),
        ("whole", at(1_611_254_412_000_000_000)),
        (
            "text",
            Value::String("2021-01-21T18:40:12.345678999Z".into()),
        ),
    ])));
    r
}

fn render_times(t: &str) -> Result<String, String> {
    Template::parse(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .render(&record_with_times())
        .map_err(|e| e.to_string())
}

#[test]
fn times_in_structured_data_behave_like_go_time_values() {
    for (t, want) in [
        // Printing is Go's time.Time.String().
        (
            "{{ .Payload.After.ts }}",
            "2021-01-21 18:40:12.345678999 +0000 UTC",
        ),
        (
            "{{ .Payload.After.whole }}",
            "2021-01-21 18:40:12 +0000 UTC",
        ),
        (
            "{{ print .Payload.After.ts }}|{{ printf \"%v\" .Payload.After.whole }}",
            "2021-01-21 18:40:12.345678999 +0000 UTC|2021-01-21 18:40:12 +0000 UTC",
        ),
        (
            "{{ .Payload.After }}",
            "map[same:2021-01-21 18:40:12.345678999 +0000 UTC \
             text:2021-01-21T18:40:12.345678999Z ts:2021-01-21 18:40:12.345678999 +0000 UTC \
             whole:2021-01-21 18:40:12 +0000 UTC]",
        ),
        // toJson is time.Time.MarshalJSON.
        (
            "{{ toJson .Payload.After.ts }} {{ toJson .Payload.After.whole }}",
            r#""2021-01-21T18:40:12.345678999Z" "2021-01-21T18:40:12Z""#,
        ),
        (
            "{{ toJson (list .Payload.After.whole) }}",
            r#"["2021-01-21T18:40:12Z"]"#,
        ),
        // A struct is always true; equal times are equal.
        ("{{ if .Payload.After.ts }}yes{{ end }}", "yes"),
        ("{{ eq .Payload.After.ts .Payload.After.same }}", "true"),
        ("{{ eq .Payload.After.ts .Payload.After.whole }}", "false"),
        // sprig's date and unixEpoch take a time.
        ("{{ date \"2006-01-02\" .Payload.After.ts }}", "2021-01-21"),
        ("{{ unixEpoch .Payload.After.ts }}", "1611254412"),
    ] {
        assert_eq!(render_times(t).as_deref(), Ok(want), "template {t}");
    }
    // Go's eq refuses a time against a string (a struct and a basic kind), and lt has
    // no order for structs.
    let err = render_times("{{ eq .Payload.After.ts .Payload.After.text }}").unwrap_err();
    assert!(err.contains("incompatible types for comparison"), "{err}");
    let err = render_times("{{ lt .Payload.After.ts .Payload.After.same }}").unwrap_err();
    assert!(err.contains("invalid type for comparison"), "{err}");
}

#[test]
fn ranging_over_a_huge_integer_is_an_error_not_an_allocation_or_a_hang() {
    let t = Template::parse("{{ range 4611686018427387904 }}x{{ end }}").unwrap();
    let err = t.render(&record()).unwrap_err().to_string();
    assert!(err.contains("range exceeds"), "{err}");
    let nested = Template::parse("{{ range 5000 }}{{ range 5000 }}{{ end }}{{ end }}").unwrap();
    let err = nested.render(&record()).unwrap_err().to_string();
    assert!(err.contains("range exceeds"), "{err}");
}

#[test]
fn a_render_longer_than_its_bound_is_an_error_not_an_exhausted_memory() {
    let limit = funnel_template::MAX_RENDER_BYTES;
    // A range within the iteration bound whose body makes the output too long (the
    // fuzzer's input: 9.9 million iterations of a 100-byte body would be 1 GB).
    let body = "\u{16}".repeat(100);
    let t = Template::parse(&format!(
        "{{{{ range 4611686018427387904 }}}}{body}{{{{ end }}}}"
    ))
    .unwrap();
    let err = t.render(&record()).unwrap_err().to_string();
    assert!(
        err.contains(&format!("output exceeds {limit} bytes")),
        "{err}"
    );
    // A huge repeat count is refused before anything is allocated.
    let t = Template::parse(r#"{{ repeat 4611686018427387904 "x" }}"#).unwrap();
    let err = t.render(&record()).unwrap_err().to_string();
    assert!(err.contains("Repeat output longer than"), "{err}");
    // A string doubled in a variable, never written, is stopped by its length.
    let t = Template::parse(
        r#"{{ $s := "x" }}{{ range 64 }}{{ $s = printf "%s%s" $s $s }}{{ end }}{{ len $s }}"#,
    )
    .unwrap();
    let err = t.render(&record()).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "error calling printf: the result exceeds {limit} bytes"
        )),
        "{err}"
    );
    // Up to the bound, output is whole.
    let t = Template::parse(&format!(r#"{{{{ repeat {limit} "x" }}}}"#)).unwrap();
    assert_eq!(t.render(&record()).unwrap().len(), limit);
}

#[test]
fn ranging_over_an_integer_within_the_bound_still_counts_from_zero() {
    cases(&[
        ("{{ range 3 }}{{ . }}{{ end }}", "012"),
        ("{{ range $i := 3 }}{{ $i }}{{ end }}", "012"),
        ("{{ range 0 }}x{{ else }}none{{ end }}", "none"),
        ("{{ range -2 }}x{{ else }}none{{ end }}", "none"),
    ]);
}
