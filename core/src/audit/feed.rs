//! The arrival-order feed of the file audit log: its resumable key and the rule that picks
//! what to read next.
//!
//! A server's events are appended to the day file of their own UTC day, in the order they
//! arrive, so an event whose time is long past (an import, a late emitter) lands in an old
//! file behind lines a reader may have passed already. The feed reads every server
//! directory's day files by byte offset instead of by time: its key remembers, for each
//! server directory and each day file in it, the offset read up to, and a read takes every
//! file that has grown past its offset. Nothing appended is skipped, whatever its time.
//!
//! **Key text.** `f1:` + base64url (no padding) of a compact binary form, so that it can be
//! a URL query value and a line of a state file as it is. The empty key is the beginning
//! (every file from offset 0). The binary form, all integers LEB128 varints:
//!
//! ```text
//! dirs                       number of server directories
//!   per directory, names strictly increasing:
//!   name_len, name           the directory's name (UTF-8)
//!   files                    number of files
//!     per file, times strictly increasing:
//!     delta                  the file's time (seconds; the name is the day file name of
//!                            that time) minus the previous file's (0 for the first): a
//!                            whole number of days d as zigzag(d) << 1, else any number of
//!                            seconds s as zigzag(s) << 1 | 1
//!     offset                 bytes read up to: the end of the last complete line taken
//! ```
//!
//! Files read to offset 0 are left out, as are directories without files. A key grows by a
//! few bytes per day file (about 5 for daily files with offsets under 256 MiB: some 2.5 KB
//! of text per server and year) and shrinks when old files are removed.
//!
//! **Reads** ([`plan`]): directories in name order, files in name (time) order in each; a
//! file longer than its offset is read from the offset to its length as listed; a file
//! shorter than its offset was replaced or truncated and is read again from 0 (its events may
//! come twice: at least once beats never); a file of the key that is no longer listed is
//! dropped from the key. The driver takes only complete lines: a last line without its `\n`
//! (a write in progress) is left for a later read, and the key moves only past lines read
//! whole.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use thiserror::Error;

use super::files::{DAY_SECONDS, LOG_FILE_EXT, is_search_dir, parse_log_file_name};
use crate::proto::Timestamp;

/// The prefix of a feed key's text (version 1).
pub const FEED_KEY_PREFIX: &str = "f1:";
/// The longest key text accepted (about a century of daily files for a few servers).
pub const MAX_FEED_KEY_LEN: usize = 256 * 1024;

/// A feed key that can't be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed feed key {key:?}: {reason}")]
pub struct FeedKeyError {
    /// The key (cut to 100 characters).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Whether `text` is a feed key (rather than a search page key or nothing).
pub fn is_feed_key(text: &str) -> bool {
    text.starts_with(FEED_KEY_PREFIX)
}

/// Where the feed stands: per server directory, per day file (by its time), the offset read
/// up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedKey {
    dirs: BTreeMap<String, BTreeMap<i64, u64>>,
}

/// One day file as listed by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFile {
    /// The server directory's name.
    pub server: String,
    /// The file's name (`2024-01-15.00:00:00.log`).
    pub name: String,
    /// Its length when listed.
    pub size: u64,
}

/// One range of a day file to read, in the order the feed reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRead {
    /// The server directory's name.
    pub server: String,
    /// The file's name.
    pub name: String,
    /// The offset to read from.
    pub from: u64,
    /// The file's length as listed: read up to here (complete lines only).
    pub to: u64,
    /// Whether the file was shorter than the key's offset and is read again from 0.
    pub restarted: bool,
}

