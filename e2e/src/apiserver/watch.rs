//! Watch streams of the stand-in: newline-delimited JSON events from a resourceVersion on,
//! bookmarks when asked for, closed after `timeoutSeconds` or when the test drops every watch.
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::store::{Change, Kind};

/// Which objects a request selects (its field selector).
pub type Matcher = Box<dyn Fn(&Value) -> bool + Send + Sync>;

/// What one watch request asked for.
pub struct WatchRequest {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub matches: Matcher,
    pub metadata_only: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
}

/// Streams `backlog`, then live changes, until timeout, a drop, or the client leaving.
pub fn stream(
    req: WatchRequest,
    backlog: Vec<Change>,
    live: broadcast::Receiver<Change>,
    drops: watch::Receiver<u64>,
    rv: u64,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(pump(req, backlog, live, drops, rv, tx));
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response()
}

async fn pump(
    req: WatchRequest,
    backlog: Vec<Change>,
    mut live: broadcast::Receiver<Change>,
    mut drops: watch::Receiver<u64>,
    mut rv: u64,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
) {
    drops.mark_unchanged();
    for change in backlog {
        rv = rv.max(change.rv);
        if !send(&req, &change, &tx).await {
            return;
        }
    }
    let deadline = tokio::time::sleep(req.timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = drops.changed() => return,
            got = live.recv() => match got {
                Ok(change) if change.kind == req.kind && change.rv > rv => {
                    rv = change.rv;
                    if !send(&req, &change, &tx).await {
                        return;
                    }
                }
                Ok(_) => {}
                // A watcher too slow for the channel is closed; it resumes from its last event.
                Err(_) => return,
            },
        }
    }
    if req.bookmarks {
        // The real server sends a bookmark just before it closes a watch at its timeout.
        let kind = if req.metadata_only {
            "PartialObjectMetadata"
        } else {
            req.kind.kind()
        };
        let object = json!({"kind": kind, "apiVersion": api_version(&req), "metadata": {"resourceVersion": rv.to_string()}});
        let _ = tx
            .send(Ok(line(&json!({"type": "BOOKMARK", "object": object}))))
            .await;
    }
}

async fn send(
    req: &WatchRequest,
    change: &Change,
    tx: &mpsc::Sender<Result<Bytes, Infallible>>,
) -> bool {
    let ns = change
        .object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    if req
        .namespace
        .as_deref()
        .is_some_and(|want| Some(want) != ns)
        || !(req.matches)(&change.object)
    {
        return true;
    }
    let object = if req.metadata_only {
        partial(&change.object)
    } else {
        change.object.clone()
    };
    tx.send(Ok(line(
        &json!({"type": change.kind_of_change, "object": object}),
    )))
    .await
    .is_ok()
}

fn api_version(req: &WatchRequest) -> &'static str {
    if req.metadata_only {
        "meta.k8s.io/v1"
    } else {
        req.kind.api_version()
    }
}

fn line(v: &Value) -> Bytes {
    let mut text = v.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// The `PartialObjectMetadata` form of an object (what metadata-only clients ask for).
pub fn partial(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// The 410 Gone event a watch from a compacted resourceVersion gets.
pub fn expired(rv: u64, oldest: u64) -> Response {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {rv} ({oldest})"), "reason": "Expired", "code": 410,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        line(&json!({"type": "ERROR", "object": status})),
    )
        .into_response()
}
