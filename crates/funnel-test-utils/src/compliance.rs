//! The connector compliance suite: one function for sources, one for destinations,
//! that every connector's integration test calls against its real backend (the model
//! is Vector's `run_and_assert_sink_compliance`).
//!
//! The suite drives a connector through the [`Source`] / [`Destination`] contract the
//! engine relies on, and panics with the connector, the check and what went wrong at
//! the first violation. Each check gets a fresh backend from the test's factory (a new
//! file, new tables and replication slot, ...), so checks do not see each other's
//! records.
//!
//! Sources ([`run_source_compliance`]):
//!
//! - **open, read, ack, teardown**: records injected before and after `open` are read
//!   in order, each with a distinct, non-empty position, and acked one by one;
//! - **resume from a committed position**: a source built with the position of an
//!   acked record reads what follows it — nothing at or before it again, nothing after
//!   it skipped;
//! - **empty and large records**: an empty payload and one of
//!   [`LARGE_RECORD_BYTES`] read back whole;
//! - **teardown without open, and twice**;
//! - **stop while a read is blocked**: a read cancelled while it waits, or right after
//!   its first step with a record to read, loses nothing; `teardown` during a blocked
//!   read returns within [`PROMPT`] and the read ends with an error; `teardown` of a
//!   source with a backlog of unread records returns within [`PROMPT`];
//! - **restart after abandonment**: a source dropped without `teardown` (what SIGKILL
//!   leaves) does not stop a new one from opening, which reads again everything that
//!   was not acked.
//!
//! Destinations ([`run_destination_compliance`]):
//!
//! - **open, write, ack, teardown**: one ack per record, in write order, without error;
//!   the backend holds the records in write order;
//! - **acks in write order while writing**: many batches written while acks are
//!   collected; exactly one ack per record, in write order;
//! - **empty and large records**;
//! - **teardown without open, and twice**;
//! - **stop while an ack is blocked**: an `ack` with nothing written, cancelled, loses
//!   nothing; `teardown` during a blocked `ack` returns within [`PROMPT`] and the `ack`
//!   ends with an error;
//! - **restart after abandonment**: a destination dropped without `teardown` keeps every
//!   record it acked; a new one opens and writes again what was not acked.
//!
//! "Exactly one ack per record" is checked without waiting for silence: after the acks
//! of a group of records, one more record is written and the next acks must be its own.
//!
//! A check that cannot apply to a connector is turned off by its capabilities
//! ([`SourceCapabilities`], [`DestinationCapabilities`]), each with the reason written
//! in the test; every other check runs. The returned [`Report`] lists both.
//!
//! The suite spawns no task: it runs on the test's own task (and thread), so a test
//! may capture thread-local state such as a `tracing` subscriber.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Destination, DestinationAck, Source};
use funnel_record::{Position, Record};
use tokio::time::timeout;

/// The size of the large payload of the "empty and large records" checks (5 MiB).
pub const LARGE_RECORD_BYTES: usize = 5 * 1024 * 1024;

/// How long a connector may take to stop: `teardown`, and a blocked read or ack
/// ending after it.
pub const PROMPT: Duration = Duration::from_secs(3);

/// How long the suite waits for a record, an ack, or an `open`.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How long a read or ack is left waiting before it is cancelled or the connector is
/// stopped under it (and a restarted source, before new input arrives). Nothing is
/// asserted from this wait: it only lets the call reach the point where it blocks.
const SETTLE: Duration = Duration::from_millis(200);

/// Records injected for the backlog part of "stop while a read is blocked": with a
/// small batch size (backends should build sources with `sdk.batch.size` around 10),
/// enough to fill every internal queue of a source.
const BACKLOG: usize = 500;

/// Whether a connector supports what some checks need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Supported: the checks run.
    Yes,
    /// Not supported, for this reason: the checks that need it are skipped.
    No(&'static str),
}

/// What the source checks may rely on.
#[derive(Clone, Copy, Debug)]
pub struct SourceCapabilities {
    /// Records can be added to the source's input ([`SourceBackend::inject`]). Without
    /// input, the checks read what the source makes by itself, and those that need
    /// chosen records (empty and large ones, a read with nothing to read) are skipped.
    pub input: Support,
    /// After a resume or a restart the source reads exactly the records after the
    /// resume position. `No(reason)`: some of them may come twice (at least once); a
    /// record at or before the resume position must still never come again.
    pub exact_resume: Support,
}

/// What the destination checks may rely on.
#[derive(Clone, Copy, Debug)]
pub struct DestinationCapabilities {
    /// What was written can be read back ([`DestinationBackend::written`]). Without it,
    /// only acks are checked.
    pub readback: Support,
}

