//! A processor's `condition`, applied as Conduit applies it.
//!
//! The condition is a Go template evaluated on each record; its output is read with
//! Go's `strconv.ParseBool` (`1 t T TRUE true True` / `0 f F FALSE false False`).
//!
//! - true: the record goes to the processor;
//! - false: the record passes through unchanged, **in its place in the batch**;
//! - a template error or output that is not a boolean: the record fails with
//!   `failed evaluating condition: ...`;
//! - an empty or whitespace-only condition means "always" (no wrapper at all);
//! - a condition that does not parse is a settings error on `condition`.
//!
//! The records whose condition is true are given to the processor as one batch (when
//! all of them are, the batch is passed as it is, without copying), and its results
//! are put back in the places of those records.
//!
//! # Fewer results (retry)
//!
//! A processor may return fewer results than records, meaning "retry the rest". The
//! wrapper keeps that contract for the whole batch: it returns the results of every
//! record **before** the first record the processor left without a result, and nothing
//! from that record on. Records after it, whatever their condition, are fed again
//! with it; their condition is evaluated again then (conditions have no side effects).

use async_trait::async_trait;
use funnel_core::{ConnectorError, ProcessedRecord, Processor, RecordError};
use funnel_record::Record;
use funnel_template::Condition;

use crate::{Settings, SettingsError};

/// Builds processor `id` of the built-in `plugin` like [`build`](crate::build), and
/// applies `condition` to it (see the [module docs](self)). `None`, an empty or a
/// whitespace-only condition means the processor runs on every record.
///
/// # Errors
///
/// Every invalid setting, plus an error on the setting `condition` when the condition
/// does not parse.
pub fn build_configured(
    plugin: &str,
    id: &str,
    settings: &Settings,
    condition: Option<&str>,
) -> Result<Box<dyn Processor>, Vec<SettingsError>> {
    with_condition(id, crate::build(plugin, id, settings), condition)
}

/// Applies `condition` to processor `id` built as `built` (see the
/// [module docs](self)); the errors of both are reported together.
///
/// # Errors
///
/// The errors of `built`, plus an error on the setting `condition` when the condition
/// does not parse.
pub fn with_condition(
    id: &str,
    built: Result<Box<dyn Processor>, Vec<SettingsError>>,
    condition: Option<&str>,
) -> Result<Box<dyn Processor>, Vec<SettingsError>> {
    let parsed = match condition.map(Condition::parse).transpose() {
        Ok(parsed) => Ok(parsed.flatten()),
        Err(err) => Err(SettingsError::new(
            "condition",
            format!("failed parsing the condition: {err}"),
        )),
    };
    match (built, parsed) {
        (Ok(inner), Ok(None)) => Ok(inner),
        (Ok(inner), Ok(Some(condition))) => Ok(Box::new(Conditional {
            id: id.to_owned(),
            condition,
            inner,
        })),
        (Ok(_), Err(err)) => Err(vec![err]),
        (Err(errors), Ok(_)) => Err(errors),
        (Err(mut errors), Err(err)) => {
            errors.push(err);
            Err(errors)
        }
    }
}

/// Runs `inner` only on the records whose condition is true.
struct Conditional {
    id: String,
    condition: Condition,
    inner: Box<dyn Processor>,
}

/// What the condition said about one record.
enum Verdict {
    Run,
    Skip,
    Fail(RecordError),
}

#[async_trait]
impl Processor for Conditional {
    async fn open(&mut self) -> Result<(), ConnectorError> {
        self.inner.open().await
    }

