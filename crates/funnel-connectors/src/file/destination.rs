//! The file destination: appends a line per record (OpenCDC JSON, or
//! `sdk.record.format`), acks after `fsync`.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck, WriteFence};
use funnel_record::{Position, Record};
use tokio::sync::{mpsc, oneshot};

use super::config::FileDestinationConfig;
use crate::ack::AckQueue;
use crate::format::{RecordFormat, Unencoded};
use crate::noop::{now_nanos, read_at_nanos, record_batch};

/// Encoded batches waiting for the writer thread, at most.
const QUEUED_BATCHES: usize = 16;
/// Written buffers kept for reuse, at most: encoding into a buffer that already has the
/// room (and whose pages are already mapped) costs no allocation and no page faults.
const SPARE_BUFFERS: usize = 4;

/// A destination appending records to a file as OpenCDC JSON lines (see the
/// [module docs](super)).
pub struct FileDestination {
    id: String,
    config: FileDestinationConfig,
    /// How each record becomes its line.
    format: RecordFormat,
    writer: Mutex<Option<Writer>>,
    acks: Arc<AckQueue>,
    /// Emptied buffers handed back by the writer thread.
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Encoded bytes per record of the last batch: the next buffer's first reservation.
    bytes_per_record: AtomicUsize,
    /// Checked by the writer thread right before each write (a pipeline run under a
    /// lease).
    fence: Mutex<Option<Arc<dyn WriteFence>>>,
}

/// Cuts off a last line without its newline: what a crash (SIGKILL, power loss) in the
/// middle of a write leaves. That line was never acknowledged (acks follow the `fsync`
/// of whole batches), so its record is delivered again; appending after the torn bytes
/// would instead glue the next line onto them.
fn drop_torn_line(file: &File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    let mut end = len;
    let mut reader = file;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = usize::try_from(end - start).unwrap_or(chunk.len());
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(&mut chunk[..n])?;
        if let Some(i) = memchr::memrchr(b'\n', &chunk[..n]) {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        tracing::warn!(
            torn_bytes = len - end,
            "file destination: cutting off an incomplete last line left by a crash"
        );
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(())
}

/// The handle of the writer thread.
struct Writer {
    jobs: mpsc::Sender<Job>,
    done: oneshot::Receiver<()>,
}

/// One encoded batch.
struct Job {
    bytes: Vec<u8>,
    positions: Vec<Position>,
    /// The records that could not be encoded (nacked, in order with the others' acks).
    unencoded: Unencoded,
    /// `opencdc.readAt` per record, when the latency is measured (else empty).
    read_at: Vec<Option<u64>>,
}

impl FileDestination {
    /// A destination with validated settings. The file is opened by
    /// [`Destination::open`].
    /// Records are encoded in `format` (`sdk.record.format`).
    pub fn new(id: &str, config: FileDestinationConfig, format: RecordFormat) -> Self {
        Self {
            id: id.to_owned(),
            config,
            format,
            writer: Mutex::new(None),
            acks: Arc::new(AckQueue::new()),
            spare: Arc::default(),
            bytes_per_record: AtomicUsize::new(0),
            fence: Mutex::new(None),
        }
    }

    fn writer(&self) -> MutexGuard<'_, Option<Writer>> {
        // Critical sections only take or replace the handle, so a poisoned lock is
        // still usable.
        crate::util::lock(&self.writer)
    }

    fn stopped(&self) -> ConnectorError {
        let reason = self
            .acks
            .failure()
            .unwrap_or_else(|| "the destination is not open".to_owned());
        ConnectorError::transient(format!(
            "file destination {} ({}): writer stopped: {reason}",
            self.id,
            self.config.path.display()
        ))
    }
}

