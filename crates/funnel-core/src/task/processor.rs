//! [`ProcessorTask`]: one processor call per batch, its results mapped onto the batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use funnel_record::Record;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::batch::{Batch, RecordFlag};
use crate::error::{Error, Result};
use crate::inspect::{Point, Tap, inspector};
use crate::plugin::{ProcessedRecord, Processor};
use crate::telemetry::{Binding, ProcessorMetrics};

/// Runs a [`Processor`] over the active records of a batch and maps its results onto
/// the batch.
///
/// A task may bound each call with a [timeout](Self::with_timeout). Without one the
/// processor runs inline, on the worker's stage, and a stopping worker interrupts a
/// call at its next `.await`. With one, each call runs on a thread of its own; a call
/// that overruns fails with [`Error::ProcessorTimeout`] at once, even if the processor
/// never yields (a script in an endless loop), and the processor is abandoned to it: it
/// is torn down on that thread when the call returns.
pub struct ProcessorTask {
    id: String,
    /// `None` once abandoned to a call that overran or was interrupted.
    processor: Option<Box<dyn Processor>>,
    timeout: Option<Duration>,
    /// The plugin name (a metric label).
    plugin: String,
    metrics: ProcessorMetrics,
    /// The records going in and coming out, for the inspector.
    taps: [Arc<Tap>; 2],
}

/// What a call on a thread of its own hands back.
type Returned = (Box<dyn Processor>, Vec<Record>, Vec<ProcessedRecord>);

impl ProcessorTask {
    /// A task running `processor`.
    pub fn new(id: impl Into<String>, processor: Box<dyn Processor>) -> Self {
        let id = id.into();
        Self {
            metrics: ProcessorMetrics::unbound(),
            id,
            processor: Some(processor),
            timeout: None,
            plugin: String::new(),
            taps: [Tap::unwatched(), Tap::unwatched()],
        }
    }

    /// Lets the inspector watch the records going in and out of the processor under
    /// `id` (the processor's API ID: `pipeline:processor` or
    /// `pipeline:connector:processor`).
    #[must_use]
    pub fn with_inspect_id(mut self, id: &str) -> Self {
        self.taps = [
            inspector().tap(id, Point::ProcessorIn),
            inspector().tap(id, Point::ProcessorOut),
        ];
        self
    }

    /// Names the processor's plugin (Conduit's `processor` metric label).
    #[must_use]
    pub fn with_plugin(mut self, plugin: impl Into<String>) -> Self {
        self.plugin = plugin.into();
        self
    }

