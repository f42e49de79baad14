//! Security (issue 12), through the real shim and daemon: only allowed peers reach the CNI RPCs
//! and the HTTP API, even a process holding CAP_DAC_OVERRIDE (past the 0700 dir and 0600 socket)
//! under another uid; and no request can make the daemon open, read or write anything outside
//! its dirs or exec anything outside `binDir` (traversal through the container id, ifname, netns,
//! NAD `type`, CNI_PATH and config keys in the request, symlinks and FIFOs planted in `cniDir`).
//! An inotify watch on an "outside" directory proves nothing there was even opened.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use multus_e2e::probe::*;
use multus_e2e::{
    bins,
    netns::Netns,
    scenario::{Cluster, nad, pod},
    shim::Invocation,
};
use multus_proto::v1::CniRequest;
use multus_proto::v1::cni_client::CniClient;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde_json::json;

const NOBODY: &str = "65534";

/// `setpriv` as uid/gid 65534 with no groups, optionally holding CAP_DAC_OVERRIDE (inheritable
/// and ambient, so the exec'd program has it effective).
fn as_nobody(with_dac_override: bool) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
    ]);
    if with_dac_override {
        cmd.args(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"]);
    }
    cmd
}

/// The shim's ADD for `inv`, run through `cmd` (the setpriv prefix).
fn shim_via(mut cmd: Command, inv: &Invocation) -> multus_e2e::shim::Output {
    use std::io::Write;
    cmd.arg(bins::shim().unwrap())
        .env_clear()
        .envs([
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", inv.container_id.as_str()),
            ("CNI_NETNS", inv.netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", inv.args.as_str()),
            ("CNI_PATH", inv.cni_path.as_str()),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("setpriv (util-linux) not found");
    child.stdin.take().unwrap().write_all(&inv.stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    multus_e2e::shim::Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// curl over the daemon socket as nobody with CAP_DAC_OVERRIDE: (HTTP status, body).
fn curl_as_nobody(socket: &Path, method: &str, path: &str, body: &str) -> (String, String) {
    let out = as_nobody(true)
        .arg("curl")
        .args(["-s", "-X", method, "--unix-socket"])
        .arg(socket)
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("curl not found");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_owned(), body.to_owned())
}

#[test]
fn an_unprivileged_uid_is_refused_on_grpc_and_http_even_with_cap_dac_override() {
    let cluster = Cluster::start(|_| {}).unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", ""))
        .unwrap();
    let (dir, socket) = (
        cluster.daemon.socket_dir().to_owned(),
        cluster.daemon.socket(),
    );
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o700, "socket dir");
    assert_eq!(
        fs::symlink_metadata(&socket).unwrap().permissions().mode() & 0o7777,
        0o600,
        "socket"
    );
    assert_eq!(fs::metadata(&dir).unwrap().uid(), 0);
    assert_eq!(fs::symlink_metadata(&socket).unwrap().uid(), 0);

    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("5ec00001", &pod_ns, "default", "web", "uid-web");
    // Without the capability the modes alone keep nobody out.
    let out = shim_via(as_nobody(false), &add);
    assert_eq!(out.cni_code(), Some(11), "{out:?}");
    assert!(
        out.json()["msg"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{out:?}"
    );

    // With it, the connection is made and the daemon's SO_PEERCRED check refuses it.
    let caps = as_nobody(true)
        .args(["grep", "^CapEff:", "/proc/self/status"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&caps.stdout).trim(),
        "CapEff:\t0000000000000002",
        "setpriv did not give CAP_DAC_OVERRIDE"
    );
    let out = shim_via(as_nobody(true), &add);
    assert!(!out.success(), "{out:?}");
    let msg = out.json()["msg"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("PermissionDenied") && msg.contains("uid 65534"),
        "{out:?}"
    );

    // The HTTP API on the same socket: every path, probes included.
    let conf = String::from_utf8(add.stdin.clone()).unwrap();
    let cni_body = json!({"env": {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "5ec00002", "CNI_NETNS": pod_ns.path(),
        "CNI_IFNAME": "eth0", "CNI_ARGS": add.args}, "config": base64(conf.as_bytes())})
    .to_string();
    for (method, path, body) in [
        ("POST", "/cni", cni_body.as_str()),
        ("POST", "/delegate", "{}"),
        ("GET", "/healthz", ""),
        ("GET", "/readyz", ""),
    ] {
        let (code, text) = curl_as_nobody(&socket, method, path, body);
        assert_eq!(code, "403", "{method} {path}: {text}");
        assert!(text.contains("uid 65534"), "{method} {path}: {text}");
    }
    assert!(attached(&pod_ns).is_empty());
    assert_eq!(
        cluster.layout.cache_records().unwrap(),
        Vec::<String>::new()
    );
    let log = cluster.daemon.log_text();
    assert!(
        !log.contains("planned ADD"),
        "a refused ADD reached the engine:\n{log}"
    );
    // Root still gets through.
    assert!(add.run().unwrap().success());
    assert!(add.with_command("DEL").run().unwrap().success());
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A directory the daemon must never touch, watched by inotify for any open, read, write,
/// create, delete, rename or attribute change of it or anything in it.
struct Outside {
    dir: tempfile::TempDir,
    inotify: Inotify,
}

impl Outside {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("multus-e2e-outside-")
            .tempdir()
            .unwrap();
        fs::write(
            dir.path().join("canary"),
            br#"{"schemaVersion":1,"secret":true}"#,
        )
        .unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).unwrap();
        inotify
            .add_watch(dir.path(), AddWatchFlags::IN_ALL_EVENTS)
            .unwrap();
        Self { dir, inotify }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A plugin here that records being run.
    fn tripwire(&self, name: &str) {
        let path = self.path(name);
        fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"$0\" >> {}\nexit 1\n",
                self.path("ran").display()
            ),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The events since the last call (setup's own included the first time).
    fn events(&self) -> Vec<String> {
        match self.inotify.read_events() {
            Ok(events) => events
                .into_iter()
                .map(|e| format!("{:?} {:?}", e.mask, e.name))
                .collect(),
            Err(nix::errno::Errno::EAGAIN) => Vec::new(),
            Err(e) => panic!("inotify: {e}"),
        }
    }

    fn drain(&self) {
        while !self.events().is_empty() {}
    }
}

fn grpc(socket: &Path, verb: &str, req: CniRequest) -> Result<(), tonic::Status> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = multus_proto::channel::unix(socket, Duration::from_secs(20))
            .await
            .unwrap();
        let mut client = CniClient::new(channel);
        let r = match verb {
            "ADD" => client.add(req).await,
            "DEL" => client.del(req).await,
            _ => client.check(req).await,
        };
        r.map(|_| ())
    })
}

fn request(inv: &Invocation) -> CniRequest {
    CniRequest {
        protocol_version: multus_proto::PROTOCOL_VERSION,
        container_id: inv.container_id.clone(),
        netns: inv.netns.clone(),
        ifname: inv.ifname.clone(),
        cni_args_raw: inv.args.clone(),
        cni_args: Default::default(),
        cni_path: inv.cni_path.clone(),
        config: inv.stdin.clone(),
    }
}

#[test]
fn no_request_reaches_outside_the_daemons_dirs_or_execs_outside_bin_dir() {
    let outside = Outside::new();
    for name in ["ptp", "bridge", "host-local", "tuning", "evil"] {
        outside.tripwire(name);
    }
    let cluster = Cluster::start(|c| {
        c.insert("requestTimeouts".into(), json!({"add": 10, "del": 10}));
    })
    .unwrap();
    ptp_nad(&cluster);
    let o = outside.dir.path().display().to_string();
    let evil_types = [
        format!("../../../../../../..{o}/evil"),
        format!("{o}/evil"),
        "..".into(),
    ];
    for (i, t) in evil_types.iter().enumerate() {
        let config = json!({"cniVersion": "1.0.0", "name": format!("evil{i}"), "type": t});
        cluster
            .layout
            .put_manifest(
                &format!("nad-evil{i}.json"),
                &nad("default", &format!("evil{i}"), &config),
            )
            .unwrap();
    }
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "p", "uid-p", "ptp-net"))
        .unwrap();
    cluster
        .layout
        .put_manifest(
            "pod-evil.json",
            &pod("default", "e", "uid-e", "evil0, evil1, evil2"),
        )
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let socket = cluster.daemon.socket();
    let good = cluster.invocation("5ec00010", &pod_ns, "default", "p", "uid-p");
    outside.drain();

    let mut refused = Vec::new();
    let mut attempt = |what: &str, inv: Invocation| {
        for verb in ["ADD", "CHECK", "DEL"] {
            let r = grpc(&socket, verb, request(&inv));
            if verb == "ADD" {
                refused.push((what.to_owned(), r.is_err()));
            }
        }
    };
    // Container ids and ifnames that would name a path elsewhere.
    for cid in [
        format!("../../../../../../..{o}/canary"),
        "..".into(),
        "a/../../b".into(),
        format!("{o}/canary"),
    ] {
        let mut inv = good.clone();
        inv.container_id = cid.clone();
        attempt(&format!("container id {cid}"), inv);
    }
    for ifname in ["../../x", "a/b", ".."] {
        let mut inv = good.clone();
        inv.ifname = ifname.into();
        attempt(&format!("ifname {ifname}"), inv);
    }
    // Netns paths that are not namespaces: a file (would be opened), a FIFO (would block the
    // opening thread for good), the same through a relative path.
    for netns in [
        outside.path("canary").display().to_string(),
        outside.path("fifo").display().to_string(),
        format!("../../../../../../..{o}/fifo"),
    ] {
        let mut inv = good.clone();
        inv.netns = netns.clone();
        attempt(&format!("netns {netns}"), inv);
    }
    // NAD types with a path.
    attempt(
        "NAD types with paths",
        cluster.invocation("5ec00011", &pod_ns, "default", "e", "uid-e"),
    );
    // Symlinks and a FIFO planted where records live.
    let cni = cluster.layout.dir("cni");
    fs::create_dir_all(cni.join("multus-rs")).unwrap();
    std::os::unix::fs::symlink(
        outside.path("canary"),
        cni.join("multus-rs").join("5ec00012"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path("canary"), cni.join("5ec00012")).unwrap();
    std::os::unix::fs::symlink(outside.path("fifo"), cni.join("5ec00013")).unwrap();
    for cid in ["5ec00012", "5ec00013"] {
        let mut inv = good.clone();
        inv.container_id = cid.into();
        assert!(grpc(&socket, "DEL", request(&inv)).is_ok(), "DEL {cid}");
    }
    for (what, was_refused) in &refused {
        assert!(was_refused, "{what}: ADD was not refused");
    }
    assert!(attached(&pod_ns).is_empty(), "{:?}", attached(&pod_ns));

    // A good ADD with the request naming the outside dir as CNI_PATH and in every config key a
    // thin plugin might honour: the daemon uses binDir and its own dirs only.
    let mut inv = good.clone();
    inv.cni_path = o.clone();
    let mut conf: serde_json::Value = serde_json::from_slice(&inv.stdin).unwrap();
    for key in [
        "binDir",
        "cniDir",
        "confDir",
        "cniConfigDir",
        "cniPath",
        "chrootDir",
    ] {
        conf[key] = json!(o);
    }
    inv.stdin = conf.to_string().into_bytes();
    let out = inv.run().unwrap();
    assert!(out.success(), "{out:?}\n{}", cluster.daemon.log_text());
    assert!(addr_of(&pod_ns, "net1")[0].starts_with("10.89.0."));
    assert!(inv.with_command("DEL").run().unwrap().success());
    assert!(attached(&pod_ns).is_empty());
    // The same ADD over a record that is a symlink to the outside: the link is replaced.
    let mut over = inv.clone();
    over.container_id = "5ec00014".into();
    std::os::unix::fs::symlink(
        outside.path("canary"),
        cni.join("multus-rs").join("5ec00014"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path("canary"), cni.join("5ec00014")).unwrap();
    assert!(over.run().unwrap().success());
    assert!(over.with_command("DEL").run().unwrap().success());

    let events = outside.events();
    assert!(
        events.is_empty(),
        "the daemon touched the outside dir: {events:#?}"
    );
    assert!(!outside.path("ran").exists(), "a plugin outside binDir ran");
    assert_eq!(
        fs::read(outside.path("canary")).unwrap(),
        br#"{"schemaVersion":1,"secret":true}"#
    );
    assert!(attached(&pod_ns).is_empty());
    assert_eq!(cluster.layout.leases().unwrap(), Vec::<String>::new());
    // The daemon still serves.
    assert!(good.run().unwrap().success());
    assert!(good.with_command("DEL").run().unwrap().success());
}
