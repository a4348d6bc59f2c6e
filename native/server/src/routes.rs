//! The handlers of everything but streams: events (emit, search), sessions (search, events
//! from an index, recording), uploads (list, complete), `/metrics`, `/healthz`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tapelog_core::Timestamp;
use tapelog_core::audit::lines::LineError;

use super::App;
use super::auth::Caller;
use super::body::{
    decode_events, json_response, ndjson_events, path_id, read_body, require_content_type,
};
use super::error::ApiError;
use tapelog_api::{
    AcceptedBody, CompleteReportBody, CompletedBody, ErrorCode, EventsPage, NDJSON_CONTENT_TYPE,
    Role, UploadBody, UploadNoteBody, UploadsBody,
};
use tapelog_audit::{
    AuditLog, Condition, Order, PreparedEvents, SearchPage, SearchQuery, SessionQuery,
};
use tapelog_store::playback::RecordingSource;
use tapelog_store::{MultipartUploader, check_id};

/// `GET /healthz`: `ok`; a gateway (`serve --teleport`) pings its cluster first, a server
/// with a database audit log pings the database (503 `unavailable` naming it when it does not
/// answer).
pub(crate) async fn healthz(State(app): State<Arc<App>>) -> Response {
    match &app.cluster {
        Some(c) => super::gateway::healthz(c).await,
        None => match app.logs.check().await {
            Ok(()) => "ok".into_response(),
            Err(e) => ApiError::from(e).into_response(),
        },
    }
}

/// `GET /metrics`: this server's counters and gauge in the Prometheus text format.
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut r = app.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// `POST /v1/events`: checks every event (type, code, size), then appends them all. Each
/// event's line is prepared once, here, and handed on to the file log with it
/// ([`PreparedEvents`]), so that an event is encoded once on its way to the disk.
pub(crate) async fn emit(
    State(app): State<Arc<App>>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    caller.require(Role::Recorder, "emit events")?;
    let (parts, body) = request.into_parts();
    let media = require_content_type(&parts.headers, &["application/json", NDJSON_CONTENT_TYPE])?;
    let bytes = read_body(body, app.max_body).await?;
    let events = decode_events(&media, &bytes)?;
    drop(bytes);
    let max_line = app
        .logs
        .file_log()
        .map_or(tapelog_core::audit::MAX_SCAN_TOKEN_SIZE, |f| {
            f.config().max_line_size
        });
    let mut checked = PreparedEvents::new(max_line, events.len());
    for (i, mut e) in events.into_iter().enumerate() {
        app.emitter
            .check(&mut e)
            .map_err(|err| ApiError::bad_request(format!("event {i}: {err}")))?;
        if let Err(err) = checked.push(e) {
            let code = match err {
                LineError::TooLarge { .. } => ErrorCode::TooLarge,
                _ => ErrorCode::BadRequest,
            };
            return Err(ApiError::new(code, format!("event {i}: {err}")));
        }
    }
    let total = checked.len();
    // Checked already: straight to the logs, counted as the checking emitter counts.
    let stored = app.logs.emit_prepared(checked).await;
    match &stored {
        Ok(()) => app.metrics.audit_emitted_events.add(total as u64),
        Err(_) => app.metrics.audit_failed_emit_events.add(total as u64),
    }
    stored.map_err(|err| {
        if err.is_unavailable() {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("the audit log can't store events now ({err}); none of the {total} is acknowledged: send them again"),
            )
        } else {
            ApiError::internal(format!(
                "writing {total} events to the audit log failed: {err}"
            ))
        }
    })?;
    Ok(json_response(&AcceptedBody {
        accepted: total as u64,
    }))
}

/// The query of `GET /v1/events` and `GET /v1/sessions`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchParams {
    from: Option<String>,
    to: Option<String>,
    #[serde(rename = "type")]
    types: Option<String>,
    limit: Option<usize>,
    order: Option<String>,
    start_key: Option<String>,
    #[serde(rename = "where")]
    condition: Option<String>,
    session_id: Option<String>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))
}

fn time(name: &str, value: Option<&str>, default: Timestamp) -> Result<Timestamp, ApiError> {
    match value {
        None | Some("") => Ok(default),
        Some(v) => Timestamp::parse_rfc3339(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name}={v:?} is not an RFC 3339 time (e.g. 2024-01-15T10:00:00Z)"
            ))
        }),
    }
}

/// The default end of a search: now, plus a second, so that an event written just now (its
/// time rounded to the millisecond, possibly up) is found.
fn search_now(app: &App) -> Timestamp {
    Timestamp::from_unix_nanos(app.stream_config.clock.timestamp().unix_nanos() + 1_000_000_000)
}

fn order(value: Option<&str>) -> Result<Order, ApiError> {
    match value {
        None | Some("") | Some("asc") => Ok(Order::Ascending),
        Some("desc") => Ok(Order::Descending),
        Some(v) => Err(ApiError::bad_request(format!(
            "order={v:?}: use asc or desc"
        ))),
    }
}

