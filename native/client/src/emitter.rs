//! [`RemoteEmitter`]: an [`Emitter`] that sends each event to `POST /v1/events`.

use tapelog_core::AuditEvent;

use super::{Client, ClientError};
use tapelog_audit::emit::{EmitError, Emitter};

/// Emits audit events into a server's audit log (the server checks them and fills uid, time
/// and cluster name as the checking emitter does). A 400 or 413 answer is
/// [`EmitError::Invalid`] (permanent); anything else (unreachable server, 5xx, 401/403) is
/// [`EmitError::Io`] carrying the [`ClientError`].
#[derive(Debug, Clone)]
pub struct RemoteEmitter {
    client: Client,
}

impl RemoteEmitter {
    /// Emits through `client`.
    pub fn new(client: Client) -> RemoteEmitter {
        RemoteEmitter { client }
    }
}

impl Emitter for RemoteEmitter {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        self.client
            .emit(&event)
            .await
            .map(|_| ())
            .map_err(|e| to_emit_error(&event, e))
    }

    /// One request for the whole batch (JSON lines); the server takes all or none.
    async fn emit_batch(&self, events: Vec<AuditEvent>) -> Result<(), EmitError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        self.client
            .emit_batch(&events)
            .await
            .map(|_| ())
            .map_err(|e| to_emit_error(first, e))
    }
}

fn to_emit_error(event: &AuditEvent, e: ClientError) -> EmitError {
    match e.status() {
        Some(400 | 413) => EmitError::invalid(event, e.to_string()),
        _ => EmitError::Io {
            event_type: event.event_type().to_string(),
            source: std::io::Error::other(e),
        },
    }
}
