//! The exporter's state directory: one file per key (upstream's layout, see
//! [`tapelog_core::forward::state`]), each written crash-safely: a temporary file, `fsync`,
//! `rename` over the old one, `fsync` of the directory. A reader sees the old value or the
//! new one, never a torn one. The audit position alone is written in two steps, the rename
//! at once and the fsyncs later ([`StateDir::replace_position`],
//! [`StateDir::sync_position`]; the pipeline's `PositionWriter` says why).
//!
//! Where: `<storage>/<host>_<port>/` for a server (`--teleport-addr`, as upstream), and
//! `<storage>/data-dir_<16 hex digits of the SHA-256 of the data directory's absolute path>/`
//! for `--data-dir`, so two data directories never share a cursor. `--dry-run` uses
//! `<that>/dry_run/<32 random hex digits>/`, fresh each run, as upstream.
//!
//! Dead letters go to `dead-letter.jsonl` in the same directory: one JSON object per line
//! with `time`, `destination`, `reason` and `event` (the event's JSON as sent).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tapelog_core::forward::missing::{self, Missing};
use tapelog_core::forward::state::{
    self, DoneSessions, Position, decode_session_index, encode_session_index, session_key,
    session_of_key,
};
use tapelog_core::forward::{export, state::StateError};

use super::ForwardError;

/// A date's export state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportDate {
    /// Chunks read to the end.
    pub completed: BTreeSet<String>,
    /// Chunks in progress and their cursors.
    pub cursors: BTreeMap<String, String>,
}

/// The dead-letter file's name.
pub const DEAD_LETTERS: &str = "dead-letter.jsonl";

/// The file listing the last sessions exported to the end, one id a line, oldest first (so
/// a `session.upload` read again after a crash does not export its session twice).
pub const DONE_SESSIONS: &str = "done_sessions";

/// The name of the state directory for a server address (`host:port`, or a URL).
pub fn addr_dir_name(addr: &str) -> String {
    let rest = addr.split_once("://").map_or(addr, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => (h, p),
        _ => (hostport, "3025"),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}_{}", clean(host), clean(port))
}

