//! Recordings the unit tests of the parallel readers share.
#![allow(clippy::unwrap_used)]

use tapelog_core::codec::{WriterConfig, encode_recording};

/// A sample session in many small parts (more than any read-ahead window the tests use).
pub(crate) fn many_parts() -> Vec<u8> {
    let events = tapelog_core::sample::sample_session(6000);
    let config = WriterConfig {
        min_upload_bytes: 4 * 1024,
        ..WriterConfig::default()
    };
    encode_recording(&events, config).unwrap()
}
