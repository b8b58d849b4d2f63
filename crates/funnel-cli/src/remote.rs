//! The commands that ask a running `funnel run` through its HTTP API: pipelines,
//! connectors, processors and their plugins. A small HTTP/1.1 client over a TCP
//! stream: the API is plain HTTP on a local address (no TLS, see docs/api.md).

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};

use crate::output::{Done, Failure, Outcome, View};

/// How long an answer may take: a graceful stop answers once the pipeline has drained
/// (at most 30 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the running instance's API is.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Remote {
    /// Address of the HTTP API of a running `funnel run` (`host:port`, or
    /// `http://host:port`).
    #[arg(
        long = "api.address",
        visible_alias = "api.http.address",
        env = "FUNNEL_API_ADDRESS",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    address: String,
    #[command(flatten)]
    token: Token,
}

/// The API's token: `funnel run` wants it on every request but /healthz and /readyz
/// (and needs one to serve on an address other than loopback); the commands that ask a
/// running instance send it.
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct Token {
    /// The token every API request but /healthz and /readyz must carry
    /// (`Authorization: Bearer <token>`); needed to serve the API on an address other
    /// than loopback.
    #[arg(
        long = "api.auth.token",
        env = "FUNNEL_API_AUTH_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// A file holding the API token (surrounding whitespace is ignored), instead of
    /// --api.auth.token.
    #[arg(
        long = "api.auth.token-file",
        env = "FUNNEL_API_AUTH_TOKEN_FILE",
        conflicts_with = "token",
        global = true
    )]
    token_file: Option<std::path::PathBuf>,
}

impl Token {
    /// `--api.auth.token`, or what `--api.auth.token-file` holds, trimmed; `None` when
    /// neither is set.
    ///
    /// # Errors
    ///
    /// When the file cannot be read: what to say about it.
    pub(crate) fn read(&self) -> Result<Option<String>, String> {
        match (&self.token, &self.token_file) {
            (Some(token), _) => Ok(Some(token.trim().to_owned())),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map(|t| Some(t.trim().to_owned()))
                .map_err(|e| format!("cannot read the API token file {}: {e}", file.display())),
            (None, None) => Ok(None),
        }
    }
}

/// A path segment with everything but unreserved characters and `:` percent-encoded.
pub(crate) fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A chunked HTTP body, decoded.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

impl Remote {
    /// `host:port` to connect to.
    pub(crate) fn host(&self) -> Result<String, Failure> {
        let address = self.address.trim().trim_end_matches('/');
        if address.starts_with("https://") {
            return Err(Failure::validation(format!(
                "--api.address {address}: the API speaks plain HTTP; reach a TLS proxy's \
                 backend address instead"
            )));
        }
        let address = address.trim_start_matches("http://");
        Ok(if address.starts_with(':') {
            format!("127.0.0.1{address}")
        } else {
            address.to_owned()
        })
    }

    /// The token to send: `--api.auth.token`, or what `--api.auth.token-file` holds.
    pub(crate) fn token(&self) -> Result<Option<String>, Failure> {
        self.token.read().map_err(Failure::environment)
    }

    /// One request; the JSON answer, or why there is none.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let host = self.host()?;
        let unreachable = |e: std::io::Error| {
            Failure::environment(format!(
                "cannot reach the Funnel API at {host}: {e} (is `funnel run` running? \
                 --api.address names another address)"
            ))
        };
        let mut stream = std::net::TcpStream::connect(&host).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(unreachable)?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let auth = self
            .token()?
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{auth}\
             Accept: application/json\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .map_err(unreachable)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(unreachable)?;
        let not_api = || {
            Failure::environment(format!(
                "{host} does not answer as the Funnel API ({method} {path})"
            ))
        };
        let (head, text) = answer.split_once("\r\n\r\n").ok_or_else(not_api)?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(not_api)?;
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let text = if chunked {
            dechunk(text)
        } else {
            text.to_owned()
        };
        let value: Value = serde_json::from_str(&text).map_err(|_| not_api())?;
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let message = value["message"].as_str().unwrap_or("").to_owned();
        let message = format!("the API answered {status}: {message}");
        Err(match value["code"].as_i64() {
            Some(16) => Failure::environment(format!(
                "{message} (pass the token with --api.auth.token or FUNNEL_API_AUTH_TOKEN)"
            )),
            Some(3) => Failure::validation(message),
            _ => Failure::runtime(message),
        })
    }

    fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call("GET", path, None)
    }
}

/// A list of `kind` at `rows` of `value`, as a table.
fn listed(
    value: Value,
    rows: &'static str,
    kind: &str,
    columns: &'static [(&'static str, &'static str)],
) -> Done {
    let count = value
        .pointer(rows)
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    Done::new(
        format!("{count} {kind}"),
        value,
        View::Table { rows, columns },
    )
}

/// `?key=value` when `value` is given.
fn query(key: &str, value: Option<&str>) -> String {
    value.map_or_else(String::new, |v| format!("?{key}={}", encode(v)))
}

