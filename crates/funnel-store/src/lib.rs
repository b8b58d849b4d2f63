//! Where Funnel keeps what must survive a restart: the last committed position of
//! every source.
//!
//! [`Store`] is the interface; [`RedbStore`] (an embedded, crash-safe file, the
//! default) and [`MemoryStore`] (nothing survives the process) implement it.
//! [`StoreCommitter`] plugs a store into the engine, which commits a position before
//! acking it to its source (DESIGN.md I1).
//!
//! This crate must never depend on configuration, connectors or the runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use async_trait::async_trait;
use funnel_core::{ConnectorError, PositionCommitter};
use funnel_record::Position;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

/// The store format this build writes and reads.
pub const FORMAT_VERSION: u64 = 1;

const POSITIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("positions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// What went wrong with a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store file was written by a newer Funnel.
    #[error(
        "the store {path} has format version {found}, but this funnel reads up to version \
         {supported}; run a newer funnel, or point --db.redb.path at another file"
    )]
    NewerFormat {
        /// The store file.
        path: PathBuf,
        /// Its format version.
        found: u64,
        /// The newest version this build reads.
        supported: u64,
    },
    /// The store file could not be opened, read or written.
    #[error("store {path}: {message}")]
    Io {
        /// The store file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
}

/// Durable state of the pipelines: source positions.
#[async_trait]
pub trait Store: Send + Sync {
    /// The last committed position of `connector` in `pipeline`, if any.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    async fn position(
        &self,
        pipeline: &str,
        connector: &str,
    ) -> Result<Option<Position>, StoreError>;

    /// Durably records `position` as the last committed position of `connector` in
    /// `pipeline`. Returns once it is on disk.
    ///
    /// # Errors
    ///
    /// When the store cannot be written.
    async fn set_position(
        &self,
        pipeline: &str,
        connector: &str,
        position: &Position,
    ) -> Result<(), StoreError>;

    /// Forgets every position of `pipeline`.
    ///
    /// # Errors
    ///
    /// When the store cannot be written.
    async fn delete_pipeline(&self, pipeline: &str) -> Result<(), StoreError>;
}

fn key(pipeline: &str, connector: &str) -> String {
    format!("{pipeline}\u{0}{connector}")
}

/// A store that keeps positions in memory only (`--db.type memory`).
#[derive(Debug, Default)]
pub struct MemoryStore {
    positions: Mutex<HashMap<String, Position>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn position(
        &self,
        pipeline: &str,
        connector: &str,
    ) -> Result<Option<Position>, StoreError> {
        let positions = self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(positions.get(&key(pipeline, connector)).cloned())
    }

    async fn set_position(
        &self,
        pipeline: &str,
        connector: &str,
        position: &Position,
    ) -> Result<(), StoreError> {
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key(pipeline, connector), position.clone());
        Ok(())
    }

    async fn delete_pipeline(&self, pipeline: &str) -> Result<(), StoreError> {
        let prefix = format!("{pipeline}\u{0}");
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| !k.starts_with(&prefix));
        Ok(())
    }
}

enum Request {
    Set(String, Position, oneshot::Sender<Result<(), StoreError>>),
    Delete(String, oneshot::Sender<Result<(), StoreError>>),
}

