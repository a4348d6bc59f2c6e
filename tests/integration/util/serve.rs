//! Helpers for the `tapelog serve` tests: an in-process server on 127.0.0.1:0 with one token
//! per role, HTTP clients, sample sessions as framed records.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use tapelog_core::AuditEvent;
use tapelog_core::codec::frame_record;
use tapelog_server::{RunningServer, ServeConfig, Server, TokenSpec};

/// Tokens of the test servers.
pub const RECORDER: &str = "recorder-token-0123456789";
/// A second recorder.
pub const RECORDER2: &str = "recorder2-token-0123456789";
/// An auditor.
pub const AUDITOR: &str = "auditor-token-0123456789";
/// An admin.
pub const ADMIN: &str = "admin-token-0123456789";

/// One token per role (two recorders).
pub fn tokens() -> Vec<TokenSpec> {
    vec![
        TokenSpec::parse(&format!("recorder:rec1:{RECORDER}")).unwrap(),
        TokenSpec::parse(&format!("recorder:rec2:{RECORDER2}")).unwrap(),
        TokenSpec::parse(&format!("auditor:aud:{AUDITOR}")).unwrap(),
        TokenSpec::parse(&format!("admin:adm:{ADMIN}")).unwrap(),
    ]
}

/// A config for `dir` on a free loopback port with the test tokens, no periodic completer.
pub fn config(dir: &Path) -> ServeConfig {
    let mut c = ServeConfig::new(dir);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.tokens = tokens();
    c.server_id = "test-server".into();
    c.completer_interval = Duration::ZERO;
    c.shutdown_timeout = Duration::from_secs(10);
    c
}

/// Starts a server.
pub async fn start(config: ServeConfig) -> RunningServer {
    Server::start(config).await.expect("server starts")
}

/// A plain HTTP client with a bounded timeout.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A sample session (start, resize, `prints` prints, end) with session id `sid`.
pub fn session(sid: &str, prints: usize) -> Vec<AuditEvent> {
    let mut events = tapelog_core::vectors::sample_session(prints);
    for e in &mut events {
        if let Some(s) = e.session_metadata_mut() {
            s.session_id = sid.to_string();
        }
    }
    events
}

/// Events as framed records (a records request body).
pub fn framed(events: &[AuditEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        frame_record(e, &mut out).unwrap();
    }
    out
}

/// A fresh UUID.
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
