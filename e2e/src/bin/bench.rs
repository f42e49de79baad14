//! The benchmark command (not part of the test suite):
//!
//! ```sh
//! sudo cargo run --release -p multus-e2e --bin bench -- --out <dir> [--quick]
//! sudo cargo run --release -p multus-e2e --bin bench -- --out docs --name benchmarks  # docs/benchmarks.md
//! ```
//!
//! Writes `<name>.md`, `<name>.json` and `<name>.svg` (latency CDFs) into `--out`; see
//! `multus_e2e::bench` for what each section measures. A section that fails is reported as
//! such (its error in the report) and the command exits non-zero after writing the report.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use multus_e2e::{
    bench::{
        Bench, Opts, Part, attach, burst, cri, exec, kube,
        machine::{self, Machine},
        memory, plot, release_build,
        report::{Report, Section},
    },
    bins,
};

fn title(part: Part) -> &'static str {
    match part {
        Part::Exec => "1. Shim exec: VERSION vs /bin/true vs a Go plugin, binary sizes",
        Part::Attach => {
            "2a. Attach overhead, standalone: shim → daemon → delegates vs delegates exec'd directly"
        }
        Part::Kube => {
            "2b / 5. Kubernetes path: 3 NADs through the API server stand-in, cold and warm, split by span"
        }
        Part::Containerd => "2c. containerd RunPodSandbox / StopPodSandbox with and without multus",
        Part::Burst => "3. Burst of concurrent pods",
        Part::Memory => "4. Memory, leaks and idle CPU",
        Part::Build => "6. Release build of the workspace",
    }
}

fn run_part(b: &Bench, part: Part, s: &mut Section) -> Result<()> {
    match part {
        Part::Exec => exec::run(b, s),
        Part::Attach => attach::run(b, s),
        Part::Kube => kube::run(b, s),
        Part::Containerd => cri::run(b, s),
        Part::Burst => burst::run(b, s),
        Part::Memory => memory::run(b, s),
        Part::Build => release_build::run(b, s),
    }
}

fn main() -> Result<()> {
    let opts = Opts::parse();
    if opts.link_order_header {
        let header = machine::link_order_header()
            .map_err(anyhow::Error::msg)
            .context("the link order's header")?;
        print!("{header}");
        return Ok(());
    }
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "run as root: the bench creates network namespaces"
    );
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    // What was run, as it was run: binaries from elsewhere and a debug harness are said.
    let bin_dir = std::env::var("MULTUS_E2E_BIN_DIR")
        .map(|d| format!("MULTUS_E2E_BIN_DIR={d} "))
        .unwrap_or_default();
    let profile = if cfg!(debug_assertions) {
        ""
    } else {
        "--release "
    };
    let command = format!(
        "{bin_dir}cargo run {profile}-p multus-e2e --bin bench -- {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let started = Instant::now();
    let generated = machine_date();
    let mut machine = Machine::describe();
    bins::use_release();
    // Build the binaries under test before the bar starts (the first build prints).
    bins::built_shim()?;
    if let Some(path) = exec::shipped_shim(&opts)? {
        bins::use_shim(path);
    }
    let b = Bench::new(opts.clone());
    let mut sections = Vec::new();
    for part in opts.parts() {
        let mut s = Section::new(title(part));
        if !matches!(part, Part::Exec | Part::Build) {
            s.note(format!("The shim under test is {}.", b.shim_under_test()));
        }
        if let Err(e) = run_part(&b, part, &mut s) {
            b.bar.println(format!("{}: {e:#}", s.title));
            s.error = Some(format!("{e:#}"));
        }
        sections.push(s);
    }
    b.bar.finish_and_clear();
    machine.load_at_end = machine::load();
    let report = Report {
        command,
        generated,
        took_s: started.elapsed().as_secs_f64(),
        quick: opts.quick,
        machine,
        sections,
    };
    let svg = format!("{}.svg", opts.name);
    let md_path = opts.out.join(format!("{}.md", opts.name));
    std::fs::write(&md_path, report.markdown(&svg))?;
    std::fs::write(
        opts.out.join(format!("{}.json", opts.name)),
        serde_json::to_vec_pretty(&report)?,
    )?;
    plot::write_svg(&opts.out.join(&svg), &report.sections)?;
    println!("report: {}", md_path.display());
    let failed: Vec<&str> = report
        .sections
        .iter()
        .filter(|s| s.error.is_some())
        .map(|s| s.title.as_str())
        .collect();
    ensure!(
        failed.is_empty(),
        "sections that did not finish: {failed:?}"
    );
    Ok(())
}

fn machine_date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
