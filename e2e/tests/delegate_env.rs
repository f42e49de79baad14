//! D-3: delegates run with the environment libcni gives them, so plugins that look their tools
//! up in PATH work. Debian's `portmap` maps a hostPort with the real `iptables` (Debian's package,
//! nf_tables backend) in the test's node namespace, through the real shim and daemon; the daemon
//! is started with a PATH that lacks every sbin directory (where Debian installs iptables), so
//! the DNAT rule can only appear because the daemon appends the system directories. A script
//! delegate records the environment the real daemon process hands it.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use multus_e2e::{
    daemon::Layout,
    ip,
    netns::Netns,
    probe,
    scenario::{Cluster, pod},
    shim::{Invocation, k8s_args},
};
use serde_json::{Value, json};

/// What a PATH without sbin finds: not iptables.
const PATH_WITHOUT_SBIN: &str = "/usr/bin:/bin";
const HOST_PORT: u16 = 18080;
const CONTAINER_PORT: u16 = 80;

/// Fails (naming the package) when iptables is missing, and checks that the daemon's PATH
/// really cannot find it, so the test proves the PATH append.
fn require_iptables() {
    assert!(
        Path::new("/usr/sbin/iptables").exists(),
        "/usr/sbin/iptables missing: install Debian's `iptables` package (e2e/run does)"
    );
    for dir in PATH_WITHOUT_SBIN.split(':') {
        assert!(
            !Path::new(dir).join("iptables").exists(),
            "{dir}/iptables exists: this PATH would find it and prove nothing"
        );
    }
}

/// bridge + host-local (leases in `data_dir`), then portmap (portMappings capability): the
/// cluster network.
fn portmap_conflist(data_dir: &Path, bridge: &str) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "cluster",
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true,
             "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": "10.88.0.0/24"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    })
}

/// The multus config a runtime passes for a pod with a hostPort: the portMappings capability
/// and its runtimeConfig (on ADD and on DEL alike, as containerd and CRI-O do).
fn hostport_conf(socket_dir: &Path) -> Vec<u8> {
    json!({
        "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim",
        "daemonSocketDir": socket_dir,
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [
            {"hostPort": HOST_PORT, "containerPort": CONTAINER_PORT, "protocol": "tcp"}
        ]}
    })
    .to_string()
    .into_bytes()
}

/// The DNAT rules that send this test's host port to `pod_ip`.
fn dnat_rules_to(node: &Netns, pod_ip: &str) -> Vec<String> {
    probe::dnat_rules_to(node, HOST_PORT, pod_ip, CONTAINER_PORT)
}

fn pod_ipv4(pod_ns: &Netns) -> String {
    let eth0 = ip::addresses(pod_ns.name())
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "eth0")
        .map(|(_, a)| a)
        .unwrap_or_default();
    let addr = eth0.iter().find(|a| !a.contains(':')).unwrap();
    addr.split('/').next().unwrap().to_owned()
}

