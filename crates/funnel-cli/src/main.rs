//! `funnel`: run Conduit pipeline files, and ask a running instance about them.
//!
//! Every command but `run` prints through [`output`] (text, or with `--json` one
//! envelope) and exits 0 ok, 1 runtime, 2 validation, 3 environment; `run` logs on
//! stderr and, with `--json`, prints the envelope once it ends. `run`'s exit
//! codes: 0 after a graceful stop (SIGINT or SIGTERM) or when every pipeline is
//! done with `--pipelines.exit-on-done`; 1 when the pipelines path cannot be read, the
//! store or the API address cannot be opened, a pipeline file is invalid and
//! `--pipelines.exit-on-degraded` is set, or a pipeline is degraded (or a file invalid)
//! and `--pipelines.exit-on-degraded` (or `exit-on-done`) is set; 2 for bad usage or a
//! configuration file that cannot be used; 130
//! when a second signal forces the exit. SIGHUP reloads the pipeline files.

mod control;
mod inspect;
mod output;
mod plugins;
mod progress;
mod remote;
mod scaffold;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use funnel_core::WorkerStats;
use funnel_runtime::{Backoff, Overview, PipelineStatus, Supervisor, SupervisorOptions};
use funnel_store::{MemoryStore, RedbStore, Store, StoreError};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

mod reload;
mod settings;

