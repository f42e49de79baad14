//! Builds the multus-rs image without docker or a registry: the repository's Dockerfile's final
//! stage as an OCI image layout, from binaries already built.
//!
//! ```text
//! build-image --bins <dir> (--out <oci dir> | --archive <file.tar>)... [--tag <ref>]
//!             [--build-arg KEY=VALUE]... [--dockerfile <path>]
//! ```
//!
//! `--bins` holds what the Dockerfile's build stage puts in `/out/` (multus-daemon,
//! install_multus, multus-shim, passthru). `--out` writes a layout directory (`skopeo`,
//! `podman`, `crane` read it), `--archive` the same layout as a tar (`ctr images import`,
//! `docker load`). `--tag` defaults to the chart's image, `ghcr.io/multus-rs/multus-rs:<version>`.
//! Prints the manifest digest, every file with its size, and the image's sizes.
use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result, bail};
use multus_e2e::{image, oci};

#[derive(Debug, Default)]
struct Args {
    bins: Option<PathBuf>,
    out: Option<PathBuf>,
    archive: Option<PathBuf>,
    tag: Option<String>,
    dockerfile: Option<PathBuf>,
    build_args: BTreeMap<String, String>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args> {
    let mut args = Args::default();
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--bins" => args.bins = Some(value()?.into()),
            "--out" => args.out = Some(value()?.into()),
            "--archive" => args.archive = Some(value()?.into()),
            "--tag" => args.tag = Some(value()?),
            "--dockerfile" => args.dockerfile = Some(value()?.into()),
            "--build-arg" => {
                let pair = value()?;
                let (k, v) = pair
                    .split_once('=')
                    .with_context(|| format!("--build-arg {pair}: expected KEY=VALUE"))?;
                args.build_args.insert(k.to_owned(), v.to_owned());
            }
            other => bail!("unknown argument {other} (see the usage in src/bin/build_image.rs)"),
        }
    }
    if args.out.is_none() && args.archive.is_none() {
        bail!("nothing to write: give --out <oci dir> and/or --archive <file.tar>");
    }
    Ok(args)
}

fn run() -> Result<()> {
    let args = parse(std::env::args().skip(1))?;
    let bins = args.bins.context("--bins <dir> is required")?;
    let dockerfile = args.dockerfile.unwrap_or_else(image::dockerfile_path);
    let stage = image::final_stage(&dockerfile, &args.build_args)?;
    let reference = match args.tag {
        Some(tag) => tag,
        None => image::default_reference(&stage)?,
    };
    let spec = image::spec(&stage, &bins, &reference)?;
    let layout = oci::layout(&spec)?;
    if let Some(out) = &args.out {
        layout.write_dir(out)?;
        println!("layout:   {}", out.display());
    }
    if let Some(archive) = &args.archive {
        layout.write_archive(archive)?;
        println!("archive:  {}", archive.display());
    }
    println!("image:    {reference}");
    println!("manifest: {}", layout.manifest_digest);
    let files = image::file_list(&spec)?;
    let total: u64 = files.iter().map(|(_, n)| n).sum();
    for (path, len) in &files {
        println!("{len:>12}  {path}");
    }
    println!(
        "{total:>12}  bytes in {} files; compressed layer {} bytes",
        files.len(),
        layout.layer_size
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("build-image: {e:#}");
            ExitCode::FAILURE
        }
    }
}
