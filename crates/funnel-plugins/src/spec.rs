//! A plugin's specification, read from its `Specify` answer, and the settings checks
//! its parameters allow.

use std::collections::BTreeMap;
use std::path::PathBuf;

use funnel_core::{SettingType, Settings, SettingsError};
use funnel_record::go;

use crate::pb::config::v1::{Parameter, parameter, validation};
use crate::pb::connector::v2::Specification;

/// One check on a parameter's value.
#[derive(Clone, Debug)]
pub enum Check {
    /// The value must not be empty.
    Required,
    /// The value must be a number greater than this.
    GreaterThan(f64),
    /// The value must be a number less than this.
    LessThan(f64),
    /// The value must be one of these.
    Inclusion(Vec<String>),
    /// The value must be none of these.
    Exclusion(Vec<String>),
    /// The value must match this expression.
    Regex(regex::Regex),
}

/// One parameter of a plugin's source or destination.
#[derive(Clone, Debug)]
pub struct Param {
    /// Its default, empty for none.
    pub default: String,
    /// What it does.
    pub description: String,
    /// Its type (a parameter without one takes any text: [`SettingType::String`]).
    pub kind: SettingType,
    /// Its checks.
    pub checks: Vec<Check>,
}

impl Param {
    /// True when the parameter must be given.
    pub fn required(&self) -> bool {
        self.checks.iter().any(|c| matches!(c, Check::Required))
    }
}

/// A plugin's specification: who it is and what it takes.
#[derive(Clone, Debug)]
pub struct PluginSpec {
    /// The executable.
    pub path: PathBuf,
    /// Its name (the key, with the version).
    pub name: String,
    /// One line about it.
    pub summary: String,
    /// More about it.
    pub description: String,
    /// Its version (`v0.1.0`).
    pub version: String,
    /// Who wrote it.
    pub author: String,
    /// Its source's parameters; `None` when it has no source.
    pub source_params: Option<BTreeMap<String, Param>>,
    /// Its destination's parameters; `None` when it has no destination.
    pub destination_params: Option<BTreeMap<String, Param>>,
}

impl PluginSpec {
    /// The specification `spec` of the plugin at `path`, read as Conduit reads it.
    ///
    /// # Errors
    ///
    /// What Conduit refuses, exactly: no name, an unspecified validation, a bound that
    /// is not a number, an expression that does not compile.
    pub fn from_wire(path: PathBuf, spec: Specification) -> Result<Self, String> {
        if spec.name.is_empty() {
            return Err("the specification has no name".to_owned());
        }
        let params = |map: BTreeMap<String, Parameter>, side: &str| {
            map.into_iter()
                .map(|(name, p)| {
                    param(p)
                        .map(|p| (name.clone(), p))
                        .map_err(|e| format!("{side} parameter {name:?}: {e}"))
                })
                .collect::<Result<BTreeMap<_, _>, String>>()
        };
        // A Python plugin serves one side only, but both maps come back (the SDK's
        // params for the other side); the side it serves is found out when it is run.
        let source = params(spec.source_params.into_iter().collect(), "source")?;
        let destination = params(spec.destination_params.into_iter().collect(), "destination")?;
        Ok(Self {
            path,
            name: spec.name,
            summary: spec.summary,
            description: spec.description,
            version: spec.version,
            author: spec.author,
            source_params: (!source.is_empty()).then_some(source),
            destination_params: (!destination.is_empty()).then_some(destination),
        })
    }

    /// The full name, `standalone:name@version`.
    pub fn full_name(&self) -> String {
        format!("standalone:{}@{}", self.name, self.version)
    }

    /// Checks `settings` against the parameters of one side (`source` when `source`
    /// is true): required parameters given, values of their type, and every
    /// validation. Settings the specification does not list are left to the plugin.
    pub fn validate(&self, source: bool, settings: &Settings) -> Vec<SettingsError> {
        let params = if source {
            &self.source_params
        } else {
            &self.destination_params
        };
        let Some(params) = params else {
            return Vec::new();
        };
        let mut errors = Vec::new();
        for (name, param) in params {
            let value = settings.get(name).map(String::as_str);
            let effective = match value {
                Some(v) if !v.is_empty() => v,
                _ => param.default.as_str(),
            };
            if effective.is_empty() {
                if param.required() {
                    errors.push(SettingsError::new(
                        name.clone(),
                        format!("error validating {name:?}: required parameter is not provided"),
                    ));
                }
                continue;
            }
            if let Err(e) = check_type(param.kind, effective) {
                errors.push(SettingsError::new(
                    name.clone(),
                    format!("error validating {name:?}: {e}"),
                ));
                continue;
            }
            for check in &param.checks {
                if let Some(e) = run_check(check, effective) {
                    errors.push(SettingsError::new(
                        name.clone(),
                        format!("error validating {name:?}: {e}"),
                    ));
                }
            }
        }
        errors
    }
}

