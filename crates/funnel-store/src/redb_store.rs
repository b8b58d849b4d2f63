//! The embedded store: one redb file, checked on open and on every read.
//!
//! Every call into redb runs under [`guarded`], so a panic of the storage library on a
//! damaged file becomes a [`StoreError::Corrupt`] naming the file instead of ending
//! the process.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use async_trait::async_trait;
use funnel_record::Position;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use tokio::sync::oneshot;

use crate::format::{self, MAGIC, MAGIC_KEY, UNCHECKED_FORMAT, VERSION_KEY};
use crate::{FORMAT_VERSION, Store, StoreError, key};

pub(crate) const POSITIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("positions");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Pipelines created through the API: pipeline ID to its document, checksummed like a
/// position.
pub(crate) const DOCUMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("documents");
/// Entries by kind: `kind\0key` to the value, checksummed like a position.
pub(crate) const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

/// Runs `f`, turning a panic into [`StoreError::Corrupt`]: redb may panic on a file
/// that was changed behind its back.
pub(crate) fn guarded<T>(
    path: &Path,
    doing: &str,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Nothing `f` touches is used again after a panic but through `Result`s that report
    // the store as corrupt, so no broken invariant can be observed.
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "the storage library failed while {doing}: {}",
                panic_message(payload.as_ref())
            ),
        })
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

/// A redb error as a store error: damage is [`StoreError::Corrupt`].
pub(crate) fn storage_error(path: &Path, error: impl Into<redb::Error>) -> StoreError {
    let path = path.to_path_buf();
    match error.into() {
        redb::Error::Corrupted(detail) => StoreError::Corrupt { path, detail },
        // redb's "Not a redb database: magic number mismatch": the file was overwritten,
        // or --db.redb.path names a file that never was a store.
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => StoreError::Corrupt {
            path,
            detail: format!(
                "{e} (its first bytes are not a store's; if --db.redb.path names the wrong \
                 file, point it at the store instead)"
            ),
        },
        redb::Error::DatabaseAlreadyOpen => StoreError::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                "the file is open in another funnel process; stop that one first",
            ),
        ),
        redb::Error::Io(e) => StoreError::io(&path, e),
        other => StoreError::io(&path, std::io::Error::other(other)),
    }
}

/// How the redb file was opened.
pub(crate) struct Opened {
    pub(crate) db: Database,
    /// redb found the last commit damaged and went back to the one before it.
    pub(crate) fell_back: bool,
}

/// Opens the redb file at `path` with redb's own integrity check (the checksum of
/// every page), creating it (see [`create_store`]) when it is missing and `create` is
/// set. An empty file is refused: it is a store that lost its content, not a new one.
pub(crate) fn open_database(path: &Path, create: bool) -> Result<Opened, StoreError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Err(StoreError::Missing {
                    path: path.to_path_buf(),
                });
            }
            create_store(path)?;
            open_database(path, false)
        }
        Err(e) => Err(StoreError::io(path, e)),
        Ok(meta) if !meta.is_file() => Err(StoreError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        )),
        Ok(meta) if meta.len() == 0 => Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: "the file is empty (0 bytes): whatever it held is gone".into(),
        }),
        Ok(_) => {
            let fell_back = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&fell_back);
            let db = guarded(path, "opening the file", || {
                Database::builder()
                    .set_check_integrity_on_open(true)
                    .set_repair_callback(move |session| {
                        // redb reports progress 0.3 exactly when the last commit failed its
                        // checksums and it is about to fall back to the previous one.
                        if (session.progress() - 0.3).abs() < 0.01 {
                            flag.store(true, Ordering::Relaxed);
                        }
                    })
                    .open(path)
                    .map_err(|e| storage_error(path, e))
            })?;
            Ok(Opened {
                db,
                fell_back: fell_back.load(Ordering::Relaxed),
            })
        }
    }
}

/// The temporary file a new store at `path` is made in: `<name>.creating`, beside it.
pub(crate) fn creating_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".creating");
    path.with_file_name(name)
}

/// Creates a new, empty store at `path` in one step, so that a process killed while
/// creating it never leaves a file there that is not a whole store (which the next
/// start would refuse as damaged). The store, format header included, is made and
/// synced under [`creating_path`], then linked to `path`, and the directory synced. A
/// file left at the temporary path by a creation that was killed is made anew; when
/// another process created `path` meanwhile, its store is kept.
fn create_store(path: &Path) -> Result<(), StoreError> {
    let creating = creating_path(path);
    match std::fs::remove_file(&creating) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(StoreError::io(&creating, e));
        }
        _ => {}
    }
    {
        let db = guarded(path, "creating the file", || {
            Database::builder()
                .create(&creating)
                .map_err(|e| storage_error(path, e))
        })?;
        // A new file has no header and no positions: this writes the header, with
        // immediate durability (synced to disk).
        guarded(path, "writing the format header", || prepare(&db, path))?;
    }
    let linked = match std::fs::hard_link(&creating, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A file system without hard links: `path` was missing a moment ago.
        Err(_) => std::fs::rename(&creating, path),
        Ok(()) => Ok(()),
    };
    let _ = std::fs::remove_file(&creating);
    linked.map_err(|e| StoreError::io(path, e))?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(directory)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(directory, e))
}