    /// Bounds every call of the processor by `timeout` (`None`, the default: no bound).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The per-call timeout, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn processor(&mut self) -> Result<&mut Box<dyn Processor>> {
        let abandoned = Error::ProcessorTimeout {
            task: self.id.clone(),
            timeout: self.timeout.unwrap_or_default(),
        };
        self.processor.as_mut().ok_or(abandoned)
    }

    pub(super) fn bind_pipeline(&mut self, to: Binding<'_>) {
        self.metrics = ProcessorMetrics::new(to, &self.id, &self.plugin);
    }

    /// The task's ID (the processor's ID).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Opens the processor.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] when the processor fails to open.
    pub async fn open(&mut self) -> Result<()> {
        debug!(processor_id = %self.id, "opening processor");
        let id = self.id.clone();
        self.processor()?
            .open()
            .await
            .map_err(|source| Error::Open { task: id, source })?;
        debug!(processor_id = %self.id, "processor open");
        Ok(())
    }

    /// Tears the processor down.
    ///
    /// # Errors
    ///
    /// [`Error::Close`] when tearing down fails.
    pub async fn close(&mut self) -> Result<()> {
        debug!(processor_id = %self.id, "tearing down processor");
        let Some(processor) = self.processor.as_mut() else {
            debug!(processor_id = %self.id, "processor abandoned to a call; it tears down when the call returns");
            return Ok(());
        };
        processor
            .teardown()
            .await
            .map_err(|source| Error::Teardown {
                task: self.id.clone(),
                source,
            })
    }

    /// One call of the processor on `records`, bounded by the timeout if there is one.
    async fn call(&mut self, records: &mut [Record]) -> Result<Vec<ProcessedRecord>> {
        let Some(limit) = self.timeout else {
            return Ok(self.processor()?.process_in_place(records).await);
        };
        self.processor()?;
        let internal = |what: &str| Error::Internal(format!("processor {}: {what}", self.id));
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| internal("a call with a timeout needs a tokio runtime"))?;
        let Some(mut processor) = self.processor.take() else {
            return Err(internal("no processor"));
        };
        let mut owned: Vec<Record> = records.iter_mut().map(std::mem::take).collect();
        let (tx, rx) = oneshot::channel::<Returned>();
        let id = self.id.clone();
        std::thread::Builder::new()
            .name(format!("processor {id}"))
            .spawn(move || {
                let output = handle.block_on(processor.process_in_place(&mut owned));
                if let Err((mut processor, _, _)) = tx.send((processor, owned, output)) {
                    // The call overran or the worker stopped: nobody takes the
                    // processor back, so it is torn down here.
                    if let Err(e) = handle.block_on(processor.teardown()) {
                        warn!(processor_id = %id, error = %e, "failed to tear down an abandoned processor");
                    }
                }
            })
            .map_err(|e| internal(&format!("cannot start a thread for the call: {e}")))?;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok((processor, owned, output))) => {
                self.processor = Some(processor);
                for (record, processed) in records.iter_mut().zip(owned) {
                    *record = processed;
                }
                Ok(output)
            }
            Ok(Err(_)) => Err(internal("the call panicked")),
            Err(_) => Err(Error::ProcessorTimeout {
                task: self.id.clone(),
                timeout: limit,
            }),
        }
    }

    /// Processes the batch's active records (the seed's `Do`).
    ///
    /// One result per active record, mapped in place: `Single` replaces the record,
    /// `Unchanged` keeps it,
    /// `Filter` filters it, `Error` nacks it, `Multi` filters (no record), replaces (one)
    /// or splits it (several). Records without a result (a shorter output) are marked
    /// for retry.
    ///
    /// # Errors
    ///
    /// [`Error::ProcessorOutput`] when the processor returns no result at all or more
    /// results than records; [`Error::ProcessorTimeout`] when a call overran the
    /// timeout (or the processor was abandoned to an earlier one).
    pub async fn process(&mut self, batch: &mut Batch) -> Result<()> {
        let active = batch.active_indices();
        if active.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        // The processor works on the records in place: directly in the batch when
        // none is filtered, otherwise moved out (not copied) and back.
        let output = if let Some(records) = batch.records_mut_if_all_active() {
            self.taps[0].send(records);
            self.call(records).await?
        } else {
            let mut records: Vec<Record> = active.iter().map(|&p| batch.take_at(p)).collect();
            self.taps[0].send(&records);
            let output = self.call(&mut records).await;
            for (&p, record) in active.iter().zip(records) {
                batch.set_at(p, record);
            }
            output?
        };
        if output.is_empty() {
            return Err(Error::ProcessorOutput {
                task: self.id.clone(),
                message: format!(
                    "processor didn't return any records (given {})",
                    active.len()
                ),
            });
        }
        if output.len() > active.len() {
            return Err(Error::ProcessorOutput {
                task: self.id.clone(),
                message: format!(
                    "processor returned {} results for {} records; it must return at most \
                     one result per record",
                    output.len(),
                    active.len()
                ),
            });
        }
        let per_record = started.elapsed().as_secs_f64() / output.len() as f64;
        self.metrics.record(per_record);
        // Walk from the end so that a split or filter never moves an index still to be
        // handled; physical indices were taken before any change.
        for &p in active[output.len()..].iter().rev() {
            batch.flag_at(p, RecordFlag::Retry);
        }
        for (result, &p) in output.into_iter().zip(&active).rev() {
            match result {
                ProcessedRecord::Single(record) => batch.set_at(p, record),
                ProcessedRecord::Unchanged => {}
                ProcessedRecord::Filter => batch.flag_at(p, RecordFlag::Filter),
                ProcessedRecord::Error(error) => batch.nack_at(p, error),
                ProcessedRecord::Retry => batch.flag_at(p, RecordFlag::Retry),
                ProcessedRecord::Multi(mut pieces) => match pieces.len() {
                    0 => batch.flag_at(p, RecordFlag::Filter),
                    1 => {
                        if let Some(record) = pieces.pop() {
                            batch.set_at(p, record);
                        }
                    }
                    _ => batch.split_at(p, pieces),
                },
            }
        }
        if self.taps[1].is_watched() {
            self.taps[1].send(&batch.active_records());
        }
        Ok(())
    }
}