impl SourceCapabilities {
    /// Records can be added and resumes are exact: every source check runs.
    pub const FULL: Self = Self {
        input: Support::Yes,
        exact_resume: Support::Yes,
    };
}

impl DestinationCapabilities {
    /// What was written can be read back: every destination check runs.
    pub const FULL: Self = Self {
        readback: Support::Yes,
    };
}

/// What a compliance run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks that ran (and passed: a failure panics).
    pub ran: Vec<&'static str>,
    /// The checks that were skipped, with the reason from the capabilities.
    pub skipped: Vec<(&'static str, &'static str)>,
}

impl Report {
    /// Asserts that every check ran: none was skipped.
    ///
    /// # Panics
    ///
    /// When a check was skipped.
    pub fn assert_complete(&self) {
        assert!(self.skipped.is_empty(), "checks were skipped: {self:?}");
    }

    fn record(&mut self, check: &'static str, support: Support) -> bool {
        match support {
            Support::Yes => {
                self.ran.push(check);
                true
            }
            Support::No(reason) => {
                self.skipped.push((check, reason));
                false
            }
        }
    }
}

/// A source connector and the backend it reads, for [`run_source_compliance`].
#[async_trait]
pub trait SourceBackend: Send + Sync {
    /// A new, unopened source reading this backend, resuming after `resume` (a
    /// position it emitted) or from the start.
    fn build(&self, resume: Option<Position>) -> Arc<dyn Source>;

    /// Adds one record per payload to the source's input, after everything added
    /// before, and returns once a source can read them. Payloads are ASCII text
    /// without line breaks. Only called when [`SourceCapabilities::input`] is `Yes`.
    async fn inject(&self, payloads: &[Bytes]) {
        let _ = payloads;
        panic!("SourceBackend::inject is not implemented, but the capabilities declare input");
    }

    /// The payload a record carries: what [`inject`](Self::inject) was given, or for a
    /// source without input, whatever tells its records apart (it must be the same
    /// when a restarted source reads the record again).
    fn payload(&self, record: &Record) -> Bytes;

    /// The largest payload the backend can hand the source, when it is below
    /// [`LARGE_RECORD_BYTES`]: the "empty and large records" check injects payloads of
    /// that size instead. A test broker that never returns a message over its fetch
    /// limit (tansu caps a fetch at 5 MiB) needs it.
    fn max_payload_bytes(&self) -> Option<usize> {
        None
    }
}

/// A destination connector and the backend it writes to, for
/// [`run_destination_compliance`].
#[async_trait]
pub trait DestinationBackend: Send + Sync {
    /// A new, unopened destination writing to this backend. Destinations built by one
    /// backend write to the same place (a restart appends to what was written).
    fn build(&self) -> Arc<dyn Destination>;

    /// The record to write for `payload` (ASCII text without line breaks) at
    /// `position` (zero-padded decimal, increasing in write order). The default is a
    /// `create` record whose `payload.after` is the raw payload.
    fn record(&self, position: Position, payload: Bytes) -> Record {
        Record::new(position, payload)
    }

    /// The largest payload the destination takes, when it is below
    /// [`LARGE_RECORD_BYTES`]: the "empty and large records" check writes a payload of
    /// that size instead. A Conduit plugin written in Python receives gRPC messages of
    /// at most 4 MiB, whatever its host does.
    fn max_payload_bytes(&self) -> Option<usize> {
        None
    }

    /// The payloads the backend holds, in write order. Only called when
    /// [`DestinationCapabilities::readback`] is `Yes`.
    async fn written(&self) -> Vec<Bytes> {
        panic!(
            "DestinationBackend::written is not implemented, but the capabilities declare readback"
        );
    }
}

