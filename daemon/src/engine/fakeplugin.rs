//! Test helper: fake CNI plugins written as bash scripts into a tempdir. Each appends one line
//! `<plugin> <CNI_COMMAND> <CNI_IFNAME> <CNI_ARGS> <stdin>` to a shared log, so tests can check
//! order, environment and the exact config every plugin received.
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::admission::Admission;
use super::exec::Executor;
use crate::config::Config;

/// One logged plugin call.
#[derive(Debug, Clone)]
pub struct Call {
    pub plugin: String,
    pub command: String,
    pub ifname: String,
    pub cni_args: String,
    pub stdin: Value,
}

/// A bin dir of fake plugins plus the log they write.
pub struct FakePlugins {
    pub dir: tempfile::TempDir,
}

/// The body a plugin runs after logging: prints an ADD result naming its own plugin type.
pub const ECHO_RESULT: &str = r#"if [ "$CNI_COMMAND" = ADD ]; then
  printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"10.9.0.%s/24","interface":0}],"by":"%s"}' "$CNI_IFNAME" "$CNI_NETNS" "$N" "$P"
fi"#;

impl FakePlugins {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// Writes plugin `name` whose body (bash) runs after the call is logged; `$P` is the
    /// plugin's name, `$N` a number unique to it.
    pub fn add(&self, name: &str, body: &str) -> &Self {
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0)
            + 1;
        let script = format!(
            "#!/bin/bash\nP={name}\nN={n}\nin=$(cat)\nprintf '%s %s %s %s %s\\n' \"$P\" \"$CNI_COMMAND\" \"${{CNI_IFNAME:--}}\" \"${{CNI_ARGS:--}}\" \"$in\" >> {log}\n{body}\n",
            log = self.log_path().display()
        );
        let path = self.dir.path().join(name);
        std::fs::write(&path, script).expect("write plugin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        self
    }

    /// Every logged call, in order.
    pub fn calls(&self) -> Vec<Call> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .map(|l| {
                let mut it = l.splitn(5, ' ');
                let mut next = || it.next().unwrap_or_default().to_owned();
                let (plugin, command, ifname, cni_args) = (next(), next(), next(), next());
                let stdin = serde_json::from_str(&next()).unwrap_or(Value::Null);
                Call {
                    plugin,
                    command,
                    ifname,
                    cni_args,
                    stdin,
                }
            })
            .collect()
    }

    pub fn config(&self) -> Config {
        Config {
            bin_dir: self.dir.path().to_owned(),
            delegate_timeout_seconds: 10,
            ..Config::default()
        }
    }

    pub fn executor(&self) -> Executor {
        Executor::new(
            &self.config(),
            Arc::new(Admission::new(4, Duration::from_secs(10))),
        )
    }
}

/// A new network namespace, with a veth pair whose one end is named `link` when given: a thread unshared into it
/// parks for the rest of the test process, which keeps it alive and takes it along at exit, so
/// nothing leaks. Needs root (as every namespace test here).
pub(crate) fn private_netns(link: Option<&str>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let link = link.map(str::to_owned);
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) needs root");
        if let Some(name) = link {
            // A child forked from this thread starts in its namespace.
            let status = std::process::Command::new("ip")
                .args([
                    "link",
                    "add",
                    &name,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "mrs-peer0",
                ])
                .status()
                .expect("iproute2's `ip` is needed (apt-get install iproute2)");
            assert!(status.success(), "ip link add {name} type veth: {status}");
        }
        tx.send(nix::unistd::gettid()).unwrap();
        loop {
            std::thread::park();
        }
    });
    let tid = rx.recv().expect("the namespace thread failed");
    format!("/proc/{}/task/{tid}/ns/net", std::process::id())
}

/// An empty namespace (only `lo`) shared by the tests of this process: the ADD pre-check
/// (`validateIfName`) needs a namespace that exists.
pub(crate) fn empty_netns() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| private_netns(None)).clone()
}