fn page_body(page: SearchPage) -> Result<Response, ApiError> {
    let events = page
        .events
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.json).map_err(|err| {
                ApiError::internal(format!("{} at byte {}: {err}", e.file, e.offset))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json_response(&EventsPage {
        events,
        next_key: page.next_key,
    }))
}

/// `GET /v1/events`: one page of the audit log.
pub(crate) async fn search(
    State(app): State<Arc<App>>,
    caller: Caller,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Auditor, "search events")?;
    let p = query(params)?;
    let q = SearchQuery {
        from: time("from", p.from.as_deref(), Timestamp::from_unix_nanos(0))?,
        to: time("to", p.to.as_deref(), search_now(&app))?,
        event_types: p
            .types
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        limit: p.limit.unwrap_or(0),
        order: order(p.order.as_deref())?,
        start_key: p.start_key.unwrap_or_default(),
    };
    if let Some(c) = &app.cluster {
        return super::gateway::search(c, q).await;
    }
    page_body(app.search.search_events(q).await?)
}

/// The query of `GET /v1/events/feed`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FeedParams {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/events/feed`: the audit log in arrival order after a feed key (the search
/// limiter counts it as a search).
pub(crate) async fn feed(
    State(app): State<Arc<App>>,
    caller: Caller,
    params: Result<Query<FeedParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Auditor, "read the event feed")?;
    let p = query(params)?;
    app.search.take_token()?;
    let page = app
        .logs
        .feed(p.after.unwrap_or_default(), p.limit.unwrap_or(0))
        .await
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotImplemented,
                "the event feed reads a file or database audit log, and this server has neither (--audit)",
            )
        })??;
    page_body(SearchPage {
        events: page.events,
        next_key: page.next_key,
    })
}

/// `GET /v1/sessions`: one page of session end events.
pub(crate) async fn sessions(
    State(app): State<Arc<App>>,
    caller: Caller,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Auditor, "search sessions")?;
    let p = query(params)?;
    let condition = match p.condition.as_deref() {
        None | Some("") => None,
        Some(c) => {
            let (field, value) = c.split_once('=').ok_or_else(|| {
                ApiError::bad_request(format!("where={c:?}: expected FIELD=VALUE"))
            })?;
            Some(Condition::equals(field, value))
        }
    };
    let session_id = p.session_id.unwrap_or_default();
    if !session_id.is_empty() {
        check_id("session id", &session_id)?;
    }
    let q = SessionQuery {
        from: time("from", p.from.as_deref(), Timestamp::from_unix_nanos(0))?,
        to: time("to", p.to.as_deref(), search_now(&app))?,
        limit: p.limit.unwrap_or(0),
        order: order(p.order.as_deref())?,
        start_key: p.start_key.unwrap_or_default(),
        condition,
        session_id,
    };
    if let Some(c) = &app.cluster {
        return super::gateway::sessions(c, q).await;
    }
    page_body(app.search.search_session_events(q).await?)
}

/// The query of `GET /v1/sessions/{sid}/events`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FromIndex {
    from_index: Option<i64>,
}

/// `GET /v1/sessions/{sid}/events`: the session's events from an index, as JSON lines,
/// streamed as the recording is read. A recording damaged part-way ends the body early
/// (the connection is cut), after every event before the damage.
pub(crate) async fn session_events(
    State(app): State<Arc<App>>,
    caller: Caller,
    sid: Result<Path<String>, PathRejection>,
    params: Result<Query<FromIndex>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Auditor, "read session events")?;
    let sid = path_id(sid)?;
    check_id("session id", &sid)?;
    let from = query(params)?.from_index.unwrap_or(0);
    if let Some(c) = &app.cluster {
        return super::gateway::session_events(c, &sid, from).await;
    }
    let events = app.playback.stream_session_events(&sid, from).await?;
    Ok(ndjson_events(events))
}

