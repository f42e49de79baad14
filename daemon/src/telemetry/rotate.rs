//! A size-rotated log file with upstream's `logOptions` semantics (lumberjack): rotate when the
//! next write would pass `maxSize`, rename to `<stem>-<UTC time>.<ext>`, gzip it when `compress`,
//! keep at most `maxBackups` (0: all) no older than `maxAge` days (0: any age).
//! tracing-appender only rotates by time, hence this.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::LogOptions;

/// Rotation limits in bytes and counts (`LogOptions` has megabytes and days).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_backups: usize,
    pub max_age: Option<Duration>,
    pub compress: bool,
}

impl From<&LogOptions> for Limits {
    fn from(o: &LogOptions) -> Self {
        Self {
            max_bytes: u64::from(o.max_size.max(1)) * 1024 * 1024,
            max_backups: o.max_backups as usize,
            max_age: (o.max_age > 0).then(|| Duration::from_secs(u64::from(o.max_age) * 86_400)),
            compress: o.compress,
        }
    }
}

/// The open log file and its size so far.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    limits: Limits,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path, limits: Limits) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            limits,
            file,
            size,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let backup = backup_name(&self.path, SystemTime::now());
        fs::rename(&self.path, &backup)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        let (path, limits) = (self.path.clone(), self.limits.clone());
        // Compressing a 100 MB file must not stall the thread that is logging.
        std::thread::spawn(move || {
            if limits.compress {
                let _ = gzip(&backup);
            }
            let _ = prune(&path, &limits, SystemTime::now());
        });
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.limits.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// `<dir>/<stem>-YYYY-MM-DDTHH-MM-SS.mmm<.ext>`, lumberjack's layout (sortable by name); a
/// numeric suffix keeps two rotations within one millisecond apart.
fn backup_name(path: &Path, now: SystemTime) -> PathBuf {
    let (stem, ext) = split(path);
    let stamp = timestamp(now);
    let mut n = 0;
    loop {
        let seq = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let candidate = path.with_file_name(format!("{stem}-{stamp}{seq}{ext}"));
        if !candidate.exists() && !gz(&candidate).exists() {
            return candidate;
        }
        n += 1;
    }
}

fn gz(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".gz");
    PathBuf::from(s)
}

fn split(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

/// UTC `YYYY-MM-DDTHH-MM-SS.mmm` without a date crate (days-to-civil, H. Hinnant).
fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}.{:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn gzip(path: &Path) -> io::Result<()> {
    let target = gz(path);
    let mut input = File::open(path)?;
    let mut enc =
        flate2::write::GzEncoder::new(File::create(&target)?, flate2::Compression::default());
    io::copy(&mut input, &mut enc)?;
    enc.finish()?.sync_all()?;
    fs::remove_file(path)
}

/// The backups of `path`, newest first.
pub fn backups(path: &Path) -> io::Result<Vec<PathBuf>> {
    let (stem, ext) = split(path);
    let prefix = format!("{stem}-");
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with(&prefix)
                && (name.ends_with(&ext) || name.ends_with(&format!("{ext}.gz")))
                && name.len() > prefix.len() + ext.len()
                && name
                    .as_bytes()
                    .get(prefix.len())
                    .is_some_and(u8::is_ascii_digit)
        })
        .collect();
    found.sort();
    found.reverse();
    Ok(found)
}

/// Removes backups beyond `max_backups` and older than `max_age`.
fn prune(path: &Path, limits: &Limits, now: SystemTime) -> io::Result<()> {
    for (i, b) in backups(path)?.into_iter().enumerate() {
        let too_many = limits.max_backups > 0 && i >= limits.max_backups;
        let too_old = limits.max_age.is_some_and(|age| {
            fs::metadata(&b)
                .and_then(|m| m.modified())
                .is_ok_and(|m| now.duration_since(m).unwrap_or_default() > age)
        });
        if too_many || too_old {
            fs::remove_file(&b)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_bytes: u64, max_backups: usize, compress: bool) -> Limits {
        Limits {
            max_bytes,
            max_backups,
            max_age: None,
            compress,
        }
    }

    /// Rotation runs compress/prune on a thread; wait for it to settle: `want` backups, and with
    /// `compressed` each one gzipped (a backup is counted before its gzip has replaced it).
    fn settle(path: &Path, want: usize, compressed: bool) -> Vec<PathBuf> {
        let gzipped = |p: &PathBuf| !compressed || p.to_string_lossy().ends_with(".gz");
        for _ in 0..200 {
            let b = backups(path).unwrap();
            if b.len() == want && b.iter().all(|p| p.exists() && gzipped(p)) {
                return b;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        backups(path).unwrap()
    }

    #[test]
    fn rotates_by_size_and_keeps_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let mut f = RotatingFile::open(&path, limits(100, 2, false)).unwrap();
        for i in 0..20 {
            writeln!(f, "line {i:02} {}", "x".repeat(40)).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let kept = settle(&path, 2, false);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(fs::metadata(&path).unwrap().len() <= 100);
        // The newest backup holds the lines just before the current file's.
        let current = fs::read_to_string(&path).unwrap();
        assert!(current.contains("line 19"), "{current}");
        let newest = fs::read_to_string(&kept[0]).unwrap();
        assert!(
            newest.contains("line 17") && !newest.contains("line 19"),
            "{newest}"
        );
    }

    #[test]
    fn compressed_backups_are_gzip_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        let mut f = RotatingFile::open(&path, limits(64, 1, true)).unwrap();
        for i in 0..6 {
            writeln!(f, "entry {i} {}", "y".repeat(40)).unwrap();
        }
        let kept = settle(&path, 1, true);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].to_string_lossy().ends_with(".log.gz"), "{kept:?}");
        let mut text = String::new();
        let gz = File::open(&kept[0]).unwrap();
        io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut text).unwrap();
        assert!(text.contains("entry"), "{text}");
    }

    #[test]
    fn lumberjack_timestamps() {
        let cases = [
            (0, "1970-01-01T00-00-00.000"),
            (951_782_400_123, "2000-02-29T00-00-00.123"),
            (1_764_345_600_000, "2025-11-28T16-00-00.000"),
        ];
        for (ms, want) in cases {
            assert_eq!(timestamp(UNIX_EPOCH + Duration::from_millis(ms)), want);
        }
    }

    #[test]
    fn unrelated_files_are_not_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        for name in [
            "daemon-2025-01-01T00-00-00.000.log",
            "daemon-2025-01-02T00-00-00.000.log.gz",
            "daemon-config.log",
            "other.log",
        ] {
            fs::write(dir.path().join(name), "x").unwrap();
        }
        let names: Vec<_> = backups(&path)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "daemon-2025-01-02T00-00-00.000.log.gz",
                "daemon-2025-01-01T00-00-00.000.log"
            ]
        );
        prune(&path, &limits(1, 1, false), SystemTime::now()).unwrap();
        assert!(
            !dir.path()
                .join("daemon-2025-01-01T00-00-00.000.log")
                .exists()
        );
        assert!(dir.path().join("daemon-config.log").exists());
    }
}
