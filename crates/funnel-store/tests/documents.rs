//! Pipeline documents (pipelines created through the API) survive a restart; a damaged
//! one is refused, never read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use funnel_store::{MemoryStore, RedbStore, Store, StoreError};
use redb::{Database, ReadableTable, TableDefinition};

const DOCUMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("documents");

async fn round_trip(store: &dyn Store) {
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
}

#[tokio::test]
async fn documents_are_kept_replaced_and_deleted_and_survive_reopening_the_file() {
    round_trip(&MemoryStore::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("funnel.db");
    let store = RedbStore::open(&path).unwrap();
    round_trip(&store).await;
    store.close();
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        store.documents().await.unwrap(),
        [("a".to_owned(), b"second".to_vec())]
    );
    // Documents are apart from positions.
    assert_eq!(store.positions("a").await.unwrap(), Vec::new());
}

#[tokio::test]
async fn a_damaged_document_is_refused_naming_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("funnel.db");
    let store = RedbStore::open(&path).unwrap();
    store.set_document("orders", b"document").await.unwrap();
    store.close();
    drop(store);
    {
        let db = Database::create(&path).unwrap();
        let write = db.begin_write().unwrap();
        {
            let mut table = write.open_table(DOCUMENTS).unwrap();
            let mut stored = table.get("orders").unwrap().unwrap().value().to_vec();
            let last = stored.len() - 1;
            stored[last] ^= 1;
            table.insert("orders", stored.as_slice()).unwrap();
        }
        write.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    let err = store.documents().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("\"orders\""), "{err}");
}
