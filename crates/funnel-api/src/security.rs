//! Who may call the API: the bearer token, the request body limit and CORS.
//!
//! With a token set, every request but the probes (`/healthz`, `/readyz`) must carry
//! `Authorization: Bearer <token>`; the comparison takes the same time whatever the
//! token sent. Cross-origin requests are refused (no CORS headers) unless their origin
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

    /// The origin to echo in `Access-Control-Allow-Origin`, when `origin` is allowed.
    fn allowed_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let text = origin.to_str().ok()?;
        self.cors_allowed_origins
            .iter()
            .any(|o| o == "*" || o == text)
            .then(|| origin.clone())
    }
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
    if !is_probe(request.uri().path()) && !security.authorized(request.headers()) {
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
}
