use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};

use tapelog_core::AuditEvent;
use tapelog_core::codec::{
    CodecError, ErrorKind, Format, Polled, ProtoReader, ReaderStats, detect_format, legacy,
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

/// Events of a recording, read as they are needed (memory stays bounded for ProtoStream files;
/// legacy tar files are read whole, as they are small and need their index).
pub struct EventStream {
    path: PathBuf,
    src: Box<dyn Read + Send>,
    reader: ProtoReader,
    legacy: Option<VecDeque<AuditEvent>>,
    format: Format,
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

/// Reads a recording from any reader; `path` names it in errors.
pub fn open_reader(mut src: Box<dyn Read + Send>, path: &Path) -> Result<EventStream, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(512);
    (&mut src).take(512).read_to_end(&mut head).map_err(io)?;
    let format = detect_format(&head);
    let mut stream = EventStream {
        path: path.to_path_buf(),
        src,
        reader: ProtoReader::default(),
        legacy: None,
        format,
        buf: vec![0; CHUNK],
        done: false,
    };
    let codec = |kind| ReadError::Codec {
        path: path.to_path_buf(),
        source: CodecError {
            offset: 0,
            part: 0,
            kind,
        },
    };
    match format {
        Format::ProtoV1 | Format::ProtoV2 => stream.reader.push(&head),
        Format::LegacyTar => {
            let mut all = head;
            stream.src.read_to_end(&mut all).map_err(io)?;
            let events = legacy::read_tar_recording(&all).map_err(codec)?;
            stream.legacy = Some(events.into());
        }
        Format::Unknown if head.is_empty() => {
            return Err(codec(ErrorKind::UnknownFormat("the file is empty".into())));
        }
        Format::Unknown => {
            return Err(codec(ErrorKind::UnknownFormat(
                "it starts with neither a ProtoStream header (version 1 or 2) nor a tar header"
                    .into(),
            )));
        }
    }
    Ok(stream)
}

impl EventStream {
    /// The detected format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Counters of the read so far (ProtoStream files).
    pub fn stats(&self) -> ReaderStats {
        self.reader.stats()
    }

    /// Bytes of the file consumed so far.
    pub fn offset(&self) -> u64 {
        self.reader.offset()
    }
}

impl Iterator for EventStream {
    type Item = Result<AuditEvent, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(q) = &mut self.legacy {
            return q.pop_front().map(Ok);
        }
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
                Ok(Polled::NeedInput) => match self.src.read(&mut self.buf) {
                    Ok(0) => self.reader.finish(),
                    Ok(n) => self.reader.push(&self.buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        self.done = true;
                        return Some(Err(ReadError::Io {
                            path: self.path.clone(),
                            source,
                        }));
                    }
                },
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
