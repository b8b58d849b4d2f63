//! Funnel as a host for Conduit's standalone connector plugins.
//!
//! A standalone connector is an executable that speaks Conduit's connector protocol
//! (v2) over gRPC after a go-plugin handshake on its stdout. This crate:
//!
//! - [`pb`]: the protocol's messages and services, generated from `proto/` (written
//!   from Conduit's wire contract: same packages, names, field numbers and types);
//! - [`process`]: launching a plugin with the environment Conduit gives it, the
//!   handshake, the connection, its stdout and stderr turned into log lines, and its
//!   shutdown (the whole process group; nothing outlives Funnel, even a SIGKILL);
//! - [`spec`] and [`catalogue`]: discovery of the plugins in the connectors directory,
//!   their specifications, references (`standalone:name@version`), and the settings
//!   checks their specifications allow;
//! - [`source`] and [`destination`]: a plugin driven as a Funnel
//!   [`Source`](funnel_core::Source) or [`Destination`](funnel_core::Destination);
//! - [`state`]: a connector's last active configuration, kept in Funnel's store for
//!   the lifecycle events;
//! - [`schema`]: the schema service plugins call back into, its schemas kept in
//!   Funnel's store.

pub mod catalogue;
mod connector;
pub mod destination;
mod lifecycle;
pub mod process;
mod record;
pub mod schema;
pub mod source;
pub mod spec;
pub mod state;

pub use catalogue::{Catalogue, PluginRef};
pub use destination::PluginDestination;
pub use process::{HostOptions, PluginError, PluginProcess};
pub use source::PluginSource;
pub use spec::PluginSpec;
pub use state::{LastActive, Role};

/// The generated protocol code, one module per protobuf package: `connector.v2` (the
/// specifier, source and destination services), `opencdc.v1` (records), `config.v1`
/// (parameters of a specification), `schema.v1` (schemas), `connutils.v1` (the schema
/// service the host serves), `plugin` (go-plugin's controller and stdio services) and
/// `grpc.health.v1` (the health check).
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/protocol.rs"));
}