/// The format header of an open file.
pub(crate) struct Header {
    pub(crate) magic: Option<u64>,
    pub(crate) version: Option<u64>,
    pub(crate) has_positions: bool,
}

pub(crate) fn read_header(db: &Database, path: &Path) -> Result<Header, StoreError> {
    let err = |e: redb::Error| storage_error(path, e);
    let read = db.begin_read().map_err(|e| err(e.into()))?;
    let (magic, version) = match read.open_table(META) {
        Ok(meta) => (
            meta.get(MAGIC_KEY)
                .map_err(|e| err(e.into()))?
                .map(|v| v.value()),
            meta.get(VERSION_KEY)
                .map_err(|e| err(e.into()))?
                .map(|v| v.value()),
        ),
        Err(redb::TableError::TableDoesNotExist(_)) => (None, None),
        Err(e) => return Err(err(e.into())),
    };
    let has_positions = match read.open_table(POSITIONS) {
        Ok(table) => !table.is_empty().map_err(|e| err(e.into()))?,
        Err(redb::TableError::TableDoesNotExist(_)) => false,
        Err(e) => return Err(err(e.into())),
    };
    Ok(Header {
        magic,
        version,
        has_positions,
    })
}

/// Writes the format header, converting format-1 values to checksummed ones.
pub(crate) fn write_header(db: &Database, path: &Path, migrate: bool) -> Result<(), StoreError> {
    let err = |e: redb::Error| storage_error(path, e);
    let mut write = db.begin_write().map_err(|e| err(e.into()))?;
    write
        .set_durability(Durability::Immediate)
        .map_err(|e| err(e.into()))?;
    {
        let mut positions = write.open_table(POSITIONS).map_err(|e| err(e.into()))?;
        if migrate {
            let mut old = Vec::new();
            for entry in positions.iter().map_err(|e| err(e.into()))? {
                let (k, v) = entry.map_err(|e| err(e.into()))?;
                old.push((k.value().to_owned(), v.value().to_vec()));
            }
            for (k, v) in old {
                positions
                    .insert(k.as_str(), format::encode(&k, &v).as_slice())
                    .map_err(|e| err(e.into()))?;
            }
        }
        let mut meta = write.open_table(META).map_err(|e| err(e.into()))?;
        meta.insert(MAGIC_KEY, MAGIC).map_err(|e| err(e.into()))?;
        meta.insert(VERSION_KEY, FORMAT_VERSION)
            .map_err(|e| err(e.into()))?;
    }
    write.commit().map_err(|e| err(e.into()))
}