/// The global allocator: mimalloc with the `mimalloc` feature (see
/// docs/PERFORMANCE.md, *Allocator*).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The global allocator: jemalloc with one arena, the default `jemalloc` feature
/// (glibc's malloc without it; see docs/PERFORMANCE.md, *Allocator*).
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "funnel",
    version,
    about = "A streaming data pipeline engine that runs Conduit pipelines."
)]
struct Cli {
    /// Print one JSON object, `{command, ok, summary, result, error}`, instead of text
    /// (`run`: once it ends, its log staying on stderr).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every pipeline in the pipelines path.
    Run(Box<RunArgs>),
    /// Write funnel.yaml with every setting at its default, and the pipelines/ and
    /// connectors/ folders.
    Init {
        /// The directory to write them in.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Print the resolved configuration: what `funnel run` with the same flags would
    /// use.
    Config(Box<RunArgs>),
    /// Print funnel's version.
    Version,
    /// Pipelines: files (validate, init, delete) and those of a running instance (ls,
    /// describe, start, stop).
    Pipelines {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: PipelinesCommand,
    },
    /// Check or repair the position store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// The connectors of a running instance (`ls --plugins`: its connector plugins).
    Connectors {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: InstancesCommand,
    },
    /// The processors of a running instance (`ls --plugins`: its processor plugins).
    Processors {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: InstancesCommand,
    },
    /// The connector plugins of a running instance, with their parameters.
    ConnectorPlugins {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// The processor plugins of a running instance, with their parameters.
    ProcessorPlugins {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Watch the records passing a connector or a processor of a running funnel, live
    /// (through its API's inspector): pretty JSON on a terminal, one line each
    /// otherwise.
    Inspect(inspect::InspectArgs),
}

#[derive(Subcommand)]
enum PipelinesCommand {
    /// List the pipelines of a running instance.
    #[command(alias = "list")]
    Ls,
    /// Show a pipeline of a running instance, with its connectors and processors.
    #[command(alias = "desc")]
    Describe {
        /// The pipeline's ID.
        id: String,
    },
    /// Start a pipeline of a running instance.
    Start {
        /// The pipeline's ID.
        id: String,
    },
    /// Stop a pipeline of a running instance: every record in flight is delivered
    /// first (answers once it is stopped).
    Stop {
        /// The pipeline's ID.
        id: String,
        /// Stop at once; the records in flight are read again at the next start.
        #[arg(long)]
        force: bool,
    },
    /// Check pipeline files; lists every error and exits 2 if there is any.
    Validate {
        /// A pipeline file or a directory of them.
        #[arg(default_value = "./pipelines")]
        path: PathBuf,
        /// Also run every connector's connection test (the postgres connectors reach
        /// their server, the file destination finds its directory); exits 3 when one
        /// fails.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        connectors: plugins::ConnectorsArgs,
    },
    /// Delete a pipeline: its sources release what they keep outside Funnel (the
    /// postgres source drops its replication slot and publication when
    /// `logrepl.autoCleanup` is on), then its positions are removed from the store.
    /// Refuses when the store holds no position of the pipeline (it is probably not
    /// the store `funnel run` used) unless --force; lists what it drops and asks first
    /// (--yes to skip). Remove or change the pipeline's file afterwards, or the next
    /// run starts it again from the beginning.
    Delete {
        /// The pipeline's ID.
        id: String,
        /// A pipeline file or a directory of them, holding the pipeline.
        #[arg(long = "pipelines.path", default_value = "./pipelines")]
        path: PathBuf,
        /// The redb store file `funnel run` uses; it is never created.
        #[arg(
            long = "db.redb.path",
            env = "FUNNEL_DB_REDB_PATH",
            default_value = "./funnel.db"
        )]
        db_path: PathBuf,
        /// Delete even when the store holds no position of the pipeline, or does not
        /// exist.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation (needed when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        connectors: plugins::ConnectorsArgs,
    },
    /// Write a pipeline file: with no --source or --destination a working generator ->
    /// file pipeline; with them, every setting of the chosen plugins with its
    /// description, type and whether it is required.
    Init {
        /// The pipeline's ID (also the file name).
        name: String,
        /// Directory to write it to.
        #[arg(long = "pipelines.path", default_value = "./pipelines")]
        path: PathBuf,
        /// The source plugin (`generator` or `builtin:generator`; default generator).
        #[arg(long)]
        source: Option<String>,
        /// The destination plugin (default log).
        #[arg(long)]
        destination: Option<String>,
    },
}

#[derive(Subcommand)]
enum InstancesCommand {
    /// List them.
    #[command(alias = "list")]
    Ls {
        /// Only those of this pipeline (connectors) or attached to this pipeline or
        /// connector (processors).
        #[arg(long = "pipeline-id", alias = "parent-id")]
        parent: Option<String>,
        /// List the plugins of this funnel instead (no running instance needed): the
        /// built-in ones and, for connectors, the standalone plugins found in
        /// --connectors.path; `connector-plugins ls` asks the running instance.
        #[arg(long, conflicts_with = "parent")]
        plugins: bool,
        #[command(flatten)]
        connectors: plugins::ConnectorsArgs,
    },
    /// Show one.
    #[command(alias = "desc")]
    Describe {
        /// Its ID (`<pipeline>:<connector>`).
        id: String,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// List them.
    #[command(alias = "list")]
    Ls {
        /// Only those whose name matches this regular expression (anywhere in the name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Show one with every parameter.
    #[command(alias = "desc")]
    Describe {
        /// Its name (`builtin:` may be left out).
        name: String,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Verify the store: redb's page checksums, the format header and the checksum of
    /// every position. Lists what is damaged and exits 1 if anything is; changes
    /// nothing.
    Check {
        /// The redb store file.
        #[arg(
            long = "db.redb.path",
            env = "FUNNEL_DB_REDB_PATH",
            default_value = "./funnel.db"
        )]
        db_path: PathBuf,
    },
    /// Replace a damaged store with one holding every position that is intact. The
    /// damaged file is kept next to it (`<file>.damaged-<time>`); a source whose
    /// position is dropped starts again from its beginning. Stop funnel first.
    Repair {
        /// The redb store file.
        #[arg(
            long = "db.redb.path",
            env = "FUNNEL_DB_REDB_PATH",
            default_value = "./funnel.db"
        )]
        db_path: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DbType {
    Redb,
    #[value(alias = "inmemory")]
    Memory,
    /// A table in PostgreSQL (`--db.postgres.*`), which several `funnel` processes can
    /// share (`--cluster.enabled`).
    Postgres,
    /// Conduit's stores: accepted, and redb is used instead (with a warning).
    #[value(hide = true)]
    Badger,
    #[value(hide = true)]
    Sqlite,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    #[value(alias = "cli")]
    Text,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A pipeline file or a directory of them.
    #[arg(
        long = "pipelines.path",
        alias = "pipelines",
        env = "FUNNEL_PIPELINES_PATH",
        default_value = "./pipelines"
    )]
    pipelines_path: PathBuf,
    /// Exit once every pipeline is finished (0) or one is degraded (1).
    #[arg(long = "pipelines.exit-on-done", env = "FUNNEL_PIPELINES_EXIT_ON_DONE", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    exit_on_done: bool,
    /// Exit with 1 as soon as a pipeline is degraded, or at startup when a pipeline
    /// file is invalid (Conduit's `exit-on-error` is another name for it).
    #[arg(
        long = "pipelines.exit-on-degraded",
        alias = "pipelines.exit-on-error",
        env = "FUNNEL_PIPELINES_EXIT_ON_DEGRADED",
        num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new()
    )]
    exit_on_degraded: bool,
    /// Treat an unset `${VAR}` in a pipeline file as an error.
    #[arg(long = "pipelines.strict-env", env = "FUNNEL_PIPELINES_STRICT_ENV", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    strict_env: bool,
    /// Reload pipeline files when they change (polled every second): a changed file
    /// restarts only its pipelines, a removed one stops them, a new one starts them.
    /// SIGHUP reloads with or without it. Conduit's `--dev` is another name for it.
    #[arg(
        long = "pipelines.watch",
        aliases = ["dev", "dev.enabled"],
        env = "FUNNEL_PIPELINES_WATCH",
        num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new()
    )]
    watch: bool,
    /// The first restart delay after a transient error (a Go duration).
    #[arg(
        long = "pipelines.error-recovery.min-delay",
        env = "FUNNEL_PIPELINES_ERROR_RECOVERY_MIN_DELAY",
        default_value = "1s",
        value_parser = parse_go_duration
    )]
    recovery_min_delay: Duration,
    /// The longest restart delay (a Go duration).
    #[arg(
        long = "pipelines.error-recovery.max-delay",
        env = "FUNNEL_PIPELINES_ERROR_RECOVERY_MAX_DELAY",
        default_value = "10m",
        value_parser = parse_go_duration
    )]
    recovery_max_delay: Duration,
    /// How much each restart delay grows over the previous one (at least 0).
    #[arg(
        long = "pipelines.error-recovery.backoff-factor",
        env = "FUNNEL_PIPELINES_ERROR_RECOVERY_BACKOFF_FACTOR",
        default_value = "2"
    )]
    recovery_factor: f64,
    /// Restarts before a pipeline is degraded: -1 retries forever, 0 never restarts.
    #[arg(
        long = "pipelines.error-recovery.max-retries",
        env = "FUNNEL_PIPELINES_ERROR_RECOVERY_MAX_RETRIES",
        default_value = "-1",
        allow_negative_numbers = true
    )]
    recovery_max_retries: i64,
    /// How long after its delay a restart still counts towards max-retries and the
    /// backoff (a Go duration).
    #[arg(
        long = "pipelines.error-recovery.max-retries-window",
        env = "FUNNEL_PIPELINES_ERROR_RECOVERY_MAX_RETRIES_WINDOW",
        default_value = "5m",
        value_parser = parse_go_duration
    )]
    recovery_window: Duration,
    /// Conduit's configuration file (default `./conduit.yaml`); its settings lose to
    /// `funnel.yaml` and to `CONDUIT_*` variables.
    #[arg(long = "config.path", env = "CONDUIT_CONFIG_PATH", value_name = "FILE")]
    conduit_config: Option<PathBuf>,
    /// Where positions are kept.
    #[arg(
        long = "db.type",
        env = "FUNNEL_DB_TYPE",
        value_enum,
        default_value = "redb"
    )]
    db_type: DbType,
    /// The redb store file.
    #[arg(
        long = "db.redb.path",
        env = "FUNNEL_DB_REDB_PATH",
        default_value = "./funnel.db"
    )]
    db_path: PathBuf,
    /// The PostgreSQL store's database (`postgres://user:pass@host:5432/db` or
    /// `host=... user=... dbname=...`), for `--db.type postgres`.
    #[arg(
        long = "db.postgres.connection-string",
        env = "FUNNEL_DB_POSTGRES_CONNECTION_STRING",
        hide_env_values = true
    )]
    db_postgres_connection: Option<String>,
    /// The PostgreSQL store's table, created if missing (with `<table>_leases` and
    /// `<table>_instances` beside it).
    #[arg(
        long = "db.postgres.table",
        env = "FUNNEL_DB_POSTGRES_TABLE",
        default_value = "conduit_kv_store"
    )]
    db_postgres_table: String,
    /// Run as one instance of a fleet sharing the PostgreSQL store: each pipeline of
    /// the (same) pipeline files runs on one instance at a time, under a lease (see
    /// docs/cluster.md).
    #[arg(long = "cluster.enabled", env = "FUNNEL_CLUSTER_ENABLED", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    cluster_enabled: bool,
    /// This instance's name in the fleet, unique among the instances (default: the
    /// host name and the process ID).
    #[arg(long = "cluster.instance-id", env = "FUNNEL_CLUSTER_INSTANCE_ID")]
    cluster_instance: Option<String>,
    /// How long a pipeline lease lasts without renewal: after an instance dies, its
    /// pipelines resume elsewhere within this plus one renewal interval (a Go
    /// duration).
    #[arg(
        long = "cluster.lease-duration",
        env = "FUNNEL_CLUSTER_LEASE_DURATION",
        default_value = "10s",
        value_parser = parse_go_duration
    )]
    cluster_lease: Duration,
    /// How often an instance renews its leases and evens out the pipelines (a Go
    /// duration; at most a third of the lease duration).
    #[arg(
        long = "cluster.renew-interval",
        env = "FUNNEL_CLUSTER_RENEW_INTERVAL",
        default_value = "2s",
        value_parser = parse_go_duration
    )]
    cluster_renew: Duration,
    /// How long a running pipeline may hold records in flight without acknowledging
    /// any before /readyz reports it stalled (a Go duration).
    #[arg(
        long = "pipelines.stall-threshold",
        env = "FUNNEL_PIPELINES_STALL_THRESHOLD",
        default_value = "2m",
        value_parser = parse_go_duration
    )]
    stall_threshold: Duration,
    /// Serve the HTTP API (false: no API, whatever `api.http.address` says).
    #[arg(long = "api.enabled", env = "FUNNEL_API_ENABLED", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    api_enabled: bool,
    /// Address of the HTTP API (health, readiness, metrics); empty to disable it;
    /// `:8080` (Conduit's form) means every interface.
    #[arg(
        long = "api.http.address",
        env = "FUNNEL_API_HTTP_ADDRESS",
        default_value = "127.0.0.1:8080"
    )]
    api_address: String,
    #[command(flatten)]
    api_token: remote::Token,
    /// Origins allowed to call the API from a browser, comma-separated (`*` for any);
    /// none by default.
    #[arg(
        long = "api.http.cors.allowed-origins",
        env = "FUNNEL_API_HTTP_CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    api_cors_allowed_origins: Vec<String>,
    /// trace, debug, info, warn or error.
    #[arg(long = "log.level", env = "FUNNEL_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log as text (Conduit's `cli`) or as JSON lines.
    #[arg(
        long = "log.format",
        env = "FUNNEL_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(flatten)]
    connectors: plugins::ConnectorsArgs,
}