/// A standalone node whose cluster network is bridge + portmap, the daemon started with `env`;
/// `tweak` may change the daemon config.
fn start(env: &[(&str, &str)], tweak: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Cluster {
    let layout = Layout::new().unwrap();
    let bridge = multus_e2e::unique("mrspm");
    let conflist = layout.dir("net.d").join("20-portmap.conflist");
    let conflist_text = portmap_conflist(&layout.dir("ipam"), &bridge).to_string();
    std::fs::write(&conflist, conflist_text).unwrap();
    let node = Netns::new("mrsnode").unwrap();
    let cluster = Cluster::start_on(node, layout, env, |c| {
        c.insert("clusterNetwork".into(), json!(conflist));
        tweak(c);
    })
    .unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", ""))
        .unwrap();
    cluster
}

fn invocation(cluster: &Cluster, cid: &str, pod_ns: &Netns) -> Invocation {
    Invocation::new(
        "ADD",
        cid,
        &pod_ns.path(),
        k8s_args("default", "web", "uid-web", cid),
        hostport_conf(cluster.daemon.socket_dir()),
    )
}

/// ADD maps the host port to the pod (a DNAT rule in the node's nat table); DEL removes it.
/// `during` runs between the two.
fn hostport_round_trip(cluster: &Cluster, cid: &str, during: impl FnOnce()) {
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = invocation(cluster, cid, &pod_ns);
    let out = add.run().unwrap();
    assert!(
        out.success(),
        "ADD failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );
    let pod_ip = pod_ipv4(&pod_ns);
    let rules = dnat_rules_to(&cluster.node, &pod_ip);
    assert!(
        !rules.is_empty(),
        "no DNAT of :{HOST_PORT} to {pod_ip}:\n{}",
        probe::nat_rules(&cluster.node)
    );
    during();

    let del = add.with_command("DEL");
    let out = del.run().unwrap();
    assert!(
        out.success(),
        "DEL failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );
    assert_eq!(
        dnat_rules_to(&cluster.node, &pod_ip),
        Vec::<String>::new(),
        "DNAT left after DEL"
    );
    assert_eq!(ip::links(pod_ns.name()).unwrap(), Vec::<String>::new());
}

#[test]
fn d3_portmap_hostport_works_with_a_daemon_path_without_sbin() {
    require_iptables();
    let cluster = start(&[("PATH", PATH_WITHOUT_SBIN)], |_| {});
    hostport_round_trip(&cluster, "d3000001", || {});
}

/// A root filesystem for `chrootDir` built from the host's parts: `/usr`, `/etc`, `/dev` and
/// `/run/netns` (the pods' namespaces) bound in read-only, `/proc`, merged-usr symlinks, its own
/// `/var`; everything unmounted when dropped (after the daemon, which is declared later and
/// so dropped first).
struct ChrootRoot {
    /// `None` only while dropping.
    dir: Option<tempfile::TempDir>,
    mounts: Vec<std::path::PathBuf>,
}

impl ChrootRoot {
    fn build() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("multus-e2e-root-")
            .tempdir()
            .unwrap();
        let mut root = Self {
            dir: Some(dir),
            mounts: Vec::new(),
        };
        for (link, to) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            std::os::unix::fs::symlink(to, root.path().join(link)).unwrap();
        }
        std::fs::create_dir_all(root.path().join("run")).unwrap();
        std::fs::create_dir_all(root.path().join("tmp")).unwrap();
        std::fs::create_dir_all(root.path().join("var")).unwrap();
        std::os::unix::fs::symlink("../run", root.path().join("var/run")).unwrap();
        // Read-only wherever the plugins need not write, so that even a root left behind by a
        // killed test cannot be used to delete host files (device nodes stay usable: a
        // read-only mount does not stop writes to a device). /proc stays writable for the
        // plugins' sysctls; procfs files cannot be deleted.
        root.bind(Path::new("/usr"), true, false);
        root.bind(Path::new("/etc"), true, false);
        root.bind(Path::new("/proc"), false, false);
        root.bind(Path::new("/dev"), true, false);
        // Recursive: the pods' namespaces are nsfs mounts below it.
        root.bind(Path::new("/run/netns"), true, true);
        root
    }

    fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// Whether anything is still mounted at or below the root (in this mount namespace).
    fn still_mounted(&self) -> bool {
        let root = self.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo").map_or(true, |info| {
            info.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .any(|mount_point| mount_point.starts_with(&root))
        })
    }

    /// Binds host `src` at the same path inside the root.
    fn bind(&mut self, src: &Path, read_only: bool, recursive: bool) {
        use nix::mount::{MsFlags, mount};
        let target = self.path().join(src.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&target).unwrap();
        let mut flags = MsFlags::MS_BIND;
        if recursive {
            flags |= MsFlags::MS_REC;
        }
        mount(Some(src), &target, None::<&str>, flags, None::<&str>)
            .unwrap_or_else(|e| panic!("bind {} at {}: {e}", src.display(), target.display()));
        self.mounts.push(target.clone());
        // A slave copy: mounts made on the host still appear inside (the pods' namespaces),
        // but unmounting ours never propagates back. With a shared `/run/netns`, unmounting a
        // peer copy would unmount every namespace of the host, other tests' included.
        let slave = MsFlags::MS_SLAVE | MsFlags::MS_REC;
        mount(None::<&str>, &target, None::<&str>, slave, None::<&str>)
            .unwrap_or_else(|e| panic!("making {} a slave mount: {e}", target.display()));
        if read_only {
            let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, &target, None::<&str>, ro, None::<&str>)
                .unwrap_or_else(|e| panic!("remount {} read-only: {e}", target.display()));
        }
    }
}

