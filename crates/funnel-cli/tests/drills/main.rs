//! The fault drill suite: the real `funnel` binary, for each source/destination pair
//! shipped, under the faults a machine brings (docs/reliability.md lists them with what
//! Funnel guarantees). After each fault the drill restarts Funnel as an operator would
//! and checks that nothing was lost (every input record is in the output at least once)
//! and that the error Funnel reported names what failed and what to do.
//!
//! | Module | Fault |
//! |---|---|
//! | [`kill`] | SIGKILL at random moments |
//! | [`kill`] (mysql pairs) | SIGKILL at random moments under random DML, MariaDB <-> PostgreSQL |
//! | [`service`] | PostgreSQL restarting under a running pipeline |
//! | [`disk`] | the disk filling up (a small tmpfs; needs root) |
//! | [`store`] | the store file corrupted |
//! | [`input`] | the file source's input rotated, truncated, replaced or deleted |
//! | [`brokers`] | SIGKILL with a publisher running, and the broker restarting, for RabbitMQ and MQTT |
//! | [`http`] | SIGKILL with senders posting to the http source and sending again what got no 2xx |
//! | [`cluster`] | three instances on one PostgreSQL store: SIGKILL, SIGSTOP past the lease, SIGTERM; one instance cut off from the database |
//! | [`plugins`] | SIGKILL with a Conduit standalone source plugin (Python SDK); delivery, resume and validation through plugins (feature `standalone`) |
//! | `kafka` | kafka pipelines under SIGKILL, a group split over two processes, the broker killed and restarted mid-stream, bad input (feature `kafka`) |
//!
//! Drills that need PostgreSQL (127.0.0.1:5432) or MariaDB (127.0.0.1:3306, see
//! `scripts/setup-services.sh`) are
//! skipped without it, and so are drills that mount a tmpfs when not run as root, except
//! under `CI=true`, where both fail instead. A new connector adds itself to the pairs of
//! [`pipelines`].
//!
//! Fault moments are random; each drill prints its `DRILL_SEED`, which replays them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod brokers;
mod cluster;
mod disk;
mod harness;
mod http;
mod input;
#[cfg(feature = "kafka")]
mod kafka;
mod kill;
mod my;
mod pg;
mod pipelines;
#[cfg(feature = "standalone")]
mod plugins;
mod service;
mod store;
