//! OCI images written by the suite itself, so no registry and no image builder is needed: an
//! OCI image layout (`oci-layout`, `index.json`, content-addressed manifest, config and one
//! gzipped tar layer), as a directory or packed as the tar archive `ctr images import` (and
//! `docker load`, `podman load`) reads. The output is reproducible: every timestamp is 0 and
//! entries are sorted, so the same inputs give the same digests.
use std::{
    collections::BTreeMap,
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
/// names it by), its config (entrypoint, cmd, env, user, labels) and the files of its one layer.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    pub reference: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    /// `uid[:gid]`; numeric, so no `/etc/passwd` is needed to resolve it.
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
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
        ..ImageSpec::default()
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

/// An image as the blobs of an OCI layout: `(path in the layout, bytes)` of `oci-layout`,
/// `index.json` and every blob, and the manifest's digest.
pub struct Layout {
    pub entries: Vec<(String, Vec<u8>)>,
    pub manifest_digest: String,
    /// Size of the compressed layer (what a pull transfers).
    pub layer_size: usize,
}

/// Builds the layout of `spec`.
pub fn layout(spec: &ImageSpec) -> Result<Layout> {
    let layer_tar = layer(&spec.files)?;
    let diff_id = sha256(&layer_tar);
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&layer_tar)?;
    let layer = Blob::new(LAYER, gz.finish()?);
    let mut config = json!({"Entrypoint": spec.entrypoint, "Env": spec.env});
    if !spec.cmd.is_empty() {
        config["Cmd"] = json!(spec.cmd);
    }
    if let Some(user) = &spec.user {
        config["User"] = json!(user);
    }
    if !spec.labels.is_empty() {
        config["Labels"] = json!(spec.labels);
    }
    let config = Blob::new(
        CONFIG,
        serde_json::to_vec(&json!({
            "architecture": oci_arch(), "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))?,
    );
    let mut manifest = json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": config.descriptor, "layers": [layer.descriptor],
    });
    if !spec.labels.is_empty() {
        manifest["annotations"] = json!(spec.labels);
    }
    let manifest = Blob::new(MANIFEST, serde_json::to_vec(&manifest)?);
    let mut entry = manifest.descriptor.clone();
    entry["annotations"] = json!({"org.opencontainers.image.ref.name": spec.reference});
    entry["platform"] = json!({"architecture": oci_arch(), "os": "linux"});
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [entry]}))?;
    let manifest_digest = manifest.descriptor["digest"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let layer_size = layer.bytes.len();
    let mut entries = vec![
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_owned(), index),
    ];
    for blob in [layer, config, manifest] {
        entries.push((blob.path(), blob.bytes));
    }
    Ok(Layout {
        entries,
        manifest_digest,
        layer_size,
    })
}

/// Writes `spec` as an OCI image layout archive at `out`.
pub fn write_archive(spec: &ImageSpec, out: &Path) -> Result<Layout> {
    let layout = layout(spec)?;
    layout.write_archive(out)?;
    Ok(layout)
}

/// Writes `spec` as an OCI image layout directory at `out`.
pub fn write_dir(spec: &ImageSpec, out: &Path) -> Result<Layout> {
    let layout = layout(spec)?;
    layout.write_dir(out)?;
    Ok(layout)
}

impl Layout {
    /// The layout as one tar archive at `out`.
    pub fn write_archive(&self, out: &Path) -> Result<()> {
        let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut archive = tar::Builder::new(file);
        for (path, bytes) in &self.entries {
            append(&mut archive, path, bytes, 0o644)?;
        }
        archive.into_inner()?.sync_all()?;
        Ok(())
    }

    /// The layout as a directory at `out` (created; a layout already there is replaced).
    pub fn write_dir(&self, out: &Path) -> Result<()> {
        if out.join("oci-layout").exists() {
            fs::remove_dir_all(out).with_context(|| format!("replacing {}", out.display()))?;
        }
        for (path, bytes) in &self.entries {
            let dest = out.join(path);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&dest, bytes).with_context(|| format!("writing {}", dest.display()))?;
        }
        Ok(())
    }
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
    let mut files: Vec<&ImageFile> = files.iter().collect();
    files.sort_by(|a, b| a.dest.cmp(&b.dest));
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
    fn same_inputs_give_the_same_digests() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f");
        fs::write(&src, b"bytes").unwrap();
        let spec = |reference: &str| ImageSpec {
            reference: reference.into(),
            entrypoint: vec!["/f".into()],
            user: Some("0:0".into()),
            labels: BTreeMap::from([("k".to_string(), "v".to_string())]),
            files: vec![ImageFile {
                source: src.clone(),
                dest: "f".into(),
                mode: 0o755,
            }],
            ..ImageSpec::default()
        };
        let a = layout(&spec("x:1")).unwrap();
        let b = layout(&spec("x:1")).unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_eq!(a.entries, b.entries);
        // The reference is the index's, not part of the image.
        assert_eq!(
            layout(&spec("y:2")).unwrap().manifest_digest,
            a.manifest_digest
        );
    }

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
            ..ImageSpec::default()
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
