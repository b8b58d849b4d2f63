//! The Funnel engine.
//!
//! Records move from a [`Source`] through [`Processor`]s to [`Destination`]s a
//! [`Batch`] at a time, each record with its own status (ack, nack, retry, filter).
//! A [`Worker`] runs the [`Task`]s of one source in the [`Order`] given, pipelined:
//! several batches are in flight, yet each destination, the [`Dlq`] and the source
//! observe exactly what a one-batch-at-a-time run would produce.
//!
//! The invariants this crate keeps (see `DESIGN.md`): a source position is acked only
//! after every destination durably acked its record or it is in the DLQ, and after the
//! position is committed (I1); positions are released in read order (I2); nack wins
//! and a nacked record goes to the DLQ once (I3); destinations see records in source
//! order, and nothing read after a processor-nacked record reaches a destination before
//! that record is in the DLQ (I4); records in flight are bounded (I5); nothing is lost
//! silently (I6).
//!
//! This crate knows nothing of configuration files, stores, HTTP or concrete
//! connectors, and must never depend on them.

mod batch;
mod chain;
pub mod component;
mod dlq;
mod error;
pub mod inspect;
mod ledger;
mod order;
mod parallel;
mod plugin;
mod shared;
mod spec;
mod task;
pub mod telemetry;
pub mod typed;
mod worker;

pub use batch::{Batch, RecordFlag, RecordStatus};
pub use chain::{RetryHistory, RetryLimits};
pub use component::{Built, Component, ComponentKind, Registry};
pub use dlq::{Dlq, NackedRecord, describe_record, envelope, record_map};
pub use error::{
    BoxError, ConnectorError, Error, ErrorKind, RecordError, Result, Retry, error_chain,
};
pub use order::Order;
pub use parallel::Parallel;
pub use plugin::{
    Destination, DestinationAck, LagReport, PositionCommitter, ProcessedRecord, Processor, Source,
    WriteFence,
};
pub use shared::SharedDestination;
pub use spec::{
    SettingSpec, SettingType, Settings, SettingsError, SettingsReader, record_reads, settings_of,
};
pub use task::{DestinationTask, ProcessorTask, SourceTask, Task};
pub use worker::{Stopper, Worker, WorkerConfig, WorkerStats};

pub use funnel_record as record;
