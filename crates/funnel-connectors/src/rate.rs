//! `sdk.rate.perSecond` and `sdk.rate.burst`: a token bucket in front of a
//! destination's writes, as the Conduit SDK's rate-limit middleware.
//!
//! The bucket holds at most `burst` tokens (by default the rate rounded up, and never
//! less than one) and gains `perSecond` a second; a write of `n` records takes `n`
//! tokens, waiting for them, so a write larger than the burst is let through in
//! burst-sized steps. `perSecond: 0` (the default) means no limit.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck, Settings};
use funnel_record::Record;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// A token bucket: `per_second` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket; `burst` 0 means the rate rounded up (at least 1).
    pub fn new(per_second: f64, burst: usize) -> Self {
        let burst = if burst == 0 {
            per_second.ceil().max(1.0)
        } else {
            // Bursts are record counts, far below 2^52: exact as a float.
            #[allow(clippy::cast_precision_loss)]
            let burst = burst as f64;
            burst
        };
        Self {
            per_second,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Waits until `n` tokens were taken.
    pub async fn take(&mut self, n: usize) {
        // Record counts are far below 2^52: exact as a float.
        #[allow(clippy::cast_precision_loss)]
        let mut left = n as f64;
        while left > 0.0 {
            let now = Instant::now();
            let gained = now.duration_since(self.last).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + gained).min(self.burst);
            self.last = now;
            let step = left.min(self.burst);
            if self.tokens >= step {
                self.tokens -= step;
                left -= step;
            } else {
                let wait = (step - self.tokens) / self.per_second;
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
        }
    }
}

/// The bucket `settings` ask for, if any (`sdk.rate.perSecond` above 0). The settings
/// were validated by the connector.
pub fn from_settings(settings: &Settings) -> Option<TokenBucket> {
    let per_second = settings
        .get("sdk.rate.perSecond")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|r| r.is_finite() && *r > 0.0)?;
    let burst = settings
        .get("sdk.rate.burst")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Some(TokenBucket::new(per_second, burst))
}

/// A destination whose writes wait for a [`TokenBucket`].
pub struct RateLimited {
    inner: Arc<dyn Destination>,
    bucket: Mutex<TokenBucket>,
}

impl RateLimited {
    /// `inner`, its writes limited by `bucket`.
    pub fn new(inner: Arc<dyn Destination>, bucket: TokenBucket) -> Self {
        Self {
            inner,
            bucket: Mutex::new(bucket),
        }
    }
}

#[async_trait]
impl Destination for RateLimited {
    async fn open(&self) -> Result<(), ConnectorError> {
        self.inner.open().await
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        self.bucket.lock().await.take(records.len()).await;
        self.inner.write(records).await
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.inner.ack().await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.inner.teardown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_lets_a_burst_through_then_paces_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 10);
        bucket.take(10).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst waited");
        bucket.take(100).await;
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            (0.99..1.01).contains(&elapsed),
            "{elapsed} s for 100 at 100/s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_saved_while_idle_are_capped_at_the_burst() {
        let mut bucket = TokenBucket::new(10.0, 5);
        bucket.take(5).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        bucket.take(15).await;
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            (0.99..1.01).contains(&elapsed),
            "{elapsed} s: idle time saved more than the burst"
        );
    }

    #[test]
    fn no_rate_or_a_zero_rate_means_no_limit_and_a_missing_burst_is_the_rate() {
        let settings = |pairs: &[(&str, &str)]| -> Settings {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(from_settings(&settings(&[])).is_none());
        assert!(from_settings(&settings(&[("sdk.rate.perSecond", "0")])).is_none());
        let bucket = from_settings(&settings(&[("sdk.rate.perSecond", "2.5")])).unwrap();
        assert!((bucket.burst - 3.0).abs() < f64::EPSILON);
    }
}