    async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
        crate::process_copy(self, records).await
    }

    async fn process_in_place(&mut self, records: &mut [Record]) -> Vec<ProcessedRecord> {
        let verdicts: Vec<Verdict> = records
            .iter()
            .map(|record| match self.condition.evaluate(record) {
                Ok(true) => Verdict::Run,
                Ok(false) => Verdict::Skip,
                Err(err) => Verdict::Fail(RecordError::msg(format!(
                    "processor {:?}: failed evaluating condition: {err}",
                    self.id
                ))),
            })
            .collect();
        let selected = verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Run))
            .count();
        if selected == records.len() {
            return self.inner.process_in_place(records).await;
        }
        // The inner processor gets each run of consecutive selected records as one
        // slice, so no record is copied; a record the condition skips stays
        // as it is.
        let mut out = Vec::with_capacity(records.len());
        let mut i = 0;
        while i < records.len() {
            match &verdicts[i] {
                Verdict::Skip => {
                    out.push(ProcessedRecord::Unchanged);
                    i += 1;
                }
                Verdict::Fail(err) => {
                    out.push(ProcessedRecord::Error(err.clone()));
                    i += 1;
                }
                Verdict::Run => {
                    let end = verdicts[i..]
                        .iter()
                        .position(|v| !matches!(v, Verdict::Run))
                        .map_or(records.len(), |n| i + n);
                    let results = self.inner.process_in_place(&mut records[i..end]).await;
                    let complete = results.len() >= end - i;
                    out.extend(results.into_iter().take(end - i));
                    if !complete {
                        // The processor left this record (and the rest) for a retry.
                        break;
                    }
                    i = end;
                }
            }
        }
        out
    }

    async fn teardown(&mut self) -> Result<(), ConnectorError> {
        self.inner.teardown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnel_test_utils::results::settings;

    fn record(key: &str) -> Record {
        let mut r = Record::new(key, "");
        r.metadata.insert("key", key);
        r
    }

    /// Processes the first `limit` records it gets (marking them), leaves the rest.
    struct Partial {
        limit: usize,
        seen: Vec<Vec<String>>,
    }

    #[async_trait]
    impl Processor for Partial {
        async fn process(&mut self, records: &[Record]) -> Vec<ProcessedRecord> {
            self.seen.push(
                records
                    .iter()
                    .map(|r| r.metadata.get("key").unwrap_or_default().to_owned())
                    .collect(),
            );
            records
                .iter()
                .take(self.limit)
                .map(|r| {
                    let mut r = r.clone();
                    r.metadata.insert("done", "yes");
                    ProcessedRecord::Single(r)
                })
                .collect()
        }
    }

    fn conditional(limit: usize) -> Conditional {
        Conditional {
            id: "p".into(),
            condition: Condition::parse("{{ eq .Metadata.key \"yes\" }}")
                .unwrap()
                .unwrap(),
            inner: Box::new(Partial {
                limit,
                seen: Vec::new(),
            }),
        }
    }

    fn done(result: &ProcessedRecord) -> bool {
        matches!(result, ProcessedRecord::Single(r) if r.metadata.get("done").is_some())
    }

    #[tokio::test]
    async fn records_with_a_false_condition_pass_through_in_their_place() {
        let mut p = conditional(usize::MAX);
        let batch = [record("no"), record("yes"), record("no"), record("yes")];
        let out = p.process_in_place(&mut batch.clone()).await;
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], ProcessedRecord::Unchanged);
        assert!(done(&out[1]));
        assert_eq!(out[2], ProcessedRecord::Unchanged);
        assert!(done(&out[3]));
    }

    #[tokio::test]
    async fn fewer_results_cut_the_batch_at_the_first_unprocessed_record() {
        let mut p = conditional(1);
        let batch = [
            record("no"),
            record("yes"),
            record("yes"),
            record("no"),
            record("yes"),
        ];
        let out = p.process_in_place(&mut batch.clone()).await;
        // Records 0..2 are done; record 2 (second "yes" of the run) had no result: it
        // and the records after it are left for the retry.
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], ProcessedRecord::Unchanged);
        assert!(done(&out[1]));
    }

    #[tokio::test]
    async fn a_condition_that_is_not_a_boolean_fails_the_record_only() {
        let mut p = Conditional {
            id: "p".into(),
            condition: Condition::parse("{{ .Metadata.key }}").unwrap().unwrap(),
            inner: Box::new(Partial {
                limit: usize::MAX,
                seen: Vec::new(),
            }),
        };
        let out = p.process(&[record("true"), record("junk")]).await;
        assert!(done(&out[0]));
        let ProcessedRecord::Error(e) = &out[1] else {
            panic!("{out:?}")
        };
        assert!(
            e.to_string()
                .contains("failed evaluating condition: error converting the condition go-template output to boolean"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn build_configured_without_a_condition_is_the_plain_processor() {
        for condition in [None, Some(""), Some("  ")] {
            let mut p = build_configured("filter", "f", &Settings::new(), condition).unwrap();
            assert_eq!(
                p.process(&[record("x")]).await,
                vec![ProcessedRecord::Filter]
            );
        }
    }

    #[tokio::test]
    async fn build_configured_applies_the_condition() {
        let mut p = build_configured(
            "field.set",
            "s",
            &settings(&[("field", ".Metadata.done"), ("value", "yes")]),
            Some("{{ eq .Metadata.key \"yes\" }}"),
        )
        .unwrap();
        let out = p.process(&[record("no"), record("yes")]).await;
        assert!(!done(&out[0]));
        assert!(done(&out[1]));
    }

    #[test]
    fn a_condition_that_does_not_parse_is_a_settings_error_on_condition() {
        let errors = build_configured("filter", "f", &Settings::new(), Some("{{ "))
            .err()
            .unwrap();
        assert_eq!(errors[0].setting, "condition");
        let errors = build_configured("field.set", "s", &Settings::new(), Some("{{ "))
            .err()
            .unwrap();
        assert!(errors.iter().any(|e| e.setting == "condition"));
        assert!(errors.iter().any(|e| e.setting == "field"));
    }
}
