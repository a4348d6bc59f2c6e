//! # tapelog-api: the HTTP API's wire types and TLS
//!
//! The wire types of the `tapelog serve` HTTP API (docs/api.md), shared by the server and the
//! client so that both read and write the same JSON.
//!
//! [`tls`]: rustls configurations, client-certificate identities and roles, certificate
//! generation.
//!
//! [`layers`]: the precedence of settings (flag > environment > TOML file > default) that
//! `tapelog serve` and `tapelog forward` both apply.
//!
//! Depends on `tapelog-core` only.
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod layers;
pub mod tls;

use serde::{Deserialize, Serialize};

/// The port `tapelog serve` listens on by default (on 127.0.0.1).
pub const DEFAULT_PORT: u16 = 7450;

/// The content type of a records body: records framed as inside a recording part (4-byte
/// big-endian length, then a protobuf `events.OneOf`).
pub const RECORDS_CONTENT_TYPE: &str = "application/x-tapelog-records";

/// The content type of JSON lines (one event a line).
pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson";

/// The file under the data directory where `serve` keeps the admin token it made itself.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// A caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Emits events and writes its own recording streams.
    Recorder,
    /// Reads: searches, session events, recordings, uploads.
    Auditor,
    /// Everything.
    Admin,
}

/// The body of `POST /v1/streams` and `POST /v1/streams/{upload_id}/resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRequest {
    /// The session the recording belongs to (a UUID).
    pub session_id: String,
}

/// Where a recording stream stands: every event up to `last_event_index` is durably stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStatusBody {
    /// The multipart upload (a UUID).
    pub upload_id: String,
    /// The session (a UUID).
    pub session_id: String,
    /// The highest event index stored with everything before it; -1 if none.
    pub last_event_index: i64,
}

/// The answer to `POST /v1/streams/{upload_id}/complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedBody {
    /// The session.
    pub session_id: String,
    /// The upload that was completed.
    pub upload_id: String,
    /// Where the recording is now.
    pub url: String,
}

/// The answer to `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedBody {
    /// How many events were written.
    pub accepted: u64,
}

/// One page of `GET /v1/events` or `GET /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsPage {
    /// The events, in Teleport's JSON.
    pub events: Vec<serde_json::Value>,
    /// The key of the next page; empty on the last page.
    #[serde(default)]
    pub next_key: String,
}

impl EventsPage {
    /// Each event as `(JSON, fields)`: the JSON written back in Teleport's form by the core
    /// (the wire JSON's key order is not kept by the parser); an event the core can't read
    /// is kept as it came.
    pub fn into_events(self) -> Vec<(String, tapelog_core::EventFields)> {
        self.events
            .into_iter()
            .map(|v| {
                let json = tapelog_core::AuditEvent::from_json_value(&v, None)
                    .map(|e| e.to_json())
                    .unwrap_or_else(|_| v.to_string());
                let fields = match v {
                    serde_json::Value::Object(m) => tapelog_core::EventFields(m),
                    _ => tapelog_core::EventFields(serde_json::Map::new()),
                };
                (json, fields)
            })
            .collect()
    }
}

/// An open upload in `GET /v1/uploads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadBody {
    /// The upload.
    pub upload_id: String,
    /// Its session.
    pub session_id: String,
    /// When it was created (RFC 3339), empty if the store does not say.
    #[serde(default)]
    pub initiated: String,
}

/// The answer to `GET /v1/uploads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadsBody {
    /// The open uploads.
    pub uploads: Vec<UploadBody>,
}

/// An upload a completer pass left alone or failed on, in [`CompleteReportBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadNoteBody {
    /// The upload.
    pub upload_id: String,
    /// Its session.
    pub session_id: String,
    /// Why it was skipped, or what failed.
    pub reason: String,
}

/// The answer to `POST /v1/uploads/complete`: what one pass of the upload completer did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteReportBody {
    /// Uploads completed (an upload with no parts is cleaned up and listed here too).
    pub completed: Vec<CompletedBody>,
    /// Uploads left alone (too recent, live, being completed elsewhere).
    pub skipped: Vec<UploadNoteBody>,
    /// Uploads that could not be completed (tried again on the next pass).
    pub failed: Vec<UploadNoteBody>,
}

/// The machine-readable part of an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: malformed body or parameter.
    BadRequest,
    /// 400: an id that is not a UUID.
    InvalidId,
    /// 401: no or unknown credentials.
    Unauthenticated,
    /// 403: the role may not do this.
    Forbidden,
    /// 404: no such thing, or a stream not open here.
    NotFound,
    /// 409: the upload is being completed elsewhere.
    Conflict,
    /// 413: a body or an event too large.
    TooLarge,
    /// 415: the wrong content type.
    UnsupportedMediaType,
    /// 416: a `Range` that starts past the end of a recording.
    RangeNotSatisfiable,
    /// 429: the search limiter is out of tokens.
    TooManyRequests,
    /// 500: the store or the disk failed.
    Internal,
    /// 503: shutting down, or the audit database can't be reached (`Retry-After` says when
    /// to try again).
    Unavailable,
    /// 501: this server's configuration can't do that (the event feed without a file audit
    /// log).
    NotImplemented,
    /// 405: a write to a read-only gateway (`tapelog serve --teleport`).
    ReadOnly,
    /// 502: the Teleport cluster behind a gateway failed, refused or did not answer.
    BadGateway,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidId => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::NotImplemented => 501,
            ErrorCode::ReadOnly => 405,
            ErrorCode::BadGateway => 502,
        }
    }
}

/// The inner object of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// What kind of error.
    pub code: ErrorCode,
    /// What was wrong and what to do.
    pub message: String,
}

/// An error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_json_shape() {
        let body = ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::InvalidId,
                message: "invalid session id \"..\"".into(),
            },
        };
        let text = serde_json::to_string(&body).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"error":{"code":"invalid_id","message":"invalid session id \"..\""}}"#
        );
        assert_eq!(ErrorCode::InvalidId.status(), 400);
        assert_eq!(ErrorCode::TooLarge.status(), 413);
    }

    #[test]
    fn roles_are_lowercase() {
        assert_eq!(
            serde_json::to_string(&Role::Auditor).ok().as_deref(),
            Some("\"auditor\"")
        );
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }
}
