//! The multus-rs image without docker: the final stage of the repository's `Dockerfile`, read by
//! [`crate::dockerfile`], reproduced as an OCI image from a directory of built binaries. What
//! the Dockerfile's base (distroless/cc) contributes that the binaries use, the C library, its
//! loader and libgcc_s, is resolved from the binaries' ELF headers ([`crate::elf`]) and copied
//! from this machine's Debian files; nothing else of the base is needed (no shell, no
//! `/etc/passwd`: the user is numeric).
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail, ensure};

use crate::{
    dockerfile::{self, FinalStage},
    elf,
    oci::{ImageFile, ImageSpec},
};

/// The Dockerfile's final base, whose part the writer stands in for (see the module doc).
pub const DISTROLESS_CC: &str = "gcr.io/distroless/cc-debian12";

/// The build stage the final stage copies from; its output directory is the writer's `--bins`.
pub const BUILD_STAGE: &str = "build";

/// The image repository the chart pulls (`image.repository` in values.yaml).
pub const REPOSITORY: &str = "ghcr.io/multus-rs/multus-rs";

/// The repository's Dockerfile.
pub fn dockerfile_path() -> PathBuf {
    crate::bins::workspace_root().join("Dockerfile")
}

/// Reads the final stage of the Dockerfile at `path`.
pub fn final_stage(path: &Path, build_args: &BTreeMap<String, String>) -> Result<FinalStage> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    dockerfile::final_stage(&text, build_args).with_context(|| path.display().to_string())
}

/// The binaries the final stage copies: `(file name in the build output, path in the image)`.
pub fn copied_binaries(stage: &FinalStage) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for copy in &stage.copies {
        ensure!(
            copy.from == BUILD_STAGE,
            "COPY --from={}: the writer only copies the `{BUILD_STAGE}` stage's output",
            copy.from
        );
        ensure!(
            copy.dest.ends_with('/') || copy.sources.len() == 1,
            "COPY of several files to {} needs a directory destination (ending in /)",
            copy.dest
        );
        for source in &copy.sources {
            let name = Path::new(source)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .with_context(|| format!("COPY source {source} has no file name"))?;
            let dest = if copy.dest.ends_with('/') {
                format!("{}{name}", copy.dest)
            } else {
                copy.dest.clone()
            };
            out.push((name, dest.trim_start_matches('/').to_owned()));
        }
    }
    Ok(out)
}

/// The image the Dockerfile describes, with the binaries taken from `bins` (a build's output
/// directory: `target/release`, or `target/debug` for a quicker test image) and named
/// `reference`.
pub fn spec(stage: &FinalStage, bins: &Path, reference: &str) -> Result<ImageSpec> {
    if stage.base != DISTROLESS_CC {
        bail!(
            "the Dockerfile's final base is {}; the image writer stands in for {DISTROLESS_CC} only (e2e/src/image.rs)",
            stage.base
        );
    }
    let mut files = Vec::new();
    let mut sources = Vec::new();
    for (name, dest) in copied_binaries(stage)? {
        let source = bins.join(&name);
        ensure!(
            source.is_file(),
            "{} is missing: build it first (the Dockerfile's build stage makes /out/{name})",
            source.display()
        );
        sources.push(source.clone());
        files.push(ImageFile {
            source,
            dest,
            mode: 0o755,
        });
    }
    for (dest, source) in elf::runtime_files(&sources, &elf::library_dirs())? {
        files.push(ImageFile {
            source,
            dest,
            mode: 0o755,
        });
    }
    Ok(ImageSpec {
        reference: reference.to_owned(),
        entrypoint: stage.entrypoint.clone(),
        cmd: stage.cmd.clone(),
        env: stage.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        user: Some(stage.user.clone().context(
            "the Dockerfile's final stage sets no USER: the image would inherit the base's, which the writer cannot know",
        )?),
        labels: stage.labels.clone(),
        files,
    })
}

/// The reference the chart's default `image` resolves to for this stage: the repository and
/// the version label (the chart's appVersion, which a test keeps equal to it).
pub fn default_reference(stage: &FinalStage) -> Result<String> {
    let version = stage
        .labels
        .get("org.opencontainers.image.version")
        .context("the Dockerfile sets no org.opencontainers.image.version label")?;
    Ok(format!("{REPOSITORY}:{version}"))
}

/// The files of `spec` with their sizes in bytes, sorted by path.
pub fn file_list(spec: &ImageSpec) -> Result<Vec<(String, u64)>> {
    let mut out = spec
        .files
        .iter()
        .map(|f| {
            let len = fs::metadata(&f.source)
                .with_context(|| f.source.display().to_string())?
                .len();
            Ok((format!("/{}", f.dest), len))
        })
        .collect::<Result<Vec<_>>>()?;
    out.sort();
    Ok(out)
}