/// A positive Go duration (`90s`, `2m`), for flags.
fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let nanos = funnel_record::go::parse_duration(text).map_err(|e| e.to_string())?;
    match u64::try_from(nanos) {
        Ok(n) if n > 0 => Ok(Duration::from_nanos(n)),
        _ => Err(format!(
            "{text:?} should be a duration above 0, like 90s or 2m"
        )),
    }
}

/// The subcommand words of `matches` (`pipelines ls`), for the `--json` envelope.
fn command_name(mut matches: &clap::ArgMatches) -> String {
    let mut words = Vec::new();
    while let Some((word, sub)) = matches.subcommand() {
        words.push(word);
        matches = sub;
    }
    words.join(" ")
}

fn main() -> std::process::ExitCode {
    let env = settings::Environment::current();
    let json = env.args.iter().any(|a| a == "--json");
    // Before the arguments are parsed: the leading words of the command line.
    let words: Vec<&str> = env
        .args
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .take(2)
        .map(String::as_str)
        .collect();
    let fail = |failure: output::Failure| {
        std::process::ExitCode::from(output::emit(&words.join(" "), json, &Err(failure)))
    };
    let prepared = match settings::prepare(Cli::command(), &env) {
        Ok(prepared) => prepared,
        Err(errors) => return fail(output::Failure::validation(errors)),
    };
    let command = prepared.command;
    let matches = match command
        .clone()
        .try_get_matches_from(std::iter::once("funnel".to_owned()).chain(env.args.iter().cloned()))
    {
        Ok(matches) => matches,
        Err(e) if json && e.use_stderr() => {
            return fail(output::Failure::validation(e.render().to_string()));
        }
        Err(e) => e.exit(),
    };
    let mut ignored = prepared.ignored;
    if let Some(run) = matches.subcommand_matches("run") {
        ignored.extend(settings::ignored_flags(run));
    }
    let name = command_name(&matches);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let outcome = match cli.command {
        Command::Run(args) => {
            let ended = run(*args, ignored, &prepared.unknown, cli.json);
            if !cli.json {
                return legacy(ended.map(|end| end.code));
            }
            return std::process::ExitCode::from(output::emit(&name, true, &run_outcome(ended)));
        }
        Command::Init { path } => {
            let defaults = Cli::command();
            match defaults.find_subcommand("run") {
                Some(run) => scaffold::init(run, &path),
                None => Err(output::Failure::runtime("no run command")),
            }
        }
        Command::Config(_) => match (
            command.find_subcommand("config"),
            matches.subcommand_matches("config"),
        ) {
            (Some(config), Some(config_matches)) => scaffold::config(config, config_matches),
            _ => Err(output::Failure::runtime("no config command")),
        },
        Command::Version => scaffold::version(),
        Command::Pipelines { remote, command } => match command {
            PipelinesCommand::Ls => remote::pipelines_ls(&remote),
            PipelinesCommand::Describe { id } => remote::pipelines_describe(&remote, &id),
            PipelinesCommand::Start { id } => remote::pipelines_start_stop(&remote, &id, None),
            PipelinesCommand::Stop { id, force } => {
                remote::pipelines_start_stop(&remote, &id, Some(force))
            }
            PipelinesCommand::Validate {
                path,
                check,
                connectors,
            } => validate(&path, check, &connectors),
            PipelinesCommand::Init {
                name,
                path,
                source: None,
                destination: None,
            } => init(&name, &path),
            PipelinesCommand::Init {
                name,
                path,
                source,
                destination,
            } => scaffold::pipeline_init(&name, &path, source.as_deref(), destination.as_deref()),
            PipelinesCommand::Delete {
                id,
                path,
                db_path,
                force,
                yes,
                connectors,
            } => delete(&id, &path, &db_path, force, yes, cli.json, &connectors),
        },
        Command::Store {
            command: StoreCommand::Check { db_path },
        } => store_check(&db_path),
        Command::Store {
            command: StoreCommand::Repair { db_path },
        } => store_repair(&db_path),
        Command::Inspect(args) => inspect::inspect(&args, cli.json),
        Command::Connectors { remote, command } => instances(&remote, "connectors", command),
        Command::Processors { remote, command } => instances(&remote, "processors", command),
        Command::ConnectorPlugins { remote, command } => plugins(&remote, "connectors", command),
        Command::ProcessorPlugins { remote, command } => plugins(&remote, "processors", command),
    };
    std::process::ExitCode::from(output::emit(&name, cli.json, &outcome))
}

