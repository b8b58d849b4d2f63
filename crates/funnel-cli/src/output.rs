//! What every command but `run` prints, and its exit code: one place, so that every
//! command answers `--json` with the same envelope and exits with the same codes.
//!
//! With `--json`, stdout holds exactly one JSON object,
//! `{"command", "ok", "summary", "result", "error"}`: `result` is what the command
//! produced (`null` on failure), `error` is `null` on success and otherwise
//! `{"exitCode", "kind", "message"}`. Without it, a success prints its result as a
//! table or an indented tree (as its [`View`] says) and then its summary on stdout; a
//! failure prints `error: <message>` on stderr.
//!
//! Exit codes, whatever the output: 0 ok, 1 runtime (the command ran and failed: the
//! API refused, a file could not be written), 2 validation (the input is wrong: usage,
//! an invalid pipeline file, a setting the API refused as invalid), 3 environment
//! (what the command needs is not there: the API cannot be reached or wants a token).

use serde_json::{Value, json};

/// Why a command failed, which decides its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The command ran and failed (exit 1).
    Runtime,
    /// The input is wrong (exit 2).
    Validation,
    /// What the command needs around it is missing (exit 3).
    Environment,
    /// `run` was forced to exit by a second signal (exit 130).
    Interrupted,
}

impl Kind {
    /// The exit code.
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Runtime => 1,
            Self::Validation => 2,
            Self::Environment => 3,
            Self::Interrupted => 130,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Runtime => "runtime",
            Self::Validation => "validation",
            Self::Environment => "environment",
            Self::Interrupted => "interrupted",
        }
    }
}

/// A failed command.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: Kind,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Runtime,
            message: message.into(),
        }
    }

    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Validation,
            message: message.into(),
        }
    }

    pub(crate) fn environment(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Environment,
            message: message.into(),
        }
    }

    pub(crate) fn interrupted(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Interrupted,
            message: message.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::runtime(format!("{e:#}"))
    }
}

/// How a result is shown without `--json`.
pub(crate) enum View {
    /// Only the summary.
    Summary,
    /// The result was printed as it came (records, one by one); the summary goes to
    /// stderr, so stdout holds only what was streamed.
    Streamed,
    /// The result as an indented tree of `key: value` lines.
    Tree,
    /// The array at JSON pointer `rows` of the result as a table: one column per
    /// (header, JSON pointer into a row).
    Table {
        rows: &'static str,
        columns: &'static [(&'static str, &'static str)],
    },
}

/// A command that succeeded: one line saying what it did, and what it produced.
pub(crate) struct Done {
    pub(crate) summary: String,
    pub(crate) result: Value,
    pub(crate) view: View,
}

impl Done {
    pub(crate) fn new(summary: impl Into<String>, result: Value, view: View) -> Self {
        Self {
            summary: summary.into(),
            result,
            view,
        }
    }
}

/// What a command prints and its exit code.
pub(crate) type Outcome = Result<Done, Failure>;

/// The `--json` envelope of `outcome`.
pub(crate) fn envelope(command: &str, outcome: &Outcome) -> Value {
    match outcome {
        Ok(done) => json!({
            "command": command, "ok": true, "summary": done.summary,
            "result": done.result, "error": null,
        }),
        Err(failure) => json!({
            "command": command, "ok": false, "summary": failure.message,
            "result": null,
            "error": {
                "exitCode": failure.kind.code(),
                "kind": failure.kind.name(),
                "message": failure.message,
            },
        }),
    }
}

/// Prints `outcome` (as the envelope with `json`) and returns the exit code.
pub(crate) fn emit(command: &str, json: bool, outcome: &Outcome) -> u8 {
    if json {
        println!("{}", envelope(command, outcome));
    } else {
        match outcome {
            Ok(done) if matches!(done.view, View::Streamed) => eprintln!("{}", done.summary),
            Ok(done) => {
                let text = render(&done.result, &done.view);
                if !text.is_empty() {
                    print!("{text}");
                }
                println!("{}", done.summary);
            }
            Err(failure) => eprintln!("error: {}", failure.message),
        }
    }
    match outcome {
        Ok(_) => 0,
        Err(failure) => failure.kind.code(),
    }
}

/// A scalar as a person reads it: strings without quotes, `-` for nothing.
fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

/// `result` as text for a person.
pub(crate) fn render(result: &Value, view: &View) -> String {
    match view {
        View::Summary | View::Streamed => String::new(),
        View::Tree => {
            let mut out = String::new();
            tree(result, 0, &mut out);
            out
        }
        View::Table { rows, columns } => {
            let rows = result
                .pointer(rows)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut cells: Vec<Vec<String>> =
                vec![columns.iter().map(|(h, _)| (*h).to_owned()).collect()];
            cells.extend(rows.iter().map(|row| {
                columns
                    .iter()
                    .map(|(_, p)| scalar(row.pointer(p).unwrap_or(&Value::Null)))
                    .collect()
            }));
            let widths: Vec<usize> = (0..columns.len())
                .map(|i| {
                    cells
                        .iter()
                        .map(|r| r[i].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let mut out = String::new();
            for row in cells {
                let line: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                out.push_str(line.join("  ").trim_end());
                out.push('\n');
            }
            out
        }
    }
}

fn tree(value: &Value, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    let nested = |v: &Value| match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => a.iter().any(|i| i.is_object() || i.is_array()),
        _ => false,
    };
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if nested(v) {
                    out.push_str(&format!("{indent}{key}:\n"));
                    tree(v, depth + 1, out);
                } else {
                    out.push_str(&format!("{indent}{key}: {}\n", scalar(v)));
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&format!("{indent}-\n"));
                tree(item, depth + 1, out);
            }
        }
        other => out.push_str(&format!("{indent}{}\n", scalar(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_has_a_header_and_a_row_per_item_with_aligned_columns() {
        let result = json!({"items": [{"id": "a", "s": {"x": "RUN"}}, {"id": "long-id", "s": {}}]});
        let view = View::Table {
            rows: "/items",
            columns: &[("ID", "/id"), ("STATUS", "/s/x")],
        };
        assert_eq!(
            render(&result, &view),
            "ID       STATUS\na        RUN\nlong-id  -\n"
        );
    }

    #[test]
    fn a_tree_indents_nested_objects_and_joins_lists_of_scalars() {
        // Keys in sorted order, so the expectation holds whether or not serde_json keeps
        // insertion order (its `preserve_order` feature, which other crates turn on).
        let result = json!({"config": {"name": "n"}, "id": "p", "ids": ["a", "b"]});
        assert_eq!(
            render(&result, &View::Tree),
            "config:\n  name: n\nid: p\nids: a, b\n"
        );
    }

    #[test]
    fn a_failure_envelope_carries_its_exit_code_and_kind() {
        let outcome: Outcome = Err(Failure::environment("no API"));
        let value = envelope("pipelines ls", &outcome);
        assert_eq!(value["ok"], false);
        assert_eq!(value["result"], Value::Null);
        assert_eq!(value["error"]["exitCode"], 3);
        assert_eq!(value["error"]["kind"], "environment");
        assert_eq!(value["summary"], "no API");
    }
}
