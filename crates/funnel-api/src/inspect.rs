//! The inspector's WebSockets: `GET /v1/connectors/{id}/inspect`,
//! `/v1/processors/{id}/inspect-in` and `/v1/processors/{id}/inspect-out` upgrade to a
//! WebSocket that carries one text message per record passing that point, each the
//! record as OpenCDC JSON.
//!
//! Sampled and lossy by design: each session buffers a bounded number of records;
//! when the client reads slower than the pipeline runs, records are dropped (and
//! counted in `funnel_inspector_dropped_records_total`), and the pipeline never
//! waits. An unknown component is a 404 before any upgrade. With a token, a browser
//! (which cannot set headers on a WebSocket) may send it as `?access_token=`.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::error::Status;
use crate::{InspectPoint, Inspection, Pipelines};

type Api = Arc<dyn Pipelines>;

/// Streams the records a connector reads (a source) or is given to write (a
/// destination).
#[utoipa::path(get, path = "/v1/connectors/{id}/inspect", params(("id" = String, Path)),
    responses((status = 101, description = "a WebSocket carrying the records the connector reads or writes, one OpenCDC JSON text message each"),
        (status = "default", body = Status)))]
pub(crate) async fn connector(
    State(api): State<Api>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    open(&api, &id, InspectPoint::Connector, ws)
}

/// Streams the records going into a processor.
#[utoipa::path(get, path = "/v1/processors/{id}/inspect-in", params(("id" = String, Path)),
    responses((status = 101, description = "a WebSocket carrying the records going into the processor, one OpenCDC JSON text message each"),
        (status = "default", body = Status)))]
pub(crate) async fn processor_in(
    State(api): State<Api>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    open(&api, &id, InspectPoint::ProcessorIn, ws)
}

/// Streams the records a processor hands on.
#[utoipa::path(get, path = "/v1/processors/{id}/inspect-out", params(("id" = String, Path)),
    responses((status = 101, description = "a WebSocket carrying the records the processor hands on, one OpenCDC JSON text message each"),
        (status = "default", body = Status)))]
pub(crate) async fn processor_out(
    State(api): State<Api>,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    open(&api, &id, InspectPoint::ProcessorOut, ws)
}

fn open(api: &Api, id: &str, point: InspectPoint, ws: WebSocketUpgrade) -> Response {
    match api.inspect(id, point) {
        Ok(session) => ws.on_upgrade(move |socket| pump(socket, session)),
        Err(status) => status.into_response(),
    }
}

/// Sends each record of `session` until the client goes away or the session ends.
async fn pump(mut socket: WebSocket, mut session: Box<dyn Inspection>) {
    loop {
        tokio::select! {
            record = session.next() => {
                let Some(json) = record else { break };
                if socket.send(Message::Text(json.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_) | Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