/// How `funnel run` ended: its exit code, why it failed, and what each pipeline did
/// (the `result` of `funnel run --json`).
struct RunEnd {
    code: u8,
    why: Option<String>,
    pipelines: Vec<serde_json::Value>,
    invalid_files: Vec<serde_json::Value>,
}

impl RunEnd {
    /// A run that ended before any pipeline started.
    fn failed(why: String) -> Self {
        Self {
            code: 1,
            why: Some(why),
            pipelines: Vec::new(),
            invalid_files: Vec::new(),
        }
    }
}

/// The `--json` envelope's outcome of `run`: the pipelines' summaries and the files that
/// could not be used, or why it failed (exit 1, as without `--json`).
fn run_outcome(ended: anyhow::Result<RunEnd>) -> output::Outcome {
    let end = ended?;
    if end.code != 0 {
        return Err(output::Failure::runtime(
            end.why
                .unwrap_or_else(|| "funnel run failed (see the log)".to_owned()),
        ));
    }
    Ok(output::Done::new(
        format!(
            "funnel run stopped: {} pipeline(s), {} pipeline file(s) not used",
            end.pipelines.len(),
            end.invalid_files.len()
        ),
        serde_json::json!({"pipelines": end.pipelines, "invalidFiles": end.invalid_files}),
        output::View::Summary,
    ))
}

/// The exit code of `run`, which prints its own output.
fn legacy(result: anyhow::Result<u8>) -> std::process::ExitCode {
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Whether `funnel run` draws live status lines: only with text logs on a terminal.
fn shows_progress(format: LogFormat) -> bool {
    matches!(format, LogFormat::Text) && std::io::stderr().is_terminal()
}

/// `funnel connectors ...` and `funnel processors ...`.
fn instances(api: &remote::Remote, collection: &str, command: InstancesCommand) -> output::Outcome {
    match command {
        // What `connectors ls` did before it listed instances: this binary's plugins,
        // no instance needed.
        InstancesCommand::Ls {
            plugins: true,
            connectors,
            ..
        } => Ok(remote::plugin_list(if collection == "connectors" {
            // A plugin that cannot be loaded says why on stderr.
            init_logging("warn", LogFormat::Text)?;
            small_runtime()?.block_on(connectors.discover("warn"));
            serde_json::json!({ "plugins": control::connector_plugins() })
        } else {
            serde_json::json!({ "plugins": control::processor_plugins() })
        })),
        InstancesCommand::Ls { parent, .. } if collection == "connectors" => {
            remote::connectors_ls(api, parent.as_deref())
        }
        InstancesCommand::Ls { parent, .. } => remote::processors_ls(api, parent.as_deref()),
        InstancesCommand::Describe { id } => remote::describe(api, collection, &id),
    }
}

/// `funnel connector-plugins ...` and `funnel processor-plugins ...`.
fn plugins(api: &remote::Remote, collection: &str, command: PluginsCommand) -> output::Outcome {
    match command {
        PluginsCommand::Ls { name } => remote::plugins_ls(api, collection, name.as_deref()),
        PluginsCommand::Describe { name } => remote::plugins_describe(api, collection, &name),
    }
}

fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).with_context(|| {
        format!("--log.level {level:?} is not a level (trace, debug, info, warn, error)")
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        // Through the status lines' writer, which keeps them below the log.
        LogFormat::Text if shows_progress(format) => {
            builder.with_writer(progress::LogWriter).init();
        }
        LogFormat::Text => builder.with_writer(std::io::stderr).init(),
        LogFormat::Json => builder.with_writer(std::io::stderr).json().init(),
    }
    Ok(())
}

