//! Issue 12, "Bad input": one table of hostile or broken requests sent through the real shim
//! (or, for what an environment variable cannot carry, straight to the daemon's gRPC) to a real
//! daemon reading pods and NADs from the API server stand-in. Every case must answer a CNI error
//! object with the spec's code and a message naming what was wrong, attach nothing, lease
//! nothing, record nothing, write nothing outside the configured dirs, and leave the daemon
//! serving: a good ADD+DEL runs right after each case on the same daemon.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use multus_common::CniError;
use multus_e2e::{
    apiserver::{nad_json, pod_json},
    netns::Netns,
    probe::attached,
    scenario::{KUBE_NODE, KubeCluster, host_local},
    shim::{Invocation, Output},
};
use multus_proto::v1::{CniRequest, cni_client::CniClient};
use serde_json::{Value, json};
use tempfile::TempDir;

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const DEFAULT_NETWORK: &str = "v1.multus-cni.io/default-network";
/// Part of every hostile path a case sends, so a file written through one is found anywhere.
const MARKER: &str = "mrsbadinput";
/// Delegates get this long (`delegateTimeoutSeconds`): the hanging plugins cost this much.
const DELEGATE_TIMEOUT_S: u64 = 4;

/// The node under test: the daemon, its binDir of bad plugins, one pod namespace for every case.
struct Bench {
    k: KubeCluster,
    bin: TempDir,
    pod_ns: Netns,
    /// A netns-looking path that is a regular file, and one that is a directory.
    not_netns: TempDir,
    seq: usize,
}

/// What a case sends.
enum Request {
    Shim(Invocation),
    /// Straight to the daemon's `Add` RPC: what no environment variable can carry (NUL).
    Grpc(CniRequest),
}

/// What came back, whichever way it was sent.
#[derive(Debug)]
struct Answer {
    ok: bool,
    code: Option<u64>,
    /// `msg` and `details` of the error object.
    text: String,
    raw: String,
}

/// One pod's request as a case shapes it.
struct Ctx<'a> {
    b: &'a Bench,
    pod: String,
    cid: String,
    annotations: BTreeMap<String, String>,
}

struct Case {
    name: &'static str,
    /// The CNI error code the runtime must see.
    code: u64,
    /// A piece of the error text (msg or details) naming the field or the culprit.
    names: &'static str,
    make: fn(&mut Ctx<'_>) -> Request,
}

impl Ctx<'_> {
    fn inv(&self) -> Invocation {
        self.b.k.invocation(
            &self.cid,
            &self.b.pod_ns,
            "default",
            &self.pod,
            &uid(&self.pod),
        )
    }

    fn shim(&self, f: impl FnOnce(&mut Invocation)) -> Request {
        let mut inv = self.inv();
        f(&mut inv);
        Request::Shim(inv)
    }

    fn stdin(&self, stdin: &[u8]) -> Request {
        self.shim(|i| i.stdin = stdin.to_vec())
    }