/// The name of the state directory for a local data directory.
pub fn data_dir_name(data_dir: &Path) -> String {
    let abs = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(abs.as_os_str().as_encoded_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("data-dir_{hex}")
}

/// Replaces `dir/name`: temporary file, fsync, rename, fsync of `dir`.
fn write_in(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ForwardError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

/// Replaces `dir/name` without waiting for the disk: temporary file, rename. A reader sees
/// the old value or the new one; the new one outlives the process at once (the page cache
/// holds it) and a power loss once [`sync_in`] has run on it. Its own temporary name, so
/// that it never meets a [`write_in`] of the same file.
fn replace_in(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ForwardError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.next"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// Makes `dir`'s files `names` (as they are now) and their names durable: fsync of each
/// file that exists, then of `dir`.
fn sync_in(dir: &Path, names: &[&str]) -> Result<(), ForwardError> {
    for name in names {
        let path = dir.join(name);
        match std::fs::File::open(&path) {
            Ok(f) => f.sync_all().map_err(io(&path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), ForwardError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// A state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ForwardError + '_ {
    move |source| ForwardError::State {
        path: path.to_path_buf(),
        source,
    }
}

impl StateDir {
    /// Opens (creating it) `storage/name`, or a fresh `storage/name/dry_run/<random>` for a
    /// dry run.
    pub fn open(storage: &Path, name: &str, dry_run: bool) -> Result<StateDir, ForwardError> {
        let mut dir = storage.join(name);
        if dry_run {
            let random = uuid::Uuid::new_v4().simple().to_string();
            dir = dir.join("dry_run").join(random);
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(StateDir { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A file's content, `None` when it does not exist.
    pub fn read(&self, key: &str) -> Result<Option<Vec<u8>>, ForwardError> {
        let path = self.dir.join(key);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// A file as text (`None` when missing).
    pub fn read_text(&self, key: &str) -> Result<Option<String>, ForwardError> {
        Ok(self
            .read(key)?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string()))
    }

    /// Replaces a file: temporary file, fsync, rename, fsync of the directory.
    pub fn write(&self, key: &str, bytes: &[u8]) -> Result<(), ForwardError> {
        write_in(&self.dir, key, bytes)
    }

    fn sync_dir(&self) -> Result<(), ForwardError> {
        sync_dir(&self.dir)
    }

    /// Removes a file (a missing one is fine).
    pub fn remove(&self, key: &str) -> Result<(), ForwardError> {
        let path = self.dir.join(key);
        match std::fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The stored audit position (empty fields when nothing is stored).
    pub fn position(&self) -> Result<Position, ForwardError> {
        Ok(Position {
            window_time: self.read_text(state::WINDOW_TIME)?.unwrap_or_default(),
            cursor: self.read_text(state::CURSOR)?.unwrap_or_default(),
            id: self.read_text(state::ID)?.unwrap_or_default(),
        })
    }

    /// Stores the audit position: `window_time`, then `cursor`, then `id`, each only when it
    /// changed from `old`. A crash between the files leaves a position at or before the
    /// accepted events (an `id` that is not found in the page resends the page).
    pub fn save_position(&self, old: &Position, new: &Position) -> Result<(), ForwardError> {
        if old.window_time != new.window_time {
            self.write(state::WINDOW_TIME, new.window_time.as_bytes())?;
        }
        if old.cursor != new.cursor {
            self.write(state::CURSOR, new.cursor.as_bytes())?;
        }
        if old.id != new.id {
            self.write(state::ID, new.id.as_bytes())?;
        }
        Ok(())
    }

    /// Writes the audit position's files that changed from `old` (`window_time`, then
    /// `cursor`, then `id`) by rename, without fsync ([`replace_in`]): they survive the
    /// process at once, a power loss after [`sync_position`](Self::sync_position). Returns
    /// the names written.
    pub fn replace_position(
        &self,
        old: &Position,
        new: &Position,
    ) -> Result<Vec<&'static str>, ForwardError> {
        let mut written = Vec::new();
        for (name, was, now) in [
            (state::WINDOW_TIME, &old.window_time, &new.window_time),
            (state::CURSOR, &old.cursor, &new.cursor),
            (state::ID, &old.id, &new.id),
        ] {
            if was != now {
                replace_in(&self.dir, name, now.as_bytes())?;
                written.push(name);
            }
        }
        Ok(written)
    }

    /// Makes the position files `names` durable as they are now (the newest position
    /// written): fsync of each, then of the directory.
    pub fn sync_position(&self, names: &[&str]) -> Result<(), ForwardError> {
        sync_in(&self.dir, names)
    }

    /// A session's next index, `None` when the session is not registered.
    pub fn session_index(&self, session_id: &str) -> Result<Option<u64>, ForwardError> {
        let key = session_key(session_id);
        match self.read(&key)? {
            None => Ok(None),
            Some(b) => decode_session_index(&key, &b)
                .map(Some)
                .map_err(ForwardError::StateFile),
        }
    }

    /// Stores a session's next index.
    pub fn save_session(&self, session_id: &str, index: u64) -> Result<(), ForwardError> {
        self.write(&session_key(session_id), &encode_session_index(index))
    }

    /// Forgets a finished session.
    pub fn remove_session(&self, session_id: &str) -> Result<(), ForwardError> {
        self.remove(&session_key(session_id))
    }

    /// Every registered session with its index, sorted by id.
    pub fn sessions(&self) -> Result<Vec<(String, u64)>, ForwardError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(sid) = session_of_key(&name) {
                let bytes = self.read(&name)?.unwrap_or_default();
                let index = decode_session_index(&name, &bytes).map_err(ForwardError::StateFile)?;
                out.push((sid.to_string(), index));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The last finished sessions (empty when none are stored).
    pub fn done_sessions(&self) -> Result<DoneSessions, ForwardError> {
        let text = self.read_text(DONE_SESSIONS)?.unwrap_or_default();
        Ok(DoneSessions::decode(&text))
    }

    /// Replaces the list of finished sessions.
    pub fn save_done_sessions(&self, done: &DoneSessions) -> Result<(), ForwardError> {
        self.write(DONE_SESSIONS, done.encode().as_bytes())
    }

    /// The dates with export state (`cursor_v2/<date>/`), oldest first.
    pub fn export_dates(&self) -> Result<Vec<i64>, ForwardError> {
        let root = self.dir.join(export::CURSOR_DIR);
        let entries = match std::fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&root)(e)),
        };
        let mut days = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&root))?;
            if let Some(day) = export::parse_date(&entry.file_name().to_string_lossy()) {
                days.push(day);
            }
        }
        days.sort_unstable();
        Ok(days)
    }

    /// A date's completed chunks and the cursors of its chunks in progress.
    pub fn export_date(&self, day: i64) -> Result<ExportDate, ForwardError> {
        let dir = self.dir.join(export::date_dir(day));
        let mut date = ExportDate::default();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(date),
            Err(e) => return Err(io(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name == export::COMPLETED_CHUNKS {
                let path = entry.path();
                let text = std::fs::read_to_string(&path).map_err(io(&path))?;
                date.completed = export::parse_completed(&text).into_iter().collect();
            } else if let Some(chunk) = export::chunk_of_file(&name) {
                let path = entry.path();
                let cursor = std::fs::read_to_string(&path).map_err(io(&path))?;
                date.cursors.insert(chunk, cursor.trim().to_string());
            }
        }
        Ok(date)
    }

    /// Stores the cursor of a chunk in progress.
    pub fn save_chunk_cursor(
        &self,
        day: i64,
        chunk: &str,
        cursor: &str,
    ) -> Result<(), ForwardError> {
        let dir = self.dir.join(export::date_dir(day));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_in(&dir, &export::chunk_file(chunk), cursor.as_bytes())
    }

    /// Stores a date's completed chunks (all of them, one a line), then removes the cursor
    /// file of `chunk`, the one that just completed.
    pub fn save_completed(
        &self,
        day: i64,
        completed: &BTreeSet<String>,
        chunk: &str,
    ) -> Result<(), ForwardError> {
        let dir = self.dir.join(export::date_dir(day));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut text = String::new();
        for c in completed {
            text.push_str(c);
            text.push('\n');
        }
        write_in(&dir, export::COMPLETED_CHUNKS, text.as_bytes())?;
        let cursor = dir.join(export::chunk_file(chunk));
        match std::fs::remove_file(&cursor) {
            Ok(()) => sync_dir(&dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&cursor)(e)),
        }
    }

    /// Removes a date's export state (a date out of the backlog).
    pub fn remove_export_date(&self, day: i64) -> Result<(), ForwardError> {
        let dir = self.dir.join(export::date_dir(day));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }

    /// Every missing recording, sorted by session id.
    pub fn missing_recordings(&self) -> Result<Vec<(String, Missing)>, ForwardError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(sid) = missing::session_of_missing_key(&name) {
                let bytes = self.read(&name)?.unwrap_or_default();
                let m = Missing::decode(&name, &bytes)
                    .map_err(|e| ForwardError::StateFile(StateError::from(e)))?;
                out.push((sid.to_string(), m));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// A session's missing-recording record, if any.
    pub fn missing_recording(&self, session_id: &str) -> Result<Option<Missing>, ForwardError> {
        let key = missing::missing_key(session_id);
        match self.read(&key)? {
            None => Ok(None),
            Some(b) => Missing::decode(&key, &b)
                .map(Some)
                .map_err(|e| ForwardError::StateFile(StateError::from(e))),
        }
    }

    /// Stores a missing recording.
    pub fn save_missing(&self, session_id: &str, m: &Missing) -> Result<(), ForwardError> {
        self.write(&missing::missing_key(session_id), &m.encode())
    }

    /// Forgets a missing recording.
    pub fn remove_missing(&self, session_id: &str) -> Result<(), ForwardError> {
        self.remove(&missing::missing_key(session_id))
    }

    /// Appends a dead letter and syncs the file.
    pub fn dead_letter(
        &self,
        time: &str,
        destination: &str,
        reason: &str,
        event: &str,
    ) -> Result<(), ForwardError> {
        let path = self.dir.join(DEAD_LETTERS);
        let event_value: serde_json::Value = serde_json::from_str(event)
            .unwrap_or_else(|_| serde_json::Value::String(event.to_string()));
        let line = serde_json::json!({
            "time": time,
            "destination": destination,
            "reason": reason,
            "event": event_value,
        })
        .to_string();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(format!("{line}\n").as_bytes())
            .map_err(io(&path))?;
        f.sync_all().map_err(io(&path))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names() {
        assert_eq!(addr_dir_name("localhost:3025"), "localhost_3025");
        assert_eq!(addr_dir_name("https://127.0.0.1:7450/"), "127.0.0.1_7450");
        assert_eq!(addr_dir_name("example.com"), "example.com_3025");
        assert_eq!(addr_dir_name("[::1]:7450"), "__1_7450");
        assert!(data_dir_name(Path::new("/a/b")).starts_with("data-dir_"));
        assert_ne!(
            data_dir_name(Path::new("/a/b")),
            data_dir_name(Path::new("/a/c"))
        );
    }

    #[test]
    fn files_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let s = StateDir::open(tmp.path(), "x_1", false).unwrap();
        assert_eq!(s.position().unwrap(), Position::default());
        let p = Position {
            window_time: "2024-01-01T00:00:00Z".into(),
            cursor: "k".into(),
            id: "u".into(),
        };
        s.save_position(&Position::default(), &p).unwrap();
        assert_eq!(s.position().unwrap(), p);
        s.save_session("abc", 7).unwrap();
        assert_eq!(s.session_index("abc").unwrap(), Some(7));
        assert_eq!(s.sessions().unwrap(), [("abc".to_string(), 7)]);
        s.remove_session("abc").unwrap();
        s.remove_session("abc").unwrap();
        assert!(s.sessions().unwrap().is_empty());
        assert!(s.done_sessions().unwrap().is_empty());
        let mut done = DoneSessions::default();
        done.push("a");
        done.push("b");
        s.save_done_sessions(&done).unwrap();
        assert_eq!(s.done_sessions().unwrap(), done);
        assert!(s.sessions().unwrap().is_empty(), "not a session file");
        s.dead_letter("t", "d", "r", r#"{"a":1}"#).unwrap();
        let text = std::fs::read_to_string(s.path().join(DEAD_LETTERS)).unwrap();
        assert!(text.contains(r#""event":{"a":1}"#));
        let d = StateDir::open(tmp.path(), "x_1", true).unwrap();
        assert!(d.path().starts_with(tmp.path().join("x_1").join("dry_run")));
    }
}
