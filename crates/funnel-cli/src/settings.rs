//! Where the settings of `funnel run` come from, Conduit's places included.
//!
//! Highest first:
//!
//! 1. flags (`--db.type memory`);
//! 2. `FUNNEL_*` environment variables (`FUNNEL_DB_TYPE`);
//! 3. `funnel.yaml` in the working directory, or the file `$FUNNEL_CONFIG_PATH` names;
//! 4. Conduit's `CONDUIT_*` environment variables: `CONDUIT_` and the setting's name
//!    upper-cased with `.` and `-` turned into `_` (`CONDUIT_DB_TYPE`);
//! 5. Conduit's `conduit.yaml` in the working directory, or the file `--config.path`
//!    (or `$CONDUIT_CONFIG_PATH`) names;
//! 6. the defaults.
//!
//! Layers 3 to 5 become the defaults of the flags, so clap applies 1 and 2 over them.
//! Every flag of Conduit's `run` is accepted. Those that mean nothing in Funnel
//! ([`CONDUIT_ONLY`], such as `db.badger.path` or `api.grpc.address`, wherever they are
//! set) are ignored with one warning naming them all, never an error. An unknown key
//! in `funnel.yaml` is an error; in `conduit.yaml`, or an unknown `CONDUIT_*`
//! variable, it is a warning, as Conduit ignores keys it does not know.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};

/// How a Conduit-only flag is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    /// `--flag value` or `--flag=value`.
    Value,
    /// `--flag`, `--flag=true` or `--flag=false`.
    Bool,
    /// `--flag value`, as often as wanted (a Go string slice).
    List,
}

/// Conduit `run` settings that mean nothing in Funnel: accepted and ignored, with a
/// warning (`connectors.*` only in a build without standalone connector plugins). `db.type` values other than Funnel's are handled by `--db.type` itself.
const CONDUIT_ONLY: &[(&str, Takes)] = &[
    ("db.badger.path", Takes::Value),
    ("db.sqlite.path", Takes::Value),
    ("db.sqlite.table", Takes::Value),
    ("api.grpc.address", Takes::Value),
    ("api.http.ui.enabled", Takes::Bool),
    ("api.allow-live-restart-apply", Takes::Bool),
    ("connectors.path", Takes::Value),
    ("connectors.max-receive-record-size", Takes::Value),
    ("processors.path", Takes::Value),
    ("schema-registry.type", Takes::Value),
    ("schema-registry.confluent.connection-string", Takes::Value),
    ("schema-registry.confluent.auth.type", Takes::Value),
    (
        "schema-registry.confluent.auth.basic.username",
        Takes::Value,
    ),
    (
        "schema-registry.confluent.auth.basic.password",
        Takes::Value,
    ),
    ("schema-registry.confluent.auth.bearer.token", Takes::Value),
    ("preview.pipeline-arch-v2", Takes::Bool),
    ("preview.pipeline-arch-v2-disable-metrics", Takes::Bool),
    ("dev.cpuprofile", Takes::Value),
    ("dev.memprofile", Takes::Value),
    ("dev.blockprofile", Takes::Value),
    ("dev.json", Takes::Bool),
    ("processors.egress.enabled", Takes::Bool),
    ("processors.egress.allow", Takes::List),
];

/// Families of Conduit settings that mean nothing in Funnel, for keys in
/// `conduit.yaml` and `CONDUIT_*` variables beyond [`CONDUIT_ONLY`].
const CONDUIT_ONLY_FAMILIES: &[&str] = &[
    "db.badger.",
    "db.sqlite.",
    "api.grpc.",
    "schema-registry.",
    "preview.",
    "dev.",
    "install.",
    "processors.egress.",
];

/// Whether `key` is a Conduit setting that means nothing in Funnel.
fn conduit_only(key: &str) -> bool {
    // With standalone connector plugins, `connectors.*` are flags of `run`.
    if cfg!(feature = "standalone") && key.starts_with("connectors.") {
        return false;
    }
    CONDUIT_ONLY.iter().any(|(name, _)| *name == key)
        || CONDUIT_ONLY_FAMILIES.iter().any(|f| key.starts_with(f))
}