/// Checks the format header (writing it into a new file, migrating a format-1 file)
/// and every stored position; returns the keys of the positions.
pub(crate) fn prepare(db: &Database, path: &Path) -> Result<Vec<String>, StoreError> {
    let header = read_header(db, path)?;
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    match (header.magic, header.version) {
        (_, Some(found)) if found > FORMAT_VERSION => {
            return Err(StoreError::NewerFormat {
                path: path.to_path_buf(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        (Some(MAGIC), Some(FORMAT_VERSION)) => {}
        (None, Some(UNCHECKED_FORMAT)) => write_header(db, path, true)?,
        (None, None) if !header.has_positions => write_header(db, path, false)?,
        (magic, version) => {
            return Err(corrupt(format!(
                "its format header is damaged or missing (magic {magic:?}, version {version:?})"
            )));
        }
    }
    let entries = read_all(db, path, true)?;
    let damaged: Vec<String> = entries
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .err()
                .map(|why| format!("{}: {why}", format::describe(k)))
        })
        .collect();
    if !damaged.is_empty() {
        return Err(corrupt(format!(
            "{} damaged position(s): {}",
            damaged.len(),
            damaged.join("; ")
        )));
    }
    Ok(entries.into_iter().map(|(k, _)| k).collect())
}

/// Every stored key with its decoded position, or what is wrong with it.
pub(crate) type Entries = Vec<(String, Result<Vec<u8>, String>)>;

/// Reads every stored position, decoded (`checked`) or as stored (format 1).
pub(crate) fn read_all(db: &Database, path: &Path, checked: bool) -> Result<Entries, StoreError> {
    let err = |e: redb::Error| storage_error(path, e);
    let read = db.begin_read().map_err(|e| err(e.into()))?;
    let table = match read.open_table(POSITIONS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(err(e.into())),
    };
    let mut entries = Vec::new();
    for entry in table.iter().map_err(|e| err(e.into()))? {
        let (k, v) = entry.map_err(|e| err(e.into()))?;
        let k = k.value().to_owned();
        let decoded = if checked {
            format::decode(&k, v.value()).map(<[u8]>::to_vec)
        } else {
            Ok(v.value().to_vec())
        };
        entries.push((k, decoded));
    }
    Ok(entries)
}

enum Request {
    Set(String, Position, oneshot::Sender<Result<(), StoreError>>),
    Delete(String, oneshot::Sender<Result<(), StoreError>>),
    SetDocument(String, Vec<u8>, oneshot::Sender<Result<(), StoreError>>),
    DeleteDocument(String, oneshot::Sender<Result<(), StoreError>>),
    SetEntry(String, Vec<u8>, oneshot::Sender<Result<(), StoreError>>),
    DeleteEntry(String, oneshot::Sender<Result<(), StoreError>>),
}

/// The embedded store (`--db.type redb`, `./funnel.db` by default): one redb file.
///
/// Writes go through one writer thread that commits every request waiting at the
/// time in a single durable transaction (group commit), so many pipelines committing
/// at once share one fsync. Every position carries a checksum verified on read, and
/// the file a format header verified on open.
pub struct RedbStore {
    path: PathBuf,
    db: Arc<Database>,
    writer: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    transactions: Arc<AtomicU64>,
}

impl RedbStore {
    /// Opens the store at `path`, creating it when the file does not exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::NewerFormat`] for a file from a newer Funnel,
    /// [`StoreError::Corrupt`] for a damaged or empty file (every position is verified
    /// here), [`StoreError::Io`] when it cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path.as_ref(), true)
    }

    /// Opens the store at `path`, which must exist: nothing is created.
    ///
    /// # Errors
    ///
    /// [`StoreError::Missing`] when there is no file at `path`, and those of
    /// [`RedbStore::open`].
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path.as_ref(), false)
    }

    fn open_with(path: &Path, create: bool) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let opened = open_database(&path, create)?;
        if opened.fell_back {
            tracing::warn!(
                path = %path.display(),
                "the store's last commit was damaged (a crash during a write, or a changed \
                 file); it went back to the commit before, so sources resume from their \
                 previous position and some records may be delivered again"
            );
        }
        let db = opened.db;
        guarded(&path, "reading the format header and positions", || {
            prepare(&db, &path)
        })?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        let writer_path = path.clone();
        let transactions = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&transactions);
        let thread = std::thread::Builder::new()
            .name("funnel-store".into())
            .spawn(move || write_loop(&writer_db, &writer_path, &rx, &counted))
            .map_err(|e| StoreError::io(&path, e))?;
        Ok(Self {
            path,
            db,
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            transactions,
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

    fn decode(&self, key: &str, stored: &[u8]) -> Result<Position, StoreError> {
        format::decode(key, stored)
            .map(|p| Position::from(p.to_vec()))
            .map_err(|why| StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!(
                    "the position of {} is damaged: {why}",
                    format::describe(key)
                ),
            })
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(db: &Database, path: &Path, rx: &mpsc::Receiver<Request>, transactions: &AtomicU64) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        transactions.fetch_add(1, Ordering::Relaxed);
        let result = guarded(path, "writing positions", || {
            commit(db, &batch).map_err(|e| storage_error(path, e))
        });
        for request in batch {
            let reply = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(e.clone()),
            };
            let tx = match request {
                Request::Set(_, _, tx)
                | Request::Delete(_, tx)
                | Request::SetDocument(_, _, tx)
                | Request::DeleteDocument(_, tx)
                | Request::SetEntry(_, _, tx)
                | Request::DeleteEntry(_, tx) => tx,
            };
            // The caller may have gone away; nothing to tell it then.
            let _ = tx.send(reply);
        }
    }
}

