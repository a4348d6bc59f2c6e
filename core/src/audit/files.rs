//! Day files: their names, the rotation period, which files and directories a search reads.
//!
//! A server's audit log is one file per UTC day named after the day's midnight in Go's layout
//! `2006-01-02.15:04:05` plus `.log` (`2024-01-15.00:00:00.log`). The rotation period (a
//! multiple of 24 h, upstream's `RotationPeriod`) only widens the set of files a search reads.

use thiserror::Error;

use crate::proto::Timestamp;

/// The extension of audit log files.
pub const LOG_FILE_EXT: &str = ".log";
/// The symlink to the current file, in the log root.
pub const SYMLINK_FILENAME: &str = "events.log";
/// Seconds in a day.
pub const DAY_SECONDS: i64 = 86_400;
/// Sub-directories of the log root that hold no audit files (recordings, uploads, legacy
/// sessions, playback caches).
pub const EXCLUDED_DIRS: [&str; 5] = ["records", "playbacks", "upload", "multi", "sessions"];
/// The directory, inside a server's directory, that holds the sidecar indexes.
pub const INDEX_DIR: &str = ".index";
/// The extension of a sidecar index (`<log file name>.idx`).
pub const INDEX_EXT: &str = ".idx";

/// A rotation period that is not a positive multiple of 24 h.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("rotation period of {seconds} s is not a positive multiple of 24 h")]
pub struct RotationError {
    /// The period asked for, in seconds.
    pub seconds: i64,
}

/// Upstream's `RotationPeriod`: how far around the searched range files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPeriod {
    seconds: i64,
}

impl Default for RotationPeriod {
    fn default() -> Self {
        RotationPeriod {
            seconds: DAY_SECONDS,
        }
    }
}

impl RotationPeriod {
    /// A period of `seconds`; must be a positive multiple of 24 h.
    pub fn from_seconds(seconds: i64) -> Result<RotationPeriod, RotationError> {
        if seconds <= 0 || seconds % DAY_SECONDS != 0 {
            return Err(RotationError { seconds });
        }
        Ok(RotationPeriod { seconds })
    }

    /// The period in seconds.
    pub fn seconds(&self) -> i64 {
        self.seconds
    }
}

/// The UTC day (days since 1970-01-01) of `t`.
pub fn day_of(t: Timestamp) -> i64 {
    t.seconds.div_euclid(DAY_SECONDS)
}

/// The file name of a UTC day: `2024-01-15.00:00:00.log`.
pub fn log_file_name(day: i64) -> String {
    let midnight = Timestamp {
        seconds: day.saturating_mul(DAY_SECONDS),
        nanos: 0,
    };
    let rfc = midnight.to_rfc3339();
    let date = rfc.get(..10).unwrap_or("0001-01-01");
    format!("{date}.00:00:00{LOG_FILE_EXT}")
}

/// The file an event of time `t` goes to.
pub fn log_file_name_for(t: Timestamp) -> String {
    log_file_name(day_of(t))
}

/// The time a log file name stands for (`2024-01-15.00:00:00.log` → that midnight), or `None`
/// for a name that is not an audit file.
pub fn parse_log_file_name(name: &str) -> Option<Timestamp> {
    let stem = name.strip_suffix(LOG_FILE_EXT)?;
    let b = stem.as_bytes();
    if b.len() != 19 || b[10] != b'.' {
        return None;
    }
    let date = stem.get(..10)?;
    let clock = stem.get(11..)?;
    Timestamp::parse_rfc3339(&format!("{date}T{clock}Z"))
}

/// Whether a file named for `file_time` may hold events of `[from, to]`: upstream reads every
/// file with `from - rotation < file_time < to + rotation`.
pub fn is_candidate(
    file_time: Timestamp,
    from: Timestamp,
    to: Timestamp,
    rotation: RotationPeriod,
) -> bool {
    let r = i128::from(rotation.seconds) * 1_000_000_000;
    let d = file_time.unix_nanos();
    from.unix_nanos() - r < d && d < to.unix_nanos() + r
}

/// Whether a sub-directory of the log root is a server's audit directory (searched): every
/// one except hidden ones and [`EXCLUDED_DIRS`].
pub fn is_search_dir(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !EXCLUDED_DIRS.contains(&name)
}

/// The sidecar index name of a log file.
pub fn index_file_name(log_file_name: &str) -> String {
    format!("{log_file_name}{INDEX_EXT}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn names() {
        let ts = t("2024-01-15T23:59:59.999Z");
        assert_eq!(log_file_name_for(ts), "2024-01-15.00:00:00.log");
        assert_eq!(
            log_file_name_for(t("2024-01-16T00:00:00Z")),
            "2024-01-16.00:00:00.log"
        );
        assert_eq!(
            log_file_name_for(t("1969-12-31T23:00:00Z")),
            "1969-12-31.00:00:00.log"
        );
        assert_eq!(
            parse_log_file_name("2024-01-15.00:00:00.log"),
            Some(t("2024-01-15T00:00:00Z"))
        );
        assert_eq!(
            parse_log_file_name("2024-01-15.12:30:00.log"),
            Some(t("2024-01-15T12:30:00Z"))
        );
        for bad in [
            "events.log",
            "2024-01-15.00:00:00",
            "2024-13-15.00:00:00.log",
            "2024-01-15T00:00:00.log",
            "x2024-01-15.00:00:00.log",
        ] {
            assert_eq!(parse_log_file_name(bad), None, "{bad}");
        }
        assert_eq!(
            index_file_name("2024-01-15.00:00:00.log"),
            "2024-01-15.00:00:00.log.idx"
        );
    }

    #[test]
    fn rotation_period() {
        assert_eq!(RotationPeriod::default().seconds(), 86_400);
        assert!(RotationPeriod::from_seconds(2 * 86_400).is_ok());
        for bad in [0, -86_400, 3600, 86_401] {
            assert_eq!(
                RotationPeriod::from_seconds(bad),
                Err(RotationError { seconds: bad })
            );
        }
    }

    #[test]
    fn candidates() {
        let day = RotationPeriod::default();
        let f = t("2024-01-15T00:00:00Z");
        // The 15th's file is read by searches that end after the 14th's midnight and start
        // before the 16th's midnight: strict bounds, as upstream.
        assert!(is_candidate(
            f,
            t("2024-01-15T00:00:00Z"),
            t("2024-01-15T23:59:59Z"),
            day
        ));
        assert!(is_candidate(
            f,
            t("2024-01-14T00:00:01Z"),
            t("2024-01-14T00:00:01Z"),
            day
        ));
        assert!(!is_candidate(
            f,
            t("2024-01-14T00:00:00Z"),
            t("2024-01-14T00:00:00Z"),
            day
        ));
        assert!(!is_candidate(
            f,
            t("2024-01-16T00:00:00Z"),
            t("2024-01-17T00:00:00Z"),
            day
        ));
        let two = RotationPeriod::from_seconds(2 * 86_400).unwrap();
        assert!(is_candidate(
            f,
            t("2024-01-16T00:00:00Z"),
            t("2024-01-17T00:00:00Z"),
            two
        ));
    }

    #[test]
    fn search_dirs() {
        assert!(is_search_dir("auth-1"));
        for d in [
            "records",
            "playbacks",
            "upload",
            "multi",
            "sessions",
            ".index",
            "",
        ] {
            assert!(!is_search_dir(d), "{d}");
        }
    }
}
