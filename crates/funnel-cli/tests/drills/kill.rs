//! SIGKILL at random moments: after each kill Funnel is started again, and at the end
//! every input record is in the output at least once.

use std::time::Duration;

use funnel_record::{Data, Record, Value};

use crate::harness::{Drill, Rng, after_text, append_lines, assert_nothing_lost};
use crate::pg;
use crate::pipelines::{
    file_destination, file_source, generator, log_destination, pipeline, postgres_destination,
    postgres_source,
};

/// Kills a running Funnel five times at random moments; after each kill, while Funnel
/// is down, `grow` adds the next `step` input records (numbered on from `first`, the
/// number of records already in the input), once more after the last. Returns the last
/// run, still going, and the number of input records.
fn kill_while_growing(
    drill: &Drill,
    name: &str,
    first: u64,
    step: u64,
    mut grow: impl FnMut(std::ops::RangeInclusive<u64>),
) -> (crate::harness::Funnel, u64) {
    let mut rng = Rng::new(name);
    let mut funnel = drill.start(&[]);
    let mut count = first;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(rng.between(100, 900)));
        funnel.signal("KILL", drill);
        grow(count + 1..=count + step);
        count += step;
        funnel = drill.start(&[]);
    }
    grow(count + 1..=count + step);
    (funnel, count + step)
}

/// The `id` field of a record's structured `payload.after`.
pub(crate) fn id_of(record: &Record) -> u64 {
    match &record.payload.after {
        Some(Data::Structured(fields)) => match fields.get("id") {
            Some(Value::Int(id)) => u64::try_from(*id).unwrap(),
            other => panic!("the id of {record:?} is {other:?}"),
        },
        other => panic!("payload.after is not structured: {other:?}"),
    }
}

#[test]
fn file_to_file_loses_no_line_through_sigkills_while_the_input_grows() {
    let drill = Drill::new(&pipeline(
        &file_source("./in.txt"),
        &file_destination("./out.jsonl"),
    ));
    let input = drill.path("in.txt");
    let line = |i: u64| format!("line {i:06}");
    append_lines(&input, (1..=2000).map(line));
    let (mut funnel, written) =
        kill_while_growing(&drill, "file_to_file_kill", 2000, 1500, |ids| {
            append_lines(&input, ids.map(line));
        });
    drill.wait_for("every line is written", Duration::from_secs(60), || {
        drill.records("out.jsonl").len() as u64 >= written
            && drill
                .records("out.jsonl")
                .last()
                .is_some_and(|r| after_text(r) == line(written))
    });
    funnel.signal("TERM", &drill);
    let got: Vec<String> = drill.records("out.jsonl").iter().map(after_text).collect();
    assert_nothing_lost("file_to_file_kill", (1..=written).map(line), &got, &drill);
}

#[test]
fn generator_to_log_loses_no_record_through_sigkills() {
    const N: u64 = 30_000;
    let drill = Drill::new(&pipeline(&generator(N as i64, 20_000), &log_destination()))
        .with_args(&["--log.format", "json"]);
    let (mut funnel, _) = kill_while_growing(&drill, "generator_to_log_kill", 0, 0, |_| {});
    funnel.signal("KILL", &drill);
    let (status, _) = drill.run_to_end(&[]);
    assert!(status.success(), "{}", crate::harness::tail(&drill.log()));
    // The records the log destination logged, from every run (text and JSON lines).
    let positions: Vec<u64> = drill
        .log()
        .lines()
        .filter_map(logged_record)
        .map(|r| {
            String::from_utf8_lossy(r.position.as_bytes())
                .parse()
                .unwrap()
        })
        .collect();
    assert_nothing_lost("generator_to_log_kill", 1..=N, &positions, &drill);
}

/// The record a log destination's line carries (in the field `record` of a JSON line).
fn logged_record(line: &str) -> Option<Record> {
    let event = serde_json::from_str::<serde_json::Value>(line).ok()?;
    let text = event["fields"]["record"].as_str()?;
    Record::from_json(text.as_bytes()).ok()
}

/// The server, held for the drill (`None`: skipped), a new table `tag` and the drill
/// running the pipeline `make` builds on the table's name.
fn postgres_drill(
    tag: &str,
    make: impl FnOnce(&str) -> String,
) -> Option<(pg::Server, pg::Table, Drill)> {
    let server = pg::server()?;
    let table = pg::Table::new(tag);
    let drill = Drill::new(&make(&table.name));
    Some((server, table, drill))
}

/// A postgres -> file drill (see [`postgres_drill`]): the table holds rows `1..=rows`,
/// the pipeline writes it into `out.jsonl`.
pub(crate) fn postgres_to_file(tag: &str, rows: u64) -> Option<(pg::Server, pg::Table, Drill)> {
    let found = postgres_drill(tag, |table| {
        pipeline(&postgres_source(table), &file_destination("./out.jsonl"))
    });
    if let Some((_, table, _)) = &found {
        table.insert(1..=rows);
    }
    found
}

#[test]
fn postgres_to_file_loses_no_row_through_sigkills_while_rows_are_inserted() {
    let Some((_server, table, drill)) = postgres_to_file("kill_pf", 500) else {
        return;
    };
    let (mut funnel, last) = kill_while_growing(&drill, "postgres_to_file_kill", 500, 200, |ids| {
        table.insert(ids);
    });
    drill.wait_for("every row is written", Duration::from_secs(90), || {
        drill.records("out.jsonl").iter().any(|r| id_of(r) == last)
    });
    funnel.signal("TERM", &drill);
    let got: Vec<u64> = drill.records("out.jsonl").iter().map(id_of).collect();
    assert_nothing_lost("postgres_to_file_kill", 1..=last, &got, &drill);
}

/// A row of the file -> postgres drills' input: line `i` holds the row with id `i`, so
/// the record key (the line number) and the payload agree on the key.
pub(crate) fn row(i: u64) -> String {
    format!(r#"{{"id":{i},"v":"line {i}"}}"#)
}

/// A file -> postgres drill (see [`postgres_drill`]): `in.jsonl` holds rows
/// `1..=rows`, the pipeline writes it into the table.
pub(crate) fn file_to_postgres(tag: &str, rows: u64) -> Option<(pg::Server, pg::Table, Drill)> {
    let found = postgres_drill(tag, |table| {
        pipeline(&file_source("./in.jsonl"), &postgres_destination(table))
    });
    if let Some((_, _, drill)) = &found {
        append_lines(&drill.path("in.jsonl"), (1..=rows).map(row));
    }
    found
}

#[test]
fn file_to_postgres_loses_no_row_through_sigkills_while_the_input_grows() {
    let Some((_server, table, drill)) = file_to_postgres("kill_fp", 1000) else {
        return;
    };
    let (mut funnel, written) =
        kill_while_growing(&drill, "file_to_postgres_kill", 1000, 500, |ids| {
            append_lines(&drill.path("in.jsonl"), ids.map(row));
        });
    drill.wait_for("every row is in the table", Duration::from_secs(90), || {
        table.ids().len() as u64 == written
    });
    funnel.signal("TERM", &drill);
    assert_nothing_lost("file_to_postgres_kill", 1..=written, &table.ids(), &drill);
}
