//! Who may call the API: the bearer token, the request body limit and CORS.
//!
//! With a token set, every request but the probes (`/healthz`, `/readyz`) and the
//! dashboard's page and assets must carry
//! `Authorization: Bearer <token>`; the comparison takes the same time whatever the
//! token sent. A WebSocket upgrade may carry it as `?access_token=<token>` instead,
//! since a browser cannot set headers on a WebSocket. Cross-origin requests are refused (no CORS headers) unless their origin
//! is allowed.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::Status;

/// The largest request body the API reads, in bytes (1 MiB); a larger one gets 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How the API is protected.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// The bearer token every request but the probes must carry; `None` lets every
    /// request through (only allowed on a loopback address).
    pub token: Option<String>,
    /// Origins allowed to call the API from a browser (`*` for any); empty allows
    /// none.
    pub cors_allowed_origins: Vec<String>,
}

impl Security {
    /// Whether `headers` carry the token (always true without one).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        bool::from(sent.as_bytes().ct_eq(token.as_bytes()))
    }

    /// Whether `request` carries the token: in its `Authorization` header, or (for a
    /// WebSocket upgrade only) in its `access_token` query parameter.
    pub(crate) fn authorized_request(&self, request: &Request) -> bool {
        if self.authorized(request.headers()) {
            return true;
        }
        let Some(token) = &self.token else {
            return true;
        };
        let upgrade = request
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let sent = request
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("access_token="))
            .map(percent_decode);
        match (upgrade, sent) {
            (true, Some(sent)) => bool::from(sent.as_bytes().ct_eq(token.as_bytes())),
            _ => false,
        }
    }

    /// The origin to echo in `Access-Control-Allow-Origin`, when `origin` is allowed.
    fn allowed_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let text = origin.to_str().ok()?;
        self.cors_allowed_origins
            .iter()
            .any(|o| o == "*" || o == text)
            .then(|| origin.clone())
    }
}

/// `%XX` escapes and `+` decoded; an invalid escape is kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Paths that answer without a token: the liveness and readiness probes.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// Refuses a request without the token (401), answers CORS preflights and adds the
/// CORS headers for allowed origins.
pub(crate) async fn guard(
    State(security): State<std::sync::Arc<Security>>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| security.allowed_origin(o));
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Some(origin) = origin {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, PUT, DELETE"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        return response;
    }
    let path = request.uri().path();
    let public = is_probe(path) || crate::ui::is_dashboard(path);
    if !public && !security.authorized_request(&request) {
        let mut response = Status::unauthenticated(
            "this API needs a token: send the header `Authorization: Bearer <token>` with \
             the token funnel was started with (--api.auth.token)",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let mut response = next.run(request).await;
    if let Some(origin) = origin {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token(token: &str) -> Security {
        Security {
            token: Some(token.into()),
            cors_allowed_origins: Vec::new(),
        }
    }

    fn bearer(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        let s = with_token("s3cret-token");
        assert!(s.authorized(&bearer("Bearer s3cret-token")));
        assert!(!s.authorized(&bearer("Bearer s3cret-toke")));
        assert!(!s.authorized(&bearer("Bearer s3cret-tokenX")));
        assert!(!s.authorized(&bearer("s3cret-token")));
        assert!(!s.authorized(&HeaderMap::new()));
        assert!(Security::default().authorized(&HeaderMap::new()));
    }

    fn request(uri: &str, websocket: bool) -> Request {
        let mut builder = Request::builder().uri(uri);
        if websocket {
            builder = builder.header(header::UPGRADE, "websocket");
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn a_websocket_upgrade_may_carry_the_token_in_its_query_and_nothing_else_may() {
        let s = with_token("s3cret/token");
        assert!(s.authorized_request(&request("/x?access_token=s3cret%2Ftoken", true)));
        assert!(s.authorized_request(&request("/x?a=1&access_token=s3cret/token", true)));
        assert!(!s.authorized_request(&request("/x?access_token=s3cret", true)));
        assert!(!s.authorized_request(&request("/x?access_token=s3cret/token", false)));
        assert!(!s.authorized_request(&request("/x", true)));
    }
}
