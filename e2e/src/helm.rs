//! The chart rendered by the real Helm library: `helm install` of `charts/multus-rs` through
//! helm-sdkpy (Helm v4's Go library in a shared object, the one the shared `helm-lint` tool
//! installs), against a minimal cluster on 127.0.0.1 that serves discovery and keeps what Helm
//! creates. The objects Helm sends are the manifests a real cluster would get, so tests that
//! run the chart's DaemonSet cannot drift from the chart. (helm-sdkpy offers no `helm template`;
//! an install against this cluster is the same render, plus Helm's own checks of the result.)
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result, bail};
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// The Kubernetes version the cluster reports (the chart needs >= 1.25).
const KUBE_VERSION: (&str, &str) = ("1", "31");

/// The Python driver: one `Install`, printing the release. (Release storage is chosen by
/// `HELM_DRIVER`, which the Go runtime reads from the process's initial environment: it is set
/// on the command, not from Python.)
const DRIVER: &str = r#"
import asyncio, json, sys
import helm_sdkpy as helm
chart, kubeconfig, namespace, release, values_file = sys.argv[1:6]
with open(values_file) as f:
    values = json.load(f)
cfg = helm.Configuration(namespace=namespace, kubeconfig=kubeconfig)
rel = asyncio.run(helm.Install(cfg).run(release, chart, values=values, wait=False, timeout=60))
json.dump({"manifest": rel.get("manifest"), "info": rel.get("info")}, sys.stdout)
"#;

/// What Helm created, in the order it created it.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub objects: Vec<Value>,
}

impl Rendered {
    /// The one object of `kind` (e.g. `DaemonSet`).
    pub fn one(&self, kind: &str) -> Result<&Value> {
        let mut found = self.objects.iter().filter(|o| o["kind"] == kind);
        let first = found
            .next()
            .with_context(|| format!("the chart rendered no {kind}"))?;
        if found.next().is_some() {
            bail!("the chart rendered several {kind} objects");
        }
        Ok(first)
    }

    /// The ConfigMap called `name`.
    pub fn config_map(&self, name: &str) -> Result<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
            .with_context(|| format!("the chart rendered no ConfigMap {name}"))
    }
}

/// The repository's chart.
pub fn chart_dir() -> PathBuf {
    crate::bins::workspace_root().join("charts/multus-rs")
}

/// `helm install <release> charts/multus-rs --namespace <namespace>` with `values` over the
/// chart's defaults; what Helm created.
pub fn install(release: &str, namespace: &str, values: &Value) -> Result<Rendered> {
    let lib = sdk_lib()?;
    let work = tempfile::Builder::new().prefix("multus-helm-").tempdir()?;
    let values_file = work.path().join("values.json");
    std::fs::write(&values_file, serde_json::to_vec(values)?)?;
    // The cluster is served by the runtime's worker while this thread waits for Helm.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let cluster = rt.block_on(Cluster::start())?;
    let kubeconfig = work.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig())?;
    let home = |d: &str| work.path().join(d);
    let chart = chart_dir();
    let out = Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(&chart)
        .arg(&kubeconfig)
        .arg(namespace)
        .arg(release)
        .arg(&values_file)
        .env("PYTHONPATH", &lib)
        // The release record in memory, not as a Secret in the cluster.
        .env("HELM_DRIVER", "memory")
        .env("HELM_CACHE_HOME", home("cache"))
        .env("HELM_CONFIG_HOME", home("config"))
        .env("HELM_DATA_HOME", home("data"))
        .env_remove("KUBECONFIG")
        .output()
        .context("running python3 (the helm-sdkpy driver)")?;
    if !out.status.success() {
        bail!(
            "helm install of {} failed ({}):\n{}\n{}",
            chart.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            cluster.log()
        );
    }
    let release: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("the helm driver printed {:?}", out.stdout))?;
    if release["info"]["status"] != "deployed" {
        bail!("helm install did not deploy: {}", release["info"]);
    }
    Ok(Rendered {
        objects: cluster.created(),
    })
}

/// Where helm-sdkpy is (`<cache>/lib` of the `helm-lint` tool, which installs it on first use:
/// run here when it has not been yet).
fn sdk_lib() -> Result<PathBuf> {
    let cache = match std::env::var_os("HELM_LINT_CACHE") {
        Some(c) => PathBuf::from(c),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .context("neither HELM_LINT_CACHE, XDG_CACHE_HOME nor HOME is set")?
            .join("helm-lint"),
    };
    let lib = cache.join("lib");
    if lib.join("helm_sdkpy/__init__.py").is_file() {
        return Ok(lib);
    }
    let tool = helm_lint_tool()?;
    let out = Command::new(&tool)
        .arg(chart_dir())
        .output()
        .with_context(|| format!("running {}", tool.display()))?;
    if !lib.join("helm_sdkpy/__init__.py").is_file() {
        bail!(
            "helm-sdkpy is not installed in {} and {} did not install it:\n{}",
            lib.display(),
            tool.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(lib)
}

/// `HELM_LINT`, or `shared/tools/helm-lint` beside the repository (or beside the main checkout
/// of a git worktree), as CI lays it out.
fn helm_lint_tool() -> Result<PathBuf> {
    if let Some(tool) = std::env::var_os("HELM_LINT") {
        return Ok(PathBuf::from(tool));
    }
    let repo = crate::bins::workspace_root();
    let common = Command::new("git")
        .args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .current_dir(&repo)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let roots = [
        Some(repo),
        common.and_then(|d| d.parent().map(Path::to_path_buf)),
    ];
    let tried: Vec<PathBuf> = roots
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(
                r.canonicalize()
                    .ok()?
                    .parent()?
                    .join("shared/tools/helm-lint"),
            )
        })
        .collect();
    tried.iter().find(|t| t.is_file()).cloned().with_context(|| {
        format!(
            "helm-sdkpy is needed to render the chart: the helm-lint tool that installs it is not at {tried:?} (set HELM_LINT or HELM_LINT_CACHE)"
        )
    })
}