/// Runs every source check that `capabilities` allow, each against a fresh backend
/// from `backend` (called with the check's name). `connector` names the
/// connector in failure messages.
///
/// # Panics
///
/// At the first violation of the source contract, naming the connector and the check.
pub async fn run_source_compliance<B, F, Fut>(
    connector: &str,
    capabilities: SourceCapabilities,
    mut backend: F,
) -> Report
where
    B: SourceBackend,
    F: FnMut(&'static str) -> Fut,
    Fut: Future<Output = B>,
{
    let mut report = Report::default();
    for check in Check::SOURCE {
        // Empty and large records, and a read with nothing to read, need chosen input.
        let needs = if matches!(check, Check::Sizes | Check::BlockedRead) {
            capabilities.input
        } else {
            Support::Yes
        };
        if !report.record(check.name(), needs) {
            continue;
        }
        let ctx = Ctx::new(connector, check.name());
        let backend = backend(check.name()).await;
        let (b, caps) = (&backend, capabilities);
        match check {
            Check::ReadLifecycle => source_lifecycle(&ctx, b, caps).await,
            Check::Resume => source_resume(&ctx, b, caps).await,
            Check::Sizes => source_empty_and_large(&ctx, b).await,
            Check::Teardowns => source_teardowns(&ctx, b, caps).await,
            Check::BlockedRead => source_blocked_read(&ctx, b).await,
            _ => source_abandoned(&ctx, b, caps).await,
        }
    }
    report
}

/// Runs every destination check that `capabilities` allow, each against a fresh
/// backend from `backend` (called with the check's name). `connector` names the
/// connector in failure messages.
///
/// # Panics
///
/// At the first violation of the destination contract, naming the connector and the
/// check.
pub async fn run_destination_compliance<B: DestinationBackend, Fut: Future<Output = B>>(
    connector: &str,
    capabilities: DestinationCapabilities,
    mut backend: impl FnMut(&'static str) -> Fut,
) -> Report {
    let mut report = Report::default();
    let readback = capabilities.readback == Support::Yes;
    for check in Check::DESTINATION {
        report.record(check.name(), Support::Yes);
        let ctx = Ctx::new(connector, check.name());
        let mut d = Dest {
            ctx: &ctx,
            backend: &backend(check.name()).await,
            next: 0,
            expected: Vec::new(),
        };
        match check {
            Check::WriteLifecycle => destination_lifecycle(&mut d).await,
            Check::Ordered => destination_ordered(&mut d).await,
            Check::Sizes => destination_empty_and_large(&mut d).await,
            Check::Teardowns => destination_teardowns(&mut d).await,
            Check::BlockedAck => destination_blocked_ack(&mut d).await,
            _ => destination_abandoned(&mut d, readback).await,
        }
        if readback && check != Check::Abandoned {
            let written = d.backend.written().await;
            assert_payloads(&ctx, "the backend holds", &written, &d.expected);
        }
    }
    if let Support::No(reason) = capabilities.readback {
        report
            .skipped
            .push(("reading back what was written", reason));
    }
    report
}

/// The checks of the suite.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    ReadLifecycle,
    Resume,
    WriteLifecycle,
    Ordered,
    Sizes,
    Teardowns,
    BlockedRead,
    BlockedAck,
    Abandoned,
}

impl Check {
    /// The source checks, in the order they run.
    const SOURCE: [Self; 6] = [
        Self::ReadLifecycle,
        Self::Resume,
        Self::Sizes,
        Self::Teardowns,
        Self::BlockedRead,
        Self::Abandoned,
    ];

    /// The destination checks, in the order they run.
    const DESTINATION: [Self; 6] = [
        Self::WriteLifecycle,
        Self::Ordered,
        Self::Sizes,
        Self::Teardowns,
        Self::BlockedAck,
        Self::Abandoned,
    ];

    /// The check's name, in reports and failure messages; also given to the backend
    /// factory.
    fn name(self) -> &'static str {
        match self {
            Self::ReadLifecycle => "open, read, ack, teardown",
            Self::Resume => "resume from a committed position",
            Self::WriteLifecycle => "open, write, ack, teardown",
            Self::Ordered => "acks in write order while writing",
            Self::Sizes => "empty and large records",
            Self::Teardowns => "teardown without open, and twice",
            Self::BlockedRead => "stop while a read is blocked",
            Self::BlockedAck => "stop while an ack is blocked",
            Self::Abandoned => "restart after abandonment",
        }
    }
}

/// Where a failure happened.
struct Ctx {
    connector: String,
    check: &'static str,
}

impl Ctx {
    fn new(connector: &str, check: &'static str) -> Self {
        Self {
            connector: connector.to_owned(),
            check,
        }
    }
}

impl fmt::Display for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} compliance, check \"{}\"", self.connector, self.check)
    }
}

/// `count` distinct small payloads, tagged with `tag`.
fn payloads(tag: &str, range: std::ops::Range<usize>) -> Vec<Bytes> {
    range.map(|i| Bytes::from(format!("{tag} {i}"))).collect()
}

/// A payload of `size` ASCII bytes starting with `tag`.
fn large_of(tag: &str, size: usize) -> Bytes {
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(tag.as_bytes());
    let pattern = b"0123456789abcdefghijklmnopqrstuvwxyz";
    while bytes.len() < size {
        let n = (size - bytes.len()).min(pattern.len());
        bytes.extend_from_slice(&pattern[..n]);
    }
    Bytes::from(bytes)
}

