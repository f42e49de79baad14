//! Putting a CNI config file in place so a runtime never reads a partial or empty one: a temp
//! file in the same directory (a dot name without `.conf`, so no runtime loads it), fsync,
//! rename over the target, fsync of the directory. Identical content is not rewritten.
//! Kept to one small function so it can give way to the project's shared atomic writer.
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What [`put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Written,
    Unchanged,
}

fn same(path: &Path, bytes: &[u8], mode: u32) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    meta.is_file()
        && meta.permissions().mode() & 0o7777 == mode
        && fs::read(path).is_ok_and(|old| old == bytes)
}

/// Writes `bytes` to `path` with `mode`, atomically; refuses empty content.
pub fn put(path: &Path, bytes: &[u8], mode: u32) -> io::Result<Outcome> {
    if bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to write an empty CNI config",
        ));
    }
    if same(path, bytes, mode) {
        return Ok(Outcome::Unchanged);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(Outcome::Written)
}
