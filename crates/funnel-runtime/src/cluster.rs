//! Several `funnel` processes, one fleet: each pipeline runs on exactly one instance at
//! a time, under a lease kept in the shared store (`docs/cluster.md`).
//!
//! Every instance reads the same pipeline files; the store holds only positions and
//! leases. Two loops run per instance:
//!
//! - the **renewer**, every renewal interval, extends every lease it holds in one
//!   statement and moves each lease's local deadline to the time the renewal was sent
//!   plus the lease duration, less a tenth. A lease the store no longer extends (taken
//!   over) or whose local deadline passed (the database unreachable, the process
//!   paused) is lost: its fence is revoked at once (every later write and commit of the
//!   pipeline fails) and the pipeline is aborted.
//! - the **balancer**, on the same interval, records the instance as alive, counts the
//!   live instances, and claims unowned or expired leases up to its fair share
//!   (⌈pipelines / instances⌉), or hands pipelines over above it: drained, committed,
//!   then released, so the next owner starts at once and reads nothing twice.
//!
//! A graceful stop drains every pipeline, then releases every lease and leaves the
//! fleet.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use funnel_core::WriteFence;
use funnel_core::telemetry::{INSTANCES, LEASES_CLAIMED, LEASES_HELD, LEASES_LOST, REBALANCES};
use funnel_store::{Fence, Lease, Leases};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use crate::fenced::Fences;
use crate::supervisor::Supervisor;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections only read or replace entries: a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How an instance takes part in the fleet.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// This instance's name, unique in the fleet.
    pub instance: String,
    /// How long a lease lasts without renewal (default 10 s).
    pub lease: Duration,
    /// How often leases are renewed and the load evened out (default 2 s); well below
    /// `lease`.
    pub renew: Duration,
}

/// Who runs what, as this instance last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// This instance.
    pub instance: String,
    /// Every live instance, sorted.
    pub instances: Vec<String>,
    /// Every lease, by pipeline.
    pub leases: Vec<Lease>,
}

impl ClusterView {
    /// The instance running `pipeline`, if any runs it.
    pub fn owner(&self, pipeline: &str) -> Option<&str> {
        self.leases
            .iter()
            .find(|l| l.pipeline == pipeline)
            .and_then(|l| l.owner.as_deref())
    }
}

/// A lease this instance holds.
struct Held {
    fence: Arc<Fence>,
    /// Being handed over: drained, then released.
    releasing: bool,
    /// Its pipeline was started under it.
    started: bool,
}

