//! Sessions in the pre-4.4 on-disk layout: `<log>/<server>/sessions/<ns>/<sid>.index` plus
//! the `.events.gz` and `.chunks.gz` files it names, possibly spread over several server
//! directories (several auth servers on one shared log directory). Upstream's
//! `readSessionIndex` looks in every directory of the log except `playbacks`, `upload` and
//! `records`; [`LegacySession::find`] looks in the same server directories the audit log
//! searches (`tapelog_core::audit::files::is_search_dir`).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use tapelog_core::AuditEvent;
use tapelog_core::audit::files::is_search_dir;
use tapelog_core::codec::legacy::{self, IndexEntry, LegacyFile};
use tapelog_core::codec::{CodecError, ErrorKind};
use tapelog_core::playback::ChunkWindow;

use super::PlaybackError;

/// The files of one legacy session, from every server directory that has a part of it.
#[derive(Debug, Clone)]
pub struct LegacySession {
    session: String,
    /// `(source, directory)`: each `sessions/<ns>` directory with an index of the session.
    dirs: Vec<(String, PathBuf)>,
    entries: Vec<IndexEntry>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PlaybackError + '_ {
    move |source| PlaybackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sorted_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, PlaybackError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in rd {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type().map_err(io(dir))?.is_dir() {
            continue;
        }
        out.push((name, entry.path()));
    }
    out.sort();
    Ok(out)
}

impl LegacySession {
    /// Finds the session's index files under the log directory `log_dir`; `Ok(None)` when no
    /// server has one. `session` must already be a checked UUID.
    pub fn find(log_dir: &Path, session: &str) -> Result<Option<LegacySession>, PlaybackError> {
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        for (server, server_dir) in sorted_dirs(log_dir)? {
            if !is_search_dir(&server) {
                continue;
            }
            for (ns, ns_dir) in sorted_dirs(&server_dir.join("sessions"))? {
                let index = ns_dir.join(format!("{session}.index"));
                let data = match std::fs::read(&index) {
                    Ok(d) => d,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&index)(e)),
                };
                let source = format!("{server}/sessions/{ns}");
                files.push(LegacyFile {
                    source: source.clone(),
                    name: format!("{session}.index"),
                    data,
                });
                dirs.push((source, ns_dir));
            }
        }
        if files.is_empty() {
            return Ok(None);
        }
        let entries = legacy::index_entries(&files).map_err(|k| decode(session, k))?;
        Ok(Some(LegacySession {
            session: session.to_string(),
            dirs,
            entries,
        }))
    }

    /// The index entries of every server, as read.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    fn path_of(&self, e: &IndexEntry) -> Result<PathBuf, PlaybackError> {
        // Index entries name files by base name; anything with a separator is refused.
        if e.file_name.contains('/') || e.file_name.contains('\\') || e.file_name.starts_with('.') {
            return Err(decode(
                &self.session,
                ErrorKind::Legacy(format!("index names an unsafe file {:?}", e.file_name)),
            ));
        }
        let dir = self
            .dirs
            .iter()
            .find(|(s, _)| *s == e.source)
            .map(|(_, d)| d)
            .ok_or_else(|| {
                decode(
                    &self.session,
                    ErrorKind::Legacy("index source vanished".into()),
                )
            })?;
        Ok(dir.join(&e.file_name))
    }

    /// The whole session merged in index order; with `with_data` print data is restored
    /// from the chunk files, else they are not read.
    pub fn events(&self, with_data: bool) -> Result<Vec<AuditEvent>, PlaybackError> {
        let mut files = Vec::new();
        for e in &self.entries {
            if e.kind == "chunks" && !with_data {
                continue;
            }
            let path = self.path_of(e)?;
            let data = std::fs::read(&path).map_err(io(&path))?;
            files.push(LegacyFile {
                source: e.source.clone(),
                name: e.file_name.clone(),
                data,
            });
        }
        // The index files themselves, for the merge to read the entries from.
        for (source, dir) in &self.dirs {
            let path = dir.join(format!("{}.index", self.session));
            let data = std::fs::read(&path).map_err(io(&path))?;
            files.push(LegacyFile {
                source: source.clone(),
                name: format!("{}.index", self.session),
                data,
            });
        }
        let merged = if with_data {
            legacy::assemble(&files)
        } else {
            legacy::assemble_events(&files)
        };
        merged.map_err(|k| decode(&self.session, k))
    }

    /// Fills `window` from the chunk files, decompressing only the files it overlaps, as a
    /// stream (memory stays at the window plus a read buffer).
    pub fn read_chunks(&self, window: &mut ChunkWindow) -> Result<(), PlaybackError> {
        let chunks = legacy::chunk_entries(&self.entries);
        for (i, e) in chunks.iter().enumerate() {
            if window.is_full() {
                break;
            }
            let start = u64::try_from(e.offset).unwrap_or(0);
            // Skip files that end before the window: the next file starts at or before it.
            if let Some(next) = chunks.get(i + 1)
                && u64::try_from(next.offset).unwrap_or(0) <= window.next_offset()
            {
                continue;
            }
            let path = self.path_of(e)?;
            let file = std::fs::File::open(&path).map_err(io(&path))?;
            let mut gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
            let mut buf = vec![0u8; 64 * 1024];
            let mut pos = start;
            while !window.is_full() {
                let n = gz.read(&mut buf).map_err(io(&path))?;
                if n == 0 {
                    break;
                }
                window.feed(pos, &buf[..n]);
                pos += n as u64;
            }
        }
        Ok(())
    }
}

fn decode(session: &str, kind: ErrorKind) -> PlaybackError {
    PlaybackError::Decode {
        session: session.to_string(),
        source: CodecError::at(0, 0, kind),
    }
}