fn commit(db: &Database, batch: &[Request]) -> Result<(), redb::Error> {
    let mut write = db.begin_write()?;
    write.set_durability(Durability::Immediate)?;
    {
        let mut positions = write.open_table(POSITIONS)?;
        let mut documents = write.open_table(DOCUMENTS)?;
        let mut entries = write.open_table(ENTRIES)?;
        for request in batch {
            match request {
                Request::Set(key, position, _) => {
                    positions.insert(
                        key.as_str(),
                        format::encode(key, position.as_bytes()).as_slice(),
                    )?;
                }
                Request::Delete(prefix, _) => {
                    let mut keys = Vec::new();
                    for entry in positions.range(prefix.as_str()..)? {
                        let (k, _) = entry?;
                        let k = k.value();
                        if !k.starts_with(prefix.as_str()) {
                            break;
                        }
                        keys.push(k.to_owned());
                    }
                    for k in keys {
                        positions.remove(k.as_str())?;
                    }
                }
                Request::SetDocument(pipeline, document, _) => {
                    documents.insert(
                        pipeline.as_str(),
                        format::encode(pipeline, document).as_slice(),
                    )?;
                }
                Request::DeleteDocument(pipeline, _) => {
                    documents.remove(pipeline.as_str())?;
                }
                Request::SetEntry(key, value, _) => {
                    entries.insert(key.as_str(), format::encode(key, value).as_slice())?;
                }
                Request::DeleteEntry(key, _) => {
                    entries.remove(key.as_str())?;
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
        let key = key(pipeline, connector);
        guarded(&self.path, "reading a position", || {
            let err = |e: redb::Error| storage_error(&self.path, e);
            let read = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = read.open_table(POSITIONS).map_err(|e| err(e.into()))?;
            let value = table.get(key.as_str()).map_err(|e| err(e.into()))?;
            value.map(|v| self.decode(&key, v.value())).transpose()
        })
    }

    async fn positions(&self, pipeline: &str) -> Result<Vec<(String, Position)>, StoreError> {
        let prefix = format!("{pipeline}\u{0}");
        guarded(&self.path, "reading positions", || {
            let err = |e: redb::Error| storage_error(&self.path, e);
            let read = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = read.open_table(POSITIONS).map_err(|e| err(e.into()))?;
            let mut found = Vec::new();
            for entry in table.range(prefix.as_str()..).map_err(|e| err(e.into()))? {
                let (k, v) = entry.map_err(|e| err(e.into()))?;
                let Some(connector) = k.value().strip_prefix(prefix.as_str()) else {
                    break;
                };
                found.push((connector.to_owned(), self.decode(k.value(), v.value())?));
            }
            Ok(found)
        })
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

    async fn documents(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        guarded(&self.path, "reading pipeline documents", || {
            let err = |e: redb::Error| storage_error(&self.path, e);
            let read = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = match read.open_table(DOCUMENTS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(err(e.into())),
            };
            let mut found = Vec::new();
            for entry in table.iter().map_err(|e| err(e.into()))? {
                let (k, v) = entry.map_err(|e| err(e.into()))?;
                let document =
                    format::decode(k.value(), v.value()).map_err(|why| StoreError::Corrupt {
                        path: self.path.clone(),
                        detail: format!(
                            "the document of pipeline {:?} is damaged: {why}",
                            k.value()
                        ),
                    })?;
                found.push((k.value().to_owned(), document.to_vec()));
            }
            Ok(found)
        })
    }

    async fn set_document(&self, pipeline: &str, document: &[u8]) -> Result<(), StoreError> {
        let pipeline = pipeline.to_owned();
        let document = document.to_vec();
        self.request(move |tx| Request::SetDocument(pipeline, document, tx))
            .await
    }

    async fn delete_document(&self, pipeline: &str) -> Result<(), StoreError> {
        let pipeline = pipeline.to_owned();
        self.request(move |tx| Request::DeleteDocument(pipeline, tx))
            .await
    }

    async fn entries(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = key(kind, "");
        guarded(&self.path, "reading entries", || {
            let err = |e: redb::Error| storage_error(&self.path, e);
            let read = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = match read.open_table(ENTRIES) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(err(e.into())),
            };
            let mut found = Vec::new();
            for entry in table.range(prefix.as_str()..).map_err(|e| err(e.into()))? {
                let (k, v) = entry.map_err(|e| err(e.into()))?;
                let Some(name) = k.value().strip_prefix(prefix.as_str()) else {
                    break;
                };
                let value =
                    format::decode(k.value(), v.value()).map_err(|why| StoreError::Corrupt {
                        path: self.path.clone(),
                        detail: format!("the {kind} entry {name:?} is damaged: {why}"),
                    })?;
                found.push((name.to_owned(), value.to_vec()));
            }
            Ok(found)
        })
    }

    async fn set_entry(&self, kind: &str, entry: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = key(kind, entry);
        let value = value.to_vec();
        self.request(move |tx| Request::SetEntry(key, value, tx))
            .await
    }

    async fn delete_entry(&self, kind: &str, entry: &str) -> Result<(), StoreError> {
        let key = key(kind, entry);
        self.request(move |tx| Request::DeleteEntry(key, tx)).await
    }

    fn write_round_trips(&self) -> Option<u64> {
        Some(self.transactions.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_of_the_storage_library_becomes_a_corrupt_store_error_naming_the_file() {
        let path = Path::new("/var/lib/funnel/funnel.db");
        let result: Result<(), StoreError> = guarded(path, "reading a position", || {
            unreachable!("a damaged page")
        });
        let err = result.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("/var/lib/funnel/funnel.db"), "{text}");
        assert!(text.contains("a damaged page"), "{text}");
        assert!(text.contains("funnel store repair"), "{text}");
    }
}