/// A payload for a message: the text, or its size and start when long.
fn describe(payload: &[u8]) -> String {
    if payload.len() <= 60 {
        format!("{:?}", String::from_utf8_lossy(payload))
    } else {
        format!(
            "<{} bytes: {:?}...>",
            payload.len(),
            String::from_utf8_lossy(&payload[..40])
        )
    }
}

fn describe_all(payloads: &[Bytes]) -> String {
    let items: Vec<String> = payloads.iter().map(|p| describe(p)).collect();
    format!("[{}]", items.join(", "))
}

fn assert_payloads(ctx: &Ctx, what: &str, got: &[Bytes], want: &[Bytes]) {
    assert!(
        got == want,
        "{ctx}: {what} {}, expected {}",
        describe_all(got),
        describe_all(want)
    );
}

/// Runs `call` with a deadline, naming what timed out.
async fn within<T>(ctx: &Ctx, limit: Duration, what: &str, call: impl Future<Output = T>) -> T {
    match timeout(limit, call).await {
        Ok(value) => value,
        Err(_) => panic!("{ctx}: {what} did not return within {limit:?}"),
    }
}

fn ok<T>(ctx: &Ctx, what: &str, result: Result<T, ConnectorError>) -> T {
    result.unwrap_or_else(|e| panic!("{ctx}: {what} failed ({}, {:?}): {e}", e.kind(), e.retry()))
}

/// Lets `call` (a read or an ack with nothing to return) wait, then cancels it.
async fn cancel_blocked<T>(
    ctx: &Ctx,
    what: &str,
    call: impl Future<Output = Result<T, ConnectorError>>,
) {
    tokio::select! {
        biased;
        result = call => panic!(
            "{ctx}: {what} returned with nothing to return ({})",
            if result.is_ok() { "some items" } else { "an error" }
        ),
        () = tokio::time::sleep(SETTLE) => {}
    }
}

/// Lets `call` (a read or an ack with nothing to return) wait, then tears the
/// connector down under it: both must end within [`PROMPT`], the teardown without
/// error and `call` with an error.
async fn teardown_during<T>(
    ctx: &Ctx,
    what: &str,
    call: impl Future<Output = Result<T, ConnectorError>>,
    teardown: impl Future<Output = Result<(), ConnectorError>>,
) {
    let (result, torn_down) = within(
        ctx,
        PROMPT,
        &format!("a blocked {what} and a teardown made during it"),
        async {
            tokio::join!(call, async {
                tokio::time::sleep(SETTLE).await;
                teardown.await
            })
        },
    )
    .await;
    ok(ctx, &format!("teardown during a blocked {what}"), torn_down);
    assert!(
        result.is_err(),
        "{ctx}: a {what} blocked during teardown returned instead of ending with an error"
    );
}

// ---------------------------------------------------------------------------------
// Sources.

async fn open_source(ctx: &Ctx, source: &dyn Source) {
    let result = within(ctx, PATIENCE, "open", source.open()).await;
    ok(ctx, "open", result);
}

async fn teardown_source(ctx: &Ctx, source: &dyn Source, what: &str) {
    let result = within(ctx, PROMPT, what, source.teardown()).await;
    ok(ctx, what, result);
}

async fn ack_source(ctx: &Ctx, source: &dyn Source, positions: &[Position]) {
    let result = within(ctx, PATIENCE, "ack", source.ack(positions)).await;
    ok(ctx, "ack", result);
}

/// One read: a non-empty batch of records with non-empty positions.
async fn read_batch(ctx: &Ctx, source: &dyn Source) -> Vec<Record> {
    let result = within(ctx, PATIENCE, "read (with records to read)", source.read()).await;
    let Some(batch) = ok(ctx, "read", result) else {
        panic!("{ctx}: read said the source has no more records while records wait");
    };
    assert!(
        !batch.is_empty(),
        "{ctx}: read returned an empty batch; it must wait until there is a record"
    );
    for record in &batch {
        assert!(
            !record.position.is_empty(),
            "{ctx}: read returned a record without a position"
        );
    }
    batch
}

/// Reads until at least `n` records came; every record read is returned.
async fn read_at_least(ctx: &Ctx, source: &dyn Source, n: usize) -> Vec<Record> {
    let mut records = Vec::new();
    while records.len() < n {
        records.extend(read_batch(ctx, source).await);
    }
    records
}

/// Reads exactly `n` records (the source has no more).
async fn read_exactly(ctx: &Ctx, source: &dyn Source, n: usize) -> Vec<Record> {
    let records = read_at_least(ctx, source, n).await;
    assert!(
        records.len() == n,
        "{ctx}: read {} records where {n} were injected",
        records.len()
    );
    records
}

