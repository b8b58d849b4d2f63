//! The mysql source and destination against the real server on 127.0.0.1:3306 (MariaDB,
//! user root without password, database `test`, binary log in ROW format: see
//! `scripts/setup-services.sh`). Each test uses its own tables and drops them at the
//! end. Without a server the tests are skipped, except under `CI=true`, where a missing
//! server fails them.

#![cfg(feature = "mysql")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

#[path = "support/sql.rs"]
mod support;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_connectors::{Settings, source};
use funnel_core::Source;
use funnel_record::{Data, Operation, Position, Record, Value};
use funnel_test_utils::compliance::SourceBackend;
use funnel_test_utils::connectors::read_n;
use mysql_async::prelude::Queryable;
use support::*;

const DSN: &str = "root@tcp(127.0.0.1:3306)/test";
const URL: &str = "mysql://root@127.0.0.1:3306/test";

/// Unique names for one test, whose tables and positions are removed when it ends.
fn fresh_names(tag: &str) -> Names {
    Names::new("fmy", tag, |names| {
        let mut sql = String::new();
        for t in &names.tables {
            sql.push_str(&format!("DROP TABLE IF EXISTS {t}; "));
        }
        sql.push_str(&format!(
            "DELETE FROM funnel_positions WHERE connector_id LIKE '{}%';",
            names.prefix
        ));
        let _ = std::process::Command::new("mysql")
            .args(["-h", "127.0.0.1", "-u", "root", "test", "-e", &sql])
            .output();
    })
}