    /// Replaces the multus config's keys (a `null` removes one).
    fn conf(&self, patch: Value) -> Request {
        let mut conf: Value = serde_json::from_slice(&self.inv().stdin).unwrap();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                conf.as_object_mut().unwrap().remove(k);
            } else {
                conf[k] = v.clone();
            }
        }
        self.stdin(conf.to_string().as_bytes())
    }

    fn env(&self, var: &str, value: Option<&str>) -> Request {
        self.shim(|i| i.env.push((var.into(), value.map(str::to_owned))))
    }

    fn args(&self, args: &str) -> Request {
        self.shim(|i| i.args = args.to_owned())
    }

    fn networks(&mut self, value: &str) -> Request {
        self.annotations.insert(NETWORKS.into(), value.into());
        Request::Shim(self.inv())
    }

    /// A NAD named after this case with `config` as its `spec.config` (verbatim), selected.
    fn nad(&mut self, config: &str) -> Request {
        let name = format!("nad-{}", self.b.seq);
        self.b.k.api.put_nad(nad_json("default", &name, config));
        self.networks(&name)
    }

    /// A NAD of plugin type `plugin`, selected.
    fn plugin_nad(&mut self, plugin: &str) -> Request {
        let config =
            json!({"cniVersion": "1.0.0", "name": format!("net-{}", self.b.seq), "type": plugin});
        self.nad(&config.to_string())
    }

    /// Installs `body` as a `sh` plugin in binDir that misbehaves on ADD (other verbs succeed
    /// quietly, so the rollback's DEL is clean), and selects a NAD of that type.
    fn bad_plugin(&mut self, body: &str) -> Request {
        let name = format!("bad{}", self.b.seq);
        let script = format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" != ADD ]; then exit 0; fi\ncat >/dev/null\n{body}\n"
        );
        let path = self.b.bin.path().join(&name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        self.plugin_nad(&name)
    }

    fn grpc(&self, f: impl FnOnce(&mut CniRequest)) -> Request {
        let inv = self.inv();
        let mut req = CniRequest {
            protocol_version: multus_proto::PROTOCOL_VERSION,
            container_id: inv.container_id.clone(),
            netns: inv.netns.clone(),
            ifname: inv.ifname.clone(),
            cni_args_raw: inv.args.clone(),
            cni_args: multus_common::CniArgs::parse(&inv.args)
                .unwrap()
                .pairs
                .into_iter()
                .collect(),
            cni_path: inv.cni_path.clone(),
            config: inv.stdin.clone(),
        };
        f(&mut req);
        Request::Grpc(req)
    }
}

fn uid(pod: &str) -> String {
    format!("uid-{pod}")
}

fn hostile(what: &str) -> String {
    format!("{what}{MARKER}")
}

