//! `tapelog export` and `tapelog sample`: recordings to JSON lines, terminal text, asciicast v2
//! or clean V1.

use std::io::{Read as _, Write};
use std::path::PathBuf;

use clap::ValueEnum;
use tapelog_core::AuditEvent;
use tapelog_core::codec::deflate::Backend;
use tapelog_core::codec::parallel::{decode_part, decode_part_text};
use tapelog_core::codec::{Format as CoreFormat, RecordingWriter, WriterConfig, detect_format};
use tapelog_core::export::{AsciicastWriter, TextFormat, export_event};
use tapelog_store::file::{ReadError, open_path, read_parallel, read_prints};

use super::CliError;

#[derive(clap::Args)]
pub struct SampleArgs {
    /// Where to write it.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Number of terminal lines the session prints.
    #[arg(long, default_value_t = 50)]
    pub lines: usize,
    /// Size of non-last parts, in bytes.
    #[arg(long, default_value_t = tapelog_core::codec::MIN_UPLOAD_BYTES)]
    pub part_size: usize,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// One event per line in Teleport's JSON.
    Json,
    /// The terminal output bytes.
    Text,
    /// A clean ProtoStream V1 recording.
    Proto,
    /// asciicast v2 (asciinema): a header with the terminal size and start time, then
    /// `[t, "o", text]` per print and `[t, "r", "COLSxROWS"]` per resize. Output that is not
    /// UTF-8 is written as U+FFFD (asciicast holds text); characters split across prints are
    /// joined.
    Asciicast,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Size of non-last parts for `--format proto` (padding included), in bytes.
    #[arg(long, default_value_t = tapelog_core::codec::MIN_UPLOAD_BYTES, value_parser = clap::value_parser!(usize))]
    pub part_size: usize,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Threads that inflate and decode a ProtoStream file's parts at once (default 1: one
    /// part after the other). Output is the same whatever the number. Off by default while
    /// the parallel path holds each part's decoded output whole (several times the memory of
    /// the sequential reader) and measures no faster under load (docs/benchmarks.md).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    /// Print total/skipped/out-of-order event counts to standard error.
    #[arg(long)]
    pub stats: bool,
    /// With `--server`: export session INPUT (its id) from that server; the recording is
    /// downloaded to a temporary file first.
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
    /// With `--teleport`: export session INPUT (its id) of that Teleport cluster: its events
    /// from `StreamSessionEvents`, print data included, written into a temporary recording by
    /// tapelog's writer first (`--format proto` gives that rebuilt recording).
    #[command(flatten)]
    pub teleport: super::remote::TeleportArgs,
    /// The recording (`-` for standard input), or with `--server`/`--teleport` a session id.
    pub input: PathBuf,
}

