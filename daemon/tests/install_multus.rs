//! `install_multus` as the init container runs it: replacing a shim that is being executed in a
//! loop (no ETXTBSY, no torn binary), and the probe mode against a real gRPC health server.
// Test helpers (not only #[test] fns) unwrap: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

const ETXTBSY: i32 = 26;

fn installer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_install_multus"))
        .args(args)
        .output()
        .unwrap()
}

fn install(source: &Path, dest_dir: &Path) {
    let out = installer(&[
        "-t",
        "thick",
        "-d",
        dest_dir.to_str().unwrap(),
        "--source",
        source.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "install_multus failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies an executable in a child process: a writable fd held by this process could leak into a
/// child another test thread is forking at that moment and make exec of the copy ETXTBSY.
fn copy_exec(from: &Path, to: &Path) {
    assert!(
        Command::new("cp")
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success()
    );
}

/// Two real executables that both exit 0 and differ in content, under the shim's name.
fn two_shims(root: &Path) -> [PathBuf; 2] {
    let shims = [("a", "/bin/true"), ("b", "/bin/echo")].map(|(dir, from)| {
        let d = root.join(dir);
        fs::create_dir(&d).unwrap();
        let to = d.join("multus-shim");
        copy_exec(Path::new(from), &to);
        to
    });
    assert_ne!(fs::read(&shims[0]).unwrap(), fs::read(&shims[1]).unwrap());
    shims
}

/// The init container's upstream command line installs both plugins, printing upstream's lines;
/// a missing or thin --type exits 1 as upstream (D-10).
#[test]
fn d10_upstream_command_line_installs_shim_and_passthru() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("img");
    fs::create_dir(&src).unwrap();
    copy_exec(Path::new("/bin/true"), &src.join("multus-shim"));
    copy_exec(Path::new("/bin/echo"), &src.join("passthru"));
    let dest = dir.path().join("cni-bin");
    fs::create_dir(&dest).unwrap();
    let dest_flag = format!("-d{}", dest.display());
    let out = installer(&[
        "-t",
        "thick",
        &dest_flag,
        "--source-dir",
        src.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("multus multus-shim copy succeeded!"),
        "{stdout}"
    );
    assert!(stdout.contains("passthru cni "), "{stdout}");
    for name in ["multus-shim", "passthru"] {
        assert_eq!(
            fs::read(dest.join(name)).unwrap(),
            fs::read(src.join(name)).unwrap(),
            "{name}"
        );
        assert_eq!(
            fs::metadata(dest.join(name)).unwrap().permissions().mode() & 0o7777,
            0o755
        );
    }
    for argv in [
        &[dest_flag.as_str()][..],
        &["--type=thin", dest_flag.as_str()],
    ] {
        let out = installer(argv);
        assert_eq!(out.status.code(), Some(1), "{argv:?}: {out:?}");
    }
    assert_eq!(installer(&["--dest-dirr=/x"]).status.code(), Some(2));
}

#[test]
fn in_place_write_of_a_running_binary_is_etxtbsy_here() {
    // Shows the hazard the installer avoids is real on this kernel, so the loop test below means something.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("sleeper");
    copy_exec(Path::new("/bin/sleep"), &bin);
    let mut child = Command::new(&bin).arg("30").spawn().unwrap();
    let err = OpenOptions::new().write(true).open(&bin).unwrap_err();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(err.raw_os_error(), Some(ETXTBSY), "{err}");
}

#[test]
fn replacing_a_running_shim_never_breaks_an_exec() {
    let dir = tempfile::tempdir().unwrap();
    let shims = two_shims(dir.path());
    let dest_dir = dir.path().join("cni-bin");
    fs::create_dir(&dest_dir).unwrap();
    let dest = dest_dir.join("multus-shim");
    install(&shims[0], &dest_dir);

    // First the reboot case: the destination inode is executing for the whole install, like a
    // runtime's shim waiting for the daemon.
    let held = dir.path().join("held");
    copy_exec(Path::new("/bin/sleep"), &held);
    install_over_running(&held, &shims[0], &dest_dir, &dest);

    let stop = Arc::new(AtomicBool::new(false));
    let execs = Arc::new(AtomicUsize::new(0));
    let looper = {
        let (stop, execs, dest) = (stop.clone(), execs.clone(), dest.clone());
        thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match Command::new(&dest).stdout(Stdio::null()).status() {
                    Ok(s) if s.success() => {}
                    Ok(s) => failures.push(format!("exit {s}")),
                    Err(e) => failures.push(format!("exec: {e} (os error {:?})", e.raw_os_error())),
                }
                execs.fetch_add(1, Ordering::SeqCst);
            }
            failures
        })
    };

    let rounds = 20;
    for round in 0..rounds {
        // Each replacement happens while execs are going on: wait for the loop to make progress first.
        let before = execs.load(Ordering::SeqCst);
        while execs.load(Ordering::SeqCst) < before + 2 {
            thread::yield_now();
        }
        install(&shims[round % 2], &dest_dir);
    }
    stop.store(true, Ordering::SeqCst);
    let failures = looper.join().unwrap();

    let total = execs.load(Ordering::SeqCst);
    println!("{rounds} replacements during {total} executions of the destination");
    assert!(
        failures.is_empty(),
        "{} of {total} execs failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let last = &shims[(rounds - 1) % 2];
    assert_eq!(
        fs::read(&dest).unwrap(),
        fs::read(last).unwrap(),
        "final content is the last source"
    );
    assert_eq!(
        fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    let leftovers: Vec<_> = fs::read_dir(&dest_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("multus-shim")]);
}

/// Makes `dest` a long-running executable (a copy of `sleeper`), runs it, and installs `next`
/// over it while it runs: the reboot deadlock case of upstream MC#1221.
fn install_over_running(sleeper: &Path, next: &Path, dest_dir: &Path, dest: &Path) {
    let staged = sleeper.with_file_name("staged");
    fs::create_dir_all(&staged).unwrap();
    let named = staged.join("multus-shim");
    copy_exec(sleeper, &named);
    install(&named, dest_dir);
    let mut running = Command::new(dest).arg("30").spawn().unwrap();
    install(next, dest_dir);
    let still_running = running.try_wait().unwrap().is_none();
    running.kill().unwrap();
    running.wait().unwrap();
    assert!(
        still_running,
        "the old shim kept running through the install"
    );
    assert_eq!(fs::read(dest).unwrap(), fs::read(next).unwrap());
}

#[test]
fn second_install_of_the_same_shim_rewrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shims = two_shims(dir.path());
    let dest_dir = dir.path().join("cni-bin");
    fs::create_dir(&dest_dir).unwrap();
    install(&shims[0], &dest_dir);
    let inode = fs::metadata(dest_dir.join("multus-shim")).unwrap().ino();
    install(&shims[0], &dest_dir);
    assert_eq!(
        fs::metadata(dest_dir.join("multus-shim")).unwrap().ino(),
        inode,
        "same file, not replaced"
    );
    install(&shims[1], &dest_dir);
    assert_ne!(
        fs::metadata(dest_dir.join("multus-shim")).unwrap().ino(),
        inode,
        "new content, new inode"
    );
}

mod probe {
    use super::*;
    use tokio::net::UnixListener;
    use tokio_stream::wrappers::UnixListenerStream;
    use tonic_health::ServingStatus;

    fn probe(kind: &str, socket_dir: &Path) -> bool {
        let out = installer(&[
            "--probe",
            kind,
            "--socket-dir",
            socket_dir.to_str().unwrap(),
            "--timeout-seconds",
            "5",
        ]);
        out.status.success()
    }

    #[test]
    fn live_and_ready_follow_the_health_service() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!probe("live", dir.path()), "no daemon: not live");
        assert!(!probe("ready", dir.path()), "no daemon: not ready");

        let rt = tokio::runtime::Runtime::new().unwrap();
        let (reporter, service) = tonic_health::server::health_reporter();
        let listener = {
            let _guard = rt.enter();
            UnixListener::bind(dir.path().join("multus.sock")).unwrap()
        };
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        assert!(probe("live", dir.path()));
        assert!(probe("ready", dir.path()));

        // Draining (e.g. after SIGTERM): still alive, no longer ready.
        rt.block_on(reporter.set_service_status("", ServingStatus::NotServing));
        assert!(probe("live", dir.path()));
        assert!(!probe("ready", dir.path()));
    }
}