/// Reads until a record carries `sentinel`; returns the payloads before it.
async fn read_until(
    ctx: &Ctx,
    backend: &dyn SourceBackend,
    source: &dyn Source,
    sentinel: &Bytes,
) -> Vec<Bytes> {
    let mut payloads = Vec::new();
    loop {
        for record in read_batch(ctx, source).await {
            let payload = backend.payload(&record);
            if payload == sentinel {
                return payloads;
            }
            payloads.push(payload);
        }
    }
}

fn assert_distinct_positions(ctx: &Ctx, records: &[Record]) {
    let mut seen = HashSet::new();
    for record in records {
        assert!(
            seen.insert(&record.position),
            "{ctx}: two records share the position {}",
            record.position
        );
    }
}

fn payloads_of(backend: &dyn SourceBackend, records: &[Record]) -> Vec<Bytes> {
    records.iter().map(|r| backend.payload(r)).collect()
}

fn positions_of(records: &[Record]) -> Vec<Position> {
    records.iter().map(|r| r.position.clone()).collect()
}

/// Checks what a resumed source read before the sentinel: never an acked record, and
/// exactly `want` (or, at least once, `want` in order with repeats).
fn assert_redelivered(ctx: &Ctx, exact: Support, acked: &[Bytes], want: &[Bytes], got: &[Bytes]) {
    for payload in got {
        assert!(
            !acked.contains(payload),
            "{ctx}: {} was acked before the restart and came again (read after resuming: {})",
            describe(payload),
            describe_all(got)
        );
    }
    match exact {
        Support::Yes => assert_payloads(ctx, "after resuming, read", got, want),
        Support::No(_) => {
            assert_repeats(ctx, exact, want, got);
            let mut first: Vec<Bytes> = Vec::new();
            for payload in got {
                if !first.contains(payload) {
                    first.push(payload.clone());
                }
            }
            assert_payloads(
                ctx,
                "after resuming, read (first occurrences)",
                &first,
                want,
            );
        }
    }
}

/// Checks that `got` holds only records of `allowed`, or nothing when the source
/// resumes exactly.
fn assert_repeats(ctx: &Ctx, exact: Support, allowed: &[Bytes], got: &[Bytes]) {
    let allowed: &[Bytes] = if exact == Support::Yes { &[] } else { allowed };
    for payload in got {
        assert!(
            allowed.contains(payload),
            "{ctx}: after resuming, read {} unexpectedly",
            describe(payload)
        );
    }
}

/// Open, read records injected before and after `open`, ack each, teardown.
async fn source_lifecycle(ctx: &Ctx, backend: &impl SourceBackend, caps: SourceCapabilities) {
    let (source, records) = first_run(ctx, backend, caps.input, "lifecycle", 6).await;
    for record in &records {
        ack_source(ctx, &*source, std::slice::from_ref(&record.position)).await;
    }
    teardown_source(ctx, &*source, "teardown").await;
}

/// A new source reads `n` records (with input, half
/// of them injected before `open` and half after). Returns the open source and what
/// it read.
async fn first_run(
    ctx: &Ctx,
    backend: &impl SourceBackend,
    input: Support,
    tag: &str,
    n: usize,
) -> (Arc<dyn Source>, Vec<Record>) {
    let injected = payloads(tag, 0..n);
    if input == Support::Yes {
        backend.inject(&injected[..n / 2]).await;
    }
    let source = backend.build(None);
    open_source(ctx, &*source).await;
    let records = if input == Support::Yes {
        backend.inject(&injected[n / 2..]).await;
        let records = read_exactly(ctx, &*source, n).await;
        assert_payloads(ctx, "read", &payloads_of(backend, &records), &injected);
        records
    } else {
        read_at_least(ctx, &*source, n).await
    };
    assert_distinct_positions(ctx, &records);
    (source, records)
}

/// The second run of a resume check: a new source resuming from the position of
/// `records[acked - 1]` reads the records after it, and none before.
async fn second_run(
    ctx: &Ctx,
    backend: &impl SourceBackend,
    caps: SourceCapabilities,
    records: &[Record],
    acked: usize,
) {
    let read = payloads_of(backend, records);
    let source = backend.build(Some(records[acked - 1].position.clone()));
    open_source(ctx, &*source).await;
    if caps.input == Support::Yes {
        // Let the source get going before new input arrives: input would wake what an
        // abandoned source left running, and hide that it still holds the backend.
        tokio::time::sleep(SETTLE).await;
        let sentinel = Bytes::from(format!("{} sentinel", ctx.check));
        backend.inject(std::slice::from_ref(&sentinel)).await;
        let got = read_until(ctx, backend, &*source, &sentinel).await;
        assert_redelivered(ctx, caps.exact_resume, &read[..acked], &read[acked..], &got);
        // A record added now is read too: the resumed source goes on reading new input
        // (and, at least once, repeats only what it may repeat).
        let last = Bytes::from(format!("{} last", ctx.check));
        backend.inject(std::slice::from_ref(&last)).await;
        let got = read_until(ctx, backend, &*source, &last).await;
        let mut repeatable = read[acked..].to_vec();
        repeatable.push(sentinel);
        assert_repeats(ctx, caps.exact_resume, &repeatable, &got);
    } else {
        let rest = read.len() - acked;
        let again = read_at_least(ctx, &*source, rest).await;
        let got = payloads_of(backend, &again[..rest]);
        assert_redelivered(ctx, Support::Yes, &read[..acked], &read[acked..], &got);
    }
    teardown_source(ctx, &*source, "teardown").await;
}

