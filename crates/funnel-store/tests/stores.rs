//! One suite of store tests, run against every store: positions, pipeline documents,
//! group commit, and a damaged position or document refused rather than read. The
//! redb store runs it on a temporary file, the PostgreSQL store (feature `postgres`)
//! on a table of its own in the local server, the memory store the part that needs no
//! reopening.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use funnel_store::{MemoryStore, RedbStore, Store, StoreError};

/// A store under test: how to open it again, and how to damage what it holds the way
/// another program could.
#[async_trait]
trait Subject: Send + Sync {
    /// Opens the store (again, after the last holder of a previous one dropped it).
    async fn try_open(&self) -> Result<Arc<dyn Store>, StoreError>;

    /// Opens the store; it must open.
    async fn open(&self) -> Arc<dyn Store> {
        self.try_open().await.unwrap()
    }

    /// Changes one byte of the stored position of `pipeline`/`connector`, or of the
    /// document of `pipeline` when `connector` is `None`. The store must be closed.
    async fn damage(&self, pipeline: &str, connector: Option<&str>);

    /// Marks the store as written by a Funnel of the next format version. The store
    /// must be closed.
    async fn newer_format(&self);

    /// Damages the store's format header (the mark that says what the store is). The
    /// store must be closed.
    async fn damage_format(&self);
}

/// The memory store, which cannot be opened again: only for the tests that do not.
struct Memory;

#[async_trait]
impl Subject for Memory {
    async fn try_open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(MemoryStore::new()))
    }

    async fn damage(&self, _: &str, _: Option<&str>) {
        unreachable!("the memory store holds nothing to damage")
    }

    async fn newer_format(&self) {
        unreachable!("the memory store has no format")
    }

    async fn damage_format(&self) {
        unreachable!("the memory store has no format")
    }
}

struct Redb {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Redb {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("funnel.db");
        Self { _dir: dir, path }
    }
}

#[async_trait]
impl Subject for Redb {
    async fn try_open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(RedbStore::open(&self.path)?))
    }

    async fn damage(&self, pipeline: &str, connector: Option<&str>) {
        use ::redb::{Database, ReadableTable, TableDefinition};
        let (table, key) = match connector {
            Some(c) => ("positions", format!("{pipeline}\u{0}{c}")),
            None => ("documents", pipeline.to_owned()),
        };
        let definition: TableDefinition<&str, &[u8]> = TableDefinition::new(table);
        let db = Database::create(&self.path).unwrap();
        let write = db.begin_write().unwrap();
        {
            let mut table = write.open_table(definition).unwrap();
            let mut value = table.get(key.as_str()).unwrap().unwrap().value().to_vec();
            *value.last_mut().unwrap() ^= 1;
            table.insert(key.as_str(), value.as_slice()).unwrap();
        }
        write.commit().unwrap();
    }

    async fn newer_format(&self) {
        self.set_meta(|meta| {
            meta.insert("format_version", funnel_store::FORMAT_VERSION + 1)
                .unwrap();
        });
    }

    async fn damage_format(&self) {
        self.set_meta(|meta| {
            meta.remove("magic").unwrap();
        });
    }
}

impl Redb {
    /// Changes the `meta` table of the closed store.
    fn set_meta(&self, change: impl FnOnce(&mut ::redb::Table<'_, &str, u64>)) {
        use ::redb::{Database, TableDefinition};
        let definition: TableDefinition<&str, u64> = TableDefinition::new("meta");
        let db = Database::create(&self.path).unwrap();
        let write = db.begin_write().unwrap();
        {
            let mut meta = write.open_table(definition).unwrap();
            change(&mut meta);
        }
        write.commit().unwrap();
    }
}

/// Every test of the suite, for one store.
mod suite {
    use super::*;

    /// Opens the store, sets one position and closes it again.
    async fn keep_one_position(subject: &dyn Subject) {
        let store = subject.open().await;
        store.set_position("p", "src", &"1".into()).await.unwrap();
    }

    /// The message of `err`, which must say the store holds damaged data.
    fn corrupt_message(err: StoreError) -> String {
        assert!(
            matches!(
                err,
                StoreError::Corrupt { .. } | StoreError::CorruptTable { .. }
            ),
            "{err}"
        );
        err.to_string()
    }

    pub(super) async fn positions_are_kept_per_pipeline_and_connector(subject: &dyn Subject) {
        let store = subject.open().await;
        assert_eq!(store.position("p", "src").await.unwrap(), None);
        store.set_position("p", "src", &"1".into()).await.unwrap();
        store.set_position("p", "src", &"2".into()).await.unwrap();
        store.set_position("p", "other", &"x".into()).await.unwrap();
        store.set_position("pq", "src", &"3".into()).await.unwrap();
        assert_eq!(store.position("p", "src").await.unwrap(), Some("2".into()));
        assert_eq!(
            store.positions("p").await.unwrap(),
            [
                ("other".to_owned(), "x".into()),
                ("src".to_owned(), "2".into())
            ]
        );
    }