/// The embedded store (`--db.type redb`, `./funnel.db` by default): one redb file.
///
/// Writes go through one writer thread that commits every request waiting at the
/// time in a single durable transaction (group commit), so many pipelines committing
/// at once share one fsync.
pub struct RedbStore {
    path: PathBuf,
    db: Arc<Database>,
    writer: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl RedbStore {
    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NewerFormat`] for a file from a newer Funnel, [`StoreError::Io`]
    /// when it cannot be opened or is not a store.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let io = |e: &dyn std::fmt::Display| StoreError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        let db = Database::create(&path).map_err(|e| io(&e))?;
        let found = {
            let read = db.begin_read().map_err(|e| io(&e))?;
            match read.open_table(META) {
                Ok(table) => table
                    .get("format_version")
                    .map_err(|e| io(&e))?
                    .map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(io(&e)),
            }
        };
        match found {
            Some(found) if found > FORMAT_VERSION => {
                return Err(StoreError::NewerFormat {
                    path,
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            Some(_) => {}
            None => {
                let write = db.begin_write().map_err(|e| io(&e))?;
                {
                    let mut meta = write.open_table(META).map_err(|e| io(&e))?;
                    meta.insert("format_version", FORMAT_VERSION)
                        .map_err(|e| io(&e))?;
                    write.open_table(POSITIONS).map_err(|e| io(&e))?;
                }
                write.commit().map_err(|e| io(&e))?;
            }
        }
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        let writer_path = path.clone();
        let thread = std::thread::Builder::new()
            .name("funnel-store".into())
            .spawn(move || write_loop(&writer_db, &writer_path, &rx))
            .map_err(|e| io(&e))?;
        Ok(Self {
            path,
            db,
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn request(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), StoreError>>) -> Request,
    ) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(writer) = writer.as_ref() else {
                return Err(StoreError::Closed);
            };
            writer.send(make(tx)).map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops the writer thread after the writes already asked for; later writes fail
    /// with [`StoreError::Closed`].
    pub fn close(&self) {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the store's writer thread panicked");
        }
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(db: &Database, path: &Path, rx: &mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = commit(db, &batch).map_err(|message| message.to_string());
        for request in batch {
            let reply = match &result {
                Ok(()) => Ok(()),
                Err(message) => Err(StoreError::Io {
                    path: path.to_path_buf(),
                    message: message.clone(),
                }),
            };
            let tx = match request {
                Request::Set(_, _, tx) | Request::Delete(_, tx) => tx,
            };
            // The caller may have gone away; nothing to tell it then.
            let _ = tx.send(reply);
        }
    }
}

fn commit(db: &Database, batch: &[Request]) -> Result<(), Box<dyn std::error::Error>> {
    let mut write = db.begin_write()?;
    write.set_durability(Durability::Immediate)?;
    {
        let mut table = write.open_table(POSITIONS)?;
        for request in batch {
            match request {
                Request::Set(key, position, _) => {
                    table.insert(key.as_str(), position.as_bytes())?;
                }
                Request::Delete(prefix, _) => {
                    let keys: Vec<String> = table
                        .range(prefix.as_str()..)?
                        .map_while(|entry| {
                            entry
                                .ok()
                                .map(|(k, _)| k.value().to_owned())
                                .filter(|k| k.starts_with(prefix.as_str()))
                        })
                        .collect();
                    for k in keys {
                        table.remove(k.as_str())?;
                    }
                }
            }
        }
    }
    write.commit()?;
    Ok(())
}

#[async_trait]
impl Store for RedbStore {
    async fn position(
        &self,
        pipeline: &str,
        connector: &str,
    ) -> Result<Option<Position>, StoreError> {
        let io = |e: &dyn std::fmt::Display| StoreError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let read = self.db.begin_read().map_err(|e| io(&e))?;
        let table = read.open_table(POSITIONS).map_err(|e| io(&e))?;
        let value = table
            .get(key(pipeline, connector).as_str())
            .map_err(|e| io(&e))?;
        Ok(value.map(|v| Position::from(v.value().to_vec())))
    }

    async fn set_position(
        &self,
        pipeline: &str,
        connector: &str,
        position: &Position,
    ) -> Result<(), StoreError> {
        let key = key(pipeline, connector);
        let position = position.clone();
        self.request(move |tx| Request::Set(key, position, tx))
            .await
    }

    async fn delete_pipeline(&self, pipeline: &str) -> Result<(), StoreError> {
        let prefix = format!("{pipeline}\u{0}");
        self.request(move |tx| Request::Delete(prefix, tx)).await
    }
}

/// Commits a source's positions to a [`Store`] for the engine.
pub struct StoreCommitter {
    store: Arc<dyn Store>,
    pipeline: String,
    connector: String,
}

impl StoreCommitter {
    /// A committer of `connector`'s positions in `pipeline`.
    pub fn new(
        store: Arc<dyn Store>,
        pipeline: impl Into<String>,
        connector: impl Into<String>,
    ) -> Self {
        Self {
            store,
            pipeline: pipeline.into(),
            connector: connector.into(),
        }
    }
}

#[async_trait]
impl PositionCommitter for StoreCommitter {
    async fn commit(&self, position: &Position) -> Result<(), ConnectorError> {
        self.store
            .set_position(&self.pipeline, &self.connector, position)
            .await
            .map_err(ConnectorError::transient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_committed_position_survives_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("funnel.db");
        {
            let store = RedbStore::open(&path).unwrap();
            assert_eq!(store.position("p", "src").await.unwrap(), None);
            store.set_position("p", "src", &"41".into()).await.unwrap();
            store.set_position("p", "src", &"42".into()).await.unwrap();
            store.set_position("q", "src", &"7".into()).await.unwrap();
            store.close();
        }
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.position("p", "src").await.unwrap(), Some("42".into()));
        assert_eq!(store.position("q", "src").await.unwrap(), Some("7".into()));
    }

    #[tokio::test]
    async fn concurrent_commits_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path().join("s.db")).unwrap());
        let mut tasks = Vec::new();
        for i in 0..50 {
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
        for i in 0..50 {
            assert_eq!(
                store.position(&format!("p{i}"), "src").await.unwrap(),
                Some(i.to_string().into())
            );
        }
    }

    #[tokio::test]
    async fn deleting_a_pipeline_forgets_only_its_positions() {
        for store in [
            Arc::new(MemoryStore::new()) as Arc<dyn Store>,
            Arc::new(RedbStore::open(tempfile::tempdir().unwrap().keep().join("s.db")).unwrap()),
        ] {
            store.set_position("p", "a", &"1".into()).await.unwrap();
            store.set_position("p", "b", &"2".into()).await.unwrap();
            store.set_position("pq", "a", &"3".into()).await.unwrap();
            store.delete_pipeline("p").await.unwrap();
            assert_eq!(store.position("p", "a").await.unwrap(), None);
            assert_eq!(store.position("p", "b").await.unwrap(), None);
            assert_eq!(store.position("pq", "a").await.unwrap(), Some("3".into()));
        }
    }

    #[tokio::test]
    async fn a_store_from_a_newer_funnel_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        {
            let db = Database::create(&path).unwrap();
            let write = db.begin_write().unwrap();
            write
                .open_table(META)
                .unwrap()
                .insert("format_version", FORMAT_VERSION + 1)
                .unwrap();
            write.commit().unwrap();
        }
        let err = RedbStore::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::NewerFormat { found: 2, .. }));
        assert!(err.to_string().contains("run a newer funnel"), "{err}");
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        std::fs::write(&path, b"this is not a database").unwrap();
        assert!(matches!(RedbStore::open(&path), Err(StoreError::Io { .. })));
    }

    #[tokio::test]
    async fn the_memory_store_keeps_the_last_position() {
        let store = MemoryStore::new();
        store.set_position("p", "s", &"1".into()).await.unwrap();
        store.set_position("p", "s", &"2".into()).await.unwrap();
        assert_eq!(store.position("p", "s").await.unwrap(), Some("2".into()));
    }
}
