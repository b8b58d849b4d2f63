//! Which running pipelines stopped making progress: records in flight, and none
//! acknowledged for a while. A stage that hangs (a processor waiting on a server that
//! never answers, a destination that never acks) shows up here, where the pipeline's
//! status still says running.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The last progress seen of each pipeline.
#[derive(Debug)]
pub struct StallWatch {
    threshold: Duration,
    seen: Mutex<HashMap<String, Progress>>,
}

#[derive(Debug)]
struct Progress {
    acked: u64,
    /// Since when nothing was acknowledged while records were in flight.
    since: Instant,
    stalled: bool,
}

impl StallWatch {
    /// A watch reporting a pipeline stalled after `threshold` without progress.
    pub fn new(threshold: Duration) -> Self {
        Self {
            threshold,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records what `pipeline` has read and acknowledged so far. A pipeline that is not
    /// running, has nothing in flight or acknowledged something since the last call is
    /// making progress.
    pub fn observe(&self, pipeline: &str, running: bool, read: u64, acked: u64) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let progress = seen.entry(pipeline.to_owned()).or_insert(Progress {
            acked,
            since: now,
            stalled: false,
        });
        if !running || read <= acked || progress.acked != acked {
            progress.acked = acked;
            progress.since = now;
            if progress.stalled {
                tracing::info!(pipeline, "pipeline makes progress again");
            }
            progress.stalled = false;
        } else if !progress.stalled && now.duration_since(progress.since) >= self.threshold {
            progress.stalled = true;
            tracing::warn!(
                pipeline,
                in_flight = read - acked,
                "pipeline stalled: records in flight and none acknowledged for {:?}; a stage \
                 (a processor or destination waiting on an external system) may hang",
                self.threshold
            );
        }
    }

    /// How long `pipeline` has gone without progress, when that is at least the
    /// threshold.
    pub fn stalled_for(&self, pipeline: &str) -> Option<Duration> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let progress = seen.get(pipeline)?;
        progress.stalled.then(|| progress.since.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stuck_stage_makes_a_running_pipeline_stalled_after_the_threshold() {
        let watch = StallWatch::new(Duration::from_secs(60));
        watch.observe("p", true, 100, 40);
        tokio::time::advance(Duration::from_secs(59)).await;
        watch.observe("p", true, 150, 40);
        assert_eq!(watch.stalled_for("p"), None, "stalled before the threshold");
        tokio::time::advance(Duration::from_secs(1)).await;
        watch.observe("p", true, 150, 40);
        assert_eq!(watch.stalled_for("p"), Some(Duration::from_secs(60)));
        // One acknowledgement is progress again.
        watch.observe("p", true, 150, 41);
        assert_eq!(watch.stalled_for("p"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_pipeline_with_nothing_in_flight_is_never_stalled() {
        let watch = StallWatch::new(Duration::from_secs(60));
        watch.observe("p", true, 100, 100);
        tokio::time::advance(Duration::from_secs(600)).await;
        watch.observe("p", true, 100, 100);
        assert_eq!(watch.stalled_for("p"), None);
        // Nor is one that is not running.
        watch.observe("q", false, 100, 10);
        tokio::time::advance(Duration::from_secs(600)).await;
        watch.observe("q", false, 100, 10);
        assert_eq!(watch.stalled_for("q"), None);
    }
}
