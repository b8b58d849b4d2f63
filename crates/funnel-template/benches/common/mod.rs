//! The record the template benchmark and the instruction-counting example share, so
//! their figures measure the same work.

use funnel_record::{Data, Record, StructuredData, Value};

/// Metadata `key` and `opencdc.collection`, and a structured payload with a string
/// `foo` and an int `n`.
pub(crate) fn record() -> Record {
    let mut r = Record::new("pos", "");
    r.metadata.insert("key", "val");
    r.metadata.insert("opencdc.collection", "orders");
    let mut m = StructuredData::new();
    m.insert("foo".to_owned(), Value::String("bar".into()));
    m.insert("n".to_owned(), Value::Int(42));
    r.payload.after = Some(Data::Structured(m));
    r
}
