//! API errors: every failure of a request becomes [`ApiError`], answered as
//! `{"error": {"code", "message"}}` with the status its code documents (docs/api.md).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use tapelog_api::{ErrorBody, ErrorCode, ErrorDetail};
use tapelog_audit::AuditError;
use tapelog_store::UploadError;
use tapelog_store::playback::PlaybackError;
use tapelog_store::stream::DriverError;

/// A failed request: its code and a message that names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// What kind of error (decides the status).
    pub code: ErrorCode,
    /// What was wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// An error with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Internal, message)
    }

    /// The HTTP status of the code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let text = serde_json::to_string(&body).unwrap_or_default();
        let mut r = (status, text).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.code == ErrorCode::Unavailable {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        r
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> ApiError {
        let code = match &e {
            UploadError::InvalidId { .. } => ErrorCode::InvalidId,
            UploadError::InvalidPart(_) => ErrorCode::BadRequest,
            UploadError::NotFound(_) => ErrorCode::NotFound,
            UploadError::Locked(_) => ErrorCode::Conflict,
            UploadError::Store(_) | UploadError::Service { .. } => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<DriverError> for ApiError {
    fn from(e: DriverError) -> ApiError {
        match e {
            DriverError::Upload(u) => u.into(),
            DriverError::Stream(tapelog_core::stream::StreamError::Event(ev)) => event_error(&ev),
            other => ApiError::internal(format!(
                "the stream failed: {other}; resume the upload to continue"
            )),
        }
    }
}

/// An event the core refused: too large (413) or malformed (400).
pub fn event_error(e: &tapelog_core::EventError) -> ApiError {
    match e {
        tapelog_core::EventError::TooLarge { .. } => {
            ApiError::new(ErrorCode::TooLarge, e.to_string())
        }
        _ => ApiError::bad_request(e.to_string()),
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> ApiError {
        let code = match &e {
            AuditError::Event(tapelog_core::audit::lines::LineError::TooLarge { .. }) => {
                ErrorCode::TooLarge
            }
            AuditError::RateLimited => ErrorCode::TooManyRequests,
            AuditError::Unavailable(_) => ErrorCode::Unavailable,
            e if e.is_permanent() => ErrorCode::BadRequest,
            _ => ErrorCode::Internal,
        };
        let message = match &e {
            AuditError::RateLimited => {
                "search rate limit exceeded: wait a moment and search again".to_string()
            }
            other => other.to_string(),
        };
        ApiError::new(code, message)
    }
}

impl From<PlaybackError> for ApiError {
    fn from(e: PlaybackError) -> ApiError {
        let code = match &e {
            PlaybackError::NotFound { .. } => ErrorCode::NotFound,
            PlaybackError::InvalidId(_) => ErrorCode::InvalidId,
            PlaybackError::Read {
                source: UploadError::NotFound(_),
                ..
            } => ErrorCode::NotFound,
            _ => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

/// A Teleport cluster's answer (`serve --teleport`): a missing recording is 404, a bad
/// parameter 400, a limit 429; everything else (refused, unreachable, undecodable) is 502.
impl From<tapelog_teleport::TeleportError> for ApiError {
    fn from(e: tapelog_teleport::TeleportError) -> ApiError {
        use tapelog_teleport::ErrorKind as K;
        let code = match e.kind() {
            K::NotFound => ErrorCode::NotFound,
            K::BadParameter => ErrorCode::BadRequest,
            K::LimitExceeded => ErrorCode::TooManyRequests,
            _ => ErrorCode::BadGateway,
        };
        ApiError::new(code, format!("the Teleport cluster: {e}"))
    }
}
