//! The recording streams open on this server: a registry (upload id → stream, owner,
//! session) and the `/v1/streams` handlers. A stream lives here from create (or resume) to
//! complete or close; a server that restarts has none open, and clients resume theirs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tapelog_core::stream::StreamStatus;
use tokio::sync::watch;

use super::App;
use super::auth::Caller;
use super::body::{
    decode_records, json_response, path_id, read_body, read_json, require_content_type,
};
use super::error::ApiError;
use tapelog_api::{
    CompletedBody, ErrorCode, RECORDS_CONTENT_TYPE, Role, StreamRequest, StreamStatusBody,
};
use tapelog_store::complete::{SessionTracker, TrackerError};
use tapelog_store::stream::RecordingStream;
use tapelog_store::{MultipartUploader, check_id, check_upload_id};

/// One open stream.
pub(crate) struct OpenStream {
    owner: String,
    session_id: String,
    upload_id: String,
    /// `None` once completed or closed. The lock also keeps one request's records together.
    stream: tokio::sync::Mutex<Option<RecordingStream>>,
    status: watch::Receiver<StreamStatus>,
}

impl OpenStream {
    fn body(&self) -> StreamStatusBody {
        StreamStatusBody {
            upload_id: self.upload_id.clone(),
            session_id: self.session_id.clone(),
            last_event_index: self.status.borrow().last_event_index,
        }
    }
}

/// The open streams, by upload id.
#[derive(Default)]
pub(crate) struct Registry {
    open: Mutex<HashMap<String, Arc<OpenStream>>>,
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OpenStream>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, owner: &str, stream: RecordingStream) -> Arc<OpenStream> {
        let upload = stream.upload().clone();
        let entry = Arc::new(OpenStream {
            owner: owner.to_string(),
            session_id: upload.session_id.clone(),
            upload_id: upload.id.clone(),
            status: stream.status(),
            stream: tokio::sync::Mutex::new(Some(stream)),
        });
        self.map().insert(upload.id, entry.clone());
        entry
    }

    fn get(&self, upload_id: &str) -> Option<Arc<OpenStream>> {
        self.map().get(upload_id).cloned()
    }

    fn remove(&self, upload_id: &str, entry: &Arc<OpenStream>) {
        let mut map = self.map();
        if map.get(upload_id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            map.remove(upload_id);
        }
    }

    /// How many streams are open.
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }

    /// Closes every open stream (each upload stays resumable); returns how many were closed
    /// and the errors of those that failed.
    pub(crate) async fn close_all(&self) -> (usize, Vec<String>) {
        let all: Vec<Arc<OpenStream>> = self.map().drain().map(|(_, e)| e).collect();
        let mut closed = 0;
        let mut errors = Vec::new();
        for e in all {
            let taken = e.stream.lock().await.take();
            if let Some(s) = taken {
                match s.close().await {
                    Ok(()) => closed += 1,
                    Err(err) => errors.push(format!("upload {}: {err}", e.upload_id)),
                }
            }
        }
        (closed, errors)
    }
}

impl SessionTracker for Registry {
    /// A session is live while one of its streams is open here.
    async fn is_live(&self, session_id: &str) -> Result<bool, TrackerError> {
        Ok(self.map().values().any(|e| e.session_id == session_id))
    }
}

/// The open stream `upload_id` if the caller may touch it.
fn owned(app: &App, caller: &Caller, upload_id: &str) -> Result<Arc<OpenStream>, ApiError> {
    check_upload_id(upload_id)?;
    let entry = app.streams.get(upload_id).ok_or_else(|| {
        ApiError::not_found(format!(
            "stream {upload_id} is not open on this server (completed, closed, or the server restarted): resume it with POST /v1/streams/{upload_id}/resume"
        ))
    })?;
    if !caller.owns(&entry.owner) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "stream {upload_id} belongs to {:?}; {} may not touch it",
                entry.owner, caller.name
            ),
        ));
    }
    Ok(entry)
}

/// `POST /v1/streams`: a new upload and a stream writing to it.
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Role::Recorder, "create streams")?;
    let req: StreamRequest = read_json(&headers, body, app.max_body).await?;
    check_id("session id", &req.session_id)?;
    let stream = RecordingStream::create(
        app.uploader.clone(),
        &req.session_id,
        app.stream_config.clone(),
    )
    .await?;
    let entry = app.streams.insert(&caller.name, stream);
    Ok((StatusCode::CREATED, json_response(&entry.body())).into_response())
}