fn cases() -> Vec<Case> {
    vec![
        // ---- stdin (the multus config) ----
        Case {
            name: "stdin malformed",
            code: 6,
            names: "network config",
            make: |c| c.stdin(b"{not json"),
        },
        Case {
            name: "stdin truncated",
            code: 6,
            names: "network config",
            make: |c| {
                let full = c.inv().stdin;
                let half = full[..full.len() / 2].to_vec();
                c.stdin(&half)
            },
        },
        Case {
            name: "stdin huge (past the 1 MiB limit)",
            code: 6,
            names: "1048576",
            make: |c| c.conf(json!({"padding": "x".repeat(2 << 20)})),
        },
        Case {
            name: "stdin empty",
            code: 6,
            names: "network config",
            make: |c| c.stdin(b""),
        },
        Case {
            name: "stdin a JSON array",
            code: 6,
            names: "not a JSON object",
            make: |c| c.stdin(b"[1,2]"),
        },
        Case {
            name: "stdin a JSON string",
            code: 6,
            names: "not a JSON object",
            make: |c| c.stdin(br#""multus""#),
        },
        Case {
            name: "stdin missing name",
            code: 7,
            names: "name",
            make: |c| c.conf(json!({"name": null})),
        },
        Case {
            name: "stdin name with a slash",
            code: 7,
            names: "network name",
            make: |c| c.conf(json!({"name": "a/b"})),
        },
        Case {
            name: "stdin name not a string",
            code: 6,
            names: "name",
            make: |c| c.conf(json!({"name": 7})),
        },
        Case {
            name: "stdin missing type",
            code: 7,
            names: "type",
            make: |c| c.conf(json!({"type": null})),
        },
        Case {
            name: "stdin missing cniVersion",
            code: 7,
            names: "cniVersion",
            make: |c| c.conf(json!({"cniVersion": null})),
        },
        Case {
            name: "stdin unsupported cniVersion",
            code: 1,
            names: "9.9.9",
            make: |c| c.conf(json!({"cniVersion": "9.9.9"})),
        },
        Case {
            name: "stdin cniVersion not a string",
            code: 6,
            names: "cniVersion",
            make: |c| c.conf(json!({"cniVersion": 1})),
        },
        // ---- the CNI environment ----
        Case {
            name: "CNI_COMMAND unknown",
            code: 4,
            names: "BOGUS",
            make: |c| c.env("CNI_COMMAND", Some("BOGUS")),
        },
        Case {
            name: "CNI_CONTAINERID missing",
            code: 4,
            names: "CNI_CONTAINERID",
            make: |c| c.env("CNI_CONTAINERID", None),
        },
        Case {
            name: "CNI_CONTAINERID empty",
            code: 4,
            names: "CNI_CONTAINERID",
            make: |c| c.env("CNI_CONTAINERID", Some("")),
        },
        Case {
            name: "CNI_NETNS missing",
            code: 4,
            names: "CNI_NETNS",
            make: |c| c.env("CNI_NETNS", None),
        },
        Case {
            name: "CNI_NETNS empty",
            code: 4,
            names: "CNI_NETNS",
            make: |c| c.env("CNI_NETNS", Some("")),
        },
        Case {
            name: "CNI_IFNAME missing",
            code: 4,
            names: "CNI_IFNAME",
            make: |c| c.env("CNI_IFNAME", None),
        },
        Case {
            name: "CNI_IFNAME empty",
            code: 4,
            names: "CNI_IFNAME",
            make: |c| c.env("CNI_IFNAME", Some("")),
        },
        Case {
            name: "CNI_ARGS empty",
            code: 4,
            names: "K8S_POD_NAMESPACE",
            make: |c| c.args(""),
        },
        Case {
            name: "CNI_PATH missing",
            code: 4,
            names: "CNI_PATH",
            make: |c| c.env("CNI_PATH", None),
        },
        Case {
            name: "CNI_PATH empty",
            code: 4,
            names: "CNI_PATH",
            make: |c| c.env("CNI_PATH", Some("")),
        },
        Case {
            name: "CNI_ARGS missing",
            code: 4,
            names: "K8S_POD_NAMESPACE",
            make: |c| c.env("CNI_ARGS", None),
        },
        Case {
            name: "CNI_ARGS without the pod name",
            code: 4,
            names: "K8S_POD_NAME",
            make: |c| c.args("IgnoreUnknown=1;K8S_POD_NAMESPACE=default"),
        },
        Case {
            name: "CNI_ARGS a=b=c",
            code: 4,
            names: "a=b=c",
            make: |c| {
                let args = format!("{};a=b=c", c.inv().args);
                c.args(&args)
            },
        },
        Case {
            name: "CNI_ARGS trailing ;",
            code: 4,
            names: "CNI_ARGS",
            make: |c| {
                let args = format!("{};", c.inv().args);
                c.args(&args)
            },
        },
        Case {
            name: "CNI_ARGS item without =",
            code: 4,
            names: "junk",
            make: |c| {
                let args = format!("junk;{}", c.inv().args);
                c.args(&args)
            },
        },
        Case {
            name: "CNI_ARGS duplicate key",
            code: 4,
            names: "K8S_POD_NAME",
            make: |c| {
                let args = format!("{};K8S_POD_NAME=someone-else", c.inv().args);
                c.args(&args)
            },
        },
        Case {
            name: "CNI_ARGS not UTF-8",
            code: 4,
            names: "UTF-8",
            make: |c| {
                let mut raw = c.inv().args.into_bytes();
                raw.extend_from_slice(b";X=\xff\xfe");
                c.shim(|i| i.env_os.push(("CNI_ARGS".into(), OsString::from_vec(raw))))
            },
        },
        Case {
            name: "CNI_CONTAINERID not UTF-8",
            code: 4,
            names: "CNI_CONTAINERID",
            make: |c| {
                c.shim(|i| {
                    i.env_os.push((
                        "CNI_CONTAINERID".into(),
                        OsString::from_vec(b"c0\xff".to_vec()),
                    ))
                })
            },
        },
        // ---- container ids and interface names ----
        Case {
            name: "container id with /",
            code: 4,
            names: "CNI_CONTAINERID",
            make: |c| {
                let id = hostile("a/");
                c.shim(|i| i.container_id = id)
            },
        },
        Case {
            name: "container id ..",
            code: 4,
            names: "CNI_CONTAINERID",
            make: |c| c.shim(|i| i.container_id = "..".into()),
        },
        Case {
            name: "container id ../ traversal",
            code: 4,
            names: "CNI_CONTAINERID",
            make: |c| {
                let id = hostile("../../../");
                c.shim(|i| i.container_id = id)
            },
        },
        Case {
            name: "container id of 300 characters",
            code: 4,
            names: "CNI_CONTAINERID",
            make: |c| {
                c.shim(|i| i.container_id = format!("{MARKER}{}", "a".repeat(300 - MARKER.len())))
            },
        },
        Case {
            name: "container id with NUL (gRPC)",
            code: 4,
            names: "container id",
            make: |c| c.grpc(|r| r.container_id = format!("c0\0{MARKER}")),
        },
        Case {
            name: "ifname with /",
            code: 4,
            names: "CNI_IFNAME",
            make: |c| c.shim(|i| i.ifname = "a/b".into()),
        },
        Case {
            name: "ifname ..",
            code: 4,
            names: "CNI_IFNAME",
            make: |c| c.shim(|i| i.ifname = "..".into()),
        },
        Case {
            name: "ifname of 300 characters",
            code: 4,
            names: "CNI_IFNAME",
            make: |c| c.shim(|i| i.ifname = "e".repeat(300)),
        },
        Case {
            name: "ifname with whitespace",
            code: 4,
            names: "CNI_IFNAME",
            make: |c| c.shim(|i| i.ifname = "eth 0".into()),
        },
        Case {
            name: "ifname with NUL (gRPC)",
            code: 4,
            names: "interface name",
            make: |c| c.grpc(|r| r.ifname = "eth\x000".into()),
        },
        // ---- the network namespace ----
        Case {
            name: "netns missing",
            code: 4,
            names: "no net namespace",
            make: |c| c.shim(|i| i.netns = format!("/var/run/netns/{MARKER}-gone")),
        },
        Case {
            name: "netns a regular file",
            code: 4,
            names: "not a network namespace",
            make: |c| {
                let file = c.b.not_netns.path().join("file").display().to_string();
                c.shim(|i| i.netns = file)
            },
        },
        Case {
            name: "netns a directory",
            code: 4,
            names: "not a network namespace",
            make: |c| {
                let dir = c.b.not_netns.path().display().to_string();
                c.shim(|i| i.netns = dir)
            },
        },
        // ---- pod annotations ----
        Case {
            name: "networks: uppercase and underscore",
            code: 7,
            names: "Bad_Net",
            make: |c| c.networks("Bad_Net"),
        },
        Case {
            name: "networks: two slashes",
            code: 7,
            names: "failed at '/'",
            make: |c| c.networks("a/b/c"),
        },
        Case {
            name: "networks: ifname too long",
            code: 7,
            names: "interface name",
            make: |c| c.networks("ptp-ok@abcdefghijklmnopq"),
        },
        Case {
            name: "networks: JSON truncated",
            code: 7,
            names: "JSON",
            make: |c| c.networks(r#"[{"name": "ptp-ok""#),
        },
        Case {
            name: "networks: JSON not a list",
            code: 7,
            names: "JSON",
            make: |c| c.networks(r#"{"name": "ptp-ok"}"#),
        },
        Case {
            name: "networks: JSON name not a string",
            code: 7,
            names: "JSON",
            make: |c| c.networks(r#"[{"name": 5}]"#),
        },
        Case {
            name: "networks: JSON bad mac",
            code: 7,
            names: "zz:zz",
            make: |c| c.networks(r#"[{"name": "ptp-ok", "mac": "zz:zz"}]"#),
        },
        Case {
            name: "networks: JSON bad ip",
            code: 7,
            names: "10.0.0.999/24",
            make: |c| c.networks(r#"[{"name": "ptp-ok", "ips": ["10.0.0.999/24"]}]"#),
        },
        Case {
            name: "default-network: garbage",
            code: 7,
            names: "tryLoadK8sPodDefaultNetwork",
            make: |c| {
                c.annotations.insert(DEFAULT_NETWORK.into(), "a/b/c".into());
                Request::Shim(c.inv())
            },
        },
        Case {
            name: "unknown NAD",
            code: 7,
            names: "no-such-nad",
            make: |c| c.networks("no-such-nad"),
        },
        // ---- NADs ----
        Case {
            name: "NAD spec.config not JSON",
            code: 7,
            names: "nad-",
            make: |c| c.nad("{not json"),
        },
        Case {
            name: "NAD spec.config empty",
            code: 7,
            names: "nad-",
            make: |c| c.nad(""),
        },
        Case {
            name: "NAD spec.config a JSON list",
            code: 7,
            names: "nad-",
            make: |c| c.nad("[]"),
        },
        Case {
            name: "NAD plugin type missing",
            code: 7,
            names: "type",
            make: |c| {
                let name = format!("net-{}", c.b.seq);
                c.nad(&json!({"cniVersion": "1.0.0", "name": name}).to_string())
            },
        },
        Case {
            name: "NAD plugin type not found",
            code: 7,
            names: "no-such-plugin",
            make: |c| c.plugin_nad("no-such-plugin"),
        },
        Case {
            name: "NAD plugin type with /",
            code: 7,
            names: "../../../bin/sh",
            make: |c| c.plugin_nad("../../../bin/sh"),
        },
        Case {
            name: "NAD plugin type absolute",
            code: 7,
            names: "/bin/true",
            make: |c| c.plugin_nad("/bin/true"),
        },
        Case {
            name: "NAD plugin type ..",
            code: 7,
            names: "\"..\"",
            make: |c| c.plugin_nad(".."),
        },
        Case {
            name: "NAD plugin not executable",
            code: 7,
            names: "not executable",
            make: |c| {
                let name = format!("noexec{}", c.b.seq);
                let path = c.b.bin.path().join(&name);
                std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
                c.plugin_nad(&name)
            },
        },
        // ---- plugins that misbehave ----
        Case {
            name: "plugin prints garbage",
            code: 6,
            names: "invalid result",
            make: |c| c.bad_plugin("echo 'this is not a result'"),
        },
        Case {
            name: "plugin prints nothing",
            code: 6,
            names: "invalid result",
            make: |c| c.bad_plugin("exit 0"),
        },
        Case {
            name: "plugin exits 0 with an error object",
            code: 7,
            names: "plugin says no",
            make: |c| {
                c.bad_plugin(
                    r#"echo '{"cniVersion": "1.0.0", "code": 7, "msg": "plugin says no"}'"#,
                )
            },
        },
        Case {
            name: "plugin exits non-zero without an error object",
            code: 999,
            names: "status 3",
            make: |c| c.bad_plugin("echo 'stderr words' >&2; exit 3"),
        },
        Case {
            name: "plugin writes megabytes on stdout",
            code: 999,
            names: "more than 1048576 bytes",
            make: |c| c.bad_plugin("head -c 8000000 /dev/zero | tr '\\0' x"),
        },
        Case {
            name: "plugin writes megabytes on stderr and fails",
            code: 999,
            names: "status 1",
            make: |c| c.bad_plugin("head -c 8000000 /dev/zero | tr '\\0' x >&2; exit 1"),
        },
        Case {
            name: "plugin hangs",
            code: 999,
            names: "did not finish within 4s",
            make: |c| c.bad_plugin("exec sleep 60"),
        },
        Case {
            name: "plugin forks a child that keeps stdout open",
            code: 999,
            names: "stayed open",
            make: |c| {
                c.bad_plugin(
                    r#"(sleep 60) & echo '{"cniVersion": "1.0.0", "interfaces": [], "ips": []}'"#,
                )
            },
        },
        // ---- selections the plan refuses ----
        Case {
            name: "duplicate interface names",
            code: 7,
            names: "net5",
            make: |c| c.networks("ptp-ok@net5,ptp-ok2@net5"),
        },
        Case {
            name: "an interface named like the cluster's",
            code: 7,
            names: "eth0",
            make: |c| c.networks("ptp-ok@eth0"),
        },
        Case {
            name: "ECMP default routes",
            code: 7,
            names: "ECMP",
            make: |c| {
                c.networks(r#"[{"name": "ptp-ok", "default-route": ["10.89.0.1"]}, {"name": "ptp-ok2", "default-route": ["10.94.0.1"]}]"#)
            },
        },
    ]
}

impl Bench {
    fn start() -> Self {
        let bin = tempfile::Builder::new()
            .prefix("mrs-badbin-")
            .tempdir()
            .unwrap();
        let bin_dir = format!("{}:{}", bin.path().display(), multus_e2e::CNI_BIN_DIR);
        let k = KubeCluster::start(|c| {
            c.insert("binDir".into(), json!(bin_dir));
            c.insert("delegateTimeoutSeconds".into(), json!(DELEGATE_TIMEOUT_S));
            c.insert("kubeApiTimeoutSeconds".into(), json!(1));
            c.insert("kubeApiRetrySeconds".into(), json!(2));
        })
        .unwrap();
        let ptp = |subnet: &str| json!({"cniVersion": "1.0.0", "type": "ptp", "ipam": host_local(&k.layout, subnet)});
        k.api.put_nad(nad_json(
            "default",
            "ptp-ok",
            &ptp("10.89.0.0/24").to_string(),
        ));
        k.api.put_nad(nad_json(
            "default",
            "ptp-ok2",
            &ptp("10.94.0.0/24").to_string(),
        ));
        let not_netns = tempfile::Builder::new()
            .prefix("mrs-notns-")
            .tempdir()
            .unwrap();
        std::fs::write(not_netns.path().join("file"), "not a namespace").unwrap();
        Self {
            k,
            bin,
            pod_ns: Netns::new("mrsbad").unwrap(),
            not_netns,
            seq: 0,
        }
    }

    fn put_pod(&self, pod: &str, annotations: &BTreeMap<String, String>) {
        let mut p = pod_json("default", pod, KUBE_NODE, annotations);
        p["metadata"]["uid"] = json!(uid(pod));
        self.k.api.put_pod(p);
    }

    /// A pod on two networks, ADDed and DELed: the daemon still serves and cleans up.
    fn good_add_del(&mut self, after: &str) {
        self.seq += 1;
        let pod = format!("good-{}", self.seq);
        let ann = BTreeMap::from([(NETWORKS.to_owned(), "ptp-ok".to_owned())]);
        self.put_pod(&pod, &ann);
        let cid = format!("600d{:04}", self.seq);
        let inv = self
            .k
            .invocation(&cid, &self.pod_ns, "default", &pod, &uid(&pod));
        let out = inv.run().unwrap();
        assert!(
            out.success(),
            "good ADD after {after:?} failed: {out:?}\n{}",
            self.k.daemon.log_text()
        );
        assert_eq!(attached(&self.pod_ns), ["eth0", "net1"], "after {after:?}");
        let out = inv.with_command("DEL").run().unwrap();
        assert!(out.success(), "good DEL after {after:?} failed: {out:?}");
        self.assert_clean(after);
    }

    fn assert_clean(&self, case: &str) {
        assert_eq!(
            attached(&self.pod_ns),
            Vec::<String>::new(),
            "{case}: links left in the pod"
        );
        assert_eq!(
            self.k.layout.leases().unwrap(),
            Vec::<String>::new(),
            "{case}: leases left"
        );
        assert_eq!(
            self.k.layout.cache_records().unwrap(),
            Vec::<String>::new(),
            "{case}: records left"
        );
    }

    fn send(&self, request: Request) -> Answer {
        match request {
            Request::Shim(inv) => from_shim(&inv.run().unwrap()),
            Request::Grpc(req) => self.grpc_add(req),
        }
    }

    fn grpc_add(&self, req: CniRequest) -> Answer {
        let socket = self.k.daemon.socket();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let channel = multus_proto::channel::unix(&socket, Duration::from_secs(30))
                .await
                .unwrap();
            match CniClient::new(channel).add(req).await {
                Ok(r) => Answer {
                    ok: true,
                    code: None,
                    text: String::new(),
                    raw: format!("{:?}", r.into_inner()),
                },
                Err(status) => {
                    let e = CniError::from_wire(status.details());
                    Answer {
                        ok: false,
                        code: e.as_ref().map(|e| u64::from(e.code)),
                        text: e
                            .as_ref()
                            .map(|e| format!("{} {}", e.msg, e.details))
                            .unwrap_or_default(),
                        raw: format!("{status:?}"),
                    }
                }
            }
        })
    }
}

fn from_shim(out: &Output) -> Answer {
    let v = out.json();
    let text = format!(
        "{} {}",
        v["msg"].as_str().unwrap_or_default(),
        v["details"].as_str().unwrap_or_default()
    );
    Answer {
        ok: out.success(),
        code: out.cni_code(),
        text,
        raw: format!("{out:?}"),
    }
}

/// A cache record that is not ours: pod A's real record, copied under pod B's container id
/// with every delegate pointed at a plugin that leaves a mark when run. B's ADD must not act on
/// it (it would DEL A's delegates from B's request): it is moved aside as `.corrupt`, nothing of
/// it runs, and B attaches normally; A keeps its interfaces.
fn a_record_that_is_not_ours(b: &mut Bench) {
    b.seq += 1;
    let owner_ns = Netns::new("mrsown").unwrap();
    let (owner, intruder) = (format!("owner-{}", b.seq), format!("intruder-{}", b.seq));
    let ann = BTreeMap::from([(NETWORKS.to_owned(), "ptp-ok".to_owned())]);
    b.put_pod(&owner, &ann);
    b.put_pod(&intruder, &ann);
    let owner_add =
        b.k.invocation("0wner0001", &owner_ns, "default", &owner, &uid(&owner));
    let out = owner_add.run().unwrap();
    assert!(out.success(), "{out:?}");
    let mark = b.bin.path().join("tattled");
    let tattle = b.bin.path().join("tattle");
    std::fs::write(
        &tattle,
        format!(
            "#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND\" >> {}\n",
            mark.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tattle, std::fs::Permissions::from_mode(0o755)).unwrap();
    let own_dir = b.k.layout.dir("cni").join("multus-rs");
    let mut record: Value =
        serde_json::from_slice(&std::fs::read(own_dir.join("0wner0001")).unwrap()).unwrap();
    for entry in record["delegates"].as_array_mut().unwrap() {
        let config = &mut entry["delegate"]["config"];
        match config.get_mut("plugins").and_then(Value::as_array_mut) {
            Some(plugins) => plugins.iter_mut().for_each(|p| p["type"] = json!("tattle")),
            None => config["type"] = json!("tattle"),
        }
    }
    std::fs::write(own_dir.join("1ntruder01"), record.to_string()).unwrap();

    let add = b.k.invocation(
        "1ntruder01",
        &b.pod_ns,
        "default",
        &intruder,
        &uid(&intruder),
    );
    let out = add.run().unwrap();
    assert!(
        out.success(),
        "ADD over a record that is not ours: {out:?}\n{}",
        b.k.daemon.log_text()
    );
    assert!(
        !mark.exists(),
        "the planted record's plugin ran: {:?}",
        std::fs::read_to_string(&mark)
    );
    assert!(
        own_dir.join("1ntruder01.corrupt").exists(),
        "the record that is not ours was not moved aside"
    );
    assert_eq!(
        attached(&owner_ns),
        ["eth0", "net1"],
        "the owner lost interfaces"
    );
    assert_eq!(attached(&b.pod_ns), ["eth0", "net1"]);
    for inv in [add.with_command("DEL"), owner_add.with_command("DEL")] {
        let out = inv.run().unwrap();
        assert!(out.success(), "{out:?}");
    }
    assert!(!mark.exists(), "the planted record's plugin ran on DEL");
    // The operator's part: the quarantined file stays until someone looks at it.
    std::fs::remove_file(own_dir.join("1ntruder01.corrupt")).unwrap();
    assert_eq!(attached(&owner_ns), Vec::<String>::new());
    b.assert_clean("a record that is not ours");
    eprintln!("a record that is not ours: moved aside, not run; both pods attached and detached");
}

/// Every path under `root`.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path.clone());
            }
            out.insert(path);
        }
    }
    out
}

/// Files named with [`MARKER`] where a path traversal from the cache dir could have put one.
fn marked_files(layout_root: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = [
        "/",
        "/tmp",
        "/run",
        "/var/lib/cni",
        "/var/run/netns",
        "/etc",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    roots.extend(layout_root.ancestors().take(3).map(Path::to_owned));
    let mut found: Vec<PathBuf> = roots
        .iter()
        .filter_map(|r| std::fs::read_dir(r).ok())
        .flat_map(|d| d.filter_map(Result::ok).map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains(MARKER))
        .collect();
    found.extend(
        tree(layout_root)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(MARKER)),
    );
    found
}

#[test]
fn every_bad_input_is_a_clear_error_and_leaves_nothing() {
    let mut b = Bench::start();
    // Warm up: host-local's and libcni's directories exist from here on.
    b.good_add_del("warm-up");
    let root = b.k.layout.dir("cni").parent().unwrap().to_owned();
    let baseline = tree(&root);
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        b.seq += 1;
        let mut ctx = Ctx {
            b: &b,
            pod: format!("bad-{}", b.seq),
            cid: format!("bad0{:04}", b.seq),
            annotations: BTreeMap::new(),
        };
        let request = (case.make)(&mut ctx);
        let (pod, annotations) = (ctx.pod.clone(), ctx.annotations.clone());
        b.put_pod(&pod, &annotations);
        let started = Instant::now();
        let answer = b.send(request);
        let took = started.elapsed();
        eprintln!(
            "{:<50} {:>6} ms  code {:?}: {}",
            case.name,
            took.as_millis(),
            answer.code,
            answer.text.trim()
        );
        let right =
            !answer.ok && answer.code == Some(case.code) && answer.text.contains(case.names);
        if !right {
            failures.push(format!(
                "{}: want code {} naming {:?}, got {:?}: {}\n    raw: {}",
                case.name, case.code, case.names, answer.code, answer.text, answer.raw
            ));
        }
        // A delegate killed at its deadline must not outlive the answer by much either.
        assert!(
            took < Duration::from_secs(DELEGATE_TIMEOUT_S * 3),
            "{}: took {took:?}",
            case.name
        );
        b.assert_clean(case.name);
        let now = tree(&root);
        let added: Vec<_> = now.difference(&baseline).collect();
        let removed: Vec<_> = baseline.difference(&now).collect();
        assert!(
            added.is_empty() && removed.is_empty(),
            "{}: files added {added:?}, removed {removed:?}",
            case.name
        );
        let marked = marked_files(&root);
        assert!(
            marked.is_empty(),
            "{}: wrote outside the configured dirs: {marked:?}",
            case.name
        );
        b.good_add_del(case.name);
    }
    a_record_that_is_not_ours(&mut b);
    b.good_add_del("a record that is not ours");
    eprintln!(
        "{} bad inputs tried, {} answered wrongly",
        cases.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases answered wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