/// Loads and checks pipeline files: (pipelines, rendered errors).
fn load(path: &Path, strict_env: bool) -> Result<Vec<funnel_config::PipelineConfig>, String> {
    let options = funnel_config::LoadOptions {
        strict_env,
        ..funnel_config::LoadOptions::default()
    };
    let loaded = funnel_config::load(path, &options).map_err(|e| e.to_string())?;
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    funnel_runtime::registry::validate(&loaded.pipelines).map_err(|e| e.to_string())?;
    Ok(loaded.pipelines)
}

/// A single-threaded async runtime for the commands that are not `run`.
fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn validate(path: &Path, check: bool, connectors: &plugins::ConnectorsArgs) -> output::Outcome {
    small_runtime()?.block_on(connectors.discover("info"));
    let pipelines = load(path, false).map_err(output::Failure::validation)?;
    let ids: Vec<&str> = pipelines.iter().map(|p| p.id.as_str()).collect();
    let mut summary = format!(
        "{} pipeline(s) valid in {}",
        pipelines.len(),
        path.display()
    );
    let mut result = serde_json::json!({"path": path.display().to_string(), "pipelines": ids});
    if check {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let failures = runtime.block_on(funnel_runtime::registry::check(&pipelines));
        if !failures.is_empty() {
            let lines: Vec<String> = failures.iter().map(ToString::to_string).collect();
            return Err(output::Failure::environment(lines.join("\n")));
        }
        summary.push_str("; every connector passed its connection test");
        result["checked"] = true.into();
    }
    Ok(output::Done::new(summary, result, output::View::Summary))
}