/// Read eight records, ack six, stop; a source resuming from the sixth reads the last
/// two and nothing else.
async fn source_resume(ctx: &Ctx, backend: &impl SourceBackend, caps: SourceCapabilities) {
    let (source, records) = first_run(ctx, backend, caps.input, "resume", 8).await;
    // Several positions per call, as the engine acks a released prefix.
    ack_source(ctx, &*source, &positions_of(&records[..3])).await;
    ack_source(ctx, &*source, &positions_of(&records[3..6])).await;
    teardown_source(ctx, &*source, "teardown").await;
    second_run(ctx, backend, caps, &records, 6).await;
}

/// Empty and large payloads, before and after `open`, read back whole.
async fn source_empty_and_large(ctx: &Ctx, backend: &impl SourceBackend) {
    let size = backend
        .max_payload_bytes()
        .map_or(LARGE_RECORD_BYTES, |max| max.min(LARGE_RECORD_BYTES));
    let want = [
        Bytes::from_static(b"small before"),
        Bytes::new(),
        large_of("large before ", size),
        Bytes::from_static(b"small after"),
        Bytes::new(),
        large_of("large after ", size),
        Bytes::from_static(b"last"),
    ];
    backend.inject(&want[..3]).await;
    let source = backend.build(None);
    open_source(ctx, &*source).await;
    backend.inject(&want[3..]).await;
    let records = read_exactly(ctx, &*source, want.len()).await;
    assert_payloads(ctx, "read", &payloads_of(backend, &records), &want);
    ack_source(ctx, &*source, &positions_of(&records)).await;
    teardown_source(ctx, &*source, "teardown").await;
}

/// `teardown` of a source never opened, and `teardown` called twice.
async fn source_teardowns(ctx: &Ctx, backend: &impl SourceBackend, caps: SourceCapabilities) {
    let input = caps.input;
    let source = backend.build(None);
    teardown_source(ctx, &*source, "teardown without open").await;
    drop(source);

    if input == Support::Yes {
        backend.inject(&payloads("teardown", 0..1)).await;
    }
    let source = backend.build(None);
    open_source(ctx, &*source).await;
    let records = read_at_least(ctx, &*source, 1).await;
    ack_source(ctx, &*source, &positions_of(&records)).await;
    teardown_source(ctx, &*source, "teardown").await;
    teardown_source(ctx, &*source, "a second teardown").await;
}

/// Cancel a blocked read, tear down under a blocked read, tear down with a backlog.
async fn source_blocked_read(ctx: &Ctx, backend: &impl SourceBackend) {
    let injected = payloads("blocked", 0..2);
    backend.inject(&injected[..1]).await;
    let source = backend.build(None);
    open_source(ctx, &*source).await;
    let first = read_exactly(ctx, &*source, 1).await;
    ack_source(ctx, &*source, &positions_of(&first)).await;

    // A read with nothing to read, cancelled: the next read gets the next record.
    cancel_blocked(ctx, "read", source.read()).await;
    backend.inject(&injected[1..]).await;
    // A read cancelled after its first step, with a record to read, loses nothing
    // either: the record comes from that step or from the next read.
    let mut second = tokio::select! {
        biased;
        result = source.read() => ok(ctx, "read", result).unwrap_or_default(),
        () = std::future::ready(()) => Vec::new(),
    };
    if second.is_empty() {
        second = read_exactly(ctx, &*source, 1).await;
    }
    assert_payloads(
        ctx,
        "after a cancelled read, read",
        &payloads_of(backend, &second),
        &injected[1..],
    );
    ack_source(ctx, &*source, &positions_of(&second)).await;

    // Teardown while a read waits: both return promptly, the read with an error.
    teardown_during(ctx, "read", source.read(), source.teardown()).await;
    drop(source);

    // Teardown of a source whose queues are full of unread records.
    backend
        .inject(&payloads("blocked backlog", 0..BACKLOG))
        .await;
    let source = backend.build(Some(second[0].position.clone()));
    open_source(ctx, &*source).await;
    let records = read_batch(ctx, &*source).await;
    assert_payloads(
        ctx,
        "the first record of the backlog is",
        &payloads_of(backend, &records[..1]),
        &payloads("blocked backlog", 0..1),
    );
    // Time for the source to fill its queues with the rest.
    tokio::time::sleep(SETTLE).await;
    teardown_source(ctx, &*source, "teardown with unread records").await;
}

