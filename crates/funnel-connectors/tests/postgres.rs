//! The postgres source and destination against the real server on 127.0.0.1:5432
//! (user postgres, trust auth, database `test`, wal_level=logical: see
//! `scripts/setup-services.sh`). Each test uses its own tables, slot and publication
//! and drops them at the end. Without a server the tests are skipped, except under
//! `CI=true`, where a missing server fails them.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

#[path = "support/sql.rs"]
mod support;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_connectors::{Settings, postgres, source};
use funnel_core::{LagReport, Retry, Source, WorkerStats};
use funnel_record::{Data, Operation, Position, Record, StructuredData, Value};
use funnel_test_utils::compliance::SourceBackend;
use funnel_test_utils::connectors::{ack_n, read_n};
use support::*;
use tokio_postgres::NoTls;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const PATIENCE: Duration = Duration::from_secs(20);

/// Unique names for one test, whose tables, slot, publication and positions are
/// removed when it ends.
fn fresh_names(tag: &str) -> Names {
    Names::new("fpg", tag, |names| {
        let mut sql = format!(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{0}' AND active_pid IS NOT NULL; \
             SELECT pg_sleep(0.2); \
             SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{0}'; \
             DROP PUBLICATION IF EXISTS {1};",
            names.slot(),
            names.publication()
        );
        for t in &names.tables {
            sql.push_str(&format!(" DROP TABLE IF EXISTS {t};"));
        }
        sql.push_str(&format!(
            " DELETE FROM funnel_positions WHERE connector_id LIKE '{}%';",
            names.prefix
        ));
        let _ = funnel_test_utils::pg::psql(&sql);
    })
}

impl Names {
    fn slot(&self) -> String {
        format!("{}_slot", self.prefix)
    }

    fn publication(&self) -> String {
        format!("{}_pub", self.prefix)
    }
}

/// A connection for setting up and checking, or `None` (skip) without a server.
async fn connect() -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(URL, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            // Tests run in parallel: a concurrent creation may win the race.
            let _ = client
                .batch_execute("CREATE TABLE IF NOT EXISTS funnel_positions (connector_id text PRIMARY KEY, position bytea)")
                .await;
            Some(client)
        }
        Err(e) => {
            funnel_test_utils::skip_without(&format!("PostgreSQL is not reachable at {URL}: {e}"));
            None
        }
    }
}

fn source_settings(names: &Names, tables: &str, extra: &[(&str, &str)]) -> Settings {
    let mut s = settings(&[
        ("url", URL),
        ("tables", tables),
        ("logrepl.slotName", &names.slot()),
        ("logrepl.publicationName", &names.publication()),
    ]);
    s.extend(settings(extra));
    s
}

async fn open_source(settings: &Settings, resume: Option<Position>) -> Arc<dyn Source> {
    support::open_source("postgres", "p:pg", settings, resume).await
}

