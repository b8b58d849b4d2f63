//! The file source: follows a file line by line, across rotation and truncation.

use std::fs::{File, Metadata as FileMetadata};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Buf, Bytes};
use funnel_core::{ConnectorError, Source};
use funnel_record::{Data, Metadata, Operation, Payload, Position, Record, metadata};

use super::METADATA_FILE_PATH;
use super::config::FileSourceConfig;
use super::position::{FileId, FilePosition, Fingerprint};
use crate::util::{decimal_slices, unix_nanos_now};

/// How much one blocking read takes from the file at most: about 4,000 lines of 250
/// bytes, so one trip to the blocking pool serves several batches. The block is read
/// into fresh memory (no zeroing) and every line of it is a slice of it.
const BLOCK: usize = 1024 * 1024;
/// The buffer `count_lines` reads through when resuming.
const CHUNK: usize = 64 * 1024;
/// How often the source looks for appended lines (or for the file to appear).
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long the path may stay missing, once the file it named was read to its end,
/// before the source reports the file deleted. Rotation creates the new file at once.
const DELETED_GRACE: Duration = Duration::from_secs(1);

/// A source of the lines of a file (see the [module docs](super)).
pub struct FileSource {
    id: String,
    config: FileSourceConfig,
    path_text: String,
    resume: Option<Position>,
    state: Arc<Mutex<Tail>>,
}

/// Where the reader is. Shared with the blocking task that reads the file, so that a
/// read whose future was dropped still leaves its bytes here for the next one.
#[derive(Default)]
struct Tail {
    /// Set by `open`.
    opened: bool,
    /// Where to resume, until the first file is found.
    resume: Option<FilePosition>,
    /// The file being read; `None` until it is found.
    file: Option<File>,
    /// Device and inode of `file`.
    dev_ino: (u64, u64),
    /// The first bytes of `file` (up to [`Fingerprint::LEN`]), which identify it.
    head: Vec<u8>,
    /// The fingerprint of `head`.
    fingerprint: Fingerprint,
    /// Files started since the first one (the position's sequence number).
    seq: u64,
    /// `file` is a rotated file found when resuming: at its end, go on with `path`.
    finishing: bool,
    /// Offset in the file of the end of `buffer`.
    read_offset: u64,
    /// Bytes read but not yet emitted (at most one partial line after `take_lines`): the
    /// rest of the last block read, whose emitted lines are slices of the same memory.
    buffer: Bytes,
    /// Bytes at the start of `buffer` already searched for a newline (none there).
    scanned: usize,
    /// Set while the bytes of a line longer than the maximum record size are skipped.
    oversize: Option<Oversize>,
    /// Offset of the end of the last emitted line.
    emitted_offset: u64,
    /// Number of the last emitted line.
    line: u64,
    /// The last read reached the end of the file.
    at_end: bool,
    /// When the path was first found missing after `file` was read to its end.
    missing_since: Option<Instant>,
}

/// A line too long to be a record, being skipped.
#[derive(Clone, Copy)]
struct Oversize {
    /// Bytes of it skipped so far.
    skipped: u64,
}

/// One line taken from the buffer.
enum Line {
    /// A line (without its newline).
    Text(Bytes),
    /// A line longer than the maximum record size, of this many bytes, starting at this
    /// offset.
    TooLong { bytes: u64, start: u64 },
}

/// What one blocking read found.
enum Fill {
    /// New bytes are in the buffer.
    Data,
    /// Nothing new yet (end of file, or no file).
    Nothing,
}

impl FileSource {
    /// A source with validated settings, resuming after `resume` (a position it emitted
    /// before) or from the start. The file is not touched until read.
    pub fn new(id: &str, config: FileSourceConfig, resume: Option<Position>) -> Self {
        Self {
            id: id.to_owned(),
            path_text: config.path.to_string_lossy().into_owned(),
            config,
            resume,
            state: Arc::new(Mutex::new(Tail::default())),
        }
    }
}

fn lock(state: &Mutex<Tail>) -> MutexGuard<'_, Tail> {
    // Every critical section leaves `Tail` consistent (offsets move with the buffer in
    // one step), so a poisoned lock is still usable.
    crate::util::lock(state)
}

