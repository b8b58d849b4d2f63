//! Where Funnel keeps what must survive a restart: the last committed position of
//! every source, the pipelines created through the API (as documents the store does
//! not read), and entries of other state by kind (the last active configuration of
//! standalone connector plugins, the schemas they registered).
//!
//! [`Store`] is the interface; [`RedbStore`] (an embedded, crash-safe file, the
//! default), [`PostgresStore`] (a table in PostgreSQL, with the cargo feature
//! `postgres`, shared by several `funnel` processes) and [`MemoryStore`] (nothing
//! survives the process) implement it. [`StoreCommitter`] plugs a store into the
//! engine, which commits a position before acking it to its source (DESIGN.md I1).
//!
//! For several processes sharing one store, [`Leases`] (the PostgreSQL store) says
//! which process runs which pipeline, and a [`Fence`] makes every position commit
//! conditional on still holding the pipeline's lease.
//!
//! A damaged store is never read as if it were fine: the redb file carries a format
//! header and every position a checksum, both verified, and a panic of the storage
//! library is caught here; each becomes [`StoreError::Corrupt`], naming the file and
//! how to recover ([`check`], [`repair`]). An empty file is damage, not a new store.
//!
//! This crate must never depend on configuration, connectors or the runtime.

mod fence;
mod format;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(feature = "postgres")]
mod postgres_store;
mod redb_store;
mod repair;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use funnel_core::{ConnectorError, PositionCommitter};
use funnel_record::Position;

pub use fence::{Fence, Lease, Leases};
#[cfg(feature = "postgres")]
pub use postgres_store::{Connect, DEFAULT_TABLE, PostgresStore};
pub use redb_store::RedbStore;
pub use repair::{CheckReport, RepairReport, check, repair};

/// The store format this build writes and reads (1: no checksums, migrated on open;
/// 2: a format header and a checksum per position).
pub const FORMAT_VERSION: u64 = 2;

/// What went wrong with a store.
#[derive(Clone, Debug, thiserror::Error)]
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
    /// The store file is damaged: a page, the format header or a position fails its
    /// checksum, the file is empty, or the storage library failed reading it.
    #[error(
        "the store {path} is corrupt: {detail}. Stop funnel, then restore the file from a \
         backup, or run `funnel store repair --db.redb.path {path}` to keep every intact \
         position (the damaged file is kept next to it; a source whose position is lost \
         starts again from its beginning)"
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is damaged.
        detail: String,
    },
    /// There is no store file where one was expected.
    #[error("there is no store at {path}; point --db.redb.path at the store funnel run uses")]
    Missing {
        /// The path that holds no file.
        path: PathBuf,
    },
    /// The store file could not be opened, read or written.
    #[error("store {path}: {source}")]
    Io {
        /// The store file.
        path: PathBuf,
        /// What went wrong: the operating system's error, or the storage library's
        /// wrapped in one (kind `Other`). Shared, so that every write of a failed
        /// commit gets the same error.
        source: Arc<std::io::Error>,
    },
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// The database holding the store could not be reached or refused a statement.
    #[error("store {store}: {detail}")]
    Database {
        /// The store (`postgres table conduit_kv_store at 127.0.0.1:5432`).
        store: String,
        /// What went wrong, with the server's message.
        detail: String,
    },
    /// A row of a store table is damaged: it fails its checksum, or the format row is
    /// missing or from a newer Funnel.
    #[error(
        "the store {store} is corrupt: {detail}. Stop funnel, then restore the table from \
         a backup, or delete the damaged row (a source whose position is deleted starts \
         again from its beginning)"
    )]
    CorruptTable {
        /// The store (`postgres table conduit_kv_store at 127.0.0.1:5432`).
        store: String,
        /// What is damaged.
        detail: String,
    },
    /// A fenced commit was refused: this process no longer holds the pipeline's lease
    /// (it expired, or another process took it over).
    #[error(
        "pipeline {pipeline}: the lease of epoch {epoch} is no longer held by {owner}; \
         another instance runs the pipeline now, so this one stops it"
    )]
    Fenced {
        /// The pipeline.
        pipeline: String,
        /// The instance that committed.
        owner: String,
        /// The lease epoch it committed under.
        epoch: i64,
    },
    /// The store cannot do this (leases and fenced commits need the PostgreSQL store).
    #[error("the {store} store cannot {what}; use --db.type postgres")]
    Unsupported {
        /// The kind of store.
        store: &'static str,
        /// What was asked of it.
        what: &'static str,
    },
}

impl StoreError {
    /// An I/O error about the file at `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }

    /// The same error, about the file at `path` (for a check run on a copy of it).
    pub(crate) fn about(self, path: &Path) -> Self {
        let path = path.to_path_buf();
        match self {
            Self::NewerFormat {
                found, supported, ..
            } => Self::NewerFormat {
                path,
                found,
                supported,
            },
            Self::Corrupt { detail, .. } => Self::Corrupt { path, detail },
            Self::Missing { .. } => Self::Missing { path },
            Self::Io { source, .. } => Self::Io { path, source },
            other => other,
        }
    }
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

    /// Every committed position of `pipeline`, as `(connector, position)`.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    async fn positions(&self, pipeline: &str) -> Result<Vec<(String, Position)>, StoreError>;

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

