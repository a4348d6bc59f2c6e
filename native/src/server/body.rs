//! Request and response bodies: content types checked (415), sizes limited (413, in JSON,
//! also for bodies that arrive without a length), JSON read into the API's types (400 that
//! names the field or the position).

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::api::ErrorCode;

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
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            None => return Ok(Bytes::from(out)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > limit {
                        drop(out);
                        drain(body, limit).await;
                        return Err(too_large());
                    }
                    out.extend_from_slice(&data);
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
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
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
