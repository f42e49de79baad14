//! Putting a CNI config file in place so a runtime never reads a partial or empty one: a temp
//! file in the same directory (a dot name without `.conf`, so no runtime loads it), fsync,
//! rename over the target, fsync of the directory. Identical content is not rewritten.
//! The write itself is the shared `atomic_file::write`.
use std::fs;
use std::io;
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
    // Its temp name (`.<name>.tmp-<pid>-<n>`) does not end in `.conf`: no runtime loads it.
    crate::atomic_file::write(path, bytes, mode)?;
    Ok(Outcome::Written)
}