    pub(super) async fn deleting_a_pipeline_forgets_only_its_positions(subject: &dyn Subject) {
        let store = subject.open().await;
        store.set_position("p", "a", &"1".into()).await.unwrap();
        store.set_position("p", "b", &"2".into()).await.unwrap();
        store.set_position("pq", "a", &"3".into()).await.unwrap();
        store.delete_pipeline("p").await.unwrap();
        assert_eq!(store.position("p", "a").await.unwrap(), None);
        assert_eq!(store.position("p", "b").await.unwrap(), None);
        assert_eq!(store.position("pq", "a").await.unwrap(), Some("3".into()));
    }

    pub(super) async fn documents_are_kept_replaced_and_deleted_apart_from_positions(
        subject: &dyn Subject,
    ) {
        let store = subject.open().await;
        assert_eq!(store.documents().await.unwrap(), Vec::new());
        store.set_document("b", b"{\"id\":\"b\"}").await.unwrap();
        store.set_document("a", b"first").await.unwrap();
        store.set_document("a", b"second").await.unwrap();
        assert_eq!(
            store.documents().await.unwrap(),
            [
                ("a".to_owned(), b"second".to_vec()),
                ("b".to_owned(), b"{\"id\":\"b\"}".to_vec())
            ]
        );
        store.delete_document("b").await.unwrap();
        store.delete_document("never").await.unwrap();
        assert_eq!(
            store.documents().await.unwrap(),
            [("a".to_owned(), b"second".to_vec())]
        );
        assert_eq!(store.positions("a").await.unwrap(), Vec::new());
    }

    pub(super) async fn entries_are_kept_by_kind_replaced_and_deleted_apart_from_the_rest(
        subject: &dyn Subject,
    ) {
        let store = subject.open().await;
        assert_eq!(store.entries("k").await.unwrap(), Vec::new());
        store.set_entry("k", "b", b"2").await.unwrap();
        store.set_entry("k", "a", b"first").await.unwrap();
        store.set_entry("k", "a", b"second").await.unwrap();
        store.set_entry("kk", "a", b"other kind").await.unwrap();
        store.set_position("k", "a", &"1".into()).await.unwrap();
        assert_eq!(
            store.entries("k").await.unwrap(),
            [
                ("a".to_owned(), b"second".to_vec()),
                ("b".to_owned(), b"2".to_vec())
            ]
        );
        assert_eq!(store.entry("k", "b").await.unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.entry("k", "c").await.unwrap(), None);
        store.delete_entry("k", "b").await.unwrap();
        store.delete_entry("k", "never").await.unwrap();
        assert_eq!(
            store.entries("k").await.unwrap(),
            [("a".to_owned(), b"second".to_vec())]
        );
        assert_eq!(
            store.entries("kk").await.unwrap(),
            [("a".to_owned(), b"other kind".to_vec())]
        );
        assert_eq!(store.documents().await.unwrap(), Vec::new());
        assert_eq!(store.position("k", "a").await.unwrap(), Some("1".into()));
    }