/// `POST /v1/streams/{upload_id}/resume`: continues an upload after what the store holds.
pub(crate) async fn resume(
    State(app): State<Arc<App>>,
    caller: Caller,
    upload_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Role::Recorder, "resume streams")?;
    let upload_id = path_id(upload_id)?;
    check_upload_id(&upload_id)?;
    let req: StreamRequest = read_json(&headers, body, app.max_body).await?;
    check_id("session id", &req.session_id)?;
    // Still open here (the client lost an answer): flush it first, then resume from the store.
    if app.streams.get(&upload_id).is_some() {
        let entry = owned(&app, &caller, &upload_id)?;
        let taken = entry.stream.lock().await.take();
        app.streams.remove(&upload_id, &entry);
        if let Some(s) = taken {
            // A failed stream still leaves its stored parts; the resume reads what is there.
            let _ = s.close().await;
        }
    }
    let upload = app
        .uploader
        .list_uploads()
        .await?
        .into_iter()
        .find(|u| u.id == upload_id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no open upload {upload_id} in this server's storage (completed, aborted or never created): create a new stream"
            ))
        })?;
    if upload.session_id != req.session_id {
        return Err(ApiError::bad_request(format!(
            "upload {upload_id} is for session {}, not {}",
            upload.session_id, req.session_id
        )));
    }
    let stream =
        RecordingStream::resume(app.uploader.clone(), upload, app.stream_config.clone()).await?;
    let entry = app.streams.insert(&caller.name, stream);
    Ok(json_response(&entry.body()))
}

/// `POST /v1/streams/{upload_id}/records`: framed records into the stream.
pub(crate) async fn records(
    State(app): State<Arc<App>>,
    caller: Caller,
    upload_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Role::Recorder, "write streams")?;
    let upload_id = path_id(upload_id)?;
    let entry = owned(&app, &caller, &upload_id)?;
    require_content_type(&headers, &[RECORDS_CONTENT_TYPE])?;
    let bytes = read_body(body, app.max_body).await?;
    // Every frame is checked before any record goes in: a bad body writes nothing.
    let records = decode_records(&bytes)?;
    let guard = entry.stream.lock().await;
    let Some(stream) = guard.as_ref() else {
        return Err(ApiError::not_found(format!(
            "stream {upload_id} was just completed or closed"
        )));
    };
    for r in &records {
        if let Err(e) = stream.record_raw(r.oneof, r.index).await {
            drop(guard);
            let err = ApiError::from(e);
            if err.code == ErrorCode::Internal {
                // The stream failed for good: it is no longer open here; the client resumes.
                fail(&app, &upload_id, &entry).await;
            }
            return Err(err);
        }
    }
    drop(guard);
    Ok(json_response(&entry.body()))
}

/// Drops a failed stream from the registry (its upload stays resumable).
async fn fail(app: &App, upload_id: &str, entry: &Arc<OpenStream>) {
    app.streams.remove(upload_id, entry);
    let taken = entry.stream.lock().await.take();
    drop(taken);
}

/// `GET /v1/streams/{upload_id}`: the stream's status.
pub(crate) async fn status(
    State(app): State<Arc<App>>,
    caller: Caller,
    upload_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Recorder, "read stream status")?;
    let upload_id = path_id(upload_id)?;
    let entry = owned(&app, &caller, &upload_id)?;
    Ok(json_response(&entry.body()))
}

/// Takes the caller's open stream `upload_id` out of the registry (to complete or close it).
async fn take_open(
    app: &App,
    caller: &Caller,
    upload_id: &str,
) -> Result<(Arc<OpenStream>, RecordingStream), ApiError> {
    let entry = owned(app, caller, upload_id)?;
    let taken = entry.stream.lock().await.take();
    app.streams.remove(upload_id, &entry);
    match taken {
        Some(stream) => Ok((entry, stream)),
        None => Err(ApiError::not_found(format!(
            "stream {upload_id} was already completed or closed"
        ))),
    }
}

/// `POST /v1/streams/{upload_id}/complete`: uploads the rest and completes the upload.
pub(crate) async fn complete(
    State(app): State<Arc<App>>,
    caller: Caller,
    upload_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Recorder, "complete streams")?;
    let upload_id = path_id(upload_id)?;
    let (entry, stream) = take_open(&app, &caller, &upload_id).await?;
    stream.complete().await?;
    Ok(json_response(&CompletedBody {
        session_id: entry.session_id.clone(),
        upload_id,
        url: app.uploader.recording_url(&entry.session_id),
    }))
}

/// `POST /v1/streams/{upload_id}/close`: uploads the rest, leaves the upload resumable.
pub(crate) async fn close(
    State(app): State<Arc<App>>,
    caller: Caller,
    upload_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Recorder, "close streams")?;
    let upload_id = path_id(upload_id)?;
    let (entry, stream) = take_open(&app, &caller, &upload_id).await?;
    stream.close().await?;
    Ok(json_response(&entry.body()))
}
