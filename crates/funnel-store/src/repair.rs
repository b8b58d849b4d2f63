//! `funnel store check` and `funnel store repair`: what is wrong with a store file,
//! and a new file holding every position that is still intact.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::Database;

use crate::StoreError;
use crate::format::{self, UNCHECKED_FORMAT};
use crate::redb_store::{
    POSITIONS, guarded, open_database, prepare, read_all, read_header, storage_error, write_header,
};

/// What [`check`] found in a healthy store.
#[derive(Debug)]
pub struct CheckReport {
    /// Every stored position as `(pipeline, connector)`.
    pub positions: Vec<(String, String)>,
}

/// Checks the store at `path` as `funnel run` opens it: redb's page checksums, the
/// format header and the checksum of every position. A new store is not created.
///
/// # Errors
///
/// [`StoreError::Missing`] when there is no file, [`StoreError::Corrupt`] naming what
/// is damaged, [`StoreError::NewerFormat`] and [`StoreError::Io`] as for
/// [`RedbStore::open`](crate::RedbStore::open).
pub fn check(path: impl AsRef<Path>) -> Result<CheckReport, StoreError> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(StoreError::Missing {
            path: path.to_path_buf(),
        });
    }
    // redb's check may write to the file it checks; it checks a copy, so `check`
    // changes nothing.
    let scratch = free_name(path, "checking");
    std::fs::copy(path, &scratch).map_err(|e| StoreError::io(path, e))?;
    let keys = guarded(path, "checking the store", || {
        let opened = open_database(&scratch, false)?;
        prepare(&opened.db, &scratch)
    })
    .map_err(|e| e.about(path));
    // A leftover scratch file is harmless; it is named as one.
    let _ = std::fs::remove_file(&scratch);
    let keys = keys?;
    let positions = keys
        .into_iter()
        .map(|k| match k.split_once('\u{0}') {
            Some((p, c)) => (p.to_owned(), c.to_owned()),
            None => (k, String::new()),
        })
        .collect();
    Ok(CheckReport { positions })
}

/// What [`repair`] did.
#[derive(Debug)]
pub struct RepairReport {
    /// The untouched copy of the damaged file.
    pub backup: PathBuf,
    /// The positions kept, described as `pipeline "p", connector "c"`.
    pub kept: Vec<String>,
    /// The positions dropped, each with why: those sources start from their beginning.
    pub dropped: Vec<String>,
    /// Why nothing at all could be read, when that is the case.
    pub unreadable: Option<String>,
}

/// Repairs the store at `path`: copies it to a backup next to it, reads every position
/// whose checksum holds, and replaces the file with a new store holding just those.
/// A source whose position was dropped starts again from its beginning.
///
/// # Errors
///
/// [`StoreError::Missing`] when there is no file; [`StoreError::Io`] when the backup
/// or the new file cannot be written (the original is left as it was then).
pub fn repair(path: impl AsRef<Path>) -> Result<RepairReport, StoreError> {
    let path = path.as_ref();
    let io = |e: std::io::Error| StoreError::io(path, e);
    if !path.exists() {
        return Err(StoreError::Missing {
            path: path.to_path_buf(),
        });
    }
    let backup = free_name(path, "damaged");
    std::fs::copy(path, &backup).map_err(io)?;
    // redb repairs what it can when it opens a file, so it reads a scratch copy and the
    // backup stays exactly as it was found.
    let scratch = free_name(path, "reading");
    std::fs::copy(path, &scratch).map_err(io)?;
    let salvaged =
        guarded(path, "reading the damaged file", || salvage(&scratch)).map_err(|e| e.about(path));
    // A leftover scratch file is harmless; it is named as one.
    let _ = std::fs::remove_file(&scratch);
    let (entries, unreadable) = match salvaged {
        Ok(entries) => (entries, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    let mut good = Vec::new();
    for (key, value) in entries {
        match value {
            Ok(position) => {
                kept.push(format::describe(&key));
                good.push((key, position));
            }
            Err(why) => dropped.push(format!("{}: {why}", format::describe(&key))),
        }
    }
    let fresh = free_name(path, "new");
    guarded(path, "writing the repaired store", || {
        write_fresh(&fresh, &good)
    })?;
    std::fs::rename(&fresh, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(RepairReport {
        backup,
        kept,
        dropped,
        unreadable,
    })
}

/// Every position of the file at `path` that can be read, each checked.
fn salvage(path: &Path) -> Result<crate::redb_store::Entries, StoreError> {
    let opened = open_database(path, false)?;
    let header = read_header(&opened.db, path)?;
    let checked = !(header.magic.is_none() && header.version == Some(UNCHECKED_FORMAT));
    read_all(&opened.db, path, checked)
}

fn write_fresh(path: &Path, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
    let err = |e: redb::Error| storage_error(path, e);
    let db = Database::builder()
        .create(path)
        .map_err(|e| err(e.into()))?;
    write_header(&db, path, false)?;
    let write = db.begin_write().map_err(|e| err(e.into()))?;
    {
        let mut table = write.open_table(POSITIONS).map_err(|e| err(e.into()))?;
        for (key, position) in entries {
            table
                .insert(key.as_str(), format::encode(key, position).as_slice())
                .map_err(|e| err(e.into()))?;
        }
    }
    write.commit().map_err(|e| err(e.into()))
}

/// `<path>.<what>-<unix seconds>`, with a counter when that exists already.
fn free_name(path: &Path, what: &str) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{what}-{secs}"));
    let mut candidate = PathBuf::from(&name);
    let mut n = 1;
    while candidate.exists() {
        let mut numbered = name.clone();
        numbered.push(format!("-{n}"));
        candidate = PathBuf::from(numbered);
        n += 1;
    }
    candidate
}
