//! The shim's log: upstream's line format (`<RFC3339 time> [<level>] <msg>`) appended to
//! `logFile` and/or written to stderr. Dependency-free so the shim stays small; stdout is never
//! touched (it carries only the result).
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Upstream's levels, in order; `Panic` (the default) logs nothing a shim can emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Panic,
    Error,
    Verbose,
    Debug,
}

impl Level {
    /// Upstream's names plus the usual aliases; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "panic" => Level::Panic,
            "error" | "warn" | "warning" => Level::Error,
            "verbose" | "info" => Level::Verbose,
            "debug" | "trace" => Level::Debug,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Level::Panic => "panic",
            Level::Error => "error",
            Level::Verbose => "verbose",
            Level::Debug => "debug",
        }
    }
}

/// Where log lines go; logging failures are swallowed since the result must still be printed.
#[derive(Debug, Clone)]
pub struct Logger {
    level: Level,
    file: Option<PathBuf>,
    stderr: bool,
}

impl Logger {
    pub fn new(level: Option<&str>, file: Option<PathBuf>, stderr: bool) -> Self {
        let logger = Self {
            level: level.and_then(Level::parse).unwrap_or(Level::Panic),
            file,
            stderr,
        };
        if let Some(bad) = level.filter(|l| Level::parse(l).is_none()) {
            // Upstream's wording, at error so it shows whenever anything is logged at all.
            logger.log(
                Level::Error,
                &format!("multus logging: cannot set logging level to {bad}"),
            );
        }
        logger
    }

    pub fn log(&self, level: Level, msg: &str) {
        if level == Level::Panic || level > self.level || (self.file.is_none() && !self.stderr) {
            return;
        }
        let line = format!("{} [{}] {msg}\n", rfc3339_now(), level.name());
        if self.stderr {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        if let Some(path) = &self.file
            && let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// The current UTC time as RFC 3339 (`2006-01-02T15:04:05Z`).
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn levels_filter_and_append_to_file() {
        let dir = std::env::temp_dir().join(format!("multus-shim-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shim.log");
        let logger = Logger::new(Some("verbose"), Some(path.clone()), false);
        logger.log(Level::Verbose, "kept");
        logger.log(Level::Debug, "dropped");
        logger.log(Level::Error, "also kept");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(text.contains("[verbose] kept\n"));
        assert!(text.contains("[error] also kept\n"));
        assert!(!text.contains("dropped"));
        assert_eq!(Level::parse("bogus"), None);
    }
}