fn param(p: Parameter) -> Result<Param, String> {
    let kind = match p.r#type() {
        parameter::Type::Unspecified | parameter::Type::String => SettingType::String,
        parameter::Type::Int => SettingType::Int,
        parameter::Type::Float => SettingType::Float,
        parameter::Type::Bool => SettingType::Bool,
        parameter::Type::File => SettingType::File,
        parameter::Type::Duration => SettingType::Duration,
    };
    let mut checks = Vec::new();
    for v in &p.validations {
        let bound = || {
            v.value
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("validation bound {:?} is not a number", v.value))
        };
        let list = || v.value.split(',').map(str::to_owned).collect::<Vec<_>>();
        let check = match v.r#type() {
            validation::Type::Unspecified => {
                return Err("a validation has no type".to_owned());
            }
            validation::Type::Required => Check::Required,
            validation::Type::GreaterThan => Check::GreaterThan(bound()?),
            validation::Type::LessThan => Check::LessThan(bound()?),
            validation::Type::Inclusion => Check::Inclusion(list()),
            validation::Type::Exclusion => Check::Exclusion(list()),
            validation::Type::Regex => Check::Regex(
                regex::Regex::new(&v.value)
                    .map_err(|e| format!("regex {:?} does not compile: {e}", v.value))?,
            ),
        };
        checks.push(check);
    }
    // Python plugins give one inclusion per allowed value: one check that allows any.
    let mut allowed: Vec<String> = Vec::new();
    let mut inclusions = 0;
    checks.retain(|c| match c {
        Check::Inclusion(values) => {
            inclusions += 1;
            allowed.extend(values.iter().cloned());
            false
        }
        _ => true,
    });
    if inclusions > 0 {
        checks.push(Check::Inclusion(allowed));
    }
    Ok(Param {
        default: p.default,
        description: p.description,
        kind,
        checks,
    })
}

fn check_type(kind: SettingType, value: &str) -> Result<(), String> {
    let ok = match kind {
        SettingType::String | SettingType::File => true,
        SettingType::Int => value.parse::<i64>().is_ok(),
        SettingType::Float => value.parse::<f64>().is_ok(),
        SettingType::Bool => go::parse_bool(value).is_some(),
        SettingType::Duration => go::parse_duration(value).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{value:?} value is not a {}", kind.name()))
    }
}

fn run_check(check: &Check, value: &str) -> Option<String> {
    let number = || value.parse::<f64>().ok();
    match check {
        Check::Required => None,
        Check::GreaterThan(bound) => match number() {
            Some(n) if n > *bound => None,
            _ => Some(format!("{value:?} should be greater than {bound}")),
        },
        Check::LessThan(bound) => match number() {
            Some(n) if n < *bound => None,
            _ => Some(format!("{value:?} should be less than {bound}")),
        },
        Check::Inclusion(values) => (!values.iter().any(|v| v == value)).then(|| {
            format!(
                "{value:?} value must be included in the list [{}]",
                values.join(",")
            )
        }),
        Check::Exclusion(values) => values.iter().any(|v| v == value).then(|| {
            format!(
                "{value:?} value must be excluded from the list [{}]",
                values.join(",")
            )
        }),
        Check::Regex(re) => (!re.is_match(value))
            .then(|| format!("{value:?} should match the regex {:?}", re.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::config::v1::Validation;

    fn spec(params: Vec<(&str, Parameter)>) -> Result<PluginSpec, String> {
        PluginSpec::from_wire(
            PathBuf::from("/x"),
            Specification {
                name: "demo".into(),
                version: "v1.0.0".into(),
                source_params: params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                ..Specification::default()
            },
        )
    }

    fn p(
        kind: parameter::Type,
        default: &str,
        validations: &[(validation::Type, &str)],
    ) -> Parameter {
        Parameter {
            default: default.into(),
            description: String::new(),
            r#type: kind as i32,
            validations: validations
                .iter()
                .map(|(t, v)| Validation {
                    r#type: *t as i32,
                    value: (*v).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn settings_are_checked_against_every_kind_of_validation() {
        use validation::Type as V;
        let spec = spec(vec![
            ("url", p(parameter::Type::String, "", &[(V::Required, "")])),
            (
                "count",
                p(
                    parameter::Type::Int,
                    "3",
                    &[(V::GreaterThan, "0"), (V::LessThan, "10")],
                ),
            ),
            (
                "mode",
                p(
                    parameter::Type::String,
                    "a",
                    &[(V::Inclusion, "a"), (V::Inclusion, "b")],
                ),
            ),
            (
                "name",
                p(
                    parameter::Type::String,
                    "",
                    &[(V::Exclusion, "root,admin"), (V::Regex, "^[a-z]+$")],
                ),
            ),
            ("every", p(parameter::Type::Duration, "1s", &[])),
        ])
        .unwrap();
        let settings: Settings = [
            ("count", "12"),
            ("mode", "c"),
            ("name", "root"),
            ("every", "soon"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let errors = spec.validate(true, &settings);
        let names: Vec<&str> = errors.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(
            names,
            ["count", "every", "mode", "name", "url"],
            "{errors:?}"
        );
        let good: Settings = [("url", "x"), ("name", "bob")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert!(spec.validate(true, &good).is_empty());
    }

    #[test]
    fn a_spec_conduit_would_refuse_is_refused_with_the_reason() {
        use validation::Type as V;
        let bound = spec(vec![(
            "d",
            p(parameter::Type::Duration, "", &[(V::GreaterThan, "1s")]),
        )]);
        assert!(bound.unwrap_err().contains("\"1s\" is not a number"));
        let regex = spec(vec![(
            "r",
            p(parameter::Type::String, "", &[(V::Regex, "(")]),
        )]);
        assert!(regex.unwrap_err().contains("does not compile"));
    }
}
