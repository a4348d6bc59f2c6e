//! `AuditLogger`, the whole audit log in one value: the file log (emit, search, close, and
//! emit again), the discard log (takes everything, finds nothing) and the writer log (Teleport
//! JSON lines to a writer, searches not supported, closed for good by `close`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tapelog_audit::emit::{EmitError, Emitter};
use tapelog_audit::{
    AuditError, AuditLog, AuditLogger, DiscardAuditLog, FileLog, FileLogConfig, LimiterConfig,
    SearchLimiter, SearchQuery, SessionQuery, WriterLog,
};
use tapelog_core::{AuditEvent, Timestamp};

/// 2024-01-15T00:00:00Z.
const DAY0_MS: i64 = 1_705_276_800_000;

fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn event(ty: &str, code: &str, ms: i64, uid: &str) -> AuditEvent {
    AuditEvent::from_json(&format!(
        r#"{{"event":"{ty}","code":"{code}","uid":"{uid}","time":"{}","sid":"s-1","ei":1,"user":"joe"}}"#,
        t(ms).to_rfc3339()
    ))
    .unwrap()
}

fn all() -> SearchQuery {
    SearchQuery::new(t(DAY0_MS - 1000), t(DAY0_MS + 1000))
}

/// What any audit logger that keeps events must do: emit, find, close.
async fn emit_find_close<L: AuditLogger>(log: &L) {
    log.emit(event("user.login", "T1000I", DAY0_MS, "u-1"))
        .await
        .unwrap();
    log.emit(event("session.end", "T2004I", DAY0_MS + 10, "u-2"))
        .await
        .unwrap();
    let page = log.search_events(all()).await.unwrap();
    let ids: Vec<&str> = page.fields().map(|f| f.get_id()).collect();
    assert_eq!(ids, ["u-1", "u-2"]);
    let sessions = log
        .search_session_events(SessionQuery::new(t(DAY0_MS - 1000), t(DAY0_MS + 1000)))
        .await
        .unwrap();
    assert_eq!(sessions.events.len(), 1);
    assert_eq!(sessions.events[0].fields.get_id(), "u-2");
    log.close().await.unwrap();
}

/// The file log is an audit logger; after close a later event opens its file again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_log_is_an_audit_logger() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(FileLogConfig::new(dir.path(), "node-1")).unwrap();
    emit_find_close(&log).await;
    log.emit(event("user.login", "T1000I", DAY0_MS + 20, "u-3"))
        .await
        .unwrap();
    let page = log.search_events(all()).await.unwrap();
    assert_eq!(page.events.len(), 3);
    assert_eq!(log.stats().written, 3);

    // Wrapped in a limiter and an Arc it is still one.
    let config = LimiterConfig {
        refill_time: std::time::Duration::from_secs(1),
        refill_amount: 1,
        burst: 5,
    };
    let limited = Arc::new(SearchLimiter::new(log.clone(), config).unwrap());
    let page = limited.search_events(all()).await.unwrap();
    assert_eq!(page.events.len(), 3);
    limited.close().await.unwrap();
}

/// The discard log takes every event and finds none.
#[tokio::test]
async fn discard_log_takes_everything_and_finds_nothing() {
    let log = DiscardAuditLog::new();
    for i in 0..5 {
        log.emit(event(
            "user.login",
            "T1000I",
            DAY0_MS + i,
            &format!("u-{i}"),
        ))
        .await
        .unwrap();
    }
    assert_eq!(log.dropped(), 5);
    let page = log.search_events(all()).await.unwrap();
    assert!(page.events.is_empty());
    assert!(page.next_key.is_empty());
    let sessions = log
        .search_session_events(SessionQuery::new(t(0), t(DAY0_MS * 2)))
        .await
        .unwrap();
    assert!(sessions.events.is_empty());
    log.close().await.unwrap();
    log.emit(event("user.login", "T1000I", DAY0_MS, "u-9"))
        .await
        .unwrap();
}

/// The writer log writes one line of Teleport's JSON per event; searches are not supported
/// (a permanent error, not an empty answer); after close it refuses events.
#[tokio::test]
async fn writer_log_writes_teleport_json_lines() {
    let log = WriterLog::new(Vec::<u8>::new());
    let events = [
        event("user.login", "T1000I", DAY0_MS, "u-1"),
        event("session.start", "T2000I", DAY0_MS + 5, "u-2"),
    ];
    for e in &events {
        log.emit(e.clone()).await.unwrap();
    }
    let text = log.with_writer(|w| String::from_utf8(w.clone()).unwrap());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(text.ends_with('\n'));
    for (line, e) in lines.iter().zip(&events) {
        assert_eq!(
            *line,
            e.to_json(),
            "Teleport's JSON, as written by upstream"
        );
        assert_eq!(&AuditEvent::from_json(line).unwrap(), e);
    }
    assert!(lines[0].contains(r#""event":"user.login""#), "{}", lines[0]);

    let err = log.search_events(all()).await.unwrap_err();
    assert!(matches!(err, AuditError::NotSupported(_)), "{err}");
    assert!(err.is_permanent());
    let err = log
        .search_session_events(SessionQuery::new(t(0), t(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, AuditError::NotSupported(_)), "{err}");

    assert!(!log.is_closed());
    log.close().await.unwrap();
    assert!(log.is_closed());
    let err = log
        .emit(event("user.login", "T1000I", DAY0_MS + 9, "u-3"))
        .await
        .unwrap_err();
    assert!(matches!(err, EmitError::Closed(_)), "{err}");
    assert_eq!(log.into_inner().iter().filter(|&&b| b == b'\n').count(), 2);
}
