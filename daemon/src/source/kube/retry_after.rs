//! Carries an error response's `Retry-After` header into its `Status` body
//! (`details.retryAfterSeconds`), because kube-rs turns error responses into a `Status` and drops
//! the headers, and the API server's throttling (429 from priority-and-fairness, 503) sends the
//! delay only in the header, often with a plain-text body.
use bytes::Bytes;
use http::{Response, StatusCode, header::RETRY_AFTER};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::BoxError;

use ::kube::client::DynBody;

/// Rewrites the body of an error response that has a `Retry-After` in seconds.
pub async fn carry(res: Response<Box<DynBody>>) -> Result<Response<Box<DynBody>>, BoxError> {
    let Some(seconds) = retry_after_seconds(&res) else {
        return Ok(res);
    };
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let status = with_retry_after(parts.status, &bytes, seconds);
    let body: Box<DynBody> =
        Box::new(Full::new(Bytes::from(status)).map_err(|never| match never {}));
    Ok(Response::from_parts(parts, body))
}

fn retry_after_seconds<B>(res: &Response<B>) -> Option<u64> {
    if !(res.status().is_client_error() || res.status().is_server_error()) {
        return None;
    }
    // An HTTP-date Retry-After is not used by the API server; only delta-seconds is read.
    res.headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The body as a `Status` with `details.retryAfterSeconds` set, keeping what the server said.
fn with_retry_after(code: StatusCode, body: &[u8], seconds: u64) -> Vec<u8> {
    let mut status = match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) if v.get("kind").and_then(Value::as_str) == Some("Status") => v,
        _ => json!({
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": String::from_utf8_lossy(body).trim(),
            "reason": code.canonical_reason().unwrap_or_default().replace(' ', ""),
            "code": code.as_u16(),
        }),
    };
    if let Some(obj) = status.as_object_mut() {
        let details = obj.entry("details").or_insert_with(|| json!({}));
        if let Some(d) = details.as_object_mut() {
            d.entry("retryAfterSeconds").or_insert(json!(seconds));
        }
    }
    serde_json::to_vec(&status).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_and_status_bodies_get_the_delay() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"Too many requests, please try again later.\n",
                "Too many requests, please try again later.",
            ),
            (
                br#"{"kind":"Status","code":429,"message":"slow down"}"#,
                "slow down",
            ),
        ];
        for (body, message) in cases {
            let out: Value =
                serde_json::from_slice(&with_retry_after(StatusCode::TOO_MANY_REQUESTS, body, 7))
                    .unwrap();
            assert_eq!(out["details"]["retryAfterSeconds"], json!(7));
            assert_eq!(out["message"], json!(message));
            assert_eq!(out["code"], json!(429));
        }
    }

    #[test]
    fn only_error_responses_with_seconds_are_touched() {
        let ok = Response::builder()
            .status(200)
            .header(RETRY_AFTER, "3")
            .body(())
            .unwrap();
        assert_eq!(retry_after_seconds(&ok), None);
        let date = Response::builder()
            .status(503)
            .header(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT")
            .body(())
            .unwrap();
        assert_eq!(retry_after_seconds(&date), None);
        let secs = Response::builder()
            .status(429)
            .header(RETRY_AFTER, "2")
            .body(())
            .unwrap();
        assert_eq!(retry_after_seconds(&secs), Some(2));
    }
}
