//! `tapelog upload`: streams the events of a local recording through the stream machine into a
//! store, as a recording host does when it records to disk first and uploads later.
//!
//! The upload id is printed (and flushed) before the first event goes out, so a process that
//! is killed part-way can be resumed from any other process with `--resume ID`: the resumed
//! stream reads back what the store holds, keeps the parts that hold every event up to some
//! index, and this command skips the events of the file up to that index.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStoreExt as _;
use tapelog_core::AuditEvent;
use tapelog_core::codec::WriterConfig;
use tapelog_core::stream::StreamConfig;
use tapelog_store::file::open_path_jobs;
use tapelog_store::stream::{DriverConfig, RecordingStream};
use tapelog_store::{MultipartUploader, StoreUploader, StreamUpload, check_id, check_upload_id};

use super::storage::StorageArgs;
use super::{CliError, progress_bar};

/// Arguments of `tapelog upload`.
#[derive(clap::Args)]
pub struct UploadArgs {
    /// The recording to upload (any format `tapelog export` reads; `-` for standard input).
    pub file: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Session id of the recording (a UUID); by default the session id of its events.
    #[arg(long)]
    pub session_id: Option<String>,
    /// Minimum part size in bytes: non-last parts are cut at it and padded to it. Object stores
    /// with a minimum (S3, GCS) join small parts when the upload completes.
    #[arg(long, default_value_t = tapelog_core::codec::MIN_UPLOAD_BYTES)]
    pub part_size: usize,
    /// Parts uploading at the same time.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Continue this upload (its id, as printed by the run that was interrupted, or as listed
    /// by `tapelog uploads list`).
    #[arg(long, value_name = "UPLOAD_ID")]
    pub resume: Option<String>,
    /// Upload the events but leave the upload open (resumable) instead of completing it.
    #[arg(long)]
    pub no_complete: bool,
    /// Read the recording no faster than this many bytes per second (0: no limit).
    #[arg(long, default_value_t = 0, value_name = "BYTES_PER_SEC")]
    pub rate: u64,
    /// Threads that inflate and decode a ProtoStream file's parts ahead of the upload
    /// (default 1: one part after the other). Standard input and legacy recordings are read
    /// on one thread. The uploaded recording is the same whatever the number.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    /// Print a line `durable INDEX` on standard output each time the store confirms that every
    /// event up to INDEX is stored.
    #[arg(long)]
    pub print_status: bool,
}

/// The smallest part that still holds a 64 KiB event.
const MIN_PART_SIZE: usize = 64 * 1024 + 1024;

