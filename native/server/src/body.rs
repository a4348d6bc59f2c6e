//! Request and response bodies: content types checked (415), sizes limited (413, in JSON,
//! also for bodies that arrive without a length), JSON read into the API's types (400 that
//! names the field or the position), the events and framed records of the write requests
//! decoded ([`decode_events`], [`decode_records`]: public, so that tests and the fuzz
//! targets decode bodies exactly as the server does).

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tapelog_core::AuditEvent;
use tapelog_core::codec::{FrameError, FramedRecord, FramedRecords};

use super::error::ApiError;
use tapelog_api::{ErrorCode, NDJSON_CONTENT_TYPE};

/// The body's media type (without parameters), lower case; "" when there is none.
pub(crate) fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Refuses (415) a body whose media type is not one of `allowed`.
pub(crate) fn require_content_type(
    headers: &HeaderMap,
    allowed: &[&str],
) -> Result<String, ApiError> {
    let got = media_type(headers);
    if allowed.contains(&got.as_str()) {
        return Ok(got);
    }
    let got = if got.is_empty() {
        "none".to_string()
    } else {
        format!("{got:?}")
    };
    Err(ApiError::new(
        ErrorCode::UnsupportedMediaType,
        format!(
            "content type {got} is not accepted here: send {}",
            allowed.join(" or ")
        ),
    ))
}

/// Reads the whole body, refusing (413) one over `limit` bytes, whether its length is
/// announced or not.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::TooLarge,
            format!("the request body is over the limit of {limit} bytes: send smaller batches"),
        )
    };
    let mut body = body;
    // A body that arrives in one frame is kept as it is (no copy); more are joined.
    let mut first: Option<Bytes> = None;
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            None => {
                return Ok(match first {
                    Some(f) => f,
                    None => Bytes::from(out),
                });
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let have = first.as_ref().map_or(out.len(), Bytes::len);
                    if have + data.len() > limit {
                        drop(out);
                        drain(body, limit).await;
                        return Err(too_large());
                    }
                    if first.is_none() && out.is_empty() {
                        first = Some(data);
                    } else {
                        if let Some(f) = first.take() {
                            let hint = body.size_hint().lower() as usize;
                            out.reserve((f.len() + data.len()).saturating_add(hint).min(limit));
                            out.extend_from_slice(&f);
                        }
                        out.extend_from_slice(&data);
                    }
                }
            }
            Some(Err(e)) => {
                return Err(ApiError::bad_request(format!(
                    "the request body could not be read: {e}"
                )));
            }
        }
    }
}

/// Reads and drops the rest of a refused body (up to `4 × limit` more bytes, for at most
/// 10 s), so that a client still sending it gets the 413 rather than a reset connection.
async fn drain(mut body: Body, limit: usize) {
    let budget = limit.saturating_mul(4);
    let read = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > budget {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), read).await;
}

/// Reads a JSON body (`application/json`) into `T`.
pub(crate) async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    require_content_type(headers, &["application/json"])?;
    let bytes = read_body(body, limit).await?;
    decode_json(&bytes)
}

/// A JSON request body (`POST /v1/streams`, `…/resume`) read into `T`, as the server reads
/// it: 400 with serde's position and field on anything else.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
}

/// The events of a `POST /v1/events` body of media type `media`: one object or an array
/// (`application/json`), or one object a line (JSON lines). The error names the event's
/// position.
///
/// Events are read by the core's direct reader where it can vouch for them (no
/// `serde_json::Value` tree; `AuditEvent::from_json_direct`); a body it declines is read
/// again as a whole `Value`, which gives the same events, or the error.
pub fn decode_events(media: &str, bytes: &[u8]) -> Result<Vec<AuditEvent>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not UTF-8: {e}")))?;
    if media != NDJSON_CONTENT_TYPE
        && let Some(events) = decode_json_direct(text)
    {
        return Ok(events);
    }
    decode_events_value(media, text)
}

/// An `application/json` body read by the direct reader: `None` when it declines any event.
fn decode_json_direct(text: &str) -> Option<Vec<AuditEvent>> {
    match text.trim_start().as_bytes().first()? {
        b'{' => AuditEvent::from_json_direct(text).map(|e| vec![e]),
        b'[' => tapelog_core::json::direct::array_items(text)
            .ok()?
            .into_iter()
            .map(AuditEvent::from_json_direct)
            .collect(),
        _ => None,
    }
}

/// [`decode_events`] through a `serde_json::Value` (JSON lines: `AuditEvent::from_json`,
/// which takes the direct reader first itself): the reader of every body the direct reader
/// declines, and so of every error.
fn decode_events_value(media: &str, text: &str) -> Result<Vec<AuditEvent>, ApiError> {
    if media == NDJSON_CONTENT_TYPE {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let e = AuditEvent::from_json(line)
                .map_err(|e| ApiError::bad_request(format!("line {}: {e}", n + 1)))?;
            out.push(e);
        }
        return Ok(out);
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                AuditEvent::from_json_value(v, None)
                    .map_err(|e| ApiError::bad_request(format!("event {i}: {e}")))
            })
            .collect(),
        Value::Object(_) => AuditEvent::from_json_value(&v, None)
            .map(|e| vec![e])
            .map_err(|e| ApiError::bad_request(format!("event 0: {e}"))),
        _ => Err(ApiError::bad_request(
            "the body must be an event object or an array of events",
        )),
    }
}

