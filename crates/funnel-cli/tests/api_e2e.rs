//! End-to-end: a running `funnel run` driven over its HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use funnel_test_utils::json::strings_of;
use funnel_test_utils::process::{self, free_port, stop};
use funnel_test_utils::{wait_until_blocking, yaml};
use serde_json::{Value, json};

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");

/// One HTTP/1.1 request; (status, body), or None when nothing answers.
fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// A request that must be answered: (status, JSON body).
fn json_call(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (code, text) = call(port, method, path, None, body.as_ref())
        .unwrap_or_else(|| panic!("{method} {path}: no answer"));
    let value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text:?}"));
    (code, value)
}

/// A request that must succeed (200): its JSON body.
fn ok_call(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let (code, body) = json_call(port, method, path, body);
    assert_eq!(code, 200, "{method} {path}: {body}");
    body
}

/// A request that must fail with HTTP status and gRPC code `expected`: its JSON body.
fn refused_call(
    port: u16,
    method: &str,
    path: &str,
    body: Option<Value>,
    expected: (u16, i64),
) -> Value {
    let (code, body) = json_call(port, method, path, body);
    assert_eq!(
        (code, body["code"].as_i64()),
        (expected.0, Some(expected.1)),
        "{method} {path}: {body}"
    );
    body
}

/// The `id` of each object of the JSON list `list`.
fn ids_of(list: &Value) -> Vec<&str> {
    strings_of(list, "id")
}

fn spawn(dir: &Path, port: u16, extra: &[&str]) -> Child {
    process::funnel_command(FUNNEL, dir, &format!("127.0.0.1:{port}"), extra)
        .spawn()
        .unwrap()
}

fn wait_healthy(port: u16) {
    wait_until_blocking("the API answers", Duration::from_secs(30), || {
        matches!(call(port, "GET", "/healthz", None, None), Some((200, _)))
    });
}

/// A running instance with the pipelines of [`file_pipeline`] in a new directory, its
/// API on `port` and healthy.
fn running_with_file_pipeline() -> (tempfile::TempDir, u16, Child) {
    let dir = tempfile::tempdir().unwrap();
    process::write_pipelines(dir.path(), &file_pipeline());
    let port = free_port();
    let funnel = spawn(dir.path(), port, &[]);
    wait_healthy(port);
    (dir, port, funnel)
}

fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(str::to_owned).collect()
}

/// A stopped pipeline `from-file`: 10 generated records to `./from-file.jsonl`.
fn file_pipeline() -> String {
    yaml::file(&[yaml::pipeline(
        "from-file",
        &[("status", "stopped")],
        &[
            yaml::generator("gen", 10, 0),
            yaml::file_destination("out", "./from-file.jsonl"),
        ],
        &[],
    )])
}