/// Runs `tapelog upload`.
pub async fn run(a: UploadArgs) -> Result<(), CliError> {
    if a.part_size < MIN_PART_SIZE {
        return Err(CliError::Usage(format!(
            "--part-size {} is too small: a part must hold a 64 KiB event ({MIN_PART_SIZE} bytes at least)",
            a.part_size
        )));
    }
    if a.concurrency == 0 {
        return Err(CliError::Usage("--concurrency must be at least 1".into()));
    }
    let uploader = Arc::new(a.storage.open()?);
    let total = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
    let mut events = open_path_jobs(&a.file, super::decode_jobs(a.jobs))?;
    // The first event names the session when --session-id does not.
    let first = events.next().transpose()?;
    let session_id = match (&a.session_id, &first) {
        (Some(s), _) => s.clone(),
        (None, Some(e)) if !e.session_id().is_empty() => e.session_id().to_string(),
        _ => {
            return Err(CliError::Usage(format!(
                "{}: its events name no session id; pass --session-id",
                a.file.display()
            )));
        }
    };
    check_id("session id", &session_id)?;
    let config = DriverConfig {
        stream: StreamConfig {
            writer: WriterConfig {
                min_upload_bytes: a.part_size,
                ..WriterConfig::default()
            },
            max_concurrent_uploads: a.concurrency,
            ..StreamConfig::default()
        },
        ..DriverConfig::default()
    };
    let stream = match &a.resume {
        None => RecordingStream::create(uploader.clone(), &session_id, config).await?,
        Some(id) => {
            let upload = find_upload(uploader.as_ref(), id).await?;
            if upload.session_id != session_id {
                return Err(CliError::Usage(format!(
                    "upload {id} is for session {}, not {session_id}",
                    upload.session_id
                )));
            }
            RecordingStream::resume(uploader.clone(), upload, config).await?
        }
    };
    let upload = stream.upload().clone();
    let durable = stream.status().borrow().last_event_index;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "upload {} session {}", upload.id, upload.session_id);
        let _ = out.flush();
    }
    if a.resume.is_some() {
        eprintln!(
            "resuming upload {}: the store holds every event up to index {durable}; sending the rest",
            upload.id
        );
    }
    let status_printer = a.print_status.then(|| {
        let mut rx = stream.status();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let i = rx.borrow_and_update().last_event_index;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "durable {i}");
                let _ = out.flush();
            }
        })
    });

    let mut stop = super::shutdown_signal();
    let bar = progress_bar(total, "uploading");
    let clock = tapelog_audit::clock::system();
    let started = clock.now_mono();
    let mut sent = 0u64;
    let mut pending = first;
    let interrupted = loop {
        let event: AuditEvent = match pending.take() {
            Some(e) => e,
            None => match events.next() {
                None => break false,
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    // What was sent stays resumable.
                    let _ = stream.close().await;
                    return Err(CliError::Resumable {
                        source: Box::new(e.into()),
                        upload: upload.id.clone(),
                    });
                }
            },
        };
        bar.set_position(events.offset());
        if event.index() <= durable {
            continue;
        }
        if a.rate > 0 {
            let due = Duration::from_secs_f64(events.offset() as f64 / a.rate as f64);
            if let Some(wait) = due.checked_sub(clock.now_mono() - started) {
                tokio::time::sleep(wait).await;
            }
        }
        tokio::select! {
            r = stream.record(event) => {
                if let Err(e) = r {
                    return Err(stream_failed(&uploader, &upload, e.into()).await);
                }
            }
            _ = stop.changed() => break true,
        }
        sent += 1;
    };
    bar.finish_and_clear();
    if interrupted || a.no_complete {
        if let Err(e) = stream.close().await {
            return Err(stream_failed(&uploader, &upload, e.into()).await);
        }
        if let Some(p) = status_printer {
            p.abort();
        }
        eprintln!(
            "upload {} left open after {sent} events; continue it with --resume {}",
            upload.id, upload.id
        );
        return if interrupted {
            Err(CliError::Interrupted)
        } else {
            Ok(())
        };
    }
    if let Err(e) = stream.complete().await {
        return Err(stream_failed(&uploader, &upload, e.into()).await);
    }
    if let Some(p) = status_printer {
        p.abort();
    }
    let url = uploader.recording_url(&session_id);
    println!("complete {url}");
    eprintln!("uploaded {sent} events of session {session_id} to {url}");
    Ok(())
}

/// The error to report when the stream failed: resumable while the upload is still open in
/// the store; when it is gone (another process completed it, or took it over and completed or
/// aborted it), resuming would be wrong, so say so and name the recording if it exists.
async fn stream_failed(
    uploader: &StoreUploader,
    upload: &StreamUpload,
    source: CliError,
) -> CliError {
    let open = match uploader.list_uploads().await {
        Ok(list) => list.iter().any(|u| u.id == upload.id),
        // Can't tell: the conservative answer is the one that loses nothing.
        Err(_) => true,
    };
    if open {
        return CliError::Resumable {
            source: Box::new(source),
            upload: upload.id.clone(),
        };
    }
    let path = uploader.recording_path(&upload.session_id);
    let recording = match uploader.store().head(&path).await {
        Ok(_) => Some(uploader.recording_url(&upload.session_id)),
        Err(_) => None,
    };
    CliError::UploadGone {
        source: Box::new(source),
        upload: upload.id.clone(),
        recording,
    }
}

/// The open upload with this id.
async fn find_upload(uploader: &StoreUploader, id: &str) -> Result<StreamUpload, CliError> {
    check_upload_id(id)?;
    uploader
        .list_uploads()
        .await?
        .into_iter()
        .find(|u| u.id == id)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no open upload {id} in this storage (completed, aborted, or another storage?)"
            ))
        })
}
