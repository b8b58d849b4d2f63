//! What the SQL connectors' tests (postgres, mysql) share: unique names removed at the
//! end, records addressed to a table, opening helpers, reading helpers, the
//! destination's mixed batch and exactly-once replay, and the compliance suites' runs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_connectors::sql::compare_positions;
use funnel_connectors::{Settings, destination, source};
pub(crate) use funnel_core::settings_of as settings;
use funnel_core::{ConnectorError, Destination, DestinationAck, Source};
use funnel_record::{Data, Metadata, Operation, Position, Record, Value};
use funnel_test_utils::compliance::{
    DestinationBackend, DestinationCapabilities, SourceBackend, SourceCapabilities, Support,
    run_destination_compliance, run_source_compliance,
};
use funnel_test_utils::connectors::ack_n;

/// Unique names for one test, and their removal when it ends (even on panic).
pub(crate) struct Names {
    /// What every name of the test starts with (and its connector ids).
    pub(crate) prefix: String,
    /// The tables made with [`Names::table`].
    pub(crate) tables: Vec<String>,
    drop: fn(&Names),
}

impl Names {
    /// Names starting with `engine` and `tag`, removed by `drop`.
    pub(crate) fn new(engine: &str, tag: &str, drop: fn(&Names)) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self {
            prefix: format!("{engine}_{tag}_{}_{nanos}", std::process::id()),
            tables: Vec::new(),
            drop,
        }
    }

    /// A table name, dropped at the end.
    pub(crate) fn table(&mut self, name: &str) -> String {
        let t = format!("{}_{name}", self.prefix);
        self.tables.push(t.clone());
        t
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        (self.drop)(self);
    }
}

/// A record for `table` (its `opencdc.collection`), keyed `{"id": key}`, with `after`
/// as its structured payload (none when empty).
pub(crate) fn record(
    position: &str,
    op: Operation,
    table: &str,
    key: Option<i64>,
    after: &[(&str, Value)],
) -> Record {
    let mut metadata = Metadata::new();
    metadata.insert("opencdc.collection", table);
    Record {
        position: Position::from(position),
        operation: op,
        metadata,
        key: key
            .map(|k| Data::Structured([("id".to_owned(), Value::Int(k))].into_iter().collect())),
        payload: funnel_record::Payload {
            before: None,
            after: (!after.is_empty()).then(|| {
                Data::Structured(
                    after
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect(),
                )
            }),
        },
    }
}

/// Source `plugin` with ID `id`, built from `settings` and opened at `resume`.
pub(crate) async fn open_source(
    plugin: &str,
    id: &str,
    settings: &Settings,
    resume: Option<Position>,
) -> Arc<dyn Source> {
    let source = source(plugin, id, settings, resume).unwrap();
    source.open().await.unwrap();
    source
}

/// What opening source `plugin` (ID `id`) at `resume` fails with.
pub(crate) async fn source_open_error(
    plugin: &str,
    id: &str,
    settings: &Settings,
    resume: Option<Position>,
) -> ConnectorError {
    let source = source(plugin, id, settings, resume).unwrap();
    source.open().await.expect_err("open should fail")
}

/// Destination `plugin` with ID `id`, built from `settings` and opened.
pub(crate) async fn open_destination(
    plugin: &str,
    id: &str,
    settings: &Settings,
) -> Arc<dyn Destination> {
    let d = destination(plugin, id, settings).unwrap();
    d.open().await.unwrap();
    d
}

/// What opening destination `plugin` (ID `p:out`) fails with.
pub(crate) async fn destination_open_error(plugin: &str, settings: &Settings) -> ConnectorError {
    let d = destination(plugin, "p:out", settings).unwrap();
    d.open().await.expect_err("open should fail")
}

/// What the registry's connection test of destination `plugin` (ID `p:out`) gives with
/// `settings`.
pub(crate) async fn check_destination(
    plugin: &str,
    settings: Settings,
) -> Result<(), ConnectorError> {
    let check = funnel_connectors::components()
        .into_iter()
        .find(|c| c.name == plugin && c.kind() == funnel_core::ComponentKind::Destination)
        .and_then(|c| c.check)
        .unwrap();
    check("p:out".to_owned(), settings).await
}

/// Asserts that nothing more arrives for a moment.
pub(crate) async fn assert_quiet(source: &dyn Source) {
    if let Ok(batch) = tokio::time::timeout(Duration::from_millis(700), source.read()).await {
        panic!(
            "unexpected records: {:?}",
            batch.map(|b| b.map(|b| b.len()))
        );
    }
}

