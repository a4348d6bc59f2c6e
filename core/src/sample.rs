//! The sample session: a short, fixed terminal session (start, resize, prints, end) that
//! `tapelog sample` writes and that the test vectors ([`crate::vectors`], feature `testkit`)
//! are built from.

use crate::event::{
    AuditEvent, Metadata, Resize, ServerMetadata, SessionEnd, SessionMetadata, SessionPrint,
    SessionStart, UserMetadata, event_code, event_type,
};
use crate::proto::Timestamp;

/// The session id used by the sample session.
pub const SESSION_ID: &str = "9b6ec731-80f7-4751-9154-4214ecdc812a";
/// Start time of the sample session (2021-11-18T15:33:59.792Z).
pub const START_MILLIS: i64 = 1_637_249_639_792;

pub(crate) fn meta(index: i64, ty: &str, code: &str, ms: i64) -> Metadata {
    Metadata {
        index,
        type_: ty.into(),
        code: code.into(),
        id: if code.is_empty() {
            String::new()
        } else {
            format!("00000000-0000-4000-8000-{index:012}")
        },
        time: Timestamp::from_unix_millis(START_MILLIS + ms),
        cluster_name: "tapelog.example".into(),
        ..Default::default()
    }
}

pub(crate) fn user() -> UserMetadata {
    UserMetadata {
        user: "joe".into(),
        login: "root".into(),
        ..Default::default()
    }
}

pub(crate) fn server() -> ServerMetadata {
    ServerMetadata {
        server_namespace: "default".into(),
        server_id: "ade010d6-4e75-4ed8-9f92-886a4f49eb26".into(),
        server_hostname: "localhost".into(),
        ..Default::default()
    }
}

pub(crate) fn session() -> SessionMetadata {
    SessionMetadata {
        session_id: SESSION_ID.into(),
        ..Default::default()
    }
}

/// A print event with the offsets and delays the session writer gives it.
pub fn print(index: i64, chunk: i64, offset: i64, ms: i64, data: &[u8]) -> AuditEvent {
    SessionPrint {
        metadata: meta(index, event_type::SESSION_PRINT, "", ms),
        chunk_index: chunk,
        data: data.to_vec(),
        bytes: data.len() as i64,
        delay_milliseconds: ms,
        offset,
        ..Default::default()
    }
    .into()
}

/// The terminal line printed by print event `i` of the sample session.
pub fn line(i: usize) -> Vec<u8> {
    format!("line {i}: the quick brown fox jumps over the lazy dog\r\n").into_bytes()
}

/// A sample session: start, resize, `prints` print events, end. Indexes 0.. with no gaps.
pub fn sample_session(prints: usize) -> Vec<AuditEvent> {
    let mut v: Vec<AuditEvent> = Vec::with_capacity(prints + 3);
    v.push(
        SessionStart {
            metadata: meta(0, event_type::SESSION_START, event_code::SESSION_START, 0),
            user: user(),
            session: session(),
            server: server(),
            terminal_size: "80:25".into(),
            session_recording: "node".into(),
            ..Default::default()
        }
        .into(),
    );
    v.push(
        Resize {
            metadata: meta(1, event_type::RESIZE, event_code::TERMINAL_RESIZE, 70),
            user: user(),
            session: session(),
            server: server(),
            terminal_size: "168:44".into(),
            ..Default::default()
        }
        .into(),
    );
    let mut offset = 0i64;
    for i in 0..prints {
        let data = line(i);
        let ms = 100 + i as i64 * 7;
        v.push(print(2 + i as i64, i as i64, offset, ms, &data));
        offset += data.len() as i64;
    }
    let last = 2 + prints as i64;
    v.push(
        SessionEnd {
            metadata: meta(
                last,
                event_type::SESSION_END,
                event_code::SESSION_END,
                100 + prints as i64 * 7,
            ),
            user: user(),
            session: session(),
            server: server(),
            interactive: true,
            participants: vec!["joe".into()],
            start_time: Timestamp::from_unix_millis(START_MILLIS),
            end_time: Timestamp::from_unix_millis(START_MILLIS + 100 + prints as i64 * 7),
            session_recording: "node".into(),
            ..Default::default()
        }
        .into(),
    );
    v
}

/// The terminal output of [`sample_session`].
pub fn sample_output(prints: usize) -> Vec<u8> {
    (0..prints).flat_map(line).collect()
}
