//! Clients of the daemon socket besides the shim: a real HTTP/1.1 client (hyper over a unix
//! stream) for upstream's HTTP API, the request bodies upstream's Go shim and
//! multus-dynamic-networks-controller send, and a gRPC client for the hot-plug RPCs.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use multus_proto::v1::DelegateRequest;
use multus_proto::v1::cni_client::CniClient;
use serde_json::{Value, json};
use tokio::net::UnixStream;

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Sends one HTTP/1.1 request over the unix socket, on a new connection (as Go's client does
/// with keep-alives off).
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<HttpResponse> {
    runtime()?.block_on(request_async(socket, method, path, body))
}

async fn request_async(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<HttpResponse> {
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting {}", socket.display()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    // Upstream's client dials "http://dummy<path>".
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://dummy{path}"))
        .header("host", "dummy");
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(bytes)))?)
        .await?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(HttpResponse {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The body upstream's Go shim posts to `/cni`: its environment as a map and the stdin config
/// as a Go `[]byte` (standard base64); `interfaceAttributes` is omitted (omitempty, nil).
pub fn shim_request(env: &[(&str, &str)], config: &[u8]) -> Value {
    let env: BTreeMap<&str, &str> = env.iter().copied().collect();
    json!({
        "env": env,
        "config": base64::engine::general_purpose::STANDARD.encode(config),
    })
}

/// The body multus-dynamic-networks-controller posts to `/delegate` (upstream's
/// `api.CreateDelegateRequest`): CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME and
/// CNI_ARGS with the pod's namespace, name and uid; the NAD's config; `interfaceAttributes`
/// only when the selection asks for ips, a mac or cni-args.
#[allow(clippy::too_many_arguments)]
pub fn delegate_request(
    command: &str,
    container_id: &str,
    netns: &str,
    ifname: &str,
    pod: (&str, &str, &str),
    config: &Value,
    attributes: Option<Value>,
) -> Value {
    let (namespace, name, uid) = pod;
    let args = format!("K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_UID={uid}");
    let mut body = json!({
        "env": {
            "CNI_COMMAND": command.to_uppercase(),
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": args,
        },
        "config": base64::engine::general_purpose::STANDARD.encode(config.to_string()),
    });
    if let Some(a) = attributes {
        body["interfaceAttributes"] = a;
    }
    body
}

/// Calls a hot-plug RPC (`AddDelegate`, `DelDelegate`, `CheckDelegate`) over the socket;
/// `Err` carries the gRPC status text.
pub fn hotplug(socket: &Path, rpc: &str, req: DelegateRequest) -> Result<Vec<u8>> {
    let socket: PathBuf = socket.to_owned();
    let rpc = rpc.to_owned();
    runtime()?.block_on(async move {
        let channel =
            multus_proto::channel::unix(&socket, std::time::Duration::from_secs(10)).await?;
        let mut client = CniClient::new(channel);
        let resp = match rpc.as_str() {
            "AddDelegate" => client.add_delegate(req).await,
            "DelDelegate" => client.del_delegate(req).await,
            "CheckDelegate" => client.check_delegate(req).await,
            other => return Err(anyhow!("no RPC {other}")),
        };
        resp.map(|r| r.into_inner().result)
            .map_err(|s| anyhow!("{:?}: {}", s.code(), s.message()))
    })
}
