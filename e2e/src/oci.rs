//! OCI images written by the suite itself, so no registry and no image builder is needed: an
//! OCI image layout (`oci-layout`, `index.json`, content-addressed manifest, config and one
//! gzipped tar layer) packed as the tar archive `ctr images import` reads.
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use flate2::{Compression, write::GzEncoder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A file of the image's single layer: `source` on this machine, copied to `dest` (a path
/// inside the image, without the leading `/`) with `mode`.
#[derive(Debug, Clone)]
pub struct ImageFile {
    pub source: PathBuf,
    pub dest: String,
    pub mode: u32,
}

/// What an image is made of: its reference (the `org.opencontainers.image.ref.name` the import
/// names it by), its entrypoint and the files of its one layer.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub reference: String,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub files: Vec<ImageFile>,
}

/// The busybox Debian's `busybox-static` installs: statically linked, so one file is an image.
pub const BUSYBOX: &str = "/bin/busybox";

/// The pause image the test containerd starts every sandbox with: busybox sleeping for ever.
/// (containerd kills a sandbox's container with SIGKILL, so no signal handling is needed.)
pub fn pause_image(reference: &str) -> ImageSpec {
    ImageSpec {
        reference: reference.to_owned(),
        entrypoint: ["/bin/busybox", "sleep", "2147483647"]
            .map(String::from)
            .to_vec(),
        env: vec!["PATH=/bin".into()],
        files: vec![ImageFile {
            source: BUSYBOX.into(),
            dest: "bin/busybox".into(),
            mode: 0o755,
        }],
    }
}

/// A blob of the layout: its bytes and the descriptor that names them.
struct Blob {
    bytes: Vec<u8>,
    descriptor: Value,
}

impl Blob {
    fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        let descriptor =
            json!({"mediaType": media_type, "digest": sha256(&bytes), "size": bytes.len()});
        Self { bytes, descriptor }
    }

    fn path(&self) -> String {
        let digest = self.descriptor["digest"].as_str().unwrap_or_default();
        format!("blobs/{}", digest.replacen(':', "/", 1))
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Writes `spec` as an OCI image layout archive at `out`.
pub fn write_archive(spec: &ImageSpec, out: &Path) -> Result<()> {
    let layer_tar = layer(&spec.files)?;
    let diff_id = sha256(&layer_tar);
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&layer_tar)?;
    let layer = Blob::new(LAYER, gz.finish()?);
    let config = Blob::new(
        CONFIG,
        serde_json::to_vec(&json!({
            "architecture": oci_arch(), "os": "linux",
            "config": {"Entrypoint": spec.entrypoint, "Env": spec.env},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))?,
    );
    let manifest = Blob::new(
        MANIFEST,
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": config.descriptor, "layers": [layer.descriptor],
        }))?,
    );
    let mut entry = manifest.descriptor.clone();
    entry["annotations"] = json!({"org.opencontainers.image.ref.name": spec.reference});
    entry["platform"] = json!({"architecture": oci_arch(), "os": "linux"});
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [entry]}))?;

    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut archive = tar::Builder::new(file);
    append(
        &mut archive,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;
    append(&mut archive, "index.json", &index, 0o644)?;
    for blob in [&layer, &config, &manifest] {
        append(&mut archive, &blob.path(), &blob.bytes, 0o644)?;
    }
    archive.into_inner()?.sync_all()?;
    Ok(())
}

/// The layer: every parent directory of the files, then the files, owned by root.
fn layer(files: &[ImageFile]) -> Result<Vec<u8>> {
    let mut dirs: Vec<String> = files
        .iter()
        .flat_map(|f| parents(&f.dest))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    dirs.sort();
    let mut tar = tar::Builder::new(Vec::new());
    for dir in &dirs {
        let mut header = header(0o755);
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        tar.append_data(&mut header, format!("{dir}/"), std::io::empty())?;
    }
    for f in files {
        let bytes =
            fs::read(&f.source).with_context(|| format!("reading {}", f.source.display()))?;
        append(&mut tar, &f.dest, &bytes, f.mode)?;
    }
    Ok(tar.into_inner()?)
}

/// `a/b/c` -> `a`, `a/b`.
fn parents(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').collect();
    (1..parts.len()).map(|n| parts[..n].join("/")).collect()
}

fn header(mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let mut header = header(mode);
    header.set_size(u64::try_from(bytes.len())?);
    tar.append_data(&mut header, path, bytes)?;
    Ok(())
}

/// This machine's architecture as OCI names it.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parents_of_a_nested_path() {
        assert_eq!(
            parents("usr/src/multus-cni/bin/x"),
            [
                "usr",
                "usr/src",
                "usr/src/multus-cni",
                "usr/src/multus-cni/bin"
            ]
        );
        assert!(parents("pause").is_empty());
    }

    #[test]
    fn archive_is_a_content_addressed_layout() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("hello");
        fs::write(&src, b"hi").unwrap();
        let spec = ImageSpec {
            reference: "example.local/x:1".into(),
            entrypoint: vec!["/hello".into()],
            env: vec![],
            files: vec![ImageFile {
                source: src,
                dest: "bin/hello".into(),
                mode: 0o755,
            }],
        };
        let out = dir.path().join("img.tar");
        write_archive(&spec, &out).unwrap();
        let mut entries = std::collections::BTreeMap::new();
        let mut archive = tar::Archive::new(fs::File::open(&out).unwrap());
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            entries.insert(name, bytes);
        }
        let index: Value = serde_json::from_slice(&entries["index.json"]).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(
            m["annotations"]["org.opencontainers.image.ref.name"],
            "example.local/x:1"
        );
        // Every descriptor names bytes present under their digest.
        let digest = m["digest"].as_str().unwrap();
        let manifest = &entries[&format!("blobs/{}", digest.replacen(':', "/", 1))];
        assert_eq!(sha256(manifest), digest);
        let manifest: Value = serde_json::from_slice(manifest).unwrap();
        let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
        let layer = &entries[&format!("blobs/{}", layer_digest.replacen(':', "/", 1))];
        assert_eq!(sha256(layer), layer_digest);
        let mut names = Vec::new();
        let mut files = tar::Archive::new(flate2::read::GzDecoder::new(&layer[..]));
        for e in files.entries().unwrap() {
            names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(names, ["bin/", "bin/hello"]);
    }
}