/// The resources the cluster serves: `(group/version, plural, kind, namespaced)`.
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("v1", "configmaps", "ConfigMap", true),
    ("v1", "secrets", "Secret", true),
    ("v1", "serviceaccounts", "ServiceAccount", true),
    ("v1", "services", "Service", true),
    ("v1", "pods", "Pod", true),
    ("v1", "namespaces", "Namespace", false),
    ("apps/v1", "daemonsets", "DaemonSet", true),
    (
        "rbac.authorization.k8s.io/v1",
        "clusterroles",
        "ClusterRole",
        false,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
    ),
    ("rbac.authorization.k8s.io/v1", "roles", "Role", true),
    (
        "rbac.authorization.k8s.io/v1",
        "rolebindings",
        "RoleBinding",
        true,
    ),
    (
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    ),
    (
        "monitoring.coreos.com/v1",
        "servicemonitors",
        "ServiceMonitor",
        true,
    ),
];

/// The cluster Helm installs into: discovery for [`RESOURCES`], GET of what it holds (404
/// otherwise, as Helm's conflict check expects), POST to create.
struct Cluster {
    addr: SocketAddr,
    state: Arc<Mutex<Objects>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Default)]
struct Objects {
    by_path: BTreeMap<String, Value>,
    created: Vec<Value>,
    log: Vec<String>,
}

type Shared = Arc<Mutex<Objects>>;

impl Cluster {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state: Shared = Arc::default();
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                eprintln!("helm cluster stand-in stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            state,
            _stop: stop,
        })
    }

    fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            self.addr
        )
    }

    fn created(&self) -> Vec<Value> {
        self.state
            .lock()
            .map(|s| s.created.clone())
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        self.state
            .lock()
            .map(|s| s.log.join("\n"))
            .unwrap_or_default()
    }
}

async fn handle(State(state): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().trim_end_matches('/').to_owned();
    if let Ok(mut s) = state.lock() {
        s.log.push(format!("{method} {uri}"));
    }
    if method == Method::GET
        && let Some(doc) = discovery(&path)
    {
        return (StatusCode::OK, axum::Json(doc)).into_response();
    }
    match method {
        Method::GET => get(&state, &path),
        Method::POST => create(&state, &path, &body),
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &path),
    }
}

fn get(state: &Shared, path: &str) -> Response {
    let found = state.lock().ok().and_then(|s| s.by_path.get(path).cloned());
    match found {
        Some(object) => (StatusCode::OK, axum::Json(object)).into_response(),
        None => status(StatusCode::NOT_FOUND, "NotFound", path),
    }
}

fn create(state: &Shared, collection: &str, body: &[u8]) -> Response {
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", collection);
    };
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", collection);
    };
    let path = format!("{collection}/{name}");
    let Ok(mut s) = state.lock() else {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            collection,
        );
    };
    if s.by_path.contains_key(&path) {
        return status(StatusCode::CONFLICT, "AlreadyExists", &path);
    }
    let n = s.created.len();
    s.created.push(object.clone());
    object["metadata"]["uid"] = json!(format!("uid-{n}"));
    object["metadata"]["resourceVersion"] = json!(n.to_string());
    if object["kind"] == "CustomResourceDefinition" {
        // Served as soon as created (Helm waits for Established before installing the rest).
        object["status"] = json!({"conditions": [
            {"type": "NamesAccepted", "status": "True"},
            {"type": "Established", "status": "True"}
        ]});
    }
    s.by_path.insert(path, object.clone());
    (StatusCode::CREATED, axum::Json(object)).into_response()
}

fn status(code: StatusCode, reason: &str, path: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{path}: {reason}"), "reason": reason, "code": code.as_u16()
    });
    (code, axum::Json(body)).into_response()
}

/// The discovery documents (the legacy, non-aggregated form, which clients fall back to).
fn discovery(path: &str) -> Option<Value> {
    let versions = || {
        let mut gvs: Vec<&str> = RESOURCES.iter().map(|r| r.0).collect();
        gvs.dedup();
        gvs
    };
    match path {
        "/version" => Some(json!({
            "major": KUBE_VERSION.0, "minor": KUBE_VERSION.1,
            "gitVersion": format!("v{}.{}.0", KUBE_VERSION.0, KUBE_VERSION.1),
            "platform": "linux/amd64"
        })),
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})),
        "/apis" => {
            let groups: Vec<Value> = versions()
                .into_iter()
                .filter_map(|gv| gv.split_once('/'))
                .map(|(g, v)| {
                    let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                    json!({"name": g, "versions": [gv], "preferredVersion": gv})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        _ => {
            let gv = path
                .strip_prefix("/api/")
                .or_else(|| path.strip_prefix("/apis/"))?;
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.0 == gv)
                .map(|(_, plural, kind, namespaced)| {
                    json!({"name": plural, "singularName": kind.to_lowercase(), "namespaced": namespaced,
                           "kind": kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
                })
                .collect();
            (!resources.is_empty()).then(|| {
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
            })
        }
    }
}
