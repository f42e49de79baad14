//! Fault injection for the stand-in: per method and path, answer with an error (as the real API
//! server words it), or answer late.
use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What a matching request gets instead of (or before) its normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A `Status` error with this code (404 NotFound, 409 Conflict, 500 InternalError, ...).
    Status(u16),
    /// 429 with `Retry-After: <seconds>` and priority-and-fairness's plain-text body.
    TooManyRequests { retry_after_seconds: u64 },
    /// The normal answer, this much later.
    Delay(Duration),
    /// Another client changes the object first (a new resourceVersion, label
    /// `standin/concurrent-writes` counting up), then the request is served normally: a write
    /// carrying the old resourceVersion meets a real 409.
    ConcurrentWrite,
}

/// One rule: requests with this method and path (no query) meet `action`, `times` times (or
/// always when `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub method: Method,
    pub path: String,
    pub action: Action,
    pub times: Option<u32>,
}

impl Fault {
    pub fn new(method: Method, path: impl Into<String>, action: Action) -> Self {
        Self {
            method,
            path: path.into(),
            action,
            times: None,
        }
    }

    /// Only the first `n` matching requests meet the fault.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
}

/// The first rule matching the request, used up by one.
pub fn take(rules: &mut Vec<Fault>, method: &Method, path: &str) -> Option<Action> {
    let at = rules
        .iter()
        .position(|f| f.method == method && f.path == path)?;
    let action = rules[at].action.clone();
    match &mut rules[at].times {
        Some(1) => {
            rules.remove(at);
        }
        Some(n) => *n -= 1,
        None => {}
    }
    Some(action)
}

/// A `Status` error response as the API server sends it.
pub fn status(code: u16, message: &str) -> Response {
    let reason = match code {
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        400 => "BadRequest",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "Unknown",
    };
    status_with(code, reason, message, None)
}

/// A `Status` error response with this reason and `details` (name, kind, group) when given.
pub fn status_with(
    code: u16,
    reason: &str,
    message: &str,
    details: Option<serde_json::Value>,
) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// What the API server's priority-and-fairness filter answers when it sheds load.
pub fn too_many_requests(retry_after_seconds: u64) -> Response {
    let mut res = (
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests, please try again later.\n",
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_by_method_and_path_and_run_out() {
        let mut rules = vec![Fault::new(Method::PATCH, "/p", Action::Status(409)).times(2)];
        assert_eq!(take(&mut rules, &Method::GET, "/p"), None);
        assert_eq!(
            take(&mut rules, &Method::PATCH, "/p"),
            Some(Action::Status(409))
        );
        assert_eq!(
            take(&mut rules, &Method::PATCH, "/p"),
            Some(Action::Status(409))
        );
        assert_eq!(take(&mut rules, &Method::PATCH, "/p"), None);
    }
}
