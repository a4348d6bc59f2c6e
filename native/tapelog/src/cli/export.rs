//! `tapelog export` and `tapelog sample`: recordings to JSON lines, terminal text, asciicast v2
//! or clean V1.

use std::io::Write;
use std::path::PathBuf;

use clap::ValueEnum;
use tapelog_core::codec::{RecordingWriter, WriterConfig};
use tapelog_core::export::{AsciicastWriter, TextFormat, export_event};
use tapelog_store::file::open_path;

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
    let mut sink = std::io::BufWriter::with_capacity(256 * 1024, sink);
    let wr = |source| CliError::Write {
        path: out_name.clone(),
        source,
    };
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
    let mut events = if input.as_os_str() == "-" {
        open_path(input)?
    } else {
        let file =
            std::fs::File::open(input).map_err(|source| tapelog_store::file::ReadError::Io {
                path: input.to_path_buf(),
                source,
            })?;
        tapelog_store::file::open_reader(Box::new(bar.wrap_read(file)), input)?
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut proto = matches!(a.format, Format::Proto).then(|| {
        RecordingWriter::new(WriterConfig {
            min_upload_bytes: a.part_size,
            ..WriterConfig::default()
        })
    });
    let mut cast = matches!(a.format, Format::Asciicast).then(AsciicastWriter::new);
    let mut failure = None;
    for item in events.by_ref() {
        let event = match item {
            Ok(e) => e,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        buf.clear();
        match (&mut proto, a.format) {
            (Some(w), _) => {
                w.add(&event).map_err(|source| CliError::Event {
                    index: event.index(),
                    event_type: event.event_type().to_string(),
                    source,
                })?;
                for p in w.take_parts() {
                    sink.write_all(&p.to_vec()).map_err(wr)?;
                }
            }
            (None, Format::Text) => export_event(TextFormat::Terminal, &event, &mut buf),
            (None, Format::Asciicast) => {
                if let Some(c) = &mut cast {
                    c.push(&event, &mut buf);
                }
            }
            (None, _) => export_event(TextFormat::JsonLines, &event, &mut buf),
        }
        sink.write_all(&buf).map_err(wr)?;
    }
    if let Some(c) = &mut cast {
        buf.clear();
        c.finish(&mut buf);
        sink.write_all(&buf).map_err(wr)?;
    }
    if let Some(w) = proto {
        for p in w.finish() {
            sink.write_all(&p.to_vec()).map_err(wr)?;
        }
    }
    sink.flush().map_err(wr)?;
    bar.finish_and_clear();
    if a.stats {
        let s = events.stats();
        eprintln!(
            "total={} skipped={} out-of-order={} parts={}",
            s.total, s.skipped, s.out_of_order, s.parts
        );
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
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