fn init(name: &str, dir: &Path) -> output::Outcome {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !valid {
        return Err(output::Failure::validation(format!(
            "pipeline name {name:?} may only hold letters, digits, '-', '_', '.' and ':'"
        )));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join(format!("{name}.yaml"));
    if file.exists() {
        return Err(output::Failure::runtime(format!(
            "{} already exists; not overwritten",
            file.display()
        )));
    }
    let text = format!(
        "version: \"2.2\"\n\
         pipelines:\n  \
           - id: {name}\n    \
             status: running\n    \
             description: Generated records written to a file.\n    \
             connectors:\n      \
               - id: generator\n        \
                 type: source\n        \
                 plugin: builtin:generator\n        \
                 settings:\n          \
                   format.type: structured\n          \
                   format.options.id: int\n          \
                   format.options.name: string\n          \
                   recordCount: \"100\"\n          \
                   rate: \"50\"\n      \
               - id: file\n        \
                 type: destination\n        \
                 plugin: builtin:file\n        \
                 settings:\n          \
                   path: ./{name}.out.jsonl\n"
    );
    std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(output::Done::new(
        format!(
            "wrote {}; run it with: funnel run --pipelines.path {}",
            file.display(),
            dir.display()
        ),
        serde_json::json!({"file": file.display().to_string()}),
        output::View::Summary,
    ))
}

/// `funnel pipelines delete`: checks the store holds the pipeline, says what it will
/// drop and asks (on a terminal, without `--json`), then cleans up the pipeline's
/// sources and forgets its positions.
fn delete(
    id: &str,
    path: &Path,
    db_path: &Path,
    force: bool,
    yes: bool,
    json: bool,
    connectors: &plugins::ConnectorsArgs,
) -> output::Outcome {
    use output::Failure;
    init_logging("warn", LogFormat::Text)?;
    let runtime = small_runtime()?;
    let host = runtime.block_on(connectors.discover("warn"));
    let pipelines = load(path, false).map_err(Failure::validation)?;
    let Some(pipeline) = pipelines.into_iter().find(|p| p.id == id) else {
        return Err(Failure::runtime(format!(
            "no pipeline {id:?} in {}",
            path.display()
        )));
    };
    // Never created here: a mistyped path must not look like an empty store.
    let store: Arc<dyn Store> = match RedbStore::open_existing(db_path) {
        Ok(store) => Arc::new(store),
        Err(StoreError::Missing { .. }) if force => Arc::new(MemoryStore::new()),
        Err(e @ StoreError::Missing { .. }) => {
            return Err(Failure::runtime(format!(
                "refusing to delete pipeline {id}: {e}. Pass --force to delete it anyway \
                 (what its sources keep outside Funnel is dropped)."
            )));
        }
        Err(e) => {
            return Err(Failure::runtime(format!(
                "cannot open the position store {}: {e}",
                db_path.display()
            )));
        }
    };
    // A plugin told it is deleted may look up its schemas.
    runtime.block_on(host.attach(&store));
    let positions = runtime
        .block_on(store.positions(id))
        .map_err(anyhow::Error::from)?;
    let plugin_plan = runtime
        .block_on(funnel_runtime::build::delete_plan_plugins(
            &pipeline, &store,
        ))
        .map_err(|e| Failure::runtime(e.to_string()))?;
    if positions.is_empty() && plugin_plan.is_empty() && !force {
        return Err(Failure::runtime(format!(
            "refusing to delete pipeline {id}: the store {} holds no position of it, so it is \
             probably not the store `funnel run` used for it (see --db.redb.path). Deleting \
             would drop what its sources keep outside Funnel (a replication slot, whose \
             changes would be lost) with nothing to show for it. Pass --force to delete it \
             anyway.",
            db_path.display()
        )));
    }
    let mut plan = funnel_runtime::build::delete_plan(&pipeline)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    plan.extend(plugin_plan);
    plan.extend(positions.iter().map(|(connector, _)| {
        format!(
            "{id}:{connector}: forget its position in {}",
            db_path.display()
        )
    }));
    if !json {
        println!("deleting pipeline {id} will:");
        for line in &plan {
            println!("  - {line}");
        }
    }
    if !yes {
        let asked = !json && confirm()?;
        if !asked {
            return Err(Failure::runtime(format!(
                "not deleted: not confirmed (stdin is no terminal to ask on, or the answer \
                 was not yes); pass --yes to delete (it would: {})",
                plan.join("; ")
            )));
        }
    }
    let cleaned = runtime
        .block_on(funnel_runtime::build::delete(&pipeline, &store))
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let cleaned_up: String = cleaned
        .iter()
        .map(|connector| format!("{connector}: cleaned up; "))
        .collect();
    Ok(output::Done::new(
        format!(
            "pipeline {id} deleted ({cleaned_up}positions removed from {})",
            db_path.display()
        ),
        serde_json::json!({"done": plan, "cleanedUp": cleaned.iter().map(ToString::to_string).collect::<Vec<_>>()}),
        output::View::Summary,
    ))
}

/// Asks on the terminal whether to go on; false (with the reason on stderr) when the
/// answer is not yes or there is no terminal to ask on.
fn confirm() -> anyhow::Result<bool> {
    use std::io::{BufRead, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    print!("delete? [y/N] ");
    std::io::stdout()
        .flush()
        .context("cannot write to stdout")?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// `funnel store check`: the positions when the store is intact, 1 with what is
/// damaged.
fn store_check(db_path: &Path) -> output::Outcome {
    let report =
        funnel_store::check(db_path).map_err(|e| output::Failure::runtime(e.to_string()))?;
    let positions: Vec<String> = report
        .positions
        .iter()
        .map(|(pipeline, connector)| format!("{pipeline}:{connector}"))
        .collect();
    Ok(output::Done::new(
        format!(
            "store {} is intact: {} position(s)",
            db_path.display(),
            positions.len()
        ),
        serde_json::json!({"positions": positions}),
        output::View::Tree,
    ))
}

/// `funnel store repair`: keeps a backup, then every intact position.
fn store_repair(db_path: &Path) -> output::Outcome {
    let report = funnel_store::repair(db_path)
        .with_context(|| format!("cannot repair the store {}", db_path.display()))?;
    let result = serde_json::json!({
        "backup": report.backup.display().to_string(),
        "unreadable": report.unreadable.as_ref().map(ToString::to_string),
        "kept": report.kept.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "dropped": report.dropped.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    Ok(output::Done::new(
        format!(
            "store {} repaired: {} position(s) kept, {} dropped (those sources start again \
             from their beginning); the damaged file is kept as {}",
            db_path.display(),
            report.kept.len(),
            report.dropped.len(),
            report.backup.display()
        ),
        result,
        output::View::Tree,
    ))
}

fn run(
    mut args: RunArgs,
    mut ignored: Vec<String>,
    unknown: &[String],
    json: bool,
) -> anyhow::Result<RunEnd> {
    init_logging(&args.log_level, args.log_format)?;
    if matches!(args.db_type, DbType::Badger | DbType::Sqlite) {
        let name = args
            .db_type
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        ignored.push(format!(
            "db.type {name} (positions are kept in redb at {})",
            args.db_path.display()
        ));
        args.db_type = DbType::Redb;
    }
    if !ignored.is_empty() {
        warn!(
            "ignored Conduit settings that mean nothing in Funnel: {}",
            ignored.join(", ")
        );
    }
    if !unknown.is_empty() {
        warn!("ignored unknown settings: {}", unknown.join(", "));
    }
    if args.recovery_min_delay > args.recovery_max_delay {
        bail!(
            "--pipelines.error-recovery.min-delay ({:?}) must not be above max-delay ({:?})",
            args.recovery_min_delay,
            args.recovery_max_delay
        );
    }
    if args.cluster_enabled {
        if args.db_type != DbType::Postgres {
            bail!(
                "--cluster.enabled needs the store every instance shares: --db.type postgres \
                 with --db.postgres.connection-string"
            );
        }
        if args.exit_on_done {
            bail!(
                "--cluster.enabled and --pipelines.exit-on-done do not go together: an \
                 instance does not know when the pipelines of the others are done"
            );
        }
        if args.cluster_renew.saturating_mul(3) > args.cluster_lease {
            bail!(
                "--cluster.renew-interval ({:?}) must be at most a third of \
                 --cluster.lease-duration ({:?}), so a lease is renewed well before it expires",
                args.cluster_renew,
                args.cluster_lease
            );
        }
    }
    if args.db_type == DbType::Postgres && args.db_postgres_connection.is_none() {
        bail!("--db.type postgres needs --db.postgres.connection-string");
    }
    if args.recovery_factor.is_nan() || args.recovery_factor < 0.0 {
        bail!("--pipelines.error-recovery.backoff-factor must be 0 or more");
    }
    if args.recovery_max_retries < -1 {
        bail!("--pipelines.error-recovery.max-retries must be -1 (forever) or more");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args, json))
}

async fn run_async(args: RunArgs, json: bool) -> anyhow::Result<RunEnd> {
    // The plugins a pipeline file may name must be known before the files are read.
    let host = args.connectors.discover(&args.log_level).await;
    // Listening before any pipeline starts: a signal sent once records flow is never
    // met by its default action (a hang-up would end the process).
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    // A hang-up reloads the pipeline files (with or without --pipelines.watch).
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    let provision = match reload::load(&args.pipelines_path, args.strict_env, true) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(RunEnd::failed(errors.to_string()));
        }
    };
    if !provision.failures.is_empty() && args.exit_on_degraded {
        let mut why =
            "a pipeline file is invalid and --pipelines.exit-on-degraded is set:".to_owned();
        for failure in &provision.failures {
            eprintln!("{}", failure.errors);
            why.push_str(&format!("\n{}", failure.errors));
        }
        error!("a pipeline file is invalid and --pipelines.exit-on-degraded is set, exiting");
        return Ok(RunEnd::failed(why));
    }
    let (store, leases) = open_store(&args).await?;
    host.attach(&store).await;
    let metrics = funnel_api::install_recorder()
        .map_err(|e| warn!(error = %e, "metrics are disabled"))
        .ok();

    let fences = args
        .cluster_enabled
        .then(|| Arc::new(funnel_runtime::cluster::Fences::default()));
    let options = SupervisorOptions {
        fences: fences.clone(),
        backoff: Backoff {
            min_delay: args.recovery_min_delay,
            max_delay: args.recovery_max_delay,
            factor: args.recovery_factor,
            max_retries: args.recovery_max_retries,
            max_retries_window: args.recovery_window,
        },
        ..SupervisorOptions::default()
    };
    let address: Option<SocketAddr> = if args.api_address.is_empty() || !args.api_enabled {
        None
    } else {
        Some(
            settings::listen_address(&args.api_address)
                .parse()
                .with_context(|| {
                    format!(
                        "--api.http.address {:?} is not an address like 127.0.0.1:8080",
                        args.api_address
                    )
                })?,
        )
    };
    let security = match address {
        Some(address) => api_security(&args, address)?,
        None => funnel_api::Security::default(),
    };
    let supervisor = Arc::new(Supervisor::new(Arc::clone(&store), options));
    supervisor.apply(provision).await;
    let cluster = match (fences, leases) {
        (Some(fences), Some(leases)) => {
            let instance = args
                .cluster_instance
                .clone()
                .unwrap_or_else(default_instance);
            info!(instance, lease = ?args.cluster_lease, renew = ?args.cluster_renew, "joining the fleet");
            let cluster = funnel_runtime::cluster::Cluster::new(
                funnel_runtime::cluster::ClusterOptions {
                    instance,
                    lease: args.cluster_lease,
                    renew: args.cluster_renew,
                },
                leases,
                Arc::clone(&supervisor),
                fences,
            );
            cluster.start();
            Some(cluster)
        }
        _ => None,
    };
    let control =
        control::Control::start(Arc::clone(&supervisor), Arc::clone(&store), cluster.clone())
            .await
            .context("cannot read the pipelines kept in the store")?;
    let mut watch = reload::Watch::new(&args.pipelines_path);
    let overview = supervisor.overview();
    let api_shutdown = CancellationToken::new();
    let api = match address {
        None => None,
        Some(address) => {
            let state = funnel_api::ApiState {
                pipelines: control.clone(),
                metrics,
                stall: Arc::new(funnel_api::StallWatch::new(args.stall_threshold)),
                security: Arc::new(security),
            };
            Some(
                funnel_api::serve(address, state, api_shutdown.clone())
                    .await
                    .with_context(|| format!("cannot serve the API on {address}"))?,
            )
        }
    };

    let drawing = shows_progress(args.log_format).then(|| {
        let supervisor = Arc::clone(&supervisor);
        progress::Drawing::start(move || supervisor.states())
    });
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut watch_ticker = tokio::time::interval(reload::WATCH_INTERVAL);
    let mut code = 0;
    let mut why = None;
    let mut all_done = Box::pin(all_terminal(supervisor.states()));
    loop {
        let reload_now = tokio::select! {
            () = &mut all_done, if args.exit_on_done => {
                if degraded_or_invalid(&overview) {
                    code = 1;
                    why = Some(DONE_WITH_FAILURES);
                }
                break;
            }
            _ = tokio::signal::ctrl_c() => { info!("interrupted, stopping gracefully (again to force)"); break; }
            _ = terminate.recv() => { info!("terminated, stopping gracefully (again to force)"); break; }
            _ = hangup.recv() => { info!("hung up: reloading the pipeline files"); true }
            _ = watch_ticker.tick(), if args.watch => {
                let changed = watch.poll();
                if changed {
                    info!(path = %args.pipelines_path.display(), "pipeline files changed: reloading");
                }
                changed
            }
            _ = ticker.tick() => {
                let states = supervisor.states();
                let degraded = states.iter().any(|s| matches!(s.current(), PipelineStatus::Degraded(_)));
                if degraded && (args.exit_on_degraded) {
                    error!("a pipeline is degraded, exiting");
                    code = 1;
                    why = Some("a pipeline is degraded and --pipelines.exit-on-degraded is set");
                    break;
                }
                if args.exit_on_done && states.iter().all(|s| s.current().is_terminal()) {
                    if degraded_or_invalid(&overview) {
                        code = 1;
                        why = Some(DONE_WITH_FAILURES);
                    }
                    break;
                }
                false
            }
        };
        if reload_now {
            watch.loaded();
            match reload::load(&args.pipelines_path, args.strict_env, false) {
                Ok(provision) => {
                    let report = supervisor.apply(provision).await;
                    info!(
                        started = ?report.started,
                        restarted = ?report.restarted,
                        removed = ?report.removed,
                        kept_previous = ?report.kept,
                        "pipeline files reloaded"
                    );
                    all_done = Box::pin(all_terminal(supervisor.states()));
                }
                Err(errors) => {
                    error!("cannot reload the pipeline files, nothing changed: {errors}");
                }
            }
        }
    }
    // A second signal forces the exit.
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            Some(_) = terminate.recv() => {}
        }
        if json {
            output::emit(
                "run",
                true,
                &Err(output::Failure::interrupted(
                    "a second signal forced the exit",
                )),
            );
        } else {
            eprintln!("forced exit");
        }
        std::process::exit(130);
    });
    match &cluster {
        Some(cluster) => cluster.shutdown().await,
        None => supervisor.shutdown().await,
    }
    if let Some(drawing) = drawing {
        drawing.finish().await;
    }
    api_shutdown.cancel();
    if let Some(api) = api {
        let _ = api.await;
    }
    let mut pipelines = Vec::new();
    for state in supervisor.states() {
        let status = state.current();
        let detail = match &status {
            PipelineStatus::Degraded(e) => format!(" ({e})"),
            _ => String::new(),
        };
        pipelines.push(serde_json::json!({
            "id": state.id.clone(),
            "status": status.name(),
            "error": match &status {
                PipelineStatus::Degraded(e) => serde_json::Value::from(e.to_string()),
                _ => serde_json::Value::Null,
            },
            "read": WorkerStats::get(&state.stats.read),
            "written": WorkerStats::get(&state.stats.written),
            "acked": WorkerStats::get(&state.stats.acked),
            "dlq": WorkerStats::get(&state.stats.dlq),
        }));
        info!(
            pipeline = %state.id,
            status = status.name(),
            read = WorkerStats::get(&state.stats.read),
            written = WorkerStats::get(&state.stats.written),
            acked = WorkerStats::get(&state.stats.acked),
            dlq = WorkerStats::get(&state.stats.dlq),
            "pipeline summary{detail}"
        );
    }
    let mut invalid_files = Vec::new();
    for failure in overview.failures() {
        error!(file = %failure.file.display(), "{failure}");
        invalid_files.push(serde_json::json!({
            "file": failure.file.display().to_string(),
            "error": failure.to_string(),
        }));
    }
    let noop = funnel_connectors::noop::written_total();
    if noop > 0 {
        // Counted at the sink: what benchmarks read (bench/run.sh).
        info!(records = noop, "noop destinations acknowledged records");
    }
    if let Some(latency) = funnel_connectors::noop::latency_summary() {
        // Read-to-written latency at the sink (destinations with `latency: true`), in
        // microseconds: what bench/run.sh reads next to the count above.
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        info!(
            records = latency.count,
            missing = latency.missing,
            p50_us = micros(latency.p50),
            p99_us = micros(latency.p99),
            p999_us = micros(latency.p999),
            max_us = micros(latency.max),
            "read to written latency"
        );
    }
    // The last holder of the store closes it (the redb store finishes its writes).
    drop(control);
    drop(supervisor);
    drop(store);
    Ok(RunEnd {
        code,
        why: why.map(str::to_owned),
        pipelines,
        invalid_files,
    })
}