fn after(record: &Record) -> &StructuredData {
    match &record.payload.after {
        Some(Data::Structured(d)) => d,
        other => panic!("no structured after: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_ten_thousand_rows_then_live_changes_arrive_once_in_commit_order_with_mapped_types()
 {
    let Some(pg) = connect().await else { return };
    let mut names = fresh_names("flow");
    let t = names.table("items");
    let full = names.table("full");
    pg.batch_execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, amount numeric(30,10), name text, ok bool, \
           at timestamptz, day date, doc jsonb, uid uuid, raw bytea, tags int[], ratio float8, nothing text, small int2);
         CREATE TABLE {full} (id int PRIMARY KEY, v text);
         ALTER TABLE {full} REPLICA IDENTITY FULL;
         INSERT INTO {t} SELECT g, 12345678901234567890.0123456789, 'name ' || g, g % 2 = 0,
           '2024-01-02 03:04:05.123456+00', '2024-02-29', jsonb_build_object('n', g, 'list', jsonb_build_array(1, 'x', null)),
           '6ba7b810-9dad-11d1-80b4-00c04fd430c8', '\\x00ff', ARRAY[g, NULL], 0.5, NULL, 7
           FROM generate_series(1, 10000) g;
         INSERT INTO {full} VALUES (1, 'one');"
    ))
    .await
    .unwrap();
    let s = source_settings(
        &names,
        &format!("{t},{full}"),
        &[("snapshot.fetchSize", "3000")],
    );
    let source = open_source(&s, None).await;

    // The slot and its snapshot exist now: these changes are not in the snapshot.
    pg.batch_execute(&format!(
        "UPDATE {t} SET name = 'changed' WHERE id = 5000;
         INSERT INTO {t} (id, name) VALUES (10001, 'new');
         UPDATE {t} SET id = 20000 WHERE id = 1;
         DELETE FROM {t} WHERE id = 2;
         UPDATE {full} SET v = 'uno' WHERE id = 1;
         DELETE FROM {full} WHERE id = 1;
         BEGIN; INSERT INTO {t} (id, name) SELECT g, 'bulk' FROM generate_series(30001, 35000) g; COMMIT;"
    ))
    .await
    .unwrap();

    let records = read_n(&*source, 10_001 + 6 + 5000).await;
    assert_increasing(&records);
    let (snapshot, changes) = records.split_at(10_001);
    assert!(snapshot.iter().all(|r| r.operation == Operation::Snapshot));
    let mut ids: Vec<i64> = snapshot
        .iter()
        .filter(|r| r.metadata.get("opencdc.collection") == Some(t.as_str()))
        .map(id_of)
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=10_000).collect::<Vec<_>>(),
        "every row once in the snapshot"
    );
    let row5000 = snapshot
        .iter()
        .find(|r| r.metadata.get("opencdc.collection") == Some(t.as_str()) && id_of(r) == 5000)
        .unwrap();
    assert_eq!(
        after(row5000)["name"],
        Value::String("name 5000".into()),
        "the snapshot predates the update"
    );

    // The type mapping.
    let row = after(&snapshot[1]);
    assert_eq!(row["id"], Value::Int(2));
    assert_eq!(row["small"], Value::Int(7));
    assert_eq!(
        row["amount"],
        Value::String("12345678901234567890.0123456789".into())
    );
    assert_eq!(row["ok"], Value::Bool(true));
    assert_eq!(
        row["at"],
        Value::String("2024-01-02T03:04:05.123456Z".into())
    );
    assert_eq!(row["day"], Value::String("2024-02-29".into()));
    let Value::Map(doc) = &row["doc"] else {
        panic!("doc: {:?}", row["doc"])
    };
    assert_eq!(doc["n"], Value::Int(2));
    assert_eq!(
        doc["list"],
        Value::Array(vec![Value::Int(1), Value::String("x".into()), Value::Null])
    );
    assert_eq!(
        row["uid"],
        Value::String("6ba7b810-9dad-11d1-80b4-00c04fd430c8".into())
    );
    assert_eq!(
        row["raw"],
        Value::Bytes(bytes::Bytes::from_static(&[0, 255]))
    );
    assert_eq!(row["tags"], Value::Array(vec![Value::Int(2), Value::Null]));
    assert_eq!(row["ratio"], Value::Float(0.5));
    assert_eq!(row["nothing"], Value::Null);
    assert_eq!(
        snapshot[1].key,
        Some(Data::Structured(
            [("id".to_owned(), Value::Int(2))].into_iter().collect()
        ))
    );

    // The changes, in commit order.
    let ops: Vec<(Operation, i64)> = changes[..6]
        .iter()
        .map(|r| {
            (
                r.operation,
                match &r.key {
                    Some(_) => id_of(r),
                    None => -1,
                },
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            (Operation::Update, 5000),
            (Operation::Create, 10001),
            (Operation::Update, 20000),
            (Operation::Delete, 2),
            (Operation::Update, 1),
            (Operation::Delete, 1),
        ]
    );
    assert_eq!(after(&changes[0])["name"], Value::String("changed".into()));
    assert_eq!(
        changes[0].payload.before, None,
        "no before without REPLICA IDENTITY FULL"
    );
    assert_eq!(
        field(&changes[2].payload.before, "id"),
        &Value::Int(1),
        "a key change carries the old key"
    );
    assert_eq!(changes[3].payload.after, None);
    assert_eq!(
        field(&changes[4].payload.before, "v"),
        &Value::String("one".into()),
        "full identity: before"
    );
    assert_eq!(
        field(&changes[5].payload.before, "v"),
        &Value::String("uno".into())
    );
    assert_eq!(
        changes[4].metadata.get("opencdc.collection"),
        Some(full.as_str())
    );
    // createdAt is the commit time in ns.
    funnel_test_utils::clock::assert_recent(
        changes[0].metadata.get("opencdc.createdAt").unwrap(),
        Duration::from_secs(120),
    );
    assert!(
        changes[0]
            .metadata
            .get("postgres.lsn")
            .unwrap()
            .contains('/')
    );
    let bulk: Vec<i64> = changes[6..].iter().map(id_of).collect();
    assert_eq!(
        bulk,
        (30_001..=35_000).collect::<Vec<_>>(),
        "the large transaction, in order"
    );
    assert!(
        changes[6..]
            .iter()
            .all(|r| r.operation == Operation::Create)
    );
    assert_quiet(&*source).await;
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_mid_snapshot_and_mid_stream_without_loss_or_duplicates() {
    let Some(pg) = connect().await else { return };
    let mut names = fresh_names("resume");
    let t = names.table("rows");
    pg.batch_execute(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, v text);
         INSERT INTO {t} SELECT g, 'v' || g FROM generate_series(1, 3000) g;"
    ))
    .await
    .unwrap();
    let s = source_settings(
        &names,
        &t,
        &[("snapshot.fetchSize", "700"), ("sdk.batch.size", "100")],
    );

    // Mid-snapshot: 1000 rows delivered and acked, then a stop.
    let source = open_source(&s, None).await;
    let first = read_n(&*source, 1000).await;
    let acked = first[999].position.clone();
    source.ack(std::slice::from_ref(&acked)).await.unwrap();
    source.teardown().await.unwrap();

    let source = open_source(&s, Some(acked)).await;
    let rest = read_n(&*source, 2000).await;
    assert_eq!(
        rest.iter().map(id_of).collect::<Vec<_>>(),
        (1001..=3000).collect::<Vec<_>>()
    );
    assert!(rest.iter().all(|r| r.operation == Operation::Snapshot));
    assert_increasing(&[first, rest.clone()].concat());

    // Mid-stream: 100 changes in two transactions; 50 acked, 30 more read but not acked.
    pg.batch_execute(&format!(
        "BEGIN; UPDATE {t} SET v = 'a' WHERE id <= 60; COMMIT;
         BEGIN; UPDATE {t} SET v = 'b' WHERE id > 60 AND id <= 100; COMMIT;"
    ))
    .await
    .unwrap();
    let changes = read_n(&*source, 80).await;
    assert!(changes.iter().all(|r| r.operation == Operation::Update));
    source.ack(&[changes[49].position.clone()]).await.unwrap();
    // The ack reaches the server (a status update): the slot's confirmed flush LSN is
    // now the commit LSN of the acked change's transaction, and a restart streams that
    // transaction again.
    let lsn = changes[49].metadata.get(postgres::METADATA_LSN).unwrap();
    let flushed = format!(
        "SELECT coalesce(confirmed_flush_lsn >= '{lsn}'::pg_lsn, false) FROM pg_replication_slots \
         WHERE slot_name = '{}'",
        names.slot()
    );
    funnel_test_utils::wait_for("the ack reaches the slot", PATIENCE, || async {
        pg.query_one(&flushed, &[]).await.unwrap().get::<_, bool>(0)
    })
    .await;
    source.teardown().await.unwrap();

    let source = open_source(&s, Some(changes[49].position.clone())).await;
    let again = read_n(&*source, 50).await;
    assert_eq!(
        again[..30]
            .iter()
            .map(|r| r.position.clone())
            .collect::<Vec<_>>(),
        changes[50..80]
            .iter()
            .map(|r| r.position.clone())
            .collect::<Vec<_>>(),
        "the unacked changes come again, from the first one after the acked position"
    );
    assert_increasing(&again);
    let mut all: Vec<i64> = changes[..50].iter().chain(&again).map(id_of).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=100).collect::<Vec<_>>(), "every change once");
    assert_quiet(&*source).await;
    source.teardown().await.unwrap();
}

