//! `error`: fails every record it gets, so it is nacked (and goes to the dead-letter
//! queue, or stops the pipeline).
//!
//! Meant to be used with a processor `condition`.
//!
//! # Settings
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `message` | `error processor triggered` | The error message: a Go template evaluated on the record (`{{ .Metadata.table }}`). |
//!
//! The message is the record's error as written, without the processor ID in front,
//! so the dead-letter queue shows exactly what the pipeline author wrote.

use funnel_core::{Component, ProcessedRecord, RecordError};
use funnel_record::Record;
use funnel_template::Template;

use crate::settings::{parse, processor, template_setting};
use crate::{Built, Settings};

use super::{Label, RecordProcessor, boxed};

/// `error` in the registry table.
pub(crate) const COMPONENT: Component = processor::<ErrorSettings>(
    "error",
    "Fails every record with a templated message; use it with a condition.",
    build,
);

template_setting!(
    /// The `message` template.
    MessageTemplate,
    "failed to parse the \"message\" param template"
);

funnel_core::settings! {
    /// The settings `error` accepts (the SDK schema ones come on top).
    pub(crate) struct ErrorSettings {
        /// Error message of the failed record: a Go template evaluated on the record.
        pub(crate) message: MessageTemplate = "message" (default "error processor triggered"),
    }
}

/// Validates the settings and builds the processor.
pub(crate) fn build(id: &str, settings: &Settings) -> Built {
    let template = parse::<ErrorSettings>(settings)?.message.0;
    Ok(boxed(ErrorProcessor {
        label: Label::new("error", id),
        template,
    }))
}

struct ErrorProcessor {
    label: Label,
    template: Template,
}

impl RecordProcessor for ErrorProcessor {
    fn process_record(&mut self, record: &Record) -> ProcessedRecord {
        match self.template.render(record) {
            Ok(message) => ProcessedRecord::Error(RecordError::msg(message)),
            Err(err) => self.label.fail(format_args!(
                "failed to evaluate the error message template: {err}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnel_test_utils::results::{error_text, settings};

    #[tokio::test]
    async fn every_record_fails_with_the_default_message() {
        let mut p = build("e", &Settings::new()).unwrap();
        let out = p
            .process(&[Record::new("1", "a"), Record::new("2", "b")])
            .await;
        assert_eq!(out.len(), 2);
        for result in &out {
            assert_eq!(error_text(result), "error processor triggered");
        }
    }

    #[tokio::test]
    async fn a_static_message_is_used_verbatim_for_raw_and_structured_records() {
        let mut p = build("e", &settings(&[("message", "boom")])).unwrap();
        let mut structured = Record::new("1", "");
        structured.payload.after = Some(funnel_record::Data::Structured(Default::default()));
        let out = p.process(&[structured, Record::new("2", "raw")]).await;
        assert_eq!(error_text(&out[0]), "boom");
        assert_eq!(error_text(&out[1]), "boom");
    }

    #[test]
    fn unknown_settings_are_refused() {
        let errors = build("e", &settings(&[("msg", "x")])).err().unwrap();
        assert_eq!(errors[0].setting, "msg");
    }
}
