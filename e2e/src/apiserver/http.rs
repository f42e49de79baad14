//! The stand-in's HTTP side: the real REST paths of pods and NADs (get, list, watch, merge
//! patch, update; pods also `pods/<name>/status`), `resource.k8s.io` ResourceClaims (get, list)
//! and ResourceSlices (get, list, watch) at the one version the test serves, events (create),
//! CertificateSigningRequests (create, get, list), discovery, fault injection before each
//! answer, then RBAC.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch as signal;

use super::csr::Csrs;
use super::faults::{self, Action, Fault};
use super::rbac::{Attributes, Rbac};
use super::store::{Kind, Store, merge_patch, str_at};
use super::watch::{self, Matcher, WatchRequest};

/// Everything the handler and the test-facing `ApiServer` share.
pub struct Shared {
    pub store: Mutex<Store>,
    pub faults: Mutex<Vec<Fault>>,
    pub requests: Mutex<Vec<(Method, String)>>,
    /// Events POSTed to `/api/v1/namespaces/{ns}/events`, as received.
    pub events: Mutex<Vec<Value>>,
    /// Bumped to close every open watch.
    pub drops: signal::Sender<u64>,
    pub csrs: Mutex<Csrs>,
    /// Each request's `Authorization` header (method, path, header), to tell credentials apart.
    pub authorizations: Mutex<Vec<(Method, String, Option<String>)>>,
    /// What requests are authorized to do.
    pub rbac: Mutex<Rbac>,
    /// Requests RBAC refused (method, path), oldest first.
    pub denied: Mutex<Vec<(Method, String)>>,
    /// The `resource.k8s.io` version served (`v1` unless a test picks another); `None`: the
    /// group is not served (a cluster without DRA).
    pub dra_version: Mutex<Option<String>>,
}

/// The DRA API group.
pub const DRA_GROUP: &str = "resource.k8s.io";

/// Locks, ignoring poisoning: a panicking test thread must not wedge the server for the others.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Target {
    Version,
    Discovery(&'static str),
    /// `/apis/resource.k8s.io`.
    DraGroup,
    Collection(Kind, Option<String>),
    Object(Kind, String, String),
    /// `pods/<name>/status`.
    PodStatus(String, String),
    Events(String),
    Csrs,
    Csr(String),
}

fn route(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let nad = "network-attachment-definitions";
    Some(match segs.as_slice() {
        ["version"] => Target::Version,
        ["api"] => Target::Discovery("api"),
        ["apis"] => Target::Discovery("apis"),
        ["api", "v1", "pods"] => Target::Collection(Kind::Pod, None),
        ["api", "v1", "namespaces", ns, "pods"] => {
            Target::Collection(Kind::Pod, Some((*ns).into()))
        }
        ["api", "v1", "namespaces", ns, "events"] => Target::Events((*ns).into()),
        ["api", "v1", "namespaces", ns, "pods", name] => {
            Target::Object(Kind::Pod, (*ns).into(), (*name).into())
        }
        ["api", "v1", "namespaces", ns, "pods", name, "status"] => {
            Target::PodStatus((*ns).into(), (*name).into())
        }
        [
            "apis",
            "certificates.k8s.io",
            "v1",
            "certificatesigningrequests",
        ] => Target::Csrs,
        [
            "apis",
            "certificates.k8s.io",
            "v1",
            "certificatesigningrequests",
            name,
        ] => Target::Csr((*name).into()),
        ["apis", g] if *g == DRA_GROUP => Target::DraGroup,
        ["apis", g, _, "resourceclaims"] if *g == DRA_GROUP => {
            Target::Collection(Kind::ResourceClaim, None)
        }
        ["apis", g, _, "namespaces", ns, "resourceclaims"] if *g == DRA_GROUP => {
            Target::Collection(Kind::ResourceClaim, Some((*ns).into()))
        }
        ["apis", g, _, "namespaces", ns, "resourceclaims", name] if *g == DRA_GROUP => {
            Target::Object(Kind::ResourceClaim, (*ns).into(), (*name).into())
        }
        ["apis", g, _, "resourceslices"] if *g == DRA_GROUP => {
            Target::Collection(Kind::ResourceSlice, None)
        }
        ["apis", g, _, "resourceslices", name] if *g == DRA_GROUP => {
            Target::Object(Kind::ResourceSlice, String::new(), (*name).into())
        }
        ["apis", "k8s.cni.cncf.io", "v1", r] if *r == nad => Target::Collection(Kind::Nad, None),
        ["apis", "k8s.cni.cncf.io", "v1", "namespaces", ns, r] if *r == nad => {
            Target::Collection(Kind::Nad, Some((*ns).into()))
        }
        ["apis", "k8s.cni.cncf.io", "v1", "namespaces", ns, r, name] if *r == nad => {
            Target::Object(Kind::Nad, (*ns).into(), (*name).into())
        }
        _ => return None,
    })
}

