//! A damaged store file is an error naming the file and how to recover, never a panic
//! and never a position nobody committed; `check` and `repair`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use funnel_record::Position;
use funnel_store::{RedbStore, Store, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// The tables as any other program would see them in the file.
const POSITIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("positions");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Changes the file as another program could: through redb, past the store.
fn tamper(path: &Path, change: impl FnOnce(&redb::WriteTransaction)) {
    let db = Database::create(path).unwrap();
    let write = db.begin_write().unwrap();
    change(&write);
    write.commit().unwrap();
}

async fn store_with(path: &Path, positions: &[(&str, &str, &str)]) {
    let store = RedbStore::open(path).unwrap();
    for (pipeline, connector, position) in positions {
        store
            .set_position(
                pipeline,
                connector,
                &Position::from(position.as_bytes().to_vec()),
            )
            .await
            .unwrap();
    }
    store.close();
}

fn assert_names_the_file_and_the_way_out(err: &StoreError, path: &Path) {
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("funnel store repair"), "{text}");
}

/// Opens the store and reads `p/src` on a fresh thread, so that a panic anywhere is
/// seen as one rather than ending the test.
fn open_and_read(path: &Path) -> std::thread::Result<Result<Option<Position>, StoreError>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = RedbStore::open(&path)?;
            store.position("p", "src").await
        })
    })
    .join()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_store_with_a_flipped_byte_is_an_error_never_a_panic_or_an_uncommitted_position()
{
    // Each open commits (redb's check) and syncs: on a RAM file system when there is one.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let pristine = dir.path().join("pristine.db");
    let committed: Vec<String> = (0..20).map(|i| format!("position-{i:04}")).collect();
    {
        let store = RedbStore::open(&pristine).unwrap();
        for p in &committed {
            store
                .set_position("p", "src", &p.as_str().into())
                .await
                .unwrap();
        }
        store.close();
    }
    let bytes = std::fs::read(&pristine).unwrap();
    // Every byte that holds data (neither 0x00 nor 0xFF: headers, pages, checksums,
    // keys, positions), and one in 64 of the others (free space, allocator bitmaps).
    let flipped: Vec<usize> = (0..bytes.len())
        .filter(|&i| !matches!(bytes[i], 0x00 | 0xFF) || i % 64 == 0)
        .collect();
    let used = flipped.len();
    let target = dir.path().join("funnel.db");
    let mut errors = 0;
    let mut intact = 0;
    for i in flipped {
        let mut damaged = bytes.clone();
        damaged[i] ^= 0x5A;
        std::fs::write(&target, &damaged).unwrap();
        match open_and_read(&target) {
            Err(_) => panic!("byte {i}: the store panicked"),
            Ok(Err(err)) => {
                errors += 1;
                if matches!(err, StoreError::Corrupt { .. }) {
                    assert_names_the_file_and_the_way_out(&err, &target);
                }
            }
            Ok(Ok(position)) => {
                let position = position.map(|p| String::from_utf8(p.as_bytes().to_vec()).unwrap());
                assert!(
                    position.as_ref().is_some_and(|p| committed.contains(p)),
                    "byte {i}: read {position:?}, which was never committed"
                );
                intact += 1;
            }
        }
    }
    assert!(errors > 0, "no flipped byte out of {used} was noticed");
    eprintln!("{used} bytes flipped: {errors} errors, {intact} read a committed position");
}

/// Found by the store drills: a store overwritten with other bytes was an I/O error
/// that did not say what to do.
#[test]
fn a_store_overwritten_with_other_bytes_is_corrupt_and_names_the_repair() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("funnel.db");
    std::fs::write(
        &path,
        b"not a store at all, but a text file someone wrote\n",
    )
    .unwrap();
    let err = open_and_read(&path).expect("no panic").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_names_the_file_and_the_way_out(&err, &path);
    assert!(err.to_string().contains("--db.redb.path"), "{err}");
    assert!(funnel_store::repair(&path).is_ok());
    assert!(RedbStore::open(&path).is_ok(), "the repaired store opens");
}

#[tokio::test]
async fn a_corrupt_store_whose_position_value_was_changed_is_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("funnel.db");
    store_with(&path, &[("p", "src", "position-41"), ("q", "src", "7")]).await;
    // A valid redb write that changes one byte of the stored position: redb's own
    // page checksums are right, only the position's checksum can tell.
    tamper(&path, |write| {
        let mut table = write.open_table(POSITIONS).unwrap();
        let mut value = table.get("p\u{0}src").unwrap().unwrap().value().to_vec();
        let last = value.len() - 1;
        value[last] = b'9';
        table.insert("p\u{0}src", value.as_slice()).unwrap();
    });
    let err = RedbStore::open(&path).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("pipeline \"p\", connector \"src\""),
        "{err}"
    );
    assert_names_the_file_and_the_way_out(&err, &path);
}

#[tokio::test]
async fn a_corrupt_store_that_is_empty_is_an_error_not_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("funnel.db");
    std::fs::write(&path, b"").unwrap();
    let err = RedbStore::open(&path).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    assert_names_the_file_and_the_way_out(&err, &path);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "the file was changed"
    );
}

