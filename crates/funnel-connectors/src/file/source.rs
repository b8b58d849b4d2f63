//! The file source: follows a file line by line.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use funnel_core::{ConnectorError, Source};
use funnel_record::{Data, Metadata, Operation, Payload, Position, Record, metadata};

use super::METADATA_FILE_PATH;
use super::config::FileSourceConfig;
use crate::util::{decimal_slices, unix_nanos_now};

/// How much one blocking read takes from the file.
const CHUNK: usize = 64 * 1024;
/// How often the source looks for appended lines (or for the file to appear).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

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
    /// `None` until the file is found.
    file: Option<File>,
    /// Offset in the file of the end of `buffer`.
    read_offset: u64,
    /// Bytes read but not yet emitted (at most one partial line after `take_lines`).
    buffer: BytesMut,
    /// Offset of the end of the last emitted line.
    emitted_offset: u64,
    /// Number of the last emitted line.
    line: u64,
}

/// What one blocking read found.
enum Fill {
    /// New bytes are in the buffer.
    Data,
    /// Nothing new yet (end of file, or no file).
    Nothing,
}

impl FileSource {
    /// A source with validated settings, resuming after `resume` (a byte offset it
    /// emitted before) or from the start. The file is not touched until read.
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
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl Source for FileSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let offset = match &self.resume {
            None => 0,
            Some(position) => std::str::from_utf8(position.as_bytes())
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| {
                    ConnectorError::fatal(format!(
                        "file {}: invalid position {position}: expected a byte offset",
                        self.path_text
                    ))
                })?,
        };
        *lock(&self.state) = Tail {
            opened: true,
            read_offset: offset,
            emitted_offset: offset,
            ..Tail::default()
        };
        Ok(())
    }

    async fn read(&self) -> Result<Vec<Record>, ConnectorError> {
        loop {
            {
                let mut tail = lock(&self.state);
                if !tail.opened {
                    // Also ends a read that was waiting when the source was torn down.
                    return Err(ConnectorError::fatal(
                        "file source: read while not open (before open or after teardown)",
                    ));
                }
                let records = tail.take_lines(self.config.batch_size, &self.path_text, &self.id);
                if !records.is_empty() {
                    return Ok(records);
                }
            }
            let state = Arc::clone(&self.state);
            let path = self.config.path.clone();
            let fill = tokio::task::spawn_blocking(move || fill(&state, &path))
                .await
                .map_err(|e| ConnectorError::transient(format!("file source: {e}")))??;
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
    /// Takes up to `max` complete lines from the buffer as records.
    fn take_lines(&mut self, max: usize, path: &str, id: &str) -> Vec<Record> {
        // (line without its newline, offset after it, line number)
        let mut lines: Vec<(Bytes, u64, u64)> = Vec::new();
        while lines.len() < max.max(1) {
            let Some(end) = memchr::memchr(b'\n', &self.buffer) else {
                break;
            };
            let line = self.buffer.split_to(end + 1).freeze().slice(..end);
            self.emitted_offset += (end + 1) as u64;
            self.line += 1;
            lines.push((line, self.emitted_offset, self.line));
        }
        if lines.is_empty() {
            return Vec::new();
        }
        let mut metadata = Metadata::new();
        metadata.insert(METADATA_FILE_PATH, path);
        metadata.insert(metadata::READ_AT, unix_nanos_now().to_string());
        metadata.insert(metadata::SOURCE_CONNECTOR_ID, id);
        let positions = decimal_slices(lines.iter().map(|l| l.1), lines.len());
        let keys = decimal_slices(lines.iter().map(|l| l.2), lines.len());
        lines
            .into_iter()
            .zip(positions.zip(keys))
            .map(|((line, _, _), (position, key))| Record {
                position: Position(position),
                operation: Operation::Create,
                metadata: metadata.clone(),
                key: Some(Data::Raw(key)),
                payload: Payload {
                    before: None,
                    after: Some(Data::Raw(line)),
                },
            })
            .collect()
    }
}

/// Reads the next chunk of the file into the buffer (blocking). Opens the file first if
/// needed, counting the lines before the resume offset.
fn fill(state: &Mutex<Tail>, path: &Path) -> Result<Fill, ConnectorError> {
    let mut tail = lock(state);
    if !tail.opened {
        // Torn down meanwhile: do not open the file again.
        return Ok(Fill::Nothing);
    }
    if tail.file.is_none() {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Fill::Nothing),
            Err(e) => return Err(io_error(path, "failed to open", &e)),
        };
        let offset = tail.read_offset;
        let len = file
            .metadata()
            .map_err(|e| io_error(path, "failed to stat", &e))?
            .len();
        if len < offset {
            return Err(shorter_than_position(path, len, offset));
        }
        tail.line =
            count_lines(&mut file, offset).map_err(|e| io_error(path, "failed to read", &e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(path, "failed to seek", &e))?;
        tail.file = Some(file);
    }

    let Tail {
        file: Some(file),
        buffer,
        read_offset,
        ..
    } = &mut *tail
    else {
        return Ok(Fill::Nothing);
    };
    let start = buffer.len();
    buffer.resize(start + CHUNK, 0);
    let read = file.read(&mut buffer[start..]);
    let n = match read {
        Ok(n) => n,
        Err(e) => {
            buffer.truncate(start);
            return Err(io_error(path, "failed to read", &e));
        }
    };
    buffer.truncate(start + n);
    if n > 0 {
        *read_offset += n as u64;
        return Ok(Fill::Data);
    }
    // At the end: a file now shorter than what was read was truncated or replaced.
    let len = file
        .metadata()
        .map_err(|e| io_error(path, "failed to stat", &e))?
        .len();
    if len < *read_offset {
        return Err(shorter_than_position(path, len, *read_offset));
    }
    Ok(Fill::Nothing)
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

fn io_error(path: &Path, what: &str, e: &std::io::Error) -> ConnectorError {
    let message = format!("file {}: {what}: {e}", path.display());
    match e.kind() {
        ErrorKind::PermissionDenied | ErrorKind::IsADirectory => ConnectorError::fatal(message),
        _ => ConnectorError::transient(message),
    }
}

fn shorter_than_position(path: &Path, len: u64, offset: u64) -> ConnectorError {
    ConnectorError::fatal(format!(
        "file {}: the file has {len} bytes but the source is at byte {offset}: it was \
         truncated or replaced; the file source only follows appends (reset the \
         pipeline's position to read it from the start)",
        path.display()
    ))
}