pub async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    lock(&s.requests).push((method.clone(), path.clone()));
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|a| a.to_str().ok())
        .map(str::to_owned);
    lock(&s.authorizations).push((method.clone(), path.clone(), authorization));
    let fault = faults::take(&mut lock(&s.faults), &method, &path);
    match fault {
        Some(Action::Delay(d)) => tokio::time::sleep(d).await,
        Some(Action::Status(code)) => {
            return faults::status(code, &format!("injected fault {code} on {method} {path}"));
        }
        Some(Action::TooManyRequests {
            retry_after_seconds,
        }) => return faults::too_many_requests(retry_after_seconds),
        Some(Action::ConcurrentWrite) => concurrent_write(&s, route(&path).as_ref()),
        None => {}
    }
    let dra_version = lock(&s.dra_version).clone();
    let target = route(&path).filter(|_| dra_served(&path, dra_version.as_deref()));
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    if let Some(attrs) = target
        .as_ref()
        .and_then(|t| attributes(t, &method, watching))
        && let Some(refused) = lock(&s.rbac).check(&attrs)
    {
        lock(&s.denied).push((method.clone(), path.clone()));
        return refused;
    }
    let metadata_only = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or_default();
    match (target, &method) {
        (Some(Target::Version), &Method::GET) => json_response(version()),
        (Some(Target::Discovery(which)), &Method::GET) => {
            json_response(discovery(which, dra_version.as_deref()))
        }
        (Some(Target::DraGroup), &Method::GET) => match dra_version.as_deref() {
            Some(v) => json_response(dra_group(v)),
            None => faults::status(404, "the server could not find the requested resource"),
        },
        (Some(Target::Collection(kind, ns)), &Method::GET) => {
            collection(&s, kind, ns, &query, metadata_only)
        }
        (Some(Target::Object(kind, ns, name)), &Method::GET) => {
            match lock(&s.store).get(kind, &ns, &name) {
                Some(obj) => json_response(shape(obj, metadata_only)),
                None => not_found(kind, &name),
            }
        }
        (Some(Target::Object(kind, ns, name)), &Method::PATCH) => {
            patch(&s, kind, &ns, &name, content_type, &body, metadata_only)
        }
        (Some(Target::Object(kind, ns, name)), &Method::PUT) => {
            update(&s, kind, &ns, &name, &body, Part::Object)
        }
        (Some(Target::PodStatus(ns, name)), &Method::GET) => {
            match lock(&s.store).get(Kind::Pod, &ns, &name) {
                Some(obj) => json_response(obj),
                None => not_found(Kind::Pod, &name),
            }
        }
        (Some(Target::PodStatus(ns, name)), &Method::PUT) => {
            update(&s, Kind::Pod, &ns, &name, &body, Part::Status)
        }
        (Some(Target::Events(ns)), &Method::POST) => create_event(&s, &ns, &body),
        (Some(Target::Csrs), &Method::POST) => create_csr(&s, &body),
        (Some(Target::Csrs), &Method::GET) => json_response(json!({
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequestList",
            "metadata": {}, "items": lock(&s.csrs).list(),
        })),
        (Some(Target::Csr(name)), &Method::GET) => match lock(&s.csrs).get(&name) {
            Ok(csr) => json_response(csr),
            Err(e) => faults::status(e.code(), &e.to_string()),
        },
        (Some(_), _) => faults::status(
            405,
            &format!("{method} not supported by the stand-in on {path}"),
        ),
        (None, _) => faults::status(
            404,
            &format!("the server could not find the requested resource ({path})"),
        ),
    }
}