/// Why `--pipelines.exit-on-done` exits with 1.
const DONE_WITH_FAILURES: &str = "every pipeline is done, but a pipeline degraded or a pipeline file is invalid \
     (--pipelines.exit-on-done)";

/// Opens the store `--db.type` names; the PostgreSQL store also keeps the leases of a
/// fleet.
async fn open_store(
    args: &RunArgs,
) -> anyhow::Result<(Arc<dyn Store>, Option<Arc<dyn funnel_store::Leases>>)> {
    match args.db_type {
        DbType::Memory => Ok((Arc::new(MemoryStore::new()), None)),
        DbType::Redb | DbType::Badger | DbType::Sqlite => {
            let store = RedbStore::open(&args.db_path).with_context(|| {
                format!("cannot open the position store {}", args.db_path.display())
            })?;
            Ok((Arc::new(store), None))
        }
        #[cfg(feature = "postgres")]
        DbType::Postgres => {
            let connection = args.db_postgres_connection.as_deref().unwrap_or_default();
            // TLS as the postgres connectors do it: sslmode and sslrootcert.
            let (config, connect) =
                funnel_connectors::postgres::client_setup(connection, "the position store")
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot open the position store: --db.postgres.connection-string \
                             is not a connection string: {e}"
                        )
                    })?;
            let store = Arc::new(
                funnel_store::PostgresStore::open_with(config, &args.db_postgres_table, connect)
                    .await
                    .context("cannot open the position store")?,
            );
            let leases: Arc<dyn funnel_store::Leases> = store.clone();
            Ok((store, Some(leases)))
        }
        #[cfg(not(feature = "postgres"))]
        DbType::Postgres => {
            bail!("this funnel was built without the PostgreSQL store (cargo feature postgres)")
        }
    }
}

