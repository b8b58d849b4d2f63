//! Leases on pipelines, for several processes sharing one store, and the fence that
//! makes a position commit conditional on still holding one.
//!
//! A lease is a row (pipeline, owner, epoch, expiry). Claiming an unowned or expired
//! lease raises its epoch, so a commit made under an older epoch is refused by the
//! store ([`Store::set_position_fenced`](crate::Store::set_position_fenced)). The
//! process keeps its own, earlier deadline ([`Fence::permits`]): the time the last
//! renewal was sent plus the lease duration, less a margin, so it stops writing before
//! the database lets anyone else claim the pipeline, even after a pause it did not
//! notice (a stopped process, a long garbage collection).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use funnel_core::{ConnectorError, WriteFence};

use crate::StoreError;

/// The lease a process holds on a pipeline, shared by everything that writes for it.
#[derive(Debug)]
pub struct Fence {
    pipeline: String,
    owner: String,
    epoch: i64,
    /// Nanoseconds after [`base`] until which writes are allowed.
    valid_until: AtomicU64,
    revoked: AtomicBool,
}

/// The instant deadlines are counted from.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn nanos_since_base(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base()).as_nanos()).unwrap_or(u64::MAX)
}

impl Fence {
    /// The lease of epoch `epoch` that `owner` holds on `pipeline`, valid here until
    /// `valid_until`.
    pub fn new(
        pipeline: impl Into<String>,
        owner: impl Into<String>,
        epoch: i64,
        valid_until: Instant,
    ) -> Self {
        Self {
            pipeline: pipeline.into(),
            owner: owner.into(),
            epoch,
            valid_until: AtomicU64::new(nanos_since_base(valid_until)),
            revoked: AtomicBool::new(false),
        }
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The instance holding the lease.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease's epoch.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Moves the local deadline to `valid_until` after a renewal (never back, and never
    /// once revoked).
    pub fn extend(&self, valid_until: Instant) {
        self.valid_until
            .fetch_max(nanos_since_base(valid_until), Ordering::AcqRel);
    }

    /// Ends the lease here for good: every later check fails.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
    }

    /// How long the lease is still valid here (zero once revoked or past).
    pub fn remaining(&self) -> Duration {
        if self.revoked.load(Ordering::Acquire) {
            return Duration::ZERO;
        }
        let until = self.valid_until.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(nanos_since_base(Instant::now())))
    }

    /// Fails once the lease is revoked or its local deadline has passed; revokes it
    /// then, so that it never holds again.
    ///
    /// # Errors
    ///
    /// A fatal connector error saying the lease is lost.
    pub fn check(&self) -> Result<(), ConnectorError> {
        if self.permits() {
            Ok(())
        } else {
            Err(ConnectorError::fatal(StoreError::Fenced {
                pipeline: self.pipeline.clone(),
                owner: self.owner.clone(),
                epoch: self.epoch,
            }))
        }
    }
}

impl WriteFence for Fence {
    fn permits(&self) -> bool {
        if self.remaining().is_zero() {
            self.revoke();
            false
        } else {
            true
        }
    }

    fn refusal(&self) -> String {
        StoreError::Fenced {
            pipeline: self.pipeline.clone(),
            owner: self.owner.clone(),
            epoch: self.epoch,
        }
        .to_string()
    }
}

/// One lease, as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The pipeline.
    pub pipeline: String,
    /// The instance holding it, if any holds it now (an expired lease has none).
    pub owner: Option<String>,
    /// How many times it was claimed.
    pub epoch: i64,
}

/// Where leases on pipelines and the live instances are kept (the PostgreSQL store).
///
/// Durations are rounded to milliseconds; expiries are the database's clock, so the
/// instances' clocks need not agree.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Records `instance` as alive for `ttl`; returns every live instance, sorted.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    async fn heartbeat(&self, instance: &str, ttl: Duration) -> Result<Vec<String>, StoreError>;

    /// Forgets `instance` (on a graceful stop), so the others count one fewer at once.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    async fn leave(&self, instance: &str) -> Result<(), StoreError>;

    /// Claims up to `max` of `candidates` that no instance holds (never claimed,
    /// released, or expired) for `instance`, for `ttl`; returns each with its new
    /// epoch.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    async fn claim(
        &self,
        instance: &str,
        candidates: &[String],
        max: usize,
        ttl: Duration,
    ) -> Result<Vec<(String, i64)>, StoreError>;

    /// Extends by `ttl` each lease of `held` (pipeline, epoch) that `instance` still
    /// holds and that has not expired; returns those.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    async fn renew(
        &self,
        instance: &str,
        held: &[(String, i64)],
        ttl: Duration,
    ) -> Result<Vec<(String, i64)>, StoreError>;

    /// Gives the lease of epoch `epoch` on `pipeline` back, if `instance` still holds
    /// it: any instance may claim it at once.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    async fn release(&self, instance: &str, pipeline: &str, epoch: i64) -> Result<(), StoreError>;

    /// Every lease, by pipeline.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    async fn leases(&self) -> Result<Vec<Lease>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_permits_until_its_deadline_and_never_again_after() {
        let fence = Fence::new("p", "a", 3, Instant::now() + Duration::from_secs(60));
        assert!(fence.permits());
        fence.extend(Instant::now());
        assert!(fence.permits(), "a renewal never moves the deadline back");
        let past = Fence::new("p", "a", 3, Instant::now());
        assert!(!past.permits());
        past.extend(Instant::now() + Duration::from_secs(60));
        assert!(!past.permits(), "a lapsed fence stays lapsed");
        fence.revoke();
        assert!(fence.check().is_err());
        assert!(fence.refusal().contains("epoch 3"), "{}", fence.refusal());
    }
}