/// Text that the snapshot's `COPY` text format escapes (tabs, newlines, backslashes, a
/// literal `\N`, non-ASCII) reads back as written, in values and in text keys, and the
/// snapshot maps values exactly as the change stream does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_text_reads_back_as_written_and_the_snapshot_maps_like_the_stream() {
    let Some(pg) = connect().await else { return };
    let mut names = fresh_names("escape");
    let t = names.table("texts");
    let texts = [
        "a\tb",
        "line\nbreak\r",
        "back\\slash",
        "\\N",
        "",
        "quote\"'",
        "é ü 😀",
        "\u{1}\u{8}\u{b}\u{c}",
    ];
    pg.batch_execute(&format!(
        "CREATE TABLE {t} (k text PRIMARY KEY, v text, raw bytea, doc jsonb, arr text[], n int)"
    ))
    .await
    .unwrap();
    let insert = format!(
        "INSERT INTO {t} VALUES ($1, $2, convert_to($2, 'UTF8'), jsonb_build_object('v', $2::text), \
         ARRAY[$2::text, NULL], NULL)"
    );
    for (i, text) in texts.iter().enumerate() {
        let key = format!("{i}{text}");
        pg.execute(&insert, &[&key, text]).await.unwrap();
    }
    let s = source_settings(&names, &t, &[("sdk.batch.size", "3")]);
    let source = open_source(&s, None).await;
    let snapshot = read_n(&*source, texts.len()).await;
    for (i, (record, text)) in snapshot.iter().zip(texts).enumerate() {
        let row = after(record);
        assert_eq!(row["k"], Value::String(format!("{i}{text}").into()));
        assert_eq!(row["v"], Value::String(text.into()), "row {i}");
        assert_eq!(
            row["raw"],
            Value::Bytes(bytes::Bytes::copy_from_slice(text.as_bytes()))
        );
        assert_eq!(
            row["arr"],
            Value::Array(vec![Value::String(text.into()), Value::Null])
        );
        assert_eq!(row["n"], Value::Null);
    }

    // A restart after an escaped text key continues after it.
    source.teardown().await.unwrap();
    let source = open_source(&s, Some(snapshot[3].position.clone())).await;
    let rest = read_n(&*source, texts.len() - 4).await;
    assert_eq!(
        rest.iter()
            .map(|r| after(r)["k"].clone())
            .collect::<Vec<_>>(),
        snapshot[4..]
            .iter()
            .map(|r| after(r)["k"].clone())
            .collect::<Vec<_>>()
    );

    // The same rows as changes map to the same values.
    pg.batch_execute(&format!(
        "UPDATE {t} SET k = 'x' || k; UPDATE {t} SET k = substr(k, 2)"
    ))
    .await
    .unwrap();
    let changes = read_n(&*source, 2 * texts.len()).await;
    let mut streamed: Vec<StructuredData> = changes[texts.len()..]
        .iter()
        .map(|r| after(r).clone())
        .collect();
    streamed.sort_by(|a, b| format!("{:?}", a["k"]).cmp(&format!("{:?}", b["k"])));
    let mut snapshotted: Vec<StructuredData> = snapshot.iter().map(|r| after(r).clone()).collect();
    snapshotted.sort_by(|a, b| format!("{:?}", a["k"]).cmp(&format!("{:?}", b["k"])));
    assert_eq!(streamed, snapshotted);
    source.teardown().await.unwrap();
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_snapshot_the_source_knows_how_many_rows_are_left_and_zero_once_it_is_done() {
    let Some(pg) = connect().await else { return };
    let mut names = fresh_names("left");
    let t = names.table("t");
    let u = names.table("u");
    pg.batch_execute(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY); INSERT INTO {t} SELECT g FROM generate_series(1, 15000) g;
         CREATE TABLE {u} (id int PRIMARY KEY); INSERT INTO {u} SELECT g FROM generate_series(1, 5000) g;"
    ))
    .await
    .unwrap();
    let s = source_settings(&names, &format!("{t},{u}"), &[("sdk.batch.size", "500")]);
    let source = open_source(&s, None).await;
    funnel_test_utils::wait_until("the snapshot's rows are counted", PATIENCE, || {
        source.backlog().is_some()
    })
    .await;
    read_n(&*source, 500).await;
    // The reader runs at most a few batches ahead of the reads, and counts a batch
    // once its send returned (a batch already read may not be counted yet).
    let left = source.backlog().unwrap();
    assert!((16_000..=20_000).contains(&left), "{left} rows left");
    read_n(&*source, 19_500).await;
    funnel_test_utils::wait_until("no row is left", PATIENCE, || source.backlog() == Some(0)).await;
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slots_lag_in_bytes_rises_with_unacked_changes_and_falls_once_they_are_acked() {
    let Some(pg) = connect().await else { return };
    let mut names = fresh_names("lag");
    let t = names.table("t");
    pg.batch_execute(&format!("CREATE TABLE {t} (id int PRIMARY KEY, body text)"))
        .await
        .unwrap();
    let settings = source_settings(&names, &t, &[]);
    let source = source("postgres", "p:pg", &settings, None).unwrap();
    let stats = Arc::new(WorkerStats::default());
    source.report_lag(LagReport::new("p", "p:pg", Some(Arc::clone(&stats))));
    source.open().await.unwrap();
    funnel_test_utils::wait_until("the slot's lag is reported", PATIENCE, || {
        stats.lag_bytes().is_some()
    })
    .await;

    // 5,000 rows of 1,600 bytes (below the TOAST threshold: written out in the WAL).
    const ROWS: usize = 5000;
    const WAL: u64 = 8_000_000;
    pg.batch_execute(&format!(
        "INSERT INTO {t} SELECT g, repeat(md5(g::text), 50) FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .unwrap();
    funnel_test_utils::wait_until(
        "the lag counts the 8 MB of changes read by nobody",
        PATIENCE,
        || stats.lag_bytes().is_some_and(|b| b >= WAL),
    )
    .await;

    let records = read_n(source.as_ref(), ROWS).await;
    let positions: Vec<Position> = records.iter().map(|r| r.position.clone()).collect();
    source.ack(&positions).await.unwrap();
    funnel_test_utils::wait_until(
        "the lag falls below the changes once they are acked",
        Duration::from_secs(60),
        || stats.lag_bytes().is_some_and(|b| b < WAL),
    )
    .await;
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_drops_the_slot_and_the_publication_unless_auto_cleanup_is_off() {
    let Some(pg) = connect().await else { return };
    let mut names = fresh_names("clean");
    let t = names.table("t");
    pg.batch_execute(&format!("CREATE TABLE {t} (id int PRIMARY KEY)"))
        .await
        .unwrap();
    let count = |sql: String| {
        let pg = &pg;
        async move { pg.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let slot_sql = format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
        names.slot()
    );
    let pub_sql = format!(
        "SELECT count(*) FROM pg_publication WHERE pubname = '{}'",
        names.publication()
    );

    let kept = source_settings(&names, &t, &[("logrepl.autoCleanup", "false")]);
    let source = open_source(&kept, None).await;
    source.teardown().await.unwrap();
    postgres::cleanup("p:pg", &kept).await.unwrap();
    assert_eq!(
        (count(slot_sql.clone()).await, count(pub_sql.clone()).await),
        (1, 1)
    );

    let s = source_settings(&names, &t, &[]);
    let source = open_source(&s, None).await;
    source.teardown().await.unwrap();
    postgres::cleanup("p:pg", &s).await.unwrap();
    assert_eq!((count(slot_sql).await, count(pub_sql).await), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_bad_credentials_missing_table_and_dropped_slot_fail_with_clear_messages()
 {
    let Some(pg) = connect().await else { return };
    let mut names = fresh_names("errors");
    let t = names.table("t");
    pg.batch_execute(&format!("CREATE TABLE {t} (id int PRIMARY KEY)"))
        .await
        .unwrap();
    let open_error = |settings: Settings, resume: Option<Position>| async move {
        source_open_error("postgres", "p:pg", &settings, resume).await
    };

    let mut s = source_settings(&names, &t, &[]);
    s.insert("url".into(), "postgres://postgres@127.0.0.1:1/test".into());
    let e = open_error(s, None).await;
    assert_eq!(e.retry(), Retry::Transient);
    assert!(
        e.to_string()
            .contains("postgres source p:pg: cannot connect to PostgreSQL at 127.0.0.1:1"),
        "{e}"
    );

    let mut s = source_settings(&names, &t, &[]);
    s.insert(
        "url".into(),
        "postgres://nobody_here@127.0.0.1:5432/test".into(),
    );
    let e = open_error(s, None).await;
    assert_eq!(e.retry(), Retry::Fatal);
    assert!(
        e.to_string()
            .contains("authentication failed for user \"nobody_here\""),
        "{e}"
    );

    let e = open_error(source_settings(&names, &format!("{t}_missing"), &[]), None).await;
    assert_eq!(e.retry(), Retry::Fatal);
    assert!(
        e.to_string()
            .contains(&format!("table \"{t}_missing\" does not exist")),
        "{e}"
    );

    let e = open_error(
        source_settings(&names, &t, &[]),
        Some(Position::from("pg:2:0000000001000000:00000000")),
    )
    .await;
    assert_eq!(e.retry(), Retry::Fatal);
    assert!(
        e.to_string()
            .contains(&format!("replication slot {} does not exist", names.slot())),
        "{e}"
    );

    let unreachable = settings(&[("url", "postgres://postgres@127.0.0.1:1/test")]);
    let e = destination_open_error("postgres", &unreachable)
        .await
        .to_string();
    assert!(
        e.contains("postgres destination p:out: cannot connect"),
        "{e}"
    );
    // The connection test (pipelines validate --check) fails the same way, and passes
    // with the server's URL.
    let e = check_destination("postgres", unreachable)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("postgres destination p:out: cannot connect"),
        "{e}"
    );
    check_destination("postgres", settings(&[("url", URL)]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_upserts_deletes_inserts_and_nacks_only_the_record_postgres_refuses() {
    let Some(pg) = connect().await else { return };
    let mut names = fresh_names("dest");
    let t = names.table("t");
    let log = names.table("log");
    pg.batch_execute(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, name text, n int, doc jsonb);
         CREATE TABLE {log} (line text)"
    ))
    .await
    .unwrap();
    let id = format!("{}:out", names.prefix);
    let d = open_destination("postgres", &id, &settings(&[("url", URL)])).await;
    let batch = mixed_batch(&t, &log, &[]);
    let who = format!("postgres destination {}:out", names.prefix);
    let refusal = "invalid input syntax for type integer";
    assert_only_refused_records_nacked(&*d, &batch, &who, &t, refusal).await;
    let rows: Vec<(i32, Option<String>, Option<String>)> = pg
        .query(
            &format!("SELECT id, name, doc::text FROM {t} ORDER BY id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [(1, Some("a2".to_owned()), Some("{\"k\": 1}".to_owned()))]
    );
    let lines: i64 = pg
        .query_one(&format!("SELECT count(*) FROM {log}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lines, 1);
    d.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_template_names_each_records_table() {
    let Some(pg) = connect().await else { return };
    let mut names = fresh_names("tmpl");
    let t = names.table("t");
    pg.batch_execute(&format!(
        "CREATE TABLE {t}_copy (id int PRIMARY KEY, name text)"
    ))
    .await
    .unwrap();
    let d = open_destination(
        "postgres",
        &format!("{}:out", names.prefix),
        &settings(&[
            ("url", URL),
            (
                "table",
                r#"{{ printf "%s_copy" (index .Metadata "opencdc.collection") }}"#,
            ),
        ]),
    )
    .await;
    let batch = vec![record(
        "1",
        Operation::Create,
        &t,
        Some(1),
        &[("id", Value::Int(1)), ("name", Value::String("a".into()))],
    )];
    d.write(&batch).await.unwrap();
    let acked = ack_n(&*d, 1).await;
    assert!(acked[0].error.is_none(), "{:?}", acked[0].error);
    let name: String = pg
        .query_one(&format!("SELECT name FROM {t}_copy WHERE id = 1"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "a");
    pg.batch_execute(&format!("DROP TABLE {t}_copy"))
        .await
        .unwrap();
    d.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_mode_skips_records_already_written_before_a_restart() {
    let Some(pg) = connect().await else { return };
    let mut names = fresh_names("once");
    let log = names.table("log");
    pg.batch_execute(&format!("CREATE TABLE {log} (line text)"))
        .await
        .unwrap();
    let id = format!("{}:out", names.prefix);
    let d = write_with_a_replay("postgres", &id, settings(&[("url", URL)]), &log).await;
    let lines: Vec<String> = pg
        .query(&format!("SELECT line FROM {log} ORDER BY ctid"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(lines, replayed_lines());
    let stored: Vec<u8> = pg
        .query_one(
            "SELECT position FROM funnel_positions WHERE connector_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, b"12");
    d.teardown().await.unwrap();
}

/// A table `(id bigserial PRIMARY KEY, v text)` with its own slot and publication,
/// for the compliance suite: a record's payload is its `v`.
struct PgBackend {
    pg: tokio_postgres::Client,
    table: TestTable,
}

impl PgBackend {
    async fn new(id_type: &str) -> Self {
        let pg = connect()
            .await
            .expect("PostgreSQL was reachable a moment ago");
        let table = TestTable::new(fresh_names("cmp"));
        let create = format!(
            "CREATE TABLE {} (id {id_type} PRIMARY KEY, v text)",
            table.name
        );
        pg.batch_execute(&create).await.unwrap();
        Self { pg, table }
    }
}

#[async_trait]
impl SourceBackend for PgBackend {
    fn build(&self, resume: Option<Position>) -> Arc<dyn Source> {
        let TestTable { names, name } = &self.table;
        let settings = source_settings(names, name, &[("sdk.batch.size", "10")]);
        source("postgres", "p:pg", &settings, resume).unwrap()
    }

    async fn inject(&self, payloads: &[Bytes]) {
        let texts: Vec<&str> = payloads
            .iter()
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect();
        self.pg
            .execute(
                &format!(
                    "INSERT INTO {} (v) SELECT v FROM unnest($1::text[]) WITH ORDINALITY AS u(v, n) \
                     ORDER BY n",
                    self.table.name
                ),
                &[&texts],
            )
            .await
            .unwrap();
    }

    fn payload(&self, record: &Record) -> Bytes {
        v_of(record)
    }
}

#[async_trait]
impl SqlTable for PgBackend {
    fn table(&self) -> &TestTable {
        &self.table
    }

    async fn values(&self) -> Vec<Bytes> {
        self.pg
            .query(
                &format!("SELECT v FROM {} ORDER BY id", self.table.name),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| Bytes::from(row.get::<_, String>(0)))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_passes_the_source_compliance_suite() {
    if connect().await.is_none() {
        return;
    }
    let why = "a resume inside the snapshot reads the rest in a new snapshot, then streams the \
               slot from its creation: rows inserted meanwhile come in both (at least once, as \
               the postgres module docs say)";
    support::source_compliance("postgres", why, || PgBackend::new("bigserial")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_passes_the_destination_compliance_suite_with_and_without_exactly_once() {
    if connect().await.is_some() {
        let settings = settings(&[("url", URL)]);
        support::destination_compliance("postgres", &settings, || PgBackend::new("bigint")).await;
    }
}

/// The CA that signed the local server's certificate (made by
/// `scripts/setup-services.sh`), or `None` (skip) without it, except under `CI=true`.
fn server_ca() -> Option<String> {
    let path = format!(
        "{}/.cache/funnel/pg-tls/ca.crt",
        std::env::var("HOME").unwrap_or_default()
    );
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    funnel_test_utils::skip_without(&format!("no CA at {path}"));
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sslmode_the_source_and_destination_use_tls_and_verify_the_server_as_asked() {
    let Some(pg) = connect().await else { return };
    let Some(ca) = server_ca() else { return };
    let mut names = fresh_names("tls");
    let t = names.table("t");
    pg.batch_execute(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, v text); INSERT INTO {t} VALUES (1, 'a'), (2, 'b')"
    ))
    .await
    .unwrap();

    // verify-full: the snapshot and the replication stream, both over TLS.
    let url = format!("{URL}?sslmode=verify-full&sslrootcert={ca}");
    let id = format!("p:{}", names.prefix);
    let s = source_settings(&names, &t, &[("url", &url)]);
    let src = support::open_source("postgres", &id, &s, None).await;
    assert_eq!(read_n(&*src, 2).await.len(), 2);
    pg.batch_execute(&format!("INSERT INTO {t} VALUES (3, 'c')"))
        .await
        .unwrap();
    let live = read_n(&*src, 1).await;
    assert_eq!(id_of(&live[0]), 3);
    let encrypted = funnel_test_utils::pg::psql(&format!(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE s.ssl AND a.application_name = 'funnel {id}'"
    ))
    .unwrap();
    assert_eq!(encrypted, "1", "the replication stream is not encrypted");
    src.teardown().await.unwrap();

    // require: encrypted, the certificate not checked.
    let require = settings(&[("url", &format!("{URL}?sslmode=require")), ("table", &t)]);
    let d = open_destination("postgres", "p:out", &require).await;
    d.write(&[record(
        "1",
        Operation::Create,
        &t,
        Some(4),
        &[("id", Value::Int(4)), ("v", Value::String("d".into()))],
    )])
    .await
    .unwrap();
    assert_eq!(ack_n(&*d, 1).await[0].error, None);
    d.teardown().await.unwrap();
    let v = funnel_test_utils::pg::psql(&format!("SELECT v FROM {t} WHERE id = 4")).unwrap();
    assert_eq!(v, "d");

    // A CA made here did not sign the server's certificate: verify-ca fails, naming
    // the connector and the certificate problem.
    let other = funnel_test_utils::tls::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, &other.ca_pem).unwrap();
    let verify_ca = format!("{URL}?sslmode=verify-ca&sslrootcert={}", other_ca.display());
    let e =
        destination_open_error("postgres", &settings(&[("url", &verify_ca), ("table", &t)])).await;
    let text = e.to_string();
    assert!(
        text.contains("postgres destination p:out") && text.to_lowercase().contains("certificate"),
        "{text}"
    );
}