#[async_trait]
impl Destination for FileDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let path = self.config.path.clone();
        let (file, target) = tokio::task::spawn_blocking(move || open_file(&path))
            .await
            .map_err(|e| ConnectorError::internal(e).context("file destination"))??;

        let (jobs, receiver) = mpsc::channel(QUEUED_BATCHES);
        let (done_sender, done) = oneshot::channel();
        let acks = Arc::clone(&self.acks);
        let spare = Arc::clone(&self.spare);
        let path = self.config.path.clone();
        let fence = crate::util::lock(&self.fence).clone();
        std::thread::Builder::new()
            .name("funnel-file-writer".into())
            .spawn(move || {
                let place = Place {
                    target,
                    path: &path,
                    fence: fence.as_deref(),
                };
                write_loop(file, &place, receiver, &acks, &spare);
                let _ = done_sender.send(());
            })
            .map_err(|e| {
                ConnectorError::transient(e).context("file destination: cannot start writer")
            })?;
        *self.writer() = Some(Writer { jobs, done });
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        if records.is_empty() {
            return Ok(());
        }
        let sender = match &*self.writer() {
            Some(writer) => writer.jobs.clone(),
            None => return Err(self.stopped()),
        };
        let mut bytes = lock(&self.spare).pop().unwrap_or_default();
        // Room for a batch like the last one (records of one source tend to be alike);
        // a reused buffer usually has it already.
        bytes.reserve(records.len() * self.bytes_per_record.load(Ordering::Relaxed));
        let unencoded = self.format.write_lines(records, &mut bytes);
        let positions = records.iter().map(|r| r.position.clone()).collect();
        self.bytes_per_record
            .store(bytes.len() / records.len() + 1, Ordering::Relaxed);
        let read_at = if self.config.latency {
            records.iter().map(read_at_nanos).collect()
        } else {
            Vec::new()
        };
        sender
            .send(Job {
                bytes,
                positions,
                unencoded,
                read_at,
            })
            .await
            .map_err(|_| self.stopped())
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.acks.next().await
    }

    fn fence(&self, fence: Arc<dyn WriteFence>) {
        *crate::util::lock(&self.fence) = Some(fence);
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        let writer = self.writer().take();
        if let Some(Writer { jobs, done }) = writer {
            // Closing the channel lets the thread finish the queued batches and stop.
            drop(jobs);
            let _ = done.await;
        }
        self.acks.close(format!(
            "file destination {} ({}): torn down",
            self.id,
            self.config.path.display()
        ));
        match self.acks.failure() {
            Some(_) => Err(self.stopped()),
            None => Ok(()),
        }
    }
}

/// What the destination writes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A regular file: appended to, synced, cut back on failure.
    Regular,
    /// Anything else that can be opened for writing (`/dev/null`, a terminal, a pipe):
    /// written to as a stream, without `fsync` (it has no durable content to sync).
    Stream,
}

/// Opens the destination's path (blocking): a regular file (created if missing) for
/// appending, after cutting off a torn last line; anything else as a write-only stream.
/// Opening a named pipe waits until a process opens it for reading.
fn open_file(path: &Path) -> Result<(File, Target), ConnectorError> {
    let target = match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() && !meta.is_dir() => Target::Stream,
        _ => Target::Regular,
    };
    if target == Target::Stream {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| open_error(path, e))?;
        return Ok((file, target));
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(|e| open_error(path, e))?;
    drop_torn_line(&file).map_err(|e| open_error(path, e))?;
    Ok((file, target))
}

/// Where the writer thread writes, and what must permit each write.
struct Place<'a> {
    target: Target,
    path: &'a Path,
    fence: Option<&'a dyn WriteFence>,
}

