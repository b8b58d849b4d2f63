//! The compliance suite itself: an in-memory connector that keeps the contract passes
//! every check, and each broken variant fails the check that is about its fault. The
//! connectors are in memory, so the tests run on paused time: the suite's deadlines
//! pass at once when nothing can happen any more.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use funnel_core::{ConnectorError, Destination, DestinationAck, Source};
use funnel_record::{Position, Record};
use funnel_test_utils::compliance::{
    DestinationBackend, DestinationCapabilities, SourceBackend, SourceCapabilities, Support,
    run_destination_compliance, run_source_compliance,
};
use funnel_test_utils::connectors::raw;
use tokio::sync::Notify;

/// What a connector gets wrong.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The source starts at its resume position instead of after it.
    ResumesAtTheResumePosition,
    /// A read takes its records before it yields, so a cancelled read loses them.
    LosesCancelledReads,
    /// The destination acks each batch backwards.
    AcksBackwards,
    /// Teardown leaves a waiting `ack` waiting.
    AckOutlivesTeardown,
}

/// Payloads in a list: the sources read it, the destinations append to it.
struct Store {
    payloads: Mutex<Vec<Bytes>>,
    appended: Notify,
    fault: Fault,
}

impl Store {
    fn new(fault: Fault) -> Arc<Self> {
        Arc::new(Self {
            payloads: Mutex::new(Vec::new()),
            appended: Notify::new(),
            fault,
        })
    }

    fn append(&self, payloads: impl IntoIterator<Item = Bytes>) {
        self.payloads.lock().unwrap().extend(payloads);
        self.appended.notify_waiters();
    }
}

/// Reads the store from an index; the position of a record is its index + 1.
struct ListSource {
    store: Arc<Store>,
    start: usize,
    /// The index of the next record; `None` before open and after teardown.
    next: Mutex<Option<usize>>,
    stopped: Notify,
}

impl ListSource {
    /// Takes up to three records from the next index on.
    fn take(&self) -> Result<Vec<Record>, ConnectorError> {
        let mut next = self.next.lock().unwrap();
        let Some(index) = *next else {
            return Err(ConnectorError::fatal("not open"));
        };
        let payloads = self.store.payloads.lock().unwrap();
        let end = payloads.len().min(index + 3);
        *next = Some(end);
        Ok((index..end)
            .map(|i| Record::new(Position::from((i + 1).to_string()), payloads[i].clone()))
            .collect())
    }
}

#[async_trait]
impl Source for ListSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        *self.next.lock().unwrap() = Some(self.start);
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        loop {
            let appended = self.store.appended.notified();
            let stopped = self.stopped.notified();
            let batch = self.take()?;
            if !batch.is_empty() {
                if self.store.fault == Fault::LosesCancelledReads {
                    tokio::task::yield_now().await;
                }
                return Ok(Some(batch));
            }
            tokio::select! {
                () = appended => {}
                () = stopped => {}
            }
        }
    }

    async fn ack(&self, _positions: &[Position]) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        *self.next.lock().unwrap() = None;
        self.stopped.notify_waiters();
        Ok(())
    }
}

/// Appends to the store and acks at once.
struct ListDestination {
    store: Arc<Store>,
    acks: Mutex<(VecDeque<DestinationAck>, bool)>,
    ready: Notify,
}

impl ListDestination {
    /// Queues the acks of `records`, in write order unless the fault says otherwise.
    fn queue_acks(&self, records: &[Record]) {
        let mut acks: Vec<DestinationAck> = records
            .iter()
            .map(|r| DestinationAck::ok(r.position.clone()))
            .collect();
        if self.store.fault == Fault::AcksBackwards {
            acks.reverse();
        }
        self.acks.lock().unwrap().0.extend(acks);
        self.ready.notify_one();
    }
}

#[async_trait]
impl Destination for ListDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        self.store.append(records.iter().map(raw));
        self.queue_acks(records);
        Ok(())
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        loop {
            {
                let mut state = self.acks.lock().unwrap();
                if !state.0.is_empty() {
                    return Ok(state.0.drain(..).collect());
                }
                if state.1 {
                    return Err(ConnectorError::transient("torn down"));
                }
            }
            self.ready.notified().await;
        }
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        if self.store.fault != Fault::AckOutlivesTeardown {
            self.acks.lock().unwrap().1 = true;
            self.ready.notify_one();
        }
        Ok(())
    }
}