fn collection(
    s: &Shared,
    kind: Kind,
    ns: Option<String>,
    q: &HashMap<String, String>,
    metadata_only: bool,
) -> Response {
    if q.get("labelSelector").is_some_and(|l| !l.is_empty()) {
        return faults::status(400, "labelSelector is not supported by the stand-in");
    }
    let matches = match field_selector(
        q.get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    ) {
        Ok(m) => m,
        Err(e) => return faults::status(400, &e),
    };
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let req = WatchRequest {
            kind,
            namespace: ns,
            matches,
            metadata_only,
            bookmarks: q.get("allowWatchBookmarks").is_some_and(|b| b == "true"),
            timeout: Duration::from_secs(
                q.get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(1800),
            ),
        };
        return start_watch(
            s,
            req,
            q.get("resourceVersion")
                .map(String::as_str)
                .unwrap_or_default(),
        );
    }
    let store = lock(&s.store);
    let items: Vec<Value> = store
        .list(kind, ns.as_deref())
        .into_iter()
        .filter(|o| matches(o))
        .map(|o| shape(o, metadata_only))
        .collect();
    let (api_version, list_kind) = if metadata_only {
        (
            "meta.k8s.io/v1".to_owned(),
            "PartialObjectMetadataList".to_owned(),
        )
    } else {
        let version = match (kind, lock(&s.dra_version).as_deref()) {
            (Kind::ResourceClaim | Kind::ResourceSlice, Some(v)) => format!("{DRA_GROUP}/{v}"),
            _ => kind.api_version().to_owned(),
        };
        (version, format!("{}List", kind.kind()))
    };
    json_response(json!({
        "apiVersion": api_version, "kind": list_kind,
        "metadata": {"resourceVersion": store.resource_version().to_string()},
        "items": items,
    }))
}

fn start_watch(s: &Shared, req: WatchRequest, rv: &str) -> Response {
    let drops = s.drops.subscribe();
    let store = lock(&s.store);
    let current = store.resource_version();
    match rv.parse::<u64>() {
        Ok(rv) if rv > 0 => match store.watch_from(req.kind, rv) {
            Some((backlog, live)) => watch::stream(req, backlog, live, drops, rv),
            None => watch::expired(rv, current),
        },
        _ => {
            let (added, live) = store.snapshot(req.kind);
            watch::stream(req, added, live, drops, current)
        }
    }
}

fn patch(
    s: &Shared,
    kind: Kind,
    ns: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
    metadata_only: bool,
) -> Response {
    if !content_type.starts_with("application/merge-patch+json") {
        return faults::status(
            415,
            &format!("the stand-in only applies merge patches, not {content_type:?}"),
        );
    }
    let patch: Value = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return faults::status(400, &format!("decoding the patch: {e}")),
    };
    let mut store = lock(&s.store);
    let Some(mut obj) = store.get(kind, ns, name) else {
        return not_found(kind, name);
    };
    merge_patch(&mut obj, &patch);
    if str_at(&obj, "/metadata/name") != Some(name)
        || str_at(&obj, "/metadata/namespace") != Some(ns)
    {
        return faults::status(400, "a patch may not change the name or namespace");
    }
    let stored = store.put(kind, obj, true);
    json_response(shape(stored, metadata_only))
}