/// This instance's part in the fleet: see the module documentation.
pub struct Cluster {
    options: ClusterOptions,
    leases: Arc<dyn Leases>,
    supervisor: Arc<Supervisor>,
    fences: Arc<Fences>,
    held: Mutex<BTreeMap<String, Held>>,
    /// Pipelines whose lease was lost and that are being aborted: not claimed again
    /// until that is done.
    aborting: Arc<Mutex<HashSet<String>>>,
    view: Mutex<ClusterView>,
    balancing: CancellationToken,
    renewing: CancellationToken,
    renewer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    balancer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Hand-overs in progress.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Cluster {
    /// This instance in the fleet of `leases`, running its pipelines in `supervisor`,
    /// which must have been made with `fences` in its options. Nothing happens until
    /// [`start`](Self::start).
    pub fn new(
        options: ClusterOptions,
        leases: Arc<dyn Leases>,
        supervisor: Arc<Supervisor>,
        fences: Arc<Fences>,
    ) -> Arc<Self> {
        let view = ClusterView {
            instance: options.instance.clone(),
            ..ClusterView::default()
        };
        Arc::new(Self {
            options,
            leases,
            supervisor,
            fences,
            held: Mutex::new(BTreeMap::new()),
            aborting: Arc::default(),
            view: Mutex::new(view),
            balancing: CancellationToken::new(),
            renewing: CancellationToken::new(),
            renewer: Mutex::new(None),
            balancer: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.options.instance
    }

    /// Who runs what, as of the last balancing round.
    pub fn view(&self) -> ClusterView {
        lock(&self.view).clone()
    }

    /// Starts renewing and balancing.
    pub fn start(self: &Arc<Self>) {
        let renewer = {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(this.options.renew);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = this.renewing.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    this.renew_once().await;
                }
            })
        };
        let balancer = {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(this.options.renew);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut round = 0u64;
                loop {
                    tokio::select! {
                        () = this.balancing.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    // The first round only announces this instance, so that instances
                    // started together share the pipelines from the start.
                    this.balance_once(round > 0).await;
                    round += 1;
                }
            })
        };
        *lock(&self.renewer) = Some(renewer);
        *lock(&self.balancer) = Some(balancer);
    }

    /// The local deadline of a lease extended by a statement sent at `sent`: a tenth of
    /// the lease before the database lets another instance claim it.
    fn deadline(&self, sent: Instant) -> Instant {
        sent + self.options.lease - self.options.lease / 10
    }

    async fn renew_once(self: &Arc<Self>) {
        let held: Vec<(String, i64)> = lock(&self.held)
            .iter()
            .map(|(p, h)| (p.clone(), h.fence.epoch()))
            .collect();
        if !held.is_empty() {
            let sent = Instant::now();
            // A slow answer still extends the lease from when it was sent; only one
            // that cannot arrive before the lease lapses is given up on.
            let renewed = tokio::time::timeout(
                self.options.lease / 2,
                self.leases
                    .renew(&self.options.instance, &held, self.options.lease),
            )
            .await;
            match renewed {
                Ok(Ok(still)) => {
                    let deadline = self.deadline(sent);
                    for (pipeline, epoch) in &held {
                        if still.iter().any(|(p, e)| p == pipeline && e == epoch) {
                            if let Some(h) = lock(&self.held).get(pipeline) {
                                h.fence.extend(deadline);
                            }
                        } else {
                            self.lose(pipeline, "the store did not renew it: it expired or another instance took it over");
                        }
                    }
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot renew the leases; the pipelines stop if their leases expire first")
                }
                Err(_) => {
                    warn!(timeout = ?self.options.renew, "renewing the leases took too long; the pipelines stop if their leases expire first")
                }
            }
        }
        self.drop_lapsed();
        metrics::gauge!(LEASES_HELD).set(lock(&self.held).len() as f64);
    }

    /// Loses every lease whose local deadline has passed.
    fn drop_lapsed(self: &Arc<Self>) {
        let lapsed: Vec<String> = lock(&self.held)
            .iter()
            .filter(|(_, h)| !h.fence.permits())
            .map(|(p, _)| p.clone())
            .collect();
        for pipeline in lapsed {
            self.lose(&pipeline, "it expired before it could be renewed");
        }
    }

    /// Stops `pipeline` at once: its lease is gone.
    fn lose(self: &Arc<Self>, pipeline: &str, why: &str) {
        let Some(held) = lock(&self.held).remove(pipeline) else {
            return;
        };
        held.fence.revoke();
        self.fences.remove(pipeline);
        metrics::counter!(LEASES_LOST, "pipeline" => pipeline.to_owned()).increment(1);
        warn!(
            pipeline,
            epoch = held.fence.epoch(),
            "lease lost ({why}): stopping the pipeline at once"
        );
        lock(&self.aborting).insert(pipeline.to_owned());
        let supervisor = Arc::clone(&self.supervisor);
        let aborting = Arc::clone(&self.aborting);
        let pipeline = pipeline.to_owned();
        tokio::spawn(async move {
            supervisor.abort_pipeline(&pipeline).await;
            lock(&aborting).remove(&pipeline);
        });
    }

    /// The pipelines every instance should run between them: those of the pipeline
    /// files that are not configured `stopped`.
    fn desired(&self) -> Vec<String> {
        let mut desired: Vec<String> = self
            .supervisor
            .states()
            .iter()
            .filter(|s| s.file().is_some())
            .filter(|s| s.config().status == funnel_config::PipelineStatus::Running)
            .map(|s| s.id.clone())
            .collect();
        desired.sort();
        desired
    }

    async fn balance_once(self: &Arc<Self>, claim: bool) {
        let me = self.options.instance.clone();
        // A lease that lapsed (the process was paused, say) is not counted as held.
        self.drop_lapsed();
        let instances = match self.leases.heartbeat(&me, self.options.lease).await {
            Ok(instances) => instances,
            Err(e) => {
                warn!(error = %e, "cannot reach the store to balance pipelines");
                return;
            }
        };
        metrics::gauge!(INSTANCES).set(instances.len() as f64);
        let desired = self.desired();
        // Held leases of pipelines no longer in any file are given back.
        let gone: Vec<String> = lock(&self.held)
            .iter()
            .filter(|(p, h)| !h.releasing && !desired.contains(p))
            .map(|(p, _)| p.clone())
            .collect();
        for pipeline in gone {
            self.hand_over(&pipeline);
        }
        let share = desired.len().div_ceil(instances.len().max(1));
        let running = lock(&self.held).values().filter(|h| !h.releasing).count();
        if claim && running < share {
            let aborting = lock(&self.aborting).clone();
            let candidates: Vec<String> = {
                let held = lock(&self.held);
                desired
                    .iter()
                    .filter(|p| !held.contains_key(*p) && !aborting.contains(*p))
                    .cloned()
                    .collect()
            };
            let sent = Instant::now();
            match self
                .leases
                .claim(&me, &candidates, share - running, self.options.lease)
                .await
            {
                Ok(claimed) => {
                    for (pipeline, epoch) in claimed {
                        let fence =
                            Arc::new(Fence::new(&pipeline, &me, epoch, self.deadline(sent)));
                        self.fences.insert(Arc::clone(&fence));
                        metrics::counter!(LEASES_CLAIMED, "pipeline" => pipeline.clone())
                            .increment(1);
                        info!(pipeline, epoch, "lease claimed: starting the pipeline");
                        lock(&self.held).insert(
                            pipeline,
                            Held {
                                fence,
                                releasing: false,
                                started: false,
                            },
                        );
                    }
                }
                Err(e) => warn!(error = %e, "cannot claim pipelines"),
            }
        } else if running > share {
            // Above the fair share: hand over the excess, the last ones by name.
            let excess: Vec<String> = lock(&self.held)
                .iter()
                .filter(|(_, h)| !h.releasing)
                .map(|(p, _)| p.clone())
                .rev()
                .take(running - share)
                .collect();
            for pipeline in excess {
                info!(
                    pipeline,
                    share, "handing the pipeline over to even out the load"
                );
                metrics::counter!(REBALANCES, "pipeline" => pipeline.clone()).increment(1);
                self.hand_over(&pipeline);
            }
        }
        // Start what was claimed (again, if it could not start before).
        let to_start: Vec<String> = lock(&self.held)
            .iter()
            .filter(|(_, h)| !h.releasing && !h.started)
            .map(|(p, _)| p.clone())
            .collect();
        for pipeline in to_start {
            if self.supervisor.start_pipeline(&pipeline).await
                && let Some(h) = lock(&self.held).get_mut(&pipeline)
            {
                h.started = true;
            }
        }
        metrics::gauge!(LEASES_HELD).set(lock(&self.held).len() as f64);
        if let Ok(leases) = self.leases.leases().await {
            *lock(&self.view) = ClusterView {
                instance: me,
                instances,
                leases,
            };
        }
    }

    /// Drains `pipeline`, then releases its lease (in the background; the lease is
    /// renewed until then).
    fn hand_over(self: &Arc<Self>, pipeline: &str) {
        let epoch = {
            let mut held = lock(&self.held);
            let Some(h) = held.get_mut(pipeline) else {
                return;
            };
            h.releasing = true;
            h.fence.epoch()
        };
        let this = Arc::clone(self);
        let pipeline = pipeline.to_owned();
        let task = tokio::spawn(async move {
            this.supervisor.stop_pipeline(&pipeline).await;
            this.release(&pipeline, epoch).await;
        });
        lock(&self.tasks).push(task);
    }

    /// Gives the lease of `pipeline` back, if it is still held under `epoch`.
    async fn release(&self, pipeline: &str, epoch: i64) {
        let held = {
            let mut held = lock(&self.held);
            match held.get(pipeline) {
                Some(h) if h.fence.epoch() == epoch => held.remove(pipeline),
                _ => None,
            }
        };
        let Some(held) = held else {
            return;
        };
        // A drain whose lease lapsed here (renewals did not keep up) had its last
        // commits refused, and a run that failed or was aborted may have written
        // records it did not commit: what was written since the last commit is written
        // again by the next owner, so this is not a clean hand-over. The lease is left
        // to expire, as a lost one, so that a released lease always means nothing is
        // written twice. Asked before the fence is revoked below, which would make
        // every lease look lapsed.
        let unclean = if held.fence.remaining().is_zero() {
            Some("its lease lapsed during the hand-over (renewals did not keep up)")
        } else if !self.drained(pipeline) {
            Some("its last run failed or was aborted with records written and not committed")
        } else {
            None
        };
        self.fences.remove(pipeline);
        held.fence.revoke();
        if let Some(why) = unclean {
            metrics::counter!(LEASES_LOST, "pipeline" => pipeline.to_owned()).increment(1);
            warn!(
                pipeline,
                epoch,
                "lease not released, {why}: it expires and the next owner starts from the last committed position"
            );
            return;
        }
        match self
            .leases
            .release(&self.options.instance, pipeline, epoch)
            .await
        {
            Ok(()) => info!(pipeline, epoch, "lease released"),
            Err(e) => {
                warn!(pipeline, error = %e, "cannot release the lease; it expires by itself");
            }
        }
    }

    /// Whether `pipeline`'s last run left nothing written and not committed.
    fn drained(&self, pipeline: &str) -> bool {
        self.supervisor
            .states()
            .iter()
            .find(|s| s.id == pipeline)
            .is_none_or(|s| s.drained())
    }

    /// Stops gracefully: no more claims, every pipeline drained and committed, then
    /// every lease released and this instance gone from the fleet.
    pub async fn shutdown(&self) {
        self.balancing.cancel();
        let balancer = lock(&self.balancer).take();
        if let Some(balancer) = balancer {
            let _ = balancer.await;
        }
        // The renewer keeps the leases while the pipelines drain. Hand-overs in
        // progress end first: each waits for its pipeline's drain before releasing the
        // lease, and would not wait for a drain the supervisor's shutdown had taken on
        // (it would release the lease with records written and not yet committed).
        let tasks: Vec<_> = lock(&self.tasks).drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
        self.supervisor.shutdown().await;
        let held: Vec<(String, i64)> = lock(&self.held)
            .iter()
            .map(|(p, h)| (p.clone(), h.fence.epoch()))
            .collect();
        for (pipeline, epoch) in held {
            self.release(&pipeline, epoch).await;
        }
        if let Err(e) = self.leases.leave(&self.options.instance).await {
            warn!(error = %e, "cannot remove this instance from the store; it expires by itself");
        }
        self.renewing.cancel();
        let renewer = lock(&self.renewer).take();
        if let Some(renewer) = renewer {
            let _ = renewer.await;
        }
    }
}