/// Runs `tapelog export`.
pub fn export(a: ExportArgs) -> Result<(), CliError> {
    if matches!(a.format, Format::Proto) && a.part_size < 64 * 1024 + 1024 {
        return Err(CliError::Usage(format!(
            "--part-size {} is too small: a part must hold a 64 KiB event",
            a.part_size
        )));
    }
    let out_name = a
        .output
        .as_ref()
        .map_or("standard output".to_string(), |p| p.display().to_string());
    let sink: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|source| CliError::Write {
            path: out_name.clone(),
            source,
        })?),
        None => Box::new(std::io::stdout().lock()),
    };
    let sink = std::io::BufWriter::with_capacity(256 * 1024, sink);
    let cluster = a.teleport.open(None, &a.remote)?;
    let downloaded = match (cluster, a.remote.client(None)?) {
        (Some(cluster), _) => {
            let sid = a.input.to_string_lossy().into_owned();
            tapelog_store::check_id("session id", &sid)?;
            Some(cluster.download_recording(&sid)?)
        }
        (None, None) => None,
        (None, Some(client)) => {
            let sid = a.input.to_string_lossy().into_owned();
            tapelog_store::check_id("session id", &sid)?;
            let rt = super::remote::runtime()?;
            Some(rt.block_on(super::remote::download_recording(&client, &sid))?)
        }
    };
    let input = downloaded.as_ref().map_or(a.input.as_path(), |d| d.path());
    // A progress bar on a terminal for a file (its size is known); none for standard input.
    let bar = super::progress_bar(std::fs::metadata(input).map_or(0, |m| m.len()), "exporting");
    let jobs = a.jobs.map_or(1, usize::from);
    let mut out = Output {
        format: a.format,
        sink,
        out_name: &out_name,
        buf: Vec::with_capacity(64 * 1024),
        proto: matches!(a.format, Format::Proto).then(|| {
            RecordingWriter::new(WriterConfig {
                min_upload_bytes: a.part_size,
                ..WriterConfig::default()
            })
        }),
        cast: matches!(a.format, Format::Asciicast).then(AsciicastWriter::new),
    };
    let parts_file = input.as_os_str() != "-" && is_protostream(input)?;
    let text = matches!(a.format, Format::Text);
    let (stats, failure) = if parts_file && (jobs > 1 || text) {
        let file = std::fs::File::open(input).map_err(|source| ReadError::Io {
            path: input.to_path_buf(),
            source,
        })?;
        let mut src = bar.wrap_read(file);
        let r = if jobs == 1 {
            // Text on one thread: print data straight from the records.
            read_prints(&mut src, input, |data| out.write(data))?
        } else if text {
            let decode = |bytes: &[u8], offset, part, buf: &mut Vec<u8>| {
                decode_part_text(bytes, offset, part, Backend::default(), buf)
            };
            read_parallel(&mut src, input, jobs, &decode, |kept, buf| {
                // A part's kept prints are mostly adjacent in its buffer: one write per run.
                let mut run = 0..0;
                for r in kept {
                    if r.start != run.end {
                        out.write(buf.get(run).unwrap_or_default())?;
                        run = r.start..r.start;
                    }
                    run.end = r.end;
                }
                out.write(buf.get(run).unwrap_or_default())
            })?
        } else {
            // JSON lines are rendered on the workers; the other formats keep state across
            // events and take the events in order here.
            let format = a.format;
            let decode = |bytes: &[u8], offset, part, buf: &mut Vec<u8>| {
                decode_part(bytes, offset, part, Backend::default(), |e| {
                    if !matches!(format, Format::Json) {
                        return Item::Event(Box::new(e));
                    }
                    let start = buf.len();
                    export_event(TextFormat::JsonLines, &e, buf);
                    Item::Bytes(start..buf.len())
                })
            };
            read_parallel(&mut src, input, jobs, &decode, |kept, buf| {
                for item in kept {
                    match item {
                        Item::Bytes(range) => out.write(buf.get(range).unwrap_or_default())?,
                        Item::Event(e) => out.event(&e)?,
                    }
                }
                Ok::<(), CliError>(())
            })?
        };
        (r.stats, r.error)
    } else {
        let mut events = if input.as_os_str() == "-" {
            open_path(input)?
        } else {
            let file = std::fs::File::open(input).map_err(|source| ReadError::Io {
                path: input.to_path_buf(),
                source,
            })?;
            tapelog_store::file::open_reader(Box::new(bar.wrap_read(file)), input)?
        };
        let mut failure = None;
        for item in events.by_ref() {
            match item {
                Ok(e) => out.event(&e)?,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        (events.stats(), failure)
    };
    out.finish()?;
    bar.finish_and_clear();
    if a.stats {
        eprintln!(
            "total={} skipped={} out-of-order={} parts={}",
            stats.total, stats.skipped, stats.out_of_order, stats.parts
        );
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Whether the file starts with a ProtoStream header (the parallel path's input; anything
/// else takes the sequential path, which names what is wrong).
fn is_protostream(path: &std::path::Path) -> Result<bool, CliError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(8);
    std::fs::File::open(path)
        .map_err(io)?
        .take(8)
        .read_to_end(&mut head)
        .map_err(io)?;
    Ok(matches!(
        detect_format(&head),
        CoreFormat::ProtoV1 | CoreFormat::ProtoV2
    ))
}

/// An event rendered on a worker (its bytes in the part's buffer), or the event itself.
enum Item {
    Bytes(std::ops::Range<usize>),
    Event(Box<AuditEvent>),
}

/// Where exported events go, in order.
struct Output<'a> {
    format: Format,
    sink: std::io::BufWriter<Box<dyn Write>>,
    out_name: &'a str,
    buf: Vec<u8>,
    proto: Option<RecordingWriter>,
    cast: Option<AsciicastWriter>,
}

impl Output<'_> {
    fn write(&mut self, b: &[u8]) -> Result<(), CliError> {
        self.sink.write_all(b).map_err(|source| CliError::Write {
            path: self.out_name.to_string(),
            source,
        })
    }

    /// Exports one event.
    fn event(&mut self, event: &AuditEvent) -> Result<(), CliError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        match (&mut self.proto, self.format) {
            (Some(w), _) => {
                w.add(event).map_err(|source| CliError::Event {
                    index: event.index(),
                    event_type: event.event_type().to_string(),
                    source,
                })?;
                for p in w.take_parts() {
                    buf.extend_from_slice(&p.to_vec());
                }
            }
            (None, Format::Text) => export_event(TextFormat::Terminal, event, &mut buf),
            (None, Format::Asciicast) => {
                if let Some(c) = &mut self.cast {
                    c.push(event, &mut buf);
                }
            }
            (None, _) => export_event(TextFormat::JsonLines, event, &mut buf),
        }
        let r = self.write(&buf);
        self.buf = buf;
        r
    }

    /// Writes what the stateful formats hold back, and flushes.
    fn finish(mut self) -> Result<(), CliError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if let Some(c) = &mut self.cast {
            c.finish(&mut buf);
        }
        if let Some(w) = self.proto.take() {
            for p in w.finish() {
                buf.extend_from_slice(&p.to_vec());
            }
        }
        self.write(&buf)?;
        self.sink.flush().map_err(|source| CliError::Write {
            path: self.out_name.to_string(),
            source,
        })
    }
}

/// Runs `tapelog sample`.
pub fn sample(a: SampleArgs) -> Result<(), CliError> {
    let events = tapelog_core::sample::sample_session(a.lines);
    let config = WriterConfig {
        min_upload_bytes: a.part_size,
        ..WriterConfig::default()
    };
    let bytes = tapelog_core::codec::encode_recording(&events, config).map_err(|source| {
        CliError::Event {
            index: 0,
            event_type: "sample".into(),
            source,
        }
    })?;
    std::fs::write(&a.output, bytes).map_err(|source| CliError::Write {
        path: a.output.display().to_string(),
        source,
    })?;
    eprintln!("wrote {} events to {}", events.len(), a.output.display());
    Ok(())
}