/// `CONDUIT_DB_TYPE` for `db.type`.
fn conduit_variable(key: &str) -> String {
    let mut name = String::from("CONDUIT_");
    name.extend(key.chars().map(|c| {
        if c == '.' || c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    name
}

/// One value from a configuration file or a variable, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Setting {
    key: String,
    value: String,
    /// `conduit.yaml:3:5` or `CONDUIT_DB_TYPE`.
    origin: String,
}

/// `funnel`'s command with `run`'s defaults taken from the configuration files and
/// Conduit's variables, and what was ignored on the way.
pub(crate) struct Prepared {
    /// The command to parse the arguments with.
    pub(crate) command: Command,
    /// Conduit settings that mean nothing in Funnel, each with where it was set.
    pub(crate) ignored: Vec<String>,
    /// Unknown keys of `conduit.yaml` and unknown `CONDUIT_*` variables.
    pub(crate) unknown: Vec<String>,
}

/// Where the process's settings are: its arguments and environment.
pub(crate) struct Environment {
    /// The arguments, without the program name.
    pub(crate) args: Vec<String>,
    /// Every environment variable.
    pub(crate) vars: Vec<(String, String)>,
}

impl Environment {
    /// This process's.
    pub(crate) fn current() -> Self {
        Self {
            args: std::env::args().skip(1).collect(),
            vars: std::env::vars().collect(),
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `--config.path`, if given.
    fn config_path_flag(&self) -> Option<&str> {
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if arg == "--config.path" {
                return args.next().map(String::as_str);
            }
            if let Some(value) = arg.strip_prefix("--config.path=") {
                return Some(value);
            }
        }
        None
    }
}

/// Adds Conduit's flags to `run` (hidden, those without meaning here) and takes its
/// defaults from `conduit.yaml`, `CONDUIT_*` and `funnel.yaml`.
///
/// # Errors
///
/// A configuration file that cannot be read or parsed, a `--config.path` that does not
/// exist, and unknown keys in `funnel.yaml`; one line each.
pub(crate) fn prepare(command: Command, env: &Environment) -> Result<Prepared, String> {
    let command = for_run_and_config(command, add_conduit_flags);
    let Some(run) = command.find_subcommand("run") else {
        return Ok(Prepared {
            command,
            ignored: Vec::new(),
            unknown: Vec::new(),
        });
    };
    let mut errors = Vec::new();
    let mut layers: Vec<(Setting, bool)> = Vec::new();
    // conduit.yaml
    let explicit = env
        .config_path_flag()
        .or_else(|| env.var("CONDUIT_CONFIG_PATH"));
    let conduit_file = explicit.map_or_else(|| PathBuf::from("./conduit.yaml"), PathBuf::from);
    if explicit.is_some() && !conduit_file.exists() {
        errors.push(format!(
            "--config.path {}: no such file (Conduit's configuration file)",
            conduit_file.display()
        ));
    }
    layers.extend(
        read_file(&conduit_file, &mut errors)
            .into_iter()
            .map(|s| (s, false)),
    );
    // CONDUIT_*
    let mut known_variables = vec![conduit_variable("config.path")];
    let mut keys: Vec<String> = run
        .get_arguments()
        .flat_map(|a| {
            a.get_long()
                .into_iter()
                .chain(a.get_all_aliases().into_iter().flatten())
        })
        .map(str::to_owned)
        .collect();
    keys.extend(CONDUIT_ONLY.iter().map(|(k, _)| (*k).to_owned()));
    keys.sort();
    keys.dedup();
    for key in &keys {
        let name = conduit_variable(key);
        if let Some(value) = env.var(&name) {
            layers.push((
                Setting {
                    key: key.clone(),
                    value: value.to_owned(),
                    origin: name.clone(),
                },
                false,
            ));
        }
        known_variables.push(name);
    }
    let mut unknown = Vec::new();
    for (name, _) in &env.vars {
        if name.starts_with("CONDUIT_") && !known_variables.contains(name) {
            let key = name.trim_start_matches("CONDUIT_").to_ascii_lowercase();
            if CONDUIT_ONLY_FAMILIES
                .iter()
                .any(|f| key.starts_with(&f.replace(['.', '-'], "_")))
            {
                layers.push((
                    Setting {
                        key: format!("{key} (a Conduit setting)"),
                        value: String::new(),
                        origin: name.clone(),
                    },
                    false,
                ));
            } else {
                unknown.push(format!("{name} (unknown variable)"));
            }
        }
    }
    // funnel.yaml
    let funnel_file = env
        .var("FUNNEL_CONFIG_PATH")
        .map_or_else(|| PathBuf::from("./funnel.yaml"), PathBuf::from);
    layers.extend(
        read_file(&funnel_file, &mut errors)
            .into_iter()
            .map(|s| (s, true)),
    );

    let mut defaults: Vec<(clap::Id, String)> = Vec::new();
    let mut ignored = Vec::new();
    for (setting, funnel_own) in layers {
        let arg = run.get_arguments().find(|a| {
            a.get_long() == Some(setting.key.as_str())
                || a.get_all_aliases()
                    .is_some_and(|aliases| aliases.contains(&setting.key.as_str()))
        });
        match arg {
            Some(arg) if !arg.is_hide_set() => {
                // Later layers are higher: they replace what an earlier one set.
                defaults.retain(|(id, _)| id != arg.get_id());
                defaults.push((arg.get_id().clone(), setting.value));
            }
            _ if conduit_only(&setting.key) || setting.key.ends_with("(a Conduit setting)") => {
                ignored.push(format!("{} ({})", setting.key, setting.origin));
            }
            _ if funnel_own => errors.push(format!(
                "{}: {}: unknown setting (see funnel run --help)",
                setting.origin, setting.key
            )),
            _ => unknown.push(format!("{} ({})", setting.key, setting.origin)),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    // Read once at start; the few bytes live as long as the process.
    let defaults: Vec<(clap::Id, &'static str)> = defaults
        .into_iter()
        .map(|(id, value)| (id, &*Box::leak(value.into_boxed_str())))
        .collect();
    let command = for_run_and_config(command, |mut run| {
        for (id, value) in &defaults {
            run = run.mut_arg(id, |a| a.default_value(*value));
        }
        run
    });
    Ok(Prepared {
        command,
        ignored,
        unknown,
    })
}

/// `command` with `change` applied to its `run` subcommand and to `config` (which
/// takes the same settings and prints them), when it has them.
fn for_run_and_config(mut command: Command, change: impl Fn(Command) -> Command) -> Command {
    for name in ["run", "config"] {
        if command.find_subcommand(name).is_some() {
            command = command.mut_subcommand(name, &change);
        }
    }
    command
}

/// The settings of a configuration file as dotted keys; nothing when it does not exist.
fn read_file(path: &Path, errors: &mut Vec<String>) -> Vec<Setting> {
    if !path.exists() {
        return Vec::new();
    }
    match funnel_config::engine_settings(path) {
        Ok(settings) => settings
            .into_iter()
            .map(|s| Setting {
                key: s.key,
                value: s.value,
                origin: s.location.to_string(),
            })
            .collect(),
        Err(e) => {
            errors.push(e.to_string());
            Vec::new()
        }
    }
}

/// Adds every Conduit-only flag `run` does not have yet, hidden.
fn add_conduit_flags(mut run: Command) -> Command {
    for (name, takes) in CONDUIT_ONLY {
        let taken = run.get_arguments().any(|a| {
            a.get_long() == Some(name)
                || a.get_all_aliases()
                    .is_some_and(|aliases| aliases.contains(name))
        });
        if taken {
            continue;
        }
        let arg = Arg::new(*name).long(*name).hide(true);
        let arg = match takes {
            Takes::Value => arg.num_args(1),
            Takes::List => arg.num_args(1).action(clap::ArgAction::Append),
            Takes::Bool => arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true"),
        };
        run = run.arg(arg);
    }
    run
}

/// The Conduit-only flags given on the command line, as written (`--api.grpc.address`).
pub(crate) fn ignored_flags(run: &ArgMatches) -> Vec<String> {
    CONDUIT_ONLY
        .iter()
        .filter(|(name, _)| {
            run.try_contains_id(name).unwrap_or(false)
                && run.value_source(name) == Some(ValueSource::CommandLine)
        })
        .map(|(name, _)| format!("--{name}"))
        .collect()
}

/// A Go listen address as an address to bind: `:8080` (every interface, as Conduit
/// writes it) is `0.0.0.0:8080`.
pub(crate) fn listen_address(address: &str) -> String {
    if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> Command {
        Command::new("funnel").subcommand(
            Command::new("run")
                .arg(Arg::new("db_type").long("db.type").default_value("redb"))
                .arg(
                    Arg::new("exit_on_degraded")
                        .long("pipelines.exit-on-degraded")
                        .alias("pipelines.exit-on-error")
                        .default_value("false"),
                ),
        )
    }

    fn resolve(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> (String, String, Prepared) {
        let mut vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let file = |name: &str| dir.join(name).display().to_string();
        if !vars.iter().any(|(k, _)| k == "FUNNEL_CONFIG_PATH") {
            vars.push(("FUNNEL_CONFIG_PATH".into(), file("funnel.yaml")));
        }
        if !vars.iter().any(|(k, _)| k == "CONDUIT_CONFIG_PATH")
            && dir.join("conduit.yaml").exists()
        {
            vars.push(("CONDUIT_CONFIG_PATH".into(), file("conduit.yaml")));
        }
        let env = Environment {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            vars,
        };
        let prepared = prepare(command(), &env).unwrap();
        let matches = prepared
            .command
            .clone()
            .try_get_matches_from(
                std::iter::once("funnel").chain(env.args.iter().map(String::as_str)),
            )
            .unwrap();
        let run = matches.subcommand_matches("run").unwrap();
        (
            run.get_one::<String>("db_type").unwrap().clone(),
            run.get_one::<String>("exit_on_degraded").unwrap().clone(),
            prepared,
        )
    }

    #[test]
    fn conduit_yaml_loses_to_conduit_variables_which_lose_to_funnel_yaml_which_loses_to_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("conduit.yaml"),
            "db:\n  type: badger\npipelines:\n  exit-on-error: true\n",
        )
        .unwrap();
        let (db, exit, _) = resolve(dir.path(), &["run"], &[]);
        assert_eq!((db.as_str(), exit.as_str()), ("badger", "true"));
        let (db, _, _) = resolve(dir.path(), &["run"], &[("CONDUIT_DB_TYPE", "sqlite")]);
        assert_eq!(db, "sqlite");
        std::fs::write(dir.path().join("funnel.yaml"), "db:\n  type: memory\n").unwrap();
        let (db, exit, _) = resolve(dir.path(), &["run"], &[("CONDUIT_DB_TYPE", "sqlite")]);
        assert_eq!((db.as_str(), exit.as_str()), ("memory", "true"));
        let (db, _, _) = resolve(dir.path(), &["run", "--db.type", "redb"], &[]);
        assert_eq!(db, "redb");
    }

    #[test]
    fn conduit_only_settings_are_accepted_everywhere_and_listed_with_where_they_were_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("conduit.yaml"),
            "db:\n  badger:\n    path: ./conduit.db\ninstall:\n  policy: strict\nmystery: 1\n",
        )
        .unwrap();
        let (_, _, prepared) = resolve(
            dir.path(),
            &[
                "run",
                "--api.grpc.address",
                ":8084",
                "--preview.pipeline-arch-v2",
            ],
            &[
                ("CONDUIT_DB_SQLITE_PATH", "./conduit.sqlite"),
                ("CONDUIT_PROCESSORS_EGRESS_ALLOW", "x"),
                ("CONDUIT_SOMETHING_ELSE", "y"),
            ],
        );
        let ignored = prepared.ignored.join(", ");
        assert!(ignored.contains("db.badger.path ("), "{ignored}");
        assert!(ignored.contains("conduit.yaml:3:11)"), "{ignored}");
        assert!(ignored.contains("install.policy ("), "{ignored}");
        assert!(
            ignored.contains("db.sqlite.path (CONDUIT_DB_SQLITE_PATH)"),
            "{ignored}"
        );
        assert!(
            ignored.contains("CONDUIT_PROCESSORS_EGRESS_ALLOW"),
            "{ignored}"
        );
        let unknown = prepared.unknown.join(", ");
        assert!(unknown.contains("mystery ("), "{unknown}");
        assert!(unknown.contains("CONDUIT_SOMETHING_ELSE"), "{unknown}");
        let matches = prepared
            .command
            .try_get_matches_from([
                "funnel",
                "run",
                "--api.grpc.address",
                ":8084",
                "--preview.pipeline-arch-v2",
                "--processors.egress.enabled",
                "--processors.egress.allow",
                "http://127.0.0.1:11434",
                "--processors.egress.allow",
                "http://127.0.0.1:8000",
            ])
            .unwrap();
        assert_eq!(
            ignored_flags(matches.subcommand_matches("run").unwrap()),
            [
                "--api.grpc.address",
                "--preview.pipeline-arch-v2",
                "--processors.egress.enabled",
                "--processors.egress.allow"
            ]
        );
    }

    #[test]
    fn an_unknown_key_in_funnel_yaml_is_still_an_error_and_a_missing_config_path_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("funnel.yaml"), "db:\n  kind: memory\n").unwrap();
        let env = Environment {
            args: vec!["run".into()],
            vars: vec![(
                "FUNNEL_CONFIG_PATH".into(),
                dir.path().join("funnel.yaml").display().to_string(),
            )],
        };
        let error = prepare(command(), &env).err().unwrap();
        assert!(
            error.contains("funnel.yaml:2:9: db.kind: unknown setting"),
            "{error}"
        );
        let env = Environment {
            args: vec![
                "run".into(),
                "--config.path=/nonexistent/conduit.yaml".into(),
            ],
            vars: Vec::new(),
        };
        let error = prepare(command(), &env).err().unwrap();
        assert!(
            error.contains("--config.path /nonexistent/conduit.yaml: no such file"),
            "{error}"
        );
    }

    #[test]
    fn a_go_listen_address_without_a_host_means_every_interface() {
        assert_eq!(listen_address(":8080"), "0.0.0.0:8080");
        assert_eq!(listen_address("127.0.0.1:8080"), "127.0.0.1:8080");
    }

    #[test]
    fn conduit_variables_are_named_after_the_setting() {
        assert_eq!(
            conduit_variable("db.postgres.connection-string"),
            "CONDUIT_DB_POSTGRES_CONNECTION_STRING"
        );
    }
}