impl FeedRead {
    /// The file as `server/name`, as search results name it.
    pub fn file_id(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

/// The day file name of a file time (seconds): `2024-01-15.00:00:00.log`.
fn file_name_of(seconds: i64) -> String {
    let rfc = Timestamp { seconds, nanos: 0 }.to_rfc3339();
    // "YYYY-MM-DDTHH:MM:SSZ" (whole seconds have no fraction).
    let date = rfc.get(..10).unwrap_or("0001-01-01");
    let clock = rfc.get(11..19).unwrap_or("00:00:00");
    format!("{date}.{clock}{LOG_FILE_EXT}")
}

/// The time of a day file name, when the name is one that round-trips.
fn file_time_of(name: &str) -> Option<i64> {
    let t = parse_log_file_name(name)?;
    (file_name_of(t.seconds) == name).then_some(t.seconds)
}

/// Whether `name` is a day file the feed reads (a day file name in its canonical form).
pub fn is_feed_file(name: &str) -> bool {
    file_time_of(name).is_some()
}

fn bad(key: &str, reason: impl Into<String>) -> FeedKeyError {
    FeedKeyError {
        key: key.chars().take(100).collect(),
        reason: reason.into(),
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A file time difference as written: whole days shorter than seconds.
fn encode_delta(d: i64) -> u64 {
    if d % DAY_SECONDS == 0 {
        zigzag(d / DAY_SECONDS) << 1
    } else {
        (zigzag(d) << 1) | 1
    }
}

fn decode_delta(v: u64) -> Option<i64> {
    let n = unzigzag(v >> 1);
    if v & 1 == 0 {
        n.checked_mul(DAY_SECONDS)
    } else {
        Some(n)
    }
}

/// A reader of the binary form that names what it was reading when it fails.
struct Bytes<'a> {
    b: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn varint(&mut self, what: &str) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.b.get(self.at) else {
                return Err(format!("ends inside {what} (byte {})", self.at));
            };
            self.at += 1;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(format!("{what} at byte {} overflows 64 bits", self.at - 1));
            }
            v |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!(
            "{what} at byte {} is longer than 10 bytes",
            self.at
        ))
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&[u8], String> {
        let start = self.at;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| format!("ends inside {what} (byte {start})"))?;
        self.at = end;
        Ok(&self.b[start..end])
    }
}