#[async_trait]
impl Source for FileSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let resume = match &self.resume {
            None => None,
            Some(position) => Some(FilePosition::parse(position.as_bytes()).ok_or_else(|| {
                ConnectorError::data(format!(
                    "file {}: invalid position {position}: expected a position of the file \
                     source (a byte offset, or f1:...)",
                    self.path_text
                ))
            })?),
        };
        *lock(&self.state) = Tail {
            opened: true,
            resume,
            ..Tail::default()
        };
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        loop {
            {
                let mut tail = lock(&self.state);
                if !tail.opened {
                    // Also ends a read that was waiting when the source was torn down.
                    return Err(ConnectorError::internal(
                        "file source: read while not open (before open or after teardown)",
                    ));
                }
                let records = tail.take_lines(&self.config, &self.path_text, &self.id);
                if !records.is_empty() {
                    return Ok(Some(records));
                }
            }
            let state = Arc::clone(&self.state);
            let path = self.config.path.clone();
            let fill = tokio::task::spawn_blocking(move || lock(&state).fill(&path))
                .await
                .map_err(|e| ConnectorError::internal(e).context("file source"))??;
            if let Fill::Nothing = fill {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }

    async fn ack(&self, _positions: &[Position]) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        let mut tail = lock(&self.state);
        tail.opened = false;
        tail.file = None;
        Ok(())
    }
}

impl Tail {
    /// Takes up to `sdk.batch.size` complete lines from the buffer as records. Each byte
    /// is searched for a newline once, however long its line.
    fn take_lines(&mut self, config: &FileSourceConfig, path: &str, id: &str) -> Vec<Record> {
        let max_record = config.max_record_size;
        // (line, offset after it, line number)
        let mut lines: Vec<(Line, u64, u64)> = Vec::new();
        while lines.len() < config.batch_size.max(1) {
            let newline = memchr::memchr(b'\n', &self.buffer[self.scanned..]);
            if let Some(mut skipped) = self.oversize.map(|o| o.skipped) {
                // Skipping an over-long line: drop bytes up to its newline.
                let Some(i) = newline else {
                    skipped += self.buffer.len() as u64;
                    self.buffer.clear();
                    self.scanned = 0;
                    self.oversize = Some(Oversize { skipped });
                    break;
                };
                self.buffer.advance(i + 1);
                self.scanned = 0;
                self.oversize = None;
                let start = self.emitted_offset;
                self.advance(skipped + i as u64 + 1);
                let bytes = skipped + i as u64;
                lines.push((
                    Line::TooLong { bytes, start },
                    self.emitted_offset,
                    self.line,
                ));
                continue;
            }
            let Some(i) = newline else {
                self.scanned = self.buffer.len();
                if self.buffer.len() > max_record {
                    // No record can hold this line: skip it up to its newline.
                    self.oversize = Some(Oversize {
                        skipped: self.buffer.len() as u64,
                    });
                    self.buffer.clear();
                    self.scanned = 0;
                }
                break;
            };
            let end = self.scanned + i;
            self.scanned = 0;
            if end > max_record {
                self.buffer.advance(end + 1);
                let start = self.emitted_offset;
                self.advance(end as u64 + 1);
                let bytes = end as u64;
                lines.push((
                    Line::TooLong { bytes, start },
                    self.emitted_offset,
                    self.line,
                ));
                continue;
            }
            let line = self.buffer.slice(..end);
            self.buffer.advance(end + 1);
            self.advance(end as u64 + 1);
            lines.push((Line::Text(line), self.emitted_offset, self.line));
        }
        if lines.is_empty() {
            return Vec::new();
        }
        let mut metadata = Metadata::new();
        metadata.insert(METADATA_FILE_PATH, path);
        metadata.insert(metadata::READ_AT, unix_nanos_now().to_string());
        metadata.insert(metadata::SOURCE_CONNECTOR_ID, id);
        let file = FileId {
            dev: self.dev_ino.0,
            ino: self.dev_ino.1,
            fingerprint: self.fingerprint,
        };
        let positions = FilePosition::texts(self.seq, file, lines.iter().map(|l| l.1));
        let keys = decimal_slices(lines.iter().map(|l| l.2), lines.len());
        lines
            .into_iter()
            .zip(positions.into_iter().zip(keys))
            .map(|((line, _, number), (position, key))| match line {
                Line::Text(line) => Record {
                    position: Position(position),
                    operation: Operation::Create,
                    metadata: metadata.clone(),
                    key: Some(Data::Raw(key)),
                    payload: Payload {
                        before: None,
                        after: Some(Data::Raw(line)),
                    },
                },
                Line::TooLong { bytes, start } => {
                    let mut metadata = metadata.clone();
                    metadata.insert(
                        metadata::READ_ERROR,
                        format!(
                            "file {path}: line {number} (at byte {start}) has {bytes} bytes, more \
                             than maxRecordSize ({max_record}); it was skipped"
                        ),
                    );
                    Record {
                        position: Position(position),
                        operation: Operation::Create,
                        metadata,
                        key: Some(Data::Raw(key)),
                        payload: Payload::default(),
                    }
                }
            })
            .collect()
    }