/// A connection for setting up and checking, or `None` (skip) without a server.
async fn connect() -> Option<mysql_async::Conn> {
    match mysql_async::Conn::from_url(URL).await {
        Ok(mut conn) => {
            conn.query_drop(
                "CREATE TABLE IF NOT EXISTS funnel_positions \
                 (connector_id VARCHAR(255) PRIMARY KEY, position LONGBLOB)",
            )
            .await
            .unwrap();
            Some(conn)
        }
        Err(e) => {
            funnel_test_utils::skip_without(&format!("MariaDB is not reachable at {URL}: {e}"));
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_upserts_deletes_inserts_and_nacks_only_the_record_the_server_refuses() {
    let Some(mut my) = connect().await else {
        return;
    };
    let mut names = fresh_names("dest");
    let t = names.table("t");
    let log = names.table("log");
    my.query_drop(format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, name text, n int, doc json, at datetime(6), \
         amount decimal(30,10), raw blob); CREATE TABLE {log} (line text)"
    ))
    .await
    .unwrap();
    let d = open_destination(
        "mysql",
        &format!("{}:out", names.prefix),
        &settings(&[("dsn", DSN)]),
    )
    .await;
    let mut batch = mixed_batch(
        &t,
        &log,
        &[
            ("at", Value::String("2024-01-02T03:04:05.123456Z".into())),
            (
                "amount",
                Value::String("12345678901234567890.0123456789".into()),
            ),
            ("raw", Value::Bytes(Bytes::from_static(&[0, 255]))),
        ],
    );
    batch.push(record(
        "7a",
        Operation::Create,
        &t,
        Some(3),
        &[("id", Value::Int(3)), ("name", Value::String("c".into()))],
    ));
    let mut key_change = record(
        "8",
        Operation::Update,
        &t,
        Some(10),
        &[
            ("id", Value::Int(10)),
            ("name", Value::String("moved".into())),
        ],
    );
    key_change.payload.before = Some(Data::Structured(
        [("id".to_owned(), Value::Int(3))].into_iter().collect(),
    ));
    batch.push(key_change);
    let who = format!("mysql destination {}:out", names.prefix);
    assert_only_refused_records_nacked(&*d, &batch, &who, &t, "Incorrect integer value").await;
    type Row = (
        i32,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Row> = my
        .query(format!(
            "SELECT id, name, CAST(doc AS CHAR), CAST(at AS CHAR), CAST(amount AS CHAR), raw \
             FROM {t} ORDER BY id"
        ))
        .await
        .unwrap();
    assert_eq!(
        rows,
        [
            (
                1,
                Some("a2".to_owned()),
                Some("{\"k\":1}".to_owned()),
                Some("2024-01-02 03:04:05.123456".to_owned()),
                Some("12345678901234567890.0123456789".to_owned()),
                Some(vec![0, 255]),
            ),
            (10, Some("moved".to_owned()), None, None, None, None),
        ]
    );
    let lines: Option<i64> = my
        .query_first(format!("SELECT count(*) FROM {log}"))
        .await
        .unwrap();
    assert_eq!(lines, Some(1));
    d.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_mode_skips_records_already_written_before_a_restart() {
    let Some(mut my) = connect().await else {
        return;
    };
    let mut names = fresh_names("once");
    let log = names.table("log");
    my.query_drop(format!(
        "CREATE TABLE {log} (n int AUTO_INCREMENT PRIMARY KEY, line text)"
    ))
    .await
    .unwrap();
    let id = format!("{}:out", names.prefix);
    let d = write_with_a_replay("mysql", &id, settings(&[("dsn", DSN)]), &log).await;
    let lines: Vec<String> = my
        .query(format!("SELECT line FROM {log} ORDER BY n"))
        .await
        .unwrap();
    assert_eq!(lines, replayed_lines());
    let stored: Option<Vec<u8>> = my
        .exec_first(
            "SELECT position FROM funnel_positions WHERE connector_id = ?",
            (id.as_str(),),
        )
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(&b"12"[..]));
    d.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_and_bad_credentials_fail_with_clear_messages() {
    let unreachable = settings(&[("dsn", "root@tcp(127.0.0.1:1)/test")]);
    let e = destination_open_error("mysql", &unreachable).await;
    assert!(
        e.to_string()
            .contains("mysql destination p:out: cannot connect to 127.0.0.1:1"),
        "{e}"
    );
    // The connection test (pipelines validate --check) fails the same way.
    let e = check_destination("mysql", unreachable).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("mysql destination p:out: cannot connect"),
        "{e}"
    );
    if connect().await.is_none() {
        return;
    }
    check_destination("mysql", settings(&[("dsn", DSN)]))
        .await
        .unwrap();
    let wrong = settings(&[("dsn", "nobody:wrong@tcp(127.0.0.1:3306)/test")]);
    let e = destination_open_error("mysql", &wrong).await;
    assert!(
        e.to_string().contains("Access denied")
            && e.to_string().contains("check the user and password"),
        "{e}"
    );
    assert!(e.is_fatal(), "{e}");
}

/// A compliance table `(id ... PRIMARY KEY, v longtext)`: a record's payload is its
/// `v`.
struct MyBackend {
    table: TestTable,
}

impl MyBackend {
    async fn new(id_type: &str) -> Self {
        let mut my = connect().await.expect("MariaDB was reachable a moment ago");
        let table = TestTable::new(fresh_names("cmp"));
        my.query_drop(format!(
            "CREATE TABLE {} (id {id_type} PRIMARY KEY, v longtext)",
            table.name
        ))
        .await
        .unwrap();
        let _ = my.disconnect().await;
        Self { table }
    }
}

#[async_trait]
impl SqlTable for MyBackend {
    fn table(&self) -> &TestTable {
        &self.table
    }

    async fn values(&self) -> Vec<Bytes> {
        let mut my = connect().await.unwrap();
        let rows: Vec<Vec<u8>> = my
            .query(format!("SELECT v FROM {} ORDER BY id", self.table.name))
            .await
            .unwrap();
        let _ = my.disconnect().await;
        rows.into_iter().map(Bytes::from).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_passes_the_destination_compliance_suite_with_and_without_exactly_once() {
    if connect().await.is_some() {
        let settings = settings(&[("dsn", DSN)]);
        support::destination_compliance("mysql", &settings, || MyBackend::new("bigint")).await;
    }
}

fn source_settings(tables: &str, extra: &[(&str, &str)]) -> Settings {
    let mut s = settings(&[("dsn", DSN), ("tables", tables)]);
    s.extend(settings(extra));
    s
}

async fn open_source(settings: &Settings, resume: Option<Position>) -> Arc<dyn Source> {
    support::open_source("mysql", "p:my", settings, resume).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_ten_thousand_rows_then_live_changes_arrive_once_in_commit_order_with_mapped_types()
 {
    let Some(mut my) = connect().await else {
        return;
    };
    let mut names = fresh_names("flow");
    let t = names.table("items");
    let other = names.table("other");
    my.query_drop(format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, amount decimal(30,10), name varchar(50), \
           latin varchar(10) CHARACTER SET latin1, small tinyint unsigned, big bigint unsigned, \
           ratio double, f float, day date, at datetime(6), ts timestamp(3) NULL, span time(6), \
           y year, raw varbinary(8), doc json, color enum('red','green'), flags set('a','b','c'), \
           bits bit(10), nothing text);
         CREATE TABLE {other} (k varchar(20) PRIMARY KEY, v int);
         INSERT INTO {t} (id, amount, name, latin, small, big, ratio, f, day, at, ts, span, y, raw, \
           doc, color, flags, bits) \
         SELECT seq, 12345678901234567890.0123456789, CONCAT('name ', seq), 'café', 255, \
           18446744073709551615, 0.5, 0.1, '2024-02-29', '2024-01-02 03:04:05.123456', \
           '2024-01-02 03:04:05.123', '-26:03:04.5', 2024, x'00ff', \
           '{{\"n\": 1, \"list\": [1, \"x\", null]}}', 'green', 'a,c', b'1000000001' \
         FROM seq_1_to_10000"
    ))
    .await
    .unwrap();
    let source = open_source(
        &source_settings(
            &format!("{t},{other}"),
            &[("sdk.batch.size", "500"), ("fetchSize", "3000")],
        ),
        None,
    )
    .await;
    let snapshot = read_n(&*source, 10_000).await;
    assert!(snapshot.iter().all(|r| r.operation == Operation::Snapshot));
    assert_eq!(
        snapshot.iter().map(id_of).collect::<Vec<_>>(),
        (1..=10_000).collect::<Vec<_>>()
    );
    assert_increasing(&snapshot);
    let first = &snapshot[0];
    assert_eq!(first.metadata.get("opencdc.collection"), Some(t.as_str()));
    assert!(first.metadata.get("mysql.binlog.position").is_some());
    let expected: Vec<(&str, Value)> = vec![
        (
            "amount",
            Value::String("12345678901234567890.0123456789".into()),
        ),
        ("name", Value::String("name 1".into())),
        ("latin", Value::String("café".into())),
        ("small", Value::Int(255)),
        ("big", Value::Uint(u64::MAX)),
        ("ratio", Value::Float(0.5)),
        ("f", Value::Float(0.1)),
        ("day", Value::String("2024-02-29".into())),
        ("at", Value::String("2024-01-02T03:04:05.123456Z".into())),
        ("ts", Value::String("2024-01-02T03:04:05.123Z".into())),
        ("span", Value::String("-26:03:04.5".into())),
        ("y", Value::Int(2024)),
        ("raw", Value::Bytes(Bytes::from_static(&[0, 255]))),
        (
            "doc",
            Value::Map(
                [
                    ("n".to_owned(), Value::Int(1)),
                    (
                        "list".to_owned(),
                        Value::Array(vec![Value::Int(1), Value::String("x".into()), Value::Null]),
                    ),
                ]
                .into_iter()
                .collect(),
            ),
        ),
        ("color", Value::String("green".into())),
        ("flags", Value::String("a,c".into())),
        ("bits", Value::Int(513)),
        ("nothing", Value::Null),
    ];
    for (name, value) in &expected {
        assert_eq!(field(&first.payload.after, name), value, "snapshot {name}");
    }

    // Live: a copy of row 1 (the binlog maps like the snapshot), a multi-row and
    // multi-table transaction, a key-changing update, a delete, a DDL mid-stream.
    my.query_drop(format!(
        "INSERT INTO {t} SELECT 10001, amount, name, latin, small, big, ratio, f, day, at, ts, span, \
           y, raw, doc, color, flags, bits, nothing FROM {t} WHERE id = 1;
         START TRANSACTION;
         UPDATE {t} SET name = 'two' WHERE id = 2;
         INSERT INTO {other} VALUES ('k1', 1), ('k2', 2);
         UPDATE {t} SET id = 20000 WHERE id = 3;
         COMMIT;
         DELETE FROM {t} WHERE id = 4;
         ALTER TABLE {t} ADD COLUMN extra varchar(10) DEFAULT 'x';
         UPDATE {t} SET extra = 'y' WHERE id = 5;"
    ))
    .await
    .unwrap();
    let changes = read_n(&*source, 7).await;
    assert_increasing(&changes);
    let copy = &changes[0];
    assert_eq!(copy.operation, Operation::Create);
    assert_eq!(id_of(copy), 10001);
    for (name, value) in &expected {
        assert_eq!(field(&copy.payload.after, name), value, "binlog {name}");
    }
    assert!(copy.metadata.get("opencdc.createdAt").is_some());
    let summary: Vec<(Operation, String)> = changes[1..]
        .iter()
        .map(|r| {
            (
                r.operation,
                format!(
                    "{}:{}",
                    r.metadata.get("opencdc.collection").unwrap(),
                    match &r.key {
                        Some(Data::Structured(k)) =>
                            String::from_utf8(k.values().next().unwrap().to_json()).unwrap(),
                        other => format!("{other:?}"),
                    }
                ),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Operation::Update, format!("{t}:2")),
            (Operation::Create, format!("{other}:\"k1\"")),
            (Operation::Create, format!("{other}:\"k2\"")),
            (Operation::Update, format!("{t}:20000")),
            (Operation::Delete, format!("{t}:4")),
            (Operation::Update, format!("{t}:5")),
        ]
    );
    // Updates and deletes carry the full old row.
    assert_eq!(
        field(&changes[1].payload.before, "name"),
        &Value::String("name 2".into())
    );
    assert_eq!(
        field(&changes[1].payload.after, "name"),
        &Value::String("two".into())
    );
    assert_eq!(field(&changes[4].payload.before, "id"), &Value::Int(3));
    assert_eq!(
        field(&changes[5].payload.before, "name"),
        &Value::String("name 4".into())
    );
    assert!(changes[5].payload.after.is_none());
    // The column added mid-stream.
    assert_eq!(
        field(&changes[6].payload.after, "extra"),
        &Value::String("y".into())
    );
    assert_eq!(
        field(&changes[6].payload.before, "extra"),
        &Value::String("x".into())
    );
    // The three changes of the transaction share its start.
    let txn = |r: &Record| {
        let p = std::str::from_utf8(r.position.as_bytes())
            .unwrap()
            .to_owned();
        p[..p.rfind(':').unwrap()].to_owned()
    };
    assert_eq!(txn(&changes[1]), txn(&changes[4]));
    assert_ne!(txn(&changes[0]), txn(&changes[1]));
    assert_quiet(&*source).await;
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_snapshot_the_source_knows_how_many_rows_are_left_and_zero_once_it_is_done() {
    use funnel_test_utils::connectors::PATIENCE;
    let Some(mut my) = connect().await else {
        return;
    };
    let mut names = fresh_names("left");
    let t = names.table("t");
    let u = names.table("u");
    my.query_drop(format!(
        "CREATE TABLE {t} (id int PRIMARY KEY); INSERT INTO {t} SELECT seq FROM seq_1_to_15000;
         CREATE TABLE {u} (id int PRIMARY KEY); INSERT INTO {u} SELECT seq FROM seq_1_to_5000"
    ))
    .await
    .unwrap();
    let tables = format!("{t},{u}");
    let s = source_settings(&tables, &[("sdk.batch.size", "500"), ("fetchSize", "3000")]);
    let source = open_source(&s, None).await;
    funnel_test_utils::wait_until("the snapshot's rows are counted", PATIENCE, || {
        source.backlog().is_some()
    })
    .await;
    let first = read_n(&*source, 5_000).await;
    // The reader runs at most a few batches ahead of the reads, and counts a batch
    // once its send returned (a batch already read may not be counted yet).
    let left = source.backlog().unwrap();
    assert!((11_000..=15_500).contains(&left), "{left} rows left");
    read_n(&*source, 15_000).await;
    funnel_test_utils::wait_until("no row is left", PATIENCE, || source.backlog() == Some(0)).await;
    source.teardown().await.unwrap();

    // Resumed after row 5,000 of the first table, the snapshot counts only what it
    // still has to read: 10,000 + 5,000 rows.
    assert_eq!(id_of(&first[4_999]), 5_000);
    let s = source_settings(&tables, &[("sdk.batch.size", "10"), ("fetchSize", "100")]);
    let source = open_source(&s, Some(first[4_999].position.clone())).await;
    funnel_test_utils::wait_until("the resumed snapshot's rows are counted", PATIENCE, || {
        source.backlog().is_some()
    })
    .await;
    assert_eq!(id_of(&read_n(&*source, 10).await[0]), 5_001);
    let left = source.backlog().unwrap();
    assert!((14_900..=15_000).contains(&left), "{left} rows left");
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_mid_snapshot_and_mid_stream_without_loss_or_duplicates() {
    let Some(mut my) = connect().await else {
        return;
    };
    let mut names = fresh_names("resume");
    let t = names.table("t");
    my.query_drop(format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, v text);
         INSERT INTO {t} SELECT seq, CONCAT('v', seq) FROM seq_1_to_100"
    ))
    .await
    .unwrap();
    let s = source_settings(&t, &[("sdk.batch.size", "10"), ("fetchSize", "7")]);
    let source = open_source(&s, None).await;
    let first = read_n(&*source, 40).await;
    // Changes made during the snapshot come after it, from its coordinates.
    my.query_drop(format!(
        "UPDATE {t} SET v = 'changed' WHERE id = 90; INSERT INTO {t} VALUES (101, 'new')"
    ))
    .await
    .unwrap();
    let saved = first[39].position.clone();
    drop(source); // a crash: no teardown

    let source = open_source(&s, Some(saved.clone())).await;
    let rest = read_n(&*source, 61).await;
    assert_eq!(
        rest.iter().map(id_of).collect::<Vec<_>>(),
        (41..=101).collect::<Vec<_>>()
    );
    assert!(rest.iter().all(|r| r.operation == Operation::Snapshot));
    // The resumed snapshot reads today's rows (101 among them); the stream still starts
    // at the first snapshot's coordinates, so the changes made meanwhile come again (at
    // least once).
    let changes = read_n(&*source, 2).await;
    assert_eq!(
        changes
            .iter()
            .map(|r| (r.operation, id_of(r)))
            .collect::<Vec<_>>(),
        [(Operation::Update, 90), (Operation::Create, 101)]
    );
    assert!(saved.as_bytes() < rest[0].position.as_bytes());
    assert!(rest[60].position.as_bytes() < changes[0].position.as_bytes());
    let mid = changes[0].position.clone();
    my.query_drop(format!(
        "START TRANSACTION; UPDATE {t} SET v = 'a' WHERE id = 1; UPDATE {t} SET v = 'b' WHERE id = 2; \
         COMMIT; DELETE FROM {t} WHERE id = 3"
    ))
    .await
    .unwrap();
    let more = read_n(&*source, 3).await;
    source.teardown().await.unwrap();

    // Resume inside the stream: right after the first change of a transaction.
    let source = open_source(&s, Some(mid)).await;
    let again = read_n(&*source, 4).await;
    assert_eq!(again[0].position, changes[1].position);
    assert_eq!(
        again[1..]
            .iter()
            .map(|r| r.position.clone())
            .collect::<Vec<_>>(),
        more.iter().map(|r| r.position.clone()).collect::<Vec<_>>()
    );
    assert_quiet(&*source).await;
    source.teardown().await.unwrap();

    // Inside a multi-row transaction.
    let source = open_source(&s, Some(more[0].position.clone())).await;
    let tail = read_n(&*source, 2).await;
    assert_eq!(tail.iter().map(id_of).collect::<Vec<_>>(), [2, 3]);
    assert_quiet(&*source).await;
    source.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_servers_credentials_tables_and_positions_fail_with_clear_messages() {
    let open_err = |settings: Settings, resume: Option<Position>| async move {
        source_open_error("mysql", "p:my", &settings, resume).await
    };
    let e = open_err(
        settings(&[("dsn", "root@tcp(127.0.0.1:1)/test"), ("tables", "t")]),
        None,
    )
    .await;
    assert!(
        e.to_string()
            .contains("mysql source p:my: cannot connect to 127.0.0.1:1"),
        "{e}"
    );
    assert!(!e.is_fatal(), "an unreachable server is worth a retry: {e}");
    let Some(mut my) = connect().await else {
        return;
    };
    let e = open_err(
        settings(&[
            ("dsn", "nobody:bad@tcp(127.0.0.1:3306)/test"),
            ("tables", "t"),
        ]),
        None,
    )
    .await;
    assert!(e.to_string().contains("check the user and password"), "{e}");
    let mut names = fresh_names("bad");
    let t = names.table("t");
    let keyless = names.table("keyless");
    my.query_drop(format!(
        "CREATE TABLE {t} (id int PRIMARY KEY); CREATE TABLE {keyless} (v int)"
    ))
    .await
    .unwrap();
    let e = open_err(source_settings(&format!("{t}_missing"), &[]), None).await;
    assert!(
        e.to_string().contains(&format!(
            "table {t}_missing does not exist in database test"
        )),
        "{e}"
    );
    let e = open_err(source_settings(&keyless, &[]), None).await;
    assert!(e.to_string().contains("has no primary key"), "{e}");
    assert!(e.to_string().contains("unsafeSnapshot"), "{e}");
    // A position in a binlog file the server no longer has.
    let gone = Position::from("my:2:mysql-bin.999998:0000000000000004:00000000");
    let e = open_err(source_settings(&t, &[]), Some(gone)).await;
    assert!(
        e.to_string().contains("binlog file mysql-bin.999998")
            && e.to_string().contains("Reset the pipeline's position"),
        "{e}"
    );
    assert!(e.is_fatal(), "{e}");
    // A user without replication privileges.
    let user = format!("{}_u", names.prefix);
    my.query_drop(format!(
        "CREATE USER '{user}'@'127.0.0.1'; GRANT SELECT ON test.* TO '{user}'@'127.0.0.1'"
    ))
    .await
    .unwrap();
    let e = open_err(
        source_settings(&t, &[("dsn", &format!("{user}@tcp(127.0.0.1:3306)/test"))]),
        None,
    )
    .await;
    let _ = my
        .query_drop(format!("DROP USER '{user}'@'127.0.0.1'"))
        .await;
    assert!(e.to_string().contains("REPLICATION"), "{e}");
}

/// With an `AUTO_INCREMENT` id, the source compliance suite's backend.
#[async_trait]
impl SourceBackend for MyBackend {
    fn build(&self, resume: Option<Position>) -> Arc<dyn Source> {
        let settings = source_settings(&self.table.name, &[("sdk.batch.size", "10")]);
        source("mysql", "p:my", &settings, resume).unwrap()
    }

    async fn inject(&self, payloads: &[Bytes]) {
        let mut my = connect().await.unwrap();
        let mut tx = my
            .start_transaction(mysql_async::TxOpts::default())
            .await
            .unwrap();
        for chunk in payloads.chunks(100) {
            let sql = format!(
                "INSERT INTO {} (v) VALUES {}",
                self.table.name,
                vec!["(?)"; chunk.len()].join(",")
            );
            let params: Vec<mysql_async::Value> = chunk
                .iter()
                .map(|p| mysql_async::Value::Bytes(p.to_vec()))
                .collect();
            tx.exec_drop(sql, params).await.unwrap();
        }
        tx.commit().await.unwrap();
        let _ = my.disconnect().await;
    }

    fn payload(&self, record: &Record) -> Bytes {
        v_of(record)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_passes_the_source_compliance_suite() {
    if connect().await.is_none() {
        return;
    }
    let why = "a resume inside the snapshot reads the rest in a new snapshot, then streams the \
               binlog from the first snapshot's coordinates: rows inserted meanwhile come in \
               both (at least once, as the mysql module docs say)";
    support::source_compliance("mysql", why, || MyBackend::new("bigint AUTO_INCREMENT")).await;
}