impl Drop for ChrootRoot {
    fn drop(&mut self) {
        for target in self.mounts.iter().rev() {
            if let Err(e) = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("cleanup: unmounting {}: {e}", target.display());
            }
        }
        // Removing the tempdir with a host directory still bound in would delete host files:
        // keep it instead.
        if self.still_mounted()
            && let Some(dir) = self.dir.take()
        {
            eprintln!(
                "cleanup: {} still has mounts; left in place",
                dir.keep().display()
            );
        }
    }
}

#[test]
fn d3_portmap_hostport_works_inside_chroot_dir() {
    require_iptables();
    let layout = Layout::new().unwrap();
    let root = ChrootRoot::build();
    // host-local keeps its leases in a directory only the chroot has: where they land shows
    // that the plugins ran inside it.
    let data_dir = Path::new("/var/lib").join(multus_e2e::unique("mrsipam"));
    let in_root = root.path().join(data_dir.strip_prefix("/").unwrap());
    let bridge = multus_e2e::unique("mrspm");
    let conflist = layout.dir("net.d").join("20-portmap.conflist");
    std::fs::write(&conflist, portmap_conflist(&data_dir, &bridge).to_string()).unwrap();
    let node = Netns::new("mrsnode").unwrap();
    let root_path = root.path().to_owned();
    let cluster = Cluster::start_on(node, layout, &[("PATH", PATH_WITHOUT_SBIN)], |c| {
        c.insert("clusterNetwork".into(), json!(conflist));
        c.insert("chrootDir".into(), json!(root_path));
    })
    .unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", ""))
        .unwrap();
    hostport_round_trip(&cluster, "d3000002", || {
        let leases: Vec<_> = std::fs::read_dir(in_root.join("cluster"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("10.88.0."))
            .collect();
        assert_eq!(leases.len(), 1, "one lease inside the chroot");
        assert!(!data_dir.exists(), "nothing written outside the chroot");
    });
    drop(cluster);
    drop(root);
}

/// The real daemon process's environment reaches a delegate (a script plugin that records its
/// environment), minus the deny list, with the request's CNI_* and the completed PATH.
#[test]
fn d3_the_daemons_environment_reaches_a_delegate_minus_the_deny_list() {
    require_iptables();
    let plugins = tempfile::tempdir().unwrap();
    let dump = plugins.path().join("env-ADD");
    let script = format!(
        "#!/bin/bash\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\nenv | sort > {}\n\
         echo '{{\"cniVersion\":\"1.0.0\",\"interfaces\":[{{\"name\":\"'$CNI_IFNAME'\",\"sandbox\":\"'$CNI_NETNS'\"}}]}}'\n",
        dump.display()
    );
    let plugin = plugins.path().join("envdump");
    std::fs::write(&plugin, script).unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let env = [
        ("PATH", PATH_WITHOUT_SBIN),
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("MULTUS_NODE_NAME", "node-d3"),
        ("MULTUS_LOGLEVEL", "debug"),
        ("CNI_NETNS_OVERRIDE", "1"),
    ];
    let bin_dir = format!("{}:{}", plugins.path().display(), multus_e2e::CNI_BIN_DIR);
    let cluster = start(&env, |c| {
        c.insert("binDir".into(), json!(bin_dir));
    });
    let nad = multus_e2e::scenario::nad(
        "default",
        "envdump",
        &json!({"cniVersion": "1.0.0", "type": "envdump"}),
    );
    cluster.layout.put_manifest("nad.json", &nad).unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", "envdump"))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = invocation(&cluster, "d3000003", &pod_ns);
    let out = add.run().unwrap();
    assert!(
        out.success(),
        "ADD failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );
    let envs = std::fs::read_to_string(&dump).unwrap();
    let lines: Vec<&str> = envs.lines().collect();
    for want in [
        "KUBERNETES_SERVICE_HOST=10.96.0.1",
        "MULTUS_NODE_NAME=node-d3",
        "CNI_COMMAND=ADD",
        "CNI_IFNAME=net1",
        "CNI_CONTAINERID=d3000003",
        "PATH=/usr/bin:/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin",
    ] {
        assert!(lines.contains(&want), "{want} missing in {envs}");
    }
    for gone in ["CNI_NETNS_OVERRIDE=", "MULTUS_LOGLEVEL="] {
        assert!(
            !lines.iter().any(|l| l.starts_with(gone)),
            "{gone} in {envs}"
        );
    }
    let out = add.with_command("DEL").run().unwrap();
    assert!(out.success(), "DEL failed: {out:?}");
}
