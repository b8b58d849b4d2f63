//! The live status lines of `funnel run` on a terminal: one per pipeline (status,
//! records per second, records written, DLQ, the source's lag when it knows it, and a
//! progress bar with an ETA when it knows how many records are left), redrawn in place
//! [`REDRAWS_PER_SECOND`] times a second below the log lines.
//!
//! Log lines go through [`LogWriter`]: it erases the status lines, writes the log
//! line, and draws them again, so the log scrolls above them. When the run ends the
//! last lines are left on screen. Off (nothing drawn, no
//! control character written) unless stderr is a terminal and logs are text.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use funnel_core::WorkerStats;
use funnel_runtime::PipelineState;

/// How often the status lines are redrawn.
pub(crate) const REDRAWS_PER_SECOND: u32 = 4;

/// Erases the line the cursor is on and goes to its start.
const ERASE_LINE: &[u8] = b"\r\x1b[2K";
/// Goes one line up and erases it.
const UP_AND_ERASE: &[u8] = b"\x1b[1A\x1b[2K";

/// The status lines on screen.
#[derive(Default)]
struct Screen {
    lines: Vec<String>,
    /// How many of them are drawn now.
    drawn: usize,
    /// Stopped for good: nothing is drawn any more.
    done: bool,
}

impl Screen {
    /// Appends the bytes that erase the drawn lines, leaving the cursor where the first
    /// one began.
    fn erase(&mut self, out: &mut Vec<u8>) {
        if self.drawn == 0 {
            return;
        }
        out.extend_from_slice(ERASE_LINE);
        for _ in 1..self.drawn {
            out.extend_from_slice(UP_AND_ERASE);
        }
        self.drawn = 0;
    }

    /// Appends the bytes that draw the lines, the cursor left at the end of the last.
    fn draw(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        // A pseudo-terminal may report no size (0): then 100 columns.
        let width = terminal_size::terminal_size_of(std::io::stderr())
            .map(|(w, _)| usize::from(w.0))
            .filter(|&w| w >= 20)
            .unwrap_or(100);
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            // One character short of the width: a full line would wrap the cursor.
            let shown: String = line.chars().take(width.saturating_sub(1)).collect();
            out.extend_from_slice(shown.as_bytes());
        }
        self.drawn = self.lines.len();
    }
}

fn screen() -> &'static Mutex<Screen> {
    static SCREEN: OnceLock<Mutex<Screen>> = OnceLock::new();
    SCREEN.get_or_init(Mutex::default)
}

fn write_stderr(bytes: &[u8]) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(bytes);
    let _ = stderr.flush();
}

/// Where log lines go while status lines are drawn (a `tracing` writer).
#[derive(Clone, Copy, Default)]
pub(crate) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut screen = screen().lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(buf.len() + 256);
        screen.erase(&mut out);
        out.extend_from_slice(buf);
        if buf.ends_with(b"\n") {
            screen.draw(&mut out);
        }
        write_stderr(&out);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Draws the status lines of `states` until [`Drawing::finish`].
pub(crate) struct Drawing {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Drawing {
    /// Starts redrawing the lines of the pipelines `states` returns.
    pub(crate) fn start(states: impl Fn() -> Vec<Arc<PipelineState>> + Send + 'static) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let cancelled = stop.clone();
        let task = tokio::spawn(async move {
            let mut rates = Rates::default();
            let mut tick = tokio::time::interval(Duration::from_secs(1) / REDRAWS_PER_SECOND);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                let last = tokio::select! {
                    () = cancelled.cancelled() => true,
                    _ = tick.tick() => false,
                };
                let lines = states()
                    .iter()
                    .map(|s| rates.line(s, Instant::now()))
                    .collect();
                let mut screen = screen().lock().unwrap_or_else(PoisonError::into_inner);
                let mut out = Vec::new();
                screen.erase(&mut out);
                screen.lines = lines;
                screen.draw(&mut out);
                if last {
                    // The last lines stay, above what is logged after.
                    out.push(b'\n');
                    screen.drawn = 0;
                    screen.lines.clear();
                    screen.done = true;
                }
                write_stderr(&out);
                if last {
                    break;
                }
            }
        });
        Self { stop, task }
    }

