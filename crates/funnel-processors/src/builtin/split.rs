//! `split`: turns a record whose field holds an array into one record per element.
//! Each output record is a copy of the input with the array replaced by one element,
//! and metadata `split.index` set to the element's index. An empty array filters the
//! record. The source position is acked once, after every piece is done
//! ([`ProcessedRecord::Multi`]).
//!
//! # Settings
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `field` | required | Reference to the array field; must be under `.Key` or `.Payload`. |

use funnel_core::{Component, ProcessedRecord};
use funnel_record::{FieldPath, FieldRef, Record, Value};

use crate::settings::{KeyOrPayloadField, parse, path_error, processor};
use crate::{Built, Settings};

use super::{Label, RecordProcessor, boxed};

/// `split` in the registry table.
pub(crate) const COMPONENT: Component = processor::<SplitSettings>(
    "split",
    "Splits a record into one record per element of an array field.",
    build,
);

/// The metadata key holding the element's index.
const INDEX_KEY: &str = "split.index";

funnel_core::settings! {
    /// The settings `split` accepts (the SDK schema ones come on top).
    pub(crate) struct SplitSettings {
        /// Reference to the array field to split on (under .Key or .Payload), e.g.
        /// .Payload.After.users.
        pub(crate) field: KeyOrPayloadField = "field",
    }
}

/// Validates the settings and builds the processor.
pub(crate) fn build(id: &str, settings: &Settings) -> Built {
    let field = parse::<SplitSettings>(settings)?.field.0;
    Ok(boxed(Split {
        label: Label::new("split", id),
        field,
    }))
}

struct Split {
    label: Label,
    field: FieldPath,
}

impl RecordProcessor for Split {
    fn process_record(&mut self, record: &Record) -> ProcessedRecord {
        let items = match record.get(&self.field) {
            Ok(Some(FieldRef::Value(Value::Array(items)))) => items,
            Ok(_) => {
                return self.label.fail(format_args!(
                    "field {:?} is not a slice",
                    self.field.as_str()
                ));
            }
            Err(err) => return self.label.fail(path_error(&err)),
        };
        let mut pieces = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let mut piece = record.clone();
            if let Err(err) = piece.set(&self.field, item.clone()) {
                return self.label.fail(path_error(&err));
            }
            piece.metadata.insert(INDEX_KEY, i.to_string());
            pieces.push(piece);
        }
        ProcessedRecord::Multi(pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnel_record::Data;
    use funnel_test_utils::results;

    fn settings(field: &str) -> Settings {
        results::settings(&[("field", field)])
    }

    fn with_after(items: Value) -> Record {
        let mut record = Record::new("p", "");
        record.payload.after = Some(Data::Structured(results::fields(&[("list", items)])));
        record
    }

    #[tokio::test]
    async fn each_array_element_becomes_a_record_with_its_index() {
        let mut p = build("s", &settings(".Payload.After.list")).unwrap();
        let input = [
            with_after(Value::Array(vec![Value::Int(1), Value::Int(2)])),
            with_after(Value::Array(vec![Value::String("x".into())])),
        ];
        let out = p.process(&input).await;
        assert_eq!(out.len(), 2);
        let ProcessedRecord::Multi(first) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(first.len(), 2);
        assert_eq!(first[1].metadata.get("split.index"), Some("1"));
        assert_eq!(first[1], {
            let mut r = with_after(Value::Int(2));
            r.metadata.insert("split.index", "1");
            r
        });
        let ProcessedRecord::Multi(second) = &out[1] else {
            panic!()
        };
        assert_eq!(second.len(), 1);
    }

    #[tokio::test]
    async fn an_empty_array_filters_the_record() {
        let mut p = build("s", &settings(".Payload.After.list")).unwrap();
        let out = p.process(&[with_after(Value::Array(Vec::new()))]).await;
        assert_eq!(out, vec![ProcessedRecord::Multi(Vec::new())]);
    }

    #[tokio::test]
    async fn a_field_that_is_not_an_array_or_is_in_raw_data_fails_the_record() {
        let mut p = build("s", &settings(".Payload.After.list")).unwrap();
        let out = p
            .process(&[with_after(Value::Int(1)), Record::new("p", "raw")])
            .await;
        let ProcessedRecord::Error(e) = &out[0] else {
            panic!()
        };
        assert!(
            e.to_string()
                .contains("field \".Payload.After.list\" is not a slice")
        );
        assert!(e.to_string().contains("processor \"s\" (split)"));
        let ProcessedRecord::Error(e) = &out[1] else {
            panic!()
        };
        assert!(e.to_string().contains("raw data"), "{e}");
    }

    #[test]
    fn the_field_must_be_under_key_or_payload() {
        let errors = build("s", &settings(".Metadata.foo")).err().unwrap();
        assert!(errors[0].message.contains("should match the regex"));
        let errors = build("s", &Settings::new()).err().unwrap();
        assert_eq!(errors[0].message, "required parameter is not provided");
    }
}