impl FeedKey {
    /// Reads a key's text: "" is the beginning, `f1:…` a feed key; anything else is refused.
    pub fn parse(text: &str) -> Result<FeedKey, FeedKeyError> {
        if text.is_empty() {
            return Ok(FeedKey::default());
        }
        if text.len() > MAX_FEED_KEY_LEN {
            return Err(bad(
                text,
                format!("longer than {MAX_FEED_KEY_LEN} characters"),
            ));
        }
        let Some(body) = text.strip_prefix(FEED_KEY_PREFIX) else {
            return Err(bad(
                text,
                format!("not a feed key (they start with {FEED_KEY_PREFIX:?})"),
            ));
        };
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| bad(text, format!("not base64url: {e}")))?;
        Self::decode(&raw).map_err(|reason| bad(text, reason))
    }

    fn decode(raw: &[u8]) -> Result<FeedKey, String> {
        let mut r = Bytes { b: raw, at: 0 };
        let ndirs = r.varint("the number of directories")?;
        let mut dirs = BTreeMap::new();
        let mut last_dir: Option<String> = None;
        for d in 0..ndirs {
            let len = r.varint("a directory name's length")?;
            let name = std::str::from_utf8(r.take(len, "a directory name")?)
                .map_err(|_| format!("directory {d}'s name is not UTF-8"))?
                .to_string();
            if !is_search_dir(&name) || name.contains('/') {
                return Err(format!(
                    "{name:?} is not a server directory name of the log"
                ));
            }
            if last_dir.as_ref().is_some_and(|l| *l >= name) {
                return Err(format!("directory {name:?} is out of order or repeated"));
            }
            let nfiles = r.varint("a number of files")?;
            let mut files = BTreeMap::new();
            let mut time = 0i64;
            for f in 0..nfiles {
                let delta = decode_delta(r.varint("a file time")?);
                let next = delta
                    .and_then(|d| time.checked_add(d))
                    .ok_or_else(|| format!("file {f} of {name:?}: its time overflows"))?;
                let delta = next - time;
                if f > 0 && delta <= 0 {
                    return Err(format!(
                        "file {f} of {name:?}: times must increase (delta {delta})"
                    ));
                }
                time = next;
                if !is_feed_file(&file_name_of(time)) {
                    return Err(format!(
                        "file {f} of {name:?}: time {time} is not a day file's"
                    ));
                }
                let offset = r.varint("an offset")?;
                if offset == 0 {
                    return Err(format!(
                        "file {} of {name:?}: offset 0 is never written",
                        file_name_of(time)
                    ));
                }
                files.insert(time, offset);
            }
            if files.is_empty() {
                return Err(format!("directory {name:?} has no files"));
            }
            last_dir = Some(name.clone());
            dirs.insert(name, files);
        }
        if r.at != raw.len() {
            return Err(format!(
                "{} byte(s) left over after the last directory",
                raw.len() - r.at
            ));
        }
        Ok(FeedKey { dirs })
    }

    /// The key's text (`f1:` + base64url).
    pub fn encode(&self) -> String {
        let mut raw = Vec::new();
        put_varint(&mut raw, self.dirs.len() as u64);
        for (name, files) in &self.dirs {
            put_varint(&mut raw, name.len() as u64);
            raw.extend_from_slice(name.as_bytes());
            put_varint(&mut raw, files.len() as u64);
            let mut time = 0i64;
            for (&t, &offset) in files {
                put_varint(&mut raw, encode_delta(t.wrapping_sub(time)));
                put_varint(&mut raw, offset);
                time = t;
            }
        }
        format!("{FEED_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// The offset read up to in `server`'s file `name` (0 when unknown).
    pub fn offset(&self, server: &str, name: &str) -> u64 {
        let Some(t) = file_time_of(name) else {
            return 0;
        };
        self.dirs
            .get(server)
            .and_then(|f| f.get(&t))
            .copied()
            .unwrap_or(0)
    }

    /// Notes that `server`'s file `name` is read up to `offset`. A name that is not a day
    /// file's is ignored (the feed never lists one).
    pub fn set(&mut self, server: &str, name: &str, offset: u64) {
        let Some(t) = file_time_of(name) else {
            return;
        };
        if offset == 0 {
            if let Some(files) = self.dirs.get_mut(server) {
                files.remove(&t);
                if files.is_empty() {
                    self.dirs.remove(server);
                }
            }
            return;
        }
        self.dirs
            .entry(server.to_string())
            .or_default()
            .insert(t, offset);
    }

    /// The files the key holds, as `(server, name, offset)`, in read order.
    pub fn files(&self) -> impl Iterator<Item = (&str, String, u64)> + '_ {
        self.dirs.iter().flat_map(|(server, files)| {
            files
                .iter()
                .map(move |(&t, &o)| (server.as_str(), file_name_of(t), o))
        })
    }
}

