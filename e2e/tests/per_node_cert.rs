//! `perNodeCertificate` against the API server stand-in: the CertificateSigningRequest the
//! daemon's Kubernetes source makes (subject, signer, usages, expiration, bootstrap credentials),
//! the certificate written and used, reuse of a stored one, rotation before expiry, refusals.
//! The stand-in speaks plain HTTP, so the client certificate is built into the client but no TLS
//! handshake presents it here.
// Test helpers (not only #[test] fns) unwrap: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use axum::http::Method;
use multus_daemon::source::ClusterSource;
use multus_daemon::source::kube::certificate::{Identity, PerNodeOptions};
use multus_daemon::source::kube::{Budget, KubeSettings, KubeSource};
use multus_e2e::apiserver::{ApiServer, csr_subject, pod_json};
use serde_json::Value;

const NODE: &str = "node-a";
const TOKEN: &str = "bootstrap-token-abc";

fn settings(server: &ApiServer, cert_dir: &Path, duration: &str) -> KubeSettings {
    KubeSettings {
        // Ignored with a per-node certificate: the bootstrap kubeconfig names the cluster.
        kubeconfig: None,
        node_name: Some(NODE.into()),
        budget: Budget {
            per_call: Duration::from_secs(2),
            total: Duration::from_secs(5),
        },
        per_node_certificate: Some(PerNodeOptions {
            bootstrap_kubeconfig: Some(server.bootstrap_kubeconfig(TOKEN).unwrap()),
            cert_dir: Some(cert_dir.to_owned()),
            cert_duration: Some(
                multus_daemon::config::duration::parse_go_duration(duration).unwrap(),
            ),
        }),
    }
}

/// Polls `done` until true or 60 s passed (a bound for a broken build, not a performance claim).
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..600 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

fn name(csr: &Value) -> String {
    csr["metadata"]["name"].as_str().unwrap().to_owned()
}

/// The certificate a request was issued, parsed with the key from the stored file.
fn issued_serial(csr: &Value) -> String {
    use base64::Engine;
    let b64 = csr["status"]["certificate"].as_str().unwrap();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let pem = format!("{}{key}", String::from_utf8(pem).unwrap());
    Identity::from_pem(&pem).unwrap().serial
}

fn stored(dir: &Path) -> Identity {
    let path = dir.join("multus-client-current.pem");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "certificate file mode");
    Identity::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_certificate_is_requested_approved_written_and_used() {
    let server = ApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let connecting = tokio::spawn(KubeSource::connect(settings(&server, dir.path(), "10m")));
    assert!(
        eventually(|| !server.csrs().is_empty()).await,
        "a CSR was created"
    );

    let csr = server.csrs().remove(0);
    assert_eq!(
        csr["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client"
    );
    assert_eq!(
        csr["spec"]["usages"],
        serde_json::json!(["digital signature", "client auth"])
    );
    assert_eq!(csr["spec"]["expirationSeconds"], 600);
    let (cn, orgs) = csr_subject(&csr).unwrap();
    assert_eq!(cn, "system:multus:node-a");
    assert_eq!(orgs, ["system:multus"]);
    let creates = server.authorizations(&Method::POST, "/apis/certificates.k8s.io/");
    assert_eq!(
        creates,
        [Some(format!("Bearer {TOKEN}"))],
        "created with the bootstrap token"
    );
    // Nothing is written or connected before approval.
    assert!(!dir.path().join("multus-client-current.pem").exists());
    assert!(!connecting.is_finished());

    server.approve_csr(&name(&csr)).unwrap();
    let source = connecting.await.unwrap().unwrap();
    let issued = server.csrs().remove(0);
    let on_disk = stored(dir.path());
    assert_eq!(on_disk.serial, issued_serial(&issued));
    assert_eq!(on_disk.common_name, "system:multus:node-a");
    assert_eq!(source.client_certificate().unwrap().serial, on_disk.serial);

    // The source works through the per-node client, without the bootstrap token.
    server.put_pod(pod_json("ns1", "p1", NODE, &BTreeMap::new()));
    assert!(source.wait_synced(Duration::from_secs(30)).await);
    assert!(source.pod("ns1", "p1").await.unwrap().is_some());
    let pod_reads = server.authorizations(&Method::GET, "/api/v1/");
    assert!(!pod_reads.is_empty());
    assert!(pod_reads.iter().all(Option::is_none), "{pod_reads:?}");
    drop(source);

    // A restart finds the stored certificate: no second request.
    let again = KubeSource::connect(settings(&server, dir.path(), "10m"))
        .await
        .unwrap();
    assert_eq!(server.csrs().len(), 1);
    assert_eq!(again.client_certificate().unwrap().serial, on_disk.serial);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_requests_a_second_certificate_before_expiry() {
    let server = ApiServer::start().await.unwrap();
    server.auto_approve_csrs(true);
    let dir = tempfile::tempdir().unwrap();
    // Renewal at 70–90 % of 20 s leaves seconds of margin before expiry on a loaded machine.
    let source = KubeSource::connect(settings(&server, dir.path(), "20s"))
        .await
        .unwrap();
    let first = source.client_certificate().unwrap();
    assert_eq!(first.lifetime(), Duration::from_secs(20));

    assert!(
        eventually(|| source.client_certificate().unwrap().serial != first.serial).await,
        "the client switched to a renewed certificate"
    );
    let switched_at = SystemTime::now();
    let csrs = server.csrs();
    assert!(csrs.len() >= 2, "{csrs:?}");
    let second = source.client_certificate().unwrap();
    assert!(csrs.iter().any(|c| issued_serial(c) == second.serial));
    assert!(
        switched_at < first.not_after,
        "renewed before the first certificate expired"
    );
    assert!(second.not_after > first.not_after);
    assert_eq!(stored(dir.path()).serial, second.serial);

    // Requests after the switch go through the new client.
    server.put_pod(pod_json("ns1", "p2", NODE, &BTreeMap::new()));
    assert!(eventually(|| source.is_pod_cached("ns1", "p2")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_missing_keys_are_startup_errors() {
    let server = ApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let connecting = tokio::spawn(KubeSource::connect(settings(&server, dir.path(), "10m")));
    assert!(eventually(|| !server.csrs().is_empty()).await);
    server
        .deny_csr(&name(&server.csrs()[0]), "not this node")
        .unwrap();
    let err = connecting.await.unwrap().err().unwrap().to_string();
    assert!(
        err.contains("Denied") && err.contains("not this node"),
        "{err}"
    );
    assert!(!dir.path().join("multus-client-current.pem").exists());

    type Breakage = fn(&mut KubeSettings);
    let cases: [(Breakage, &str); 3] = [
        (|s| s.node_name = None, "MULTUS_NODE_NAME"),
        (
            |s| s.per_node_certificate.as_mut().unwrap().cert_dir = None,
            "perNodeCertificate.certDir",
        ),
        (
            |s| {
                s.per_node_certificate
                    .as_mut()
                    .unwrap()
                    .bootstrap_kubeconfig = None
            },
            "perNodeCertificate.bootstrapKubeconfig",
        ),
    ];
    for (break_it, key) in cases {
        let mut s = settings(&server, dir.path(), "10m");
        break_it(&mut s);
        let err = KubeSource::connect(s).await.err().unwrap().to_string();
        assert!(err.contains(key), "{err} should name {key}");
    }
    assert_eq!(
        server.csrs().len(),
        1,
        "no request without a valid configuration"
    );
}
