//! The record inspector, both ends: the sessions `funnel run` opens for the API's
//! inspector WebSockets, and `funnel inspect`, which watches one over the API and
//! prints the records.

use std::io::{IsTerminal, Write};

use funnel_api::{BoxFuture, InspectPoint, Inspection, Pipelines, Status};
use funnel_core::inspect::{Point, SESSION_BUFFER, Subscription, inspector};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

use crate::output::{Done, Failure, Outcome, View};
use crate::remote::{Remote, encode};

/// `funnel inspect`: watch the records passing a connector or a processor.
#[derive(clap::Args)]
pub(crate) struct InspectArgs {
    /// The connector's ID (`pipeline:connector`) or the processor's
    /// (`pipeline:processor`, `pipeline:connector:processor`), as the API lists them.
    component_id: String,
    /// Stop after this many records (0: watch until interrupted).
    #[arg(long, default_value_t = 0)]
    limit: u64,
    /// For a processor: watch the records going in instead of those coming out.
    #[arg(long = "in")]
    input: bool,
    // The running funnel's API: `--api.address` (or `--api.http.address`) and its
    // token.
    #[command(flatten)]
    remote: Remote,
}

/// Opens a session for the API: `id` must be a connector (for
/// [`InspectPoint::Connector`]) or a processor (otherwise) that `pipelines` knows.
pub(crate) fn open(
    pipelines: &dyn Pipelines,
    id: &str,
    point: InspectPoint,
) -> Result<Box<dyn Inspection>, Status> {
    let (known, what, point) = match point {
        InspectPoint::Connector => (
            pipelines.connectors().iter().any(|c| c.id == id),
            "connector",
            Point::Connector,
        ),
        InspectPoint::ProcessorIn => (
            pipelines.processors().iter().any(|p| p.id == id),
            "processor",
            Point::ProcessorIn,
        ),
        InspectPoint::ProcessorOut => (
            pipelines.processors().iter().any(|p| p.id == id),
            "processor",
            Point::ProcessorOut,
        ),
    };
    if !known {
        return Err(Status::not_found(format!("{what} {id:?} not found")));
    }
    Ok(Box::new(Session(inspector().subscribe(
        id,
        point,
        SESSION_BUFFER,
    ))))
}

/// A session, its records encoded as OpenCDC JSON on the API's side.
struct Session(Subscription);

impl Inspection for Session {
    fn next(&mut self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            let record = self.0.recv().await?;
            Some(String::from_utf8_lossy(&record.to_json()).into_owned())
        })
    }
}

/// Runs `funnel inspect` until `--limit` records, the end of the session or an
/// interrupt. Without `json` each record is printed as it comes (pretty JSON on a
/// terminal, one line each otherwise); with it the records are the envelope's
/// `result.records`. Fails as every command does: 3 when the API cannot be reached or
/// wants a token, 1 when the component is unknown or the session breaks.
pub(crate) fn inspect(args: &InspectArgs, json: bool) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::environment(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(watch(args, json))
}

async fn watch(args: &InspectArgs, json: bool) -> Outcome {
    let token = args.remote.token()?;
    let address = args.remote.host()?;
    let id = encode(&args.component_id);
    let base = format!("ws://{address}");
    let mut candidates = vec![format!("{base}/v1/connectors/{id}/inspect")];
    let side = if args.input {
        "inspect-in"
    } else {
        "inspect-out"
    };
    candidates.push(format!("{base}/v1/processors/{id}/{side}"));
    let mut socket = None;
    for url in &candidates {
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Failure::validation(format!("{url} is not a URL: {e}")))?;
        if let Some(token) = &token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Failure::validation("the API token holds characters a header cannot")
            })?;
            request.headers_mut().insert("authorization", value);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((s, _)) => {
                socket = Some(s);
                break;
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response))
                if response.status() == StatusCode::NOT_FOUND =>
            {
                continue;
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response))
                if response.status() == StatusCode::UNAUTHORIZED =>
            {
                return Err(Failure::environment(format!(
                    "the API at {address} needs a token: pass --api.auth.token or set \
                     FUNNEL_API_AUTH_TOKEN"
                )));
            }
            Err(e) => {
                return Err(Failure::environment(format!(
                    "cannot reach the API at {address}: {e}"
                )));
            }
        }
    }
    let Some(mut socket) = socket else {
        return Err(Failure::runtime(format!(
            "no connector or processor {:?}: `GET /v1/connectors` and `GET /v1/processors` \
             list the IDs",
            args.component_id
        )));
    };
    let pretty = !json && std::io::stdout().is_terminal();
    let mut stdout = std::io::stdout().lock();
    let mut records = Vec::new();
    let mut printed = 0u64;
    loop {
        let message = tokio::select! {
            m = socket.next() => m,
            _ = tokio::signal::ctrl_c() => break,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return Err(Failure::runtime(format!(
                    "the inspector connection failed: {e}"
                )));
            }
        };
        if json {
            records.push(
                serde_json::from_str::<serde_json::Value>(text.as_str())
                    .unwrap_or_else(|_| serde_json::Value::String(text.to_string())),
            );
        } else {
            let line = if pretty {
                serde_json::from_str::<serde_json::Value>(text.as_str())
                    .and_then(|v| serde_json::to_string_pretty(&v))
                    .unwrap_or_else(|_| text.to_string())
            } else {
                text.to_string()
            };
            if writeln!(stdout, "{line}").is_err() {
                // The reader went away (a closed pipe): done.
                break;
            }
        }
        printed += 1;
        if args.limit > 0 && printed >= args.limit {
            break;
        }
    }
    let _ = stdout.flush();
    let _ = socket.close(None).await;
    Ok(Done::new(
        format!("{printed} record(s) of {}", args.component_id),
        serde_json::json!({ "records": records }),
        View::Streamed,
    ))
}