#[tokio::test]
async fn a_corrupt_store_without_its_format_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("funnel.db");
    store_with(&path, &[("p", "src", "1")]).await;
    tamper(&path, |write| {
        write.open_table(META).unwrap().remove("magic").unwrap();
    });
    let err = RedbStore::open(&path).err().unwrap();
    assert!(err.to_string().contains("format header"), "{err}");
    assert_names_the_file_and_the_way_out(&err, &path);
}

#[tokio::test]
async fn a_store_of_the_first_format_is_given_checksums_and_keeps_its_positions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("funnel.db");
    tamper(&path, |write| {
        write
            .open_table(META)
            .unwrap()
            .insert("format_version", 1)
            .unwrap();
        write
            .open_table(POSITIONS)
            .unwrap()
            .insert("p\u{0}src", b"42".as_slice())
            .unwrap();
    });
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.position("p", "src").await.unwrap(), Some("42".into()));
    store.close();
    drop(store);
    let db = Database::open(&path).unwrap();
    let read = db.begin_read().unwrap();
    let meta = read.open_table(META).unwrap();
    assert_eq!(meta.get("format_version").unwrap().unwrap().value(), 2);
    let stored = read.open_table(POSITIONS).unwrap();
    assert_ne!(stored.get("p\u{0}src").unwrap().unwrap().value(), b"42");
}

#[tokio::test]
async fn check_names_each_damaged_position_and_repair_keeps_the_intact_ones_and_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("funnel.db");
    store_with(
        &path,
        &[("p", "src", "11"), ("q", "src", "22"), ("r", "pg", "33")],
    )
    .await;
    assert_eq!(funnel_store::check(&path).unwrap().positions.len(), 3);
    tamper(&path, |write| {
        write
            .open_table(POSITIONS)
            .unwrap()
            .insert("q\u{0}src", b"\0\0\0\x0022".as_slice())
            .unwrap();
    });
    let damaged = std::fs::read(&path).unwrap();
    let err = funnel_store::check(&path).unwrap_err();
    assert!(
        err.to_string()
            .contains("pipeline \"q\", connector \"src\""),
        "{err}"
    );
    assert!(!err.to_string().contains("pipeline \"p\""), "{err}");
    assert!(
        std::fs::read(&path).unwrap() == damaged,
        "check changed the file"
    );

    let report = funnel_store::repair(&path).unwrap();
    assert_eq!(report.kept.len(), 2, "{report:?}");
    assert_eq!(report.dropped.len(), 1, "{report:?}");
    assert!(report.dropped[0].contains("\"q\""), "{report:?}");
    assert!(
        std::fs::read(&report.backup).unwrap() == damaged,
        "the backup differs"
    );

    assert_eq!(funnel_store::check(&path).unwrap().positions.len(), 2);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.position("p", "src").await.unwrap(), Some("11".into()));
    assert_eq!(store.position("q", "src").await.unwrap(), None);
    assert_eq!(store.position("r", "pg").await.unwrap(), Some("33".into()));
}

#[tokio::test]
async fn repairing_an_empty_store_makes_a_working_empty_one_and_keeps_the_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("funnel.db");
    std::fs::write(&path, b"").unwrap();
    let report = funnel_store::repair(&path).unwrap();
    assert!(
        report
            .unreadable
            .as_deref()
            .is_some_and(|why| why.contains("empty"))
    );
    assert_eq!(std::fs::metadata(&report.backup).unwrap().len(), 0);
    let store = RedbStore::open(&path).unwrap();
    store.set_position("p", "src", &"1".into()).await.unwrap();
    assert_eq!(store.position("p", "src").await.unwrap(), Some("1".into()));
}

#[tokio::test]
async fn checking_or_opening_for_delete_never_creates_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    assert!(matches!(
        funnel_store::check(&path),
        Err(StoreError::Missing { .. })
    ));
    assert!(matches!(
        RedbStore::open_existing(&path),
        Err(StoreError::Missing { .. })
    ));
    assert!(!path.exists());
}

#[tokio::test]
async fn a_new_store_appears_whole_and_a_creation_cut_short_before_is_made_anew() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("funnel.db");
    // What a process killed while creating the store leaves: a partial file under the
    // temporary name, none under the store's.
    let creating = dir.path().join("funnel.db.creating");
    std::fs::write(&creating, b"redb\x1a\x0a\xa9\x0d\x0a half a header").unwrap();
    store_with(&path, &[("p", "src", "7")]).await;
    assert!(!creating.exists(), "the temporary file was left behind");
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        store.position("p", "src").await.unwrap(),
        Some(Position::from(b"7".to_vec()))
    );
    store.close();
    drop(store);
    // The store file holds the format header from the start.
    let db = Database::open(&path).unwrap();
    let read = db.begin_read().unwrap();
    let meta = read.open_table(META).unwrap();
    assert!(meta.get("magic").unwrap().is_some());
}