    /// Moves past one more line of `bytes` bytes (newline included). A newline added
    /// after the last line of a finished file is not in the file: the offset stays at
    /// its end.
    fn advance(&mut self, bytes: u64) {
        self.emitted_offset = (self.emitted_offset + bytes).min(self.read_offset);
        self.line += 1;
    }

    /// Reads the next chunk of the file into the buffer (blocking). Finds the file first
    /// if needed; at the end of the file, looks for rotation, truncation and deletion.
    fn fill(&mut self, path: &Path) -> Result<Fill, ConnectorError> {
        if !self.opened {
            // Torn down meanwhile: do not open the file again.
            return Ok(Fill::Nothing);
        }
        if self.file.is_none() && !self.find(path)? {
            return Ok(Fill::Nothing);
        }
        // Bytes that appear after the end was reached may be a new content rather than
        // an append: check before reading them.
        if self.at_end && self.rewritten(path)? {
            tracing::warn!(
                file = %path.display(),
                offset = self.read_offset,
                "file source: the file was truncated or rewritten; reading it again from its start"
            );
            self.restart_at_zero(path)?;
        }
        if self.read_chunk(path)? {
            return Ok(Fill::Data);
        }
        if self.finishing {
            return self.next_file(path);
        }
        // At the end: is `path` still this file?
        let at_path = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return self.missing(path),
            Err(e) => return Err(io_error(path, "failed to stat", e)),
        };
        self.missing_since = None;
        if (at_path.dev(), at_path.ino()) != self.dev_ino {
            // Rotated or replaced: this file is finished (the handle still reads it, so
            // lines written to it until now were read); go on with the new one.
            return self.next_file(path);
        }
        Ok(Fill::Nothing)
    }

    /// Whether the file is now shorter than what was read (truncated) or no longer
    /// starts with the bytes it started with (rewritten in place).
    fn rewritten(&mut self, path: &Path) -> Result<bool, ConnectorError> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        let len = file
            .metadata()
            .map_err(|e| io_error(path, "failed to stat", e))?
            .len();
        if len < self.read_offset {
            return Ok(true);
        }
        let head =
            read_head(file, self.head.len()).map_err(|e| io_error(path, "failed to read", e))?;
        Ok(head != self.head)
    }
    /// Reads one block of up to [`BLOCK`] bytes (more for a long line) after the
    /// unemitted rest of the previous one; true when there were new bytes.
    fn read_chunk(&mut self, path: &Path) -> Result<bool, ConnectorError> {
        let Some(file) = &mut self.file else {
            return Ok(false);
        };
        // The rest of a line is copied to the new block; a long line grows its block
        // geometrically (it reads as much again as it holds), so a line is copied
        // O(1) times per byte, however many blocks it spans.
        let kept = self.buffer.len();
        let want = BLOCK.max(kept);
        let mut block = Vec::with_capacity(kept + want);
        block.extend_from_slice(&self.buffer);
        // `read_to_end` reads into the spare capacity without zeroing it, and up to the
        // limit or the end of the file, retrying interrupted reads.
        let read = file.by_ref().take(want as u64).read_to_end(&mut block);
        let n = block.len() - kept;
        // Bytes read before an error are kept: the file's cursor is past them.
        self.buffer = Bytes::from(block);
        self.read_offset += n as u64;
        read.map_err(|e| io_error(path, "failed to read", e))?;
        // A short block reached the end of the file.
        self.at_end = n < want;
        if n == 0 {
            return Ok(false);
        }
        if self.head.len() < Fingerprint::LEN {
            self.refresh_head(path)?;
        }
        Ok(true)
    }

    /// Rereads the first bytes of the file when they do not fill the fingerprint yet.
    fn refresh_head(&mut self, path: &Path) -> Result<(), ConnectorError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let head =
            read_head(file, Fingerprint::LEN).map_err(|e| io_error(path, "failed to read", e))?;
        if head.len() > self.head.len() && head.starts_with(&self.head) {
            self.fingerprint = Fingerprint::of(&head);
            self.head = head;
        }
        Ok(())
    }

    /// The path is missing once the file was read to its end: wait a little for a new
    /// file (rotation), then report the file deleted.
    fn missing(&mut self, path: &Path) -> Result<Fill, ConnectorError> {
        let since = *self.missing_since.get_or_insert_with(Instant::now);
        if since.elapsed() < DELETED_GRACE {
            return Ok(Fill::Nothing);
        }
        Err(deleted(path, self.line, self.emitted_offset))
    }

    /// Finishes the current file and goes on with the file at `path`, from its start.
    fn next_file(&mut self, path: &Path) -> Result<Fill, ConnectorError> {
        if !self.buffer.is_empty() || self.oversize.is_some() {
            // The finished file's last line has no newline and never will: end it, so
            // that it is emitted (or reported, when it is too long) first.
            let mut ended = Vec::with_capacity(self.buffer.len() + 1);
            ended.extend_from_slice(&self.buffer);
            ended.push(b'\n');
            self.buffer = Bytes::from(ended);
            return Ok(Fill::Data);
        }
        tracing::info!(
            file = %path.display(),
            lines = self.line,
            "file source: the file was rotated or replaced; reading the new file from its start"
        );
        *self = Tail {
            opened: true,
            seq: self.seq + 1,
            buffer: std::mem::take(&mut self.buffer),
            ..Tail::default()
        };
        self.buffer.clear();
        Ok(if self.find(path)? {
            Fill::Data
        } else {
            Fill::Nothing
        })
    }

    /// Reads the current file again from its start (it was truncated or rewritten).
    fn restart_at_zero(&mut self, path: &Path) -> Result<(), ConnectorError> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io_error(path, "failed to seek", e))?;
        let head =
            read_head(&file, Fingerprint::LEN).map_err(|e| io_error(path, "failed to read", e))?;
        *self = Tail {
            opened: true,
            seq: self.seq + 1,
            dev_ino: self.dev_ino,
            fingerprint: Fingerprint::of(&head),
            head,
            file: Some(file),
            buffer: std::mem::take(&mut self.buffer),
            ..Tail::default()
        };
        self.buffer.clear();
        Ok(())
    }

    /// Opens the file to read: the file at `path`, or, when resuming a position of a
    /// file that was rotated away meanwhile, that file if it is still next to `path`.
    /// False when there is no file yet.
    fn find(&mut self, path: &Path) -> Result<bool, ConnectorError> {
        let (mut file, meta) = match File::open(path) {
            Ok(file) => {
                let meta = file
                    .metadata()
                    .map_err(|e| io_error(path, "failed to stat", e))?;
                (file, meta)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return match self.resume {
                    // The file this position is about is gone: that is worth reporting.
                    Some(FilePosition { file: Some(_), .. }) => Err(deleted(path, 0, 0)),
                    _ => Ok(false),
                };
            }
            Err(e) => return Err(io_error(path, "failed to open", e)),
        };
        let head =
            read_head(&file, Fingerprint::LEN).map_err(|e| io_error(path, "failed to read", e))?;
        let mut offset = 0;
        if let Some(resume) = self.resume.take() {
            self.seq = resume.seq;
            match resume.file {
                // A position without a file identity (a bare offset): the same file.
                None => offset = resume.offset,
                Some(id) if id.matches(&meta, &head) => offset = resume.offset,
                Some(id) => {
                    if let Some((old, old_meta)) = find_rotated(path, id) {
                        let old_head = read_head(&old, Fingerprint::LEN)
                            .map_err(|e| io_error(path, "failed to read", e))?;
                        if old_meta.len() >= resume.offset {
                            tracing::info!(
                                file = %path.display(),
                                "file source: the file was rotated while stopped; finishing the \
                                 rotated file before reading the new one"
                            );
                            self.finishing = true;
                            return self.start(path, old, &old_meta, old_head, resume.offset);
                        }
                    }
                    tracing::warn!(
                        file = %path.display(),
                        "file source: the file was replaced while stopped and the previous file \
                         was not found next to it; reading the new file from its start"
                    );
                    self.seq += 1;
                }
            }
            if meta.len() < offset {
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    len = meta.len(),
                    "file source: the file is shorter than the position (truncated); reading it \
                     again from its start"
                );
                offset = 0;
                self.seq += 1;
            }
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io_error(path, "failed to seek", e))?;
        self.start(path, file, &meta, head, offset)
    }

    /// Starts reading `file` at `offset`, counting the lines before it.
    fn start(
        &mut self,
        path: &Path,
        mut file: File,
        meta: &FileMetadata,
        head: Vec<u8>,
        offset: u64,
    ) -> Result<bool, ConnectorError> {
        self.line =
            count_lines(&mut file, offset).map_err(|e| io_error(path, "failed to read", e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(path, "failed to seek", e))?;
        self.dev_ino = (meta.dev(), meta.ino());
        self.fingerprint = Fingerprint::of(&head);
        self.head = head;
        self.read_offset = offset;
        self.emitted_offset = offset;
        self.file = Some(file);
        Ok(true)
    }
}