/// The authorizer's view of a resource request; `None` for discovery and version (granted to
/// everyone by `system:discovery`).
fn attributes<'a>(target: &'a Target, method: &Method, watching: bool) -> Option<Attributes<'a>> {
    let verb = match *method {
        Method::GET => match target {
            Target::Collection(..) | Target::Csrs if watching => "watch",
            Target::Collection(..) | Target::Csrs => "list",
            _ => "get",
        },
        Method::PATCH => "patch",
        Method::PUT => "update",
        Method::POST => "create",
        Method::DELETE => "delete",
        _ => "unknown",
    };
    let (group, resource, namespace, name) = match target {
        Target::Version | Target::Discovery(_) | Target::DraGroup => return None,
        Target::Collection(kind, ns) => (group_of(*kind), resource_of(*kind), ns.as_deref(), None),
        Target::Object(kind, ns, name) => (
            group_of(*kind),
            resource_of(*kind),
            Some(ns.as_str()),
            Some(name.as_str()),
        ),
        Target::PodStatus(ns, name) => ("", "pods/status", Some(ns.as_str()), Some(name.as_str())),
        Target::Events(ns) => ("", "events", Some(ns.as_str()), None),
        Target::Csrs => (
            "certificates.k8s.io",
            "certificatesigningrequests",
            None,
            None,
        ),
        Target::Csr(name) => (
            "certificates.k8s.io",
            "certificatesigningrequests",
            None,
            Some(name.as_str()),
        ),
    };
    Some(Attributes {
        verb,
        group,
        resource,
        namespace,
        name,
    })
}

fn group_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Pod => "",
        Kind::Nad => "k8s.cni.cncf.io",
        Kind::ResourceClaim | Kind::ResourceSlice => DRA_GROUP,
    }
}

fn resource_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Pod => "pods",
        Kind::Nad => "network-attachment-definitions",
        Kind::ResourceClaim => "resourceclaims",
        Kind::ResourceSlice => "resourceslices",
    }
}

/// A `resource.k8s.io` path is only served at the version the test serves (others 404, as
/// on a real server that does not serve them).
fn dra_served(path: &str, version: Option<&str>) -> bool {
    let mut segs = path.trim_matches('/').split('/');
    match (segs.next(), segs.next(), segs.next()) {
        (Some("apis"), Some(g), Some(v)) if g == DRA_GROUP => version == Some(v),
        (Some("apis"), Some(g), None) if g == DRA_GROUP => version.is_some(),
        _ => true,
    }
}

/// What a PUT replaces: the object (its status kept) or a pod's status subresource (its spec
/// kept; metadata and status taken, as the pod status strategy does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Object,
    Status,
}

/// PUT of a whole object, as the API server's update: the name and namespace must match the
/// path, a non-empty resourceVersion must be the stored one (409 otherwise), uid and creation
/// stay the server's. Watchers see MODIFIED.
fn update(s: &Shared, kind: Kind, ns: &str, name: &str, body: &[u8], part: Part) -> Response {
    let sent: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return faults::status(400, &format!("decoding the object: {e}")),
    };
    if str_at(&sent, "/metadata/name") != Some(name) {
        return faults::status(
            400,
            &format!("the name of the object does not match the name on the URL ({name})"),
        );
    }
    if str_at(&sent, "/metadata/namespace").is_some_and(|n| n != ns) {
        return faults::status(
            400,
            "the namespace of the provided object does not match the namespace sent on the request",
        );
    }
    let mut store = lock(&s.store);
    let Some(current) = store.get(kind, ns, name) else {
        return not_found(kind, name);
    };
    let sent_rv = str_at(&sent, "/metadata/resourceVersion").unwrap_or_default();
    if !sent_rv.is_empty() && Some(sent_rv) != str_at(&current, "/metadata/resourceVersion") {
        return conflict(kind, name);
    }
    let mut merged = match part {
        Part::Status => status_update(&current, &sent),
        Part::Object => object_update(&current, sent),
    };
    for keep in ["uid", "creationTimestamp"] {
        if let Some(v) = current.pointer(&format!("/metadata/{keep}")) {
            merged["metadata"][keep] = v.clone();
        }
    }
    json_response(store.put(kind, merged, true))
}

