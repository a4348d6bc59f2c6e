//! Upstream's `checkAndSetEventFields` (`lib/events/emitter.go`): the rules every emitter
//! applies before an event is stored. Time and ids come in as arguments.

use thiserror::Error;

use super::{AuditEvent, event_type};
use crate::proto::Timestamp;

/// Why an event was refused by [`check_and_set_event_fields`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldsError {
    /// The event has no type (`event`).
    #[error("missing mandatory event type field")]
    MissingType,
    /// The event has no code, and its type needs one.
    #[error("missing mandatory event code field for {event_type} event")]
    MissingCode {
        /// The event's type.
        event_type: String,
    },
    /// A field had to be filled in, but the event is kept as raw bytes (a kind this build
    /// does not know), which are never rewritten.
    #[error("cannot set {field} on a {event_type} event this build does not know")]
    Raw {
        /// The field that was empty (`uid`, `time` or `cluster_name`).
        field: &'static str,
        /// The event's type.
        event_type: String,
    },
}

/// Whether events of this type carry no `uid` and no `code` (`print`, `desktop.recording`).
pub fn is_uncoded(ty: &str) -> bool {
    ty == event_type::SESSION_PRINT || ty == event_type::DESKTOP_RECORDING
}

/// Whether the logging emitter leaves events of this type out, as upstream's `LoggingEmitter`
/// does for the very verbose ones: `resize`, `session.disk`, `print`, `app.session.request`,
/// and events with no type.
pub fn is_too_verbose_to_log(ty: &str) -> bool {
    ty.is_empty()
        || ty == event_type::RESIZE
        || ty == event_type::SESSION_DISK
        || ty == event_type::SESSION_PRINT
        || ty == event_type::APP_SESSION_REQUEST
}

/// Upstream's `checkAndSetEventFields`: requires a type; requires a code unless the type is
/// `print` or `desktop.recording`; sets the id to `uid` when empty (not for those two types);
/// sets the time to `now` rounded to the millisecond when zero; sets the cluster name when
/// empty.
pub fn check_and_set_event_fields(
    event: &mut AuditEvent,
    now: Timestamp,
    uid: &str,
    cluster_name: &str,
) -> Result<(), FieldsError> {
    let Some(meta) = event.metadata() else {
        return Err(FieldsError::MissingType);
    };
    if meta.type_.is_empty() {
        return Err(FieldsError::MissingType);
    }
    let uncoded = is_uncoded(&meta.type_);
    if meta.code.is_empty() && !uncoded {
        return Err(FieldsError::MissingCode {
            event_type: meta.type_.clone(),
        });
    }
    let set_id = meta.id.is_empty() && !uncoded;
    let set_time = meta.time.is_zero();
    let set_cluster = meta.cluster_name.is_empty();
    if !(set_id || set_time || set_cluster) {
        return Ok(());
    }
    let event_type = meta.type_.clone();
    let Some(meta) = event.metadata_mut() else {
        let field = if set_id {
            "uid"
        } else if set_time {
            "time"
        } else {
            "cluster_name"
        };
        return Err(FieldsError::Raw { field, event_type });
    };
    if set_id {
        meta.id = uid.to_string();
    }
    if set_time {
        meta.time = now.round_to_millis();
    }
    if set_cluster {
        meta.cluster_name = cluster_name.to_string();
    }
    Ok(())
}
