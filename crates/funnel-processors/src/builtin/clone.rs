//! `clone`: turns each record into `count + 1` copies, each with metadata
//! `clone.index` (`0` to `count`). The source position is acked once, after every copy
//! is done ([`ProcessedRecord::Multi`]).
//!
//! # Settings
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `count` | required | Number of clones to add; must be greater than 0. |

use funnel_core::{Component, ProcessedRecord};
use funnel_record::Record;

use funnel_core::typed::FromSetting;

use crate::settings::{parse, processor};
use crate::{Built, Settings};

use super::{RecordProcessor, boxed};

/// `clone` in the registry table.
pub(crate) const COMPONENT: Component = processor::<CloneSettings>(
    "clone",
    "Outputs count+1 copies of each record, with metadata clone.index.",
    build,
);

/// The metadata key holding the copy's index.
const INDEX_KEY: &str = "clone.index";

/// A count greater than 0 (Conduit's `greater-than=0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PositiveCount(pub(crate) usize);

impl FromSetting for PositiveCount {
    const KIND: funnel_core::SettingType = funnel_core::SettingType::Int;

    fn from_setting(raw: &str) -> Result<Self, String> {
        let n: i64 = raw
            .parse()
            .map_err(|_| format!("{raw:?} value is not an integer: invalid parameter type"))?;
        match usize::try_from(n) {
            Ok(n) if n > 0 => Ok(Self(n)),
            _ => Err(format!(
                "{raw:?} should be greater than 0: greater-than validation failed"
            )),
        }
    }
}

funnel_core::settings! {
    /// The settings `clone` accepts (the SDK schema ones come on top).
    pub(crate) struct CloneSettings {
        /// Number of clones to add to the original record (count+1 records in all);
        /// must be greater than 0.
        pub(crate) count: PositiveCount = "count",
    }
}

/// Validates the settings and builds the processor.
pub(crate) fn build(_id: &str, settings: &Settings) -> Built {
    let count = parse::<CloneSettings>(settings)?.count.0;
    Ok(boxed(Clone { count }))
}

struct Clone {
    count: usize,
}

impl RecordProcessor for Clone {
    fn process_record(&mut self, record: &Record) -> ProcessedRecord {
        let copies = (0..=self.count)
            .map(|i| {
                let mut copy = record.clone();
                copy.metadata.insert(INDEX_KEY, i.to_string());
                copy
            })
            .collect();
        ProcessedRecord::Multi(copies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnel_test_utils::results::settings;

    #[tokio::test]
    async fn each_record_of_a_batch_becomes_count_plus_one_indexed_copies() {
        let mut p = build("c", &settings(&[("count", "2")])).unwrap();
        let out = p
            .process(&[Record::new("1", "a"), Record::new("2", "b")])
            .await;
        assert_eq!(out.len(), 2);
        for (result, payload) in out.iter().zip(["a", "b"]) {
            let ProcessedRecord::Multi(copies) = result else {
                panic!("{result:?}")
            };
            assert_eq!(copies.len(), 3);
            for (i, copy) in copies.iter().enumerate() {
                assert_eq!(
                    copy.metadata.get("clone.index"),
                    Some(i.to_string().as_str())
                );
                assert_eq!(copy.payload.after, Some(funnel_record::Data::raw(payload)));
            }
        }
    }

    #[tokio::test]
    async fn structured_data_is_copied_whole() {
        let mut p = build("c", &settings(&[("count", "1")])).unwrap();
        let mut record = Record::new("1", "");
        record.key = Some(funnel_record::Data::Structured(
            [("id".to_owned(), funnel_record::Value::Int(1))]
                .into_iter()
                .collect(),
        ));
        let out = p.process(std::slice::from_ref(&record)).await;
        let ProcessedRecord::Multi(copies) = &out[0] else {
            panic!()
        };
        assert!(copies.iter().all(|c| c.key == record.key));
    }

    #[test]
    fn count_must_be_a_positive_integer() {
        for (value, message) in [
            ("0", "\"0\" should be greater than 0"),
            ("-1", "should be greater than 0"),
            ("foo", "\"foo\" value is not an integer"),
        ] {
            let errors = build("c", &settings(&[("count", value)])).err().unwrap();
            assert!(errors[0].message.contains(message), "{value}: {errors:?}");
        }
        let errors = build("c", &Settings::new()).err().unwrap();
        assert_eq!(errors[0].message, "required parameter is not provided");
    }
}