    /// Every pipeline document (a pipeline created through the API), as `(pipeline,
    /// document)`, by pipeline.
    ///
    /// # Errors
    ///
    /// When the store cannot be read, or a document fails its checksum.
    async fn documents(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Durably records `document` as the document of `pipeline`, replacing any.
    ///
    /// # Errors
    ///
    /// When the store cannot be written.
    async fn set_document(&self, pipeline: &str, document: &[u8]) -> Result<(), StoreError>;

    /// Forgets the document of `pipeline`.
    ///
    /// # Errors
    ///
    /// When the store cannot be written.
    async fn delete_document(&self, pipeline: &str) -> Result<(), StoreError>;

    /// Every entry of `kind` (a namespace such as `plugins.lastActive`), as `(key,
    /// value)`, by key.
    ///
    /// # Errors
    ///
    /// When the store cannot be read, or an entry fails its checksum.
    async fn entries(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// The entry `key` of `kind`, if any.
    ///
    /// # Errors
    ///
    /// Those of [`entries`](Self::entries).
    async fn entry(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .entries(kind)
            .await?
            .into_iter()
            .find_map(|(k, v)| (k == key).then_some(v)))
    }

    /// Durably records `value` as the entry `key` of `kind`, replacing any.
    ///
    /// # Errors
    ///
    /// When the store cannot be written.
    async fn set_entry(&self, kind: &str, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Forgets the entry `key` of `kind`.
    ///
    /// # Errors
    ///
    /// When the store cannot be written.
    async fn delete_entry(&self, kind: &str, key: &str) -> Result<(), StoreError>;

    /// Like [`set_position`](Self::set_position), but only while `fence` still holds
    /// its lease, checked in the same statement that writes the position: a process
    /// that lost the lease cannot overwrite the position of the one that took it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] when the lease is no longer held,
    /// [`StoreError::Unsupported`] for a store without leases, and those of
    /// `set_position`.
    async fn set_position_fenced(
        &self,
        pipeline: &str,
        connector: &str,
        position: &Position,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        let _ = (pipeline, connector, position, fence);
        Err(StoreError::Unsupported {
            store: "this",
            what: "commit a position under a lease",
        })
    }

    /// How many write transactions (round trips to the database) the store made so
    /// far, for stores that count them: group commit makes it lower than the number of
    /// writes asked for.
    fn write_round_trips(&self) -> Option<u64> {
        None
    }
}

pub(crate) fn key(pipeline: &str, connector: &str) -> String {
    format!("{pipeline}\u{0}{connector}")
}

/// A store that keeps positions in memory only (`--db.type memory`).
#[derive(Debug, Default)]
pub struct MemoryStore {
    positions: Mutex<HashMap<String, Position>>,
    documents: Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
    /// Entries by `key(kind, key)`.
    entries: Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
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

    async fn positions(&self, pipeline: &str) -> Result<Vec<(String, Position)>, StoreError> {
        let prefix = format!("{pipeline}\u{0}");
        let positions = self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<(String, Position)> = positions
            .iter()
            .filter_map(|(k, p)| Some((k.strip_prefix(&prefix)?.to_owned(), p.clone())))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
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

    async fn documents(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let documents = self
            .documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(documents
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn set_document(&self, pipeline: &str, document: &[u8]) -> Result<(), StoreError> {
        self.documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pipeline.to_owned(), document.to_vec());
        Ok(())
    }

    async fn delete_document(&self, pipeline: &str) -> Result<(), StoreError> {
        self.documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(pipeline);
        Ok(())
    }

    async fn entries(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = key(kind, "");
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(entries
            .range(prefix.clone()..)
            .map_while(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v.clone())))
            .collect())
    }

    async fn set_entry(&self, kind: &str, entry: &str, value: &[u8]) -> Result<(), StoreError> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key(kind, entry), value.to_vec());
        Ok(())
    }

    async fn delete_entry(&self, kind: &str, entry: &str) -> Result<(), StoreError> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(kind, entry));
        Ok(())
    }
}

/// Commits a source's positions to a [`Store`] for the engine.
pub struct StoreCommitter {
    store: Arc<dyn Store>,
    pipeline: String,
    connector: String,
    fence: Option<Arc<Fence>>,
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
            fence: None,
        }
    }

    /// Commits only under `fence` (see [`Store::set_position_fenced`]).
    #[must_use]
    pub fn fenced(mut self, fence: Arc<Fence>) -> Self {
        self.fence = Some(fence);
        self
    }
}

#[async_trait]
impl PositionCommitter for StoreCommitter {
    async fn commit(&self, position: &Position) -> Result<(), ConnectorError> {
        let committed = match &self.fence {
            None => {
                self.store
                    .set_position(&self.pipeline, &self.connector, position)
                    .await
            }
            Some(fence) => {
                // No round trip once the lease is known to be lost.
                fence.check()?;
                self.store
                    .set_position_fenced(&self.pipeline, &self.connector, position, fence)
                    .await
            }
        };
        committed.map_err(|e| match e {
            StoreError::Fenced { .. } => {
                // The database refused it: the lease is lost here too, so that nothing
                // counts this pipeline's hand-over as clean.
                if let Some(fence) = &self.fence {
                    fence.revoke();
                }
                ConnectorError::fatal(e)
            }
            StoreError::Unsupported { .. } => ConnectorError::fatal(e),
            e => ConnectorError::transient(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redb_store::META;
    use redb::Database;

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
        assert!(matches!(err, StoreError::NewerFormat { found: 3, .. }));
        assert!(err.to_string().contains("run a newer funnel"), "{err}");
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        std::fs::write(&path, b"this is not a database").unwrap();
        assert!(matches!(
            RedbStore::open(&path),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_read_fails_with_the_operating_systems_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the store file should be: not a regular file.
        let Err(StoreError::Io { source, .. }) = RedbStore::open(dir.path()) else {
            panic!("opening a directory as a store must fail with an I/O error");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput);
        let path = dir.path().join("missing").join("funnel.db");
        let Err(StoreError::Io { source, .. }) = RedbStore::open(&path) else {
            panic!("creating a store in a missing directory must fail with an I/O error");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    }
}