/// Read six records, ack two, drop the source without teardown; a new source resuming
/// from the second reads the other four again.
async fn source_abandoned(ctx: &Ctx, backend: &impl SourceBackend, caps: SourceCapabilities) {
    let (source, records) = first_run(ctx, backend, caps.input, "abandoned", 6).await;
    ack_source(ctx, &*source, &positions_of(&records[..2])).await;
    // What SIGKILL leaves: no teardown, and a read in flight.
    tokio::select! {
        biased;
        _ = source.read(), if caps.input == Support::Yes => {
            panic!("{ctx}: read returned with nothing to read")
        }
        () = std::future::ready(()) => {}
    }
    drop(source);
    second_run(ctx, backend, caps, &records, 2).await;
}

// ---------------------------------------------------------------------------------
// Destinations.

/// One destination check: its backend, the next position, and what the backend
/// should hold at the end.
struct Dest<'a, B> {
    ctx: &'a Ctx,
    backend: &'a B,
    next: u64,
    expected: Vec<Bytes>,
}

impl<B: DestinationBackend> Dest<'_, B> {
    /// Records for `payloads`, at the next positions.
    fn records(&mut self, payloads: &[Bytes]) -> Vec<Record> {
        payloads
            .iter()
            .map(|payload| {
                self.next += 1;
                let position = Position::from(format!("{:08}", self.next));
                self.backend.record(position, payload.clone())
            })
            .collect()
    }

    async fn open(&self) -> Arc<dyn Destination> {
        let destination = self.backend.build();
        let result = within(self.ctx, PATIENCE, "open", destination.open()).await;
        ok(self.ctx, "open", result);
        destination
    }

    async fn write(&mut self, destination: &dyn Destination, records: &[Record]) {
        let result = within(self.ctx, PATIENCE, "write", destination.write(records)).await;
        ok(self.ctx, "write", result);
    }

    async fn teardown(&self, destination: &dyn Destination, what: &str) {
        let result = within(self.ctx, PROMPT, what, destination.teardown()).await;
        ok(self.ctx, what, result);
    }

    /// Waits for the acks of `records`: one each, in order, none with an error, no
    /// empty list.
    async fn acks(&self, destination: &dyn Destination, records: &[Record]) {
        let ctx = self.ctx;
        let mut acks: Vec<DestinationAck> = Vec::new();
        while acks.len() < records.len() {
            let result = within(
                ctx,
                PATIENCE,
                "ack (with records written)",
                destination.ack(),
            )
            .await;
            let batch = ok(ctx, "ack", result);
            assert!(
                !batch.is_empty(),
                "{ctx}: ack returned an empty list; it must wait until there is an ack"
            );
            acks.extend(batch);
        }
        let got: Vec<&Position> = acks.iter().map(|a| &a.position).collect();
        let want: Vec<&Position> = records.iter().map(|r| &r.position).collect();
        assert!(
            got == want,
            "{ctx}: acks for {:?} where {:?} were written (one ack per record, in write order)",
            got,
            want
        );
        for ack in &acks {
            if let Some(error) = &ack.error {
                panic!("{ctx}: record {} was nacked: {error}", ack.position);
            }
        }
    }

    /// Writes `payloads` in one batch and waits for their acks.
    async fn write_and_ack(&mut self, destination: &dyn Destination, payloads: &[Bytes]) {
        let records = self.records(payloads);
        self.write(destination, &records).await;
        self.acks(destination, &records).await;
        self.expected.extend_from_slice(payloads);
    }

    /// One more record, whose ack must be the next one: no ack of an earlier record
    /// came twice or is still to come.
    async fn sentinel(&mut self, destination: &dyn Destination) {
        self.write_and_ack(destination, &[Bytes::from_static(b"sentinel")])
            .await;
    }
}

/// Open, three batches, their acks, teardown.
async fn destination_lifecycle<B: DestinationBackend>(d: &mut Dest<'_, B>) {
    let destination = d.open().await;
    let payloads = payloads("lifecycle", 0..9);
    let mut records = Vec::new();
    for batch in [&payloads[..1], &payloads[1..6], &payloads[6..]] {
        let batch = d.records(batch);
        d.write(&*destination, &batch).await;
        records.extend(batch);
    }
    d.acks(&*destination, &records).await;
    d.expected.extend(payloads);
    d.sentinel(&*destination).await;
    d.teardown(&*destination, "teardown").await;
}