/// The writer thread: appends batches as they come while a second thread syncs
/// (regular files) and acks what was appended before each sync began, until the
/// channel closes, an I/O error stops either thread, or the fence refuses a write
/// (checked right before each one, so a process paused past its lease writes nothing
/// when it wakes). Appending the next batches while the last ones are being synced
/// keeps the disk busy with syncs instead of waiting for each append in turn.
fn write_loop(
    file: File,
    place: &Place<'_>,
    jobs: mpsc::Receiver<Job>,
    acks: &AckQueue,
    spare: &Mutex<Vec<Vec<u8>>>,
) {
    let (target, path) = (place.target, place.path);
    // The length of the file that is known to be whole lines, to cut back to on failure.
    let start = match file.metadata() {
        Ok(_) if target == Target::Stream => 0,
        Ok(meta) => meta.len(),
        Err(e) => {
            acks.fail(format!("file {}: failed to stat: {e}", path.display()));
            return;
        }
    };
    let handoff = Handoff::default();
    let synced = std::thread::scope(|scope| {
        let syncer = std::thread::Builder::new()
            .name("funnel-file-sync".into())
            .spawn_scoped(scope, || sync_loop(&file, target, path, &handoff, acks));
        let syncer = match syncer {
            Ok(syncer) => syncer,
            Err(e) => {
                acks.fail(format!(
                    "file {}: cannot start syncing: {e}",
                    path.display()
                ));
                return Some(0);
            }
        };
        let refused = append_loop(&file, place, jobs, &handoff, acks, spare);
        // What was appended before a refusal was permitted: it is synced and acked.
        handoff.finish();
        let synced = syncer.join().ok();
        if synced.is_none() {
            acks.fail(format!(
                "file {}: the syncing thread panicked",
                path.display()
            ));
        }
        if let Some(refusal) = refused {
            acks.fail(refusal);
        }
        synced
    });
    if handoff.failed() && target == Target::Regular {
        // Cut off what was appended and not synced (a partly written line, maybe), so
        // a restart appends whole lines after the acked ones. Unknown after a panic of
        // the syncing thread: then nothing is cut, and a restart drops a torn line.
        if let Some(synced) = synced {
            let _ = file.set_len(start + synced);
            let _ = file.sync_data();
        }
    }
}

/// Appends each batch, then hands it to the syncing thread; stops when the channel
/// closes or anything fails. Returns why the fence refused a write, if it did.
fn append_loop(
    mut file: &File,
    place: &Place<'_>,
    mut jobs: mpsc::Receiver<Job>,
    handoff: &Handoff,
    acks: &AckQueue,
    spare: &Mutex<Vec<Vec<u8>>>,
) -> Option<String> {
    let path = place.path;
    while let Some(mut job) = jobs.blocking_recv() {
        if handoff.failed() {
            return None;
        }
        if let Some(fence) = place.fence
            && !fence.permits()
        {
            return Some(format!(
                "file {}: not written: {}",
                path.display(),
                fence.refusal()
            ));
        }
        if let Err(e) = file.write_all(&job.bytes) {
            acks.fail(format!("file {}: failed to write: {e}", path.display()));
            handoff.fail();
            return None;
        }
        let size = job.bytes.len() as u64;
        let mut bytes = std::mem::take(&mut job.bytes);
        let mut spare = lock(spare);
        if spare.len() < SPARE_BUFFERS {
            bytes.clear();
            spare.push(bytes);
        }
        drop(spare);
        handoff.push(job, size);
    }
    None
}

/// Syncs what was appended and acks it, until the appending thread is done and
/// everything it appended is acked, or anything fails. Returns the bytes synced.
fn sync_loop(file: &File, target: Target, path: &Path, handoff: &Handoff, acks: &AckQueue) -> u64 {
    let mut synced = 0;
    while let Some((jobs, size)) = handoff.take() {
        let result = match target {
            Target::Regular => file.sync_data(),
            // Nothing durable to sync: written is done.
            Target::Stream => Ok(()),
        };
        if let Err(e) = result {
            acks.fail(format!("file {}: failed to write: {e}", path.display()));
            handoff.fail();
            return synced;
        }
        synced += size;
        if jobs.iter().any(|job| !job.read_at.is_empty()) {
            let written = now_nanos();
            record_batch(
                jobs.iter().flat_map(|job| job.read_at.iter().copied()),
                written,
            );
        }
        acks.push(
            jobs.into_iter()
                .flat_map(|job| job.unencoded.acks(job.positions)),
        );
    }
    synced
}

/// The batches appended and not yet synced, handed from the appending thread to the
/// syncing one.
#[derive(Default)]
struct Handoff {
    state: Mutex<Unsynced>,
    changed: Condvar,
}

#[derive(Default)]
struct Unsynced {
    /// Appended batches (their bytes already given back), in order.
    jobs: Vec<Job>,
    /// Their bytes.
    size: u64,
    /// The appending thread is done: nothing more will be appended.
    finished: bool,
    /// A thread failed: the other stops, nothing more is acked.
    failed: bool,
}

