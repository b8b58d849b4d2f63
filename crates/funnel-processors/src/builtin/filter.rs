//! `filter`: drops every record it gets (acks it without passing it on).
//!
//! Meant to be used with a processor `condition`: records whose condition is true are
//! filtered, the others pass through unchanged.
//!
//! # Settings
//!
//! None, besides the `sdk.schema.*` settings every processor accepts (no effect).

use funnel_core::{Component, ProcessedRecord};
use funnel_record::Record;

use crate::settings::{parse, processor};
use crate::{Built, Settings};

use super::{RecordProcessor, boxed};

/// `filter` in the registry table.
pub(crate) const COMPONENT: Component = processor::<FilterSettings>(
    "filter",
    "Acknowledges and drops every record; use it with a condition.",
    build,
);

funnel_core::settings! {
    /// `filter` has no settings of its own (the SDK schema ones come on top).
    pub(crate) struct FilterSettings {}
}

/// Validates the settings and builds the processor.
pub(crate) fn build(_id: &str, settings: &Settings) -> Built {
    parse::<FilterSettings>(settings)?;
    Ok(boxed(Filter))
}

struct Filter;

impl RecordProcessor for Filter {
    fn process_record(&mut self, _record: &Record) -> ProcessedRecord {
        ProcessedRecord::Filter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_record_of_a_batch_is_filtered() {
        let mut p = build("f", &Settings::new()).unwrap();
        let records = vec![
            Record::new("1", "a"),
            Record::new("2", "b"),
            Record::new("3", ""),
        ];
        assert_eq!(p.process(&records).await, vec![ProcessedRecord::Filter; 3]);
    }

    #[tokio::test]
    async fn structured_and_raw_records_are_filtered_alike() {
        let mut p = build("f", &Settings::new()).unwrap();
        let mut structured = Record::new("1", "");
        structured.payload.after = Some(funnel_record::Data::Structured(Default::default()));
        assert_eq!(
            p.process(&[structured, Record::new("2", "raw")]).await,
            vec![ProcessedRecord::Filter; 2]
        );
    }

    #[test]
    fn any_setting_of_its_own_is_refused() {
        let settings: Settings = [("field".to_owned(), ".Key".to_owned())]
            .into_iter()
            .collect();
        let errors = build("f", &settings).err().unwrap();
        assert_eq!(errors[0].setting, "field");
        assert_eq!(errors[0].message, "unrecognized parameter");
    }
}
