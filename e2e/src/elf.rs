//! What a dynamically linked binary needs at run time, read from its ELF headers (`PT_INTERP`
//! and the `DT_NEEDED` entries, followed through each library) and found in this machine's
//! library directories, as the loader finds them. The image writer copies exactly these files,
//! which for our binaries is what distroless/cc provides: glibc, its loader and libgcc_s.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use object::{
    Endianness,
    elf::{DT_NEEDED, DT_RELR, FileHeader64},
    read::elf::{FileHeader, ProgramHeader},
};

/// A binary whose run-time needs cannot be worked out.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a 64-bit ELF file the writer can read: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: object::read::Error,
    },
    #[error("{path} needs {library}, which is in none of {dirs:?}")]
    NotFound {
        path: PathBuf,
        library: String,
        dirs: Vec<PathBuf>,
    },
}

/// The loader (`PT_INTERP`) and the libraries (`DT_NEEDED`) an ELF file names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    /// Relative relocations packed as `DT_RELR`: the loader must know them (glibc >= 2.36).
    pub relr: bool,
}

/// Reads the needs of the ELF file at `path` (a static binary needs nothing).
pub fn needs(path: &Path) -> Result<Needs, ElfError> {
    let data = fs::read(path).map_err(|source| ElfError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&data).map_err(|source| ElfError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn parse(data: &[u8]) -> object::read::Result<Needs> {
    let header = FileHeader64::<Endianness>::parse(data)?;
    let endian = header.endian()?;
    let mut interpreter = None;
    for segment in header.program_headers(endian, data)? {
        if let Some(interp) = segment.interpreter(endian, data)? {
            interpreter = Some(String::from_utf8_lossy(interp).into_owned());
        }
    }
    let dynamic = header.sections(endian, data)?.dynamic_table(endian, data)?;
    let mut needed = Vec::new();
    let mut relr = false;
    for entry in &dynamic {
        if entry.tag == DT_NEEDED {
            needed.push(String::from_utf8_lossy(dynamic.string(entry)?).into_owned());
        }
        relr |= entry.tag == DT_RELR;
    }
    Ok(Needs {
        interpreter,
        needed,
        relr,
    })
}

/// The directories the loader searches without an `ld.so.cache`, in its order, for this
/// machine's architecture (Debian's multiarch directories first).
pub fn library_dirs() -> Vec<PathBuf> {
    let triple = format!("{}-linux-gnu", std::env::consts::ARCH);
    [
        format!("/lib/{triple}"),
        format!("/usr/lib/{triple}"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// Every file `binaries` need at run time, as `path in the image -> file on this machine`:
/// the loader at its `PT_INTERP` path and each library (transitively) at the path the loader
/// finds it by in `dirs`. The loader's own soname is not looked up again: it is loaded already.
pub fn runtime_files(
    binaries: &[PathBuf],
    dirs: &[PathBuf],
) -> Result<BTreeMap<String, PathBuf>, ElfError> {
    let mut files = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut queue: Vec<(PathBuf, String)> = Vec::new();
    for binary in binaries {
        let needs = needs(binary)?;
        if let Some(interp) = &needs.interpreter {
            files.insert(in_image(Path::new(interp)), canonical(Path::new(interp))?);
            seen.insert(file_name(interp));
        }
        queue.extend(needs.needed.into_iter().map(|lib| (binary.clone(), lib)));
    }
    while let Some((wanted_by, library)) = queue.pop() {
        if !seen.insert(library.clone()) {
            continue;
        }
        let found = dirs
            .iter()
            .map(|d| d.join(&library))
            .find(|p| p.is_file())
            .ok_or_else(|| ElfError::NotFound {
                path: wanted_by.clone(),
                library: library.clone(),
                dirs: dirs.to_vec(),
            })?;
        let source = canonical(&found)?;
        let needs = needs(&source)?;
        queue.extend(needs.needed.into_iter().map(|lib| (source.clone(), lib)));
        files.insert(in_image(&found), source);
    }
    Ok(files)
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn in_image(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches('/').to_owned()
}

fn canonical(path: &Path) -> Result<PathBuf, ElfError> {
    fs::canonicalize(path).map_err(|source| ElfError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `ldd` (Debian's libc-bin) resolves the same files for this test binary: the loader asked
    /// for by name, not guessed.
    #[test]
    fn runtime_files_of_this_test_binary_are_what_ldd_resolves() {
        let me = std::env::current_exe().unwrap();
        let ours: BTreeSet<PathBuf> = runtime_files(std::slice::from_ref(&me), &library_dirs())
            .unwrap()
            .into_values()
            .collect();
        let out = std::process::Command::new("ldd")
            .arg(&me)
            .output()
            .expect("ldd (Debian package libc-bin) is needed");
        assert!(out.status.success(), "{out:?}");
        let ldd: BTreeSet<PathBuf> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let path = match l.split_once("=>") {
                    Some((_, right)) => right.split_whitespace().next()?,
                    None => l.split_whitespace().next()?,
                };
                path.starts_with('/')
                    .then(|| fs::canonicalize(path).unwrap())
            })
            .collect();
        assert_eq!(ours, ldd);
        assert!(ours.iter().any(|p| p.ends_with("libc.so.6")), "{ours:?}");
    }

    #[test]
    fn a_static_binary_needs_nothing() {
        let busybox = Path::new(crate::oci::BUSYBOX);
        assert!(
            busybox.is_file(),
            "{} (Debian package busybox-static) is needed",
            busybox.display()
        );
        assert_eq!(needs(busybox).unwrap(), Needs::default());
    }

    #[test]
    fn a_missing_library_names_the_binary_and_the_library() {
        let me = std::env::current_exe().unwrap();
        let err =
            runtime_files(std::slice::from_ref(&me), &[PathBuf::from("/nonexistent")]).unwrap_err();
        assert!(
            matches!(&err, ElfError::NotFound { path, .. } if *path == me),
            "{err}"
        );
    }
}