/// `GET /v1/sessions/{sid}/recording`: the stored recording's bytes, streamed. A
/// `Range: bytes=START-[END]` or `bytes=-SUFFIX` header asks for part of it (206 with
/// `Content-Range`; 416 when it starts past the end): the web player re-reads a recording
/// from a part boundary to seek back. Several ranges, or a header that does not parse, are
/// ignored (the whole recording, 200), as RFC 9110 allows.
pub(crate) async fn recording(
    State(app): State<Arc<App>>,
    caller: Caller,
    sid: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Role::Auditor, "download recordings")?;
    let sid = path_id(sid)?;
    check_id("session id", &sid)?;
    if let Some(c) = &app.cluster {
        return super::gateway::recording(c, &sid).await;
    }
    let octets = HeaderValue::from_static("application/octet-stream");
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let Some(range) = range else {
        let chunks = app.uploader.open_recording(&sid).await?;
        let body = chunks.map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
        let mut r = Body::from_stream(body).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, octets);
        r.headers_mut()
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        return Ok(r);
    };
    let (start, end) = match range {
        ByteRange::From(start, end) => (start, end),
        ByteRange::Suffix(n) => {
            // The size is needed first: ask for nothing to learn it.
            let size = match app
                .uploader
                .open_recording_range(&sid, u64::MAX, None)
                .await?
            {
                Ok(part) => part.size,
                Err(size) => size,
            };
            (size.saturating_sub(n), None)
        }
    };
    match app.uploader.open_recording_range(&sid, start, end).await? {
        Ok(part) => {
            let body = part
                .bytes
                .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
            let mut r = Body::from_stream(body).into_response();
            *r.status_mut() = axum::http::StatusCode::PARTIAL_CONTENT;
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, octets);
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            let content_range = format!("bytes {}-{}/{}", part.start, part.end - 1, part.size);
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                h.insert(header::CONTENT_RANGE, v);
            }
            if let Ok(v) = HeaderValue::from_str(&(part.end - part.start).to_string()) {
                h.insert(header::CONTENT_LENGTH, v);
            }
            Ok(r)
        }
        Err(size) => {
            let mut r = ApiError::new(
                ErrorCode::RangeNotSatisfiable,
                format!(
                    "the recording of {sid} has {size} bytes: the range asked for is past its end"
                ),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            Ok(r)
        }
    }
}

/// One byte range of a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// `bytes=START-` (`None`) or `bytes=START-LAST` (`Some(LAST + 1)`).
    From(u64, Option<u64>),
    /// `bytes=-N`: the last N bytes.
    Suffix(u64),
}

/// A single `bytes=` range; `None` for anything else (several ranges, other units, junk).
fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return last.parse().ok().filter(|n| *n > 0).map(ByteRange::Suffix);
    }
    let start: u64 = first.parse().ok()?;
    if last.is_empty() {
        return Some(ByteRange::From(start, None));
    }
    let last: u64 = last.parse().ok()?;
    (last >= start).then(|| ByteRange::From(start, Some(last.saturating_add(1))))
}

#[cfg(test)]
mod range_tests {
    use super::{ByteRange, parse_range};

    #[test]
    fn range_headers_parse_as_rfc_9110_says_or_are_ignored() {
        assert_eq!(parse_range("bytes=10-"), Some(ByteRange::From(10, None)));
        assert_eq!(parse_range("bytes=0-9"), Some(ByteRange::From(0, Some(10))));
        assert_eq!(
            parse_range(" bytes= 5 - 5 "),
            Some(ByteRange::From(5, Some(6)))
        );
        assert_eq!(parse_range("bytes=-500"), Some(ByteRange::Suffix(500)));
        for ignored in [
            "bytes=-0",
            "bytes=9-3",
            "bytes=1-2,5-6",
            "items=0-1",
            "bytes=x-",
            "bytes=",
            "0-1",
        ] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
    }
}

/// `GET /v1/uploads`: the uploads not yet completed, oldest first.
pub(crate) async fn uploads(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Role::Auditor, "list uploads")?;
    let uploads = app.uploader.list_uploads().await?;
    Ok(json_response(&UploadsBody {
        uploads: uploads
            .into_iter()
            .map(|u| UploadBody {
                initiated: if u.initiated_ms > 0 {
                    Timestamp::from_unix_millis(u.initiated_ms).to_rfc3339()
                } else {
                    String::new()
                },
                upload_id: u.id,
                session_id: u.session_id,
            })
            .collect(),
    }))
}

/// The query of `POST /v1/uploads/complete`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Grace {
    grace: Option<u64>,
}

/// `POST /v1/uploads/complete`: one pass of the upload completer (streams open here are
/// live and never completed).
pub(crate) async fn complete_uploads(
    State(app): State<Arc<App>>,
    caller: Caller,
    params: Result<Query<Grace>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin, "run the upload completer")?;
    let grace = query(params)?.grace.unwrap_or(3600);
    let report = app
        .completer(
            Duration::from_secs(grace),
            super::DEFAULT_COMPLETER_INTERVAL,
        )
        .run_once(app.stream_config.clock.unix_ms())
        .await
        .map_err(|e| ApiError::internal(format!("upload completer: {e}")))?;
    let note = |u: &tapelog_store::StreamUpload, reason: String| UploadNoteBody {
        upload_id: u.id.clone(),
        session_id: u.session_id.clone(),
        reason,
    };
    Ok(json_response(&CompleteReportBody {
        completed: report
            .completed
            .iter()
            .map(|c| CompletedBody {
                session_id: c.upload.session_id.clone(),
                upload_id: c.upload.id.clone(),
                url: c.url.clone(),
            })
            .collect(),
        skipped: report
            .skipped
            .iter()
            .map(|s| note(&s.upload, format!("{:?}", s.reason)))
            .collect(),
        failed: report
            .failed
            .iter()
            .map(|f| note(&f.upload, f.error.to_string()))
            .collect(),
    }))
}

/// The answer to an unknown path.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint: see docs/api.md")
}

/// The answer to a known path with the wrong method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::bad_request("this endpoint does not take that method: see docs/api.md")
}
