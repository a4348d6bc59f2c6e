use std::io::Read;
use std::path::{Path, PathBuf};

use tapelog_core::AuditEvent;
use tapelog_core::codec::deflate::Backend;
use tapelog_core::codec::{
    CodecError, Format, Polled, PolledPrint, ProtoReader, ReaderStats, RecordingReader,
};
use thiserror::Error;

/// Bytes read from the source per step.
const CHUNK: usize = 64 * 1024;

/// A recording that could not be read.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file (`-` for standard input).
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The recording is damaged or not a recording.
    #[error("{path}: {source}")]
    Codec {
        /// The file.
        path: PathBuf,
        /// What was wrong, and where.
        source: CodecError,
    },
}

/// Events of a recording, read as they are needed: the core's [`RecordingReader`] fed from a
/// file or any reader in 64 KiB chunks (memory stays bounded for ProtoStream files; legacy tar
/// files are read whole, as they are small and need their index). The format rules and
/// messages are the core's, the same as in the browser.
pub struct EventStream {
    path: PathBuf,
    src: Box<dyn Read + Send>,
    reader: RecordingReader,
    buf: Vec<u8>,
    done: bool,
}

/// Opens a file, or standard input for `-`.
pub fn open_path(path: &Path) -> Result<EventStream, ReadError> {
    if path.as_os_str() == "-" {
        return open_reader(Box::new(std::io::stdin()), path);
    }
    let f = std::fs::File::open(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    open_reader(Box::new(f), path)
}

/// Reads a recording from any reader; `path` names it in errors. Input that is not a
/// recording (or is empty) is refused here, before any event is asked for.
pub fn open_reader(src: Box<dyn Read + Send>, path: &Path) -> Result<EventStream, ReadError> {
    let mut stream = EventStream {
        path: path.to_path_buf(),
        src,
        reader: RecordingReader::new(),
        buf: vec![0; CHUNK],
        done: false,
    };
    // Feed the reader until the first bytes decide the format.
    while stream.reader.format().is_none() {
        stream.read_chunk()?;
    }
    if stream.reader.format() == Some(Format::Unknown)
        && let Err(source) = stream.reader.poll()
    {
        return Err(ReadError::Codec {
            path: stream.path,
            source,
        });
    }
    Ok(stream)
}

impl EventStream {
    /// The detected format.
    pub fn format(&self) -> Format {
        self.reader.format().unwrap_or(Format::Unknown)
    }

    /// Counters of the read so far (for legacy tar files: the events returned).
    pub fn stats(&self) -> ReaderStats {
        self.reader.stats()
    }

    /// Bytes of the file consumed so far.
    pub fn offset(&self) -> u64 {
        self.reader.offset()
    }

    /// Reads one chunk from the source into the reader (marks the end at end of file).
    fn read_chunk(&mut self) -> Result<(), ReadError> {
        loop {
            match self.src.read(&mut self.buf) {
                Ok(0) => {
                    self.reader.finish();
                    return Ok(());
                }
                Ok(n) => {
                    self.reader.push(&self.buf[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ReadError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }
}

impl Iterator for EventStream {
    type Item = Result<AuditEvent, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            match self.reader.poll() {
                Ok(Polled::Event(e)) => return Some(Ok(e)),
                Ok(Polled::End) => {
                    self.done = true;
                    return None;
                }
                Ok(Polled::NeedInput) => {
                    if let Err(e) = self.read_chunk() {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                Err(source) => {
                    self.done = true;
                    return Some(Err(ReadError::Codec {
                        path: self.path.clone(),
                        source,
                    }));
                }
            }
        }
    }
}

/// The terminal output of the ProtoStream recording `src` on this thread, without building
/// the typed events of plain prints ([`ProtoReader::poll_print`]): `sink` gets each kept
/// print's data in order. Counters and error are those of [`EventStream`] on the same bytes;
/// a sink error stops the read and is returned as is.
pub fn read_prints<E>(
    src: &mut dyn Read,
    path: &Path,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<super::ParallelRead, E> {
    let mut r = ProtoReader::new(Backend::default());
    let mut buf = vec![0; CHUNK];
    loop {
        let error = match r.poll_print() {
            Ok(PolledPrint::Print { data, .. }) => {
                sink(data)?;
                continue;
            }
            Ok(PolledPrint::Other { .. }) => continue,
            Ok(PolledPrint::End) => None,
            Ok(PolledPrint::NeedInput) => match src.read(&mut buf) {
                Ok(0) => {
                    r.finish();
                    continue;
                }
                Ok(n) => {
                    r.push(&buf[..n]);
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => Some(ReadError::Io {
                    path: path.to_path_buf(),
                    source,
                }),
            },
            Err(source) => Some(ReadError::Codec {
                path: path.to_path_buf(),
                source,
            }),
        };
        return Ok(super::ParallelRead {
            stats: r.stats(),
            error,
        });
    }
}