/// The pod status strategy: the stored object with the sent annotations, labels and status.
fn status_update(current: &Value, sent: &Value) -> Value {
    let mut merged = current.clone();
    for field in ["annotations", "labels"] {
        match sent.pointer(&format!("/metadata/{field}")) {
            Some(v) => merged["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = merged["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    merged["status"] = sent.get("status").cloned().unwrap_or(Value::Null);
    merged
}

/// An update of the object itself: what was sent, with the stored status.
fn object_update(current: &Value, mut sent: Value) -> Value {
    if let Some(status) = current.get("status") {
        sent["status"] = status.clone();
    }
    sent
}

/// The 409 an update with a stale resourceVersion gets, in the real server's words.
fn conflict(kind: Kind, name: &str) -> Response {
    let resource = resource_of(kind);
    let message = format!(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
    faults::status_with(
        409,
        "Conflict",
        &message,
        Some(json!({"name": name, "kind": resource})),
    )
}

/// Another writer's change to the object a request targets (see `Action::ConcurrentWrite`).
fn concurrent_write(s: &Shared, target: Option<&Target>) {
    let (kind, ns, name) = match target {
        Some(Target::Object(kind, ns, name)) => (*kind, ns, name),
        Some(Target::PodStatus(ns, name)) => (Kind::Pod, ns, name),
        _ => return,
    };
    let mut store = lock(&s.store);
    let Some(mut obj) = store.get(kind, ns, name) else {
        return;
    };
    let label = "standin/concurrent-writes";
    let writes = str_at(
        &obj,
        &format!("/metadata/labels/{}", label.replace('/', "~1")),
    )
    .and_then(|n| n.parse::<u64>().ok())
    .unwrap_or(0);
    obj["metadata"]["labels"][label] = json!((writes + 1).to_string());
    store.put(kind, obj, true);
}

/// Field selectors: `a.b=v`, `a.b==v`, `a.b!=v`, comma-joined (all must hold).
fn field_selector(sel: &str) -> Result<Matcher, String> {
    let mut terms = Vec::new();
    for term in sel.split(',').filter(|t| !t.is_empty()) {
        let (field, value, negate) = if let Some((f, v)) = term.split_once("!=") {
            (f, v, true)
        } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            (f, v, false)
        } else {
            return Err(format!("invalid field selector term {term:?}"));
        };
        terms.push((
            format!("/{}", field.trim().replace('.', "/")),
            value.trim().to_owned(),
            negate,
        ));
    }
    Ok(Box::new(move |obj: &Value| {
        terms
            .iter()
            .all(|(ptr, v, neg)| (str_at(obj, ptr).unwrap_or_default() == v) != *neg)
    }))
}

fn shape(obj: Value, metadata_only: bool) -> Value {
    if metadata_only {
        watch::partial(&obj)
    } else {
        obj
    }
}

fn not_found(kind: Kind, name: &str) -> Response {
    let resource = match kind {
        Kind::Pod => "pods",
        Kind::Nad => "network-attachment-definitions.k8s.cni.cncf.io",
        Kind::ResourceClaim => "resourceclaims.resource.k8s.io",
        Kind::ResourceSlice => "resourceslices.resource.k8s.io",
    };
    faults::status(404, &format!("{resource} \"{name}\" not found"))
}

/// Stores a core/v1 Event as an API server would accept it: JSON, kind Event (or none), its
/// namespace the path's; answers 201 with it.
fn create_event(s: &Shared, ns: &str, body: &[u8]) -> Response {
    let Ok(mut event) = serde_json::from_slice::<Value>(body) else {
        return faults::status(400, "event body is not JSON");
    };
    if str_at(&event, "/kind").is_some_and(|k| k != "Event") {
        return faults::status(400, "not an Event");
    }
    match str_at(&event, "/metadata/namespace") {
        Some(n) if n != ns => {
            return faults::status(400, "the namespace of the object does not match the path");
        }
        _ => {}
    }
    event["metadata"]["namespace"] = json!(ns);
    lock(&s.events).push(event.clone());
    (axum::http::StatusCode::CREATED, json_response(event)).into_response()
}

fn create_csr(s: &Shared, body: &[u8]) -> Response {
    let Ok(csr) = serde_json::from_slice::<Value>(body) else {
        return faults::status(400, "CertificateSigningRequest body is not JSON");
    };
    match lock(&s.csrs).create(csr) {
        Ok(stored) => (axum::http::StatusCode::CREATED, json_response(stored)).into_response(),
        Err(e) => faults::status(e.code(), &e.to_string()),
    }
}

fn json_response(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn version() -> Value {
    json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-multus-rs-standin", "platform": "linux/amd64"})
}

fn discovery(which: &str, dra_version: Option<&str>) -> Value {
    if which == "api" {
        return json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []});
    }
    let gv = json!({"groupVersion": "k8s.cni.cncf.io/v1", "version": "v1"});
    let mut groups =
        vec![json!({"name": "k8s.cni.cncf.io", "versions": [gv], "preferredVersion": gv})];
    if let Some(v) = dra_version {
        let mut group = dra_group(v);
        if let Some(g) = group.as_object_mut() {
            g.remove("kind");
            g.remove("apiVersion");
        }
        groups.push(group);
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/resource.k8s.io`: the one served version.
fn dra_group(version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{DRA_GROUP}/{version}"), "version": version});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": DRA_GROUP,
        "versions": [gv], "preferredVersion": gv})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selectors_match_like_the_api_server() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        let cases = [
            ("", true),
            ("spec.nodeName=n1", true),
            ("spec.nodeName==n2", false),
            ("spec.nodeName!=n2,metadata.name=p", true),
        ];
        for (sel, want) in cases {
            assert_eq!(field_selector(sel).unwrap()(&pod), want, "{sel}");
        }
        assert!(field_selector("nonsense").is_err());
    }

    #[test]
    fn paths_route_to_their_resource() {
        assert!(matches!(
            route("/api/v1/pods"),
            Some(Target::Collection(Kind::Pod, None))
        ));
        assert!(matches!(
            route("/api/v1/namespaces/a/pods/b"),
            Some(Target::Object(Kind::Pod, _, _))
        ));
        let nad = "/apis/k8s.cni.cncf.io/v1/namespaces/a/network-attachment-definitions/b";
        assert!(matches!(route(nad), Some(Target::Object(Kind::Nad, _, _))));
        assert!(matches!(
            route("/api/v1/namespaces/a/pods/b/status"),
            Some(Target::PodStatus(_, _))
        ));
        assert!(route("/api/v1/nodes").is_none());
        let claim = "/apis/resource.k8s.io/v1/namespaces/a/resourceclaims/c";
        assert!(matches!(
            route(claim),
            Some(Target::Object(Kind::ResourceClaim, _, _))
        ));
        assert!(matches!(
            route("/apis/resource.k8s.io/v1beta1/resourceslices"),
            Some(Target::Collection(Kind::ResourceSlice, None))
        ));
        assert!(matches!(
            route("/apis/resource.k8s.io"),
            Some(Target::DraGroup)
        ));
    }

    #[test]
    fn resource_k8s_io_is_served_at_one_version_or_none() {
        let slices = "/apis/resource.k8s.io/v1/resourceslices";
        assert!(dra_served(slices, Some("v1")));
        assert!(!dra_served(slices, Some("v1beta1")));
        assert!(!dra_served(slices, None));
        assert!(!dra_served("/apis/resource.k8s.io", None));
        assert!(dra_served("/apis/resource.k8s.io", Some("v1beta2")));
        assert!(dra_served("/api/v1/pods", None));
    }

    #[test]
    fn a_status_update_keeps_the_spec_and_an_object_update_keeps_the_status() {
        let current = json!({"metadata": {"name": "p", "labels": {"a": "1"}},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let sent = json!({"metadata": {"name": "p", "annotations": {"k": "v"}},
            "spec": {"nodeName": "other"}, "status": {"phase": "Pending"}});
        let status = status_update(&current, &sent);
        assert_eq!(status["spec"]["nodeName"], "n1");
        assert_eq!(status["status"]["phase"], "Pending");
        assert_eq!(status["metadata"]["annotations"]["k"], "v");
        assert!(status["metadata"].get("labels").is_none(), "{status}");
        let object = object_update(&current, sent);
        assert_eq!(object["spec"]["nodeName"], "other");
        assert_eq!(object["status"]["phase"], "Running");
    }
}
