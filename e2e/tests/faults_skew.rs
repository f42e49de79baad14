//! Shim/daemon protocol skew both ways, against the real daemon and the real shim (issue 12):
//! an older shim's request (no `protocol_version`, no split CNI_ARGS) is served; a newer shim's
//! unknown field is ignored and the request served; a newer `protocol_version` gets a clear
//! "upgrade" error (code 11) and attaches nothing; the real shim in front of a daemon that
//! speaks another protocol on the socket (upstream's HTTP/1.1-only Go daemon) fails with a
//! clear, retryable error, never a garbled result.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::time::Duration;

use multus_common::CniError;
use multus_e2e::probe::*;
use multus_e2e::{
    netns::Netns,
    scenario::{Cluster, pod},
    shim::{Invocation, multus_conf},
};
use multus_proto::v1::{CniRequest, CniResponse};
use tonic::codegen::http::uri::PathAndQuery;

/// A request as a newer shim might send it: today's fields plus one this daemon does not know.
#[derive(Clone, PartialEq, prost::Message)]
struct NewerCniRequest {
    #[prost(uint32, tag = "1")]
    protocol_version: u32,
    #[prost(string, tag = "2")]
    container_id: String,
    #[prost(string, tag = "3")]
    netns: String,
    #[prost(string, tag = "4")]
    ifname: String,
    #[prost(string, tag = "5")]
    cni_args_raw: String,
    #[prost(bytes = "vec", tag = "8")]
    config: Vec<u8>,
    #[prost(string, tag = "99")]
    added_later: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One unary call of `/multus.cni.v1.Cni/<method>` with any request message.
fn call<M>(socket: &std::path::Path, method: &str, request: M) -> Result<CniResponse, tonic::Status>
where
    M: prost::Message + Send + Sync + 'static,
{
    let path = PathAndQuery::try_from(format!("/multus.cni.v1.Cni/{method}")).unwrap();
    runtime().block_on(async {
        let channel = multus_proto::channel::unix(socket, Duration::from_secs(20))
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<M, CniResponse>::default();
        grpc.unary(tonic::Request::new(request), path, codec)
            .await
            .map(tonic::Response::into_inner)
    })
}

fn request_of(inv: &Invocation) -> CniRequest {
    CniRequest {
        protocol_version: 0,
        container_id: inv.container_id.clone(),
        netns: inv.netns.clone(),
        ifname: inv.ifname.clone(),
        cni_args_raw: inv.args.clone(),
        cni_args: Default::default(),
        cni_path: String::new(),
        config: inv.stdin.clone(),
    }
}

fn cni_result(response: &CniResponse) -> serde_json::Value {
    serde_json::from_slice(&response.result).unwrap()
}

#[test]
fn older_and_newer_shims_are_served_and_a_newer_protocol_is_told_to_upgrade() {
    let cluster = Cluster::start(|_| {}).unwrap();
    ptp_nad(&cluster);
    for (i, name) in ["old", "newer", "future"].iter().enumerate() {
        cluster
            .layout
            .put_manifest(
                &format!("pod-{i}.json"),
                &pod("default", name, &format!("uid-{name}"), "ptp-net"),
            )
            .unwrap();
    }
    let socket = cluster.daemon.socket();

    // An older shim: protocol_version unset (0), CNI_ARGS only raw.
    let old_ns = Netns::new("mrspod").unwrap();
    let old = cluster.invocation("5ce00001", &old_ns, "default", "old", "uid-old");
    let added = call(&socket, "Add", request_of(&old)).unwrap();
    let result = cni_result(&added);
    assert_eq!(result["cniVersion"], "1.0.0", "{result}");
    assert!(addr_of(&old_ns, "net1")[0].starts_with("10.89.0."));
    call(&socket, "Del", request_of(&old)).unwrap();
    assert!(attached(&old_ns).is_empty());

    // A newer shim at the same protocol version with a field added since: ignored, served.
    let newer_ns = Netns::new("mrspod").unwrap();
    let newer = cluster.invocation("5ce00002", &newer_ns, "default", "newer", "uid-newer");
    let request = |inv: &Invocation, protocol_version| NewerCniRequest {
        protocol_version,
        container_id: inv.container_id.clone(),
        netns: inv.netns.clone(),
        ifname: inv.ifname.clone(),
        cni_args_raw: inv.args.clone(),
        config: inv.stdin.clone(),
        added_later: "a value this daemon never heard of".into(),
    };
    let added = call(&socket, "Add", request(&newer, 1)).unwrap();
    let result = cni_result(&added);
    assert!(
        result["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "eth0"),
        "{result}"
    );
    assert!(newer.with_command("DEL").run().unwrap().success());
    assert!(attached(&newer_ns).is_empty());

    // A newer protocol version: refused before anything runs, retryable, saying what to do.
    let future_ns = Netns::new("mrspod").unwrap();
    let future = cluster.invocation("5ce00003", &future_ns, "default", "future", "uid-future");
    let status = call(&socket, "Add", request(&future, 2)).unwrap_err();
    let err = CniError::from_wire(status.details()).unwrap();
    assert_eq!(err.code, 11, "{err:?}");
    assert!(
        err.msg.contains("protocol version 2") && err.msg.contains("upgraded"),
        "{err:?}"
    );
    assert!(attached(&future_ns).is_empty());
    assert_eq!(
        cluster.layout.cache_records().unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(cluster.layout.leases().unwrap(), Vec::<String>::new());
}

/// What Go's net/http answers to bytes that are not HTTP/1.x (an HTTP/2 preface, here), as
/// upstream's daemon on the same socket path would.
const GO_BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request";

#[test]
fn the_shim_in_front_of_an_http1_only_daemon_fails_retryably_and_prints_no_result() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("multus.sock")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 256];
        let _ = conn.read(&mut buf);
        conn.write_all(GO_BAD_REQUEST).unwrap();
        // Closed only once the client gives up, so the shim reads the answer (a close racing
        // it would make the shim see a reset instead: also code 11, but a vaguer message).
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
        buf.to_vec()
    });
    let pod_ns = Netns::new("mrspod").unwrap();
    let inv = Invocation::new(
        "ADD",
        "5ce00004",
        &pod_ns.path(),
        multus_e2e::shim::k8s_args("default", "p", "uid-p", "5ce00004"),
        multus_conf("0.3.1", dir.path()),
    );
    let out = inv.run().unwrap();
    let received = server.join().unwrap();
    assert!(
        received.starts_with(b"PRI * HTTP/2.0"),
        "the shim spoke HTTP/2"
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    let v = out.json();
    assert_eq!(v["code"], 11, "{out:?}");
    assert_eq!(v["cniVersion"], "0.3.1");
    let msg = v["msg"].as_str().unwrap();
    assert!(
        msg.contains(&dir.path().join("multus.sock").display().to_string())
            && msg.contains("does not speak multus-rs gRPC"),
        "{msg}"
    );
    assert!(v.get("ips").is_none() && v.get("interfaces").is_none());
}