/// A store as the backend of the connectors built on it.
#[derive(Clone)]
struct Backend(Arc<Store>);

#[async_trait]
impl SourceBackend for Backend {
    fn build(&self, resume: Option<Position>) -> Arc<dyn Source> {
        let mut start = resume.map_or(0, |p| {
            std::str::from_utf8(p.as_bytes())
                .unwrap()
                .parse::<usize>()
                .unwrap()
        });
        if self.0.fault == Fault::ResumesAtTheResumePosition {
            start = start.saturating_sub(1);
        }
        Arc::new(ListSource {
            store: Arc::clone(&self.0),
            start,
            next: Mutex::new(None),
            stopped: Notify::new(),
        })
    }

    async fn inject(&self, payloads: &[Bytes]) {
        self.0.append(payloads.iter().cloned());
    }

    fn payload(&self, record: &Record) -> Bytes {
        raw(record)
    }
}

#[async_trait]
impl DestinationBackend for Backend {
    fn build(&self) -> Arc<dyn Destination> {
        Arc::new(ListDestination {
            store: Arc::clone(&self.0),
            acks: Mutex::new((VecDeque::new(), false)),
            ready: Notify::new(),
        })
    }

    async fn written(&self) -> Vec<Bytes> {
        self.0.payloads.lock().unwrap().clone()
    }
}

async fn source_suite(fault: Fault) {
    let report = run_source_compliance("list", SourceCapabilities::FULL, |_| async move {
        Backend(Store::new(fault))
    })
    .await;
    assert_eq!(report.ran.len(), 6, "{report:?}");
}

async fn destination_suite(fault: Fault) {
    let report =
        run_destination_compliance("list", DestinationCapabilities::FULL, |_| async move {
            Backend(Store::new(fault))
        })
        .await;
    assert_eq!(report.ran.len(), 6, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn a_source_that_keeps_the_contract_passes_every_check() {
    source_suite(Fault::None).await;
}

#[tokio::test(start_paused = true)]
async fn a_destination_that_keeps_the_contract_passes_every_check() {
    destination_suite(Fault::None).await;
}

/// The panic message of a suite run that must fail.
async fn failure(run: impl Future<Output = ()> + Send + 'static) -> String {
    let panic = tokio::spawn(run)
        .await
        .expect_err("the suite passed a broken connector")
        .into_panic();
    match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(panic) => (*panic.downcast::<&str>().unwrap()).to_owned(),
    }
}

#[tokio::test(start_paused = true)]
async fn each_broken_connector_fails_the_check_about_its_fault() {
    let cases = [
        (
            failure(source_suite(Fault::ResumesAtTheResumePosition)).await,
            "check \"resume from a committed position\": \"resume 5\" was acked before the restart",
        ),
        (
            failure(source_suite(Fault::LosesCancelledReads)).await,
            "check \"stop while a read is blocked\": read (with records to read) did not return",
        ),
        (
            failure(destination_suite(Fault::AcksBackwards)).await,
            "(one ack per record, in write order)",
        ),
        (
            failure(destination_suite(Fault::AckOutlivesTeardown)).await,
            "check \"stop while an ack is blocked\": a blocked ack and a teardown made during it \
             did not return",
        ),
    ];
    for (message, expected) in cases {
        assert!(message.contains(expected), "{message}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_source_without_input_skips_only_the_checks_that_need_input() {
    let capabilities = SourceCapabilities {
        input: Support::No("no input in this test"),
        exact_resume: Support::Yes,
    };
    let backend = Backend(Store::new(Fault::None));
    backend
        .0
        .append((0..1000).map(|i| Bytes::from(format!("made {i}"))));
    let report = run_source_compliance("list", capabilities, |_| {
        let backend = backend.clone();
        async move { backend }
    })
    .await;
    assert_eq!(
        report.skipped,
        [
            ("empty and large records", "no input in this test"),
            ("stop while a read is blocked", "no input in this test"),
        ]
    );
}