/// The framed records of a `POST /v1/streams/{upload_id}/records` body, every frame checked
/// (413 for a record over the event size limit, 400 for anything else wrong).
pub fn decode_records(bytes: &[u8]) -> Result<Vec<FramedRecord<'_>>, ApiError> {
    FramedRecords::new(bytes)
        .collect::<Result<Vec<_>, FrameError>>()
        .map_err(|e| match e {
            FrameError::TooLarge { .. } => ApiError::new(ErrorCode::TooLarge, e.to_string()),
            other => ApiError::bad_request(format!("records body: {other}")),
        })
}

/// The id in a path (`{upload_id}`, `{sid}`), or 400 when it is not text.
pub(crate) fn path_id(
    p: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    p.map(|axum::extract::Path(id)| id).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidId,
            format!("bad id in the path: {}", e.body_text()),
        )
    })
}

/// A 200 answer with `value` as JSON.
pub(crate) fn json_response<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(v) => {
            let mut r = v.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => ApiError::internal(format!("encoding the answer: {e}")).into_response(),
    }
}

/// A 200 answer streaming `events` as JSON lines (`application/x-ndjson`). An error ends the
/// body cleanly with one last line in the API's error shape, `{"error": {"code": ...,
/// "message": ...}}` (an event's own `error` field is a string, and every event has `event`),
/// and nothing after it: a body cut at the error (a connection closed mid-answer) would lose
/// the lines still buffered on the server's side, events the client is owed.
pub(crate) fn ndjson_events<E>(
    events: impl futures::Stream<Item = Result<AuditEvent, E>> + Send + 'static,
) -> Response
where
    E: Into<ApiError>,
{
    use futures::StreamExt;
    let lines = events.scan(false, |ended, r| {
        if *ended {
            return futures::future::ready(None);
        }
        let line = match r {
            Ok(e) => e.to_json(),
            Err(e) => {
                *ended = true;
                let e: ApiError = e.into();
                let body = tapelog_api::ErrorBody {
                    error: tapelog_api::ErrorDetail {
                        code: e.code,
                        message: e.message,
                    },
                };
                serde_json::to_string(&body).unwrap_or_default()
            }
        };
        futures::future::ready(Some(Ok::<_, std::convert::Infallible>(line + "\n")))
    });
    let mut r = Body::from_stream(lines).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(NDJSON_CONTENT_TYPE),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::{decode_events, decode_events_value};
    use tapelog_api::NDJSON_CONTENT_TYPE;

    const EV: &str = r#"{"ei":0,"event":"session.start","uid":"00000001-1b59-4858-b3a3-5e9467a77616","code":"T2000I","time":"2024-01-15T10:00:00.000Z","cluster_name":"c","user":"joe","login":"root","sid":"9b6ec731-80f7-4751-9154-4214ecdc812a","server_id":"ade010d6-4e75-4ed8-9f92-886a4f49eb26","size":"80:25"}"#;

    /// The body reader with the direct reader gives what reading the body as one
    /// `serde_json::Value` gives: the same events, or the same error naming the same event.
    #[test]
    fn direct_bodies_decode_as_the_value_reader_decodes_them() {
        let odd = [
            EV.replace(r#""user":"joe""#, r#""user":5"#),
            EV.replace(r#""user":"joe""#, r#""USER":"ann","user":"joe""#),
            EV.replace(r#""user":"joe""#, r#""user":"joe","zz":1e400"#),
            EV.replace(r#""user":"joe""#, r#""user":"\ud800""#),
            EV.replace("session.start", "no.such.type"),
            EV.replace(r#""login":"root""#, r#""login":null"#),
            r#"{"event":"scp","code":"T3010E","action":3,"path":"/x"}"#.to_string(),
            "{}".to_string(),
            "7".to_string(),
        ];
        let mut bodies = vec![
            EV.to_string(),
            format!(" {EV} "),
            format!("[{EV},{EV}]"),
            format!("[ {EV} ,\n{EV} ]"),
            "[]".to_string(),
            format!("[{EV},]"),
            format!("[{EV}] x"),
            format!("{EV}{EV}"),
            String::new(),
            format!(
                "[{}]",
                format_args!("{}{EV}{}", "[".repeat(126), "]".repeat(126))
            ),
        ];
        for o in &odd {
            bodies.push(o.clone());
            bodies.push(format!("[{EV},{o}]"));
            bodies.push(format!("[{o},{EV}]"));
        }
        for body in &bodies {
            assert_eq!(
                decode_events("application/json", body.as_bytes()),
                decode_events_value("application/json", body),
                "{body}"
            );
            let lines = format!("{EV}\n{body}\n");
            assert_eq!(
                decode_events(NDJSON_CONTENT_TYPE, lines.as_bytes()),
                decode_events_value(NDJSON_CONTENT_TYPE, &lines),
                "{lines}"
            );
        }
        assert_eq!(
            decode_events("application/json", format!("[{EV},{EV}]").as_bytes()).map(|v| v.len()),
            Ok(2)
        );
    }
}