/// This instance's default name in a fleet: the host name and the process ID.
fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "funnel".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Ends once every pipeline of `states` is in a terminal status.
async fn all_terminal(states: Vec<Arc<funnel_runtime::PipelineState>>) {
    for state in states {
        let mut rx = state.status.subscribe();
        // The sender lives in the state, so this only ends when terminal.
        let _ = rx.wait_for(PipelineStatus::is_terminal).await;
    }
}

/// Whether a pipeline is degraded or a pipeline file could not be used: what makes
/// `--pipelines.exit-on-done` exit with 1.
fn degraded_or_invalid(overview: &Overview) -> bool {
    !overview.failures().is_empty()
        || overview
            .pipelines()
            .iter()
            .any(|s| matches!(s.current(), PipelineStatus::Degraded(_)))
}

/// The API's token and CORS origins; refuses an address other than loopback without
/// a token.
fn api_security(args: &RunArgs, address: SocketAddr) -> anyhow::Result<funnel_api::Security> {
    let token = args
        .api_token
        .read()
        .map_err(anyhow::Error::msg)?
        .filter(|t| !t.is_empty());
    if token.is_none() && !address.ip().is_loopback() {
        bail!(
            "refusing to serve the API on {address} without a token: anyone who reaches that \
             address could stop and change pipelines. Set one with --api.auth.token, \
             --api.auth.token-file or FUNNEL_API_AUTH_TOKEN, or serve the API on a loopback \
             address (the default 127.0.0.1:8080)"
        );
    }
    Ok(funnel_api::Security {
        token,
        cors_allowed_origins: args
            .api_cors_allowed_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(std::iter::once("funnel").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Run(args) => *args,
            _ => panic!("not run"),
        }
    }

    #[test]
    fn conduits_other_names_for_funnel_flags_are_accepted() {
        let args = run_args(&[
            "run",
            "--pipelines",
            "./p",
            "--pipelines.exit-on-error=true",
            "--dev",
            "--db.type",
            "inmemory",
            "--log.format",
            "cli",
            "--api.enabled=false",
        ]);
        assert_eq!(args.pipelines_path, Path::new("./p"));
        assert!(args.exit_on_degraded && args.watch && !args.api_enabled);
        assert!(args.db_type == DbType::Memory);
        assert!(matches!(args.log_format, LogFormat::Text));
        let args = run_args(&["run", "--dev.enabled=false", "--pipelines.exit-on-done=1"]);
        assert!(!args.watch && args.exit_on_done);
    }
}