    pub(super) async fn concurrent_commits_all_land_in_fewer_round_trips_than_commits(
        subject: &dyn Subject,
    ) {
        let store = subject.open().await;
        let before = store.write_round_trips();
        let commits = 200;
        let mut tasks = Vec::new();
        for i in 0..commits {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                store
                    .set_position(&format!("p{i}"), "src", &i.to_string().into())
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        for i in 0..commits {
            assert_eq!(
                store.position(&format!("p{i}"), "src").await.unwrap(),
                Some(i.to_string().into())
            );
        }
        if let (Some(before), Some(after)) = (before, store.write_round_trips()) {
            let round_trips = after - before;
            assert!(
                round_trips <= commits / 2,
                "{commits} concurrent commits took {round_trips} round trips: no group commit"
            );
        }
    }

    pub(super) async fn positions_documents_and_entries_survive_reopening_the_store(
        subject: &dyn Subject,
    ) {
        {
            let store = subject.open().await;
            store.set_position("p", "src", &"41".into()).await.unwrap();
            store.set_position("p", "src", &"42".into()).await.unwrap();
            store.set_position("q", "src", &"7".into()).await.unwrap();
            store.set_document("p", b"document").await.unwrap();
            store.set_entry("schemas", "s", b"schema").await.unwrap();
        }
        let store = subject.open().await;
        assert_eq!(store.position("p", "src").await.unwrap(), Some("42".into()));
        assert_eq!(store.position("q", "src").await.unwrap(), Some("7".into()));
        assert_eq!(
            store.documents().await.unwrap(),
            [("p".to_owned(), b"document".to_vec())]
        );
        assert_eq!(
            store.entries("schemas").await.unwrap(),
            [("s".to_owned(), b"schema".to_vec())]
        );
    }

    pub(super) async fn a_damaged_position_is_refused_naming_it_never_read(subject: &dyn Subject) {
        {
            let store = subject.open().await;
            store
                .set_position("p", "src", &"position-41".into())
                .await
                .unwrap();
            store.set_position("q", "src", &"7".into()).await.unwrap();
        }
        subject.damage("p", Some("src")).await;
        // The store checks every position as it opens.
        let err = corrupt_message(subject.try_open().await.err().unwrap());
        assert!(
            err.contains("pipeline \"p\", connector \"src\""),
            "the error names the damaged position: {err}"
        );
        assert!(err.contains("corrupt"), "{err}");
    }

    pub(super) async fn a_damaged_document_is_refused_naming_the_pipeline(subject: &dyn Subject) {
        {
            let store = subject.open().await;
            store.set_document("orders", b"document").await.unwrap();
        }
        subject.damage("orders", None).await;
        let store = subject.open().await;
        let err = corrupt_message(store.documents().await.unwrap_err());
        assert!(err.contains("\"orders\""), "{err}");
    }

    pub(super) async fn a_store_written_by_a_newer_funnel_is_refused_naming_the_way_out(
        subject: &dyn Subject,
    ) {
        keep_one_position(subject).await;
        subject.newer_format().await;
        let err = subject.try_open().await.err().unwrap().to_string();
        assert!(
            err.contains(&format!("{}", funnel_store::FORMAT_VERSION + 1)),
            "the error names the store's version: {err}"
        );
        assert!(err.contains("run a newer funnel"), "{err}");
    }

    pub(super) async fn a_damaged_format_header_is_refused_not_taken_for_a_new_store(
        subject: &dyn Subject,
    ) {
        keep_one_position(subject).await;
        subject.damage_format().await;
        let err = corrupt_message(subject.try_open().await.err().unwrap());
        assert!(err.contains("format") && err.contains("damaged"), "{err}");
    }
}

/// One test per named [`suite`] function, run against `$subject`.
macro_rules! tests {
    ($subject:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $test() {
                suite::$test(&$subject).await;
            }
        )*
    };
}

/// The tests of [`suite`] for one store: `all` for every store, `durable` for those
/// that can be opened again and damaged.
macro_rules! suite {
    ($name:ident, $subject:expr, all) => {
        mod $name {
            use super::*;

            tests!(
                $subject;
                positions_are_kept_per_pipeline_and_connector,
                deleting_a_pipeline_forgets_only_its_positions,
                documents_are_kept_replaced_and_deleted_apart_from_positions,
                entries_are_kept_by_kind_replaced_and_deleted_apart_from_the_rest,
                concurrent_commits_all_land_in_fewer_round_trips_than_commits,
            );
        }
    };
    ($name:ident, $subject:expr, durable) => {
        mod $name {
            use super::*;

            suite!(common, $subject, all);

            tests!(
                $subject;
                positions_documents_and_entries_survive_reopening_the_store,
                a_damaged_position_is_refused_naming_it_never_read,
                a_damaged_document_is_refused_naming_the_pipeline,
                a_store_written_by_a_newer_funnel_is_refused_naming_the_way_out,
                a_damaged_format_header_is_refused_not_taken_for_a_new_store,
            );
        }
    };
}

suite!(memory, Memory, all);
suite!(redb, Redb::new(), durable);

#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use funnel_store::PostgresStore;

    /// The local test server.
    pub(super) const CONNECTION: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

    /// A table of its own in the local server.
    pub(super) struct Postgres {
        pub(super) table: String,
    }

    impl Postgres {
        pub(super) fn new() -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let table = format!("store_{}_{nanos}", std::process::id());
            Self { table }
        }
    }

    #[async_trait]
    impl Subject for Postgres {
        async fn try_open(&self) -> Result<Arc<dyn Store>, StoreError> {
            Ok(Arc::new(
                PostgresStore::open(CONNECTION, &self.table).await?,
            ))
        }

        async fn damage(&self, pipeline: &str, connector: Option<&str>) {
            let key = match connector {
                Some(c) => format!("funnel:position:{pipeline}' || chr(1) || '{c}"),
                None => format!("funnel:document:{pipeline}"),
            };
            // The last byte of the value, changed.
            let changed = funnel_test_utils::pg::psql(&format!(
                "UPDATE {table} SET value = set_byte(value, length(value) - 1, \
                 get_byte(value, length(value) - 1) # 1) WHERE key = '{key}' RETURNING key",
                table = self.table
            ))
            .unwrap();
            assert!(!changed.is_empty(), "no row {key} to damage");
        }

        async fn newer_format(&self) {
            // The magic number `FUNNELDB`, then the next version, both big-endian.
            self.set_format(&format!(
                "'\\x46554e4e454c4442'::bytea || int8send({})",
                funnel_store::FORMAT_VERSION + 1
            ));
        }

        async fn damage_format(&self) {
            self.set_format("'\\x00'::bytea");
        }
    }

    impl Postgres {
        /// Replaces the value of the format row with the SQL expression `value`.
        fn set_format(&self, value: &str) {
            let changed = funnel_test_utils::pg::psql(&format!(
                "UPDATE {table} SET value = {value} WHERE key = 'funnel:format' RETURNING key",
                table = self.table
            ))
            .unwrap();
            assert!(!changed.is_empty(), "no format row in {}", self.table);
        }
    }
}

#[cfg(feature = "postgres")]
use pg::Postgres;

#[cfg(feature = "postgres")]
suite!(postgres, Postgres::new(), durable);