#[cfg(all(test, feature = "postgres"))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Hand-overs against the local PostgreSQL: the loops are driven by hand, so that
    //! a renewal happens only when a test sends one.

    use std::path::PathBuf;

    use funnel_store::{PostgresStore, Store};
    use funnel_test_utils::connectors::written_positions;
    use funnel_test_utils::pg;
    use funnel_test_utils::wait::wait_until;
    use funnel_test_utils::yaml;

    use super::*;
    use crate::{SupervisorOptions, provision};

    const CONNECTION: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
    const WAIT: Duration = Duration::from_secs(30);

    /// One instance of a fleet, running one generator -> file pipeline `p`.
    struct Instance {
        _dir: tempfile::TempDir,
        out: PathBuf,
        table: String,
        store: Arc<PostgresStore>,
        fences: Arc<Fences>,
        cluster: Arc<Cluster>,
    }

    impl Drop for Instance {
        fn drop(&mut self) {
            let t = &self.table;
            let _ = pg::psql(&format!(
                "DROP TABLE IF EXISTS {t}, {t}_leases, {t}_instances"
            ));
        }
    }

    async fn instance(name: &str, lease: Duration) -> Instance {
        let table = format!("pgfleet_cluster_{name}_{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().join("pipelines");
        std::fs::create_dir(&files).unwrap();
        let out = dir.path().join("out.jsonl");
        std::fs::write(
            files.join("p.yaml"),
            yaml::file(&[yaml::pipeline(
                "p",
                &[],
                &[
                    yaml::generator("gen", -1, 500),
                    yaml::file_destination("out", &out.display().to_string()),
                ],
                &[],
            )]),
        )
        .unwrap();
        let store = Arc::new(PostgresStore::open(CONNECTION, &table).await.unwrap());
        let fences = Arc::new(Fences::default());
        let supervisor = Arc::new(Supervisor::new(
            Arc::clone(&store) as Arc<dyn Store>,
            SupervisorOptions {
                fences: Some(Arc::clone(&fences)),
                ..SupervisorOptions::default()
            },
        ));
        supervisor
            .apply(provision(&files, &funnel_config::LoadOptions::default()).unwrap())
            .await;
        let cluster = Cluster::new(
            ClusterOptions {
                instance: "one".into(),
                lease,
                renew: lease / 4,
            },
            Arc::clone(&store) as Arc<dyn Leases>,
            supervisor,
            Arc::clone(&fences),
        );
        Instance {
            _dir: dir,
            out,
            table,
            store,
            fences,
            cluster,
        }
    }

    /// An instance that claimed `p` under a 30 s lease and has written 50 records.
    async fn writing(name: &str) -> Instance {
        let one = instance(name, Duration::from_secs(30)).await;
        one.cluster.balance_once(true).await;
        wait_until("the pipeline writes under its lease", WAIT, || {
            written_positions(&one.out).len() >= 50
        })
        .await;
        one
    }

    /// Fails unless the lease of `p` still names the instance after its stop: `what`
    /// was not released, but left to expire.
    fn assert_left_to_expire(one: &Instance, what: &str) {
        assert_eq!(
            owner_row(one),
            "one",
            "{what} is not released: it is left to expire"
        );
    }

    /// Who the lease row of `p` names as its owner (`""`: nobody, it was released).
    fn owner_row(one: &Instance) -> String {
        pg::psql(&format!(
            "SELECT coalesce(owner, '') FROM {}_leases WHERE pipeline = 'p'",
            one.table
        ))
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_graceful_stop_within_the_lease_commits_everything_written_and_releases_the_lease_at_once()
     {
        let one = writing("released").await;
        one.cluster.shutdown().await;
        let written = written_positions(&one.out);
        let committed = one.store.positions("p").await.unwrap();
        assert_eq!(
            committed.len(),
            1,
            "one source position committed: {committed:?}"
        );
        let committed: u64 = std::str::from_utf8(committed[0].1.as_bytes())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            Some(&committed),
            written.last(),
            "the drain committed every record written"
        );
        assert_eq!(owner_row(&one), "", "the lease was released");
        let next = one
            .store
            .claim("two", &["p".to_owned()], 1, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(
            next,
            [("p".to_owned(), 2)],
            "the next owner claims the lease at once, under the next epoch"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_graceful_stop_after_the_lease_lapsed_here_leaves_it_to_expire_instead_of_releasing_it()
     {
        let one = instance("lapsed", Duration::from_secs(2)).await;
        one.cluster.balance_once(true).await;
        // No renewal is sent: the lease lapses here 1.8 s after the claim, and from then
        // on the pipeline's writes and commits are refused, so what it wrote since its
        // last commit is not committed.
        wait_until("the lease lapses here", WAIT, || {
            one.fences.get("p").is_none()
        })
        .await;
        one.cluster.shutdown().await;
        assert_left_to_expire(&one, "a lease that lapsed before the drain ended");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_graceful_stop_after_a_run_failed_with_records_not_committed_leaves_the_lease_to_expire()
     {
        let one = writing("failed").await;
        // From now on every position commit fails, as when the database refuses a
        // write: the pipeline has written records it cannot commit, and its runs fail.
        let t = &one.table;
        pg::psql(&format!(
            "CREATE FUNCTION {t}_refuse() RETURNS trigger AS $$ BEGIN
                 RAISE EXCEPTION 'no commits for now';
             END $$ LANGUAGE plpgsql;
             CREATE TRIGGER {t}_refuse BEFORE INSERT OR UPDATE ON {t}
                 FOR EACH ROW EXECUTE FUNCTION {t}_refuse();"
        ))
        .unwrap();
        let state = one
            .cluster
            .supervisor
            .states()
            .into_iter()
            .find(|s| s.id == "p")
            .unwrap();
        wait_until("a run fails on a commit", WAIT, || !state.drained()).await;
        one.cluster.shutdown().await;
        let _ = pg::psql(&format!(
            "DROP TRIGGER {t}_refuse ON {t}; DROP FUNCTION {t}_refuse()"
        ));
        assert_left_to_expire(
            &one,
            "a lease whose pipeline wrote records it did not commit (the next owner writes them again after the expiry)",
        );
    }
}