    /// Stops redrawing: the last status lines are drawn once more and left on screen.
    pub(crate) async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Records per second per pipeline, over the last second or so.
#[derive(Default)]
struct Rates {
    /// Per pipeline: (when, records written then), oldest first.
    samples: std::collections::HashMap<String, std::collections::VecDeque<(Instant, u64)>>,
}

impl Rates {
    /// The status line of `state` at `now`.
    fn line(&mut self, state: &PipelineState, now: Instant) -> String {
        let stats = &state.stats;
        let written = WorkerStats::get(&stats.written);
        let samples = self.samples.entry(state.id.clone()).or_default();
        samples.push_back((now, written));
        while samples.len() > 2
            && samples
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(2))
        {
            samples.pop_front();
        }
        let rate = match (samples.front(), samples.back()) {
            (Some((a, wa)), Some((b, wb))) if b > a => {
                (wb - wa) as f64 / b.duration_since(*a).as_secs_f64()
            }
            _ => 0.0,
        };
        let line = status_line(
            &state.id,
            state.current().name(),
            rate,
            written,
            WorkerStats::get(&stats.read),
            WorkerStats::get(&stats.dlq),
            stats.backlog(),
        );
        let line = with_lag_records(line, stats.backlog(), stats.lag_records());
        with_lag_bytes(line, stats.lag_bytes())
    }
}

/// One pipeline's line: `id status rate written dlq [lag] [bar percent ETA]`.
fn status_line(
    id: &str,
    status: &str,
    rate: f64,
    written: u64,
    read: u64,
    dlq: u64,
    backlog: Option<u64>,
) -> String {
    let mut line = format!(
        "{id:<20} {status:<10} {:>9} rec/s  written {:>11}  dlq {:>7}",
        group(rate.round() as u64),
        group(written),
        group(dlq)
    );
    if let Some(left) = backlog {
        line.push_str(&format!("  lag {:>9}", group(left)));
        let total = read + left;
        if total > 0 {
            let done = read as f64 / total as f64;
            let filled = (done * 20.0).round() as usize;
            line.push_str(&format!(
                "  [{}{}] {:>3.0}%",
                "#".repeat(filled),
                "-".repeat(20 - filled.min(20)),
                done * 100.0
            ));
            if left == 0 {
                line.push_str("  done");
            } else if rate > 0.0 {
                line.push_str(&format!("  ETA {}", clock(left as f64 / rate)));
            }
        }
    }
    line
}

/// `line` with the lag in records of an open-ended stream appended (a Kafka
/// consumer's, over its partitions), when the source knows it and has no backlog (which
/// shows its lag already, with a bar).
fn with_lag_records(mut line: String, backlog: Option<u64>, lag: Option<u64>) -> String {
    if let (None, Some(records)) = (backlog, lag) {
        line.push_str(&format!("  lag {:>9}", group(records)));
    }
    line
}

/// `line` with the lag in bytes appended, when the source knows it (a replication
/// slot's).
fn with_lag_bytes(mut line: String, lag: Option<u64>) -> String {
    if let Some(bytes) = lag {
        line.push_str(&format!("  lag {:>9}", size(bytes)));
    }
    line
}

/// Bytes in B, KB, MB, GB or TB (powers of 1,000), one decimal above B.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `n` with thousands separated by commas.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds as `m:ss` (or `h:mm:ss`).
fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_rate_totals_and_without_a_known_backlog_no_bar() {
        let line = status_line("orders", "running", 1234.4, 1_234_567, 1_234_600, 3, None);
        assert_eq!(
            line,
            "orders               running        1,234 rec/s  written   1,234,567  dlq       3"
        );
    }

    #[test]
    fn a_known_backlog_shows_lag_a_bar_and_the_eta_at_the_current_rate() {
        let line = status_line("g", "running", 100.0, 250, 250, 0, Some(750));
        assert!(
            line.ends_with("lag       750  [#####---------------]  25%  ETA 0:08"),
            "{line}"
        );
        let line = status_line("g", "finished", 0.0, 1000, 1000, 0, Some(0));
        assert!(
            line.ends_with("[####################] 100%  done"),
            "{line}"
        );
    }

    #[test]
    fn a_known_lag_in_records_of_a_stream_is_shown_without_a_bar() {
        assert_eq!(with_lag_records("p".into(), None, None), "p");
        assert_eq!(
            with_lag_records("p".into(), None, Some(12_345)),
            "p  lag    12,345"
        );
        // A source with a backlog shows it (and its bar) already.
        assert_eq!(with_lag_records("p".into(), Some(5), Some(12_345)), "p");
    }

    #[test]
    fn a_known_lag_in_bytes_is_shown_in_units_after_the_line() {
        assert_eq!(with_lag_bytes("p".into(), None), "p");
        assert_eq!(with_lag_bytes("p".into(), Some(512)), "p  lag     512 B");
        assert_eq!(
            with_lag_bytes("p".into(), Some(12_345_678)),
            "p  lag   12.3 MB"
        );
    }

    #[test]
    fn erasing_goes_up_over_every_drawn_line() {
        let mut screen = Screen {
            lines: vec!["a".into(), "b".into()],
            ..Screen::default()
        };
        let mut out = Vec::new();
        screen.draw(&mut out);
        assert_eq!(out, b"a\nb");
        out.clear();
        screen.erase(&mut out);
        assert_eq!(out, b"\r\x1b[2K\x1b[1A\x1b[2K");
        assert_eq!(screen.drawn, 0);
    }
}