/// `funnel pipelines ls`.
pub(crate) fn pipelines_ls(api: &Remote) -> Outcome {
    let value = api.get("/v1/pipelines")?;
    // The files that could not be used, after the count: each with its first error.
    let invalid: Vec<String> = value["invalidFiles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| format!("\n  {}", f["error"].as_str().unwrap_or("")))
        .collect();
    let mut done = listed(
        value,
        "/pipelines",
        "pipeline(s)",
        &[
            ("ID", "/id"),
            ("STATUS", "/state/status"),
            ("PROVISIONED", "/provisionedBy"),
            ("READ", "/recordsRead"),
            ("ACKED", "/recordsAcked"),
            ("ERROR", "/state/error"),
        ],
    );
    if !invalid.is_empty() {
        done.summary = format!(
            "{}; {} pipeline file(s) could not be used:{}",
            done.summary,
            invalid.len(),
            invalid.concat()
        );
    }
    Ok(done)
}

/// `funnel pipelines describe ID`: the pipeline with its connectors and processors.
pub(crate) fn pipelines_describe(api: &Remote, id: &str) -> Outcome {
    let mut pipeline = api.get(&format!("/v1/pipelines/{}", encode(id)))?;
    let connectors = api.get(&format!("/v1/connectors{}", query("pipeline_id", Some(id))))?;
    let mut parents = vec![id.to_owned()];
    parents.extend(
        connectors["connectors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["id"].as_str().map(str::to_owned)),
    );
    let processors = api.get(&format!(
        "/v1/processors{}",
        query("parent_ids", Some(&parents.join(",")))
    ))?;
    pipeline["connectors"] = connectors["connectors"].clone();
    pipeline["processors"] = processors["processors"].clone();
    let status = pipeline["state"]["status"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    Ok(Done::new(
        format!("pipeline {id}: {status}"),
        pipeline,
        View::Tree,
    ))
}

/// `funnel pipelines start ID` and `stop ID [--force]`.
pub(crate) fn pipelines_start_stop(api: &Remote, id: &str, stop: Option<bool>) -> Outcome {
    let path = format!("/v1/pipelines/{}", encode(id));
    match stop {
        None => api.call("POST", &format!("{path}/start"), None)?,
        Some(force) => api.call(
            "POST",
            &format!("{path}/stop"),
            Some(&json!({ "force": force })),
        )?,
    };
    let pipeline = api.get(&path)?;
    let status = pipeline["state"]["status"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let did = if stop.is_some() { "stopped" } else { "started" };
    Ok(Done::new(
        format!("pipeline {id} {did}: {status}"),
        pipeline,
        View::Summary,
    ))
}

/// `funnel connectors ls [--pipeline-id ID]`.
pub(crate) fn connectors_ls(api: &Remote, pipeline: Option<&str>) -> Outcome {
    let value = api.get(&format!("/v1/connectors{}", query("pipeline_id", pipeline)))?;
    Ok(listed(
        value,
        "/connectors",
        "connector(s)",
        &[
            ("ID", "/id"),
            ("TYPE", "/type"),
            ("PLUGIN", "/plugin"),
            ("PIPELINE", "/pipelineId"),
        ],
    ))
}

/// `funnel processors ls [--parent-id ID]`.
pub(crate) fn processors_ls(api: &Remote, parent: Option<&str>) -> Outcome {
    let value = api.get(&format!("/v1/processors{}", query("parent_ids", parent)))?;
    Ok(listed(
        value,
        "/processors",
        "processor(s)",
        &[
            ("ID", "/id"),
            ("PLUGIN", "/plugin"),
            ("PARENT", "/parent/id"),
            ("CONDITION", "/condition"),
        ],
    ))
}

/// `funnel connectors describe ID` and `funnel processors describe ID`.
pub(crate) fn describe(api: &Remote, collection: &str, id: &str) -> Outcome {
    let value = api.get(&format!("/v1/{collection}/{}", encode(id)))?;
    let plugin = value["plugin"].as_str().unwrap_or("").to_owned();
    Ok(Done::new(format!("{id}: {plugin}"), value, View::Tree))
}

/// `funnel connector-plugins ls` and `funnel processor-plugins ls`.
pub(crate) fn plugins_ls(api: &Remote, collection: &str, name: Option<&str>) -> Outcome {
    let value = api.get(&format!("/v1/{collection}/plugins{}", query("name", name)))?;
    Ok(plugin_list(value))
}

/// A list of plugins (`{"plugins": [...]}`), as a table.
pub(crate) fn plugin_list(value: Value) -> Done {
    listed(
        value,
        "/plugins",
        "plugin(s)",
        &[("NAME", "/name"), ("SUMMARY", "/summary")],
    )
}

/// `funnel connector-plugins describe NAME` and `funnel processor-plugins describe
/// NAME`: `builtin:` may be left out.
pub(crate) fn plugins_describe(api: &Remote, collection: &str, name: &str) -> Outcome {
    let value = api.get(&format!(
        "/v1/{collection}/plugins{}",
        query("name", Some(name))
    ))?;
    let full = if name.contains(':') {
        name.to_owned()
    } else {
        format!("builtin:{name}")
    };
    let plugin = value["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == full.as_str())
        .cloned()
        .ok_or_else(|| Failure::runtime(format!("no plugin {full:?} in this instance")))?;
    let summary = format!("{full}: {}", plugin["summary"].as_str().unwrap_or(""));
    Ok(Done::new(summary, plugin, View::Tree))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_path_segment_keeps_colons_and_encodes_the_rest() {
        assert_eq!(encode("p:out"), "p:out");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn an_address_may_be_a_url_or_a_bare_port_and_never_https() {
        let remote = |address: &str| Remote {
            address: address.to_owned(),
            token: Token::default(),
        };
        assert_eq!(remote(":8080").host().unwrap(), "127.0.0.1:8080");
        assert_eq!(remote("http://h:1/").host().unwrap(), "h:1");
        assert_eq!(remote("h:2").host().unwrap(), "h:2");
        let https = remote("https://h:3").host().unwrap_err();
        assert_eq!(https.kind, crate::output::Kind::Validation);
    }

    #[test]
    fn a_chunked_body_is_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
