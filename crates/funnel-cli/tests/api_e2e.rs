//! End-to-end: a running `funnel run` driven over its HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use funnel_test_utils::wait_until_blocking;
use serde_json::{Value, json};

const FUNNEL: &str = env!("CARGO_BIN_EXE_funnel");

/// A loopback port free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

fn spawn(dir: &Path, port: u16, extra: &[&str]) -> Child {
    Command::new(FUNNEL)
        .current_dir(dir)
        .args(["run", "--api.http.address", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_healthy(port: u16) {
    wait_until_blocking("the API answers", Duration::from_secs(30), || {
        matches!(call(port, "GET", "/healthz", None, None), Some((200, _)))
    });
}

fn stop(child: Child) -> String {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(str::to_owned).collect()
}

const FILE_PIPELINE: &str = r#"version: "2.2"
pipelines:
  - id: from-file
    status: stopped
    connectors:
      - id: gen
        type: source
        plugin: builtin:generator
        settings:
          format.type: raw
          format.options.id: int
          recordCount: "10"
      - id: out
        type: destination
        plugin: builtin:file
        settings:
          path: ./from-file.jsonl
"#;

#[test]
fn a_pipeline_created_through_the_api_runs_stops_and_is_found_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("pipelines/p.yaml"), FILE_PIPELINE).unwrap();
    let port = free_port();
    let funnel = spawn(dir.path(), port, &[]);
    wait_healthy(port);

    let (code, created) = json_call(
        port,
        "POST",
        "/v1/pipelines",
        Some(json!({"config": {"name": "orders", "description": "made over HTTP"}})),
    );
    assert_eq!(code, 200, "{created}");
    assert_eq!(created["id"], "orders");
    assert_eq!(created["state"]["status"], "STATUS_STOPPED");
    assert_eq!(created["provisionedBy"], "PROVISIONED_BY_API");
    let source = json!({"type": "TYPE_SOURCE", "plugin": "builtin:generator", "pipelineId": "orders",
        "config": {"name": "gen", "settings": {"format.type": "raw", "format.options.id": "int", "rate": "2000"}}});
    let (code, body) = json_call(port, "POST", "/v1/connectors", Some(source));
    assert_eq!(code, 200, "{body}");
    // A setting the plugin does not have is refused with its name.
    let bad = json!({"type": "TYPE_DESTINATION", "plugin": "builtin:file", "pipelineId": "orders",
        "config": {"name": "out", "settings": {"path": "./orders.jsonl", "colour": "red"}}});
    let (code, body) = json_call(port, "POST", "/v1/connectors", Some(bad));
    assert_eq!((code, body["code"].as_i64()), (400, Some(3)), "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    let destination = json!({"type": "TYPE_DESTINATION", "plugin": "builtin:file", "pipelineId": "orders",
        "config": {"name": "out", "settings": {"path": "./orders.jsonl"}}});
    let (code, body) = json_call(port, "POST", "/v1/connectors", Some(destination));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["id"], "orders:out");
    assert_eq!(body["type"], "TYPE_DESTINATION");

    let (code, body) = json_call(port, "POST", "/v1/pipelines/orders/start", None);
    assert_eq!(code, 200, "{body}");
    let out = dir.path().join("orders.jsonl");
    wait_until_blocking("records reach the sink", Duration::from_secs(30), || {
        lines(&out).len() >= 500
    });
    let (_, running) = json_call(port, "GET", "/v1/pipelines/orders", None);
    assert_eq!(running["state"]["status"], "STATUS_RUNNING");
    // Running: neither deleted nor changed.
    let (code, body) = json_call(port, "DELETE", "/v1/pipelines/orders", None);
    assert_eq!((code, body["code"].as_i64()), (400, Some(9)), "{body}");

    let (code, body) = json_call(
        port,
        "POST",
        "/v1/pipelines/orders/stop",
        Some(json!({"force": false})),
    );
    assert_eq!(code, 200, "{body}");
    let (_, stopped) = json_call(port, "GET", "/v1/pipelines/orders", None);
    assert_eq!(stopped["state"]["status"], "STATUS_STOPPED");
    let written = lines(&out).len();
    assert!(u64::try_from(written).unwrap() <= stopped["recordsAcked"].as_u64().unwrap());

    // The destination now writes elsewhere.
    let update = json!({"config": {"name": "out", "settings": {"path": "./orders-2.jsonl"}}});
    let (code, body) = json_call(port, "PUT", "/v1/connectors/orders:out", Some(update));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["config"]["settings"]["path"], "./orders-2.jsonl");

    // A file pipeline is read-only.
    let (code, body) = json_call(port, "DELETE", "/v1/pipelines/from-file", None);
    assert_eq!((code, body["code"].as_i64()), (400, Some(9)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("file"), "{body}");
    let (code, body) = json_call(port, "DELETE", "/v1/connectors/from-file:out", None);
    assert_eq!((code, body["code"].as_i64()), (400, Some(9)), "{body}");
    let (code, body) = json_call(port, "GET", "/v1/pipelines/nope", None);
    assert_eq!((code, body["code"].as_i64()), (404, Some(5)), "{body}");
    stop(funnel);

    // After a restart it is there, stopped, with its changed connector; started, it
    // goes on from its committed position into the new file.
    let funnel = spawn(dir.path(), port, &[]);
    wait_healthy(port);
    let (code, found) = json_call(port, "GET", "/v1/pipelines/orders", None);
    assert_eq!(code, 200, "{found}");
    assert_eq!(found["state"]["status"], "STATUS_STOPPED");
    assert_eq!(found["config"]["description"], "made over HTTP");
    assert_eq!(found["connectorIds"], json!(["orders:gen", "orders:out"]));
    let (_, list) = json_call(port, "GET", "/v1/pipelines", None);
    let ids: Vec<&str> = list["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["from-file", "orders"]);
    let (code, body) = json_call(port, "POST", "/v1/pipelines/orders/start", None);
    assert_eq!(code, 200, "{body}");
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
    let (code, body) = json_call(
        port,
        "POST",
        "/v1/pipelines/orders/stop",
        Some(json!({"force": true})),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = json_call(port, "DELETE", "/v1/pipelines/orders", None);
    assert_eq!(code, 200, "{body}");
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
    let out = Command::new(FUNNEL)
        .current_dir(dir.path())
        .args(["run", "--api.http.address", &address, "--db.type", "memory"])
        .env_remove("FUNNEL_API_AUTH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
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
        let mut command = Command::new(FUNNEL);
        command
            .current_dir(dir.path())
            .args(["run", "--api.http.address", &address, "--db.type", "memory"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
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