/// Forty batches of one to seven records written while acks are collected.
async fn destination_ordered<B: DestinationBackend>(d: &mut Dest<'_, B>) {
    let destination = d.open().await;
    let payloads = payloads("ordered", 0..160);
    let mut batches = Vec::new();
    let mut rest = &payloads[..];
    let mut size = 1;
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at(size.min(rest.len()));
        batches.push(d.records(batch));
        rest = tail;
        size = size % 7 + 1;
    }
    let records: Vec<Record> = batches.iter().flatten().cloned().collect();
    let ctx = d.ctx;
    let writes = async {
        for batch in &batches {
            let result = within(ctx, PATIENCE, "write", destination.write(batch)).await;
            ok(ctx, "write", result);
        }
    };
    tokio::join!(writes, d.acks(&*destination, &records));
    d.expected.extend(payloads);
    d.sentinel(&*destination).await;
    d.teardown(&*destination, "teardown").await;
}

/// An empty payload and a large one, acked without error and held whole.
async fn destination_empty_and_large<B: DestinationBackend>(d: &mut Dest<'_, B>) {
    let destination = d.open().await;
    let size = d
        .backend
        .max_payload_bytes()
        .map_or(LARGE_RECORD_BYTES, |max| max.min(LARGE_RECORD_BYTES));
    let payloads = [
        Bytes::from_static(b"small"),
        Bytes::new(),
        large_of("large ", size),
        Bytes::from_static(b"last"),
    ];
    d.write_and_ack(&*destination, &payloads).await;
    d.teardown(&*destination, "teardown").await;
}

/// `teardown` of a destination never opened, and `teardown` called twice.
async fn destination_teardowns<B: DestinationBackend>(d: &mut Dest<'_, B>) {
    let destination = d.backend.build();
    d.teardown(&*destination, "teardown without open").await;
    drop(destination);

    let destination = d.open().await;
    d.write_and_ack(&*destination, &payloads("teardown", 0..2))
        .await;
    d.teardown(&*destination, "teardown").await;
    d.teardown(&*destination, "a second teardown").await;
}

/// Cancel a blocked ack, tear down under a blocked ack.
async fn destination_blocked_ack<B: DestinationBackend>(d: &mut Dest<'_, B>) {
    let ctx = d.ctx;
    let destination = d.open().await;
    cancel_blocked(ctx, "ack", destination.ack()).await;
    d.write_and_ack(&*destination, &payloads("blocked", 0..1))
        .await;

    teardown_during(ctx, "ack", destination.ack(), destination.teardown()).await;
}

/// Write and ack A, write B, drop the destination without teardown; a new destination
/// writes B again and C. The backend keeps A first, then B and C (B possibly twice:
/// at least once).
async fn destination_abandoned<B: DestinationBackend>(d: &mut Dest<'_, B>, readback: bool) {
    let ctx = d.ctx;
    let destination = d.open().await;
    let a = payloads("abandoned a", 0..3);
    let b = payloads("abandoned b", 0..3);
    let c = payloads("abandoned c", 0..3);
    d.write_and_ack(&*destination, &a).await;
    let b_records = d.records(&b);
    d.write(&*destination, &b_records).await;
    // What SIGKILL leaves: no teardown, and an ack in flight.
    tokio::select! {
        biased;
        _ = destination.ack() => {}
        () = std::future::ready(()) => {}
    }
    drop(destination);

    let destination = d.open().await;
    d.write(&*destination, &b_records).await;
    d.acks(&*destination, &b_records).await;
    d.write_and_ack(&*destination, &c).await;
    d.teardown(&*destination, "teardown").await;
    if !readback {
        return;
    }
    let written = d.backend.written().await;
    assert!(
        written.len() >= a.len() && written[..a.len()] == a[..],
        "{ctx}: after a restart the backend holds {}; the acked records {} must come first",
        describe_all(&written),
        describe_all(&a)
    );
    let mut first = Vec::new();
    for payload in &written {
        assert!(
            a.contains(payload) || b.contains(payload) || c.contains(payload),
            "{ctx}: the backend holds {} which was never written",
            describe(payload)
        );
        if !first.contains(payload) {
            first.push(payload.clone());
        }
    }
    let want: Vec<Bytes> = a.iter().chain(&b).chain(&c).cloned().collect();
    assert_payloads(
        ctx,
        "after a restart, the backend holds (first occurrences)",
        &first,
        &want,
    );
}
