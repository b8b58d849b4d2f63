//! The backing service restarting: PostgreSQL restarted (`pg_ctlcluster ... restart`)
//! under a running pipeline that reads from it or writes to it. Funnel retries with
//! backoff by itself; nothing is lost and the log says it is retrying.

use std::time::Duration;

use crate::harness::{append_lines, assert_nothing_lost, assert_says};
use crate::kill::{file_to_postgres, id_of, postgres_to_file, row};
use crate::pg;

#[test]
fn postgres_to_file_loses_no_row_when_postgresql_restarts() {
    let Some((_server, table, drill)) = postgres_to_file("restart_pf", 300) else {
        return;
    };
    let mut funnel = drill.start(&[]);
    drill.wait_for("the snapshot is written", Duration::from_secs(60), || {
        drill.records("out.jsonl").len() >= 300
    });
    table.insert(301..=400);
    drill.mark("restarting PostgreSQL");
    pg::restart();
    table.insert(401..=600);
    drill.wait_for("every row is written", Duration::from_secs(120), || {
        drill.records("out.jsonl").iter().any(|r| id_of(r) == 600)
    });
    funnel.signal("TERM", &drill);
    let got: Vec<u64> = drill.records("out.jsonl").iter().map(id_of).collect();
    assert_nothing_lost("postgres_to_file_restart", 1..=600, &got, &drill);
    assert_says(
        "postgres_to_file_restart",
        &drill.log(),
        &["restarting with backoff", "pipeline=p"],
    );
}

#[test]
fn file_to_postgres_loses_no_row_when_postgresql_restarts() {
    let Some((_server, table, drill)) = file_to_postgres("restart_fp", 500) else {
        return;
    };
    let mut funnel = drill.start(&[]);
    drill.wait_for(
        "the first rows are written",
        Duration::from_secs(60),
        || table.ids().len() == 500,
    );
    drill.mark("restarting PostgreSQL");
    pg::restart();
    append_lines(&drill.path("in.jsonl"), (501..=1000).map(row));
    drill.wait_for("every row is written", Duration::from_secs(120), || {
        table.ids().len() == 1000
    });
    funnel.signal("TERM", &drill);
    assert_nothing_lost("file_to_postgres_restart", 1..=1000, &table.ids(), &drill);
}