impl Handoff {
    fn state(&self) -> MutexGuard<'_, Unsynced> {
        // Critical sections only move batches and set flags: a poisoned lock is still
        // usable.
        crate::util::lock(&self.state)
    }

    fn push(&self, job: Job, size: u64) {
        let mut state = self.state();
        state.jobs.push(job);
        state.size += size;
        drop(state);
        self.changed.notify_one();
    }

    /// Waits for appended batches and takes them all with their size; `None` once the
    /// appending thread is done and all are taken, or on failure.
    fn take(&self) -> Option<(Vec<Job>, u64)> {
        let mut state = self.state();
        loop {
            if state.failed {
                return None;
            }
            if !state.jobs.is_empty() {
                let size = std::mem::take(&mut state.size);
                return Some((std::mem::take(&mut state.jobs), size));
            }
            if state.finished {
                return None;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn finish(&self) {
        self.state().finished = true;
        self.changed.notify_one();
    }

    fn fail(&self) {
        self.state().failed = true;
        self.changed.notify_one();
    }

    fn failed(&self) -> bool {
        self.state().failed
    }
}

fn lock(spare: &Mutex<Vec<Vec<u8>>>) -> MutexGuard<'_, Vec<Vec<u8>>> {
    // Critical sections only push or pop a buffer: a poisoned lock is still usable.
    crate::util::lock(spare)
}

fn open_error(path: &Path, e: std::io::Error) -> ConnectorError {
    let context = format!("file {}: failed to open for appending", path.display());
    match e.kind() {
        ErrorKind::NotFound => ConnectorError::fatal(e).context(format!(
            "{context} (does its directory exist? the file destination creates only the file)"
        )),
        ErrorKind::PermissionDenied | ErrorKind::IsADirectory => {
            ConnectorError::fatal(e).context(context)
        }
        _ => ConnectorError::transient(e).context(context),
    }
}

/// The file destination's connection test: the directory the file goes in exists.
pub(crate) async fn check(config: &FileDestinationConfig) -> Result<(), ConnectorError> {
    let path = config.path.clone();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let meta = tokio::task::spawn_blocking(move || std::fs::metadata(&dir))
        .await
        .map_err(|e| ConnectorError::internal(e).context("file destination"))?;
    let context = || format!("file {}: its directory", path.display());
    match meta {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(ConnectorError::config(std::io::Error::new(
            ErrorKind::NotADirectory,
            "not a directory",
        ))
        .context(context())),
        Err(e) => Err(ConnectorError::fatal(e).context(context())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(position: &str) -> Job {
        Job {
            bytes: Vec::new(),
            positions: vec![Position::from(position)],
            unencoded: Unencoded::default(),
            read_at: Vec::new(),
        }
    }

    fn positions(jobs: &[Job]) -> Vec<String> {
        jobs.iter()
            .flat_map(|job| job.positions.iter().map(ToString::to_string))
            .collect()
    }

    #[test]
    fn one_sync_takes_every_batch_appended_since_the_last_one_in_order() {
        let handoff = Handoff::default();
        handoff.push(job("1"), 10);
        handoff.push(job("2"), 20);
        let (jobs, size) = handoff.take().expect("two batches were appended");
        assert_eq!((positions(&jobs), size), (vec!["1".into(), "2".into()], 30));
        handoff.push(job("3"), 5);
        handoff.finish();
        let (jobs, size) = handoff
            .take()
            .expect("appended before the appender finished");
        assert_eq!((positions(&jobs), size), (vec!["3".into()], 5));
        assert!(handoff.take().is_none(), "finished and everything taken");
    }

    #[test]
    fn after_a_failure_nothing_appended_is_taken_for_acking() {
        let handoff = Handoff::default();
        handoff.push(job("1"), 10);
        handoff.fail();
        assert!(handoff.failed());
        assert!(handoff.take().is_none());
    }

    #[test]
    fn a_waiting_sync_thread_wakes_when_a_batch_is_appended() {
        let handoff = Arc::new(Handoff::default());
        let syncer = std::thread::spawn({
            let handoff = Arc::clone(&handoff);
            move || handoff.take().map(|(jobs, size)| (positions(&jobs), size))
        });
        handoff.push(job("1"), 7);
        assert_eq!(syncer.join().unwrap(), Some((vec!["1".into()], 7)));
    }
}