#[test]
fn a_pipeline_created_through_the_api_runs_stops_and_is_found_again_after_a_restart() {
    let (dir, port, funnel) = running_with_file_pipeline();

    let created = ok_call(
        port,
        "POST",
        "/v1/pipelines",
        Some(json!({"config": {"name": "orders", "description": "made over HTTP"}})),
    );
    assert_eq!(created["id"], "orders");
    assert_eq!(created["state"]["status"], "STATUS_STOPPED");
    assert_eq!(created["provisionedBy"], "PROVISIONED_BY_API");
    let source = json!({"type": "TYPE_SOURCE", "plugin": "builtin:generator", "pipelineId": "orders",
        "config": {"name": "gen", "settings": {"format.type": "raw", "format.options.id": "int", "rate": "2000"}}});
    ok_call(port, "POST", "/v1/connectors", Some(source));
    // A setting the plugin does not have is refused with its name.
    let bad = json!({"type": "TYPE_DESTINATION", "plugin": "builtin:file", "pipelineId": "orders",
        "config": {"name": "out", "settings": {"path": "./orders.jsonl", "colour": "red"}}});
    let body = refused_call(port, "POST", "/v1/connectors", Some(bad), (400, 3));
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    let destination = json!({"type": "TYPE_DESTINATION", "plugin": "builtin:file", "pipelineId": "orders",
        "config": {"name": "out", "settings": {"path": "./orders.jsonl"}}});
    let body = ok_call(port, "POST", "/v1/connectors", Some(destination));
    assert_eq!(body["id"], "orders:out");
    assert_eq!(body["type"], "TYPE_DESTINATION");

    ok_call(port, "POST", "/v1/pipelines/orders/start", None);
    let out = dir.path().join("orders.jsonl");
    wait_until_blocking("records reach the sink", Duration::from_secs(30), || {
        lines(&out).len() >= 500
    });
    let (_, running) = json_call(port, "GET", "/v1/pipelines/orders", None);
    assert_eq!(running["state"]["status"], "STATUS_RUNNING");
    // Running: neither deleted nor changed.
    refused_call(port, "DELETE", "/v1/pipelines/orders", None, (400, 9));

    ok_call(
        port,
        "POST",
        "/v1/pipelines/orders/stop",
        Some(json!({"force": false})),
    );
    let (_, stopped) = json_call(port, "GET", "/v1/pipelines/orders", None);
    assert_eq!(stopped["state"]["status"], "STATUS_STOPPED");
    let written = lines(&out).len();
    assert!(u64::try_from(written).unwrap() <= stopped["recordsAcked"].as_u64().unwrap());

    // The destination now writes elsewhere.
    let update = json!({"config": {"name": "out", "settings": {"path": "./orders-2.jsonl"}}});
    let body = ok_call(port, "PUT", "/v1/connectors/orders:out", Some(update));
    assert_eq!(body["config"]["settings"]["path"], "./orders-2.jsonl");

    // A file pipeline is read-only.
    let body = refused_call(port, "DELETE", "/v1/pipelines/from-file", None, (400, 9));
    assert!(body["message"].as_str().unwrap().contains("file"), "{body}");
    refused_call(
        port,
        "DELETE",
        "/v1/connectors/from-file:out",
        None,
        (400, 9),
    );
    refused_call(port, "GET", "/v1/pipelines/nope", None, (404, 5));
    stop(funnel);

    // After a restart it is there, stopped, with its changed connector; started, it
    // goes on from its committed position into the new file.
    let funnel = spawn(dir.path(), port, &[]);
    wait_healthy(port);
    let found = ok_call(port, "GET", "/v1/pipelines/orders", None);
    assert_eq!(found["state"]["status"], "STATUS_STOPPED");
    assert_eq!(found["config"]["description"], "made over HTTP");
    assert_eq!(found["connectorIds"], json!(["orders:gen", "orders:out"]));
    let (_, list) = json_call(port, "GET", "/v1/pipelines", None);
    let ids = ids_of(&list["pipelines"]);
    assert_eq!(ids, ["from-file", "orders"]);
    ok_call(port, "POST", "/v1/pipelines/orders/start", None);
    let out2 = dir.path().join("orders-2.jsonl");
    wait_until_blocking(
        "records reach the new sink",
        Duration::from_secs(30),
        || !lines(&out2).is_empty(),
    );
    let position = |line: &str| -> u64 {
        let record: Value = serde_json::from_str(line).unwrap();
        let bytes = base64_decode(record["position"].as_str().unwrap());
        String::from_utf8(bytes).unwrap().parse().unwrap()
    };
    let last_before = lines(&out).iter().map(|l| position(l)).max().unwrap();
    let first_after = position(&lines(&out2)[0]);
    assert_eq!(
        first_after,
        last_before + 1,
        "not resumed from its position"
    );
    // Stopped at once with force.
    ok_call(
        port,
        "POST",
        "/v1/pipelines/orders/stop",
        Some(json!({"force": true})),
    );
    ok_call(port, "DELETE", "/v1/pipelines/orders", None);
    let (code, _) = json_call(port, "GET", "/v1/pipelines/orders", None);
    assert_eq!(code, 404);
    stop(funnel);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[test]
fn the_api_on_a_non_loopback_address_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let address = format!("0.0.0.0:{port}");
    let out = process::funnel_once(
        FUNNEL,
        dir.path(),
        &["run", "--api.http.address", &address, "--db.type", "memory"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "refusing to serve the API on {address} without a token"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--api.auth.token"), "{stderr}");

    // With a token (from the environment, or from a file): 401 without it, 200 with it.
    let token = "t0ken-for-the-api-0123456789";
    std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
    for how in ["env", "file"] {
        let mut command =
            process::funnel_command(FUNNEL, dir.path(), &address, &["--db.type", "memory"]);
        if how == "env" {
            command.env("FUNNEL_API_AUTH_TOKEN", token);
        } else {
            command.args(["--api.auth.token-file", "token"]);
        }
        let funnel = command.spawn().unwrap();
        wait_healthy(port);
        let (code, body) = call(port, "GET", "/v1/pipelines", None, None).unwrap();
        assert_eq!(code, 401, "{how}: {body}");
        let (code, _) = call(port, "GET", "/v1/pipelines", Some("wrong"), None).unwrap();
        assert_eq!(code, 401, "{how}");
        let (code, body) = call(port, "GET", "/v1/pipelines", Some(token), None).unwrap();
        assert_eq!(code, 200, "{how}: {body}");
        stop(funnel);
    }
}

/// `funnel --json ARGS` in `dir`: its exit code and its envelope, checked to have
/// every field and to agree with the exit code.
fn cli(dir: &Path, args: &[&str]) -> (i32, Value) {
    let out = process::funnel_once(FUNNEL, dir, &[&["--json"], args].concat());
    let code = out.status.code().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let envelope: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not one JSON object ({e}): {stdout:?} {stderr}"));
    for field in ["command", "ok", "summary", "result", "error"] {
        assert!(
            envelope.get(field).is_some(),
            "{args:?}: no {field}: {envelope}"
        );
    }
    assert_eq!(envelope["ok"], code == 0, "{args:?}: {envelope}");
    if code == 0 {
        assert_eq!(envelope["error"], Value::Null, "{args:?}: {envelope}");
    } else {
        assert_eq!(envelope["error"]["exitCode"], code, "{args:?}: {envelope}");
        assert_eq!(envelope["result"], Value::Null, "{args:?}: {envelope}");
    }
    (code, envelope)
}

/// A pipeline file with a pipeline processor, and a file with an error on line 9.
fn files_for_the_cli(dir: &Path) {
    use funnel_test_utils::yaml;
    std::fs::create_dir(dir.join("pipelines")).unwrap();
    let good = yaml::file(&[yaml::pipeline(
        "p",
        &[],
        &[
            yaml::generator("gen", -1, 200),
            yaml::file_destination("out", "./p.jsonl"),
        ],
        &[yaml::processor(
            "tag",
            "field.set",
            &[],
            &[("field", ".Metadata.via"), ("value", "file")],
        )],
    )]);
    std::fs::write(dir.join("pipelines/p.yaml"), good).unwrap();
    let bad = yaml::file(&[yaml::pipeline(
        "bad",
        &[],
        &[yaml::connector(
            "gen",
            "source",
            "builtin:generator",
            &[("recordCount", "many")],
        )],
        &[],
    )]);
    std::fs::write(dir.join("pipelines/bad.yaml"), bad).unwrap();
}

#[test]
fn every_command_against_a_running_instance_answers_the_json_envelope_with_the_exit_code_of_the_table()
 {
    let dir = tempfile::tempdir().unwrap();
    files_for_the_cli(dir.path());
    let port = free_port();
    let token = "cli-token-0123456789";
    let funnel = spawn(dir.path(), port, &["--api.auth.token", token]);
    wait_healthy(port);
    let address = format!("127.0.0.1:{port}");
    let remote = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--api.address", &address, "--api.auth.token", token]);
        cli(dir.path(), &all)
    };

    let (code, ls) = remote(&["pipelines", "ls"]);
    assert_eq!(code, 0, "{ls}");
    assert_eq!(ls["command"], "pipelines ls");
    assert_eq!(ls["result"]["pipelines"][0]["id"], "p");
    // The bad file is listed with its line.
    let invalid = &ls["result"]["invalidFiles"][0];
    assert!(
        invalid["file"].as_str().unwrap().ends_with("bad.yaml"),
        "{ls}"
    );
    assert_eq!(invalid["line"], 9, "{ls}");
    // As text: a table, then the bad file with its line.
    let out = Command::new(FUNNEL)
        .current_dir(dir.path())
        .args([
            "pipelines",
            "ls",
            "--api.address",
            &address,
            "--api.auth.token",
            token,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("ID  "), "{text}");
    assert!(
        text.contains("STATUS_RUNNING") && text.contains("bad.yaml:9:"),
        "{text}"
    );
    // The address from the environment.
    let out = Command::new(FUNNEL)
        .current_dir(dir.path())
        .args(["--json", "pipelines", "ls"])
        .env("FUNNEL_API_ADDRESS", &address)
        .env("FUNNEL_API_AUTH_TOKEN", token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", process::output_text(&out));
    // The token from a file, the address under `funnel run`'s flag name.
    std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
    let out = Command::new(FUNNEL)
        .current_dir(dir.path())
        .args(["--json", "pipelines", "ls", "--api.http.address", &address])
        .args(["--api.auth.token-file", "token"])
        .env_remove("FUNNEL_API_AUTH_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", process::output_text(&out));
    let (code, described) = remote(&["pipelines", "describe", "p"]);
    assert_eq!(code, 0, "{described}");
    assert_eq!(
        described["result"]["connectors"].as_array().unwrap().len(),
        2
    );
    assert_eq!(described["result"]["processors"][0]["id"], "p:tag");
    assert_eq!(remote(&["pipelines", "describe", "nope"]).0, 1);

    let (code, stopped) = remote(&["pipelines", "stop", "p"]);
    assert_eq!(code, 0, "{stopped}");
    assert_eq!(stopped["result"]["state"]["status"], "STATUS_STOPPED");
    // Not running: the API refuses, a runtime failure.
    assert_eq!(remote(&["pipelines", "stop", "p"]).0, 1);
    let (code, started) = remote(&["pipelines", "start", "p"]);
    assert_eq!(code, 0, "{started}");
    assert_eq!(started["result"]["state"]["status"], "STATUS_RUNNING");
    let (code, forced) = remote(&["pipelines", "stop", "p", "--force"]);
    assert_eq!(
        (code, forced["result"]["state"]["status"].as_str()),
        (0, Some("STATUS_STOPPED"))
    );
    assert_eq!(remote(&["pipelines", "start", "p"]).0, 0);

    let (code, connectors) = remote(&["connectors", "ls", "--pipeline-id", "p"]);
    assert_eq!(code, 0, "{connectors}");
    assert_eq!(
        ids_of(&connectors["result"]["connectors"]),
        ["p:gen", "p:out"]
    );
    let (code, source) = remote(&["connectors", "describe", "p:gen"]);
    assert_eq!(
        (code, source["result"]["plugin"].as_str()),
        (0, Some("builtin:generator"))
    );
    assert_eq!(remote(&["connectors", "describe", "p:nope"]).0, 1);

    let (code, processors) = remote(&["processors", "ls", "--parent-id", "p"]);
    assert_eq!(
        (code, processors["result"]["processors"][0]["id"].as_str()),
        (0, Some("p:tag"))
    );
    let (code, tag) = remote(&["processors", "describe", "p:tag"]);
    assert_eq!(
        (code, tag["result"]["config"]["settings"]["value"].as_str()),
        (0, Some("file"))
    );

    let (code, plugins) = remote(&["connector-plugins", "ls", "--name", "file"]);
    assert_eq!(code, 0, "{plugins}");
    assert_eq!(
        plugins["result"]["plugins"][0]["name"], "builtin:file",
        "{plugins}"
    );
    assert_eq!(
        plugins["result"]["plugins"].as_array().unwrap().len(),
        1,
        "{plugins}"
    );
    let (code, generator) = remote(&["connector-plugins", "describe", "generator"]);
    assert_eq!(code, 0, "{generator}");
    // Parameters carry their real types.
    let params = &generator["result"]["sourceParams"];
    assert_eq!(params["rate"]["type"], "TYPE_FLOAT", "{params}");
    assert_eq!(params["recordCount"]["type"], "TYPE_INT", "{params}");
    assert_eq!(params["readTime"]["type"], "TYPE_DURATION", "{params}");
    assert_eq!(params["format.type"]["type"], "TYPE_STRING", "{params}");
    assert_eq!(remote(&["connector-plugins", "describe", "nosuch"]).0, 1);
    let (code, processor_plugins) = remote(&["processor-plugins", "ls"]);
    assert_eq!(code, 0, "{processor_plugins}");
    let (code, field_set) = remote(&["processor-plugins", "describe", "field.set"]);
    assert_eq!(code, 0, "{field_set}");
    assert!(
        field_set["result"]["parameters"]["field"]["validations"][0]["type"] == "TYPE_REQUIRED"
    );

    // The inspector: with --json the records it saw are the result.
    let (code, watched) = remote(&["inspect", "p:gen", "--limit", "2"]);
    assert_eq!(code, 0, "{watched}");
    assert_eq!(watched["command"], "inspect");
    let records = watched["result"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{watched}");
    assert!(records[0]["position"].is_string(), "{watched}");
    let (code, unknown) = remote(&["inspect", "p:nope", "--limit", "1"]);
    assert_eq!(code, 1, "{unknown}");

    // A bad argument is a validation failure, enveloped too.
    let (code, usage) = remote(&["pipelines", "describe"]);
    assert_eq!(code, 2, "{usage}");
    // Without the token the instance cannot be used: an environment failure.
    let (code, denied) = cli(dir.path(), &["pipelines", "ls", "--api.address", &address]);
    assert_eq!(code, 3, "{denied}");
    let (code, denied) = cli(
        dir.path(),
        &[
            "inspect",
            "p:gen",
            "--limit",
            "1",
            "--api.address",
            &address,
        ],
    );
    assert_eq!(code, 3, "{denied}");

    // /readyz, in Conduit's newer shape, names the bad file and its line.
    let (code, body) = call(port, "GET", "/readyz", None, None).unwrap();
    assert_eq!(code, 503, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "not_ready");
    assert_eq!(ready["pipelines"]["total"], 1, "{ready}");
    assert_eq!(ready["pipelines"]["running"], 1, "{ready}");
    assert_eq!(ready["pipelines"]["invalidFiles"][0]["line"], 9, "{ready}");
    assert!(body.contains("bad.yaml:9:"), "{body}");
    stop(funnel);

    // Nothing listens any more: every command that needs the instance exits with 3.
    for args in [
        &["pipelines", "ls"][..],
        &["pipelines", "describe", "p"],
        &["pipelines", "start", "p"],
        &["pipelines", "stop", "p"],
        &["connectors", "ls"],
        &["connectors", "describe", "p:gen"],
        &["processors", "ls"],
        &["processors", "describe", "p:tag"],
        &["connector-plugins", "ls"],
        &["connector-plugins", "describe", "file"],
        &["processor-plugins", "ls"],
        &["processor-plugins", "describe", "field.set"],
        &["inspect", "p:gen", "--limit", "1"],
    ] {
        let (code, envelope) = remote(args);
        assert_eq!(code, 3, "{args:?}: {envelope}");
        assert_eq!(envelope["error"]["kind"], "environment");
    }
    // What `connectors ls` listed before, this binary's plugins, needs no instance.
    let (code, plugins) = remote(&["connectors", "ls", "--plugins"]);
    assert_eq!(code, 0, "{plugins}");
    let names = strings_of(&plugins["result"]["plugins"], "name");
    assert!(names.contains(&"builtin:file"), "{names:?}");
    let (code, plugins) = remote(&["processors", "ls", "--plugins"]);
    assert_eq!(code, 0, "{plugins}");
    assert!(
        plugins["result"]["plugins"][0]["parameters"].is_object(),
        "{plugins}"
    );

    // The commands on the stopped instance's store.
    let (code, check) = cli(dir.path(), &["store", "check"]);
    assert_eq!(code, 0, "{check}");
    assert_eq!(check["command"], "store check");
    assert!(
        check["result"]["positions"]
            .as_array()
            .unwrap()
            .contains(&json!("p:gen")),
        "{check}"
    );
    // A bad pipeline file beside it: nothing is deleted, a validation failure.
    assert_eq!(cli(dir.path(), &["pipelines", "delete", "p", "--yes"]).0, 2);
    std::fs::remove_file(dir.path().join("pipelines/bad.yaml")).unwrap();
    // Without --yes it never asks: it names what it would drop, and drops nothing.
    let (code, refused) = cli(dir.path(), &["pipelines", "delete", "p"]);
    assert_eq!(code, 1, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("p:gen: forget its position"),
        "{refused}"
    );
    assert_eq!(
        cli(dir.path(), &["pipelines", "delete", "nope", "--yes"]).0,
        1
    );
    let (code, deleted) = cli(dir.path(), &["pipelines", "delete", "p", "--yes"]);
    assert_eq!(code, 0, "{deleted}");
    assert_eq!(deleted["command"], "pipelines delete");
    assert!(deleted["result"]["done"].is_array(), "{deleted}");
    let (code, check) = cli(dir.path(), &["store", "check"]);
    assert_eq!((code, check["result"]["positions"].clone()), (0, json!([])));
    let (code, repaired) = cli(dir.path(), &["store", "repair"]);
    assert_eq!(code, 0, "{repaired}");
    assert_eq!(repaired["command"], "store repair");
    assert_eq!(repaired["result"]["dropped"], json!([]), "{repaired}");
}

#[test]
fn the_commands_without_an_instance_answer_the_json_envelope_and_init_writes_files_that_load() {
    let dir = tempfile::tempdir().unwrap();
    let (code, version) = cli(dir.path(), &["version"]);
    assert_eq!(code, 0, "{version}");
    assert_eq!(version["result"]["version"], env!("CARGO_PKG_VERSION"));

    // init: funnel.yaml with every default, the folders; never overwritten.
    let (code, init) = cli(dir.path(), &["init"]);
    assert_eq!(code, 0, "{init}");
    assert!(dir.path().join("pipelines").is_dir() && dir.path().join("connectors").is_dir());
    let written = std::fs::read_to_string(dir.path().join("funnel.yaml")).unwrap();
    assert!(written.contains("  stall-threshold: \"2m\""), "{written}");
    assert_eq!(cli(dir.path(), &["init"]).0, 1);
    assert_eq!(cli(dir.path(), &["init", "--path", "elsewhere"]).0, 0);
    assert!(dir.path().join("elsewhere/funnel.yaml").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("funnel.yaml")).unwrap(),
        written
    );
    // The file it wrote is read (an unknown key would fail) and resolves to the defaults.
    let (code, config) = cli(dir.path(), &["config"]);
    assert_eq!(code, 0, "{config}");
    assert_eq!(config["result"]["api.http.address"], "127.0.0.1:8080");
    assert_eq!(config["result"]["pipelines.stall-threshold"], "2m");
    let (code, config) = cli(dir.path(), &["config", "--db.type", "memory"]);
    assert_eq!(
        (code, config["result"]["db.type"].as_str()),
        (0, Some("memory"))
    );
    std::fs::write(dir.path().join("funnel.yaml"), "colour: red\n").unwrap();
    assert_eq!(cli(dir.path(), &["config"]).0, 2);
    std::fs::remove_file(dir.path().join("funnel.yaml")).unwrap();

    // pipelines init with plugins: every parameter, commented; the file validates.
    let (code, made) = cli(
        dir.path(),
        &[
            "pipelines",
            "init",
            "made",
            "--source",
            "generator",
            "--destination",
            "builtin:file",
        ],
    );
    assert_eq!(code, 0, "{made}");
    assert_eq!(made["result"]["valid"], true, "{made}");
    let text = std::fs::read_to_string(dir.path().join("pipelines/made.yaml")).unwrap();
    assert!(text.contains("# type: float"), "{text}");
    assert!(text.contains("# type: file, required"), "{text}");
    assert!(
        text.contains("recordCount: \"-1\"") || text.contains("recordCount:"),
        "{text}"
    );
    let (code, valid) = cli(dir.path(), &["pipelines", "validate"]);
    assert_eq!(code, 0, "{valid}");
    assert_eq!(valid["result"]["pipelines"], json!(["made"]));
    assert_eq!(
        cli(
            dir.path(),
            &["pipelines", "init", "made", "--source", "generator"]
        )
        .0,
        1
    );
    assert_eq!(
        cli(
            dir.path(),
            &["pipelines", "init", "x", "--source", "nosuch"]
        )
        .0,
        2
    );
    // An invalid file is a validation failure.
    std::fs::write(
        dir.path().join("pipelines/made.yaml"),
        "version: \"2.2\"\npipelines: 3\n",
    )
    .unwrap();
    assert_eq!(cli(dir.path(), &["pipelines", "validate"]).0, 2);
    // store check on a store that is not there.
    assert_eq!(
        cli(dir.path(), &["store", "check", "--db.redb.path", "none.db"]).0,
        1
    );
}

#[test]
fn a_dead_letter_queue_and_processors_changed_through_the_api_apply_to_the_records_and_are_kept_after_a_restart()
 {
    let (dir, port, funnel) = running_with_file_pipeline();
    let ok = |method: &str, path: &str, body: Option<Value>| ok_call(port, method, path, body);
    let refused = |method: &str, path: &str, body: Value, status: (u16, i64)| {
        refused_call(port, method, path, Some(body), status)["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    ok(
        "POST",
        "/v1/pipelines",
        Some(json!({"config": {"name": "q"}})),
    );
    // Its name and description change; a file pipeline's do not, and a name is unique.
    let renamed = ok(
        "PUT",
        "/v1/pipelines/q",
        Some(json!({"config": {"name": "queue", "description": "changed"}})),
    );
    assert_eq!(
        (renamed["id"].as_str(), renamed["config"]["name"].as_str()),
        (Some("q"), Some("queue"))
    );
    refused(
        "PUT",
        "/v1/pipelines/from-file",
        json!({"config": {"name": "from-file", "description": "changed"}}),
        (400, 9),
    );
    ok(
        "POST",
        "/v1/pipelines",
        Some(json!({"config": {"name": "other"}})),
    );
    refused(
        "PUT",
        "/v1/pipelines/q",
        json!({"config": {"name": "other"}}),
        (409, 6),
    );
    ok("DELETE", "/v1/pipelines/other", None);

    // The dead-letter queue: Conduit's defaults, replaced on an API pipeline only.
    let dlq = ok("GET", "/v1/pipelines/q/dead-letter-queue", None);
    assert_eq!(
        dlq,
        json!({"plugin": "builtin:log", "settings": {"level": "warn", "message": "record delivery failed"},
               "windowSize": 1, "windowNackThreshold": 0})
    );
    ok("GET", "/v1/pipelines/from-file/dead-letter-queue", None);
    let to_file =
        json!({"plugin": "builtin:file", "settings": {"path": "./dlq.jsonl"}, "windowSize": 0});
    refused(
        "PUT",
        "/v1/pipelines/from-file/dead-letter-queue",
        to_file.clone(),
        (400, 9),
    );
    let message = refused(
        "PUT",
        "/v1/pipelines/q/dead-letter-queue",
        json!({"plugin": "builtin:file", "settings": {"colour": "red"}}),
        (400, 3),
    );
    assert!(message.contains("colour"), "{message}");
    let dlq = ok("PUT", "/v1/pipelines/q/dead-letter-queue", Some(to_file));
    assert_eq!(
        (dlq["plugin"].as_str(), dlq["windowSize"].as_u64()),
        (Some("builtin:file"), Some(0))
    );

    // A connector is validated without being added.
    let connector = |settings: Value| json!({"type": "TYPE_DESTINATION", "plugin": "builtin:file", "config": {"name": "out", "settings": settings}});
    assert_eq!(
        ok(
            "POST",
            "/v1/connectors/validate",
            Some(connector(json!({"path": "./q.jsonl"})))
        ),
        json!({})
    );
    let message = refused(
        "POST",
        "/v1/connectors/validate",
        connector(json!({"path": "./q.jsonl", "colour": "red"})),
        (400, 3),
    );
    assert!(message.contains("colour"), "{message}");
    // Valid settings, and the plugin's connection test runs: the file destination's
    // directory must be there.
    let message = refused(
        "POST",
        "/v1/connectors/validate",
        connector(json!({"path": "./missing/q.jsonl"})),
        (400, 9),
    );
    assert!(
        message.contains("connection test") && message.contains("missing"),
        "{message}"
    );
    assert!(ok("GET", "/v1/connectors?pipeline_id=q", None)["connectors"] == json!([]));

    let source = json!({"type": "TYPE_SOURCE", "plugin": "builtin:generator", "pipelineId": "q",
        "config": {"name": "gen", "settings": {"format.type": "raw", "format.options.id": "int", "rate": "2000"}}});
    ok("POST", "/v1/connectors", Some(source));
    let mut out = connector(json!({"path": "./q.jsonl"}));
    out["pipelineId"] = "q".into();
    ok("POST", "/v1/connectors", Some(out));

    // Processors on the pipeline and on a connector; changed; refused on a file pipeline.
    let set = |parent: (&str, &str), field: &str, value: &str| {
        json!({"plugin": "field.set", "parent": {"type": parent.0, "id": parent.1},
               "config": {"settings": {"field": field, "value": value}, "workers": 1}})
    };
    let created = ok(
        "POST",
        "/v1/processors",
        Some(set(("TYPE_PIPELINE", "q"), ".Metadata.via", "api")),
    );
    assert_eq!(created["id"], "q:field.set");
    assert_eq!(
        created["parent"],
        json!({"type": "TYPE_PIPELINE", "id": "q"})
    );
    let created = ok(
        "POST",
        "/v1/processors",
        Some(set(("TYPE_CONNECTOR", "q:out"), ".Metadata.dest", "out")),
    );
    assert_eq!(created["id"], "q:out:field.set");
    let message = refused(
        "POST",
        "/v1/processors",
        set(("TYPE_PIPELINE", "q"), ".Position", "x"),
        (400, 3),
    );
    assert!(message.contains("field"), "{message}");
    refused(
        "POST",
        "/v1/processors",
        set(("TYPE_PIPELINE", "from-file"), ".Metadata.a", "b"),
        (400, 9),
    );
    let changed = ok(
        "PUT",
        "/v1/processors/q:field.set",
        Some(json!({"config": {"settings": {"field": ".Metadata.via", "value": "api-2"}}})),
    );
    assert_eq!(changed["config"]["settings"]["value"], "api-2");
    assert_eq!(
        ok("GET", "/v1/pipelines/q", None)["processorIds"],
        json!(["q:field.set"])
    );

    ok("POST", "/v1/pipelines/q/start", None);
    let sink = dir.path().join("q.jsonl");
    wait_until_blocking("records reach the sink", Duration::from_secs(30), || {
        !lines(&sink).is_empty()
    });
    let record: Value = serde_json::from_str(&lines(&sink)[0]).unwrap();
    assert_eq!(record["metadata"]["via"], "api-2", "{record}");
    assert_eq!(record["metadata"]["dest"], "out", "{record}");
    // Running: not changed.
    refused("DELETE", "/v1/processors/q:field.set", json!({}), (400, 9));
    ok("POST", "/v1/pipelines/q/stop", None);
    stop(funnel);

    // After a restart the queue and the processors are there.
    let funnel = spawn(dir.path(), port, &[]);
    wait_healthy(port);
    let dlq = ok("GET", "/v1/pipelines/q/dead-letter-queue", None);
    assert_eq!(dlq["plugin"], "builtin:file");
    let kept = ok("GET", "/v1/pipelines/q", None);
    assert_eq!(
        (
            kept["config"]["name"].as_str(),
            kept["config"]["description"].as_str()
        ),
        (Some("queue"), Some("changed"))
    );
    let processors = ok("GET", "/v1/processors?parent_ids=q,q:out", None);
    let ids = ids_of(&processors["processors"]);
    assert_eq!(ids, ["q:field.set", "q:out:field.set"]);
    ok("DELETE", "/v1/processors/q:field.set", None);
    let (code, _) = json_call(port, "GET", "/v1/processors/q:field.set", None);
    assert_eq!(code, 404);
    stop(funnel);
}

#[test]
fn standalone_plugins_are_listed_by_the_api_and_told_when_their_api_connector_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("lifecycle.jsonl");
    funnel_test_utils::conduit::install_collect_destination(&dir.path().join("connectors"), &calls);
    let port = free_port();
    let funnel = spawn(dir.path(), port, &[]);
    wait_healthy(port);
    let listed = ok_call(port, "GET", "/v1/connectors/plugins?name=collect", None);
    assert_eq!(
        listed["plugins"][0]["name"], "standalone:collect@v0.2.0",
        "{listed}"
    );
    assert_eq!(
        listed["plugins"][0]["destinationParams"]["path"]["validations"][0]["type"],
        "TYPE_REQUIRED",
        "{listed}"
    );

    ok_call(
        port,
        "POST",
        "/v1/pipelines",
        Some(json!({"config": {"name": "lifecycle"}})),
    );
    let source = json!({"type": "TYPE_SOURCE", "plugin": "builtin:generator", "pipelineId": "lifecycle",
        "config": {"name": "gen", "settings": {"format.type": "raw", "format.options.id": "int", "recordCount": "5"}}});
    ok_call(port, "POST", "/v1/connectors", Some(source));
    let destination = json!({"type": "TYPE_DESTINATION", "plugin": "standalone:collect", "pipelineId": "lifecycle",
        "config": {"name": "out", "settings": {"path": "./collected.jsonl"}}});
    ok_call(port, "POST", "/v1/connectors", Some(destination));
    ok_call(port, "POST", "/v1/pipelines/lifecycle/start", None);
    let collected = dir.path().join("collected.jsonl");
    wait_until_blocking("5 records collected", Duration::from_secs(60), || {
        lines(&collected).len() >= 5
    });
    ok_call(
        port,
        "POST",
        "/v1/pipelines/lifecycle/stop",
        Some(json!({"force": false})),
    );
    wait_until_blocking("the pipeline stopped", Duration::from_secs(30), || {
        let (_, p) = json_call(port, "GET", "/v1/pipelines/lifecycle", None);
        p["state"]["status"] == "STATUS_STOPPED"
    });
    ok_call(port, "DELETE", "/v1/connectors/lifecycle:out", None);
    let events: Vec<Value> = lines(&calls)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["event"], "created");
    assert_eq!(events[1]["event"], "deleted");
    assert_eq!(events[1]["config"]["path"], "./collected.jsonl");
    ok_call(port, "DELETE", "/v1/pipelines/lifecycle", None);
    assert_eq!(
        lines(&calls).len(),
        2,
        "a deleted connector is not told again"
    );
    stop(funnel);
}

#[test]
fn every_route_of_a_running_instances_openapi_document_answers_and_its_errors_are_google_rpc_statuses()
 {
    let (_dir, port, funnel) = running_with_file_pipeline();
    let doc = ok_call(port, "GET", "/openapi", None);
    let paths = doc["paths"].as_object().unwrap();
    let mut answered = Vec::new();
    for (path, operations) in paths {
        // An existing pipeline, connector or processor for each parameter.
        let id = if path.starts_with("/v1/connectors/") {
            "from-file:gen"
        } else if path.starts_with("/v1/processors/") {
            "from-file:nope"
        } else {
            "from-file"
        };
        let concrete = path.replace("{id}", id);
        for method in operations.as_object().unwrap().keys() {
            let body = (method != "get" && method != "delete").then(|| json!({}));
            let (code, text) = call(port, &method.to_uppercase(), &concrete, None, body.as_ref())
                .unwrap_or_else(|| panic!("{method} {path}: no answer"));
            assert_ne!(code, 405, "{method} {path}: {text}");
            assert!(code < 500 || code == 501, "{method} {path}: {code} {text}");
            if code >= 400 && path != "/readyz" {
                let status: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{method} {path}: {code} not JSON ({e}): {text}"));
                assert!(
                    status["code"].as_i64().is_some_and(|c| c > 0)
                        && status["message"].as_str().is_some_and(|m| !m.is_empty())
                        && status["details"] == json!([]),
                    "{method} {path}: {code} {text}"
                );
                assert!(
                    !status["message"].as_str().unwrap().starts_with("no route"),
                    "{method} {path}: {text}"
                );
            }
            answered.push(format!("{method} {path}"));
        }
    }
    assert!(answered.len() >= 30, "{answered:?}");
    // A method a route does not serve is a status too.
    let (code, text) = call(port, "PATCH", "/v1/pipelines", None, None).unwrap();
    let status: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((code, status["code"].as_i64()), (405, Some(12)), "{text}");
    stop(funnel);
}

#[test]
fn funnel_run_answers_json_with_the_envelope_once_it_ends_and_exits_with_the_code_of_its_table() {
    let dir = tempfile::tempdir().unwrap();
    process::write_pipelines(
        dir.path(),
        &yaml::file(&[yaml::pipeline(
            "done",
            &[],
            &[
                yaml::generator("gen", 10, 0),
                yaml::file_destination("out", "./done.jsonl"),
            ],
            &[],
        )]),
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--db.type", "memory"];
        args.extend(extra);
        cli(dir.path(), &args)
    };
    // Every pipeline done: what each one did.
    let (code, ran) = run(&["--api.http.address", "", "--pipelines.exit-on-done"]);
    assert_eq!(code, 0, "{ran}");
    assert_eq!(ran["command"], "run");
    let done = &ran["result"]["pipelines"][0];
    assert_eq!(
        (done["id"].as_str(), done["acked"].as_u64()),
        (Some("done"), Some(10)),
        "{ran}"
    );
    assert_eq!(ran["result"]["invalidFiles"], json!([]), "{ran}");

    // Refused before it starts: a runtime failure saying why.
    let address = format!("0.0.0.0:{}", free_port());
    let (code, refused) = run(&["--api.http.address", &address]);
    assert_eq!(code, 1, "{refused}");
    assert_eq!(refused["error"]["kind"], "runtime");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("without a token"),
        "{refused}"
    );

    // An invalid file with --pipelines.exit-on-degraded: 1, naming the file.
    std::fs::write(
        dir.path().join("pipelines/bad.yaml"),
        "version: \"2.2\"\npipelines:\n  - id: bad\n    status: sideways\n",
    )
    .unwrap();
    let (code, degraded) = run(&["--api.http.address", "", "--pipelines.exit-on-degraded"]);
    assert_eq!(code, 1, "{degraded}");
    assert!(
        degraded["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad.yaml:"),
        "{degraded}"
    );
    // With exit-on-done the good one runs, and the bad file fails the run.
    let (code, failed) = run(&["--api.http.address", "", "--pipelines.exit-on-done"]);
    assert_eq!(code, 1, "{failed}");

    // Bad usage: a validation failure.
    let (code, usage) = run(&["--colour", "red"]);
    assert_eq!(code, 2, "{usage}");
    assert_eq!(usage["error"]["kind"], "validation");
}