/// A file in the directory of `path` that is the file `id` describes (rotated away).
fn find_rotated(path: &Path, id: FileId) -> Option<(File, FileMetadata)> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .metadata()
                .is_ok_and(|m| m.is_file() && (m.dev(), m.ino()) == (id.dev, id.ino))
        })
        .find_map(|entry| {
            let file = File::open(entry.path()).ok()?;
            let meta = file.metadata().ok()?;
            let head = read_head(&file, Fingerprint::LEN).ok()?;
            id.matches(&meta, &head).then_some((file, meta))
        })
}

/// The first `len` bytes of `file` (fewer when it is shorter), read without moving its
/// cursor.
fn read_head(file: &File, len: usize) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0; len];
    let mut filled = 0;
    while filled < len {
        let n = file.read_at(&mut head[filled..], filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    head.truncate(filled);
    Ok(head)
}

/// Counts the newlines in the first `limit` bytes of `file`.
fn count_lines(file: &mut File, limit: u64) -> std::io::Result<u64> {
    let mut lines = 0;
    let mut left = limit;
    let mut chunk = vec![0; CHUNK];
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        let n = file.read(&mut chunk[..want])?;
        if n == 0 {
            break;
        }
        lines += memchr::memchr_iter(b'\n', &chunk[..n]).count() as u64;
        left -= n as u64;
    }
    Ok(lines)
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> ConnectorError {
    let error = match e.kind() {
        ErrorKind::PermissionDenied | ErrorKind::IsADirectory => ConnectorError::fatal(e),
        _ => ConnectorError::transient(e),
    };
    error.context(format!("file {}: {what}", path.display()))
}

fn deleted(path: &Path, line: u64, offset: u64) -> ConnectorError {
    let after = if line > 0 {
        format!(" after line {line} (byte {offset})")
    } else {
        String::new()
    };
    ConnectorError::transient(format!(
        "file {}: the input file was deleted{after}; the pipeline waits (restarting with \
         backoff) until a file is created at that path, then reads it from its start",
        path.display()
    ))
}