/// Field `name` of structured data.
pub(crate) fn field<'r>(data: &'r Option<Data>, name: &str) -> &'r Value {
    match data {
        Some(Data::Structured(d)) => d
            .get(name)
            .unwrap_or_else(|| panic!("no field {name} in {d:?}")),
        other => panic!("not structured: {other:?}"),
    }
}

/// The text field `v` of a record's structured payload, as bytes: what the compliance
/// tables hold.
pub(crate) fn v_of(record: &Record) -> Bytes {
    match field(&record.payload.after, "v") {
        Value::String(text) => Bytes::copy_from_slice(text.as_bytes()),
        other => panic!("v is {other:?}"),
    }
}

/// The `id` of a record's structured key.
pub(crate) fn id_of(record: &Record) -> i64 {
    match field(&record.key, "id") {
        Value::Int(i) => *i,
        other => panic!("id is {other:?}"),
    }
}

/// Asserts that the records' positions increase.
pub(crate) fn assert_increasing(records: &[Record]) {
    for pair in records.windows(2) {
        assert!(
            compare_positions(pair[0].position.as_bytes(), pair[1].position.as_bytes()).is_lt(),
            "positions out of order: {:?} then {:?}",
            pair[0].position,
            pair[1].position
        );
    }
}

/// The destination test's batch: to table `t` (`id` key, `name`, `n` int, `doc` json)
/// a snapshot row 1, a create of 2, an update of 1 (with `doc` and `more` fields), a
/// create of 3 the server refuses (position `4`: `n` is not a number), a delete of 2;
/// a keyless row of table `log` (`line`); a record for a table that does not exist
/// (position `7`).
pub(crate) fn mixed_batch(t: &str, log: &str, more: &[(&str, Value)]) -> Vec<Record> {
    let mut update = vec![
        ("id", Value::Int(1)),
        ("name", Value::String("a2".into())),
        (
            "doc",
            Value::Map([("k".to_owned(), Value::Int(1))].into_iter().collect()),
        ),
    ];
    update.extend(more.iter().cloned());
    vec![
        record(
            "1",
            Operation::Snapshot,
            t,
            Some(1),
            &[("id", Value::Int(1)), ("name", Value::String("a".into()))],
        ),
        record(
            "2",
            Operation::Create,
            t,
            Some(2),
            &[("id", Value::Int(2)), ("name", Value::String("b".into()))],
        ),
        record("3", Operation::Update, t, Some(1), &update),
        record(
            "4",
            Operation::Create,
            t,
            Some(3),
            &[
                ("id", Value::Int(3)),
                ("n", Value::String("not a number".into())),
            ],
        ),
        record("5", Operation::Delete, t, Some(2), &[]),
        record(
            "6",
            Operation::Create,
            log,
            None,
            &[("line", Value::String("keyless".into()))],
        ),
        record(
            "7",
            Operation::Create,
            &format!("{t}_nope"),
            Some(9),
            &[("id", Value::Int(9))],
        ),
    ]
}

/// Writes `batch` (from [`mixed_batch`]) and asserts that its records are acked in
/// order and that only `4` and `7` are nacked: `4` with a message naming the
/// destination `who` and table `t` and containing `refusal`, `7` because its table
/// does not exist.
pub(crate) async fn assert_only_refused_records_nacked(
    d: &dyn Destination,
    batch: &[Record],
    who: &str,
    t: &str,
    refusal: &str,
) {
    d.write(batch).await.unwrap();
    let acks = ack_n(d, batch.len()).await;
    let failed: Vec<(&str, String)> = acks
        .iter()
        .filter_map(|a| {
            a.error.as_ref().map(|e| {
                (
                    std::str::from_utf8(a.position.as_bytes()).unwrap(),
                    e.to_string(),
                )
            })
        })
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[0].0, "4");
    assert!(
        failed[0].1.contains(&format!("{who}: table {t}:")) && failed[0].1.contains(refusal),
        "{}",
        failed[0].1
    );
    assert_eq!(failed[1].0, "7");
    assert!(failed[1].1.contains("does not exist"), "{}", failed[1].1);
    assert_eq!(
        acks.iter().map(|a| a.position.clone()).collect::<Vec<_>>(),
        batch.iter().map(|r| r.position.clone()).collect::<Vec<_>>()
    );
}