/// What to read after `key`, given the day files listed now: the ranges in read order, and
/// the key with the files no longer listed dropped and restarted files at 0 (the driver
/// moves it past each line it takes).
pub fn plan(key: &FeedKey, listing: &[FeedFile]) -> (FeedKey, Vec<FeedRead>) {
    let mut files: Vec<(&str, i64, &FeedFile)> = listing
        .iter()
        .filter(|f| is_search_dir(&f.server) && !f.server.contains('/'))
        .filter_map(|f| file_time_of(&f.name).map(|t| (f.server.as_str(), t, f)))
        .collect();
    files.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    files.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
    let mut next = FeedKey::default();
    let mut reads = Vec::new();
    for (server, t, f) in files {
        let offset = key
            .dirs
            .get(server)
            .and_then(|m| m.get(&t))
            .copied()
            .unwrap_or(0);
        let (from, restarted) = if f.size < offset {
            (0, true)
        } else {
            (offset, false)
        };
        next.set(server, &f.name, from);
        if f.size > from {
            reads.push(FeedRead {
                server: server.to_string(),
                name: f.name.clone(),
                from,
                to: f.size,
                restarted,
            });
        }
    }
    (next, reads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(server: &str, name: &str, size: u64) -> FeedFile {
        FeedFile {
            server: server.into(),
            name: name.into(),
            size,
        }
    }

    const D1: &str = "2024-01-15.00:00:00.log";
    const D2: &str = "2024-01-16.00:00:00.log";
    const D3: &str = "2024-01-17.00:00:00.log";

    #[test]
    fn the_empty_key_is_the_beginning_and_round_trips() {
        let k = FeedKey::parse("").unwrap();
        assert_eq!(k, FeedKey::default());
        assert_eq!(k.encode(), "f1:AA");
        assert_eq!(FeedKey::parse("f1:AA").unwrap(), k);
        assert!(is_feed_key("f1:AA") && !is_feed_key("tl1.x") && !is_feed_key(""));
    }

    #[test]
    fn keys_round_trip_and_stay_short() {
        let mut k = FeedKey::default();
        k.set("auth-1", D1, 4096);
        k.set("auth-1", D3, 12);
        k.set("auth-0", D2, u64::MAX);
        k.set("auth-0", "1969-12-31.00:00:00.log", 1);
        let text = k.encode();
        assert!(text.starts_with("f1:"));
        assert!(
            text[3..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text}"
        );
        let back = FeedKey::parse(&text).unwrap();
        assert_eq!(back, k);
        assert_eq!(back.offset("auth-1", D1), 4096);
        assert_eq!(back.offset("auth-0", D2), u64::MAX);
        assert_eq!(back.offset("auth-0", "1969-12-31.00:00:00.log"), 1);
        assert_eq!(back.offset("auth-2", D1), 0);
        let listed: Vec<(String, String, u64)> = back
            .files()
            .map(|(s, n, o)| (s.to_string(), n, o))
            .collect();
        assert_eq!(
            listed[0],
            ("auth-0".into(), "1969-12-31.00:00:00.log".into(), 1)
        );
        assert_eq!(listed[3], ("auth-1".into(), D3.into(), 12));
        // A year of daily files of one server with offsets in the MiB: a few KB of text.
        let mut year = FeedKey::default();
        for day in 0..365 {
            let name = file_name_of(1_704_067_200 + day * 86_400);
            year.set("auth", &name, 5_000_000 + day as u64);
        }
        let text = year.encode();
        assert!(text.len() < 2_600, "{}", text.len());
        assert_eq!(FeedKey::parse(&text).unwrap(), year);
    }

    #[test]
    fn setting_zero_forgets_the_file() {
        let mut k = FeedKey::default();
        k.set("a", D1, 10);
        k.set("a", D1, 0);
        assert_eq!(k, FeedKey::default());
        k.set("a", "events.log", 10);
        assert_eq!(k, FeedKey::default(), "not a day file");
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        let cases: Vec<(String, &str)> = vec![
            ("tl1.abc".into(), "not a feed key"),
            ("f1:***".into(), "not base64url"),
            (
                format!("f1:{}", URL_SAFE_NO_PAD.encode([1u8])),
                "ends inside",
            ),
            (
                format!("f1:{}", URL_SAFE_NO_PAD.encode([0u8, 0])),
                "left over",
            ),
            (
                format!(
                    "f1:{}",
                    URL_SAFE_NO_PAD.encode([1u8, 4, b'a', b'u', b't', b'h', 0])
                ),
                "has no files",
            ),
            (
                format!(
                    "f1:{}",
                    URL_SAFE_NO_PAD.encode([1u8, 4, b'.', b'i', b'd', b'x'])
                ),
                "not a server directory",
            ),
            (
                format!("f1:{}", URL_SAFE_NO_PAD.encode([1u8, 1, b'a', 1, 2, 0])),
                "offset 0",
            ),
            (
                format!(
                    "f1:{}",
                    URL_SAFE_NO_PAD.encode([2u8, 1, b'b', 1, 0, 1, 1, b'a', 1, 0, 1])
                ),
                "out of order",
            ),
            (
                "f1:".to_string() + &"A".repeat(MAX_FEED_KEY_LEN),
                "longer than",
            ),
        ];
        for (text, want) in cases {
            let err = FeedKey::parse(&text).unwrap_err();
            assert!(err.reason.contains(want), "{text}: {err}");
            assert!(err.to_string().contains("malformed feed key"), "{err}");
            assert!(err.key.chars().count() <= 100);
        }
        // Times that go back are refused.
        let mut raw = vec![1u8, 1, b'a', 2];
        put_varint(&mut raw, encode_delta(86_400 * 2));
        raw.push(1);
        put_varint(&mut raw, encode_delta(-86_400));
        raw.push(1);
        let err = FeedKey::parse(&format!("f1:{}", URL_SAFE_NO_PAD.encode(&raw))).unwrap_err();
        assert!(err.reason.contains("must increase"), "{err}");
        // A time past year 9999 names no day file.
        let mut raw = vec![1u8, 1, b'a', 1];
        put_varint(&mut raw, encode_delta(400_000_000_001));
        raw.push(1);
        let err = FeedKey::parse(&format!("f1:{}", URL_SAFE_NO_PAD.encode(&raw))).unwrap_err();
        assert!(err.reason.contains("not a day file"), "{err}");
        // An overlong varint.
        let raw = [0xffu8; 11];
        let err = FeedKey::parse(&format!("f1:{}", URL_SAFE_NO_PAD.encode(raw))).unwrap_err();
        assert!(
            err.reason.contains("64 bits") || err.reason.contains("10 bytes"),
            "{err}"
        );
    }

    #[test]
    fn plan_reads_grown_files_in_order_and_skips_the_rest() {
        let mut k = FeedKey::default();
        k.set("b", D1, 100);
        k.set("a", D2, 50);
        k.set("a", D1, 30);
        let listing = vec![
            file("b", D1, 100),           // read to its end: nothing
            file("a", D2, 80),            // grown: 50..80
            file("a", D1, 40),            // grown (a late event): 30..40
            file("a", D3, 10),            // new: 0..10
            file("a", "events.log", 999), // not a day file
            file(".index", D1, 999),      // not a server directory
            file("records", D1, 999),     // not a server directory
        ];
        let (next, reads) = plan(&k, &listing);
        let got: Vec<(String, u64, u64)> =
            reads.iter().map(|r| (r.file_id(), r.from, r.to)).collect();
        assert_eq!(
            got,
            vec![
                (format!("a/{D1}"), 30, 40),
                (format!("a/{D2}"), 50, 80),
                (format!("a/{D3}"), 0, 10),
            ]
        );
        assert!(reads.iter().all(|r| !r.restarted));
        // The key before any line is taken: what it was, for the listed files.
        assert_eq!(next.offset("a", D1), 30);
        assert_eq!(next.offset("a", D2), 50);
        assert_eq!(next.offset("b", D1), 100);
    }

    #[test]
    fn plan_drops_gone_files_and_restarts_shrunk_ones() {
        let mut k = FeedKey::default();
        k.set("a", D1, 300);
        k.set("a", D2, 50);
        k.set("gone", D1, 7);
        let listing = vec![file("a", D2, 20)];
        let (next, reads) = plan(&k, &listing);
        assert_eq!(reads.len(), 1);
        assert_eq!(
            (reads[0].from, reads[0].to, reads[0].restarted),
            (0, 20, true)
        );
        assert_eq!(next.offset("a", D1), 0, "gone from the listing: dropped");
        assert_eq!(next.offset("gone", D1), 0);
        assert_eq!(next.offset("a", D2), 0, "restarted");
        assert_eq!(next, FeedKey::default());
    }

    #[test]
    fn names_round_trip_only_in_their_canonical_form() {
        assert!(is_feed_file(D1));
        assert!(is_feed_file("2024-01-15.12:30:00.log"));
        assert!(!is_feed_file("2024-01-15t00:00:00.log"));
        assert!(!is_feed_file("events.log"));
        assert_eq!(file_name_of(parse_log_file_name(D2).unwrap().seconds), D2);
        for v in [0i64, 1, -1, i64::MAX, i64::MIN, 86_400, -86_400] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        for d in [
            0i64,
            1,
            -1,
            86_400,
            -86_400,
            3 * 86_400 + 5,
            400_000_000_001,
        ] {
            assert_eq!(decode_delta(encode_delta(d)), Some(d));
        }
        assert_eq!(encode_delta(86_400), 4, "a day is one byte");
        assert_eq!(decode_delta(u64::MAX - 1), None, "days that overflow");
    }
}
