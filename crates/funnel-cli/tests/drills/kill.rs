//! SIGKILL at random moments: after each kill Funnel is started again, and at the end
//! every input record is in the output at least once.

use std::time::Duration;

use funnel_record::{Data, Record, Value};

use crate::harness::{Drill, Rng, after_text, append_lines, assert_nothing_lost, tail};
use crate::pipelines::{
    file_destination, file_source, generator, log_destination, mysql_destination, mysql_source,
    pipeline, postgres_destination, postgres_source,
};
use crate::{my, pg};

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

/// Every record the log destination acknowledged has its whole line in the log, so
/// after five SIGKILLs and a run to the end every record is in the log, in full, at
/// least once.
///
/// What the log destination guarantees, and so what is counted: each record is one
/// event, written to stderr with one `write` before the destination acknowledges it
/// (see `funnel-connectors/src/log/mod.rs`). A SIGKILL can stop that `write` part way
/// (the kernel ends a write to a file between two pages when a fatal signal is
/// pending): the log then holds the start of a line, never finished and never mended.
/// That record was not acknowledged, so its position was not committed and a later
/// run logs it again, whole. Only whole record lines count; a torn line is allowed
/// only as the last thing a killed run wrote, and every other line of the log must be
/// a drill mark or a JSON event of Funnel's. Nothing is skipped silently: an
/// unreadable line fails the drill and is printed, so a failure tells a torn or
/// mangled line apart from a record that was never logged.
#[test]
fn generator_to_log_loses_no_record_through_sigkills() {
    const N: u64 = 30_000;
    let drill = Drill::new(&pipeline(&generator(N as i64, 20_000), &log_destination()))
        .with_args(&["--log.format", "json"]);
    let (mut funnel, _) = kill_while_growing(&drill, "generator_to_log_kill", 0, 0, |_| {});
    funnel.signal("KILL", &drill);
    let (status, _) = drill.run_to_end(&[]);
    assert!(status.success(), "{}", crate::harness::tail(&drill.log()));
    let log = drill.log();
    let read = read_log(&log);
    eprintln!(
        "drill generator_to_log_kill: {} record lines, {} other events, {} marks, {} torn \
         lines at a SIGKILL, {} unreadable lines",
        read.positions.len(),
        read.events,
        read.marks,
        read.torn.len(),
        read.unreadable.len()
    );
    for line in &read.torn {
        eprintln!(
            "drill generator_to_log_kill: torn at a SIGKILL: {}",
            shorten(line)
        );
    }
    let logged: std::collections::BTreeSet<u64> = read.positions.iter().copied().collect();
    assert!(
        read.unreadable.is_empty(),
        "drill generator_to_log_kill: {} lines of the log are neither a drill mark, nor a \
         JSON event of Funnel's, nor torn by a SIGKILL ({} of {N} records are not in the \
         log in a whole line; line number: text):\n{}",
        read.unreadable.len(),
        (1..=N).filter(|p| !logged.contains(p)).count(),
        read.unreadable
            .iter()
            .take(20)
            .map(|(n, line)| format!("{n}: {}", shorten(line)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_nothing_lost("generator_to_log_kill", 1..=N, &read.positions, &drill);
}

/// A SIGKILL while Funnel creates its store (the first start in a new directory)
/// leaves no file the next start refuses: the next start runs the pipeline to its end.
/// Each round kills the first start as soon as a file named like the store appears,
/// the moment most likely to fall while the store is being created.
#[test]
fn a_first_start_killed_while_it_creates_its_store_leaves_a_store_the_next_start_opens() {
    for round in 0..12 {
        let drill = Drill::new(&pipeline(&generator(100, 0), &log_destination()));
        let mut funnel = drill.start(&[]);
        let start = std::time::Instant::now();
        let dir = drill.path("");
        while !std::fs::read_dir(&dir).unwrap().any(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("funnel.db")
        }) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no store file after 60 s: {}",
                tail(&drill.log())
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        funnel.signal("KILL", &drill);
        let (status, _) = drill.run_to_end(&[]);
        assert!(
            status.success(),
            "round {round}: the start after a kill during the store's creation failed:\n{}",
            tail(&drill.log())
        );
    }
}

/// What the log of the generator -> log drill holds, every line accounted for.
#[derive(Default)]
struct ReadLog {
    /// The generator positions of the whole record lines, in log order.
    positions: Vec<u64>,
    /// Funnel's other events (JSON lines without a record).
    events: usize,
    /// The drill's own lines (`==== drill: ...`).
    marks: usize,
    /// Lines a SIGKILL cut short: the last output of a killed run.
    torn: Vec<String>,
    /// Every other line, with its line number (1-based).
    unreadable: Vec<(usize, String)>,
}

/// Sorts every line of a drill's log (see [`ReadLog`]). A line that is not a mark nor
/// a JSON event counts as torn only when it starts like one of Funnel's JSON events
/// and ends in the drill's note that the run was killed (written after the cut line,
/// so on the same line); a mark holding a JSON event, and an empty line, are
/// unreadable.
fn read_log(log: &str) -> ReadLog {
    let lines: Vec<&str> = log.lines().collect();
    let mut read = ReadLog::default();
    for (i, line) in lines.iter().enumerate() {
        if let Some(at) = line.find(KILLED).filter(|&at| at > 0) {
            let (cut, note) = line.split_at(at);
            if cut.starts_with('{') && !note[MARK.len()..].contains(MARK) {
                read.torn.push(cut.to_owned());
                read.marks += 1;
            } else {
                read.unreadable.push((i + 1, (*line).to_owned()));
            }
            continue;
        }
        if line.starts_with(MARK) {
            // A note with a JSON event in it would hide the event.
            if line.contains("{\"") {
                read.unreadable.push((i + 1, (*line).to_owned()));
            } else {
                read.marks += 1;
            }
            continue;
        }
        match logged_record(line) {
            Some(Ok(record)) => {
                let position = std::str::from_utf8(record.position.as_bytes())
                    .ok()
                    .and_then(|p| p.parse().ok());
                match position {
                    Some(position) => read.positions.push(position),
                    None => read.unreadable.push((i + 1, (*line).to_owned())),
                }
            }
            Some(Err(())) => read.unreadable.push((i + 1, (*line).to_owned())),
            None if serde_json::from_str::<serde_json::Value>(line).is_ok() => read.events += 1,
            None => read.unreadable.push((i + 1, (*line).to_owned())),
        }
    }
    read
}

#[test]
fn the_log_reader_counts_a_line_cut_by_a_sigkill_as_torn_and_anything_else_unreadable_as_such() {
    let record = Record::new("7", b"x".to_vec());
    let json = String::from_utf8(record.to_json()).unwrap();
    let line = serde_json::json!({ "fields": { "record": json } }).to_string();
    let log = [
        "==== drill: funnel run  []".to_owned(),
        line.clone(),
        "{\"level\":\"INFO\",\"fields\":{\"message\":\"started\"}}".to_owned(),
        "==== drill: SIGKILL".to_owned(),
        format!("{}{KILLED} (SIGKILL)", &line[..20]),
        format!("==== drill: SIGKILL{line}"),
        String::new(),
        format!("{}==== drill: funnel exited: exit status: 0", &line[..20]),
    ]
    .join("\n");
    let read = read_log(&log);
    assert_eq!(read.positions, [7]);
    assert_eq!((read.events, read.marks), (1, 3));
    assert_eq!(read.torn, [line[..20].to_owned()]);
    let unreadable: Vec<usize> = read.unreadable.iter().map(|(n, _)| *n).collect();
    assert_eq!(unreadable, [6, 7, 8]);
}

/// How every line the drill itself writes into the log starts.
const MARK: &str = "==== drill: ";

/// The drill's line after a run ended by SIGKILL.
const KILLED: &str = "==== drill: funnel exited: signal: 9";

/// The record a log destination's line carries (in the field `record` of a JSON line):
/// `None` for a line that is not a JSON event with a record, `Err` for a record field
/// that does not hold a record.
fn logged_record(line: &str) -> Option<Result<Record, ()>> {
    let event = serde_json::from_str::<serde_json::Value>(line).ok()?;
    let text = event["fields"]["record"].as_str()?;
    Some(Record::from_json(text.as_bytes()).map_err(|_| ()))
}

/// A line cut to 300 characters for a message.
fn shorten(line: &str) -> String {
    match line.char_indices().nth(300) {
        Some((end, _)) => format!("{}... ({} bytes)", &line[..end], line.len()),
        None => line.to_owned(),
    }
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

/// Kills a running Funnel six times at random moments while `dml` changes the source
/// (a random batch before each kill, with Funnel running, and one while it is down),
/// then once more with the last run going. Returns the last run.
fn kill_under_dml(
    drill: &Drill,
    rng: &mut Rng,
    mut dml: impl FnMut(&mut Rng),
) -> crate::harness::Funnel {
    let mut funnel = drill.start(&[]);
    for _ in 0..6 {
        dml(rng);
        std::thread::sleep(Duration::from_millis(rng.between(50, 1200)));
        funnel.signal("KILL", drill);
        dml(rng);
        funnel = drill.start(&[]);
    }
    dml(rng);
    funnel
}

/// One random transaction of DML on `table (id, v, n)` in SQL both servers run:
/// inserts of new ids from `next`, multi-row updates of `n` and `v`, deletes, and
/// (with `key_changes`) updates that move a row to a new id.
fn random_dml(rng: &mut Rng, table: &str, next: &mut u64, key_changes: bool) -> String {
    let mut sql = String::new();
    for _ in 0..rng.between(1, 6) {
        let r = rng.between(0, 12);
        match rng.between(0, 9) {
            0..=3 => {
                let rows: Vec<String> = (0..rng.between(1, 20))
                    .map(|_| {
                        *next += 1;
                        format!("({0}, 'v{0}', 0)", *next)
                    })
                    .collect();
                sql.push_str(&format!(
                    "INSERT INTO {table} (id, v, n) VALUES {}; ",
                    rows.join(", ")
                ));
            }
            4..=6 => sql.push_str(&format!(
                "UPDATE {table} SET n = n + 1, v = 'u{r}' WHERE id % 13 = {r}; "
            )),
            7 | 8 => sql.push_str(&format!(
                "DELETE FROM {table} WHERE id % 29 = {r} AND id % 3 = {}; ",
                rng.between(0, 2)
            )),
            _ if key_changes => {
                *next += 1;
                sql.push_str(&format!(
                    "UPDATE {table} SET id = {} WHERE id = (SELECT id FROM (SELECT MIN(id) AS id \
                     FROM {table} WHERE id % 17 = {r}) AS pick); ",
                    *next + 5_000_000
                ));
            }
            _ => {}
        }
    }
    sql
}

#[test]
fn mariadb_to_postgres_keeps_the_table_identical_through_sigkills_under_random_dml() {
    if !my::available() {
        return;
    }
    let Some(_server) = pg::server() else {
        return;
    };
    let source = my::Table::new(
        "kill_mp",
        "(id bigint PRIMARY KEY, v varchar(64), n int NOT NULL DEFAULT 0)",
    );
    let target = pg::Table::new("kill_mp");
    pg::sql(&format!(
        "ALTER TABLE {} ADD COLUMN n int NOT NULL DEFAULT 0",
        target.name
    ))
    .unwrap();
    my::sql(&format!(
        "INSERT INTO {} SELECT seq, CONCAT('v', seq), 0 FROM seq_1_to_2000",
        source.name
    ))
    .unwrap();
    let drill = Drill::new(&pipeline(
        &mysql_source(&source.name),
        &postgres_destination(&target.name),
    ));
    let mut rng = Rng::new("mariadb_to_postgres_kill");
    let mut next = 2000;
    let table = source.name.clone();
    let mut funnel = kill_under_dml(&drill, &mut rng, |rng| {
        let dml = random_dml(rng, &table, &mut next, true);
        my::sql(&format!("START TRANSACTION; {dml} COMMIT;")).unwrap();
    });
    let pg_rows = || -> Vec<String> {
        pg::sql(&format!(
            "SELECT id, v, n FROM {} ORDER BY id, n",
            target.name
        ))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
    };
    drill.wait_for(
        "the PostgreSQL table equals the MariaDB table",
        Duration::from_secs(120),
        || pg_rows() == source.rows(),
    );
    funnel.signal("TERM", &drill);
    assert_eq!(pg_rows(), source.rows(), "{}", tail(&drill.log()));
}

#[test]
fn postgres_to_mariadb_exactly_once_keeps_the_table_identical_and_writes_no_change_twice_through_sigkills()
 {
    if !my::available() {
        return;
    }
    let Some(_server) = pg::server() else {
        return;
    };
    let source = pg::Table::new("kill_pm");
    pg::sql(&format!(
        "ALTER TABLE {} ADD COLUMN n int NOT NULL DEFAULT 0",
        source.name
    ))
    .unwrap();
    let mirror = my::Table::new(
        "kill_pm_mirror",
        "(id bigint PRIMARY KEY, v varchar(64), n int NOT NULL DEFAULT 0)",
    );
    // No key: every create and update the destination writes is a row of its own, so a
    // change written twice would show as a duplicate (id, n).
    let journal = my::Table::new("kill_pm_journal", "(id bigint, v varchar(64), n int)");
    let destinations = format!(
        "{}{}",
        mysql_destination(&mirror.name, &mirror.name, true),
        mysql_destination(&journal.name, &journal.name, true)
    );
    let drill = Drill::new(&pipeline(&postgres_source(&source.name), &destinations));
    let mut rng = Rng::new("postgres_to_mariadb_kill");
    // The first run streams before the first change, so every version of a row is a
    // change of its own and the committed position is in the change stream (a restart
    // inside the postgres source's snapshot is at least once by design).
    let mut first = drill.start(&[]);
    drill.wait_for(
        "the source streams changes",
        Duration::from_secs(60),
        || drill.log().contains("streaming changes"),
    );
    pg::sql(&format!("INSERT INTO {} VALUES (0, 'v0', 0)", source.name)).unwrap();
    drill.wait_for("the first row is written", Duration::from_secs(60), || {
        mirror.rows().len() == 1
    });
    first.signal("TERM", &drill);
    let mut next = 0;
    let table = source.name.clone();
    let mut funnel = kill_under_dml(&drill, &mut rng, |rng| {
        let dml = random_dml(rng, &table, &mut next, false);
        pg::sql(&format!("BEGIN; {dml} COMMIT;")).unwrap();
    });
    let pg_rows = || -> Vec<String> {
        pg::sql(&format!(
            "SELECT id, v, n FROM {} ORDER BY id, n",
            source.name
        ))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
    };
    drill.wait_for(
        "the MariaDB table equals the PostgreSQL table",
        Duration::from_secs(120),
        || mirror.rows() == pg_rows(),
    );
    funnel.signal("TERM", &drill);
    assert_eq!(mirror.rows(), pg_rows(), "{}", tail(&drill.log()));
    // The journal holds every version (0..=n) of every live row, each once.
    let mut expected: Vec<(u64, u64)> = Vec::new();
    for row in pg_rows() {
        let fields: Vec<&str> = row.split('|').collect();
        let (id, n): (u64, u64) = (fields[0].parse().unwrap(), fields[2].parse().unwrap());
        expected.extend((0..=n).map(|version| (id, version)));
    }
    let mut got: Vec<(u64, u64)> = journal
        .rows()
        .iter()
        .map(|row| {
            let fields: Vec<&str> = row.split('|').collect();
            (fields[0].parse().unwrap(), fields[2].parse().unwrap())
        })
        .collect();
    got.sort_unstable();
    let mut deduped = got.clone();
    deduped.dedup();
    assert_eq!(
        got.len(),
        deduped.len(),
        "changes written twice: {:?}; funnel's log:\n{}",
        got.windows(2)
            .filter(|w| w[0] == w[1])
            .take(10)
            .collect::<Vec<_>>(),
        tail(&drill.log())
    );
    assert_nothing_lost("postgres_to_mariadb_kill", expected, &got, &drill);
}