/// Writes `line 1` .. `line 10` to table `log` with an exactly-once destination
/// (`plugin`, `id`, the server's `settings` with `table` and `exactlyOnce` set here),
/// then, as after a crash the engine replays from its own last position (say 6),
/// `line 7` .. `line 12` with a new one: 7..=10 were written already and must be
/// skipped, 11 and 12 are new. Returns the second destination, open; the table should
/// hold lines 1 to 12 once each ([`replayed_lines`]).
pub(crate) async fn write_with_a_replay(
    plugin: &str,
    id: &str,
    server: Settings,
    log: &str,
) -> Arc<dyn Destination> {
    let mut settings = server;
    settings.extend(funnel_core::settings_of(&[
        ("table", log),
        ("exactlyOnce", "true"),
    ]));
    let settings = &settings;
    let line = |p: usize| {
        record(
            &p.to_string(),
            Operation::Create,
            log,
            None,
            &[("line", Value::String(format!("line {p}").into()))],
        )
    };
    let all_ok = |acks: Vec<DestinationAck>| acks.iter().all(|a| a.error.is_none());
    let d = open_destination(plugin, id, settings).await;
    let first: Vec<Record> = (1..=10).map(line).collect();
    d.write(&first).await.unwrap();
    assert!(all_ok(ack_n(&*d, 10).await));
    d.teardown().await.unwrap();

    let d = open_destination(plugin, id, settings).await;
    let replay: Vec<Record> = (7..=12).map(line).collect();
    d.write(&replay).await.unwrap();
    assert!(all_ok(ack_n(&*d, 6).await));
    d
}

/// The lines [`write_with_a_replay`] leaves in its table.
pub(crate) fn replayed_lines() -> Vec<String> {
    (1..=12).map(|i| format!("line {i}")).collect()
}

/// The table of one compliance run, `{prefix}_t`, dropped with its names.
pub(crate) struct TestTable {
    /// The run's names.
    pub(crate) names: Names,
    /// The table's name.
    pub(crate) name: String,
}

impl TestTable {
    /// The table named after `names` (not made yet).
    pub(crate) fn new(mut names: Names) -> Self {
        let name = names.table("t");
        Self { names, name }
    }
}

/// A table `(id ... PRIMARY KEY, v text)` of one SQL server, for the compliance suite:
/// a record's payload is its `v`.
#[async_trait]
pub(crate) trait SqlTable: Send + Sync + 'static {
    /// The table.
    fn table(&self) -> &TestTable;
    /// Every row's `v`, ordered by `id`.
    async fn values(&self) -> Vec<Bytes>;
}

/// The destination writes rows of the backend's table, named by the records'
/// `opencdc.collection` (the default `table`).
struct SqlDestinationBackend<T> {
    plugin: &'static str,
    settings: Settings,
    backend: T,
    exactly_once: bool,
}

#[async_trait]
impl<T: SqlTable> DestinationBackend for SqlDestinationBackend<T> {
    fn build(&self) -> Arc<dyn Destination> {
        let mut settings = self.settings.clone();
        let exactly_once = if self.exactly_once { "true" } else { "false" };
        settings.insert("exactlyOnce".to_owned(), exactly_once.to_owned());
        let id = format!("{}:out", self.backend.table().names.prefix);
        destination(self.plugin, &id, &settings).unwrap()
    }

    fn record(&self, position: Position, payload: Bytes) -> Record {
        let position = std::str::from_utf8(position.as_bytes()).unwrap();
        let id: i64 = position.parse().unwrap();
        let text = String::from_utf8(payload.to_vec()).unwrap();
        record(
            position,
            Operation::Create,
            &self.backend.table().name,
            Some(id),
            &[("id", Value::Int(id)), ("v", Value::String(text.into()))],
        )
    }

    async fn written(&self) -> Vec<Bytes> {
        self.backend.values().await
    }
}

/// Runs the destination compliance suite for destination `plugin` (with `settings`)
/// against tables made by `backend`, with `exactlyOnce` off, then on; nothing may be
/// skipped.
pub(crate) async fn destination_compliance<T, F>(
    plugin: &'static str,
    settings: &Settings,
    backend: impl Fn() -> F,
) where
    T: SqlTable,
    F: Future<Output = T>,
{
    for exactly_once in [false, true] {
        let connector = if exactly_once {
            format!("{plugin} destination (exactlyOnce)")
        } else {
            format!("{plugin} destination")
        };
        run_destination_compliance(&connector, DestinationCapabilities::FULL, |_| async {
            SqlDestinationBackend {
                plugin,
                settings: settings.clone(),
                backend: backend().await,
                exactly_once,
            }
        })
        .await
        .assert_complete();
    }
}

/// Runs the source compliance suite for source `plugin` against backends made by
/// `backend`: everything must pass but an exact resume, which the source does not
/// promise for `why`.
pub(crate) async fn source_compliance<B, F>(
    plugin: &str,
    why: &'static str,
    backend: impl Fn() -> F,
) where
    B: SourceBackend,
    F: Future<Output = B>,
{
    let capabilities = SourceCapabilities {
        input: Support::Yes,
        exact_resume: Support::No(why),
    };
    run_source_compliance(&format!("{plugin} source"), capabilities, |_| backend())
        .await
        .assert_complete();
}
