//! Recordings and parts for the store layout tests (s3_multipart, gcs_layout, azure_layout):
//! a session's events, one part made by tapelog's writer, and a stream driver that retries
//! quickly.

use std::time::Duration;

use tapelog_core::AuditEvent;
use tapelog_core::codec::{EncodedPart, PartBuilder, WriterConfig};
use tapelog_core::stream::StreamConfig;
use tapelog_core::vectors;
use tapelog_store::stream::{DriverConfig, RetryPolicy};

/// `n` poorly compressible events of session `sid`.
pub fn session_events(sid: &str, n: usize) -> Vec<AuditEvent> {
    let mut events = vectors::noisy_session(n);
    for e in &mut events {
        if let Some(m) = e.session_metadata_mut() {
            m.session_id = sid.to_string();
        }
    }
    events
}

/// A stream driver whose parts are padded to `min`, two uploads at once, quick retries.
pub fn driver(min: usize) -> DriverConfig {
    DriverConfig {
        stream: StreamConfig {
            writer: WriterConfig {
                min_upload_bytes: min,
                ..WriterConfig::default()
            },
            max_concurrent_uploads: 2,
            inactivity_flush_ms: 60_000,
            release_after_ms: 30_000,
        },
        retry: RetryPolicy {
            attempts: 5,
            step: Duration::from_millis(1),
            max: Duration::from_millis(5),
        },
        ..DriverConfig::default()
    }
}

/// One part made by tapelog's writer (padded to `min` unless `last`).
pub fn part(events: &[AuditEvent], min: usize, last: bool) -> EncodedPart {
    let mut w = PartBuilder::new(WriterConfig {
        min_upload_bytes: min,
        ..WriterConfig::default()
    });
    for e in events {
        w.add(e).unwrap();
    }
    w.finish(last)
}
